//! Real servers: a `real_server` block as a DestConf (JSON), and the
//! forwarding method (`lvs_method`) it or its virtual server names.

use super::*;

/// A forwarding method as JSON fields of a DestConf: `fwd`, and the tunnel
/// fields of CONTRACT.md (`tun_type`, `tun_port`, `tun_csum`).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Method {
    pub(super) fwd: &'static str,
    pub(super) tun: Map<String, Value>,
}

/// keepalived's svr_forwarding_handler: NAT | DR | TUN [type ipip|gue|gre]
/// [port N] [nocsum|csum|remcsum]; DPVS adds FNAT/FULLNAT.
pub(super) fn method(c: &Node) -> Result<Method, String> {
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

/// The `lvs_method` a real server block sets itself, if any (the last one
/// that parses, as keepalived's handler overwrites).
pub(super) fn own_method(r: &Node) -> Option<Method> {
    r.children
        .iter()
        .rev()
        .filter(|k| k.key == "lvs_method")
        .find_map(|k| method(k).ok())
}

/// What a real server takes from its virtual server.
pub(super) struct VsFor<'a> {
    pub(super) method: &'a Method,
    pub(super) af: Af,
    /// What set the virtual server's family (for messages).
    pub(super) af_from: &'a str,
    pub(super) inherit: Inherit,
    pub(super) weight: Option<u32>,
    pub(super) vhost: Option<&'a str>,
    pub(super) delay_loop: u32,
}

/// A real server block's outcome.
pub(super) enum Rs {
    Dest(Value),
    /// Not imported for its address family or an IPv6 tunnel type rvs lacks.
    Family,
    /// Not imported for another reason (bad address or port).
    Skipped,
}

/// One `real_server` block as a DestConf (JSON), or a note why not.
/// `ka_tunnel`: keepalived saw it tunnelled when its block ended (its
/// family may then differ from the virtual server's).
pub(super) fn real_server(r: &Node, vs: &VsFor, ka_tunnel: bool, notes: &mut Vec<String>) -> Rs {
    let rip = match ip_arg(r, 0) {
        Ok(ip) => ip,
        Err(e) => {
            notes.push(format!("{e}; real_server skipped"));
            return Rs::Skipped;
        }
    };
    let m0 = own_method(r).unwrap_or_else(|| vs.method.clone());
    let fam = Af::of(rip);
    // DPVS's NAT64: an IPv4 FNAT real server of an IPv6 virtual server
    // (control/validate.rs check_family takes it).
    let nat64 = vs.af == Af::Inet6 && fam == Af::Inet && m0.fwd == "fullnat";
    // A tunnel real server of the other family: IPv6 in IPv4 or IPv4 in
    // IPv6, as IPVS tunnels them.
    let across = fam != vs.af && (ka_tunnel || m0.fwd == "tun");
    let six_in_four = across && fam == Af::Inet;
    if fam != vs.af && !nat64 && !across {
        // check_parser.c rs_end_handler: "Address family of virtual server
        // and real server %s don't match - skipping real server", unless
        // tunnelled (IPVS tunnels across families; rvs does not yet).
        let why = if m0.fwd == "fullnat" {
            "FULLNAT from an IPv4 virtual server reaches IPv4 real servers only (NAT64 is \
             IPv6 to IPv4)"
                .to_string()
        } else {
            format!(
                "the families of a virtual server ({}, set by {}) and its real server must \
                 match unless tunnelled: keepalived skips it too, check_parser.c \
                 rs_end_handler",
                vs.af.name(),
                vs.af_from
            )
        };
        notes.push(format!(
            "{}: real_server {rip} ({} real server of an {} virtual server: {why}; skipped)",
            r.loc,
            fam.name(),
            vs.af.name()
        ));
        return Rs::Family;
    }
    // IPv6 in IPv6 is rvs's only tunnel to an IPv6 real server so far,
    // and IPv6 in IPv4 to an IPv6 service's IPv4 one (control/validate.rs
    // check_dest).
    if let Some(t) = m0
        .tun
        .get("tun_type")
        .and_then(Value::as_str)
        .filter(|t| (fam == Af::Inet6 || six_in_four) && m0.fwd == "tun" && *t != "ipip")
    {
        let (to, how) = if six_in_four {
            (
                "an IPv4 real server of an IPv6 virtual server",
                "IPv6 in IPv4",
            )
        } else {
            ("an IPv6 real server", "IPv6 in IPv6")
        };
        notes.push(format!(
            "{}: real_server {rip} (lvs_method TUN type {t} to {to}: rvs tunnels there with \
             ipip ({how}) only so far; skipped)",
            r.loc
        ));
        return Rs::Family;
    }
    let rport = match r.args.get(1) {
        Some(_) => match port_arg(r, 1) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{e}; real_server skipped"));
                return Rs::Skipped;
            }
        },
        None => 0,
    };
    let mut d = Map::new();
    d.insert("ip".into(), json!(rip));
    d.insert("port".into(), json!(rport));
    // keepalived: a real server without weight takes the virtual server's
    // `weight` (default 1).
    d.insert("weight".into(), json!(vs.weight.unwrap_or(1)));
    let mut m = vs.method.clone();
    let mut inherit = Inherit::default();
    let mut checks = Vec::new();
    let mut rs_vhost = vs.vhost.map(str::to_string);
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
    let rs = inherit.under(vs.inherit);
    let mut built: Vec<HealthCheck> = Vec::new();
    for c in checks {
        if let Some(h) = checker(c, rs, rs_vhost.as_deref(), vs.delay_loop, notes) {
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
    Rs::Dest(Value::Object(d))
}
