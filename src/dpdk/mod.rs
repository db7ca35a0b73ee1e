//! The only safe wrapper over `dpdk-sys`: EAL lifetime, mempools, ports,
//! owned mbufs and the per-worker burst device (`DpdkIo`).
//!
//! Soundness rests on one process-wide registry (`GLOBAL`): the EAL phase and
//! a count of live DPDK objects (mempools, ports). `Eal`'s `Drop` only runs
//! `rte_eal_cleanup` when nothing that points into EAL memory is still alive,
//! so a forgotten `Mbuf` or `Port` can leak but never dangle. Everything that
//! needs a running EAL checks the phase first and returns
//! `DpdkError::NotInitialized` instead of touching DPDK.
//!
//! Nothing outside this module may use `dpdk_sys`.

mod io;
mod mbuf;
mod mem;
mod mempool;
mod port;
pub mod preflight;
mod ring;

pub use io::DpdkIo;
pub use mbuf::Mbuf;
pub use mem::{advise_hugepages, prefetch, zeroed_on_hugepages};
pub use mempool::Mempool;
pub use port::{Port, PortInfo};
pub use ring::MbufRing;

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::sync::{Mutex, MutexGuard};

use dpdk_sys as sys;

/// Default mbuf data room: 2048 bytes of packet plus the 128-byte headroom.
pub const MBUF_DEFAULT_DATA_ROOM: u16 = sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
/// Headroom DPDK leaves in front of a received or freshly allocated packet.
pub const MBUF_HEADROOM: usize = sys::RTE_PKTMBUF_HEADROOM as usize;

/// Errors from the DPDK wrapper. DPDK's own failures carry the operation and
/// `rte_strerror`'s text for the errno it reported.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("the EAL was already initialised in this process (one per process)")]
    AlreadyInitialized,
    #[error("the EAL is not initialised")]
    NotInitialized,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("no DPDK port named {0:?}")]
    NoSuchPort(String),
    #[error("port {0} is already owned by another Port")]
    PortInUse(u16),
    #[error("port {port} queue {queue} does not exist or is claimed by another DpdkIo")]
    QueueUnavailable { port: u16, queue: u16 },
    #[error("port {0} is closed")]
    PortClosed(u16),
    #[error("port {0} is still used by a DpdkIo")]
    PortBusy(u16),
    #[error("{op}: {text} (errno {errno})")]
    Rte {
        op: &'static str,
        errno: i32,
        text: String,
    },
}

impl DpdkError {
    /// Wrap an errno (sign ignored: ethdev returns -errno, EAL sets +errno).
    fn rte(op: &'static str, errno: i32) -> Self {
        let errno = errno.abs();
        // SAFETY: rte_strerror accepts any errno and returns a pointer to a
        // NUL-terminated string (static or in a per-thread buffer) that stays
        // valid until the next call on this thread; we copy it out at once.
        let text = unsafe { CStr::from_ptr(sys::rte_strerror(errno)) }
            .to_string_lossy()
            .into_owned();
        DpdkError::Rte { op, errno, text }
    }

    /// The error `op` left in `rte_errno`.
    fn last(op: &'static str) -> Self {
        // SAFETY: reads this thread's rte_errno; no preconditions.
        Self::rte(op, unsafe { sys::rvs_errno() })
    }
}

/// Turn an ethdev-style return (0 ok, -errno failure) into a Result.
fn check(op: &'static str, ret: i32) -> Result<(), DpdkError> {
    if ret < 0 {
        Err(DpdkError::rte(op, ret))
    } else {
        Ok(())
    }
}

const ENOMEM: i32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Uninit,
    Running,
    /// Init failed or cleanup ran: DPDK refuses a second rte_eal_init.
    Done,
}

struct Global {
    phase: Phase,
    /// Mempools and ports not yet released back to DPDK.
    live: usize,
    /// Ports owned by a `Port`, so two owners cannot configure or close the
    /// same device.
    owned_ports: [bool; sys::RTE_MAX_ETHPORTS as usize],
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    phase: Phase::Uninit,
    live: 0,
    owned_ports: [false; sys::RTE_MAX_ETHPORTS as usize],
});

fn global() -> MutexGuard<'static, Global> {
    // The registry holds plain data that stays consistent even if a holder
    // panicked, so poisoning is ignored rather than propagated.
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry, provided the EAL is running.
fn running() -> Result<MutexGuard<'static, Global>, DpdkError> {
    let g = global();
    if g.phase == Phase::Running {
        Ok(g)
    } else {
        Err(DpdkError::NotInitialized)
    }
}

/// The initialised Environment Abstraction Layer. At most one per process;
/// dropping it runs `rte_eal_cleanup` unless DPDK objects are still alive
/// (then cleanup is skipped and the OS reclaims everything at exit).
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialise the EAL with `args` (EAL options such as `-l 0-1`,
    /// `--vdev ...`, `--no-pci`); `"rvsd"` is prepended as argv[0].
    /// A second call in the same process fails, even after the first `Eal`
    /// was dropped, because DPDK cannot re-initialise.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut g = global();
        if g.phase != Phase::Uninit {
            return Err(DpdkError::AlreadyInitialized);
        }
        let owned = std::iter::once("rvsd")
            .chain(args.iter().map(String::as_str))
            .map(|a| {
                CString::new(a).map_err(|_| {
                    DpdkError::InvalidArgument(format!("EAL argument {a:?} contains NUL"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // EAL may keep pointers into argv (getopt state, saved options), so
        // the strings live for the rest of the process: a few bytes, once.
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        let argc = i32::try_from(argv.len())
            .map_err(|_| DpdkError::InvalidArgument("too many EAL arguments".into()))?;
        argv.push(std::ptr::null_mut());
        let argv = argv.leak();
        // SAFETY: argv holds argc valid NUL-terminated strings plus a NULL
        // terminator, all leaked so they outlive the EAL; the registry lock
        // and the Uninit phase guarantee this is the only rte_eal_init call.
        let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            g.phase = Phase::Done;
            return Err(DpdkError::last("rte_eal_init"));
        }
        g.phase = Phase::Running;
        Ok(Eal { _private: () })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        let mut g = global();
        if g.phase != Phase::Running {
            return;
        }
        if g.live > 0 {
            log::warn!(
                "{} DPDK mempool(s)/port(s) still alive: skipping rte_eal_cleanup",
                g.live
            );
            return;
        }
        g.phase = Phase::Done;
        // SAFETY: the EAL is running and no object that points into EAL
        // memory is alive (live == 0 under the lock), so nothing can use DPDK
        // after this returns; the phase change stops new objects being made.
        let ret = unsafe { sys::rte_eal_cleanup() };
        if ret < 0 {
            log::warn!("{}", DpdkError::rte("rte_eal_cleanup", ret));
        }
    }
}

/// Let `dpdk-dumpcap` / `dpdk-pdump` capture this process's ports: they
/// attach as DPDK secondary processes, so the EAL must run with shared
/// configuration (not `--in-memory`/`--no-shconf`) and the same
/// `--file-prefix`. Returns an error where that is not possible.
pub fn enable_pdump() -> Result<(), DpdkError> {
    let _g = running()?;
    // SAFETY: the EAL is running (checked under the registry lock);
    // rte_pdump_init only registers a multi-process action and reports
    // failure (e.g. with --in-memory) through its return value.
    let ret = unsafe { sys::rte_pdump_init() };
    if ret < 0 {
        return Err(DpdkError::last("rte_pdump_init"));
    }
    Ok(())
}

/// Probe a device after the EAL has started (hot-plug): `devargs` as in
/// `--vdev` (`net_af_packet0,iface=lb0`) or a PCI address. rvsd's
/// `--handover` starts its EAL without the data ports, which the running
/// rvsd still holds, and adds them this way once that one has let go.
pub fn hotplug(devargs: &str) -> Result<(), DpdkError> {
    let _g = running()?;
    let c = std::ffi::CString::new(devargs)
        .map_err(|_| DpdkError::InvalidArgument(format!("device {devargs:?} contains NUL")))?;
    // SAFETY: the EAL is running (checked under the registry lock, which
    // keeps cleanup from starting meanwhile); c is a valid C string that
    // DPDK copies.
    let ret = unsafe { sys::rte_dev_probe(c.as_ptr()) };
    if ret < 0 {
        return Err(DpdkError::rte("rte_dev_probe", -ret));
    }
    Ok(())
}

/// Register the calling (non-EAL) thread with DPDK so it gets an lcore id and
/// with it a per-lcore mempool cache. Returns the lcore id; calling it again
/// on a thread that already has one returns that id.
pub fn register_thread() -> Result<u32, DpdkError> {
    let _g = running()?;
    if let Some(id) = lcore_id() {
        return Ok(id);
    }
    // SAFETY: the EAL is running (checked under the lock, which also keeps
    // cleanup from starting meanwhile) and this thread has no lcore yet.
    let ret = unsafe { sys::rte_thread_register() };
    if ret < 0 {
        return Err(DpdkError::last("rte_thread_register"));
    }
    lcore_id().ok_or_else(|| DpdkError::rte("rte_thread_register", ENOMEM))
}

/// The calling thread's lcore id, or None for a thread DPDK does not know.
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads a thread-local; valid with or without an EAL.
    let id = unsafe { sys::rvs_lcore_id() };
    (id != sys::LCORE_ID_ANY).then_some(id)
}
