//! ipvsadm compatibility: the listing formats operators' scripts parse,
//! produced from the control socket's typed replies. Layouts follow ipvsadm 1.31's
//! `print_title`/`print_service_entry`/`print_largenum`/`print_conn`
//! byte for byte (including its trailing spaces and its sort order).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use crate::control::{
    ConnectionsReply, DaemonReply, DestView, HealthState, ListReply, ServiceView,
};
use crate::flow::{ClientAddr, Forward, Proto, ServiceKey, TunCsum, TunType};
use crate::service::CheckKind;
use crate::sync::Role;

pub mod cli;
pub mod names;

/// Which listing, as ipvsadm's FMT_* flags (stats wins over rate, then
/// thresholds, then persistent-conn, then tun-info).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub exact: bool,
    pub nosort: bool,
    pub tun_info: bool,
    /// `-n`: no name lookups.
    pub numeric: bool,
}

impl From<cli::Fmt> for Format {
    fn from(f: cli::Fmt) -> Self {
        Format {
            stats: f.stats,
            rate: f.rate,
            thresholds: f.thresholds,
            persistent_conn: f.persistent_conn,
            exact: f.exact,
            nosort: f.nosort,
            tun_info: f.tun_info,
            numeric: f.numeric,
        }
    }
}

/// The header ipvsadm prints for `-L` (IPVS version and connection table
/// size; rvs reports its own table capacity).
pub fn header(capacity: u64) -> String {
    format!("IP Virtual Server version 1.2.1 (size={capacity})\n")
}

/// `print_largenum`.
pub fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>w$}");
        return;
    }
    let _ = if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

/// `print_title`.
fn title(out: &mut String, f: Format) {
    let p = "Prot LocalAddress:Port";
    if f.stats {
        let _ = writeln!(
            out,
            "{p:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
        out.push_str("  -> RemoteAddress:Port\n");
    } else if f.rate {
        let _ = writeln!(
            out,
            "{p:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        );
        out.push_str("  -> RemoteAddress:Port\n");
    } else if f.thresholds {
        let _ = writeln!(
            out,
            "{p:<33} {:<10} {:<10} {:<10} {:<10}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        );
        out.push_str("  -> RemoteAddress:Port\n");
    } else if f.persistent_conn {
        let _ = writeln!(
            out,
            "{p:<33} {:<9} {:<11} {:<10} {:<10}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        );
        out.push_str("  -> RemoteAddress:Port\n");
    } else if f.tun_info {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str(
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
}

/// `addr:port` as ipvsadm -n prints it.
pub fn addrport(ip: IpAddr, port: u16) -> String {
    names::addrport(ip, port, "", true)
}

/// `addrport_to_anyname` (numeric with `-n`).
fn anyname(ip: IpAddr, port: u16, proto: &str, numeric: bool) -> String {
    names::addrport(ip, port, proto, numeric)
}

/// An address as libipvs holds it, `union nf_inet_addr`, read as
/// `ntohl` of each 32-bit word: an IPv4 address is the first word, the
/// other three zero (the kernel's zeroed `dest->addr`, copied whole).
fn addr_words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(a) => [u32::from(a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            std::array::from_fn(|i| {
                u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// C's `int r = a - b` on two unsigned ints: the wrapped difference read
/// as signed, so 192.168.x sorts before 10.x. Reproduced because scripts
/// diff the order.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// libipvs `ipvs_cmp_dests`/the address part of `ipvs_cmp_services`:
/// `if (d1->af == AF_INET6) for (i = 0; !r && (i < 4); i++) r =
/// ntohl(d1->addr.in6.s6_addr32[i]) - ntohl(d2->...); else r =
/// ntohl(d1->addr.ip) - ntohl(d2->addr.ip);` — the first address's
/// family decides how many words count.
fn cmp_addrs(a: IpAddr, b: IpAddr) -> i32 {
    let (wa, wb) = (addr_words(a), addr_words(b));
    let n = if a.is_ipv6() { 4 } else { 1 };
    let mut r = 0;
    for i in 0..n {
        r = c_diff(wa[i], wb[i]);
        if r != 0 {
            break;
        }
    }
    r
}

/// The service's address family as AF_INET (2) / AF_INET6 (10).
fn af(svc: &ServiceView) -> i32 {
    if svc.is_inet6() {
        10
    } else {
        2
    }
}

/// libipvs.c `ipvs_cmp_services`: fwmark, af, protocol, address, port,
/// each a C `int` difference.
fn cmp_services(a: &ServiceView, b: &ServiceView) -> i32 {
    let (ka, kb) = (a.key(), b.key());
    let r = c_diff(ka.fwmark, kb.fwmark);
    if r != 0 {
        return r;
    }
    let r = af(a) - af(b);
    if r != 0 {
        return r;
    }
    if ka.fwmark == 0 {
        let r = i32::from(ka.proto.number()) - i32::from(kb.proto.number());
        if r != 0 {
            return r;
        }
        let r = cmp_addrs(ka.vip, kb.vip);
        if r != 0 {
            return r;
        }
        return i32::from(ka.port) - i32::from(kb.port);
    }
    0
}

/// libipvs.c `ipvs_cmp_dests`: address, then port.
fn cmp_dests(a: &DestView, b: &DestView) -> i32 {
    let r = cmp_addrs(a.ip, b.ip);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// glibc 2.36's `qsort` (stdlib/msort.c `msort_with_tmp`): a top-down
/// merge sort, left half n/2, taking from the left while cmp <= 0. The
/// comparators above are not transitive across the 2^31 wrap, so the
/// order ipvsadm prints depends on the algorithm; this is the one
/// Debian 12's ipvsadm runs.
fn msort<T: Copy>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut v[..n1], cmp);
    msort(&mut v[n1..], cmp);
    let mut out = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            out.push(v[i]);
            i += 1;
        } else {
            out.push(v[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&v[i..n1]);
    out.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&out);
}

/// Services or real servers in listing order: ipvsadm's sort (`cmp`), or
/// with `--nosort` the kernel's order, newest first (the kernel adds
/// services and real servers at the head of their lists; rvsd reports them
/// oldest first).
fn sorted<'a, T>(
    items: impl IntoIterator<Item = &'a T>,
    cmp: fn(&T, &T) -> i32,
    nosort: bool,
) -> Vec<&'a T> {
    let mut v: Vec<&T> = items.into_iter().collect();
    if nosort {
        v.reverse();
    } else {
        msort(&mut v, &|a: &&T, b: &&T| cmp(a, b));
    }
    v
}

/// `ipvsadm -a`'s forwarding switch, as `-S` writes it.
fn fwd_switch(f: Forward) -> &'static str {
    match f {
        Forward::Nat => "-m",
        Forward::Tun => "-i",
        Forward::FullNat => "--fullnat",
        Forward::Dr | Forward::Local => "-g",
    }
}

/// ipvsadm's `tunflags` for a real server's `tun_csum`.
fn tun_flag(d: &DestView) -> &'static str {
    match d.tun_csum {
        Some(TunCsum::Csum) => "+c",
        Some(TunCsum::Remcsum) => "r+c",
        _ => "-c",
    }
}

/// `fwd_tun_info`: the TunnelInfo column (`--tun-info`).
fn tun_info(d: &DestView) -> String {
    if d.fwd != Forward::Tun {
        return "n/a".into();
    }
    match d.tun_type {
        Some(TunType::Gue) => format!("gue:{}:{}", d.tun_port.unwrap_or(0), tun_flag(d)),
        Some(TunType::Gre) => format!("gre:{}", tun_flag(d)),
        _ => "ipip".into(),
    }
}

/// Scheduler flags, already in ipvsadm's `print_sched_flags` spelling
/// (the control plane normalises them).
fn sched_flags(svc: &ServiceView) -> String {
    svc.sched_flags.join(",")
}

/// The persistence mask as ipvsadm prints it (`" mask %s"` in listings,
/// `" -M %s"` in rules): for IPv4 `inet_ntoa` of the mask unless
/// 255.255.255.255; for IPv6 the prefix length (`" mask %i"`, `" -M %i"`)
/// unless 128.
fn mask_text(svc: &ServiceView) -> Option<String> {
    if svc.is_inet6() {
        let p = v6_prefix(svc);
        (p != 128).then(|| p.to_string())
    } else {
        (svc.netmask != Ipv4Addr::BROADCAST).then(|| svc.netmask.to_string())
    }
}

/// An IPv6 service's persistence granularity as a prefix length. The
/// kernel keeps it in the same 32-bit `netmask` field that holds an IPv4
/// service's mask (ipvsadm.c: `ce->svc.netmask = atoi(optarg)` for
/// AF_INET6, 128 by default); read the list reply's `netmask` the same
/// way, with rvs's default 255.255.255.255 (no `-M`) meaning /128. (rvsd
/// refuses `-M` for IPv6 persistent services so far: every IPv6 service
/// lists as /128.)
fn v6_prefix(svc: &ServiceView) -> u32 {
    match u32::from(svc.netmask) {
        u32::MAX => 128,
        p => p,
    }
}

/// The protocol a service's addresses are named for (`getservbyport`).
fn proto_of(svc: &ServiceView) -> &'static str {
    match svc.key() {
        k if k.fwmark != 0 => "tcp",
        k => k.proto.name(),
    }
}

/// `print_service_entry`'s `svc_name` for listings.
fn svc_name(svc: &ServiceView, numeric: bool) -> String {
    let k = svc.key();
    if k.fwmark != 0 {
        return if svc.is_inet6() {
            format!("FWM  {} IPv6", k.fwmark)
        } else {
            format!("FWM  {}", k.fwmark)
        };
    }
    let mut n = format!(
        "{:<4} {}",
        k.proto.upper(),
        anyname(k.vip, k.port, k.proto.name(), numeric)
    );
    if !k.vip.is_ipv6() {
        truncate(&mut n, 33);
    }
    n
}

/// `print_service_entry`'s `svc_name` for `-S`.
fn rule_name(svc: &ServiceView, numeric: bool) -> String {
    let k = svc.key();
    if k.fwmark != 0 {
        return if svc.is_inet6() {
            format!("-f {} -6", k.fwmark)
        } else {
            format!("-f {}", k.fwmark)
        };
    }
    let opt = match k.proto {
        Proto::Udp => "-u",
        Proto::Tcp => "-t",
    };
    format!("{opt} {}", anyname(k.vip, k.port, k.proto.name(), numeric))
}

fn truncate(s: &mut String, n: usize) {
    if s.len() > n {
        let mut k = n;
        while !s.is_char_boundary(k) {
            k -= 1;
        }
        s.truncate(k);
    }
}

/// Whether list entry `svc` is the service `key` names.
pub fn same_service(svc: &ServiceView, key: &ServiceKey) -> bool {
    svc.key() == *key
}

/// `ipvsadm -L [-n] [--stats|--rate|--thresholds|--persistent-conn|
/// --tun-info]` from a `list` response.
pub fn list(resp: &ListReply, f: Format, with_header: bool) -> String {
    let mut out = String::new();
    if with_header {
        out.push_str(&header(resp.conn_table.capacity as u64));
    }
    title(&mut out, f);
    for svc in sorted(&resp.services, cmp_services, f.nosort) {
        let name = svc_name(svc, f.numeric);
        let (st, rt) = (&svc.stats, &svc.rates);
        if f.stats {
            let _ = write!(out, "{name:<33}");
            for n in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
                largenum(&mut out, n, f.exact);
            }
        } else if f.rate {
            let _ = write!(out, "{name:<33}");
            for n in [rt.cps, rt.inpps, rt.outpps, rt.inbps, rt.outbps] {
                largenum(&mut out, n, f.exact);
            }
        } else {
            let _ = write!(out, "{name} {}", svc.sched);
            let flags = sched_flags(svc);
            if !flags.is_empty() {
                let _ = write!(out, " ({flags})");
            }
            if let Some(p) = svc.persistent {
                let _ = write!(out, " persistent {p}");
                if let Some(m) = mask_text(svc) {
                    let _ = write!(out, " mask {m}");
                }
            }
            if svc.ops {
                out.push_str(" ops");
            }
        }
        out.push('\n');
        // What kernel IPVS would hold under keepalived: a server removed by
        // its health check is not there, the sorry server is while it
        // stands in.
        let proto = proto_of(svc);
        for d in sorted(svc.serving(), cmp_dests, f.nosort) {
            let mut dn = anyname(d.ip, d.port, proto, f.numeric);
            if !d.ip.is_ipv6() {
                truncate(&mut dn, 28);
            }
            // The weight in effect (0 for a quiesced server).
            let weight = d.effective_weight;
            let (active, inactive) = (d.active, d.inactive);
            if f.stats {
                let s = &d.stats;
                let _ = write!(out, "  -> {dn:<28}");
                for n in [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes] {
                    largenum(&mut out, n, f.exact);
                }
                out.push('\n');
            } else if f.rate {
                let r = &d.rates;
                let _ = write!(
                    out,
                    "  -> {dn:<28} {:>8} {:>8} {:>8}",
                    r.cps, r.inpps, r.outpps
                );
                largenum(&mut out, r.inbps, f.exact);
                largenum(&mut out, r.outbps, f.exact);
                out.push('\n');
            } else if f.thresholds {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<10} {:<10} {active:<10} {inactive:<10}",
                    d.u_threshold, d.l_threshold,
                );
            } else if f.persistent_conn {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {weight:<9} {:<11} {active:<10} {inactive:<10}",
                    d.persist,
                );
            } else if f.tun_info {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<7} {:<13} {weight:<6} {active:<10} {inactive:<10}",
                    d.fwd.ipvsadm_name(),
                    tun_info(d),
                );
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<7} {weight:<6} {active:<10} {inactive:<10}",
                    d.fwd.ipvsadm_name(),
                );
            }
        }
    }
    out
}

/// `rvsadm -L -n --health` (rvs extension): each real server's check and
/// state, and each service's sorry server.
pub fn health(resp: &ListReply, f: Format) -> String {
    let mut out = format!(
        "{:<33} {:<28} {:<5} {:<9} {:>8} {:>8} {:>5}  {}\n",
        "Prot LocalAddress:Port",
        "RemoteAddress:Port",
        "Check",
        "State",
        "Checks",
        "Failures",
        "Trans",
        "LastError"
    );
    for svc in sorted(&resp.services, cmp_services, f.nosort) {
        let name = svc_name(svc, f.numeric);
        let proto = proto_of(svc);
        for d in sorted(&svc.dests, cmp_dests, f.nosort) {
            let c = d.health_counters.unwrap_or_default();
            let state = match d.health {
                Some(HealthState::Up) => "up",
                Some(HealthState::Down) => "down",
                Some(HealthState::Unchecked) => "unchecked",
                None => "",
            };
            let _ = writeln!(
                out,
                "{name:<33} {:<28} {:<5} {state:<9} {:>8} {:>8} {:>5}  {}",
                anyname(d.ip, d.port, proto, f.numeric),
                d.check.map_or("-", CheckKind::name),
                c.checks,
                c.failures,
                c.transitions,
                d.last_error.as_deref().unwrap_or("-")
            );
        }
        if let Some(sorry) = &svc.sorry_server {
            let _ = writeln!(
                out,
                "{name:<33} {:<28} sorry {:<9} {:>8} {:>8} {:>5}  -",
                anyname(sorry.ip, sorry.port, proto, f.numeric),
                if sorry.in_service {
                    "serving"
                } else {
                    "standby"
                },
                "-",
                "-",
                "-",
            );
        }
    }
    out
}

/// `ipvsadm -S [-n]`: rules that `-R` replays (`print_service_entry` and
/// `print_tunnel_rule` with FMT_RULE), plus rvs's own options.
pub fn save(resp: &ListReply, numeric: bool) -> String {
    let mut out = String::new();
    for svc in sorted(&resp.services, cmp_services, false) {
        let name = rule_name(svc, numeric);
        let _ = write!(out, "-A {name} -s {}", svc.sched);
        if let Some(p) = svc.persistent {
            let _ = write!(out, " -p {p}");
            if let Some(m) = mask_text(svc) {
                let _ = write!(out, " -M {m}");
            }
        }
        if svc.ops {
            out.push_str(" -o");
        }
        let flags = sched_flags(svc);
        if !flags.is_empty() {
            let _ = write!(out, " -b {flags}");
        }
        match svc.client_addr {
            ClientAddr::Toa => out.push_str(" --toa"),
            ClientAddr::ProxyV2 => out.push_str(" --proxy-protocol"),
            ClientAddr::None => {}
        }
        if svc.synproxy {
            out.push_str(" --synproxy");
        }
        out.push('\n');
        // Local addresses before real servers: FULLNAT servers need one.
        for z in &svc.laddrs {
            let _ = writeln!(out, "-P {name} -z {}", names::inet_ntop(*z));
        }
        let proto = proto_of(svc);
        for d in sorted(&svc.dests, cmp_dests, false) {
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                anyname(d.ip, d.port, proto, numeric),
                fwd_switch(d.fwd),
                d.weight
            );
            if d.fwd == Forward::Tun {
                match d.tun_type {
                    Some(TunType::Gue) => {
                        let _ = write!(
                            out,
                            " --tun-type gue --tun-port {} {}",
                            d.tun_port.unwrap_or(0),
                            tun_csum_opt(d)
                        );
                    }
                    Some(TunType::Gre) => {
                        let _ = write!(out, " --tun-type gre {}", tun_csum_opt(d));
                    }
                    _ => out.push_str(" --tun-type ipip"),
                }
            }
            // Thresholds are not in ipvsadm's -S; rvs adds them so that
            // -S | -R recreates the whole configuration.
            if d.u_threshold > 0 {
                let _ = write!(out, " -x {}", d.u_threshold);
            }
            if d.l_threshold > 0 {
                let _ = write!(out, " -y {}", d.l_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// ipvsadm's `tun_flags_opts`.
fn tun_csum_opt(d: &DestView) -> &'static str {
    match d.tun_csum {
        Some(TunCsum::Csum) => "--tun-csum",
        Some(TunCsum::Remcsum) => "--tun-remcsum",
        _ => "--tun-nocsum",
    }
}

/// `rvsadm -G`: each service's FULLNAT local addresses (DPVS's layout, less
/// its per-address conflict counters).
pub fn laddrs(resp: &ListReply, only: Option<&ServiceKey>) -> String {
    let mut out = format!("{:<20} {:<8} {:<20}\n", "VIP:VPORT", "TOTAL", "SNAT_IP");
    for svc in sorted(&resp.services, cmp_services, false) {
        if only.is_some_and(|k| !same_service(svc, k)) {
            continue;
        }
        if svc.laddrs.is_empty() && only.is_none() {
            continue;
        }
        let k = svc.key();
        let _ = writeln!(
            out,
            "{:<20} {:<8}",
            addrport(k.vip, k.port),
            svc.laddrs.len()
        );
        for a in &svc.laddrs {
            let _ = writeln!(out, "{:<20} {:<8} {:<20}", "", "", names::inet_ntop(*a));
        }
    }
    out
}

/// `ipvsadm -L -c [-n] [--persistent-conn]` (`list_conn`/`print_conn`)
/// from a `connections` response.
pub fn connections(resp: &ConnectionsReply, f: Format) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if f.persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in &resp.connections {
        // The kernel's /proc/net/ip_vs_conn prints (expires - jiffies) / HZ:
        // whole seconds left, rounded down (ip_vs_conn.c
        // `ip_vs_conn_seq_show`), so 899.5 s is 14:59.
        let secs = c.expires_ms / 1000;
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let p = c.proto.as_str();
        // /proc/net/ip_vs_conn prints ip_vs_proto_name(): a fwmark
        // service's persistence template is IPPROTO_IP, "IP".
        let proto = match p {
            "udp" => "UDP",
            "ip" => "IP",
            _ => "TCP",
        };
        // rvs has no persistence engines: no row carries pe name/pe_data,
        // so rows keep the short layout, as print_conn's `n == 11` test.
        let _ = writeln!(
            out,
            "{proto:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
            c.state,
            anyname(c.cip, c.cport, p, f.numeric),
            anyname(c.vip, c.vport, p, f.numeric),
            anyname(c.dip, c.dport, p, f.numeric)
        );
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ipv6_tests;

/// `ipvsadm -L --daemon` (ipvsadm.c `list_daemon`): one line per running
/// daemon, master first, with the options the kernel reports.
pub fn daemons(v: &DaemonReply) -> String {
    let mut out = String::new();
    for state in [Role::Master, Role::Backup] {
        let Some(d) = v.daemons.iter().find(|d| d.state == state) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            state.name(),
            d.mcast_ifn,
            d.syncid,
            d.sync_maxlen,
            d.mcast_group,
            d.mcast_port,
            d.mcast_ttl,
        );
    }
    out
}

#[cfg(test)]
mod daemon_tests;
