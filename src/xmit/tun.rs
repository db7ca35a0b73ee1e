//! IP-in-IP tunnelling (LVS-TUN, `-i`): the client's packet is carried
//! unchanged inside a new IPv4 header from the director to the real server,
//! which decapsulates it and, holding the VIP itself, replies to the client
//! directly. As the kernel's `ip_vs_tunnel_xmit`: the outer header copies the
//! inner DS field, TTL and DF bit; it is protocol 4 (IPIP); its source is
//! the director's address on the egress port. A DF packet that would exceed
//! the egress MTU once encapsulated is refused with "fragmentation needed"
//! carrying MTU - 20, so the client's path MTU discovery shrinks its packets.

use std::net::Ipv4Addr;

use crate::io::Frame;
use crate::wire::{EthernetFrame, IpProtocol, Ipv4Packet, WireError};

/// Size of the added outer header.
pub const OVERHEAD: usize = 20;
const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

/// Why a packet could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunError {
    /// Too big for the egress MTU with DF set: answer with this next-hop MTU.
    FragNeeded(u16),
    /// Too big with DF clear: the kernel would fragment the outer packet;
    /// rvs does not fragment, so it is dropped and counted.
    TooBig,
    /// No headroom in the buffer.
    NoHeadroom,
    Malformed(WireError),
}

/// Encapsulate the IPv4 packet of an Ethernet frame for `rip`. The frame's
/// Ethernet header moves to the front; its addresses are set later by the
/// next-hop step. `mtu` is the egress port's IP MTU.
pub fn encapsulate<F: Frame>(
    frame: &mut F,
    src: Ipv4Addr,
    rip: Ipv4Addr,
    mtu: u16,
    ident: u16,
) -> Result<(), TunError> {
    let (tos, ttl, df, inner_len) = {
        let ip = Ipv4Packet::new_checked(&frame.data()[ETH..]).map_err(TunError::Malformed)?;
        (
            ip.dscp_ecn(),
            ip.ttl(),
            ip.dont_frag(),
            ip.total_len() as usize,
        )
    };
    let outer_len = inner_len + OVERHEAD;
    if outer_len > mtu as usize {
        return Err(if df {
            TunError::FragNeeded(mtu.saturating_sub(OVERHEAD as u16))
        } else {
            TunError::TooBig
        });
    }
    // Drop Ethernet padding past the inner packet before growing.
    frame.truncate(ETH + inner_len);
    if !frame.prepend(OVERHEAD) {
        return Err(TunError::NoHeadroom);
    }
    let data = frame.data_mut();
    // Ethernet header: move it to the new front (addresses come later).
    data.copy_within(OVERHEAD..OVERHEAD + ETH, 0);
    let mut outer = Ipv4Packet::new_unchecked(&mut data[ETH..ETH + outer_len]);
    outer.set_header_len(20);
    outer.set_dscp_ecn(tos);
    outer.set_total_len(outer_len as u16);
    outer.set_ident(ident);
    outer.set_frag_offset(0);
    outer.set_more_frags(false);
    outer.set_dont_frag(df);
    outer.set_ttl(ttl);
    outer.set_protocol(IpProtocol::IPIP);
    outer.set_src_addr(src);
    outer.set_dst_addr(rip);
    outer.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::VecFrame;
    use crate::wire::{checksum, PacketBuilder, TcpFlags};

    fn inner(df: bool, payload: usize) -> Vec<u8> {
        PacketBuilder::new()
            .ipv4("192.0.2.7".parse().unwrap(), "10.0.0.100".parse().unwrap())
            .ttl(61)
            .tos(0xb8)
            .ident(777)
            .dont_frag(df)
            .tcp(40000, 80)
            .flags(TcpFlags::ACK)
            .payload(&vec![0x5a; payload])
            .build()
    }

    #[test]
    fn outer_header_field_by_field_and_inner_untouched() {
        let frame = inner(true, 100);
        let mut f = VecFrame::from_bytes(&frame);
        encapsulate(
            &mut f,
            "10.0.1.1".parse().unwrap(),
            "10.0.1.11".parse().unwrap(),
            1500,
            4242,
        )
        .unwrap();
        let d = f.data();
        assert_eq!(d.len(), frame.len() + 20);
        assert_eq!(&d[..14], &frame[..14], "Ethernet header kept at the front");
        assert_eq!(&d[34..], &frame[14..], "inner packet byte for byte");
        let o = &d[14..34];
        assert_eq!(o[0], 0x45, "version 4, IHL 5");
        assert_eq!(o[1], 0xb8, "DS field copied");
        assert_eq!(
            u16::from_be_bytes([o[2], o[3]]) as usize,
            frame.len() - 14 + 20,
            "total length"
        );
        assert_eq!(u16::from_be_bytes([o[4], o[5]]), 4242, "ident");
        assert_eq!(
            u16::from_be_bytes([o[6], o[7]]),
            0x4000,
            "DF copied, no fragment"
        );
        assert_eq!(o[8], 61, "TTL copied");
        assert_eq!(o[9], 4, "protocol IPIP");
        assert_eq!(&o[12..16], &[10, 0, 1, 1]);
        assert_eq!(&o[16..20], &[10, 0, 1, 11]);
        let mut h = o.to_vec();
        h[10] = 0;
        h[11] = 0;
        assert_eq!(
            checksum::fold(checksum::sum(&h)),
            u16::from_be_bytes([o[10], o[11]])
        );
    }

    #[test]
    fn without_df_the_outer_header_has_none_and_padding_is_dropped() {
        let mut frame = inner(false, 0);
        frame.resize(64, 0); // Ethernet padding
        let ip_len = 40;
        let mut f = VecFrame::from_bytes(&frame);
        encapsulate(
            &mut f,
            "10.0.1.1".parse().unwrap(),
            "10.0.1.11".parse().unwrap(),
            1500,
            1,
        )
        .unwrap();
        assert_eq!(f.data().len(), 14 + 20 + ip_len);
        assert_eq!(u16::from_be_bytes([f.data()[20], f.data()[21]]), 0);
    }

    #[test]
    fn df_packet_over_mtu_asks_for_fragmentation_needed() {
        let frame = inner(true, 1500 - 40);
        let mut f = VecFrame::from_bytes(&frame);
        let r = encapsulate(
            &mut f,
            "10.0.1.1".parse().unwrap(),
            "10.0.1.11".parse().unwrap(),
            1500,
            1,
        );
        assert_eq!(r, Err(TunError::FragNeeded(1480)));
        assert_eq!(f.data(), &frame[..], "frame untouched");
        // Exactly fitting: 1480 inner + 20 = 1500.
        let frame = inner(true, 1480 - 40);
        let mut f = VecFrame::from_bytes(&frame);
        assert!(encapsulate(
            &mut f,
            "10.0.1.1".parse().unwrap(),
            "10.0.1.11".parse().unwrap(),
            1500,
            1
        )
        .is_ok());
    }
}
