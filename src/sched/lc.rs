//! Least connection (kernel `ip_vs_lc.c`): the available server with the
//! smallest overhead (active << 8) + inactive; weight only matters as
//! "weight 0 = not available". The first server in the kernel's list
//! (the newest, see [`super::kernel_order`]) wins ties.

use super::Scheduler;
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Lc;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Lc)
}

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        let mut least: Option<(usize, u32)> = None;
        for i in super::kernel_order(dests.len()) {
            let d = &dests[i];
            if !d.available() {
                continue;
            }
            let doh = d.state.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn picks_least_overhead_active_weighs_256() {
        // overheads: 1*256+0=256, 0*256+255=255, 0+300=300 -> second.
        let d = dests(&[(1, 1, 0), (1, 0, 255), (1, 0, 300)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        // weights are ignored except zero
        let d = dests(&[(100, 0, 5), (1, 0, 4), (0, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        // ties: the first in the kernel's list (the newest) wins
        let d = dests(&[(1, 0, 3), (1, 0, 3)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
    }
}
