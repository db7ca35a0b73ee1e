//! Direct routing (LVS-DR, `-g`): the IP packet is not touched at all; only
//! the Ethernet destination changes to the real server's MAC (set by the data
//! path's next-hop step). The real server holds the VIP on a non-ARPing
//! interface and replies straight to the client, so the director sees only
//! the inbound direction. No TTL change, as in the kernel (IPVS forwards
//! from LOCAL_IN, not as a router).

use crate::conn::Conn;
use crate::wire::{Ipv4Packet, WireError};

/// Client to real server: nothing to rewrite, only checked.
pub fn forward(ip: &mut [u8], _c: &Conn) -> Result<(), WireError> {
    Ipv4Packet::new_checked(&*ip).map(|_| ())
}
