//! Address families as keepalived decides them (IPv4 and IPv6 virtual,
//! real and sorry servers), and the address ranges of
//! `virtual_server_group` and DPVS's `local_address_group` entries.
//!
//! keepalived reads every address with `inet_pton`, choosing the family by
//! whether the text has a `:` (lib/utils.c inet_stosockaddr): so
//! `virtual_server 2001:db8::100 80 {` is an IPv6 service; there is no
//! `[2001:db8::100]:80` form and no `%zone`. A virtual server's family
//! (`vs->af`) comes from its address; a fwmark or group virtual server has
//! none until `ip_family`, an IPv6 `persistence_granularity`, or its first
//! real server that is not tunnelled gives it one (check_parser.c
//! ip_family_handler, pgr_handler, rs_end_handler, vs_end_handler); a group
//! virtual server must match its entries' family (ipwrapper.c
//! link_vsg_to_vs). DPVS's FNAT real servers do not decide it: IPv4 ones
//! under an IPv6 virtual server are DPVS's NAT64.

use super::*;

/// keepalived's `vs->af` (AF_INET / AF_INET6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Af {
    Inet,
    Inet6,
}

impl Af {
    pub(super) fn of(ip: IpAddr) -> Af {
        if ip.is_ipv6() {
            Af::Inet6
        } else {
            Af::Inet
        }
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            Af::Inet => "IPv4",
            Af::Inet6 => "IPv6",
        }
    }
}

/// A virtual server's family and what set it (for messages: "line 4:
/// ip_family inet6", "its address 2001:db8::100").
pub(super) type Family = Option<(Af, String)>;

/// `ADDR`, or a range: `ADDR-END` with END the last octet of an IPv4
/// address (decimal) or the last 16-bit group of an IPv6 one (hex), or
/// (IPv6) `ADDR-ADDR2` with the same first 112 bits. keepalived's
/// virtual_server_group entries (check_data.c alloc_vsg_entry, lib/utils.c
/// inet_stor: `strtoul(.., family == AF_INET6 ? 16 : 10)`; an IPv6 range
/// must end above its start, "Address range end is not greater than
/// address range start"); DPVS's local_address_group entries use the same
/// reader (inet_stor).
pub(super) fn group_range(s: &str) -> Option<Vec<IpAddr>> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(vec![a]);
    }
    let (base, last) = s.split_once('-')?;
    match base.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => {
            let o = a.octets();
            let end: u8 = last.parse().ok()?;
            if end < o[3] {
                return None;
            }
            Some(
                (o[3]..=end)
                    .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
                    .collect(),
            )
        }
        IpAddr::V6(a) => {
            let seg = a.segments();
            let end: u16 = match last.parse::<Ipv6Addr>() {
                Ok(b) if b.segments()[..7] == seg[..7] => b.segments()[7],
                Ok(_) => return None,
                Err(_) => {
                    if last.is_empty() || !last.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return None;
                    }
                    u16::from_str_radix(last, 16).ok()?
                }
            };
            if end <= seg[7] {
                return None;
            }
            Some(
                (seg[7]..=end)
                    .map(|x| {
                        let mut s = seg;
                        s[7] = x;
                        IpAddr::V6(Ipv6Addr::from(s))
                    })
                    .collect(),
            )
        }
    }
}

/// keepalived's vs_end_handler fallback for a virtual server whose family
/// nothing fixed (a fwmark or group virtual server whose real and sorry
/// servers are all tunnelled, or that has none): the family of its sorry
/// and real servers if they agree, else IPv4.
pub(super) fn fallback_family(sorry: Option<IpAddr>, reals: &[IpAddr]) -> (Af, String) {
    let mut fams = sorry.into_iter().chain(reals.iter().copied()).map(Af::of);
    match fams.next() {
        Some(first) if fams.all(|f| f == first) => (
            first,
            format!("its (tunnelled) real servers, all {}", first.name()),
        ),
        _ => (
            Af::Inet,
            "no address family given (keepalived defaults to IPv4)".to_string(),
        ),
    }
}
