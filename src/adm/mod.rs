//! ipvsadm compatibility: the listing formats operators' scripts parse,
//! produced from the control socket's JSON. Layouts follow ipvsadm 1.31's
//! `print_title`/`print_service_entry`/`print_largenum`/`print_conn`
//! byte for byte (including its trailing spaces and its sort order).

use std::fmt::Write;
use std::net::IpAddr;

use serde_json::Value;

/// Which listing, as ipvsadm's FMT_* flags (stats wins over rate, then
/// thresholds, then persistent-conn).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub exact: bool,
    pub nosort: bool,
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

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}
fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// ipvsadm's `ipvs_cmp_*` address order: a u32 difference read as a signed
/// int, so 192.168.x sorts before 10.x. Reproduced because scripts diff it.
fn addr_key(ip: &str) -> u32 {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => u32::from(a),
        _ => 0,
    }
}

fn cmp_addr(a: &str, b: &str) -> std::cmp::Ordering {
    (addr_key(a).wrapping_sub(addr_key(b)) as i32).cmp(&0)
}

fn proto_num(p: &str) -> u8 {
    if p == "udp" {
        17
    } else {
        6
    }
}

fn sorted(items: &[Value], key_proto: bool, nosort: bool) -> Vec<&Value> {
    let mut v: Vec<&Value> = items.iter().collect();
    if !nosort {
        let ipk = if key_proto { "vip" } else { "ip" };
        v.sort_by(|a, b| {
            let pa = if key_proto {
                proto_num(s(a, "proto"))
            } else {
                0
            };
            let pb = if key_proto {
                proto_num(s(b, "proto"))
            } else {
                0
            };
            pa.cmp(&pb)
                .then_with(|| cmp_addr(s(a, ipk), s(b, ipk)))
                .then_with(|| u(a, "port").cmp(&u(b, "port")))
        });
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

fn svc_name(svc: &Value) -> String {
    let proto = if s(svc, "proto") == "udp" {
        "UDP"
    } else {
        "TCP"
    };
    let mut n = format!("{proto:<4} {}", addrport(s(svc, "vip"), u(svc, "port")));
    n.truncate(33);
    n
}

/// `ipvsadm -L -n [--stats|--rate|--thresholds|--persistent-conn]` from a
/// `list` response; `rates` is a `rates` response (for --rate).
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
        let name = svc_name(svc);
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
                let m = s(svc, "netmask");
                if !m.is_empty() && m != "255.255.255.255" {
                    let _ = write!(out, " mask {m}");
                }
            }
        }
        out.push('\n');
        let dests = in_service(svc);
        for d in sorted(&dests, false, f.nosort) {
            let mut dn = addrport(s(d, "ip"), u(d, "port"));
            dn.truncate(28);
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
pub fn health(resp: &Value, nosort: bool) -> String {
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
    for svc in sorted(resp["services"].as_array().unwrap_or(&empty), true, nosort) {
        let name = svc_name(svc);
        for d in sorted(svc["dests"].as_array().unwrap_or(&empty), false, nosort) {
            let c = &d["health_counters"];
            let state = s(d, "health");
            let _ = writeln!(
                out,
                "{name:<33} {:<28} {:<5} {:<9} {:>8} {:>8} {:>5}  {}",
                addrport(s(d, "ip"), u(d, "port")),
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
                addrport(s(sorry, "ip"), u(sorry, "port")),
                if on { "serving" } else { "standby" },
                "-",
                "-",
                "-",
            );
        }
    }
    out
}

/// `ipvsadm -S -n`: rules that `-R` replays.
pub fn save(resp: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for svc in sorted(resp["services"].as_array().unwrap_or(&empty), true, false) {
        let opt = if s(svc, "proto") == "udp" { "-u" } else { "-t" };
        let name = format!("{opt} {}", addrport(s(svc, "vip"), u(svc, "port")));
        let _ = write!(out, "-A {name} -s {}", s(svc, "sched"));
        if let Some(p) = svc.get("persistent").and_then(Value::as_u64) {
            let _ = write!(out, " -p {p}");
            let m = s(svc, "netmask");
            if !m.is_empty() && m != "255.255.255.255" {
                let _ = write!(out, " -M {m}");
            }
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
        for d in sorted(svc["dests"].as_array().unwrap_or(&empty), false, false) {
            let _ = write!(
                out,
                "-a {name} -r {} {} -w {}",
                addrport(s(d, "ip"), u(d, "port")),
                fwd_switch(s(d, "fwd")),
                u(d, "weight")
            );
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

/// `rvsadm -G`: each service's FULLNAT local addresses (DPVS's layout, less
/// its per-address conflict counters).
pub fn laddrs(resp: &Value, only: Option<&Value>) -> String {
    let mut out = format!("{:<20} {:<8} {:<20}\n", "VIP:VPORT", "TOTAL", "SNAT_IP");
    let empty = Vec::new();
    for svc in sorted(resp["services"].as_array().unwrap_or(&empty), true, false) {
        if let Some(k) = only {
            if svc["proto"] != k["proto"] || svc["vip"] != k["vip"] || svc["port"] != k["port"] {
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

/// `ipvsadm -L -c -n` from a `connections` response.
pub fn connections(resp: &Value) -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    let empty = Vec::new();
    for c in resp["connections"].as_array().unwrap_or(&empty) {
        let secs = u(c, "expires_ms").div_ceil(1000);
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let proto = if s(c, "proto") == "udp" { "UDP" } else { "TCP" };
        let _ = writeln!(
            out,
            "{proto:<3} {expire:<6} {:<11} {:<18} {:<18} {}",
            s(c, "state"),
            addrport(s(c, "cip"), u(c, "cport")),
            addrport(s(c, "vip"), u(c, "vport")),
            addrport(s(c, "dip"), u(c, "dport"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({"ok": true, "conn_table": {"count": 0, "capacity": 4096}, "services": [
            {"proto":"udp","vip":"10.0.0.100","port":53,"sched":"wlc","persistent":null,"netmask":"255.255.255.255",
             "stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"dests":[]},
            {"proto":"tcp","vip":"192.168.1.100","port":80,"sched":"rr","persistent":360,"netmask":"255.255.255.0",
             "stats":{"conns":123456789,"inpkts":5,"outpkts":6,"inbytes":1000,"outbytes":123456789012u64},
             "dests":[
                {"ip":"192.168.1.12","port":80,"fwd":"nat","weight":1,"active":0,"inactive":2,"u_threshold":0,"l_threshold":0,"persist":0,
                 "stats":{"conns":1,"inpkts":2,"outpkts":3,"inbytes":4,"outbytes":5}},
                {"ip":"192.168.1.11","port":8080,"fwd":"nat","weight":3,"active":10,"inactive":0,"u_threshold":100,"l_threshold":50,"persist":1,
                 "stats":{"conns":1,"inpkts":2,"outpkts":3,"inbytes":4,"outbytes":5}}]},
            {"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wlc","persistent":null,"netmask":"255.255.255.255",
             "stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"dests":[]}
        ]})
    }

    /// Health: a removed server is not listed, a quiesced one shows weight
    /// 0, a serving sorry server is listed like a real server; `-S` keeps
    /// the configured weights; `--health` shows every server.
    #[test]
    fn health_shapes_the_listing_not_the_saved_rules() {
        let l = serde_json::json!({"conn_table": {"capacity": 16}, "services": [
            {"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","netmask":"255.255.255.255",
             "dests":[
                {"ip":"10.0.1.11","port":80,"fwd":"nat","weight":2,"effective_weight":0,"in_service":false,
                 "health":"down","check":"http","last_error":"connect: refused",
                 "health_counters":{"checks":5,"failures":3,"transitions":1}},
                {"ip":"10.0.1.12","port":80,"fwd":"nat","weight":1,"effective_weight":0,"in_service":true,
                 "active":1,"health":"down","check":"tcp",
                 "health_counters":{"checks":4,"failures":2,"transitions":1}}],
             "sorry_server":{"ip":"10.0.1.13","port":8081,"fwd":"nat","in_service":true,
                 "weight":1,"effective_weight":1,"active":0,"inactive":3}}]});
        assert_eq!(
            list(&l, Format::default(), false),
            "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.100:80 rr\n\
\x20 -> 10.0.1.12:80                 Masq    0      1          0         \n\
\x20 -> 10.0.1.13:8081               Masq    1      0          3         \n"
        );
        assert_eq!(
            save(&l),
            "-A -t 10.0.0.100:80 -s rr\n\
-a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 2\n\
-a -t 10.0.0.100:80 -r 10.0.1.12:80 -m -w 1\n"
        );
        let h = health(&l, false);
        let rows: Vec<Vec<&str>> = h.lines().map(|x| x.split_whitespace().collect()).collect();
        assert_eq!(rows.len(), 4, "{h}");
        assert_eq!(
            rows[1],
            [
                "TCP",
                "10.0.0.100:80",
                "10.0.1.11:80",
                "http",
                "down",
                "5",
                "3",
                "1",
                "connect:",
                "refused"
            ]
        );
        assert_eq!(rows[2][3..6], ["tcp", "down", "4"]);
        assert_eq!(rows[3][2..5], ["10.0.1.13:8081", "sorry", "serving"]);
    }

    /// Golden layout of `ipvsadm -L -n` (sort quirk: 192.168.x before 10.x
    /// within TCP; TCP before UDP).
    #[test]
    fn list_numeric_matches_ipvsadm() {
        let got = list(&sample(), Format::default(), true);
        let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  192.168.1.100:80 rr persistent 360 mask 255.255.255.0\n\
\x20 -> 192.168.1.11:8080            Masq    3      10         0         \n\
\x20 -> 192.168.1.12:80              Masq    1      0          2         \n\
TCP  10.0.0.100:80 wlc\n\
UDP  10.0.0.100:53 wlc\n";
        assert_eq!(got, want);
    }

    #[test]
    fn stats_layout_and_large_numbers() {
        let got = list(
            &sample(),
            Format {
                stats: true,
                ..Default::default()
            },
            false,
        );
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(
            lines[0],
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
        );
        assert_eq!(lines[1], "  -> RemoteAddress:Port");
        assert_eq!(
            lines[2],
            "TCP  192.168.1.100:80              123456K        5        6     1000     123G"
        );
        assert_eq!(
            lines[3],
            "  -> 192.168.1.11:8080                   1        2        3        4        5"
        );
        let exact = list(
            &sample(),
            Format {
                stats: true,
                exact: true,
                ..Default::default()
            },
            false,
        );
        assert!(exact.contains("TCP  192.168.1.100:80             123456789        5        6     1000 123456789012\n"), "{exact}");
    }

    #[test]
    fn thresholds_and_persistent_conn_layouts() {
        let t = list(
            &sample(),
            Format {
                thresholds: true,
                ..Default::default()
            },
            false,
        );
        assert!(
            t.starts_with(
                "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
            ),
            "{t:?}"
        );
        assert!(
            t.contains(
                "  -> 192.168.1.11:8080            100        50         10         0         \n"
            ),
            "{t:?}"
        );
        let p = list(
            &sample(),
            Format {
                persistent_conn: true,
                ..Default::default()
            },
            false,
        );
        assert!(
            p.contains(
                "  -> 192.168.1.11:8080            3         1           10         0         \n"
            ),
            "{p:?}"
        );
    }

    #[test]
    fn save_format() {
        let got = save(&sample());
        let want = "-A -t 192.168.1.100:80 -s rr -p 360 -M 255.255.255.0\n\
-a -t 192.168.1.100:80 -r 192.168.1.11:8080 -m -w 3 -x 100 -y 50\n\
-a -t 192.168.1.100:80 -r 192.168.1.12:80 -m -w 1\n\
-A -t 10.0.0.100:80 -s wlc\n\
-A -u 10.0.0.100:53 -s wlc\n";
        assert_eq!(got, want);
    }

    #[test]
    fn connection_listing() {
        let r = json!({"connections":[{"proto":"tcp","state":"ESTABLISHED","expires_ms":899_500,
            "cip":"10.0.0.2","cport":41234,"vip":"10.0.0.100","vport":80,"dip":"10.0.1.11","dport":80}]});
        let got = connections(&r);
        assert_eq!(
            got,
            "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 15:00  ESTABLISHED 10.0.0.2:41234     10.0.0.100:80      10.0.1.11:80\n"
        );
    }

    #[test]
    fn largenum_thresholds() {
        let f = |i| {
            let mut s = String::new();
            largenum(&mut s, i, false);
            s
        };
        assert_eq!(f(99_999_999), " 99999999");
        assert_eq!(f(100_000_000), "  100000K");
        assert_eq!(f(1_000_000_000), "    1000M");
        assert_eq!(f(100_000_000_000_000), "     100T");
    }
}
