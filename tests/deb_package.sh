#!/bin/bash
# The Debian package, end to end without touching this machine's system:
# build it (packaging/build-deb.sh), install it with the real dpkg into a
# throwaway root (dpkg --root: its own package database, maintainer scripts
# run and skip systemctl because DPKG_ROOT is set), then
#   - the installed rvsd --check passes on the installed /etc/rvs/rvsd.json
#     (and fails on a broken copy: the check is real);
#   - systemd-analyze verify accepts rvsd.service and rvsadm.service with no
#     message at all (it exits 0 on unknown keys, so output is the signal;
#     a unit with a misspelt key proves that it is looked at);
#   - apt-get --simulate install ./rvs_*.deb resolves its dependencies here;
#   - dpkg --purge removes every file again.
# systemd does not run as PID 1 on the test machine, so the unit is not
# started here; under systemd `systemctl start rvsd` is the next step.
#
#   tests/deb_package.sh BIN_DIR     (BIN_DIR holds rvsd and rvsadm)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${1:?usage: deb_package.sh BIN_DIR}
work=$(mktemp -d /tmp/rvs-deb-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "PID 1: $(ps -p 1 -o comm=)"
deb=$(RVS_BIN_DIR=$bin_dir bash "$here/packaging/build-deb.sh" "$work/out")
[ -f "$deb" ] || fail "no package built"
echo "built $(basename "$deb"): $(dpkg-deb -f "$deb" Depends)"

root=$work/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# --force-depends: the throwaway root's database knows no libraries; the
# dependencies are checked against this host by apt-get -s below.
dpkg --root="$root" --log=/dev/null --force-depends --force-script-chrootless \
    -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
dpkg --root="$root" -s rvs | grep -q '^Status: install ok installed' || fail "not installed"
for f in usr/sbin/rvsd usr/sbin/rvsadm usr/sbin/rvsadm-save usr/sbin/rvsadm-restore \
    lib/systemd/system/rvsd.service lib/systemd/system/rvsadm.service \
    etc/rvs/rvsd.json usr/share/doc/rvs/operations.md; do
    [ -e "$root/$f" ] || fail "missing /$f"
done
grep -qx /etc/rvs/rvsd.json "$root/var/lib/dpkg/info/rvs.conffiles" || fail "config not a conffile"

# The unit's ExecStartPre, with the installed binary, config and state path.
out=$("$root/usr/sbin/rvsd" --check --config "$root/etc/rvs/rvsd.json" \
    --state-file "$root/var/lib/rvs/state.json" 2>&1) || fail "rvsd --check: $out"
grep -q ": OK$" <<<"$out" || fail "rvsd --check said: $out"
echo "installed rvsd --check: $out" | tail -1
sed 's/"wrr"/"nosuch"/' "$root/etc/rvs/rvsd.json" >"$work/bad.json"
if out=$("$root/usr/sbin/rvsd" --check --config "$work/bad.json" 2>&1); then
    fail "rvsd --check accepted an unknown scheduler: $out"
fi
# A damaged state file does not stop the service from starting (the check
# reports it; rvsd itself sets it aside and runs the config's services).
mkdir -p "$work/state" && printf '{"services": [' >"$work/state/state.json"
out=$("$root/usr/sbin/rvsd" --check --config "$root/etc/rvs/rvsd.json" \
    --state-file "$work/state/state.json" 2>&1) || fail "damaged state failed the check: $out"
grep -q "would set it aside" <<<"$out" || fail "damaged state not reported: $out"
[ -f "$work/state/state.json" ] || fail "--check moved the state file"

# systemd-analyze verify inside the root needs the root's systemd units
# (sysinit.target, ...) and /bin/sh (rvsadm.service's commands).
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (apt-get install systemd)"
cp -rn /lib/systemd/system/. "$root/lib/systemd/system/"
mkdir -p "$root/bin" && cp /bin/sh "$root/bin/sh"
for u in rvsd.service rvsadm.service; do
    msg=$(systemd-analyze verify --root="$root" "$u" 2>&1) || fail "verify $u: $msg"
    [ -z "$msg" ] || fail "verify $u: $msg"
    echo "systemd-analyze verify $u: clean"
done
sed 's/^WatchdogSec=/WatchdogSecs=/' "$root/lib/systemd/system/rvsd.service" \
    >"$root/lib/systemd/system/rvsd-typo.service"
msg=$(systemd-analyze verify --root="$root" rvsd-typo.service 2>&1 || true)
grep -q "Unknown key" <<<"$msg" || fail "verify did not notice a misspelt key: $msg"
rm "$root/lib/systemd/system/rvsd-typo.service"

# Would `apt install ./rvs_*.deb` resolve here? (simulation: changes nothing)
apt-get -s install "$deb" >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get -s"; }
grep -q "^Inst rvs " "$work/apt.log" || { cat "$work/apt.log"; fail "apt would not install rvs"; }
echo "apt-get -s install: resolves"

dpkg --root="$root" --log=/dev/null --force-script-chrootless --purge rvs >"$work/dpkg.log" 2>&1 \
    || { cat "$work/dpkg.log"; fail "dpkg --purge"; }
for f in usr/sbin/rvsd etc/rvs/rvsd.json lib/systemd/system/rvsd.service; do
    [ ! -e "$root/$f" ] || fail "/$f left after purge"
done
echo "PASS"
