//! The table outlives the process. Its slots live in a region (src/sys.rs)
//! that is either anonymous memory or, with `conn_table_file`, a shared
//! mapping of a file (on tmpfs or hugetlbfs: memory, not disk). A killed or
//! stopped rvsd leaves the file behind with every connection's slot as it
//! was; the next rvsd opens it and reads them out before it starts afresh.
//!
//! One rvsd at a time uses a table file: it holds `FILE.lock` while it
//! runs. Nothing in the file is trusted: the header must name this layout,
//! the slot count must fit the file, and each slot is decoded as the live
//! table decodes one (a slot whose insert had not finished when its
//! process died is not yet marked live, and is skipped). What survives is
//! re-inserted by the connection-sync code
//! (`sync::adopt`), which resolves the service and real server by address
//! in the new configuration, exactly as a backup director takes a synced
//! connection — so ids, indexes and timer wheels are rebuilt, never read.
//!
//! With `conn_table_ipv6` the file also holds, after the slots, one line
//! per slot for IPv6 connections' addresses (the header says where), so
//! IPv6 connections are carried too; without it (and in files of rvsd
//! builds before it) they are skipped.
//!
//! Header (the region's first 4 KiB, 64-bit words): magic, layout version,
//! slot count, and CLOCK_BOOTTIME in ms at the writing process's clock
//! zero (deadlines in slots are in that clock; CLOCK_BOOTTIME is shared by
//! the processes of one boot and unmoved by wall-clock changes, and a
//! reboot empties tmpfs and hugetlbfs anyway).

use std::path::{Path, PathBuf};

use super::*;

/// Words before the first slot (one page: slots stay 64-byte aligned).
pub(in crate::conn) const HEADER_WORDS: usize = 512;
const H_MAGIC: usize = 0;
const H_LAYOUT: usize = 1;
const H_SLOTS: usize = 2;
const H_EPOCH: usize = 3;
/// Slots ever handed out, rounded up to [`HIGH_STEP`], with [`HIGH_SET`]
/// (files of older rvsd builds have 0 here: all slots are read). A
/// take-over copies and reads only these, not a whole mostly empty table.
const H_HIGH: usize = 4;
const HIGH_SET: u64 = 1 << 63;
/// Where the IPv6 lines start (a word index), with [`EXT_SET`]; 0: none.
/// Older builds never read this word: they read the slots and skip IPv6
/// connections, as before.
const H_EXT: usize = 5;
const EXT_SET: u64 = 1 << 62;
pub(in crate::conn) const HIGH_STEP: usize = 1024;
const MAGIC: u64 = u64::from_be_bytes(*b"RVSCONN\0");
/// The slot layout (slot.rs) and header version; bumped on any change to
/// either, so a file written by another layout is refused, never misread.
pub const LAYOUT: u64 = 2;
/// Table files are whole 2 MiB pages, so one on hugetlbfs can be sized;
/// anonymous regions whole 4 KiB pages (small tables stay small: tests and
/// the fuzz harness make thousands).
const FILE_ROUND: usize = 2 << 20;
const PAGE: usize = 4096;

/// Bytes of an anonymous region for `max` slots.
pub(super) fn region_len(max: usize) -> usize {
    ((HEADER_WORDS + 8 * max) * 8).div_ceil(PAGE) * PAGE
}

/// Bytes of a table file for `max` slots (and as many IPv6 lines).
fn file_len(max: usize, ipv6: bool) -> usize {
    let lines = if ipv6 { 2 * max } else { max };
    region_len(lines).div_ceil(FILE_ROUND) * FILE_ROUND
}

/// CLOCK_BOOTTIME in ms at this process's `clock::now_ms()` zero.
fn epoch_ms() -> u64 {
    crate::sys::boottime_ms().saturating_sub(crate::clock::now_ms())
}

pub(super) fn write_header(region: &crate::sys::Region, max: usize, ext_at: usize) {
    let h = region.words();
    h[H_LAYOUT].store(LAYOUT, Relaxed);
    h[H_SLOTS].store(max as u64, Relaxed);
    h[H_EPOCH].store(epoch_ms(), Relaxed);
    h[H_HIGH].store(HIGH_SET, Relaxed);
    h[H_EXT].store(
        if ext_at == 0 {
            0
        } else {
            EXT_SET | ext_at as u64
        },
        Relaxed,
    );
    h[H_MAGIC].store(MAGIC, Release);
}

/// Slot `id` is about to be used for the first time: every
/// [`HIGH_STEP`]th raises the header's high-water mark, before the slot
/// holds anything, and a step ahead: another worker may take the next
/// slots before this one's store lands.
#[inline]
pub(super) fn note_first_use(region: &crate::sys::Region, id: usize, slots: usize) {
    if id.is_multiple_of(HIGH_STEP) {
        let mark = (id + 2 * HIGH_STEP).min(slots) as u64;
        region.words()[H_HIGH].fetch_max(HIGH_SET | mark, Relaxed);
    }
}

/// Why a table file was not adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistError {
    /// Not a connection table of this layout; rvsd's
    /// `--discard-conn-table` replaces it.
    Incompatible(String),
    /// Another rvsd holds the table's lock.
    InUse(String),
    Io(String),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Incompatible(m) => write!(
                f,
                "{m}; start with --discard-conn-table to replace it (its connections are lost)"
            ),
            PersistError::Io(m) | PersistError::InUse(m) => f.write_str(m),
        }
    }
}

/// The connections a previous rvsd left in the table file, read out into
/// memory of their own, to be adopted once the configuration is loaded.
pub struct Previous {
    table: ConnTable,
    epoch_ms: u64,
}

impl Previous {
    /// Every connection read out, with the milliseconds it has left (0:
    /// expired while no rvsd ran).
    pub fn for_each(&self, f: impl FnMut(&Conn, u64)) {
        self.for_each_in(0..usize::MAX, f);
    }

    /// [`Previous::for_each`] over the slots in `range` (of
    /// [`Previous::capacity`]): parts to take over side by side.
    pub fn for_each_in(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&Conn, u64)) {
        let now = epoch_ms() + crate::clock::now_ms();
        self.table.for_each_in(range, |c| {
            let due = self.epoch_ms.saturating_add(c.expires_ms());
            f(c, due.saturating_sub(now));
        });
    }
    /// How many slots of the previous table were read (those it ever used).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

/// What a previous rvsd left in the table file, and the new table's file
/// until it takes the name.
pub struct Takeover {
    pub previous: Option<Previous>,
    /// `FILE.lock`, held for as long as this value lives (rvsd keeps it
    /// until it exits).
    _lock: std::fs::File,
    /// Where the new table is built until the previous connections are in;
    /// [`Takeover::commit`] renames it over the file.
    building: Option<(PathBuf, PathBuf)>,
}

impl Takeover {
    /// The new table takes the file's name: from now on a restart adopts
    /// from it (until then, from the previous one, still in place).
    pub fn commit(&mut self) -> std::io::Result<()> {
        if let Some((tmp, path)) = self.building.take() {
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }
}

/// What `rvsd --check` says of a table file: how many connections a start
/// would find in it (None: no file yet), or why the start would refuse it.
/// Reads through a private mapping and takes no lock, so it may run beside
/// a live rvsd.
pub fn check_file(path: &Path) -> Result<Option<usize>, PersistError> {
    if !path.exists() {
        return Ok(None);
    }
    let prev = read_previous(path)?;
    let mut n = 0;
    prev.for_each(|_, left| n += usize::from(left > 0));
    Ok(Some(n))
}

impl ConnTable {
    /// Open the table file at `path` for a table of `max` entries: the
    /// connections of a previous table found there are read out (see
    /// [`Takeover`]), and the new table is built beside it. A file that is
    /// not a table of this layout is refused, unless `discard`.
    pub fn open_file(
        path: &Path,
        max: usize,
        workers: usize,
        ids: Arc<Ids>,
        discard: bool,
    ) -> Result<(ConnTable, Takeover), PersistError> {
        Prepared::new(path, max, workers, ids, false)?.take_over(discard)
    }
}

/// A new table on its own file beside the table file (`FILE.new.PID-N`),
/// made — space allocated, pages faulted in — before the file's lock is
/// taken: `rvsd --handover` makes it while the running rvsd still holds
/// the lock, so the gap in forwarding does not include it.
pub struct Prepared {
    table: Option<ConnTable>,
    tmp: PathBuf,
    path: PathBuf,
}

fn with_ext(path: &Path, ext: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(ext);
    PathBuf::from(p)
}

impl Prepared {
    /// `ipv6`: the file holds IPv6 connections' addresses too (twice the
    /// size), so they are carried across a restart.
    pub fn new(
        path: &Path,
        max: usize,
        workers: usize,
        ids: Arc<Ids>,
        ipv6: bool,
    ) -> Result<Prepared, PersistError> {
        let max = clamp_max(max);
        let io = |e: std::io::Error| PersistError::Io(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Unique in this process too (tests open several).
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Relaxed);
        let tmp = with_ext(path, &format!(".new.{}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let region = crate::sys::Region::create(&tmp, file_len(max, ipv6)).map_err(|e| {
            PersistError::Io(format!(
                "{}: {e} (the directory needs room for two tables while one is taken over)",
                tmp.display()
            ))
        })?;
        Ok(Prepared {
            table: Some(ConnTable::on_region(region, max, workers, ids, ipv6)),
            tmp,
            path: path.to_owned(),
        })
    }

    /// Take the file's lock and read out the previous table's connections.
    pub fn take_over(mut self, discard: bool) -> Result<(ConnTable, Takeover), PersistError> {
        let path = self.path.clone();
        let lock = crate::sys::lock(&with_ext(&path, ".lock")).map_err(|e| {
            PersistError::InUse(format!(
                "{}: in use by another rvsd ({}.lock: {e})",
                path.display(),
                path.display()
            ))
        })?;
        remove_stale_builds(&path);
        let previous = if path.exists() {
            match read_previous(&path) {
                Ok(p) => Some(p),
                Err(PersistError::Incompatible(m)) if discard => {
                    log::warn!("{}: {m}: discarded", path.display());
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let table = self.table.take().expect("a prepared table is taken once");
        let tmp = std::mem::take(&mut self.tmp);
        Ok((
            table,
            Takeover {
                previous,
                _lock: lock,
                building: Some((tmp, path)),
            },
        ))
    }
}

impl Drop for Prepared {
    /// Not taken over (the lock was refused, the old file was): the new
    /// table's file goes.
    fn drop(&mut self) {
        if self.table.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Under the lock: `FILE.new.PID-N` files of processes that died before
/// their table took the name (and a `FILE.new` of an older rvsd).
fn remove_stale_builds(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.new", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = n.strip_prefix(&prefix) else {
            continue;
        };
        let stale = match rest.strip_prefix('.') {
            None => rest.is_empty(),
            Some(id) => id
                .split('-')
                .next()
                .unwrap_or("")
                .parse::<u32>()
                .is_ok_and(|pid| {
                    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
                }),
        };
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub(in crate::conn) fn clamp_max(max: usize) -> usize {
    max.clamp(1, (ENTRY_OUT - 2) as usize)
}

/// The previous table in `path`, copied out of the file (which stays as it
/// is until the new table replaces it).
fn read_previous(path: &Path) -> Result<Previous, PersistError> {
    let file = crate::sys::Region::open_private(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => PersistError::Incompatible(e.to_string()),
        _ => PersistError::Io(format!("{}: {e}", path.display())),
    })?;
    read_region(file.words()).map_err(|e| match e {
        PersistError::Incompatible(m) => {
            PersistError::Incompatible(format!("{}: {m}", path.display()))
        }
        e => e,
    })
}

/// The previous table in a region's words, checked as hostile input and
/// copied out.
fn read_region(w: &[AtomicU64]) -> Result<Previous, PersistError> {
    let bad = PersistError::Incompatible;
    if w.len() < HEADER_WORDS {
        return Err(bad(format!("{} bytes, shorter than a header", w.len() * 8)));
    }
    if w[H_MAGIC].load(Acquire) != MAGIC {
        return Err(bad("not an rvs connection table".into()));
    }
    let layout = w[H_LAYOUT].load(Relaxed);
    if layout != LAYOUT {
        return Err(bad(format!(
            "written by layout {layout}, this rvsd reads layout {LAYOUT}"
        )));
    }
    let n = w[H_SLOTS].load(Relaxed);
    let room = ((w.len() - HEADER_WORDS) / 8) as u64;
    if n == 0 || n > room || n > ENTRY_OUT - 2 {
        return Err(bad(format!("{n} slots in a file with room for {room}")));
    }
    // Only the slots ever used (the mark is a hint: never beyond the file).
    let high = w[H_HIGH].load(Relaxed);
    let n = match high & HIGH_SET {
        0 => n,
        _ => (high & !HIGH_SET).clamp(1, n),
    } as usize;
    let copy = crate::sys::Region::anonymous(region_len(n))
        .map_err(|e| PersistError::Io(format!("reading the table: {e}")))?;
    for (a, b) in copy.words()[HEADER_WORDS..]
        .iter()
        .zip(&w[HEADER_WORDS..HEADER_WORDS + 8 * n])
    {
        a.store(b.load(Relaxed), Relaxed);
    }
    // The IPv6 lines, if the file has them: after every slot it has room
    // for, whole within the file (else they are ignored, as a file without
    // them).
    let ext = w[H_EXT].load(Relaxed);
    let lines = match (ext & EXT_SET != 0).then_some((ext & !(EXT_SET | HIGH_SET)) as usize) {
        Some(at) if at >= HEADER_WORDS + 8 * n && at.saturating_add(8 * n) <= w.len() => Some(at),
        _ => None,
    };
    let epoch_ms = w[H_EPOCH].load(Relaxed);
    let mut table = ConnTable::on_region(copy, n, 1, Arc::new(Ids::default()), false);
    match lines {
        Some(at) => {
            if let Some(lines) = &table.ext {
                for (a, b) in lines.words().iter().zip(&w[at..at + 8 * n]) {
                    a.store(b.load(Relaxed), Relaxed);
                }
            }
        }
        // No lines: IPv6 connections are not carried (read() skips a
        // slot marked IPv6 without its line).
        None => table.ext = None,
    }
    table.fresh.store(n, Relaxed);
    Ok(Previous { table, epoch_ms })
}

impl Previous {
    /// A previous table whose slots are `bytes` (64 per slot, the last
    /// padded with zeros) under a valid header written now: for the fuzz
    /// target and tests that feed the take-over arbitrary slots.
    pub fn from_slot_bytes(bytes: &[u8]) -> Previous {
        let n = bytes.len().div_ceil(64).max(1);
        let r = crate::sys::Region::anonymous(region_len(n)).expect("memory for a small table");
        write_header(&r, n, 0);
        // Every slot was in use: the take-over reads them all.
        r.words()[H_HIGH].store(HIGH_SET | n as u64, Relaxed);
        for (w, c) in r.words()[HEADER_WORDS..].iter().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            w.store(u64::from_ne_bytes(b), Relaxed);
        }
        read_region(r.words()).expect("a header written here is valid")
    }
}

#[cfg(test)]
mod tests;
