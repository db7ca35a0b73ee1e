//! Weighted failover (kernel `net/netfilter/ipvs/ip_vs_fo.c`): every new
//! connection goes to the available server (not overloaded) with the highest
//! weight; among equal weights the first in the kernel's list (the newest,
//! see [`super::kernel_order`]) wins, since only a strictly higher weight
//! replaces the candidate. Lowering the active server's weight (`-e -w`) or
//! a failed health check moves new connections to the next one.

use super::{kernel_order, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Fo;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Fo)
}

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        // ip_vs_fo_schedule: `!OVERLOAD && weight > hw`, hw starting at 0.
        let mut best: Option<(usize, u32)> = None;
        for i in kernel_order(dests.len()) {
            let d = &dests[i];
            if !d
                .state
                .overloaded
                .load(std::sync::atomic::Ordering::Relaxed)
                && d.weight > best.map_or(0, |(_, w)| w)
            {
                best = Some((i, d.weight));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn highest_weight_takes_everything_newest_wins_ties() {
        // Weights s1=2, s2=5, s3=5: kernel order s3 s2 s1; s3 reaches 5
        // first and s2's 5 is not > 5.
        let d = dests(&[(2, 0, 0), (5, 0, 0), (5, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 4), [3, 3, 3, 3]);
        // Load does not matter.
        d[2].state.active.store(10_000, Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [3]);
        // Overloaded: the next highest.
        d[2].state.overloaded.store(true, Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        d[1].state.overloaded.store(true, Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [1]);
        d[0].state.overloaded.store(true, Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [0]);
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let d = dests(&[(0, 0, 0), (1, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 2), [2, 2]);
        let d = dests(&[(0, 0, 0), (0, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [0]);
    }
}
