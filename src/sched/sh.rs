//! Source hashing (kernel `net/netfilter/ipvs/ip_vs_sh.c`): a 256-bucket
//! table is filled round-robin over the servers in kernel list order, each
//! server taking `weight` consecutive buckets (a weight-0 server still takes
//! one); a client lands in bucket `hash_32(src, 8)` (plus its source port
//! when `sh-port` is set), the multiplicative hash of `include/linux/hash.h`
//! that current kernels use. An unavailable server (weight 0 or overloaded)
//! refuses the client, unless `sh-fallback` is set, in which case the
//! kernel's probe sequence walks the table for the next available one.
//!
//! The table depends only on the server list: the kernel rebuilds it on
//! every change (`ip_vs_sh_dest_changed` is its add/del/upd hook), and so
//! does this instance, on the control thread; an identical list always
//! gives identical picks.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use arc_swap::ArcSwap;

use super::{addr_fold, hash_32, ids, kernel_order, locate, SchedFlags, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

/// `IP_VS_SH_TAB_BITS` (CONFIG_IP_VS_SH_TAB_BITS default 8).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;
/// No server (empty service).
const NONE: u32 = u32::MAX;

/// The buckets of one server list.
struct Table {
    /// Bucket -> index into the list it was built for, or [`NONE`].
    buckets: Box<[u32; TAB_SIZE]>,
    /// That list's server ids.
    ids: Box<[u32]>,
}

pub struct Sh {
    table: ArcSwap<Table>,
    flags: AtomicU8,
}

/// `ip_vs_sh_hashkey`: `(offset + hash_32(ntohs(port) + ntohl(addr_fold),
/// IP_VS_SH_TAB_BITS)) & IP_VS_SH_TAB_MASK`.
fn hashkey(fold: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32((port as u32).wrapping_add(fold), TAB_BITS)) & TAB_MASK) as usize
}

fn build(dests: &[Dest]) -> Box<[u32; TAB_SIZE]> {
    let mut b = Box::new([NONE; TAB_SIZE]);
    let order: Vec<usize> = kernel_order(dests.len()).collect();
    if order.is_empty() {
        return b;
    }
    // ip_vs_sh_reassign: stay on a server until it has `weight` buckets;
    // `++d_count >= weight` moves past a weight-0 server after one bucket.
    let (mut p, mut d_count) = (0usize, 0u32);
    for slot in b.iter_mut() {
        let i = order[p];
        *slot = i as u32;
        d_count += 1;
        if d_count >= dests[i].weight {
            p = (p + 1) % order.len();
            d_count = 0;
        }
    }
    b
}

fn table(dests: &[Dest]) -> Table {
    Table {
        buckets: build(dests),
        ids: ids(dests),
    }
}

pub fn new(dests: &[Dest], flags: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Sh {
        table: ArcSwap::from_pointee(table(dests)),
        flags: AtomicU8::new(flags.bits()),
    })
}

impl Sh {
    /// `ip_vs_sh_dest_changed`: `ip_vs_sh_reassign` over the new list.
    fn dest_changed(&self, dests: &[Dest]) {
        self.table.store(std::sync::Arc::new(table(dests)));
    }
}

impl Table {
    fn at(&self, dests: &[Dest], bucket: usize) -> Option<usize> {
        let i = self.buckets[bucket];
        if i == NONE {
            return None;
        }
        locate(dests, i as usize, self.ids[i as usize])
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, _: u64) -> Option<usize> {
        let t = self.table.load();
        let flags = SchedFlags::from_bits(self.flags.load(Relaxed));
        let fold = addr_fold(flow.src);
        let port = if flags.port { flow.sport } else { 0 };
        let ihash = hashkey(fold, port, 0);
        let first = t.at(dests, ihash)?;
        if dests[first].available() {
            return Some(first);
        }
        if !flags.fallback {
            return None;
        }
        // ip_vs_sh_get_fallback: the probe re-hashes with offset
        // roffset = (offset + ihash) % size.
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + ihash as u32) % TAB_SIZE as u32;
            let i = t.at(dests, hashkey(fold, port, roffset))?;
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
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::flow::Proto;

    fn client(src: Ipv4Addr, sport: u16) -> FlowKey {
        FlowKey::v4(Proto::Tcp, src, sport, Ipv4Addr::new(10, 0, 0, 100), 80)
    }
    const C1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// 1-based server number, 0 = none.
    fn pick(s: &dyn Scheduler, d: &[Dest], f: &FlowKey) -> usize {
        s.pick(d, f, 0).map_or(0, |i| i + 1)
    }
    fn flags(fallback: bool, port: bool) -> SchedFlags {
        SchedFlags {
            fallback,
            port,
            flag3: false,
        }
    }

    // Hand derivation used below: hash_32(x, 8) is the top byte of
    // x * 0x61C88647 (mod 2^32).
    //  * 192.0.2.1 = 0xC0000201, no port: 0xC0000201 * 0x61C88647 =
    //    0x32D51447 (mod 2^32) -> bucket 0x32 = 50.
    //  * with port 40000 = 0x9C40: 0xC0009E41 * 0x61C88647 = 0xD6C9EA07
    //    -> bucket 0xD6 = 214.
    //  * port 40001: 0xC0009E42 * 0x61C88647 = 0x3892704E -> 0x38 = 56.
    // Three weight-1 servers in kernel order (newest first) = [s3, s2, s1]:
    // bucket b belongs to [s3, s2, s1][b % 3]; 50 % 3 = 2 -> s1,
    // 214 % 3 = 1 -> s2, 56 % 3 = 2 -> s1.
    // (The old `(x * 2654435761) & 255` put 192.0.2.1 in bucket 177 -> s3.)

    #[test]
    fn same_source_same_server_whatever_the_port() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        for sport in [1, 40000, 40001, 65535] {
            assert_eq!(pick(&*s, &d, &client(C1, sport)), 1);
        }
        // load does not matter, only the hash
        d[0].state.active.store(1000, Relaxed);
        assert_eq!(pick(&*s, &d, &client(C1, 40000)), 1);
    }

    #[test]
    fn port_flag_hashes_the_source_port() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, flags(false, true));
        assert_eq!(pick(&*s, &d, &client(C1, 40000)), 2);
        assert_eq!(pick(&*s, &d, &client(C1, 40001)), 1);
        // The flags can change under a running instance (-E -b).
        s.set_flags(flags(false, false));
        assert_eq!(pick(&*s, &d, &client(C1, 40000)), 1);
    }

    #[test]
    fn unavailable_server_refuses_without_fallback_and_probes_with_it() {
        // Fallback probe for 192.0.2.1: offset 0 -> roffset = 50, bucket
        // (50 + 50) & 255 = 100; 100 % 3 = 1 -> s2, which is available.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        d[0].state.overloaded.store(true, Relaxed);
        assert_eq!(pick(&*new(&d, flags(false, false)), &d, &client(C1, 1)), 0);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 2);
        // Weight 0 still owns one bucket (same layout), so the same happens.
        let d = dests(&[(0, 0, 0), (1, 0, 0), (1, 0, 0)]);
        assert_eq!(pick(&*new(&d, flags(false, false)), &d, &client(C1, 1)), 0);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 2);
        // Nothing available at all: fallback walks the whole table, then None.
        let d = dests(&[(0, 0, 0), (0, 0, 0)]);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 0);
    }

    #[test]
    fn the_table_follows_the_hooks() {
        // ip_vs_sh_dest_changed rebuilds the buckets for the new list: an
        // instance told about a third server picks as one built for three.
        let d3 = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d3[..2], SchedFlags::default());
        // Two servers, kernel order [s2, s1]: 50 % 2 = 0 -> s2.
        assert_eq!(pick(&*s, &d3[..2], &client(C1, 1)), 2);
        s.add_dest(&d3, 2);
        assert_eq!(pick(&*s, &d3, &client(C1, 1)), 1);
        // A worker still on the two-server list gets a server of that list
        // (by identity), never an index past its end.
        assert_eq!(pick(&*s, &d3[..2], &client(C1, 1)), 1);
        s.del_dest(&d3, 0, &d3[1..]);
        // [s3, s2]: 50 % 2 = 0 -> s3, index 1 of d3[1..].
        assert_eq!(pick(&*s, &d3[1..], &client(C1, 1)), 2);
    }

    fn counts(d: &[Dest]) -> Vec<usize> {
        let b = build(d);
        (0..d.len())
            .map(|i| b.iter().filter(|&&x| x == i as u32).count())
            .collect()
    }

    #[test]
    fn weights_skew_bucket_counts_exactly() {
        // Weights s1=1, s2=2, s3=3; kernel order s3 s3 s3 s2 s2 s1 repeats
        // every 6 buckets: 256 = 42 * 6 + 4, the last 4 being s3 s3 s3 s2.
        // s1 = 42, s2 = 84 + 1 = 85, s3 = 126 + 3 = 129.
        let d = dests(&[(1, 0, 0), (2, 0, 0), (3, 0, 0)]);
        assert_eq!(counts(&d), [42, 85, 129]);
        let b = build(&d);
        assert_eq!(&b[..7], &[2, 2, 2, 1, 1, 0, 2]);
        // s2 weight 0 still takes one bucket: cycle s2 s1 s1 (3 buckets),
        // 256 = 85 * 3 + 1 -> s2 = 86, s1 = 170.
        let d = dests(&[(2, 0, 0), (0, 0, 0)]);
        assert_eq!(counts(&d), [170, 86]);
        // Equal weights: one bucket each round-robin, 256 = 85 * 3 + 1.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        assert_eq!(counts(&d), [85, 85, 86]);
    }

    #[test]
    fn ipv6_sources_are_folded() {
        // 2001:db8::1 folds to 0x20010db8 ^ 0 ^ 0 ^ 1 = 0x20010DB9;
        // 0x20010DB9 * 0x61C88647 = 0x3F01A44F -> bucket 0x3F = 63;
        // 63 % 3 = 0 -> s3.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        let f = FlowKey {
            proto: Proto::Tcp,
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::100".parse().unwrap(),
            sport: 1,
            dport: 80,
        };
        assert_eq!(pick(&*s, &d, &f), 3);
    }
}
