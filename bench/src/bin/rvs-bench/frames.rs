//! The traffic: addresses, frame templates for every flow, and the
//! shuffled streams the generator plays.

use super::*;

pub(crate) const WORKER_CORE: usize = 0;
pub(crate) const GEN_CORE: usize = 1;
pub(crate) const HDR: usize = 54;
pub(crate) const DIR0_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0]);
pub(crate) const DIR1_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 1]);
pub(crate) const GW_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 2]);
pub(crate) const N_RS: usize = 4;
/// Frame lengths without FCS: 64/570/1518 bytes on the wire.
pub(crate) const IMIX: [(usize, u32); 3] = [(60, 7), (566, 4), (1514, 1)];
pub(crate) const RX_RING: u32 = 1024;
pub(crate) const TX_RING: u32 = 2048;

pub(crate) fn vip() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 100)
}
pub(crate) fn gw() -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 2)
}
pub(crate) fn rs_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 1, 11 + i as u8)
}
pub(crate) fn rs_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x51, 0, 0, 0, 11 + i as u8])
}
/// Flow `f`'s client: 50 000 source ports per address from 11.0.0.1 on,
/// routed through the gateway 10.0.0.2 on the client side.
pub(crate) fn client(f: usize) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0b00_0001u32 + (f / 50_000) as u32),
        10_000 + (f % 50_000) as u16,
    )
}

/// One frame of a stream: its header (`H` bytes: Ethernet, IP and TCP),
/// length and the RX port it enters on. An IPv4 one is one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Pkt<const H: usize = HDR> {
    pub(crate) hdr: [u8; H],
    pub(crate) len: u16,
    pub(crate) port: u8,
    pub(crate) flow: u32,
}

/// Header templates; per-flow fields are patched in with RFC 1624 updates.
pub(crate) struct Templates {
    /// client -> VIP, per IMIX size (ACK), and the SYN.
    pub(crate) client: Vec<[u8; HDR]>,
    pub(crate) syn: [u8; HDR],
    /// rs i -> client, per IMIX size.
    pub(crate) reply: Vec<Vec<[u8; HDR]>>,
}

pub(crate) fn hdr_of(frame: &[u8]) -> [u8; HDR] {
    frame[..HDR].try_into().unwrap()
}

pub(crate) fn client_frame(f: usize, len: usize, flags: TcpFlags) -> Vec<u8> {
    let (cip, sport) = client(f);
    PacketBuilder::new()
        .eth(GW_MAC, DIR0_MAC)
        .ipv4(cip, vip())
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(sport, 80)
        .flags(flags)
        .seq(1)
        .ack(1)
        .payload(&vec![0u8; len - HDR])
        .build()
}

/// A SYN as clients send it: no TCP payload, the 60-byte minimum frame
/// reached with Ethernet padding (the IP length says 40). A SYN with data
/// is refused by the SYN proxy.
pub(crate) fn syn_frame(f: usize) -> Vec<u8> {
    let (cip, sport) = client(f);
    let mut b = PacketBuilder::new()
        .eth(GW_MAC, DIR0_MAC)
        .ipv4(cip, vip())
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(sport, 80)
        .flags(TcpFlags::SYN)
        .seq(1)
        .build();
    b.resize(60, 0);
    b
}

pub(crate) fn reply_frame(f: usize, rs: usize, len: usize) -> Vec<u8> {
    let (cip, sport) = client(f);
    PacketBuilder::new()
        .eth(rs_mac(rs), DIR1_MAC)
        .ipv4(rs_ip(rs), cip)
        .ttl(rvs::wire::ipv4::DEFAULT_TTL)
        .tcp(80, sport)
        .flags(TcpFlags::ACK)
        .seq(1)
        .ack(2)
        .payload(&vec![0u8; len - HDR])
        .build()
}

impl Templates {
    pub(crate) fn new() -> Templates {
        Templates {
            client: IMIX
                .iter()
                .map(|&(l, _)| hdr_of(&client_frame(0, l, TcpFlags::ACK)))
                .collect(),
            syn: hdr_of(&syn_frame(0)),
            reply: (0..N_RS)
                .map(|rs| {
                    IMIX.iter()
                        .map(|&(l, _)| hdr_of(&reply_frame(0, rs, l)))
                        .collect()
                })
                .collect(),
        }
    }

    /// `t` (built for flow 0) rewritten for flow `f`; the client address and
    /// port sit at `ip_at`/`port_at` (source for client frames, destination
    /// for replies).
    pub(crate) fn patch(t: &[u8; HDR], f: usize, ip_at: usize, port_at: usize) -> [u8; HDR] {
        let mut h = *t;
        let (ip0, p0) = client(0);
        let (ip, p) = client(f);
        let rd16 = |h: &[u8; HDR], at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
        let ipc = checksum::update32(rd16(&h, 24), u32::from(ip0), u32::from(ip));
        let mut tc = checksum::l4_update_addr(rd16(&h, 50), ip0, ip);
        tc = checksum::l4_update_port(tc, p0, p);
        h[ip_at..ip_at + 4].copy_from_slice(&ip.octets());
        h[port_at..port_at + 2].copy_from_slice(&p.to_be_bytes());
        h[24..26].copy_from_slice(&ipc.to_be_bytes());
        h[50..52].copy_from_slice(&tc.to_be_bytes());
        h
    }

    pub(crate) fn client(&self, f: usize, size: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.client[size], f, 26, 34),
            len: IMIX[size].0 as u16,
            port: 0,
            flow: f as u32,
        }
    }
    pub(crate) fn syn(&self, f: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.syn, f, 26, 34),
            len: 60,
            port: 0,
            flow: f as u32,
        }
    }
    pub(crate) fn reply(&self, f: usize, rs: usize, size: usize) -> Pkt {
        Pkt {
            hdr: Self::patch(&self.reply[rs][size], f, 30, 36),
            len: IMIX[size].0 as u16,
            port: 1,
            flow: f as u32,
        }
    }

    /// The patched headers equal what the packet builder makes from scratch.
    pub(crate) fn self_check(&self) {
        for f in [1, 49_999, 50_000, 1_234_567, 9_999_999] {
            for (s, &(l, _)) in IMIX.iter().enumerate() {
                assert_eq!(
                    self.client(f, s).hdr,
                    hdr_of(&client_frame(f, l, TcpFlags::ACK))
                );
                assert_eq!(self.reply(f, 2, s).hdr, hdr_of(&reply_frame(f, 2, l)));
            }
            assert_eq!(self.syn(f).hdr, hdr_of(&syn_frame(f)));
        }
    }
}

pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

pub(crate) fn imix_size(rng: &mut Rng) -> usize {
    let total: u32 = IMIX.iter().map(|x| x.1).sum();
    let mut r = rng.below(total as usize) as u32;
    for (i, &(_, w)) in IMIX.iter().enumerate() {
        if r < w {
            return i;
        }
        r -= w;
    }
    0
}

/// Established traffic of `flows` flows: each pass holds one client ACK and
/// one server reply per flow in a fresh random order; at least 256k frames.
pub(crate) fn established_stream(t: &Templates, rs_of: &[u8], imix: bool, seed: u64) -> Vec<Pkt> {
    let flows = rs_of.len();
    let passes = (262_144 / (2 * flows)).max(1);
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(passes * 2 * flows);
    for _ in 0..passes {
        let start = out.len();
        for (f, &rs) in rs_of.iter().enumerate() {
            let s1 = if imix { imix_size(&mut rng) } else { 0 };
            let s2 = if imix { imix_size(&mut rng) } else { 0 };
            out.push(t.client(f, s1));
            out.push(t.reply(f, rs as usize, s2));
        }
        shuffle(&mut out[start..], &mut rng);
    }
    out
}

// IPv6: the same traffic for an IPv6 service.

/// An IPv6 TCP frame's headers: Ethernet, IPv6, TCP without options. It
/// is also the smallest such frame: 74 bytes, 78 on the wire with the FCS
/// (an IPv4 one fits the 60/64-byte minimum; an IPv6 one cannot).
pub(crate) const HDR6: usize = 14 + 40 + 20;
/// One frame of an IPv6 stream (two cache lines).
pub(crate) type Pkt6 = Pkt<HDR6>;
/// Where a frame's IPv6 source and destination addresses and its TCP
/// header start.
const V6_SRC: usize = 14 + 8;
const V6_DST: usize = 14 + 24;
const V6_TCP: usize = 14 + 40;

pub(crate) fn vip6() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100)
}
pub(crate) fn gw6() -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)
}
pub(crate) fn rs6_ip(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11 + i as u16)
}
/// Flow `f`'s IPv6 client, as [`client`]: 50 000 source ports per address
/// from 2001:db8:c1::1 on, off-link, routed through the gateway
/// 2001:db8::2 on the client side.
pub(crate) fn client6(f: usize) -> (Ipv6Addr, u16) {
    let base = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0xc1, 0, 0, 0, 0, 1));
    (
        Ipv6Addr::from(base + (f / 50_000) as u128),
        10_000 + (f % 50_000) as u16,
    )
}

/// An IPv6 TCP frame without options or payload (hop limit 64, window
/// 65535), its checksum computed in full over the IPv6 pseudo-header
/// (RFC 8200 8.1). `eth` is (source, destination).
pub(crate) fn tcp6_frame(
    eth: (MacAddr, MacAddr),
    (src, sport): (Ipv6Addr, u16),
    (dst, dport): (Ipv6Addr, u16),
    flags: TcpFlags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut f = vec![0u8; HDR6];
    {
        let mut e = rvs::wire::EthernetFrame::new_unchecked(&mut f[..]);
        e.set_dst(eth.1);
        e.set_src(eth.0);
        e.set_ethertype(rvs::wire::EtherType::IPV6);
    }
    {
        let mut ip = rvs::wire::Ipv6Packet::new_unchecked(&mut f[14..]);
        ip.fill_header(
            0,
            20,
            rvs::wire::ipv6::next_header::TCP,
            rvs::wire::ipv6::DEFAULT_HOP_LIMIT,
        );
        ip.set_src(src);
        ip.set_dst(dst);
    }
    let t = &mut f[V6_TCP..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags.bits();
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let c = rvs::wire::ipv6::l4_checksum_v6(src, dst, rvs::wire::ipv6::next_header::TCP, t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

pub(crate) fn client6_frame(f: usize, flags: TcpFlags) -> Vec<u8> {
    let (seq, ack) = if flags == TcpFlags::SYN {
        (1, 0)
    } else {
        (1, 1)
    };
    tcp6_frame(
        (GW_MAC, DIR0_MAC),
        client6(f),
        (vip6(), 80),
        flags,
        seq,
        ack,
    )
}

pub(crate) fn reply6_frame(f: usize, rs: usize) -> Vec<u8> {
    tcp6_frame(
        (rs_mac(rs), DIR1_MAC),
        (rs6_ip(rs), 80),
        client6(f),
        TcpFlags::ACK,
        1,
        2,
    )
}

/// Whether an IPv6 TCP frame's checksum is right: its segment and the
/// pseudo-header sum to 0xffff. Summed here from scratch, sharing no code
/// with what built or rewrote the frame.
pub(crate) fn tcp6_checksum_ok(f: &[u8]) -> bool {
    let Some(ip) = f.get(14..54) else {
        return false;
    };
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let Some(l4) = f.get(V6_TCP..V6_TCP + plen) else {
        return false;
    };
    let mut acc: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&ip[8..40]);
    add(&(plen as u32).to_be_bytes());
    add(&[0, ip[6]]);
    add(l4);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[12..14] == [0x86, 0xdd] && ip[6] == 6 && acc == 0xffff
}

/// IPv6 header templates, as [`Templates`] (one frame size: the smallest).
pub(crate) struct Templates6 {
    /// client -> VIP: an ACK, and the SYN.
    pub(crate) client: [u8; HDR6],
    pub(crate) syn: [u8; HDR6],
    /// rs i -> client.
    pub(crate) reply: Vec<[u8; HDR6]>,
}

impl Templates6 {
    pub(crate) fn new() -> Templates6 {
        let hdr = |f: Vec<u8>| -> [u8; HDR6] { f.try_into().unwrap() };
        Templates6 {
            client: hdr(client6_frame(0, TcpFlags::ACK)),
            syn: hdr(client6_frame(0, TcpFlags::SYN)),
            reply: (0..N_RS).map(|rs| hdr(reply6_frame(0, rs))).collect(),
        }
    }

    /// `t` (built for flow 0) rewritten for flow `f`; the client address
    /// and port sit at `ip_at`/`port_at`. No IP header checksum in IPv6:
    /// only TCP's, for its pseudo-header's address and its port.
    fn patch(t: &[u8; HDR6], f: usize, ip_at: usize, port_at: usize) -> [u8; HDR6] {
        let mut h = *t;
        let (ip0, p0) = client6(0);
        let (ip, p) = client6(f);
        let at = V6_TCP + 16;
        let mut tc = u16::from_be_bytes([h[at], h[at + 1]]);
        tc = rvs::wire::ipv6::l4_update_addr_v6(tc, ip0, ip);
        tc = checksum::l4_update_port(tc, p0, p);
        h[ip_at..ip_at + 16].copy_from_slice(&ip.octets());
        h[port_at..port_at + 2].copy_from_slice(&p.to_be_bytes());
        h[at..at + 2].copy_from_slice(&tc.to_be_bytes());
        h
    }

    pub(crate) fn client(&self, f: usize) -> Pkt6 {
        Pkt {
            hdr: Self::patch(&self.client, f, V6_SRC, V6_TCP),
            len: HDR6 as u16,
            port: 0,
            flow: f as u32,
        }
    }
    pub(crate) fn syn(&self, f: usize) -> Pkt6 {
        Pkt {
            hdr: Self::patch(&self.syn, f, V6_SRC, V6_TCP),
            len: HDR6 as u16,
            port: 0,
            flow: f as u32,
        }
    }
    pub(crate) fn reply(&self, f: usize, rs: usize) -> Pkt6 {
        Pkt {
            hdr: Self::patch(&self.reply[rs], f, V6_DST, V6_TCP + 2),
            len: HDR6 as u16,
            port: 1,
            flow: f as u32,
        }
    }

    /// The patched headers equal what is built from scratch, and their
    /// checksums are right.
    pub(crate) fn self_check(&self) {
        for f in [0, 1, 49_999, 50_000, 1_234_567, 9_999_999] {
            for (p, want) in [
                (self.client(f), client6_frame(f, TcpFlags::ACK)),
                (self.syn(f), client6_frame(f, TcpFlags::SYN)),
                (self.reply(f, 2), reply6_frame(f, 2)),
            ] {
                assert_eq!(&p.hdr[..], &want[..], "IPv6 template, flow {f}");
                assert!(tcp6_checksum_ok(&p.hdr), "IPv6 TCP checksum, flow {f}");
            }
        }
    }
}

/// [`established_stream`] of IPv6 flows (64-byte stream only: the
/// smallest IPv6 frames).
pub(crate) fn established_stream6(t: &Templates6, rs_of: &[u8], seed: u64) -> Vec<Pkt6> {
    let flows = rs_of.len();
    let passes = (262_144 / (2 * flows)).max(1);
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(passes * 2 * flows);
    for _ in 0..passes {
        let start = out.len();
        for (f, &rs) in rs_of.iter().enumerate() {
            out.push(t.client(f));
            out.push(t.reply(f, rs as usize));
        }
        shuffle(&mut out[start..], &mut rng);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs::io::MemIo;

    /// The flow of an IPv6 benchmark frame from its client port (flows
    /// below 50 000).
    fn flow_of(port: u16) -> usize {
        usize::from(port - 10_000)
    }

    fn tcp_ports(f: &[u8]) -> (u16, u16) {
        let t = &f[V6_TCP..];
        (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        )
    }

    fn addr(f: &[u8], at: usize) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(&f[at..at + 16]).unwrap())
    }

    /// What the IPv6 scenarios play goes through the real worker as
    /// meant: every SYN opens a connection and goes to a real server, then
    /// every ACK and every reply of the established stream is forwarded,
    /// NAT-rewritten, with a valid TCP checksum over the IPv6
    /// pseudo-header and the hop limit one less; nothing is dropped.
    #[test]
    fn ipv6_nat_stream_is_forwarded_without_drops() {
        let flows = 1_000;
        let d = director6(flows + 16, 1).unwrap();
        let io = MemIo::new(2);
        let mut w = Worker::new(0, 1, io, d.dp.clone(), d.stats().clone(), Duration::ZERO);
        let t = Templates6::new();
        t.self_check();
        // The check itself sees a wrong checksum, or a changed address.
        let mut bad = t.client(5).hdr;
        bad[V6_TCP + 16] ^= 1;
        assert!(!tcp6_checksum_ok(&bad));
        let mut bad = t.reply(5, 1).hdr;
        bad[V6_SRC + 15] ^= 1;
        assert!(!tcp6_checksum_ok(&bad));
        let mut run = |pkts: &[Pkt6]| -> [Vec<Vec<u8>>; 2] {
            for p in pkts {
                assert_eq!(p.len as usize, HDR6);
                assert!(tcp6_checksum_ok(&p.hdr));
                w.io.push(u16::from(p.port), &p.hdr);
            }
            while w.io.rx.iter().any(|q| !q.is_empty()) {
                w.poll_once(rvs::clock::now_ms());
            }
            [w.io.take_tx(0), w.io.take_tx(1)]
        };
        let syns: Vec<Pkt6> = (0..flows).map(|f| t.syn(f)).collect();
        let [back, out] = run(&syns);
        assert!(back.is_empty());
        assert_eq!(out.len(), flows, "every SYN forwarded");
        assert_eq!(d.dp.conns.len(), flows, "one connection per flow");
        let rs_of = servers6_of(&d, flows);
        for rs in 0..N_RS {
            let n = rs_of.iter().filter(|&&r| usize::from(r) == rs).count();
            assert_eq!(n, flows / N_RS, "rr over the 4 real servers");
        }
        let check_to_server = |f: &[u8]| {
            assert!(tcp6_checksum_ok(f), "checksum towards the server");
            let (sport, dport) = tcp_ports(f);
            let rs = usize::from(rs_of[flow_of(sport)]);
            assert_eq!(f[..6], rs_mac(rs).0);
            assert_eq!(f[6..12], DIR1_MAC.0);
            assert_eq!(addr(f, V6_SRC), client6(flow_of(sport)).0);
            assert_eq!(addr(f, V6_DST), rs6_ip(rs));
            assert_eq!(dport, 80);
            assert_eq!(f[14 + 7], 63, "hop limit");
        };
        out.iter().for_each(|f| check_to_server(f));
        // One pass of the established stream: each flow's ACK and reply.
        let stream = established_stream6(&t, &rs_of, 7);
        let [to_clients, to_servers] = run(&stream[..2 * flows]);
        assert_eq!(to_clients.len(), flows, "every reply forwarded");
        assert_eq!(to_servers.len(), flows, "every ACK forwarded");
        to_servers.iter().for_each(|f| check_to_server(f));
        for f in &to_clients {
            assert!(tcp6_checksum_ok(f), "checksum towards the client");
            let (sport, dport) = tcp_ports(f);
            assert_eq!(f[..6], GW_MAC.0);
            assert_eq!(f[6..12], DIR0_MAC.0);
            assert_eq!(addr(f, V6_SRC), vip6());
            assert_eq!(sport, 80);
            assert_eq!(addr(f, V6_DST), client6(flow_of(dport)).0);
            assert_eq!(f[14 + 7], 63, "hop limit");
        }
        assert!(drops_of(&d).is_empty(), "drops: {:?}", drops_of(&d));
    }
}
