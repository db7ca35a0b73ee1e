//! The established fast path's view of the table: a plain connection read
//! straight out of its slot's words, and its timer moved, without building
//! a [`Conn`] snapshot (about two hundred bytes, most of them for FULLNAT,
//! the SYN proxy and IPv6, which a plain NAT or DR packet never reads).
//!
//! "Plain" is what [`ConnTable::lookup_plain_from`] returns: a live IPv4
//! connection forwarded by NAT or DR, no FULLNAT local address, no SYN
//! proxy, no persistence template, no address of the other family. Any
//! other connection under the key makes the lookup answer
//! [`Lookup::Other`] with its slot, which [`ConnTable::read_found`] reads
//! whole (a [`Conn`]) for the modes' own code.

use super::*;

/// A plain connection, as its established packets need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    slot: u32,
    gen: u16,
    /// The control word as read (state, flags, deadline).
    ctl: u64,
    /// The direction the key was found in.
    pub dir: Dir,
    pub fwd: Forward,
    pub proto: Proto,
    pub cip: u32,
    pub cport: u16,
    pub vip: u32,
    pub vport: u16,
    pub dip: u32,
    pub dport: u16,
    /// Real server and service ids ([`Conn::dest_id`], [`Conn::svc_id`]).
    pub dest: u32,
    pub svc: u32,
}

/// What a fast lookup found under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing: no connection under the key.
    Miss,
    /// A connection that is not plain, in this slot, found in this
    /// direction (see [`ConnTable::read_found`]).
    Other(u32, Dir),
    Plain(Plain),
}

impl Plain {
    /// The connection's state when it was read.
    pub fn state(&self) -> State {
        State::from_u8(ctl_flags(self.ctl) & ST_MASK)
    }
}

impl ConnTable {
    /// The hash of an IPv4 flow key given as numbers (what
    /// [`ConnTable::lookup`] computes from a [`FlowKey`]).
    #[inline(always)]
    pub fn hash4(&self, proto: Proto, src: u32, sport: u16, dst: u32, dport: u16) -> u64 {
        self.hash(&K4 {
            proto,
            src,
            dst,
            sport,
            dport,
        })
    }

    /// Start loading the index bucket of hash `h` (first stage of a
    /// burst's lookups).
    #[inline(always)]
    pub fn prefetch_hashed(&self, h: u64) {
        crate::dpdk::prefetch(&self.index[h as usize & self.mask]);
    }

    /// Start loading the slots whose index entries carry `h`'s tag (second
    /// stage, once the buckets are in cache); the first such entry, for
    /// [`ConnTable::lookup_plain_from`] (0: none).
    #[inline(always)]
    pub fn prefetch_slots_hashed(&self, h: u64) -> u64 {
        self.prefetch_tagged(h, false)
    }

    /// Start loading the slots (and, `ext`, their IPv6 lines) of the
    /// entries of hash `h`'s bucket that carry its tag; the first such
    /// entry (0: none).
    #[inline(always)]
    pub(super) fn prefetch_tagged(&self, h: u64, ext: bool) -> u64 {
        let mut first = 0;
        for v in self.index[h as usize & self.mask].under(tag_of(h)) {
            if first == 0 {
                first = v;
            }
            if let Some(s) = self.slots().get(entry_slot(v) as usize) {
                crate::dpdk::prefetch(s);
            }
            // An IPv6 key's connection has its addresses beside.
            if ext {
                if let Some(x) = self.ext(entry_slot(v) as usize) {
                    crate::dpdk::prefetch(x);
                }
            }
        }
        first
    }

    /// The connection indexed under the IPv4 key, `h` its
    /// [`ConnTable::hash4`], read from the slot's words (seqlock, as
    /// [`ConnTable::lookup`] reads), trying first the index entry `hint`
    /// that [`ConnTable::prefetch_slots_hashed`] found for `h` (0: none):
    /// the first entry under `h`'s tag, which a bucket scan would try
    /// first too. The entry is read as the scan would read it (the slot
    /// under its seqlock, the key matched), so a hint gone stale since
    /// (its connection ended, its slot reused) answers nothing and the
    /// bucket is scanned.
    #[inline(always)]
    pub fn lookup_plain_from(
        &self,
        hint: u64,
        h: u64,
        proto: Proto,
        src: (u32, u16),
        dst: (u32, u16),
    ) -> Lookup {
        if hint != 0 && tag_of(hint) == tag_of(h) {
            if let Some(l) = self.plain_at(hint, proto, src, dst) {
                return l;
            }
        }
        let found = self.find(h, |e| self.plain_at(e, proto, src, dst));
        found.unwrap_or(Lookup::Miss)
    }

    /// What index entry `e` (under the key's tag) answers for the key:
    /// its plain connection if the key is its, another connection's slot
    /// for the full path to match, or None (the key is not this
    /// connection's, or the slot no longer holds a live one).
    #[inline(always)]
    fn plain_at(
        &self,
        e: u64,
        proto: Proto,
        (src, sport): (u32, u16),
        (dst, dport): (u32, u16),
    ) -> Option<Lookup> {
        let dir = entry_dir(e);
        let (c1, (addr, dstw, kind, ids)) = self.seq_read(entry_slot(e), |s| {
            Some((
                s[W_ADDR].load(Relaxed),
                s[W_DST].load(Relaxed),
                s[W_KIND].load(Relaxed),
                s[W_IDS].load(Relaxed),
            ))
        })?;
        let k = (kind >> 40) as u8;
        let p = Plain {
            slot: entry_slot(e),
            gen: ctl_gen(c1),
            ctl: c1,
            dir,
            fwd: fwd_of(k),
            proto: if k & K_UDP != 0 {
                Proto::Udp
            } else {
                Proto::Tcp
            },
            cip: (addr >> 32) as u32,
            vip: addr as u32,
            dip: (dstw >> 32) as u32,
            cport: (dstw >> 16) as u16,
            vport: dstw as u16,
            dport: (kind >> 48) as u16,
            dest: (ids >> 32) as u32,
            svc: ids as u32,
        };
        let plain = k & (K_FNAT | K_SYNP | K_TEMPLATE) == 0
            && kind & (K2_V6 | K2_64 | K2_46) == 0
            && matches!(p.fwd, Forward::Nat | Forward::Dr);
        // The key's match, as `ConnTable::matches` decides it for
        // the connections it can be (a connection of another kind
        // is matched by the full path's own lookup).
        let hit = p.proto == proto
            && match dir {
                Dir::Out => (p.dip, p.dport, p.cip, p.cport) == (src, sport, dst, dport),
                _ => (p.cip, p.cport, p.vip, p.vport) == (src, sport, dst, dport),
            };
        match (hit || !plain, plain) {
            (false, _) => None,
            (true, true) => Some(Lookup::Plain(p)),
            (true, false) => Some(Lookup::Other(entry_slot(e), dir)),
        }
    }

    /// The connection a fast lookup of `key` answered [`Lookup::Other`]
    /// for, read whole, if slot `slot` still holds it (what
    /// [`ConnTable::lookup`] would return, without searching the index
    /// again).
    #[inline]
    pub fn read_found(&self, (slot, dir): (u32, Dir), key: &FlowKey) -> Option<(Conn<'_>, Dir)> {
        let c = self.read(slot)?;
        Self::matches(&c, &key.k4()?, dir).then_some((c, dir))
    }

    /// A packet of plain connection `p` that leaves its state as it is
    /// (an established TCP packet without SYN, FIN or RST; any UDP one):
    /// the timer is re-armed from `now_ms`, as [`Conn::on_packet`] does.
    /// False, with nothing written, if the packet would change the state or
    /// the connection has ended since it was read: the full path decides.
    #[inline(always)]
    pub fn touch(&self, p: &Plain, dir: Dir, ev: TcpEvent, now_ms: u64, t: &Timeouts) -> bool {
        let old = p.state();
        if p.proto == Proto::Tcp && state::tcp_next(old, dir, ev) != old {
            return false;
        }
        let w = &self.slots()[p.slot as usize][W_CTL];
        let deadline = now_ms + t.get(old) as u64 * 1000;
        let next = ctl(p.gen, ctl_flags(p.ctl), deadline);
        let mut cur = p.ctl;
        loop {
            if ctl_gen(cur) != p.gen || ctl_flags(cur) != ctl_flags(p.ctl) {
                return false;
            }
            if next == cur {
                return true;
            }
            match w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        // The timeout was shortened since (`ipvsadm --set`): the wheel
        // must see the earlier deadline (as `Conn::moved` does).
        if deadline < ctl_deadline(cur) {
            self.rearm(p.slot, p.gen, deadline);
        }
        true
    }
}
