#!/usr/bin/env bash
# Parse-and-validate throughput: `spar validate` over a 10,000-resource, ~10 MB
# directory, beside a parse-only baseline (PyYAML's C loader) on the same files.
# Goal (issue 2): well under one second for spar.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
RUNS=${RUNS:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cargo build --release -q --bin spar
python3 bench/gen_config.py "$dir/config" "$N"
du -sh "$dir/config" | awk '{print "size on disk: " $1}'

best() { # best wall time in seconds of RUNS runs of "$@"
  local best=999 t
  for _ in $(seq "$RUNS"); do
    t=$( { /usr/bin/time -f %e "$@" >/dev/null 2>/dev/null; } 2>&1 | tail -1 )
    best=$(python3 -c "print(min($best, $t))")
  done
  echo "$best"
}

spar_s=$(best ./target/release/spar validate "$dir/config")
rss=$( { /usr/bin/time -f %M ./target/release/spar validate "$dir/config" >/dev/null 2>/dev/null; } 2>&1 | tail -1 )
./target/release/spar validate "$dir/config" >/dev/null || { echo "generated config did not validate"; exit 1; }

py_s=na
if python3 -c 'import yaml; yaml.CSafeLoader' 2>/dev/null; then
  py_s=$(best python3 -c '
import sys, glob, yaml
for f in glob.glob(sys.argv[1] + "/*.yaml"):
    list(yaml.load_all(open(f), Loader=yaml.CSafeLoader))
' "$dir/config")
fi

printf '\n%-48s %10s\n' "what ($N resources)" "seconds"
printf '%-48s %10s\n' "spar validate (parse+schema+typed+webhook)" "$spar_s"
printf '%-48s %10s\n' "PyYAML CSafeLoader (parse only)" "$py_s"
printf 'spar peak RSS: %s KB\n' "$rss"
if [ "$py_s" != na ]; then
  python3 -c "print(f'ratio spar/pyyaml-parse-only: {$spar_s/$py_s:.2f}x')"
fi
python3 -c "import sys; t=$spar_s; print('goal (< 1 s):', 'met' if t < 1.0 else 'NOT met')"
