//! The IPVS netlink socket: a Unix stream socket on which the preload
//! library (`librvs_ipvs.so`) forwards the generic-netlink messages a
//! program addressed to the "IPVS" family, and reads back what the kernel
//! would have queued on its netlink socket.
//!
//! Framing (all integers little-endian, the library and rvsd run on one
//! host):
//! - request: `u32 kind`, `u32 portid`, `u32 len`, then `len` bytes.
//!   kind 1 = a netlink datagram from the socket with netlink port id
//!   `portid`; kind 2 = the text of `/proc/net/ip_vs_conn` (len 0).
//! - answer: any number of `u32 len` + `len` bytes (one netlink datagram
//!   each, or the text), then `u32 0`.
//!
//! Who may connect is decided as for the JSON control socket: mode 0600,
//! or 0660 with the `control_group` (see [`crate::control::server`]); the
//! socket is created under a temporary name and renamed into place once its
//! mode and group are set. Each client gets a thread (at most
//! [`MAX_CLIENTS`]), and a client that stalls mid-request for
//! [`ServerOptions::idle_timeout`] is dropped.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::control::server::{ServerOptions, SocketPath};
use crate::control::Control;

pub const KIND_NETLINK: u32 = 1;
pub const KIND_CONN_TEXT: u32 = 2;
/// Largest request accepted (a netlink request from libipvs is a few
/// hundred bytes).
pub const MAX_REQUEST: usize = 64 * 1024;
pub const MAX_CLIENTS: usize = 64;

/// A bound IPVS netlink socket; dropping it removes the socket file.
pub struct IpvsServer {
    listener: UnixListener,
    path: SocketPath,
    opts: ServerOptions,
}

impl IpvsServer {
    /// Bind `path` as the control socket is bound
    /// ([`crate::control::server::bind_socket`]): refuses a socket a live
    /// daemon serves, replaces a stale one, mode and group set before the
    /// socket appears at `path`.
    pub fn bind(path: &Path, opts: ServerOptions) -> std::io::Result<IpvsServer> {
        Self::bind_as(path, opts, false)
    }

    /// As [`IpvsServer::bind`], taking the path over from a live daemon
    /// (`rvsd --handover`, if the old rvsd has not gone yet).
    pub fn bind_replacing(path: &Path, opts: ServerOptions) -> std::io::Result<IpvsServer> {
        Self::bind_as(path, opts, true)
    }

    fn bind_as(path: &Path, opts: ServerOptions, replace: bool) -> std::io::Result<IpvsServer> {
        let (listener, path) = crate::control::server::bind_socket(path, &opts, replace)?;
        Ok(IpvsServer {
            listener,
            path,
            opts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve until `stop` is set. The accept blocks (libipvs opens a
    /// connection for every message, so polling for clients would add its
    /// period to each); a helper thread that checks `stop` every 50 ms
    /// wakes it with a connection of its own when it is time to go.
    pub fn run(&self, ctl: Arc<Control>, stop: &AtomicBool) {
        if let Err(e) = self.listener.set_nonblocking(false) {
            log::error!("ipvs netlink: {e}; not serving");
            return;
        }
        let clients = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            let path = self.path.to_path_buf();
            let waker = std::thread::Builder::new()
                .name("rvs-ipvs-stop".into())
                .spawn_scoped(scope, move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = UnixStream::connect(&path);
                });
            if let Err(e) = waker {
                log::error!("ipvs netlink: could not start its stop thread: {e}; not serving");
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                match self.listener.accept() {
                    Ok(_) if stop.load(Ordering::Relaxed) => break,
                    Ok((stream, _)) => self.serve(stream, &ctl, &clients),
                    Err(e) => {
                        log::warn!("ipvs netlink: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        });
    }

    /// Hand a client to a thread of its own, or refuse it when
    /// [`MAX_CLIENTS`] (or the configured maximum) are being served.
    fn serve(&self, stream: UnixStream, ctl: &Arc<Control>, clients: &Arc<AtomicUsize>) {
        if clients.fetch_add(1, Ordering::SeqCst) >= self.opts.max_clients.min(MAX_CLIENTS) {
            clients.fetch_sub(1, Ordering::SeqCst);
            log::warn!("ipvs netlink: too many clients; one refused");
            return;
        }
        let ctl = ctl.clone();
        let slot = clients.clone();
        let timeout = self.opts.idle_timeout;
        let spawned = std::thread::Builder::new()
            .name("rvs-ipvs-client".into())
            .spawn(move || {
                serve_client(stream, &ctl, timeout);
                slot.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            clients.fetch_sub(1, Ordering::SeqCst);
            log::error!("ipvs netlink: could not start a client thread: {e}");
        }
    }

    /// [`IpvsServer::run`] on its own thread.
    pub fn spawn(
        self,
        ctl: Arc<Control>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("rvs-ipvs-nl".into())
            .spawn(move || self.run(ctl, &stop))
    }

    /// [`IpvsServer::spawn`], returning a guard that, dropped after `stop`
    /// is set, waits at most a second for the thread. The accept is woken
    /// through the socket's path; should that path have been deleted or
    /// taken over meanwhile, the daemon's exit must not hang on it.
    pub fn start(self, ctl: Arc<Control>, stop: Arc<AtomicBool>) -> std::io::Result<Running> {
        log::info!(
            "IPVS netlink socket {} (ipvsadm/keepalived with LD_PRELOAD=librvs_ipvs.so)",
            self.path.display()
        );
        Ok(Running {
            thread: Some(self.spawn(ctl, stop)?),
        })
    }
}

/// A served IPVS socket (see [`IpvsServer::start`]).
pub struct Running {
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        let end = std::time::Instant::now() + Duration::from_secs(1);
        while !t.is_finished() && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            log::warn!("ipvs netlink: its thread did not stop (socket path gone?); not waiting");
        }
    }
}

fn read_u32(s: &mut UnixStream) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Answer requests until the client closes, stalls or misbehaves.
pub fn serve_client(mut s: UnixStream, ctl: &Control, timeout: Duration) {
    if s.set_read_timeout(Some(timeout)).is_err() || s.set_write_timeout(Some(timeout)).is_err() {
        return;
    }
    loop {
        let kind = match read_u32(&mut s) {
            Ok(k) => k,
            Err(_) => return,
        };
        let (Ok(portid), Ok(len)) = (read_u32(&mut s), read_u32(&mut s)) else {
            return;
        };
        let len = len as usize;
        if len > MAX_REQUEST {
            log::warn!("ipvs netlink: request of {len} bytes refused");
            return;
        }
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let answer = match kind {
            KIND_NETLINK => super::handle_datagram(ctl, portid, &body),
            KIND_CONN_TEXT => vec![super::conn_text(ctl).into_bytes()],
            _ => {
                log::warn!("ipvs netlink: unknown request kind {kind}");
                return;
            }
        };
        let mut out = Vec::new();
        for d in &answer {
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnTable;
    use crate::stats::WorkerStats;
    use crossbeam_utils::CachePadded;
    use std::os::unix::fs::MetadataExt;

    fn control() -> Arc<Control> {
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        Arc::new(Control::new(
            Arc::new(ConnTable::new(10, 1)),
            workers,
            vec![],
        ))
    }

    /// One request frame, the answer's frames.
    fn ask(path: &Path, kind: u32, body: &[u8]) -> Vec<Vec<u8>> {
        let mut s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = kind.to_le_bytes().to_vec();
        req.extend_from_slice(&77u32.to_le_bytes());
        req.extend_from_slice(&(body.len() as u32).to_le_bytes());
        req.extend_from_slice(body);
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        loop {
            let n = read_u32(&mut s).unwrap() as usize;
            if n == 0 {
                return out;
            }
            let mut d = vec![0u8; n];
            s.read_exact(&mut d).unwrap();
            out.push(d);
        }
    }

    #[test]
    fn framing_permissions_and_a_get_info_round_trip() {
        let dir = std::env::temp_dir().join(format!("rvs-ipvs-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ipvs.sock");
        let server = IpvsServer::bind(&path, ServerOptions::default()).unwrap();
        // The control socket's rule: 0600 without a control group.
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // A second daemon cannot take a live socket.
        assert!(IpvsServer::bind(&path, ServerOptions::default()).is_err());
        let stop = Arc::new(AtomicBool::new(false));
        let h = server.spawn(control(), stop.clone()).unwrap();

        let get_info = super::super::codec::MsgBuilder::genl(
            super::super::IPVS_FAMILY_ID,
            super::super::codec::NLM_F_REQUEST | super::super::codec::NLM_F_ACK,
            1,
            77,
            super::super::cmd::GET_INFO,
            1,
        )
        .finish();
        let frames = ask(&path, KIND_NETLINK, &get_info);
        assert_eq!(frames.len(), 2, "reply and ACK, one datagram each");
        let h0 = super::super::codec::NlHeader::parse(&frames[0]).unwrap();
        assert_eq!((h0.ty, h0.pid), (super::super::IPVS_FAMILY_ID, 77));
        let text = ask(&path, KIND_CONN_TEXT, &[]);
        assert!(text.concat().starts_with(b"Pro FromIP"));

        // An unknown kind or an oversized request closes the connection
        // without an answer; the server keeps serving.
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        let mut b = Vec::new();
        assert_eq!(s.read_to_end(&mut b).unwrap_or(0), 0);
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut big = KIND_NETLINK.to_le_bytes().to_vec();
        big.extend_from_slice(&0u32.to_le_bytes());
        big.extend_from_slice(&u32::MAX.to_le_bytes());
        s.write_all(&big).unwrap();
        assert_eq!(s.read_to_end(&mut b).unwrap_or(0), 0);
        assert_eq!(ask(&path, KIND_NETLINK, &get_info).len(), 2);

        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert!(!path.exists(), "the socket file goes with the server");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
