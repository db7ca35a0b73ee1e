//! LVS-NAT: inbound, the destination VIP:vport becomes RIP:rport; replies
//! from the real server get their source RIP:rport turned back into
//! VIP:vport. Checksums are updated incrementally (RFC 1624) and the TTL is
//! decremented as a router would, so a packet with a bad checksum stays bad.

use std::net::Ipv4Addr;

use super::{ip_of, ttl_of, Egress, XmitError};
use crate::conn::{Conn, Dir};
use crate::io::Frame;
use crate::wire::{IpProtocol, Ipv4Packet, TcpSegment, UdpDatagram, WireError};

/// Which end of the packet to rewrite.
#[derive(Clone, Copy)]
enum End {
    Dst,
    Src,
}

fn rewrite(ip: &mut [u8], end: End, addr: Ipv4Addr, port: u16) -> Result<(), WireError> {
    let mut p = Ipv4Packet::new_checked(ip)?;
    p.dec_ttl_inc();
    let old = match end {
        End::Dst => p.dst_addr(),
        End::Src => p.src_addr(),
    };
    match end {
        End::Dst => p.set_dst_addr_inc(addr),
        End::Src => p.set_src_addr_inc(addr),
    }
    let proto = p.protocol();
    let l4 = p.payload_mut();
    if proto == IpProtocol::TCP {
        let mut t = TcpSegment::new_checked(l4)?;
        t.update_checksum_addr(old, addr);
        match end {
            End::Dst => t.set_dst_port_inc(port),
            End::Src => t.set_src_port_inc(port),
        }
    } else if proto == IpProtocol::UDP {
        let mut u = UdpDatagram::new_checked(l4)?;
        u.update_checksum_addr(old, addr);
        match end {
            End::Dst => u.set_dst_port_inc(port),
            End::Src => u.set_src_port_inc(port),
        }
    }
    Ok(())
}

/// The mode's entry (see [`super::transmit`]): inbound to the real server,
/// replies to the client.
#[inline(always)]
pub fn xmit<F: Frame>(
    frame: &mut F,
    c: &Conn,
    dir: Dir,
    _eg: &Egress,
) -> Result<Ipv4Addr, XmitError> {
    // NAT routes like a router: TTL 1 cannot go on.
    if ttl_of(frame) <= 1 {
        return Err(XmitError::TtlExceeded);
    }
    let ip = ip_of(frame)?;
    match dir {
        Dir::In => {
            forward(ip, c)?;
            Ok(c.dip)
        }
        Dir::Out => {
            reply(ip, c)?;
            Ok(c.cip)
        }
        Dir::InOnly => Err(XmitError::Unsupported),
    }
}

/// Client to real server: destination VIP:vport -> RIP:rport, TTL - 1.
pub fn forward(ip: &mut [u8], c: &Conn) -> Result<(), WireError> {
    rewrite(ip, End::Dst, c.dip, c.dport)
}

/// Real server to client: source RIP:rport -> VIP:vport, TTL - 1.
pub fn reply(ip: &mut [u8], c: &Conn) -> Result<(), WireError> {
    rewrite(ip, End::Src, c.vip, c.vport)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnTable, NewConn};
    use crate::flow::{Forward, Proto};
    use crate::service::{DestState, ServiceState};
    use crate::wire::{checksum, PacketBuilder, TcpFlags};

    fn conn(proto: Proto) -> Conn<'static> {
        // A table per test connection, leaked: tests only.
        let t: &'static ConnTable = Box::leak(Box::new(ConnTable::new(4, 1)));
        let n = NewConn::new(
            proto,
            ("192.0.2.7".parse().unwrap(), 40001),
            ("10.0.0.100".parse().unwrap(), 80),
            ("10.0.1.11".parse().unwrap(), 8080),
            Forward::Nat,
            &DestState::default(),
            &ServiceState::default(),
        );
        t.insert(n, 0, 0).unwrap()
    }

    /// Independent check: recompute every checksum from scratch.
    fn assert_checksums_valid(ip: &[u8]) {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        let mut hdr = p.header().to_vec();
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(
            checksum::fold(checksum::sum(&hdr)),
            p.checksum(),
            "IPv4 header checksum"
        );
        let l4 = p.payload();
        let proto = p.protocol().0;
        let mut seg = l4.to_vec();
        let off = if proto == 6 { 16 } else { 6 };
        let stored = u16::from_be_bytes([seg[off], seg[off + 1]]);
        seg[off] = 0;
        seg[off + 1] = 0;
        let mut want = checksum::l4_checksum_v4(p.src_addr(), p.dst_addr(), proto, &seg);
        if proto == 17 && want == 0 {
            want = 0xffff;
        }
        assert_eq!(stored, want, "L4 checksum");
    }

    /// Golden frames: (description, input IP packet, expected IP packet).
    #[test]
    fn golden_nat_rewrites_both_directions() {
        // (description, protocol, inbound?, input, expected)
        type Case = (&'static str, Proto, bool, Vec<u8>, Vec<u8>);
        let cases: Vec<Case> = vec![
            (
                "tcp syn in",
                Proto::Tcp,
                true,
                PacketBuilder::new()
                    .ipv4("192.0.2.7".parse().unwrap(), "10.0.0.100".parse().unwrap())
                    .ttl(crate::wire::ipv4::DEFAULT_TTL)
                    .tcp(40001, 80)
                    .flags(TcpFlags::SYN)
                    .seq(1000)
                    .build_ipv4(),
                PacketBuilder::new()
                    .ipv4("192.0.2.7".parse().unwrap(), "10.0.1.11".parse().unwrap())
                    .ttl(63)
                    .tcp(40001, 8080)
                    .flags(TcpFlags::SYN)
                    .seq(1000)
                    .build_ipv4(),
            ),
            (
                "tcp data reply",
                Proto::Tcp,
                false,
                PacketBuilder::new()
                    .ipv4("10.0.1.11".parse().unwrap(), "192.0.2.7".parse().unwrap())
                    .ttl(crate::wire::ipv4::DEFAULT_TTL)
                    .tcp(8080, 40001)
                    .flags(TcpFlags::ACK | TcpFlags::PSH)
                    .payload(b"HTTP/1.1 200 OK\r\n\r\nhello")
                    .build_ipv4(),
                PacketBuilder::new()
                    .ipv4("10.0.0.100".parse().unwrap(), "192.0.2.7".parse().unwrap())
                    .ttl(63)
                    .tcp(80, 40001)
                    .flags(TcpFlags::ACK | TcpFlags::PSH)
                    .payload(b"HTTP/1.1 200 OK\r\n\r\nhello")
                    .build_ipv4(),
            ),
            (
                "udp in",
                Proto::Udp,
                true,
                PacketBuilder::new()
                    .ipv4("192.0.2.7".parse().unwrap(), "10.0.0.100".parse().unwrap())
                    .udp(40001, 80)
                    .payload(b"query")
                    .build_ipv4(),
                PacketBuilder::new()
                    .ipv4("192.0.2.7".parse().unwrap(), "10.0.1.11".parse().unwrap())
                    .ttl(63)
                    .udp(40001, 8080)
                    .payload(b"query")
                    .build_ipv4(),
            ),
            (
                "udp reply without checksum keeps zero",
                Proto::Udp,
                false,
                PacketBuilder::new()
                    .ipv4("10.0.1.11".parse().unwrap(), "192.0.2.7".parse().unwrap())
                    .udp(8080, 40001)
                    .udp_zero_checksum()
                    .payload(b"answer")
                    .build_ipv4(),
                PacketBuilder::new()
                    .ipv4("10.0.0.100".parse().unwrap(), "192.0.2.7".parse().unwrap())
                    .ttl(63)
                    .udp(80, 40001)
                    .udp_zero_checksum()
                    .payload(b"answer")
                    .build_ipv4(),
            ),
        ];
        for (desc, proto, inbound, input, expected) in cases {
            let c = conn(proto);
            let mut pkt = input.clone();
            if inbound {
                forward(&mut pkt, &c).unwrap();
            } else {
                reply(&mut pkt, &c).unwrap();
            }
            assert_eq!(pkt, expected, "{desc}");
            if !desc.contains("without checksum") {
                assert_checksums_valid(&pkt);
            }
        }
    }

    #[test]
    fn bad_checksum_stays_bad() {
        let c = conn(Proto::Tcp);
        let mut pkt = PacketBuilder::new()
            .ipv4("192.0.2.7".parse().unwrap(), "10.0.0.100".parse().unwrap())
            .tcp(40001, 80)
            .bad_l4_checksum()
            .build_ipv4();
        forward(&mut pkt, &c).unwrap();
        let p = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        let t = TcpSegment::new_checked(p.payload()).unwrap();
        assert!(!t.verify_checksum(p.src_addr(), p.dst_addr()));
    }

    #[test]
    fn truncated_l4_is_an_error_not_a_panic() {
        let c = conn(Proto::Tcp);
        let full = PacketBuilder::new().tcp(40001, 80).build_ipv4();
        for n in 0..full.len() {
            let mut p = full[..n].to_vec();
            let _ = forward(&mut p, &c);
            let _ = reply(&mut p, &c);
        }
    }
}
