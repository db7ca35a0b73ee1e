#!/usr/bin/env bash
# Stops what contrib/container/up.sh started: rvsd's container (SIGTERM,
# its exit status shown), the nginx real servers, the namespaces and the
# state directory. Safe to run twice.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=contrib/container/common.sh
source "$HERE/common.sh"

if "$ENGINE" container inspect "$NAME" >/dev/null 2>&1; then
    say "stopping rvsd (SIGTERM, SIGKILL after 10 s)"
    "$ENGINE" stop -t 10 "$NAME" >/dev/null
    echo "rvsd exited with status $("$ENGINE" inspect -f '{{.State.ExitCode}}' "$NAME")"
    "$ENGINE" rm -f "$NAME" >/dev/null
fi
for n in 1 2; do
    pid=$(cat "$STATE/rs$n/nginx.pid" 2>/dev/null) && kill -TERM "$pid" 2>/dev/null
done
for role in c sw rs1 rs2; do
    ns=$NAME-$role
    [ -e "/run/netns/$ns" ] || continue
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    # shellcheck disable=SC2086 # a list of pids
    [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null
    ip netns del "$ns"
done
rm -rf "$STATE"
say "down"
