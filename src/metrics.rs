//! Prometheus metrics: the text exposition format (version 0.0.4) rendered
//! from the control socket's own `list` and `stats` answers, and a minimal
//! HTTP/1.0 server for `GET /metrics`.
//!
//! Rendering reads the typed `list`, `stats` and `daemon` replies (the ones
//! rvsadm reads) rather than internal structures, so the metrics always say
//! what `rvsadm` says, and a new field in `list` becomes a metric with one
//! table row (see `DEST_GAUGES`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::control::{
    Control, DaemonReply, DestView, HealthState, ListReply, MempoolReport, PortReport, ServiceView,
    StatsReply,
};
use crate::live::{Rates, TrafficStats};
use crate::stats::StatsSnapshot;
use crate::sync::{CountersView, Role};

/// `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request head (request line and headers) read from a client.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// Read and write timeout per client.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A counter or gauge as a sample value.
trait Num {
    fn f(self) -> f64;
}
impl Num for u64 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl Num for u32 {
    fn f(self) -> f64 {
        f64::from(self)
    }
}
impl Num for bool {
    fn f(self) -> f64 {
        f64::from(u8::from(self))
    }
}

/// Health state (up | down | unchecked) as 1/0; unchecked servers take
/// traffic, so they count as up. No sample for a sorry server (no health).
fn health_up(d: &DestView) -> Option<f64> {
    d.health
        .map(|h| if h == HealthState::Down { 0.0 } else { 1.0 })
}

/// A row's value: a field of the reply type, by path.
macro_rules! field {
    ($($p:ident).+) => {
        |v| Some(Num::f(v $(.$p)+))
    };
}

/// (name, kind, help, value). Service and real-server families share the
/// traffic rows with their own prefix.
type Row<T> = (&'static str, Kind, &'static str, fn(&T) -> Option<f64>);

/// What services and real servers both carry.
struct Traffic {
    stats: TrafficStats,
    rates: Rates,
}

/// Traffic of a service or real server: `NAME` is prefixed with
/// `rvs_service_` or `rvs_dest_`.
const TRAFFIC: &[Row<Traffic>] = &[
    (
        "connections_total",
        Kind::Counter,
        "Connections scheduled.",
        field!(stats.conns),
    ),
    (
        "in_packets_total",
        Kind::Counter,
        "Packets from clients (client to real server).",
        field!(stats.inpkts),
    ),
    (
        "out_packets_total",
        Kind::Counter,
        "Packets from real servers (real server to client).",
        field!(stats.outpkts),
    ),
    (
        "in_bytes_total",
        Kind::Counter,
        "Bytes from clients, IP headers included.",
        field!(stats.inbytes),
    ),
    (
        "out_bytes_total",
        Kind::Counter,
        "Bytes from real servers, IP headers included.",
        field!(stats.outbytes),
    ),
    (
        "connections_per_second",
        Kind::Gauge,
        "Connection rate, 2 s EWMA as ip_vs_est (ipvsadm --rate CPS).",
        field!(rates.cps),
    ),
    (
        "in_packets_per_second",
        Kind::Gauge,
        "Inbound packet rate, 2 s EWMA (ipvsadm --rate InPPS).",
        field!(rates.inpps),
    ),
    (
        "out_packets_per_second",
        Kind::Gauge,
        "Outbound packet rate, 2 s EWMA (ipvsadm --rate OutPPS).",
        field!(rates.outpps),
    ),
    (
        "in_bytes_per_second",
        Kind::Gauge,
        "Inbound byte rate, 2 s EWMA (ipvsadm --rate InBPS).",
        field!(rates.inbps),
    ),
    (
        "out_bytes_per_second",
        Kind::Gauge,
        "Outbound byte rate, 2 s EWMA (ipvsadm --rate OutBPS).",
        field!(rates.outbps),
    ),
];

/// Real-server state. A row per field of a `list` dest object.
const DEST_GAUGES: &[Row<DestView>] = &[
    (
        "rvs_dest_active_connections",
        Kind::Gauge,
        "TCP connections established or in the handshake (ActiveConn).",
        field!(active),
    ),
    (
        "rvs_dest_inactive_connections",
        Kind::Gauge,
        "Other connections, UDP included (InActConn).",
        field!(inactive),
    ),
    (
        "rvs_dest_persistent_connections",
        Kind::Gauge,
        "Persistence templates bound to the real server.",
        field!(persist),
    ),
    (
        "rvs_dest_weight",
        Kind::Gauge,
        "Scheduling weight (0 = quiesced).",
        field!(weight),
    ),
    (
        "rvs_dest_overloaded",
        Kind::Gauge,
        "1 while the upper connection threshold is exceeded.",
        field!(overloaded),
    ),
    (
        "rvs_dest_up",
        Kind::Gauge,
        "Health check state: 1 up (or not checked), 0 down.",
        health_up,
    ),
];

/// Per-worker counters from `stats` → `workers[i]`.
const WORKER: &[Row<StatsSnapshot>] = &[
    (
        "rvs_worker_rx_packets_total",
        Kind::Counter,
        "Frames received.",
        field!(rx_packets),
    ),
    (
        "rvs_worker_rx_bytes_total",
        Kind::Counter,
        "Bytes received.",
        field!(rx_bytes),
    ),
    (
        "rvs_worker_tx_packets_total",
        Kind::Counter,
        "Frames sent.",
        field!(tx_packets),
    ),
    (
        "rvs_worker_tx_bytes_total",
        Kind::Counter,
        "Bytes sent.",
        field!(tx_bytes),
    ),
    (
        "rvs_worker_tx_dropped_total",
        Kind::Counter,
        "Frames freed because the device TX queue was full.",
        field!(tx_dropped),
    ),
    (
        "rvs_worker_rx_chained_total",
        Kind::Counter,
        "Multi-segment frames dropped on receive.",
        field!(rx_chained),
    ),
    (
        "rvs_worker_exception_to_kernel_total",
        Kind::Counter,
        "Frames handed to the kernel twin (exception path).",
        field!(exception_to_kernel),
    ),
    (
        "rvs_worker_exception_from_kernel_total",
        Kind::Counter,
        "Frames the kernel sent on its twin, sent out of the port.",
        field!(exception_from_kernel),
    ),
    (
        "rvs_worker_garp_sent_total",
        Kind::Counter,
        "Gratuitous ARPs sent on taking a VIP.",
        field!(garp_sent),
    ),
    (
        "rvs_worker_arp_replies_sent_total",
        Kind::Counter,
        "ARP replies sent.",
        field!(arp_replies_sent),
    ),
    (
        "rvs_worker_arp_requests_sent_total",
        Kind::Counter,
        "ARP requests sent.",
        field!(arp_requests_sent),
    ),
    (
        "rvs_worker_icmp_echo_replies_total",
        Kind::Counter,
        "ICMP echo replies sent.",
        field!(icmp_echo_replies),
    ),
    (
        "rvs_worker_icmpv6_echo_replies_total",
        Kind::Counter,
        "ICMPv6 echo replies sent (to the director's IPv6 addresses).",
        field!(icmpv6_echo_replies),
    ),
    (
        "rvs_worker_nd_adverts_sent_total",
        Kind::Counter,
        "IPv6 Neighbor Advertisements sent for the director's addresses.",
        field!(nd_adverts_sent),
    ),
    (
        "rvs_worker_nd_solicits_sent_total",
        Kind::Counter,
        "IPv6 Neighbor Solicitations sent for next hops.",
        field!(nd_solicits_sent),
    ),
    (
        "rvs_worker_icmp_errors_sent_total",
        Kind::Counter,
        "ICMP errors generated.",
        field!(icmp_errors_sent),
    ),
    (
        "rvs_worker_icmp_errors_forwarded_total",
        Kind::Counter,
        "ICMP errors about tracked connections translated and passed on.",
        field!(icmp_errors_forwarded),
    ),
    (
        "rvs_worker_connections_created_total",
        Kind::Counter,
        "Connection entries created.",
        field!(conns_created),
    ),
    (
        "rvs_worker_connections_expired_total",
        Kind::Counter,
        "Connection entries expired.",
        field!(conns_expired),
    ),
    (
        "rvs_worker_connections_reused_total",
        Kind::Counter,
        "Connections in TIME_WAIT or CLOSE ended by a new SYN on their tuple.",
        field!(conns_reused),
    ),
    (
        "rvs_worker_synproxy_syn_answered_total",
        Kind::Counter,
        "SYN proxy: SYNs answered with a SYN cookie.",
        field!(synproxy_syn_answered),
    ),
    (
        "rvs_worker_synproxy_ack_accepted_total",
        Kind::Counter,
        "SYN proxy: client ACKs with a valid cookie (connections opened).",
        field!(synproxy_ack_accepted),
    ),
    (
        "rvs_worker_synproxy_established_total",
        Kind::Counter,
        "SYN proxy: real-server handshakes completed.",
        field!(synproxy_established),
    ),
    (
        "rvs_worker_synproxy_refused_total",
        Kind::Counter,
        "SYN proxy: real servers that reset the connection.",
        field!(synproxy_refused),
    ),
    (
        "rvs_worker_synproxy_open_failed_total",
        Kind::Counter,
        "SYN proxy: clients reset because no connection could be opened for their ACK.",
        field!(synproxy_open_failed),
    ),
    (
        "rvs_worker_synproxy_updates_sent_total",
        Kind::Counter,
        "SYN proxy: window updates sent to clients.",
        field!(synproxy_updates_sent),
    ),
    (
        "rvs_worker_synproxy_updates_unsent_total",
        Kind::Counter,
        "SYN proxy: window updates that could not be sent.",
        field!(synproxy_updates_unsent),
    ),
];

/// Per-port DPDK counters from `stats` → `ports[i].counters`.
const PORT: &[Row<PortReport>] = &[
    (
        "rvs_port_rx_packets_total",
        Kind::Counter,
        "Packets received by the device (DPDK ipackets).",
        field!(counters.ipackets),
    ),
    (
        "rvs_port_tx_packets_total",
        Kind::Counter,
        "Packets sent by the device (DPDK opackets).",
        field!(counters.opackets),
    ),
    (
        "rvs_port_rx_bytes_total",
        Kind::Counter,
        "Bytes received by the device (DPDK ibytes).",
        field!(counters.ibytes),
    ),
    (
        "rvs_port_tx_bytes_total",
        Kind::Counter,
        "Bytes sent by the device (DPDK obytes).",
        field!(counters.obytes),
    ),
    (
        "rvs_port_rx_missed_total",
        Kind::Counter,
        "Packets dropped by the device because its RX queue was full (DPDK imissed).",
        field!(counters.imissed),
    ),
    (
        "rvs_port_rx_errors_total",
        Kind::Counter,
        "Erroneous received packets (DPDK ierrors).",
        field!(counters.ierrors),
    ),
    (
        "rvs_port_tx_errors_total",
        Kind::Counter,
        "Failed transmissions (DPDK oerrors).",
        field!(counters.oerrors),
    ),
    (
        "rvs_port_rx_nombuf_total",
        Kind::Counter,
        "Receive failures for want of an mbuf (DPDK rx_nombuf).",
        field!(counters.rx_nombuf),
    ),
];

/// Packet mempools from `stats` → `mempools[i]`.
const MEMPOOL: &[Row<MempoolReport>] = &[
    (
        "rvs_mempool_in_use",
        Kind::Gauge,
        "Mbufs taken from the pool: in the workers, device rings or in flight.",
        field!(in_use),
    ),
    (
        "rvs_mempool_available",
        Kind::Gauge,
        "Mbufs in the pool, per-lcore caches included.",
        field!(available),
    ),
];

/// Escape a label value: backslash, double quote and newline.
pub fn escape_label(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

/// Escape HELP text: backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers exactly, others as Go's strconv would.
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

type Labels = Vec<(&'static str, String)>;

fn fmt_labels(l: &Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let mut o = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(o, "{k}=\"{}\"", escape_label(v));
    }
    o.push('}');
    o
}

/// One metric family being rendered.
struct Family {
    name: String,
    kind: Kind,
    help: &'static str,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn new(name: impl Into<String>, kind: Kind, help: &'static str) -> Self {
        Family {
            name: name.into(),
            kind,
            help,
            samples: Vec::new(),
        }
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.name());
        for (l, v) in &self.samples {
            let _ = writeln!(out, "{}{} {}", self.name, fmt_labels(l), fmt_value(*v));
        }
    }
}

/// The labels that name a service: its mark, or vip, port and protocol.
fn svc_labels(s: &ServiceView) -> Labels {
    if let Some(mark) = s.fwmark {
        return vec![("fwmark", mark.to_string())];
    }
    let opt = |v: Option<String>| v.unwrap_or_default();
    vec![
        ("vip", opt(s.vip.map(|v| v.to_string()))),
        ("port", opt(s.port.map(|p| p.to_string()))),
        ("proto", opt(s.proto.map(|p| p.name().to_string()))),
    ]
}

/// One family per row, a sample per item.
fn families<'a, T: 'a>(
    fams: &mut Vec<Family>,
    rows: &[Row<T>],
    items: impl Iterator<Item = (Labels, &'a T)> + Clone,
) {
    for (name, kind, help, get) in rows {
        let mut f = Family::new(*name, *kind, help);
        for (l, item) in items.clone() {
            if let Some(v) = get(item) {
                f.samples.push((l, v));
            }
        }
        fams.push(f);
    }
}

/// Render the exposition text from a `list` and a `stats` answer.
pub fn render(list: &ListReply, stats: &StatsReply) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let services = &list.services;
    let traffic = |stats, rates| Traffic { stats, rates };
    for (suffix, kind, help, get) in TRAFFIC {
        let mut f = Family::new(format!("rvs_service_{suffix}"), *kind, help);
        for s in services {
            if let Some(v) = get(&traffic(s.stats, s.rates)) {
                f.samples.push((svc_labels(s), v));
            }
        }
        fams.push(f);
    }
    let dests = services.iter().flat_map(|s| {
        s.dests.iter().map(move |d| {
            let mut l = svc_labels(s);
            l.push(("rip", d.ip.to_string()));
            l.push(("rport", d.port.to_string()));
            (l, d)
        })
    });
    for (suffix, kind, help, get) in TRAFFIC {
        let mut f = Family::new(format!("rvs_dest_{suffix}"), *kind, help);
        for (l, d) in dests.clone() {
            if let Some(v) = get(&traffic(d.stats, d.rates)) {
                f.samples.push((l, v));
            }
        }
        fams.push(f);
    }
    families(&mut fams, DEST_GAUGES, dests);

    // VIP ownership (vip_ownership "kernel": while the VIP is on a twin).
    if let Some(own) = &stats.vip_ownership {
        let mut f = Family::new(
            "rvs_service_vip_owned",
            Kind::Gauge,
            "1 while this director serves the service's VIP (always, or on a kernel twin).",
        );
        for s in services.iter().filter(|s| s.fwmark.is_none()) {
            let owned = s.vip.is_some_and(|v| own.owns(v));
            f.samples.push((svc_labels(s), owned.f()));
        }
        fams.push(f);
    }

    // Route announcements for BGP/ECMP (docs/scale-out.md).
    if let Some(a) = &stats.announce {
        let mut f = Family::new(
            "rvs_vip_announced",
            Kind::Gauge,
            "1 while this director's route to the VIP is in its announce table.",
        );
        for v in &a.vips {
            f.samples
                .push((vec![("vip", v.vip.to_string())], v.installed.f()));
        }
        fams.push(f);
        let mut f = Family::new(
            "rvs_announce_draining",
            Kind::Gauge,
            "1 while draining (rvsadm --drain, or stopping): every route withdrawn.",
        );
        f.samples.push((vec![], a.draining.f()));
        fams.push(f);
        let mut f = Family::new(
            "rvs_announce_route_errors_total",
            Kind::Counter,
            "ip route commands of the announcer that failed (retried).",
        );
        f.samples.push((vec![], a.route_errors as f64));
        fams.push(f);
    }

    let workers = stats.workers.iter().enumerate();
    families(
        &mut fams,
        WORKER,
        workers
            .clone()
            .map(|(i, w)| (vec![("worker", i.to_string())], w)),
    );
    let mut drops = Family::new(
        "rvs_worker_drops_total",
        Kind::Counter,
        "Frames not forwarded, by reason (README: Drop reasons).",
    );
    for (i, w) in workers {
        for (reason, v) in &w.drops {
            drops.samples.push((
                vec![("worker", i.to_string()), ("reason", reason.to_string())],
                v.f(),
            ));
        }
    }
    fams.push(drops);

    families(
        &mut fams,
        PORT,
        stats.ports.iter().enumerate().map(|(i, p)| {
            (
                vec![("port", i.to_string()), ("device", p.device.clone())],
                p,
            )
        }),
    );
    families(
        &mut fams,
        MEMPOOL,
        stats
            .mempools
            .iter()
            .map(|p| (vec![("pool", p.name.clone())], p)),
    );

    for (name, help, v) in [
        (
            "rvs_conn_table_entries",
            "Connection entries in the table.",
            list.conn_table.count,
        ),
        (
            "rvs_conn_table_capacity",
            "Connection table capacity (max_connections).",
            list.conn_table.capacity,
        ),
    ] {
        let mut f = Family::new(name, Kind::Gauge, help);
        f.samples.push((vec![], v as f64));
        fams.push(f);
    }
    let mut bi = Family::new(
        "rvs_build_info",
        Kind::Gauge,
        "Constant 1, labelled with the rvs version.",
    );
    bi.samples.push((
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        1.0,
    ));
    fams.push(bi);

    let mut out = String::with_capacity(16 * 1024);
    for f in &fams {
        f.render(&mut out);
    }
    out
}

/// The exposition text for the daemon's current state.
pub fn scrape(ctl: &Control) -> String {
    let mut out = render(&ctl.list(), &ctl.stats());
    out.push_str(&render_sync(&ctl.daemon()));
    out
}

/// Sync counters from `daemon` → `counters`.
const SYNC: &[Row<CountersView>] = &[
    (
        "rvs_sync_sent_messages_total",
        Kind::Counter,
        "Sync messages the master sent.",
        field!(sent_msgs),
    ),
    (
        "rvs_sync_sent_connections_total",
        Kind::Counter,
        "Connection entries the master sent.",
        field!(sent_conns),
    ),
    (
        "rvs_sync_send_errors_total",
        Kind::Counter,
        "Sync messages the master could not send.",
        field!(send_errors),
    ),
    (
        "rvs_sync_deferred_total",
        Kind::Counter,
        "Due entries left for a later scan by the rate bound (counted at every scan they wait).",
        field!(deferred),
    ),
    (
        "rvs_sync_not_synced_total",
        Kind::Counter,
        "Connections the master cannot sync (SYN proxy: server handshake not done), once per connection and state.",
        field!(not_synced),
    ),
    (
        "rvs_sync_received_messages_total",
        Kind::Counter,
        "Sync messages the backup received.",
        field!(recv_msgs),
    ),
    (
        "rvs_sync_received_connections_total",
        Kind::Counter,
        "Connection entries the backup received.",
        field!(recv_conns),
    ),
    (
        "rvs_sync_inserted_total",
        Kind::Counter,
        "Entries the backup inserted as new connections.",
        field!(inserted),
    ),
    (
        "rvs_sync_updated_total",
        Kind::Counter,
        "Entries that updated a connection the backup had.",
        field!(updated),
    ),
    (
        "rvs_sync_no_dest_total",
        Kind::Counter,
        "Entries for a service or real server this director does not have.",
        field!(no_dest),
    ),
    (
        "rvs_sync_table_full_total",
        Kind::Counter,
        "Entries the connection table had no room for.",
        field!(table_full),
    ),
    (
        "rvs_sync_stale_total",
        Kind::Counter,
        "Expiry entries for a connection already replaced.",
        field!(stale),
    ),
];

/// Connection sync (`rvsadm -L --daemon --json`): which daemons run, and
/// the messages and connections sent, received, taken and refused.
pub fn render_sync(daemon: &DaemonReply) -> String {
    let mut fams = Vec::new();
    let mut up = Family::new(
        "rvs_sync_daemon_up",
        Kind::Gauge,
        "1 for each running connection-sync daemon (master, backup).",
    );
    for role in [Role::Master, Role::Backup] {
        let on = daemon.daemons.iter().any(|d| d.state == role);
        up.samples
            .push((vec![("state", role.name().to_string())], on.f()));
    }
    fams.push(up);
    families(
        &mut fams,
        SYNC,
        std::iter::once((Vec::new(), &daemon.counters)),
    );
    let mut f = Family::new(
        "rvs_sync_errors_total",
        Kind::Counter,
        "Sync messages or entries refused, by reason.",
    );
    for (reason, v) in &daemon.counters.errors {
        f.samples.push((vec![("reason", reason.clone())], v.f()));
    }
    fams.push(f);
    let mut out = String::new();
    for f in &fams {
        f.render(&mut out);
    }
    out
}

mod http;
pub use http::{respond, spawn_server};

#[cfg(test)]
mod tests;
