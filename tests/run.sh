#!/usr/bin/env bash
# The project's test command (README; CI runs it through .ci/run with CI=true):
#   bash tests/run.sh
# Prepares the machine (tests/lib/setup.sh), runs every test, then rustfmt and
# clippy. Every step runs even after a failure; exits non-zero if any failed.
#
# Tests run under cargo-nextest when it is installed: one process per test
# (DPDK allows one EAL per process) and the e2e_* binaries serialised through
# the `e2e` test group in .config/nextest.toml (each starts an rvsd that polls
# a core; this machine has two). Without nextest: cargo test, one thread.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

# shellcheck source=tests/lib/setup.sh
source tests/lib/setup.sh || { echo "run.sh: setup failed" >&2; exit 1; }

export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
test_namespaces() { ip netns list 2>/dev/null | awk '$1 ~ /^rv[0-9]+(_[0-9]+)?-/ {print $1}' | sort; }
ns_before=$(test_namespaces)
failed=()
step() {
    local name=$1; shift
    printf '\n==> %s: %s\n' "$name" "$*"
    local t0=$SECONDS
    if "$@"; then
        printf '==> %s: ok (%ss)\n' "$name" "$((SECONDS - t0))"
    else
        printf '==> %s: FAILED (%ss)\n' "$name" "$((SECONDS - t0))"
        failed+=("$name")
    fi
}

# librvs_ipvs.so (a cdylib, which test builds do not produce) for the real
# ipvsadm/keepalived tests.
step preload cargo build -p rvs-ipvs-preload
if cargo nextest --version >/dev/null 2>&1; then
    profile=default
    [ "${CI:-}" = true ] && profile=ci
    step tests cargo nextest run --workspace --no-fail-fast --profile "$profile"
    # nextest does not run doctests
    step doctests cargo test --workspace --doc --no-fail-fast
else
    step tests cargo test --workspace --no-fail-fast -- --test-threads=1
fi
# Bounded fuzzing (about a minute, plus the instrumented build): every
# cargo-fuzz target from its seeds and past findings; see tests/README.md.
step fuzz bash tests/fuzz/run.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
# The image from the Dockerfile, smoke-run (skipped without podman/docker;
# a rebuild reuses the cached layers): tests/container_smoke.sh.
step container bash tests/container_smoke.sh

leftover=$(comm -13 <(printf '%s\n' "$ns_before") <(test_namespaces) | sed '/^$/d')
if [ -n "$leftover" ]; then
    printf '\nrun.sh: namespaces left behind by tests:\n%s\n' "$leftover"
    failed+=(leftover-namespaces)
fi

if [ "${#failed[@]}" -ne 0 ]; then
    printf '\nrun.sh: FAILED: %s\n' "${failed[*]}"
    exit 1
fi
printf '\nrun.sh: all passed\n'
