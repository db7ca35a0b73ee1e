//! Reply entries left to the end of the burst. A new connection's reply
//! key is known only once the scheduler has chosen its real server, and
//! its index bucket is then a cache miss (at 10 M connections, a miss to
//! memory). Put in at once, each SYN waits for its own; left in a [`Late`]
//! while the rest of the burst is decided, the misses of a burst's new
//! connections overlap, and [`ConnTable::link_late`] puts the entries in
//! before any frame of the burst is sent.
//!
//! Until then the connection carries [`F_LATE`]. Its end (an expiry, a
//! flush from the control socket, `conn_reuse_mode`) leaves a late entry
//! to `link_late`, which takes it out again: whichever changes the control
//! word first (the end setting DEAD, or `link_late` clearing LATE) decides
//! who unlinks it, so it is unlinked exactly once.

use super::*;

/// At most this many entries wait (a receive burst); an insert beyond
/// them puts its entry in at once.
pub const LATE_MAX: usize = 32;

#[derive(Clone, Copy, Default)]
struct Link {
    hash: u64,
    entry: u64,
    gen: u16,
}

/// One worker's reply entries not yet in the index (see the module
/// documentation).
///
/// Moved in and out of a worker's poll, so it is small: the entries are
/// boxed.
pub struct Late {
    n: usize,
    links: Box<[Link; LATE_MAX]>,
}

impl Default for Late {
    fn default() -> Self {
        Late {
            n: 0,
            links: Box::new([Link::default(); LATE_MAX]),
        }
    }
}

impl Late {
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub(super) fn has_room(&self) -> bool {
        self.n < LATE_MAX
    }
    pub(super) fn push(&mut self, hash: u64, entry: u64, gen: u16) {
        if let Some(l) = self.links.get_mut(self.n) {
            *l = Link { hash, entry, gen };
            self.n += 1;
        }
    }
}

impl ConnTable {
    /// Put `late`'s entries in the index and empty it. Returns how many
    /// connections were ended because the index had no room around their
    /// reply key (as an insert that finds none fails).
    pub fn link_late(&self, late: &mut Late) -> usize {
        let mut ended = 0;
        for l in &late.links[..late.n] {
            let id = entry_slot(l.entry);
            if !self.index_insert(l.hash, l.entry) {
                ended += usize::from(self.kill(id, l.gen));
                continue;
            }
            let w = &self.slots()[id as usize][W_CTL];
            let mut cur = w.load(Relaxed);
            loop {
                if ctl_gen(cur) != l.gen || ctl_flags(cur) & F_DEAD != 0 {
                    // It ended while late: its end left this entry to us.
                    self.index_remove(l.hash, l.entry);
                    break;
                }
                // Release: an end that sees LATE cleared sees the entry.
                let linked = cur & !((F_LATE as u64) << 40);
                match w.compare_exchange_weak(cur, linked, Release, Relaxed) {
                    Ok(_) => break,
                    Err(a) => cur = a,
                }
            }
        }
        late.n = 0;
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{index_entries as entries, new_conn, table};
    use super::*;

    fn reply_key(cport: u16) -> FlowKey {
        let (rs, client) = ("10.0.1.11".parse().unwrap(), "192.0.2.1".parse().unwrap());
        FlowKey::v4(Proto::Tcp, rs, 8080, client, cport)
    }

    #[test]
    fn a_late_reply_entry_is_found_once_linked_and_unlinked_at_the_end() {
        let (t, d, s) = table(10, 1);
        let mut late = Late::default();
        let n = new_conn([192, 0, 2, 1], 7, Forward::Nat, &d, &s);
        let (c, new) = t.insert_late(n, 0, 0, Some(&mut late)).unwrap();
        assert!(new);
        assert_eq!(late.len(), 1);
        assert!(
            t.lookup(&c.in_key()).is_some(),
            "the client's key is in at once"
        );
        assert!(t.lookup(&reply_key(7)).is_none(), "the reply key waits");
        assert_eq!(entries(&t), 1);
        assert_eq!(t.link_late(&mut late), 0);
        assert!(late.is_empty());
        let (r, dir) = t.lookup(&reply_key(7)).unwrap();
        assert_eq!((r.id(), dir), (c.id(), Dir::Out));
        assert_eq!(entries(&t), 2);
        // Linked, it ends as any connection: both entries go.
        assert!(t.end(&c));
        assert_eq!((entries(&t), t.len()), (0, 0));
    }

    #[test]
    fn a_connection_ended_while_late_leaves_no_entry_behind() {
        let (t, d, s) = table(10, 1);
        let mut late = Late::default();
        let n = new_conn([192, 0, 2, 1], 7, Forward::Nat, &d, &s);
        let (c, _) = t.insert_late(n, 0, 0, Some(&mut late)).unwrap();
        assert!(t.end(&c));
        assert_eq!(entries(&t), 0);
        assert_eq!(t.link_late(&mut late), 0);
        assert_eq!((entries(&t), t.len()), (0, 0));
        assert!(t.lookup(&reply_key(7)).is_none());
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
    }

    #[test]
    fn a_slot_reused_while_late_keeps_its_new_connections_entries() {
        // One slot: the second connection (same keys) takes the first's.
        let (t, d, s) = table(1, 1);
        let mut late = Late::default();
        let n = || new_conn([192, 0, 2, 1], 7, Forward::Nat, &d, &s);
        let (a, _) = t.insert_late(n(), 0, 0, Some(&mut late)).unwrap();
        assert!(t.end(&a));
        let b = t.insert(n(), 0, 0).unwrap();
        assert_eq!(a.id().0, b.id().0);
        assert_ne!(a.id().1, b.id().1);
        // The first one's late entry is the same value as the second's:
        // linking it and taking it out again leaves exactly one.
        assert_eq!(t.link_late(&mut late), 0);
        assert_eq!(entries(&t), 2);
        let (r, dir) = t.lookup(&reply_key(7)).unwrap();
        assert_eq!((r.id(), dir), (b.id(), Dir::Out));
        assert!(t.end(&b));
        assert_eq!((entries(&t), t.len()), (0, 0));
    }

    #[test]
    fn a_late_entry_the_index_has_no_room_for_ends_its_connection() {
        let (t, d, s) = table(10, 1);
        let mut late = Late::default();
        let n = new_conn([192, 0, 2, 1], 7, Forward::Nat, &d, &s);
        t.insert_late(n, 0, 0, Some(&mut late)).unwrap();
        // Every entry taken by something else (no slot 0x7fff_fffe).
        for b in t.index.iter() {
            for e in &b.e {
                e.store(entry(1, Dir::In, 0x7fff_fffe), Relaxed);
            }
        }
        assert_eq!(t.link_late(&mut late), 1);
        assert_eq!(t.len(), 0);
        assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
    }

    #[test]
    fn dr_has_no_reply_key_and_a_full_late_list_links_at_once() {
        let (t, d, s) = table(100, 1);
        let mut late = Late::default();
        let dr = new_conn([192, 0, 2, 9], 9, Forward::Dr, &d, &s);
        t.insert_late(dr, 0, 0, Some(&mut late)).unwrap();
        assert!(late.is_empty(), "a DR connection has nothing to wait for");
        for p in 0..LATE_MAX as u16 + 1 {
            let n = new_conn([192, 0, 2, 1], 100 + p, Forward::Nat, &d, &s);
            t.insert_late(n, 0, 0, Some(&mut late)).unwrap();
        }
        assert_eq!(late.len(), LATE_MAX);
        let over = 100 + LATE_MAX as u16;
        assert!(
            t.lookup(&reply_key(over)).is_some(),
            "beyond the list: at once"
        );
        assert!(t.lookup(&reply_key(100)).is_none());
        assert_eq!(t.link_late(&mut late), 0);
        assert!(t.lookup(&reply_key(100)).is_some());
        assert_eq!(entries(&t), 1 + 2 * (LATE_MAX + 1));
    }
}
