//! Health checks run by rvsd from the director host's own (kernel) network
//! stack, as keepalived's checkers do.
//!
//! Three parts:
//! - [`Checker`]: the pure state machine — which checks to run and when,
//!   retries, each check's up/down state and the real server's (up only
//!   while all its checks pass). Time is a parameter (milliseconds), so
//!   tests drive it with a fake clock and never sleep.
//! - [`probe`]: one attempt of one check as a non-blocking state machine
//!   (TCP connect; HTTP GETs of every URL; a MISC program), so thousands
//!   can be in flight at once and none waits for another.
//! - [`HealthChecker`]: one thread running an event loop (mio) over the
//!   probes' sockets, a timer heap for due checks and probe deadlines, and
//!   the [`HealthSource`] (the control plane) for targets and results.
//!
//! The control plane keeps the resulting up/down state beside (never inside)
//! the configuration and applies it when it builds a snapshot; see
//! `Control::health_event`.

pub mod probe;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::flow::DestKey;

use crate::service::HealthCheck;

pub use probe::{host_of, http_request, parse_status_line};

/// The event loop looks at the configuration and the stop flag at least
/// this often.
const TICK_MS: u64 = 100;
/// Probes in flight at once at most (sockets and MISC programs); due checks
/// beyond it wait for a free place (counted in [`LoopStats::deferred`]).
pub const MAX_IN_FLIGHT: usize = 8192;

/// A real server to check, as the control plane describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    pub dest: DestKey,
    /// Where to probe: the real server's address and the check's port (or
    /// the real server's). The `also` checks use their own port, else the
    /// real server's.
    pub addr: SocketAddr,
    pub check: HealthCheck,
    /// The state the control plane holds now (a new server starts up).
    pub up: bool,
}

/// The outcome of one probe attempt, for the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    pub dest: DestKey,
    pub ok: bool,
    /// Why the attempt failed.
    pub error: Option<String>,
    /// `Some(up)` when this attempt changed the server's state.
    pub transition: Option<bool>,
    /// Consecutive failed attempts that led to a down transition.
    pub failed_attempts: u32,
    /// The weight a `misc_dynamic` check set (exit code − 2, keepalived's
    /// check_misc.c), for every event of that server; None: the configured
    /// weight.
    pub weight: Option<u32>,
}

/// One probe to run: one attempt of one check of one real server.
#[derive(Clone, Debug)]
pub struct Job {
    pub dest: DestKey,
    pub addr: SocketAddr,
    /// The check (without its `also` list).
    pub check: HealthCheck,
    /// Which of the real server's checks (0 = the main one).
    pub slot: usize,
    /// Identifies the target's configuration the job was made for; a result
    /// for a target changed or removed since is ignored.
    epoch: u64,
}

/// One check of a real server.
struct Slot {
    addr: SocketAddr,
    check: HealthCheck,
    up: bool,
    /// No attempt finished yet: as keepalived at start-up (check_data.c,
    /// "For non alpha mode, one failure is enough initially"), the first
    /// failure takes the check down without retries.
    fresh: bool,
    /// Consecutive failed attempts of the current check.
    fails: u32,
    next_ms: u64,
    in_flight: bool,
}

struct TargetState {
    addr: SocketAddr,
    check: HealthCheck,
    slots: Vec<Slot>,
    /// Up while every slot is up.
    up: bool,
    /// Set by a `misc_dynamic` check's last exit code 2..=255.
    weight: Option<u32>,
    epoch: u64,
}

/// The health-check state machine (no threads, no clock of its own).
///
/// Each check of a real server runs on its own: a healthy check is probed
/// every `interval_ms`; a failed attempt is retried after `retry_delay_ms`;
/// when `retries` consecutive attempts have failed the check goes down and
/// is probed every `interval_ms`; one successful attempt brings it back.
/// The real server is up while all its checks are (keepalived: a real
/// server is alive while none of its checkers has failed).
#[derive(Default)]
pub struct Checker {
    /// Spread new checks over their warm-up time (the event loop does;
    /// [`Checker::new`] does not, so tests see them due at once).
    warmup: Option<std::hash::RandomState>,
    targets: HashMap<DestKey, TargetState>,
    by_epoch: HashMap<u64, DestKey>,
    /// (due ms, epoch, slot); entries whose slot moved on are stale and
    /// skipped when they come up.
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    next_epoch: u64,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// A checker that starts each new check at a random moment within its
    /// warm-up time, as keepalived does.
    pub fn with_warmup() -> Checker {
        Checker {
            warmup: Some(std::hash::RandomState::new()),
            ..Checker::default()
        }
    }

    fn first_due(&self, now: u64, dest: &DestKey, slot: usize, c: &HealthCheck) -> u64 {
        let Some(rs) = &self.warmup else {
            return now;
        };
        let w = c.warmup_ms.unwrap_or(c.interval_ms) as u64;
        if w == 0 {
            return now;
        }
        use std::hash::BuildHasher;
        now + rs.hash_one((dest, slot)) % w
    }

    /// Follow the configuration: new targets are due at once, removed ones
    /// are forgotten (with their pending checks), ones whose address or
    /// check changed start over (with the state the control plane holds).
    pub fn sync(&mut self, targets: Vec<HealthTarget>, now: u64) {
        let mut next: HashMap<DestKey, TargetState> = HashMap::with_capacity(targets.len());
        for t in targets {
            match self.targets.remove(&t.dest) {
                Some(old) if old.addr == t.addr && old.check == t.check => {
                    next.insert(t.dest, old);
                }
                old => {
                    self.next_epoch += 1;
                    let epoch = self.next_epoch;
                    let fresh = old.is_none();
                    let slots: Vec<Slot> = t
                        .check
                        .all()
                        .enumerate()
                        .map(|(i, c)| {
                            let mut c = c.clone();
                            c.also.clear();
                            let addr = if i == 0 {
                                t.addr
                            } else {
                                SocketAddr::new(t.addr.ip(), c.port.unwrap_or(t.dest.2))
                            };
                            Slot {
                                next_ms: self.first_due(now, &t.dest, i, &c),
                                addr,
                                check: c,
                                up: t.up,
                                fresh,
                                fails: 0,
                                in_flight: false,
                            }
                        })
                        .collect();
                    for (i, s) in slots.iter().enumerate() {
                        self.heap.push(Reverse((s.next_ms, epoch, i)));
                    }
                    next.insert(
                        t.dest,
                        TargetState {
                            addr: t.addr,
                            check: t.check,
                            slots,
                            up: t.up,
                            weight: None,
                            epoch,
                        },
                    );
                }
            }
        }
        self.targets = next;
        self.by_epoch = self.targets.iter().map(|(k, t)| (t.epoch, *k)).collect();
        // Drop the heap's stale entries at once when it has grown well
        // beyond the live checks (a re-import of a large configuration).
        let live: usize = self.targets.values().map(|t| t.slots.len()).sum();
        if self.heap.len() > 2 * live + 64 {
            let by_epoch = &self.by_epoch;
            let targets = &self.targets;
            self.heap.retain(|Reverse((due, epoch, i))| {
                by_epoch
                    .get(epoch)
                    .and_then(|k| targets.get(k))
                    .and_then(|t| t.slots.get(*i))
                    .is_some_and(|s| !s.in_flight && s.next_ms == *due)
            });
        }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Whether `job` is still wanted by the configuration.
    pub fn is_current(&self, job: &Job) -> bool {
        self.targets
            .get(&job.dest)
            .is_some_and(|t| t.epoch == job.epoch)
    }

    fn live_entry(&self, due: u64, epoch: u64, i: usize) -> bool {
        self.by_epoch
            .get(&epoch)
            .and_then(|k| self.targets.get(k))
            .and_then(|t| t.slots.get(i))
            .is_some_and(|s| !s.in_flight && s.next_ms == due)
    }

    /// Probes due at `now`; they are in flight until [`Checker::complete`].
    pub fn due(&mut self, now: u64) -> Vec<Job> {
        self.due_max(now, usize::MAX)
    }

    /// At most `max` probes due at `now` (the earliest first).
    pub fn due_max(&mut self, now: u64, max: usize) -> Vec<Job> {
        let mut jobs = Vec::new();
        while jobs.len() < max {
            let Some(&Reverse((due, epoch, i))) = self.heap.peek() else {
                break;
            };
            if due > now {
                break;
            }
            self.heap.pop();
            if !self.live_entry(due, epoch, i) {
                continue;
            }
            let dest = self.by_epoch[&epoch];
            let t = self
                .targets
                .get_mut(&dest)
                .expect("by_epoch follows targets");
            let s = &mut t.slots[i];
            s.in_flight = true;
            jobs.push(Job {
                dest,
                addr: s.addr,
                check: s.check.clone(),
                slot: i,
                epoch,
            });
        }
        jobs
    }

    /// When the next probe is due (None: nothing to check or all in flight).
    pub fn next_due(&mut self) -> Option<u64> {
        while let Some(&Reverse((due, epoch, i))) = self.heap.peek() {
            if self.live_entry(due, epoch, i) {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// Record the result of `job`, finished at `now`.
    pub fn complete(
        &mut self,
        job: &Job,
        result: Result<(), String>,
        now: u64,
    ) -> Option<HealthEvent> {
        self.complete_exit(job, result, None, now)
    }

    /// [`Checker::complete`] for a MISC check with the program's exit code
    /// (`misc_dynamic`: 0 = the configured weight, 2..=255 = weight code − 2).
    pub fn complete_exit(
        &mut self,
        job: &Job,
        result: Result<(), String>,
        exit: Option<i32>,
        now: u64,
    ) -> Option<HealthEvent> {
        let t = self.targets.get_mut(&job.dest)?;
        if t.epoch != job.epoch {
            return None;
        }
        let s = t.slots.get_mut(job.slot)?;
        if !s.in_flight {
            return None;
        }
        s.in_flight = false;
        let interval = s.check.interval_ms as u64;
        let mut failed_attempts = 0;
        match &result {
            Ok(()) => {
                s.fails = 0;
                s.up = true;
                s.next_ms = now + interval;
            }
            Err(_) if s.up => {
                s.fails += 1;
                // keepalived (check_tcp.c tcp_epilog, check_http.c epilog):
                // down once retry_it reaches `retry`; at start-up at once.
                if s.fresh || s.fails >= s.check.retries {
                    failed_attempts = s.fails;
                    s.up = false;
                    s.fails = 0;
                    s.next_ms = now + interval;
                } else {
                    s.next_ms = now + s.check.retry_delay_ms as u64;
                }
            }
            Err(_) => s.next_ms = now + interval,
        }
        s.fresh = false;
        if s.check.misc_dynamic && result.is_ok() {
            t.weight = match exit {
                Some(c @ 2..=255) => Some(c as u32 - 2),
                _ => None,
            };
        }
        let s = &t.slots[job.slot];
        let next = s.next_ms;
        self.heap.push(Reverse((next, t.epoch, job.slot)));
        let all_up = t.slots.iter().all(|s| s.up);
        let transition = (all_up != t.up).then_some(all_up);
        t.up = all_up;
        Some(HealthEvent {
            dest: job.dest,
            ok: result.is_ok(),
            error: result.err().map(|e| {
                if t.slots.len() > 1 {
                    format!("{}: {e}", job.check.kind.keepalived_name())
                } else {
                    e
                }
            }),
            transition,
            failed_attempts: if transition == Some(false) {
                failed_attempts.max(1)
            } else {
                0
            },
            weight: t.weight,
        })
    }

    /// Run every due probe with `probe`, synchronously (tests, and a
    /// description of what the event loop does).
    pub fn run_due(
        &mut self,
        now: u64,
        mut probe: impl FnMut(&Job) -> Result<(), String>,
    ) -> Vec<HealthEvent> {
        let jobs = self.due(now);
        jobs.iter()
            .filter_map(|j| {
                let r = probe(j);
                self.complete(j, r, now)
            })
            .collect()
    }

    /// Whether `dest` is up as far as the checker knows.
    pub fn is_up(&self, dest: &DestKey) -> Option<bool> {
        self.targets.get(dest).map(|t| t.up)
    }
}

/// What the checker thread needs from the control plane.
pub trait HealthSource: Send + Sync {
    /// Changes whenever the set of targets may have changed.
    fn health_generation(&self) -> u64;
    /// Every real server that has a health check.
    fn health_targets(&self) -> Vec<HealthTarget>;
    /// A probe finished.
    fn health_event(&self, ev: HealthEvent);
}

/// Counters of the event loop (for the benchmark and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopStats {
    pub started: u64,
    pub finished: u64,
    /// Due probes that waited because [`MAX_IN_FLIGHT`] were running.
    pub deferred: u64,
    /// Probes dropped because their configuration went away.
    pub dropped: u64,
    pub max_in_flight: u64,
}

/// The running checker: one event-loop thread. [`HealthChecker::stop`] (or
/// drop) ends it within [`TICK_MS`]; probes in flight are dropped (sockets
/// closed, MISC programs killed).
pub struct HealthChecker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<parking_lot::Mutex<LoopStats>>,
}

impl HealthChecker {
    /// Start checking the targets of `src`.
    pub fn start(src: Arc<dyn HealthSource>) -> std::io::Result<HealthChecker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(parking_lot::Mutex::new(LoopStats::default()));
        let poll = mio::Poll::new()?;
        let (st, sp) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("rvs-health".into())
            .spawn(move || run(&*src, &st, poll, &sp))?;
        Ok(HealthChecker {
            stop,
            thread: Some(thread),
            stats,
        })
    }

    pub fn stats(&self) -> LoopStats {
        *self.stats.lock()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    src: &dyn HealthSource,
    stop: &AtomicBool,
    mut poll: mio::Poll,
    stats: &parking_lot::Mutex<LoopStats>,
) {
    let now = crate::clock::now_ms;
    let mut checker = Checker::with_warmup();
    let mut generation = None;
    let mut last_look = 0u64;
    let mut events = mio::Events::with_capacity(1024);
    let mut probes = probe::Probes::default();
    let mut done: Vec<(Job, Result<(), String>, Option<i32>)> = Vec::new();
    let mut st = LoopStats::default();
    while !stop.load(Ordering::Relaxed) {
        let t = now();
        if generation.is_none() || t >= last_look + TICK_MS {
            last_look = t;
            let g = src.health_generation();
            if generation != Some(g) {
                generation = Some(g);
                checker.sync(src.health_targets(), t);
                // The old configuration's probes go at once.
                st.dropped += probes.retain(poll.registry(), |j| checker.is_current(j)) as u64;
            }
        }
        let room = MAX_IN_FLIGHT.saturating_sub(probes.len());
        let jobs = checker.due_max(now(), room);
        if jobs.len() == room && checker.next_due().is_some_and(|d| d <= now()) {
            st.deferred += 1;
        }
        for job in jobs {
            st.started += 1;
            if let Some(r) = probes.start(poll.registry(), job.clone(), now()) {
                done.push((job, r, None));
            }
        }
        st.max_in_flight = st.max_in_flight.max(probes.len() as u64);
        for (job, r, exit) in done.drain(..) {
            st.finished += 1;
            if let Some(ev) = checker.complete_exit(&job, r, exit, now()) {
                src.health_event(ev);
            }
        }
        *stats.lock() = st;
        let t = now();
        let mut wait = TICK_MS.saturating_sub(t.saturating_sub(last_look)).max(1);
        if let Some(d) = checker.next_due() {
            wait = wait.min(d.saturating_sub(t));
        }
        if let Some(d) = probes.next_deadline() {
            wait = wait.min(d.saturating_sub(t));
        }
        if probes.has_children() {
            wait = wait.min(probe::CHILD_POLL_MS);
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(wait))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                log::error!("health: poll failed: {e}; checks stop");
                return;
            }
        }
        let t = now();
        for ev in events.iter() {
            if let Some((j, r)) = probes.on_event(poll.registry(), ev.token(), t) {
                done.push((j, r, None));
            }
        }
        done.extend(
            probes
                .expire(poll.registry(), t)
                .into_iter()
                .map(|(j, r)| (j, r, None)),
        );
        done.extend(probes.reap_children(t));
    }
}

#[cfg(test)]
mod tests;
