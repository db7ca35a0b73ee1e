#!/bin/sh
# keepalived vrrp_script for an rvs director (seed article 004's
# check_ipvs.sh, made for rvs): succeeds while rvsd answers ipvsadm and has
# at least one real server in service (a Local sorry server standing in
# does not count). ipvsadm reaches rvsd through
# librvs_ipvs.so; keepalived started with conf/systemd/keepalived.service.d/
# rvs-ipvs.conf passes LD_PRELOAD and RVS_IPVS_SOCKET on, the defaults below
# are that drop-in's. (Seed 004's script sums the OutPkts column, which is
# always 0 in DR: real servers answer clients directly.)
LD_PRELOAD=${LD_PRELOAD:-/usr/local/lib/librvs_ipvs.so} \
RVS_IPVS_SOCKET=${RVS_IPVS_SOCKET:-/run/rvs/ipvs.sock} \
    ipvsadm -Ln 2>/dev/null | grep -q -e '->.* \(Route\|Masq\|Tunnel\) '
