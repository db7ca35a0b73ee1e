//! Forwarding modes: each rewrites (or wraps) the IP packet of a frame for
//! one direction of a connection. Every mode has the same entry,
//! `xmit(frame, conn, dir, egress) -> Result<Ipv4Addr, XmitError>`, and
//! [`transmit`] picks the connection's; the Ok value is the address whose
//! next hop gets the frame. Mode code never routes to a MAC, frees or
//! transmits: the data path does that with what the mode returned.

use std::cell::Cell;
use std::net::Ipv4Addr;

use crate::conn::{Conn, Dir};
use crate::flow::Forward;
use crate::io::Frame;
use crate::neigh::Router;
use crate::wire::WireError;

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod nat;
pub mod nat64;
pub mod nat64_icmp;
pub mod tun;
pub mod v6;

/// Why a forwarding mode did not send a packet on. The data path turns
/// each into a drop reason, or (`FragNeeded`) into an ICMP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmitError {
    /// A header did not parse.
    Malformed(WireError),
    /// NAT and FULLNAT route: TTL 1 cannot go on. DR and TUN never send a
    /// TTL-0 datagram (RFC 1122 3.2.1.7).
    TtlExceeded,
    /// No room in the buffer for what the mode adds (TOA, PROXY v2, the
    /// tunnel header).
    NoRoom,
    /// Encapsulated, the packet exceeds the egress MTU with DF set: the
    /// client is told this next-hop MTU.
    FragNeeded(u16),
    /// Too big with DF clear (rvs does not fragment).
    TooBig,
    /// No route towards the real server, or not an IPv4 connection.
    NoRoute,
    /// The mode does not forward this direction (DR and TUN see no
    /// replies; Local connections go to the kernel untouched).
    Unsupported,
}

impl From<WireError> for XmitError {
    fn from(e: WireError) -> Self {
        XmitError::Malformed(e)
    }
}

/// What a mode needs besides the packet and its connection.
pub struct Egress<'a> {
    pub router: &'a Router,
    /// The worker's IPv4 identification counter (TUN's outer headers).
    pub ident: &'a Cell<u16>,
}

/// Rewrite `frame` for direction `dir` of `conn` in the connection's
/// forwarding mode.
#[inline(always)]
pub fn transmit<F: Frame>(
    frame: &mut F,
    conn: &Conn,
    dir: Dir,
    eg: &Egress,
) -> Result<Ipv4Addr, XmitError> {
    match conn.fwd {
        Forward::Nat => nat::xmit(frame, conn, dir, eg),
        Forward::Dr => dr::xmit(frame, conn, dir, eg),
        Forward::Tun => tun::xmit(frame, conn, dir, eg),
        Forward::FullNat => fullnat::xmit(frame, conn, dir, eg),
        Forward::Local => Err(XmitError::Unsupported),
    }
}

/// The IPv4 packet of an Ethernet frame, up to its total length (the
/// frame may carry padding).
#[inline(always)]
pub(crate) fn ip_of<F: Frame>(frame: &mut F) -> Result<&mut [u8], XmitError> {
    let data = frame.data_mut();
    let ip = data
        .get(ETH..ETH + 4)
        .ok_or(XmitError::Malformed(WireError::Ipv4Truncated))?;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    data.get_mut(ETH..ETH + total)
        .ok_or(XmitError::Malformed(WireError::Ipv4BadTotalLen))
}

/// The IPv4 TTL of a frame (0 when it has none).
#[inline(always)]
pub(crate) fn ttl_of<F: Frame>(frame: &F) -> u8 {
    frame.data().get(ETH + 8).copied().unwrap_or(0)
}

const ETH: usize = crate::wire::EthernetFrame::<&[u8]>::HEADER_LEN;
