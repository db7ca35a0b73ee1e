//! Round robin (kernel `ip_vs_rr.c`): walk the server list from the server
//! after the last one picked, taking the first with weight > 0 that is not
//! overloaded. The cursor starts at the list head, so the first pick is the
//! first available server in the kernel's order (newest first, see
//! [`super::kernel_order`]).
//!
//! The cursor names a server, as the kernel's `svc->sched_data` points at a
//! `dest->n_list`: a server added later (at the list head) does not move it,
//! and `ip_vs_rr_del_dest` moves it back to the previous entry when its own
//! server goes, so no server is skipped or visited twice because the list
//! changed. rr has no `add_dest`/`upd_dest` hooks.

use parking_lot::Mutex;

use super::{locate, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

pub struct Rr {
    /// The last server picked, as (index hint, id); None = the list head.
    cursor: Mutex<Option<(usize, u32)>>,
}

pub fn new(_: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    // ip_vs_rr_init_svc: sched_data = &svc->destinations.
    Box::new(Rr {
        cursor: Mutex::new(None),
    })
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        let n = dests.len();
        let mut cur = self.cursor.lock();
        // Positions in the kernel's list; position p is dests[n - 1 - p].
        // From the head: one pass over all. From a server: the ones after
        // it, then (second pass) from the head up to and including it.
        let start = cur
            .and_then(|(hint, id)| locate(dests, hint, id))
            .map_or(0, |i| n - i);
        let p = (0..n)
            .map(|k| (start + k) % n)
            .find(|&p| dests[n - 1 - p].available())?;
        let i = n - 1 - p;
        *cur = Some((i, dests[i].state.id));
        Some(i)
    }
    fn del_dest(&self, before: &[Dest], i: usize, _after: &[Dest]) {
        // ip_vs_rr_del_dest: a cursor on the removed server moves to the
        // entry before it in the kernel's list, which is the next older
        // server (before[i + 1], at index i once it is gone), or the head.
        let mut cur = self.cursor.lock();
        if cur.is_some_and(|(_, id)| id == before[i].state.id) {
            *cur = before.get(i + 1).map(|d| (i, d.state.id));
        }
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
