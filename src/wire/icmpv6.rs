//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages the director
//! needs (RFC 4861): Neighbor Solicitation and Advertisement with their
//! link-layer address options. The view spans the whole ICMPv6 message
//! (the IPv6 upper-layer payload); its checksum covers the IPv6
//! pseudo-header, so verifying and filling take the addresses.
//!
//! What a receiver must check before trusting an NS/NA (RFC 4861 7.1.1,
//! 7.1.2: hop limit 255, code 0, length, a non-multicast target, options
//! of non-zero length) is [`NdMessage::parse`]'s job; it refuses the rest
//! with a reason.

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;
use super::ipv6::{l4_checksum_v6, next_header};
use super::{get_u16, put_u16};

pub const DEST_UNREACH: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAM_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;

/// ND option types.
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

/// NA flags (the first byte of the reserved word).
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// An ICMPv6 message's type, code and checksum, and the checks on it.
#[derive(Debug, Clone, Copy)]
pub struct Icmpv6<'a> {
    msg: &'a [u8],
}

impl<'a> Icmpv6<'a> {
    pub const HEADER_LEN: usize = 4;

    /// None when shorter than type, code and checksum.
    pub fn new(msg: &'a [u8]) -> Option<Icmpv6<'a>> {
        (msg.len() >= Self::HEADER_LEN).then_some(Icmpv6 { msg })
    }

    pub fn msg_type(&self) -> u8 {
        self.msg[0]
    }

    pub fn code(&self) -> u8 {
        self.msg[1]
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.msg, 2)
    }

    /// Whether the checksum is right for a message from `src` to `dst`.
    pub fn verify(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        l4_checksum_v6(src, dst, next_header::ICMPV6, self.msg) == 0
    }
}

/// Fill in the checksum of the ICMPv6 message `msg` from `src` to `dst`.
pub fn fill_checksum(msg: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    put_u16(msg, 2, 0);
    let c = l4_checksum_v6(src, dst, next_header::ICMPV6, msg);
    put_u16(msg, 2, c);
}

/// A Neighbor Solicitation or Advertisement that passed RFC 4861's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdMessage {
    Solicit {
        target: Ipv6Addr,
        /// The Source Link-Layer Address option.
        source_ll: Option<MacAddr>,
    },
    Advert {
        target: Ipv6Addr,
        router: bool,
        solicited: bool,
        override_: bool,
        /// The Target Link-Layer Address option.
        target_ll: Option<MacAddr>,
    },
}

/// Why an ND message was refused (a counter label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdError {
    NotNd,
    /// Hop limit not 255: it crossed a router (RFC 4861 7.1).
    HopLimit,
    BadCode,
    BadChecksum,
    Truncated,
    MulticastTarget,
    /// An option of length 0, or one beyond the message.
    BadOption,
    /// A Source Link-Layer option in an NS from the unspecified address.
    UnspecifiedWithSourceLl,
    /// An NA to a multicast address with the Solicited flag.
    SolicitedToMulticast,
}

impl NdError {
    pub fn as_str(self) -> &'static str {
        match self {
            NdError::NotNd => "nd_not_nd",
            NdError::HopLimit => "nd_hop_limit",
            NdError::BadCode => "nd_bad_code",
            NdError::BadChecksum => "nd_bad_checksum",
            NdError::Truncated => "nd_truncated",
            NdError::MulticastTarget => "nd_multicast_target",
            NdError::BadOption => "nd_bad_option",
            NdError::UnspecifiedWithSourceLl => "nd_unspecified_with_source_ll",
            NdError::SolicitedToMulticast => "nd_solicited_to_multicast",
        }
    }
}

impl NdMessage {
    /// Check and read the ICMPv6 message `msg` of a packet from `src` to
    /// `dst` with `hop_limit`, as RFC 4861 7.1.1 (NS) and 7.1.2 (NA) say.
    pub fn parse(
        msg: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
    ) -> Result<NdMessage, NdError> {
        let icmp = Icmpv6::new(msg).ok_or(NdError::Truncated)?;
        let kind = icmp.msg_type();
        if kind != NEIGHBOR_SOLICIT && kind != NEIGHBOR_ADVERT {
            return Err(NdError::NotNd);
        }
        if hop_limit != 255 {
            return Err(NdError::HopLimit);
        }
        if icmp.code() != 0 {
            return Err(NdError::BadCode);
        }
        // Type, code, checksum, a reserved/flags word, the target.
        if msg.len() < 24 {
            return Err(NdError::Truncated);
        }
        if !icmp.verify(src, dst) {
            return Err(NdError::BadChecksum);
        }
        let mut t = [0u8; 16];
        t.copy_from_slice(&msg[8..24]);
        let target = Ipv6Addr::from(t);
        if target.is_multicast() {
            return Err(NdError::MulticastTarget);
        }
        let want = if kind == NEIGHBOR_SOLICIT {
            OPT_SOURCE_LL
        } else {
            OPT_TARGET_LL
        };
        let ll = link_layer_option(&msg[24..], want)?;
        if kind == NEIGHBOR_SOLICIT {
            if src.is_unspecified() && ll.is_some() {
                return Err(NdError::UnspecifiedWithSourceLl);
            }
            return Ok(NdMessage::Solicit {
                target,
                source_ll: ll,
            });
        }
        let flags = msg[4];
        if dst.is_multicast() && flags & NA_SOLICITED != 0 {
            return Err(NdError::SolicitedToMulticast);
        }
        Ok(NdMessage::Advert {
            target,
            router: flags & NA_ROUTER != 0,
            solicited: flags & NA_SOLICITED != 0,
            override_: flags & NA_OVERRIDE != 0,
            target_ll: ll,
        })
    }
}

/// The first option of type `want` that carries an Ethernet address; every
/// option is checked for a non-zero length inside the message.
fn link_layer_option(mut opts: &[u8], want: u8) -> Result<Option<MacAddr>, NdError> {
    let mut found = None;
    while !opts.is_empty() {
        let (&kind, &len8) = match opts {
            [k, l, ..] => (k, l),
            _ => return Err(NdError::BadOption),
        };
        let len = usize::from(len8) * 8;
        if len == 0 || len > opts.len() {
            return Err(NdError::BadOption);
        }
        if kind == want && found.is_none() && len == 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            found = Some(MacAddr(m));
        }
        opts = &opts[len..];
    }
    Ok(found)
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1):
/// ff02::1:ffXX:XXXX with `a`'s low 24 bits; an NS for `a` goes there.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet multicast address of IPv6 multicast `a` (RFC 2464 7):
/// 33:33 and its low 32 bits.
pub fn multicast_mac(a: Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Write a Neighbor Advertisement for `target` (with a Target Link-Layer
/// Address option, `mac`) into `msg` (32 bytes), checksummed for `src` ->
/// `dst`. Returns its length.
pub fn write_neighbor_advert(
    msg: &mut [u8; 32],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
    solicited: bool,
) -> usize {
    msg.fill(0);
    msg[0] = NEIGHBOR_ADVERT;
    msg[4] = NA_OVERRIDE | if solicited { NA_SOLICITED } else { 0 };
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = OPT_TARGET_LL;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&mac.0);
    fill_checksum(msg, src, dst);
    32
}

/// Write a Neighbor Solicitation for `target` from `src` (with a Source
/// Link-Layer Address option, `mac`) into `msg` (32 bytes), for the
/// solicited-node address of `target`. Returns its length.
pub fn write_neighbor_solicit(
    msg: &mut [u8; 32],
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
) -> usize {
    msg.fill(0);
    msg[0] = NEIGHBOR_SOLICIT;
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = OPT_SOURCE_LL;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&mac.0);
    fill_checksum(msg, src, solicited_node(target));
    32
}

#[cfg(test)]
mod tests;
