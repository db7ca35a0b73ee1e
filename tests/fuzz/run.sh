#!/usr/bin/env bash
# Bounded fuzzing with cargo-fuzz (libFuzzer), on the stable toolchain:
#
#   bash tests/fuzz/run.sh                       # every target, ~60 s in all (CI)
#   FUZZ_TIME=3600 bash tests/fuzz/run.sh datapath   # one target, an hour
#   FUZZ_ARGS="-jobs=2 -workers=2" FUZZ_TIME=600 bash tests/fuzz/run.sh datapath
#
# Targets (tests/fuzz/fuzz_targets/, logic in tests/fuzz/src/harness.rs and, for sync and region, tables.rs):
# wire (packet parsers), datapath (the whole per-packet path in every
# forwarding mode), control (the control socket's request parser/handler),
# sync (the IPVS connection-sync message parser and backup insertion),
# region (a previous rvsd's connection table file taken over).
#
# `-s none`: no sanitizer. AddressSanitizer needs nightly's -Zsanitizer, and
# the code under test is safe Rust; the coverage instrumentation cargo-fuzz
# adds otherwise (-Cpasses=sancov-module, -Cllvm-args=...) is stable. Debug
# assertions and overflow checks are on.
#
# Each target starts from its committed seeds and past findings
# (tests/fuzz/seeds/<t>, tests/fuzz/regressions/<t>) plus a scratch corpus
# (tests/fuzz/corpus/<t>, git-ignored, kept between local runs). A crash
# leaves its input in tests/fuzz/artifacts/<t>/ and fails the run; to keep
# it as a regression, copy it to tests/fuzz/regressions/<t>/ with a name
# that says what it is (tests/fuzz_corpus.rs replays it in the test suite).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
fuzz_dir=tests/fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz missing (cargo install cargo-fuzz --locked)" >&2
    exit 1
fi

# Seconds per target when FUZZ_TIME is not set: the datapath target is the
# slowest per input and has the most to explore.
declare -A default_time=([wire]=10 [control]=15 [datapath]=30 [sync]=5 [region]=5)
# libFuzzer options per target.
declare -A target_args=(
    [wire]="-max_len=2048"
    [control]="-max_len=4096 -dict=$fuzz_dir/control.dict"
    [datapath]="-max_len=8192"
    [sync]="-max_len=2048"
    [region]="-max_len=4096"
)
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(wire control datapath sync region)

echo "fuzz: building ${targets[*]} ($(cargo fuzz --version))"
t0=$SECONDS
for t in "${targets[@]}"; do
    if [ -z "${default_time[$t]:-}" ]; then
        echo "fuzz: unknown target $t (wire, control, datapath, sync, region)" >&2
        exit 1
    fi
    cargo fuzz build --fuzz-dir "$fuzz_dir" -s none "$t" || exit 1
done
echo "fuzz: built in $((SECONDS - t0)) s"

rc=0
for t in "${targets[@]}"; do
    secs=${FUZZ_TIME:-${default_time[$t]}}
    corpus=$fuzz_dir/corpus/$t
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$t"
    log=$fuzz_dir/artifacts/$t/last-run.log
    inputs=("$corpus" "$fuzz_dir/seeds/$t")
    [ -d "$fuzz_dir/regressions/$t" ] && inputs+=("$fuzz_dir/regressions/$t")
    echo "fuzz: $t for ${secs} s (log: $log)"
    # shellcheck disable=SC2086  # target_args and FUZZ_ARGS are word lists
    cargo fuzz run --fuzz-dir "$fuzz_dir" -s none "$t" "${inputs[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${target_args[$t]} ${FUZZ_ARGS:-} >"$log" 2>&1
    status=$?
    # "Done N runs in S second(s)" and the final stats (executions, exec/s,
    # peak RSS); with -jobs the per-job logs are fuzz-N.log instead.
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' "$log" \
        | sed "s/^/fuzz: $t: /"
    grep -E '^#[0-9]+.*(DONE|pulse)' "$log" | tail -n 1 | sed "s/^/fuzz: $t: /"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $status); end of the log:"
        tail -n 60 "$log"
        ls -t "$fuzz_dir/artifacts/$t"/crash-* "$fuzz_dir/artifacts/$t"/timeout-* \
            "$fuzz_dir/artifacts/$t"/oom-* 2>/dev/null | head -n 3 | sed 's/^/fuzz: reproducer: /'
        rc=1
    fi
done
exit "$rc"
