//! Route announcements for a fleet of directors behind ECMP.
//!
//! With `announce` configured, rvsd keeps one kernel route per VIP it can
//! serve, `VIP/32 dev TWIN table T proto static`, in a routing table of its
//! own, and nothing else there. A routing daemon in the director's kernel
//! (BIRD's `kernel` protocol with `learn` on that table, exporting to BGP)
//! announces exactly those routes to the router, whose ECMP route spreads
//! flows over the directors that announce. A VIP is announced while:
//!
//! - some service on it has a real server the scheduler can pick (in the
//!   snapshot with a weight above 0: not removed or quiesced by a failed
//!   health check; a sorry server does not count),
//! - this director owns it (`vip_ownership`), and
//! - the director is not draining (`rvsadm --drain`, or the
//!   `drain_grace_s` after SIGTERM).
//!
//! The routes go through the twin, so when rvsd dies the kernel deletes
//! its tap twin and the routes with it (and the BGP session over the twin
//! fails): a crash withdraws without anyone's help. As for VIP ownership,
//! the `ip` program does the netlink work, keeping `unsafe` out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// `"announce": {"table": 4242, "dev": "rvs0", "drain_grace_s": 10}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceConf {
    /// The kernel routing table rvsd keeps its routes in; rvsd owns it
    /// (it removes whatever else is there at start).
    pub table: u32,
    /// The kernel twin the routes point at; the first twin when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// After SIGTERM: withdraw every route, then keep forwarding this long
    /// (established flows finish, or the router moves them) before exiting.
    #[serde(default)]
    pub drain_grace_s: u32,
}

impl AnnounceConf {
    /// Problems with this block, given the configured twins' names.
    pub fn check(&self, twins: &[&str]) -> Vec<String> {
        let mut errs = Vec::new();
        // 253 default, 254 main, 255 local: the kernel's own.
        if self.table == 0 || (253..=255).contains(&self.table) {
            errs.push(format!(
                "announce.table: {} is reserved (0, 253 default, 254 main, 255 local); \
                 use a table of rvsd's own, e.g. 4242",
                self.table
            ));
        }
        match &self.dev {
            None if twins.is_empty() => {
                errs.push("announce: needs a port with a kernel_twin (the routes' device)".into())
            }
            Some(d) if !twins.contains(&d.as_str()) => errs.push(format!(
                "announce.dev: {d:?} is not a kernel_twin name ({})",
                twins.join(", ")
            )),
            _ => {}
        }
        if self.drain_grace_s > 3600 {
            errs.push("announce.drain_grace_s: at most 3600".into());
        }
        errs
    }
}

/// Why a VIP is or is not announced now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Announced,
    /// No service on it has a real server with a weight above 0.
    NoRealServer,
    /// `vip_ownership` "kernel" and the VIP is not on a twin.
    NotOwned,
    Draining,
}

impl Reason {
    pub fn text(self) -> &'static str {
        match self {
            Reason::Announced => "announced",
            Reason::NoRealServer => "withdrawn (no real server available)",
            Reason::NotOwned => "withdrawn (not owned)",
            Reason::Draining => "withdrawn (draining)",
        }
    }
}

/// What to announce: each VIP with whether it has a usable real server,
/// and whether it is owned.
pub fn decide(
    vips: &BTreeMap<Ipv4Addr, bool>,
    owns: impl Fn(Ipv4Addr) -> bool,
    draining: bool,
) -> BTreeMap<Ipv4Addr, Reason> {
    vips.iter()
        .map(|(&vip, &usable)| {
            let why = if !usable {
                Reason::NoRealServer
            } else if !owns(vip) {
                Reason::NotOwned
            } else if draining {
                Reason::Draining
            } else {
                Reason::Announced
            };
            (vip, why)
        })
        .collect()
}

/// One VIP in the `announce` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAnnouncement {
    pub vip: Ipv4Addr,
    pub state: Reason,
    /// Whether the route is in the kernel table now.
    pub installed: bool,
}

/// The control socket's `announce` reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnnounceView {
    pub ok: bool,
    pub table: u32,
    pub dev: String,
    pub draining: bool,
    pub vips: Vec<VipAnnouncement>,
    /// `ip route` commands that failed (retried on the next round).
    pub route_errors: u64,
}

/// The announcer's state, shared by its thread and the control plane.
pub struct Announcer {
    table: u32,
    dev: String,
    draining: AtomicBool,
    /// Handing over: the successor announces from now on.
    suspended: AtomicBool,
    errors: AtomicU64,
    /// The commands failing now, each logged once (see `ip`).
    failing: Mutex<std::collections::HashSet<String>>,
    /// The last decision and what is in the kernel table.
    state: Mutex<(
        BTreeMap<Ipv4Addr, Reason>,
        std::collections::BTreeSet<Ipv4Addr>,
    )>,
}

/// How often the announcer looks at the service table (a health check's
/// verdict reaches the router this much later, plus BGP's own delay).
pub const PERIOD: Duration = Duration::from_millis(100);
/// How often it reads the kernel table back (someone may flush it).
const RESYNC: Duration = Duration::from_secs(5);

impl Announcer {
    pub fn new(table: u32, dev: &str) -> Announcer {
        Announcer {
            table,
            dev: dev.to_string(),
            draining: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            failing: Mutex::default(),
            state: Mutex::default(),
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Start or end draining; the thread withdraws or announces within
    /// [`PERIOD`].
    pub fn set_draining(&self, on: bool) {
        if self.draining.swap(on, Relaxed) != on {
            log::info!(
                "announce: {}",
                if on {
                    "draining: withdrawing every VIP"
                } else {
                    "drain ended"
                }
            );
        }
    }

    /// Leave the table alone from now on (a handover: the twin and its
    /// routes go with this process, the successor announces anew).
    pub fn suspend(&self) {
        self.suspended.store(true, Relaxed);
    }

    pub fn view(&self) -> AnnounceView {
        let s = self.state.lock();
        AnnounceView {
            ok: true,
            table: self.table,
            dev: self.dev.clone(),
            draining: self.draining(),
            vips: s
                .0
                .iter()
                .map(|(&vip, &state)| VipAnnouncement {
                    vip,
                    state,
                    installed: s.1.contains(&vip),
                })
                .collect(),
            route_errors: self.errors.load(Relaxed),
        }
    }

    /// Run `ip ARGS`. A failure is counted each time but logged once per
    /// command until that command succeeds (the thread retries every
    /// [`PERIOD`]: a missing twin must not flood the log). Deleting a
    /// route that is already gone (the kernel removes routes with their
    /// device) is a success.
    fn ip(&self, args: &[&str]) -> bool {
        let cmd = args.join(" ");
        let failure = match Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
        {
            Ok(o) if o.status.success() => None,
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                match args.get(1) == Some(&"del") && err.contains("No such process") {
                    true => None,
                    false => Some(format!("ip {cmd}: {err}")),
                }
            }
            Err(e) => Some(format!("running ip: {e}")),
        };
        let mut failing = self.failing.lock();
        match failure {
            None => {
                failing.remove(&cmd);
                true
            }
            Some(msg) => {
                self.errors.fetch_add(1, Relaxed);
                if failing.insert(cmd) {
                    log::warn!("announce: {msg} (retried every {PERIOD:?}; logged once)");
                }
                false
            }
        }
    }

    /// The /32 routes in the table now.
    fn read_table(&self) -> Option<std::collections::BTreeSet<Ipv4Addr>> {
        let t = self.table.to_string();
        let o = Command::new("ip")
            .args(["-4", "route", "show", "table", &t])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(parse_routes(&String::from_utf8_lossy(&o.stdout)))
    }

    /// Make the table hold exactly the announced VIPs of `want`.
    pub fn apply(&self, mut want: BTreeMap<Ipv4Addr, Reason>, resync: bool) {
        let t = self.table.to_string();
        let mut s = self.state.lock();
        // Decided before a drain or a handover began (the thread, racing
        // withdraw_all or suspend): what holds now wins.
        if self.suspended.load(Relaxed) {
            return;
        }
        if self.draining() {
            for r in want.values_mut() {
                if *r == Reason::Announced {
                    *r = Reason::Draining;
                }
            }
        }
        if resync {
            if let Some(now) = self.read_table() {
                s.1 = now;
            }
        }
        let installed = s.1.clone();
        for vip in &installed {
            if want.get(vip) != Some(&Reason::Announced) {
                let dst = format!("{vip}/32");
                if self.ip(&["route", "del", &dst, "table", &t]) {
                    log::info!("announce: withdrew {vip}");
                    s.1.remove(vip);
                }
            }
        }
        for (vip, _) in want.iter().filter(|(_, r)| **r == Reason::Announced) {
            if s.1.contains(vip) {
                continue;
            }
            let dst = format!("{vip}/32");
            let args = [
                "route", "replace", &dst, "dev", &self.dev, "table", &t, "proto", "static",
            ];
            if self.ip(&args) {
                log::info!("announce: announced {vip} (table {t} dev {})", self.dev);
                s.1.insert(*vip);
            }
        }
        s.0 = want;
    }

    /// Empty the table at start: routes of an earlier rvsd (a table of
    /// rvsd's own; a crash leaves none, they went with the twin).
    pub fn clear(&self) {
        let t = self.table.to_string();
        if let Some(now) = self.read_table() {
            for vip in now {
                let _ = self.ip(&["route", "del", &format!("{vip}/32"), "table", &t]);
            }
        }
        self.state.lock().1.clear();
    }

    /// Withdraw every route now (drain at exit), as the thread would.
    pub fn withdraw_all(&self) {
        self.set_draining(true);
        if self.suspended.load(Relaxed) {
            return;
        }
        let want = self
            .state
            .lock()
            .0
            .iter()
            .map(|(&v, &r)| {
                (
                    v,
                    if r == Reason::Announced {
                        Reason::Draining
                    } else {
                        r
                    },
                )
            })
            .collect();
        self.apply(want, true);
    }
}

/// The /32 destinations of `ip -4 route show table T` output.
pub fn parse_routes(text: &str) -> std::collections::BTreeSet<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|d| d.strip_suffix("/32").unwrap_or(d).parse().ok())
        .collect()
}

/// Follow the service table until `stop`: every [`PERIOD`], decide
/// from `vips()` (each VIP and whether it has a usable real server) and
/// `owns`, and bring the kernel table in line.
pub fn spawn(
    a: Arc<Announcer>,
    vips: impl Fn() -> BTreeMap<Ipv4Addr, bool> + Send + 'static,
    owns: impl Fn(Ipv4Addr) -> bool + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    a.clear();
    std::thread::Builder::new()
        .name("rvs-announce".into())
        .spawn(move || {
            let mut synced = Instant::now();
            while !stop.load(Relaxed) {
                if a.suspended.load(Relaxed) {
                    std::thread::sleep(PERIOD);
                    continue;
                }
                let want = decide(&vips(), &owns, a.draining());
                let resync = synced.elapsed() >= RESYNC;
                if resync {
                    synced = Instant::now();
                }
                // Only when something changed (or to resync): each change
                // costs an `ip` process.
                let changed = {
                    let s = a.state.lock();
                    s.0 != want
                        || want
                            .iter()
                            .any(|(v, r)| (*r == Reason::Announced) != s.1.contains(v))
                };
                if changed || resync {
                    a.apply(want, resync);
                }
                std::thread::sleep(PERIOD);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn a_vip_is_announced_only_when_usable_owned_and_not_draining() {
        let vips = BTreeMap::from([
            (ip("10.0.0.1"), true),
            (ip("10.0.0.2"), false),
            (ip("10.0.0.3"), true),
        ]);
        let owns = |v: Ipv4Addr| v != ip("10.0.0.3");
        let d = decide(&vips, owns, false);
        assert_eq!(d[&ip("10.0.0.1")], Reason::Announced);
        assert_eq!(d[&ip("10.0.0.2")], Reason::NoRealServer);
        assert_eq!(d[&ip("10.0.0.3")], Reason::NotOwned);
        let d = decide(&vips, owns, true);
        assert_eq!(d[&ip("10.0.0.1")], Reason::Draining);
        assert_eq!(d[&ip("10.0.0.2")], Reason::NoRealServer);
    }

    #[test]
    fn routes_are_read_from_ip_route_show() {
        let text = "10.0.0.100 dev rvs0 proto static scope link \n\
                    10.0.0.101 dev rvs0 proto static scope link \n\
                    10.1.0.0/16 dev rvs0 scope link \n\
                    broadcast 10.0.0.255 dev rvs0 proto kernel\n";
        let r = parse_routes(text);
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            [ip("10.0.0.100"), ip("10.0.0.101")]
        );
    }

    #[test]
    fn a_failing_route_command_is_counted_each_time_and_retried() {
        // A device that does not exist: `ip route replace` fails (as root
        // or not), nothing is installed, the next round tries again.
        let a = Announcer::new(4244, "rvs-no-such-dev");
        let want = BTreeMap::from([
            (ip("10.255.0.1"), Reason::Announced),
            (ip("10.255.0.3"), Reason::Announced),
        ]);
        a.apply(want.clone(), false);
        a.apply(want, false);
        let v = a.view();
        assert_eq!(v.route_errors, 4);
        assert!(v.vips.iter().all(|v| !v.installed));
        // Logged once per command, not once per attempt.
        assert_eq!(a.failing.lock().len(), 2);
    }

    #[test]
    fn a_decision_made_before_a_drain_does_not_announce_after_it() {
        // The thread decided "announce" just before withdraw_all set
        // draining: applying it now must not install the route.
        let a = Announcer::new(4245, "rvs-no-such-dev");
        a.set_draining(true);
        a.apply(
            BTreeMap::from([(ip("10.255.0.2"), Reason::Announced)]),
            false,
        );
        let v = a.view();
        assert_eq!(v.vips[0].state, Reason::Draining);
        assert_eq!(v.route_errors, 0, "no route command was tried");
        a.suspend();
        a.set_draining(false);
        a.apply(
            BTreeMap::from([(ip("10.255.0.2"), Reason::Announced)]),
            false,
        );
        assert_eq!(
            a.view().route_errors,
            0,
            "suspended: the table is left alone"
        );
    }

    #[test]
    fn reserved_tables_and_unknown_devices_are_refused() {
        let c = |table, dev: Option<&str>| AnnounceConf {
            table,
            dev: dev.map(Into::into),
            drain_grace_s: 0,
        };
        assert!(c(4242, None).check(&["rvs0"]).is_empty());
        assert!(c(4242, Some("rvs0")).check(&["rvs0"]).is_empty());
        for t in [0, 253, 254, 255] {
            assert!(c(t, None).check(&["rvs0"])[0].contains("reserved"), "{t}");
        }
        assert!(c(4242, Some("eth0")).check(&["rvs0"])[0].contains("not a kernel_twin"));
        assert!(c(4242, None).check(&[])[0].contains("needs a port with a kernel_twin"));
        let mut long = c(4242, None);
        long.drain_grace_s = 3601;
        assert!(long.check(&["rvs0"])[0].contains("at most 3600"));
    }
}
