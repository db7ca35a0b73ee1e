//! Source hashing (kernel `net/netfilter/ipvs/ip_vs_sh.c`): a 256-bucket
//! table is filled round-robin over the servers in kernel list order, each
//! server taking `weight` consecutive buckets (a weight-0 server still takes
//! one); a client lands in bucket `(src * 2654435761) & 255`, plus its source
//! port when `sh-port` is set. An unavailable server (weight 0 or
//! overloaded) refuses the client, unless `sh-fallback` is set, in which case
//! the kernel's probe sequence walks the table for the next available one.
//!
//! The table depends only on the server list, so it is built once in [`new`]
//! and an identical list always gives identical picks.

use super::{addr_fold, kernel_order, SchedFlags, Scheduler};
use crate::conn::FlowKey;
use crate::service::Dest;

/// `IP_VS_SH_TAB_BITS` (CONFIG_IP_VS_SH_TAB_BITS default 8).
const TAB_SIZE: usize = 1 << 8;
const TAB_MASK: u32 = TAB_SIZE as u32 - 1;
/// No server (empty service).
const NONE: u32 = u32::MAX;

pub struct Sh {
    /// Bucket -> index into `dests`, or [`NONE`].
    buckets: Box<[u32; TAB_SIZE]>,
    flags: SchedFlags,
}

/// `ip_vs_sh_hashkey`: the kernel multiplies in `unsigned long` and masks
/// the low 8 bits, which wrapping u32 arithmetic reproduces exactly.
fn hashkey(fold: u32, port: u16, offset: u32) -> usize {
    (offset.wrapping_add((port as u32).wrapping_add(fold).wrapping_mul(2654435761)) & TAB_MASK)
        as usize
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

pub fn new(dests: &[Dest], flags: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Sh {
        buckets: build(dests),
        flags,
    })
}

impl Sh {
    fn at(&self, dests: &[Dest], bucket: usize) -> Option<usize> {
        let i = self.buckets[bucket];
        (i != NONE && (i as usize) < dests.len()).then_some(i as usize)
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, _: u64) -> Option<usize> {
        let fold = addr_fold(flow.src);
        let port = if self.flags.port { flow.sport } else { 0 };
        let ihash = hashkey(fold, port, 0);
        let first = self.at(dests, ihash)?;
        if dests[first].available() {
            return Some(first);
        }
        if !self.flags.fallback {
            return None;
        }
        // ip_vs_sh_get_fallback: the probe re-hashes with offset
        // (offset + ihash) % size, i.e. bucket (2 * ihash + offset) & 255.
        for offset in 0..TAB_SIZE as u32 {
            let roffset = (offset + ihash as u32) % TAB_SIZE as u32;
            let i = self.at(dests, hashkey(fold, port, roffset))?;
            if dests[i].available() {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::service::Proto;

    fn client(src: Ipv4Addr, sport: u16) -> FlowKey {
        FlowKey::v4(Proto::Tcp, src, sport, Ipv4Addr::new(10, 0, 0, 100), 80)
    }
    const C1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// 1-based server number, 0 = none.
    fn pick(s: &dyn Scheduler, d: &[Dest], f: &FlowKey) -> usize {
        s.pick(d, f, 0).map_or(0, |i| i + 1)
    }
    fn flags(fallback: bool, port: bool) -> SchedFlags {
        SchedFlags { fallback, port }
    }

    // Hand derivation used below. 2654435761 = 0x9E3779B1; the low byte of a
    // product depends only on the low bytes of the factors, and 0xB1 = 177.
    //  * 192.0.2.1, no port: low byte 0x01 -> 1 * 177 = 177 -> bucket 177.
    //  * with port 40000 = 0x9C40: 0x9C40 + 0xC0000201 has low byte 0x41 = 65;
    //    65 * 177 = 11505 = 0x2CF1 -> bucket 0xF1 = 241.
    //  * port 40001: low byte 0x42 = 66; 66 * 177 = 11682 = 0x2DA2 -> 162.
    // Three weight-1 servers in kernel order (newest first) = [s3, s2, s1]:
    // bucket b belongs to [s3, s2, s1][b % 3]; 177 % 3 = 0 -> s3,
    // 241 % 3 = 1 -> s2, 162 % 3 = 0 -> s3.

    #[test]
    fn same_source_same_server_whatever_the_port() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        for sport in [1, 40000, 40001, 65535] {
            assert_eq!(pick(&*s, &d, &client(C1, sport)), 3);
        }
        // load does not matter, only the hash
        d[2].state.active.store(1000, Relaxed);
        assert_eq!(pick(&*s, &d, &client(C1, 40000)), 3);
    }

    #[test]
    fn port_flag_hashes_the_source_port() {
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, flags(false, true));
        assert_eq!(pick(&*s, &d, &client(C1, 40000)), 2);
        assert_eq!(pick(&*s, &d, &client(C1, 40001)), 3);
    }

    #[test]
    fn unavailable_server_refuses_without_fallback_and_probes_with_it() {
        // Fallback probe for 192.0.2.1: offset 0 -> roffset = 177, bucket
        // (177 + 177) & 255 = 98; 98 % 3 = 2 -> s1, which is available.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        d[2].state.overloaded.store(true, Relaxed);
        assert_eq!(pick(&*new(&d, flags(false, false)), &d, &client(C1, 1)), 0);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 1);
        // Weight 0 still owns one bucket (same layout), so the same happens.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (0, 0, 0)]);
        assert_eq!(pick(&*new(&d, flags(false, false)), &d, &client(C1, 1)), 0);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 1);
        // Nothing available at all: fallback walks the whole table, then None.
        let d = dests(&[(0, 0, 0), (0, 0, 0)]);
        assert_eq!(pick(&*new(&d, flags(true, false)), &d, &client(C1, 1)), 0);
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
        // 2001:db8::1 folds to 0x20010db8 ^ 0 ^ 0 ^ 1 = 0x20010db9, low byte
        // 0xB9 = 185; 185 * 177 = 32745 = 0x7FE9 -> bucket 0xE9 = 233;
        // 233 % 3 = 2 -> s1.
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        let s = new(&d, SchedFlags::default());
        let f = FlowKey {
            proto: Proto::Tcp,
            src: "2001:db8::1".parse().unwrap(),
            dst: "2001:db8::100".parse().unwrap(),
            sport: 1,
            dport: 80,
        };
        assert_eq!(pick(&*s, &d, &f), 1);
    }
}
