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

cargo build --profile perf -q --bin spar
python3 bench/gen_config.py "$dir/config" "$N"
du -sh "$dir/config" | awk '{print "size on disk: " $1}'

# Best wall time (seconds) and peak RSS (KB) of RUNS runs of a command, measured by
# Python's resource accounting so nothing beyond python3 is needed.
measure() {
  python3 - "$RUNS" "$@" <<'PY'
import resource, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
best = float("inf")
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    best = min(best, time.perf_counter() - t)
print(f"{best:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
PY
}

./target/perf/spar validate "$dir/config" >/dev/null 2>&1 || { echo "generated config did not validate"; exit 1; }
read -r spar_s rss < <(measure ./target/perf/spar validate "$dir/config")

py_s=na
if python3 -c 'import yaml; yaml.CSafeLoader' 2>/dev/null; then
  cat > "$dir/parse.py" <<'PY'
import glob, sys, yaml
for f in glob.glob(sys.argv[1] + "/*.yaml"):
    list(yaml.load_all(open(f), Loader=yaml.CSafeLoader))
PY
  read -r py_s _ < <(measure python3 "$dir/parse.py" "$dir/config")
fi

printf '\n%-48s %10s\n' "what ($N resources)" "seconds"
printf '%-48s %10s\n' "spar validate (parse+schema+typed+webhook)" "$spar_s"
printf '%-48s %10s\n' "PyYAML CSafeLoader (parse only)" "$py_s"
printf 'spar peak RSS: %s KB\n' "$rss"
if [ "$py_s" != na ]; then
  python3 -c "print(f'ratio spar/pyyaml-parse-only: {$spar_s/$py_s:.2f}x')"
fi
python3 -c "import sys; t=$spar_s; print('goal (< 1 s):', 'met' if t < 1.0 else 'NOT met')"
