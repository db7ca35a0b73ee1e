//! Free slots: each worker's own (its spares and its run of never-used
//! slots, under its wheel's lock), the table's shared stack and cursor,
//! and borrowing from another worker when the table is short.

use super::*;

impl ConnTable {
    /// A free slot for an insert by `wh`'s worker: one of its spares, the
    /// top of the table's shared free stack, the next of its run of
    /// never-used slots, or a new run from the cursor; in that order, so
    /// slots are used again before new ones are touched.
    pub(super) fn alloc_slot(&self, wh: &mut Wheel) -> Option<u32> {
        if let Some(id) = wh.spare.pop().or_else(|| self.pop_free()) {
            return Some(id);
        }
        let len = self.slots().len();
        if let Some(id) = wh.run.next() {
            persist::note_first_use(&self.region, id as usize, len);
            return Some(id);
        }
        if self.fresh.load(Relaxed) >= len {
            return None;
        }
        // Workers that race here may take the cursor past the end: every
        // reader of it stops at the slots there are.
        let start = self.fresh.fetch_add(FRESH_RUN as usize, Relaxed);
        if start >= len {
            return None;
        }
        wh.run = start as u32 + 1..(start + FRESH_RUN as usize).min(len) as u32;
        persist::note_first_use(&self.region, start, len);
        Some(start as u32)
    }

    /// A free slot another worker keeps (`alloc_slot` found none for
    /// `worker`, yet the table is not full). Takes one wheel's lock at a
    /// time, never two.
    #[cold]
    pub(super) fn steal_slot(&self, worker: usize) -> Option<u32> {
        let len = self.slots().len();
        self.wheels
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != worker)
            .find_map(|(_, w)| {
                let mut wh = w.lock();
                wh.spare.pop().or_else(|| {
                    let id = wh.run.next()?;
                    persist::note_first_use(&self.region, id as usize, len);
                    Some(id)
                })
            })
    }

    /// The top of the shared free stack.
    fn pop_free(&self) -> Option<u32> {
        let mut head = self.free.load(Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let next = self.slots()[top as usize - 1][W_WHEEL].load(Relaxed) >> 32;
            let new = ((head >> 32).wrapping_add(1)) << 32 | next;
            match self.free.compare_exchange_weak(head, new, Acquire, Acquire) {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
    }

    /// Push slot `id` on the shared free stack.
    pub(super) fn free_slot(&self, id: u32) {
        let w = &self.slots()[id as usize][W_WHEEL];
        let mut head = self.free.load(Relaxed);
        loop {
            w.store((head & 0xffff_ffff) << 32, Relaxed);
            let new = ((head >> 32).wrapping_add(1)) << 32 | (id as u64 + 1);
            match self.free.compare_exchange_weak(head, new, Release, Relaxed) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }
}
