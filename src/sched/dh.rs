//! Destination hashing (kernel `net/netfilter/ipvs/ip_vs_dh.c`): a
//! 256-bucket table is filled round-robin with one bucket per server in
//! kernel list order (weights only decide availability), and a flow goes to
//! bucket `(dst * 2654435761) & 255` of its destination address. An
//! unavailable server (weight 0 or overloaded) refuses the flow: dh has no
//! fallback and no port option in the kernel, so scheduler flags are ignored.

use super::{addr_fold, kernel_order, SchedFlags, Scheduler};
use crate::conn::FlowKey;
use crate::service::Dest;

/// `IP_VS_DH_TAB_BITS` (CONFIG_IP_VS_DH_TAB_BITS default 8).
const TAB_SIZE: usize = 1 << 8;
const NONE: u32 = u32::MAX;

pub struct Dh {
    buckets: Box<[u32; TAB_SIZE]>,
}

/// `ip_vs_dh_hashkey`.
fn hashkey(fold: u32) -> usize {
    (fold.wrapping_mul(2654435761) & (TAB_SIZE as u32 - 1)) as usize
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

pub fn new(dests: &[Dest], _: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Dh {
        buckets: build(dests),
    })
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, _: u64) -> Option<usize> {
        let i = self.buckets[hashkey(addr_fold(flow.dst))] as usize;
        dests.get(i).filter(|d| d.available()).map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::service::Proto;

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

    // Hand derivation: 2654435761 = 0x9E3779B1, only low bytes matter for
    // the low 8 bits: bucket = (low byte of dst) * 0xB1 (177) mod 256.
    //   10.0.0.100: 100 * 177 = 17700 = 0x4524 -> 36
    //   10.0.0.101: 101 * 177 = 17877 = 0x45D5 -> 213
    //   10.0.0.102: 102 * 177 = 18054 = 0x4686 -> 134
    //   10.0.0.103: 103 * 177 = 18231 = 0x4737 -> 55
    // Three servers in kernel order [s3, s2, s1], bucket b -> [..][b % 3]:
    //   36 -> s3, 213 -> s3, 134 -> s1, 55 -> s2.

    #[test]
    fn destination_decides_not_source_nor_load() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        for src in [1, 2, 200] {
            assert_eq!(pick(&*s, &d, &to(src, 100)), 3);
            assert_eq!(pick(&*s, &d, &to(src, 101)), 3);
            assert_eq!(pick(&*s, &d, &to(src, 102)), 1);
            assert_eq!(pick(&*s, &d, &to(src, 103)), 2);
        }
        d[2].state.active.store(1000, Relaxed);
        assert_eq!(pick(&*s, &d, &to(1, 100)), 3);
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
        assert_eq!(pick(&*new(&d, SchedFlags::default()), &d, &to(1, 100)), 3);
    }

    #[test]
    fn unavailable_server_refuses_even_with_fallback_flag() {
        let fb = SchedFlags {
            fallback: true,
            port: true,
        };
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        d[2].state.overloaded.store(true, Relaxed);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 100)), 0);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 102)), 1);
        let d = dests(&[(1, 0, 0), (1, 0, 0), (0, 0, 0)]);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 100)), 0);
        assert_eq!(pick(&*new(&d, fb), &d, &to(1, 103)), 2);
    }
}
