//! keepalived.conf import: `virtual_server` blocks (and DPVS-style
//! `local_address_group`s) become rvs services with health checks. Everything
//! else is reported, with its line, never silently dropped: VRRP and global
//! settings are keepalived's own business (run keepalived for VRRP next to
//! rvs), and keywords rvs has no equivalent for are listed as unsupported.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::service::{
    CheckKind, ClientAddr, DestConf, Forward, HealthCheck, OnFailure, Proto, ServiceConf,
    SorryServer, DEFAULT_PERSISTENT_TIMEOUT,
};

/// One `keyword args... [{ children }]` item of the file.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    line: usize,
    key: String,
    args: Vec<String>,
    children: Vec<Node>,
}

/// What an import produced.
#[derive(Debug, Default)]
pub struct Import {
    pub services: Vec<ServiceConf>,
    /// Keywords that were not applied, as "line N: keyword (why)".
    pub unsupported: Vec<String>,
}

fn tokenize(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut cur = String::new();
        let mut in_quote = false;
        for ch in line.chars() {
            match ch {
                '"' => in_quote = !in_quote,
                '#' | '!' if !in_quote => break,
                '{' | '}' if !in_quote => {
                    if !cur.is_empty() {
                        out.push((n + 1, std::mem::take(&mut cur)));
                    }
                    out.push((n + 1, ch.to_string()));
                }
                c if c.is_whitespace() && !in_quote => {
                    if !cur.is_empty() {
                        out.push((n + 1, std::mem::take(&mut cur)));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push((n + 1, cur));
        }
        // A line ends a statement (keepalived is line oriented).
        out.push((n + 1, "\n".into()));
    }
    out
}

fn parse_block(toks: &[(usize, String)], i: &mut usize, depth: usize) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        let (line, t) = &toks[*i];
        match t.as_str() {
            "\n" => *i += 1,
            "}" => {
                if depth == 0 {
                    return Err(format!("line {line}: unmatched '}}'"));
                }
                *i += 1;
                return Ok(nodes);
            }
            "{" => return Err(format!("line {line}: '{{' without a keyword")),
            _ => {
                let mut node = Node {
                    line: *line,
                    key: t.clone(),
                    args: Vec::new(),
                    children: Vec::new(),
                };
                *i += 1;
                // Arguments up to the end of the line or an opening brace
                // (which may sit on the next line).
                while *i < toks.len() {
                    match toks[*i].1.as_str() {
                        "\n" => {
                            let mut j = *i;
                            while j < toks.len() && toks[j].1 == "\n" {
                                j += 1;
                            }
                            if j < toks.len() && toks[j].1 == "{" {
                                *i = j;
                                continue;
                            }
                            break;
                        }
                        "{" => {
                            *i += 1;
                            node.children = parse_block(toks, i, depth + 1)?;
                            break;
                        }
                        "}" => break,
                        a => {
                            node.args.push(a.to_string());
                            *i += 1;
                        }
                    }
                }
                nodes.push(node);
            }
        }
    }
    if depth > 0 {
        return Err("unexpected end of file: a '{' is not closed".into());
    }
    Ok(nodes)
}

fn secs_ms(n: &Node) -> Result<u32, String> {
    let v: f64 = n
        .args
        .first()
        .and_then(|a| a.parse().ok())
        .filter(|v: &f64| *v >= 0.0)
        .ok_or_else(|| format!("line {}: {} needs a number of seconds", n.line, n.key))?;
    Ok((v * 1000.0).round() as u32)
}

fn num(n: &Node) -> Result<u32, String> {
    n.args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("line {}: {} needs a number", n.line, n.key))
}

fn ip(n: &Node, i: usize) -> Result<IpAddr, String> {
    n.args
        .get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("line {}: {} needs an IP address", n.line, n.key))
}

fn port(n: &Node, i: usize) -> Result<u16, String> {
    n.args
        .get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("line {}: {} needs a port", n.line, n.key))
}

/// Parse a keepalived configuration. Errors (malformed blocks, bad values)
/// fail the whole import; unsupported keywords are collected.
pub fn import(text: &str) -> Result<Import, String> {
    let toks = tokenize(text);
    let mut i = 0;
    let nodes = parse_block(&toks, &mut i, 0)?;
    let mut imp = Import::default();
    let mut groups: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let mut errors = Vec::new();
    for n in &nodes {
        if n.key == "local_address_group" {
            let name = n.args.first().cloned().unwrap_or_default();
            let mut addrs = Vec::new();
            for c in &n.children {
                match c.key.parse::<Ipv4Addr>() {
                    Ok(a) => addrs.push(IpAddr::V4(a)),
                    Err(_) => imp.unsupported.push(format!(
                        "line {}: {} (not an IPv4 local address)",
                        c.line, c.key
                    )),
                }
            }
            groups.insert(name, addrs);
        }
    }
    for n in &nodes {
        match n.key.as_str() {
            "virtual_server" => match virtual_server(n, &groups, &mut imp.unsupported) {
                Ok(s) => imp.services.push(s),
                Err(e) => errors.push(e),
            },
            "local_address_group" => {}
            "global_defs" | "vrrp_instance" | "vrrp_sync_group" | "vrrp_script"
            | "static_ipaddress" | "static_routes" => imp.unsupported.push(format!(
                "line {}: {} (not rvs's: keep running keepalived for it)",
                n.line, n.key
            )),
            other => imp
                .unsupported
                .push(format!("line {}: {other} (unsupported)", n.line)),
        }
    }
    if errors.is_empty() {
        Ok(imp)
    } else {
        Err(errors.join("; "))
    }
}

fn virtual_server(
    n: &Node,
    groups: &HashMap<String, Vec<IpAddr>>,
    unsupported: &mut Vec<String>,
) -> Result<ServiceConf, String> {
    if n.args.first().map(String::as_str) == Some("fwmark")
        || n.args.first().map(String::as_str) == Some("group")
    {
        return Err(format!(
            "line {}: virtual_server {} is not supported (fwmark services and groups)",
            n.line, n.args[0]
        ));
    }
    let vip = ip(n, 0)?;
    let vport = port(n, 1)?;
    let mut svc = ServiceConf {
        proto: Proto::Tcp,
        vip,
        port: vport,
        fwmark: 0,
        sched: crate::service::DEFAULT_SCHED.into(),
        persistent: None,
        netmask: Ipv4Addr::BROADCAST,
        sched_flags: vec![],
        laddrs: vec![],
        client_addr: ClientAddr::None,
        synproxy: false,
        ops: false,
        health: None,
        sorry_server: None,
        dests: vec![],
    };
    let mut fwd = Forward::Nat; // keepalived's default lb_kind is NAT
    let mut delay_loop = 60_000u32; // keepalived's default delay_loop
    let mut reals = Vec::new();
    let mut sorry = None;
    for c in &n.children {
        match c.key.as_str() {
            "delay_loop" => delay_loop = secs_ms(c)?,
            // DPVS's keepalived keyword.
            "syn_proxy" => svc.synproxy = true,
            "lb_algo" => svc.sched = c.args.first().cloned().unwrap_or_default(),
            "lb_kind" => {
                fwd = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                    Some("NAT") => Forward::Nat,
                    Some("DR") => Forward::Dr,
                    Some("TUN") => Forward::Tun,
                    Some("FNAT") | Some("FULLNAT") => Forward::FullNat,
                    _ => {
                        return Err(format!(
                            "line {}: lb_kind must be NAT, DR, TUN or FNAT",
                            c.line
                        ))
                    }
                }
            }
            "protocol" => {
                svc.proto = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                    Some("TCP") => Proto::Tcp,
                    Some("UDP") => Proto::Udp,
                    _ => return Err(format!("line {}: protocol must be TCP or UDP", c.line)),
                }
            }
            "persistence_timeout" => {
                svc.persistent = Some(if c.args.is_empty() {
                    DEFAULT_PERSISTENT_TIMEOUT
                } else {
                    num(c)?
                })
            }
            "persistence_granularity" => {
                svc.netmask = c.args.first().and_then(|a| a.parse().ok()).ok_or_else(|| {
                    format!("line {}: persistence_granularity needs a netmask", c.line)
                })?
            }
            "sorry_server" => sorry = Some((ip(c, 0)?, port(c, 1)?)),
            "laddr_group_name" => {
                let name = c.args.first().cloned().unwrap_or_default();
                svc.laddrs = groups
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| format!("line {}: no local_address_group {name:?}", c.line))?;
            }
            "real_server" => reals.push(c),
            "alpha" | "omega" | "quorum" | "hysteresis" | "virtualhost" | "ha_suspend" | "ops"
            | "lvs_method" | "lb_algo_flags" | "persistence_engine" | "quorum_up"
            | "quorum_down" => {
                unsupported.push(format!("line {}: {} (unsupported)", c.line, c.key))
            }
            other => unsupported.push(format!(
                "line {}: {other} (unknown in virtual_server)",
                c.line
            )),
        }
    }
    for r in reals {
        svc.dests
            .push(real_server(r, fwd, delay_loop, vport, unsupported)?);
    }
    if let Some((ip, p)) = sorry {
        svc.sorry_server = Some(SorryServer { ip, port: p, fwd });
    }
    Ok(svc)
}

fn real_server(
    r: &Node,
    fwd: Forward,
    delay_loop: u32,
    vport: u16,
    unsupported: &mut Vec<String>,
) -> Result<DestConf, String> {
    let rip = ip(r, 0)?;
    let rport = if r.args.len() > 1 { port(r, 1)? } else { vport };
    let mut d = DestConf {
        ip: rip,
        port: rport,
        weight: 1,
        fwd,
        u_threshold: 0,
        l_threshold: 0,
        health: None,
        tun_type: None,
        tun_port: None,
        tun_csum: None,
    };
    let mut inhibit = false;
    for c in &r.children {
        match c.key.as_str() {
            "weight" => d.weight = num(c)?,
            "inhibit_on_failure" => inhibit = true,
            "uthreshold" => d.u_threshold = num(c)?,
            "lthreshold" => d.l_threshold = num(c)?,
            "TCP_CHECK" | "HTTP_GET" => {
                let kind = if c.key == "TCP_CHECK" {
                    CheckKind::Tcp
                } else {
                    CheckKind::Http
                };
                d.health = Some(check(c, kind, delay_loop, unsupported)?);
            }
            "SSL_GET" | "SMTP_CHECK" | "MISC_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "notify_up"
            | "notify_down" => {
                unsupported.push(format!("line {}: {} (unsupported)", c.line, c.key))
            }
            other => unsupported.push(format!("line {}: {other} (unknown in real_server)", c.line)),
        }
    }
    if let Some(h) = &mut d.health {
        h.on_failure = if inhibit {
            OnFailure::Quiesce
        } else {
            OnFailure::Remove
        };
    }
    Ok(d)
}

fn check(
    c: &Node,
    kind: CheckKind,
    delay_loop: u32,
    unsupported: &mut Vec<String>,
) -> Result<HealthCheck, String> {
    // keepalived's defaults: connect_timeout 5 s, retry 1 (the first try
    // only), delay_before_retry 1 s.
    let mut h = HealthCheck {
        kind,
        port: None,
        path: None,
        status: None,
        interval_ms: delay_loop,
        timeout_ms: 5000,
        retries: 1,
        retry_delay_ms: 1000,
        on_failure: OnFailure::Remove,
    };
    for k in &c.children {
        match k.key.as_str() {
            "connect_port" => h.port = Some(port(k, 0)?),
            "connect_timeout" => h.timeout_ms = secs_ms(k)?,
            "retry" | "nb_get_retry" => h.retries = num(k)?.max(1),
            "delay_before_retry" => h.retry_delay_ms = secs_ms(k)?,
            "delay_loop" => h.interval_ms = secs_ms(k)?,
            "url" if kind == CheckKind::Http => {
                for u in &k.children {
                    match u.key.as_str() {
                        "path" => h.path = u.args.first().cloned(),
                        "status_code" => h.status = Some(num(u)? as u16),
                        other => unsupported.push(format!(
                            "line {}: url {other} (unsupported; only path and status_code)",
                            u.line
                        )),
                    }
                }
            }
            other => unsupported.push(format!("line {}: {} {other} (unsupported)", k.line, c.key)),
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"
! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.168.1.100
    }
}

virtual_server 192.168.1.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    persistence_granularity 255.255.255.0
    protocol TCP
    sorry_server 192.168.1.200 80

    real_server 192.168.1.11 80 {
        weight 3
        inhibit_on_failure
        TCP_CHECK {
            connect_port 80
            connect_timeout 3
            retry 3
            delay_before_retry 2
        }
    }
    real_server 192.168.1.12 80 {
        weight 1
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 2
            nb_get_retry 2
            delay_before_retry 1
        }
    }
}
"#;

    #[test]
    fn virtual_server_with_checks_and_sorry_server() {
        let imp = import(SEED).unwrap();
        assert_eq!(imp.services.len(), 1);
        let s = &imp.services[0];
        assert_eq!(
            (s.proto, s.vip.to_string(), s.port, s.sched.as_str()),
            (Proto::Tcp, "192.168.1.100".into(), 80, "wrr")
        );
        assert_eq!(
            (s.persistent, s.netmask),
            (Some(50), Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(
            s.sorry_server.as_ref().unwrap().ip.to_string(),
            "192.168.1.200"
        );
        let d1 = &s.dests[0];
        assert_eq!((d1.weight, d1.fwd), (3, Forward::Dr));
        let h1 = d1.health.as_ref().unwrap();
        assert_eq!(
            (
                h1.kind,
                h1.port,
                h1.timeout_ms,
                h1.retries,
                h1.retry_delay_ms,
                h1.interval_ms
            ),
            (CheckKind::Tcp, Some(80), 3000, 3, 2000, 6000)
        );
        assert_eq!(h1.on_failure, OnFailure::Quiesce);
        let h2 = s.dests[1].health.as_ref().unwrap();
        assert_eq!(
            (
                h2.kind,
                h2.path.as_deref(),
                h2.status,
                h2.retries,
                h2.on_failure
            ),
            (
                CheckKind::Http,
                Some("/health"),
                Some(200),
                2,
                OnFailure::Remove
            )
        );
        // VRRP and global settings are reported, not silently dropped.
        assert_eq!(imp.unsupported.len(), 2, "{:?}", imp.unsupported);
        assert!(imp.unsupported[0].starts_with("line 3: global_defs"));
        assert!(imp.unsupported[1].starts_with("line 7: vrrp_instance"));
    }

    #[test]
    fn unsupported_keywords_are_listed_with_their_lines() {
        let imp = import(
            "virtual_server 10.0.0.100 53 {\n  protocol UDP\n  lb_kind NAT\n  quorum 2\n  real_server 10.0.1.11 53 {\n    MISC_CHECK {\n      misc_path /bin/true\n    }\n    frobnicate\n  }\n}\nlocal_address_group lg {\n  10.0.1.200\n}\nvirtual_server 10.0.0.100 80 {\n  lb_kind FNAT\n  laddr_group_name lg\n  real_server 10.0.1.11 80 {\n    SMTP_CHECK {\n    }\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(imp.services.len(), 2);
        assert_eq!(imp.services[0].proto, Proto::Udp);
        assert_eq!(
            imp.services[1].laddrs,
            vec!["10.0.1.200".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(imp.services[1].dests[0].fwd, Forward::FullNat);
        let u = imp.unsupported.join("\n");
        for want in [
            "line 4: quorum",
            "line 6: MISC_CHECK",
            "line 9: frobnicate",
            "line 19: SMTP_CHECK",
        ] {
            assert!(u.contains(want), "{want} missing from:\n{u}");
        }
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        for bad in [
            "virtual_server 10.0.0.1 80 {",
            "}",
            "virtual_server 10.0.0.1 {\n}",
            "virtual_server fwmark 1 {\n}",
            "virtual_server 10.0.0.1 80 {\n lb_kind MAGIC\n}",
            "virtual_server 10.0.0.1 80 {\n delay_loop soon\n}",
            "virtual_server 10.0.0.1 80 {\n laddr_group_name nope\n}",
        ] {
            assert!(import(bad).is_err(), "{bad:?}");
        }
        // Arbitrary bytes never panic.
        let mut x = 0x9e3779b9u32;
        for _ in 0..2000 {
            let s: String = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    b"{}\n \"#!abvirtual_server 10.0.0.1 80real_server weight"[x as usize % 52]
                        as char
                })
                .collect();
            let _ = import(&s);
        }
    }
}
