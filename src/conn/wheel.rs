//! The per-worker lazy timer wheels.

/// A wheel tick is 16 ms.
pub(super) const TICK_SHIFT: u32 = 4;
pub(super) const WHEEL_SLOTS: usize = 4096;
/// Entries of capacity a drained wheel bucket keeps for its next round
/// (2 KiB): more is given back, so the wheels' memory follows the current
/// rate of new timers rather than the highest it ever was.
pub(super) const WHEEL_KEEP: usize = 256;

#[inline]
pub(super) fn tick_of(ms: u64) -> u32 {
    (ms >> TICK_SHIFT) as u32
}
/// `a` is before `b` on the wrapping tick clock.
#[inline]
pub(super) fn tick_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Free slots a worker keeps for its own inserts, at most (256 KiB): the
/// slots its expiry ends beyond these go back to the table's shared stack.
/// Enough for the connections a busy worker ends in a second or two.
pub(super) const SPARE_KEEP: usize = 1 << 16;
/// Never-used slots a worker takes from the table's cursor at once.
pub(super) const FRESH_RUN: u32 = 64;

/// One worker's timers: `buckets[tick % WHEEL_SLOTS]` holds
/// `slot:32 | tick:32` entries. Entries are never removed early; an entry
/// counts only while the slot's registered tick (`W_WHEEL`) equals its own,
/// so moved timers leave harmless stale entries behind.
///
/// Also the worker's own free slots (`spare`, `run`): an insert takes its
/// slot and an expiry gives it back under this lock, which both hold
/// anyway, so a new connection on a worker needs neither the table's
/// shared free stack nor its cursor, lines every worker would write.
pub(super) struct Wheel {
    pub(super) buckets: Vec<Vec<u64>>,
    /// The next tick to process; None before the first use.
    pub(super) cursor: Option<u32>,
    /// Entries in all buckets, stale ones included: at 0 the cursor may
    /// jump to the present instead of walking the ticks between.
    pub(super) len: usize,
    /// Slots this worker's expiry freed (at most [`SPARE_KEEP`]).
    pub(super) spare: Vec<u32>,
    /// Never-used slots taken from the table's cursor, not yet used.
    pub(super) run: std::ops::Range<u32>,
}

impl Wheel {
    pub(super) fn new() -> Wheel {
        Wheel {
            buckets: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
            cursor: None,
            len: 0,
            spare: Vec::new(),
            run: 0..0,
        }
    }
    /// As new, keeping the buckets' memory.
    pub(super) fn clear(&mut self) {
        self.buckets.iter_mut().for_each(Vec::clear);
        self.cursor = None;
        self.len = 0;
        self.spare.clear();
        self.run = 0..0;
    }
    /// Queue `slot` at `tick` (or at the cursor, if that tick has already
    /// been processed); returns the tick used.
    pub(super) fn push(&mut self, slot: u32, tick: u32) -> u32 {
        let cur = *self.cursor.get_or_insert(tick);
        let t = if tick_before(tick, cur) { cur } else { tick };
        self.buckets[t as usize % WHEEL_SLOTS].push((slot as u64) << 32 | t as u64);
        self.len += 1;
        t
    }
}

impl super::ConnTable {
    /// Entries the timer wheels have room for (their memory / 8 bytes).
    pub fn wheel_capacity(&self) -> usize {
        self.wheels
            .iter()
            .map(|w| w.lock().buckets.iter().map(Vec::capacity).sum::<usize>())
            .sum()
    }

    /// Run every wheel until nothing due at `now_ms` is left (tests,
    /// shutdown). Returns how many connections ended.
    pub fn expire_all(&self, now_ms: u64) -> usize {
        (0..self.wheels.len())
            .map(|w| self.expire(w, now_ms, usize::MAX))
            .sum()
    }
}
