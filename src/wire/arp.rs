//! ARP for Ethernet/IPv4 (RFC 826). Other hardware/protocol types are refused
//! at parse time, so accessors can assume 6-byte MACs and 4-byte addresses.

use std::net::Ipv4Addr;

use super::ethernet::{EtherType, EthernetFrame, MacAddr};
use super::{get_u16, put_u16, WireError};

/// The ARP operation field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpOp(pub u16);

impl ArpOp {
    pub const REQUEST: ArpOp = ArpOp(1);
    pub const REPLY: ArpOp = ArpOp(2);
}

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

const HTYPE_ETHERNET: u16 = 1;

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const LEN: usize = 28;

    pub fn new_unchecked(buf: T) -> Self {
        ArpPacket { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < Self::LEN {
            return Err(WireError::ArpTruncated);
        }
        if get_u16(b, field::HTYPE) != HTYPE_ETHERNET
            || get_u16(b, field::PTYPE) != EtherType::IPV4.0
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::ArpUnsupported);
        }
        Ok(ArpPacket { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn operation(&self) -> ArpOp {
        ArpOp(get_u16(self.buf.as_ref(), field::OPER))
    }

    fn mac_at(&self, at: usize) -> MacAddr {
        let mut a = [0u8; 6];
        a.copy_from_slice(&self.buf.as_ref()[at..at + 6]);
        MacAddr(a)
    }

    fn ip_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    pub fn sender_hw(&self) -> MacAddr {
        self.mac_at(field::SHA)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip_at(field::SPA)
    }

    pub fn target_hw(&self) -> MacAddr {
        self.mac_at(field::THA)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip_at(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Write htype/ptype/hlen/plen for Ethernet/IPv4.
    pub fn fill_fixed(&mut self) {
        let b = self.buf.as_mut();
        put_u16(b, field::HTYPE, HTYPE_ETHERNET);
        put_u16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    pub fn set_operation(&mut self, op: ArpOp) {
        put_u16(self.buf.as_mut(), field::OPER, op.0);
    }

    pub fn set_sender_hw(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SHA..field::SHA + 6].copy_from_slice(&m.0);
    }

    pub fn set_sender_ip(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SPA..field::SPA + 4].copy_from_slice(&a.octets());
    }

    pub fn set_target_hw(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::THA..field::THA + 6].copy_from_slice(&m.0);
    }

    pub fn set_target_ip(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::TPA..field::TPA + 4].copy_from_slice(&a.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

/// Length of an Ethernet + ARP frame before padding.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// Write an Ethernet + ARP frame at the start of `buf` and return its length
/// (42). Bytes after that are untouched; pad to 60 if the device wants it.
#[allow(clippy::too_many_arguments)]
pub fn write_arp(
    buf: &mut [u8],
    op: ArpOp,
    src_mac: MacAddr,
    dst_mac_eth: MacAddr,
    sender_hw: MacAddr,
    sender_ip: Ipv4Addr,
    target_hw: MacAddr,
    target_ip: Ipv4Addr,
) -> Result<usize, WireError> {
    let buf = buf
        .get_mut(..ARP_FRAME_LEN)
        .ok_or(WireError::BufferTooSmall)?;
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    eth.set_dst(dst_mac_eth);
    eth.set_src(src_mac);
    eth.set_ethertype(EtherType::ARP);
    let mut arp = ArpPacket::new_unchecked(eth.payload_mut());
    arp.fill_fixed();
    arp.set_operation(op);
    arp.set_sender_hw(sender_hw);
    arp.set_sender_ip(sender_ip);
    arp.set_target_hw(target_hw);
    arp.set_target_ip(target_ip);
    Ok(ARP_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 60];
        let n = write_arp(
            &mut b,
            ArpOp::REQUEST,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr::BROADCAST,
            MacAddr([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 0, 0, 1),
            MacAddr::ZERO,
            Ipv4Addr::new(10, 0, 0, 2),
        )
        .unwrap();
        assert_eq!(n, 42);
        b
    }

    #[test]
    fn write_and_parse() {
        let b = sample();
        // Known bytes (tcpdump-style layout).
        assert_eq!(&b[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        let eth = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(eth.ethertype(), EtherType::ARP);
        let arp = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(arp.operation(), ArpOp::REQUEST);
        assert_eq!(arp.sender_hw(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(arp.target_hw(), MacAddr::ZERO);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn setters() {
        let mut b = sample();
        let mut arp = ArpPacket::new_checked(&mut b[14..]).unwrap();
        arp.set_operation(ArpOp::REPLY);
        arp.set_target_hw(MacAddr([9; 6]));
        arp.set_target_ip(Ipv4Addr::new(1, 1, 1, 1));
        arp.set_sender_hw(MacAddr([8; 6]));
        arp.set_sender_ip(Ipv4Addr::new(2, 2, 2, 2));
        assert_eq!(arp.operation(), ArpOp::REPLY);
        assert_eq!(arp.target_hw(), MacAddr([9; 6]));
        assert_eq!(arp.target_ip(), Ipv4Addr::new(1, 1, 1, 1));
        assert_eq!(arp.sender_hw(), MacAddr([8; 6]));
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(2, 2, 2, 2));
        assert_eq!(arp.into_inner().len(), 46);
    }

    #[test]
    fn truncated_and_unsupported() {
        let b = sample();
        let p = &b[14..42];
        for n in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&p[..n]).unwrap_err(),
                WireError::ArpTruncated
            );
        }
        for (i, v) in [(1usize, 6u8), (3, 0xdd), (4, 8), (5, 16)] {
            let mut q = p.to_vec();
            q[i] = v;
            assert_eq!(
                ArpPacket::new_checked(&q[..]).unwrap_err(),
                WireError::ArpUnsupported
            );
        }
        let mut small = [0u8; 41];
        assert_eq!(
            write_arp(
                &mut small,
                ArpOp::REPLY,
                MacAddr::ZERO,
                MacAddr::ZERO,
                MacAddr::ZERO,
                Ipv4Addr::UNSPECIFIED,
                MacAddr::ZERO,
                Ipv4Addr::UNSPECIFIED
            ),
            Err(WireError::BufferTooSmall)
        );
    }
}
