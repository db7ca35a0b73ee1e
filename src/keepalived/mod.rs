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
//!
//! IPv6 (see family.rs for how keepalived decides a virtual server's
//! family): an IPv6 `virtual_server` with IPv6 real servers imports as the
//! same service and real-server objects as an IPv4 one, NAT, DR, TUN (ipip,
//! IPv6 in IPv6) or FULLNAT (DPVS local addresses of the same family), and
//! an IPv6 fwmark one as `-f N -6`. What keepalived would run but rvs's
//! control plane refuses for IPv6 (control/validate.rs) is reported with
//! its line: `syn_proxy` through NAT64 skips the block; a real server of the other family (tunnelled, or FNAT from an
//! IPv4 virtual server) or a GUE/GRE tunnel to an IPv6 real server skips
//! that real server (the block too if none is left); such a sorry server,
//! or an IPv6 loopback one, is dropped. DPVS's NAT64 (an IPv6 virtual
//! server, IPv4 FNAT real servers, IPv4 local addresses) imports, and an
//! IPv6 `persistence_granularity` is a prefix length (`"netmask": 64`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::service::{split_command, CheckKind, HealthCheck, HttpUrl, OnFailure, ServiceConf};

mod addrs;
mod checkers;
mod family;
mod parser;
mod real_server;

use addrs::*;
use checkers::*;
use family::*;
use parser::*;
use real_server::*;

/// How deep `include`s may nest (keepalived has no limit but detects
/// nothing either; a loop must not hang the import).
const MAX_INCLUDE_DEPTH: usize = 16;
/// keepalived's defaults (check_data.c alloc_vs): delay_loop 60 s
/// (KEEPALIVED_DEFAULT_DELAY), connect_timeout 5 s.
const KA_DELAY_LOOP_MS: u32 = 60_000;
const KA_CONNECT_TIMEOUT_MS: u32 = 5_000;
/// keepalived's LVS_MAX_TIMEOUT (global_data.h): 31 days.
const KA_MAX_TIMEOUT_S: u32 = 86_400 * 31;

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
                // DPVS: `ADDR[-END] IFNAME` (check_data.c alloc_laddr_entry,
                // inet_stor ranges); IPv4 or IPv6, each virtual server
                // uses those of its own family.
                for c in &n.children {
                    match group_range(&c.key) {
                        Some(r) => addrs.extend(r),
                        None => imp.unsupported.push(format!(
                            "{}: {} (not a local address or range; skipped)",
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

/// Import one `virtual_server` block into `imp` (several services for a
/// group), or skip it with a message.
fn virtual_server(n: &Node, ctx: &Ctx, imp: &mut Import) {
    let notes = &mut imp.unsupported;
    let VsAddrs { addrs, what, group } = match vs_addrs(n, ctx, notes) {
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
    // Whether lb_kind/lvs_method came yet (keepalived's
    // IP_VS_CONN_F_FWD_MASK "not set": a real server allocated before it
    // is not tunnelled when rs_end_handler compares families).
    let mut method_vs_set = false;
    let mut inherit = Inherit::default();
    let mut vs_weight: Option<u32> = None;
    let mut vhost: Option<String> = None;
    // Each real server block, and whether keepalived sees it tunnelled
    // when its block ends (rs_end_handler).
    let mut reals: Vec<(&Node, bool)> = Vec::new();
    let mut sorry: Option<(IpAddr, u16, String)> = None;
    let mut sorry_method: Option<Method> = None;
    let mut sched_flags: Vec<String> = Vec::new();
    let mut ops = false;
    let mut bad_proto: Option<String> = None;
    // keepalived's vs->af: from the address (alloc_vs), else set by
    // ip_family, an IPv6 persistence_granularity or a real server.
    let mut af: Family = match &addrs {
        Addrs::Ip(v) if !group => Some((Af::of(v[0].0), format!("its address {}", v[0].0))),
        _ => None,
    };
    // An IPv6 granularity (a prefix length).
    let mut granularity6: Option<u8> = None;
    let mut granularity_set = false;
    let mut synproxy: Option<String> = None;
    let mut laddrs: Option<(String, Vec<IpAddr>, String)> = None;
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
                "lb_kind" | "lvs_method" => {
                    method_vs = method(c)?;
                    method_vs_set = true;
                }
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
                // check_parser.c ip_family_handler: inet or inet6; one that
                // conflicts with the family already set is ignored.
                "ip_family" => {
                    let arg = c.args.first().map(String::as_str).unwrap_or("");
                    let want = match arg {
                        "inet" => Af::Inet,
                        "inet6" => Af::Inet6,
                        _ => {
                            return Err(format!(
                                "{}: ip_family {arg:?} (unknown address family: inet or inet6; \
                                 ignored)",
                                c.loc
                            ))
                        }
                    };
                    match &af {
                        None => af = Some((want, format!("{}: ip_family {arg}", c.loc))),
                        Some((have, from)) if *have != want => {
                            return Err(format!(
                                "{}: ip_family {arg} (conflicts with {from}; ignored, as \
                                 keepalived does)",
                                c.loc
                            ))
                        }
                        Some(_) => {}
                    }
                }
                // check_parser.c pto_handler: 1..LVS_MAX_TIMEOUT (31 days),
                // else "persistence_timeout invalid" and ignored.
                "persistence_timeout" => {
                    let t = if c.args.is_empty() {
                        crate::service::DEFAULT_PERSISTENT_TIMEOUT
                    } else {
                        num(c)
                            .ok()
                            .filter(|t| (1..=KA_MAX_TIMEOUT_S).contains(t))
                            .ok_or_else(|| {
                                format!(
                                    "{}: persistence_timeout {} (keepalived takes 1..{} \
                                     seconds; ignored, as keepalived does)",
                                    c.loc, c.args[0], KA_MAX_TIMEOUT_S
                                )
                            })?
                    };
                    svc.insert("persistent".into(), json!(t));
                }
                // check_parser.c pgr_handler: for an IPv6 virtual server
                // (or, with no family yet, an argument without a '.') a
                // prefix length 1..128, else an IPv4 netmask; it fixes the
                // family if none is set and makes the service persistent.
                "persistence_granularity" => {
                    let arg = c.args.first().cloned().unwrap_or_default();
                    let fam = match &af {
                        Some((f, _)) => *f,
                        None if arg.contains('.') => Af::Inet,
                        None => Af::Inet6,
                    };
                    match fam {
                        Af::Inet6 => {
                            let p: u8 = arg
                                .parse()
                                .ok()
                                .filter(|p| (1..=128).contains(p))
                                .ok_or_else(|| {
                                    format!(
                                        "{}: persistence_granularity {arg:?} (an IPv6 virtual \
                                         server's granularity is a prefix length 1..128; \
                                         ignored, as keepalived does)",
                                        c.loc
                                    )
                                })?;
                            granularity6 = Some(p);
                        }
                        Af::Inet => {
                            let m: Ipv4Addr = arg.parse().map_err(|_| {
                                format!("{}: persistence_granularity needs a netmask", c.loc)
                            })?;
                            svc.insert("netmask".into(), json!(m));
                        }
                    }
                    if af.is_none() {
                        af = Some((fam, format!("{}: persistence_granularity {arg}", c.loc)));
                    }
                    granularity_set = true;
                }
                "sorry_server" => {
                    sorry = Some((ip_arg(c, 0)?, port_arg(c, 1).unwrap_or(0), c.loc.clone()))
                }
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
                    synproxy = Some(c.loc.clone());
                }
                "laddr_group_name" => {
                    let name = c.args.first().cloned().unwrap_or_default();
                    let g = ctx
                        .laddr_groups
                        .get(&name)
                        .ok_or_else(|| format!("{}: no local_address_group {name:?}", c.loc))?;
                    laddrs = Some((name, g.clone(), c.loc.clone()));
                }
                "real_server" => {
                    // rs_end_handler: a real server that is not tunnelled
                    // gives a family-less virtual server its family. DPVS's
                    // FNAT real servers may be IPv4 under an IPv6 virtual
                    // server (its NAT64): they do not decide it either.
                    let m = own_method(c).or_else(|| method_vs_set.then(|| method_vs.clone()));
                    let fwd = m.as_ref().map_or("", |m| m.fwd);
                    let tunnel = fwd == "tun";
                    if let (Ok(ip), false, None) = (ip_arg(c, 0), tunnel || fwd == "fullnat", &af) {
                        af = Some((Af::of(ip), format!("{}: real_server {ip}", c.loc)));
                    }
                    reals.push((c, tunnel))
                }
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
    let sorry_m = sorry_method.unwrap_or_else(|| method_vs.clone());
    // vs_end_handler: a sorry server that is not tunnelled gives the
    // virtual server its family, or is dropped if its family differs (a
    // DPVS FNAT one may be IPv4 under an IPv6 virtual server: NAT64).
    if let Some((ip, _, sloc)) = &sorry {
        if !matches!(sorry_m.fwd, "tun" | "fullnat") {
            match &af {
                None => af = Some((Af::of(*ip), format!("{sloc}: sorry_server {ip}"))),
                Some((f, from)) if *f != Af::of(*ip) => {
                    notes.push(format!(
                        "{sloc}: sorry_server {ip} ({} sorry server of a virtual server that is \
                         {} by {from}: keepalived skips it too, check_parser.c vs_end_handler; \
                         ignored)",
                        Af::of(*ip).name(),
                        f.name()
                    ));
                    sorry = None;
                }
                Some(_) => {}
            }
        }
    }
    // ipwrapper.c link_vsg_to_vs: a group's entries must match the
    // virtual server's family; a group of one family gives it to a
    // virtual server that has none.
    if group {
        let fams: Vec<Af> = match &addrs {
            Addrs::Ip(v) => v.iter().map(|(ip, _)| Af::of(*ip)).collect(),
            Addrs::Fwmark(m) => m.iter().filter_map(|(_, f)| *f).collect(),
        };
        let v4 = fams.contains(&Af::Inet);
        let v6 = fams.contains(&Af::Inet6);
        match &af {
            Some((f, from)) if (v4 && *f == Af::Inet6) || (v6 && *f == Af::Inet) => {
                notes.push(format!(
                    "{loc}: virtual_server {what} (its group has {} entries but {from} makes \
                     the virtual server {}: keepalived ignores it, ipwrapper.c \
                     link_vsg_to_vs; skipped)",
                    if v4 && v6 {
                        "IPv4 and IPv6"
                    } else if v4 {
                        "IPv4"
                    } else {
                        "IPv6"
                    },
                    f.name()
                ));
                return;
            }
            None if v4 && v6 => {
                notes.push(format!(
                    "{loc}: virtual_server {what} (its group mixes IPv4 and IPv6 entries, \
                     which keepalived serves only with every real server tunnelled across \
                     families: rvs does not tunnel across families yet; skipped)"
                ));
                return;
            }
            None if v4 || v6 => {
                let f = if v4 { Af::Inet } else { Af::Inet6 };
                af = Some((
                    f,
                    format!("its virtual_server_group's {} entries", f.name()),
                ));
            }
            _ => {}
        }
    }
    let (af, af_from) = af.unwrap_or_else(|| {
        let rips: Vec<IpAddr> = reals
            .iter()
            .filter_map(|(r, _)| ip_arg(r, 0).ok())
            .collect();
        fallback_family(sorry.as_ref().map(|s| s.0), &rips)
    });
    // A fwmark entry's family is the virtual server's: link_vsg_to_vs
    // (above) left no group entry of the other family.
    if af == Af::Inet6 {
        // ipvswrapper.c ipvs_set_srule: the granularity goes to IPVS as the
        // service's netmask, for IPv6 a prefix length (the control
        // protocol's `"netmask": 64`; 128, the whole address, is the
        // default).
        if let Some(p) = granularity6.filter(|p| *p != 128) {
            svc.insert("netmask".into(), json!(p));
        }
        // DPVS's NAT64 (IPv4 real servers) with the SYN proxy: the
        // control plane refuses it (its segments would have to cross
        // families too).
        let nat64 = reals
            .iter()
            .filter_map(|(r, _)| ip_arg(r, 0).ok())
            .find(|ip| ip.is_ipv4());
        if let (Some(sloc), Some(ip)) = (&synproxy, nat64) {
            notes.push(format!(
                "{sloc}: syn_proxy on IPv6 virtual_server {what} with IPv4 real server {ip} \
                 (the SYN proxy is not supported through NAT64 yet; virtual_server skipped)"
            ));
            return;
        }
    }
    // pgr_handler: a granularity without persistence_timeout makes the
    // service persistent (IPVS_SVC_PERSISTENT_TIMEOUT).
    if granularity_set && !svc.contains_key("persistent") {
        svc.insert(
            "persistent".into(),
            json!(crate::service::DEFAULT_PERSISTENT_TIMEOUT),
        );
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
    let mut family_skips = 0usize;
    for (r, ka_tunnel) in &reals {
        let vs = VsFor {
            method: &method_vs,
            af,
            af_from: &af_from,
            inherit: vs_inherit,
            weight: vs_weight,
            vhost: vhost.as_deref(),
            delay_loop: vs_delay_loop,
        };
        match real_server(r, &vs, *ka_tunnel, notes) {
            Rs::Dest(d) => dests.push(d),
            Rs::Family => family_skips += 1,
            Rs::Skipped => {}
        }
    }
    if dests.is_empty() && family_skips > 0 {
        notes.push(format!(
            "{loc}: virtual_server {what} (none of its real servers is of a family and \
             method rvs can forward to, see above; skipped)"
        ));
        return;
    }
    // DPVS's local addresses: an IPv6 virtual server uses both families
    // (IPv4 ones for its IPv4 FNAT real servers, NAT64), an IPv4 one its
    // IPv4 ones only.
    let mut lips: Vec<IpAddr> = Vec::new();
    if let Some((name, all, lloc)) = &laddrs {
        for ip in all {
            if af == Af::Inet6 || ip.is_ipv4() {
                lips.push(*ip);
            } else {
                notes.push(format!(
                    "{lloc}: laddr_group_name {name}: local address {ip} (IPv6 local address \
                     of an IPv4 virtual server, whose FULLNAT reaches IPv4 real servers only; \
                     not used)"
                ));
            }
        }
        if !lips.is_empty() {
            svc.insert("laddrs".into(), json!(lips));
        }
    }
    // The sorry server rvs cannot use: dropped, the service imports.
    if let Some((ip, _, sloc)) = &sorry {
        let nat64 = af == Af::Inet6 && ip.is_ipv4() && sorry_m.fwd == "fullnat";
        let why = if Af::of(*ip) != af && !nat64 {
            Some(format!(
                "{} sorry server of an {} virtual server, tunnelled across families: rvs does \
                 not tunnel across families yet",
                Af::of(*ip).name(),
                af.name()
            ))
        } else if ip.is_ipv6() && ip.is_loopback() {
            Some(
                "IPVS would deliver it to the director's own stack (LOCALNODE), which rvs \
                 does not do for IPv6 yet"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(why) = why {
            notes.push(format!(
                "{sloc}: sorry_server {ip} ({why}; the service is imported without a sorry \
                 server)"
            ));
            sorry = None;
        }
    }
    // control/validate.rs check_whole: a FULLNAT real (or sorry) server
    // needs a local address of its own family.
    let fnat_ips = dests
        .iter()
        .filter(|d| d["fwd"] == "fullnat")
        .filter_map(|d| d["ip"].as_str()?.parse::<IpAddr>().ok())
        .chain(
            sorry
                .iter()
                .filter(|_| sorry_m.fwd == "fullnat")
                .map(|s| s.0),
        );
    for f in [Af::Inet, Af::Inet6] {
        if let Some(ip) = fnat_ips.clone().find(|ip| Af::of(*ip) == f) {
            if !lips.iter().any(|l| Af::of(*l) == f) {
                notes.push(format!(
                    "{loc}: virtual_server {what} (FULLNAT to {ip} needs an {} local \
                     address: DPVS's laddr_group_name naming a local_address_group with \
                     one; skipped)",
                    f.name()
                ));
                return;
            }
        }
    }
    svc.insert("dests".into(), Value::Array(dests));
    if !sched_flags.is_empty() {
        svc.insert("sched_flags".into(), json!(sched_flags));
    }
    if let Some((ip, port, _)) = sorry {
        svc.insert(
            "sorry_server".into(),
            json!({"ip": ip, "port": port, "fwd": sorry_m.fwd}),
        );
    }
    // check_data.c validate_check_config: "zero port only valid for
    // persistent services - setting" (a group: any entry without a port).
    if matches!(&addrs, Addrs::Ip(v) if v.iter().any(|(_, p)| *p == 0))
        && !svc.contains_key("persistent")
    {
        let hint = if af == Af::Inet6 && !group && n.args.len() < 2 {
            " (an IPv6 address and its port are two words: `virtual_server 2001:db8::100 80`)"
        } else {
            ""
        };
        notes.push(format!(
            "{loc}: virtual_server {what} (no port: keepalived makes a port-0 service \
             persistent, check_data.c validate_check_config; imported with persistence {} \
             s){hint}",
            crate::service::DEFAULT_PERSISTENT_TIMEOUT
        ));
        svc.insert(
            "persistent".into(),
            json!(crate::service::DEFAULT_PERSISTENT_TIMEOUT),
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
            .map(|(mark, _)| {
                let mut m = svc.clone();
                m.insert("fwmark".into(), json!(mark));
                if af == Af::Inet6 {
                    m.insert("af".into(), json!("inet6"));
                }
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

#[cfg(test)]
mod ipv6_tests;
#[cfg(test)]
mod tests;
