//! IPv6 headers (RFC 8200) and their extension-header chain.
//!
//! `Ipv6Packet::new_checked` validates the version and the payload length
//! against the buffer (which may be longer: Ethernet padding). A payload
//! length of 0 is a jumbogram's (RFC 2675), which needs a Hop-by-Hop
//! option and more than 65,535 bytes: never on Ethernet, refused.
//!
//! [`Ipv6Packet::upper_layer`] walks the extension headers to the upper
//! layer, the way the kernel's `ipv6_skip_exthdr` does, but stricter: every
//! header must lie inside the payload, Hop-by-Hop only first (RFC 8200
//! 4.1), at most [`MAX_EXT_HEADERS`] of them (each advances at least 8
//! bytes, so the walk ends anyway; the bound refuses long chains, which
//! are an attack, not traffic), and a Fragment header is reported so the
//! caller can refuse fragments as it does for IPv4.

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{get_u16, get_u32, put_u16, WireError};

/// Extension-header and upper-layer numbers of the Next Header field.
pub mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
}

/// The longest extension-header chain accepted (RFC 8200 recommends each
/// at most once, Destination Options twice: seven in all, plus AH).
pub const MAX_EXT_HEADERS: usize = 8;

/// The Hop Limit of packets the director originates (Linux's default
/// `net.ipv6.conf.*.hop_limit`).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// An IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

/// A Fragment header's fields (RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data, in bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// Where the extension headers end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ...; 59: none).
    pub proto: IpProtocol,
    /// Its offset from the start of the IPv6 header.
    pub offset: usize,
    /// The Fragment header on the way, if there was one.
    pub fragment: Option<Fragment>,
    /// Extension headers walked.
    pub ext_headers: usize,
    /// A Routing header with Segments Left above 0 was on the way: the
    /// Destination field is not the packet's final destination.
    pub routed: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub const HEADER_LEN: usize = 40;

    pub fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < Self::HEADER_LEN {
            return Err(WireError::Ipv6Truncated);
        }
        if b[field::VER_TC_FLOW] >> 4 != 6 {
            return Err(WireError::Ipv6BadVersion);
        }
        let pl = usize::from(get_u16(b, field::PAYLOAD_LEN));
        if pl == 0 || Self::HEADER_LEN + pl > b.len() {
            return Err(WireError::Ipv6BadPayloadLen);
        }
        Ok(Ipv6Packet { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn traffic_class(&self) -> u8 {
        (get_u16(self.buf.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    pub fn flow_label(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::PAYLOAD_LEN)
    }

    /// The first Next Header (an extension header or the upper layer).
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), field::SRC)
    }

    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buf.as_ref(), field::DST)
    }

    /// The packet without Ethernet padding: header and payload.
    pub fn packet(&self) -> &[u8] {
        &self.buf.as_ref()[..Self::HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Everything after the fixed header (extension headers included).
    pub fn payload(&self) -> &[u8] {
        &self.packet()[Self::HEADER_LEN..]
    }

    /// Walk the extension headers to the upper layer (see the module
    /// documentation for what is refused).
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        walk(self.packet(), self.next_header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buf.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a.octets());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::PAYLOAD_LEN, v);
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buf.as_mut()[field::NEXT_HEADER] = v;
    }

    /// Write a fixed header: version 6, traffic class 0, `flow_label`.
    /// The 8-bit traffic class (DSCP and ECN), between the version and the
    /// flow label.
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buf.as_mut();
        let w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let w = (w & 0xf00f_ffff) | u32::from(tc) << 20;
        b[..4].copy_from_slice(&w.to_be_bytes());
    }

    pub fn fill_header(&mut self, flow_label: u32, payload_len: u16, next: u8, hop_limit: u8) {
        let b = self.buf.as_mut();
        b[..4].copy_from_slice(&((6u32 << 28) | (flow_label & 0x000f_ffff)).to_be_bytes());
        put_u16(b, field::PAYLOAD_LEN, payload_len);
        b[field::NEXT_HEADER] = next;
        b[field::HOP_LIMIT] = hop_limit;
    }
}

fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// The extension-header walk over `packet` (fixed header included).
fn walk(packet: &[u8], first: u8) -> Result<UpperLayer, WireError> {
    use next_header as nh;
    let mut next = first;
    let mut at = Ipv6Packet::<&[u8]>::HEADER_LEN;
    let mut fragment = None;
    let mut routed = false;
    let mut n = 0;
    loop {
        let len = match next {
            nh::HOP_BY_HOP | nh::ROUTING | nh::DEST_OPTS | nh::FRAGMENT | nh::AH => {
                if next == nh::HOP_BY_HOP && n > 0 {
                    return Err(WireError::Ipv6HopByHopNotFirst);
                }
                if n == MAX_EXT_HEADERS {
                    return Err(WireError::Ipv6ExtChainTooLong);
                }
                let h = packet.get(at..at + 8).ok_or(WireError::Ipv6ExtTruncated)?;
                match next {
                    nh::FRAGMENT => {
                        let off = get_u16(h, 2);
                        fragment = Some(Fragment {
                            offset: off & 0xfff8,
                            more: off & 1 != 0,
                            ident: get_u32(h, 4),
                        });
                        8
                    }
                    // AH counts its length in 4-byte units, less 2.
                    nh::AH => (usize::from(h[1]) + 2) * 4,
                    nh::ROUTING => {
                        // Segments Left (RFC 8200 4.4).
                        routed |= h[3] != 0;
                        (usize::from(h[1]) + 1) * 8
                    }
                    _ => (usize::from(h[1]) + 1) * 8,
                }
            }
            _ => {
                return Ok(UpperLayer {
                    proto: IpProtocol(next),
                    offset: at,
                    fragment,
                    ext_headers: n,
                    routed,
                })
            }
        };
        if at + len > packet.len() {
            return Err(WireError::Ipv6ExtTruncated);
        }
        next = packet[at];
        at += len;
        n += 1;
    }
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 8.1) for an
/// upper-layer checksum: addresses, the upper-layer length, Next Header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4_len: u32) -> u32 {
    let mut acc = u64::from(checksum::sum(&src.octets()));
    acc += u64::from(checksum::sum(&dst.octets()));
    acc += u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(proto);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Full TCP/UDP/ICMPv6 checksum over the IPv6 pseudo-header and `segment`
/// (zero the checksum field to compute; a correct segment yields 0).
pub fn l4_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    checksum::fold(pseudo_header_v6(src, dst, proto, len) + checksum::sum(segment))
}

/// An upper-layer checksum after a 128-bit address of the pseudo-header
/// (or of the covered data) changed from `old` to `new`: RFC 1624 eqn. 3
/// word by word, as for IPv4 (never turns a valid checksum into -0). A
/// UDP checksum must then still be sent as 0xFFFF if it came out 0.
pub fn l4_update_addr_v6(csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    let (o, n) = (old.octets(), new.octets());
    (0..8).fold(csum, |c, w| {
        let i = 2 * w;
        checksum::update16(
            c,
            u16::from_be_bytes([o[i], o[i + 1]]),
            u16::from_be_bytes([n[i], n[i + 1]]),
        )
    })
}

#[cfg(test)]
mod tests;
