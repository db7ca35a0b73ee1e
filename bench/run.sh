#!/usr/bin/env bash
# Benchmark the rvs data path on DPDK virtual devices (see RESULTS.md).
#   bench/run.sh           full run (~5 min): results.json, RESULTS.md, charts
#   bench/run.sh --quick   a few seconds, tiny flow counts, no thresholds (CI)
# Extra arguments go to rvs-bench (e.g. --flows 1000,100000 --secs 5).
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
cargo build --release --bin rvs-bench
mkdir -p bench/out
cmd="bench/run.sh $*"
./target/release/rvs-bench --out bench/out/results.json "${args[@]}" 2> >(tee bench/out/run.log >&2)
if [ "$mode" = full ]; then
    /usr/bin/python3 bench/report.py bench/out/results.json --cmd "$cmd" --md bench/RESULTS.md --charts bench
else
    /usr/bin/python3 bench/report.py bench/out/results.json --cmd "$cmd" --md bench/out/RESULTS-quick.md
fi
