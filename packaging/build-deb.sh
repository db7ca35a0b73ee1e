#!/bin/bash
# Build the Debian package rvs_VERSION_ARCH.deb with dpkg-deb alone (no
# cargo-deb: nothing to fetch from crates.io, so it builds on an offline
# machine; dpkg-deb is in every Debian/Ubuntu base system).
#
#   packaging/build-deb.sh [OUTDIR]
#
# Binaries: from $RVS_BIN_DIR if set (a directory holding rvsd and rvsadm,
# e.g. target/debug for a quick test), otherwise `cargo build --release`.
# The package installs:
#   /usr/sbin/rvsd, /usr/sbin/rvsadm, /usr/sbin/rvsadm-save, /usr/sbin/rvsadm-restore
#   /lib/systemd/system/rvsd.service, /lib/systemd/system/rvsadm.service
#   /etc/rvs/rvsd.json (conffile: the NAT example, edit for this machine)
#   /usr/share/doc/rvs/ (README, docs/*.md, examples/*.json)
# Services are not enabled or started on install (the example config names
# interfaces this machine may not have); see docs/operations.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/target/deb}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)

if [ -z "${RVS_BIN_DIR:-}" ]; then
    (cd "$here" && cargo build --release --bin rvsd --bin rvsadm)
    RVS_BIN_DIR=$here/target/release
fi
for b in rvsd rvsadm; do
    [ -x "$RVS_BIN_DIR/$b" ] || { echo "build-deb: no $RVS_BIN_DIR/$b" >&2; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/lib/systemd/system" \
    "$root/etc/rvs" "$root/usr/share/doc/rvs/examples"
install -m 0755 "$RVS_BIN_DIR/rvsd" "$RVS_BIN_DIR/rvsadm" "$root/usr/sbin/"
install -m 0755 "$here/conf/rvsadm-save" "$here/conf/rvsadm-restore" "$root/usr/sbin/"
install -m 0644 "$here/conf/systemd/rvsd.service" "$here/conf/systemd/rvsadm.service" \
    "$root/lib/systemd/system/"
install -m 0644 "$here/conf/nat.json" "$root/etc/rvs/rvsd.json"
install -m 0644 "$here"/conf/*.json "$root/usr/share/doc/rvs/examples/"
install -m 0644 "$here/README.md" "$here"/docs/*.md "$root/usr/share/doc/rvs/"
# Debug builds carry debug info; a package does not need it.
if command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/sbin/rvsd" "$root/usr/sbin/rvsadm"
fi

# The packages of the shared libraries the binaries link directly (DPDK
# 22.11 from Debian: librte-*), as dpkg-shlibdeps would find them, without
# needing a debian/ tree.
deps=$(for b in "$root/usr/sbin/rvsd" "$root/usr/sbin/rvsadm"; do
        needed=$(objdump -p "$b" | awk '$1 == "NEEDED" {print $2}')
        ldd "$b" | awk -v n="$needed" 'BEGIN {split(n, a, "\n"); for (i in a) want[a[i]] = 1}
            $3 ~ /^\// && ($1 in want) {print $3}'
    done | sort -u | while read -r lib; do
        # usrmerge: dpkg knows a library under /lib or /usr/lib, not both.
        real=$(readlink -f "$lib")
        for p in "$lib" "$real" "${real#/usr}" "/usr$lib"; do
            dpkg -S "$p" 2>/dev/null || true
        done | head -1 | cut -d: -f1
    done | sort -u | paste -sd, | sed 's/,/, /g')

echo "/etc/rvs/rvsd.json" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/control" <<CTL
Package: rvs
Version: $version
Architecture: $arch
Maintainer: rvs developers <rvs@localhost>
Section: net
Priority: optional
Depends: ${deps}
Recommends: systemd
Description: Rust Virtual Server: kernel-bypass layer-4 load balancer on DPDK
 rvsd forwards TCP and UDP virtual services to real servers (NAT, DR,
 tunnel, FULLNAT) with IPVS's schedulers, polling DPDK ports in user space;
 rvsadm manages it with ipvsadm's command line.
CTL
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
# Make systemd see the unit; do not enable or start it (the example
# configuration has to be adapted to this machine first).
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
SH
cat > "$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl stop rvsd.service rvsadm.service || true
fi
exit 0
SH
cat > "$root/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/rvs
fi
exit 0
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/rvs_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
