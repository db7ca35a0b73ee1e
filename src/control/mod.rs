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

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::TimeoutConf;
use crate::conn::{ConnTable, State, Timeouts};
use crate::io::PortCounters;
use crate::sched;
use crate::service::{
    ClientAddr, DestConf, Forward, Proto, ServiceConf, ServiceKey, ServiceTable, StateRegistry,
};
use crate::stats::{StatsSnapshot, WorkerStats};

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;

/// A service named by protocol, address and port.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SvcRef {
    pub proto: Proto,
    pub vip: IpAddr,
    pub port: u16,
}

impl SvcRef {
    fn key(&self) -> ServiceKey {
        ServiceKey {
            proto: self.proto,
            vip: self.vip,
            port: self.port,
        }
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
    /// listed and nothing changes unless all is well.
    Load {
        services: Vec<ServiceConf>,
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
    registry: StateRegistry,
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
}

impl Control {
    pub fn new(
        conns: Arc<ConnTable>,
        workers: Arc<[CachePadded<WorkerStats>]>,
        local_ips: Vec<IpAddr>,
    ) -> Self {
        Control {
            master: Mutex::new(Master {
                confs: Vec::new(),
                registry: StateRegistry::default(),
            }),
            table: Arc::new(ArcSwap::from_pointee(ServiceTable::default())),
            conns,
            workers,
            local_ips,
            ports: None,
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
            Request::Load { services } => {
                let n = services.len();
                self.load(services)?;
                Ok(json!({"ok": true, "services": n}))
            }
            Request::Dump => Ok(json!({"ok": true, "services": self.services()})),
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
        self.apply(|c| {
            *c = Vec::new();
            let mut errs = Vec::new();
            for s in confs {
                let key = s.key();
                if let Err(e) = add_service(c, s, &self.local_ips) {
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
        let local = &self.local_ips;
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
                check_service(&mut service)?;
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
                check_laddr(c, laddr, local)?;
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
        let mut next = m.confs.clone();
        f(&mut next)?;
        check_whole(&next)?;
        let table = ServiceTable::build(&next, &mut m.registry).map_err(CtlError::invalid)?;
        m.confs = next;
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// The configuration as it is now.
    pub fn services(&self) -> Vec<ServiceConf> {
        self.master.lock().confs.clone()
    }

    fn list(&self) -> Value {
        let t = self.table.load();
        let services: Vec<Value> = t
            .iter()
            .map(|s| {
                let c = &s.conf;
                json!({
                    "proto": c.proto, "vip": c.vip, "port": c.port, "sched": c.sched,
                    "persistent": c.persistent, "netmask": c.netmask, "sched_flags": c.sched_flags,
                    "laddrs": c.laddrs, "client_addr": c.client_addr,
                    "stats": s.state.traffic.read(), "rates": s.state.est.read(),
                    "dests": s.dests.iter().map(|d| json!({
                        "ip": d.ip, "port": d.port, "fwd": d.fwd, "weight": d.weight,
                        "u_threshold": d.u_threshold, "l_threshold": d.l_threshold,
                        "active": d.state.active.load(std::sync::atomic::Ordering::Relaxed),
                        "inactive": d.state.inactive.load(std::sync::atomic::Ordering::Relaxed),
                        "persist": d.state.persist.load(std::sync::atomic::Ordering::Relaxed),
                        "overloaded": d.state.overloaded.load(std::sync::atomic::Ordering::Relaxed),
                        "stats": d.state.traffic.read(), "rates": d.state.est.read(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"ok": true, "services": services,
               "conn_table": {"count": self.conns.len(), "capacity": self.conns.capacity()}})
    }

    fn stats(&self) -> Value {
        let per: Vec<StatsSnapshot> = self.workers.iter().map(|w| w.snapshot()).collect();
        let mut total = StatsSnapshot::default();
        for w in self.workers.iter() {
            total.add(w);
        }
        let ports = self.ports.as_ref().map(|p| p.ports()).unwrap_or_default();
        json!({"ok": true, "total": total, "workers": per, "ports": ports,
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
                out.push(json!({
                    "proto": t.key.proto, "state": "NONE", "template": true,
                    "expires_ms": t.expires_ms().saturating_sub(now),
                    "cip": t.key.src, "cport": 0, "vip": t.key.dst, "vport": t.key.dport,
                    "dip": t.dip, "dport": t.dport, "controls": t.controlled(),
                }));
            }
        });
        json!({"ok": true, "connections": out})
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
        "load" => &["services"],
        "connections" => &["limit"],
        "set_timeouts" => &["timeouts"],
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
    serde_json::from_value(v).map_err(|e| CtlError::new("bad_request", format!("{cmd}: {e}")))
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

fn check_service(s: &mut ServiceConf) -> Result<(), CtlError> {
    if !sched::is_known(&s.sched) {
        let known: Vec<_> = sched::names().collect();
        return Err(CtlError::invalid(format!(
            "unknown scheduler {:?} (known: {})",
            s.sched,
            known.join(" ")
        )));
    }
    if !s.vip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 virtual services are not supported yet",
        ));
    }
    if s.vip.is_unspecified() || s.vip.is_multicast() || s.vip.is_loopback() {
        return Err(CtlError::invalid(format!(
            "{} is not a usable virtual address",
            s.vip
        )));
    }
    let flags = sched::SchedFlags::parse(&s.sched, &s.sched_flags).map_err(CtlError::invalid)?;
    s.sched_flags = flags.names(&s.sched);
    if s.port == 0 && s.persistent.is_none() {
        return Err(CtlError::invalid(
            "zero port specified for non-persistent service",
        ));
    }
    if s.persistent == Some(0) {
        return Err(CtlError::invalid(
            "persistence timeout must be at least 1 second",
        ));
    }
    let m = u32::from(s.netmask);
    if m.leading_ones() + m.trailing_zeros() != 32 {
        return Err(CtlError::invalid(format!(
            "netmask {} is not contiguous",
            s.netmask
        )));
    }
    if s.netmask != std::net::Ipv4Addr::BROADCAST && s.persistent.is_none() {
        return Err(CtlError::invalid(
            "a persistence netmask (-M) needs a persistent service (-p)",
        ));
    }
    Ok(())
}

fn check_dest(s: &ServiceConf, mut d: DestConf, local: &[IpAddr]) -> Result<DestConf, CtlError> {
    if d.port == 0 {
        d.port = s.port;
    }
    if !d.ip.is_ipv4() {
        return Err(CtlError::new(
            "unsupported",
            "IPv6 real servers are not supported yet",
        ));
    }
    if d.ip.is_unspecified() || d.ip.is_multicast() || d.ip.is_loopback() {
        return Err(CtlError::invalid(format!(
            "{} is not a usable real server address",
            d.ip
        )));
    }
    if local.contains(&d.ip) {
        return Err(CtlError::invalid(format!(
            "{} is the director's own address",
            d.ip
        )));
    }
    if d.weight > 65535 {
        return Err(CtlError::invalid(format!(
            "illegal weight specified: {} (0..65535)",
            d.weight
        )));
    }
    if d.l_threshold > d.u_threshold && d.u_threshold != 0 {
        return Err(CtlError::invalid(
            "lower threshold is above the upper threshold",
        ));
    }
    if !d.fwd.supported() {
        return Err(CtlError::new(
            "unsupported",
            format!(
                "forwarding method {} is not supported yet (use -m, -g or -i)",
                d.fwd.ipvsadm_name()
            ),
        ));
    }
    if matches!(d.fwd, Forward::Dr | Forward::Tun) && d.port != s.port {
        return Err(CtlError::invalid(format!(
            "{} cannot map ports: real server port {} differs from service port {}",
            d.fwd.ipvsadm_name(),
            d.port,
            s.port
        )));
    }
    Ok(d)
}

fn add_service(
    c: &mut Vec<ServiceConf>,
    mut s: ServiceConf,
    local: &[IpAddr],
) -> Result<(), CtlError> {
    check_service(&mut s)?;
    if c.iter().any(|x| x.key() == s.key()) {
        return Err(CtlError::new("exists", "Service already exists"));
    }
    for z in s.laddrs.clone() {
        check_laddr(c, z, local)?;
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
    if ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
    {
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
    }
    Ok(())
}

/// Timeouts from the config file's form.
pub fn timeouts_from(c: &TimeoutConf) -> Timeouts {
    apply_timeouts(Timeouts::default(), c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl() -> Control {
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        Control::new(
            Arc::new(ConnTable::new(100, 4)),
            workers,
            vec!["10.0.1.1".parse().unwrap()],
        )
    }

    fn ok(c: &Control, line: &str) -> Value {
        let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
        assert_eq!(r["ok"], true, "{line} -> {r}");
        r
    }

    fn err(c: &Control, line: &str) -> (String, String) {
        let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
        let e = &r["error"];
        assert!(e.is_object(), "{line} -> {r}");
        (
            e["code"].as_str().unwrap().into(),
            e["message"].as_str().unwrap().into(),
        )
    }

    const SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;

    #[test]
    fn add_list_edit_delete() {
        let c = ctl();
        ok(
            &c,
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
        );
        ok(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#
            ),
        );
        ok(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","port":8080,"weight":3,"fwd":"nat"}}}}"#
            ),
        );
        let l = ok(&c, r#"{"cmd":"list"}"#);
        let s = &l["services"][0];
        assert_eq!(s["sched"], "rr");
        assert_eq!(s["dests"][0]["port"], 80, "port 0 means the service port");
        assert_eq!(s["dests"][0]["weight"], 1);
        assert_eq!(s["dests"][1]["weight"], 3);
        ok(
            &c,
            &format!(
                r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","port":8080,"weight":0,"fwd":"nat"}}}}"#
            ),
        );
        ok(
            &c,
            r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wrr"}}"#,
        );
        let l = ok(&c, r#"{"cmd":"list"}"#);
        assert_eq!(l["services"][0]["sched"], "wrr");
        assert_eq!(l["services"][0]["dests"][1]["weight"], 0);
        assert_eq!(
            l["services"][0]["dests"].as_array().unwrap().len(),
            2,
            "edit keeps real servers"
        );
        ok(
            &c,
            &format!(r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.11"}}}}"#),
        );
        ok(&c, &format!(r#"{{"cmd":"del_service","service":{SVC}}}"#));
        assert_eq!(
            ok(&c, r#"{"cmd":"list"}"#)["services"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn default_scheduler_is_wlc_and_default_forwarding_is_route() {
        let s: ServiceConf = serde_json::from_str(SVC).unwrap();
        assert_eq!(s.sched, "wlc");
        let d: DestConf = serde_json::from_str(r#"{"ip":"10.0.1.11"}"#).unwrap();
        assert_eq!((d.fwd, d.weight), (Forward::Dr, 1));
    }

    #[test]
    fn bad_requests_get_clear_errors_and_change_nothing() {
        let c = ctl();
        ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
        ok(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#
            ),
        );
        let before = ok(&c, r#"{"cmd":"list"}"#);
        let cases: &[(&str, &str, &str)] = &[
            ("{not json", "bad_json", ""),
            ("[1,2]", "bad_request", "cmd"),
            (r#"{"cmd":"reboot"}"#, "unknown_command", "reboot"),
            (
                r#"{"cmd":"list","extra":1}"#,
                "bad_request",
                "unknown field",
            ),
            (
                &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#),
                "exists",
                "Service already exists",
            ),
            (
                r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"sched":"fastest"}}"#,
                "invalid",
                "unknown scheduler",
            ),
            (
                r#"{"cmd":"add_service","service":{"proto":"sctp","vip":"10.0.0.101","port":80}}"#,
                "bad_request",
                "unknown variant",
            ),
            (
                r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":70000}}"#,
                "bad_request",
                "",
            ),
            (
                r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":0}}"#,
                "invalid",
                "zero port",
            ),
            (
                r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"colour":"red"}}"#,
                "bad_request",
                "unknown field",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#
                ),
                "exists",
                "Destination already exists",
            ),
            (
                r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.13","fwd":"nat"}}"#,
                "not_found",
                "Service not defined",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":70000}}}}"#
                ),
                "invalid",
                "illegal weight",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","port":8080}}}}"#
                ),
                "invalid",
                "Route cannot map ports",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","port":8080,"fwd":"tun"}}}}"#
                ),
                "invalid",
                "Tunnel cannot map ports",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"fullnat"}}}}"#
                ),
                "invalid",
                "need a local address",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.1","fwd":"nat"}}}}"#
                ),
                "invalid",
                "own address",
            ),
            (
                &format!(
                    r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":-1}}}}"#
                ),
                "bad_request",
                "",
            ),
            (
                r#"{"cmd":"del_service","service":{"proto":"udp","vip":"10.0.0.100","port":80}}"#,
                "not_found",
                "No such service",
            ),
            (
                &format!(r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.9.9"}}}}"#),
                "not_found",
                "No such destination",
            ),
        ];
        for (line, code, needle) in cases {
            let (got, msg) = err(&c, line);
            assert_eq!(got, *code, "{line}: {msg}");
            assert!(msg.contains(needle), "{line}: {msg}");
        }
        assert_eq!(ok(&c, r#"{"cmd":"list"}"#), before);
    }

    #[test]
    fn load_is_all_or_nothing_and_lists_every_problem() {
        let c = ctl();
        ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
        let good: ServiceConf =
            serde_json::from_str(r#"{"proto":"udp","vip":"10.0.0.100","port":53}"#).unwrap();
        let bad1: ServiceConf =
            serde_json::from_str(r#"{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"x"}"#)
                .unwrap();
        let bad2: ServiceConf =
            serde_json::from_str(r#"{"proto":"tcp","vip":"10.0.0.100","port":0}"#).unwrap();
        let e = c.load(vec![good.clone(), bad1, bad2]).unwrap_err();
        assert!(
            e.message.contains("unknown scheduler") && e.message.contains("zero port"),
            "{}",
            e.message
        );
        assert_eq!(c.services().len(), 1);
        assert_eq!(c.services()[0].port, 80);
        c.load(vec![good]).unwrap();
        assert_eq!(c.services()[0].port, 53);
    }

    #[test]
    fn local_addresses_are_managed_and_required_for_fullnat() {
        let c = ctl();
        ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
        let (code, msg) = err(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"fullnat"}}}}"#
            ),
        );
        assert_eq!(
            (code.as_str(), msg.contains("need a local address")),
            ("invalid", true)
        );
        ok(
            &c,
            &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#),
        );
        ok(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"fullnat"}}}}"#
            ),
        );
        assert_eq!(
            err(
                &c,
                &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#)
            )
            .0,
            "exists"
        );
        assert_eq!(
            err(
                &c,
                &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.1"}}"#)
            )
            .0,
            "invalid"
        );
        assert_eq!(
            err(
                &c,
                &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.11"}}"#)
            )
            .0,
            "invalid"
        );
        let (code, _) = err(
            &c,
            &format!(r#"{{"cmd":"del_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#),
        );
        assert_eq!(
            code, "invalid",
            "the last local address of a FULLNAT service stays"
        );
        let l = ok(&c, r#"{"cmd":"list"}"#);
        assert_eq!(l["services"][0]["laddrs"][0], "10.0.1.200");
        let (code, msg) = err(
            &c,
            r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"client_addr":"toa"}}"#,
        );
        assert_eq!(
            (code.as_str(), msg.contains("TCP services only")),
            ("invalid", true)
        );
    }

    #[test]
    fn set_timeouts_zero_keeps_value() {
        let c = ctl();
        ok(
            &c,
            r#"{"cmd":"set_timeouts","timeouts":{"tcp":60,"tcpfin":0,"udp":5}}"#,
        );
        let t = ok(&c, r#"{"cmd":"get_timeouts"}"#);
        assert_eq!(t["timeouts"], json!({"tcp":60,"tcpfin":120,"udp":5}));
    }
}
