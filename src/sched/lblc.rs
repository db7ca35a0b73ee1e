//! Locality-based least connection (kernel
//! `net/netfilter/ipvs/ip_vs_lblc.c`), for cache clusters: each destination
//! address is bound to one server, which keeps it until that server is
//! unavailable or overloaded in lblc's sense (more active connections than
//! its weight while some server has fewer than half its weight); then the
//! address is rebound to the wlc choice. Bindings unused for
//! `lblc_expiration` (24 h) are dropped by the kernel's periodic check.
//!
//! The kernel's garbage-collection timer (every 60 s; every 30th run a full
//! sweep for entries idle 24 h, otherwise, only above 16384 entries, a
//! partial sweep of entries idle 6 min) runs here lazily inside `pick`: the
//! runs that fell due since the last pick are replayed at their own times
//! before the lookup. As the kernel's `periodic_timer`, armed in
//! `ip_vs_lblc_init_svc`, the first run is 60 s after the instance was
//! created (the service was added or given this scheduler).
//!
//! The kernel keys entries to `struct ip_vs_dest *`; rvs keys them to the
//! server's identity ([`DestState::id`]). lblc has no add/del/upd hooks: the
//! instance and its bindings live as long as the service, a binding to a
//! deleted server (not in the list: the kernel's trash, not
//! `IP_VS_DEST_F_AVAILABLE`) is rescheduled on its next use, and one to a
//! server deleted and added back (taken back from the trash) holds again.
//!
//! [`DestState::id`]: crate::live::DestState::id
//!
//! [`Table`], [`is_overloaded`] and the constants are shared with lblcr.

use std::net::IpAddr;

use parking_lot::Mutex;

use super::{addr_fold, hash_32, kernel_order, least_weighted_in, locate, SchedFlags, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

/// CHECK_EXPIRE_INTERVAL, 60 s.
pub(super) const CHECK_EXPIRE_INTERVAL_MS: u64 = 60 * 1000;
/// ENTRY_TIMEOUT, 6 min: idle time after which the partial sweep may drop.
pub(super) const ENTRY_TIMEOUT_MS: u64 = 6 * 60 * 1000;
/// DEFAULT_EXPIRATION, 24 h: the `lblc_expiration`/`lblcr_expiration`
/// sysctl default (full sweep; lblcr's server-set shrink period).
pub(super) const DEFAULT_EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;
/// COUNT_FOR_FULL_EXPIRATION.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;
/// IP_VS_LBLC_TAB_BITS = IP_VS_LBLCR_TAB_BITS = 10.
pub(super) const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
/// `tbl->max_size = TAB_SIZE * 16`.
const MAX_SIZE: usize = TAB_SIZE * 16;

/// One binding of a destination address.
pub(super) struct Entry<V> {
    pub addr: IpAddr,
    pub lastuse: u64,
    pub val: V,
}

/// The kernel's 1024-bucket chained table with its expiry state. Bucket
/// layout matters only for which entries a partial sweep drops first.
pub(super) struct Table<V> {
    buckets: Vec<Vec<Entry<V>>>,
    hash: fn(u32) -> usize,
    entries: usize,
    rover: usize,
    counter: u32,
    /// When the next timer run is due.
    next_check: u64,
}

impl<V> Table<V> {
    /// A table created at `created_ms`: the first timer run is one interval
    /// later (`mod_timer(.., jiffies + CHECK_EXPIRE_INTERVAL)` in init_svc).
    pub fn new(hash: fn(u32) -> usize, created_ms: u64) -> Table<V> {
        Table {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            hash,
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: created_ms.saturating_add(CHECK_EXPIRE_INTERVAL_MS),
        }
    }

    pub fn get_mut(&mut self, addr: IpAddr) -> Option<&mut Entry<V>> {
        let b = (self.hash)(addr_fold(addr));
        self.buckets[b].iter_mut().find(|e| e.addr == addr)
    }

    /// Add a binding the caller has checked is absent.
    pub fn insert(&mut self, addr: IpAddr, now: u64, val: V) {
        let b = (self.hash)(addr_fold(addr));
        self.buckets[b].push(Entry {
            addr,
            lastuse: now,
            val,
        });
        self.entries += 1;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Replay every timer run due by `now` (`ip_vs_lblc_check_expire`).
    pub fn run_timers(&mut self, now: u64) {
        let mut t = self.next_check;
        while t <= now {
            if self.entries == 0 {
                // An empty table only advances the counter (c -> c % 30 + 1,
                // the full sweep leaves the rover where it was): skip ahead.
                let runs = (now - t) / CHECK_EXPIRE_INTERVAL_MS + 1;
                self.counter = ((self.counter as u64 - 1 + runs) % COUNT_FOR_FULL_EXPIRATION as u64)
                    as u32
                    + 1;
                t += runs * CHECK_EXPIRE_INTERVAL_MS;
                break;
            }
            self.check_expire(t);
            t += CHECK_EXPIRE_INTERVAL_MS;
        }
        self.next_check = t;
    }

    fn check_expire(&mut self, now: u64) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            // Full sweep: drop entries idle for the expiration.
            self.sweep(now, DEFAULT_EXPIRATION_MS, None);
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
        self.sweep(now, ENTRY_TIMEOUT_MS, Some(goal as i64));
    }

    /// Walk the buckets from the one after the rover, dropping entries with
    /// `now >= lastuse + timeout`; with a goal, stop after the bucket that
    /// reaches it.
    fn sweep(&mut self, now: u64, timeout: u64, mut goal: Option<i64>) {
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & (TAB_SIZE - 1);
            let before = self.buckets[j].len();
            self.buckets[j].retain(|e| now < e.lastuse.saturating_add(timeout));
            let dropped = before - self.buckets[j].len();
            self.entries -= dropped;
            if let Some(g) = goal.as_mut() {
                *g -= dropped as i64;
                if *g <= 0 {
                    break;
                }
            }
        }
        self.rover = j;
    }
}

/// lblc/lblcr `is_overloaded`: more active connections than its weight
/// while some server (any, itself included) has fewer than half its weight.
pub(super) fn is_overloaded(dests: &[Dest], i: usize) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    let active = |d: &Dest| d.state.active.load(Relaxed) as u64;
    active(&dests[i]) > dests[i].weight as u64
        && dests.iter().any(|d| active(d) * 2 < d.weight as u64)
}

/// `__ip_vs_lblc_schedule` / `__ip_vs_lblcr_schedule`: wlc over all servers
/// in kernel list order.
pub(super) fn least_loaded(dests: &[Dest]) -> Option<usize> {
    least_weighted_in(dests, kernel_order(dests.len()), |d| {
        d.state.overhead() as u64
    })
}

/// `ip_vs_lblc_hashkey`: `hash_32(ntohl(addr_fold), IP_VS_LBLC_TAB_BITS)`.
fn hashkey(fold: u32) -> usize {
    hash_32(fold, TAB_BITS) as usize
}

pub struct Lblc {
    /// Bindings to (index hint, server id).
    table: Mutex<Table<(usize, u32)>>,
}

pub fn new(_: &[Dest], _: SchedFlags) -> Box<dyn Scheduler> {
    Box::new(Lblc::build(crate::clock::now_ms()))
}

impl Lblc {
    /// An instance created at `created_ms` (the data path's clock).
    pub(super) fn build(created_ms: u64) -> Lblc {
        Lblc {
            table: Mutex::new(Table::new(hashkey, created_ms)),
        }
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }
    fn pick(&self, dests: &[Dest], flow: &FlowKey, now_ms: u64) -> Option<usize> {
        let mut t = self.table.lock();
        t.run_timers(now_ms);
        if let Some(en) = t.get_mut(flow.dst) {
            en.lastuse = now_ms;
            let (hint, id) = en.val;
            // The kernel checks availability (not deleted), weight and
            // lblc's own overload rule here, not the threshold OVERLOAD flag.
            if let Some(i) = locate(dests, hint, id) {
                if dests[i].weight > 0 && !is_overloaded(dests, i) {
                    en.val.0 = i;
                    return Some(i);
                }
            }
        }
        let i = least_loaded(dests)?;
        let val = (i, dests[i].state.id);
        match t.get_mut(flow.dst) {
            Some(en) => {
                en.val = val;
                en.lastuse = now_ms;
            }
            None => t.insert(flow.dst, now_ms, val),
        }
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
    fn pick(s: &dyn Scheduler, d: &[Dest], dst: Ipv4Addr, now: u64) -> usize {
        s.pick(d, &to(dst), now).map_or(0, |i| i + 1)
    }
    /// An instance created at time 0.
    fn lblc0() -> Box<dyn Scheduler> {
        Box::new(Lblc::build(0))
    }
    fn active(d: &[Dest], i: usize, n: u32) {
        d[i].state.active.store(n, Relaxed);
    }

    #[test]
    fn destination_sticks_until_its_server_overloads() {
        // Idle servers of weight 1: wlc ties go to the first in kernel order
        // (newest first), s2.
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = lblc0();
        assert_eq!(pick(&*s, &d, D, 0), 2);
        // s2 busier than s1 but active 1 is not > weight 1: stays.
        active(&d, 1, 1);
        assert_eq!(pick(&*s, &d, D, 1), 2);
        // Another destination is scheduled by wlc: s1 (0 < 256).
        assert_eq!(pick(&*s, &d, Ipv4Addr::new(198, 51, 100, 8), 1), 1);
        // s2 active 5 > 1, but no server has active*2 < weight
        // (s1: 1*2 < 1 false): not overloaded, stays.
        active(&d, 0, 1);
        active(&d, 1, 5);
        assert_eq!(pick(&*s, &d, D, 2), 2);
        // s1 idle again (0*2 < 1): s2 is overloaded -> rebound to wlc's s1.
        active(&d, 0, 0);
        assert_eq!(pick(&*s, &d, D, 3), 1);
        // ... and the binding moved: s1 now loaded but not overloaded
        // (1 > 1 false) keeps it although s2 is idle.
        active(&d, 0, 1);
        active(&d, 1, 0);
        assert_eq!(pick(&*s, &d, D, 4), 1);
    }

    #[test]
    fn weight_zero_rebinds_and_threshold_flag_is_not_consulted_for_bindings() {
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = lblc0();
        assert_eq!(pick(&*s, &d, D, 0), 2);
        // The kernel's lblc checks only weight and its own overload rule for
        // a cached server, so the u_threshold OVERLOAD flag keeps it...
        d[1].state.overloaded.store(true, Relaxed);
        assert_eq!(pick(&*s, &d, D, 1), 2);
        // ...but new destinations skip it.
        assert_eq!(pick(&*s, &d, Ipv4Addr::new(198, 51, 100, 9), 1), 1);
        d[1].state.overloaded.store(false, Relaxed);
        let d0 = dests(&[(1, 0, 0), (0, 0, 0)]);
        let s = lblc0();
        assert_eq!(pick(&*s, &d0, D, 0), 1);
        let none = dests(&[(0, 0, 0)]);
        assert_eq!(pick(&*lblc0(), &none, D, 0), 0);
    }

    #[test]
    fn bindings_expire_after_24h_idle_on_the_full_sweep() {
        // Timer runs every 60 s from creation (t = 0): runs at 60 s,
        // 120 s, ...; the counter starts at 1 and the run that finds it at 30
        // sweeps fully, so full sweeps are at 30 min, 60 min, ..., and the
        // 48th, at exactly 24 h, drops an entry last used at 0
        // (now >= lastuse + 24 h).
        // After the bind, s1 is made the wlc choice so a fresh schedule is
        // visible as s1 while the binding says s2.
        let bound = |d: &[Dest]| {
            let s = lblc0();
            assert_eq!(pick(&*s, d, D, 0), 2);
            active(d, 1, 1);
            s
        };
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = bound(&d);
        assert_eq!(pick(&*s, &d, D, DAY - 1), 2);
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = bound(&d);
        assert_eq!(pick(&*s, &d, D, DAY), 1);
        // Use refreshes: picked again at 12 h, the entry survives the 24 h
        // sweep and goes on the 36 h one (the first with now >= 12 h + 24 h).
        let l = Lblc::build(0);
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        assert_eq!(l.pick(&d, &to(D), 0), Some(1));
        assert_eq!(l.pick(&d, &to(D), DAY / 2), Some(1));
        l.table.lock().run_timers(DAY / 2 + DAY - 1);
        assert_eq!(l.table.lock().len(), 1);
        l.table.lock().run_timers(DAY / 2 + DAY);
        assert_eq!(l.table.lock().len(), 0);
    }

    #[test]
    fn partial_sweep_above_max_size_drops_6_min_idle_entries_bucket_by_bucket() {
        // 16385 destinations 10.0.0.0 + k (k = 0..=16384) bound at t = 0.
        // Runs at 60..300 s find 16385 > 16384 and sweep with goal
        // (1 * 4 / 3) = 1, but nothing is 6 min idle yet (the rover returns
        // to 0 after a full lap). The run at 360 s drops bucket 1 (the first
        // after rover 0), all of it, goal reached, stop. Bucket 1 holds the
        // addresses whose hash_32(addr, 10) is 1, counted here from the
        // kernel formula (`(addr * 0x61C88647) >> 22`).
        let in_bucket_1 = (0..=16384u32)
            .filter(|k| (0x0A00_0000 + k).wrapping_mul(0x61C8_8647) >> 22 == 1)
            .count();
        assert!(in_bucket_1 > 0);
        let l = Lblc::build(0);
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        for k in 0..=16384u32 {
            assert!(l
                .pick(&d, &to(Ipv4Addr::from(0x0A00_0000 + k)), 0)
                .is_some());
        }
        assert_eq!(l.table.lock().len(), 16385);
        l.table.lock().run_timers(359_999);
        assert_eq!(l.table.lock().len(), 16385);
        l.table.lock().run_timers(360_000);
        assert_eq!(l.table.lock().len(), 16385 - in_bucket_1);
        assert_eq!(l.table.lock().rover, 1);
        // Below max size now: later runs only count until the full sweep.
        l.table.lock().run_timers(420_000);
        assert_eq!(l.table.lock().len(), 16385 - in_bucket_1);
    }
    #[test]
    fn timer_runs_from_creation_not_from_the_first_pick() {
        // ip_vs_lblc_init_svc arms the timer CHECK_EXPIRE_INTERVAL after the
        // service is created: with creation at 0, full sweeps (every 30th
        // run) are at k * 30 min. A binding first used at 10 min (lastuse
        // 10 min) survives the sweep at 24 h 10 min (not a sweep time) and
        // goes on the one at 24 h 30 min, the first with now >= 10 min +
        // 24 h. A timer started by the first pick would sweep at 10 min +
        // k * 30 min and drop it at exactly 24 h 10 min.
        const MIN: u64 = 60 * 1000;
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = lblc0();
        assert_eq!(pick(&*s, &d, D, 10 * MIN), 2);
        active(&d, 1, 1);
        assert_eq!(pick(&*s, &d, D, DAY + 10 * MIN), 2);
        // (that pick refreshed lastuse; start again for the expiry itself)
        let s = lblc0();
        active(&d, 1, 0);
        assert_eq!(pick(&*s, &d, D, 10 * MIN), 2);
        active(&d, 1, 1);
        assert_eq!(
            pick(&*s, &d, Ipv4Addr::new(198, 51, 100, 99), DAY + 29 * MIN),
            1
        );
        assert_eq!(pick(&*s, &d, D, DAY + 30 * MIN), 1);
    }

    #[test]
    fn buckets_are_hash_32_of_the_address() {
        // ip_vs_lblc_hashkey = hash_32(ntohl(addr), 10): the top 10 bits of
        // addr * 0x61C88647. 10.0.0.100 = 0x0A000064: product 0xF85473BC,
        // top 10 bits 0b1111100001 = 993. (The old `* 2654435761 & 1023`
        // gave 0x0A000064 * 0x9E3779B1 mod 1024 = 0x64 * 0x1B1 mod 1024 =
        // 100 * 433 = 43300 mod 1024 = 292.)
        assert_eq!(hashkey(0x0A00_0064), 993);
    }
}
