//! ipvsadm compatibility: the listing formats operators' scripts parse,
//! produced from the control socket's JSON. Layouts follow ipvsadm 1.31's
//! `print_title`/`print_service_entry`/`print_largenum`/`print_conn`
//! byte for byte (including its trailing spaces and its sort order).

use std::fmt::Write;
use std::net::IpAddr;

use serde_json::Value;

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
pub fn addrport(ip: &str, port: u64) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

/// `addrport_to_anyname` for a JSON address (numeric with `-n`).
fn anyname(ip: &str, port: u64, proto: &str, numeric: bool) -> String {
    match ip.parse::<IpAddr>() {
        Ok(a) => names::addrport(a, port as u16, proto, numeric),
        Err(_) => addrport(ip, port),
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn is_v6(ip: &str) -> bool {
    matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
}

/// An address as libipvs compares it: `ntohl` of each 32-bit word.
fn addr_words(ip: &str) -> Vec<u32> {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => vec![u32::from(a)],
        Ok(IpAddr::V6(a)) => a
            .octets()
            .chunks(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Err(_) => vec![0],
    }
}

/// C's `int r = a - b` on two unsigned ints: the wrapped difference read
/// as signed, so 192.168.x sorts before 10.x. Reproduced because scripts
/// diff the order.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// libipvs `ipvs_cmp_dests`/the address part of `ipvs_cmp_services`.
fn cmp_addrs(a: &str, b: &str) -> i32 {
    let (wa, wb) = (addr_words(a), addr_words(b));
    let mut r = 0;
    for (x, y) in wa.iter().zip(wb.iter()) {
        r = c_diff(*x, *y);
        if r != 0 {
            break;
        }
    }
    r
}

fn proto_num(p: &str) -> i32 {
    match p {
        "udp" => 17,
        "sctp" => 132,
        _ => 6,
    }
}

/// Whether a JSON service is a firewall-mark service, and its mark.
fn fwmark(svc: &Value) -> Option<u64> {
    svc.get("fwmark").and_then(Value::as_u64)
}

/// The service's address family as AF_INET (2) / AF_INET6 (10).
fn af(svc: &Value) -> i32 {
    let v6 = match fwmark(svc) {
        Some(_) => s(svc, "af") == "inet6",
        None => is_v6(s(svc, "vip")),
    };
    if v6 {
        10
    } else {
        2
    }
}

/// libipvs.c `ipvs_cmp_services`: fwmark, af, protocol, address, port,
/// each a C `int` difference.
fn cmp_services(a: &Value, b: &Value) -> i32 {
    let fa = fwmark(a).unwrap_or(0) as u32;
    let fb = fwmark(b).unwrap_or(0) as u32;
    let r = c_diff(fa, fb);
    if r != 0 {
        return r;
    }
    let r = af(a) - af(b);
    if r != 0 {
        return r;
    }
    if fwmark(a).is_none() {
        let r = proto_num(s(a, "proto")) - proto_num(s(b, "proto"));
        if r != 0 {
            return r;
        }
        let r = cmp_addrs(s(a, "vip"), s(b, "vip"));
        if r != 0 {
            return r;
        }
        return u(a, "port") as i32 - u(b, "port") as i32;
    }
    0
}

/// libipvs.c `ipvs_cmp_dests`: address, then port.
fn cmp_dests(a: &Value, b: &Value) -> i32 {
    let r = cmp_addrs(s(a, "ip"), s(b, "ip"));
    if r != 0 {
        return r;
    }
    u(a, "port") as i32 - u(b, "port") as i32
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

/// Services or real servers in listing order: ipvsadm's sort, or with
/// `--nosort` the kernel's order, newest first (the kernel adds services
/// and real servers at the head of their lists; rvsd reports them oldest
/// first).
fn sorted(items: &[Value], services: bool, nosort: bool) -> Vec<&Value> {
    let mut v: Vec<&Value> = items.iter().collect();
    if nosort {
        v.reverse();
    } else if services {
        msort(&mut v, &|a: &&Value, b: &&Value| cmp_services(a, b));
    } else {
        msort(&mut v, &|a: &&Value, b: &&Value| cmp_dests(a, b));
    }
    v
}

fn fwd_name(f: &str) -> &'static str {
    match f {
        "nat" => "Masq",
        "dr" => "Route",
        "tun" => "Tunnel",
        "fullnat" => "FullNat",
        _ => "Local",
    }
}

fn fwd_switch(f: &str) -> &'static str {
    match f {
        "nat" => "-m",
        "tun" => "-i",
        "fullnat" => "--fullnat",
        _ => "-g",
    }
}

/// ipvsadm's `tunflags` for a DestConf `tun_csum`.
fn tun_flag(d: &Value) -> &'static str {
    match s(d, "tun_csum") {
        "csum" => "+c",
        "remcsum" => "r+c",
        _ => "-c",
    }
}

/// `fwd_tun_info`: the TunnelInfo column (`--tun-info`).
fn tun_info(d: &Value) -> String {
    if s(d, "fwd") != "tun" {
        return "n/a".into();
    }
    match s(d, "tun_type") {
        "gue" => format!("gue:{}:{}", u(d, "tun_port"), tun_flag(d)),
        "gre" => format!("gre:{}", tun_flag(d)),
        _ => "ipip".into(),
    }
}

/// Scheduler flags, already in ipvsadm's `print_sched_flags` spelling
/// (the control plane normalises them).
fn sched_flags(svc: &Value) -> String {
    svc["sched_flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn proto_of(svc: &Value) -> &str {
    if fwmark(svc).is_some() {
        "tcp"
    } else {
        s(svc, "proto")
    }
}

/// `print_service_entry`'s `svc_name` for listings.
fn svc_name(svc: &Value, numeric: bool) -> String {
    if let Some(m) = fwmark(svc) {
        return if af(svc) == 10 {
            format!("FWM  {m} IPv6")
        } else {
            format!("FWM  {m}")
        };
    }
    let proto = match s(svc, "proto") {
        "udp" => "UDP",
        "sctp" => "SCTP",
        _ => "TCP",
    };
    let vip = s(svc, "vip");
    let mut n = format!(
        "{proto:<4} {}",
        anyname(vip, u(svc, "port"), s(svc, "proto"), numeric)
    );
    if !is_v6(vip) {
        truncate(&mut n, 33);
    }
    n
}

/// `print_service_entry`'s `svc_name` for `-S`.
fn rule_name(svc: &Value, numeric: bool) -> String {
    if let Some(m) = fwmark(svc) {
        return if af(svc) == 10 {
            format!("-f {m} -6")
        } else {
            format!("-f {m}")
        };
    }
    let opt = match s(svc, "proto") {
        "udp" => "-u",
        "sctp" => "--sctp-service",
        _ => "-t",
    };
    format!(
        "{opt} {}",
        anyname(s(svc, "vip"), u(svc, "port"), s(svc, "proto"), numeric)
    )
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

/// The persistence mask as ipvsadm prints it: `mask A.B.C.D` unless /32
/// (IPv4), `mask N` unless 128 (IPv6 fwmark).
fn mask_text(svc: &Value) -> Option<String> {
    match svc.get("netmask") {
        Some(Value::Number(n)) => {
            let n = n.as_u64().unwrap_or(128);
            (n != 128).then(|| n.to_string())
        }
        Some(Value::String(m)) if !m.is_empty() && m != "255.255.255.255" => Some(m.clone()),
        _ => None,
    }
}

/// Whether list entry `svc` is the service `key` (a SvcRef) names.
pub fn same_service(svc: &Value, key: &Value) -> bool {
    match (fwmark(svc), key.get("fwmark").and_then(Value::as_u64)) {
        (Some(a), Some(b)) => a == b && af(svc) == af(key),
        (None, None) => {
            svc["proto"] == key["proto"] && svc["vip"] == key["vip"] && svc["port"] == key["port"]
        }
        _ => false,
    }
}

/// `ipvsadm -L [-n] [--stats|--rate|--thresholds|--persistent-conn|
/// --tun-info]` from a `list` response.
pub fn list(resp: &Value, f: Format, with_header: bool) -> String {
    let mut out = String::new();
    if with_header {
        out.push_str(&header(
            resp["conn_table"]["capacity"].as_u64().unwrap_or(0),
        ));
    }
    title(&mut out, f);
    let empty = Vec::new();
    let services = resp["services"].as_array().unwrap_or(&empty);
    for svc in sorted(services, true, f.nosort) {
        let name = svc_name(svc, f.numeric);
        let st = &svc["stats"];
        let rt = &svc["rates"];
        if f.stats || f.rate {
            let _ = write!(out, "{name:<33}");
            let src = if f.stats { st } else { rt };
            let keys = if f.stats {
                ["conns", "inpkts", "outpkts", "inbytes", "outbytes"]
            } else {
                ["cps", "inpps", "outpps", "inbps", "outbps"]
            };
            for k in keys {
                largenum(&mut out, u(src, k), f.exact);
            }
        } else {
            let _ = write!(out, "{name} {}", s(svc, "sched"));
            let flags = sched_flags(svc);
            if !flags.is_empty() {
                let _ = write!(out, " ({flags})");
            }
            if let Some(p) = svc.get("persistent").and_then(Value::as_u64) {
                let _ = write!(out, " persistent {p}");
                if let Some(m) = mask_text(svc) {
                    let _ = write!(out, " mask {m}");
                }
            }
            if svc["ops"] == true {
                out.push_str(" ops");
            }
        }
        out.push('\n');
        let dests = in_service(svc);
        let proto = proto_of(svc);
        for d in sorted(&dests, false, f.nosort) {
            let ip = s(d, "ip");
            let mut dn = anyname(ip, u(d, "port"), proto, f.numeric);
            if !is_v6(ip) {
                truncate(&mut dn, 28);
            }
            if f.stats {
                let _ = write!(out, "  -> {dn:<28}");
                for k in ["conns", "inpkts", "outpkts", "inbytes", "outbytes"] {
                    largenum(&mut out, u(&d["stats"], k), f.exact);
                }
                out.push('\n');
            } else if f.rate {
                let r = &d["rates"];
                let _ = write!(
                    out,
                    "  -> {dn:<28} {:>8} {:>8} {:>8}",
                    u(r, "cps"),
                    u(r, "inpps"),
                    u(r, "outpps")
                );
                largenum(&mut out, u(r, "inbps"), f.exact);
                largenum(&mut out, u(r, "outbps"), f.exact);
                out.push('\n');
            } else if f.thresholds {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<10} {:<10} {:<10} {:<10}",
                    u(d, "u_threshold"),
                    u(d, "l_threshold"),
                    u(d, "active"),
                    u(d, "inactive")
                );
            } else if f.persistent_conn {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<9} {:<11} {:<10} {:<10}",
                    weight(d),
                    u(d, "persist"),
                    u(d, "active"),
                    u(d, "inactive")
                );
            } else if f.tun_info {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    fwd_name(s(d, "fwd")),
                    tun_info(d),
                    weight(d),
                    u(d, "active"),
                    u(d, "inactive")
                );
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dn:<28} {:<7} {:<6} {:<10} {:<10}",
                    fwd_name(s(d, "fwd")),
                    weight(d),
                    u(d, "active"),
                    u(d, "inactive")
                );
            }
        }
    }
    out
}
/// The real servers a service forwards to now, as kernel IPVS would hold
/// them under keepalived: a server removed by its health check is not
/// there, and the sorry server is while it stands in.
fn in_service(svc: &Value) -> Vec<Value> {
    let mut v: Vec<Value> = svc["dests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d.get("in_service").and_then(Value::as_bool) != Some(false))
        .cloned()
        .collect();
    if let Some(sorry) = svc.get("sorry_server") {
        if sorry.get("in_service").and_then(Value::as_bool) == Some(true) {
            v.push(sorry.clone());
        }
    }
    v
}

/// The weight in effect (0 for a quiesced server), else the configured one.
fn weight(d: &Value) -> u64 {
    d.get("effective_weight")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| u(d, "weight"))
}

/// `rvsadm -L -n --health` (rvs extension): each real server's check and
/// state, and each service's sorry server.
pub fn health(resp: &Value, f: Format) -> String {
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
    let empty = Vec::new();
    for svc in sorted(
        resp["services"].as_array().unwrap_or(&empty),
        true,
        f.nosort,
    ) {
        let name = svc_name(svc, f.numeric);
        let proto = proto_of(svc);
        for d in sorted(svc["dests"].as_array().unwrap_or(&empty), false, f.nosort) {
            let c = &d["health_counters"];
            let state = s(d, "health");
            let _ = writeln!(
                out,
                "{name:<33} {:<28} {:<5} {:<9} {:>8} {:>8} {:>5}  {}",
                anyname(s(d, "ip"), u(d, "port"), proto, f.numeric),
                d.get("check").and_then(Value::as_str).unwrap_or("-"),
                state,
                u(c, "checks"),
                u(c, "failures"),
                u(c, "transitions"),
                d.get("last_error").and_then(Value::as_str).unwrap_or("-")
            );
        }
        if let Some(sorry) = svc.get("sorry_server") {
            let on = sorry.get("in_service").and_then(Value::as_bool) == Some(true);
            let _ = writeln!(
                out,
                "{name:<33} {:<28} sorry {:<9} {:>8} {:>8} {:>5}  -",
                anyname(s(sorry, "ip"), u(sorry, "port"), proto, f.numeric),
                if on { "serving" } else { "standby" },
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
pub fn save(resp: &Value, numeric: bool) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for svc in sorted(resp["services"].as_array().unwrap_or(&empty), true, false) {
        let name = rule_name(svc, numeric);
        let _ = write!(out, "-A {name} -s {}", s(svc, "sched"));
        if let Some(p) = svc.get("persistent").and_then(Value::as_u64) {
            let _ = write!(out, " -p {p}");
            if let Some(m) = mask_text(svc) {
                let _ = write!(out, " -M {m}");
            }
        }
        if svc["ops"] == true {
            out.push_str(" -o");
        }
        let flags = sched_flags(svc);
        if !flags.is_empty() {
            let _ = write!(out, " -b {flags}");
        }
        match s(svc, "client_addr") {
            "toa" => out.push_str(" --toa"),
            "proxy_v2" => out.push_str(" --proxy-protocol"),
            _ => {}
        }
        if svc["synproxy"] == true {
            out.push_str(" --synproxy");
        }
        out.push('\n');
        // Local addresses before real servers: FULLNAT servers need one.
        for z in svc["laddrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let _ = writeln!(out, "-P {name} -z {z}");
        }
        let proto = proto_of(svc);
        for d in sorted(svc["dests"].as_array().unwrap_or(&empty), false, false) {
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                anyname(s(d, "ip"), u(d, "port"), proto, numeric),
                fwd_switch(s(d, "fwd")),
                u(d, "weight")
            );
            if s(d, "fwd") == "tun" {
                match s(d, "tun_type") {
                    "gue" => {
                        let _ = write!(
                            out,
                            " --tun-type gue --tun-port {} {}",
                            u(d, "tun_port"),
                            tun_csum_opt(d)
                        );
                    }
                    "gre" => {
                        let _ = write!(out, " --tun-type gre {}", tun_csum_opt(d));
                    }
                    _ => out.push_str(" --tun-type ipip"),
                }
            }
            // Thresholds are not in ipvsadm's -S; rvs adds them so that
            // -S | -R recreates the whole configuration.
            if u(d, "u_threshold") > 0 {
                let _ = write!(out, " -x {}", u(d, "u_threshold"));
            }
            if u(d, "l_threshold") > 0 {
                let _ = write!(out, " -y {}", u(d, "l_threshold"));
            }
            out.push('\n');
        }
    }
    out
}

/// ipvsadm's `tun_flags_opts`.
fn tun_csum_opt(d: &Value) -> &'static str {
    match s(d, "tun_csum") {
        "csum" => "--tun-csum",
        "remcsum" => "--tun-remcsum",
        _ => "--tun-nocsum",
    }
}

/// `rvsadm -G`: each service's FULLNAT local addresses (DPVS's layout, less
/// its per-address conflict counters).
pub fn laddrs(resp: &Value, only: Option<&Value>) -> String {
    let mut out = format!("{:<20} {:<8} {:<20}\n", "VIP:VPORT", "TOTAL", "SNAT_IP");
    let empty = Vec::new();
    for svc in sorted(resp["services"].as_array().unwrap_or(&empty), true, false) {
        if let Some(k) = only {
            if !same_service(svc, k) {
                continue;
            }
        }
        let z: Vec<&str> = svc["laddrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if z.is_empty() && only.is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<20} {:<8}",
            addrport(s(svc, "vip"), u(svc, "port")),
            z.len()
        );
        for a in z {
            let _ = writeln!(out, "{:<20} {:<8} {a:<20}", "", "");
        }
    }
    out
}

/// `ipvsadm -L -c [-n] [--persistent-conn]` (`list_conn`/`print_conn`)
/// from a `connections` response.
pub fn connections(resp: &Value, f: Format) -> String {
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
    let empty = Vec::new();
    for c in resp["connections"].as_array().unwrap_or(&empty) {
        // The kernel's /proc/net/ip_vs_conn prints (expires - jiffies) / HZ:
        // whole seconds left, rounded down (ip_vs_conn.c
        // `ip_vs_conn_seq_show`), so 899.5 s is 14:59.
        let secs = u(c, "expires_ms") / 1000;
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let p = s(c, "proto");
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
            s(c, "state"),
            anyname(s(c, "cip"), u(c, "cport"), p, f.numeric),
            anyname(s(c, "vip"), u(c, "vport"), p, f.numeric),
            anyname(s(c, "dip"), u(c, "dport"), p, f.numeric)
        );
    }
    out
}

#[cfg(test)]
mod tests;

/// `ipvsadm -L --daemon` (ipvsadm.c `list_daemon`): one line per running
/// daemon, master first, with the options the kernel reports.
pub fn daemons(v: &Value) -> String {
    let mut out = String::new();
    for state in ["master", "backup"] {
        let Some(d) = v["daemons"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["state"] == state))
        else {
            continue;
        };
        let s = |k: &str| match &d[k] {
            Value::String(s) => s.clone(),
            x => x.to_string(),
        };
        out.push_str(&format!(
            "{state} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})\n",
            s("mcast_ifn"),
            s("syncid"),
            s("sync_maxlen"),
            s("mcast_group"),
            s("mcast_port"),
            s("mcast_ttl"),
        ));
    }
    out
}

#[cfg(test)]
mod daemon_tests;
