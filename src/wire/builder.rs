//! A small packet builder for tests, fixtures and the benchmark generator.
//! It allocates and is not for the data path. Output always carries correct
//! IPv4 and L4 checksums (computed in full), unless told otherwise.
//!
//! ```
//! use rvs::wire::{PacketBuilder, TcpFlags};
//! let frame = PacketBuilder::new()
//!     .ipv4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
//!     .tcp(12345, 80)
//!     .flags(TcpFlags::SYN)
//!     .build();
//! assert_eq!(frame.len(), 14 + 20 + 20);
//! ```

use std::net::Ipv4Addr;

use super::arp::{write_arp, ArpOp, ARP_FRAME_LEN};
use super::ethernet::{EtherType, EthernetFrame, MacAddr};
use super::icmp::{self, Icmpv4Packet};
use super::ipv4::{IpProtocol, Ipv4Packet};
use super::tcp::{TcpFlags, TcpSegment};
use super::udp::UdpDatagram;

#[derive(Debug, Clone)]
enum L3 {
    None,
    Ipv4,
    Arp {
        op: ArpOp,
        sender_hw: MacAddr,
        sender_ip: Ipv4Addr,
        target_hw: MacAddr,
        target_ip: Ipv4Addr,
    },
}

#[derive(Debug, Clone, Copy)]
enum L4 {
    /// No L4 header: the payload follows the IP header as is.
    Raw(IpProtocol),
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        ty: u8,
        code: u8,
        rest: u32,
    },
}

/// Builds Ethernet frames (or bare IPv4 packets) for tests.
#[derive(Debug, Clone)]
pub struct PacketBuilder {
    eth_src: MacAddr,
    eth_dst: MacAddr,
    ethertype: Option<EtherType>,
    l3: L3,
    ip_src: Ipv4Addr,
    ip_dst: Ipv4Addr,
    ttl: u8,
    ident: u16,
    df: bool,
    mf: bool,
    frag_offset: u16,
    tos: u8,
    ip_options: Vec<u8>,
    ip_csum_ok: bool,
    l4: L4,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    tcp_options: Vec<u8>,
    udp_csum: bool,
    l4_csum_ok: bool,
    payload: Vec<u8>,
    pad60: bool,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn pad4(v: &[u8]) -> Vec<u8> {
    let mut v = v.to_vec();
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

impl PacketBuilder {
    /// Defaults: eth 02:00:00:00:00:01 -> 02:00:00:00:00:02, IPv4
    /// 10.0.0.1 -> 10.0.0.2, TTL 64, ident 0, DF set, raw protocol 0 with
    /// empty payload; TCP defaults flags ACK, seq 0, ack 0, window 65535.
    pub fn new() -> Self {
        PacketBuilder {
            eth_src: MacAddr([2, 0, 0, 0, 0, 1]),
            eth_dst: MacAddr([2, 0, 0, 0, 0, 2]),
            ethertype: None,
            l3: L3::Ipv4,
            ip_src: Ipv4Addr::new(10, 0, 0, 1),
            ip_dst: Ipv4Addr::new(10, 0, 0, 2),
            ttl: super::ipv4::DEFAULT_TTL,
            ident: 0,
            df: true,
            mf: false,
            frag_offset: 0,
            tos: 0,
            ip_options: Vec::new(),
            ip_csum_ok: true,
            l4: L4::Raw(IpProtocol(0)),
            seq: 0,
            ack: 0,
            flags: TcpFlags::ACK,
            window: 65535,
            tcp_options: Vec::new(),
            udp_csum: true,
            l4_csum_ok: true,
            payload: Vec::new(),
            pad60: false,
        }
    }

    pub fn eth(mut self, src: MacAddr, dst: MacAddr) -> Self {
        self.eth_src = src;
        self.eth_dst = dst;
        self
    }

    /// Override the EtherType written in the frame (default follows L3).
    pub fn ethertype(mut self, t: EtherType) -> Self {
        self.ethertype = Some(t);
        self
    }

    /// No L3 header: Ethernet header + payload only.
    pub fn no_l3(mut self) -> Self {
        self.l3 = L3::None;
        self
    }

    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.l3 = L3::Ipv4;
        self.ip_src = src;
        self.ip_dst = dst;
        self
    }

    pub fn ttl(mut self, v: u8) -> Self {
        self.ttl = v;
        self
    }

    pub fn ident(mut self, v: u16) -> Self {
        self.ident = v;
        self
    }

    pub fn dont_frag(mut self, on: bool) -> Self {
        self.df = on;
        self
    }

    pub fn more_frags(mut self, on: bool) -> Self {
        self.mf = on;
        self
    }

    /// Fragment offset in bytes (multiple of 8).
    pub fn frag_offset(mut self, bytes: u16) -> Self {
        self.frag_offset = bytes;
        self
    }

    pub fn tos(mut self, v: u8) -> Self {
        self.tos = v;
        self
    }

    /// IP options, zero-padded to a multiple of 4 bytes.
    pub fn ip_options(mut self, opts: &[u8]) -> Self {
        self.ip_options = pad4(opts);
        self
    }

    /// Write a wrong IPv4 header checksum (for drop tests).
    pub fn bad_ip_checksum(mut self) -> Self {
        self.ip_csum_ok = false;
        self
    }

    /// No L4 header: `proto` in the IP header, payload as is (e.g. IPIP with
    /// an inner packet from `build_ipv4()`).
    pub fn raw(mut self, proto: IpProtocol) -> Self {
        self.l4 = L4::Raw(proto);
        self
    }

    pub fn tcp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Tcp { sport, dport };
        self
    }

    pub fn flags(mut self, f: TcpFlags) -> Self {
        self.flags = f;
        self
    }

    pub fn seq(mut self, v: u32) -> Self {
        self.seq = v;
        self
    }

    pub fn ack(mut self, v: u32) -> Self {
        self.ack = v;
        self
    }

    pub fn window(mut self, v: u16) -> Self {
        self.window = v;
        self
    }

    /// TCP options, zero-padded to a multiple of 4 bytes.
    pub fn tcp_options(mut self, opts: &[u8]) -> Self {
        self.tcp_options = pad4(opts);
        self
    }

    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.l4 = L4::Udp { sport, dport };
        self
    }

    /// Send UDP with checksum 0 ("none").
    pub fn udp_zero_checksum(mut self) -> Self {
        self.udp_csum = false;
        self
    }

    /// Write a wrong TCP/UDP/ICMP checksum.
    pub fn bad_l4_checksum(mut self) -> Self {
        self.l4_csum_ok = false;
        self
    }

    pub fn icmp_echo(self, id: u16, seq: u16, payload: &[u8]) -> Self {
        self.icmp(
            icmp::ECHO_REQUEST,
            0,
            (u32::from(id) << 16) | u32::from(seq),
        )
        .payload(payload)
    }

    pub fn icmp_echo_reply(self, id: u16, seq: u16, payload: &[u8]) -> Self {
        self.icmp(icmp::ECHO_REPLY, 0, (u32::from(id) << 16) | u32::from(seq))
            .payload(payload)
    }

    /// Any ICMP message; `rest` is header bytes 4..8. For errors, put the
    /// quoted datagram in `payload`.
    pub fn icmp(mut self, ty: u8, code: u8, rest: u32) -> Self {
        self.l4 = L4::Icmp { ty, code, rest };
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// Pad the Ethernet frame with zeros to 60 bytes.
    pub fn pad60(mut self) -> Self {
        self.pad60 = true;
        self
    }

    /// ARP request: eth src = `sender_hw`, eth dst = broadcast, target hw 0.
    pub fn arp_request(
        mut self,
        sender_hw: MacAddr,
        sender_ip: Ipv4Addr,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.eth_src = sender_hw;
        self.eth_dst = MacAddr::BROADCAST;
        self.l3 = L3::Arp {
            op: ArpOp::REQUEST,
            sender_hw,
            sender_ip,
            target_hw: MacAddr::ZERO,
            target_ip,
        };
        self
    }

    /// ARP reply: eth src = `sender_hw`, eth dst = `target_hw`.
    pub fn arp_reply(
        mut self,
        sender_hw: MacAddr,
        sender_ip: Ipv4Addr,
        target_hw: MacAddr,
        target_ip: Ipv4Addr,
    ) -> Self {
        self.eth_src = sender_hw;
        self.eth_dst = target_hw;
        self.l3 = L3::Arp {
            op: ArpOp::REPLY,
            sender_hw,
            sender_ip,
            target_hw,
            target_ip,
        };
        self
    }

    fn build_l4(&self) -> (IpProtocol, Vec<u8>) {
        let (src, dst) = (self.ip_src, self.ip_dst);
        match self.l4 {
            L4::Raw(p) => (p, self.payload.clone()),
            L4::Tcp { sport, dport } => {
                let hl = 20 + self.tcp_options.len();
                let mut v = vec![0u8; hl];
                v[20..].copy_from_slice(&self.tcp_options);
                v.extend_from_slice(&self.payload);
                let mut t = TcpSegment::new_unchecked(&mut v[..]);
                t.set_src_port(sport);
                t.set_dst_port(dport);
                t.set_seq(self.seq);
                t.set_ack(self.ack);
                t.set_header_len(hl);
                t.set_flags(self.flags);
                t.set_window(self.window);
                t.fill_checksum(src, dst);
                if !self.l4_csum_ok {
                    t.set_checksum(!t.checksum());
                }
                (IpProtocol::TCP, v)
            }
            L4::Udp { sport, dport } => {
                let mut v = vec![0u8; 8];
                v.extend_from_slice(&self.payload);
                let len = v.len() as u16;
                let mut u = UdpDatagram::new_unchecked(&mut v[..]);
                u.set_src_port(sport);
                u.set_dst_port(dport);
                u.set_length(len);
                if self.udp_csum {
                    u.fill_checksum(src, dst);
                }
                if !self.l4_csum_ok {
                    u.set_checksum(!u.checksum() | 1);
                }
                (IpProtocol::UDP, v)
            }
            L4::Icmp { ty, code, rest } => {
                let mut v = vec![0u8; 8];
                v.extend_from_slice(&self.payload);
                let mut m = Icmpv4Packet::new_unchecked(&mut v[..]);
                m.set_msg_type(ty);
                m.set_code(code);
                m.set_rest_of_header(rest);
                m.fill_checksum();
                if !self.l4_csum_ok {
                    m.set_checksum(!m.checksum());
                }
                (IpProtocol::ICMP, v)
            }
        }
    }

    /// The IPv4 packet alone (no Ethernet header, no padding).
    pub fn build_ipv4(&self) -> Vec<u8> {
        let (proto, l4) = self.build_l4();
        let hl = 20 + self.ip_options.len();
        let mut v = vec![0u8; hl];
        v[20..].copy_from_slice(&self.ip_options);
        v.extend_from_slice(&l4);
        let total = v.len() as u16;
        let mut p = Ipv4Packet::new_unchecked(&mut v[..]);
        p.set_header_len(hl);
        p.set_dscp_ecn(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_dont_frag(self.df);
        p.set_more_frags(self.mf);
        p.set_frag_offset(self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(proto);
        p.set_src_addr(self.ip_src);
        p.set_dst_addr(self.ip_dst);
        p.fill_checksum();
        if !self.ip_csum_ok {
            p.set_checksum(!p.checksum());
        }
        v
    }

    /// The Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let hdr = EthernetFrame::<&[u8]>::HEADER_LEN;
        let mut v = match &self.l3 {
            L3::Arp {
                op,
                sender_hw,
                sender_ip,
                target_hw,
                target_ip,
            } => {
                let mut v = vec![0u8; ARP_FRAME_LEN];
                write_arp(
                    &mut v,
                    *op,
                    self.eth_src,
                    self.eth_dst,
                    *sender_hw,
                    *sender_ip,
                    *target_hw,
                    *target_ip,
                )
                .expect("buffer sized for ARP");
                v
            }
            L3::Ipv4 => {
                let mut v = vec![0u8; hdr];
                v.extend_from_slice(&self.build_ipv4());
                v
            }
            L3::None => {
                let mut v = vec![0u8; hdr];
                v.extend_from_slice(&self.payload);
                v
            }
        };
        let ethertype = self.ethertype.unwrap_or(match self.l3 {
            L3::Arp { .. } => EtherType::ARP,
            _ => EtherType::IPV4,
        });
        let mut e = EthernetFrame::new_unchecked(&mut v[..]);
        e.set_dst(self.eth_dst);
        e.set_src(self.eth_src);
        e.set_ethertype(ethertype);
        if self.pad60 && v.len() < EthernetFrame::<&[u8]>::MIN_LEN {
            v.resize(EthernetFrame::<&[u8]>::MIN_LEN, 0);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ArpPacket;

    const A: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const B: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 3);

    fn ip_of(f: &[u8]) -> Ipv4Packet<&[u8]> {
        let e = EthernetFrame::new_checked(f).unwrap();
        assert_eq!(e.ethertype(), EtherType::IPV4);
        Ipv4Packet::new_checked(&f[14..]).unwrap()
    }

    #[test]
    fn tcp_frame() {
        let f = PacketBuilder::new()
            .eth(MacAddr([1; 6]), MacAddr([2; 6]))
            .ipv4(A, B)
            .ttl(33)
            .ident(0x4242)
            .dont_frag(false)
            .tos(0x10)
            .tcp(40000, 443)
            .flags(TcpFlags::SYN)
            .seq(0xdeadbeef)
            .ack(7)
            .window(1000)
            .tcp_options(&[2, 4, 5, 0xb4, 1])
            .payload(b"hello")
            .build();
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((e.src(), e.dst()), (MacAddr([1; 6]), MacAddr([2; 6])));
        let ip = ip_of(&f);
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.ttl(), ip.ident(), ip.dont_frag(), ip.dscp_ecn()),
            (33, 0x4242, false, 0x10)
        );
        assert_eq!(ip.protocol(), IpProtocol::TCP);
        assert_eq!((ip.src_addr(), ip.dst_addr()), (A, B));
        assert_eq!(usize::from(ip.total_len()), f.len() - 14);
        let t = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(A, B));
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq(), t.ack()),
            (40000, 443, 0xdeadbeef, 7)
        );
        assert_eq!(
            (t.flags(), t.window(), t.header_len()),
            (TcpFlags::SYN, 1000, 28)
        );
        assert_eq!(t.options(), &[2, 4, 5, 0xb4, 1, 0, 0, 0]);
        assert_eq!(t.payload(), b"hello");
    }

    #[test]
    fn udp_frame_padded() {
        let f = PacketBuilder::new()
            .ipv4(A, B)
            .udp(5353, 53)
            .payload(b"q")
            .pad60()
            .build();
        assert_eq!(f.len(), 60);
        let ip = ip_of(&f);
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), 20 + 8 + 1);
        let u = UdpDatagram::new_checked(ip.payload()).unwrap();
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(A, B));
        assert_eq!(u.payload(), b"q");
        let f = PacketBuilder::new()
            .ipv4(A, B)
            .udp(1, 2)
            .udp_zero_checksum()
            .build();
        let ip = ip_of(&f);
        assert_eq!(
            UdpDatagram::new_checked(ip.payload()).unwrap().checksum(),
            0
        );
    }

    #[test]
    fn icmp_frames() {
        let f = PacketBuilder::new()
            .ipv4(A, B)
            .ttl(1)
            .icmp_echo(7, 9, b"ping")
            .build();
        let ip = ip_of(&f);
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!(
            (m.msg_type(), m.echo_ident(), m.echo_seq()),
            (icmp::ECHO_REQUEST, 7, 9)
        );
        assert_eq!(m.payload(), b"ping");
        let f = PacketBuilder::new().icmp_echo_reply(1, 2, b"odd").build();
        let ip = ip_of(&f);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!(m.msg_type(), icmp::ECHO_REPLY);

        // Frag-needed quoting a TCP packet.
        let inner = PacketBuilder::new().ipv4(B, A).tcp(80, 40000).build_ipv4();
        let f = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(10, 9, 9, 9), B)
            .icmp(icmp::DEST_UNREACH, icmp::CODE_FRAG_NEEDED, 1400)
            .payload(&inner[..28])
            .build();
        let ip = ip_of(&f);
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!(m.next_hop_mtu(), 1400);
        let q = Ipv4Packet::new_checked_truncated(m.payload()).unwrap();
        assert_eq!((q.src_addr(), q.dst_addr(), q.payload().len()), (B, A, 8));
        assert!(Ipv4Packet::new_checked(m.payload()).is_err());
    }

    #[test]
    fn raw_ipip_options_fragments_and_bad_checksums() {
        let inner = PacketBuilder::new().ipv4(A, B).udp(1, 2).build_ipv4();
        let f = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2))
            .raw(IpProtocol::IPIP)
            .payload(&inner)
            .ip_options(&[1, 1, 1])
            .more_frags(true)
            .frag_offset(64)
            .build();
        let ip = ip_of(&f);
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), IpProtocol::IPIP);
        assert_eq!(ip.header_len(), 24);
        assert!(ip.is_fragment() && ip.more_frags());
        assert_eq!(ip.frag_offset(), 64);
        assert_eq!(ip.payload(), &inner[..]);

        let f = PacketBuilder::new()
            .tcp(1, 2)
            .bad_ip_checksum()
            .bad_l4_checksum()
            .build();
        let ip = ip_of(&f);
        assert!(!ip.verify_checksum());
        let t = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(!t.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let f = PacketBuilder::new().udp(1, 2).bad_l4_checksum().build();
        let ip = ip_of(&f);
        let u = UdpDatagram::new_checked(ip.payload()).unwrap();
        assert!(!u.verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn arp_frames() {
        let me = MacAddr([2, 0, 0, 0, 0, 9]);
        let f = PacketBuilder::new().arp_request(me, A, B).pad60().build();
        assert_eq!(f.len(), 60);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (e.ethertype(), e.dst(), e.src()),
            (EtherType::ARP, MacAddr::BROADCAST, me)
        );
        let a = ArpPacket::new_checked(e.payload()).unwrap();
        assert_eq!(a.operation(), ArpOp::REQUEST);
        assert_eq!((a.sender_hw(), a.sender_ip(), a.target_ip()), (me, A, B));
        let peer = MacAddr([2, 0, 0, 0, 0, 7]);
        let f = PacketBuilder::new().arp_reply(me, A, peer, B).build();
        assert_eq!(f.len(), 42);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst(), peer);
        let a = ArpPacket::new_checked(e.payload()).unwrap();
        assert_eq!((a.operation(), a.target_hw()), (ArpOp::REPLY, peer));
    }

    #[test]
    fn no_l3_and_ethertype_override() {
        let f = PacketBuilder::new()
            .no_l3()
            .ethertype(EtherType::IPV6)
            .payload(&[1, 2])
            .build();
        assert_eq!(f.len(), 16);
        assert_eq!(
            EthernetFrame::new_checked(&f[..]).unwrap().ethertype(),
            EtherType::IPV6
        );
    }
}
