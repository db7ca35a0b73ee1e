//! Never queue (kernel `ip_vs_nq.c`): an available server with no active
//! connections is taken at once (the first such in list order); otherwise
//! behave as sed, minimising (active + 1) / weight.

use std::sync::atomic::Ordering::Relaxed;

use super::Scheduler;
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Nq;

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Nq)
}

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for i in super::kernel_order(dests.len()) {
            let d = &dests[i];
            if !d.available() {
                continue;
            }
            let doh = super::sed::overhead(d);
            if d.state.active.load(Relaxed) == 0 {
                return Some(i);
            }
            let better = match least {
                None => true,
                Some((li, loh)) => {
                    (loh as u128) * (d.weight as u128) > (doh as u128) * (dests[li].weight as u128)
                }
            };
            if better {
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
    fn idle_server_first_even_with_low_weight() {
        let d = dests(&[(10, 1, 0), (1, 0, 50)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
    }

    #[test]
    fn otherwise_shortest_expected_delay() {
        // A: 3/1 = 3, B: 5/4 = 1.25 -> B
        let d = dests(&[(1, 2, 0), (4, 4, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 1), [2]);
    }
}
