//! Every reply the socket gives, as a type. rvsd builds these and
//! serialises them; rvsadm, the ipvsadm formatter (`adm`), the netlink
//! server (`ipvs_nl`) and the metrics page read the same types back with
//! [`from_reply`], so a field is named once, here.
//!
//! Replies do not refuse unknown fields (requests do), and a missing field
//! takes its default: an rvsadm of one version can then read an older or
//! newer rvsd during an upgrade. That every field
//! rvsd sends has its place in these types is a test
//! (`replies_round_trip_through_their_types`).

use std::net::Ipv4Addr;

use super::*;
use crate::config::VipOwnership;
use crate::flow::TunCsum;
use crate::live::{Rates, TrafficStats};

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
    pub local_twin: bool,
    pub conn_table: ConnTableView,
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

#[cfg(test)]
mod tests;
