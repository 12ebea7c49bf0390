#!/usr/bin/env bash
# Authorization bench: what 10 ALLOW AuthorizationPolicies of 10 rules each cost a gateway,
# against the same gateway with no policy, for Envoy and `spar proxy` side by side in one run.
# Every request is allowed by the last rule of the last policy, so each request walks all
# 100 rules (each rule: a path prefix, a method list and a header condition). The origin is
# nginx (one worker) serving 1,024 bytes; the gateway runs pinned to CPU $PROXY_CPU
# (Envoy --concurrency 1, spar proxy TOKIO_WORKER_THREADS=1); origin and wrk to $LOAD_CPU.
# Per target and policy set: `wrk -t1 -c32 -d$DURATION` (req/s, p50, p99) and the CPU
# seconds the gateway used; the cost is 1 - (req/s with policies / req/s without).
#
# Goal (issue 8): the throughput cost of the 100 rules is at most 5%.
# A bench, not a test: it asserts only that each target serves the file with the policies
# in force and refuses a request none of them allows (403).
#
# PERF=KIND-SET (e.g. spar-100-rules) records that run with `perf record -g` and prints
# where its CPU time went. Peers: scripts/install-bench-peers (nginx, wrk, Envoy).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-"envoy spar"}
[ -n "${NO_BUILD:-}" ] || cargo build --release -q --bin spar
spar=$PWD/target/release/spar
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

# run KIND SET: KIND (envoy|spar) as a gateway over policy SET (none|100-rules).
run() {
  local kind=$1 set=$2 port work=$dir/$1-$2
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
  echo "-- $kind, policies: $set" >&2
  local t0 t1 perf=
  if [ "${PERF:-}" = "$kind-$set" ]; then
    perf record -q -g -o "$out/$kind-$set.perf.data" -p "$pid" 2>/dev/null &
    perf=$!
  fi
  t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$DURATION" --latency -H 'x-team: t9' "$url" > "$out/$kind-$set.txt"
  t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  echo "$(( t1 - t0 )) $(getconf CLK_TCK)" > "$out/$kind-$set.cpu"
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
for kind in $TARGETS; do
  for set in none 100-rules; do run "$kind" "$set"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (before: $load_before)" >&2

python3 - "$out" "$TARGETS" <<'EOF'
import re, sys
out, targets = sys.argv[1], sys.argv[2].split()
def us(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]", "", v)
    return n * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
def wrk(path):
    t = open(path).read()
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", t, re.M))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)), us(lat["50"]), us(lat["99"])
print(f"{'target':8} {'policies':10} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'CPU s':>6} {'req/CPU s':>10}")
rows = {}
for t in targets:
    for s in ("none", "100-rules"):
        rps, p50, p99 = wrk(f"{out}/{t}-{s}.txt")
        ticks, hz = map(int, open(f"{out}/{t}-{s}.cpu").read().split())
        cpu = ticks / hz
        rows[(t, s)] = (rps, cpu)
        print(f"{t:8} {s:10} {rps:>9.0f} {p50:>8.0f} {p99:>8.0f} {cpu:>6.2f} {rps / max(cpu, 1e-9):>10.0f}")
for t in targets:
    (a, ca), (b, cb) = rows[(t, "none")], rows[(t, "100-rules")]
    print(f"{t}: cost of 10 ALLOW policies x 10 rules: req/s {100 * (1 - b / a):.1f}%, req/s per CPU second {100 * (1 - (b / cb) / (a / ca)):.1f}% (goal <= 5%)")
EOF
