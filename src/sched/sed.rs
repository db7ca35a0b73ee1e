//! Shortest expected delay (kernel `ip_vs_sed.c`): like wlc but the overhead
//! is active + 1 (inactive connections are ignored), so an idle fast server
//! is preferred by weight: minimise (active + 1) / weight.

use super::{least_weighted, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Sed;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Sed)
}

/// `ip_vs_sed_dest_overhead`.
pub(crate) fn overhead(d: &Dest) -> u64 {
    d.state.active.load(std::sync::atomic::Ordering::Relaxed) as u64 + 1
}

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        least_weighted(dests, overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn expected_delay_by_weight_ignoring_inactive() {
        // A: (0+1)/1 = 1, B: (1+1)/3 = .67 -> B
        let d = dests(&[(1, 0, 0), (3, 1, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
        // inactive ignored: A (1+1)/1 = 2, B with 1000 inactive (1+1)/1 = 2:
        // a tie, won by the newest (B); 1000 inactive did not count against it
        let d = dests(&[(1, 1, 0), (1, 1, 1000)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
    }
}
