//! The table: slots, index and wheels together; insert, lookup, end,
//! expiry.

use super::*;

pub(super) type TemplateShard =
    CachePadded<RwLock<HashMap<TemplateKey, Arc<Template>, foldhash::fast::RandomState>>>;

pub(super) type LinkShard = Mutex<HashMap<u32, Arc<Template>>>;

pub(super) const STRIPES: usize = 1024;
pub(super) const TEMPLATE_SHARDS: usize = 16;
pub(super) const LINK_SHARDS: usize = 64;

/// The connection table.
pub struct ConnTable {
    /// The header and the slots ([`persist`]): anonymous memory, or a
    /// shared file that outlives the process.
    pub(super) region: crate::sys::Region,
    pub(super) index: Box<[Bucket]>,
    /// IPv6 connections' addresses, one line per slot ([`Ext6`]): reserved
    /// for every slot (an anonymous mapping of zero pages), faulted in only
    /// where IPv6 connections use it (an IPv4 connection never touches its
    /// line). None when the lines are in the region (`ext_at`), and for a
    /// previous table read out of a file without them: its IPv6
    /// connections are not carried.
    pub(super) ext: Option<crate::sys::Region>,
    /// The word of the region where the slots' IPv6 lines start, after
    /// the slots (a table file with `conn_table_ipv6`: they outlive the
    /// process with the slots); 0: they are `ext`.
    pub(super) ext_at: usize,
    /// Slots in the region.
    pub(super) n_slots: usize,
    pub(super) mask: usize,
    pub(super) seed: [u64; 2],
    /// Serialise inserts of one client key (by hash), so a flow whose
    /// first packets race on two workers is tracked once.
    pub(super) stripes: Box<[CachePadded<Mutex<()>>]>,
    /// Free slots: tag:32 | slot+1:32 (0 = empty).
    pub(super) free: CachePadded<AtomicU64>,
    /// Slots never used so far start here.
    pub(super) fresh: CachePadded<AtomicUsize>,
    pub(super) count: CachePadded<AtomicUsize>,
    pub(super) max: usize,
    /// Seconds per state; read on every poll, so atomics rather than a lock.
    pub(super) timeouts: [AtomicU32; state::N_STATES],
    pub(super) wheels: Box<[CachePadded<Mutex<Wheel>>]>,
    /// Persistence templates; they count against `max` as in the kernel.
    pub(super) templates: Box<[TemplateShard]>,
    /// The template each persistent connection (by slot) is bound to.
    pub(super) links: Box<[LinkShard]>,
    pub(super) ids: Arc<Ids>,
    /// What `dest()`/`svc()` give for an id the registry lacks (never
    /// happens: ids come from the registry and are never removed).
    pub(super) no_dest: DestState,
    pub(super) no_svc: ServiceState,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len())
            .field("max", &self.max)
            .finish()
    }
}

impl ConnTable {
    /// A table for at most `max` connections (and persistence templates),
    /// with one expiry wheel per worker (`workers`). All memory is taken
    /// and touched here: `max` slots of 64 bytes and an index of about
    /// 18 bytes per connection key.
    pub fn new(max: usize, workers: usize) -> ConnTable {
        Self::with_ids(max, workers, Arc::new(Ids::default()))
    }

    /// As [`ConnTable::new`], with a registry of services and real servers
    /// to resolve the ids connections hold.
    pub fn with_ids(max: usize, workers: usize, ids: Arc<Ids>) -> ConnTable {
        let max = clamp_max(max);
        let region = crate::sys::Region::anonymous(persist::region_len(max))
            .unwrap_or_else(|e| panic!("connection table of {max} entries: {e}"));
        Self::on_region(region, max, workers, ids, false)
    }

    /// A table of `max` entries over `region` (zeroed, or a previous
    /// table's file once its connections have been read out).
    /// `ext_in_region`: the region holds, after its slots, as many lines
    /// for IPv6 connections' addresses.
    pub(super) fn on_region(
        region: crate::sys::Region,
        max: usize,
        workers: usize,
        ids: Arc<Ids>,
        ext_in_region: bool,
    ) -> ConnTable {
        // Two keys per connection at most; keep the index under ~70 % full.
        let buckets = ((2 * max).div_ceil(5)).next_power_of_two().max(64);
        // On huge pages: on 4 KiB ones most lookups at 10 M miss the TLB.
        let index: Box<[Bucket]> = crate::dpdk::zeroed_on_hugepages(buckets);
        // One line per slot the region holds (a file-backed region has
        // more than `max`): zero pages of an anonymous mapping, faulted in
        // by the IPv6 connections that write them.
        let room = region.words().len().saturating_sub(persist::HEADER_WORDS) / 8;
        let (n_slots, ext_at, ext) = if ext_in_region {
            let n = room / 2;
            (n, persist::HEADER_WORDS + 8 * n, None)
        } else {
            let len = room.max(max) * std::mem::size_of::<Ext6>();
            let lines = crate::sys::Region::anonymous(len)
                .unwrap_or_else(|e| panic!("IPv6 lines of {max} connections: {e}"));
            (room, 0, Some(lines))
        };
        persist::write_header(&region, max, ext_at);
        // Ask for huge pages, then fault everything in now rather than on
        // the first packets.
        crate::dpdk::advise_hugepages(region.words());
        // A store, not `fetch_or(0)`: LLVM lowers an idempotent atomic
        // read-modify-write to a fence and a load, and a load only maps the
        // shared zero page (the slots were then faulted in by the first
        // inserts, one page fault each on the packet path). The value
        // stored is the one there: a previous table's file keeps its
        // contents, and nothing else uses the region yet.
        for w in region.words().iter().step_by(512) {
            w.store(w.load(Relaxed), Relaxed);
        }
        use std::hash::BuildHasher;
        let rs = foldhash::fast::RandomState::default();
        let t = Timeouts::default();
        ConnTable {
            region,
            index,
            ext,
            ext_at,
            n_slots,
            mask: buckets - 1,
            seed: [rs.hash_one(1u64) | 1, rs.hash_one(2u64) | 1],
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(Mutex::new(())))
                .collect(),
            free: CachePadded::new(AtomicU64::new(0)),
            fresh: CachePadded::new(AtomicUsize::new(0)),
            count: CachePadded::new(AtomicUsize::new(0)),
            max,
            timeouts: t.0.map(AtomicU32::new),
            wheels: (0..workers.max(1))
                .map(|_| CachePadded::new(Mutex::new(Wheel::new())))
                .collect(),
            templates: (0..TEMPLATE_SHARDS)
                .map(|_| CachePadded::new(RwLock::new(HashMap::with_hasher(rs.clone()))))
                .collect(),
            links: (0..LINK_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            ids,
            no_dest: DestState::default(),
            no_svc: ServiceState::default(),
        }
    }

    /// Empty the table as if it were new, keeping its memory: no
    /// connection, template or timer left, the kernel's timeouts, and a
    /// registry ([`Ids`]) that hands out ids from 0 again. For callers that
    /// run many short lives of a director (the fuzz harness) and would
    /// otherwise spend most of each on allocating and faulting in a table.
    /// `&mut`: nothing else may hold the table, so no worker is polling it.
    pub fn reset(&mut self) {
        let used = self.fresh.load(Relaxed).min(self.slots().len());
        for w in self.slots()[..used].iter().flatten() {
            w.store(0, Relaxed);
        }
        for b in self.index.iter() {
            for e in b.e.iter().chain([&b.overflow]) {
                e.store(0, Relaxed);
            }
        }
        persist::write_header(&self.region, self.max, self.ext_at);
        *self.free.get_mut() = 0;
        *self.fresh.get_mut() = 0;
        *self.count.get_mut() = 0;
        self.set_timeouts(Timeouts::default());
        for w in self.wheels.iter_mut() {
            w.get_mut().clear();
        }
        for t in self.templates.iter_mut() {
            t.get_mut().clear();
        }
        for l in self.links.iter_mut() {
            l.get_mut().clear();
        }
        match Arc::get_mut(&mut self.ids) {
            Some(ids) => ids.reset(),
            None => self.ids = Arc::new(Ids::default()),
        }
    }

    /// The registry of services and real servers connections refer to.
    pub fn ids(&self) -> &Arc<Ids> {
        &self.ids
    }
    pub fn len(&self) -> usize {
        self.count.load(Relaxed)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.max
    }
    /// Bytes the table took at start (slots and index).
    pub fn footprint(&self) -> usize {
        self.region.len() + std::mem::size_of_val(&*self.index)
    }

    /// The slots, after the region's header.
    #[inline(always)]
    pub(super) fn slots(&self) -> &[Slot] {
        let w = self.region.words();
        w[persist::HEADER_WORDS..(persist::HEADER_WORDS + 8 * self.n_slots).min(w.len())]
            .as_chunks::<8>()
            .0
    }

    /// Slot `id`'s IPv6 line (None beyond the lines there are: a previous
    /// table read out of a file without them).
    #[inline]
    pub(super) fn ext(&self, id: usize) -> Option<&[AtomicU64; 8]> {
        if self.ext_at == 0 {
            return self.ext.as_ref()?.words().as_chunks::<8>().0.get(id);
        }
        let at = self.ext_at + 8 * id;
        self.region.words().get(at..at + 8)?.try_into().ok()
    }
    pub fn n_template_shards(&self) -> usize {
        self.templates.len()
    }
    pub fn timeouts(&self) -> Timeouts {
        Timeouts(std::array::from_fn(|i| self.timeouts[i].load(Relaxed)))
    }
    pub fn set_timeouts(&self, t: Timeouts) {
        for (a, v) in self.timeouts.iter().zip(t.0) {
            a.store(v, Relaxed);
        }
    }

    pub(super) fn dest_state(&self, id: u32) -> &DestState {
        self.ids.dests.get(id).map_or(&self.no_dest, |a| &**a)
    }
    pub(super) fn svc_state(&self, id: u32) -> &ServiceState {
        self.ids.services.get(id).map_or(&self.no_svc, |a| &**a)
    }

    /// Slot `id`'s fields as `f` reads them, between two reads of its
    /// control word (the seqlock): retried while the slot is being reused,
    /// None if it holds no live connection (or `f` finds nothing). Returns
    /// the control word the read is consistent with, and `f`'s result.
    #[inline(always)]
    pub(super) fn seq_read<R>(
        &self,
        id: u32,
        mut f: impl FnMut(&Slot) -> Option<R>,
    ) -> Option<(u64, R)> {
        let s = self.slots().get(id as usize)?;
        for _ in 0..4 {
            let c0 = s[W_CTL].load(Acquire);
            if ctl_flags(c0) & (F_LIVE | F_DEAD) != F_LIVE {
                return None;
            }
            let r = f(s)?;
            fence(Acquire);
            let c1 = s[W_CTL].load(Relaxed);
            if ctl_gen(c1) != ctl_gen(c0) || ctl_flags(c1) & F_DEAD != 0 {
                continue;
            }
            return Some((c1, r));
        }
        None
    }

    /// A consistent snapshot of slot `id`, if it holds a live connection.
    #[inline]
    pub(super) fn read(&self, id: u32) -> Option<Conn<'_>> {
        let (c1, (addr, dst, kind, ids, local, seq, v6, dip6)) = self.seq_read(id, |s| {
            let addr = s[W_ADDR].load(Relaxed);
            let dst = s[W_DST].load(Relaxed);
            let kind = s[W_KIND].load(Relaxed);
            let ids = s[W_IDS].load(Relaxed);
            let (local, seq) = if (kind >> 40) as u8 & (K_FNAT | K_SYNP) != 0 {
                (s[W_LOCAL].load(Relaxed), s[W_SEQ].load(Relaxed))
            } else {
                (0, 0)
            };
            let v6 = if kind & K2_V6 != 0 {
                // A previous table read for a take-over has no lines: its
                // IPv6 connections are not carried.
                let x = self.ext(id as usize)?;
                let a = |at| Ipv6Addr::from(x.addr(at));
                Some(Addrs6 {
                    cip: a(X_CIP),
                    vip: a(X_VIP),
                    dip: a(X_DIP),
                    lip: a(X_LIP),
                    nat64: kind & K2_64 != 0,
                })
            } else {
                None
            };
            let dip6 = if kind & K2_46 != 0 {
                Some(Ipv6Addr::from(self.ext(id as usize)?.addr(X_DIP)))
            } else {
                None
            };
            Some((addr, dst, kind, ids, local, seq, v6, dip6))
        })?;
        let k = (kind >> 40) as u8;
        let v4 = |x: u64| Ipv4Addr::from(x as u32);
        let synproxy = (k & K_SYNP != 0).then_some(if seq & SYNP_PROXIED != 0 {
            SynProxy::Proxied(seq & ((1 << 48) - 1) & !SYNP_PROXIED)
        } else {
            SynProxy::Pending {
                client_isn: seq as u32,
                cookie: local as u32,
                window: kind as u16,
            }
        });
        // FULLNAT's sequence data is gone once the proxy's adjustment
        // has taken the word.
        let fseq = if seq & SYNP_PROXIED != 0 && k & K_SYNP != 0 {
            0
        } else {
            seq
        };
        Some(Conn {
            table: self,
            slot: id,
            gen: ctl_gen(c1),
            ctl: c1,
            seq,
            proto: if k & K_UDP != 0 {
                Proto::Udp
            } else {
                Proto::Tcp
            },
            cip: v4(addr >> 32),
            vip: v4(addr),
            dip: v4(dst >> 32),
            cport: (dst >> 16) as u16,
            vport: dst as u16,
            dport: (kind >> 48) as u16,
            fwd: fwd_of(k),
            dest: (ids >> 32) as u32,
            svc: ids as u32,
            persistent: k & K_TEMPLATE != 0,
            fnat: (k & K_FNAT != 0).then(|| Fnat {
                lip: v4(local >> 32),
                lport: (kind >> 16) as u16,
                client_addr: ca_of(k),
                isn: Cell::new(fseq as u32),
                delta: Cell::new(((fseq >> 40) & 0xff) as u32),
            }),
            synproxy,
            v6,
            dip6,
        })
    }

    /// Whether snapshot `c` is the connection indexed under `k` as `dir`.
    #[inline]
    pub(super) fn matches(c: &Conn, k: &K4, dir: Dir) -> bool {
        if c.proto != k.proto {
            return false;
        }
        match dir {
            Dir::In | Dir::InOnly => {
                c.v6.is_none()
                    && u32::from(c.cip) == k.src
                    && c.cport == k.sport
                    && u32::from(c.vip) == k.dst
                    && c.vport == k.dport
            }
            Dir::Out => {
                let (lip, lport) = match &c.fnat {
                    Some(f) => (f.lip, f.lport),
                    None => (c.cip, c.cport),
                };
                // An IPv6 connection's reply key is IPv4 only for NAT64.
                c.v6.is_none_or(|a| a.nat64)
                    && u32::from(c.dip) == k.src
                    && c.dport == k.sport
                    && u32::from(lip) == k.dst
                    && lport == k.dport
            }
        }
    }

    /// Whether snapshot `c` is the IPv6 connection indexed under `k`.
    pub(super) fn matches6(c: &Conn, k: &K6, dir: Dir) -> bool {
        let Some(a) = &c.v6 else { return false };
        if c.proto != k.proto || (a.nat64 && dir == Dir::Out) {
            return false;
        }
        match dir {
            Dir::In | Dir::InOnly => {
                u128::from(a.cip) == k.src
                    && c.cport == k.sport
                    && u128::from(a.vip) == k.dst
                    && c.vport == k.dport
            }
            Dir::Out => {
                let (lip, lport) = match &c.fnat {
                    Some(f) => (a.lip, f.lport),
                    None => (a.cip, c.cport),
                };
                u128::from(a.dip) == k.src
                    && c.dport == k.sport
                    && u128::from(lip) == k.dst
                    && lport == k.dport
            }
        }
    }

    pub(super) fn matches_any(c: &Conn, k: &AnyKey, dir: Dir) -> bool {
        match k {
            AnyKey::V4(k) => c.v6.is_none() && Self::matches(c, k, dir),
            AnyKey::V6(k) => Self::matches6(c, k, dir),
        }
    }

    /// The connection a packet with this key belongs to, and the direction.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(Conn<'_>, Dir)> {
        let Some(k) = key.k4() else {
            return self.lookup6(key);
        };
        self.find(self.hash(&k), |e| {
            let dir = entry_dir(e);
            let c = self.read(entry_slot(e))?;
            Self::matches(&c, &k, dir).then_some((c, dir))
        })
    }

    #[inline(never)]
    fn lookup6(&self, key: &FlowKey) -> Option<(Conn<'_>, Dir)> {
        let k = key.k6()?;
        self.find(self.hash6(&k), |e| {
            let dir = entry_dir(e);
            let c = self.read(entry_slot(e))?;
            Self::matches6(&c, &k, dir).then_some((c, dir))
        })
    }

    /// Start loading the index bucket `key` hashes to (first pass over a
    /// burst; see [`ConnTable::prefetch_conn`]).
    #[inline]
    pub fn prefetch_bucket(&self, key: &FlowKey) {
        if let Some(h) = self.key_hash(key) {
            crate::dpdk::prefetch(&self.index[h as usize & self.mask]);
        }
    }

    /// The hash of a key of either family.
    #[inline]
    pub(super) fn key_hash(&self, key: &FlowKey) -> Option<u64> {
        match key.k4() {
            Some(k) => Some(self.hash(&k)),
            None => key.k6().map(|k| self.hash6(&k)),
        }
    }

    /// Start loading the slots whose index entries match `key`'s tag
    /// (second pass, once the buckets are in cache).
    #[inline]
    pub fn prefetch_conn(&self, key: &FlowKey) {
        if let Some(h) = self.key_hash(key) {
            self.prefetch_tagged(h, key.src.is_ipv6());
        }
    }

    /// Whether any live connection is indexed under `key`.
    pub fn contains(&self, key: &FlowKey) -> bool {
        self.lookup(key).is_some()
    }

    /// Add a new connection under its keys. If another worker added the same
    /// client flow first, that connection is returned instead. `worker`'s
    /// wheel times it.
    ///
    /// The timer is armed (`now_ms` + the timeout of its initial state)
    /// before the connection becomes visible, so an expiry on another
    /// worker can never end it before its first packet is handled.
    ///
    /// The real server's ActiveConn/InActConn count it (the kernel's
    /// `ip_vs_bind_dest`, for scheduled and synced connections alike); the
    /// Conns statistic does not: the scheduling path counts that
    /// ([`ConnTable::insert_new`]), as the kernel's `ip_vs_conn_stats` is
    /// called from `ip_vs_schedule`, not for a backup's synced connections.
    pub fn insert(&self, n: NewConn, now_ms: u64, worker: usize) -> Result<Conn<'_>, InsertError> {
        self.insert_new(n, now_ms, worker).map(|(c, _)| c)
    }

    /// [`ConnTable::insert`], and whether the connection is new (false:
    /// another worker added the same client flow first).
    pub fn insert_new(
        &self,
        n: NewConn,
        now_ms: u64,
        worker: usize,
    ) -> Result<(Conn<'_>, bool), InsertError> {
        self.insert_late(n, now_ms, worker, None)
    }

    /// [`ConnTable::insert_new`], leaving the reply key's index entry in
    /// `late` while it has room ([`super::late`]): the caller puts it in
    /// with [`ConnTable::link_late`] before the connection's first packet
    /// leaves.
    pub fn insert_late(
        &self,
        n: NewConn,
        now_ms: u64,
        worker: usize,
        late: Option<&mut Late>,
    ) -> Result<(Conn<'_>, bool), InsertError> {
        let (kin, kout, a) = Self::keys_of(&n)?;
        let hin = self.hash_any(&kin);
        // The reply key's bucket is known only now (the scheduler chose the
        // real server): start its miss here, behind the work below, rather
        // than when the entry goes in (it was most of an insert's time).
        let hout = kout.as_ref().map(|k| self.hash_any(k));
        if let Some(h) = hout {
            self.prefetch_hashed(h);
        }
        let _guard = self.stripes[(hin >> 16) as usize % STRIPES].lock();
        if let Some(c) = self.find(hin, |e| {
            let c = self.read(entry_slot(e))?;
            (entry_dir(e) == Dir::In && Self::matches_any(&c, &kin, Dir::In)).then_some(c)
        }) {
            return Ok((c, false));
        }
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let st = if n.proto == Proto::Udp {
            State::Udp
        } else {
            n.first.unwrap_or(State::None)
        };
        let deadline = now_ms + self.timeouts[st as usize].load(Relaxed) as u64 * 1000;
        let mut kind = fwd_bits(n.fwd);
        if n.proto == Proto::Udp {
            kind |= K_UDP;
        }
        let mut lport = 0;
        if let Some((_, lp, ca)) = n.fnat {
            kind |= K_FNAT | ca_bits(ca);
            lport = lp;
        }
        if n.template.is_some() {
            kind |= K_TEMPLATE;
        }
        let (isn, cookie, window) = n.synproxy.unwrap_or_default();
        if n.synproxy.is_some() {
            kind |= K_SYNP;
        }
        // The worker's wheel is locked from taking the slot until the timer
        // is in: its spare slots are under the same lock.
        let wheel = worker % self.wheels.len();
        let mut wh = self.wheels[wheel].lock();
        let id = match self.alloc_slot(&mut wh) {
            Some(id) => id,
            None => {
                drop(wh);
                let id = self.steal_slot(wheel);
                wh = self.wheels[wheel].lock();
                match id {
                    Some(id) => id,
                    None => {
                        self.count.fetch_sub(1, Relaxed);
                        return Err(InsertError::Full);
                    }
                }
            }
        };
        // A slot taken but not filled goes back to the worker's spares.
        let give_back = |mut wh: parking_lot::MutexGuard<'_, Wheel>| {
            wh.spare.push(id);
            self.count.fetch_sub(1, Relaxed);
            Err(InsertError::MixedFamily)
        };
        let s = &self.slots()[id as usize];
        let gen = ctl_gen(s[W_CTL].load(Relaxed)).wrapping_add(1);
        // Readers that still hold the old generation see DEAD or a new
        // generation from here on; the fields follow, then the live word.
        s[W_CTL].store(ctl(gen, F_DEAD, 0), Relaxed);
        fence(Release);
        let (cip, vip, dip, lip, v6) = match a {
            Addrs::V4 { cip, vip, dip, lip } => (cip, vip, dip, lip, 0),
            Addrs::V6(x) => {
                let Some(e) = self.ext(id as usize) else {
                    return give_back(wh);
                };
                for (at, v) in [(X_CIP, x[0]), (X_VIP, x[1]), (X_DIP, x[2]), (X_LIP, x[3])] {
                    e.set_addr(at, v);
                }
                (0, 0, 0, 0, K2_V6)
            }
            Addrs::V4in6 { cip, vip, dip } => {
                let Some(e) = self.ext(id as usize) else {
                    return give_back(wh);
                };
                for (at, v) in [(X_CIP, 0), (X_VIP, 0), (X_DIP, dip), (X_LIP, 0)] {
                    e.set_addr(at, v);
                }
                (cip, vip, 0, 0, K2_46)
            }
            Addrs::Nat64 { cip, vip, dip, lip } => {
                let Some(e) = self.ext(id as usize) else {
                    return give_back(wh);
                };
                for (at, v) in [(X_CIP, cip), (X_VIP, vip), (X_DIP, 0), (X_LIP, 0)] {
                    e.set_addr(at, v);
                }
                (0, 0, dip, lip, K2_V6 | K2_64)
            }
        };
        s[W_ADDR].store((cip as u64) << 32 | vip as u64, Relaxed);
        s[W_DST].store(
            (dip as u64) << 32 | (n.cport as u64) << 16 | n.vport as u64,
            Relaxed,
        );
        s[W_KIND].store(
            (n.dport as u64) << 48
                | (kind as u64) << 40
                | v6
                | (lport as u64) << 16
                | window as u64,
            Relaxed,
        );
        s[W_LOCAL].store((lip as u64) << 32 | cookie as u64, Relaxed);
        s[W_IDS].store((n.dest as u64) << 32 | n.svc as u64, Relaxed);
        let seq = match n.synproxy_adj {
            Some(adj) => SYNP_PROXIED | (adj & ((1 << 48) - 1) & !SYNP_PROXIED),
            None => isn as u64,
        };
        s[W_SEQ].store((gen as u64) << 48 | seq, Relaxed);
        {
            // A wheel no worker has run yet (connections taken over or
            // synced before the workers start) begins at now, not at the
            // first deadline it is given: later, earlier deadlines would
            // otherwise wait for that one.
            wh.cursor.get_or_insert(tick_of(now_ms));
            let t = wh.push(id, tick_of(deadline));
            s[W_WHEEL].store((wheel as u64) << 32 | t as u64, Relaxed);
            drop(wh);
        }
        // Account before the connection is visible, so a reply on another
        // worker moving it to ESTABLISHED never sees the count below zero.
        let d = self.dest_state(n.dest);
        if st.is_active() {
            d.active.fetch_add(1, Relaxed);
        } else {
            d.inactive.fetch_add(1, Relaxed);
        }
        d.check_overload_on_bind();
        if let Some(t) = n.template {
            t.controlled.fetch_add(1, Relaxed);
            self.links[id as usize % LINK_SHARDS].lock().insert(id, t);
        }
        let ok_in = self.index_insert(hin, entry(tag_of(hin), Dir::In, id));
        let late = late.filter(|l| hout.is_some() && l.has_room());
        let defer = late.is_some();
        let ok_out = match (hout, late) {
            (Some(h), Some(l)) if ok_in => {
                l.push(h, entry(tag_of(h), Dir::Out, id), gen);
                true
            }
            (Some(h), None) if ok_in => {
                let ok = self.index_insert(h, entry(tag_of(h), Dir::Out, id));
                if !ok {
                    self.index_remove(hin, entry(tag_of(hin), Dir::In, id));
                }
                ok
            }
            _ => ok_in,
        };
        // Live only once its entries are in: an end before (a flush walking
        // the slots) passes it by, rather than unlink entries not yet there
        // and leave them behind. Until then a lookup finds the entries and
        // no connection; an insert of the same flow waits on the stripe.
        let inactive = if st.is_active() { 0 } else { F_INACTIVE };
        let f = F_LIVE | inactive | st as u8 | if defer { F_LATE } else { 0 };
        s[W_CTL].store(ctl(gen, f, deadline), Release);
        if !ok_out {
            // The index is overfull around these keys: undo, count as full.
            self.kill(id, gen);
            return Err(InsertError::Full);
        }
        self.read(id).map(|c| (c, true)).ok_or(InsertError::Full)
    }

    /// End the connection in slot `id` if it still has generation `gen`:
    /// mark it dead (exactly once), release the real server's count and the
    /// template, unlink its keys and free the slot.
    pub(super) fn kill(&self, id: u32, gen: u16) -> bool {
        self.kill_to(id, gen, None)
    }

    /// [`ConnTable::kill`], giving the slot to `spare` (the expiring
    /// worker's own free slots) while it has room.
    pub(super) fn kill_to(&self, id: u32, gen: u16, spare: Option<&mut Vec<u32>>) -> bool {
        let s = &self.slots()[id as usize];
        let w = &s[W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let f = ctl_flags(cur);
            if ctl_gen(cur) != gen || f & (F_LIVE | F_DEAD) != F_LIVE {
                return false;
            }
            match w.compare_exchange_weak(cur, cur | (F_DEAD as u64) << 40, Acquire, Relaxed) {
                Ok(_) => break,
                Err(a) => cur = a,
            }
        }
        // The fields are ours now: nobody reuses the slot before we free it.
        let kind = s[W_KIND].load(Relaxed);
        let ids = s[W_IDS].load(Relaxed);
        let k = (kind >> 40) as u8;
        let (kin, kout) = self.slot_keys(id);
        let h = self.hash_any(&kin);
        self.index_remove(h, entry(tag_of(h), Dir::In, id));
        // A late reply entry is not in the index: `link_late` takes it
        // out when it finds the connection ended.
        if let Some(ko) = kout.filter(|_| ctl_flags(cur) & F_LATE == 0) {
            let h = self.hash_any(&ko);
            self.index_remove(h, entry(tag_of(h), Dir::Out, id));
        }
        let d = self.dest_state((ids >> 32) as u32);
        if ctl_flags(cur) & F_INACTIVE != 0 {
            d.inactive.fetch_sub(1, Relaxed);
        } else {
            d.active.fetch_sub(1, Relaxed);
        }
        d.check_overload_on_unbind();
        if k & K_TEMPLATE != 0 {
            if let Some(t) = self.links[id as usize % LINK_SHARDS].lock().remove(&id) {
                t.controlled.fetch_sub(1, Relaxed);
            }
        }
        match spare {
            Some(v) if v.len() < SPARE_KEEP => v.push(id),
            _ => self.free_slot(id),
        }
        self.count.fetch_sub(1, Relaxed);
        true
    }

    /// End `c` now (kernel `ip_vs_conn_expire_now`). False if it had
    /// already ended.
    pub fn end(&self, c: &Conn) -> bool {
        self.kill(c.slot, c.gen)
    }

    /// Move the timer of slot `id` to the earlier `deadline` (a FIN or RST
    /// shortened the timeout).
    pub(super) fn rearm(&self, id: u32, gen: u16, deadline: u64) {
        let s = &self.slots()[id as usize];
        let owner = (s[W_WHEEL].load(Relaxed) >> 32) as u16 as usize;
        let Some(wheel) = self.wheels.get(owner) else {
            return;
        };
        let mut wh = wheel.lock();
        let c = s[W_CTL].load(Relaxed);
        if ctl_gen(c) != gen || ctl_flags(c) & (F_LIVE | F_DEAD) != F_LIVE {
            return;
        }
        let ww = s[W_WHEEL].load(Relaxed);
        let t = tick_of(deadline);
        if tick_before(t, ww as u32) {
            let t = wh.push(id, t);
            s[W_WHEEL].store(ww & !0xffff_ffff | t as u64, Relaxed);
        }
    }

    /// Expiry work for `worker` at `now_ms`: process at most `budget` timer
    /// entries (and ticks) of its wheel. Returns how many connections ended.
    pub fn expire(&self, worker: usize, now_ms: u64, budget: usize) -> usize {
        let wi = worker % self.wheels.len();
        let mut wh = self.wheels[wi].lock();
        let now = tick_of(now_ms);
        let Some(mut cursor) = wh.cursor else {
            wh.cursor = Some(now);
            return 0;
        };
        if wh.len == 0 {
            // Nothing queued: the ticks up to now need no walk (an idle
            // worker, or a clock that jumped).
            if tick_before(cursor, now) {
                wh.cursor = Some(now);
            }
            return 0;
        }
        let (mut done, mut ended) = (0, 0);
        // Only ticks wholly in the past: every deadline in them is due.
        while tick_before(cursor, now) && done < budget {
            let b = cursor as usize % WHEEL_SLOTS;
            if wh.buckets[b].is_empty() {
                done += 1;
                cursor = cursor.wrapping_add(1);
                wh.cursor = Some(cursor);
                continue;
            }
            let list = std::mem::take(&mut wh.buckets[b]);
            let mut i = 0;
            while i < list.len() && done < budget {
                let e = list[i];
                i += 1;
                done += 1;
                wh.len -= 1;
                let (id, et) = ((e >> 32) as u32, e as u32);
                if et != cursor {
                    wh.buckets[b].push(e); // a later round
                    wh.len += 1;
                    continue;
                }
                let s = &self.slots()[id as usize];
                let c = s[W_CTL].load(Acquire);
                let ww = s[W_WHEEL].load(Relaxed);
                if ctl_flags(c) & (F_LIVE | F_DEAD) != F_LIVE
                    || ww as u32 != et
                    || (ww >> 32) as u16 as usize != wi
                {
                    continue; // ended, or the timer moved: a stale entry
                }
                let dt = tick_of(ctl_deadline(c));
                if !tick_before(cursor, dt) {
                    if self.kill_to(id, ctl_gen(c), Some(&mut wh.spare)) {
                        ended += 1;
                    }
                } else {
                    let t = wh.push(id, dt);
                    s[W_WHEEL].store(ww & !0xffff_ffff | t as u64, Relaxed);
                }
            }
            if i < list.len() {
                wh.buckets[b].extend_from_slice(&list[i..]);
                break;
            }
            if wh.buckets[b].is_empty() {
                // Keep the allocation for the next round, but not beyond
                // WHEEL_KEEP entries: a burst of new flows must not leave
                // its peak in every bucket for good.
                let mut list = list;
                list.clear();
                list.shrink_to(WHEEL_KEEP);
                wh.buckets[b] = list;
            }
            done += 1;
            cursor = cursor.wrapping_add(1);
            wh.cursor = Some(cursor);
        }
        ended
    }

    /// End every connection now, whatever its timer.
    pub fn flush(&self) {
        let n = self.fresh.load(Relaxed).min(self.slots().len());
        for id in 0..n as u32 {
            let c = self.slots()[id as usize][W_CTL].load(Acquire);
            self.kill(id, ctl_gen(c));
        }
        for i in 0..self.templates.len() {
            self.expire_templates(i, u64::MAX);
        }
    }

    /// Visit every live connection. Reads slots only: workers are never
    /// blocked, however many connections there are.
    pub fn for_each(&self, f: impl FnMut(&Conn)) {
        self.for_each_in(0..usize::MAX, f);
    }

    /// [`ConnTable::for_each`] over the slots in `range` only.
    pub(super) fn for_each_in(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&Conn)) {
        let n = self.fresh.load(Relaxed).min(self.slots().len());
        for id in range.start.min(n)..range.end.min(n) {
            if let Some(c) = self.read(id as u32) {
                f(&c);
            }
        }
    }
}
