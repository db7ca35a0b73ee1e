//! The control protocol, whole: one JSON object per line in, one per line
//! out. Requests are [`Request`], parsed by [`parse_request`]; every reply
//! is a type below (`ListReply`, `StatsReply`, ...) that rvsd serialises
//! with [`to_reply`] and clients (rvsadm, the ipvsadm formatter, the
//! netlink server, metrics) read back with [`from_reply`], so a field is
//! named once, here; failure is `{"error": {"code": "...", "message":
//! "..."}}` ([`CtlError`]). The reference, whose examples are a test, is
//! docs/control-protocol.md.
//!
//! Replies do not refuse unknown fields (requests do), and a missing field
//! takes its default: an rvsadm of one version can then read an older or
//! newer rvsd during an upgrade. That every field rvsd sends has its place
//! in these types is a test (`replies_round_trip_through_their_types`).

use std::net::Ipv4Addr;

use super::*;
use crate::config::VipOwnership;
use crate::flow::TunCsum;
use crate::live::{Rates, TrafficStats};

/// Largest request line accepted.
pub const MAX_REQUEST: usize = 1 << 20;

/// A service named by protocol, address and port
/// (`{"proto": "tcp", "vip": "10.0.0.100", "port": 80}`), or by firewall
/// mark (`{"fwmark": 1}`, `"af": "inet6"` for an IPv6 one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SvcRefRepr", into = "SvcRefRepr")]
pub struct SvcRef(ServiceKey);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SvcRefRepr {
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<Proto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fwmark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    af: Option<String>,
}

impl From<SvcRef> for SvcRefRepr {
    fn from(r: SvcRef) -> SvcRefRepr {
        let k = r.0;
        if k.fwmark != 0 {
            SvcRefRepr {
                proto: None,
                vip: None,
                port: None,
                fwmark: Some(k.fwmark),
                af: k.vip.is_ipv6().then(|| "inet6".to_string()),
            }
        } else {
            SvcRefRepr {
                proto: Some(k.proto),
                vip: Some(k.vip),
                port: Some(k.port),
                fwmark: None,
                af: None,
            }
        }
    }
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

impl From<ServiceKey> for SvcRef {
    fn from(k: ServiceKey) -> SvcRef {
        SvcRef(k)
    }
}

impl SvcRef {
    pub fn key(&self) -> ServiceKey {
        self.0
    }
}

/// A real server named by address and port (0 = the service port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestRef {
    pub ip: IpAddr,
    #[serde(default)]
    pub port: u16,
}

/// Every request the socket accepts. Clients written in Rust send these
/// (serialised, they are the JSON lines the socket reads); rvsadm sends
/// what the operator typed as JSON instead where rvsd's refusal of it is
/// the message to show.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Liveness and version.
    Ping {},
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
    Clear {},
    /// Services with real servers and counters.
    List {},
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
    Stats {},
    SetTimeouts {
        timeouts: TimeoutConf,
    },
    GetTimeouts {},
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
    Dump {},
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
    Daemon {},
    /// A new rvsd (`rvsd --handover`) asks this one for its place: this
    /// one stops changing (configuration requests are refused from now
    /// on), stops its sync daemons and packet workers, closes its ports
    /// and lets go of the connection table file, then answers. `pid`: the
    /// new process, watched: if it dies before `handover_done`, this one
    /// exits at once (with a failure, so systemd restarts rvsd).
    Handover {
        #[serde(default)]
        pid: u32,
    },
    /// The new rvsd forwards and serves the control socket: this one exits.
    HandoverDone {},
    /// Start this rvsd's successor (its program, `--handover`): an
    /// upgrade or reload without a gap (`rvsadm --handover`, SIGUSR2).
    StartSuccessor {},
    /// Route announcements for BGP/ECMP (`announce` in the configuration):
    /// each VIP, announced or why not (`rvsadm --announce`).
    Announce {},
    /// Start (`on`, default) or end draining: every VIP's route is
    /// withdrawn while forwarding goes on (`rvsadm --drain`,
    /// `--undrain`).
    Drain {
        #[serde(default = "yes")]
        on: bool,
    },
}

fn yes() -> bool {
    true
}

impl Request {
    /// Reads and counter resets: still answered while handing over.
    pub fn changes_config(&self) -> bool {
        !matches!(
            self,
            Request::Ping {}
                | Request::List {}
                | Request::Stats {}
                | Request::Connections { .. }
                | Request::Dump {}
                | Request::GetTimeouts {}
                | Request::Daemon {}
                | Request::Zero { .. }
                | Request::Handover { .. }
                | Request::HandoverDone {}
                | Request::StartSuccessor {}
                | Request::Announce {}
                | Request::Drain { .. }
        )
    }
}

/// A reply as the socket sends it.
pub fn to_reply<T: Serialize>(reply: &T) -> Result<Value, CtlError> {
    serde_json::to_value(reply).map_err(|e| CtlError::new(ErrorCode::Io, e.to_string()))
}

/// A typed reply from the JSON the socket answered.
pub fn from_reply<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CtlError> {
    serde_json::from_value(v)
        .map_err(|e| CtlError::new(ErrorCode::BadJson, format!("unexpected reply: {e}")))
}

/// The three timeouts ipvsadm shows and sets, in seconds
/// (`ipvsadm -L --timeout`, `IPVS_CMD_GET_CONFIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsView {
    pub tcp: u32,
    pub tcpfin: u32,
    pub udp: u32,
}

/// `get_timeouts`' reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsReply {
    pub ok: bool,
    pub timeouts: TimeoutsView,
}

/// `ping`'s reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    pub ok: bool,
    pub version: String,
    /// The daemon's process id (0 from an rvsd too old to say).
    #[serde(default)]
    pub pid: u32,
}

// ---- replies ---------------------------------------------------------

/// `{"ok": true}`: the reply of a request that answers nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkReply {
    pub ok: bool,
}

impl OkReply {
    pub const OK: OkReply = OkReply { ok: true };
}

/// `load`: how many services now run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReply {
    pub ok: bool,
    pub services: usize,
}

/// `set_fwmark_rules`: how many rules now classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FwmarkRulesReply {
    pub ok: bool,
    pub fwmark_rules: usize,
}

/// `dump`: the configuration as `load` takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpReply {
    pub ok: bool,
    pub services: Vec<ServiceConf>,
    #[serde(default)]
    pub fwmark_rules: Vec<FwmarkRule>,
}

/// The connection table's fill (`list` and `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnTableView {
    pub count: usize,
    pub capacity: usize,
    /// What was taken over from the previous rvsd's table file at start
    /// (`conn_table_file`); absent when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adopted: Option<crate::sync::Adopted>,
}

/// `list`: services in configuration order, with live state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListReply {
    pub ok: bool,
    pub services: Vec<ServiceView>,
    pub conn_table: ConnTableView,
}

/// A real server's health as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Up,
    Down,
    /// No check configured: it takes traffic.
    Unchecked,
}

/// A checked real server's probe history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthCounters {
    pub checks: u64,
    pub failures: u64,
    pub transitions: u64,
}

/// A service in `list`. It is named by `proto`, `vip` and `port`, or by
/// `fwmark` (+ `af: "inet6"`): [`ServiceView::key`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub af: Option<String>,
    pub sched: String,
    pub persistent: Option<u32>,
    pub netmask: Ipv4Addr,
    #[serde(default)]
    pub sched_flags: Vec<String>,
    #[serde(default)]
    pub laddrs: Vec<IpAddr>,
    pub client_addr: ClientAddr,
    pub synproxy: bool,
    /// One-packet scheduling (shown only when on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ops: bool,
    pub stats: TrafficStats,
    pub rates: Rates,
    pub dests: Vec<DestView>,
    /// The service's health check as configured (`health` in a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<DestView>,
}

impl ServiceView {
    /// The service's key, as requests name it.
    pub fn key(&self) -> ServiceKey {
        match self.fwmark {
            Some(mark) => ServiceKey::fwmark(mark, self.is_inet6()),
            None => ServiceKey::new(
                self.proto.unwrap_or(Proto::Tcp),
                self.vip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                self.port.unwrap_or(0),
            ),
        }
    }
    /// An IPv6 service (by its VIP, or a fwmark one by `af`).
    pub fn is_inet6(&self) -> bool {
        self.af.as_deref() == Some("inet6") || self.vip.is_some_and(|v| v.is_ipv6())
    }
    /// Real servers taking traffic now (health and thresholds applied), and
    /// the sorry server while it stands in: what the kernel's table holds.
    pub fn serving(&self) -> impl Iterator<Item = &DestView> {
        self.dests
            .iter()
            .filter(|d| d.in_service)
            .chain(self.sorry_server.iter().filter(|s| s.in_service))
    }
}

/// A real server (or a service's sorry server) in `list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DestView {
    pub ip: IpAddr,
    pub port: u16,
    pub fwd: Forward,
    /// As configured.
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub active: u32,
    pub inactive: u32,
    pub persist: u32,
    pub overloaded: bool,
    pub stats: TrafficStats,
    #[serde(default)]
    pub rates: Rates,
    /// False: out of the scheduler's set (failed check; a sorry server not
    /// standing in).
    pub in_service: bool,
    /// What the scheduler uses (0 when quiesced, a `misc_dynamic` weight).
    pub effective_weight: u32,
    /// Real servers only, not the sorry server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_counters: Option<HealthCounters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// TUN only, defaults filled in (what `ipvsadm -S` prints): `tun_type`
    /// always, `tun_port` for gue, `tun_csum` for gue and gre.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_type: Option<TunType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_csum: Option<TunCsum>,
}

impl DestView {
    /// A real server with no traffic, no health record, weight 1.
    pub(super) fn idle(ip: IpAddr, port: u16, fwd: Forward) -> DestView {
        DestView {
            ip,
            port,
            fwd,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            active: 0,
            inactive: 0,
            persist: 0,
            overloaded: false,
            stats: Default::default(),
            rates: Default::default(),
            in_service: false,
            effective_weight: 1,
            health: None,
            check: None,
            health_counters: None,
            last_error: None,
            health_check: None,
            tun_type: None,
            tun_port: None,
            tun_csum: None,
        }
    }
}

impl Default for DestView {
    fn default() -> DestView {
        DestView::idle(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, Forward::default())
    }
}

impl Default for ServiceView {
    /// What `add_service` defaults to (wlc, netmask /32), no real servers.
    fn default() -> ServiceView {
        ServiceView {
            proto: None,
            vip: None,
            port: None,
            fwmark: None,
            af: None,
            sched: "wlc".to_string(),
            persistent: None,
            netmask: Ipv4Addr::BROADCAST,
            sched_flags: Vec::new(),
            laddrs: Vec::new(),
            client_addr: ClientAddr::default(),
            synproxy: false,
            ops: false,
            stats: TrafficStats::default(),
            rates: Rates::default(),
            dests: Vec::new(),
            health_check: None,
            sorry_server: None,
        }
    }
}

/// `connections`: entries and persistence templates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionsReply {
    pub ok: bool,
    pub connections: Vec<ConnView>,
}

/// A connection, or (with `template`) a persistence template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnView {
    /// "tcp", "udp"; "ip" for a fwmark template.
    pub proto: String,
    /// The kernel's state name (`ipvsadm -L -c`), "NONE" for templates.
    pub state: String,
    pub expires_ms: u64,
    pub cip: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    pub dip: IpAddr,
    pub dport: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwd: Option<Forward>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
    /// Connections a template controls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<u32>,
    /// A fwmark template's mark (also its `vip`, as the kernel keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
}

/// Which VIPs this director claims (`vip_ownership` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipView {
    pub mode: VipOwnership,
    /// `kernel` mode: the VIPs on a kernel twin now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_twins: Option<Vec<IpAddr>>,
}

impl OwnershipView {
    /// Whether this director answers for `vip` now.
    pub fn owns(&self, vip: IpAddr) -> bool {
        self.mode == VipOwnership::Always
            || self.on_twins.as_ref().is_some_and(|on| on.contains(&vip))
    }
}

/// `stats`: counters summed and per worker, the devices, the pools.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsReply {
    pub ok: bool,
    pub total: StatsSnapshot,
    pub workers: Vec<StatsSnapshot>,
    pub ports: Vec<PortReport>,
    pub mempools: Vec<MempoolReport>,
    /// None without data ports (a control plane alone).
    pub vip_ownership: Option<OwnershipView>,
    /// Route announcements (`announce` configured), as the `announce`
    /// request answers them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce: Option<crate::announce::AnnounceView>,
    pub local_twin: bool,
    pub conn_table: ConnTableView,
}

/// `handover`: this rvsd has stopped forwarding and let go of its ports
/// and connection table file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandoverReply {
    pub ok: bool,
    /// The process handing over (it exits after `handover_done`).
    pub pid: u32,
    /// CLOCK_BOOTTIME, in ms, when its last packet worker stopped: the
    /// start of the gap in forwarding.
    pub stopped_ms: u64,
    /// Frames its workers received, over its life.
    pub rx_packets: u64,
}

/// `start_successor`: the successor's pid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartSuccessorReply {
    pub ok: bool,
    pub pid: u32,
}

/// `start_daemon`: the sync message size in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartDaemonReply {
    pub ok: bool,
    pub state: crate::sync::Role,
    pub sync_maxlen: u16,
}

/// `daemon`: running sync daemons and the sync counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonReply {
    pub ok: bool,
    pub daemons: Vec<DaemonView>,
    pub counters: crate::sync::CountersView,
}

/// A running sync daemon (`ipvsadm -L --daemon`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    pub state: crate::sync::Role,
    pub mcast_ifn: String,
    pub syncid: u8,
    pub sync_maxlen: u16,
    pub mcast_group: Ipv4Addr,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

// ---- errors ----------------------------------------------------------

/// The stable, machine-readable part of a control error (the `code` of
/// `{"error": {"code": ..., "message": ...}}`); the message is for people
/// (libipvs's texts where ipvsadm has one, which operators' scripts match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    TooLarge,
    BadJson,
    BadRequest,
    UnknownCommand,
    Invalid,
    NotFound,
    Exists,
    Unsupported,
    Busy,
    Timeout,
    NotRunning,
    NoDevice,
    NoAddress,
    Io,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Exists => "exists",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Busy => "busy",
            ErrorCode::Timeout => "timeout",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::NoDevice => "no_device",
            ErrorCode::NoAddress => "no_address",
            ErrorCode::Io => "io",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The control error code for a sync daemon errno.
pub(super) fn daemon_code(errno: &str) -> ErrorCode {
    match errno {
        "EEXIST" => ErrorCode::Exists,
        "ESRCH" => ErrorCode::NotRunning,
        "ENODEV" => ErrorCode::NoDevice,
        "EADDRNOTAVAIL" => ErrorCode::NoAddress,
        "EBUSY" => ErrorCode::Busy,
        _ => ErrorCode::Io,
    }
}

/// A control-socket error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
}

impl CtlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
        }
    }
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// Parse a request line: bad JSON, unknown commands and unknown fields are
/// distinct, clear errors.
pub fn parse_request(line: &str) -> Result<Request, CtlError> {
    if line.len() > MAX_REQUEST {
        return Err(CtlError::new(
            ErrorCode::TooLarge,
            format!("request over {MAX_REQUEST} bytes"),
        ));
    }
    let v: Value =
        serde_json::from_str(line).map_err(|e| CtlError::new(ErrorCode::BadJson, e.to_string()))?;
    let Some(cmd) = v.get("cmd").and_then(Value::as_str) else {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "request must be an object with a string \"cmd\"",
        ));
    };
    // Commands and their fields are the `Request` enum's alone: serde
    // refuses an unknown field of any command (every variant is a struct
    // variant, so `deny_unknown_fields` covers them all) and names an
    // unknown command in its error. From the text, not
    // from `v`: a `Value` keeps only the last of duplicate keys, so
    // `{"cmd":"ping","cmd":"clear"}` would have cleared everything;
    // deserialising the text rejects any duplicate field.
    serde_json::from_str(line).map_err(|e| {
        // Whether the command itself is unknown: the bare command, without
        // its fields, fails on its tag (and not on a missing field).
        let bare = serde_json::from_value::<Request>(serde_json::json!({ "cmd": cmd }));
        if bare.is_err_and(|b| b.to_string().starts_with("unknown variant")) {
            CtlError::new(
                ErrorCode::UnknownCommand,
                format!("unknown command {cmd:?}"),
            )
        } else {
            CtlError::new(ErrorCode::BadRequest, format!("{cmd}: {e}"))
        }
    })
}

#[cfg(test)]
mod tests;
