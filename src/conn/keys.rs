//! The keys a connection is indexed under, of either family: from a new
//! connection ([`ConnTable::keys_of`]) and from a slot's words
//! ([`ConnTable::slot_keys`], when it is unlinked). Both must give the same
//! keys for the same connection.

use super::*;

impl AnyKey {
    pub(super) fn v4(proto: Proto, (src, sport): (u32, u16), (dst, dport): (u32, u16)) -> AnyKey {
        AnyKey::V4(K4 {
            proto,
            src,
            sport,
            dst,
            dport,
        })
    }
    pub(super) fn v6(proto: Proto, (src, sport): (u128, u16), (dst, dport): (u128, u16)) -> AnyKey {
        AnyKey::V6(K6 {
            proto,
            src,
            sport,
            dst,
            dport,
        })
    }
}

/// Where replies of a connection are addressed when they pass the
/// director: the client (NAT) or the local address (FULLNAT).
fn reply_to<A>(fwd: Forward, fnat: bool, client: (A, u16), local: (A, u16)) -> Option<(A, u16)> {
    match fwd {
        Forward::Nat => Some(client),
        Forward::FullNat if fnat => Some(local),
        _ => None,
    }
}

impl ConnTable {
    /// A new connection's keys (client's, and the reply's where replies
    /// pass the director) and its addresses as numbers. One family per
    /// connection (the client, VIP, real server and local address all IPv4
    /// or all IPv6), except NAT64: FULLNAT from an IPv6 client to an IPv4
    /// real server through an IPv4 local address (DPVS's NAT64).
    pub(super) fn keys_of(n: &NewConn) -> Result<(AnyKey, Option<AnyKey>, Addrs), InsertError> {
        let (p, lport) = (n.proto, n.fnat.map_or(0, |(_, lp, _)| lp));
        let fnat = n.fnat.is_some();
        match (n.cip, n.vip, n.dip, n.fnat.map(|(l, _, _)| l)) {
            (IpAddr::V4(c), IpAddr::V4(v), IpAddr::V4(d), l @ (None | Some(IpAddr::V4(_)))) => {
                let (c, v, d) = (u32::from(c), u32::from(v), u32::from(d));
                let l = match l {
                    Some(IpAddr::V4(l)) => u32::from(l),
                    _ => 0,
                };
                let out = reply_to(n.fwd, fnat, (c, n.cport), (l, lport));
                Ok((
                    AnyKey::v4(p, (c, n.cport), (v, n.vport)),
                    out.map(|to| AnyKey::v4(p, (d, n.dport), to)),
                    Addrs::V4 {
                        cip: c,
                        vip: v,
                        dip: d,
                        lip: l,
                    },
                ))
            }
            (IpAddr::V6(c), IpAddr::V6(v), IpAddr::V6(d), l @ (None | Some(IpAddr::V6(_)))) => {
                let (c, v, d) = (u128::from(c), u128::from(v), u128::from(d));
                let l = match l {
                    Some(IpAddr::V6(l)) => u128::from(l),
                    _ => 0,
                };
                let out = reply_to(n.fwd, fnat, (c, n.cport), (l, lport));
                Ok((
                    AnyKey::v6(p, (c, n.cport), (v, n.vport)),
                    out.map(|to| AnyKey::v6(p, (d, n.dport), to)),
                    Addrs::V6([c, v, d, l]),
                ))
            }
            // An IPv4 service's IPv6 tunnel real server (IPv4 in IPv6):
            // the client's key only, replies bypass us.
            (IpAddr::V4(c), IpAddr::V4(v), IpAddr::V6(d), None) if n.fwd == Forward::Tun => {
                let (c, v) = (u32::from(c), u32::from(v));
                Ok((
                    AnyKey::v4(p, (c, n.cport), (v, n.vport)),
                    None,
                    Addrs::V4in6 {
                        cip: c,
                        vip: v,
                        dip: u128::from(d),
                    },
                ))
            }
            // An IPv6 service's IPv4 tunnel real server (IPv6 in IPv4):
            // the NAT64 layout, without a reply key (replies bypass us).
            (IpAddr::V6(c), IpAddr::V6(v), IpAddr::V4(d), None) if n.fwd == Forward::Tun => {
                let (c, v, d) = (u128::from(c), u128::from(v), u32::from(d));
                Ok((
                    AnyKey::v6(p, (c, n.cport), (v, n.vport)),
                    None,
                    Addrs::Nat64 {
                        cip: c,
                        vip: v,
                        dip: d,
                        lip: 0,
                    },
                ))
            }
            (IpAddr::V6(c), IpAddr::V6(v), IpAddr::V4(d), Some(IpAddr::V4(l)))
                if n.fwd == Forward::FullNat =>
            {
                let (c, v, d, l) = (u128::from(c), u128::from(v), u32::from(d), u32::from(l));
                Ok((
                    AnyKey::v6(p, (c, n.cport), (v, n.vport)),
                    Some(AnyKey::v4(p, (d, n.dport), (l, lport))),
                    Addrs::Nat64 {
                        cip: c,
                        vip: v,
                        dip: d,
                        lip: l,
                    },
                ))
            }
            _ => Err(InsertError::MixedFamily),
        }
    }

    /// The keys slot `id` is indexed under, from its words (and its
    /// extension line for an IPv6 connection).
    pub(super) fn slot_keys(&self, id: u32) -> (AnyKey, Option<AnyKey>) {
        let s = &self.slots()[id as usize];
        let addr = s[W_ADDR].load(Relaxed);
        let dst = s[W_DST].load(Relaxed);
        let kind = s[W_KIND].load(Relaxed);
        let k = (kind >> 40) as u8;
        let p = if k & K_UDP != 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let (cport, vport, dport) = ((dst >> 16) as u16, dst as u16, (kind >> 48) as u16);
        let lport = (kind >> 16) as u16;
        let (fwd, fnat) = (fwd_of(k), k & K_FNAT != 0);
        // IPv4 real server and local address (IPv4 and NAT64 connections).
        let (dip, lip) = ((dst >> 32) as u32, (s[W_LOCAL].load(Relaxed) >> 32) as u32);
        match self.ext(id as usize).filter(|_| kind & K2_V6 != 0) {
            None => {
                let (cip, vip) = ((addr >> 32) as u32, addr as u32);
                let out = reply_to(fwd, fnat, (cip, cport), (lip, lport));
                (
                    AnyKey::v4(p, (cip, cport), (vip, vport)),
                    out.map(|to| AnyKey::v4(p, (dip, dport), to)),
                )
            }
            Some(x) if kind & K2_64 != 0 => (
                AnyKey::v6(p, (x.addr(X_CIP), cport), (x.addr(X_VIP), vport)),
                (fwd == Forward::FullNat).then(|| AnyKey::v4(p, (dip, dport), (lip, lport))),
            ),
            Some(x) => {
                let (cip, vip) = (x.addr(X_CIP), x.addr(X_VIP));
                let out = reply_to(fwd, fnat, (cip, cport), (x.addr(X_LIP), lport));
                (
                    AnyKey::v6(p, (cip, cport), (vip, vport)),
                    out.map(|to| AnyKey::v6(p, (x.addr(X_DIP), dport), to)),
                )
            }
        }
    }
}
