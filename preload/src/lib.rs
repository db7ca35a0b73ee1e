//! `librvs_ipvs.so`: lets unmodified `ipvsadm` and `keepalived` configure
//! rvs through the kernel's IPVS generic-netlink protocol, served by rvsd.
//!
//! ```text
//! LD_PRELOAD=librvs_ipvs.so ipvsadm -Ln
//! ```
//!
//! How: a generic-netlink socket (`socket(AF_NETLINK, *, NETLINK_GENERIC)`)
//! is a real kernel socket, and everything on it goes to the kernel except
//! two kinds of message, which go to rvsd's IPVS socket (`RVS_IPVS_SOCKET`,
//! default `/run/rvs/ipvs.sock`) instead:
//! - the family lookup `CTRL_CMD_GETFAMILY` for "IPVS" (rvsd answers with
//!   its own family id), and
//! - messages whose type is that id.
//!
//! rvsd's answers (replies, dump parts, ACKs, errors: what the kernel would
//! have queued) are queued on the socket and handed out by the next
//! `recv`/`recvfrom`/`recvmsg`, with `MSG_PEEK`/`MSG_TRUNC` and the kernel's
//! source address as libnl expects. Every other socket, and every other
//! netlink message (rtnetlink, other genl families), is the kernel's:
//! keepalived's VRRP and interface tracking are untouched. `ipvsadm -L -c`
//! reads `/proc/net/ip_vs_conn`; `fopen` of that path gets rvsd's text.
//!
//! If rvsd does not answer, the family lookup goes to the kernel (which
//! then says, as it does without `ip_vs`, that there is no such family).
//!
//! The library forwards bytes; rvsd does the protocol (`src/ipvs_nl/`).
//! All `unsafe` is in the [`ffi`] module; the logic here is safe and
//! unit-tested.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::Duration;

mod ffi;

/// rvsd's family id for "IPVS" (`rvs::ipvs_nl::IPVS_FAMILY_ID`): above the
/// kernel's `GENL_MAX_ID`, so never a kernel family.
pub const IPVS_FAMILY_ID: u16 = 0x5256;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const ECONNREFUSED: i32 = 111;

/// Request kinds of rvsd's IPVS socket (`rvs::ipvs_nl::server`).
const KIND_NETLINK: u32 = 1;
const KIND_CONN_TEXT: u32 = 2;

pub const DEFAULT_SOCKET: &str = "/run/rvs/ipvs.sock";
pub const CONN_PROC_FILE: &str = "/proc/net/ip_vs_conn";

/// rvsd's answer may not take longer than this.
const RVSD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the library does with one outgoing datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// To the kernel, untouched.
    Kernel,
    /// To rvsd: an IPVS-family message.
    Ipvs,
    /// To rvsd if it answers, else to the kernel: the "IPVS" family lookup.
    Lookup,
}

/// Classify a datagram by its first netlink message.
pub fn route(dgram: &[u8]) -> Route {
    if dgram.len() < 20 {
        return Route::Kernel;
    }
    let ty = u16::from_ne_bytes([dgram[4], dgram[5]]);
    if ty == IPVS_FAMILY_ID {
        return Route::Ipvs;
    }
    if ty != GENL_ID_CTRL || dgram[16] != CTRL_CMD_GETFAMILY {
        return Route::Kernel;
    }
    let len =
        (u32::from_ne_bytes([dgram[0], dgram[1], dgram[2], dgram[3]]) as usize).min(dgram.len());
    let mut a = &dgram[20.min(len)..len];
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let aty = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
        if alen < 4 || alen > a.len() {
            break;
        }
        if aty == CTRL_ATTR_FAMILY_NAME {
            let name = &a[4..alen];
            let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
            return if name == b"IPVS" {
                Route::Lookup
            } else {
                Route::Kernel
            };
        }
        a = &a[((alen + 3) & !3).min(a.len())..];
    }
    Route::Kernel
}

/// The socket path: `RVS_IPVS_SOCKET`, else the default.
fn socket_path() -> String {
    std::env::var("RVS_IPVS_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.to_string())
}

/// One request to rvsd; its answer's frames.
pub fn ask_rvsd(path: &str, kind: u32, portid: u32, body: &[u8]) -> std::io::Result<Vec<Vec<u8>>> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(RVSD_TIMEOUT))?;
    s.set_write_timeout(Some(RVSD_TIMEOUT))?;
    let mut req = Vec::with_capacity(12 + body.len());
    req.extend_from_slice(&kind.to_le_bytes());
    req.extend_from_slice(&portid.to_le_bytes());
    req.extend_from_slice(&(body.len() as u32).to_le_bytes());
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut out = Vec::new();
    loop {
        let mut l = [0u8; 4];
        s.read_exact(&mut l)?;
        let len = u32::from_le_bytes(l) as usize;
        if len == 0 {
            return Ok(out);
        }
        if len > 1 << 24 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "answer frame too large",
            ));
        }
        let mut d = vec![0u8; len];
        s.read_exact(&mut d)?;
        out.push(d);
    }
}

/// `NLMSG_ERROR` carrying `-errno` for the request `req` (used only when
/// rvsd cannot be reached for an IPVS message).
pub fn error_reply(req: &[u8], errno: i32, portid: u32) -> Vec<u8> {
    let hdr = &req[..16.min(req.len())];
    let seq = if req.len() >= 12 {
        u32::from_ne_bytes([req[8], req[9], req[10], req[11]])
    } else {
        0
    };
    let len = (16 + 4 + hdr.len()) as u32;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&portid.to_ne_bytes());
    m.extend_from_slice(&(-errno).to_ne_bytes());
    m.extend_from_slice(hdr);
    m
}

/// Per-socket state: datagrams waiting to be received.
#[derive(Default)]
struct Sock {
    queue: VecDeque<Vec<u8>>,
}

/// Tracked generic-netlink sockets by fd. Never held across I/O: rvsd is
/// reached through sockets whose own `socket`/`close` come back here.
static SOCKS: Mutex<BTreeMap<i32, Sock>> = Mutex::new(BTreeMap::new());

fn socks() -> std::sync::MutexGuard<'static, BTreeMap<i32, Sock>> {
    SOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

fn track(fd: i32, generic_netlink: bool) {
    let mut s = socks();
    // A new fd number means any earlier socket with it is gone.
    s.remove(&fd);
    if generic_netlink {
        s.insert(fd, Sock::default());
    }
}

fn untrack(fd: i32) {
    socks().remove(&fd);
}

fn tracked(fd: i32) -> bool {
    socks().contains_key(&fd)
}

/// Handle an outgoing datagram on a tracked socket: `true` if it went to
/// rvsd (its answers are queued), `false` if the kernel should have it.
fn divert(fd: i32, portid: u32, dgram: &[u8]) -> bool {
    let r = route(dgram);
    if r == Route::Kernel {
        return false;
    }
    let answers = match ask_rvsd(&socket_path(), KIND_NETLINK, portid, dgram) {
        Ok(a) => a,
        Err(_) if r == Route::Lookup => return false,
        Err(_) => vec![error_reply(dgram, ECONNREFUSED, portid)],
    };
    if let Some(s) = socks().get_mut(&fd) {
        s.queue.extend(answers);
    }
    true
}

/// The next queued datagram of `fd`: copied into `bufs`, removed unless
/// `peek`. Returns (datagram length, bytes copied), or None when nothing is
/// queued (the kernel socket is read instead).
fn take(fd: i32, bufs: &mut [&mut [u8]], peek: bool) -> Option<(usize, usize)> {
    let mut s = socks();
    let q = &mut s.get_mut(&fd)?.queue;
    let d = q.front()?;
    let mut copied = 0;
    for b in bufs.iter_mut() {
        let n = b.len().min(d.len() - copied);
        b[..n].copy_from_slice(&d[copied..copied + n]);
        copied += n;
        if copied == d.len() {
            break;
        }
    }
    let len = d.len();
    if !peek {
        q.pop_front();
    }
    Some((len, copied))
}

/// The text of `/proc/net/ip_vs_conn` from rvsd.
fn conn_text() -> Option<Vec<u8>> {
    ask_rvsd(&socket_path(), KIND_CONN_TEXT, 0, &[])
        .ok()
        .map(|f| f.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, cmd: u8, attrs: &[u8]) -> Vec<u8> {
        let len = (20 + attrs.len()) as u32;
        let mut m = len.to_ne_bytes().to_vec();
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&5u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(attrs);
        m
    }

    #[test]
    fn only_the_ipvs_lookup_and_ipvs_messages_leave_the_kernel_path() {
        // CTRL_ATTR_FAMILY_NAME "IPVS\0" (9 bytes, padded to 12).
        let ipvs = [9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0];
        assert_eq!(route(&msg(0x10, 3, &ipvs)), Route::Lookup);
        let other = [12, 0, 2, 0, b'n', b'l', b'8', b'0', b'2', b'1', b'1', 0];
        assert_eq!(route(&msg(0x10, 3, &other)), Route::Kernel);
        // A family-id attribute only (lookup by id): the kernel's.
        assert_eq!(
            route(&msg(0x10, 3, &[6, 0, 1, 0, 0x13, 0, 0, 0])),
            Route::Kernel
        );
        assert_eq!(route(&msg(IPVS_FAMILY_ID, 4, &[])), Route::Ipvs);
        // rtnetlink RTM_GETLINK (18), short and garbage input.
        assert_eq!(route(&msg(18, 0, &[])), Route::Kernel);
        assert_eq!(route(&[1, 2, 3]), Route::Kernel);
        let mut bad = msg(0x10, 3, &[200, 0, 2, 0, b'I']);
        bad[0] = 255;
        assert_eq!(route(&bad), Route::Kernel);
    }

    #[test]
    fn queued_datagrams_honour_peek_and_truncation() {
        track(1000, true);
        socks()
            .get_mut(&1000)
            .unwrap()
            .queue
            .push_back(vec![1, 2, 3, 4, 5]);
        let mut small = [0u8; 2];
        // MSG_PEEK with a short buffer: the full length, nothing consumed.
        assert_eq!(take(1000, &mut [&mut small[..]], true), Some((5, 2)));
        let mut a = [0u8; 3];
        let mut b = [0u8; 8];
        assert_eq!(
            take(1000, &mut [&mut a[..], &mut b[..]], false),
            Some((5, 5))
        );
        assert_eq!((a, &b[..2]), ([1, 2, 3], &[4, 5][..]));
        assert_eq!(take(1000, &mut [&mut b[..]], false), None);
        // A reused fd number forgets the old socket's queue.
        socks().get_mut(&1000).unwrap().queue.push_back(vec![9]);
        track(1000, false);
        assert!(!tracked(1000));
    }

    #[test]
    fn an_unreachable_rvsd_is_an_error_reply_for_ipvs_messages() {
        let req = msg(IPVS_FAMILY_ID, 1, &[]);
        let e = error_reply(&req, ECONNREFUSED, 7);
        assert_eq!(e.len(), 36);
        assert_eq!(u16::from_ne_bytes([e[4], e[5]]), NLMSG_ERROR);
        assert_eq!(
            i32::from_ne_bytes([e[16], e[17], e[18], e[19]]),
            -ECONNREFUSED
        );
        assert_eq!(&e[20..36], &req[..16]);
    }
}
