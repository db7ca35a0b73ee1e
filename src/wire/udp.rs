//! UDP datagram headers (RFC 768). A checksum of 0 means "none" (IPv4);
//! a computed 0 is sent as 0xFFFF. Incremental setters keep both rules.

use std::net::Ipv4Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{get_u16, put_u16, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A UDP datagram (header + payload). `payload()` stops at the length field.
#[derive(Debug, Clone)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub const HEADER_LEN: usize = 8;

    pub fn new_unchecked(buf: T) -> Self {
        UdpDatagram { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < Self::HEADER_LEN {
            return Err(WireError::UdpTruncated);
        }
        let len = usize::from(get_u16(b, field::LENGTH));
        if len < Self::HEADER_LEN || len > b.len() {
            return Err(WireError::UdpBadLength);
        }
        Ok(UdpDatagram { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::DST_PORT)
    }

    pub fn length(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    fn end(&self) -> usize {
        usize::from(self.length()).min(self.buf.as_ref().len())
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[Self::HEADER_LEN..self.end()]
    }

    /// True when the checksum is 0 (absent) or verifies over header+payload
    /// (up to the length field) and the pseudo-header.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::l4_checksum_v4(
                src,
                dst,
                IpProtocol::UDP.0,
                &self.buf.as_ref()[..self.end()],
            ) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::DST_PORT, v);
    }

    pub fn set_length(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::LENGTH, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    /// Compute the checksum (0 becomes 0xFFFF).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let end = self.end();
        let c = checksum::l4_checksum_v4(src, dst, IpProtocol::UDP.0, &self.buf.as_ref()[..end]);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    pub fn set_src_port_inc(&mut self, v: u16) {
        let c = checksum::udp_update_port(self.checksum(), self.src_port(), v);
        self.set_src_port(v);
        self.set_checksum(c);
    }

    pub fn set_dst_port_inc(&mut self, v: u16) {
        let c = checksum::udp_update_port(self.checksum(), self.dst_port(), v);
        self.set_dst_port(v);
        self.set_checksum(c);
    }

    /// Account for a pseudo-header address change (0 checksum stays 0).
    pub fn update_checksum_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::udp_update_addr(self.checksum(), old, new);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buf.as_mut()[Self::HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpDatagram<T> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Rng;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn sample() -> Vec<u8> {
        vec![
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0, 0, b'a', b'b', b'c', b'd',
        ]
    }

    #[test]
    fn parse_and_checksum() {
        let mut s = sample();
        s.extend_from_slice(&[0, 0]); // trailing bytes beyond length
        let mut u = UdpDatagram::new_checked(&mut s[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.length()), (12345, 53, 12));
        assert_eq!(u.payload(), b"abcd");
        assert!(u.verify_checksum(SRC, DST), "zero checksum = none");
        u.fill_checksum(SRC, DST);
        assert_eq!(u.checksum(), 0xf69e);
        assert!(u.verify_checksum(SRC, DST));
        assert!(!u.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 3)));
        u.payload_mut()[0] = b'z';
        assert!(!u.verify_checksum(SRC, DST));
        u.set_src_port(1);
        u.set_dst_port(2);
        u.set_length(8);
        u.set_checksum(3);
        assert_eq!(
            (u.src_port(), u.dst_port(), u.length(), u.checksum()),
            (1, 2, 8, 3)
        );
        assert!(u.payload().is_empty());
    }

    #[test]
    fn truncated_and_bad_length() {
        let s = sample();
        for n in 0..8 {
            assert_eq!(
                UdpDatagram::new_checked(&s[..n]).unwrap_err(),
                WireError::UdpTruncated
            );
        }
        for n in 8..12 {
            assert_eq!(
                UdpDatagram::new_checked(&s[..n]).unwrap_err(),
                WireError::UdpBadLength
            );
        }
        let mut b = s.clone();
        for l in 0..8u8 {
            b[5] = l;
            assert_eq!(
                UdpDatagram::new_checked(&b[..]).unwrap_err(),
                WireError::UdpBadLength
            );
        }
        b[4] = 0xff;
        assert_eq!(
            UdpDatagram::new_checked(&b[..]).unwrap_err(),
            WireError::UdpBadLength
        );
    }

    #[test]
    fn computed_zero_becomes_ffff() {
        // Search payload words until the full checksum would be 0.
        let mut s = sample();
        let mut found = false;
        for w in 0..=0xffffu16 {
            s[10..12].copy_from_slice(&w.to_be_bytes());
            s[6] = 0;
            s[7] = 0;
            if checksum::l4_checksum_v4(SRC, DST, 17, &s) == 0 {
                let mut u = UdpDatagram::new_checked(&mut s[..]).unwrap();
                u.fill_checksum(SRC, DST);
                assert_eq!(u.checksum(), 0xffff);
                assert!(u.verify_checksum(SRC, DST));
                found = true;
                break;
            }
        }
        assert!(found);
    }

    #[test]
    fn incremental_matches_full() {
        let mut rng = Rng(4242);
        for i in 0..5_000u32 {
            let mut s = sample();
            rng.fill(&mut s[8..]);
            let mut u = UdpDatagram::new_checked(&mut s[..]).unwrap();
            u.fill_checksum(SRC, DST);
            let p = match i % 4 {
                0 => 0,
                1 => 0xffff,
                _ => rng.next_u16(),
            };
            u.set_dst_port_inc(p);
            u.set_src_port_inc(rng.next_u16());
            let nsrc = Ipv4Addr::from(if i % 5 == 0 { u32::MAX } else { rng.next_u32() });
            u.update_checksum_addr(SRC, nsrc);
            assert_ne!(u.checksum(), 0);
            assert!(u.verify_checksum(nsrc, DST), "iteration {i}");
            let inc = u.checksum();
            u.fill_checksum(nsrc, DST);
            assert_eq!(inc, u.checksum(), "iteration {i}");
        }
        // Zero checksum stays zero through every incremental update.
        let mut s = sample();
        let mut u = UdpDatagram::new_checked(&mut s[..]).unwrap();
        u.set_dst_port_inc(99);
        u.set_src_port_inc(98);
        u.update_checksum_addr(SRC, Ipv4Addr::new(9, 9, 9, 9));
        assert_eq!(u.checksum(), 0);
    }
}
