//! Maglev hashing (kernel `net/netfilter/ipvs/ip_vs_mh.c`, after Google's
//! Maglev paper): each server gets a permutation of a prime-sized lookup
//! table from an offset and a skip hashed from its address and port; servers
//! take turns, in kernel list order, claiming their next free preferred slot
//! (`(last_weight / gcd) >> rshift` slots per turn) until the table is full.
//! A client's source address (plus source port with `mh-port`) hashes to one
//! slot. Unavailable servers refuse the client unless `mh-fallback` is set,
//! which re-hashes with increasing offsets like sh.
//!
//! The hash is the kernel's `hsiphash` with its fixed keys, which on 64-bit
//! kernels is SipHash-1-3 over the 4-byte host-order (little-endian) word
//! `offset + port + addr`; 32-bit kernels use HalfSipHash-1-3 and would build
//! different tables. The table depends only on the server list (addresses,
//! ports, last weights and order), so every director with the same list
//! builds it bit for bit identically. It is built on the control thread, in
//! [`new`] and again on every change of the list, as the kernel's
//! `ip_vs_mh_dest_changed` (its add/del/upd hook) does.
//!
//! Weight 0 keeps a server's slots (the kernel permutes by `last_weight`, the
//! latest non-zero weight), so quiescing a server moves no other client.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{addr_fold, ids, kernel_order, locate, SchedFlags, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

/// The kernel's table sizes, `primes[CONFIG_IP_VS_MH_TAB_INDEX - 8]`.
const PRIMES: [usize; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];
/// CONFIG_IP_VS_MH_TAB_INDEX default: table size 4093, TAB_BITS 6.
pub const DEFAULT_TAB_INDEX: u32 = 12;

/// `generate_hash_secret`: both words of each key are the same constant.
const HASH1: u64 = 2654435761;
const HASH2: u64 = 2654446892;
const NONE: u32 = u32::MAX;

pub struct Mh {
    table: ArcSwap<Table>,
    tab_index: u32,
    flags: AtomicU8,
}

struct Table {
    /// Slot -> index into the list it was built for, or [`NONE`] when no
    /// server has a weight.
    lookup: Box<[u32]>,
    /// That list's server ids.
    ids: Box<[u32]>,
}

/// SipHash-1-3 (one compression round per 8-byte block, three finalization
/// rounds), 64-bit output: the kernel's `hsiphash` on 64-bit machines.
pub(crate) fn siphash13(k0: u64, k1: u64, data: &[u8]) -> u64 {
    crate::siphash::siphash::<1, 3>(k0, k1, data)
}

/// `ip_vs_mh_hashkey`: `hsiphash(&v, 4, key)` with
/// `v = offset + ntohs(port) + ntohl(addr_fold)`, truncated to 32 bits.
fn hashkey(fold: u32, port: u16, key: u64, offset: u32) -> u32 {
    let v = offset.wrapping_add(port as u32).wrapping_add(fold);
    siphash13(key, key, &v.to_le_bytes()) as u32
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `fls`: 1-based index of the highest set bit, 0 for 0.
fn fls(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// The weight the kernel permutes with: `last_weight`, which equals the
/// weight whenever that is non-zero.
fn last_weight(d: &Dest) -> u32 {
    if d.weight != 0 {
        d.weight
    } else {
        d.state
            .last_weight
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `ip_vs_mh_permutate` + `ip_vs_mh_populate` for table index `tab_index`
/// (8..=17).
fn populate(dests: &[Dest], tab_index: u32) -> Box<[u32]> {
    let m = PRIMES[(tab_index - 8) as usize];
    let tab_bits = tab_index / 2;
    let mut lookup = vec![NONE; m].into_boxed_slice();

    let g = dests
        .iter()
        .map(last_weight)
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
    if g < 1 {
        return lookup;
    }
    let mw = dests.iter().map(last_weight).max().unwrap_or(0) / g;
    let rshift = fls(mw).saturating_sub(tab_bits);

    struct Setup {
        idx: usize,
        perm: usize,
        skip: usize,
        turns: u32,
    }
    let mut ds: Vec<Setup> = kernel_order(dests.len())
        .map(|idx| {
            let d = &dests[idx];
            let fold = addr_fold(d.ip);
            let offset = hashkey(fold, d.port, HASH1, 0) as usize % m;
            let skip = hashkey(fold, d.port, HASH2, 0) as usize % (m - 1) + 1;
            let lw = last_weight(d);
            let t = (lw / g) >> rshift;
            Setup {
                idx,
                perm: offset,
                skip,
                turns: if t != 0 { t } else { (lw != 0) as u32 },
            }
        })
        .collect();

    let mut taken = vec![false; m];
    let (mut n, mut dt_count) = (0usize, 0u32);
    while n < m {
        let mut k = 0;
        while k < ds.len() {
            let s = &mut ds[k];
            // Ignore a server added with weight 0.
            if s.turns < 1 {
                k += 1;
                continue;
            }
            while taken[s.perm] {
                s.perm += s.skip;
                if s.perm >= m {
                    s.perm -= m;
                }
            }
            taken[s.perm] = true;
            lookup[s.perm] = s.idx as u32;
            n += 1;
            if n == m {
                return lookup;
            }
            dt_count += 1;
            if dt_count >= s.turns {
                dt_count = 0;
                k += 1;
            }
        }
    }
    lookup
}

pub fn new(dests: &[Dest], flags: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Mh::build(dests, flags, DEFAULT_TAB_INDEX))
}

impl Mh {
    /// Build with the kernel's `CONFIG_IP_VS_MH_TAB_INDEX` = `tab_index`
    /// (8..=17, table sizes 251..131071; 12 = 4093 is the kernel default and
    /// the only one whose picks match a stock kernel).
    pub fn build(dests: &[Dest], flags: SchedFlags, tab_index: u32) -> Mh {
        assert!((8..=17).contains(&tab_index), "mh table index {tab_index}");
        Mh {
            table: ArcSwap::new(Self::table(dests, tab_index)),
            tab_index,
            flags: AtomicU8::new(flags.bits()),
        }
    }

    fn table(dests: &[Dest], tab_index: u32) -> Arc<Table> {
        Arc::new(Table {
            lookup: populate(dests, tab_index),
            ids: ids(dests),
        })
    }

    /// `ip_vs_mh_dest_changed`: gcd, shift and `ip_vs_mh_reassign` over the
    /// new list.
    fn dest_changed(&self, dests: &[Dest]) {
        self.table.store(Self::table(dests, self.tab_index));
    }
}

impl Table {
    fn at(&self, dests: &[Dest], slot: u32) -> Option<usize> {
        let i = self.lookup[slot as usize % self.lookup.len()];
        if i == NONE {
            return None;
        }
        locate(dests, i as usize, self.ids[i as usize])
    }
}

impl Scheduler for Mh {
    fn name(&self) -> &'static str {
        "mh"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, _: u64) -> Option<usize> {
        let t = self.table.load();
        let flags = SchedFlags::from_bits(self.flags.load(Relaxed));
        let m = t.lookup.len() as u32;
        let fold = addr_fold(flow.src);
        let port = if flags.port { flow.sport } else { 0 };
        let ihash = hashkey(fold, port, HASH1, 0) % m;
        let first = t.at(dests, ihash)?;
        if dests[first].available() {
            return Some(first);
        }
        if !flags.fallback {
            return None;
        }
        // ip_vs_mh_get_fallback: re-hash with offset (offset + ihash) % size.
        for offset in 0..m {
            let roffset = (offset + ihash) % m;
            let i = t.at(dests, hashkey(fold, port, HASH1, roffset) % m)?;
            if dests[i].available() {
                return Some(i);
            }
        }
        None
    }
    fn add_dest(&self, dests: &[Dest], _: usize) {
        self.dest_changed(dests);
    }
    fn del_dest(&self, _: &[Dest], _: usize, after: &[Dest]) {
        self.dest_changed(after);
    }
    fn upd_dest(&self, dests: &[Dest], _: usize) {
        self.dest_changed(dests);
    }
    fn set_flags(&self, flags: SchedFlags) {
        self.flags.store(flags.bits(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::flow::Proto;

    fn client(i: u32) -> FlowKey {
        FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::from(0xAC10_0000 + i), // 172.16.0.0 + i
            40000,
            Ipv4Addr::new(10, 0, 0, 100),
            80,
        )
    }
    fn counts(t: &[u32], n: usize) -> Vec<usize> {
        (0..n as u32)
            .map(|i| t.iter().filter(|&&x| x == i).count())
            .collect()
    }
    fn is_prime(p: usize) -> bool {
        p > 1
            && (2..)
                .take_while(|d| d * d <= p)
                .all(|d| !p.is_multiple_of(d))
    }

    #[test]
    fn siphash13_matches_the_kernel_hsiphash_vectors() {
        // lib/test_siphash.c, BITS_PER_LONG == 64: key {0x0706050403020100,
        // 0x0f0e0d0c0b0a0908}, input bytes 0, 1, .., len-1, u32 output.
        let (k0, k1) = (0x0706050403020100, 0x0f0e0d0c0b0a0908);
        let input: Vec<u8> = (0..64).collect();
        for (len, want) in [
            (0, 0x050fc4dcu32),
            (1, 0x7d57ca93),
            (3, 0xe7ddf7fb),
            (4, 0x88d38328), // the length mh hashes
            (7, 0x9bb11140),
            (8, 0x8d299a8e),
            (15, 0x2a519956),
            (16, 0x7d908b66),
            (63, 0xb7bbb3a8),
        ] {
            assert_eq!(
                siphash13(k0, k1, &input[..len]) as u32,
                want,
                "length {len}"
            );
        }
    }

    #[test]
    fn table_is_prime_full_and_reproducible() {
        let d = dests(&[(1, 0, 0), (2, 0, 0), (3, 0, 0), (1, 0, 0), (5, 0, 0)]);
        let a = Mh::build(&d, SchedFlags::default(), DEFAULT_TAB_INDEX);
        assert_eq!(a.table.load().lookup.len(), 4093);
        assert!(is_prime(a.table.load().lookup.len()));
        assert!(a
            .table
            .load()
            .lookup
            .iter()
            .all(|&x| (x as usize) < d.len()));
        // Built again from fresh (not shared) server entries: bit identical.
        let d2 = dests(&[(1, 0, 0), (2, 0, 0), (3, 0, 0), (1, 0, 0), (5, 0, 0)]);
        let b = Mh::build(&d2, SchedFlags::default(), DEFAULT_TAB_INDEX);
        assert_eq!(a.table.load().lookup, b.table.load().lookup);
        // The larger build option is prime and full too.
        let c = Mh::build(&d, SchedFlags::default(), 16);
        assert_eq!(c.table.load().lookup.len(), 65521);
        assert!(
            is_prime(c.table.load().lookup.len())
                && c.table.load().lookup.iter().all(|&x| x != NONE)
        );
    }

    #[test]
    fn slot_shares_follow_weights_exactly() {
        // Weights s1=1, s2=2, s3=3, gcd 1, max 3 -> fls(3) = 2 < 6, rshift 0,
        // turns 1, 2, 3. Kernel order s3 s2 s1: each round fills 3 + 2 + 1 = 6
        // slots; 4093 = 682 * 6 + 1 and the last slot goes to s3.
        let d = dests(&[(1, 0, 0), (2, 0, 0), (3, 0, 0)]);
        let t = populate(&d, DEFAULT_TAB_INDEX);
        assert_eq!(counts(&t, 3), [682, 1364, 2047]);
        // Weights 200 and 2: gcd 2, 100 and 1; fls(100) = 7 -> rshift 1;
        // turns 50 and (1 >> 1 = 0, weight != 0) 1. Order s2 s1, 51 per
        // round; 4093 = 80 * 51 + 13: s2 81, s1 80 * 50 + 12 = 4012.
        let d = dests(&[(200, 0, 0), (2, 0, 0)]);
        let t = populate(&d, DEFAULT_TAB_INDEX);
        assert_eq!(counts(&t, 2), [4012, 81]);
    }

    #[test]
    fn weight_zero_keeps_slots_but_a_server_added_at_zero_has_none() {
        let full = dests(&[(3, 0, 0), (3, 0, 0), (3, 0, 0)]);
        let quiesced = dests(&[(3, 0, 0), (3, 0, 0), (0, 0, 0)]);
        quiesced[2].state.last_weight.store(3, Relaxed);
        assert_eq!(
            populate(&full, DEFAULT_TAB_INDEX),
            populate(&quiesced, DEFAULT_TAB_INDEX)
        );
        let added_at_zero = dests(&[(3, 0, 0), (3, 0, 0), (0, 0, 0)]);
        let t = populate(&added_at_zero, DEFAULT_TAB_INDEX);
        assert_eq!(counts(&t, 3)[2], 0);
        // No weight anywhere: an empty table, every pick None.
        let none = dests(&[(0, 0, 0), (0, 0, 0)]);
        assert!(populate(&none, DEFAULT_TAB_INDEX)
            .iter()
            .all(|&x| x == NONE));
        let s = new(&none, SchedFlags::default());
        assert_eq!(s.pick(&none, &client(1), 0), None);
    }

    /// Remove server `gone` of ten and count how many of 10,000 clients move:
    /// (moved total, moved although they were not on `gone`).
    fn remap(gone: usize) -> (usize, usize) {
        let d = dests(&[(1, 0, 0); 10]);
        let d9: Vec<Dest> = d
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, x)| Dest {
                ip: x.ip,
                port: x.port,
                weight: x.weight,
                fwd: x.fwd,
                u_threshold: x.u_threshold,
                l_threshold: x.l_threshold,
                state: x.state.clone(),
            })
            .collect();
        let (a, b) = (
            new(&d, SchedFlags::default()),
            new(&d9, SchedFlags::default()),
        );
        let (mut moved, mut collateral) = (0, 0);
        for i in 0..10_000 {
            let f = client(i);
            let before: IpAddr = d[a.pick(&d, &f, 0).unwrap()].ip;
            let after: IpAddr = d9[b.pick(&d9, &f, 0).unwrap()].ip;
            if before != after {
                moved += 1;
                if before != d[gone].ip {
                    collateral += 1;
                }
            }
        }
        (moved, collateral)
    }

    #[test]
    fn removing_one_of_ten_servers_moves_about_a_tenth() {
        for gone in [0, 4, 9] {
            let (moved, collateral) = remap(gone);
            eprintln!(
                "mh remove server {gone}/10: moved {moved}/10000, of them {collateral} not on it"
            );
            // Ideal is 1/N = 1000; Maglev bounds the rest to a small share.
            assert!(moved < 2_000, "{moved}");
            assert!(moved >= 800, "{moved}");
            assert!(collateral < 300, "{collateral}");
        }
    }

    #[test]
    fn fallback_and_port_flags() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let plain = new(&d, SchedFlags::default());
        let fb = new(
            &d,
            SchedFlags {
                fallback: true,
                port: false,
                flag3: false,
            },
        );
        let before: Vec<usize> = (0..1000)
            .map(|i| plain.pick(&d, &client(i), 0).unwrap())
            .collect();
        d[1].state.overloaded.store(true, Relaxed);
        let mut on_gone = 0;
        for (i, &b) in before.iter().enumerate() {
            let f = client(i as u32);
            if b == 1 {
                on_gone += 1;
                assert_eq!(plain.pick(&d, &f, 0), None);
                let x = fb.pick(&d, &f, 0).unwrap();
                assert_ne!(x, 1);
            } else {
                assert_eq!(plain.pick(&d, &f, 0), Some(b));
                assert_eq!(fb.pick(&d, &f, 0), Some(b));
            }
        }
        assert!(on_gone > 150 && on_gone < 350, "{on_gone}");
        // Port flag: the same client spreads over servers by source port.
        d[1].state.overloaded.store(false, Relaxed);
        let port = new(
            &d,
            SchedFlags {
                fallback: false,
                port: true,
                flag3: false,
            },
        );
        let mut seen = [false; 4];
        for sport in 1000..1100 {
            let mut f = client(7);
            f.sport = sport;
            seen[port.pick(&d, &f, 0).unwrap()] = true;
            assert_eq!(plain.pick(&d, &f, 0), plain.pick(&d, &client(7), 0));
        }
        assert_eq!(seen, [true; 4]);
    }
}
