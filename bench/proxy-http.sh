#!/usr/bin/env bash
# Data-plane bench: one proxy hop in front of a 1 KB origin, side by side for
#   direct   wrk -> origin,
#   nginx    one worker, reverse proxy with upstream keep-alive,
#   haproxy  nbthread 1, mode http,
#   envoy    --concurrency 1, a gateway configured by `spar control-plane` (spar bootstrap envoy),
#   spar     `spar proxy --role gateway` from the same control plane and config.
# The origin is nginx (one worker, access log off, keep-alive without a request cap) serving
# a 1,024-byte file. Every proxy runs pinned to CPU $PROXY_CPU (taskset); the origin, wrk and
# h2load share CPU $LOAD_CPU. `spar proxy` has no worker-count flag: it runs with
# TOKIO_WORKER_THREADS=1 (tokio's own override) and the same taskset pin.
#
# Load, per target: `wrk -t1 -c32 -d$DURATION --latency` (throughput, p50/p99 at 32
# connections), `wrk -t1 -c1 -d$DURATION --latency` (p50 at one connection; "added p50" is a
# target's minus direct's), and `h2load -n $H2_REQUESTS -c 32 -m 10` over cleartext HTTP/2
# with prior knowledge. nginx 1.22 cannot serve HTTP/1.1 and h2c on one port, so nginx (and
# the origin, for direct) get a second listener with `http2` for h2load; haproxy, Envoy and
# spar take h2c prior knowledge on their one port. Upstream of every proxy is HTTP/1.1.
#
# Memory: RSS of Envoy and spar proxy as gateways idle after their first config (one route),
# and after the load; then, from a second control plane serving bench/gen_mesh.py's mesh of
# $SERVICES services, each as a sidecar that sees all of them (Envoy: also its /memory).
#
# Goals (issue): spar added p50 <= nginx's; spar req/s at 32 connections >= nginx's and
# >= 2x Envoy's; spar RSS idle <= 15 MB, with config for 1,000 services <= 40 MB. The
# throughput goals are judged twice: by req/s, and by req/s per CPU second the target used
# (on a shared machine a target's req/s mostly says how much CPU the scheduler gave it).
#
# Peers: scripts/install-bench-peers. Figures are only as good as the machine is quiet: the
# load average is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
H2_REQUESTS=${H2_REQUESTS:-100000}
SERVICES=${SERVICES:-1000}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-"direct nginx haproxy envoy spar"}
# NO_BUILD=1 reuses target/perf/spar; KEEP=1 keeps the work directory (raw outputs, logs);
# PERF=NAME (nginx, haproxy, envoy, spar; direct: the origin) records that target with
# `perf record -g` during its wrk -c32 run and prints where its CPU time went;
# ROUNDS=N runs every target N times, in turn, and reports medians (and each round's ratios);
# STRACE=NAME counts that target's system calls (strace -c -f) during its wrk -c1 run;
# SPAR_ENV="NAME=VALUE ..." adds environment to `spar proxy` only (e.g. allocator options).
[ -n "${NO_BUILD:-}" ] || cargo build --profile perf -q --bin spar
spar=$PWD/target/perf/spar

for tool in nginx haproxy wrk h2load taskset curl; do
  command -v "$tool" >/dev/null || { echo "no $tool: run scripts/install-bench-peers" >&2; exit 1; }
done
envoy=$(scripts/envoy-path) || { echo "no Envoy: run scripts/install-bench-peers" >&2; exit 1; }

dir=$(mktemp -d)
# nginx workers drop to an unprivileged user when started as root: they must read the file.
chmod 755 "$dir"
out=$dir/out
mkdir -p "$out"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# cpu_ticks PID: user and system CPU time of all of PID's threads, in clock ticks.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }
# rss_mb PID [FIELD]: VmRSS (or another /proc/PID/status figure, e.g. RssAnon) in MB.
rss_mb() { awk -v k="${2:-VmRSS}:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# stop PID: SIGTERM, then wait for it to exit (so its ports are free for the next target).
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
# until SECONDS WHAT CMD...: polls CMD every 50 ms until it succeeds.
until_ok() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.05
  done
}
# A 200 with the full 1 KB body on URL.
serves_1k() { [ "$(curl -sf -o /dev/null -w '%{http_code} %{size_download}' "$1")" = "200 1024" ]; }

# shellcheck source=bench/proxy-mesh.sh
source bench/proxy-mesh.sh

# == the origin ==
origin_port=$(free_port)
origin_h2_port=$(free_port)
mkdir -p "$dir/www" "$dir/origin"
head -c 1024 /dev/zero | tr '\0' 'x' > "$dir/www/1k"
chmod -R a+rX "$dir/www"
# nginx_conf DIR SERVER-BLOCKS: a one-worker nginx whose files all live in DIR.
nginx_conf() {
  cat <<EOF
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  default_type application/octet-stream;
$2
}
EOF
}
nginx_conf "$dir/origin" "
  server { listen 127.0.0.1:$origin_port; root $dir/www; }
  server { listen 127.0.0.1:$origin_h2_port http2; root $dir/www; }" > "$dir/origin/nginx.conf"
taskset -c "$LOAD_CPU" nginx -c "$dir/origin/nginx.conf" -e "$dir/origin/error.log" &
pids+=($!)
until_ok 10 "the origin" serves_1k "http://127.0.0.1:$origin_port/1k"

# == load ==
# load NAME PID H1-URL [H2-URL]: the three runs against one target (process PID).
load() {
  local name=$1 pid=$2 url=$3 h2=${4:-}
  serves_1k "$url" || { echo "$name does not serve the 1 KB file at $url" >&2; return 1; }
  echo "-- $name: wrk -c32, wrk -c1${h2:+, h2load}" >&2
  local perf=
  if [ "${PERF:-}" = "$name" ]; then
    perf record -q -g -o "$out/$name.perf.data" -p "$pid" 2>"$dir/perf.err" &
    perf=$!
  fi
  local t0 t1; t0=$(cpu_ticks "$pid")
  taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$DURATION" --latency "$url" > "$out/$name-c32.txt"
  t1=$(cpu_ticks "$pid")
  # user-ticks system-ticks ticks-per-second
  echo "${t0% *} ${t0#* } ${t1% *} ${t1#* }" |
    awk -v hz="$(getconf CLK_TCK)" '{ print $3 - $1, $4 - $2, hz }' > "$out/$name-cpu.txt"
  if [ -n "$perf" ]; then
    kill -INT "$perf"; wait "$perf" || true
    perf report -i "$out/$name.perf.data" --no-children --percent-limit 1.5 --stdio \
      -g none 2>/dev/null | grep -v '^#' | grep -v '^$' > "$out/$name.perf.txt" || true
    echo "   perf profile of $name during wrk -c32 (self time):" >&2
    head -40 "$out/$name.perf.txt" >&2
  fi
  local trace=
  if [ "${STRACE:-}" = "$name" ] || [ "${STRACE:-}" = all ]; then
    strace -c -f -o "$out/$name.strace.txt" -p "$pid" 2>/dev/null &
    trace=$!
    sleep 0.5
  fi
  taskset -c "$LOAD_CPU" wrk -t1 -c1 -d"$DURATION" --latency "$url" > "$out/$name-c1.txt"
  if [ -n "$trace" ]; then
    kill -INT "$trace"; wait "$trace" || true
    local n; n=$(awk '/^Requests\/sec/ { print $2 }' "$out/$name-c1.txt")
    echo "   system calls of $name during wrk -c1 (strace -c -f; $n req/s under strace):" >&2
    head -20 "$out/$name.strace.txt" >&2
  fi
  if [ -n "$h2" ]; then
    taskset -c "$LOAD_CPU" h2load -n "$H2_REQUESTS" -c 32 -m 10 "$h2" > "$out/$name-h2.txt" 2>&1 ||
      echo "   h2load against $name failed (see the table)" >&2
  fi
}

echo "peers: $(nginx -v 2>&1 | sed 's/.*: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3)," \
  "envoy $("$envoy" --version | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(h2load --version | head -1)" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before ($(nproc) CPUs); proxies on CPU $PROXY_CPU, origin and load on CPU $LOAD_CPU" >&2

ROUNDS=${ROUNDS:-1}
out_all=$out
for round in $(seq "$ROUNDS"); do
if [ "$ROUNDS" -gt 1 ]; then
  out=$out_all/r$round
  mkdir -p "$out"
  echo "== round $round of $ROUNDS" >&2
fi
for target in $TARGETS; do
  case $target in
  direct)
    load direct "$(pgrep -P "${pids[0]}" | head -1)" "http://127.0.0.1:$origin_port/1k" "http://127.0.0.1:$origin_h2_port/1k"
    ;;
  nginx)
    port=$(free_port); h2port=$(free_port)
    mkdir -p "$dir/nginx"
    nginx_conf "$dir/nginx" "
  upstream origin { server 127.0.0.1:$origin_port; keepalive 64; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$port;
    listen 127.0.0.1:$h2port http2;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_buffering on;
    }
  }" > "$dir/nginx/nginx.conf"
    taskset -c "$PROXY_CPU" nginx -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" &
    pid=$!; pids+=("$pid")
    until_ok 10 "nginx" serves_1k "http://127.0.0.1:$port/1k"
    load nginx "$(pgrep -P "$pid" | head -1)" "http://127.0.0.1:$port/1k" "http://127.0.0.1:$h2port/1k"
    stop "$pid"
    ;;
  haproxy)
    port=$(free_port)
    cat > "$dir/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$port
  default_backend origin
backend origin
  server origin 127.0.0.1:$origin_port
EOF
    taskset -c "$PROXY_CPU" haproxy -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.log" &
    pid=$!; pids+=("$pid")
    until_ok 10 "haproxy" serves_1k "http://127.0.0.1:$port/1k"
    load haproxy "$pid" "http://127.0.0.1:$port/1k" "http://127.0.0.1:$port/1k"
    stop "$pid"
    ;;
  envoy | spar)
    gateway_run "$target"
    ;;
  *) echo "unknown target $target (direct nginx haproxy envoy spar)" >&2; exit 1 ;;
  esac
done
done
out=$out_all

if [ -z "${NO_MESH:-}" ]; then
  mesh_memory
fi

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (before: $load_before)" >&2
DURATION=$DURATION python3 bench/proxy-report.py "$out_all"
