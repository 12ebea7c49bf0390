#!/usr/bin/env bash
# Authorization bench: what 10 ALLOW AuthorizationPolicies of 10 rules each cost a gateway,
# against the same gateway with no policy, for Envoy and `spar proxy` side by side in one run.
# Every request is allowed by the last rule of the last policy, so each request walks all
# 100 rules (each rule: a path prefix, a method list and a header condition). The origin is
# nginx (one worker) serving 1,024 bytes; the gateway runs pinned to CPU $PROXY_CPU
# (Envoy --concurrency 1, spar proxy TOKIO_WORKER_THREADS=1); origin and wrk to $LOAD_CPU.
# Per target and policy set: `wrk -t1 -c32 -d$DURATION` (req/s, p50, p99) and the CPU
# seconds the gateway used; the cost is 1 - (req/s with policies / req/s without). The runs
# alternate (none, policies) for $ROUNDS rounds (default 3) and the medians are compared, so
# a slow minute on a shared machine does not land on one side only.
#
# Goal (issue 8): the throughput cost of the 100 rules is at most 5%.
# A bench, not a test: it asserts only that each target serves the file with the policies
# in force and refuses a request none of them allows (403).
#
# Timings on a shared VM move by ±20% from minute to minute, so the script also counts what
# spar proxy executes: it runs the spar gateway under valgrind's callgrind for
# $INSTR_LOW and $INSTR_HIGH requests (h2load, HTTP/1.1) per policy set and reports the
# instructions per request from the difference (startup and probes cancel out), which is
# the same number on every run. INSTRUCTIONS=0 skips it.
#
# PERF=KIND-SET (e.g. spar-100-rules) records that run with `perf record -g` and prints
# where its CPU time went. Peers: scripts/install-bench-peers (nginx, wrk, h2load, Envoy).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-"envoy spar"}
ROUNDS=${ROUNDS:-3}
INSTRUCTIONS=${INSTRUCTIONS:-1}
INSTR_LOW=${INSTR_LOW:-1000}
INSTR_HIGH=${INSTR_HIGH:-6000}
[ -n "${NO_BUILD:-}" ] || cargo build --profile perf -q --bin spar
spar=$PWD/target/perf/spar
for tool in nginx wrk taskset curl python3; do
  command -v "$tool" >/dev/null || { echo "no $tool: run scripts/install-bench-peers" >&2; exit 1; }
done
envoy=$(scripts/envoy-path) || { echo "no Envoy: run scripts/install-bench-peers" >&2; exit 1; }

dir=$(mktemp -d)
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
until_ok() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.05
  done
}
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
serves_1k() { [ "$(curl -sf -o /dev/null -w '%{http_code} %{size_download}' -H 'x-team: t9' "$1")" = "200 1024" ]; }

# == the origin ==
origin_port=$(free_port)
mkdir -p "$dir/www/allowed/9" "$dir/origin"
head -c 1024 /dev/zero | tr '\0' 'x' > "$dir/www/allowed/9/1k"
chmod -R a+rX "$dir/www"
cat > "$dir/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/origin/nginx.pid;
error_log $dir/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/origin/body;
  proxy_temp_path $dir/origin/proxy;
  fastcgi_temp_path $dir/origin/fastcgi;
  uwsgi_temp_path $dir/origin/uwsgi;
  scgi_temp_path $dir/origin/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server { listen 127.0.0.1:$origin_port; root $dir/www; }
}
EOF
taskset -c "$LOAD_CPU" nginx -c "$dir/origin/nginx.conf" -e "$dir/origin/error.log" &
pids+=($!)

# == config: the gateway, and 10 ALLOW policies x 10 rules ==
gateway_yaml() {
  cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec:
  selector: {app: origin}
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origin-1, namespace: default, labels: {kubernetes.io/service-name: origin}}
addressType: IPv4
ports: [{name: http, port: $origin_port}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: $1, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: origin, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: origin.default.svc.cluster.local, port: {number: 80}}}]}]
EOF
}
policies_yaml() {
  local p r
  for p in 0 1 2 3 4 5 6 7 8 9; do
    printf -- '---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-%s, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: ALLOW\n  rules:\n' "$p"
    for r in 0 1 2 3 4 5 6 7 8 9; do
      # Only policy 9's rule 9 matches the bench's requests (/allowed/9/..., x-team: t9).
      if [ "$p$r" = 99 ]; then path=/allowed/9/; team=t9; else path=/p$p/r$r/; team=t$p$r; fi
      printf '  - to: [{operation: {methods: [GET, HEAD], paths: ["%s*"]}}]\n    when: [{key: "request.headers[x-team]", values: [%s]}]\n' "$path" "$team"
    done
  done
}

# start_cp CONFIG-DIR: a control plane; sets cp_pid, cp_xds.
start_cp() {
  local err=$1.err
  "$spar" control-plane --config-dir "$1" --xds-addr 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 2>"$err" &
  cp_pid=$!; pids+=("$cp_pid")
  cp_xds=
  local end=$(( $(date +%s) + 60 ))
  while [ -z "$cp_xds" ]; do
    kill -0 "$cp_pid" 2>/dev/null || { cat "$err" >&2; exit 1; }
    [ "$(date +%s)" -lt "$end" ] || { echo "control plane did not start" >&2; exit 1; }
    sleep 0.05
    cp_xds=$(sed -n 's/^xds listening on //p' "$err")
  done
}

# run KIND SET ROUND: KIND (envoy|spar) as a gateway over policy SET (none|100-rules).
run() {
  local kind=$1 set=$2 round=$3 port work=$dir/$1-$2-$3
  port=$(free_port)
  mkdir -p "$work/config"
  gateway_yaml "$port" > "$work/config/gateway.yaml"
  [ "$set" = none ] || policies_yaml > "$work/config/policies.yaml"
  "$spar" validate "$work/config" >/dev/null 2>&1
  start_cp "$work/config"
  local node="router~127.0.0.1~bench-$kind.istio-system~istio-system.svc.cluster.local" pid
  if [ "$kind" = envoy ]; then
    "$spar" bootstrap envoy --node-id "$node" --role gateway --xds-addr "$cp_xds" \
      --admin-port 0 --label istio=ingressgateway > "$work/envoy.json"
    taskset -c "$PROXY_CPU" "$envoy" -c "$work/envoy.json" --log-path "$work/envoy.log" \
      --disable-hot-restart --concurrency 1 -l warning >/dev/null 2>&1 &
  else
    env TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c "$PROXY_CPU" "$spar" proxy \
      --node-id "$node" --role gateway --xds-addr "$cp_xds" --admin-port 0 \
      --labels istio=ingressgateway 2>"$work/proxy.err" &
  fi
  pid=$!; pids+=("$pid")
  local url="http://127.0.0.1:$port/allowed/9/1k"
  until_ok 60 "$kind ($set) to serve $url" serves_1k "$url"
  if [ "$set" != none ] && [ "$(code -H 'x-team: t9' "http://127.0.0.1:$port/other")" != 403 ]; then
    echo "$kind ($set): a request no rule allows was not refused" >&2; exit 1
  fi
  echo "-- round $round: $kind, policies: $set" >&2
  local t0 t1 perf=
  if [ "${PERF:-}" = "$kind-$set" ] && [ "$round" = 1 ]; then
    perf record -q -g -o "$out/$kind-$set.perf.data" -p "$pid" 2>/dev/null &
    perf=$!
  fi
  t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$DURATION" --latency -H 'x-team: t9' "$url" > "$out/$kind-$set-$round.txt"
  t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  echo "$(( t1 - t0 )) $(getconf CLK_TCK)" > "$out/$kind-$set-$round.cpu"
  if [ -n "$perf" ]; then
    kill -INT "$perf"; wait "$perf" 2>/dev/null || true
    perf report -i "$out/$kind-$set.perf.data" --no-children --percent-limit 2 --stdio 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -25 >&2
  fi
  kill "$pid" "$cp_pid" 2>/dev/null || true
  wait "$pid" "$cp_pid" 2>/dev/null || true
}

echo "peers: $(nginx -v 2>&1 | sed 's/.*: //'), envoy $("$envoy" --version | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  for kind in $TARGETS; do
    for set in none 100-rules; do run "$kind" "$set" "$round"; done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (before: $load_before)" >&2
# instructions SET N: spar proxy under callgrind serves N requests; prints its instruction count.
instructions() {
  local set=$1 n=$2 port work=$dir/instr-$1-$2
  port=$(free_port)
  mkdir -p "$work/config"
  gateway_yaml "$port" > "$work/config/gateway.yaml"
  [ "$set" = none ] || policies_yaml > "$work/config/policies.yaml"
  start_cp "$work/config"
  local node="router~127.0.0.1~bench-instr.istio-system~istio-system.svc.cluster.local" pid
  env TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind -q \
    --callgrind-out-file="$work/callgrind.out" "$spar" proxy \
    --node-id "$node" --role gateway --xds-addr "$cp_xds" --admin-port 0 --drain-time 1s \
    --labels istio=ingressgateway 2>"$work/proxy.err" &
  pid=$!; pids+=("$pid")
  local url="http://127.0.0.1:$port/allowed/9/1k"
  until_ok 300 "spar under callgrind ($set) to serve $url" serves_1k "$url"
  h2load --h1 -n "$n" -c 4 -H 'x-team: t9' "$url" > "$work/h2load.txt" 2>&1
  grep -q "succeeded, 0 errored\|$n succeeded" "$work/h2load.txt" ||
    { echo "h2load under callgrind ($set, $n):" >&2; cat "$work/h2load.txt" >&2; exit 1; }
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  kill "$cp_pid" 2>/dev/null || true
  wait "$cp_pid" 2>/dev/null || true
  sed -n 's/^totals: *\([0-9]*\).*/\1/p; s/^summary: *\([0-9]*\).*/\1/p' "$work/callgrind.out" | head -1
}
if [ "$INSTRUCTIONS" = 1 ] && [[ " $TARGETS " == *" spar "* ]]; then
  command -v valgrind >/dev/null && command -v h2load >/dev/null ||
    { echo "no valgrind or h2load: run scripts/install-bench-peers (or INSTRUCTIONS=0)" >&2; exit 1; }
  for set in none 100-rules; do
    echo "-- instructions: spar, policies: $set ($INSTR_LOW and $INSTR_HIGH requests under callgrind)" >&2
    lo=$(instructions "$set" "$INSTR_LOW"); hi=$(instructions "$set" "$INSTR_HIGH")
    echo "$lo $hi" > "$out/instr-$set"
  done
fi


python3 - "$out" "$TARGETS" "$ROUNDS" "$INSTR_LOW" "$INSTR_HIGH" <<'EOF'
import os, re, statistics, sys
out, targets, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
low, high = int(sys.argv[4]), int(sys.argv[5])
def us(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]", "", v)
    return n * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
def wrk(path):
    t = open(path).read()
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", t, re.M))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)), us(lat["50"]), us(lat["99"])
print(f"{'target':8} {'policies':10} {'round':>5} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU s':>6} {'req/CPU s':>10}")
rows = {}
for r in range(1, rounds + 1):
    for t in targets:
        for s in ("none", "100-rules"):
            rps, p50, p99 = wrk(f"{out}/{t}-{s}-{r}.txt")
            ticks, hz = map(int, open(f"{out}/{t}-{s}-{r}.cpu").read().split())
            cpu = ticks / hz
            rows.setdefault((t, s), []).append((rps, rps / max(cpu, 1e-9)))
            print(f"{t:8} {s:10} {r:>5} {rps:>9.0f} {p50:>8.0f} {p99:>8.0f} {cpu:>6.2f} {rps / max(cpu, 1e-9):>10.0f}")
for t in targets:
    med = lambda s, i: statistics.median(x[i] for x in rows[(t, s)])
    a, b = med("none", 0), med("100-rules", 0)
    ea, eb = med("none", 1), med("100-rules", 1)
    print(f"{t}: medians of {rounds}: req/s {a:.0f} -> {b:.0f}, cost of 10 ALLOW policies x 10 rules: req/s {100 * (1 - b / a):.1f}%, req/s per CPU second {100 * (1 - eb / ea):.1f}% (goal <= 5%)")
if os.path.exists(f"{out}/instr-none"):
    per = {}
    for s in ("none", "100-rules"):
        lo, hi = map(int, open(f"{out}/instr-{s}").read().split())
        per[s] = (hi - lo) / (high - low)
    print(f"spar: instructions per request (callgrind, {high} - {low} requests): none {per['none']:.0f}, 100-rules {per['100-rules']:.0f}, cost {100 * (per['100-rules'] / per['none'] - 1):.1f}% (goal <= 5%)")
EOF
