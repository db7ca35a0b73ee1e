//! The control socket: a Unix stream socket, mode 0600, newline-delimited
//! JSON. Each client gets a thread (bounded in number); a request line over
//! [`MAX_REQUEST`](super::MAX_REQUEST) bytes or a client idle past the read
//! timeout is answered with an error and disconnected, never allowed to hold
//! the daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{Control, CtlError, MAX_REQUEST};

/// At most this many clients are served at once; more get an error.
pub const MAX_CLIENTS: usize = 64;
/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound control socket. Dropping it removes the socket file.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    /// Bind `path` (creating its directory), refusing to steal a socket a
    /// live daemon is serving, replacing a stale one.
    pub fn bind(path: &Path) -> std::io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is served by a running rvsd", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve until `stop` is set. Polls for new clients every 50 ms so a
    /// signal is noticed promptly.
    pub fn run(&self, ctl: Arc<Control>, stop: &AtomicBool) {
        let clients = Arc::new(AtomicUsize::new(0));
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                        clients.fetch_sub(1, Ordering::SeqCst);
                        let mut s = stream;
                        let e = CtlError::new("busy", "too many control clients");
                        let _ = writeln!(s, "{}", e.to_json());
                        log::warn!("control: refused a client, {MAX_CLIENTS} already connected");
                        continue;
                    }
                    let ctl = ctl.clone();
                    let clients = clients.clone();
                    let spawned = std::thread::Builder::new()
                        .name("rvs-ctl-client".into())
                        .spawn(move || {
                            serve_client(stream, &ctl);
                            clients.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        log::error!("control: could not start a client thread");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Answer requests from one client until it disconnects, idles out or
/// sends an oversized line.
pub fn serve_client(stream: UnixStream, ctl: &Control) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
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
            Err(_) => return,
        };
        if n > MAX_REQUEST && line.last() != Some(&b'\n') {
            let e = CtlError::new("too_large", format!("request over {MAX_REQUEST} bytes"));
            let _ = writeln!(out, "{}", e.to_json());
            return;
        }
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim(),
            Err(_) => {
                let e = CtlError::new("bad_json", "request is not UTF-8");
                if writeln!(out, "{}", e.to_json()).is_err() {
                    return;
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let resp = ctl.handle_line(text);
        if writeln!(out, "{resp}").is_err() {
            return;
        }
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

    #[test]
    fn socket_is_private_and_serves_requests_and_errors() {
        let dir = std::env::temp_dir().join(format!("rvs-sock-test-{}", std::process::id()));
        let path = dir.join("ctl.sock");
        let server = Server::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        let ctl = Arc::new(Control::new(
            Arc::new(ConnTable::new(10, 1)),
            workers,
            vec![],
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || server.run(ctl, &stop))
        };
        // Binding again while it serves must fail, not steal the socket.
        let again = Server::bind(&path);
        assert!(
            again.is_err(),
            "a second daemon must not take over the socket"
        );
        std::mem::forget(again);
        let r = request(&path, r#"{"cmd":"ping"}"#).unwrap();
        assert!(r.contains("\"ok\":true"), "{r}");
        let r = request(&path, "garbage").unwrap();
        assert!(r.contains("bad_json"), "{r}");
        // A client sending an oversized line gets too_large and is dropped.
        let mut s = UnixStream::connect(&path).unwrap();
        let big = vec![b'x'; MAX_REQUEST + 10];
        let _ = s.write_all(&big);
        let mut resp = String::new();
        BufReader::new(&s).read_line(&mut resp).unwrap();
        assert!(resp.contains("too_large"), "{resp}");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(!path.exists(), "socket removed on shutdown");
        let _ = std::fs::remove_dir(&dir);
    }
}
