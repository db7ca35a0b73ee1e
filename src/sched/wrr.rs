//! Weighted round robin (kernel `ip_vs_wrr.c`): servers are visited in list
//! order while a current weight `cw` steps down from the maximum weight by the
//! gcd of all weights; a server is picked when its weight >= cw. The kernel's
//! bookkeeping is reproduced: `mw` is max weight - (gcd - 1), a full pass
//! that finds nothing ends with "all destinations are overloaded".
//!
//! Every change to the list (`add_dest`, `del_dest`, `upd_dest`, all
//! `ip_vs_wrr_dest_changed`) recomputes `di` and `mw`, puts the cursor back
//! at the list head and keeps `cw` (clamped to the new `mw`, or rounded to
//! the new gcd), so the phase depends on the history: a service created
//! (`-A`, `cw = mw = 0`) and then given A weight 3 and B weight 1 (`-a`
//! each) starts with `cw = 1` and picks B A A A B A A A, while the same list
//! given to a fresh instance (`-E -s wrr`, `ip_vs_wrr_init_svc`) starts at
//! `cw = 3`: A A B A A A B A.

use parking_lot::Mutex;

use super::{locate, Scheduler};
use crate::flow::FlowKey;
use crate::live::Dest;

struct Mark {
    /// Last picked server as (index hint, id); None = list head.
    cl: Option<(usize, u32)>,
    cw: i64,
    mw: i64,
    di: i64,
}

pub struct Wrr {
    mark: Mutex<Mark>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `ip_vs_wrr_gcd_weight` (1 when no weight is positive) and
/// `ip_vs_wrr_max_weight`.
fn gcd_max(dests: &[Dest]) -> (i64, i64) {
    let mut g = 0i64;
    let mut max = 0i64;
    for d in dests.iter().filter(|d| d.weight > 0) {
        let w = d.weight as i64;
        g = if g > 0 { gcd(w, g) } else { w };
        max = max.max(w);
    }
    (if g > 0 { g } else { 1 }, max)
}

pub fn new(dests: &[Dest], _: super::SchedFlags) -> Box<dyn Scheduler> {
    // ip_vs_wrr_init_svc
    let (di, max) = gcd_max(dests);
    let mw = max - (di - 1);
    Box::new(Wrr {
        mark: Mutex::new(Mark {
            cl: None,
            cw: mw,
            mw,
            di,
        }),
    })
}

impl Wrr {
    /// `ip_vs_wrr_dest_changed`, the add/del/upd hook.
    fn dest_changed(&self, dests: &[Dest]) {
        let mut m = self.mark.lock();
        m.cl = None;
        let (di, max) = gcd_max(dests);
        m.di = di;
        m.mw = max - (di - 1);
        if m.cw > m.mw || m.cw == 0 {
            m.cw = m.mw;
        } else if m.di > 1 {
            m.cw = (m.cw / m.di) * m.di + 1;
        }
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }
    fn pick(&self, dests: &[Dest], _: &FlowKey, _: u64) -> Option<usize> {
        let mut m = self.mark.lock();
        if m.mw <= 0 || dests.is_empty() {
            return None;
        }
        let n = dests.len();
        // Positions are in the kernel's list order: position p is
        // dests[n - 1 - p] (see super::kernel_order). A cursor whose server
        // is not in this list (a worker on the previous snapshot) counts as
        // the head.
        let last: Option<usize> =
            m.cl.and_then(|(hint, id)| locate(dests, hint, id))
                .map(|i| n - 1 - i);
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        // `pos` is where list_for_each_entry_continue resumes: after cl.
        let mut pos = last.map_or(0, |p| p + 1);
        loop {
            while pos < n {
                let d = &dests[n - 1 - pos];
                if !d
                    .state
                    .overloaded
                    .load(std::sync::atomic::Ordering::Relaxed)
                    && d.weight as i64 >= m.cw
                {
                    m.cl = Some((n - 1 - pos, d.state.id));
                    return Some(n - 1 - pos);
                }
                if Some(pos) == stop {
                    m.cl = Some((n - 1 - pos, d.state.id));
                    return None;
                }
                pos += 1;
            }
            pos = 0;
            m.cw -= m.di;
            if m.cw <= 0 {
                m.cw = m.mw;
                if last_pass || last.is_none() {
                    m.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = m.cw <= m.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
    fn add_dest(&self, dests: &[Dest], _: usize) {
        self.dest_changed(dests);
    }
    fn del_dest(&self, _: &[Dest], _: usize, after: &[Dest]) {
        self.dest_changed(after);
    }
    fn upd_dest(&self, dests: &[Dest], _: usize) {
        self.dest_changed(dests);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dests, picks};
    use super::*;

    // Servers are added A, B, C; the kernel walks its list newest first
    // (C, B, A), resuming after the last pick; cw steps down by the gcd.

    #[test]
    fn weights_3_1_interleave_as_the_kernel_does() {
        // list B1 A3. cw 3: A | cw 2: A | cw 1: B, A | cw 3: A | 2: A | 1: B, A
        let d = dests(&[(3, 0, 0), (1, 0, 0)]);
        assert_eq!(
            picks(&*new(&d, Default::default()), &d, 8),
            [1, 1, 2, 1, 1, 1, 2, 1]
        );
    }

    #[test]
    fn weights_4_3_2_follow_the_gcd_max_stepping() {
        // list C2 B3 A4. cw 4: A | 3: B, A | 2: C, B, A | 1: C, B, A
        let d = dests(&[(4, 0, 0), (3, 0, 0), (2, 0, 0)]);
        assert_eq!(
            picks(&*new(&d, Default::default()), &d, 9),
            [1, 2, 1, 3, 2, 1, 3, 2, 1]
        );
    }

    #[test]
    fn common_divisor_is_stepped_over() {
        // weights 4:2, gcd 2: mw = 4 - 1 = 3. list B2 A4. cw 3: A | 1: B, A
        let d = dests(&[(4, 0, 0), (2, 0, 0)]);
        assert_eq!(
            picks(&*new(&d, Default::default()), &d, 6),
            [1, 2, 1, 1, 2, 1]
        );
    }

    #[test]
    fn weight_zero_is_never_picked_and_all_zero_gives_none() {
        // list C1 B0 A2. cw 2: A | 1: C, A | 2: A | 1: C, A
        let d = dests(&[(2, 0, 0), (0, 0, 0), (1, 0, 0)]);
        assert_eq!(
            picks(&*new(&d, Default::default()), &d, 6),
            [1, 3, 1, 1, 3, 1]
        );
        let d = dests(&[(0, 0, 0), (0, 0, 0)]);
        assert_eq!(picks(&*new(&d, Default::default()), &d, 2), [0, 0]);
    }

    #[test]
    fn all_overloaded_gives_none_then_recovers() {
        let d = dests(&[(1, 0, 0), (1, 0, 0)]);
        let s = new(&d, Default::default());
        for x in &d {
            x.state
                .overloaded
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(picks(&*s, &d, 2), [0, 0]);
        d[1].state
            .overloaded
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(picks(&*s, &d, 2), [2, 2]);
    }
}
