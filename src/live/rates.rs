//! Rate estimation for services and real servers, as the kernel's
//! `net/netfilter/ipvs/ip_vs_est.c`.
//!
//! Every [`INTERVAL`] (2 s) each estimator takes the difference of its
//! traffic counters since the last tick and folds it into an exponentially
//! weighted moving average with weight W = 2^-2:
//!
//! ```text
//! avgrate = avgrate * (1 - W) + rate * W
//! ```
//!
//! in the kernel's fixed point: connections and packets per second scaled by
//! 2^10 (a 2 s difference shifted left by 9), bytes per second scaled by 2^5
//! (shifted left by 4). The read-out rounds to the nearest integer:
//! `(cps + 0x1FF) >> 10`, `(bps + 0xF) >> 5` (`ip_vs_read_estimator`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Time between two estimator ticks (the kernel's `2 * HZ`).
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Rates as `ipvsadm -L --rate` shows them: per second, rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second, client → real server.
    pub inpps: u64,
    /// Packets per second, real server → client.
    pub outpps: u64,
    /// Bytes per second, client → real server.
    pub inbps: u64,
    /// Bytes per second, real server → client.
    pub outbps: u64,
}

/// The kernel's `struct ip_vs_estimator`: the counters at the last tick and
/// the scaled averages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EstState {
    last: TrafficStats,
    /// Connections/s × 2^10.
    pub cps: u64,
    /// Packets/s × 2^10.
    pub inpps: u64,
    pub outpps: u64,
    /// Bytes/s × 2^5.
    pub inbps: u64,
    pub outbps: u64,
}

/// `e += (rate - e) >> 2` on signed values, as the kernel's
/// `e->cps += ((s64)rate - (s64)e->cps) >> 2` (an arithmetic shift: a falling
/// average rounds towards minus infinity, exactly as there).
fn ewma(e: u64, rate: u64) -> u64 {
    let e = e as i64;
    (e + ((rate as i64 - e) >> 2)) as u64
}

impl EstState {
    /// One 2 s tick with the counters `now`.
    pub fn tick(&mut self, now: TrafficStats) {
        // Counters only grow (zeroing resets `last` too); a wrap or a reset
        // behind our back counts as no traffic rather than a huge spike.
        let d = |cur: u64, last: u64| cur.saturating_sub(last);
        self.cps = ewma(self.cps, d(now.conns, self.last.conns) << 9);
        self.inpps = ewma(self.inpps, d(now.inpkts, self.last.inpkts) << 9);
        self.outpps = ewma(self.outpps, d(now.outpkts, self.last.outpkts) << 9);
        self.inbps = ewma(self.inbps, d(now.inbytes, self.last.inbytes) << 4);
        self.outbps = ewma(self.outbps, d(now.outbytes, self.last.outbytes) << 4);
        self.last = now;
    }

    /// The decoded rates (`ip_vs_read_estimator`).
    pub fn read(&self) -> Rates {
        Rates {
            cps: (self.cps + 0x1FF) >> 10,
            inpps: (self.inpps + 0x1FF) >> 10,
            outpps: (self.outpps + 0x1FF) >> 10,
            inbps: (self.inbps + 0xF) >> 5,
            outbps: (self.outbps + 0xF) >> 5,
        }
    }

    /// Start over from counters `now` (`ip_vs_zero_estimator`).
    pub fn zero(&mut self, now: TrafficStats) {
        *self = EstState {
            last: now,
            ..EstState::default()
        };
    }
}

/// An estimator shared between the ticking thread and readers.
#[derive(Debug, Default)]
pub struct Estimator(Mutex<EstState>);

impl Estimator {
    /// One tick over `c`, read under the lock so that a concurrent
    /// [`Estimator::zero_with`] cannot slip between reading and folding.
    pub fn tick(&self, c: &TrafficCounters) {
        let mut e = self.0.lock();
        e.tick(c.read());
    }
    pub fn read(&self) -> Rates {
        self.0.lock().read()
    }
    /// Zero the counters `c` and restart the estimator (ipvsadm -Z).
    pub fn zero_with(&self, c: &TrafficCounters) {
        let mut e = self.0.lock();
        c.clear();
        e.zero(c.read());
    }
}

/// Traffic counters shared by a service or real server and every snapshot
/// and connection that refers to it.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    pub conns: AtomicU64,
    pub inpkts: AtomicU64,
    pub outpkts: AtomicU64,
    pub inbytes: AtomicU64,
    pub outbytes: AtomicU64,
}

/// A plain copy of [`TrafficCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficStats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl TrafficCounters {
    pub fn read(&self) -> TrafficStats {
        TrafficStats {
            conns: self.conns.load(Relaxed),
            inpkts: self.inpkts.load(Relaxed),
            outpkts: self.outpkts.load(Relaxed),
            inbytes: self.inbytes.load(Relaxed),
            outbytes: self.outbytes.load(Relaxed),
        }
    }
    pub fn clear(&self) {
        for c in [
            &self.conns,
            &self.inpkts,
            &self.outpkts,
            &self.inbytes,
            &self.outbytes,
        ] {
            c.store(0, Relaxed);
        }
    }
    /// Add a worker's batch of packet counts.
    pub fn add(&self, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) {
        for (c, v) in [
            (&self.inpkts, inpkts),
            (&self.outpkts, outpkts),
            (&self.inbytes, inbytes),
            (&self.outbytes, outbytes),
        ] {
            if v != 0 {
                c.fetch_add(v, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(conns: u64, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) -> TrafficStats {
        TrafficStats {
            conns,
            inpkts,
            outpkts,
            inbytes,
            outbytes,
        }
    }

    #[test]
    fn steady_rate_converges_with_the_kernel_fixed_point() {
        // 10 conns/s: 20 per tick → rate = 20 << 9 = 10240 (10 × 2^10).
        // e: 0 → 2560 → 4480 → 5920 → 7000 → 7810 (each e += (10240-e)>>2).
        let mut e = EstState::default();
        let mut want = [2560u64, 4480, 5920, 7000, 7810].iter();
        // Reads: (2560+511)>>10 = 2, (4480+511)>>10 = 4, 6431>>10 = 6, 7, 8.
        let mut reads = [2u64, 4, 6, 7, 8].iter();
        for t in 1..=5u64 {
            e.tick(stats(20 * t, 0, 0, 0, 0));
            assert_eq!(e.cps, *want.next().unwrap(), "tick {t}");
            assert_eq!(e.read().cps, *reads.next().unwrap(), "tick {t}");
        }
        for t in 6..=60u64 {
            e.tick(stats(20 * t, 0, 0, 0, 0));
        }
        assert_eq!(e.read().cps, 10, "converges to 10/s");
        // Fixed point of e += (10240 - e) >> 2 is 10237 (the shift floors).
        assert_eq!(e.cps, 10237);
    }

    #[test]
    fn bytes_are_scaled_by_2_to_the_5() {
        // 1000 bytes/s: 2000 per tick → rate = 2000 << 4 = 32000 (1000 × 32).
        // e: 8000 → 14000; reads (8000+15)>>5 = 250, (14000+15)>>5 = 437.
        let mut e = EstState::default();
        e.tick(stats(0, 0, 0, 2000, 4000));
        assert_eq!((e.inbps, e.outbps), (8000, 16000));
        assert_eq!((e.read().inbps, e.read().outbps), (250, 500));
        e.tick(stats(0, 0, 0, 4000, 8000));
        assert_eq!((e.inbps, e.outbps), (14000, 28000));
        assert_eq!((e.read().inbps, e.read().outbps), (437, 875));
    }

    #[test]
    fn decay_uses_an_arithmetic_shift_and_rounds_half_up() {
        // One burst of 3 packets in, then silence: 3 << 9 = 1536 → e = 384,
        // read (384+511)>>10 = 0. With 7 packets: 3584 → 896 → read 1
        // (896 ≥ 512 rounds up); then e = 896 + ((0-896)>>2) = 672 → 1,
        // 504 → 0 (504 + 511 < 1024).
        let mut e = EstState::default();
        e.tick(stats(0, 3, 0, 0, 0));
        assert_eq!((e.inpps, e.read().inpps), (384, 0));
        let mut e = EstState::default();
        e.tick(stats(0, 7, 7, 0, 0));
        assert_eq!((e.inpps, e.read().inpps), (896, 1));
        e.tick(stats(0, 7, 7, 0, 0));
        assert_eq!((e.inpps, e.read().inpps), (672, 1));
        e.tick(stats(0, 7, 7, 0, 0));
        assert_eq!((e.outpps, e.read().outpps), (504, 0));
        // -1 >> 2 is -1 for a signed shift: a tiny average decays to 0 in
        // steps of at least one, never sticking above zero.
        let mut e = EstState {
            cps: 3,
            ..EstState::default()
        };
        for want in [2u64, 1, 0, 0] {
            e.tick(TrafficStats::default());
            assert_eq!(e.cps, want);
        }
    }

    #[test]
    fn zero_restarts_from_the_current_counters() {
        let mut e = EstState::default();
        e.tick(stats(100, 1000, 900, 64000, 128000));
        assert!(e.read().cps > 0);
        e.zero(stats(100, 1000, 900, 64000, 128000));
        assert_eq!(e.read(), Rates::default());
        e.tick(stats(100, 1000, 900, 64000, 128000));
        assert_eq!(e.read(), Rates::default(), "no traffic since zeroing");
        // Counters reset behind the estimator's back: no spike.
        e.tick(TrafficStats::default());
        assert_eq!(e.read(), Rates::default());
    }
}
