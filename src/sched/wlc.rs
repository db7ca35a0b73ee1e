//! Weighted least connection (kernel `ip_vs_wlc.c`), ipvsadm's default:
//! the available server minimising overhead/weight with overhead =
//! (active << 8) + inactive, compared by cross-multiplication
//! (`loh * w(d) > doh * w(least)`), the first server in the kernel's list
//! (the newest) winning ties.

use super::{least_weighted, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Wlc;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Wlc)
}

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        least_weighted(dests, |d| d.state.overhead() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn overhead_per_weight_decides() {
        // A: (2<<8)/2 = 256, B: (1<<8)/1 = 256 tie; C: 300/3 = 100 -> C
        let d = dests(&[(2, 2, 0), (1, 1, 0), (3, 0, 300)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [3]);
        // the tie goes to the first in the kernel's list: B (newest)
        let d = dests(&[(2, 2, 0), (1, 1, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        // inactive counts 1/256 of an active one
        let d = dests(&[(1, 1, 0), (1, 0, 255)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
    }

    #[test]
    fn weight_zero_and_overloaded_are_skipped() {
        let d = dests(&[(0, 0, 0), (1, 9, 9), (1, 0, 0)]);
        d[2].state
            .overloaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        d[1].state
            .overloaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [0]);
    }
}
