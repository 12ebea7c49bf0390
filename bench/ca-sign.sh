#!/usr/bin/env bash
# CA signing throughput on one core: Spar's CSR signing beside openssl signing the same kind
# of CSR (ECDSA P-256, one URI SAN) in the same run.
#
#   bench/ca-sign.sh [COUNT]     (default 20000 CSRs for Spar, 300 `openssl x509 -req` runs)
#
# Prints CSRs/s for: Spar `Ca::sign_csr` (parse + CSR signature check + SAN authorization +
# leaf + ECDSA sign), Spar's service path (bearer-token auth + TTL policy + signing),
# `openssl x509 -req` per CSR (one process per CSR, as a shell-scripted CA would do), and
# `openssl speed ecdsap256` as the raw ECDSA ceiling (one verify + one sign per CSR).
# A benchmark, not a test: it asserts nothing; the goal is >= 5,000 CSRs/s on one core.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${1:-20000}"
OPENSSL_RUNS="${OPENSSL_RUNS:-300}"
CORE="${CORE:-0}"
PIN=(taskset -c "$CORE")
command -v taskset >/dev/null || { echo "taskset not found: running unpinned" >&2; PIN=(); }
command -v openssl >/dev/null || { echo "openssl is required for the comparison (apt-get install openssl)" >&2; exit 1; }

cargo build --profile perf --quiet -p spar-ca --example ca_sign
BIN=target/perf/examples/ca_sign

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews all rows alike)"

# --- Spar ---
SPAR_OUT="$("${PIN[@]}" "$BIN" "$COUNT")"
get() { echo "$SPAR_OUT" | sed -n "s/^$1=//p"; }
SPAR_SIGN="$(get sign_csr_per_sec)"
SPAR_SERVICE="$(get service_per_sec)"
SPAR_CSR="$(get csr_check_per_sec)"
SPAR_VERIFY="$(get verify_svid_per_sec)"

# --- openssl x509 -req, one process per CSR ---
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca.key" -subj "/O=cluster.local" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/w.key" 2>/dev/null
openssl req -new -key "$WORK/w.key" -subj "/" \
  -addext "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/bench" -out "$WORK/w.csr" 2>/dev/null
cat >"$WORK/ext.cnf" <<CNF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=critical,URI:spiffe://cluster.local/ns/default/sa/bench
CNF
start=$(date +%s.%N)
for ((i = 0; i < OPENSSL_RUNS; i++)); do
  "${PIN[@]}" openssl x509 -req -in "$WORK/w.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -set_serial "$((i + 1))" -days 1 -extfile "$WORK/ext.cnf" -out "$WORK/leaf.pem" 2>/dev/null
done
end=$(date +%s.%N)
OSSL_X509="$(awk -v n="$OPENSSL_RUNS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }')"
openssl verify -CAfile "$WORK/ca.pem" "$WORK/leaf.pem" >/dev/null

# --- openssl speed: raw ECDSA P-256 sign and verify ops ---
SPEED="$("${PIN[@]}" openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ { print $(NF-1), $NF }' | tail -1)"
OSSL_SIGN="${SPEED%% *}"
OSSL_VERIFY="${SPEED##* }"
# A CSR needs one verify (its own signature) and one sign (the leaf).
OSSL_CEIL="$(awk -v s="$OSSL_SIGN" -v v="$OSSL_VERIFY" 'BEGIN { printf "%.0f", 1 / (1 / s + 1 / v) }')"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
printf '%-52s %12s %10s\n' "what (one core${PIN:+, taskset -c $CORE})" "per second" "spar/this"
printf '%-52s %12s %10s\n' "spar Ca::sign_csr (CSRs)" "$SPAR_SIGN" "1.00"
printf '%-52s %12s %10s\n' "spar service path: token auth + sign (CSRs)" "$SPAR_SERVICE" "$(ratio "$SPAR_SIGN" "$SPAR_SERVICE")"
printf '%-52s %12s %10s\n' "openssl x509 -req, one process per CSR" "$OSSL_X509" "$(ratio "$SPAR_SIGN" "$OSSL_X509")"
printf '%-52s %12s %10s\n' "openssl speed ecdsap256: verify+sign ceiling" "$OSSL_CEIL" "$(ratio "$SPAR_SIGN" "$OSSL_CEIL")"
printf '%-52s %12s\n' "  openssl speed ecdsap256 sign/s" "$OSSL_SIGN"
printf '%-52s %12s\n' "  openssl speed ecdsap256 verify/s" "$OSSL_VERIFY"
printf '%-52s %12s\n' "spar CSR parse + signature check alone" "$SPAR_CSR"
printf '%-52s %12s\n' "spar verify_svid (leaf+root chain)" "$SPAR_VERIFY"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
GOAL=5000
if awk -v a="$SPAR_SIGN" -v g="$GOAL" 'BEGIN { exit !(a >= g) }'; then
  echo "goal >= $GOAL CSRs/s on one core: met"
else
  echo "goal >= $GOAL CSRs/s on one core: NOT met on this run"
fi
