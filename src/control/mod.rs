//! The control plane: JSON requests in, validated configuration out.
//!
//! The control thread owns the master list of [`ServiceConf`]. A request is
//! applied to a copy, the copy is validated whole and turned into a new
//! [`ServiceTable`] snapshot, and only then is the snapshot published
//! (atomically swapped) for the workers. A rejected request therefore never
//! changes the running configuration.
//!
//! Protocol: one JSON object per line in, one per line out. Success is
//! `{"ok": true, ...}`, failure `{"error": {"code": "...", "message": "..."}}`.

pub mod server;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::TimeoutConf;
use crate::conn::{ConnTable, State, Timeouts};
use crate::flow::{ClientAddr, DestKey, Forward, Proto, ServiceKey, TunType};
use crate::fwmark::{Classifier, FwmarkRule};
use crate::health::{HealthEvent, HealthSource, HealthTarget};
use crate::io::PortCounters;
use crate::sched;
use crate::service::{
    CheckKind, DestConf, HealthCheck, OnFailure, ServiceConf, ServiceTable, SorryServer,
    StateRegistry,
};
use crate::stats::{StatsSnapshot, WorkerStats};

mod protocol;
mod validate;
mod view;

pub use protocol::*;
pub use validate::*;

/// What the control plane can see of the data ports.
pub trait PortView: Send + Sync {
    fn ports(&self) -> Vec<PortReport>;
    /// The packet pools (none where there is no DPDK).
    fn mempools(&self) -> Vec<MempoolReport> {
        Vec::new()
    }
    /// VIP ownership (`{"mode": "always"|"kernel", "on_twins": [...]}`),
    /// None (null) without a daemon.
    fn vip_ownership(&self) -> Option<OwnershipView> {
        None
    }
    /// Stop the packet workers, close the ports and let go of the
    /// connection table file, for a successor (`handover`, from process
    /// `successor`); returns when the workers stopped (CLOCK_BOOTTIME ms).
    fn hand_over(&self, successor: u32) -> Result<u64, String> {
        let _ = successor;
        Err("this director has no data ports to hand over".into())
    }
    /// May process `successor` take this rvsd's place? Asked before
    /// anything is frozen or stopped.
    fn check_successor(&self, successor: u32) -> Result<(), String> {
        let _ = successor;
        Ok(())
    }
    /// The successor runs (`handover_done`): exit.
    fn hand_over_done(&self) {}
    /// Start the successor (`start_successor`); its pid.
    fn start_successor(&self) -> Result<u32, String> {
        Err("this director cannot start a successor".into())
    }
    /// Route announcements (`announce`), None when not configured.
    fn announce(&self) -> Option<crate::announce::AnnounceView> {
        None
    }
    /// Start or end draining (`drain`): withdraw every announcement.
    fn drain(&self, on: bool) -> Result<(), String> {
        let _ = on;
        Err("no route announcements configured (\"announce\" in the configuration)".into())
    }
}

/// One packet mempool as reported by `stats`: mbufs out of the pool (held by
/// workers, device rings or in flight) and in it (per-lcore caches
/// included). A count of `in_use` that does not come back once traffic
/// stops is an mbuf leak.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MempoolReport {
    pub name: String,
    pub in_use: u32,
    pub available: u32,
}

/// One data port as reported by `stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PortReport {
    pub device: String,
    pub mac: String,
    pub ipv4: String,
    pub counters: PortCounters,
}

struct Master {
    confs: Vec<ServiceConf>,
    /// The fwmark classifier's rules as configured (`dump` returns them).
    rules: Vec<FwmarkRule>,
    registry: StateRegistry,
    /// Health of checked real servers, beside (never inside) the
    /// configuration; applied when a snapshot is built.
    health: HashMap<DestKey, HealthRecord>,
}

/// What the health checker found out about one real server.
#[derive(Debug, Clone, Default)]
struct HealthRecord {
    down: bool,
    /// Probe attempts, failed ones, and up/down changes.
    checks: u64,
    failures: u64,
    transitions: u64,
    last_error: Option<String>,
    /// Weight set by a `misc_dynamic` check (None: the configured one).
    weight: Option<u32>,
}

impl Master {
    /// Checked real servers that are down.
    fn down(&self) -> HashSet<DestKey> {
        self.health
            .iter()
            .filter(|(_, r)| r.down)
            .map(|(k, _)| *k)
            .collect()
    }
    /// Weights set by health checks (keepalived `misc_dynamic`).
    fn weights(&self) -> HashMap<DestKey, u32> {
        self.health
            .iter()
            .filter_map(|(k, r)| Some((*k, r.weight?)))
            .collect()
    }
}

/// The control plane's state and the handles it publishes to.
pub struct Control {
    master: Mutex<Master>,
    pub table: Arc<ArcSwap<ServiceTable>>,
    pub conns: Arc<ConnTable>,
    pub workers: Arc<[CachePadded<WorkerStats>]>,
    /// Addresses of the director's own ports (not allowed as VIP or RIP).
    pub local_ips: Vec<IpAddr>,
    pub ports: Option<Box<dyn PortView>>,
    /// Bumped on every published configuration change (health checker
    /// re-reads its targets).
    generation: AtomicU64,
    /// Where every applied change of the table is saved (rvsd
    /// `--state-file`); none: changes live only in memory.
    pub state_file: Option<crate::statefile::StateFile>,
    /// Some port has a kernel twin: real servers at the director's own
    /// addresses are then taken as IPVS "Local" (delivered to the twin).
    pub local_twin: bool,
    /// Connection sync daemons (`crate::sync`).
    pub sync: crate::sync::Daemons,
    /// What adopting a previous rvsd's connections did, if it did.
    adopted: Mutex<Option<crate::sync::Adopted>>,
    /// Handing over to a successor: configuration changes are refused.
    handing_over: std::sync::atomic::AtomicBool,
}

impl Control {
    fn locals(&self) -> Locals<'_> {
        Locals {
            ips: &self.local_ips,
            twin: self.local_twin,
        }
    }

    pub fn new(
        conns: Arc<ConnTable>,
        workers: Arc<[CachePadded<WorkerStats>]>,
        local_ips: Vec<IpAddr>,
    ) -> Self {
        let table = Arc::new(ArcSwap::from_pointee(ServiceTable::default()));
        Control {
            sync: crate::sync::Daemons::new(conns.clone(), table.clone()),
            adopted: Mutex::new(None),
            handing_over: Default::default(),
            master: Mutex::new(Master {
                confs: Vec::new(),
                rules: Vec::new(),
                registry: StateRegistry::new(conns.ids().clone()),
                health: HashMap::new(),
            }),
            table,
            conns,
            workers,
            local_ips,
            ports: None,
            generation: AtomicU64::new(0),
            state_file: None,
            local_twin: false,
        }
    }

    /// Handle one request line; always returns one JSON response (no newline).
    pub fn handle_line(&self, line: &str) -> String {
        let resp = match parse_request(line) {
            Ok(req) => match self.handle(req) {
                Ok(v) => v,
                Err(e) => e.to_json(),
            },
            Err(e) => e.to_json(),
        };
        resp.to_string()
    }

    /// Apply a request.
    pub fn handle(&self, req: Request) -> Result<Value, CtlError> {
        if req.changes_config() && self.handing_over.load(Relaxed) {
            return Err(handing_over_error());
        }
        match req {
            Request::Ping {} => to_reply(&PingReply {
                ok: true,
                version: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
            }),
            Request::List {} => to_reply(&self.list()),
            Request::Stats {} => to_reply(&self.stats()),
            Request::Connections { limit } => {
                to_reply(&self.connections(limit.unwrap_or(usize::MAX)))
            }
            Request::Load {
                services,
                fwmark_rules,
            } => {
                let n = services.len();
                self.load_with_rules(services, fwmark_rules)?;
                to_reply(&LoadReply {
                    ok: true,
                    services: n,
                })
            }
            Request::SetFwmarkRules { rules } => {
                let n = rules.len();
                self.set_fwmark_rules(rules)?;
                to_reply(&FwmarkRulesReply {
                    ok: true,
                    fwmark_rules: n,
                })
            }
            Request::Dump {} => {
                let m = self.master.lock();
                to_reply(&DumpReply {
                    ok: true,
                    services: m.confs.clone(),
                    fwmark_rules: m.rules.clone(),
                })
            }
            Request::GetTimeouts {} => {
                let t = self.conns.timeouts();
                to_reply(&TimeoutsReply {
                    ok: true,
                    timeouts: TimeoutsView {
                        tcp: t.get(State::Established),
                        tcpfin: t.get(State::FinWait),
                        udp: t.get(State::Udp),
                    },
                })
            }
            Request::SetTimeouts { timeouts } => {
                self.conns
                    .set_timeouts(apply_timeouts(self.conns.timeouts(), &timeouts));
                to_reply(&OkReply::OK)
            }
            Request::StartDaemon {
                state,
                mcast_ifn,
                syncid,
                sync_maxlen,
                mcast_group,
                mcast_port,
                mcast_ttl,
            } => match self.start_daemon(
                state,
                crate::sync::SyncConf {
                    mcast_ifn,
                    syncid,
                    sync_maxlen,
                    mcast_group,
                    mcast_port,
                    mcast_ttl,
                },
            ) {
                Ok(c) => to_reply(&StartDaemonReply {
                    ok: true,
                    state,
                    sync_maxlen: c.sync_maxlen,
                }),
                Err(e) => Err(CtlError::new(daemon_code(e.errno), e.message)),
            },
            Request::StopDaemon { state } => match self.stop_daemon(state) {
                Ok(()) => to_reply(&OkReply::OK),
                Err(e) => Err(CtlError::new(daemon_code(e.errno), e.message)),
            },
            Request::Daemon {} => to_reply(&self.daemon()),
            Request::Announce {} => match self.ports.as_ref().and_then(|p| p.announce()) {
                Some(v) => to_reply(&v),
                None => Err(CtlError::new(
                    ErrorCode::NotFound,
                    "no route announcements configured (\"announce\" in the configuration)",
                )),
            },
            Request::Drain { on } => match &self.ports {
                Some(p) => {
                    p.drain(on)
                        .map_err(|e| CtlError::new(ErrorCode::NotFound, e))?;
                    to_reply(&OkReply::OK)
                }
                None => Err(CtlError::new(ErrorCode::NotRunning, "no daemon to drain")),
            },
            Request::Handover { pid } => to_reply(&self.hand_over(pid)?),
            Request::StartSuccessor {} => {
                let ports = self
                    .ports
                    .as_ref()
                    .ok_or_else(|| CtlError::new(ErrorCode::NotRunning, "no daemon to succeed"))?;
                let pid = ports
                    .start_successor()
                    .map_err(|e| CtlError::new(ErrorCode::Busy, e))?;
                to_reply(&StartSuccessorReply { ok: true, pid })
            }
            Request::HandoverDone {} => {
                if !self.handing_over.load(Relaxed) {
                    return Err(CtlError::invalid("handover_done: no handover under way"));
                }
                if let Some(p) = &self.ports {
                    p.hand_over_done();
                }
                to_reply(&OkReply::OK)
            }
            Request::Zero { service } => {
                let m = self.master.lock();
                if let Some(s) = service {
                    if !m.confs.iter().any(|c| c.key() == s.key()) {
                        return Err(not_found(s.key()));
                    }
                }
                m.registry.zero(service.map(|s| s.key()));
                to_reply(&OkReply::OK)
            }
            mutation => self.mutate(mutation),
        }
    }

    /// Sync daemons are part of the configuration the successor takes
    /// from the state file: not started or stopped meanwhile (keepalived
    /// through the IPVS socket gets EBUSY).
    fn refuse_while_handing_over(&self) -> Result<(), crate::sync::DaemonError> {
        match self.handing_over.load(Relaxed) {
            true => Err(crate::sync::DaemonError {
                errno: "EBUSY",
                message: handing_over_error().message,
            }),
            false => Ok(()),
        }
    }

    /// `handover`: freeze the configuration (the state file holds the last
    /// of it), stop the sync daemons (the successor starts them again from
    /// the state file), then the data path.
    fn hand_over(&self, successor: u32) -> Result<HandoverReply, CtlError> {
        let ports = self.ports.as_ref().ok_or_else(|| {
            CtlError::new(
                ErrorCode::NotRunning,
                "this director has no data ports to hand over",
            )
        })?;
        ports
            .check_successor(successor)
            .map_err(|e| CtlError::new(ErrorCode::Invalid, e))?;
        {
            // Under the lock, so no change is half applied.
            let _m = self.master.lock();
            if self.handing_over.swap(true, Relaxed) {
                return Err(CtlError::new(ErrorCode::Busy, "a handover is under way"));
            }
        }
        let running = self.sync.status();
        for (role, _) in &running {
            let _ = self.sync.stop(*role);
        }
        let stopped_ms = match ports.hand_over(successor) {
            Ok(t) => t,
            Err(e) => {
                // Nothing was stopped (the guard comes first): go on as before.
                for (role, conf) in running {
                    let _ = self.sync.start(role, conf);
                }
                self.handing_over.store(false, Relaxed);
                return Err(CtlError::new(
                    ErrorCode::Io,
                    format!("handover failed: {e}"),
                ));
            }
        };
        let rx_packets = self.workers.iter().map(|w| w.snapshot().rx_packets).sum();
        Ok(HandoverReply {
            ok: true,
            pid: std::process::id(),
            stopped_ms,
            rx_packets,
        })
    }

    /// A handover is under way (configuration frozen).
    pub fn is_handing_over(&self) -> bool {
        self.handing_over.load(Relaxed)
    }

    /// Take the connections a previous rvsd left (`conn_table_file`) into
    /// the table, against the configuration loaded now. Reported in
    /// `stats` (`conn_table.adopted`).
    pub fn adopt(&self, prev: &crate::conn::Previous) -> crate::sync::Adopted {
        let r = crate::sync::adopt(prev, &self.conns, &self.table.load());
        *self.adopted.lock() = Some(r);
        r
    }

    /// Replace the whole service set (config load). Validated whole.
    pub fn load(&self, confs: Vec<ServiceConf>) -> Result<(), CtlError> {
        self.load_with_rules(confs, None)
    }

    /// Replace the fwmark classifier's rules; the running configuration
    /// stays as it is unless every rule is valid.
    pub fn set_fwmark_rules(&self, rules: Vec<FwmarkRule>) -> Result<(), CtlError> {
        let mut m = self.master.lock();
        self.apply_rules_locked(&mut m, Some(rules), |_| Ok(()))
    }

    /// The fwmark classifier's rules as configured.
    pub fn fwmark_rules(&self) -> Vec<FwmarkRule> {
        self.master.lock().rules.clone()
    }

    /// [`Control::load`], replacing the fwmark rules too when given.
    pub fn load_with_rules(
        &self,
        confs: Vec<ServiceConf>,
        rules: Option<Vec<FwmarkRule>>,
    ) -> Result<(), CtlError> {
        let mut m = self.master.lock();
        self.apply_rules_locked(&mut m, rules, |c| {
            *c = Vec::new();
            let mut errs = Vec::new();
            for s in confs {
                let key = s.key();
                if let Err(e) = add_service(c, s, &self.locals()) {
                    errs.push(format!("{key}: {}", e.message));
                }
            }
            if let Err(e) = check_whole(c) {
                errs.push(e.message);
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(CtlError::invalid(errs.join("; ")))
            }
        })
    }

    fn mutate(&self, req: Request) -> Result<Value, CtlError> {
        let locals = self.locals();
        let local = &locals;
        self.apply(|c| match req {
            Request::AddService { service } => add_service(c, service, local),
            Request::EditService { mut service } => {
                let i = find(c, service.key())?;
                if !service.dests.is_empty() {
                    return Err(CtlError::invalid(
                        "edit_service: real servers are edited with edit_dest",
                    ));
                }
                let dests = std::mem::take(&mut c[i].dests);
                check_service(&mut service, local)?;
                let laddrs = std::mem::take(&mut c[i].laddrs);
                c[i] = ServiceConf {
                    dests,
                    laddrs,
                    ..service
                };
                Ok(())
            }
            Request::DelService { service } => {
                let i = find(c, service.key())?;
                c.remove(i);
                Ok(())
            }
            Request::AddDest { service, dest } => {
                let i = find_for_dest(c, service.key())?;
                let d = check_dest(&c[i], dest, local)?;
                if c[i].dests.iter().any(|x| x.ip == d.ip && x.port == d.port) {
                    return Err(CtlError::new(
                        ErrorCode::Exists,
                        "Destination already exists",
                    ));
                }
                c[i].dests.push(d);
                Ok(())
            }
            Request::EditDest { service, dest } => {
                let i = find_for_dest(c, service.key())?;
                let d = check_dest(&c[i], dest, local)?;
                let j = c[i]
                    .dests
                    .iter()
                    .position(|x| x.ip == d.ip && x.port == d.port)
                    .ok_or_else(|| CtlError::new(ErrorCode::NotFound, "No such destination"))?;
                c[i].dests[j] = d;
                Ok(())
            }
            Request::DelDest { service, dest } => {
                let i = find_for_dest(c, service.key())?;
                let port = if dest.port == 0 { c[i].port } else { dest.port };
                let j = c[i]
                    .dests
                    .iter()
                    .position(|x| x.ip == dest.ip && x.port == port)
                    .ok_or_else(|| CtlError::new(ErrorCode::NotFound, "No such destination"))?;
                c[i].dests.remove(j);
                Ok(())
            }
            Request::Clear {} => {
                c.clear();
                Ok(())
            }
            Request::AddLaddr { service, laddr } => {
                let i = find(c, service.key())?;
                check_laddr(c, laddr, local.ips)?;
                if c[i].laddrs.contains(&laddr) {
                    return Err(CtlError::new(
                        ErrorCode::Exists,
                        "Local address already exists",
                    ));
                }
                c[i].laddrs.push(laddr);
                Ok(())
            }
            Request::DelLaddr { service, laddr } => {
                let i = find(c, service.key())?;
                let j = c[i]
                    .laddrs
                    .iter()
                    .position(|x| *x == laddr)
                    .ok_or_else(|| CtlError::new(ErrorCode::NotFound, "No such local address"))?;
                c[i].laddrs.remove(j);
                Ok(())
            }
            _ => unreachable!("read-only requests are handled before mutate"),
        })?;
        Ok(json!({"ok": true}))
    }

    /// Run `f` on a copy of the configuration; publish only if it succeeds
    /// and the result builds into a snapshot.
    fn apply(
        &self,
        f: impl FnOnce(&mut Vec<ServiceConf>) -> Result<(), CtlError>,
    ) -> Result<(), CtlError> {
        let mut m = self.master.lock();
        self.apply_locked(&mut m, f)
    }

    fn apply_locked(
        &self,
        m: &mut Master,
        f: impl FnOnce(&mut Vec<ServiceConf>) -> Result<(), CtlError>,
    ) -> Result<(), CtlError> {
        self.apply_rules_locked(m, None, f)
    }

    /// [`Control::apply_locked`] that can replace the fwmark rules too
    /// (`Some`), validated with the rest before anything is published.
    fn apply_rules_locked(
        &self,
        m: &mut Master,
        rules: Option<Vec<FwmarkRule>>,
        f: impl FnOnce(&mut Vec<ServiceConf>) -> Result<(), CtlError>,
    ) -> Result<(), CtlError> {
        // Again under the lock `hand_over` sets the flag under: a change
        // that passed `handle`'s check just before cannot land after.
        if self.handing_over.load(Relaxed) {
            return Err(handing_over_error());
        }
        let mut next = m.confs.clone();
        f(&mut next)?;
        check_whole(&next)?;
        let rules = rules.unwrap_or_else(|| m.rules.clone());
        let classifier = check_rules(&rules, &self.local_ips)?;
        // Health of servers no longer configured, or no longer checked, goes.
        let checked: HashSet<DestKey> = next
            .iter()
            .flat_map(|s| {
                s.dests
                    .iter()
                    .filter(|d| s.check_for(d).is_some())
                    .map(move |d| (s.key(), d.ip, d.port))
            })
            .collect();
        m.health.retain(|k, _| checked.contains(k));
        let down = m.down();
        let weights = m.weights();
        let mut table =
            ServiceTable::build_with_health_weights(&next, &mut m.registry, &down, &weights)
                .map_err(CtlError::invalid)?;
        table.set_fwmark(classifier);
        let before = self.table.load();
        for s in table.iter() {
            let was = before
                .get(&s.conf.key())
                .is_some_and(|o| o.sorry_in_service());
            if s.sorry_in_service() != was {
                let (ip, port) = s.conf.sorry_addr().unwrap_or((s.conf.vip, 0));
                if was {
                    log::info!("{}: sorry server {ip}:{port} out of service", s.conf.key());
                } else {
                    log::warn!(
                        "{}: no real server available; sorry server {ip}:{port} in service",
                        s.conf.key()
                    );
                }
            }
        }
        let changed = next != m.confs || rules != m.rules;
        m.confs = next;
        m.rules = rules;
        self.table.store(Arc::new(table));
        self.generation.fetch_add(1, Relaxed);
        // Saved under the lock: the file always holds the latest table.
        if changed {
            self.save_state(m);
        }
        Ok(())
    }

    /// Write the state file (if any) with the table in `m` and the running
    /// sync daemons.
    fn save_state(&self, m: &Master) {
        let Some(sf) = &self.state_file else {
            return;
        };
        if let Err(e) = sf.write(&m.confs, &m.rules, &self.saved_daemons()) {
            log::error!(
                "state file {}: {e}; the change is applied but would be lost on restart",
                sf.path().display()
            );
        }
    }

    /// Start a sync daemon (`--start-daemon`, `IPVS_CMD_NEW_DAEMON`); the
    /// state file then records it.
    pub fn start_daemon(
        &self,
        role: crate::sync::Role,
        conf: crate::sync::SyncConf,
    ) -> Result<crate::sync::SyncConf, crate::sync::DaemonError> {
        let m = self.master.lock();
        self.refuse_while_handing_over()?;
        let c = self.sync.start(role, conf)?;
        self.save_state(&m);
        Ok(c)
    }

    /// Stop one (`--stop-daemon`, `IPVS_CMD_DEL_DAEMON`).
    pub fn stop_daemon(&self, role: crate::sync::Role) -> Result<(), crate::sync::DaemonError> {
        // Under the lock `hand_over` freezes under.
        let m = self.master.lock();
        self.refuse_while_handing_over()?;
        self.sync.stop(role)?;
        self.save_state(&m);
        Ok(())
    }

    /// The running sync daemons, as the state file keeps them.
    pub fn saved_daemons(&self) -> Vec<crate::statefile::SavedDaemon> {
        self.sync
            .status()
            .into_iter()
            .map(|(state, conf)| crate::statefile::SavedDaemon { state, conf })
            .collect()
    }

    /// The configuration as it is now.
    pub fn services(&self) -> Vec<ServiceConf> {
        self.master.lock().confs.clone()
    }

    /// Record a health probe's outcome; a change of state rebuilds the
    /// snapshot through the same path as any configuration change (workers
    /// keep forwarding, connections keep their real servers).
    pub fn health_event(&self, ev: HealthEvent) {
        let mut m = self.master.lock();
        let Some(svc) = m.confs.iter().find(|s| s.key() == ev.dest.0) else {
            return;
        };
        let Some(d) = svc
            .dests
            .iter()
            .find(|d| d.ip == ev.dest.1 && d.port == ev.dest.2)
        else {
            return;
        };
        let Some(check) = svc.check_for(d).cloned() else {
            return;
        };
        let (key, ip, port) = ev.dest;
        let rec = m.health.entry(ev.dest).or_default();
        rec.checks += 1;
        if !ev.ok {
            rec.failures += 1;
            rec.last_error = ev.error.clone();
        }
        let reweighed = rec.weight != ev.weight;
        if reweighed {
            rec.weight = ev.weight;
            log::info!(
                "health: {key} real server {ip}:{port} weight {} (misc_dynamic)",
                ev.weight
                    .map_or("as configured".to_string(), |w| w.to_string())
            );
        }
        let Some(up) = ev.transition.filter(|&up| rec.down == up) else {
            if reweighed {
                if let Err(e) = self.apply_locked(&mut m, |_| Ok(())) {
                    log::error!("health: rebuilding the service table failed: {}", e.message);
                }
            }
            return;
        };
        rec.down = !up;
        rec.transitions += 1;
        let kind = match check.kind {
            CheckKind::Tcp => "TCP",
            CheckKind::Http => "HTTP",
            CheckKind::Misc => "MISC",
            CheckKind::Udp => "UDP",
        };
        if up {
            log::info!("health: {key} real server {ip}:{port} is UP ({kind} check succeeded)");
        } else {
            let action = match check.on_failure {
                OnFailure::Remove => "removed",
                OnFailure::Quiesce => "quiesced (weight 0)",
            };
            log::warn!(
                "health: {key} real server {ip}:{port} is DOWN after {} failed {kind} attempt(s): {}; {action}",
                ev.failed_attempts,
                ev.error.as_deref().unwrap_or("failed")
            );
        }
        if let Err(e) = self.apply_locked(&mut m, |_| Ok(())) {
            log::error!("health: rebuilding the service table failed: {}", e.message);
        }
    }
}

impl HealthSource for Control {
    fn health_generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }
    fn health_targets(&self) -> Vec<HealthTarget> {
        let m = self.master.lock();
        m.confs
            .iter()
            .flat_map(|s| {
                let m = &m;
                s.dests.iter().filter_map(move |d| {
                    let check = s.check_for(d)?.clone();
                    let dest = (s.key(), d.ip, d.port);
                    Some(HealthTarget {
                        dest,
                        addr: SocketAddr::new(d.ip, check.port.unwrap_or(d.port)),
                        up: !m.health.get(&dest).is_some_and(|r| r.down),
                        check,
                    })
                })
            })
            .collect()
    }
    fn health_event(&self, ev: HealthEvent) {
        Control::health_event(self, ev)
    }
}

#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod tests;

fn handing_over_error() -> CtlError {
    CtlError::new(
        ErrorCode::Busy,
        "this rvsd is handing over to a new one; send changes to that one",
    )
}
