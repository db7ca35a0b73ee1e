#!/usr/bin/env bash
# Benchmark the rvs data path on DPDK virtual devices (see RESULTS.md).
#   bench/run.sh           full run (~5 min): results.json, RESULTS.md, charts
#   bench/run.sh --quick   a few seconds, tiny flow counts, no thresholds (CI)
# Extra arguments go to rvs-bench (e.g. --flows 1000,100000 --secs 5;
# --only nat6 runs only the scenarios whose names start so, --flows6 the
# IPv6 ones' flow counts: see rvs-bench --help). A full run with --only
# rewrites RESULTS.md with those rows alone.
# Needs root for hugepages; without them rvs-bench falls back to --no-huge.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
args=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then mode=quick; fi
    args+=("$a")
done
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ -w "$hp" ] && [ "$(cat "$hp")" -lt 512 ]; then
    echo 512 > "$hp" || true
fi
# The report's charts need matplotlib (Debian's package; a fresh machine
# lacks it), the build needs DPDK: tests/lib/setup.sh installs what the
# build needs.
# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh >/dev/null || { echo "run.sh: setup failed" >&2; exit 1; }
if [ "$mode" = full ] && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-matplotlib </dev/null
fi
cargo build --release -p rvs-bench --bin rvs-bench --bin rvs-tablebench
mkdir -p bench/out
cmd="bench/run.sh $*"
./target/release/rvs-bench --out bench/out/results.json "${args[@]}" 2> >(tee bench/out/run.log >&2)

# The connection table on its own (issue 5): rates, memory, mass expiry.
tb=./target/release/rvs-tablebench
if [ "$mode" = full ]; then
    ops=$($tb ops); mem=$($tb memory --n 10000000)
    exp1=$($tb expiry --n 10000000 --timeout 5 --owner creator)
    exp2=$($tb expiry --n 10000000 --timeout 5 --owner fwd)
    tko=$($tb takeover)
    tcmd="rvs-tablebench ops; memory --n 10000000; expiry --n 10000000 --timeout 5 --owner creator|fwd; takeover"
else
    ops=$($tb ops --sizes 1000,10000 --lookups 100000); mem=$($tb memory --n 100000)
    exp1=$($tb expiry --n 100000 --timeout 1 --owner creator)
    exp2=$($tb expiry --n 100000 --timeout 1 --owner fwd)
    tko=$($tb takeover --sizes 10000,100000 --max 200000)
    tcmd="rvs-tablebench (quick sizes)"
fi
/usr/bin/python3 - "$tcmd" "$ops" "$mem" "$exp1" "$exp2" "$tko" > bench/out/table.json <<'PY'
import json, sys
cmd, ops, mem, e1, e2, tko = sys.argv[1:]
print(json.dumps({"cmd": cmd, **json.loads(ops), **json.loads(mem),
                  "expiry": [json.loads(e1)["expiry"], json.loads(e2)["expiry"]],
                  **json.loads(tko)}))
PY
if [ "$mode" = full ]; then
    /usr/bin/python3 bench/report.py bench/out/results.json --cmd "$cmd" --table bench/out/table.json --md bench/RESULTS.md --charts bench
else
    /usr/bin/python3 bench/report.py bench/out/results.json --cmd "$cmd" --table bench/out/table.json --md bench/out/RESULTS-quick.md
fi
