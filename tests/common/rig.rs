//! A director built from the real library pieces around any `PortIo`: two
//! ports (client side 10.0.0.1/24, server side 10.0.1.1/24), services
//! configured through the real control plane.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use rvs::control::Control;
use rvs::dataplane::Dataplane;
use rvs::director::Builder;
use rvs::io::PortIo;
use rvs::neigh::PortAddr;
use rvs::stats::{StatsSnapshot, WorkerStats};
use rvs::wire::{checksum, Ipv4Packet, MacAddr, PacketBuilder, TcpFlags, TcpSegment, UdpDatagram};
use rvs::worker::Worker;

pub const DIR0_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0]);
pub const DIR1_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 1]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
pub const RS1_MAC: MacAddr = MacAddr([0x02, 0x51, 0, 0, 0, 11]);
pub const RS2_MAC: MacAddr = MacAddr([0x02, 0x51, 0, 0, 0, 12]);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
pub fn dir0() -> Ipv4Addr {
    ip("10.0.0.1")
}
pub fn dir1() -> Ipv4Addr {
    ip("10.0.1.1")
}
pub fn client() -> Ipv4Addr {
    ip("10.0.0.2")
}
pub fn vip() -> Ipv4Addr {
    ip("10.0.0.100")
}
pub fn rs1() -> Ipv4Addr {
    ip("10.0.1.11")
}
pub fn rs2() -> Ipv4Addr {
    ip("10.0.1.12")
}

/// The director's configured IPv6 address on port 0 (port 1 has only its
/// link-local one).
pub fn dir0_v6() -> std::net::Ipv6Addr {
    "2001:db8::1".parse().unwrap()
}

/// The rig's director: the two ports, one worker.
pub fn director(macs: [MacAddr; 2]) -> Builder {
    let port = |mac, cidr: &str, ipv6| PortAddr {
        mac,
        cidr: cidr.parse().unwrap(),
        gateway: None,
        mtu: 1500,
        ipv6,
        gateway6: None,
    };
    Builder::new().ports(vec![
        port(
            macs[0],
            "10.0.0.1/24",
            Some("2001:db8::1/64".parse().unwrap()),
        ),
        port(
            macs[1],
            "10.0.1.1/24",
            Some("2001:db8:1::1/64".parse().unwrap()),
        ),
    ])
}

pub struct Rig<P: PortIo> {
    pub ctl: Arc<Control>,
    pub worker: Worker<P>,
    pub stats: Arc<[CachePadded<WorkerStats>]>,
    pub dp: Arc<Dataplane>,
    pub now: u64,
}

impl<P: PortIo> Rig<P> {
    pub fn new(io: P, macs: [MacAddr; 2], max_conns: usize) -> Rig<P> {
        Self::with(io, director(macs).max_connections(max_conns))
    }

    /// A rig from a director `b` (e.g. [`director`] with kernel twins).
    pub fn with(io: P, b: Builder) -> Rig<P> {
        let d = b.build();
        let (ctl, dp, stats) = (d.ctl.clone(), d.dp.clone(), d.stats().clone());
        let worker = Worker::new(0, 1, io, dp.clone(), stats.clone(), Duration::ZERO);
        Rig {
            ctl,
            worker,
            stats,
            dp,
            now: 1,
        }
    }

    /// Send a control request; panics on an error response.
    pub fn ctl(&self, req: &str) -> serde_json::Value {
        let r: serde_json::Value = serde_json::from_str(&self.ctl.handle_line(req)).unwrap();
        assert!(r.get("error").is_none(), "{req} -> {r}");
        r
    }

    /// One poll at the current time, then advance the clock by `ms`.
    pub fn step(&mut self, ms: u64) -> usize {
        let n = self.worker.poll_once(self.now);
        self.now += ms;
        n
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats[0].snapshot()
    }

    pub fn drops(&self, label: &str) -> u64 {
        self.stats().drops[label]
    }
}

impl Rig<rvs::io::MemIo> {
    /// Teach the director the client's and both real servers' MACs the way
    /// a network would: they ARP for it. Checks that each was answered.
    pub fn learn_neighbours(&mut self) {
        let io = &mut self.worker.io;
        io.push(
            0,
            &PacketBuilder::new()
                .arp_request(CLIENT_MAC, client(), vip())
                .build(),
        );
        for (mac, ip) in [(RS1_MAC, rs1()), (RS2_MAC, rs2())] {
            io.push(
                1,
                &PacketBuilder::new().arp_request(mac, ip, dir1()).build(),
            );
        }
        self.step(1);
        assert_eq!(
            self.worker.io.take_tx(0).len(),
            1,
            "ARP reply to the client"
        );
        assert_eq!(
            self.worker.io.take_tx(1).len(),
            2,
            "ARP replies to the servers"
        );
    }
}

/// A TCP frame from the client to the VIP.
pub fn client_tcp(sport: u16, flags: TcpFlags, payload: &[u8], dst_mac: MacAddr) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, dst_mac)
        .ipv4(client(), vip())
        .ttl(64)
        .tcp(sport, 80)
        .flags(flags)
        .seq(1000)
        .payload(payload)
        .build()
}

/// A TCP frame from a real server back to the client.
pub fn rs_tcp(
    rs_mac: MacAddr,
    rs: Ipv4Addr,
    dport: u16,
    flags: TcpFlags,
    dst_mac: MacAddr,
) -> Vec<u8> {
    PacketBuilder::new()
        .eth(rs_mac, dst_mac)
        .ipv4(rs, client())
        .ttl(64)
        .tcp(80, dport)
        .flags(flags)
        .seq(5000)
        .ack(1001)
        .build()
}

/// Verify every checksum of an Ethernet/IPv4 frame by full recomputation,
/// independently of the incremental code under test.
pub fn assert_checksums(frame: &[u8]) {
    let p = Ipv4Packet::new_checked(&frame[14..]).expect("ipv4");
    let mut hdr = p.header().to_vec();
    hdr[10] = 0;
    hdr[11] = 0;
    assert_eq!(
        checksum::fold(checksum::sum(&hdr)),
        p.checksum(),
        "IPv4 header checksum"
    );
    let proto = p.protocol().0;
    if proto == 6 {
        let t = TcpSegment::new_checked(p.payload()).unwrap();
        assert!(
            t.verify_checksum(p.src_addr(), p.dst_addr()),
            "TCP checksum"
        );
    } else if proto == 17 {
        let u = UdpDatagram::new_checked(p.payload()).unwrap();
        assert!(
            u.verify_checksum(p.src_addr(), p.dst_addr()),
            "UDP checksum"
        );
    }
}

/// (src ip, src port, dst ip, dst port, ttl) of a TCP/UDP frame.
pub fn endpoints(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16, u8) {
    let p = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    let l4 = p.payload();
    (
        p.src_addr(),
        u16::from_be_bytes([l4[0], l4[1]]),
        p.dst_addr(),
        u16::from_be_bytes([l4[2], l4[3]]),
        p.ttl(),
    )
}

pub fn macs(frame: &[u8]) -> (MacAddr, MacAddr) {
    (
        MacAddr::from_slice(&frame[0..6]).unwrap(),
        MacAddr::from_slice(&frame[6..12]).unwrap(),
    )
}

pub const SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;

/// Add the TCP service on 10.0.0.100:80 with `sched` and NAT real servers
/// rs1/rs2 with these weights.
pub fn nat_service<P: PortIo>(rig: &Rig<P>, sched: &str, w1: u32, w2: u32) {
    rig.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"{sched}"}}}}"#
    ));
    for (ip, w) in [("10.0.1.11", w1), ("10.0.1.12", w2)] {
        rig.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{ip}","port":80,"weight":{w},"fwd":"nat"}}}}"#
        ));
    }
}

/// An Ethernet frame `(dst_mac, src_mac)` carrying an IPv6 packet with
/// `upper` right after the fixed header (`next` says what it is).
pub fn ipv6_frame(
    (dst_mac, src_mac): (MacAddr, MacAddr),
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    hops: u8,
    next: u8,
    upper: &[u8],
) -> Vec<u8> {
    use rvs::wire::{EtherType, EthernetFrame, Ipv6Packet};
    let mut f = vec![0u8; 14 + 40 + upper.len()];
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst(dst_mac);
    e.set_src(src_mac);
    e.set_ethertype(EtherType::IPV6);
    let mut ip = Ipv6Packet::new_unchecked(&mut f[14..]);
    ip.fill_header(0, upper.len() as u16, next, hops);
    ip.set_src(src);
    ip.set_dst(dst);
    f[54..].copy_from_slice(upper);
    f
}

/// The 16-bit one's complement sum of `parts`, written out here so that
/// the checks do not share code with the rewrites they check.
pub fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut acc: u64 = 0;
    for p in parts {
        for c in p.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// A TCP segment over IPv6 (20-byte header, `options`, `payload`) with its
/// checksum over the pseudo-header, summed here.
pub fn tcp6_segment(
    (src, sport): (std::net::Ipv6Addr, u16),
    (dst, dport): (std::net::Ipv6Addr, u16),
    flags: u8,
    (seq, ack): (u32, u32),
    window: u16,
    (options, payload): (&[u8], &[u8]),
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + options.len()) / 4) << 4) as u8;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t.extend_from_slice(options);
    t.extend_from_slice(payload);
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &(t.len() as u32).to_be_bytes()[..],
        &[0, 0, 0, 6][..],
    ]
    .concat();
    let c = !ones_sum(&[&pseudo, &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}
