#!/usr/bin/env bash
# mTLS mesh-hop bench (root; Linux network namespaces): a client pod calls an origin pod
# through its sidecar and the origin's sidecar, under PeerAuthentication STRICT and a
# DestinationRule ISTIO_MUTUAL, with iptables capture (`spar iptables`) in both pods, as in
# a Kubernetes mesh. Side by side in one run:
#   direct   wrk -> origin (no sidecars, no capture: the floor),
#   envoy    two Envoys (--concurrency 1), configured by `spar control-plane` and given their
#            SVIDs over SDS on its authenticated port (15012),
#   spar     two `spar proxy` sidecars (TOKIO_WORKER_THREADS=1), SVIDs from the same CA.
# The origin is nginx (one worker) serving 1,024 bytes. Both sidecars are pinned to CPU
# $PROXY_CPU; wrk and the origin to $LOAD_CPU. Per target: `wrk -c1` (p50/p99 at one
# connection; "added" = target minus direct) and `wrk -c32` (req/s, p50, p99).
#
# Goal (issue): the added p50/p99 of the mTLS hop, beside the same hop through two Envoys.
# A bench, not a test: it asserts nothing beyond the setup working (each target must serve
# the file, and plaintext from outside the mesh must be refused while sidecars run).
#
# Peers: scripts/install-bench-peers (nginx, wrk, Envoy). Figures are only as good as the
# machine is quiet: the load average is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-"direct envoy spar"}
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, iptables)" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --profile perf -q --bin spar
spar=$PWD/target/perf/spar
for tool in nginx wrk taskset curl ip iptables-restore setpriv; do
  command -v "$tool" >/dev/null || { echo "no $tool: run scripts/install-bench-peers" >&2; exit 1; }
done
envoy=$(scripts/envoy-path) || { echo "no Envoy: run scripts/install-bench-peers" >&2; exit 1; }

tag=$$
hub=bmh$tag client=bmc$tag server=bms$tag
HUB_IP=10.77.0.254 CLIENT_IP=10.77.0.1 SERVER_IP=10.77.0.2 VIP=10.96.77.1
dir=$(mktemp -d)
chmod 755 "$dir"
out=$dir/out
mkdir -p "$out" "$dir/logs"
# The sidecars run as the proxy's uid and write their logs here; it may not be able to
# reach the Envoy pip installed (under /root), so it runs a copy.
chmod 1777 "$dir/logs"
cp "$envoy" "$dir/envoy"
chmod 755 "$dir/envoy"
envoy=$dir/envoy
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in $hub $client $server; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
as_proxy() { local ns=$1; shift; ip netns exec "$ns" setpriv --reuid=1337 --regid=1337 --clear-groups "$@"; }
until_ok() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "timed out waiting for $what" >&2; return 1; fi
    sleep 0.1
  done
}
serves_1k() { [ "$(in_ns "$1" curl -sf -o /dev/null -w '%{http_code} %{size_download}' "$2")" = "200 1024" ]; }

# == the pods ==
for ns in $hub $client $server; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$hub" link add br0 type bridge
ip -n "$hub" addr add "$HUB_IP/24" dev br0
ip -n "$hub" link set br0 up
for pod in "$client:$CLIENT_IP:c" "$server:$SERVER_IP:s"; do
  IFS=: read -r ns addr t <<<"$pod"
  ip link add "e$t$tag" netns "$ns" type veth peer name "h$t$tag" netns "$hub"
  ip -n "$ns" addr add "$addr/24" dev "e$t$tag"
  ip -n "$ns" link set "e$t$tag" up
  ip -n "$hub" link set "h$t$tag" master br0
  ip -n "$hub" link set "h$t$tag" up
  ip -n "$ns" route add default dev "e$t$tag"
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n%s origin origin.default origin.default.svc.cluster.local\n' "$VIP" > "/etc/netns/$ns/hosts"
done

# == the origin (server pod, all addresses) ==
mkdir -p "$dir/www" "$dir/origin"
head -c 1024 /dev/zero | tr '\0' 'x' > "$dir/www/1k"
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
  server { listen 8080; root $dir/www; }
}
EOF
in_ns "$server" taskset -c "$LOAD_CPU" nginx -c "$dir/origin/nginx.conf" -e "$dir/origin/error.log" &
pids+=($!)

# == the mesh config and the control plane (hub), with its CA ==
mkdir -p "$dir/config"
cat > "$dir/config/mesh.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec:
  clusterIP: $VIP
  selector: {app: origin}
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: origin-1, namespace: default, labels: {kubernetes.io/service-name: origin}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [$SERVER_IP], targetRef: {kind: Pod, name: origin-1}}]
---
apiVersion: v1
kind: Pod
metadata: {name: origin-1, namespace: default, labels: {app: origin}}
spec: {containers: [{name: origin}], serviceAccountName: origin}
status: {podIP: $SERVER_IP}
---
apiVersion: v1
kind: Pod
metadata: {name: client-1, namespace: default, labels: {app: client}}
spec: {containers: [{name: client}], serviceAccountName: client}
status: {podIP: $CLIENT_IP}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: origin, namespace: default}
spec:
  host: origin.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
EOF
printf 'tok-client default/client\ntok-origin default/origin\n' > "$dir/tokens"
echo tok-client > "$dir/client.token"
echo tok-origin > "$dir/origin.token"
chmod 644 "$dir"/*.token
in_ns "$hub" "$spar" control-plane --config-dir "$dir/config" \
  --xds-addr "$HUB_IP:15010" --ca-addr "$HUB_IP:15012" --monitoring-addr 127.0.0.1:15014 \
  --data-dir "$dir/data" --ca-tokens "$dir/tokens" 2>"$dir/cp.log" &
pids+=($!)
until_ok 30 "the CA root" test -s "$dir/data/ca/root-cert.pem"
cp "$dir/data/ca/root-cert.pem" "$dir/root-cert.pem"
chmod 644 "$dir/root-cert.pem"

# == load ==
# load NAME URL PIDS...: wrk at 32 and at 1 connection from the client pod; CPU of PIDS.
load() {
  local name=$1 url=$2; shift 2
  until_ok 60 "$name to serve the file" serves_1k "$client" "$url"
  echo "-- $name: wrk -c32, wrk -c1" >&2
  local t0=0 t1=0 p
  for p in "$@"; do t0=$(( t0 + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done
  in_ns "$client" taskset -c "$LOAD_CPU" wrk -t1 -c32 -d"$DURATION" --latency "$url" > "$out/$name-c32.txt"
  for p in "$@"; do t1=$(( t1 + $(awk '{ print $14 + $15 }' "/proc/$p/stat") )); done
  echo "$(( t1 - t0 )) $(getconf CLK_TCK)" > "$out/$name-cpu.txt"
  in_ns "$client" taskset -c "$LOAD_CPU" wrk -t1 -c1 -d"$DURATION" --latency "$url" > "$out/$name-c1.txt"
}
# stop_all PIDS...: the sidecar processes (found in their namespaces; not our children) and
# the subshells that started them; returns once they are gone.
stop_all() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    wait "$p" 2>/dev/null || true
    while [ -e "/proc/$p" ]; do sleep 0.05; done
  done
}
refused_outside() {
  if in_ns "$hub" curl -sf -m 3 -o /dev/null "http://$SERVER_IP:8080/1k"; then
    echo "plaintext from outside the mesh reached the origin under STRICT: the $1 sidecars are not in the path" >&2
    exit 1
  fi
}

echo "peers: $(nginx -v 2>&1 | sed 's/.*: //'), envoy $("$envoy" --version | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average before: $load_before ($(nproc) CPUs); sidecars on CPU $PROXY_CPU, origin and wrk on CPU $LOAD_CPU" >&2
captured=
for target in $TARGETS; do
  if [ "$target" != direct ] && [ -z "$captured" ]; then
    for ns in $client $server; do "$spar" iptables --netns "$ns" -u 1337 >/dev/null; done
    captured=1
  fi
  case $target in
  direct)
    [ -z "$captured" ] || { echo "direct must come first (before capture)" >&2; exit 1; }
    load direct "http://$SERVER_IP:8080/1k" "$(pgrep -f "nginx -c $dir/origin" | head -1)"
    ;;
  envoy)
    started=()
    for pod in "client:$client:$CLIENT_IP" "origin:$server:$SERVER_IP"; do
      IFS=: read -r app ns addr <<<"$pod"
      "$spar" bootstrap envoy --node-id "sidecar~$addr~$app-1.default~default.svc.cluster.local" \
        --xds-addr "$HUB_IP:15012" --admin-port 15000 --label "app=$app" --service-account "$app" \
        --ads delta --xds-root-cert "$dir/root-cert.pem" --xds-token-file "$dir/$app.token" \
        > "$dir/envoy-$app.json"
      as_proxy "$ns" taskset -c "$PROXY_CPU" "$envoy" -c "$dir/envoy-$app.json" \
        --disable-hot-restart --concurrency 1 -l warn --log-path "$dir/logs/envoy-$app.log" \
        2>"$dir/logs/envoy-$app.stderr" &
      pids+=($!); started+=($!)
    done
    sleep 1
    envoy_pids=()
    for ns in $client $server; do envoy_pids+=("$(ip netns pids "$ns" | xargs -r ps -o pid=,comm= -p | awk '$2 == "envoy" { print $1 }' | head -1)"); done
    load envoy "http://origin:8080/1k" "${envoy_pids[@]}"
    refused_outside envoy
    stop_all "${envoy_pids[@]}" "${started[@]}"
    ;;
  spar)
    started=()
    for pod in "client:$client:$CLIENT_IP" "origin:$server:$SERVER_IP"; do
      IFS=: read -r app ns addr <<<"$pod"
      as_proxy "$ns" env TOKIO_WORKER_THREADS=1 taskset -c "$PROXY_CPU" "$spar" proxy \
        --role sidecar --namespace default --workload "$app-1" --ip "$addr" --labels "app=$app" \
        --service-account "$app" --xds-addr "$HUB_IP:15010" --admin-port 15000 \
        --ca-addr "https://$HUB_IP:15012" --ca-root "$dir/root-cert.pem" \
        --ca-token-file "$dir/$app.token" 2>"$dir/logs/spar-$app.log" &
      pids+=($!); started+=($!)
    done
    sleep 1
    spar_pids=()
    for ns in $client $server; do spar_pids+=("$(ip netns pids "$ns" | xargs -r ps -o pid=,comm= -p | awk '$2 == "spar" { print $1 }' | head -1)"); done
    load spar "http://origin:8080/1k" "${spar_pids[@]}"
    refused_outside spar
    stop_all "${spar_pids[@]}" "${started[@]}"
    ;;
  *) echo "unknown target $target (direct envoy spar)" >&2; exit 1 ;;
  esac
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
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", t)
    return us(lat["50"]), us(lat["99"]), rps, errs.group(0) if errs else ""
rows = {}
for t in targets:
    c1, c32 = wrk(f"{out}/{t}-c1.txt"), wrk(f"{out}/{t}-c32.txt")
    ticks, hz = map(int, open(f"{out}/{t}-cpu.txt").read().split())
    rows[t] = (c1, c32, ticks / hz)
base = rows.get("direct")
print(f"{'target':8} {'c1 p50':>9} {'c1 p99':>9} {'added p50':>10} {'added p99':>10} {'c32 req/s':>10} {'c32 p50':>9} {'c32 p99':>9} {'CPU s (c32)':>12}")
for t, (c1, c32, cpu) in rows.items():
    add50 = f"{c1[0] - base[0][0]:.0f}" if base and t != "direct" else "-"
    add99 = f"{c1[1] - base[0][1]:.0f}" if base and t != "direct" else "-"
    print(f"{t:8} {c1[0]:>9.0f} {c1[1]:>9.0f} {add50:>10} {add99:>10} {c32[2]:>10.0f} {c32[0]:>9.0f} {c32[1]:>9.0f} {cpu:>12.2f}" + (f"  ({c1[3]} {c32[3]})" if c1[3] or c32[3] else ""))
print("latencies in µs; added = target minus direct at one connection; CPU s = both sidecars (or the origin, for direct) during wrk -c32")
if base and "envoy" in rows and "spar" in rows:
    e, s = rows["envoy"], rows["spar"]
    print(f"spar vs envoy: added p50 {s[0][0]-base[0][0]:.0f} vs {e[0][0]-base[0][0]:.0f} µs, added p99 {s[0][1]-base[0][1]:.0f} vs {e[0][1]-base[0][1]:.0f} µs, req/s x{s[1][2]/e[1][2]:.2f}, req/s per CPU s x{(s[1][2]/max(s[2],1e-9))/(e[1][2]/max(e[2],1e-9)):.2f}")
EOF
