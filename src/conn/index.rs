//! The index: keys and their hash, the 64-byte buckets of tagged
//! entries, and probing, insertion and removal (see the module docs).

use super::*;

impl FlowKey {
    /// The key as numbers, if both addresses are IPv4 (the hot path).
    #[inline]
    pub(super) fn k4(&self) -> Option<K4> {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(K4 {
                proto: self.proto,
                src: u32::from(s),
                dst: u32::from(d),
                sport: self.sport,
                dport: self.dport,
            }),
            _ => None,
        }
    }
}

impl FlowKey {
    /// The key as numbers, if both addresses are IPv6.
    #[inline]
    pub(super) fn k6(&self) -> Option<K6> {
        match (self.src, self.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(K6 {
                proto: self.proto,
                src: u128::from(s),
                dst: u128::from(d),
                sport: self.sport,
                dport: self.dport,
            }),
            _ => None,
        }
    }
}

/// An IPv6 connection key. IPv6 connections share the index and the slots
/// with IPv4 ones; their addresses live in the slot's extension line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct K6 {
    pub(super) proto: Proto,
    pub(super) src: u128,
    pub(super) dst: u128,
    pub(super) sport: u16,
    pub(super) dport: u16,
}

/// A new connection's addresses as numbers.
pub(super) enum Addrs {
    V4 {
        cip: u32,
        vip: u32,
        dip: u32,
        lip: u32,
    },
    /// Client, VIP, real server, local address.
    V6([u128; 4]),
    /// NAT64: IPv6 client and VIP, IPv4 real server and local address.
    Nat64 {
        cip: u128,
        vip: u128,
        dip: u32,
        lip: u32,
    },
    /// IPv4 in IPv6: IPv4 client and VIP, an IPv6 TUN real server.
    V4in6 { cip: u32, vip: u32, dip: u128 },
}

/// A key of either family.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AnyKey {
    V4(K4),
    V6(K6),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct K4 {
    pub(super) proto: Proto,
    pub(super) src: u32,
    pub(super) dst: u32,
    pub(super) sport: u16,
    pub(super) dport: u16,
}

/// Seven index entries and the overflow count: one cache line.
#[derive(bytemuck::Zeroable)]
#[repr(C, align(64))]
pub(super) struct Bucket {
    pub(super) e: [AtomicU64; 7],
    pub(super) overflow: AtomicU64,
}

impl Bucket {
    /// The bucket's live entries under `tag`, in bucket order, each as
    /// read now.
    #[inline(always)]
    pub(super) fn under(&self, tag: u32) -> impl Iterator<Item = u64> + '_ {
        self.e
            .iter()
            .map(|e| e.load(Acquire))
            .filter(move |&v| v != 0 && tag_of(v) == tag)
    }
}

pub(super) const ENTRY_OUT: u64 = 1 << 31;
/// Buckets a probe may pass before the index counts as full.
pub(super) const MAX_PROBE: usize = 64;

/// The tag of a hash, and of an index entry made under it: the top 32
/// bits of either.
#[inline(always)]
pub(super) fn tag_of(h_or_entry: u64) -> u32 {
    (h_or_entry >> 32) as u32
}
#[inline]
pub(super) fn entry(tag: u32, dir: Dir, slot: u32) -> u64 {
    (tag as u64) << 32 | if dir == Dir::Out { ENTRY_OUT } else { 0 } | (slot as u64 + 1)
}
#[inline]
pub(super) fn entry_slot(e: u64) -> u32 {
    ((e & (ENTRY_OUT - 1)) - 1) as u32
}
#[inline]
pub(super) fn entry_dir(e: u64) -> Dir {
    if e & ENTRY_OUT != 0 {
        Dir::Out
    } else {
        Dir::In
    }
}

#[inline]
pub(super) fn fold(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

impl ConnTable {
    #[inline(always)]
    pub(super) fn hash(&self, k: &K4) -> u64 {
        let a = (k.src as u64) << 32 | k.dst as u64;
        let b = (k.sport as u64) << 32 | (k.dport as u64) << 16 | k.proto as u64;
        fold(
            fold(a ^ self.seed[0], b ^ self.seed[1]),
            self.seed[0] ^ 0x9e37_79b9_7f4a_7c15,
        )
    }

    /// The hash of an IPv6 key: each address folded to 64 bits first, with
    /// the table's seeds, so IPv6 flows spread over the same index.
    #[inline]
    pub(super) fn hash6(&self, k: &K6) -> u64 {
        let s = fold(
            (k.src >> 64) as u64 ^ self.seed[0],
            k.src as u64 ^ self.seed[1],
        );
        let d = fold(
            (k.dst >> 64) as u64 ^ self.seed[1],
            k.dst as u64 ^ self.seed[0],
        );
        let b = (k.sport as u64) << 32 | (k.dport as u64) << 16 | k.proto as u64 | 1 << 8;
        fold(
            fold(s ^ b, d ^ self.seed[1]),
            self.seed[0] ^ 0x9e37_79b9_7f4a_7c15,
        )
    }

    #[inline]
    pub(super) fn hash_any(&self, k: &AnyKey) -> u64 {
        match k {
            AnyKey::V4(k) => self.hash(k),
            AnyKey::V6(k) => self.hash6(k),
        }
    }

    /// Call `f` on every entry whose tag matches `h` until it says yes.
    #[inline]
    pub(super) fn find<R>(&self, h: u64, mut f: impl FnMut(u64) -> Option<R>) -> Option<R> {
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for v in b.under(tag_of(h)) {
                if let Some(r) = f(v) {
                    return Some(r);
                }
            }
            if b.overflow.load(Acquire) == 0 {
                return None;
            }
        }
        None
    }

    pub(super) fn index_insert(&self, h: u64, e: u64) -> bool {
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for x in &b.e {
                if x.load(Relaxed) == 0 && x.compare_exchange(0, e, Release, Relaxed).is_ok() {
                    return true;
                }
            }
            b.overflow.fetch_add(1, Release);
        }
        for i in 0..MAX_PROBE {
            self.index[(home + i) & self.mask]
                .overflow
                .fetch_sub(1, Relaxed);
        }
        false
    }

    pub(super) fn index_remove(&self, h: u64, e: u64) -> bool {
        let home = h as usize;
        for i in 0..MAX_PROBE {
            let b = &self.index[(home + i) & self.mask];
            for x in &b.e {
                if x.load(Relaxed) == e && x.compare_exchange(e, 0, Relaxed, Relaxed).is_ok() {
                    for j in 0..i {
                        self.index[(home + j) & self.mask]
                            .overflow
                            .fetch_sub(1, Relaxed);
                    }
                    return true;
                }
            }
            if b.overflow.load(Relaxed) == 0 {
                return false;
            }
        }
        false
    }
}
