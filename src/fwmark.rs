//! Firewall marks without a firewall: the classifier that gives packets the
//! mark a fwmark service (`ipvsadm -f N`) is selected by.
//!
//! With kernel IPVS an iptables/nftables rule in the mangle table sets
//! `skb->mark` and `ip_vs_service_find` (net/netfilter/ipvs/ip_vs_ctl.c)
//! tries the fwmark service of that mark before the `<proto, vip, port>`
//! table. A DPDK path has no netfilter, so rvs carries its own small rule
//! list: destination prefix, protocol and port ranges to a mark, evaluated
//! in order, the first match wins (as iptables' rule order). The data path
//! consults it only for a packet without a connection, just before the
//! service lookup, so established flows never pay for it.
//!
//! This module owns the rules as configured ([`FwmarkRule`], what `dump`
//! returns and `set_fwmark_rules` / the config file's `fwmark_rules` take),
//! their validation, and the compiled, immutable [`Classifier`] that the
//! service-table snapshot carries. It knows nothing of services.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::BitAnd;

use serde::{Deserialize, Serialize};

use crate::flow::Proto;

/// At most this many rules: the classifier is a first-match scan.
pub const MAX_RULES: usize = 4096;
/// At most this many port ranges in one rule.
pub const MAX_PORT_RANGES: usize = 256;

/// One classifier rule as configured:
/// `{"mark": 1, "dst": "10.0.0.100/32", "proto": "tcp", "ports": "80,443"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FwmarkRule {
    /// The mark packets matching this rule get (1..=4294967295, as
    /// ipvsadm's `parse_fwmark`).
    pub mark: u32,
    /// Destination prefix, "ADDRESS/LEN" ("ADDRESS" alone is a /32).
    pub dst: String,
    /// "tcp" or "udp"; absent = both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<Proto>,
    /// Destination ports: a comma-separated list of ports and ranges
    /// ("80,443", "1000-2000", "80,8000:8080"); absent = every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

/// Protocol bits of a compiled rule.
const TCP: u8 = 1;
const UDP: u8 = 2;

fn proto_bit(p: Proto) -> u8 {
    match p {
        Proto::Tcp => TCP,
        Proto::Udp => UDP,
    }
}

/// An address as the plain integer rules match on: u32 for IPv4, u128
/// for IPv6 (each family has its own rule list, in configuration order).
trait Bits: Copy + Eq + BitAnd<Output = Self> {}
impl Bits for u32 {}
impl Bits for u128 {}

/// A rule compiled for matching, apart from its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Compiled {
    protos: u8,
    /// Its port ranges are `ranges[first..first + n]`; n = 0: every port.
    first: u32,
    n: u32,
    mark: u32,
    /// Its index in the configured list (for messages).
    index: u32,
}

/// The rules of one family, in configuration order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rules<A> {
    /// (network, mask) of every rule, apart from the rest so that the scan
    /// reads only these (4096 IPv4 rules fit in L1).
    nets: Vec<(A, A)>,
    rules: Vec<Compiled>,
}

/// The compiled rule list workers match against; immutable, part of the
/// service-table snapshot. An IPv4 rule marks IPv4 packets and an IPv6
/// rule IPv6 ones (iptables and ip6tables), and a mark selects the fwmark
/// service of the packet's family, as the kernel's
/// `__ip_vs_svc_fwm_find(ipvs, af, mark)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classifier {
    v4: Rules<u32>,
    v6: Rules<u128>,
    /// Sorted, merged, inclusive port ranges of every rule.
    ranges: Vec<(u16, u16)>,
}

/// A rule that cannot be used, with its index in the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub index: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fwmark_rules[{}]: {}", self.index, self.message)
    }
}

/// A destination prefix as rules match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

/// Parse "ADDRESS/LEN" or "ADDRESS" (a /32 or /128), IPv4 or IPv6. Host
/// bits set ("10.0.0.1/24") are refused: the rule would not say what it
/// means.
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l
                .parse()
                .map_err(|_| format!("dst {s:?}: bad prefix length"))?;
            (a, Some(len))
        }
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("dst {s:?}: not an address or ADDRESS/LEN"))?;
    match addr {
        IpAddr::V4(addr) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(format!("dst {s:?}: prefix length over 32"));
            }
            let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
            let net = u32::from(addr);
            if net & !mask != 0 {
                return Err(format!(
                    "dst {s:?}: host bits set (did you mean {}/{len}?)",
                    Ipv4Addr::from(net & mask)
                ));
            }
            Ok(Prefix::V4 { net, mask })
        }
        IpAddr::V6(addr) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(format!("dst {s:?}: prefix length over 128"));
            }
            let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
            let net = u128::from(addr);
            if net & !mask != 0 {
                return Err(format!(
                    "dst {s:?}: host bits set (did you mean {}/{len}?)",
                    Ipv6Addr::from(net & mask)
                ));
            }
            Ok(Prefix::V6 { net, mask })
        }
    }
}

/// Parse "80,443,1000-2000" (":" also separates a range, as in iptables'
/// multiport) into sorted, merged, inclusive ranges.
pub fn parse_ports(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("ports {s:?}: empty entry"));
        }
        let num = |x: &str| -> Result<u16, String> {
            let n: u32 = x
                .trim()
                .parse()
                .map_err(|_| format!("ports {s:?}: {x:?} is not a port number"))?;
            if n == 0 || n > 65535 {
                return Err(format!("ports {s:?}: port {n} is not 1..=65535"));
            }
            Ok(n as u16)
        };
        let (lo, hi) = match part.split_once(['-', ':']) {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(part)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!(
                "ports {s:?}: range {lo}-{hi} is empty (its start is above its end)"
            ));
        }
        out.push((lo, hi));
    }
    if out.len() > MAX_PORT_RANGES {
        return Err(format!("ports {s:?}: more than {MAX_PORT_RANGES} entries"));
    }
    out.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(out.len());
    for (lo, hi) in out {
        match merged.last_mut() {
            Some(last) if lo as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Ok(merged)
}

/// Whether the merged ranges `outer` contain every port of `inner`.
fn covers(outer: &[(u16, u16)], inner: &[(u16, u16)]) -> bool {
    inner
        .iter()
        .all(|&(lo, hi)| outer.iter().any(|&(a, b)| a <= lo && hi <= b))
}

/// Merge two sorted range lists.
fn union(a: &[(u16, u16)], b: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut all: Vec<(u16, u16)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(all.len());
    for (lo, hi) in all {
        match merged.last_mut() {
            Some(last) if lo as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

const ALL_PORTS: [(u16, u16); 1] = [(0, 65535)];

impl<A: Bits> Rules<A> {
    /// Whether the rules so far match every packet one with prefix
    /// `(net, mask)`, protocols `protos` and ports `ranges` would: for
    /// each of its protocols, the rules whose prefix contains its prefix
    /// together cover its ports. Returns the indexes of those rules.
    /// (Coverage by several narrower prefixes together, two /25s before a
    /// /24, is not detected; such a rule is kept and simply never matches.)
    fn shadowed(
        &self,
        (net, mask): (A, A),
        protos: u8,
        ranges: &[(u16, u16)],
        all: &[(u16, u16)],
    ) -> Option<String> {
        let want: &[(u16, u16)] = if ranges.is_empty() {
            &ALL_PORTS
        } else {
            ranges
        };
        let mut used = Vec::new();
        for bit in [TCP, UDP] {
            if protos & bit == 0 {
                continue;
            }
            let mut have: Vec<(u16, u16)> = Vec::new();
            let mut by = Vec::new();
            for (e, &(enet, emask)) in self.rules.iter().zip(&self.nets) {
                // e's prefix contains r's: e is no longer and agrees on it.
                if e.protos & bit == 0 || emask & mask != emask || net & emask != enet {
                    continue;
                }
                let theirs: &[(u16, u16)] = if e.n == 0 {
                    &ALL_PORTS
                } else {
                    &all[e.first as usize..(e.first + e.n) as usize]
                };
                if !want
                    .iter()
                    .any(|&(lo, hi)| theirs.iter().any(|&(a, b)| a <= hi && lo <= b))
                {
                    continue;
                }
                have = union(&have, theirs);
                by.push(e);
                if covers(&have, want) {
                    break;
                }
            }
            if !covers(&have, want) {
                return None;
            }
            used.extend(by.iter().map(|e| (e.index, e.mark)));
        }
        used.sort_unstable();
        used.dedup();
        let names: Vec<String> = used
            .iter()
            .map(|(i, mark)| format!("fwmark_rules[{i}], mark {mark}"))
            .collect();
        Some(names.join("; "))
    }

    /// The mark of the first rule matching `d:dport` over protocol `bit`.
    #[inline]
    fn classify(&self, all: &[(u16, u16)], bit: u8, d: A, dport: u16) -> u32 {
        for (i, &(net, mask)) in self.nets.iter().enumerate() {
            if d & mask != net {
                continue;
            }
            let r = &self.rules[i];
            if r.protos & bit == 0 {
                continue;
            }
            if r.n == 0 {
                return r.mark;
            }
            let rs = &all[r.first as usize..(r.first + r.n) as usize];
            if rs.iter().any(|&(lo, hi)| lo <= dport && dport <= hi) {
                return r.mark;
            }
        }
        0
    }

    /// Add a rule unless the ones before it shadow it.
    fn push(
        &mut self,
        prefix: (A, A),
        rule: Compiled,
        ranges: &mut Vec<(u16, u16)>,
        own: &[(u16, u16)],
    ) -> Result<(), String> {
        if let Some(m) = self.shadowed(prefix, rule.protos, own, ranges) {
            return Err(format!(
                "can never match: the rules before it ({m}) already match every packet it would"
            ));
        }
        ranges.extend_from_slice(own);
        self.nets.push(prefix);
        self.rules.push(rule);
        Ok(())
    }
}

impl Classifier {
    /// Compile and validate `rules`. Every problem is listed (with the
    /// rule's index); nothing is built unless all is well:
    /// - a mark of 0, a bad prefix, a prefix with host bits set, port 0,
    ///   an empty range;
    /// - a rule that can never match because the rules before it (whose
    ///   prefixes contain its prefix) already match all of its packets:
    ///   first match wins, so it would be dead (a shadowed rule is the usual
    ///   sign of rules in the wrong order).
    pub fn build(rules: &[FwmarkRule]) -> Result<Classifier, Vec<RuleError>> {
        let mut errs = Vec::new();
        if rules.len() > MAX_RULES {
            errs.push(RuleError {
                index: MAX_RULES,
                message: format!("at most {MAX_RULES} rules"),
            });
            return Err(errs);
        }
        let mut c = Classifier::default();
        for (index, r) in rules.iter().enumerate() {
            let mut err = |message: String| errs.push(RuleError { index, message });
            if r.mark == 0 {
                err("mark must be 1..=4294967295 (0 means no mark)".into());
            }
            let prefix = parse_prefix(&r.dst);
            let ports = r.ports.as_deref().map(parse_ports).transpose();
            let prefix = match prefix {
                Ok(p) => p,
                Err(e) => {
                    err(e);
                    continue;
                }
            };
            let own = match ports {
                Ok(p) => p.unwrap_or_default(),
                Err(e) => {
                    err(e);
                    continue;
                }
            };
            let rule = Compiled {
                protos: r.proto.map_or(TCP | UDP, proto_bit),
                first: c.ranges.len() as u32,
                n: own.len() as u32,
                mark: r.mark,
                index: index as u32,
            };
            let pushed = match prefix {
                Prefix::V4 { net, mask } => c.v4.push((net, mask), rule, &mut c.ranges, &own),
                Prefix::V6 { net, mask } => c.v6.push((net, mask), rule, &mut c.ranges, &own),
            };
            if let Err(e) = pushed {
                err(e);
            }
        }
        if errs.is_empty() {
            Ok(c)
        } else {
            Err(errs)
        }
    }

    /// No rules: every packet keeps mark 0.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.v4.rules.is_empty() && self.v6.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.rules.len() + self.v6.rules.len()
    }

    /// Whether there is an IPv6 rule (IPv6 packets pay for the classifier
    /// only then).
    #[inline]
    pub fn has_v6(&self) -> bool {
        !self.v6.rules.is_empty()
    }

    /// The mark of the first IPv4 rule matching a packet to `dst:dport`
    /// over `proto`; 0 if none does.
    #[inline]
    pub fn classify(&self, proto: Proto, dst: Ipv4Addr, dport: u16) -> u32 {
        self.v4
            .classify(&self.ranges, proto_bit(proto), u32::from(dst), dport)
    }

    /// [`Self::classify`] for an IPv6 packet: the IPv6 rules.
    #[inline]
    pub fn classify6(&self, proto: Proto, dst: Ipv6Addr, dport: u16) -> u32 {
        self.v6
            .classify(&self.ranges, proto_bit(proto), u128::from(dst), dport)
    }

    /// The single addresses (/32 and /128 rules) and their marks, in rule
    /// order: the director answers ARP, NS and pings for those whose mark
    /// has a fwmark service of their family, as for a VIP.
    pub fn hosts(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        let v4 = self.v4.nets.iter().zip(&self.v4.rules);
        let v6 = self.v6.nets.iter().zip(&self.v6.rules);
        v4.filter(|((_, m), _)| *m == u32::MAX)
            .map(|((n, _), r)| (IpAddr::V4(Ipv4Addr::from(*n)), r.mark))
            .chain(
                v6.filter(|((_, m), _)| *m == u128::MAX)
                    .map(|((n, _), r)| (IpAddr::V6(Ipv6Addr::from(*n)), r.mark)),
            )
    }

    /// Whether `ip` lies in any rule's destination prefix.
    pub fn covers_addr(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let d = u32::from(a);
                self.v4.nets.iter().any(|&(n, m)| d & m == n)
            }
            IpAddr::V6(a) => {
                let d = u128::from(a);
                self.v6.nets.iter().any(|&(n, m)| d & m == n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mark: u32, dst: &str, proto: Option<Proto>, ports: Option<&str>) -> FwmarkRule {
        FwmarkRule {
            mark,
            dst: dst.into(),
            proto,
            ports: ports.map(String::from),
        }
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn http_and_https_of_one_vip_get_one_mark() {
        let c = Classifier::build(&[rule(1, "10.0.0.100/32", Some(Proto::Tcp), Some("80,443"))])
            .unwrap();
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.100"), 80), 1);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.100"), 443), 1);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.100"), 8080), 0);
        assert_eq!(c.classify(Proto::Udp, ip("10.0.0.100"), 443), 0);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.101"), 80), 0);
        assert_eq!(
            c.hosts().collect::<Vec<_>>(),
            vec![(IpAddr::V4(ip("10.0.0.100")), 1)]
        );
    }

    #[test]
    fn ranges_prefixes_and_both_protocols() {
        let c = Classifier::build(&[
            rule(7, "10.1.0.0/16", None, Some("1000-2000,3000:3001")),
            rule(8, "10.2.0.0", None, None),
        ])
        .unwrap();
        for (p, port, want) in [
            (Proto::Tcp, 999, 0),
            (Proto::Tcp, 1000, 7),
            (Proto::Udp, 1500, 7),
            (Proto::Tcp, 2000, 7),
            (Proto::Tcp, 2001, 0),
            (Proto::Udp, 3001, 7),
            (Proto::Udp, 3002, 0),
        ] {
            assert_eq!(c.classify(p, ip("10.1.200.3"), port), want, "{p:?} {port}");
        }
        assert_eq!(c.classify(Proto::Tcp, ip("10.3.0.1"), 1000), 0);
        // No prefix length: a /32, all ports, both protocols.
        assert_eq!(c.classify(Proto::Udp, ip("10.2.0.0"), 53), 8);
        assert_eq!(c.classify(Proto::Udp, ip("10.2.0.1"), 53), 0);
        assert_eq!(
            c.hosts().collect::<Vec<_>>(),
            vec![(IpAddr::V4(ip("10.2.0.0")), 8)]
        );
        assert!(c.covers_addr(IpAddr::V4(ip("10.1.9.9"))));
        assert!(!c.covers_addr(IpAddr::V4(ip("10.9.9.9"))));
    }

    #[test]
    fn first_match_wins_on_overlap() {
        // Port 443 is in both: the earlier rule decides, as iptables.
        let c = Classifier::build(&[
            rule(1, "10.0.0.0/24", Some(Proto::Tcp), Some("443")),
            rule(2, "10.0.0.0/16", Some(Proto::Tcp), Some("1-1024")),
        ])
        .unwrap();
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.5"), 443), 1);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.5"), 80), 2);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.1.5"), 443), 2);
        // The other order: the broad rule comes first and takes 443 too, so
        // the narrow rule is dead and refused.
        let e = Classifier::build(&[
            rule(2, "10.0.0.0/16", Some(Proto::Tcp), Some("1-1024")),
            rule(1, "10.0.0.0/24", Some(Proto::Tcp), Some("443")),
        ])
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].index, 1);
        assert!(e[0].message.contains("can never match"), "{}", e[0]);
        assert!(e[0].message.contains("fwmark_rules[0]"), "{}", e[0]);
    }

    #[test]
    fn shadowing_by_several_rules_and_per_protocol() {
        // 1-100 and 101-200 together cover 50-150: dead.
        let e = Classifier::build(&[
            rule(1, "10.0.0.0/8", None, Some("1-100")),
            rule(2, "10.0.0.0/24", None, Some("101-200")),
            rule(3, "10.0.0.7", None, Some("50-150")),
        ])
        .unwrap_err();
        assert_eq!(e[0].index, 2);
        // Covered for TCP only: UDP still reaches it, so it is kept.
        let c = Classifier::build(&[
            rule(1, "10.0.0.0/8", Some(Proto::Tcp), None),
            rule(2, "10.0.0.7", None, Some("53")),
        ])
        .unwrap();
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.7"), 53), 1);
        assert_eq!(c.classify(Proto::Udp, ip("10.0.0.7"), 53), 2);
        // A duplicate is dead too.
        let dup = rule(4, "10.9.0.0/16", None, None);
        assert!(Classifier::build(&[dup.clone(), dup]).is_err());
    }

    #[test]
    fn impossible_rules_are_refused_with_every_problem_listed() {
        let e = Classifier::build(&[
            rule(0, "10.0.0.1", None, None),
            rule(1, "10.0.0.1/24", None, None),
            rule(1, "10.0.0.0/33", None, None),
            rule(1, "2001:db8::1/64", None, None),
            rule(1, "10.0.5.1", None, Some("2000-1000")),
            rule(1, "10.0.5.2", None, Some("0")),
            rule(1, "10.0.5.3", None, Some("80,,443")),
            rule(1, "10.0.5.4", None, Some("65536")),
            rule(1, "bogus", None, None),
        ])
        .unwrap_err();
        let idx: Vec<usize> = e.iter().map(|x| x.index).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4, 5, 6, 7, 8], "{e:?}");
        assert!(e[1].message.contains("host bits set"), "{}", e[1]);
        assert!(e[1].message.contains("10.0.0.0/24"), "{}", e[1]);
        assert!(e[3].message.contains("2001:db8::/64"), "{}", e[3]);
        assert!(e[4].message.contains("empty"), "{}", e[4]);
    }

    #[test]
    fn ports_merge_and_json_shape() {
        assert_eq!(
            parse_ports("443, 80,81-90,85").unwrap(),
            vec![(80, 90), (443, 443)]
        );
        let r: FwmarkRule = serde_json::from_str(
            r#"{"mark":1,"dst":"10.0.0.100/32","proto":"tcp","ports":"80,443"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            rule(1, "10.0.0.100/32", Some(Proto::Tcp), Some("80,443"))
        );
        assert_eq!(
            serde_json::to_string(&rule(2, "10.0.0.0/24", None, None)).unwrap(),
            r#"{"mark":2,"dst":"10.0.0.0/24"}"#
        );
        assert!(
            serde_json::from_str::<FwmarkRule>(r#"{"mark":1,"dst":"10.0.0.1","src":"x"}"#).is_err()
        );
        assert!(serde_json::from_str::<FwmarkRule>(
            r#"{"mark":1,"dst":"10.0.0.1","proto":"icmp"}"#
        )
        .is_err());
    }

    #[test]
    fn ipv6_rules_mark_ipv6_packets_only() {
        // ip6tables marks IPv6 packets, iptables IPv4 ones: each family's
        // rules keep their own first-match order, and the same mark in both
        // selects the fwmark service of the packet's family.
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let c = Classifier::build(&[
            rule(1, "2001:db8::100", Some(Proto::Tcp), Some("80,443")),
            rule(1, "10.0.0.100", Some(Proto::Tcp), Some("80,443")),
            rule(2, "2001:db8:1::/48", None, Some("1000-2000")),
            rule(3, "::/0", Some(Proto::Udp), None),
        ])
        .unwrap();
        assert_eq!(c.len(), 4);
        assert!(c.has_v6());
        assert_eq!(c.classify6(Proto::Tcp, v6("2001:db8::100"), 443), 1);
        assert_eq!(c.classify6(Proto::Tcp, v6("2001:db8::100"), 8080), 0);
        assert_eq!(c.classify6(Proto::Tcp, v6("2001:db8::101"), 80), 0);
        assert_eq!(c.classify6(Proto::Tcp, v6("2001:db8:1:ff::9"), 1500), 2);
        assert_eq!(c.classify6(Proto::Tcp, v6("2001:db8:2::9"), 1500), 0);
        assert_eq!(c.classify6(Proto::Udp, v6("2001:db8:1::9"), 1500), 2);
        assert_eq!(c.classify6(Proto::Udp, v6("fd00::1"), 53), 3);
        // The IPv4 rules see none of it, nor the IPv6 ones IPv4 packets.
        assert_eq!(c.classify(Proto::Udp, ip("10.9.9.9"), 53), 0);
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.100"), 80), 1);
        assert_eq!(
            c.hosts().collect::<Vec<_>>(),
            vec![
                (IpAddr::V4(ip("10.0.0.100")), 1),
                (IpAddr::V6(v6("2001:db8::100")), 1)
            ]
        );
        assert!(c.covers_addr(IpAddr::V6(v6("2001:db8:1::1"))));
        assert!(!c.covers_addr(IpAddr::V4(ip("10.0.0.1"))));
        // Shadowing is within a family, and messages name the configured
        // index, whatever the other family's rules in between.
        let e = Classifier::build(&[
            rule(5, "2001:db8::/32", None, None),
            rule(6, "10.0.0.0/8", None, None),
            rule(7, "2001:db8:1::/48", Some(Proto::Tcp), Some("80")),
            rule(8, "10.1.0.0/16", Some(Proto::Udp), None),
        ])
        .unwrap_err();
        let idx: Vec<usize> = e.iter().map(|x| x.index).collect();
        assert_eq!(idx, vec![2, 3], "{e:?}");
        assert!(e[0].message.contains("fwmark_rules[0], mark 5"), "{}", e[0]);
        assert!(e[1].message.contains("fwmark_rules[1], mark 6"), "{}", e[1]);
        assert!(Classifier::build(&[rule(1, "2001:db8::/129", None, None)]).is_err());
    }

    #[test]
    fn no_rules_no_mark() {
        let c = Classifier::build(&[]).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.classify(Proto::Tcp, ip("10.0.0.1"), 80), 0);
    }
}
