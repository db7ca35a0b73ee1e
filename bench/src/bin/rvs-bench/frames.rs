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

/// One frame of a stream: its header, length and the RX port it enters on.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Pkt {
    pub(crate) hdr: [u8; HDR],
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
