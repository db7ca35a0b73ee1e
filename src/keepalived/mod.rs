//! keepalived.conf import: `virtual_server` blocks (and DPVS-style
//! `local_address_group`s) become rvs services with health checks.
//!
//! The import follows keepalived's own parser (keepalived/check/
//! check_parser.c, check_api.c, check_data.c, check_http.c, check_misc.c;
//! lib/parser.c for `include`), and like keepalived it never refuses a whole
//! file for one block it cannot use: such a block or keyword is skipped and
//! reported with its line ("line 12: ..." or "conf.d/a.conf line 3: ..."),
//! and the rest imports. Only a file whose braces do not balance, or one
//! that yields no virtual server at all, is an error (the running
//! configuration is then left alone).
//!
//! Health-check semantics, as keepalived (check_data.c, the "Take default
//! values" loops; check_api.c queue_checker):
//! - `retry N` is N retries after the first failed attempt, so N+1 attempts
//!   (rvs's `retries` counts the first attempt). Default 1 for TCP_CHECK,
//!   HTTP_GET and SSL_GET (check_api.c default_retry), 0 for MISC_CHECK
//!   (check_misc.c).
//! - `delay_before_retry` defaults to 1 s (check_api.c), 3 s for HTTP_GET and
//!   SSL_GET (check_http.c `default_delay_before_retry = 3 * TIMER_HZ`).
//! - `connect_timeout` 5 s and `delay_loop` 60 s by default
//!   (check_data.c alloc_vs); checker, then real_server, then
//!   virtual_server values win in that order, for `retry`,
//!   `delay_before_retry`, `connect_timeout`, `delay_loop`.
//! - HTTP_GET without `status_code` accepts any 2xx (check_http.c url_check,
//!   HTTP_DEFAULT_STATUS_CODE_MIN..MAX = 200..299); every `url` must pass.
//! - Several checkers on one real server: it is up only while all pass.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::service::{split_command, CheckKind, HealthCheck, HttpUrl, OnFailure, ServiceConf};

mod checkers;
mod parser;

use checkers::*;
use parser::*;

/// How deep `include`s may nest (keepalived has no limit but detects
/// nothing either; a loop must not hang the import).
const MAX_INCLUDE_DEPTH: usize = 16;
/// keepalived's defaults (check_data.c alloc_vs): delay_loop 60 s
/// (KEEPALIVED_DEFAULT_DELAY), connect_timeout 5 s.
const KA_DELAY_LOOP_MS: u32 = 60_000;
const KA_CONNECT_TIMEOUT_MS: u32 = 5_000;

/// What an import produced.
#[derive(Debug, Default)]
pub struct Import {
    pub services: Vec<ServiceConf>,
    /// Blocks and keywords that were not applied, as "line N: keyword (why)".
    pub unsupported: Vec<String>,
}

impl Import {
    /// Drop sorry servers at one of the director's own addresses (`local`)
    /// or a loopback address, with a message each, for a director without
    /// a kernel twin. keepalived hands such a sorry server to IPVS, which
    /// delivers to the host itself (LOCALNODE); rvs does that through a
    /// twin, and has no path to the host's stack without one.
    pub fn drop_local_sorry(&mut self, local: &[IpAddr]) {
        for s in &mut self.services {
            let Some(sorry) = &s.sorry_server else {
                continue;
            };
            if sorry.ip.is_loopback() || local.contains(&sorry.ip) {
                self.unsupported.push(format!(
                    "{}: sorry_server {}:{} is {} address: IPVS would deliver it to the \
                     director's own stack, which rvs reaches only through a kernel_twin \
                     (none configured); the service is imported without a sorry server",
                    s.key(),
                    sorry.ip,
                    sorry.port,
                    if sorry.ip.is_loopback() {
                        "a loopback"
                    } else {
                        "the director's own"
                    }
                ));
                s.sorry_server = None;
            }
        }
    }
}

/// Parse a keepalived configuration given as text (an `include` in it is
/// reported, not followed: see [`import_file`]).
pub fn import(text: &str) -> Result<Import, String> {
    import_from(text, None, None)
}

/// Parse the keepalived configuration in `path`, following its `include`s.
pub fn import_file(path: &Path) -> Result<Import, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    import_from(&text, None, Some(&dir))
}

fn import_from(text: &str, file: Option<&str>, dir: Option<&Path>) -> Result<Import, String> {
    let mut imp = Import::default();
    let mut toks = Vec::new();
    Reader {
        notes: &mut imp.unsupported,
        depth: 0,
    }
    .tokenize(text, file, dir, &mut toks);
    let mut i = 0;
    let nodes = parse_block(&toks, &mut i, 0)?;
    let mut laddr_groups: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let mut vs_groups: HashMap<String, &Node> = HashMap::new();
    for n in &nodes {
        match n.key.as_str() {
            "local_address_group" => {
                let name = n.args.first().cloned().unwrap_or_default();
                let mut addrs = Vec::new();
                for c in &n.children {
                    match c.key.parse::<Ipv4Addr>() {
                        Ok(a) => addrs.push(IpAddr::V4(a)),
                        Err(_) => imp.unsupported.push(format!(
                            "{}: {} (not an IPv4 local address; skipped)",
                            c.loc, c.key
                        )),
                    }
                }
                laddr_groups.insert(name, addrs);
            }
            "virtual_server_group" => {
                if let Some(name) = n.args.first() {
                    vs_groups.insert(name.clone(), n);
                }
            }
            _ => {}
        }
    }
    let mut seen_vs = 0usize;
    for n in &nodes {
        match n.key.as_str() {
            "virtual_server" => {
                seen_vs += 1;
                let ctx = Ctx {
                    laddr_groups: &laddr_groups,
                    vs_groups: &vs_groups,
                };
                virtual_server(n, &ctx, &mut imp);
            }
            "local_address_group" | "virtual_server_group" => {}
            "global_defs"
            | "vrrp_instance"
            | "vrrp_sync_group"
            | "vrrp_script"
            | "vrrp_track_file"
            | "track_file"
            | "vrrp_track_process"
            | "track_process"
            | "static_ipaddress"
            | "static_routes"
            | "static_rules"
            | "static_track_group"
            | "linkbeat_use_polling"
            | "net_namespace"
            | "net_namespace_ipvs"
            | "instance"
            | "use_pid_dir"
            | "bfd_instance"
            | "SSL"
            | "garp_group" => imp.unsupported.push(format!(
                "{}: {} (not rvs's: keep running keepalived for it)",
                n.loc, n.key
            )),
            other => imp.unsupported.push(format!(
                "{}: {other} (unknown at top level; skipped)",
                n.loc
            )),
        }
    }
    if imp.services.is_empty() {
        let why = if seen_vs == 0 {
            "no virtual_server block".to_string()
        } else {
            format!(
                "none of its {seen_vs} virtual_server block(s) could be imported:\n  {}",
                imp.unsupported.join("\n  ")
            )
        };
        return Err(format!(
            "nothing to import ({why}); the running configuration is left as it is"
        ));
    }
    Ok(imp)
}

struct Ctx<'a> {
    laddr_groups: &'a HashMap<String, Vec<IpAddr>>,
    vs_groups: &'a HashMap<String, &'a Node>,
}

/// Health-check values that real servers inherit from their virtual
/// server and checkers from their real server (keepalived's
/// UINT_MAX/ULONG_MAX "unset" markers: None here).
#[derive(Clone, Copy, Default, Debug)]
struct Inherit {
    retry: Option<u32>,
    delay_before_retry: Option<u32>,
    connect_timeout: Option<u32>,
    delay_loop: Option<u32>,
    warmup: Option<u32>,
    inhibit: Option<bool>,
}

impl Inherit {
    /// Take the keyword if it is one of the inherited ones; false if not.
    fn take(&mut self, c: &Node, notes: &mut Vec<String>) -> bool {
        let r = match c.key.as_str() {
            "retry" | "nb_get_retry" => num(c).map(|v| self.retry = Some(v)),
            "delay_before_retry" => secs_ms(c).map(|v| self.delay_before_retry = Some(v)),
            "connect_timeout" => secs_ms(c).map(|v| self.connect_timeout = Some(v.max(1))),
            "delay_loop" => secs_ms(c).map(|v| self.delay_loop = Some(v.max(1))),
            "warmup" => secs_ms(c).map(|v| self.warmup = Some(v)),
            "inhibit_on_failure" => {
                self.inhibit = Some(!matches!(c.args.first().map(String::as_str), Some("false")));
                Ok(())
            }
            _ => return false,
        };
        if let Err(e) = r {
            notes.push(format!("{e} (ignored)"));
        }
        true
    }
    fn under(self, parent: Inherit) -> Inherit {
        Inherit {
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            delay_loop: self.delay_loop.or(parent.delay_loop),
            warmup: self.warmup.or(parent.warmup),
            inhibit: self.inhibit.or(parent.inhibit),
        }
    }
}

/// A forwarding method as JSON fields of a DestConf: `fwd`, and the tunnel
/// fields of CONTRACT.md (`tun_type`, `tun_port`, `tun_csum`).
#[derive(Clone, Debug, PartialEq)]
struct Method {
    fwd: &'static str,
    tun: Map<String, Value>,
}

/// keepalived's svr_forwarding_handler: NAT | DR | TUN [type ipip|gue|gre]
/// [port N] [nocsum|csum|remcsum]; DPVS adds FNAT/FULLNAT.
fn method(c: &Node) -> Result<Method, String> {
    let fwd = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
        Some("NAT") => "nat",
        Some("DR") => "dr",
        Some("TUN") => "tun",
        Some("FNAT") | Some("FULLNAT") => "fullnat",
        _ => {
            return Err(format!(
                "{}: {} {} (must be NAT, DR, TUN or FNAT; ignored)",
                c.loc,
                c.key,
                c.args.join(" ")
            ))
        }
    };
    let mut tun = Map::new();
    let mut it = c.args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "type" if fwd == "tun" => {
                let t = it.next().cloned().unwrap_or_default();
                if !matches!(t.as_str(), "ipip" | "gue" | "gre") {
                    return Err(format!("{}: unknown tunnel type {t:?} (ignored)", c.loc));
                }
                tun.insert("tun_type".into(), json!(t));
            }
            "port" if fwd == "tun" => {
                let p: u16 = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{}: bad gue tunnel port (ignored)", c.loc))?;
                tun.insert("tun_port".into(), json!(p));
            }
            "nocsum" | "csum" | "remcsum" if fwd == "tun" => {
                tun.insert("tun_csum".into(), json!(a));
            }
            other => {
                return Err(format!(
                    "{}: {} option {other:?} (unknown; ignored)",
                    c.loc, c.key
                ))
            }
        }
    }
    Ok(Method { fwd, tun })
}

/// The service addresses a `virtual_server` line names: `IP PORT`,
/// `group NAME` (expanded: keepalived's virtual_server_group entries
/// `IP PORT`, `IP-LAST PORT` ranges within the last octet) or `fwmark N`.
enum Addrs {
    Ip(Vec<(IpAddr, u16)>),
    Fwmark(Vec<u32>),
}

fn vs_addrs(n: &Node, ctx: &Ctx, notes: &mut Vec<String>) -> Result<(Addrs, String), String> {
    match n.args.first().map(String::as_str) {
        Some("fwmark") => {
            let m: u32 = n
                .args
                .get(1)
                .and_then(|a| a.parse().ok())
                .filter(|m| *m > 0)
                .ok_or_else(|| format!("{}: virtual_server fwmark needs a mark 1..", n.loc))?;
            Ok((Addrs::Fwmark(vec![m]), format!("fwmark {m}")))
        }
        Some("group") => {
            let name = n.args.get(1).cloned().unwrap_or_default();
            let g = ctx.vs_groups.get(&name).ok_or_else(|| {
                format!(
                    "{}: virtual_server group {name}: no such virtual_server_group",
                    n.loc
                )
            })?;
            let mut ips = Vec::new();
            let mut marks = Vec::new();
            for e in &g.children {
                if e.key == "fwmark" {
                    match e.args.first().and_then(|a| a.parse::<u32>().ok()) {
                        Some(m) if m > 0 => marks.push(m),
                        _ => notes.push(format!("{}: fwmark needs a mark (skipped)", e.loc)),
                    }
                    continue;
                }
                let port = e.args.first().and_then(|p| p.parse::<u16>().ok());
                let Some(port) = port else {
                    notes.push(format!(
                        "{}: virtual_server_group {name} entry {} needs a port (skipped)",
                        e.loc, e.key
                    ));
                    continue;
                };
                match group_range(&e.key) {
                    Some(r) => ips.extend(r.into_iter().map(|a| (a, port))),
                    None => notes.push(format!(
                        "{}: virtual_server_group {name} entry {} (not an IPv4 address or \
                         IPv4 range a.b.c.d-e; skipped)",
                        e.loc, e.key
                    )),
                }
            }
            if !marks.is_empty() {
                if !ips.is_empty() {
                    notes.push(format!(
                        "{}: virtual_server_group {name} mixes addresses and fwmarks: \
                         only the addresses are imported",
                        g.loc
                    ));
                } else {
                    return Ok((Addrs::Fwmark(marks), format!("group {name}")));
                }
            }
            if ips.is_empty() {
                return Err(format!(
                    "{}: virtual_server group {name} has no usable entry",
                    n.loc
                ));
            }
            Ok((Addrs::Ip(ips), format!("group {name}")))
        }
        _ => {
            let ip = ip_arg(n, 0)?;
            let port = match n.args.get(1) {
                Some(_) => port_arg(n, 1)?,
                None => 0,
            };
            Ok((
                Addrs::Ip(vec![(ip, port)]),
                format!("{} {}", n.args[0], port),
            ))
        }
    }
}

/// `a.b.c.d` or `a.b.c.d-e` (keepalived: the range is in the last octet).
fn group_range(s: &str) -> Option<Vec<IpAddr>> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(vec![a]);
    }
    let (base, last) = s.split_once('-')?;
    let a: Ipv4Addr = base.parse().ok()?;
    let end: u8 = last.parse().ok()?;
    let o = a.octets();
    if end < o[3] {
        return None;
    }
    Some(
        (o[3]..=end)
            .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
            .collect(),
    )
}

/// Import one `virtual_server` block into `imp` (several services for a
/// group), or skip it with a message.
fn virtual_server(n: &Node, ctx: &Ctx, imp: &mut Import) {
    let notes = &mut imp.unsupported;
    let (addrs, what) = match vs_addrs(n, ctx, notes) {
        Ok(a) => a,
        Err(e) => {
            notes.push(format!("{e}; virtual_server skipped"));
            return;
        }
    };
    let mut svc = Map::new();
    let mut proto = "tcp";
    let mut method_vs = Method {
        fwd: "nat", // keepalived's default when none is set (check_data.c)
        tun: Map::new(),
    };
    let mut inherit = Inherit::default();
    let mut vs_weight: Option<u32> = None;
    let mut vhost: Option<String> = None;
    let mut reals = Vec::new();
    let mut sorry: Option<(IpAddr, u16)> = None;
    let mut sorry_method: Option<Method> = None;
    let mut sched_flags: Vec<String> = Vec::new();
    let mut ops = false;
    let mut inet6 = false;
    let mut bad_proto: Option<String> = None;
    let loc = &n.loc;
    for c in &n.children {
        if inherit.take(c, notes) {
            continue;
        }
        let r: Result<(), String> = (|| {
            match c.key.as_str() {
                "lb_algo" | "lvs_sched" => {
                    let s = c.args.first().cloned().unwrap_or_default();
                    if crate::sched::is_known(&s) {
                        svc.insert("sched".into(), json!(s));
                    } else {
                        // keepalived: "Invalid lvs_scheduler - ignoring".
                        return Err(format!(
                            "{}: {} {s:?} (scheduler unknown to rvs; the default wlc is used)",
                            c.loc, c.key
                        ));
                    }
                }
                "lb_kind" | "lvs_method" => method_vs = method(c)?,
                "protocol" => {
                    proto = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                        Some("TCP") => "tcp",
                        Some("UDP") => "udp",
                        other => {
                            bad_proto = Some(other.unwrap_or("").to_string());
                            return Ok(());
                        }
                    }
                }
                "ip_family" => inet6 = c.args.first().map(String::as_str) == Some("inet6"),
                "persistence_timeout" => {
                    let t = if c.args.is_empty() {
                        crate::service::DEFAULT_PERSISTENT_TIMEOUT
                    } else {
                        num(c)?
                    };
                    svc.insert("persistent".into(), json!(t));
                }
                "persistence_granularity" => {
                    let m: Ipv4Addr =
                        c.args.first().and_then(|a| a.parse().ok()).ok_or_else(|| {
                            format!("{}: persistence_granularity needs a netmask", c.loc)
                        })?;
                    svc.insert("netmask".into(), json!(m));
                }
                "sorry_server" => sorry = Some((ip_arg(c, 0)?, port_arg(c, 1).unwrap_or(0))),
                "sorry_server_lvs_method" => sorry_method = Some(method(c)?),
                "weight" => vs_weight = Some(num(c)?),
                "virtualhost" => vhost = c.args.first().cloned(),
                "ops" => ops = true,
                "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                    sched_flags.push(c.key.clone())
                }
                "hashed" | "flag-1" | "flag-2" | "flag-3" => {
                    return Err(format!("{}: {} (scheduler flag rvs lacks)", c.loc, c.key))
                }
                // DPVS's keepalived keywords.
                "syn_proxy" => {
                    svc.insert("synproxy".into(), json!(true));
                }
                "laddr_group_name" => {
                    let name = c.args.first().cloned().unwrap_or_default();
                    let g = ctx
                        .laddr_groups
                        .get(&name)
                        .ok_or_else(|| format!("{}: no local_address_group {name:?}", c.loc))?;
                    svc.insert("laddrs".into(), json!(g));
                }
                "real_server" => reals.push(c),
                "alpha"
                | "omega"
                | "quorum"
                | "quorum_up"
                | "quorum_down"
                | "hysteresis"
                | "ha_suspend"
                | "smtp_alert"
                | "snmp_name"
                | "persistence_engine"
                | "sorry_server_inhibit" => {
                    return Err(format!("{}: {} (not supported; ignored)", c.loc, c.key))
                }
                other => {
                    return Err(format!(
                        "{}: {other} (unknown in virtual_server; ignored)",
                        c.loc
                    ))
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            notes.push(e);
        }
    }
    if let Some(p) = bad_proto {
        notes.push(format!(
            "{loc}: virtual_server {what} (protocol {p}: rvs has TCP and UDP services only; \
             skipped)"
        ));
        return;
    }
    if inet6 || matches!(&addrs, Addrs::Ip(v) if v.iter().any(|(a, _)| a.is_ipv6())) {
        notes.push(format!(
            "{loc}: virtual_server {what} (IPv6: rvs has no IPv6 services yet; skipped)"
        ));
        return;
    }
    let vs_inherit = Inherit {
        retry: inherit.retry,
        delay_before_retry: inherit.delay_before_retry,
        connect_timeout: inherit.connect_timeout.or(Some(KA_CONNECT_TIMEOUT_MS)),
        delay_loop: inherit.delay_loop.or(Some(KA_DELAY_LOOP_MS)),
        warmup: inherit.warmup,
        inhibit: inherit.inhibit,
    };
    let vs_delay_loop = vs_inherit.delay_loop.unwrap_or(KA_DELAY_LOOP_MS);
    let mut dests = Vec::new();
    for r in reals {
        if let Some(d) = real_server(
            r,
            &method_vs,
            vs_inherit,
            vs_weight,
            vhost.as_deref(),
            vs_delay_loop,
            notes,
        ) {
            dests.push(d);
        }
    }
    svc.insert("dests".into(), Value::Array(dests));
    if !sched_flags.is_empty() {
        svc.insert("sched_flags".into(), json!(sched_flags));
    }
    if let Some((ip, port)) = sorry {
        let m = sorry_method.unwrap_or_else(|| method_vs.clone());
        svc.insert(
            "sorry_server".into(),
            json!({"ip": ip, "port": port, "fwd": m.fwd}),
        );
    }
    let targets: Vec<Map<String, Value>> = match &addrs {
        Addrs::Ip(v) => v
            .iter()
            .map(|(ip, port)| {
                let mut m = svc.clone();
                m.insert("proto".into(), json!(proto));
                m.insert("vip".into(), json!(ip));
                m.insert("port".into(), json!(port));
                m
            })
            .collect(),
        Addrs::Fwmark(marks) => marks
            .iter()
            .map(|mark| {
                let mut m = svc.clone();
                m.insert("fwmark".into(), json!(mark));
                m
            })
            .collect(),
    };
    for mut t in targets {
        if ops {
            t.insert("ops".into(), json!(true));
        }
        match build_service(t, notes, loc) {
            Ok(s) => {
                if s.fwmark != 0 {
                    notes.push(format!(
                        "{loc}: virtual_server fwmark {}: imported; packets reach it once rvs's \
                         fwmark rules mark them (keepalived relies on iptables/nftables MARK, \
                         which rvs's data path does not see: give rvsd `fwmark_rules`, docs/modes.md)",
                        s.fwmark
                    ));
                }
                imp.services.push(s)
            }
            Err(e) => {
                let why = match &addrs {
                    Addrs::Fwmark(_) => {
                        format!("fwmark services are not in this build of rvs yet ({e})")
                    }
                    Addrs::Ip(_) => e,
                };
                notes.push(format!("{loc}: virtual_server {what}: {why}; skipped"));
                return;
            }
        }
    }
}

/// Build the service through its JSON form (so fields added to ServiceConf
/// and DestConf by other features keep their serde defaults here). Options
/// another build may lack (`ops`, tunnel types) are dropped with a message
/// if this build refuses them.
fn build_service(
    mut v: Map<String, Value>,
    notes: &mut Vec<String>,
    loc: &str,
) -> Result<ServiceConf, String> {
    match serde_json::from_value::<ServiceConf>(Value::Object(v.clone())) {
        Ok(s) => return Ok(s),
        Err(e) if v.contains_key("fwmark") => return Err(e.to_string()),
        Err(_) => {}
    }
    if v.remove("ops").is_some() {
        notes.push(format!(
            "{loc}: ops (one-packet scheduling is not in this build; ignored)"
        ));
    }
    if let Some(Value::Array(ds)) = v.get_mut("dests") {
        let mut dropped = false;
        for d in ds.iter_mut().filter_map(Value::as_object_mut) {
            for k in ["tun_type", "tun_port", "tun_csum"] {
                dropped |= d.remove(k).is_some();
            }
        }
        if dropped {
            notes.push(format!(
                "{loc}: lvs_method TUN type/port/csum (tunnel types are not in this build; \
                 plain IPIP is used)"
            ));
        }
    }
    serde_json::from_value::<ServiceConf>(Value::Object(v)).map_err(|e| e.to_string())
}

fn real_server(
    r: &Node,
    vs_method: &Method,
    vs_inherit: Inherit,
    vs_weight: Option<u32>,
    vhost: Option<&str>,
    vs_delay_loop: u32,
    notes: &mut Vec<String>,
) -> Option<Value> {
    let rip = match ip_arg(r, 0) {
        Ok(ip) => ip,
        Err(e) => {
            notes.push(format!("{e}; real_server skipped"));
            return None;
        }
    };
    if rip.is_ipv6() {
        notes.push(format!(
            "{}: real_server {rip} (IPv6: not supported yet; skipped)",
            r.loc
        ));
        return None;
    }
    let rport = match r.args.get(1) {
        Some(_) => match port_arg(r, 1) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{e}; real_server skipped"));
                return None;
            }
        },
        None => 0,
    };
    let mut d = Map::new();
    d.insert("ip".into(), json!(rip));
    d.insert("port".into(), json!(rport));
    // keepalived: a real server without weight takes the virtual server's
    // `weight` (default 1).
    d.insert("weight".into(), json!(vs_weight.unwrap_or(1)));
    let mut m = vs_method.clone();
    let mut inherit = Inherit::default();
    let mut checks = Vec::new();
    let mut rs_vhost = vhost.map(str::to_string);
    for c in &r.children {
        if inherit.take(c, notes) {
            continue;
        }
        let res: Result<(), String> = (|| {
            match c.key.as_str() {
                "weight" => {
                    d.insert("weight".into(), json!(num(c)?));
                }
                "lvs_method" => m = method(c)?,
                "uthreshold" => {
                    d.insert("u_threshold".into(), json!(num(c)?));
                }
                "lthreshold" => {
                    d.insert("l_threshold".into(), json!(num(c)?));
                }
                "virtualhost" => rs_vhost = c.args.first().cloned(),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "MISC_CHECK"
                | "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    checks.push(c)
                }
                "notify_up" | "notify_down" | "alpha" | "smtp_alert" | "snmp_name" => {
                    return Err(format!("{}: {} (not supported; ignored)", c.loc, c.key))
                }
                other => {
                    return Err(format!(
                        "{}: {other} (unknown in real_server; ignored)",
                        c.loc
                    ))
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            notes.push(e);
        }
    }
    d.insert("fwd".into(), json!(m.fwd));
    d.extend(m.tun);
    let rs = inherit.under(vs_inherit);
    let mut built: Vec<HealthCheck> = Vec::new();
    for c in checks {
        if let Some(h) = checker(c, rs, rs_vhost.as_deref(), vs_delay_loop, notes) {
            built.push(h);
        }
    }
    if !built.is_empty() {
        let mut first = built.remove(0);
        first.also = built;
        first.on_failure = if rs.inhibit == Some(true) {
            OnFailure::Quiesce
        } else {
            OnFailure::Remove
        };
        d.insert("health".into(), json!(first));
    }
    Some(Value::Object(d))
}

#[cfg(test)]
mod tests;
