//! A worker's next hops: the port and the Ethernet header (destination
//! then source MAC) that packets to an IPv4 address leave with, so that an
//! established packet's next hop is one line read and two stores, not a
//! route scan and a neighbour-map probe.
//!
//! Direct-mapped by destination, filled on a miss from the [`Router`] and
//! the neighbour map the poll reads. The router does not change while
//! rvsd runs; the neighbour map does, and every change bumps its
//! generation: [`HopCache::sync`] forgets everything when it moved. Only
//! complete answers are kept: a destination without a route, or whose
//! neighbour is not known yet, is looked up again each time (the packet is
//! dropped or held for ARP as before).

use std::cell::Cell;
use std::net::Ipv4Addr;

/// Entries (a power of two): 5 KiB, a few more destinations than a
/// director usually has real servers and client-side gateways.
const HOPS: usize = 256;
/// The port of an empty entry.
const NONE: u16 = u16::MAX;

#[derive(Clone, Copy)]
struct Hop {
    dst: u32,
    port: u16,
    /// Destination MAC, then source MAC: the frame's first 12 bytes.
    head: [u8; 12],
}

const EMPTY: Hop = Hop {
    dst: 0,
    port: NONE,
    head: [0; 12],
};

/// One worker's next-hop cache (see the module documentation). Cells, not
/// a lock: only its worker reads and writes it.
pub struct HopCache {
    generation: Cell<u64>,
    hops: Box<[Cell<Hop>]>,
}

impl Default for HopCache {
    fn default() -> Self {
        HopCache {
            generation: Cell::new(0),
            hops: (0..HOPS).map(|_| Cell::new(EMPTY)).collect(),
        }
    }
}

impl std::fmt::Debug for HopCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.hops.iter().filter(|h| h.get().port != NONE).count();
        f.debug_struct("HopCache").field("entries", &n).finish()
    }
}

impl HopCache {
    /// Forget every entry if the neighbour table's generation is no longer
    /// the one they were learnt under. Called before the poll's snapshot
    /// of the map is taken (a change in between then only costs a refill
    /// at the next poll).
    pub fn sync(&self, generation: u64) {
        if self.generation.replace(generation) != generation {
            self.hops.iter().for_each(|h| h.set(EMPTY));
        }
    }

    #[inline(always)]
    fn at(&self, dst: u32) -> &Cell<Hop> {
        // Fibonacci hashing: the top bits of the product mix every bit of
        // the address (real servers often differ only in the last byte).
        &self.hops[(dst.wrapping_mul(0x9e37_79b1) >> 24) as usize % HOPS]
    }

    /// The port and Ethernet header towards `dst`, if cached.
    #[inline(always)]
    pub fn get(&self, dst: Ipv4Addr) -> Option<(u16, [u8; 12])> {
        let d = u32::from(dst);
        let h = self.at(d).get();
        (h.dst == d && h.port != NONE).then_some((h.port, h.head))
    }

    /// Remember that packets to `dst` leave on `port` with `head`.
    #[inline]
    pub fn put(&self, dst: Ipv4Addr, port: u16, head: [u8; 12]) {
        let d = u32::from(dst);
        self.at(d).set(Hop { dst: d, port, head });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hop_is_kept_until_the_generation_moves() {
        let c = HopCache::default();
        c.sync(7);
        let a = Ipv4Addr::new(10, 0, 1, 2);
        assert_eq!(c.get(a), None);
        let head = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        c.put(a, 1, head);
        assert_eq!(c.get(a), Some((1, head)));
        assert_eq!(c.get(Ipv4Addr::new(10, 0, 1, 3)), None, "another address");
        c.sync(7);
        assert_eq!(c.get(a), Some((1, head)), "same generation: kept");
        c.sync(8);
        assert_eq!(c.get(a), None, "a neighbour changed: forgotten");
    }

    #[test]
    fn colliding_addresses_replace_each_other_and_never_mix() {
        let c = HopCache::default();
        // Find two addresses that share an entry.
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let idx = |x: Ipv4Addr| (u32::from(x).wrapping_mul(0x9e37_79b1) >> 24) as usize % HOPS;
        let b = (2..=u32::MAX)
            .map(|i| Ipv4Addr::from(u32::from(a) + i))
            .find(|&b| idx(b) == idx(a))
            .expect("256 entries: a collision is near");
        c.put(a, 0, [0xa; 12]);
        c.put(b, 1, [0xb; 12]);
        assert_eq!(c.get(a), None);
        assert_eq!(c.get(b), Some((1, [0xb; 12])));
    }

    #[test]
    fn address_zero_is_not_found_in_an_empty_cache() {
        let c = HopCache::default();
        assert_eq!(c.get(Ipv4Addr::UNSPECIFIED), None);
    }
}
