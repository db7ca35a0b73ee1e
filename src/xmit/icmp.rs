//! ICMP errors the director originates about a packet it cannot forward,
//! built in place over that packet's own buffer (no allocation): the
//! original IP header and the start of its payload become the ICMP message's
//! quoted datagram, as RFC 792/1812 require.

use std::net::Ipv4Addr;

use crate::io::Frame;
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::{icmp, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, MacAddr};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// IPv4 + ICMP headers added in front of the quoted datagram.
const ADDED: usize = 20 + 8;
/// Whole ICMP error datagram at most 576 bytes (RFC 1812 4.3.2.3).
const MAX_IP: usize = 576;

/// Turn the frame (an Ethernet/IPv4 packet received from `client_mac`) into
/// an ICMP error of `msg_type`/`code` with `rest` (e.g. the next-hop MTU)
/// from `src` back to the packet's source. The caller sends it out of the
/// port it came in on, from `port_mac`. Returns false if the frame is not a
/// well-formed IPv4 packet or lacks headroom.
pub fn error_in_place<F: Frame>(
    frame: &mut F,
    src: Ipv4Addr,
    port_mac: MacAddr,
    msg_type: u8,
    code: u8,
    rest: u32,
) -> bool {
    let (client_mac, orig_src, orig_len) = {
        let d = frame.data();
        let Ok(eth) = EthernetFrame::new_checked(d) else {
            return false;
        };
        let Ok(ip) = Ipv4Packet::new_checked(&d[ETH..]) else {
            return false;
        };
        (eth.src(), ip.src_addr(), ip.total_len() as usize)
    };
    let quoted = orig_len.min(MAX_IP - ADDED);
    frame.truncate(ETH + quoted);
    if !frame.prepend(ADDED) {
        return false;
    }
    let data = frame.data_mut();
    {
        let mut eth = EthernetFrame::new_unchecked(&mut data[..ETH]);
        eth.set_dst(client_mac);
        eth.set_src(port_mac);
        eth.set_ethertype(crate::wire::EtherType::IPV4);
    }
    let ip_len = ADDED + quoted;
    let mut ip = Ipv4Packet::new_unchecked(&mut data[ETH..ETH + ip_len]);
    ip.set_header_len(20);
    ip.set_dscp_ecn(0xc0); // internetwork control, as Linux sends ICMP errors
    ip.set_total_len(ip_len as u16);
    ip.set_ident(0);
    ip.set_frag_offset(0);
    ip.set_more_frags(false);
    ip.set_dont_frag(false);
    ip.set_ttl(DEFAULT_TTL);
    ip.set_protocol(IpProtocol::ICMP);
    ip.set_src_addr(src);
    ip.set_dst_addr(orig_src);
    ip.fill_checksum();
    let mut ic = Icmpv4Packet::new_unchecked(ip.payload_mut());
    ic.set_msg_type(msg_type);
    ic.set_code(code);
    ic.set_rest_of_header(rest);
    ic.fill_checksum();
    true
}

/// "Fragmentation needed and DF set" with the next-hop MTU.
pub fn frag_needed<F: Frame>(frame: &mut F, src: Ipv4Addr, port_mac: MacAddr, mtu: u16) -> bool {
    error_in_place(
        frame,
        src,
        port_mac,
        icmp::DEST_UNREACH,
        icmp::CODE_FRAG_NEEDED,
        mtu as u32,
    )
}

/// ICMP types that quote an offending datagram (RFC 792): destination
/// unreachable, source quench, time exceeded, parameter problem.
pub fn is_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 11 | 12)
}

/// The flow an ICMP error is about, seen from the error's direction: the
/// quoted datagram's endpoints reversed (the quoted packet travelled the
/// other way). `None` if the message does not quote a TCP/UDP header.
pub fn quoted_flow(ip: &[u8]) -> Option<(u8, Ipv4Addr, u16, Ipv4Addr, u16)> {
    let outer = Ipv4Packet::new_checked(ip).ok()?;
    let ic = Icmpv4Packet::new_checked(outer.payload()).ok()?;
    if !is_error(ic.msg_type()) {
        return None;
    }
    let inner = Ipv4Packet::new_checked_truncated(ic.payload()).ok()?;
    let p = inner.protocol();
    if p != IpProtocol::TCP && p != IpProtocol::UDP {
        return None;
    }
    let l4 = inner.payload();
    if l4.len() < 4 {
        return None;
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    // reversed: from the quoted packet's destination to its source
    Some((p.0, inner.dst_addr(), dport, inner.src_addr(), sport))
}

/// Rewrite an ICMP error in place (as the kernel's `ip_vs_nat_icmp`): the
/// outer source and/or destination, and the quoted datagram's addresses and
/// ports, each `Some` replacing what is there. The quoted header's checksum
/// is recomputed, as is the ICMP checksum and the outer header's (after a
/// TTL decrement); the quoted L4 checksum is left as it was, as the kernel
/// leaves it (it usually is not quoted whole anyway).
pub fn rewrite_error(
    ip: &mut [u8],
    outer_src: Option<Ipv4Addr>,
    outer_dst: Option<Ipv4Addr>,
    quoted_src: Option<(Ipv4Addr, u16)>,
    quoted_dst: Option<(Ipv4Addr, u16)>,
) -> Result<(), crate::wire::WireError> {
    let mut outer = Ipv4Packet::new_checked(ip)?;
    outer.dec_ttl_inc();
    if let Some(a) = outer_src {
        outer.set_src_addr_inc(a);
    }
    if let Some(a) = outer_dst {
        outer.set_dst_addr_inc(a);
    }
    {
        let mut ic = Icmpv4Packet::new_checked(outer.payload_mut())?;
        let mut inner = Ipv4Packet::new_checked_truncated(ic.payload_mut())?;
        if let Some((a, _)) = quoted_src {
            inner.set_src_addr(a);
        }
        if let Some((a, _)) = quoted_dst {
            inner.set_dst_addr(a);
        }
        inner.fill_checksum();
        let l4 = inner.payload_mut();
        if l4.len() >= 4 {
            if let Some((_, p)) = quoted_src {
                l4[0..2].copy_from_slice(&p.to_be_bytes());
            }
            if let Some((_, p)) = quoted_dst {
                l4[2..4].copy_from_slice(&p.to_be_bytes());
            }
        }
        ic.fill_checksum();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::VecFrame;
    use crate::wire::{PacketBuilder, TcpFlags};

    #[test]
    fn frag_needed_quotes_the_packet_and_carries_the_mtu() {
        let cmac = MacAddr([2, 0, 0, 0, 0, 2]);
        let orig = PacketBuilder::new()
            .eth(cmac, MacAddr([2, 0, 0, 0, 0, 1]))
            .ipv4("10.0.1.2".parse().unwrap(), "10.0.1.100".parse().unwrap())
            .tcp(40000, 80)
            .flags(TcpFlags::ACK)
            .payload(&[7u8; 1460])
            .build();
        let mut f = VecFrame::from_bytes(&orig);
        let pmac = MacAddr([2, 0, 0, 0, 0, 9]);
        assert!(frag_needed(&mut f, "10.0.1.1".parse().unwrap(), pmac, 1480));
        let d = f.data();
        assert_eq!(d.len(), 14 + 576);
        assert_eq!((&d[0..6], &d[6..12]), (&cmac.0[..], &pmac.0[..]));
        let ip = Ipv4Packet::new_checked(&d[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.protocol()),
            (
                "10.0.1.1".parse().unwrap(),
                "10.0.1.2".parse().unwrap(),
                IpProtocol::ICMP
            )
        );
        let ic = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(ic.verify_checksum());
        assert_eq!((ic.msg_type(), ic.code(), ic.next_hop_mtu()), (3, 4, 1480));
        assert_eq!(
            ic.payload(),
            &orig[14..14 + 548],
            "original IP header and payload start quoted"
        );
    }

    #[test]
    fn small_packets_are_quoted_whole() {
        let orig = PacketBuilder::new().tcp(1, 2).build();
        let mut f = VecFrame::from_bytes(&orig);
        assert!(frag_needed(
            &mut f,
            "10.0.1.1".parse().unwrap(),
            MacAddr::ZERO,
            1000
        ));
        assert_eq!(f.data().len(), orig.len() + 28);
        assert!(!frag_needed(
            &mut VecFrame::from_bytes(&[0u8; 20]),
            "10.0.1.1".parse().unwrap(),
            MacAddr::ZERO,
            1
        ));
    }
}
