//! Direct routing (LVS-DR, `-g`): the IP packet is not touched at all; only
//! the Ethernet destination changes to the real server's MAC (set by the data
//! path's next-hop step). The real server holds the VIP on a non-ARPing
//! interface and replies straight to the client, so the director sees only
//! the inbound direction. No TTL change, as in the kernel (IPVS forwards
//! from LOCAL_IN, not as a router).

use std::net::Ipv4Addr;

use super::{ip_of, ttl_of, Egress, XmitError};
use crate::conn::{Conn, Dir};
use crate::io::Frame;
use crate::wire::{Ipv4Packet, WireError};

/// The mode's entry (see [`super::transmit`]): inbound only.
pub fn xmit<F: Frame>(
    frame: &mut F,
    c: &Conn,
    dir: Dir,
    _eg: &Egress,
) -> Result<Ipv4Addr, XmitError> {
    if dir != Dir::In {
        return Err(XmitError::Unsupported);
    }
    // No TTL change, but a TTL-0 datagram is never sent.
    if ttl_of(frame) == 0 {
        return Err(XmitError::TtlExceeded);
    }
    forward(ip_of(frame)?, c)?;
    Ok(c.dip)
}

/// Client to real server: nothing to rewrite, only checked.
pub fn forward(ip: &mut [u8], _c: &Conn) -> Result<(), WireError> {
    Ipv4Packet::new_checked(&*ip).map(|_| ())
}
