//! Zero-copy views over packet bytes: Ethernet, ARP, IPv4, IPv6 (with its
//! extension-header walk), TCP, UDP, ICMPv4, ICMPv6 with Neighbor Discovery,
//! plus Internet checksums (full and RFC 1624 incremental) and a packet
//! builder for tests and the benchmark generator.
//!
//! This module owns byte layout only. It never allocates on the parse path,
//! never panics on any input (`new_checked` validates once; accessors rely on
//! that), and knows nothing about connections, devices or offloads.
//!
//! Each view is `Foo<T: AsRef<[u8]>>`; setters exist when `T: AsMut<[u8]>`.
//! `new_unchecked` skips validation and is meant for writing fresh headers
//! into a buffer already known to be long enough: accessors on an unchecked
//! view over a short buffer panic.

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{write_arp, ArpOp, ArpPacket};
pub use builder::PacketBuilder;
pub use ethernet::{EtherType, EthernetFrame, MacAddr, MacParseError};
pub use icmp::Icmpv4Packet;
pub use ipv4::{IpProtocol, Ipv4Packet};
pub use ipv6::Ipv6Packet;
pub use tcp::{TcpFlags, TcpSegment};
pub use udp::UdpDatagram;

/// Why a view refused a buffer. Variants are per protocol so the caller can
/// count drops by reason with [`WireError::as_str`] as the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    #[error("ethernet frame shorter than its header")]
    EthTruncated,
    #[error("ARP packet truncated")]
    ArpTruncated,
    #[error("ARP packet is not Ethernet/IPv4")]
    ArpUnsupported,
    #[error("IPv4 packet shorter than its header")]
    Ipv4Truncated,
    #[error("IPv4 version is not 4")]
    Ipv4BadVersion,
    #[error("IPv4 header length (IHL) invalid")]
    Ipv4BadHeaderLen,
    #[error("IPv4 total length invalid")]
    Ipv4BadTotalLen,
    #[error("IPv6 packet shorter than its header")]
    Ipv6Truncated,
    #[error("IPv6 version is not 6")]
    Ipv6BadVersion,
    #[error("IPv6 payload length invalid (0, a jumbogram, or beyond the frame)")]
    Ipv6BadPayloadLen,
    #[error("IPv6 extension header beyond the payload")]
    Ipv6ExtTruncated,
    #[error("IPv6 extension-header chain too long")]
    Ipv6ExtChainTooLong,
    #[error("IPv6 Hop-by-Hop header not first")]
    Ipv6HopByHopNotFirst,
    #[error("TCP segment shorter than its header")]
    TcpTruncated,
    #[error("TCP data offset invalid")]
    TcpBadDataOffset,
    #[error("UDP datagram shorter than its header")]
    UdpTruncated,
    #[error("UDP length field invalid")]
    UdpBadLength,
    #[error("ICMP message shorter than its header")]
    IcmpTruncated,
    #[error("output buffer too small")]
    BufferTooSmall,
}

// Big-endian field access. Callers have validated the range.
#[inline]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Rng;

    /// Parse `b` with every view and touch every accessor and setter.
    fn exercise(b: &[u8]) {
        let mut m = b.to_vec();
        if let Ok(e) = EthernetFrame::new_checked(b) {
            let _ = (e.dst(), e.src(), e.ethertype(), e.payload().len());
            exercise_l3(e.payload());
        }
        if let Ok(mut e) = EthernetFrame::new_checked(&mut m[..]) {
            e.set_dst(MacAddr::BROADCAST);
            e.set_src(MacAddr::ZERO);
            e.set_ethertype(EtherType::ARP);
            e.payload_mut().fill(0);
        }
        exercise_l3(b);
        exercise_l4(b);
    }

    fn exercise_l3(b: &[u8]) {
        if let Ok(a) = ArpPacket::new_checked(b) {
            let _ = (
                a.operation(),
                a.sender_hw(),
                a.sender_ip(),
                a.target_hw(),
                a.target_ip(),
            );
            let mut m = b.to_vec();
            let mut a = ArpPacket::new_checked(&mut m[..]).unwrap();
            a.set_operation(ArpOp::REPLY);
            a.set_sender_hw(MacAddr::ZERO);
            a.set_sender_ip(std::net::Ipv4Addr::LOCALHOST);
            a.set_target_hw(MacAddr::ZERO);
            a.set_target_ip(std::net::Ipv4Addr::LOCALHOST);
        }
        for truncated in [false, true] {
            let p = if truncated {
                Ipv4Packet::new_checked_truncated(b)
            } else {
                Ipv4Packet::new_checked(b)
            };
            let Ok(p) = p else { continue };
            let _ = (
                p.version(),
                p.header_len(),
                p.total_len(),
                p.dscp_ecn(),
                p.ident(),
            );
            let _ = (
                p.dont_frag(),
                p.more_frags(),
                p.frag_offset(),
                p.is_fragment(),
            );
            let _ = (
                p.ttl(),
                p.protocol(),
                p.checksum(),
                p.src_addr(),
                p.dst_addr(),
            );
            let _ = (p.header().len(), p.options().len(), p.verify_checksum());
            exercise_l4(p.payload());
            let mut m = b.to_vec();
            let mut p = if truncated {
                Ipv4Packet::new_checked_truncated(&mut m[..]).unwrap()
            } else {
                Ipv4Packet::new_checked(&mut m[..]).unwrap()
            };
            p.set_src_addr_inc(std::net::Ipv4Addr::BROADCAST);
            p.set_dst_addr_inc(std::net::Ipv4Addr::UNSPECIFIED);
            p.dec_ttl_inc();
            p.set_frag_offset(8);
            p.set_more_frags(true);
            p.set_dont_frag(true);
            p.fill_checksum();
            p.payload_mut().fill(1);
        }
    }

    fn exercise_l4(b: &[u8]) {
        let (s, d) = (std::net::Ipv4Addr::LOCALHOST, std::net::Ipv4Addr::BROADCAST);
        if let Ok(t) = TcpSegment::new_checked(b) {
            let _ = (
                t.src_port(),
                t.dst_port(),
                t.seq(),
                t.ack(),
                t.header_len(),
                t.flags(),
            );
            let _ = (
                t.window(),
                t.checksum(),
                t.urgent(),
                t.options().len(),
                t.payload().len(),
            );
            let _ = t.verify_checksum(s, d);
            let mut m = b.to_vec();
            let mut t = TcpSegment::new_checked(&mut m[..]).unwrap();
            t.set_src_port_inc(1);
            t.set_dst_port_inc(2);
            t.set_seq_inc(3);
            t.set_ack_inc(4);
            t.update_checksum_addr(s, d);
            t.set_flags(TcpFlags::RST);
            t.fill_checksum(s, d);
            t.options_mut().fill(0);
            t.payload_mut().fill(0);
        }
        if let Ok(u) = UdpDatagram::new_checked(b) {
            let _ = (
                u.src_port(),
                u.dst_port(),
                u.length(),
                u.checksum(),
                u.payload().len(),
            );
            let _ = u.verify_checksum(s, d);
            let mut m = b.to_vec();
            let mut u = UdpDatagram::new_checked(&mut m[..]).unwrap();
            u.set_src_port_inc(1);
            u.set_dst_port_inc(2);
            u.update_checksum_addr(s, d);
            u.fill_checksum(s, d);
            u.payload_mut().fill(0);
        }
        if let Ok(c) = Icmpv4Packet::new_checked(b) {
            let _ = (
                c.msg_type(),
                c.code(),
                c.checksum(),
                c.echo_ident(),
                c.echo_seq(),
            );
            let _ = (
                c.next_hop_mtu(),
                c.rest_of_header(),
                c.payload().len(),
                c.verify_checksum(),
            );
            let mut m = b.to_vec();
            let mut c = Icmpv4Packet::new_checked(&mut m[..]).unwrap();
            c.set_msg_type_inc(0);
            c.fill_checksum();
            c.payload_mut().fill(0);
        }
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        let a = std::net::Ipv4Addr::new(10, 0, 0, 1);
        let b = std::net::Ipv4Addr::new(10, 0, 0, 2);
        let inner = PacketBuilder::new().ipv4(b, a).tcp(80, 1234).build_ipv4();
        vec![
            PacketBuilder::new()
                .ipv4(a, b)
                .tcp(1, 2)
                .tcp_options(&[2, 4, 5, 0xb4])
                .payload(b"xyz")
                .build(),
            PacketBuilder::new()
                .ipv4(a, b)
                .udp(1, 2)
                .payload(b"hello")
                .pad60()
                .build(),
            PacketBuilder::new()
                .ipv4(a, b)
                .icmp_echo(1, 2, b"abc")
                .ip_options(&[1, 1, 1, 1])
                .build(),
            PacketBuilder::new()
                .icmp(3, 4, 1400)
                .payload(&inner[..28])
                .build(),
            PacketBuilder::new()
                .raw(IpProtocol::IPIP)
                .payload(&inner)
                .build(),
            PacketBuilder::new()
                .arp_request(MacAddr([2, 0, 0, 0, 0, 1]), a, b)
                .pad60()
                .build(),
        ]
    }

    #[test]
    fn no_panic_on_prefixes_and_mutations() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for f in sample_frames() {
            for n in 0..=f.len() {
                exercise(&f[..n]);
                exercise(&f[n..]);
            }
            // Flip single bytes to hit every validation branch.
            for _ in 0..2_000 {
                let mut g = f.clone();
                let i = rng.next_u32() as usize % g.len();
                g[i] = (rng.next_u64() >> 56) as u8;
                let n = rng.next_u32() as usize % (g.len() + 1);
                exercise(&g[..n]);
            }
        }
    }

    #[test]
    fn no_panic_on_random_bytes() {
        let mut rng = Rng(0xfeed_face_0bad_cafe);
        for i in 0..5_000 {
            let len = rng.next_u32() as usize % 128;
            let mut b = vec![0u8; len];
            rng.fill(&mut b);
            // Bias some buffers toward plausible headers so deeper code runs.
            if len > 34 && i % 2 == 0 {
                b[12] = 0x08;
                b[13] = 0x00;
                b[14] = 0x45;
                b[16] = 0;
                b[17] = (len - 14) as u8;
                b[23] = [1u8, 6, 17][i % 3];
            }
            exercise(&b);
        }
    }
}
