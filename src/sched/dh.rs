//! Destination hashing (kernel `net/netfilter/ipvs/ip_vs_dh.c`): a
//! 256-bucket table is filled round-robin with one bucket per server in
//! kernel list order (weights only decide availability), and a flow goes to
//! bucket `hash_32(dst, 8)` of its destination address. An unavailable
//! server (weight 0 or overloaded) refuses the flow: dh has no fallback and
//! no port option in the kernel, so scheduler flags are ignored. The table
//! is rebuilt on every change of the list (`ip_vs_dh_dest_changed`, its
//! add/del/upd hook).

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{addr_fold, hash_32, ids, kernel_order, locate, SchedFlags, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

/// `IP_VS_DH_TAB_BITS` (CONFIG_IP_VS_DH_TAB_BITS default 8).
const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;
const NONE: u32 = u32::MAX;

struct Table {
    /// Bucket -> index into the list it was built for, or [`NONE`].
    buckets: Box<[u32; TAB_SIZE]>,
    ids: Box<[u32]>,
}

pub struct Dh {
    table: ArcSwap<Table>,
}

/// `ip_vs_dh_hashkey`: `hash_32(ntohl(addr_fold), IP_VS_DH_TAB_BITS)`.
fn hashkey(fold: u32) -> usize {
    hash_32(fold, TAB_BITS) as usize
}

fn build(dests: &[Dest]) -> Box<[u32; TAB_SIZE]> {
    let order: Vec<usize> = kernel_order(dests.len()).collect();
    let mut b = Box::new([NONE; TAB_SIZE]);
    if !order.is_empty() {
        for (i, slot) in b.iter_mut().enumerate() {
            *slot = order[i % order.len()] as u32;
        }
    }
    b
}

fn table(dests: &[Dest]) -> Arc<Table> {
    Arc::new(Table {
        buckets: build(dests),
        ids: ids(dests),
    })
}

pub fn new(dests: &[Dest], _: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Dh {
        table: ArcSwap::new(table(dests)),
    })
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, _: u64) -> Option<usize> {
        let t = self.table.load();
        let i = t.buckets[hashkey(addr_fold(flow.dst))];
        if i == NONE {
            return None;
        }
        locate(dests, i as usize, t.ids[i as usize]).filter(|&i| dests[i].available())
    }
    fn add_dest(&self, dests: &[Dest], _: usize) {
        self.table.store(table(dests));
    }
    fn del_dest(&self, _: &[Dest], _: usize, after: &[Dest]) {
        self.table.store(table(after));
    }
    fn upd_dest(&self, dests: &[Dest], _: usize) {
        self.table.store(table(dests));
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::flow::Proto;

    fn to(src: u8, dst: u8) -> FlowKey {
        FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::new(192, 0, 2, src),
            40000 + src as u16,
            Ipv4Addr::new(10, 0, 0, dst),
            80,
        )
    }
    fn pick(s: &dyn Scheduler, d: &[Dest], f: &FlowKey) -> usize {
        s.pick(d, f, 0).map_or(0, |i| i + 1)
    }

    // Hand derivation: hash_32(x, 8) = top byte of x * 0x61C88647:
    //   10.0.0.100 = 0x0A000064 -> 0xF85473BC -> 0xF8 = 248
    //   10.0.0.101 = 0x0A000065 -> 0x5A1CFA03 -> 0x5A = 90
    //   10.0.0.102 = 0x0A000066 -> 0xBBE5804A -> 0xBB = 187
    //   10.0.0.103 = 0x0A000067 -> 0x1DAE0691 -> 0x1D = 29
    // Three servers in kernel order [s3, s2, s1], bucket b -> [..][b % 3]:
    //   248 % 3 = 2 -> s1, 90 % 3 = 0 -> s3, 187 % 3 = 1 -> s2,
    //   29 % 3 = 2 -> s1.

    #[test]
    fn destination_decides_not_source_nor_load() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        for src in [1, 2, 200] {
            assert_eq!(pick(&*s, &d, &to(src, 100)), 1);
            assert_eq!(pick(&*s, &d, &to(src, 101)), 3);
            assert_eq!(pick(&*s, &d, &to(src, 102)), 2);
            assert_eq!(pick(&*s, &d, &to(src, 103)), 1);
        }
        d[0].state.active.store(1000, Relaxed);
        assert_eq!(pick(&*s, &d, &to(1, 100)), 1);
    }

    #[test]
    fn one_bucket_per_server_whatever_the_weight() {
        // 256 = 85 * 3 + 1: the extra bucket (255, 255 % 3 = 0) goes to the
        // first in kernel order, s3.
        let d = dests(&[(5, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let b = build(&d);
        let c: Vec<usize> = (0..3u32)
            .map(|i| b.iter().filter(|&&x| x == i).count())
            .collect();
        assert_eq!(c, [85, 85, 86]);
        assert_eq!(pick(&*new(&d, SchedFlags::default()), &d, &to(1, 100)), 1);
    }

    #[test]
    fn unavailable_server_refuses_even_with_fallback_flag() {
        let fb = SchedFlags {
            fallback: true,
            port: true,
            flag3: false,
        };
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        d[2].state.overloaded.store(true, Relaxed);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 101)), 0);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 102)), 2);
        let d = dests(&[(1, 0, 0), (1, 0, 0), (0, 0, 0)]);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 101)), 0);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 103)), 1);
    }
}
