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

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;

/// A service named by protocol, address and port
/// (`{"proto": "tcp", "vip": "10.0.0.100", "port": 80}`), or by firewall
/// mark (`{"fwmark": 1}`, `"af": "inet6"` for an IPv6 one).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "SvcRefRepr")]
pub struct SvcRef(ServiceKey);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SvcRefRepr {
    proto: Option<Proto>,
    vip: Option<IpAddr>,
    port: Option<u16>,
    fwmark: Option<u32>,
    af: Option<String>,
}

impl TryFrom<SvcRefRepr> for SvcRef {
    type Error = String;
    fn try_from(r: SvcRefRepr) -> Result<SvcRef, String> {
        let inet6 = match r.af.as_deref() {
            None | Some("inet") => false,
            Some("inet6") => true,
            Some(a) => return Err(format!("af must be \"inet\" or \"inet6\", not {a:?}")),
        };
        match r.fwmark {
            Some(0) => Err("invalid fwmark 0: must be 1..=4294967295".into()),
            Some(mark) => {
                if r.proto.is_some() || r.vip.is_some() || r.port.is_some() {
                    return Err(
                        "a fwmark service is named by its mark alone (no proto/vip/port)".into(),
                    );
                }
                Ok(SvcRef(ServiceKey::fwmark(mark, inet6)))
            }
            None => {
                let (Some(proto), Some(vip), Some(port)) = (r.proto, r.vip, r.port) else {
                    return Err("a service is named by proto, vip and port, or by fwmark".into());
                };
                Ok(SvcRef(ServiceKey::new(proto, vip, port)))
            }
        }
    }
}

impl SvcRef {
    pub fn key(&self) -> ServiceKey {
        self.0
    }
}

/// The JSON fields that name a service in `list` (and `dump`): proto, vip
/// and port, or `fwmark` (+ `"af": "inet6"`) for a fwmark service.
fn key_fields(v: &mut Value, k: &ServiceKey) {
    if k.fwmark != 0 {
        v["fwmark"] = json!(k.fwmark);
        if k.vip.is_ipv6() {
            v["af"] = json!("inet6");
        }
    } else {
        v["proto"] = json!(k.proto);
        v["vip"] = json!(k.vip);
        v["port"] = json!(k.port);
    }
}

/// A real server named by address and port (0 = the service port).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestRef {
    pub ip: IpAddr,
    #[serde(default)]
    pub port: u16,
}

/// Every request the socket accepts.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and version.
    Ping,
    AddService {
        service: ServiceConf,
    },
    /// Change scheduler/persistence of a service; its real servers stay.
    EditService {
        service: ServiceConf,
    },
    DelService {
        service: SvcRef,
    },
    AddDest {
        service: SvcRef,
        dest: DestConf,
    },
    EditDest {
        service: SvcRef,
        dest: DestConf,
    },
    DelDest {
        service: SvcRef,
        dest: DestRef,
    },
    /// Remove every service (ipvsadm -C).
    Clear,
    /// Services with real servers and counters.
    List,
    /// Zero traffic counters (ipvsadm -Z), of one service or all.
    Zero {
        #[serde(default)]
        service: Option<SvcRef>,
    },
    /// Connection entries (ipvsadm -L -c).
    Connections {
        #[serde(default)]
        limit: Option<usize>,
    },
    /// Per-worker and per-port counters.
    Stats,
    SetTimeouts {
        timeouts: TimeoutConf,
    },
    GetTimeouts,
    /// Replace every service with these, validated whole: all problems are
    /// listed and nothing changes unless all is well. With `fwmark_rules`,
    /// the classifier's rules are replaced in the same step; without, they
    /// stay (ipvsadm -R does not touch the firewall either).
    Load {
        services: Vec<ServiceConf>,
        #[serde(default)]
        fwmark_rules: Option<Vec<FwmarkRule>>,
    },
    /// Replace the fwmark classifier's rules (validated whole; the services
    /// stay).
    SetFwmarkRules {
        rules: Vec<FwmarkRule>,
    },
    /// The configuration as `load` takes it.
    Dump,
    /// Add a FULLNAT local address to a service's pool.
    AddLaddr {
        service: SvcRef,
        laddr: IpAddr,
    },
    /// Remove a FULLNAT local address (connections using it continue).
    DelLaddr {
        service: SvcRef,
        laddr: IpAddr,
    },
    /// Start a connection sync daemon (ipvsadm --start-daemon,
    /// `IPVS_CMD_NEW_DAEMON`).
    StartDaemon {
        state: crate::sync::Role,
        mcast_ifn: String,
        #[serde(default)]
        syncid: u8,
        #[serde(default)]
        sync_maxlen: u16,
        #[serde(default)]
        mcast_group: Option<std::net::Ipv4Addr>,
        #[serde(default)]
        mcast_port: u16,
        #[serde(default)]
        mcast_ttl: u8,
    },
    /// Stop one (ipvsadm --stop-daemon, `IPVS_CMD_DEL_DAEMON`).
    StopDaemon {
        state: crate::sync::Role,
    },
    /// Running daemons and sync counters (ipvsadm -L --daemon,
    /// `IPVS_CMD_GET_DAEMON`).
    Daemon,
}

/// The control error code for a sync daemon errno.
fn daemon_code(errno: &str) -> &'static str {
    match errno {
        "EEXIST" => "exists",
        "ESRCH" => "not_running",
        "ENODEV" => "no_device",
        "EADDRNOTAVAIL" => "no_address",
        _ => "io",
    }
}

/// A control-socket error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: &'static str,
    pub message: String,
}

impl CtlError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid", message)
    }
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// What the control plane can see of the data ports.
pub trait PortView: Send + Sync {
    fn ports(&self) -> Vec<PortReport>;
    /// The packet pools (none where there is no DPDK).
    fn mempools(&self) -> Vec<MempoolReport> {
        Vec::new()
    }
    /// VIP ownership (`{"mode": "always"|"kernel", "on_twins": [...]}`),
    /// null without a daemon.
    fn vip_ownership(&self) -> Value {
        Value::Null
    }
}

/// One packet mempool as reported by `stats`: mbufs out of the pool (held by
/// workers, device rings or in flight) and in it (per-lcore caches
/// included). A count of `in_use` that does not come back once traffic
/// stops is an mbuf leak.
#[derive(Debug, Clone, Serialize)]
pub struct MempoolReport {
    pub name: String,
    pub in_use: u32,
    pub available: u32,
}

/// One data port as reported by `stats`.
#[derive(Debug, Clone, Serialize)]
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
        match req {
            Request::Ping => Ok(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")})),
            Request::List => Ok(self.list()),
            Request::Stats => Ok(self.stats()),
            Request::Connections { limit } => Ok(self.connections(limit.unwrap_or(usize::MAX))),
            Request::Load {
                services,
                fwmark_rules,
            } => {
                let n = services.len();
                self.load_with_rules(services, fwmark_rules)?;
                Ok(json!({"ok": true, "services": n}))
            }
            Request::SetFwmarkRules { rules } => {
                let n = rules.len();
                self.set_fwmark_rules(rules)?;
                Ok(json!({"ok": true, "fwmark_rules": n}))
            }
            Request::Dump => {
                let m = self.master.lock();
                Ok(json!({"ok": true, "services": m.confs, "fwmark_rules": m.rules}))
            }
            Request::GetTimeouts => {
                let t = self.conns.timeouts();
                Ok(json!({"ok": true, "timeouts": {
                    "tcp": t.get(State::Established), "tcpfin": t.get(State::FinWait),
                    "udp": t.get(State::Udp)}}))
            }
            Request::SetTimeouts { timeouts } => {
                self.conns
                    .set_timeouts(apply_timeouts(self.conns.timeouts(), &timeouts));
                Ok(json!({"ok": true}))
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
                Ok(c) => Ok(json!({"ok": true, "state": state, "sync_maxlen": c.sync_maxlen})),
                Err(e) => Err(CtlError::new(daemon_code(e.errno), e.message)),
            },
            Request::StopDaemon { state } => match self.stop_daemon(state) {
                Ok(()) => Ok(json!({"ok": true})),
                Err(e) => Err(CtlError::new(daemon_code(e.errno), e.message)),
            },
            Request::Daemon => Ok(crate::sync::status_json(
                &self.sync.status(),
                &self.sync.counters,
            )),
            Request::Zero { service } => {
                let m = self.master.lock();
                if let Some(s) = service {
                    if !m.confs.iter().any(|c| c.key() == s.key()) {
                        return Err(not_found(s.key()));
                    }
                }
                m.registry.zero(service.map(|s| s.key()));
                Ok(json!({"ok": true}))
            }
            mutation => self.mutate(mutation),
        }
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
                    return Err(CtlError::new("exists", "Destination already exists"));
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
                    .ok_or_else(|| CtlError::new("not_found", "No such destination"))?;
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
                    .ok_or_else(|| CtlError::new("not_found", "No such destination"))?;
                c[i].dests.remove(j);
                Ok(())
            }
            Request::Clear => {
                c.clear();
                Ok(())
            }
            Request::AddLaddr { service, laddr } => {
                let i = find(c, service.key())?;
                check_laddr(c, laddr, local.ips)?;
                if c[i].laddrs.contains(&laddr) {
                    return Err(CtlError::new("exists", "Local address already exists"));
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
                    .ok_or_else(|| CtlError::new("not_found", "No such local address"))?;
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
        let c = self.sync.start(role, conf)?;
        self.save_state(&self.master.lock());
        Ok(c)
    }

    /// Stop one (`--stop-daemon`, `IPVS_CMD_DEL_DAEMON`).
    pub fn stop_daemon(&self, role: crate::sync::Role) -> Result<(), crate::sync::DaemonError> {
        self.sync.stop(role)?;
        self.save_state(&self.master.lock());
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

    /// The configuration (configured weights) with live counters, each real
    /// server's health, and what the snapshot does with it: `in_service`
    /// (false: removed after a failed check) and `effective_weight` (0 when
    /// quiesced). The sorry server is listed per service, with `in_service`.
    fn list(&self) -> Value {
        let m = self.master.lock();
        let t = self.table.load();
        let load = |a: &std::sync::atomic::AtomicU32| a.load(Relaxed);
        let services: Vec<Value> = m
            .confs
            .iter()
            .map(|c| {
                let key = c.key();
                let snap = t.get(&key);
                let in_snap = |ip: IpAddr, port: u16| {
                    snap.and_then(|s| s.dests.iter().find(|d| d.ip == ip && d.port == port))
                };
                let counters = |v: &mut Value, ip: IpAddr, port: u16| {
                    if let Some(st) = m.registry.dest_state(&(key, ip, port)) {
                        v["active"] = json!(load(&st.active));
                        v["inactive"] = json!(load(&st.inactive));
                        v["persist"] = json!(load(&st.persist));
                        v["overloaded"] = json!(st.overloaded.load(Relaxed));
                        v["stats"] = json!(st.traffic.read());
                        v["rates"] = json!(st.est.read());
                    }
                };
                let dests: Vec<Value> = c
                    .dests
                    .iter()
                    .map(|d| {
                        let live = in_snap(d.ip, d.port);
                        let check = c.check_for(d);
                        let rec = m.health.get(&(key, d.ip, d.port));
                        let health = match (check, rec) {
                            (None, _) => "unchecked",
                            (Some(_), Some(r)) if r.down => "down",
                            (Some(_), _) => "up",
                        };
                        let r = rec.cloned().unwrap_or_default();
                        let mut v = json!({
                            "ip": d.ip, "port": d.port, "fwd": d.fwd, "weight": d.weight,
                            "u_threshold": d.u_threshold, "l_threshold": d.l_threshold,
                            "active": 0, "inactive": 0, "persist": 0, "overloaded": false,
                            "stats": crate::service::TrafficStats::default(),
                            "in_service": live.is_some(),
                            "effective_weight": live.map_or(0, |x| x.weight),
                            "health": health,
                            "check": check.map(|h| h.kind),
                            "health_counters": {"checks": r.checks, "failures": r.failures,
                                                "transitions": r.transitions},
                            "last_error": r.last_error,
                        });
                        if let Some(h) = &d.health {
                            v["health_check"] = json!(h);
                        }
                        tunnel_fields(&mut v, d);
                        counters(&mut v, d.ip, d.port);
                        v
                    })
                    .collect();
                let mut v = json!({
                    "sched": c.sched,
                    "persistent": c.persistent, "netmask": c.netmask, "sched_flags": c.sched_flags,
                    "laddrs": c.laddrs, "client_addr": c.client_addr, "synproxy": c.synproxy,
                    "stats": m.registry.service_state(&key).map(|s| s.traffic.read()).unwrap_or_default(),
                    "rates": m.registry.service_state(&key).map(|s| s.est.read()).unwrap_or_default(),
                    "dests": dests,
                });
                key_fields(&mut v, &key);
                if let Some(h) = &c.health {
                    v["health_check"] = json!(h);
                }
                if c.ops {
                    v["ops"] = json!(true);
                }
                if let (Some(sorry), Some((ip, port))) = (&c.sorry_server, c.sorry_addr()) {
                    let mut sv = json!({
                        "ip": ip, "port": port, "fwd": sorry.fwd,
                        "in_service": snap.is_some_and(|s| s.sorry_in_service()),
                        "weight": 1, "effective_weight": 1,
                        "u_threshold": 0, "l_threshold": 0,
                        "active": 0, "inactive": 0, "persist": 0, "overloaded": false,
                        "stats": crate::service::TrafficStats::default(),
                    });
                    counters(&mut sv, ip, port);
                    v["sorry_server"] = sv;
                }
                v
            })
            .collect();
        json!({"ok": true, "services": services,
               "conn_table": {"count": self.conns.len(), "capacity": self.conns.capacity()}})
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

    fn stats(&self) -> Value {
        let per: Vec<StatsSnapshot> = self.workers.iter().map(|w| w.snapshot()).collect();
        let mut total = StatsSnapshot::default();
        for w in self.workers.iter() {
            total.add(w);
        }
        let ports = self.ports.as_ref().map(|p| p.ports()).unwrap_or_default();
        let pools = self
            .ports
            .as_ref()
            .map(|p| p.mempools())
            .unwrap_or_default();
        let own = self
            .ports
            .as_ref()
            .map(|p| p.vip_ownership())
            .unwrap_or_default();
        json!({"ok": true, "total": total, "workers": per, "ports": ports, "mempools": pools,
               "vip_ownership": own, "local_twin": self.local_twin,
               "conn_table": {"count": self.conns.len(), "capacity": self.conns.capacity()}})
    }

    fn connections(&self, limit: usize) -> Value {
        let now = crate::clock::now_ms();
        let mut out = Vec::new();
        self.conns.for_each(|c| {
            if out.len() < limit {
                out.push(json!({
                    "proto": c.proto, "state": c.state().name(),
                    "expires_ms": c.expires_ms().saturating_sub(now),
                    "cip": c.cip, "cport": c.cport, "vip": c.vip, "vport": c.vport,
                    "dip": c.dip, "dport": c.dport, "fwd": c.fwd,
                }));
            }
        });
        self.conns.for_each_template(|t| {
            if out.len() < limit {
                // A fwmark template is the kernel's <IPPROTO_IP, cnet, 0,
                // fwmark, 0>: "proto": "ip", the mark as the "vip" address.
                let mut v = json!({
                    "proto": t.key.proto_name().to_ascii_lowercase(), "state": "NONE",
                    "template": true,
                    "expires_ms": t.expires_ms().saturating_sub(now),
                    "cip": t.key.cnet, "cport": 0, "vip": t.key.vaddr, "vport": t.key.vport,
                    "dip": t.dip, "dport": t.dport, "controls": t.controlled(),
                });
                if t.key.proto.is_none() {
                    if let IpAddr::V4(a) = t.key.vaddr {
                        v["fwmark"] = json!(u32::from(a));
                    }
                }
                out.push(v);
            }
        });
        json!({"ok": true, "connections": out})
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

/// Parse a request line: bad JSON, unknown commands and unknown fields are
/// distinct, clear errors.
pub fn parse_request(line: &str) -> Result<Request, CtlError> {
    if line.len() > MAX_REQUEST {
        return Err(CtlError::new(
            "too_large",
            format!("request over {MAX_REQUEST} bytes"),
        ));
    }
    let v: Value =
        serde_json::from_str(line).map_err(|e| CtlError::new("bad_json", e.to_string()))?;
    let Some(cmd) = v.get("cmd").and_then(Value::as_str) else {
        return Err(CtlError::new(
            "bad_request",
            "request must be an object with a string \"cmd\"",
        ));
    };
    let cmd = cmd.to_string();
    // serde ignores unknown keys next to the tag of a field-less variant, so
    // top-level keys are checked here for every command.
    const COMMANDS: &[&str] = &[
        "ping",
        "add_service",
        "edit_service",
        "del_service",
        "add_dest",
        "edit_dest",
        "del_dest",
        "clear",
        "list",
        "zero",
        "connections",
        "stats",
        "set_timeouts",
        "get_timeouts",
        "add_laddr",
        "del_laddr",
        "load",
        "dump",
        "set_fwmark_rules",
        "start_daemon",
        "stop_daemon",
        "daemon",
    ];
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(CtlError::new(
            "unknown_command",
            format!("unknown command {cmd:?}"),
        ));
    }
    let allowed: &[&str] = match cmd.as_str() {
        "add_service" | "edit_service" | "del_service" | "zero" => &["service"],
        "add_dest" | "edit_dest" | "del_dest" => &["service", "dest"],
        "add_laddr" | "del_laddr" => &["service", "laddr"],
        "load" => &["services", "fwmark_rules"],
        "set_fwmark_rules" => &["rules"],
        "connections" => &["limit"],
        "set_timeouts" => &["timeouts"],
        "start_daemon" => &[
            "state",
            "mcast_ifn",
            "syncid",
            "sync_maxlen",
            "mcast_group",
            "mcast_port",
            "mcast_ttl",
        ],
        "stop_daemon" => &["state"],
        _ => &[],
    };
    if let Some(obj) = v.as_object() {
        if let Some(k) = obj
            .keys()
            .find(|k| *k != "cmd" && !allowed.contains(&k.as_str()))
        {
            return Err(CtlError::new(
                "bad_request",
                format!("{cmd}: unknown field `{k}`"),
            ));
        }
    }
    // From the text, not from `v`: a `Value` keeps only the last of
    // duplicate keys, so `{"cmd":"ping","cmd":"clear"}` would have cleared
    // everything; deserialising the text rejects any duplicate field.
    serde_json::from_str(line).map_err(|e| CtlError::new("bad_request", format!("{cmd}: {e}")))
}

// Messages are libipvs's `ipvs_strerror` texts, which operators' scripts
// match; the JSON `code` is the stable, machine-readable part.
fn not_found(_: ServiceKey) -> CtlError {
    CtlError::new("not_found", "No such service")
}

fn find(c: &[ServiceConf], k: ServiceKey) -> Result<usize, CtlError> {
    c.iter()
        .position(|s| s.key() == k)
        .ok_or_else(|| not_found(k))
}

/// For real-server operations ipvsadm says "Service not defined".
fn find_for_dest(c: &[ServiceConf], k: ServiceKey) -> Result<usize, CtlError> {
    c.iter()
        .position(|s| s.key() == k)
        .ok_or_else(|| CtlError::new("not_found", "Service not defined"))
}

fn fmt_dest(d: &DestConf) -> String {
    format!("{}:{}", d.ip, d.port)
}

/// Addresses no service, real server or local address can have: 0.0.0.0,
/// multicast, loopback and the limited broadcast.
fn unusable(ip: IpAddr) -> bool {
    ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

/// The director's own addresses and whether it has a kernel twin.
pub struct Locals<'a> {
    pub ips: &'a [IpAddr],
    pub twin: bool,
}

impl Locals<'_> {
    fn contains(&self, ip: &IpAddr) -> bool {
        self.ips.contains(ip)
    }
    /// The kernel's rule (`__ip_vs_update_dest`: an address of type
    /// RTN_LOCAL is LOCALNODE whatever the method asked): a loopback or own
    /// address is "Local", which needs a kernel twin here. A non-local
    /// address cannot be "Local".
    fn forward(&self, ip: IpAddr, fwd: Forward, what: &str) -> Result<Forward, CtlError> {
        if ip.is_loopback() || self.contains(&ip) {
            if !self.twin {
                return Err(CtlError::invalid(format!(
                    "{what}{ip} is the director's own address: IPVS would deliver to the \
                     director's stack (Local), which needs a port with a kernel_twin \
                     (docs/ha.md)"
                )));
            }
            Ok(Forward::Local)
        } else if fwd == Forward::Local {
            Err(CtlError::invalid(format!(
                "{what}{ip}: local forwarding is for the director's own addresses"
            )))
        } else {
            Ok(fwd)
        }
    }
}

fn check_service(s: &mut ServiceConf, local: &Locals) -> Result<(), CtlError> {
    if !sched::is_known(&s.sched) {
        let known: Vec<_> = sched::names().collect();
        return Err(CtlError::invalid(format!(
            "unknown scheduler {:?} (known: {})",
            s.sched,
            known.join(" ")
        )));
    }
    if s.is_fwmark() && !s.vip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 fwmark services are not supported yet",
        ));
    }
    if !s.vip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 virtual services are not supported yet",
        ));
    }
    if s.is_fwmark() && (s.port != 0 || !s.vip.is_unspecified() || s.proto != Proto::Tcp) {
        return Err(CtlError::invalid(
            "a fwmark service has no proto, vip or port of its own",
        ));
    }
    if !s.is_fwmark() && unusable(s.vip) {
        return Err(CtlError::invalid(format!(
            "{} is not a usable virtual address",
            s.vip
        )));
    }
    let flags = sched::SchedFlags::parse(&s.sched, &s.sched_flags).map_err(CtlError::invalid)?;
    s.sched_flags = flags.names(&s.sched);
    // ipvsadm: `!ce.svc.fwmark && !ce.svc.port && !persistent` fails.
    if s.port == 0 && s.persistent.is_none() && !s.is_fwmark() {
        return Err(CtlError::invalid(
            "zero port specified for non-persistent service",
        ));
    }
    // ipvsadm.c: "One-Packet Scheduling is only for UDP virtual services"
    // (the kernel itself applies the flag to UDP packets only).
    if s.ops && !s.is_fwmark() && s.proto != crate::flow::Proto::Udp {
        return Err(CtlError::invalid(
            "one-packet scheduling (ops) is only for UDP virtual services",
        ));
    }
    if s.persistent == Some(0) {
        return Err(CtlError::invalid(
            "persistence timeout must be at least 1 second",
        ));
    }
    // Any netmask, with or without -p: the kernel takes the one ipvsadm's
    // parse_netmask (inet_aton) read and only uses it for persistence
    // (ip_vs_ctl.c `ip_vs_add_service` checks IPv6 prefix lengths only).
    if let Some(h) = &s.health {
        check_health(h)?;
    }
    if let Some(sorry) = &mut s.sorry_server {
        if sorry.ip.is_ipv4() {
            sorry.fwd = local.forward(sorry.ip, sorry.fwd, "sorry server: ")?;
        }
        check_sorry(sorry, s.port, s.fwmark != 0)?;
    }
    Ok(())
}

fn check_health(h: &HealthCheck) -> Result<(), CtlError> {
    h.validate()
        .map_err(|e| CtlError::invalid(format!("health check: {e}")))
}

/// A sorry server is a real server that stands in: the same address rules,
/// and DR/TUN use the service's port. Port 0 becomes the service port.
/// A fwmark service has no port, so any port goes (as for its real servers).
fn check_sorry(sorry: &mut SorryServer, svc_port: u16, fwmark: bool) -> Result<(), CtlError> {
    if sorry.port == 0 {
        sorry.port = svc_port;
    }
    let ip = sorry.ip;
    if !ip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 sorry servers are not supported yet",
        ));
    }
    if unusable(ip) && sorry.fwd != Forward::Local {
        return Err(CtlError::invalid(format!(
            "sorry server: {ip} is not a usable real server address"
        )));
    }
    // DR/TUN cannot map ports: they use the service's, as ipvsadm sets
    // `ce.dest.port = ce.svc.port` (ipvsadm.c `process_options`), except
    // for fwmark services ("Don't worry about this if fwmark is used").
    if matches!(sorry.fwd, Forward::Dr | Forward::Tun) && !fwmark {
        sorry.port = svc_port;
    }
    Ok(())
}

/// A TUN real server's encapsulation in `list`, defaults filled in (what
/// `ipvsadm -S` prints): tun_type always, tun_port for gue, tun_csum for
/// gue and gre.
fn tunnel_fields(v: &mut Value, d: &DestConf) {
    if d.fwd != Forward::Tun {
        return;
    }
    let t = d.tunnel();
    v["tun_type"] = json!(t.kind);
    if t.kind == TunType::Gue {
        v["tun_port"] = json!(t.port);
    }
    if t.kind != TunType::Ipip {
        v["tun_csum"] = json!(t.csum);
    }
}

fn check_dest(s: &ServiceConf, mut d: DestConf, local: &Locals) -> Result<DestConf, CtlError> {
    if d.port == 0 {
        d.port = s.port;
    }
    if !d.ip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 real servers are not supported yet",
        ));
    }
    d.fwd = local.forward(d.ip, d.fwd, "")?;
    if unusable(d.ip) && d.fwd != Forward::Local {
        return Err(CtlError::invalid(format!(
            "{} is not a usable real server address",
            d.ip
        )));
    }
    if let Some(h) = &d.health {
        check_health(h)?;
    }
    if d.weight > 65535 {
        return Err(CtlError::invalid(format!(
            "illegal weight specified: {} (0..65535)",
            d.weight
        )));
    }
    // The kernel refuses l > u even without an upper threshold
    // (ip_vs_ctl.c `ip_vs_add_dest`/`ip_vs_edit_dest`: -ERANGE).
    if d.l_threshold > d.u_threshold {
        return Err(CtlError::invalid(
            "lower threshold is above the upper threshold",
        ));
    }
    d.check_tunnel().map_err(CtlError::invalid)?;
    // DR/TUN cannot map ports: a real server on another port is stored
    // with the service's, as ipvsadm sends it (`ce.dest.port =
    // ce.svc.port` in ipvsadm.c `process_options`), so a keepalived DR
    // real_server on another port imports as it runs under the kernel.
    // ipvsadm: "Don't worry about this if fwmark is used" (a fwmark
    // service has no port; DR/TUN forward the packet's own port).
    if matches!(d.fwd, Forward::Dr | Forward::Tun) && !s.is_fwmark() {
        d.port = s.port;
    }
    Ok(d)
}

fn add_service(
    c: &mut Vec<ServiceConf>,
    mut s: ServiceConf,
    local: &Locals,
) -> Result<(), CtlError> {
    check_service(&mut s, local)?;
    if c.iter().any(|x| x.key() == s.key()) {
        return Err(CtlError::new("exists", "Service already exists"));
    }
    for z in s.laddrs.clone() {
        check_laddr(c, z, local.ips)?;
    }
    let dests = std::mem::take(&mut s.dests);
    for d in dests {
        let d = check_dest(&s, d, local)?;
        if s.dests.iter().any(|x| x.ip == d.ip && x.port == d.port) {
            return Err(CtlError::new(
                "exists",
                format!("destination {} listed twice", fmt_dest(&d)),
            ));
        }
        s.dests.push(d);
    }
    c.push(s);
    Ok(())
}

/// `t` with the non-zero values of `c` applied.
pub fn apply_timeouts(mut t: Timeouts, c: &TimeoutConf) -> Timeouts {
    for (v, s) in [
        (c.tcp, State::Established),
        (c.tcpfin, State::FinWait),
        (c.udp, State::Udp),
        (c.syn_recv, State::SynRecv),
        (c.time_wait, State::TimeWait),
        (c.close, State::Close),
        (c.close_wait, State::CloseWait),
        (c.last_ack, State::LastAck),
    ] {
        if v > 0 {
            t.0[s as usize] = v;
        }
    }
    t
}

/// A FULLNAT local address must be the director's to use: not a port
/// address, a VIP or a real server.
fn check_laddr(c: &[ServiceConf], ip: IpAddr, local: &[IpAddr]) -> Result<(), CtlError> {
    if !ip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 local addresses are not supported yet",
        ));
    }
    if unusable(ip) {
        return Err(CtlError::invalid(format!(
            "{ip} is not a usable local address"
        )));
    }
    if local.contains(&ip) {
        return Err(CtlError::invalid(format!(
            "{ip} is a port address; a local address must be an extra one"
        )));
    }
    if c.iter()
        .any(|s| s.vip == ip || s.dests.iter().any(|d| d.ip == ip))
    {
        return Err(CtlError::invalid(format!(
            "{ip} is a virtual or real server address"
        )));
    }
    Ok(())
}

/// The fwmark rules compiled, or every problem with them in one error. A
/// single-address rule must not be one of the director's own addresses
/// (its traffic is never classified: see the data path).
fn check_rules(rules: &[FwmarkRule], local: &[IpAddr]) -> Result<Classifier, CtlError> {
    let mut errs: Vec<String> = match Classifier::build(rules) {
        Ok(c) => {
            let own: Vec<String> = c
                .hosts()
                .filter(|(ip, _)| local.contains(&IpAddr::V4(*ip)))
                .map(|(ip, _)| format!("fwmark_rules: {ip} is the director's own address"))
                .collect();
            if own.is_empty() {
                return Ok(c);
            }
            own
        }
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    errs.dedup();
    Err(CtlError::invalid(errs.join("; ")))
}

/// Rules that span a whole service: FULLNAT servers need a local address;
/// client-address delivery is TCP only.
fn check_whole(c: &[ServiceConf]) -> Result<(), CtlError> {
    for s in c {
        if s.dests.iter().any(|d| d.fwd == Forward::FullNat) && s.laddrs.is_empty() {
            return Err(CtlError::invalid(format!(
                "{}: FULLNAT real servers need a local address (rvsadm --add-laddr -z LIP)",
                s.key()
            )));
        }
        if s.proto == Proto::Udp && s.client_addr != ClientAddr::None {
            return Err(CtlError::invalid(
                "TOA and the PROXY protocol are for TCP services only",
            ));
        }
        if s.synproxy {
            if s.proto != Proto::Tcp {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy is for TCP services only",
                    s.key()
                )));
            }
            if s.client_addr == ClientAddr::ProxyV2 {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy and the PROXY protocol cannot be combined",
                    s.key()
                )));
            }
            let fwds = s
                .dests
                .iter()
                .map(|d| d.fwd)
                .chain(s.sorry_server.as_ref().map(|x| x.fwd));
            if let Some(f) = fwds
                .into_iter()
                .find(|f| !matches!(f, Forward::Nat | Forward::FullNat))
            {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy needs NAT or FULLNAT real servers (it must see the replies), not {}",
                    s.key(),
                    f.ipvsadm_name()
                )));
            }
        }
        if let Some(d) = s
            .dests
            .iter()
            .find(|d| d.port == 0 && s.check_for(d).is_some_and(|h| h.port.is_none()))
        {
            return Err(CtlError::invalid(format!(
                "{}: real server {} has port 0 (all ports): its health check needs a port",
                s.key(),
                d.ip
            )));
        }
        if let (Some(sorry), Some((ip, port))) = (&s.sorry_server, s.sorry_addr()) {
            if s.dests.iter().any(|d| d.ip == ip && d.port == port) {
                return Err(CtlError::invalid(format!(
                    "{}: the sorry server {ip}:{port} is also a real server",
                    s.key()
                )));
            }
            if sorry.fwd == Forward::FullNat && s.laddrs.is_empty() {
                return Err(CtlError::invalid(format!(
                    "{}: a FULLNAT sorry server needs a local address",
                    s.key()
                )));
            }
        }
    }
    Ok(())
}

/// Timeouts from the config file's form.
pub fn timeouts_from(c: &TimeoutConf) -> Timeouts {
    apply_timeouts(Timeouts::default(), c)
}

#[cfg(test)]
mod tests;
