//! The service addresses a `virtual_server` line names (an address and
//! port, a group, or a firewall mark).

use super::*;

/// The service addresses a `virtual_server` line names: `IP PORT`,
/// `group NAME` (expanded: keepalived's virtual_server_group entries
/// `IP PORT`, `IP-LAST PORT` ranges, `fwmark N [inet|inet6]`) or
/// `fwmark N`.
pub(super) enum Addrs {
    Ip(Vec<(IpAddr, u16)>),
    /// Marks, each with the family a group entry gave it (`fwmark 1
    /// inet6`), None = the virtual server's.
    Fwmark(Vec<(u32, Option<Af>)>),
}

pub(super) struct VsAddrs {
    pub(super) addrs: Addrs,
    /// "2001:db8::100 80", "group web", "fwmark 7" (for messages).
    pub(super) what: String,
    /// A `virtual_server group NAME`.
    pub(super) group: bool,
}

pub(super) fn vs_addrs(n: &Node, ctx: &Ctx, notes: &mut Vec<String>) -> Result<VsAddrs, String> {
    match n.args.first().map(String::as_str) {
        Some("fwmark") => {
            let m: u32 = n
                .args
                .get(1)
                .and_then(|a| a.parse().ok())
                .filter(|m| *m > 0)
                .ok_or_else(|| format!("{}: virtual_server fwmark needs a mark 1..", n.loc))?;
            Ok(VsAddrs {
                addrs: Addrs::Fwmark(vec![(m, None)]),
                what: format!("fwmark {m}"),
                group: false,
            })
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
                    // check_data.c alloc_vsg_entry: `fwmark N [inet|inet6]`.
                    let fam = match e.args.get(1).map(String::as_str) {
                        None => Ok(None),
                        Some("inet") => Ok(Some(Af::Inet)),
                        Some("inet6") => Ok(Some(Af::Inet6)),
                        Some(f) => Err(f),
                    };
                    match (e.args.first().and_then(|a| a.parse::<u32>().ok()), fam) {
                        (Some(m), Ok(f)) if m > 0 => marks.push((m, f)),
                        (_, Err(f)) => notes.push(format!(
                            "{}: fwmark family {f:?} (inet or inet6; skipped)",
                            e.loc
                        )),
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
                        "{}: virtual_server_group {name} entry {} (not an address or a range \
                         a.b.c.d-e / x:y::z-ffff; skipped)",
                        e.loc, e.key
                    )),
                }
            }
            let what = format!("group {name}");
            if !marks.is_empty() {
                if !ips.is_empty() {
                    notes.push(format!(
                        "{}: virtual_server_group {name} mixes addresses and fwmarks: \
                         only the addresses are imported",
                        g.loc
                    ));
                } else {
                    return Ok(VsAddrs {
                        addrs: Addrs::Fwmark(marks),
                        what,
                        group: true,
                    });
                }
            }
            if ips.is_empty() {
                return Err(format!(
                    "{}: virtual_server group {name} has no usable entry",
                    n.loc
                ));
            }
            Ok(VsAddrs {
                addrs: Addrs::Ip(ips),
                what,
                group: true,
            })
        }
        _ => {
            let ip = ip_arg(n, 0)?;
            let port = match n.args.get(1) {
                Some(_) => port_arg(n, 1)?,
                None => 0,
            };
            Ok(VsAddrs {
                addrs: Addrs::Ip(vec![(ip, port)]),
                what: format!("{} {}", n.args[0], port),
                group: false,
            })
        }
    }
}
