//! The control socket: a Unix stream socket, newline-delimited JSON.
//!
//! Access is by file permissions only: the socket is mode 0600 (the daemon's
//! user, normally root), or 0660 with [`ServerOptions::group`] as its group.
//! It is created under a temporary name, given its mode and group, and only
//! then renamed into place, so it never exists at its path with looser
//! permissions, and "the path exists" means "it answers".
//!
//! Each client gets a thread, at most [`ServerOptions::max_clients`] at once;
//! more are answered `busy` and closed. A client must complete each request
//! line within [`ServerOptions::idle_timeout`] of connecting or of its previous
//! answer (a deadline for the whole line, so trickling bytes does not extend
//! it) and must take each answer within the same time; otherwise it is told
//! `timeout` (when it still listens) and disconnected. A line over
//! [`MAX_REQUEST`](super::MAX_REQUEST) bytes is answered `too_large` and the
//! client disconnected, never buffered whole.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Control, CtlError, ErrorCode, MAX_REQUEST};

/// At most this many clients are served at once by default; more get `busy`.
pub const MAX_CLIENTS: usize = 64;
/// Default time a client has for each request line (and each answer).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may use the socket and how long a client may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Group given read-write access (socket mode 0660, that group); `None`:
    /// mode 0600, the daemon's user only.
    pub group: Option<u32>,
    /// Time a client has to send each complete request line, and to read
    /// each answer.
    pub idle_timeout: Duration,
    /// Clients served at once.
    pub max_clients: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            group: None,
            idle_timeout: IDLE_TIMEOUT,
            max_clients: MAX_CLIENTS,
        }
    }
}

/// The gid of `group`: a number as it is, or a name looked up in
/// `/etc/group` (groups known only to NSS, e.g. LDAP, need their number).
pub fn resolve_group(group: &str) -> Result<u32, String> {
    resolve_group_in(group, Path::new("/etc/group"))
}

fn resolve_group_in(group: &str, file: &Path) -> Result<u32, String> {
    if !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()) {
        return group
            .parse()
            .map_err(|_| format!("group id {group} out of range"));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("group {group:?}: reading {}: {e}", file.display()))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            format!(
                "group {group:?} not found in {} (give a numeric gid for groups from NSS)",
                file.display()
            )
        })
}

/// A bound control socket. Dropping it removes the socket file.
pub struct Server {
    listener: UnixListener,
    path: SocketPath,
    opts: ServerOptions,
}

/// A socket's path, removed when dropped unless another daemon has bound
/// the path since (a successor after a handover): told apart by inode.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    ino: u64,
}

impl std::ops::Deref for SocketPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Bind a Unix socket at `path` for a server of rvsd (the JSON control
/// socket, the IPVS netlink one): its directory created, mode 0600 (0660
/// and `opts.group` with a group) set before the socket appears at `path`
/// (bound under a temporary name, then renamed over it, which also
/// replaces a stale socket a killed daemon left). A socket a live daemon
/// answers on is refused unless `replace`.
pub fn bind_socket(
    path: &Path,
    opts: &ServerOptions,
    replace: bool,
) -> std::io::Result<(UnixListener, SocketPath)> {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    if !replace && path.exists() && UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            ErrorKind::AddrInUse,
            format!("{} is served by a running rvsd", path.display()),
        ));
    }
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = (|| {
        let mode = if opts.group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        if let Some(gid) = opts.group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        let ino = std::fs::symlink_metadata(&tmp)?.ino();
        std::fs::rename(&tmp, path)?;
        Ok(ino)
    })();
    match placed {
        Ok(ino) => Ok((
            listener,
            SocketPath {
                path: path.to_path_buf(),
                ino,
            },
        )),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

impl Server {
    /// [`Server::bind_with`] with the default options (mode 0600, 64
    /// clients, 30 s).
    pub fn bind(path: &Path) -> std::io::Result<Server> {
        Server::bind_with(path, ServerOptions::default())
    }

    /// Bind `path` (creating its directory), refusing to steal a socket a
    /// live daemon is serving, replacing a stale one. The socket gets its
    /// mode and group before it appears at `path`.
    pub fn bind_with(path: &Path, opts: ServerOptions) -> std::io::Result<Server> {
        Self::bind_as(path, opts, false)
    }

    /// As [`Server::bind_with`], taking `path` over from the live daemon
    /// that serves it (`rvsd --handover`): new clients reach this server
    /// from now on; the old one's open connections stay with it, and it
    /// leaves the path alone when it goes ([`SocketPath`]).
    pub fn bind_replacing(path: &Path, opts: ServerOptions) -> std::io::Result<Server> {
        Self::bind_as(path, opts, true)
    }

    fn bind_as(path: &Path, opts: ServerOptions, replace: bool) -> std::io::Result<Server> {
        let (listener, path) = bind_socket(path, &opts, replace)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path,
            opts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &ServerOptions {
        &self.opts
    }

    /// Serve until `stop` is set. Polls for new clients every 50 ms so a
    /// signal is noticed promptly.
    pub fn run(&self, ctl: Arc<Control>, stop: &AtomicBool) {
        let clients = Arc::new(AtomicUsize::new(0));
        let max = self.opts.max_clients;
        // Refusals are logged at most once a second, with a count, so a
        // connection flood cannot flood the log too.
        let mut refused = 0u64;
        let mut refused_logged = Instant::now() - Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) {
            if refused > 0 && refused_logged.elapsed() >= Duration::from_secs(1) {
                log::warn!("control: refused {refused} client(s), {max} already connected");
                refused = 0;
                refused_logged = Instant::now();
            }
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    if clients.fetch_add(1, Ordering::SeqCst) >= max {
                        clients.fetch_sub(1, Ordering::SeqCst);
                        refused += 1;
                        let mut s = stream;
                        // A fresh socket's buffer takes this line; the
                        // timeout only guards against the impossible.
                        let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
                        let e = CtlError::new(ErrorCode::Busy, "too many control clients");
                        let _ = writeln!(s, "{}", e.to_json());
                        continue;
                    }
                    let ctl = ctl.clone();
                    let slot = clients.clone();
                    let timeout = self.opts.idle_timeout;
                    let spawned = std::thread::Builder::new()
                        .name("rvs-ctl-client".into())
                        .spawn(move || {
                            serve_client_with(stream, &ctl, timeout);
                            slot.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        // The closure (and with it the stream) is gone: give
                        // the slot back.
                        clients.fetch_sub(1, Ordering::SeqCst);
                        log::error!("control: could not start a client thread: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    log::warn!("control: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Reads from the client, failing with `TimedOut` once `until` has passed:
/// the deadline covers a whole request line, however it is split.
struct DeadlineReader {
    stream: UnixStream,
    until: Instant,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// [`serve_client_with`] and the default timeout.
pub fn serve_client(stream: UnixStream, ctl: &Control) {
    serve_client_with(stream, ctl, IDLE_TIMEOUT)
}

/// Answer requests from one client until it disconnects, runs out of time
/// (see the module documentation) or sends an oversized line.
pub fn serve_client_with(stream: UnixStream, ctl: &Control, timeout: Duration) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    if out.set_write_timeout(Some(timeout)).is_err() {
        return;
    }
    let mut reader = BufReader::new(DeadlineReader {
        stream,
        until: Instant::now() + timeout,
    });
    let mut line = Vec::new();
    loop {
        line.clear();
        // Read at most MAX_REQUEST + 1 bytes so an endless line cannot grow
        // memory without bound.
        let n = match (&mut reader)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                let e = CtlError::new(
                    ErrorCode::Timeout,
                    format!("no complete request within {} ms", timeout.as_millis()),
                );
                let _ = writeln!(out, "{}", e.to_json());
                return;
            }
            Err(_) => return,
        };
        if n > MAX_REQUEST && line.last() != Some(&b'\n') {
            let e = CtlError::new(
                ErrorCode::TooLarge,
                format!("request over {MAX_REQUEST} bytes"),
            );
            let _ = writeln!(out, "{}", e.to_json());
            return;
        }
        let resp = match std::str::from_utf8(&line) {
            Ok(t) if t.trim().is_empty() => None,
            Ok(t) => Some(ctl.handle_line(t.trim())),
            Err(_) => Some(
                CtlError::new(ErrorCode::BadJson, "request is not UTF-8")
                    .to_json()
                    .to_string(),
            ),
        };
        // Blank lines get no answer and do not extend the deadline.
        let Some(resp) = resp else { continue };
        // A client that does not take its answer within the timeout is
        // dropped (the write fails with the write timeout).
        if writeln!(out, "{resp}").is_err() {
            return;
        }
        // The next request has its own full deadline.
        // The successor of a handover takes its time between `handover`
        // and `handover_done` (taking the table over, probing ports).
        let left = match ctl.is_handing_over() {
            true => timeout.max(Duration::from_secs(120)),
            false => timeout,
        };
        reader.get_mut().until = Instant::now() + left;
    }
}

/// Send one request and read one response line (used by rvsadm and tests).
pub fn request(path: &Path, req: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(req.as_bytes())?;
    s.write_all(b"\n")?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "rvsd closed the connection",
        ));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnTable;
    use crate::stats::WorkerStats;
    use crossbeam_utils::CachePadded;
    use std::os::unix::fs::MetadataExt;
    use std::thread::JoinHandle;

    fn control() -> Arc<Control> {
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        Arc::new(Control::new(
            Arc::new(ConnTable::new(10, 1)),
            workers,
            vec![],
        ))
    }

    /// A server on a fresh socket in its own directory, stopped (and the
    /// directory removed) on drop.
    struct Running {
        dir: PathBuf,
        path: PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Running {
        fn start(tag: &str, opts: ServerOptions) -> Running {
            let dir = std::env::temp_dir().join(format!("rvs-sock-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let path = dir.join("ctl.sock");
            let server = Server::bind_with(&path, opts).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let stop = stop.clone();
                let ctl = control();
                std::thread::spawn(move || server.run(ctl, &stop))
            };
            Running {
                dir,
                path,
                stop,
                thread: Some(thread),
            }
        }

        fn connect(&self) -> UnixStream {
            let s = UnixStream::connect(&self.path).unwrap();
            // Bounds every read in these tests: a hang fails, it does not
            // block the suite.
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn read_line(s: &UnixStream) -> String {
        let mut l = String::new();
        BufReader::new(s).read_line(&mut l).unwrap();
        l
    }

    /// Reads until the daemon closes: what it sent, and whether it closed
    /// (rather than our 20 s read timeout ending the wait). A close with our
    /// request still unread shows as a reset (Linux, AF_UNIX).
    fn read_to_close(s: &mut UnixStream) -> (String, bool) {
        let mut all = Vec::new();
        let closed = match s.read_to_end(&mut all) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        };
        (String::from_utf8_lossy(&all).into_owned(), closed)
    }

    fn short(ms: u64) -> ServerOptions {
        ServerOptions {
            idle_timeout: Duration::from_millis(ms),
            ..ServerOptions::default()
        }
    }

    #[test]
    fn socket_is_private_and_serves_requests_and_errors() {
        let r = Running::start("basic", ServerOptions::default());
        let path = r.path.clone();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Only the socket: the temporary name it was created under is gone.
        let names: Vec<_> = std::fs::read_dir(&r.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ctl.sock"]);
        // Binding again while it serves must fail, not steal the socket.
        let again = Server::bind(&path);
        assert!(
            again.is_err(),
            "a second daemon must not take over the socket"
        );
        std::mem::forget(again);
        let resp = request(&path, r#"{"cmd":"ping"}"#).unwrap();
        assert!(resp.contains("\"ok\":true"), "{resp}");
        let resp = request(&path, "garbage").unwrap();
        assert!(resp.contains("bad_json"), "{resp}");
        // A client sending an oversized line gets too_large and is dropped.
        let mut s = r.connect();
        let big = vec![b'x'; MAX_REQUEST + 10];
        let _ = s.write_all(&big);
        let (resp, closed) = read_to_close(&mut s);
        assert!(resp.contains("too_large") && closed, "{resp}");
        drop(r);
        assert!(!path.exists(), "socket removed on shutdown");
    }

    #[test]
    fn a_successor_takes_the_path_and_the_old_server_leaves_it_alone() {
        let dir = std::env::temp_dir().join(format!("rvs-sock-handover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        let old = Server::bind(&path).unwrap();
        let e = Server::bind(&path).err().expect("a live socket is refused");
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
        let new = Server::bind_replacing(&path, ServerOptions::default()).unwrap();
        // New clients reach the successor's listener.
        let _c = UnixStream::connect(&path).unwrap();
        assert!(new.listener.accept().is_ok());
        drop(old);
        assert!(path.exists(), "the old server left the successor's path");
        drop(new);
        assert!(!path.exists(), "the successor removes its own");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_group_gets_mode_0660() {
        let dir = std::env::temp_dir().join(format!("rvs-sock-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        // A socket nobody serves any more (its daemon was killed).
        drop(UnixListener::bind(&path).unwrap());
        let gid = 65534; // nogroup; any gid works for root
        let s = Server::bind_with(
            &path,
            ServerOptions {
                group: Some(gid),
                ..ServerOptions::default()
            },
        )
        .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
        assert_eq!(meta.uid(), std::fs::metadata(&dir).unwrap().uid());
        assert!(UnixStream::connect(&path).is_ok(), "the new socket answers");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn groups_resolve_by_number_or_name() {
        let f = std::env::temp_dir().join(format!("rvs-group-{}", std::process::id()));
        std::fs::write(&f, "root:x:0:\nrvsadm:x:1234:alice,bob\nbroken\n").unwrap();
        assert_eq!(resolve_group_in("rvsadm", &f), Ok(1234));
        assert_eq!(resolve_group_in("root", &f), Ok(0));
        assert_eq!(resolve_group_in("4321", &f), Ok(4321));
        let e = resolve_group_in("operators", &f).unwrap_err();
        assert!(e.contains("not found"), "{e}");
        let e = resolve_group_in("99999999999", &f).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let _ = std::fs::remove_file(&f);
        assert_eq!(resolve_group("0"), Ok(0));
    }

    #[test]
    fn request_lines_up_to_max_request_are_served_and_longer_ones_refused() {
        let r = Running::start("limit", ServerOptions::default());
        // Exactly MAX_REQUEST bytes before the newline: a valid request.
        let mut req = br#"{"cmd":"ping"}"#.to_vec();
        req.resize(MAX_REQUEST, b' ');
        let mut s = r.connect();
        s.write_all(&req).unwrap();
        s.write_all(b"\n").unwrap();
        assert!(read_line(&s).contains("\"ok\":true"));
        // One byte more: refused, and the client dropped.
        req.push(b' ');
        let mut s = r.connect();
        let _ = s.write_all(&req);
        let _ = s.write_all(b"\n");
        let (resp, closed) = read_to_close(&mut s);
        assert!(resp.contains("too_large") && closed, "{resp}");
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_and_junk_in_between_gets_errors() {
        let r = Running::start("pipe", ServerOptions::default());
        let mut s = r.connect();
        // Blank lines (also CRLF ones) get no answer; a NUL, invalid UTF-8
        // and a JSON nesting bomb each get an error; the connection lives.
        let mut batch = Vec::new();
        batch.extend_from_slice(b"{\"cmd\":\"ping\"}\r\n\n\r\n");
        batch.extend_from_slice(b"\0\n");
        batch.extend_from_slice(b"\xff\xfe{\"cmd\":\"ping\"}\n");
        batch.extend_from_slice(&b"[".repeat(100_000));
        batch.extend_from_slice(b"\n{\"cmd\":\"list\"}\n");
        s.write_all(&batch).unwrap();
        let mut rd = BufReader::new(&s);
        let mut codes = Vec::new();
        for _ in 0..5 {
            let mut l = String::new();
            rd.read_line(&mut l).unwrap();
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            codes.push(if v["ok"] == true {
                "ok".to_string()
            } else {
                v["error"]["code"].as_str().unwrap().to_string()
            });
        }
        assert_eq!(codes, ["ok", "bad_json", "bad_json", "bad_json", "ok"]);
    }

    #[test]
    fn an_idle_client_is_told_timeout_and_dropped() {
        let r = Running::start("idle", short(300));
        let mut s = r.connect();
        let (resp, closed) = read_to_close(&mut s);
        assert!(closed, "the daemon closed the connection");
        let v: serde_json::Value = serde_json::from_str(resp.trim()).unwrap();
        assert_eq!(v["error"]["code"], "timeout", "{resp}");
        // A client that keeps asking stays as long as it likes.
        let mut s = r.connect();
        for _ in 0..5 {
            s.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
            assert!(read_line(&s).contains("\"ok\":true"));
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    #[test]
    fn trickling_a_request_does_not_extend_the_deadline() {
        let r = Running::start("trickle", short(300));
        let mut s = r.connect();
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        // One byte every 50 ms of a request that never ends: with a per-read
        // timeout this would hold the slot for ever. Bounded at 20 s.
        let t0 = Instant::now();
        let mut cut = false;
        while t0.elapsed() < Duration::from_secs(20) {
            if s.write_all(b" ").is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(cut, "a client trickling bytes was never disconnected");
        let (resp, _) = read_to_close(&mut s);
        assert!(resp.contains("\"timeout\""), "{resp}");
    }

    #[test]
    fn a_client_that_never_reads_its_answers_is_dropped() {
        let r = Running::start("noread", short(300));
        let mut s = r.connect();
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        // Each answer is a few hundred bytes; the socket buffers fill up and
        // the daemon's write blocks until its write timeout drops us. Our
        // own writes then fail (EPIPE). Bounded at 20 s.
        let req = b"{\"cmd\":\"stats\"}\n".repeat(64);
        let t0 = Instant::now();
        let mut dropped = false;
        while t0.elapsed() < Duration::from_secs(20) {
            match s.write(&req) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => {
                    dropped = true;
                    break;
                }
            }
        }
        assert!(dropped, "a client that never reads was never disconnected");
        // The daemon is free for others.
        assert!(request(&r.path, r#"{"cmd":"ping"}"#)
            .unwrap()
            .contains("\"ok\":true"));
    }

    #[test]
    fn clients_over_the_limit_are_refused_until_idle_ones_time_out() {
        let r = Running::start(
            "busy",
            ServerOptions {
                max_clients: 4,
                idle_timeout: Duration::from_millis(500),
                ..ServerOptions::default()
            },
        );
        // Four clients that send nothing take every slot.
        let idle: Vec<UnixStream> = (0..4)
            .map(|_| {
                let mut s = r.connect();
                s.write_all(b"{\"cmd\":\"ping\"}\n").unwrap();
                assert!(read_line(&s).contains("\"ok\":true"));
                s
            })
            .collect();
        let mut s = r.connect();
        let _ = s.write_all(b"{\"cmd\":\"ping\"}\n");
        let (resp, closed) = read_to_close(&mut s);
        assert!(resp.contains("\"busy\"") && closed, "{resp}");
        // They are dropped after the idle timeout, and the slots come back
        // (polled: the slot is released just after the close).
        for mut c in idle {
            let (resp, closed) = read_to_close(&mut c);
            assert!(resp.contains("\"timeout\"") && closed, "{resp}");
        }
        let t0 = Instant::now();
        loop {
            let r = request(&r.path, r#"{"cmd":"ping"}"#).unwrap();
            if r.contains("\"ok\":true") {
                break;
            }
            assert!(r.contains("busy"), "{r}");
            assert!(t0.elapsed() < Duration::from_secs(10), "slots never freed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
