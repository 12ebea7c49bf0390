#!/usr/bin/env bash
# Control-plane bench: `spar control-plane` serving SERVICES Services x ENDPOINTS endpoints
# (EndpointSlices, plus VirtualServices/DestinationRules for every tenth service) to PROXIES
# simulated Envoy sidecars of WORKLOADS workloads (`spar-xds-load`, our own xDS load client
# speaking Envoy's ADS protocol), once over state-of-the-world ADS and once over delta.
#
# Reports, per variant: control-plane RSS (VmRSS/VmHWM from /proc) after loading the config,
# after the full push and at the end; the time from the first connection until every proxy
# has ACKed its whole config (CDS, EDS, LDS, RDS); and for CHANGES endpoint changes, each
# written to disk by atomic rename, p50/p99 of the time from the rename to the last affected
# proxy's ACK of an assignment carrying the new address.
#
# Goals (issue): RSS <= 300 MB, full push <= 2 s, endpoint-change convergence p99 <= 100 ms.
#
# No istiod beside it: istiod needs a Kubernetes API server (or its file-based test mode,
# which needs an Istio build) that this environment does not provide, and nothing stands in
# for it. What runs beside it is the floor: after each variant, the bytes its full push put
# through loopback (per proxy, requests and ACKs included) are sent again over as many plain
# TCP connections, one writer and one reader process (bench/tcp_floor.py), and the push's
# time is printed against that. The load client shares the CPU with the control plane (2
# cores here), so the figures are pessimistic for the control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-1000}
ENDPOINTS=${ENDPOINTS:-10}
PROXIES=${PROXIES:-2000}
WORKLOADS=${WORKLOADS:-20}
CHANGES=${CHANGES:-20}
VARIANTS=${VARIANTS:-"sotw delta"}
# Extra flags for `spar control-plane` (e.g. "--push-debounce 100ms --debounce 10ms").
CP_FLAGS=${CP_FLAGS:-}

# PERF_CHANGES=1 records the control plane with `perf record -g` during the endpoint changes
# and prints where its CPU time went (PERF_CHANGES=load: the load client); KEEP=1 keeps the work directory (logs, perf data).
# NO_BUILD=1 reuses the binaries already built; PROFILE=release skips the perf profile's
# ten-minute link while iterating.
PROFILE=${PROFILE:-perf}
[ -n "${NO_BUILD:-}" ] || cargo build --profile "$PROFILE" -q --bin spar --bin spar-xds-load
spar=./target/$PROFILE/spar
load=./target/$PROFILE/spar-xds-load
ulimit -n "$(( PROXIES * 2 + 1024 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $(( PROXIES * 2 + 64 )) ]; then
  echo "open-file limit $(ulimit -n) is too low for $PROXIES proxies; raise it (ulimit -n)" >&2
  exit 1
fi

dir=$(mktemp -d)
cp_pid=
load_pid=
cleanup() {
  if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; fi
  if [ -n "$cp_pid" ]; then kill "$cp_pid" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
python3 bench/gen_mesh.py gen "$dir/config" "$SERVICES" "$ENDPOINTS"
"$spar" validate "$dir/config" >/dev/null || { echo "generated config did not validate" >&2; exit 1; }

# CPU seconds (user+system) a process has used so far, and the two apart.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f %.2f", ($14 + $15) / hz, $14 / hz, $15 / hz }' "/proc/$1/stat"; }
# Bytes received on loopback so far (each byte sent between local processes, once).
lo_bytes() { awk -F'[: ]+' '$2 == "lo" { print $3 }' /proc/net/dev; }
rss() { awk -v k="$2:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))' "$1" "$2"; }

run_variant() {
  local variant=$1 flag=
  [ "$variant" = delta ] && flag=--delta
  : > "$dir/cp.err"
  # shellcheck disable=SC2086
  env ${CP_ENV:-} "$spar" control-plane --config-dir "$dir/config" --xds-addr 127.0.0.1:0 \
    --monitoring-addr 127.0.0.1:0 $CP_FLAGS 2>"$dir/cp.err" &
  cp_pid=$!
  local addr=
  for _ in $(seq 600); do
    addr=$(sed -n 's/^xds listening on //p' "$dir/cp.err")
    [ -n "$addr" ] && break
    kill -0 "$cp_pid" 2>/dev/null || { cat "$dir/cp.err" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$addr" ] || { echo "control plane did not start" >&2; exit 1; }
  local rss_loaded; rss_loaded=$(rss "$cp_pid" VmRSS)
  local cpu_loaded; cpu_loaded=$(cpu "$cp_pid")

  local lo_before; lo_before=$(lo_bytes)
  coproc LOAD { exec env ${LOAD_ENV:-} "$load" --xds-addr "$addr" --proxies "$PROXIES" --workloads "$WORKLOADS" \
    $flag --mode watch 2>"$dir/load.err"; }
  load_pid=$LOAD_PID
  local line full
  read -r line <&"${LOAD[0]}" || { cat "$dir/load.err" >&2; exit 1; }
  full=${line#ready }
  # Everything the push and its requests and ACKs put through loopback, per proxy.
  local push_bytes=$(( ($(lo_bytes) - lo_before) / PROXIES ))
  local rss_full; rss_full=$(rss "$cp_pid" VmRSS)
  local cpu_full_cp cpu_full_load
  cpu_full_cp=$(python3 -c 'import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); print(" / ".join("%.2f" % (float(y) - float(x)) for x, y in zip(a, b)))' "$cpu_loaded" "$(cpu "$cp_pid")")
  cpu_full_load=$(cpu "$load_pid" | awk '{ printf "%.2f / %.2f / %.2f", $1, $2, $3 }')
  echo "  $variant full push: $full; RSS ${rss_full} MB" >&2
  local cpu_changes_cp cpu_changes_load
  cpu_changes_cp=$(cpu "$cp_pid" | cut -d' ' -f1)
  cpu_changes_load=$(cpu "$load_pid" | cut -d' ' -f1)
  local perf=
  if [ -n "${PERF_CHANGES:-}" ]; then
    local perf_pid=$cp_pid
    [ "$PERF_CHANGES" = load ] && perf_pid=$load_pid
    perf record -q ${PERF_CALLGRAPH:--g} -o "$dir/$variant-changes.perf.data" -p "$perf_pid" 2>/dev/null &
    perf=$!
  fi
  for _ in $(seq "$CHANGES"); do
    # Numbered across variants: every change writes an address never written before.
    change_no=$(( change_no + 1 ))
    local k=$change_no
    local svc=$(( (k * 37) % SERVICES ))
    local host; host=$(printf 'svc-%04d.default.svc.cluster.local' "$svc")
    local ip="10.$(( 64 + ((k >> 16) & 63) )).$(( (k >> 8) & 255 )).$(( k & 255 ))"
    echo "expect $k outbound|80||$host $ip" >&"${LOAD[1]}"
    read -r line <&"${LOAD[0]}"
    local out; out=$(python3 bench/gen_mesh.py change "$dir/config" "$svc" "$k")
    echo "wrote $k ${out#* }" >&"${LOAD[1]}"
    read -r line <&"${LOAD[0]}"
    printf '  change %2d (%s -> %s): %s\n' "$k" "$host" "$ip" "${line#converged }" >&2
  done
  if [ -n "$perf" ]; then
    kill -INT "$perf"; wait "$perf" || true
    perf report -i "$dir/$variant-changes.perf.data" --no-children --percent-limit 1 --stdio \
      -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -50 > "$dir/$variant-changes.perf.txt" || true
    echo "   perf profile of the $([ "$PERF_CHANGES" = load ] && echo "load client" || echo "control plane") during the changes (self time):" >&2
    cat "$dir/$variant-changes.perf.txt" >&2
  fi
  # CPU per change, in ms (includes the bench's idle waits, which cost next to nothing).
  cpu_changes_cp=$(awk -v a="$cpu_changes_cp" -v b="$(cpu "$cp_pid" | cut -d' ' -f1)" -v n="$CHANGES" 'BEGIN { printf "%.0f", (b - a) * 1000 / n }')
  cpu_changes_load=$(awk -v a="$cpu_changes_load" -v b="$(cpu "$load_pid" | cut -d' ' -f1)" -v n="$CHANGES" 'BEGIN { printf "%.0f", (b - a) * 1000 / n }')
  exec {LOAD[1]}>&-
  read -r line <&"${LOAD[0]}"
  local summary=${line#summary }
  local rss_end hwm
  rss_end=$(rss "$cp_pid" VmRSS)
  hwm=$(rss "$cp_pid" VmHWM)
  kill "$cp_pid"; wait "$cp_pid" 2>/dev/null || true; cp_pid=; load_pid=
  wait 2>/dev/null || true

  # The floor: the same bytes per connection over plain TCP, nothing else running.
  local floor; floor=$(python3 bench/tcp_floor.py "$PROXIES" "$push_bytes")
  local push p99 p50 complete incomplete
  push=$(field "$full" 'full_push_seconds["max"]')
  complete=$(field "$full" 'complete')
  p50=$(field "$summary" 'write_to_all_acked_ms["p50"]')
  p99=$(field "$summary" 'write_to_all_acked_ms["p99"]')
  incomplete=$(field "$summary" 'incomplete_changes')
  verdict() { python3 -c "import sys; v=sys.argv[1]; print('met' if v not in ('None', 'nan') and float(v) <= float(sys.argv[2]) else 'NOT met')" "$1" "$2"; }
  echo
  echo "== $variant: $SERVICES services x $ENDPOINTS endpoints, $PROXIES proxies ($WORKLOADS workloads) =="
  echo "   resources per proxy: $(field "$full" 'per_proxy_resources')"
  printf '%-52s %12s %12s %8s\n' "figure" "measured" "goal" ""
  printf '%-52s %12s %12s\n' "RSS after loading the config (MB)" "$rss_loaded" "-"
  printf '%-52s %12s %12s\n' "RSS after the full push (MB)" "$rss_full" "-"
  printf '%-52s %12s %12s %8s\n' "RSS steady, after the changes (MB)" "$rss_end" "<= 300" "$(verdict "$rss_end" 300)"
  printf '%-52s %12s %12s %8s\n' "RSS peak, VmHWM (MB)" "$hwm" "<= 300" "$(verdict "$hwm" 300)"
  printf '%-52s %12s %12s %8s\n' "full push to all $complete/$PROXIES proxies (s)" "$push" "<= 2" "$(verdict "$push" 2)"
  printf '%-52s %24s\n' "  CPU s in it, control plane (total / user / sys)" "$cpu_full_cp"
  printf '%-52s %12s\n' "  bytes through loopback per proxy" "$push_bytes"
  printf '%-52s %12s %12s\n' "  the same bytes over plain TCP, no HTTP/2 (s)" "$(field "$floor" 'seconds')" "-"
  printf '%-52s %12s\n' "  full push / plain TCP" "$(python3 -c 'import sys; print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))' "$push" "$(field "$floor" 'seconds')")"
  printf '%-52s %24s\n' "  plain TCP CPU s, writer / reader" "$(field "$floor" 'writer_cpu_s') / $(field "$floor" 'reader_cpu_s')"
  printf '%-52s %24s\n' "  CPU s in it, load client (total / user / sys)" "$cpu_full_load"
  printf '%-52s %12s %12s\n' "endpoint change -> all affected ACKed, p50 (ms)" "$p50" "-"
  printf '%-52s %12s %12s %8s\n' "endpoint change -> all affected ACKed, p99 (ms)" "$p99" "<= 100" "$(verdict "$p99" 100)"
  printf '%-52s %24s\n' "  CPU ms per change, control plane / load client" "$cpu_changes_cp / $cpu_changes_load"
  [ "$incomplete" = 0 ] || echo "   $incomplete change(s) did not reach every affected proxy within the timeout"
  echo "   full push detail: $full"
  echo "   changes detail:   $summary"
}

change_no=0
for v in $VARIANTS; do run_variant "$v"; done
