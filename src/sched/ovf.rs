//! Overflow connection (kernel `net/netfilter/ipvs/ip_vs_ovf.c`): new
//! connections go to the highest-weight server whose active connections do
//! not exceed its weight (and that is not overloaded, weight > 0); when it
//! is full, they overflow to the next highest. Among equal weights the first
//! in the kernel's list (the newest) wins. Only ActiveConn counts, so the
//! kernel notes it may not suit UDP.

use std::sync::atomic::Ordering::Relaxed;

use super::{kernel_order, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Ovf;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Ovf)
}

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        // ip_vs_ovf_schedule: skip OVERLOAD, activeconns > w and w == 0;
        // take `!h || w > hw`.
        let mut best: Option<(usize, u32)> = None;
        for i in kernel_order(dests.len()) {
            let d = &dests[i];
            let w = d.weight;
            if d.state.overloaded.load(Relaxed) || d.state.active.load(Relaxed) > w || w == 0 {
                continue;
            }
            if best.is_none_or(|(_, hw)| w > hw) {
                best = Some((i, w));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn fills_the_heaviest_then_overflows() {
        // s1 weight 3, s2 weight 1.
        let d = dests(&[(3, 0, 0), (1, 0, 0)]);
        let s = new(&d, Default::default());
        // active 3 is not > 3: still s1.
        d[0].state.active.store(3, Relaxed);
        assert_eq!(picks(&*s, &d, 1), [1]);
        // 4 > 3: overflow to s2 (active 0 <= 1), until s2 has 2 > 1.
        d[0].state.active.store(4, Relaxed);
        assert_eq!(picks(&*s, &d, 1), [2]);
        d[1].state.active.store(2, Relaxed);
        assert_eq!(picks(&*s, &d, 1), [0]);
        // Inactive connections do not count.
        d[0].state.active.store(0, Relaxed);
        d[0].state.inactive.store(1000, Relaxed);
        assert_eq!(picks(&*s, &d, 1), [1]);
    }

    #[test]
    fn ties_go_to_the_newest_and_overloaded_or_zero_are_skipped() {
        let d = dests(&[(2, 0, 0), (2, 0, 0), (0, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        d[1].state.overloaded.store(true, Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [1]);
    }
}
