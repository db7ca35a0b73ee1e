//! Replies: services, real servers and their counters written as IPVS
//! attributes, and the connection listing's text (`/proc/net/ip_vs_conn`).

use super::*;

pub(super) fn put_addr(b: &mut MsgBuilder, ty: u16, ip: IpAddr) {
    // nla_put(.., sizeof(union nf_inet_addr), ..): always 16 bytes.
    let mut a = [0u8; 16];
    match ip {
        IpAddr::V4(v) => a[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => a.copy_from_slice(&v.octets()),
    }
    b.put(ty, &a);
}

pub(super) fn ip_of(v: &Value) -> IpAddr {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub(super) fn u64_of(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `ip_vs_genl_fill_stats` (u32 counters, u64 bytes, u32 rates) then
/// `ip_vs_genl_fill_stats64` (all u64).
pub(super) fn fill_stats(
    b: &mut MsgBuilder,
    stats_ty: u16,
    stats64_ty: u16,
    st: &Value,
    rt: &Value,
) {
    let c = |k: &str| u64_of(&st[k]);
    let r = |k: &str| u64_of(&rt[k]);
    let n = b.nest_start(stats_ty);
    b.put_u32(stats_attr::CONNS, c("conns") as u32)
        .put_u32(stats_attr::INPKTS, c("inpkts") as u32)
        .put_u32(stats_attr::OUTPKTS, c("outpkts") as u32)
        .put_u64(stats_attr::INBYTES, c("inbytes"))
        .put_u64(stats_attr::OUTBYTES, c("outbytes"))
        .put_u32(stats_attr::CPS, r("cps") as u32)
        .put_u32(stats_attr::INPPS, r("inpps") as u32)
        .put_u32(stats_attr::OUTPPS, r("outpps") as u32)
        .put_u32(stats_attr::INBPS, r("inbps") as u32)
        .put_u32(stats_attr::OUTBPS, r("outbps") as u32);
    b.nest_end(n);
    let n = b.nest_start(stats64_ty);
    b.put_u64(stats_attr::CONNS, c("conns"))
        .put_u64(stats_attr::INPKTS, c("inpkts"))
        .put_u64(stats_attr::OUTPKTS, c("outpkts"))
        .put_u64(stats_attr::INBYTES, c("inbytes"))
        .put_u64(stats_attr::OUTBYTES, c("outbytes"))
        .put_u64(stats_attr::CPS, r("cps"))
        .put_u64(stats_attr::INPPS, r("inpps"))
        .put_u64(stats_attr::OUTPPS, r("outpps"))
        .put_u64(stats_attr::INBPS, r("inbps"))
        .put_u64(stats_attr::OUTBPS, r("outbps"));
    b.nest_end(n);
}

/// `ip_vs_genl_fill_service` from a `list` entry.
pub(super) fn fill_service(b: &mut MsgBuilder, s: &Value) {
    let n = b.nest_start(cmd_attr::SERVICE);
    b.put_u16(svc_attr::AF, svc_af(s));
    if let Some(mark) = s["fwmark"].as_u64() {
        b.put_u32(svc_attr::FWMARK, mark as u32);
    } else {
        let proto = match s["proto"].as_str() {
            Some("udp") => 17,
            Some("sctp") => 132,
            _ => 6,
        };
        b.put_u16(svc_attr::PROTOCOL, proto);
        put_addr(b, svc_attr::ADDR, ip_of(&s["vip"]));
        b.put_be16(svc_attr::PORT, u64_of(&s["port"]) as u16);
    }
    b.put_str(svc_attr::SCHED_NAME, s["sched"].as_str().unwrap_or("wlc"));
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&conf_flags(s).to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    b.put(svc_attr::FLAGS, &flags);
    b.put_u32(svc_attr::TIMEOUT, u64_of(&s["persistent"]) as u32);
    let mask: Ipv4Addr = s["netmask"]
        .as_str()
        .and_then(|m| m.parse().ok())
        .unwrap_or(Ipv4Addr::BROADCAST);
    b.put(svc_attr::NETMASK, &mask.octets());
    fill_stats(
        b,
        svc_attr::STATS,
        svc_attr::STATS64,
        &s["stats"],
        &s["rates"],
    );
    b.nest_end(n);
}

/// `ip_vs_genl_fill_dest` from a `list` entry. The weight is the one in
/// force (`effective_weight`: 0 while rvsd's own health check quiesces the
/// server), as the kernel's `dest->weight` is what keepalived last set.
pub(super) fn fill_dest(b: &mut MsgBuilder, d: &Value, svc_af: u16) {
    let n = b.nest_start(cmd_attr::DEST);
    let ip = ip_of(&d["ip"]);
    put_addr(b, dest_attr::ADDR, ip);
    b.put_be16(dest_attr::PORT, u64_of(&d["port"]) as u16);
    let fwd = match d["fwd"].as_str() {
        Some("nat") => fwd::MASQ,
        Some("tun") => fwd::TUNNEL,
        Some("fullnat") => fwd::RVS_FULLNAT,
        Some("local") => fwd::LOCALNODE,
        _ => fwd::DROUTE,
    };
    b.put_u32(dest_attr::FWD_METHOD, fwd);
    let weight = d
        .get("effective_weight")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| u64_of(&d["weight"]));
    b.put_u32(dest_attr::WEIGHT, weight as u32);
    let tun_type = match d["tun_type"].as_str() {
        Some("gue") => 1,
        Some("gre") => 2,
        _ => 0,
    };
    let tun_flags = match d["tun_csum"].as_str() {
        Some("csum") => 1,
        Some("remcsum") => 2,
        _ => 0,
    };
    b.put_u8(dest_attr::TUN_TYPE, tun_type)
        .put_be16(dest_attr::TUN_PORT, u64_of(&d["tun_port"]) as u16)
        .put_u16(dest_attr::TUN_FLAGS, tun_flags)
        .put_u32(dest_attr::U_THRESH, u64_of(&d["u_threshold"]) as u32)
        .put_u32(dest_attr::L_THRESH, u64_of(&d["l_threshold"]) as u32)
        .put_u32(dest_attr::ACTIVE_CONNS, u64_of(&d["active"]) as u32)
        .put_u32(dest_attr::INACT_CONNS, u64_of(&d["inactive"]) as u32)
        .put_u32(dest_attr::PERSIST_CONNS, u64_of(&d["persist"]) as u32);
    let af = match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    };
    b.put_u16(dest_attr::ADDR_FAMILY, if af == 0 { svc_af } else { af });
    fill_stats(
        b,
        dest_attr::STATS,
        dest_attr::STATS64,
        &d["stats"],
        &d["rates"],
    );
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
    let Ok(v) = control(ctl, json!({"cmd": "connections"})) else {
        return out;
    };
    let hex = |v: &Value| -> String {
        match ip_of(v) {
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
    for c in v["connections"].as_array().into_iter().flatten() {
        let proto = c["proto"].as_str().unwrap_or("tcp").to_ascii_uppercase();
        let _ = writeln!(
            out,
            "{:<3} {} {:04X} {} {:04X} {} {:04X} {:<11} {:>7}",
            proto,
            hex(&c["cip"]),
            u64_of(&c["cport"]),
            hex(&c["vip"]),
            u64_of(&c["vport"]),
            hex(&c["dip"]),
            u64_of(&c["dport"]),
            c["state"].as_str().unwrap_or("NONE"),
            u64_of(&c["expires_ms"]) / 1000,
        );
    }
    out
}
