//! Tunnelling (LVS-TUN, `-i`): the client's packet is carried unchanged
//! inside a new IPv4 header from the director to the real server, which
//! decapsulates it and, holding the VIP itself, replies to the client
//! directly. Three encapsulations, per real server (`--tun-type`), as the
//! kernel's `ip_vs_tunnel_xmit` (net/netfilter/ipvs/ip_vs_xmit.c) builds them:
//!
//! - ipip: outer IPv4, protocol 4, then the inner packet.
//! - gue: outer IPv4 + UDP (destination `tun_port`, source a hash of the
//!   inner flow in the local port range, `udp_flow_src_port`) + the 4-byte
//!   GUE header (`ipvs_gue_encap`: version 0, C 0, hlen 0, proto 4, flags
//!   0). The UDP checksum is 0 with nocsum and complete with csum and
//!   remcsum (`udp_set_csum(!check, ..)`). The remote checksum offload
//!   option is added by the kernel only for a packet whose own checksum is
//!   still to be done (`skb->ip_summed == CHECKSUM_PARTIAL`, locally
//!   generated); a packet rvs forwards arrived complete, so remcsum carries
//!   no option here, as in the kernel for forwarded traffic.
//! - gre: outer IPv4, protocol 47, + the GRE header (`ipvs_gre_encap` /
//!   `gre_build_header`: version 0, protocol 0x0800, no key or sequence;
//!   with csum the C bit and a checksum over GRE header and payload, RFC 2784).
//!
//! The outer header copies the inner TTL and DF bit
//! (`ip_vs_prepare_tunneled_skb`) and the DS field with the ECN rule of
//! `INET_ECN_encapsulate` (CE inside becomes ECT(0) outside); its source is
//! the director's address on the egress port. A DF packet that would exceed
//! the egress MTU once encapsulated is refused with "fragmentation needed"
//! carrying the MTU less the encapsulation's overhead, so the client's path
//! MTU discovery shrinks its packets (`__ip_vs_get_out_rt` with
//! `IP_VS_RT_MODE_TUNNEL`, then `ensure_mtu_is_adequate`).

use std::net::Ipv4Addr;

use super::{Egress, XmitError};
use crate::conn::{Conn, Dir};
use crate::flow::{TunCsum, TunType, Tunnel};
use crate::io::Frame;
use crate::wire::{checksum, EthernetFrame, IpProtocol, Ipv4Packet, WireError};

/// The outer IPv4 header.
pub const IP_LEN: usize = 20;
/// GUE's outer UDP header.
pub const UDP_LEN: usize = 8;
/// The GUE base header (`struct guehdr`), no options.
pub const GUE_LEN: usize = 4;
/// The GRE base header (`struct gre_base_hdr`).
pub const GRE_LEN: usize = 4;
/// GRE's optional checksum and reserved1 fields (`gre_calc_hlen` with
/// TUNNEL_CSUM).
pub const GRE_CSUM_LEN: usize = 4;
/// GRE's protocol type for an IPv4 payload (ETH_P_IP).
pub const GRE_PROTO_IPV4: u16 = 0x0800;
/// GRE's C bit (GRE_CSUM).
pub const GRE_FLAG_CSUM: u16 = 0x8000;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: IpProtocol = IpProtocol(47);
/// The kernel's default `net.ipv4.ip_local_port_range`, from which
/// `udp_flow_src_port` picks GUE source ports: [low, high).
pub const GUE_SPORT_RANGE: (u16, u16) = (32768, 60999);
/// The smallest IPv4 MTU (RFC 791); below it after the encapsulation the
/// kernel drops the packet ("mtu less than 68").
const MIN_MTU: usize = 68;

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

/// Why a packet could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunError {
    /// Too big for the egress MTU with DF set: answer with this next-hop MTU.
    FragNeeded(u16),
    /// Too big with DF clear: the kernel would fragment the outer packet;
    /// rvs does not fragment, so it is dropped and counted. Also every
    /// packet when the MTU left inside the tunnel is below 68 (the kernel
    /// drops those too).
    TooBig,
    /// No headroom in the buffer.
    NoHeadroom,
    Malformed(WireError),
}

/// Bytes the encapsulation adds in front of the inner packet (the kernel's
/// `max_headroom` less the link layer).
pub fn overhead(t: Tunnel) -> usize {
    IP_LEN
        + match t.kind {
            TunType::Ipip => 0,
            TunType::Gue => UDP_LEN + GUE_LEN,
            TunType::Gre => GRE_LEN + if gre_csum(t) { GRE_CSUM_LEN } else { 0 },
        }
}

/// GRE carries a checksum only for `csum` (the kernel tests
/// IP_VS_TUNNEL_ENCAP_FLAG_CSUM alone; remcsum is refused for GRE).
fn gre_csum(t: Tunnel) -> bool {
    t.csum == TunCsum::Csum
}

/// GUE's outer UDP checksum is computed for csum and remcsum
/// (`ip_vs_tunnel_xmit`: `check = true` for either flag).
fn udp_csum(t: Tunnel) -> bool {
    matches!(t.csum, TunCsum::Csum | TunCsum::Remcsum)
}

/// ECN of the outer header from the inner DS field (`INET_ECN_encapsulate(
/// inner, inner)`): DSCP and ECN copied, except that a Congestion
/// Experienced mark is not propagated outward (ECT(0) instead).
fn outer_ds(inner: u8) -> u8 {
    const ECN_MASK: u8 = 0b11;
    const CE: u8 = 0b11;
    const ECT0: u8 = 0b10;
    let ecn = if inner & ECN_MASK == CE {
        ECT0
    } else {
        inner & ECN_MASK
    };
    (inner & !ECN_MASK) | ecn
}

/// A fixed-key hash of the inner flow (addresses, protocol, and the ports
/// of an unfragmented TCP/UDP packet): every packet of a flow, on every
/// director, gets the same GUE source port, so routers and the real
/// server's RSS keep it on one path and one queue. The kernel uses the
/// packet's flow hash (`skb_get_hash`); its key is per boot, ours fixed.
fn flow_hash(ip: &Ipv4Packet<&[u8]>) -> u32 {
    let proto = ip.protocol();
    let ports = if matches!(proto, IpProtocol::TCP | IpProtocol::UDP) && !ip.is_fragment() {
        let l4 = ip.payload();
        if l4.len() >= 4 {
            u32::from_be_bytes([l4[0], l4[1], l4[2], l4[3]])
        } else {
            0
        }
    } else {
        0
    };
    let a = u64::from(u32::from(ip.src_addr())) << 32 | u64::from(u32::from(ip.dst_addr()));
    let b = u64::from(ports) << 8 | u64::from(proto.0);
    // Two rounds of the murmur3/splitmix finaliser over the mixed words.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let h = mix(mix(a ^ 0x9e37_79b9_7f4a_7c15) ^ b);
    (h >> 32) as u32 ^ h as u32
}

/// The GUE source port for a flow hash, as the kernel's `udp_flow_src_port`
/// maps it into [low, high): `hash ^= hash << 16`, then scaled.
fn gue_sport(hash: u32) -> u16 {
    let (min, max) = (u64::from(GUE_SPORT_RANGE.0), u64::from(GUE_SPORT_RANGE.1));
    if hash == 0 {
        return min as u16;
    }
    let h = u64::from(hash ^ (hash << 16));
    ((h * (max - min)) >> 32) as u16 + min as u16
}

/// Ones-complement sum of `data` (as `checksum::sum`, folded to 16 bits,
/// not complemented), eight bytes a step: GUE and GRE checksum the whole
/// packet, and this is most of their cost.
fn sum(data: &[u8]) -> u32 {
    // RFC 1071 2(B): the sum is byte-order independent, so add native
    // 32-bit words (no byte swaps, which lets the compiler vectorise) and
    // swap the folded result once.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let native = u16::from_be(acc as u16);
    // The remainder starts at an offset divisible by 4: 16-bit words stay
    // aligned.
    let mut total = u32::from(native) + checksum::sum(words.remainder());
    while total >> 16 != 0 {
        total = (total & 0xffff) + (total >> 16);
    }
    total
}

/// The mode's entry (see [`super::transmit`]): inbound only, wrapped
/// towards the real server from the address of the port that reaches it.
pub fn xmit<F: Frame>(
    frame: &mut F,
    c: &Conn,
    dir: Dir,
    eg: &Egress,
) -> Result<Ipv4Addr, XmitError> {
    if dir != Dir::In {
        return Err(XmitError::Unsupported);
    }
    // The inner TTL is copied to the outer header, as IPVS; never send 0.
    if super::ttl_of(frame) == 0 {
        return Err(XmitError::TtlExceeded);
    }
    let rip = c.dip;
    let (port, _) = eg.router.route(rip).ok_or(XmitError::NoRoute)?;
    let p = eg.router.ports[port as usize];
    let ident = eg.ident.get();
    eg.ident.set(ident.wrapping_add(1));
    match encapsulate(frame, c.dest().tunnel(), p.cidr.addr, rip, p.mtu, ident) {
        Ok(()) => Ok(rip),
        Err(TunError::FragNeeded(mtu)) => Err(XmitError::FragNeeded(mtu)),
        Err(TunError::TooBig) => Err(XmitError::TooBig),
        Err(TunError::NoHeadroom) => Err(XmitError::NoRoom),
        Err(TunError::Malformed(e)) => Err(XmitError::Malformed(e)),
    }
}

/// Encapsulate the IPv4 packet of an Ethernet frame for `rip` as `tun`
/// says. The frame's Ethernet header moves to the front; its addresses are
/// set later by the next-hop step. `mtu` is the egress port's IP MTU.
/// On error the frame is untouched.
pub fn encapsulate<F: Frame>(
    frame: &mut F,
    tun: Tunnel,
    src: Ipv4Addr,
    rip: Ipv4Addr,
    mtu: u16,
    ident: u16,
) -> Result<(), TunError> {
    let (tos, ttl, df, inner_len, hash) = {
        let ip = Ipv4Packet::new_checked(&frame.data()[ETH..]).map_err(TunError::Malformed)?;
        let hash = if tun.kind == TunType::Gue {
            flow_hash(&ip)
        } else {
            0
        };
        (
            ip.dscp_ecn(),
            ip.ttl(),
            ip.dont_frag(),
            ip.total_len() as usize,
            hash,
        )
    };
    let oh = overhead(tun);
    let room = (mtu as usize).saturating_sub(oh);
    if room < MIN_MTU {
        return Err(TunError::TooBig);
    }
    if inner_len > room {
        return Err(if df {
            TunError::FragNeeded(room as u16)
        } else {
            TunError::TooBig
        });
    }
    // Drop Ethernet padding past the inner packet before growing.
    frame.truncate(ETH + inner_len);
    if !frame.prepend(oh) {
        return Err(TunError::NoHeadroom);
    }
    let outer_len = inner_len + oh;
    let data = frame.data_mut();
    // Ethernet header: move it to the new front (addresses come later).
    data.copy_within(oh..oh + ETH, 0);
    let pkt = &mut data[ETH..ETH + outer_len];
    let proto = match tun.kind {
        TunType::Ipip => IpProtocol::IPIP,
        TunType::Gue => {
            let udp = &mut pkt[IP_LEN..];
            let udp_len = (outer_len - IP_LEN) as u16;
            udp[0..2].copy_from_slice(&gue_sport(hash).to_be_bytes());
            udp[2..4].copy_from_slice(&tun.port.to_be_bytes());
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
            udp[6..8].fill(0);
            // struct guehdr: version 0, control 0, hlen 0 | proto_ctype
            // IPPROTO_IPIP | flags 0.
            udp[8..12].copy_from_slice(&[0, IpProtocol::IPIP.0, 0, 0]);
            if udp_csum(tun) {
                let ph = checksum::pseudo_header_v4(src, rip, IpProtocol::UDP.0, udp_len);
                let c = checksum::fold(ph + sum(udp));
                // A computed 0 goes out as 0xFFFF (0 means "none").
                let c = if c == 0 { 0xffff } else { c };
                udp[6..8].copy_from_slice(&c.to_be_bytes());
            }
            IpProtocol::UDP
        }
        TunType::Gre => {
            let gre = &mut pkt[IP_LEN..];
            let flags = if gre_csum(tun) { GRE_FLAG_CSUM } else { 0 };
            gre[0..2].copy_from_slice(&flags.to_be_bytes());
            gre[2..4].copy_from_slice(&GRE_PROTO_IPV4.to_be_bytes());
            if gre_csum(tun) {
                gre[4..8].fill(0);
                let c = checksum::fold(sum(gre));
                gre[4..6].copy_from_slice(&c.to_be_bytes());
            }
            IPPROTO_GRE
        }
    };
    let mut outer = Ipv4Packet::new_unchecked(pkt);
    outer.set_header_len(IP_LEN);
    outer.set_dscp_ecn(outer_ds(tos));
    outer.set_total_len(outer_len as u16);
    outer.set_ident(ident);
    outer.set_frag_offset(0);
    outer.set_more_frags(false);
    outer.set_dont_frag(df);
    outer.set_ttl(ttl);
    outer.set_protocol(proto);
    outer.set_src_addr(src);
    outer.set_dst_addr(rip);
    outer.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::VecFrame;
    use crate::wire::{PacketBuilder, TcpFlags};

    // An independent Internet checksum (RFC 1071), deliberately not
    // crate::wire::checksum: the sum of a correct region, checksum field
    // included, is 0xFFFF.
    fn ones(words: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i < words.len() {
            let hi = words[i] as u32;
            let lo = if i + 1 < words.len() {
                words[i + 1] as u32
            } else {
                0
            };
            s += hi << 8 | lo;
            i += 2;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn udp_sum_ok(src: [u8; 4], dst: [u8; 4], udp: &[u8]) -> bool {
        let mut p = Vec::new();
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0, 17]);
        p.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        p.extend_from_slice(udp);
        ones(&p) == 0xffff
    }

    const DIR: [u8; 4] = [10, 0, 1, 1];
    const RIP: [u8; 4] = [10, 0, 1, 11];

    fn ip4(a: [u8; 4]) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    fn tcp_inner(sport: u16, df: bool, tos: u8, payload: usize) -> Vec<u8> {
        PacketBuilder::new()
            .ipv4("192.0.2.7".parse().unwrap(), "10.0.0.100".parse().unwrap())
            .ttl(61)
            .tos(tos)
            .ident(777)
            .dont_frag(df)
            .tcp(sport, 80)
            .flags(TcpFlags::ACK)
            .payload(&vec![0x5a; payload])
            .build()
    }

    fn tunnel(kind: TunType, port: u16, csum: TunCsum) -> Tunnel {
        Tunnel { kind, port, csum }
    }

    fn encap(frame: &[u8], t: Tunnel, mtu: u16) -> Result<Vec<u8>, TunError> {
        let mut f = VecFrame::from_bytes(frame);
        encapsulate(&mut f, t, ip4(DIR), ip4(RIP), mtu, 4242).map(|()| f.data().to_vec())
    }

    /// One row of the golden table: the tunnel, and the bytes expected
    /// between the outer IPv4 header and the inner packet, with the UDP
    /// source port and the checksum fields blanked (`None` bytes), which
    /// the test checks separately.
    struct Golden {
        what: &'static str,
        tun: Tunnel,
        proto: u8,
        header: Vec<Option<u8>>,
        /// Where a checksum sits in `header`, if one must be present.
        csum_at: Option<usize>,
    }

    fn b(v: &[u8]) -> Vec<Option<u8>> {
        v.iter().copied().map(Some).collect()
    }

    fn golden(inner_len: usize) -> Vec<Golden> {
        let udp_len = (8 + 4 + inner_len) as u16;
        let [lh, ll] = udp_len.to_be_bytes();
        let gue = |csum| {
            let mut h = vec![None, None]; // source port: checked apart
            h.extend(b(&[0x17, 0xc1, lh, ll])); // dport 6081, length
            h.extend(if csum == TunCsum::Nocsum {
                b(&[0, 0])
            } else {
                vec![None, None]
            });
            h.extend(b(&[0x00, 0x04, 0x00, 0x00])); // GUE: v0 C0 hlen0, IPIP, flags 0
            h
        };
        vec![
            Golden {
                what: "ipip",
                tun: tunnel(TunType::Ipip, 0, TunCsum::Nocsum),
                proto: 4,
                header: vec![],
                csum_at: None,
            },
            Golden {
                what: "gue nocsum",
                tun: tunnel(TunType::Gue, 6081, TunCsum::Nocsum),
                proto: 17,
                header: gue(TunCsum::Nocsum),
                csum_at: None,
            },
            Golden {
                what: "gue csum",
                tun: tunnel(TunType::Gue, 6081, TunCsum::Csum),
                proto: 17,
                header: gue(TunCsum::Csum),
                csum_at: Some(6),
            },
            Golden {
                what: "gue remcsum (complete inner checksum: no option)",
                tun: tunnel(TunType::Gue, 6081, TunCsum::Remcsum),
                proto: 17,
                header: gue(TunCsum::Remcsum),
                csum_at: Some(6),
            },
            Golden {
                what: "gre nocsum",
                tun: tunnel(TunType::Gre, 0, TunCsum::Nocsum),
                proto: 47,
                header: b(&[0x00, 0x00, 0x08, 0x00]),
                csum_at: None,
            },
            Golden {
                what: "gre csum",
                tun: tunnel(TunType::Gre, 0, TunCsum::Csum),
                proto: 47,
                header: vec![
                    Some(0x80),
                    Some(0x00),
                    Some(0x08),
                    Some(0x00),
                    None,
                    None,
                    Some(0),
                    Some(0),
                ],
                csum_at: Some(4),
            },
        ]
    }

    #[test]
    fn golden_packets_per_type_and_checksum_flag() {
        // Odd payload lengths too: the checksums pad the last byte.
        for payload in [0usize, 1, 100, 1001] {
            let inner = tcp_inner(40000, true, 0xb8, payload);
            let ip_len = inner.len() - 14;
            for g in golden(ip_len) {
                let out = encap(&inner, g.tun, 1500).unwrap();
                let oh = 20 + g.header.len();
                assert_eq!(overhead(g.tun), oh, "{}", g.what);
                assert_eq!(out.len(), inner.len() + oh, "{}", g.what);
                assert_eq!(&out[..14], &inner[..14], "{}: Ethernet header", g.what);
                assert_eq!(&out[14 + oh..], &inner[14..], "{}: inner packet", g.what);
                let o = &out[14..34];
                assert_eq!(o[0], 0x45, "{}: version 4, IHL 5", g.what);
                assert_eq!(o[1], 0xb8, "{}: DS field copied", g.what);
                assert_eq!(
                    u16::from_be_bytes([o[2], o[3]]) as usize,
                    ip_len + oh,
                    "{}: total length",
                    g.what
                );
                assert_eq!(u16::from_be_bytes([o[4], o[5]]), 4242, "{}: ident", g.what);
                assert_eq!(&o[6..8], &[0x40, 0], "{}: DF copied", g.what);
                assert_eq!(o[8], 61, "{}: TTL copied", g.what);
                assert_eq!(o[9], g.proto, "{}: protocol", g.what);
                assert_eq!(&o[12..16], &DIR, "{}", g.what);
                assert_eq!(&o[16..20], &RIP, "{}", g.what);
                assert_eq!(ones(o), 0xffff, "{}: outer IP checksum", g.what);
                let h = &out[34..34 + g.header.len()];
                for (i, want) in g.header.iter().enumerate() {
                    if let Some(w) = want {
                        assert_eq!(h[i], *w, "{}: header byte {i}: {h:02x?}", g.what);
                    }
                }
                let tunneled = &out[34..];
                match (g.proto, g.csum_at) {
                    (17, Some(at)) => {
                        assert_ne!(&h[at..at + 2], &[0, 0], "{}: checksum present", g.what);
                        assert!(udp_sum_ok(DIR, RIP, tunneled), "{}: UDP checksum", g.what);
                    }
                    (47, Some(at)) => {
                        assert_ne!(&h[at..at + 2], &[0, 0], "{}: checksum present", g.what);
                        assert_eq!(ones(tunneled), 0xffff, "{}: GRE checksum", g.what);
                    }
                    _ => {}
                }
                if g.proto == 17 {
                    let sport = u16::from_be_bytes([h[0], h[1]]);
                    assert!(
                        (32768..60999).contains(&sport),
                        "{}: source port {sport} in the local port range",
                        g.what
                    );
                }
            }
        }
    }

    #[test]
    fn a_corrupted_byte_fails_the_independent_checksums() {
        // The checks above could fail: flip one inner byte after the fact.
        let inner = tcp_inner(40000, true, 0, 50);
        for t in [
            tunnel(TunType::Gue, 6081, TunCsum::Csum),
            tunnel(TunType::Gre, 0, TunCsum::Csum),
        ] {
            let mut out = encap(&inner, t, 1500).unwrap();
            let n = out.len();
            out[n - 1] ^= 0x01;
            let tunneled = &out[34..];
            if t.kind == TunType::Gue {
                assert!(!udp_sum_ok(DIR, RIP, tunneled));
            } else {
                assert_ne!(ones(tunneled), 0xffff);
            }
        }
    }

    #[test]
    fn gue_source_port_is_per_flow_and_spread() {
        let t = tunnel(TunType::Gue, 6081, TunCsum::Nocsum);
        let sport = |p: u16, payload: usize| {
            let out = encap(&tcp_inner(p, true, 0, payload), t, 1500).unwrap();
            u16::from_be_bytes([out[34], out[35]])
        };
        let mut seen = std::collections::HashSet::new();
        for p in 1024..2024u16 {
            let s = sport(p, 10);
            assert_eq!(s, sport(p, 700), "same flow, same port");
            assert!((32768..60999).contains(&s));
            seen.insert(s);
        }
        assert!(seen.len() > 950, "1000 flows on {} ports", seen.len());
    }

    #[test]
    fn ecn_ce_is_not_copied_outward() {
        // INET_ECN_encapsulate: DSCP and ECT copied, CE becomes ECT(0).
        for (inner, outer) in [(0xb8, 0xb8), (0xb9, 0xb9), (0xba, 0xba), (0xbb, 0xba)] {
            for kind in [TunType::Ipip, TunType::Gre] {
                let out = encap(
                    &tcp_inner(1, true, inner, 0),
                    tunnel(kind, 0, TunCsum::Nocsum),
                    1500,
                )
                .unwrap();
                assert_eq!(out[15], outer, "{kind:?} inner {inner:#x}");
                let oh = overhead(tunnel(kind, 0, TunCsum::Nocsum));
                assert_eq!(out[14 + oh + 1], inner, "inner DS untouched");
            }
        }
    }

    #[test]
    fn without_df_the_outer_header_has_none_and_padding_is_dropped() {
        let mut frame = tcp_inner(40000, false, 0, 0);
        frame.resize(64, 0); // Ethernet padding
        for (t, oh) in [
            (tunnel(TunType::Ipip, 0, TunCsum::Nocsum), 20),
            (tunnel(TunType::Gue, 6081, TunCsum::Csum), 32),
            (tunnel(TunType::Gre, 0, TunCsum::Csum), 28),
        ] {
            let out = encap(&frame, t, 1500).unwrap();
            assert_eq!(out.len(), 14 + oh + 40, "{t:?}");
            assert_eq!(u16::from_be_bytes([out[20], out[21]]), 0, "{t:?}");
            assert_eq!(u16::from_be_bytes([out[16], out[17]]) as usize, oh + 40);
        }
    }

    #[test]
    fn df_packet_over_mtu_asks_for_fragmentation_needed_less_the_overhead() {
        // __ip_vs_get_out_rt: mtu - iphdr - (udphdr + guehdr | gre_calc_hlen).
        for (t, room) in [
            (tunnel(TunType::Ipip, 0, TunCsum::Nocsum), 1480),
            (tunnel(TunType::Gue, 6081, TunCsum::Nocsum), 1468),
            (tunnel(TunType::Gue, 6081, TunCsum::Remcsum), 1468),
            (tunnel(TunType::Gre, 0, TunCsum::Nocsum), 1476),
            (tunnel(TunType::Gre, 0, TunCsum::Csum), 1472),
        ] {
            let frame = tcp_inner(1, true, 0, room + 1 - 40);
            let mut f = VecFrame::from_bytes(&frame);
            let r = encapsulate(&mut f, t, ip4(DIR), ip4(RIP), 1500, 1);
            assert_eq!(r, Err(TunError::FragNeeded(room as u16)), "{t:?}");
            assert_eq!(f.data(), &frame[..], "frame untouched");
            // Without DF: dropped (rvs does not fragment).
            let frame = tcp_inner(1, false, 0, room + 1 - 40);
            assert_eq!(encap(&frame, t, 1500), Err(TunError::TooBig), "{t:?}");
            // Exactly fitting.
            let out = encap(&tcp_inner(1, true, 0, room - 40), t, 1500).unwrap();
            assert_eq!(out.len(), 14 + 1500, "{t:?}");
        }
    }

    #[test]
    fn an_mtu_below_68_inside_the_tunnel_drops_everything() {
        let t = tunnel(TunType::Gue, 6081, TunCsum::Nocsum);
        // 99 - 32 = 67 < 68: the kernel's "mtu less than 68".
        assert_eq!(
            encap(&tcp_inner(1, true, 0, 0), t, 99),
            Err(TunError::TooBig)
        );
        assert!(encap(&tcp_inner(1, true, 0, 0), t, 100).is_ok());
    }

    #[test]
    fn no_headroom_leaves_the_frame_alone() {
        let frame = tcp_inner(1, true, 0, 10);
        // A frame with only 10 bytes of headroom left.
        let mut f = VecFrame::from_bytes(&frame);
        assert!(f.prepend(crate::io::VEC_HEADROOM - 10));
        f.data_mut()[..frame.len()].copy_from_slice(&frame);
        f.truncate(frame.len());
        let r = encapsulate(
            &mut f,
            tunnel(TunType::Gue, 1, TunCsum::Csum),
            ip4(DIR),
            ip4(RIP),
            1500,
            1,
        );
        assert_eq!(r, Err(TunError::NoHeadroom));
        assert_eq!(f.data(), &frame[..]);
    }

    #[test]
    fn the_wide_sum_equals_the_plain_one_at_every_length() {
        // Pseudo-random bytes (an LCG), every length and alignment that
        // the remainder handling can meet, and all-0xFF (carry-heavy).
        let mut x: u32 = 12345;
        let data: Vec<u8> = (0..2100)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for len in (0..80).chain([1499, 1500, 1501, 2047, 2048, 2100]) {
            for start in 0..2 {
                let d = &data[start..start + len.min(data.len() - start)];
                assert_eq!(sum(d) as u16, ones(d), "len {len} start {start}");
            }
            let ff = vec![0xffu8; len];
            assert_eq!(sum(&ff) as u16, ones(&ff), "0xff x {len}");
        }
    }
}
