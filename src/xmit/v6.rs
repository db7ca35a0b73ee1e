//! The forwarding modes for IPv6 connections: the same rewrites as the
//! IPv4 modes, on the IPv6 header and the upper-layer header wherever the
//! extension headers put it. There is no header checksum; the TCP/UDP
//! checksum covers the pseudo-header's addresses and is updated
//! incrementally (RFC 1624, word by word over the 128-bit addresses).
//!
//! - DR: nothing changes; only the Ethernet destination (the data path's
//!   next hop). Hop limit untouched, as the kernel's `ip_vs_dr_xmit_v6`,
//!   but a hop limit 0 datagram is never sent.
//! - NAT: inbound, the destination VIP:vport becomes RIP:rport; replies get
//!   their source turned back. The hop limit drops by one, as for IPv4's
//!   TTL in rvs's NAT; 1 cannot go on.
//! - FULLNAT: both ends, as for IPv4 (local address and port towards the
//!   real server). Without client-address delivery for IPv6 yet.
//!
//! TUN (IPv6 in IPv6) is not here yet: [`XmitError::Unsupported`].

use std::net::Ipv6Addr;

use super::XmitError;
use crate::conn::{Conn, Dir};
use crate::flow::Forward;
use crate::wire::checksum::update16;
use crate::wire::ipv6::{l4_update_addr_v6, next_header};
use crate::wire::WireError;

/// Which end of the packet to rewrite.
#[derive(Clone, Copy)]
enum End {
    Src,
    Dst,
}

/// Rewrite `ip` (the IPv6 packet, header first) for direction `dir` of the
/// IPv6 connection `c`. `l4` is where the TCP or UDP header starts in `ip`
/// and `proto` which it is. Returns the address whose next hop gets it.
pub fn transmit(
    ip: &mut [u8],
    l4: usize,
    proto: u8,
    c: &Conn,
    dir: Dir,
) -> Result<Ipv6Addr, XmitError> {
    let a = c.v6.ok_or(XmitError::NoRoute)?;
    let hops = *ip
        .get(7)
        .ok_or(XmitError::Malformed(WireError::Ipv6Truncated))?;
    match (c.fwd, dir) {
        (Forward::Dr, Dir::In | Dir::InOnly) => {
            if hops == 0 {
                return Err(XmitError::TtlExceeded);
            }
            Ok(a.dip)
        }
        (Forward::Nat | Forward::FullNat, Dir::In | Dir::Out) if hops <= 1 => {
            Err(XmitError::TtlExceeded)
        }
        (Forward::Nat, Dir::In) => {
            rewrite(ip, l4, proto, End::Dst, a.dip, c.dport)?;
            ip[7] -= 1;
            Ok(a.dip)
        }
        (Forward::Nat, Dir::Out) => {
            rewrite(ip, l4, proto, End::Src, a.vip, c.vport)?;
            ip[7] -= 1;
            Ok(a.cip)
        }
        (Forward::FullNat, Dir::In) => {
            let f = c.fnat.as_ref().ok_or(XmitError::Unsupported)?;
            rewrite(ip, l4, proto, End::Src, a.lip, f.lport)?;
            rewrite(ip, l4, proto, End::Dst, a.dip, c.dport)?;
            ip[7] -= 1;
            Ok(a.dip)
        }
        (Forward::FullNat, Dir::Out) => {
            rewrite(ip, l4, proto, End::Src, a.vip, c.vport)?;
            rewrite(ip, l4, proto, End::Dst, a.cip, c.cport)?;
            ip[7] -= 1;
            Ok(a.cip)
        }
        _ => Err(XmitError::Unsupported),
    }
}

/// One end's address and port, with the upper-layer checksum updated.
fn rewrite(
    ip: &mut [u8],
    l4: usize,
    proto: u8,
    end: End,
    addr: Ipv6Addr,
    port: u16,
) -> Result<(), WireError> {
    let (a_at, p_at) = match end {
        End::Src => (8, l4),
        End::Dst => (24, l4 + 2),
    };
    let c_at = match proto {
        next_header::TCP => l4 + 16,
        next_header::UDP => l4 + 6,
        _ => return Err(WireError::Ipv6Truncated),
    };
    if ip.len() < 40 || ip.len() < c_at + 2 || ip.len() < p_at + 2 {
        return Err(WireError::Ipv6Truncated);
    }
    let mut old = [0u8; 16];
    old.copy_from_slice(&ip[a_at..a_at + 16]);
    let old = Ipv6Addr::from(old);
    let old_port = u16::from_be_bytes([ip[p_at], ip[p_at + 1]]);
    let csum = u16::from_be_bytes([ip[c_at], ip[c_at + 1]]);
    let mut csum = update16(l4_update_addr_v6(csum, old, addr), old_port, port);
    // UDP over IPv6 must carry a checksum: a computed 0 is sent as 0xFFFF
    // (RFC 8200 8.1).
    if proto == next_header::UDP && csum == 0 {
        csum = 0xffff;
    }
    ip[a_at..a_at + 16].copy_from_slice(&addr.octets());
    ip[p_at..p_at + 2].copy_from_slice(&port.to_be_bytes());
    ip[c_at..c_at + 2].copy_from_slice(&csum.to_be_bytes());
    Ok(())
}
