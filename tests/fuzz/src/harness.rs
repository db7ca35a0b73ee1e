//! One function per fuzz target: each takes the raw fuzzer input, runs it
//! through the real code and checks invariants. A violated invariant panics,
//! which libFuzzer reports (and saves) like any other crash.
//!
//! - [`wire`]: every packet view of `rvs::wire` over arbitrary bytes, with
//!   the checksum arithmetic checked against full recomputation.
//! - [`datapath`]: the whole per-packet function, frames in and frames out,
//!   through the worker loop of a complete in-memory director (the
//!   integration tests' rig) configured through the real control plane, in
//!   every forwarding mode; control requests can be interleaved with the
//!   traffic. Input format: [`DatapathInput`].
//! - [`control`]: the control socket's request parser and handler, line by
//!   line, then a dump/load round trip of whatever configuration resulted
//!   and a little traffic through it.
//!
//! Only the library's public, high-level API is used (the control plane's
//! JSON, `Worker::poll_once` over `MemIo`, the wire views), so the harness
//! does not depend on how the data path is built inside.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use rvs::conn::ConnTable;
use rvs::control::parse_request;
use rvs::io::MemIo;
use rvs::service::ServiceConf;
use rvs::wire::{
    checksum, ArpPacket, EtherType, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet,
    Ipv6Packet, MacAddr, PacketBuilder, TcpFlags, TcpSegment, UdpDatagram,
};
use serde_json::{json, Value};

use super::rig::*;

// ---------------------------------------------------------------------------
// wire
// ---------------------------------------------------------------------------

/// Parse `data` as every view of `rvs::wire` (as a frame, as an IP packet,
/// as an L4 header) and check what the views promise: lengths consistent
/// with the buffer, setters that read back, incremental checksum updates
/// that keep a checksum exactly as valid as it was, full recomputation that
/// always verifies, and the builder's frames parsing back to what was built.
pub fn wire(data: &[u8]) {
    // Addresses and values for the rewrites come from the input too.
    let word = |i: usize| -> u32 {
        let mut w = [0u8; 4];
        for (k, b) in w.iter_mut().enumerate() {
            *b = data.get(i + k).copied().unwrap_or(k as u8);
        }
        u32::from_be_bytes(w)
    };
    let vals = [word(0), word(4), word(8), word(12)];

    if let Ok(e) = EthernetFrame::new_checked(data) {
        assert_eq!(e.payload().len(), data.len() - 14);
        let _ = (e.dst(), e.src(), e.ethertype());
        let mut m = data.to_vec();
        let mut w = EthernetFrame::new_checked(&mut m[..]).unwrap();
        w.set_dst(MacAddr::BROADCAST);
        w.set_src(CLIENT_MAC);
        w.set_ethertype(EtherType::IPV6);
        assert_eq!(
            (w.dst(), w.src(), w.ethertype()),
            (MacAddr::BROADCAST, CLIENT_MAC, EtherType::IPV6)
        );
        wire_l3(e.payload(), vals);
    }
    wire_l3(data, vals);
    wire_ipv6(data);
    wire_l4(data, Ipv4Addr::from(vals[0]), Ipv4Addr::from(vals[1]), vals);
    wire_checksum_sums(data);
    wire_builder(data);
}

/// IPv6: the header view and the extension-header walk stay inside the
/// packet; setters read back; an upper-layer checksum computed over the
/// walk's result verifies.
fn wire_ipv6(b: &[u8]) {
    use rvs::wire::ipv6::{l4_checksum_v6, Ipv6Packet};
    let Ok(ip) = Ipv6Packet::new_checked(b) else {
        return;
    };
    let n = ip.packet().len();
    assert_eq!(n, 40 + usize::from(ip.payload_len()));
    assert!(n <= b.len());
    let _ = (ip.traffic_class(), ip.flow_label(), ip.hop_limit());
    if let Ok(u) = ip.upper_layer() {
        assert!(u.offset >= 40 && u.offset <= n, "{u:?} in {n} bytes");
        assert!(u.ext_headers <= rvs::wire::ipv6::MAX_EXT_HEADERS);
        // Fill in a checksum at the upper layer's first two bytes and
        // verify the segment.
        let mut seg = ip.packet()[u.offset..].to_vec();
        if seg.len() >= 2 {
            seg[..2].copy_from_slice(&[0, 0]);
            let c = l4_checksum_v6(ip.src(), ip.dst(), u.proto.0, &seg);
            seg[..2].copy_from_slice(&c.to_be_bytes());
            assert_eq!(l4_checksum_v6(ip.src(), ip.dst(), u.proto.0, &seg), 0);
        }
        // Neighbor Discovery: what passes the receive checks has a valid
        // checksum and a unicast target.
        if u.proto.0 == 58 {
            use rvs::wire::icmpv6::{Icmpv6, NdMessage};
            let msg = &ip.packet()[u.offset..];
            if let Ok(m) = NdMessage::parse(msg, ip.src(), ip.dst(), ip.hop_limit()) {
                assert!(Icmpv6::new(msg).unwrap().verify(ip.src(), ip.dst()));
                let (NdMessage::Solicit { target, .. } | NdMessage::Advert { target, .. }) = m;
                assert!(!target.is_multicast());
            }
        }
    }
    let mut m = b.to_vec();
    let mut w = Ipv6Packet::new_checked(&mut m[..]).unwrap();
    let (s, d) = (ip.dst(), ip.src());
    w.set_src(s);
    w.set_dst(d);
    w.set_hop_limit(ip.hop_limit().wrapping_sub(1));
    assert_eq!(
        (w.src(), w.dst(), w.hop_limit()),
        (s, d, ip.hop_limit().wrapping_sub(1))
    );
}

fn wire_l3(b: &[u8], vals: [u32; 4]) {
    let (x, y) = (Ipv4Addr::from(vals[2]), Ipv4Addr::from(vals[3]));
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (
            a.operation(),
            a.sender_hw(),
            a.sender_ip(),
            a.target_hw(),
            a.target_ip(),
        );
        let mut m = b.to_vec();
        let mut w = ArpPacket::new_checked(&mut m[..]).unwrap();
        w.set_sender_ip(x);
        w.set_target_ip(y);
        w.set_sender_hw(RS1_MAC);
        w.set_target_hw(RS2_MAC);
        assert_eq!(
            (w.sender_ip(), w.target_ip(), w.sender_hw(), w.target_hw()),
            (x, y, RS1_MAC, RS2_MAC)
        );
    }
    for truncated in [false, true] {
        let parsed = if truncated {
            Ipv4Packet::new_checked_truncated(b)
        } else {
            Ipv4Packet::new_checked(b)
        };
        let Ok(ip) = parsed else { continue };
        let (hl, tl) = (ip.header_len(), usize::from(ip.total_len()));
        assert!(
            (20..=60).contains(&hl) && hl <= b.len() && hl <= tl,
            "{hl} {tl}"
        );
        assert!(truncated || tl <= b.len());
        assert_eq!(ip.payload().len(), tl.min(b.len()) - hl);
        assert_eq!((ip.header().len(), ip.options().len()), (hl, hl - 20));
        assert_eq!(ip.version(), 4);
        let _ = (ip.dscp_ecn(), ip.ident(), ip.dont_frag(), ip.more_frags());
        assert_eq!(ip.is_fragment(), ip.more_frags() || ip.frag_offset() != 0);
        let _ = (ip.ttl(), ip.protocol());
        let valid = ip.verify_checksum();
        wire_l4(ip.payload(), ip.src_addr(), ip.dst_addr(), vals);

        // RFC 1624 updates preserve the checksum's (in)validity exactly.
        let mut m = b.to_vec();
        let mut w = Ipv4Packet::new_checked_truncated(&mut m[..]).unwrap();
        w.set_src_addr_inc(x);
        w.set_dst_addr_inc(y);
        let ttl = w.ttl();
        assert_eq!(w.dec_ttl_inc(), ttl.saturating_sub(1));
        assert_eq!((w.src_addr(), w.dst_addr()), (x, y));
        assert_eq!(w.verify_checksum(), valid, "incremental IPv4 header update");
        w.fill_checksum();
        assert!(w.verify_checksum(), "IPv4 fill_checksum");
        w.set_total_len_inc(vals[0] as u16);
        assert!(w.verify_checksum(), "IPv4 total length update");
    }
}

fn wire_l4(b: &[u8], src: Ipv4Addr, dst: Ipv4Addr, vals: [u32; 4]) {
    let new_src = Ipv4Addr::from(vals[3]);
    let (p, q) = ((vals[0] >> 16) as u16, vals[0] as u16);
    if let Ok(t) = TcpSegment::new_checked(b) {
        let hl = t.header_len();
        assert!((20..=60).contains(&hl) && hl <= b.len());
        assert_eq!(20 + t.options().len() + t.payload().len(), b.len());
        let _ = (t.flags(), t.window(), t.urgent());
        let valid = t.verify_checksum(src, dst);
        let mut m = b.to_vec();
        let mut w = TcpSegment::new_checked(&mut m[..]).unwrap();
        w.set_src_port_inc(p);
        w.set_dst_port_inc(q);
        w.set_seq_inc(vals[1]);
        w.set_ack_inc(vals[2]);
        w.update_checksum_addr(src, new_src);
        assert_eq!(
            (w.src_port(), w.dst_port(), w.seq(), w.ack()),
            (p, q, vals[1], vals[2])
        );
        assert_eq!(
            w.verify_checksum(new_src, dst),
            valid,
            "incremental TCP update"
        );
        w.fill_checksum(src, dst);
        assert!(w.verify_checksum(src, dst), "TCP fill_checksum");
    }
    if let Ok(u) = UdpDatagram::new_checked(b) {
        let len = usize::from(u.length());
        assert!(len >= 8 && len <= b.len());
        assert_eq!(u.payload().len(), len - 8);
        let (csum, valid) = (u.checksum(), u.verify_checksum(src, dst));
        let mut m = b.to_vec();
        let mut w = UdpDatagram::new_checked(&mut m[..]).unwrap();
        w.set_src_port_inc(p);
        w.set_dst_port_inc(q);
        w.update_checksum_addr(src, new_src);
        assert_eq!((w.src_port(), w.dst_port()), (p, q));
        // 0 (no checksum) stays 0; a checksum never becomes 0.
        assert_eq!(w.checksum() == 0, csum == 0, "UDP zero checksum rule");
        assert_eq!(
            w.verify_checksum(new_src, dst),
            valid,
            "incremental UDP update"
        );
        w.fill_checksum(src, dst);
        assert!(
            w.checksum() != 0 && w.verify_checksum(src, dst),
            "UDP fill_checksum"
        );
    }
    if let Ok(c) = Icmpv4Packet::new_checked(b) {
        let _ = (c.code(), c.echo_ident(), c.echo_seq(), c.next_hop_mtu());
        let _ = (c.rest_of_header(), c.payload().len());
        let valid = c.verify_checksum();
        let mut m = b.to_vec();
        let mut w = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
        w.set_msg_type_inc(p as u8);
        assert_eq!(w.msg_type(), p as u8);
        // Ones-complement arithmetic has two zeros: a message of all zero
        // bytes (checksum field included) sums to +0, which fails to verify,
        // and an update turns it into the -0 form, which verifies. Only that
        // buffer can change validity (ICMP has no pseudo-header to make its
        // sum non-zero).
        if b.iter().any(|&x| x != 0) {
            assert_eq!(w.verify_checksum(), valid, "incremental ICMP update");
        }
        w.fill_checksum();
        assert!(w.verify_checksum(), "ICMP fill_checksum");
    }
}

/// `checksum::sum` is a ones-complement sum: splitting the data at an even
/// offset and adding the halves' sums gives the same checksum.
fn wire_checksum_sums(data: &[u8]) {
    let at = (data.first().copied().unwrap_or(0) as usize * 2).min(data.len() & !1);
    let whole = checksum::fold(checksum::sum(data));
    let parts = checksum::fold(checksum::sum(&data[..at]) + checksum::sum(&data[at..]));
    assert_eq!(whole, parts, "checksum of halves, split at {at}");
}

/// Frames built from input-chosen parameters parse back to those parameters
/// with valid checksums.
fn wire_builder(data: &[u8]) {
    if data.len() < 12 {
        return;
    }
    let (src, dst) = (
        Ipv4Addr::new(10, data[0], data[1], 1),
        Ipv4Addr::new(10, data[2], data[3], 2),
    );
    let (sport, dport) = (
        u16::from_be_bytes([data[4], data[5]]),
        u16::from_be_bytes([data[6], data[7]]),
    );
    let opts_len = usize::from(data[8] % 11) * 4; // 0..=40 bytes of TCP options
    let rest = &data[12..];
    let (opts, payload) = rest.split_at(opts_len.min(rest.len() & !3));
    let payload = &payload[..payload.len().min(1400)];
    let base = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(src, dst)
        .ttl(data[9])
        .ident(u16::from_be_bytes([data[10], data[11]]));
    let frame = match data[8] % 3 {
        0 => base
            .tcp(sport, dport)
            .flags(TcpFlags(data[9]))
            .tcp_options(opts)
            .payload(payload)
            .build(),
        1 => base.udp(sport, dport).payload(payload).build(),
        _ => base.icmp_echo(sport, dport, payload).build(),
    };
    let ip = Ipv4Packet::new_checked(&frame[14..]).expect("built IPv4");
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.ttl()),
        (src, dst, data[9])
    );
    match data[8] % 3 {
        0 => {
            let t = TcpSegment::new_checked(ip.payload()).expect("built TCP");
            assert!(t.verify_checksum(src, dst));
            assert_eq!((t.src_port(), t.dst_port()), (sport, dport));
            assert_eq!((t.options(), t.payload()), (opts, payload));
        }
        1 => {
            let u = UdpDatagram::new_checked(ip.payload()).expect("built UDP");
            assert!(u.verify_checksum(src, dst));
            assert_eq!(
                (u.src_port(), u.dst_port(), u.payload()),
                (sport, dport, payload)
            );
        }
        _ => {
            let c = Icmpv4Packet::new_checked(ip.payload()).expect("built ICMP");
            assert!(c.verify_checksum());
            assert_eq!((c.echo_ident(), c.echo_seq()), (sport, dport));
        }
    }
}

// ---------------------------------------------------------------------------
// datapath
// ---------------------------------------------------------------------------

/// A forwarding setup: how the two real servers (rs1, rs2) of both services
/// are reached, and what a FULLNAT TCP service tells its servers about the
/// client.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub name: &'static str,
    pub fwd: [&'static str; 2],
    pub client_addr: &'static str,
}

/// Selected by bits 0-2 of a datapath input's first byte.
pub const MODES: [Mode; 8] = [
    Mode {
        name: "nat",
        fwd: ["nat", "nat"],
        client_addr: "none",
    },
    Mode {
        name: "dr",
        fwd: ["dr", "dr"],
        client_addr: "none",
    },
    Mode {
        name: "tun",
        fwd: ["tun", "tun"],
        client_addr: "none",
    },
    Mode {
        name: "fullnat",
        fwd: ["fullnat", "fullnat"],
        client_addr: "none",
    },
    Mode {
        name: "fullnat-toa",
        fwd: ["fullnat", "fullnat"],
        client_addr: "toa",
    },
    Mode {
        name: "fullnat-proxy_v2",
        fwd: ["fullnat", "fullnat"],
        client_addr: "proxy_v2",
    },
    Mode {
        name: "nat+fullnat-toa",
        fwd: ["nat", "fullnat"],
        client_addr: "toa",
    },
    Mode {
        name: "dr+tun",
        fwd: ["dr", "tun"],
        client_addr: "none",
    },
];

/// Selected by bits 3-4 of the first byte. Not `mh`: building its lookup
/// table on every configuration change would take most of a run's time
/// (the control target and the unit tests cover it).
pub const SCHEDS: [&str; 4] = ["rr", "wlc", "sh", "wrr"];

/// The first byte of a datapath input: the director's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config(pub u8);

impl Config {
    pub fn new(mode: usize, sched: usize, learn: bool, small: bool, persistent: bool) -> Config {
        Config(
            (mode as u8 & 7)
                | (sched as u8 & 3) << 3
                | u8::from(learn) << 5
                | u8::from(small) << 6
                | u8::from(persistent) << 7,
        )
    }
    pub fn mode(self) -> Mode {
        MODES[usize::from(self.0 & 7)]
    }
    pub fn sched(self) -> &'static str {
        SCHEDS[usize::from(self.0 >> 3 & 3)]
    }
    /// The director learns the client's and both servers' MACs (as in the
    /// integration tests) before the input's frames; else frames wait for
    /// ARP resolution first.
    pub fn learn(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// A connection table of 4 entries instead of 1000 (reaches "table full").
    pub fn small_table(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// The TCP service is persistent (60 s, /24 client granularity).
    pub fn persistent(self) -> bool {
        self.0 & 0x80 != 0
    }
}

/// One record of a datapath input after the config byte.
///
/// Each record starts with a header byte `h`:
/// - bit 0: the port: 0 = client side (10.0.0.0/24), 1 = server side;
/// - bit 1: fix the frame's IPv4 header and TCP/UDP/ICMP checksums before
///   sending it, so mutated frames get past checksum validation and the
///   strict checks on what comes out apply;
/// - bit 2: not a frame but a control request: the next byte picks one of
///   [`control_menu`] (modulo its length);
/// - bits 3-7: `adv`: after queuing, poll once and advance the fake clock
///   ([`advance_ms`]); 0 = queue only, so several frames make one burst.
///
/// A frame record continues with a 2-byte big-endian length and that many
/// bytes of frame (fewer if the input ends first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Frame {
        port: u16,
        fix: bool,
        adv: u8,
        bytes: Vec<u8>,
    },
    Control {
        index: u8,
        adv: u8,
    },
}

/// How far the clock moves after a record's poll, in ms, for `adv` 1..=31:
/// 1 -> 0 (same millisecond), 2..=16 -> 1..=15 ms, 17..=31 -> 1 s .. 4.6 h
/// (neighbour timeouts, persistence templates, connection expiry).
pub fn advance_ms(adv: u8) -> u64 {
    match adv {
        0 | 1 => 0,
        2..=16 => u64::from(adv) - 1,
        _ => 1u64 << (u32::from(adv.min(31)) - 7),
    }
}

/// A datapath input, decoded: config byte, then records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatapathInput {
    pub config: Config,
    pub records: Vec<Record>,
}

/// At most this many records of an input are run (bounds a run's time).
pub const MAX_RECORDS: usize = 64;
/// Of which at most this many control requests (each costs as much as
/// dozens of frames); later ones are skipped.
pub const MAX_CONTROLS: usize = 4;

impl DatapathInput {
    pub fn decode(data: &[u8]) -> Option<DatapathInput> {
        let (&config, mut rest) = data.split_first()?;
        let (mut records, mut controls) = (Vec::new(), 0);
        while let Some((&h, tail)) = rest.split_first() {
            if records.len() == MAX_RECORDS {
                break;
            }
            let adv = h >> 3;
            if h & 4 != 0 {
                let Some((&index, tail)) = tail.split_first() else {
                    break;
                };
                if controls < MAX_CONTROLS {
                    records.push(Record::Control { index, adv });
                    controls += 1;
                }
                rest = tail;
                continue;
            }
            let (len, tail) = match tail {
                [a, b, tail @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), tail),
                _ => (tail.len(), &[][..]),
            };
            let len = len.min(tail.len());
            records.push(Record::Frame {
                port: u16::from(h & 1),
                fix: h & 2 != 0,
                adv,
                bytes: tail[..len].to_vec(),
            });
            rest = &tail[len..];
        }
        Some(DatapathInput {
            config: Config(config),
            records,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.config.0];
        for r in &self.records {
            match r {
                Record::Frame {
                    port,
                    fix,
                    adv,
                    bytes,
                } => {
                    out.push((*port as u8 & 1) | u8::from(*fix) << 1 | adv << 3);
                    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
                Record::Control { index, adv } => {
                    out.push(4 | adv << 3);
                    out.push(*index);
                }
            }
        }
        out
    }
}

/// The local (FULLNAT) addresses of the services.
pub fn lip() -> Ipv4Addr {
    ip("10.0.1.200")
}
pub fn lip2() -> Ipv4Addr {
    ip("10.0.1.201")
}

const TCP_SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;
const UDP_SVC: &str = r#"{"proto":"udp","vip":"10.0.0.100","port":53}"#;

/// The TCP service (10.0.0.100:80) as JSON, without real servers.
fn tcp_service(cfg: Config, sched: &str) -> String {
    let persistent = if cfg.persistent() {
        r#","persistent":60,"netmask":"255.255.255.0""#
    } else {
        ""
    };
    format!(
        r#"{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"{sched}","laddrs":["10.0.1.200"],"client_addr":"{}"{persistent}}}"#,
        cfg.mode().client_addr
    )
}

/// Real server `n` (rs1, rs2) as JSON: weight n + 1.
fn dest(n: usize, fwd: &str) -> String {
    let ip = ["10.0.1.11", "10.0.1.12"][n];
    format!(r#"{{"ip":"{ip}","weight":{},"fwd":"{fwd}"}}"#, n + 1)
}

fn add_dest(svc: &str, n: usize, fwd: &str) -> String {
    format!(
        r#"{{"cmd":"add_dest","service":{svc},"dest":{}}}"#,
        dest(n, fwd)
    )
}

/// The configuration a datapath run starts with, as the control socket's
/// `load` takes it: a TCP service on 10.0.0.100:80 and a UDP one on :53,
/// each with rs1 (weight 1) and rs2 (weight 2) reached as the mode says.
pub fn initial_services(cfg: Config) -> String {
    let m = cfg.mode();
    let dests = format!(r#""dests":[{},{}]}}"#, dest(0, m.fwd[0]), dest(1, m.fwd[1]));
    let tcp = tcp_service(cfg, cfg.sched());
    // The same TCP service on an IPv6 VIP with IPv6 servers, in every
    // mode (client-address delivery included).
    let d = |ip: &str, n: usize, fwd: &str| {
        format!(r#"{{"ip":"{ip}","weight":{},"fwd":"{fwd}"}}"#, n + 1)
    };
    let v6 = format!(
        r#",{{"proto":"tcp","vip":"{VIP6}","port":80,"sched":"{}","laddrs":["2001:db8:1::5"],"client_addr":"{}"{},"dests":[{},{}]}}"#,
        cfg.sched(),
        m.client_addr,
        if cfg.persistent() {
            r#","persistent":60"#
        } else {
            ""
        },
        d("2001:db8:1::11", 0, m.fwd[0]),
        d("2001:db8:1::12", 1, m.fwd[1]),
    );
    format!(
        r#"[{},{{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"{}","laddrs":["10.0.1.200"],{dests}{v6}]"#,
        tcp.strip_suffix('}').unwrap().to_string() + "," + &dests,
        cfg.sched()
    )
}

/// The IPv6 service's VIP (TCP port 80), where the mode has one.
pub const VIP6: &str = "2001:db8::100";

/// `initial_services` of every config, parsed once: a run then starts with
/// `Control::load`, skipping the JSON (most of a short run's time).
fn initial_confs(cfg: Config) -> Vec<ServiceConf> {
    static ALL: OnceLock<Vec<Vec<ServiceConf>>> = OnceLock::new();
    ALL.get_or_init(|| {
        (0..=255u8)
            .map(|c| serde_json::from_str(&initial_services(Config(c))).expect("initial services"))
            .collect()
    })[usize::from(cfg.0)]
    .clone()
}

/// Control requests a datapath input can interleave with its frames (by
/// index, modulo the length): configuration changes under live
/// connections, and the listing that walks the connection table. Each may
/// fail (deleting what is not there): the response must be a JSON object
/// either way. (`list`, `stats` and the rest are the control target's.)
pub fn control_menu(cfg: Config) -> Vec<Vec<String>> {
    let m = cfg.mode();
    let one = |s: String| vec![s];
    vec![
        one(format!(
            r#"{{"cmd":"del_dest","service":{TCP_SVC},"dest":{{"ip":"10.0.1.11"}}}}"#
        )),
        one(add_dest(TCP_SVC, 0, m.fwd[0])),
        one(format!(
            r#"{{"cmd":"edit_dest","service":{TCP_SVC},"dest":{{"ip":"10.0.1.12","weight":0,"fwd":"{}"}}}}"#,
            m.fwd[1]
        )),
        one(format!(
            r#"{{"cmd":"edit_dest","service":{TCP_SVC},"dest":{{"ip":"10.0.1.11","weight":1,"fwd":"{}","u_threshold":1,"l_threshold":1}}}}"#,
            m.fwd[0]
        )),
        // Switch the forwarding method of a server with live connections.
        one(format!(
            r#"{{"cmd":"edit_dest","service":{UDP_SVC},"dest":{{"ip":"10.0.1.11","fwd":"{}"}}}}"#,
            if m.fwd[0] == "fullnat" {
                "nat"
            } else {
                "fullnat"
            }
        )),
        one(format!(r#"{{"cmd":"del_service","service":{TCP_SVC}}}"#)),
        vec![
            format!(
                r#"{{"cmd":"add_service","service":{}}}"#,
                tcp_service(cfg, "wrr")
            ),
            add_dest(TCP_SVC, 0, m.fwd[0]),
            add_dest(TCP_SVC, 1, m.fwd[1]),
        ],
        one(format!(
            r#"{{"cmd":"edit_service","service":{}}}"#,
            tcp_service(cfg, "lc")
        )),
        one(format!(
            r#"{{"cmd":"add_laddr","service":{TCP_SVC},"laddr":"10.0.1.201"}}"#
        )),
        one(format!(
            r#"{{"cmd":"del_laddr","service":{TCP_SVC},"laddr":"10.0.1.200"}}"#
        )),
        one(r#"{"cmd":"set_timeouts","timeouts":{"tcp":2,"tcpfin":1,"udp":1}}"#.into()),
        one(r#"{"cmd":"zero"}"#.into()),
        one(r#"{"cmd":"clear"}"#.into()),
        one(r#"{"cmd":"connections"}"#.into()),
        // The SYN proxy on (refused in DR/TUN and PROXY v2 modes). The
        // fuzzer cannot forge cookies, so this reaches the SYN answers and
        // the cookie checks; tests/synproxy_memio.rs has the handshakes.
        one(format!(
            r#"{{"cmd":"edit_service","service":{}}}"#,
            tcp_service(cfg, "rr").replacen('{', r#"{"synproxy":true,"#, 1)
        )),
        // The same on the IPv6 service.
        one(format!(
            r#"{{"cmd":"edit_service","service":{{"proto":"tcp","vip":"{VIP6}","port":80,"sched":"rr","laddrs":["2001:db8:1::5"],"client_addr":"{}","synproxy":true}}}}"#,
            m.client_addr
        )),
    ]
}

/// The director's MAC on each port.
pub const PORT_MACS: [MacAddr; 2] = [DIR0_MAC, DIR1_MAC];

/// A running datapath session: a fresh director plus the invariant checks.
/// `datapath()` drives one from a fuzz input; the seed generator drives one
/// by hand and takes the encoded input from it.
pub struct Session {
    pub rig: Rig<MemIo>,
    pub input: DatapathInput,
    menu: Vec<Vec<String>>,
    /// A frame without valid checksums was queued and may still be in the
    /// director (queued, or held for ARP): checksums of what comes out are
    /// then not checked beyond the IPv4 header's.
    dirty: bool,
    /// Frames taken from the device's TX queues.
    sent: u64,
}

thread_local! {
    /// Connection tables of finished sessions, emptied, by size (4, 1000):
    /// allocating, faulting in and dropping a table (and its registry of
    /// services) was most of a fresh director's cost, and a fresh director
    /// most of a run's. [`ConnTable::reset`] leaves one as new; the test
    /// `tests/fuzz_corpus.rs` checks that a session on a reused table sends
    /// exactly what one on a new table sends.
    static SPARE_TABLES: RefCell<[Option<ConnTable>; 2]> = const { RefCell::new([None, None]) };
}

impl Session {
    /// A session on a new director; its connection table is a reset one of
    /// an earlier [`Session::recycle`] when there is one.
    pub fn new(config: Config) -> Session {
        let (max, spare) = if config.small_table() {
            (4, 0)
        } else {
            (1000, 1)
        };
        let table = SPARE_TABLES
            .with_borrow_mut(|t| t[spare].take())
            .unwrap_or_else(|| ConnTable::new(max, 1));
        Self::on_table(config, table)
    }

    /// A session on a director built around `table` (empty, 1 worker).
    pub fn on_table(config: Config, table: ConnTable) -> Session {
        let b = director(PORT_MACS).conn_table(Arc::new(table));
        let rig = Rig::with(MemIo::new(2), b);
        rig.ctl
            .load(initial_confs(config))
            .expect("initial configuration");
        let mut s = Session {
            rig,
            input: DatapathInput {
                config,
                records: Vec::new(),
            },
            menu: control_menu(config),
            dirty: false,
            sent: 0,
        };
        if config.learn() {
            // The client and both servers ARP for the director, which learns
            // their MACs from the requests (and answers each: 3 frames).
            s.rig.learn_neighbours();
            s.sent += 3;
        }
        s
    }

    /// Queue a frame on `port` (its checksums fixed first when `fix`), then
    /// if `adv` != 0 poll and advance the clock. Returns what was sent.
    pub fn frame(&mut self, port: u16, fix: bool, adv: u8, bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
        self.input.records.push(Record::Frame {
            port,
            fix,
            adv,
            bytes: bytes.to_vec(),
        });
        let mut f = bytes.to_vec();
        if fix {
            fix_checksums(&mut f);
        }
        self.dirty |= !checksums_valid(&f);
        self.rig.worker.io.push(port, &f);
        if adv == 0 {
            return Vec::new();
        }
        self.poll(advance_ms(adv))
    }

    /// Send control request `index` of the menu, then poll as for a frame.
    pub fn control(&mut self, index: u8, adv: u8) -> Vec<(u16, Vec<u8>)> {
        self.input.records.push(Record::Control { index, adv });
        let reqs = &self.menu[usize::from(index) % self.menu.len()];
        for req in reqs {
            let resp = self.rig.ctl.handle_line(req);
            // Parsing every response would cost more than the rest of the
            // run; the control target checks responses in depth.
            assert!(
                resp.starts_with(r#"{""#) && resp.ends_with('}'),
                "{req} -> {resp}"
            );
            if req.contains(r#""connections""#) {
                let v: Value = serde_json::from_str(&resp).expect("connections JSON");
                let n = v["connections"].as_array().expect("connections").len();
                let max = if self.input.config.small_table() {
                    4
                } else {
                    1000
                };
                assert!(n <= max, "{n} connections in a table of {max}");
            }
        }
        if adv == 0 {
            return Vec::new();
        }
        self.poll(advance_ms(adv))
    }

    /// One poll at the current time, check everything sent, then advance
    /// the clock by `ms`.
    pub fn poll(&mut self, ms: u64) -> Vec<(u16, Vec<u8>)> {
        let strict = Strict {
            checksums: !self.dirty,
        };
        self.rig.step(ms);
        let mut out = Vec::new();
        for port in 0..2 {
            for f in self.rig.worker.io.take_tx(port) {
                check_sent(port, &f, strict);
                self.sent += 1;
                out.push((port, f));
            }
        }
        let io = &self.rig.worker.io;
        if io.rx.iter().all(|q| q.is_empty()) && self.rig.worker.held() == 0 {
            self.dirty = false;
        }
        out
    }

    /// Let every queued and held frame resolve or time out, then check that
    /// each frame received was sent, dropped with a reason or consumed, and
    /// that every frame on the wire is accounted for.
    /// Returns what was sent meanwhile.
    pub fn finish(&mut self) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        // Drain what is still queued (32 frames per port per poll).
        while self.rig.worker.io.rx.iter().any(|q| !q.is_empty()) {
            out.extend(self.poll(1));
        }
        for ms in [5_000, 5_000, 1] {
            out.extend(self.poll(ms));
        }
        assert_eq!(self.rig.worker.held(), 0, "frames still held after 10 s");
        let s = self.rig.stats();
        assert_eq!(
            s.rx_packets,
            s.tx_packets + s.total_drops() + s.consumed,
            "every frame received is sent, dropped with a reason or consumed: {s:?}"
        );
        assert_eq!(
            self.sent,
            s.tx_packets + s.arp_requests_sent + s.nd_solicits_sent + s.synproxy_updates_sent,
            "frames on the wire = forwarded/answered + ARP requests and NSs: {s:?}"
        );
        out
    }
}

impl Session {
    /// End the session and keep its connection table, reset, for the next
    /// [`Session::new`] of the same table size. `None` if something still
    /// held the table (it is then dropped).
    pub fn into_table(self) -> Option<ConnTable> {
        let Session { rig, .. } = self;
        let conns = rig.ctl.conns.clone();
        drop(rig);
        let mut t = Arc::into_inner(conns)?;
        t.reset();
        Some(t)
    }

    /// [`Session::into_table`], the table kept for the next session.
    pub fn recycle(self) {
        let spare = usize::from(!self.input.config.small_table());
        if let Some(t) = self.into_table() {
            SPARE_TABLES.with_borrow_mut(|s| s[spare] = Some(t));
        }
    }
}

/// The datapath target: decode, run every record through a director (on a
/// reused connection table, see [`Session::new`]), finish. Returns the
/// session for callers that want to look further; `recycle` it after.
pub fn datapath(data: &[u8]) -> Option<Session> {
    let input = DatapathInput::decode(data)?;
    let mut s = Session::new(input.config);
    s.run(input.records);
    Some(s)
}

impl Session {
    /// Every record, then [`Session::finish`]; returns every frame sent, in
    /// order.
    pub fn run(&mut self, records: Vec<Record>) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        for r in records {
            out.extend(match r {
                Record::Frame {
                    port,
                    fix,
                    adv,
                    bytes,
                } => self.frame(port, fix, adv, &bytes),
                Record::Control { index, adv } => self.control(index, adv),
            });
        }
        out.extend(self.finish());
        out
    }
}

/// Recompute the IPv4 header checksum and the TCP/UDP/ICMP checksum of an
/// Ethernet/IPv4 frame, whatever else is in it (no-op if it does not parse).
pub fn fix_checksums(frame: &mut [u8]) {
    let Ok(mut eth) = EthernetFrame::new_checked(&mut frame[..]) else {
        return;
    };
    if eth.ethertype() != EtherType::IPV4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let l4 = ip.payload_mut();
    match proto {
        IpProtocol::TCP => {
            if let Ok(mut t) = TcpSegment::new_checked(l4) {
                t.fill_checksum(src, dst);
            }
        }
        IpProtocol::UDP => {
            if let Ok(mut u) = UdpDatagram::new_checked(l4) {
                u.fill_checksum(src, dst);
            }
        }
        IpProtocol::ICMP => {
            if let Ok(mut c) = Icmpv4Packet::new_checked(l4) {
                c.fill_checksum();
            }
        }
        _ => {}
    }
}

/// Whether a frame the director receives is "clean": not IPv4, or IPv4 whose
/// header and TCP/UDP/ICMP checksums verify (or that does not parse: such
/// frames are dropped). The director only verifies the IPv4 header
/// checksum and rewrites L4 checksums incrementally, so a bad L4 checksum in
/// legitimately gives a bad one out; a clean frame in must give clean
/// frames out.
pub fn checksums_valid(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return true;
    };
    if eth.ethertype() == EtherType::IPV6 {
        // TCP, UDP and ICMPv6 over IPv6 (the director updates checksums
        // incrementally: a bad one stays bad, as over IPv4).
        let Ok(ip) = Ipv6Packet::new_checked(eth.payload()) else {
            return true;
        };
        let Ok(ul) = ip.upper_layer() else {
            return true;
        };
        let l4 = &ip.packet()[ul.offset..];
        return !matches!(ul.proto.0, 6 | 17 | 58)
            || l4.len() < 8
            || rvs::wire::ipv6::l4_checksum_v6(ip.src(), ip.dst(), ul.proto.0, l4) == 0;
    }
    if eth.ethertype() != EtherType::IPV4 {
        return true;
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return true;
    };
    ip.verify_checksum() && l4_checksum_ok(&ip)
}

fn l4_checksum_ok(ip: &Ipv4Packet<&[u8]>) -> bool {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match ip.protocol() {
        IpProtocol::TCP => {
            TcpSegment::new_checked(ip.payload()).map_or(true, |t| t.verify_checksum(src, dst))
        }
        IpProtocol::UDP => {
            UdpDatagram::new_checked(ip.payload()).map_or(true, |u| u.verify_checksum(src, dst))
        }
        IpProtocol::ICMP => {
            Icmpv4Packet::new_checked(ip.payload()).map_or(true, |c| c.verify_checksum())
        }
        _ => true,
    }
}

/// Which conditional checks of `check_sent` apply.
#[derive(Clone, Copy, Debug)]
pub struct Strict {
    /// Every frame that went in had valid checksums: TCP/UDP/ICMP checksums
    /// of what comes out must verify too.
    pub checksums: bool,
}

impl Strict {
    pub const ALL: Strict = Strict { checksums: true };
}

/// Whether a MAC address is one the director should ever send to: unicast,
/// not all zeros, not one of its own.
pub fn sane_mac(m: MacAddr) -> bool {
    m.is_unicast() && !m.is_zero() && !PORT_MACS.contains(&m)
}

/// What must hold for every frame the director sends on `port`: a complete
/// Ethernet header from the port's own MAC, and an ARP packet of its own or
/// an IPv4 packet that parses with a valid header checksum, carrying
/// TCP/UDP/ICMP or (TUN) IP-in-IP, not a fragment, with TTL > 0, sent to a
/// unicast destination MAC that is not zero or the director's own (the
/// director used to answer and learn such MACs, and forward TTL 0 in DR and
/// TUN: see regressions/datapath). Under `strict` (see `Strict`): valid
/// TCP/UDP/ICMP checksums (the inner packet's included for TUN).
pub fn check_sent(port: u16, frame: &[u8], strict: Strict) {
    let ctx = || format!("frame sent on port {port} ({strict:?}): {frame:02x?}");
    let eth = EthernetFrame::new_checked(frame).unwrap_or_else(|_| panic!("short {}", ctx()));
    assert_eq!(
        eth.src(),
        PORT_MACS[usize::from(port)],
        "source MAC of {}",
        ctx()
    );
    let dst = eth.dst();
    let arp_request = eth.ethertype() == EtherType::ARP && dst.is_broadcast();
    // The one IPv6 group the director sends to: all-nodes, for the NA that
    // answers a DAD probe.
    let all_nodes = eth.ethertype() == EtherType::IPV6 && dst == MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    // Neighbor Solicitations for next hops go to solicited-node groups.
    let solicit = eth.ethertype() == EtherType::IPV6 && dst.0[..3] == [0x33, 0x33, 0xff];
    if !arp_request && !all_nodes && !solicit {
        assert!(sane_mac(dst), "destination MAC of {}", ctx());
    }
    match eth.ethertype() {
        EtherType::ARP => {
            let a = ArpPacket::new_checked(eth.payload())
                .unwrap_or_else(|e| panic!("ARP {e:?}: {}", ctx()));
            assert_eq!(a.sender_hw(), eth.src(), "ARP sender of {}", ctx());
        }
        EtherType::IPV4 => check_sent_ipv4(eth.payload(), strict, &ctx),
        EtherType::IPV6 => check_sent_ipv6(port, eth.payload(), all_nodes, strict, &ctx),
        t => panic!("ethertype {t:?} in {}", ctx()),
    }
}

/// What the director sends over IPv6: its own Neighbor Advertisements,
/// Solicitations and echo replies (from one of the port's own addresses,
/// or a VIP or local address it answers for), ICMPv6 errors it makes or
/// passes on (checksum valid: it computes them afresh), and forwarded
/// TCP/UDP (and IPv6-in-IPv6) packets with a hop limit above 0, whose
/// checksums verify when everything that went in was valid. To ff02::1
/// only when the frame says so.
fn check_sent_ipv6(port: u16, b: &[u8], all_nodes: bool, strict: Strict, ctx: &dyn Fn() -> String) {
    use rvs::wire::icmpv6::{self, Icmpv6};
    let ip = Ipv6Packet::new_checked(b).unwrap_or_else(|e| panic!("IPv6 {e:?}: {}", ctx()));
    assert!(ip.hop_limit() > 0, "hop limit 0 in {}", ctx());
    assert_eq!(
        ip.dst() == "ff02::1".parse::<std::net::Ipv6Addr>().unwrap(),
        all_nodes,
        "IPv6 destination of {}",
        ctx()
    );
    let ul = ip
        .upper_layer()
        .unwrap_or_else(|e| panic!("IPv6 chain {e:?}: {}", ctx()));
    let l4 = &ip.packet()[ul.offset..];
    match ul.proto.0 {
        58 => {
            let m = Icmpv6::new(l4).unwrap_or_else(|| panic!("ICMPv6 in {}", ctx()));
            assert!(m.verify(ip.src(), ip.dst()), "ICMPv6 checksum of {}", ctx());
            match m.msg_type() {
                icmpv6::NEIGHBOR_ADVERT | icmpv6::NEIGHBOR_SOLICIT | icmpv6::ECHO_REPLY => {
                    let mac = PORT_MACS[usize::from(port)];
                    let ll = std::net::Ipv6Addr::from([
                        0xfe,
                        0x80,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        mac.0[0] ^ 2,
                        mac.0[1],
                        mac.0[2],
                        0xff,
                        0xfe,
                        mac.0[3],
                        mac.0[4],
                        mac.0[5],
                    ]);
                    let own = [ll, dir0_v6(), "2001:db8:1::1".parse().unwrap()].contains(&ip.src())
                        || [VIP6, "2001:db8:1::5"]
                            .iter()
                            .any(|a| ip.src() == a.parse::<std::net::Ipv6Addr>().unwrap());
                    assert!(own, "IPv6 source of {}", ctx());
                }
                1..=4 => {}
                t => panic!("ICMPv6 type {t} in {}", ctx()),
            }
        }
        6 | 17 => {
            let ok = if ul.proto.0 == 6 {
                TcpSegment::new_checked(l4).is_ok()
            } else {
                UdpDatagram::new_checked(l4).is_ok()
            };
            assert!(ok, "upper layer does not parse in {}", ctx());
            if strict.checksums {
                let c = rvs::wire::ipv6::l4_checksum_v6(ip.src(), ip.dst(), ul.proto.0, l4);
                assert_eq!(c, 0, "upper-layer checksum of {}", ctx());
            }
        }
        41 => check_sent_ipv6(port, l4, false, strict, ctx),
        p => panic!("next header {p} in {}", ctx()),
    }
}

fn check_sent_ipv4(b: &[u8], strict: Strict, ctx: &dyn Fn() -> String) {
    let ip = Ipv4Packet::new_checked(b).unwrap_or_else(|e| panic!("IPv4 {e:?}: {}", ctx()));
    assert!(ip.verify_checksum(), "IPv4 header checksum of {}", ctx());
    assert!(!ip.is_fragment(), "fragment in {}", ctx());
    assert!(ip.ttl() > 0, "TTL 0 in {}", ctx());
    let l4 = ip.payload();
    let (ok, kind) = match ip.protocol() {
        IpProtocol::TCP => (TcpSegment::new_checked(l4).is_ok(), "TCP"),
        IpProtocol::UDP => (UdpDatagram::new_checked(l4).is_ok(), "UDP"),
        IpProtocol::ICMP => (Icmpv4Packet::new_checked(l4).is_ok(), "ICMP"),
        IpProtocol::IPIP => {
            check_sent_ipv4(l4, strict, ctx);
            (true, "IPIP")
        }
        p => panic!("protocol {p:?} in {}", ctx()),
    };
    assert!(ok, "{kind} header does not parse in {}", ctx());
    if strict.checksums {
        assert!(l4_checksum_ok(&ip), "{kind} checksum of {}", ctx());
    }
}

// ---------------------------------------------------------------------------
// control
// ---------------------------------------------------------------------------

/// At most this many request lines of an input are handled.
pub const MAX_LINES: usize = 32;

/// The control target: each line of the input (lossily UTF-8) is a request
/// to a fresh director's control plane. Every response must be one JSON
/// object with "ok" or "error" (exactly "error" when `parse_request`
/// refuses the line, with the same code); then `dump` of whatever was
/// configured must `load` back unchanged, and a few frames to the VIP's
/// usual ports must be accounted for.
pub fn control(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let rig = Rig::new(MemIo::new(2), PORT_MACS, 64);
    for line in text.lines().take(MAX_LINES) {
        let parsed = parse_request(line);
        let resp = rig.ctl.handle_line(line);
        let v: Value =
            serde_json::from_str(&resp).unwrap_or_else(|e| panic!("{line} -> {resp}: {e}"));
        assert!(v.is_object(), "{line} -> {resp}");
        match parsed {
            Err(e) => assert_eq!(v["error"]["code"], e.code.as_str(), "{line} -> {resp}"),
            Ok(_) => assert!(
                v.get("ok").is_some() != v.get("error").is_some(),
                "{line} -> {resp}"
            ),
        }
    }
    // Whatever the requests built must survive a dump/load round trip: that
    // is how a configuration is saved and restored.
    let dump = rig.ctl(r#"{"cmd":"dump"}"#);
    let load = json!({"cmd": "load", "services": dump["services"]}).to_string();
    let resp: Value = serde_json::from_str(&rig.ctl.handle_line(&load)).unwrap();
    assert!(
        resp.get("error").is_none(),
        "dump does not load back: {dump} -> {resp}"
    );
    let again = rig.ctl(r#"{"cmd":"dump"}"#);
    assert_eq!(
        dump, again,
        "dump -> load -> dump changed the configuration"
    );

    // And the data path copes with it.
    let mut rig = rig;
    for (port, f) in [
        (0, client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC)),
        (
            0,
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), vip())
                .udp(41000, 53)
                .payload(b"q")
                .build(),
        ),
        (
            1,
            rs_tcp(
                RS1_MAC,
                rs1(),
                40000,
                TcpFlags::SYN | TcpFlags::ACK,
                DIR1_MAC,
            ),
        ),
    ] {
        rig.worker.io.push(port, &f);
    }
    rig.step(5_000);
    rig.step(5_000);
    rig.step(1);
    let s = rig.stats();
    assert_eq!(
        s.rx_packets,
        s.tx_packets + s.total_drops() + s.consumed,
        "{s:?}"
    );
    for port in 0..2 {
        for f in rig.worker.io.take_tx(port) {
            check_sent(port, &f, Strict::ALL);
        }
    }
}

// ---------------------------------------------------------------------------
// triage
// ---------------------------------------------------------------------------

/// A one-line summary of a frame, for reading inputs and findings
/// (`cargo run --example show -- FILE`).
pub fn describe(frame: &[u8]) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("{} bytes, no Ethernet header", frame.len());
    };
    let mut s = format!("{} > {} ", eth.src(), eth.dst());
    match eth.ethertype() {
        EtherType::ARP => match ArpPacket::new_checked(eth.payload()) {
            Ok(a) => {
                s += &format!(
                    "ARP op {} {} ({}) asks/tells {} ({})",
                    a.operation().0,
                    a.sender_ip(),
                    a.sender_hw(),
                    a.target_ip(),
                    a.target_hw()
                )
            }
            Err(e) => s += &format!("ARP {e:?}"),
        },
        EtherType::IPV4 => s += &describe_ipv4(eth.payload()),
        t => s += &format!("ethertype {:#06x}", t.0),
    }
    s
}

fn describe_ipv4(b: &[u8]) -> String {
    let ip = match Ipv4Packet::new_checked_truncated(b) {
        Ok(ip) => ip,
        Err(e) => return format!("IPv4 {e:?}"),
    };
    let mut s = format!(
        "{} > {} ttl {} len {}{}{} ",
        ip.src_addr(),
        ip.dst_addr(),
        ip.ttl(),
        ip.total_len(),
        if ip.verify_checksum() {
            ""
        } else {
            " BAD-CSUM"
        },
        if ip.is_fragment() { " FRAG" } else { "" },
    );
    let l4 = ip.payload();
    match ip.protocol() {
        IpProtocol::TCP => match TcpSegment::new_checked(l4) {
            Ok(t) => {
                s += &format!(
                    "TCP {} > {} flags {:#04x} seq {} ack {} opts {} data {}",
                    t.src_port(),
                    t.dst_port(),
                    t.flags().0,
                    t.seq(),
                    t.ack(),
                    t.options().len(),
                    t.payload().len()
                )
            }
            Err(e) => s += &format!("TCP {e:?}"),
        },
        IpProtocol::UDP => match UdpDatagram::new_checked(l4) {
            Ok(u) => {
                s += &format!(
                    "UDP {} > {} data {}",
                    u.src_port(),
                    u.dst_port(),
                    u.payload().len()
                )
            }
            Err(e) => s += &format!("UDP {e:?}"),
        },
        IpProtocol::ICMP => match Icmpv4Packet::new_checked(l4) {
            Ok(c) => s += &format!("ICMP type {} code {}", c.msg_type(), c.code()),
            Err(e) => s += &format!("ICMP {e:?}"),
        },
        IpProtocol::IPIP => s += &format!("IPIP [{}]", describe_ipv4(l4)),
        p => s += &format!("protocol {}", p.0),
    }
    s
}

// ---------------------------------------------------------------------------
// sync
// ---------------------------------------------------------------------------
