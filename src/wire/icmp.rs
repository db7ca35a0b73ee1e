//! ICMPv4 messages (RFC 792). The view spans the whole ICMP message (pass the
//! IP payload); the checksum covers all of it, with no pseudo-header.

use super::checksum;
use super::{get_u16, get_u32, put_u16, put_u32, WireError};

// Message types.
pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACH: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
// Codes.
/// DEST_UNREACH code: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 3;
/// DEST_UNREACH code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// TIME_EXCEEDED code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const MTU: usize = 6;
}

/// An ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const HEADER_LEN: usize = 8;

    pub fn new_unchecked(buf: T) -> Self {
        Icmpv4Packet { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        if buf.as_ref().len() < Self::HEADER_LEN {
            return Err(WireError::IcmpTruncated);
        }
        Ok(Icmpv4Packet { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buf.as_ref()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply).
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU (DEST_UNREACH / FRAG_NEEDED, RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::MTU)
    }

    /// Bytes 4..8, whatever the type puts there.
    pub fn rest_of_header(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::REST)
    }

    /// Data after the 8-byte header (for errors: the quoted IP datagram).
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[Self::HEADER_LEN..]
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buf.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buf.as_mut()[field::TYPE] = v;
    }

    pub fn set_code(&mut self, v: u8) {
        self.buf.as_mut()[field::CODE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_echo_ident(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::ECHO_IDENT, v);
    }

    pub fn set_echo_seq(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::ECHO_SEQ, v);
    }

    pub fn set_next_hop_mtu(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::MTU, v);
    }

    pub fn set_rest_of_header(&mut self, v: u32) {
        put_u32(self.buf.as_mut(), field::REST, v);
    }

    /// Set the type (e.g. echo request -> reply) with an incremental checksum
    /// update; type and code share one 16-bit word.
    pub fn set_msg_type_inc(&mut self, v: u8) {
        let code = self.code();
        let old = u16::from_be_bytes([self.msg_type(), code]);
        let c = checksum::update16(self.checksum(), old, u16::from_be_bytes([v, code]));
        self.set_msg_type(v);
        // The update yields 0x0000 when the message becomes all zeros (an
        // echo reply whose id, sequence and data are all zero), whose only
        // valid checksum is 0xFFFF; and 0xFFFF is valid wherever 0x0000 is
        // (ones' complement has two zeros). TCP and UDP sums can't be zero:
        // their pseudo-header has the protocol number in it. ICMP has none.
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Recompute the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::fold(checksum::sum(self.buf.as_ref()));
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[Self::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> Vec<u8> {
        // Echo request id 0x1234 seq 1, payload "abcdefgh".
        let mut v = vec![8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01];
        v.extend_from_slice(b"abcdefgh");
        v
    }

    #[test]
    fn parse_and_checksum() {
        let mut v = echo();
        let mut p = Icmpv4Packet::new_checked(&mut v[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!((p.code(), p.echo_ident(), p.echo_seq()), (0, 0x1234, 1));
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.payload(), b"abcdefgh");
        assert!(!p.verify_checksum());
        p.fill_checksum();
        // 0800+1234+0001+6162+6364+6566+6768 = 0x1_abc9 -> 0xabca -> ~ = 0x5435
        assert_eq!(p.checksum(), 0x5435);
        assert!(p.verify_checksum());
        p.set_msg_type_inc(ECHO_REPLY);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(inc, p.checksum());
        assert_eq!(p.msg_type(), ECHO_REPLY);
    }

    /// Found by the fuzz targets: the echo reply to a ping with id 0, seq 0
    /// and zero data got checksum 0x0000, which no receiver accepts.
    #[test]
    fn reply_to_an_all_zero_echo_request_has_a_valid_checksum() {
        for data_len in [0, 8, 56] {
            let mut v = vec![ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0];
            v.resize(8 + data_len, 0);
            let mut p = Icmpv4Packet::new_checked(&mut v[..]).unwrap();
            p.fill_checksum();
            p.set_msg_type_inc(ECHO_REPLY);
            assert!(p.verify_checksum(), "{data_len} bytes of data");
            assert_eq!(p.checksum(), 0xffff);
        }
    }

    #[test]
    fn setters() {
        let mut v = echo();
        let mut p = Icmpv4Packet::new_checked(&mut v[..]).unwrap();
        p.set_msg_type(DEST_UNREACH);
        p.set_code(CODE_FRAG_NEEDED);
        p.set_rest_of_header(0);
        p.set_next_hop_mtu(1400);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.rest_of_header(), 1400);
        p.set_echo_ident(7);
        p.set_echo_seq(9);
        p.set_checksum(0xabcd);
        p.payload_mut()[0] = b'z';
        assert_eq!((p.echo_ident(), p.echo_seq(), p.checksum()), (7, 9, 0xabcd));
        assert_eq!((p.msg_type(), p.code()), (3, 4));
        assert_eq!(p.into_inner()[8], b'z');
    }

    #[test]
    fn truncated() {
        let v = echo();
        for n in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&v[..n]).unwrap_err(),
                WireError::IcmpTruncated
            );
        }
        let p = Icmpv4Packet::new_checked(&v[..8]).unwrap();
        assert!(p.payload().is_empty());
    }
}
