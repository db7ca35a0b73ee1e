//! Round robin (kernel `ip_vs_rr.c`): walk the server list from the server
//! after the last one picked, taking the first with weight > 0 that is not
//! overloaded. The cursor starts at the list head, so the first pick is the
//! first available server in the kernel's order (newest first, see
//! [`super::kernel_order`]).

use parking_lot::Mutex;

use super::Scheduler;
use crate::conn::FlowKey;
use crate::service::Dest;

pub struct Rr {
    /// Index of the next server to consider.
    next: Mutex<usize>,
}

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Rr {
        next: Mutex::new(0),
    })
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        let n = dests.len();
        let mut next = self.next.lock();
        let start = *next % n.max(1);
        // Positions in the kernel's list; position p is dests[n - 1 - p].
        let p = (0..n)
            .map(|k| (start + k) % n)
            .find(|&p| dests[n - 1 - p].available())?;
        *next = (p + 1) % n;
        Some(n - 1 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    #[test]
    fn rotates_in_list_order_skipping_weight_zero() {
        let d = dests(&[(1, 0, 0), (5, 0, 0), (1, 0, 0)]);
        assert_eq!(
            picks(&*new(&d, Default::default()), &d, 7),
            // newest first: the kernel's list is 3, 2, 1
            [3, 2, 1, 3, 2, 1, 3]
        );
        let d = dests(&[(1, 0, 0), (0, 0, 0), (1, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 5), [3, 1, 3, 1, 3]);
    }

    #[test]
    fn all_quiescent_or_overloaded_gives_none() {
        let d = dests(&[(0, 0, 0), (1, 0, 0)]);
        d[1].state
            .overloaded
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 2), [0, 0]);
    }
}
