//! IPv4 headers (RFC 791). `new_checked` validates version, IHL and total
//! length against the buffer; the buffer may be longer than `total_len`
//! (Ethernet padding), and `payload()` stops at `total_len`.

use std::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::{get_u16, put_u16, WireError};

/// TTL of the packets the director originates (ICMP answers and errors, SYN
/// proxy segments, NAT's generated replies): Linux's `IPDEFTTL`, the default
/// of `net.ipv4.ip_default_ttl`.
pub const DEFAULT_TTL: u8 = 64;

/// The IPv4 protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IPIP: IpProtocol = IpProtocol(4);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpProtocol::ICMP => f.write_str("icmp"),
            IpProtocol::IPIP => f.write_str("ipip"),
            IpProtocol::TCP => f.write_str("tcp"),
            IpProtocol::UDP => f.write_str("udp"),
            IpProtocol(n) => write!(f, "proto-{n}"),
        }
    }
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1fff;

/// An IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Header length without options.
    pub const MIN_HEADER_LEN: usize = 20;

    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        Self::check(buf.as_ref(), false)?;
        Ok(Ipv4Packet { buf })
    }

    /// As `new_checked`, but accepts `total_len` beyond the buffer: for the
    /// datagram quoted in an ICMP error, which is cut short. `payload()` is
    /// then clipped to the buffer.
    pub fn new_checked_truncated(buf: T) -> Result<Self, WireError> {
        Self::check(buf.as_ref(), true)?;
        Ok(Ipv4Packet { buf })
    }

    fn check(b: &[u8], allow_short: bool) -> Result<(), WireError> {
        if b.len() < Self::MIN_HEADER_LEN {
            return Err(WireError::Ipv4Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Ipv4BadVersion);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < Self::MIN_HEADER_LEN || hl > b.len() {
            return Err(WireError::Ipv4BadHeaderLen);
        }
        let tl = usize::from(get_u16(b, field::TOTAL_LEN));
        if tl < hl || (!allow_short && tl > b.len()) {
            return Err(WireError::Ipv4BadTotalLen);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn version(&self) -> u8 {
        self.buf.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::TOTAL_LEN)
    }

    /// DSCP and ECN together (the old TOS byte).
    pub fn dscp_ecn(&self) -> u8 {
        self.buf.as_ref()[field::TOS]
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field times 8).
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & FRAG_MASK) << 3
    }

    /// Any fragment, first or not: MF set or nonzero offset.
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buf.as_ref(), field::FLAGS_FRAG) & (FLAG_MF | FRAG_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buf.as_ref()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(
            b[field::SRC],
            b[field::SRC + 1],
            b[field::SRC + 2],
            b[field::SRC + 3],
        )
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(
            b[field::DST],
            b[field::DST + 1],
            b[field::DST + 2],
            b[field::DST + 3],
        )
    }

    /// The header bytes (including options).
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len()]
    }

    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[Self::MIN_HEADER_LEN..self.header_len()]
    }

    fn payload_end(&self) -> usize {
        usize::from(self.total_len()).min(self.buf.as_ref().len())
    }

    /// Bytes from the end of the header to `total_len` (padding excluded).
    pub fn payload(&self) -> &[u8] {
        let end = self.payload_end();
        &self.buf.as_ref()[self.header_len()..end]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set version 4 and IHL from a header length in bytes (multiple of 4).
    pub fn set_header_len(&mut self, len: usize) {
        self.buf.as_mut()[field::VER_IHL] = 0x40 | ((len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buf.as_mut()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::TOTAL_LEN, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::IDENT, v);
    }

    fn update_flags_frag(&mut self, f: impl FnOnce(u16) -> u16) {
        let b = self.buf.as_mut();
        let v = f(get_u16(b, field::FLAGS_FRAG));
        put_u16(b, field::FLAGS_FRAG, v);
    }

    pub fn set_dont_frag(&mut self, on: bool) {
        self.update_flags_frag(|v| if on { v | FLAG_DF } else { v & !FLAG_DF });
    }

    pub fn set_more_frags(&mut self, on: bool) {
        self.update_flags_frag(|v| if on { v | FLAG_MF } else { v & !FLAG_MF });
    }

    /// Fragment offset in bytes (must be a multiple of 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        self.update_flags_frag(|v| (v & !FRAG_MASK) | ((bytes >> 3) & FRAG_MASK));
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buf.as_mut()[field::PROTOCOL] = p.0;
    }

    pub fn set_checksum(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }

    /// Recompute the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::fold(checksum::sum(self.header()));
        self.set_checksum(c);
    }

    /// Set the source address, updating the header checksum incrementally.
    pub fn set_src_addr_inc(&mut self, a: Ipv4Addr) {
        let c = checksum::l4_update_addr(self.checksum(), self.src_addr(), a);
        self.set_src_addr(a);
        self.set_checksum(c);
    }

    /// Set the destination address, updating the header checksum incrementally.
    pub fn set_dst_addr_inc(&mut self, a: Ipv4Addr) {
        let c = checksum::l4_update_addr(self.checksum(), self.dst_addr(), a);
        self.set_dst_addr(a);
        self.set_checksum(c);
    }

    /// Set total length, updating the header checksum incrementally.
    pub fn set_total_len_inc(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.total_len(), v);
        self.set_total_len(v);
        self.set_checksum(c);
    }

    /// Decrement TTL (saturating at 0) with an incremental checksum update;
    /// returns the new TTL. The caller drops/answers TTL <= 1 before this.
    pub fn dec_ttl_inc(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let proto = self.buf.as_ref()[field::PROTOCOL];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.payload_end());
        &mut self.buf.as_mut()[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::Rng;

    const RFC_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn rfc_packet() -> Vec<u8> {
        let mut v = RFC_HDR.to_vec();
        v.resize(0x73, 0xaa);
        v
    }

    #[test]
    fn parse_known_header() {
        let v = rfc_packet();
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert!(p.verify_checksum());
        assert_eq!(p.dscp_ecn(), 0);
    }

    #[test]
    fn padding_after_total_len_is_excluded() {
        let mut v = rfc_packet();
        v.extend_from_slice(&[0; 10]);
        let p = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn fill_checksum_known_answer() {
        let mut v = rfc_packet();
        v[10] = 0x12;
        v[11] = 0x34;
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xb861);
    }

    #[test]
    fn truncated_and_bad_fields() {
        let v = rfc_packet();
        for n in 0..20 {
            assert_eq!(
                Ipv4Packet::new_checked(&v[..n]).unwrap_err(),
                WireError::Ipv4Truncated
            );
        }
        // total_len beyond frame
        for n in 20..0x73 {
            assert_eq!(
                Ipv4Packet::new_checked(&v[..n]).unwrap_err(),
                WireError::Ipv4BadTotalLen
            );
            // ... accepted in truncated mode, payload clipped
            let p = Ipv4Packet::new_checked_truncated(&v[..n]).unwrap();
            assert_eq!(p.payload().len(), n - 20);
        }
        let mut b = v.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Ipv4BadVersion
        );
        for ihl in 0..5u8 {
            b[0] = 0x40 | ihl;
            assert_eq!(
                Ipv4Packet::new_checked(&b[..]).unwrap_err(),
                WireError::Ipv4BadHeaderLen
            );
        }
        // IHL beyond frame
        b[0] = 0x4f; // 60 bytes
        assert_eq!(
            Ipv4Packet::new_checked(&b[..40]).unwrap_err(),
            WireError::Ipv4BadHeaderLen
        );
        // total_len < header_len
        let mut b = v.clone();
        b[2] = 0;
        b[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Ipv4BadTotalLen
        );
        b[0] = 0x46;
        b[3] = 23;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Ipv4BadTotalLen
        );
        b[3] = 24;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.options().len(), 4);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn setters_and_fragments() {
        let mut v = rfc_packet();
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_dont_frag(false);
        p.set_more_frags(true);
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag());
        p.set_more_frags(false);
        assert!(!p.is_fragment());
        p.set_frag_offset(1480);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment() && !p.more_frags());
        p.set_dont_frag(true);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.dont_frag());
        p.set_ident(0xbeef);
        p.set_ttl(3);
        p.set_dscp_ecn(0xb8);
        p.set_protocol(IpProtocol::TCP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.set_total_len(40);
        p.set_header_len(24);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(
            (
                p.ident(),
                p.ttl(),
                p.dscp_ecn(),
                p.protocol(),
                p.total_len(),
                p.header_len()
            ),
            (0xbeef, 3, 0xb8, IpProtocol::TCP, 40, 24)
        );
        assert_eq!(p.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        p.payload_mut()[0] = 0x77;
        assert_eq!(p.payload().len(), 16);
        assert_eq!(v[24], 0x77);
    }

    #[test]
    fn incremental_updates_match_full() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let edges = [0u32, u32::MAX, 0xffff, 0xffff_0000, 0x0000_0001];
        for i in 0..10_000 {
            let mut v = rfc_packet();
            rng.fill(&mut v[1..20]);
            v[2] = 0;
            v[3] = 0x73;
            let ttl0 = (rng.next_u32() % 256) as u8;
            v[8] = if i % 11 == 0 { 255 } else { ttl0 };
            let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            let s = if i % 3 == 0 {
                edges[i % edges.len()]
            } else {
                rng.next_u32()
            };
            let d = if i % 4 == 0 {
                edges[(i / 4) % edges.len()]
            } else {
                rng.next_u32()
            };
            p.set_src_addr_inc(Ipv4Addr::from(s));
            p.set_dst_addr_inc(Ipv4Addr::from(d));
            let before = p.ttl();
            let after = p.dec_ttl_inc();
            assert_eq!(after, before.saturating_sub(1));
            p.set_total_len_inc(0x70 + (i % 4) as u16);
            assert!(p.verify_checksum(), "iteration {i}");
            let inc = p.checksum();
            p.fill_checksum();
            assert_eq!(inc, p.checksum(), "iteration {i}");
        }
    }

    #[test]
    fn dec_ttl_saturates() {
        let mut v = rfc_packet();
        v[8] = 0;
        let mut p = Ipv4Packet::new_checked(&mut v[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.dec_ttl_inc(), 0);
        assert!(p.verify_checksum());
        p.set_ttl(1);
        p.fill_checksum();
        assert_eq!(p.dec_ttl_inc(), 0);
        assert!(p.verify_checksum());
    }
}
