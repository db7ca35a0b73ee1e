//! Prometheus metrics: the text exposition format (version 0.0.4) rendered
//! from the control socket's own `list` and `stats` answers, and a minimal
//! HTTP/1.0 server for `GET /metrics`.
//!
//! Rendering reads the JSON answers rather than internal structures, so the
//! metrics always say what `rvsadm` says, and a new field in `list` becomes a
//! metric with one table row (see `DEST_GAUGES`).

use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::control::{Control, Request};

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

/// How a sample's value is read from a JSON object.
type Extract = fn(&Value) -> Option<f64>;

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_u64().map(|u| u as f64).or_else(|| n.as_f64()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Health state ("up" | "down" | "unchecked") as 1/0; unchecked servers take
/// traffic, so they count as up.
fn health_up(v: &Value) -> Option<f64> {
    match v.get("health")?.as_str()? {
        "down" => Some(0.0),
        "up" | "unchecked" => Some(1.0),
        _ => None,
    }
}

macro_rules! field {
    ($($path:literal).+) => {{
        fn f(v: &Value) -> Option<f64> {
            let mut v = v;
            $( v = v.get($path)?; )+
            num(v)
        }
        f as Extract
    }};
}

/// (name, kind, help, value). Service and real-server families share the
/// traffic rows with their own prefix.
type Row = (&'static str, Kind, &'static str, Extract);

/// Traffic of a service or real server: `NAME` is prefixed with
/// `rvs_service_` or `rvs_dest_`.
const TRAFFIC: &[Row] = &[
    (
        "connections_total",
        Kind::Counter,
        "Connections scheduled.",
        field!("stats"."conns"),
    ),
    (
        "in_packets_total",
        Kind::Counter,
        "Packets from clients (client to real server).",
        field!("stats"."inpkts"),
    ),
    (
        "out_packets_total",
        Kind::Counter,
        "Packets from real servers (real server to client).",
        field!("stats"."outpkts"),
    ),
    (
        "in_bytes_total",
        Kind::Counter,
        "Bytes from clients, IP headers included.",
        field!("stats"."inbytes"),
    ),
    (
        "out_bytes_total",
        Kind::Counter,
        "Bytes from real servers, IP headers included.",
        field!("stats"."outbytes"),
    ),
    (
        "connections_per_second",
        Kind::Gauge,
        "Connection rate, 2 s EWMA as ip_vs_est (ipvsadm --rate CPS).",
        field!("rates"."cps"),
    ),
    (
        "in_packets_per_second",
        Kind::Gauge,
        "Inbound packet rate, 2 s EWMA (ipvsadm --rate InPPS).",
        field!("rates"."inpps"),
    ),
    (
        "out_packets_per_second",
        Kind::Gauge,
        "Outbound packet rate, 2 s EWMA (ipvsadm --rate OutPPS).",
        field!("rates"."outpps"),
    ),
    (
        "in_bytes_per_second",
        Kind::Gauge,
        "Inbound byte rate, 2 s EWMA (ipvsadm --rate InBPS).",
        field!("rates"."inbps"),
    ),
    (
        "out_bytes_per_second",
        Kind::Gauge,
        "Outbound byte rate, 2 s EWMA (ipvsadm --rate OutBPS).",
        field!("rates"."outbps"),
    ),
];

/// Real-server state. A row per field of a `list` dest object.
const DEST_GAUGES: &[Row] = &[
    (
        "rvs_dest_active_connections",
        Kind::Gauge,
        "Connections in TCP ESTABLISHED (ActiveConn).",
        field!("active"),
    ),
    (
        "rvs_dest_inactive_connections",
        Kind::Gauge,
        "Other connections, UDP included (InActConn).",
        field!("inactive"),
    ),
    (
        "rvs_dest_persistent_connections",
        Kind::Gauge,
        "Persistence templates bound to the real server.",
        field!("persist"),
    ),
    (
        "rvs_dest_weight",
        Kind::Gauge,
        "Scheduling weight (0 = quiesced).",
        field!("weight"),
    ),
    (
        "rvs_dest_overloaded",
        Kind::Gauge,
        "1 while the upper connection threshold is exceeded.",
        field!("overloaded"),
    ),
    (
        "rvs_dest_up",
        Kind::Gauge,
        "Health check state: 1 up (or not checked), 0 down.",
        health_up,
    ),
];

/// Per-worker counters from `stats` → `workers[i]`.
const WORKER: &[Row] = &[
    (
        "rvs_worker_rx_packets_total",
        Kind::Counter,
        "Frames received.",
        field!("rx_packets"),
    ),
    (
        "rvs_worker_rx_bytes_total",
        Kind::Counter,
        "Bytes received.",
        field!("rx_bytes"),
    ),
    (
        "rvs_worker_tx_packets_total",
        Kind::Counter,
        "Frames sent.",
        field!("tx_packets"),
    ),
    (
        "rvs_worker_tx_bytes_total",
        Kind::Counter,
        "Bytes sent.",
        field!("tx_bytes"),
    ),
    (
        "rvs_worker_tx_dropped_total",
        Kind::Counter,
        "Frames freed because the device TX queue was full.",
        field!("tx_dropped"),
    ),
    (
        "rvs_worker_rx_chained_total",
        Kind::Counter,
        "Multi-segment frames dropped on receive.",
        field!("rx_chained"),
    ),
    (
        "rvs_worker_exception_to_kernel_total",
        Kind::Counter,
        "Frames handed to the kernel twin (exception path).",
        field!("exception_to_kernel"),
    ),
    (
        "rvs_worker_exception_from_kernel_total",
        Kind::Counter,
        "Frames the kernel sent on its twin, sent out of the port.",
        field!("exception_from_kernel"),
    ),
    (
        "rvs_worker_garp_sent_total",
        Kind::Counter,
        "Gratuitous ARPs sent on taking a VIP.",
        field!("garp_sent"),
    ),
    (
        "rvs_worker_arp_replies_sent_total",
        Kind::Counter,
        "ARP replies sent.",
        field!("arp_replies_sent"),
    ),
    (
        "rvs_worker_arp_requests_sent_total",
        Kind::Counter,
        "ARP requests sent.",
        field!("arp_requests_sent"),
    ),
    (
        "rvs_worker_icmp_echo_replies_total",
        Kind::Counter,
        "ICMP echo replies sent.",
        field!("icmp_echo_replies"),
    ),
    (
        "rvs_worker_icmp_errors_sent_total",
        Kind::Counter,
        "ICMP errors generated.",
        field!("icmp_errors_sent"),
    ),
    (
        "rvs_worker_icmp_errors_forwarded_total",
        Kind::Counter,
        "ICMP errors about tracked connections translated and passed on.",
        field!("icmp_errors_forwarded"),
    ),
    (
        "rvs_worker_connections_created_total",
        Kind::Counter,
        "Connection entries created.",
        field!("conns_created"),
    ),
    (
        "rvs_worker_connections_expired_total",
        Kind::Counter,
        "Connection entries expired.",
        field!("conns_expired"),
    ),
    (
        "rvs_worker_connections_reused_total",
        Kind::Counter,
        "Connections in TIME_WAIT or CLOSE ended by a new SYN on their tuple.",
        field!("conns_reused"),
    ),
    (
        "rvs_worker_synproxy_syn_answered_total",
        Kind::Counter,
        "SYN proxy: SYNs answered with a SYN cookie.",
        field!("synproxy_syn_answered"),
    ),
    (
        "rvs_worker_synproxy_ack_accepted_total",
        Kind::Counter,
        "SYN proxy: client ACKs with a valid cookie (connections opened).",
        field!("synproxy_ack_accepted"),
    ),
    (
        "rvs_worker_synproxy_established_total",
        Kind::Counter,
        "SYN proxy: real-server handshakes completed.",
        field!("synproxy_established"),
    ),
    (
        "rvs_worker_synproxy_refused_total",
        Kind::Counter,
        "SYN proxy: real servers that reset the connection.",
        field!("synproxy_refused"),
    ),
    (
        "rvs_worker_synproxy_open_failed_total",
        Kind::Counter,
        "SYN proxy: clients reset because no connection could be opened for their ACK.",
        field!("synproxy_open_failed"),
    ),
    (
        "rvs_worker_synproxy_updates_sent_total",
        Kind::Counter,
        "SYN proxy: window updates sent to clients.",
        field!("synproxy_updates_sent"),
    ),
    (
        "rvs_worker_synproxy_updates_unsent_total",
        Kind::Counter,
        "SYN proxy: window updates that could not be sent.",
        field!("synproxy_updates_unsent"),
    ),
];

/// Per-port DPDK counters from `stats` → `ports[i].counters`.
const PORT: &[Row] = &[
    (
        "rvs_port_rx_packets_total",
        Kind::Counter,
        "Packets received by the device (DPDK ipackets).",
        field!("counters"."ipackets"),
    ),
    (
        "rvs_port_tx_packets_total",
        Kind::Counter,
        "Packets sent by the device (DPDK opackets).",
        field!("counters"."opackets"),
    ),
    (
        "rvs_port_rx_bytes_total",
        Kind::Counter,
        "Bytes received by the device (DPDK ibytes).",
        field!("counters"."ibytes"),
    ),
    (
        "rvs_port_tx_bytes_total",
        Kind::Counter,
        "Bytes sent by the device (DPDK obytes).",
        field!("counters"."obytes"),
    ),
    (
        "rvs_port_rx_missed_total",
        Kind::Counter,
        "Packets dropped by the device because its RX queue was full (DPDK imissed).",
        field!("counters"."imissed"),
    ),
    (
        "rvs_port_rx_errors_total",
        Kind::Counter,
        "Erroneous received packets (DPDK ierrors).",
        field!("counters"."ierrors"),
    ),
    (
        "rvs_port_tx_errors_total",
        Kind::Counter,
        "Failed transmissions (DPDK oerrors).",
        field!("counters"."oerrors"),
    ),
    (
        "rvs_port_rx_nombuf_total",
        Kind::Counter,
        "Receive failures for want of an mbuf (DPDK rx_nombuf).",
        field!("counters"."rx_nombuf"),
    ),
];

/// Packet mempools from `stats` → `mempools[i]`.
const MEMPOOL: &[Row] = &[
    (
        "rvs_mempool_in_use",
        Kind::Gauge,
        "Mbufs taken from the pool: in the workers, device rings or in flight.",
        field!("in_use"),
    ),
    (
        "rvs_mempool_available",
        Kind::Gauge,
        "Mbufs in the pool, per-lcore caches included.",
        field!("available"),
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

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Render the exposition text from a `list` and a `stats` answer.
pub fn render(list: &Value, stats: &Value) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let services = arr(&list["services"]);

    let svc_labels = |s: &Value| -> Labels {
        // A fwmark service has no vip/port/proto: its mark names it.
        if s.get("fwmark").is_some() {
            return vec![("fwmark", str_of(&s["fwmark"]))];
        }
        vec![
            ("vip", str_of(&s["vip"])),
            ("port", str_of(&s["port"])),
            ("proto", str_of(&s["proto"])),
        ]
    };
    for (suffix, kind, help, get) in TRAFFIC {
        let mut f = Family::new(format!("rvs_service_{suffix}"), *kind, help);
        for s in services {
            if let Some(v) = get(s) {
                f.samples.push((svc_labels(s), v));
            }
        }
        fams.push(f);
    }
    let dest_rows = TRAFFIC
        .iter()
        .map(|(suffix, kind, help, get)| (format!("rvs_dest_{suffix}"), *kind, *help, *get))
        .chain(
            DEST_GAUGES
                .iter()
                .map(|(n, k, h, g)| (n.to_string(), *k, *h, *g)),
        );
    for (name, kind, help, get) in dest_rows {
        let mut f = Family::new(name, kind, help);
        for s in services {
            for d in arr(&s["dests"]) {
                if let Some(v) = get(d) {
                    let mut l = svc_labels(s);
                    l.push(("rip", str_of(&d["ip"])));
                    l.push(("rport", str_of(&d["port"])));
                    f.samples.push((l, v));
                }
            }
        }
        fams.push(f);
    }

    // VIP ownership (vip_ownership "kernel": while the VIP is on a twin).
    let own = &stats["vip_ownership"];
    if own["mode"].is_string() {
        let always = own["mode"] == "always";
        let on: Vec<&str> = arr(&own["on_twins"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut f = Family::new(
            "rvs_service_vip_owned",
            Kind::Gauge,
            "1 while this director serves the service's VIP (always, or on a kernel twin).",
        );
        for s in services.iter().filter(|s| s.get("fwmark").is_none()) {
            let vip = str_of(&s["vip"]);
            let v = always || on.contains(&vip.as_str());
            f.samples.push((svc_labels(s), if v { 1.0 } else { 0.0 }));
        }
        fams.push(f);
    }

    let workers = arr(&stats["workers"]);
    for (name, kind, help, get) in WORKER {
        let mut f = Family::new(*name, *kind, help);
        for (i, w) in workers.iter().enumerate() {
            if let Some(v) = get(w) {
                f.samples.push((vec![("worker", i.to_string())], v));
            }
        }
        fams.push(f);
    }
    let mut drops = Family::new(
        "rvs_worker_drops_total",
        Kind::Counter,
        "Frames not forwarded, by reason (README: Drop reasons).",
    );
    for (i, w) in workers.iter().enumerate() {
        if let Some(m) = w["drops"].as_object() {
            for (reason, v) in m {
                if let Some(v) = num(v) {
                    drops.samples.push((
                        vec![("worker", i.to_string()), ("reason", reason.clone())],
                        v,
                    ));
                }
            }
        }
    }
    fams.push(drops);

    let ports = arr(&stats["ports"]);
    for (name, kind, help, get) in PORT {
        let mut f = Family::new(*name, *kind, help);
        for (i, p) in ports.iter().enumerate() {
            if let Some(v) = get(p) {
                f.samples.push((
                    vec![("port", i.to_string()), ("device", str_of(&p["device"]))],
                    v,
                ));
            }
        }
        fams.push(f);
    }

    let pools = arr(&stats["mempools"]);
    for (name, kind, help, get) in MEMPOOL {
        let mut f = Family::new(*name, *kind, help);
        for p in pools {
            if let Some(v) = get(p) {
                f.samples.push((vec![("pool", str_of(&p["name"]))], v));
            }
        }
        fams.push(f);
    }

    let ct = &list["conn_table"];
    for (name, help, key) in [
        (
            "rvs_conn_table_entries",
            "Connection entries in the table.",
            "count",
        ),
        (
            "rvs_conn_table_capacity",
            "Connection table capacity (max_connections).",
            "capacity",
        ),
    ] {
        let mut f = Family::new(name, Kind::Gauge, help);
        if let Some(v) = num(&ct[key]) {
            f.samples.push((vec![], v));
        }
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
    let list = ctl.handle(Request::List).unwrap_or(Value::Null);
    let stats = ctl.handle(Request::Stats).unwrap_or(Value::Null);
    let daemon = ctl.handle(Request::Daemon).unwrap_or(Value::Null);
    let mut out = render(&list, &stats);
    out.push_str(&render_sync(&daemon));
    out
}

/// Connection sync (`rvsadm -L --daemon --json`): which daemons run, and
/// the messages and connections sent, received, taken and refused.
pub fn render_sync(daemon: &Value) -> String {
    let mut fams = Vec::new();
    let mut up = Family::new(
        "rvs_sync_daemon_up",
        Kind::Gauge,
        "1 for each running connection-sync daemon (master, backup).",
    );
    for role in ["master", "backup"] {
        let on = arr(&daemon["daemons"]).iter().any(|d| d["state"] == role);
        up.samples.push((
            vec![("state", role.to_string())],
            if on { 1.0 } else { 0.0 },
        ));
    }
    fams.push(up);
    let c = &daemon["counters"];
    for (name, key, help) in [
        (
            "rvs_sync_sent_messages_total",
            "sent_msgs",
            "Sync messages the master sent.",
        ),
        (
            "rvs_sync_sent_connections_total",
            "sent_conns",
            "Connection entries the master sent.",
        ),
        (
            "rvs_sync_send_errors_total",
            "send_errors",
            "Sync messages the master could not send.",
        ),
        (
            "rvs_sync_deferred_total",
            "deferred",
            "Due entries left for a later scan by the rate bound (counted at every scan they wait).",
        ),
        (
            "rvs_sync_not_synced_total",
            "not_synced",
            "Connections the master cannot sync (IPv6), once per connection and state.",
        ),
        (
            "rvs_sync_received_messages_total",
            "recv_msgs",
            "Sync messages the backup received.",
        ),
        (
            "rvs_sync_received_connections_total",
            "recv_conns",
            "Connection entries the backup received.",
        ),
        (
            "rvs_sync_inserted_total",
            "inserted",
            "Entries the backup inserted as new connections.",
        ),
        (
            "rvs_sync_updated_total",
            "updated",
            "Entries that updated a connection the backup had.",
        ),
        (
            "rvs_sync_no_dest_total",
            "no_dest",
            "Entries for a service or real server this director does not have.",
        ),
        (
            "rvs_sync_table_full_total",
            "table_full",
            "Entries the connection table had no room for.",
        ),
        (
            "rvs_sync_stale_total",
            "stale",
            "Expiry entries for a connection already replaced.",
        ),
    ] {
        let mut f = Family::new(name, Kind::Counter, help);
        f.samples
            .push((Vec::new(), c[key].as_u64().unwrap_or(0) as f64));
        fams.push(f);
    }
    let mut f = Family::new(
        "rvs_sync_errors_total",
        Kind::Counter,
        "Sync messages or entries refused, by reason.",
    );
    if let Some(m) = c["errors"].as_object() {
        for (reason, v) in m {
            f.samples.push((
                vec![("reason", reason.clone())],
                v.as_u64().unwrap_or(0) as f64,
            ));
        }
    }
    fams.push(f);
    let mut out = String::new();
    for f in &fams {
        f.render(&mut out);
    }
    out
}

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

/// The response to a request head (everything up to the blank line, or what
/// arrived of it). `body` is called only for `GET /metrics`.
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(|l| l.trim_end_matches('\r'))
        .unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let valid = matches!((method, target, version), (Some(m), Some(t), Some(v))
        if !m.is_empty() && t.starts_with('/') && v.starts_with("HTTP/1.") && parts.next().is_none());
    if !valid {
        return response("400 Bad Request", TEXT, "bad request\n", false);
    }
    let (method, target) = (method.unwrap_or(""), target.unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response("405 Method Not Allowed", TEXT, "only GET\n", false);
    }
    if path != "/metrics" {
        return response(
            "404 Not Found",
            TEXT,
            "not found: try /metrics\n",
            head_only,
        );
    }
    response("200 OK", CONTENT_TYPE, &body(), head_only)
}

/// Read a request head: up to the blank line, [`MAX_REQUEST_HEAD`] bytes,
/// EOF or the timeout. `None` when it is too large.
fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(buf);
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return Some(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(buf),
        }
    }
}

fn serve_client(mut s: TcpStream, ctl: &Control) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
    let resp = match read_head(&mut s) {
        Some(head) => respond(&head, || scrape(ctl)),
        None => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request too large\n",
            false,
        ),
    };
    let _ = s.write_all(&resp);
    let _ = s.flush();
    // Lingering close: end our side, then drain (bounded) what the client
    // still sends, so unread input does not turn the close into a reset that
    // could destroy the response before the client read it.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Serve `GET /metrics` on `listener` from one thread, one client at a time,
/// until `stop` is set (checked every 50 ms).
pub fn spawn_server(
    listener: TcpListener,
    ctl: Arc<Control>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("rvs-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => serve_client(s, &ctl),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        log::warn!("metrics: accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_list() -> Value {
        json!({"ok": true, "services": [
            {"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
             "stats": {"conns": 20, "inpkts": 120, "outpkts": 100, "inbytes": 8000, "outbytes": 16000},
             "rates": {"cps": 3, "inpps": 18, "outpps": 15, "inbps": 1200, "outbps": 2400},
             "dests": [
                {"ip": "10.0.1.11", "port": 80, "fwd": "nat", "weight": 1, "active": 2,
                 "inactive": 8, "persist": 0, "overloaded": false,
                 "stats": {"conns": 10, "inpkts": 60, "outpkts": 50, "inbytes": 4000, "outbytes": 8000},
                 "rates": {"cps": 1, "inpps": 9, "outpps": 7, "inbps": 600, "outbps": 1200}},
                {"ip": "10.0.1.12", "port": 8080, "fwd": "nat", "weight": 0, "active": 0,
                 "inactive": 10, "persist": 1, "overloaded": true,
                 "stats": {"conns": 10, "inpkts": 60, "outpkts": 50, "inbytes": 4000, "outbytes": 8000},
                 "rates": {"cps": 2, "inpps": 9, "outpps": 8, "inbps": 600, "outbps": 1200}}]}],
            "conn_table": {"count": 18, "capacity": 1048576}})
    }

    fn sample_stats() -> Value {
        json!({"ok": true, "workers": [
            {"rx_packets": 300, "rx_bytes": 30000, "tx_packets": 290, "tx_bytes": 29000,
             "tx_dropped": 0, "rx_chained": 0, "arp_replies_sent": 2, "arp_requests_sent": 2,
             "icmp_echo_replies": 3, "icmp_errors_sent": 0, "icmp_errors_forwarded": 1,
             "conns_created": 20, "conns_expired": 2,
             "drops": {"no_service": 4, "ipv6": 7}}],
            "ports": [{"device": "net_af_packet0", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1/24",
                       "counters": {"ipackets": 150, "opackets": 140, "ibytes": 15000, "obytes": 14000,
                                    "imissed": 1, "ierrors": 0, "oerrors": 0, "rx_nombuf": 0}}],
            "mempools": [{"name": "rvs_pkts", "in_use": 12, "available": 16371}]})
    }

    /// Every `# TYPE` name in `text`.
    fn families(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn vip_ownership_is_a_gauge_per_service() {
        let mut st = sample_stats();
        st["vip_ownership"] = json!({"mode": "kernel", "on_twins": ["10.0.0.1"]});
        let t = render(&sample_list(), &st);
        assert!(
            t.contains("rvs_service_vip_owned{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\"} 0\n"),
            "{t}"
        );
        st["vip_ownership"] = json!({"mode": "kernel", "on_twins": ["10.0.0.1", "10.0.0.100"]});
        let t = render(&sample_list(), &st);
        assert!(
            t.contains("rvs_service_vip_owned{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\"} 1\n")
        );
        st["vip_ownership"] = json!({"mode": "always"});
        assert!(render(&sample_list(), &st).contains("proto=\"tcp\"} 1\n"));
        // Without a daemon (no ownership in stats): no family.
        assert!(!render(&sample_list(), &sample_stats()).contains("vip_owned"));
    }

    #[test]
    fn sync_daemons_and_counters_are_exported() {
        let d = serde_json::json!({"ok": true,
            "daemons": [{"state": "backup", "mcast_ifn": "mgmt0", "syncid": 5}],
            "counters": {"sent_msgs": 0, "recv_msgs": 12, "inserted": 30, "updated": 4,
                         "errors": {"foreign_syncid": 2, "bad_size": 0}}});
        let t = render_sync(&d);
        for line in [
            "rvs_sync_daemon_up{state=\"master\"} 0\n",
            "rvs_sync_daemon_up{state=\"backup\"} 1\n",
            "# TYPE rvs_sync_received_messages_total counter\n",
            "rvs_sync_received_messages_total 12\n",
            "rvs_sync_inserted_total 30\n",
            "rvs_sync_updated_total 4\n",
            "rvs_sync_errors_total{reason=\"foreign_syncid\"} 2\n",
        ] {
            assert!(t.contains(line), "{line:?} not in\n{t}");
        }
    }

    #[test]
    fn every_family_has_help_and_type_and_the_expected_samples() {
        let t = render(&sample_list(), &sample_stats());
        let fams = families(&t);
        let mut expected: Vec<String> = Vec::new();
        for (s, ..) in TRAFFIC {
            expected.push(format!("rvs_service_{s}"));
        }
        for (s, ..) in TRAFFIC {
            expected.push(format!("rvs_dest_{s}"));
        }
        expected.extend(DEST_GAUGES.iter().map(|r| r.0.to_owned()));
        expected.extend(WORKER.iter().map(|r| r.0.to_owned()));
        expected.push("rvs_worker_drops_total".into());
        expected.extend(PORT.iter().map(|r| r.0.to_owned()));
        expected.extend(MEMPOOL.iter().map(|r| r.0.to_owned()));
        expected.extend(
            [
                "rvs_conn_table_entries",
                "rvs_conn_table_capacity",
                "rvs_build_info",
            ]
            .map(String::from),
        );
        assert_eq!(fams, expected);
        for f in &fams {
            assert!(t.contains(&format!("# HELP {f} ")), "{f} has HELP");
            let ty = if f.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            assert!(t.contains(&format!("# TYPE {f} {ty}\n")), "{f} is a {ty}");
        }
        for want in [
            r#"rvs_service_connections_total{vip="10.0.0.100",port="80",proto="tcp"} 20"#,
            r#"rvs_service_in_packets_total{vip="10.0.0.100",port="80",proto="tcp"} 120"#,
            r#"rvs_service_out_bytes_total{vip="10.0.0.100",port="80",proto="tcp"} 16000"#,
            r#"rvs_service_connections_per_second{vip="10.0.0.100",port="80",proto="tcp"} 3"#,
            r#"rvs_dest_connections_total{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 10"#,
            r#"rvs_dest_connections_per_second{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 2"#,
            r#"rvs_dest_active_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 2"#,
            r#"rvs_dest_inactive_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 8"#,
            r#"rvs_dest_persistent_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 1"#,
            r#"rvs_dest_weight{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 0"#,
            r#"rvs_dest_overloaded{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 1"#,
            r#"rvs_dest_overloaded{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 0"#,
            r#"rvs_worker_rx_packets_total{worker="0"} 300"#,
            r#"rvs_worker_icmp_errors_forwarded_total{worker="0"} 1"#,
            r#"rvs_worker_connections_created_total{worker="0"} 20"#,
            r#"rvs_worker_drops_total{worker="0",reason="no_service"} 4"#,
            r#"rvs_worker_drops_total{worker="0",reason="ipv6"} 7"#,
            r#"rvs_port_rx_packets_total{port="0",device="net_af_packet0"} 150"#,
            r#"rvs_port_rx_missed_total{port="0",device="net_af_packet0"} 1"#,
            r#"rvs_mempool_in_use{pool="rvs_pkts"} 12"#,
            r#"rvs_mempool_available{pool="rvs_pkts"} 16371"#,
            "rvs_conn_table_entries 18",
            "rvs_conn_table_capacity 1048576",
            &format!(
                r#"rvs_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(t.lines().any(|l| l == want), "missing {want:?} in\n{t}");
        }
        // No health field yet: the family is there, without samples.
        assert!(!t.lines().any(|l| l.starts_with("rvs_dest_up{")));
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn health_field_becomes_rvs_dest_up() {
        let mut l = sample_list();
        l["services"][0]["dests"][0]["health"] = json!("up");
        l["services"][0]["dests"][1]["health"] = json!("down");
        let t = render(&l, &sample_stats());
        assert!(t.contains(
            "rvs_dest_up{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\",rip=\"10.0.1.11\",rport=\"80\"} 1\n"
        ));
        assert!(t.contains(
            "rvs_dest_up{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\",rip=\"10.0.1.12\",rport=\"8080\"} 0\n"
        ));
        l["services"][0]["dests"][1]["health"] = json!("unchecked");
        assert!(render(&l, &sample_stats()).contains("rport=\"8080\"} 1\n"));
    }

    #[test]
    fn a_fwmark_service_is_labelled_by_its_mark() {
        let mut l = sample_list();
        let s = l["services"][0].as_object_mut().unwrap();
        for k in ["proto", "vip", "port"] {
            s.remove(k);
        }
        s.insert("fwmark".into(), json!(7));
        let t = render(&l, &sample_stats());
        assert!(
            t.contains("rvs_service_connections_total{fwmark=\"7\"} 20\n"),
            "{t}"
        );
        assert!(t.contains(
            "rvs_dest_active_connections{fwmark=\"7\",rip=\"10.0.1.11\",rport=\"80\"} 2\n"
        ));
        assert!(!t.contains("vip=\"\""));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-10.0.0.1"), "plain-10.0.0.1");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        let mut st = sample_stats();
        st["ports"][0]["device"] = json!("0000:01:00.0,\"evil\"\\\n");
        let t = render(&sample_list(), &st);
        assert!(
            t.contains(
                r#"rvs_port_rx_packets_total{port="0",device="0000:01:00.0,\"evil\"\\\n"} 150"#
            ),
            "{t}"
        );
        // Every sample line is NAME{...} VALUE or NAME VALUE, one line each.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }

    #[test]
    fn values_are_formatted_exactly() {
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(18446744073709.0), "18446744073709");
        assert_eq!(fmt_value(1.5), "1.5");
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(1e20), "100000000000000000000");
    }

    #[test]
    fn empty_or_garbage_answers_render_families_without_samples() {
        let t = render(
            &Value::Null,
            &json!({"workers": "x", "ports": [1, {"counters": null}]}),
        );
        assert!(t.contains("# TYPE rvs_service_connections_total counter\n"));
        assert!(t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("rvs_build_info")));
    }

    #[test]
    fn http_routing() {
        let body = || "x 1\n".to_string();
        let r =
            String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", body)).unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(r.contains("Content-Length: 4\r\n") && r.ends_with("\r\n\r\nx 1\n"));
        let r = String::from_utf8(respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", body)).unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"));
        let r = String::from_utf8(respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", body)).unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n") && r.ends_with("\r\n\r\n"));
        for (req, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", "404"),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
            (b"", "400"),
            (b"\xff\xfe\r\n\r\n", "400"),
            (b"GET\r\n\r\n", "400"),
            (b"GET /metrics\r\n\r\n", "400"),
            (b"GET metrics HTTP/1.1\r\n\r\n", "400"),
            (b"GET /metrics HTTP/1.1 extra\r\n\r\n", "400"),
            (b"GET /metrics SPDY/3\r\n\r\n", "400"),
        ] {
            let r = String::from_utf8(respond(req, || panic!("no body for {req:?}"))).unwrap();
            assert!(
                r.starts_with(&format!("HTTP/1.0 {status} ")),
                "{req:?} -> {r}"
            );
        }
    }

    #[test]
    fn server_answers_and_survives_bad_clients() {
        use crate::conn::ConnTable;
        use crate::stats::WorkerStats;
        use crossbeam_utils::CachePadded;
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        let ctl = Arc::new(Control::new(
            Arc::new(ConnTable::new(100, 4)),
            workers,
            vec![],
        ));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn_server(l, ctl, stop.clone()).unwrap();
        let ask = |req: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(req);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut r = Vec::new();
            let _ = s.read_to_end(&mut r);
            String::from_utf8_lossy(&r).into_owned()
        };
        assert!(ask(&[b'A'; MAX_REQUEST_HEAD * 2]).starts_with("HTTP/1.0 431 "));
        assert!(ask(b"\x00\x01\x02").starts_with("HTTP/1.0 400 "));
        assert!(ask(b"GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
        // A client that connects and says nothing does not stop the server.
        let silent = TcpStream::connect(addr).unwrap();
        let r = ask(b"GET /metrics HTTP/1.0\r\n\r\n");
        drop(silent);
        assert!(r.starts_with("HTTP/1.0 200 OK"), "{r}");
        assert!(r.contains("\nrvs_conn_table_capacity 100\n"), "{r}");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
