//! Health checks run by rvsd from the director host's own (kernel) network
//! stack, as keepalived's TCP_CHECK and HTTP_GET do.
//!
//! Three parts:
//! - [`Checker`]: the pure state machine — which real servers to probe and
//!   when, consecutive-failure counting with retries, up/down transitions.
//!   Time is a parameter (milliseconds), so tests drive it with a fake clock
//!   and a fake prober and never sleep.
//! - [`Prober`] / [`NetProber`]: one probe attempt (TCP connect, or HTTP GET
//!   with a status check), bounded by the check's timeout.
//! - [`HealthChecker`]: the threads — one scheduler thread and a small fixed
//!   pool of probe threads — that run the state machine against a
//!   [`HealthSource`] (the control plane) and stop promptly on shutdown.
//!
//! The control plane keeps the resulting up/down state beside (never inside)
//! the configuration and applies it when it builds a snapshot; see
//! `Control::health_event`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel;

use crate::service::{CheckKind, DestKey, HealthCheck};

/// Probe threads of a [`HealthChecker`].
pub const PROBE_THREADS: usize = 4;
/// The scheduler thread looks at the configuration and the stop flag at
/// least this often.
const TICK_MS: u64 = 100;
/// Bytes of an HTTP answer read before giving up on finding the status line.
const MAX_STATUS_LINE: usize = 4096;

/// A real server to check, as the control plane describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTarget {
    pub dest: DestKey,
    /// Where to probe: the real server's address and the check's port (or
    /// the real server's).
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
}

/// One probe to run.
#[derive(Clone, Debug)]
pub struct Job {
    pub dest: DestKey,
    pub addr: SocketAddr,
    pub check: HealthCheck,
    /// Identifies the target's configuration the job was made for; a result
    /// for a target changed or removed since is ignored.
    epoch: u64,
}

struct TargetState {
    addr: SocketAddr,
    check: HealthCheck,
    up: bool,
    /// Consecutive failed attempts of the current check.
    fails: u32,
    next_ms: u64,
    in_flight: bool,
    epoch: u64,
}

/// The health-check state machine (no threads, no clock of its own).
///
/// A healthy server is probed every `interval_ms`. A failed attempt is
/// retried after `retry_delay_ms`; when `retries` consecutive attempts have
/// failed the server goes down. A down server is probed every
/// `interval_ms`; one successful attempt brings it back up.
#[derive(Default)]
pub struct Checker {
    targets: HashMap<DestKey, TargetState>,
    next_epoch: u64,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Follow the configuration: new targets are due at once, removed ones
    /// are forgotten, ones whose address or check changed start over (with
    /// the state the control plane holds).
    pub fn sync(&mut self, targets: Vec<HealthTarget>, now: u64) {
        let mut next: HashMap<DestKey, TargetState> = HashMap::with_capacity(targets.len());
        for t in targets {
            match self.targets.remove(&t.dest) {
                Some(old) if old.addr == t.addr && old.check == t.check => {
                    next.insert(t.dest, old);
                }
                _ => {
                    self.next_epoch += 1;
                    next.insert(
                        t.dest,
                        TargetState {
                            addr: t.addr,
                            check: t.check,
                            up: t.up,
                            fails: 0,
                            next_ms: now,
                            in_flight: false,
                            epoch: self.next_epoch,
                        },
                    );
                }
            }
        }
        self.targets = next;
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Probes due at `now`; they are in flight until [`Checker::complete`].
    pub fn due(&mut self, now: u64) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (k, t) in &mut self.targets {
            if !t.in_flight && t.next_ms <= now {
                t.in_flight = true;
                jobs.push(Job {
                    dest: *k,
                    addr: t.addr,
                    check: t.check.clone(),
                    epoch: t.epoch,
                });
            }
        }
        jobs
    }

    /// When the next probe is due (None: nothing to check or all in flight).
    pub fn next_due(&self) -> Option<u64> {
        self.targets
            .values()
            .filter(|t| !t.in_flight)
            .map(|t| t.next_ms)
            .min()
    }

    /// Record the result of `job`, finished at `now`.
    pub fn complete(
        &mut self,
        job: &Job,
        result: Result<(), String>,
        now: u64,
    ) -> Option<HealthEvent> {
        let t = self.targets.get_mut(&job.dest)?;
        if t.epoch != job.epoch {
            return None;
        }
        t.in_flight = false;
        let interval = t.check.interval_ms as u64;
        let mut ev = HealthEvent {
            dest: job.dest,
            ok: result.is_ok(),
            error: result.as_ref().err().cloned(),
            transition: None,
            failed_attempts: 0,
        };
        match result {
            Ok(()) => {
                t.fails = 0;
                t.next_ms = now + interval;
                if !t.up {
                    t.up = true;
                    ev.transition = Some(true);
                }
            }
            Err(_) if t.up => {
                t.fails += 1;
                if t.fails >= t.check.retries {
                    ev.transition = Some(false);
                    ev.failed_attempts = t.fails;
                    t.up = false;
                    t.fails = 0;
                    t.next_ms = now + interval;
                } else {
                    t.next_ms = now + t.check.retry_delay_ms as u64;
                }
            }
            Err(_) => t.next_ms = now + interval,
        }
        Some(ev)
    }

    /// Run every due probe with `probe`, synchronously (tests, and a
    /// description of what the threads do).
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

/// One probe attempt.
pub trait Prober: Send + Sync {
    fn probe(&self, addr: SocketAddr, check: &HealthCheck) -> Result<(), String>;
}

/// Probes through the host's kernel network stack.
pub struct NetProber;

impl Prober for NetProber {
    fn probe(&self, addr: SocketAddr, check: &HealthCheck) -> Result<(), String> {
        let timeout = Duration::from_millis(check.timeout_ms.max(1) as u64);
        let deadline = Instant::now() + timeout;
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock
            {
                format!("connect: timed out after {} ms", check.timeout_ms)
            } else {
                format!("connect: {e}")
            }
        })?;
        if check.kind == CheckKind::Tcp {
            return Ok(());
        }
        let left = |what: &str| {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{what}: timed out after {} ms", check.timeout_ms))
        };
        s.set_write_timeout(Some(left("send")?))
            .map_err(|e| format!("send: {e}"))?;
        s.write_all(http_request(check.path(), addr).as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            if buf.contains(&b'\n') || buf.len() >= MAX_STATUS_LINE {
                break;
            }
            s.set_read_timeout(Some(left("response")?))
                .map_err(|e| format!("response: {e}"))?;
            match s.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("response: timed out after {} ms", check.timeout_ms))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("response: {e}")),
            }
        }
        let status = parse_status_line(&buf)?;
        let want = check.expected_status();
        if status == want {
            Ok(())
        } else {
            Err(format!("HTTP status {status}, expected {want}"))
        }
    }
}

/// The request an HTTP check sends.
pub fn http_request(path: &str, addr: SocketAddr) -> String {
    format!(
        "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
        addr.ip()
    )
}

/// The status code of an HTTP response's first line
/// (`HTTP/1.x SSS reason`); anything else is an error that says what came.
pub fn parse_status_line(buf: &[u8]) -> Result<u16, String> {
    if buf.is_empty() {
        return Err("no HTTP response (connection closed)".into());
    }
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let shown = || {
        let mut s = String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned();
        s.retain(|c| !c.is_control());
        s
    };
    let bad = || format!("not an HTTP status line: {:?}", shown());
    let rest = line.strip_prefix(b"HTTP/").ok_or_else(bad)?;
    // version: DIGIT "." DIGIT
    if rest.len() < 3 || !rest[0].is_ascii_digit() || rest[1] != b'.' || !rest[2].is_ascii_digit() {
        return Err(bad());
    }
    let rest = &rest[3..];
    let code = rest.strip_prefix(b" ").ok_or_else(bad)?;
    if code.len() < 3 || !code[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if code.len() > 3 && code[3] != b' ' {
        return Err(bad());
    }
    let n = code[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + (d - b'0') as u16);
    if !(100..=599).contains(&n) {
        return Err(bad());
    }
    Ok(n)
}

/// What the checker threads need from the control plane.
pub trait HealthSource: Send + Sync {
    /// Changes whenever the set of targets may have changed.
    fn health_generation(&self) -> u64;
    /// Every real server that has a health check.
    fn health_targets(&self) -> Vec<HealthTarget>;
    /// A probe finished.
    fn health_event(&self, ev: HealthEvent);
}

/// The running checker: a scheduler thread and [`PROBE_THREADS`] probe
/// threads. [`HealthChecker::stop`] (or drop) ends them.
pub struct HealthChecker {
    stop: Arc<AtomicBool>,
    scheduler: Option<JoinHandle<()>>,
    probers: Vec<JoinHandle<()>>,
}

impl HealthChecker {
    /// Start checking the targets of `src` with `prober`.
    pub fn start(
        src: Arc<dyn HealthSource>,
        prober: Arc<dyn Prober>,
        threads: usize,
    ) -> std::io::Result<HealthChecker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (job_tx, job_rx) = channel::unbounded::<Job>();
        let (res_tx, res_rx) = channel::unbounded::<(Job, Result<(), String>)>();
        let mut hc = HealthChecker {
            stop: stop.clone(),
            scheduler: None,
            probers: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let (rx, tx, prober, stop) =
                (job_rx.clone(), res_tx.clone(), prober.clone(), stop.clone());
            hc.probers.push(
                std::thread::Builder::new()
                    .name(format!("rvs-probe{i}"))
                    .spawn(move || {
                        for job in rx.iter() {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let r = prober.probe(job.addr, &job.check);
                            if tx.send((job, r)).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        drop((job_rx, res_tx));
        hc.scheduler = Some(
            std::thread::Builder::new()
                .name("rvs-health".into())
                .spawn(move || schedule(&*src, &stop, job_tx, res_rx))?,
        );
        Ok(hc)
    }

    /// Stop: the scheduler within [`TICK_MS`]; probe threads as soon as
    /// their current probe ends. Waits at most about half a second for those;
    /// one still inside a probe (bounded by the check's timeout) is left to
    /// finish on its own — it touches nothing but its socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.scheduler.take() {
            let _ = h.join();
        }
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end && self.probers.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for h in self.probers.drain(..) {
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::debug!("health: a probe thread is still in a probe; not waiting for it");
            }
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn schedule(
    src: &dyn HealthSource,
    stop: &AtomicBool,
    jobs: channel::Sender<Job>,
    results: channel::Receiver<(Job, Result<(), String>)>,
) {
    let now = crate::clock::now_ms;
    let mut checker = Checker::new();
    let mut generation = None;
    while !stop.load(Ordering::Relaxed) {
        let g = src.health_generation();
        if generation != Some(g) {
            generation = Some(g);
            checker.sync(src.health_targets(), now());
        }
        for job in checker.due(now()) {
            if jobs.send(job).is_err() {
                return;
            }
        }
        let t = now();
        let wait = checker
            .next_due()
            .map_or(TICK_MS, |due| due.saturating_sub(t).clamp(1, TICK_MS));
        match results.recv_timeout(Duration::from_millis(wait)) {
            Ok(first) => {
                for (job, r) in std::iter::once(first).chain(results.try_iter()) {
                    if let Some(ev) = checker.complete(&job, r, now()) {
                        src.health_event(ev);
                    }
                }
            }
            Err(channel::RecvTimeoutError::Timeout) => {}
            Err(channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{OnFailure, Proto, ServiceKey};
    use std::net::{IpAddr, TcpListener};

    fn check(retries: u32) -> HealthCheck {
        HealthCheck {
            kind: CheckKind::Http,
            port: None,
            path: None,
            status: None,
            interval_ms: 500,
            timeout_ms: 300,
            retries,
            retry_delay_ms: 100,
            on_failure: OnFailure::Remove,
        }
    }

    fn key(ip: &str) -> DestKey {
        (
            ServiceKey {
                proto: Proto::Tcp,
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                fwmark: 0,
            },
            ip.parse().unwrap(),
            80,
        )
    }

    fn target(ip: &str, retries: u32) -> HealthTarget {
        let ipa: IpAddr = ip.parse().unwrap();
        HealthTarget {
            dest: key(ip),
            addr: SocketAddr::new(ipa, 80),
            check: check(retries),
            up: true,
        }
    }

    #[test]
    fn status_lines_parse_strictly() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK\r\nServer: x\r\n"),
            Ok(200)
        );
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found\r\n"), Ok(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 503\r\n"), Ok(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 301 Moved\n"), Ok(301));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 204"),
            Ok(204),
            "no newline yet"
        );
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 099 x\r\n",
            b"HTTP/1.1 600 x\r\n",
            b"HTTP/x.1 200 OK\r\n",
            b"HTTP/1.1  200 OK\r\n",
            b"http/1.1 200 OK\r\n",
            b"\x00\x01\x02",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
        assert!(parse_status_line(b"")
            .unwrap_err()
            .contains("connection closed"));
    }

    #[test]
    fn the_request_is_http_1_0_with_host_and_close() {
        assert_eq!(
            http_request("/health?x=1", "10.0.1.11:8080".parse().unwrap()),
            "GET /health?x=1 HTTP/1.0\r\nHost: 10.0.1.11\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn down_only_after_retries_consecutive_failures_spaced_by_the_retry_delay() {
        let mut c = Checker::new();
        c.sync(vec![target("10.0.1.11", 3)], 0);
        let fail = |_: &Job| Err::<(), _>("connect: refused".to_string());
        let ok = |_: &Job| Ok::<(), String>(());

        // t=0: healthy; next check one interval later, nothing due before.
        let ev = c.run_due(0, ok);
        assert_eq!((ev.len(), ev[0].transition), (1, None));
        assert_eq!(c.next_due(), Some(500));
        assert!(c.run_due(499, fail).is_empty(), "not due yet");

        // Two failures: retried after 100 ms each, still up.
        let ev = c.run_due(500, fail);
        assert_eq!((ev[0].ok, ev[0].transition), (false, None));
        assert_eq!(c.next_due(), Some(600));
        assert!(c.run_due(599, fail).is_empty());
        assert_eq!(c.run_due(600, fail)[0].transition, None);
        // A success in between resets the count.
        assert_eq!(c.run_due(700, ok)[0].transition, None);
        assert_eq!(c.next_due(), Some(1200));
        assert_eq!(c.run_due(1200, fail)[0].transition, None);
        assert_eq!(c.run_due(1300, fail)[0].transition, None);
        let ev = c.run_due(1400, fail);
        assert_eq!(ev[0].transition, Some(false), "third consecutive failure");
        assert_eq!(ev[0].failed_attempts, 3);
        assert_eq!(ev[0].error.as_deref(), Some("connect: refused"));
        assert_eq!(c.is_up(&key("10.0.1.11")), Some(false));

        // Down: probed every interval, failures change nothing.
        assert_eq!(c.next_due(), Some(1900));
        assert_eq!(c.run_due(1900, fail)[0].transition, None);
        assert_eq!(c.next_due(), Some(2400));
        // One success brings it back.
        assert_eq!(c.run_due(2400, ok)[0].transition, Some(true));
        assert_eq!(c.is_up(&key("10.0.1.11")), Some(true));
    }

    #[test]
    fn retries_one_goes_down_on_the_first_failure() {
        let mut c = Checker::new();
        c.sync(vec![target("10.0.1.11", 1)], 0);
        let ev = c.run_due(0, |_| Err("x".into()));
        assert_eq!(ev[0].transition, Some(false));
    }

    #[test]
    fn sync_follows_the_configuration_and_drops_stale_results() {
        let mut c = Checker::new();
        c.sync(vec![target("10.0.1.11", 1), target("10.0.1.12", 1)], 0);
        let jobs = c.due(0);
        assert_eq!(jobs.len(), 2);
        assert!(c.due(0).is_empty(), "in flight");
        assert_eq!(c.next_due(), None);
        // 10.0.1.12 removed, 10.0.1.11's check changed, 10.0.1.13 added
        // (starting down, as the control plane says).
        let mut t1 = target("10.0.1.11", 2);
        t1.check.interval_ms = 1000;
        let mut t3 = target("10.0.1.13", 1);
        t3.up = false;
        c.sync(vec![t1, t3], 10);
        assert_eq!(c.len(), 2);
        for j in &jobs {
            assert_eq!(c.complete(j, Err("late".into()), 20), None, "stale");
        }
        let ev = c.run_due(10, |j| {
            if j.dest == key("10.0.1.13") {
                Ok(())
            } else {
                Err("refused".into())
            }
        });
        assert_eq!(ev.len(), 2);
        let e3 = ev.iter().find(|e| e.dest == key("10.0.1.13")).unwrap();
        assert_eq!(e3.transition, Some(true));
        let e1 = ev.iter().find(|e| e.dest == key("10.0.1.11")).unwrap();
        assert_eq!(e1.transition, None, "retries 2: one failure is not enough");
        // An unchanged target keeps its state across a sync.
        c.sync(vec![target("10.0.1.13", 1)], 20);
        assert_eq!(c.is_up(&key("10.0.1.13")), Some(true));
    }

    struct Src {
        targets: Vec<HealthTarget>,
        events: parking_lot::Mutex<Vec<HealthEvent>>,
    }
    impl HealthSource for Src {
        fn health_generation(&self) -> u64 {
            1
        }
        fn health_targets(&self) -> Vec<HealthTarget> {
            self.targets.clone()
        }
        fn health_event(&self, ev: HealthEvent) {
            self.events.lock().push(ev);
        }
    }

    #[test]
    fn net_prober_checks_tcp_and_http_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for (i, s) in l.incoming().take(3).enumerate() {
                let mut s = s.unwrap();
                let mut req = [0u8; 512];
                let n = s.read(&mut req).unwrap_or(0);
                if i > 0 {
                    assert!(req[..n].starts_with(b"GET /h HTTP/1.0\r\n"));
                    let st = if i == 1 { "200 OK" } else { "500 Oops" };
                    let _ = write!(s, "HTTP/1.1 {st}\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        let mut c = check(1);
        c.kind = CheckKind::Tcp;
        assert_eq!(NetProber.probe(addr, &c), Ok(()));
        c.kind = CheckKind::Http;
        c.path = Some("/h".into());
        assert_eq!(NetProber.probe(addr, &c), Ok(()));
        assert_eq!(
            NetProber.probe(addr, &c),
            Err("HTTP status 500, expected 200".into())
        );
        server.join().unwrap();
        // Nothing listens there any more.
        assert!(NetProber
            .probe(addr, &c)
            .unwrap_err()
            .starts_with("connect:"));
    }

    #[test]
    fn threads_probe_report_and_stop_promptly() {
        struct Refuse;
        impl Prober for Refuse {
            fn probe(&self, _: SocketAddr, _: &HealthCheck) -> Result<(), String> {
                Err("refused".into())
            }
        }
        let src = Arc::new(Src {
            targets: vec![target("10.0.1.11", 1)],
            events: Default::default(),
        });
        let hc = HealthChecker::start(src.clone(), Arc::new(Refuse), 2).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while src.events.lock().is_empty() {
            assert!(Instant::now() < end, "no event");
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        hc.stop();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(src.events.lock()[0].transition, Some(false));
    }
}
