//! Where packets go next: the director's own addresses and connected
//! subnets ([`Router`]) and the MAC addresses of neighbours ([`NeighTable`]).
//!
//! The neighbour table is read on every forwarded packet and written only
//! when an ARP answer or request teaches us something new, so it is a
//! copy-on-write map behind an `ArcSwap`: readers never lock.

use std::collections::HashMap;

mod hops;
pub use hops::HopCache;

/// Looked up for every forwarded packet: foldhash rather than SipHash.
/// The neighbour map as workers read it (one snapshot per poll).
pub type NeighMap<A = Ipv4Addr> = HashMap<A, MacAddr, foldhash::fast::FixedState>;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::config::{Ipv4Cidr, Ipv6Cidr};
use crate::wire::MacAddr;

/// One data port's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAddr {
    pub mac: MacAddr,
    pub cidr: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU of the port (TUN checks encapsulated sizes against it).
    pub mtu: u16,
    /// The port's configured IPv6 address and prefix, if any.
    pub ipv6: Option<Ipv6Cidr>,
    /// The IPv6 default route's next hop, on this port.
    pub gateway6: Option<Ipv6Addr>,
}

impl PortAddr {
    /// The port's link-local address, as the kernel forms it by default
    /// (`addr_gen_mode` 0, RFC 4291 appendix A): fe80::/64 and the MAC as a
    /// modified EUI-64 (universal/local bit flipped, ff:fe in the middle).
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.mac.0;
        Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ])
    }

    /// Whether `a` is one of the port's own IPv6 addresses.
    pub fn owns_v6(&self, a: Ipv6Addr) -> bool {
        self.ipv6.is_some_and(|c| c.addr == a) || a == self.link_local()
    }

    /// Whether `a` is on the port's link: link-local, or on its prefix.
    pub fn on_link_v6(&self, a: Ipv6Addr) -> bool {
        a.segments()[0] & 0xffc0 == 0xfe80 || self.ipv6.is_some_and(|c| c.contains(a))
    }
}

/// Connected routes of every port plus one default route.
#[derive(Clone, Debug, Default)]
pub struct Router {
    pub ports: Vec<PortAddr>,
}

impl Router {
    pub fn new(ports: Vec<PortAddr>) -> Router {
        Router { ports }
    }

    /// Port and next hop for `dst`: the port whose subnet holds it, else the
    /// port with the gateway.
    #[inline]
    pub fn route(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        if let Some(i) = self.ports.iter().position(|p| p.cidr.contains(dst)) {
            return Some((i as u16, dst));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway.map(|gw| (i as u16, gw)))
    }

    /// The IP MTU of the port packets to `dst` leave on (0 without a route:
    /// nothing may grow).
    pub fn mtu_to(&self, dst: Ipv4Addr) -> usize {
        self.route(dst)
            .map_or(0, |(p, _)| usize::from(self.ports[p as usize].mtu))
    }

    /// As [`Router::mtu_to`], for an IPv6 `dst` reached from `in_port`.
    pub fn mtu_to6(&self, dst: Ipv6Addr, in_port: u16) -> usize {
        self.route6(dst, in_port)
            .map_or(0, |(p, _)| usize::from(self.ports[p as usize].mtu))
    }

    /// Port and next hop for an IPv6 `dst`: the port whose prefix holds
    /// it, else the port with the IPv6 gateway. A link-local destination
    /// is on the link of `in_port` (the port it came from).
    #[inline]
    pub fn route6(&self, dst: Ipv6Addr, in_port: u16) -> Option<(u16, Ipv6Addr)> {
        if dst.segments()[0] & 0xffc0 == 0xfe80 {
            return Some((in_port, dst));
        }
        if let Some(i) = self
            .ports
            .iter()
            .position(|p| p.ipv6.is_some_and(|c| c.contains(dst)))
        {
            return Some((i as u16, dst));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway6.map(|gw| (i as u16, gw)))
    }

    /// Whether `a` is one of any port's own IPv6 addresses.
    pub fn owns_v6(&self, a: Ipv6Addr) -> bool {
        self.ports.iter().any(|p| p.owns_v6(a))
    }

    /// The port that owns `ip` as its own address.
    #[inline]
    pub fn local_port(&self, ip: Ipv4Addr) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.cidr.addr == ip)
            .map(|i| i as u16)
    }

    /// Whether `ip` is a subnet broadcast address of any port.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip == Ipv4Addr::BROADCAST
            || self
                .ports
                .iter()
                .any(|p| p.cidr.prefix < 31 && p.cidr.broadcast() == ip)
    }
}

/// Neighbours' MAC addresses: IPv4 ones (learnt from ARP), or IPv6 ones
/// (`NeighTable<Ipv6Addr>`, learnt from Neighbor Discovery).
pub struct NeighTable<A = Ipv4Addr> {
    map: ArcSwap<NeighMap<A>>,
    write: Mutex<()>,
    generation: AtomicU64,
}

impl<A> Default for NeighTable<A> {
    fn default() -> Self {
        NeighTable {
            map: ArcSwap::from_pointee(HashMap::default()),
            write: Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }
}

impl<A> std::fmt::Debug for NeighTable<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeighTable")
            .field("entries", &self.map.load().len())
            .finish()
    }
}

/// Most neighbours remembered; beyond it new ones are not learned (a flood
/// of ARP from spoofed addresses must not grow memory without bound).
pub const MAX_NEIGHBOURS: usize = 65536;

impl<A: Copy + Eq + Ord + std::hash::Hash> NeighTable<A> {
    /// The current map, for a worker to read a whole poll from (one
    /// `ArcSwap` load per poll instead of one per packet).
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<NeighMap<A>>> {
        self.map.load()
    }

    #[inline]
    pub fn lookup(&self, ip: A) -> Option<MacAddr> {
        self.map.load().get(&ip).copied()
    }

    pub fn contains(&self, ip: A) -> bool {
        self.map.load().contains_key(&ip)
    }

    /// Record `ip` at `mac`. Cheap when nothing changes (the common case).
    pub fn learn(&self, ip: A, mac: MacAddr) {
        if self.lookup(ip) == Some(mac) {
            return;
        }
        let _g = self.write.lock();
        let cur = self.map.load();
        if cur.get(&ip) == Some(&mac) || (cur.len() >= MAX_NEIGHBOURS && !cur.contains_key(&ip)) {
            return;
        }
        let mut next = HashMap::clone(&cur);
        next.insert(ip, mac);
        self.map.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Bumped on every change, so a worker with frames waiting for
    /// resolution can tell cheaply whether to look again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn entries(&self) -> Vec<(A, MacAddr)> {
        let mut v: Vec<_> = self.map.load().iter().map(|(a, m)| (*a, *m)).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        Router::new(vec![
            PortAddr {
                mac,
                cidr: "10.0.0.1/24".parse().unwrap(),
                gateway: None,
                mtu: 1500,
                ipv6: None,
                gateway6: None,
            },
            PortAddr {
                mac,
                cidr: "10.0.1.1/24".parse().unwrap(),
                gateway: Some("10.0.1.254".parse().unwrap()),
                mtu: 1500,
                ipv6: None,
                gateway6: None,
            },
        ])
    }

    #[test]
    fn connected_routes_then_default() {
        let r = router();
        assert_eq!(
            r.route("10.0.0.9".parse().unwrap()),
            Some((0, "10.0.0.9".parse().unwrap()))
        );
        assert_eq!(
            r.route("10.0.1.9".parse().unwrap()),
            Some((1, "10.0.1.9".parse().unwrap()))
        );
        assert_eq!(
            r.route("8.8.8.8".parse().unwrap()),
            Some((1, "10.0.1.254".parse().unwrap()))
        );
        assert_eq!(r.local_port("10.0.1.1".parse().unwrap()), Some(1));
        assert!(r.is_broadcast("10.0.0.255".parse().unwrap()));
        let no_gw = Router::new(vec![r.ports[0]]);
        assert_eq!(no_gw.route("8.8.8.8".parse().unwrap()), None);
    }

    #[test]
    fn learning_bumps_generation_only_on_change() {
        let n = NeighTable::default();
        let ip: Ipv4Addr = "10.0.0.2".parse().unwrap();
        let g0 = n.generation();
        n.learn(ip, MacAddr([2, 0, 0, 0, 0, 2]));
        n.learn(ip, MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(n.generation(), g0 + 1);
        assert_eq!(n.lookup(ip), Some(MacAddr([2, 0, 0, 0, 0, 2])));
        n.learn(ip, MacAddr([2, 0, 0, 0, 0, 3]));
        assert_eq!(n.generation(), g0 + 2);
    }
}
