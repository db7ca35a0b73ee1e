//! One attempt of one check, as a non-blocking state machine driven by the
//! health event loop: a TCP connect (TCP_CHECK), a GET of every URL on its
//! own connection (HTTP_GET, as keepalived opens one per URL), or a program
//! (MISC_CHECK). Each has a deadline; none blocks another.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use super::Job;
use crate::service::{parse_hex, split_command, CheckKind};

/// How often running MISC programs are looked at.
pub const CHILD_POLL_MS: u64 = 10;
/// Bytes of an HTTP answer read before giving up on finding the status line.
const MAX_STATUS_LINE: usize = 4096;

/// The request an HTTP check sends (`host`: the Host header).
pub fn http_request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// The Host header for a check without `virtualhost`: the address, an
/// IPv6 one in brackets (RFC 3986 3.2.2's IP-literal, as keepalived's
/// check_http writes it).
pub fn host_of(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    }
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

fn show_ranges(r: &[(u16, u16)]) -> String {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Connecting,
    Sending,
    Reading,
}

struct NetProbe {
    stream: TcpStream,
    addr: SocketAddr,
    http: bool,
    urls: Vec<(String, Vec<(u16, u16)>)>,
    idx: usize,
    host: String,
    phase: Phase,
    req: Vec<u8>,
    off: usize,
    buf: Vec<u8>,
}

enum Step {
    Pending,
    /// The next URL needs a new connection.
    Next,
    Done(Result<(), String>),
}

impl NetProbe {
    fn step(&mut self) -> Step {
        loop {
            match self.phase {
                Phase::Connecting => {
                    match self.stream.take_error() {
                        Ok(Some(e)) | Err(e) => return Step::Done(Err(format!("connect: {e}"))),
                        Ok(None) => {}
                    }
                    match self.stream.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => return Step::Pending,
                        Err(e) => return Step::Done(Err(format!("connect: {e}"))),
                    }
                    if !self.http {
                        return Step::Done(Ok(()));
                    }
                    self.req = http_request(&self.urls[self.idx].0, &self.host).into_bytes();
                    self.off = 0;
                    self.buf.clear();
                    self.phase = Phase::Sending;
                }
                Phase::Sending => match self.stream.write(&self.req[self.off..]) {
                    Ok(n) => {
                        self.off += n;
                        if self.off >= self.req.len() {
                            self.phase = Phase::Reading;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Pending,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Step::Done(Err(format!("send: {e}"))),
                },
                Phase::Reading => {
                    let mut chunk = [0u8; 512];
                    let eof = match self.stream.read(&mut chunk) {
                        Ok(0) => true,
                        Ok(n) => {
                            self.buf.extend_from_slice(&chunk[..n]);
                            false
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Pending,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Step::Done(Err(format!("response: {e}"))),
                    };
                    if !eof && !self.buf.contains(&b'\n') && self.buf.len() < MAX_STATUS_LINE {
                        continue;
                    }
                    let status = match parse_status_line(&self.buf) {
                        Ok(s) => s,
                        Err(e) => return Step::Done(Err(e)),
                    };
                    let (path, ok) = &self.urls[self.idx];
                    if !ok.iter().any(|(a, b)| (*a..=*b).contains(&status)) {
                        let which = if self.urls.len() > 1 {
                            format!(" for {path}")
                        } else {
                            String::new()
                        };
                        return Step::Done(Err(format!(
                            "HTTP status {status}{which}, expected {}",
                            show_ranges(ok)
                        )));
                    }
                    if self.idx + 1 < self.urls.len() {
                        self.idx += 1;
                        return Step::Next;
                    }
                    return Step::Done(Ok(()));
                }
            }
        }
    }
}

struct MiscProbe {
    child: Child,
    dynamic: bool,
}

impl Drop for MiscProbe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// keepalived UDP_CHECK (layer4.c udp_socket_state): a datagram on a
/// connected socket; an ICMP unreachable (a receive error) fails, a reply
/// passes, silence until the timeout passes unless a reply is required.
struct UdpProbe {
    sock: UdpSocket,
    require_reply: bool,
}

impl UdpProbe {
    fn step(&mut self) -> Step {
        let mut buf = [0u8; 2048];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(_) => return Step::Done(Ok(())),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Step::Done(Err(format!("udp: {e}"))),
            }
        }
    }
}

fn udp_start(
    reg: &Registry,
    addr: SocketAddr,
    payload: &[u8],
    token: Token,
) -> Result<UdpSocket, String> {
    let any: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut s = UdpSocket::bind(any).map_err(|e| format!("udp: {e}"))?;
    s.connect(addr).map_err(|e| format!("udp: {e}"))?;
    reg.register(&mut s, token, Interest::READABLE)
        .map_err(|e| format!("udp: registering the socket: {e}"))?;
    s.send(payload).map_err(|e| format!("udp: send: {e}"))?;
    Ok(s)
}

enum Kind {
    Net(NetProbe),
    Misc(MiscProbe),
    Udp(UdpProbe),
}

struct Entry {
    job: Job,
    kind: Kind,
    deadline: u64,
    /// Bumped when the deadline moves (a new URL's connection).
    seq: u64,
}

/// The probes in flight, by mio token (their index).
#[derive(Default)]
pub struct Probes {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    count: usize,
    children: usize,
    deadlines: BinaryHeap<Reverse<(u64, usize, u64)>>,
}

fn connect(reg: &Registry, addr: SocketAddr, token: Token) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    reg.register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| format!("connect: registering the socket: {e}"))?;
    Ok(s)
}

impl Probes {
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn has_children(&self) -> bool {
        self.children > 0
    }

    /// Start `job`; `Some` when it finished (failed) at once.
    pub fn start(&mut self, reg: &Registry, job: Job, now: u64) -> Option<Result<(), String>> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let timeout = job.check.timeout_ms.max(1) as u64;
        let kind = match job.check.kind {
            CheckKind::Tcp | CheckKind::Http => {
                let http = job.check.kind == CheckKind::Http;
                let stream = match connect(reg, job.addr, Token(idx)) {
                    Ok(s) => s,
                    Err(e) => {
                        self.free.push(idx);
                        return Some(Err(e));
                    }
                };
                Kind::Net(NetProbe {
                    stream,
                    addr: job.addr,
                    http,
                    urls: if http {
                        job.check.http_urls()
                    } else {
                        Vec::new()
                    },
                    idx: 0,
                    host: job
                        .check
                        .host
                        .clone()
                        .unwrap_or_else(|| host_of(job.addr.ip())),
                    phase: Phase::Connecting,
                    req: Vec::new(),
                    off: 0,
                    buf: Vec::new(),
                })
            }
            CheckKind::Udp => {
                let payload = job
                    .check
                    .payload
                    .as_deref()
                    .and_then(parse_hex)
                    .unwrap_or_default();
                match udp_start(reg, job.addr, &payload, Token(idx)) {
                    Ok(sock) => Kind::Udp(UdpProbe {
                        sock,
                        require_reply: job.check.require_reply,
                    }),
                    Err(e) => {
                        self.free.push(idx);
                        return Some(Err(e));
                    }
                }
            }
            CheckKind::Misc => {
                let argv = split_command(job.check.script.as_deref().unwrap_or(""));
                let Some((prog, args)) = argv.split_first() else {
                    self.free.push(idx);
                    return Some(Err("no script".into()));
                };
                match Command::new(prog)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(child) => {
                        self.children += 1;
                        Kind::Misc(MiscProbe {
                            child,
                            dynamic: job.check.misc_dynamic,
                        })
                    }
                    Err(e) => {
                        self.free.push(idx);
                        return Some(Err(format!("cannot run {prog}: {e}")));
                    }
                }
            }
        };
        let deadline = now + timeout;
        self.deadlines.push(Reverse((deadline, idx, 0)));
        self.slots[idx] = Some(Entry {
            job,
            kind,
            deadline,
            seq: 0,
        });
        self.count += 1;
        None
    }

    fn finish(&mut self, reg: &Registry, idx: usize) -> Option<Entry> {
        let mut e = self.slots.get_mut(idx)?.take()?;
        match &mut e.kind {
            Kind::Net(n) => {
                let _ = reg.deregister(&mut n.stream);
            }
            Kind::Udp(u) => {
                let _ = reg.deregister(&mut u.sock);
            }
            Kind::Misc(_) => self.children -= 1,
        }
        self.free.push(idx);
        self.count -= 1;
        Some(e)
    }

    /// A socket is ready: advance its probe.
    pub fn on_event(
        &mut self,
        reg: &Registry,
        token: Token,
        now: u64,
    ) -> Option<(Job, Result<(), String>)> {
        let idx = token.0;
        let e = self.slots.get_mut(idx)?.as_mut()?;
        if let Kind::Udp(u) = &mut e.kind {
            return match u.step() {
                Step::Done(r) => {
                    let e = self.finish(reg, idx)?;
                    Some((e.job, r))
                }
                _ => None,
            };
        }
        let Kind::Net(n) = &mut e.kind else {
            return None;
        };
        match n.step() {
            Step::Pending => None,
            Step::Done(r) => {
                let e = self.finish(reg, idx)?;
                Some((e.job, r))
            }
            Step::Next => {
                let _ = reg.deregister(&mut n.stream);
                match connect(reg, n.addr, Token(idx)) {
                    Ok(s) => {
                        n.stream = s;
                        n.phase = Phase::Connecting;
                        e.seq += 1;
                        e.deadline = now + e.job.check.timeout_ms.max(1) as u64;
                        self.deadlines.push(Reverse((e.deadline, idx, e.seq)));
                        None
                    }
                    Err(err) => {
                        let e = self.finish(reg, idx)?;
                        Some((e.job, Err(err)))
                    }
                }
            }
        }
    }

    /// The earliest deadline of a probe in flight.
    pub fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&Reverse((d, idx, seq))) = self.deadlines.peek() {
            match self.slots.get(idx).and_then(Option::as_ref) {
                Some(e) if e.seq == seq && e.deadline == d => return Some(d),
                _ => {
                    self.deadlines.pop();
                }
            }
        }
        None
    }

    /// Probes past their deadline fail (a MISC program is killed).
    pub fn expire(&mut self, reg: &Registry, now: u64) -> Vec<(Job, Result<(), String>)> {
        let mut out = Vec::new();
        while let Some(d) = self.next_deadline() {
            if d > now {
                break;
            }
            let Reverse((_, idx, _)) = self.deadlines.pop().expect("peeked");
            let Some(e) = self.finish(reg, idx) else {
                continue;
            };
            let ms = e.job.check.timeout_ms;
            if let Kind::Udp(u) = &e.kind {
                // Silence: up unless a reply is required (udp_socket_state).
                let r = if u.require_reply {
                    Err(format!("udp: no reply within {ms} ms"))
                } else {
                    Ok(())
                };
                out.push((e.job, r));
                continue;
            }
            let what = match &e.kind {
                Kind::Net(n) => match n.phase {
                    Phase::Connecting => "connect",
                    Phase::Sending => "send",
                    Phase::Reading => "response",
                },
                Kind::Misc(_) | Kind::Udp(_) => "script",
            };
            let more = if matches!(e.kind, Kind::Misc(_)) {
                " (killed)"
            } else {
                ""
            };
            out.push((e.job, Err(format!("{what}: timed out after {ms} ms{more}"))));
        }
        out
    }

    /// MISC programs that ended, with their exit code: 0 is up; with
    /// `misc_dynamic`, 2..=255 too (check_misc.c misc_check_child_thread).
    pub fn reap_children(&mut self, _now: u64) -> Vec<(Job, Result<(), String>, Option<i32>)> {
        if self.children == 0 {
            return Vec::new();
        }
        let mut ended = Vec::new();
        for (idx, slot) in self.slots.iter_mut().enumerate() {
            let Some(Entry {
                kind: Kind::Misc(m),
                ..
            }) = slot
            else {
                continue;
            };
            match m.child.try_wait() {
                Ok(Some(st)) => {
                    let r = match st.code() {
                        Some(0) => Ok(()),
                        Some(c) if m.dynamic && (2..=255).contains(&c) => Ok(()),
                        Some(c) => Err(format!("script exited with status {c}")),
                        None => Err(format!("script ended without exit status ({st})")),
                    };
                    ended.push((idx, r, st.code()));
                }
                Ok(None) => {}
                Err(e) => ended.push((idx, Err(format!("script: {e}")), None)),
            }
        }
        let mut out = Vec::new();
        for (idx, r, code) in ended {
            if let Some(e) = self.slots.get_mut(idx).and_then(Option::take) {
                self.children -= 1;
                self.count -= 1;
                self.free.push(idx);
                out.push((e.job.clone(), r, code));
                drop(e);
            }
        }
        out
    }

    /// Keep the probes whose job `keep` accepts; the others are dropped at
    /// once (socket closed, program killed). Returns how many went.
    pub fn retain(&mut self, reg: &Registry, keep: impl Fn(&Job) -> bool) -> usize {
        let gone: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().filter(|e| !keep(&e.job)).map(|_| i))
            .collect();
        for &i in &gone {
            self.finish(reg, i);
        }
        gone.len()
    }
}
