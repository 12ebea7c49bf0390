# Sourced by bench/proxy-http.sh: the targets configured by `spar control-plane` (Envoy and
# `spar proxy`), as gateways carrying the bench's traffic and as sidecars holding a large mesh
# for the memory figures. Uses proxy-http.sh's variables ($dir, $out, $spar, $envoy, $pids,
# $origin_port, $PROXY_CPU, $SERVICES) and helpers (free_port, rss_mb, stop, until_ok, load).

# start_cp NAME CONFIG-DIR: a control plane; sets cp_pid, cp_xds, cp_mon.
start_cp() {
  local err=$dir/cp-$1.err
  "$spar" control-plane --config-dir "$2" --xds-addr 127.0.0.1:0 \
    --monitoring-addr 127.0.0.1:0 2>"$err" &
  cp_pid=$!; pids+=("$cp_pid")
  cp_xds=; cp_mon=
  local end=$(( $(date +%s) + 120 ))
  while [ -z "$cp_xds" ] || [ -z "$cp_mon" ]; do
    kill -0 "$cp_pid" 2>/dev/null || { cat "$err" >&2; exit 1; }
    [ "$(date +%s)" -lt "$end" ] || { echo "control plane $1 did not start" >&2; exit 1; }
    sleep 0.05
    cp_xds=$(sed -n 's/^xds listening on //p' "$err")
    cp_mon=$(sed -n 's/^monitoring listening on //p' "$err")
  done
}

# synced MONITORING NODE-ID: the control plane saw NODE ACK every type it was sent.
synced() {
  curl -sf "http://$1/debug/syncz" | python3 -c '
import json, sys
node = sys.argv[1]
ps = [p for p in json.load(sys.stdin) if p["proxy"] == node]
ok = ps and all(t in ps[-1]["types"] for t in ("cds", "eds", "lds")) and all(
    s["state"] == "SYNCED" for s in ps[-1]["types"].values())
sys.exit(0 if ok else 1)' "$2"
}

# start_target envoy|spar ROLE NODE-ID: sets tgt_pid (and envoy_admin for Envoy).
start_target() {
  local kind=$1 role=$2 node=$3 work=$dir/$1-$2
  mkdir -p "$work"
  if [ "$kind" = envoy ]; then
    local labels=()
    [ "$role" = gateway ] && labels=(--label istio=ingressgateway)
    "$spar" bootstrap envoy --node-id "$node" --role "$role" --xds-addr "$cp_xds" \
      --admin-port 0 "${labels[@]}" > "$work/envoy.json"
    taskset -c "$PROXY_CPU" "$envoy" -c "$work/envoy.json" --admin-address-path "$work/admin" \
      --log-path "$work/envoy.log" --disable-hot-restart --concurrency 1 -l warning \
      >/dev/null 2>&1 &
    tgt_pid=$!; pids+=("$tgt_pid")
    until_ok 30 "Envoy's admin address" test -s "$work/admin"
    envoy_admin=$(cat "$work/admin")
  else
    local args=(--node-id "$node" --role "$role" --xds-addr "$cp_xds" --admin-port 0)
    [ "$role" = gateway ] && args+=(--labels istio=ingressgateway)
    [ "$role" = sidecar ] && args+=(--outbound-port "$(free_port)" --inbound-port "$(free_port)")
    # shellcheck disable=SC2086  # SPAR_ENV is a list of NAME=VALUE words
    env TOKIO_WORKER_THREADS=1 RUST_LOG=warn ${SPAR_ENV:-} \
      taskset -c "$PROXY_CPU" "$spar" proxy "${args[@]}" 2>"$work/proxy.err" &
    tgt_pid=$!; pids+=("$tgt_pid")
  fi
}

# envoy_memory FIELD: one figure of Envoy's /memory, in MB.
envoy_memory() {
  curl -sf "http://$envoy_admin/memory" |
    python3 -c 'import json, sys; print("%.1f" % (int(json.load(sys.stdin)[sys.argv[1]]) / 2**20))' "$1"
}

gateway_cp=
# gateway_run envoy|spar: the gateway carries the load; idle and loaded RSS are kept.
gateway_run() {
  local kind=$1
  if [ -z "$gateway_cp" ]; then
    gw_port=$(free_port)
    mkdir -p "$dir/gw-config"
    cat > "$dir/gw-config/gateway.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: origin, namespace: default}
spec:
  selector: {app: origin}
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: origin-1
  namespace: default
  labels: {kubernetes.io/service-name: origin}
addressType: IPv4
ports: [{name: http, port: $origin_port}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {ready: true}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: $gw_port, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: origin, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: origin.default.svc.cluster.local, port: {number: 80}}}]
EOF
    "$spar" validate "$dir/gw-config" >/dev/null
    start_cp gateway "$dir/gw-config"
    gateway_cp=$cp_pid
  fi
  local node="router~127.0.0.1~bench-$kind.istio-system~istio-system.svc.cluster.local"
  start_target "$kind" gateway "$node"
  local url="http://127.0.0.1:$gw_port/1k"
  until_ok 60 "the $kind gateway to serve $url" serves_1k "$url"
  {
    echo "rss_idle $(rss_mb "$tgt_pid")"
    echo "anon_idle $(rss_mb "$tgt_pid" RssAnon)"
    [ "$kind" = envoy ] && echo "allocated_idle $(envoy_memory allocated)"
  } > "$out/mem-$kind.txt"
  load "$kind" "$tgt_pid" "$url" "$url"
  echo "rss_loaded $(rss_mb "$tgt_pid")" >> "$out/mem-$kind.txt"
  stop "$tgt_pid"
}

# mesh_memory: Envoy and spar proxy, one after the other, as sidecars seeing $SERVICES services.
mesh_memory() {
  [ -z "$gateway_cp" ] || { stop "$gateway_cp"; gateway_cp=; }
  python3 bench/gen_mesh.py gen "$dir/mesh" "$SERVICES" 10
  start_cp mesh "$dir/mesh"
  local kind node
  for kind in spar envoy; do
    case " $TARGETS " in *" $kind "*) ;; *) continue ;; esac
    node="sidecar~127.0.0.1~bench-$kind.default~default.svc.cluster.local"
    echo "-- $kind: sidecar with $SERVICES services" >&2
    start_target "$kind" sidecar "$node"
    if until_ok 120 "$kind to ACK the mesh config" synced "$cp_mon" "$node"; then
      # Let the just-applied config settle (old snapshot dropped, allocator trimmed).
      sleep 2
      {
        echo "services $SERVICES"
        echo "rss_mesh $(rss_mb "$tgt_pid")"
        echo "anon_mesh $(rss_mb "$tgt_pid" RssAnon)"
        if [ "$kind" = envoy ]; then
          echo "allocated_mesh $(envoy_memory allocated)"
          echo "heap_mesh $(envoy_memory heap_size)"
          echo "clusters_mesh $(curl -sf "http://$envoy_admin/stats?filter=^cluster_manager.active_clusters$" |
            sed -n 's/.*: //p')"
        fi
      } >> "$out/mem-$kind.txt"
    else
      curl -sf "http://$cp_mon/debug/syncz" | head -c 2000 >&2 || true
    fi
    stop "$tgt_pid"
  done
}
