//! Locality-based least connection with replication (kernel
//! `net/netfilter/ipvs/ip_vs_lblcr.c`): each destination address is bound to
//! a set of servers. A flow goes to the set's weighted least-loaded member;
//! when that member is overloaded in lblc's sense (active > weight while some
//! server has active * 2 < weight) the wlc choice over all servers joins the
//! set and takes the flow. A set that has not changed for `lblcr_expiration`
//! (24 h) loses its weighted most-loaded member on the next lookup, so sets
//! grow under load and shrink back when it passes.
//!
//! Expiry of whole bindings, the lazy timer (running from the instance's
//! creation) and the keying by server identity (no add/del/upd hooks; a
//! deleted member is skipped until it comes back) are lblc's: see
//! [`super::lblc`].

use parking_lot::Mutex;

use super::lblc::{is_overloaded, least_loaded, Table, DEFAULT_EXPIRATION_MS, TAB_BITS};
use super::{hash_32, least_weighted_in, SchedFlags, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

/// A destination's server set: server ids ([`DestState::id`], the kernel's
/// `struct ip_vs_dest *`), most recently added first (`list_add_rcu`), and
/// when it last changed.
///
/// [`DestState::id`]: crate::live::DestState::id
struct DestSet {
    list: Vec<u32>,
    lastmod: u64,
}

/// Indices into `dests` of the members still in the list, in set order;
/// the others are deleted servers (the kernel's trash: not
/// `IP_VS_DEST_F_AVAILABLE`).
fn present<'a>(list: &'a [u32], dests: &'a [Dest]) -> impl Iterator<Item = usize> + 'a {
    list.iter()
        .filter_map(|&id| dests.iter().position(|d| d.state.id == id))
}

impl DestSet {
    /// `ip_vs_dest_set_min`: weighted least connection over the available
    /// members, skipping overloaded servers; weight-0 servers never win.
    fn min(&self, dests: &[Dest]) -> Option<usize> {
        least_weighted_in(dests, present(&self.list, dests), |d| {
            d.state.overhead() as u64
        })
    }

    /// `ip_vs_dest_set_max`: the weighted most-loaded member of positive
    /// weight (the OVERLOAD flag is not consulted). Returns its id.
    fn max(&self, dests: &[Dest]) -> Option<u32> {
        let oh = |i: usize| dests[i].state.overhead() as u128;
        let w = |i: usize| dests[i].weight as u128;
        let mut it = present(&self.list, dests);
        let mut most = it.find(|&i| w(i) > 0)?;
        for i in it {
            if oh(most) * w(i) < oh(i) * w(most) && w(i) > 0 {
                most = i;
            }
        }
        Some(dests[most].state.id)
    }

    /// `ip_vs_dest_set_insert(.., check = true)`.
    fn insert(&mut self, id: u32, now: u64) {
        if !self.list.contains(&id) {
            self.list.insert(0, id);
            self.lastmod = now;
        }
    }

    fn erase(&mut self, id: u32, now: u64) {
        if let Some(p) = self.list.iter().position(|&x| x == id) {
            self.list.remove(p);
            self.lastmod = now;
        }
    }
}

/// `ip_vs_lblcr_hashkey`: `hash_32(ntohl(addr_fold), IP_VS_LBLCR_TAB_BITS)`.
fn hashkey(fold: u32) -> usize {
    hash_32(fold, TAB_BITS) as usize
}

pub struct Lblcr {
    table: Mutex<Table<DestSet>>,
}

pub fn new(_: &[Dest], _: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Lblcr::build(crate::clock::now_ms()))
}

impl Lblcr {
    /// An instance created at `created_ms`: its expiry timer runs from then.
    fn build(created_ms: u64) -> Lblcr {
        Lblcr {
            table: Mutex::new(Table::new(hashkey, created_ms)),
        }
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, now_ms: u64) -> Option<usize> {
        let mut t = self.table.lock();
        t.run_timers(now_ms);
        if let Some(en) = t.get_mut(flow.dst) {
            en.lastuse = now_ms;
            let set = &mut en.val;
            let dest = set.min(dests);
            // More than one server and unchanged for the expiration: drop
            // the most loaded (even if it is `dest`, which is still used).
            if set.list.len() > 1 && now_ms > set.lastmod.saturating_add(DEFAULT_EXPIRATION_MS) {
                if let Some(m) = set.max(dests) {
                    set.erase(m, now_ms);
                }
            }
            if let Some(i) = dest.filter(|&i| !is_overloaded(dests, i)) {
                return Some(i);
            }
            let i = least_loaded(dests)?;
            set.insert(dests[i].state.id, now_ms);
            return Some(i);
        }
        let i = least_loaded(dests)?;
        t.insert(
            flow.dst,
            now_ms,
            DestSet {
                list: vec![dests[i].state.id],
                lastmod: now_ms,
            },
        );
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    use super::super::testutil::dests;
    use super::*;
    use crate::flow::Proto;

    fn to(dst: Ipv4Addr) -> FlowKey {
        FlowKey::v4(Proto::Tcp, Ipv4Addr::new(192, 0, 2, 1), 40000, dst, 80)
    }
    const D: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const DAY: u64 = DEFAULT_EXPIRATION_MS;
    fn active(d: &[Dest], i: usize, n: u32) {
        d[i].state.active.store(n, Relaxed);
    }
    fn set(s: &Lblcr, dst: Ipv4Addr) -> Vec<u32> {
        s.table
            .lock()
            .get_mut(dst.into())
            .map_or(vec![], |e| e.val.list.clone())
    }

    #[test]
    fn set_grows_under_overload_and_shrinks_after_expiry() {
        let s = Lblcr::build(0);
        let d = dests(&[(1, 0, 0), (1, 0, 0), (1, 0, 0)]);
        // Idle servers: wlc ties go to the first in kernel order, s3 (2).
        assert_eq!(s.pick(&d, &to(D), 0), Some(2));
        assert_eq!(set(&s, D), [2]);
        // s3 active 2 > weight 1 and s1 has 0 * 2 < 1: overloaded. wlc over
        // all (order s3 s2 s1, overheads 512, 0, 0) picks s2 and adds it at
        // the head of the set.
        active(&d, 2, 2);
        assert_eq!(s.pick(&d, &to(D), 1000), Some(1));
        assert_eq!(set(&s, D), [1, 2]);
        // The set's least loaded is now s2 (0 vs 512): used, no growth.
        assert_eq!(s.pick(&d, &to(D), 2000), Some(1));
        // s2 overloaded too (2 > 1, s1 still idle): s1 joins.
        active(&d, 1, 2);
        assert_eq!(s.pick(&d, &to(D), 3000), Some(0));
        assert_eq!(set(&s, D), [0, 1, 2]);
        // Keep the binding in use (a lookup at 12 h) without changing the
        // set; lastmod = 3000. Not yet: 3000 + 24 h is not strictly passed.
        active(&d, 0, 1);
        assert_eq!(s.pick(&d, &to(D), DAY / 2), Some(0));
        assert_eq!(s.pick(&d, &to(D), 3000 + DAY), Some(0));
        assert_eq!(set(&s, D).len(), 3);
        // One ms later the most loaded member goes: overheads s1 256,
        // s2 512, s3 512; walking the set s1 s2 s3, s2 beats s1 and s3 does
        // not beat s2 (strict <), so s2 (1) is erased and lastmod = now.
        assert_eq!(s.pick(&d, &to(D), 3001 + DAY), Some(0));
        assert_eq!(set(&s, D), [0, 2]);
        // Another whole period later the next one (s3) goes.
        assert_eq!(s.pick(&d, &to(D), 3002 + 2 * DAY), Some(0));
        assert_eq!(set(&s, D), [0]);
        // A single-member set never shrinks.
        assert_eq!(s.pick(&d, &to(D), 3003 + 3 * DAY), Some(0));
        assert_eq!(set(&s, D), [0]);
    }

    #[test]
    fn member_skipped_when_flagged_and_binding_expires_when_idle() {
        let s = Lblcr::build(0);
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        assert_eq!(s.pick(&d, &to(D), 0), Some(1));
        // The only member is threshold-overloaded: set_min finds nothing,
        // wlc (which also skips it) picks s1 and adds it.
        d[1].state.overloaded.store(true, Relaxed);
        assert_eq!(s.pick(&d, &to(D), 10), Some(0));
        assert_eq!(set(&s, D), [0, 1]);
        // Left idle, the binding (last used at 10 ms) survives the full
        // sweep at 24 h (sweeps every 30 min from the first pick, and
        // 24 h < 10 ms + 24 h) and goes on the one at 24.5 h.
        s.table.lock().run_timers(DAY + DAY / 48 - 1);
        assert_eq!(set(&s, D), [0, 1]);
        s.table.lock().run_timers(DAY + DAY / 48);
        assert_eq!(set(&s, D), Vec::<u32>::new());
        let none = dests(&[(0, 0, 0)]);
        assert_eq!(s.pick(&none, &to(D), DAY * 2), None);
    }
}
