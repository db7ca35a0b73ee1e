//! systemd's service notification protocol (sd_notify(3)), without libsystemd:
//! one datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract name when it starts with `@`). With no
//! `$NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every call is
//! a no-op, so rvsd behaves the same from a shell, a test or a container.
//!
//! The watchdog ([`Watchdog`]) pings only while the packet workers make
//! progress: systemd restarts a daemon whose workers hang, not merely one
//! whose timer thread is alive.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to systemd's notification socket (or none).
pub struct Notifier {
    sock: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a no-op notifier when unset, empty or unusable
    /// (the latter is logged).
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(p) if !p.is_empty() => match Self::open(&p.to_string_lossy()) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET {p:?}: {e}; no readiness notification");
                    Notifier { sock: None }
                }
            },
            _ => Notifier { sock: None },
        }
    }

    /// A notifier that sends to `path` (`@name` for an abstract socket).
    pub fn open(path: &str) -> std::io::Result<Notifier> {
        let addr = if let Some(name) = path.strip_prefix('@') {
            abstract_addr(name.as_bytes())?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(path)?
        };
        let sock = UnixDatagram::unbound()?;
        Ok(Notifier {
            sock: Some((sock, addr)),
        })
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.sock.is_some()
    }

    /// Send `state` (newline-separated `KEY=VALUE`s). Errors are logged at
    /// debug level only: systemd going away must not stop the daemon.
    pub fn notify(&self, state: &str) {
        if let Some((s, a)) = &self.sock {
            if let Err(e) = s.send_to_addr(state.as_bytes(), a) {
                log::debug!("sd_notify {state:?}: {e}");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets are Linux only",
    ))
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this pid
/// when `$WATCHDOG_PID` is set), as sd_watchdog_enabled(3) reads it.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Decides each watchdog period whether to ping: only when every worker's
/// loop counter moved since the last period (a worker stuck in a loop, a
/// deadlock or a blocked device call stops the pings, and systemd restarts
/// the daemon after `WatchdogSec`).
pub struct Watchdog {
    last: Vec<u64>,
}

impl Watchdog {
    pub fn new(loops: &[u64]) -> Watchdog {
        Watchdog {
            last: loops.to_vec(),
        }
    }

    /// `Ok(())` when every worker advanced since the last call; otherwise the
    /// indices of those that did not.
    pub fn check(&mut self, loops: &[u64]) -> Result<(), Vec<usize>> {
        let stuck: Vec<usize> = loops
            .iter()
            .zip(&self.last)
            .enumerate()
            .filter(|(_, (now, before))| now == before)
            .map(|(i, _)| i)
            .collect();
        self.last = loops.to_vec();
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("rvs-sdnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::open(path.to_str().unwrap()).unwrap();
        assert!(n.enabled());
        n.ready("2 workers\nready");
        let mut buf = [0u8; 256];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=2 workers ready");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("rvs-sdnotify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&abstract_addr(name.as_bytes()).unwrap()).unwrap();
        let n = Notifier::open(&format!("@{name}")).unwrap();
        n.notify("WATCHDOG=1");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
    }

    #[test]
    fn no_socket_means_no_op() {
        let n = Notifier { sock: None };
        assert!(!n.enabled());
        n.ready("x");
        n.stopping();
    }

    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        assert_eq!(
            watchdog_interval_from(Some("20000000"), None, 7),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            watchdog_interval_from(Some("20000000"), Some("7"), 7),
            Some(Duration::from_secs(20))
        );
        // For another process (a forked child inherited the environment).
        assert_eq!(watchdog_interval_from(Some("20000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("junk"), None, 7), None);
        assert_eq!(watchdog_interval_from(None, None, 7), None);
    }

    #[test]
    fn watchdog_pings_only_while_every_worker_advances() {
        let mut w = Watchdog::new(&[0, 0]);
        assert_eq!(w.check(&[5, 9]), Ok(()));
        assert_eq!(w.check(&[6, 9]), Err(vec![1]));
        assert_eq!(w.check(&[7, 10]), Ok(()));
        assert_eq!(w.check(&[7, 10]), Err(vec![0, 1]));
    }
}
