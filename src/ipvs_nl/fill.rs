//! Replies: services, real servers and their counters written as IPVS
//! attributes, and the connection listing's text (`/proc/net/ip_vs_conn`).

use super::*;
use crate::control::DestView;
use crate::flow::{Forward, TunCsum, TunType};
use crate::live::{Rates, TrafficStats};

pub(super) fn put_addr(b: &mut MsgBuilder, ty: u16, ip: IpAddr) {
    // nla_put(.., sizeof(union nf_inet_addr), ..): always 16 bytes.
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v) => a[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => a.copy_from_slice(&v.octets()),
    }
    b.put(ty, &a);
}

/// `ip_vs_genl_fill_stats` (u32 counters, u64 bytes, u32 rates) then
/// `ip_vs_genl_fill_stats64` (all u64).
pub(super) fn fill_stats(
    b: &mut MsgBuilder,
    stats_ty: u16,
    stats64_ty: u16,
    st: &TrafficStats,
    rt: &Rates,
) {
    let n = b.nest_start(stats_ty);
    b.put_u32(stats_attr::CONNS, st.conns as u32)
        .put_u32(stats_attr::INPKTS, st.inpkts as u32)
        .put_u32(stats_attr::OUTPKTS, st.outpkts as u32)
        .put_u64(stats_attr::INBYTES, st.inbytes)
        .put_u64(stats_attr::OUTBYTES, st.outbytes)
        .put_u32(stats_attr::CPS, rt.cps as u32)
        .put_u32(stats_attr::INPPS, rt.inpps as u32)
        .put_u32(stats_attr::OUTPPS, rt.outpps as u32)
        .put_u32(stats_attr::INBPS, rt.inbps as u32)
        .put_u32(stats_attr::OUTBPS, rt.outbps as u32);
    b.nest_end(n);
    let n = b.nest_start(stats64_ty);
    b.put_u64(stats_attr::CONNS, st.conns)
        .put_u64(stats_attr::INPKTS, st.inpkts)
        .put_u64(stats_attr::OUTPKTS, st.outpkts)
        .put_u64(stats_attr::INBYTES, st.inbytes)
        .put_u64(stats_attr::OUTBYTES, st.outbytes)
        .put_u64(stats_attr::CPS, rt.cps)
        .put_u64(stats_attr::INPPS, rt.inpps)
        .put_u64(stats_attr::OUTPPS, rt.outpps)
        .put_u64(stats_attr::INBPS, rt.inbps)
        .put_u64(stats_attr::OUTBPS, rt.outbps);
    b.nest_end(n);
}

/// `ip_vs_genl_fill_service` from a `list` entry.
pub(super) fn fill_service(b: &mut MsgBuilder, s: &ServiceView) {
    let n = b.nest_start(cmd_attr::SERVICE);
    b.put_u16(svc_attr::AF, svc_af(s));
    match s.key() {
        k if k.fwmark != 0 => {
            b.put_u32(svc_attr::FWMARK, k.fwmark);
        }
        k => {
            b.put_u16(svc_attr::PROTOCOL, u16::from(k.proto.number()));
            put_addr(b, svc_attr::ADDR, k.vip);
            b.put_be16(svc_attr::PORT, k.port);
        }
    }
    b.put_str(svc_attr::SCHED_NAME, &s.sched);
    let mut flags = [0u8; 8];
    let f = conf_flags(s.persistent.is_some(), s.ops, &s.sched_flags);
    flags[..4].copy_from_slice(&f.to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    b.put(svc_attr::FLAGS, &flags);
    b.put_u32(svc_attr::TIMEOUT, s.persistent.unwrap_or(0));
    // IPv6: the prefix length, host order (128 for "whole address").
    if s.key().vip.is_ipv6() {
        let plen = if s.netmask == std::net::Ipv4Addr::BROADCAST {
            128
        } else {
            u32::from(s.netmask)
        };
        b.put(svc_attr::NETMASK, &plen.to_ne_bytes());
    } else {
        b.put(svc_attr::NETMASK, &s.netmask.octets());
    }
    fill_stats(b, svc_attr::STATS, svc_attr::STATS64, &s.stats, &s.rates);
    b.nest_end(n);
}

/// `ip_vs_genl_fill_dest` from a `list` entry. The weight is the one in
/// force (`effective_weight`: 0 while rvsd's own health check quiesces the
/// server), as the kernel's `dest->weight` is what keepalived last set.
pub(super) fn fill_dest(b: &mut MsgBuilder, d: &DestView, svc_af: u16) {
    let n = b.nest_start(cmd_attr::DEST);
    put_addr(b, dest_attr::ADDR, d.ip);
    b.put_be16(dest_attr::PORT, d.port);
    let fwd = match d.fwd {
        Forward::Nat => fwd::MASQ,
        Forward::Tun => fwd::TUNNEL,
        Forward::FullNat => fwd::RVS_FULLNAT,
        Forward::Local => fwd::LOCALNODE,
        Forward::Dr => fwd::DROUTE,
    };
    b.put_u32(dest_attr::FWD_METHOD, fwd);
    b.put_u32(dest_attr::WEIGHT, d.effective_weight);
    let tun_type = match d.tun_type {
        Some(TunType::Gue) => 1,
        Some(TunType::Gre) => 2,
        _ => 0,
    };
    let tun_flags = match d.tun_csum {
        Some(TunCsum::Csum) => 1,
        Some(TunCsum::Remcsum) => 2,
        _ => 0,
    };
    b.put_u8(dest_attr::TUN_TYPE, tun_type)
        .put_be16(dest_attr::TUN_PORT, d.tun_port.unwrap_or(0))
        .put_u16(dest_attr::TUN_FLAGS, tun_flags)
        .put_u32(dest_attr::U_THRESH, d.u_threshold)
        .put_u32(dest_attr::L_THRESH, d.l_threshold)
        .put_u32(dest_attr::ACTIVE_CONNS, d.active)
        .put_u32(dest_attr::INACT_CONNS, d.inactive)
        .put_u32(dest_attr::PERSIST_CONNS, d.persist);
    let af = match d.ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    b.put_u16(dest_attr::ADDR_FAMILY, if af == 0 { svc_af } else { af });
    fill_stats(b, dest_attr::STATS, dest_attr::STATS64, &d.stats, &d.rates);
    b.nest_end(n);
}

/// The text of `/proc/net/ip_vs_conn` (`ip_vs_conn_seq_show`), which
/// `ipvsadm -L -c` reads instead of asking netlink: the header, then per
/// entry `"%-3s %08X %04X %08X %04X %08X %04X %-11s %7lu%s\n"` (protocol,
/// client, virtual and destination address and port in hex, state, seconds
/// left, no persistence-engine data). IPv6 entries use the `%pI6` form.
pub fn conn_text(ctl: &Control) -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n",
    );
    let hex = |ip: IpAddr| -> String {
        match ip {
            IpAddr::V4(a) => format!("{:08X}", u32::from(a)),
            IpAddr::V6(a) => {
                let s = a.segments();
                format!(
                    "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
                )
            }
        }
    };
    for c in ctl.connections(usize::MAX).connections {
        let _ = writeln!(
            out,
            "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11} {:>7}",
            c.proto.to_ascii_uppercase(),
            hex(c.cip),
            c.cport,
            hex(c.vip),
            c.vport,
            hex(c.dip),
            c.dport,
            c.state,
            c.expires_ms / 1000,
        );
    }
    out
}
