//! Rings of mbufs and ethdev ports built on them (`rte_eth_from_rings`), so a
//! packet generator on another thread can feed a worker's `DpdkIo` real
//! frames through the ordinary burst API (the benchmark's harness).
//!
//! Rings are never freed: a ring-backed port keeps raw pointers to its rings
//! for as long as the EAL lives, so each ring counts as a live DPDK object
//! for good (the EAL then skips `rte_eal_cleanup` and the OS reclaims
//! everything at exit). Mbufs still in a ring at exit are leaked with it.

use std::ffi::CString;
use std::ptr::{self, NonNull};

use dpdk_sys as sys;

use super::{running, DpdkError, Mbuf};
use crate::io::BURST;

/// A multi-producer/multi-consumer ring of owned mbufs. Copies share the ring.
#[derive(Clone, Copy, Debug)]
pub struct MbufRing {
    r: NonNull<sys::rte_ring>,
}

// SAFETY: the ring is created with DPDK's default MP/MC flags, so enqueue,
// dequeue and count are safe from any number of threads at once; it is never
// freed, so the pointer stays valid for the rest of the process.
unsafe impl Send for MbufRing {}
// SAFETY: as above; every operation through &MbufRing is thread-safe.
unsafe impl Sync for MbufRing {}

impl MbufRing {
    /// A ring holding up to `size - 1` mbufs (`size` a power of two).
    /// Names are process-unique.
    pub fn new(name: &str, size: u32) -> Result<MbufRing, DpdkError> {
        if !size.is_power_of_two() || size < 2 {
            return Err(DpdkError::InvalidArgument(format!(
                "ring size {size} is not a power of two >= 2"
            )));
        }
        let cname = CString::new(name)
            .map_err(|_| DpdkError::InvalidArgument(format!("ring name {name:?} contains NUL")))?;
        let mut g = running()?;
        // SAFETY: the EAL is running (lock held); rte_socket_id has no
        // preconditions.
        let socket = unsafe { sys::rte_socket_id() } as i32;
        // SAFETY: cname is a valid C string for the call; flags 0 select the
        // thread-safe MP/MC ring; DPDK validates the size and copies the name.
        let r = unsafe { sys::rte_ring_create(cname.as_ptr(), size, socket, 0) };
        let r = NonNull::new(r).ok_or_else(|| DpdkError::last("rte_ring_create"))?;
        // Never decremented: the ring is never freed (see the module docs),
        // so EAL memory must never be released under it.
        g.live += 1;
        Ok(MbufRing { r })
    }

    /// Move as many frames from the front of `frames` into the ring as fit
    /// (at most `BURST` per call). Returns how many went in; the rest stay
    /// in `frames`, in order.
    pub fn enqueue(&self, frames: &mut Vec<Mbuf>) -> usize {
        let n = frames.len().min(BURST);
        if n == 0 {
            return 0;
        }
        let mut ptrs = [ptr::null_mut::<sys::rte_mbuf>(); BURST];
        for (p, m) in ptrs.iter_mut().zip(frames.iter()) {
            *p = m.as_raw();
        }
        // SAFETY: the ring is alive forever; ptrs[..n] are valid mbufs owned
        // by `frames`. The ring takes the first k of them; ownership of those
        // moves into the ring by forgetting their Mbufs below.
        let k = unsafe { sys::rvs_ring_enqueue_burst(self.r.as_ptr(), ptrs.as_mut_ptr(), n as u32) }
            as usize;
        for m in frames.drain(..k) {
            let _ = m.into_raw();
        }
        k
    }

    /// Take up to `BURST` frames out of the ring, appending them to `out`.
    /// Returns how many were appended.
    pub fn dequeue(&self, out: &mut Vec<Mbuf>) -> usize {
        let mut ptrs = [ptr::null_mut::<sys::rte_mbuf>(); BURST];
        // SAFETY: the ring is alive forever and holds only mbufs whose
        // ownership was moved into it (by `enqueue` or a port's TX path);
        // ptrs has room for BURST pointers.
        let k = unsafe {
            sys::rvs_ring_dequeue_burst(self.r.as_ptr(), ptrs.as_mut_ptr(), BURST as u32)
        } as usize;
        let before = out.len();
        for &p in &ptrs[..k] {
            let Some(m) = NonNull::new(p) else { continue };
            // SAFETY: m is a valid mbuf we now own exclusively.
            if unsafe { m.as_ref() }.nb_segs != 1 {
                // SAFETY: owned, freed once, never used again.
                unsafe { sys::rvs_pktmbuf_free(m.as_ptr()) };
                continue;
            }
            // SAFETY: a single-segment mbuf with refcount 1, ours alone.
            out.push(unsafe { Mbuf::from_raw(m) });
        }
        out.len() - before
    }

    /// Frames currently in the ring.
    pub fn len(&self) -> usize {
        // SAFETY: the ring is alive forever; counting is thread-safe.
        unsafe { sys::rvs_ring_count(self.r.as_ptr()) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Create an ethdev port called `name` whose RX queue `i` reads `rx[i]`
    /// and whose TX queue `i` writes `tx[i]`. Returns its port id; configure
    /// and start it with `Port::configure` as any other port.
    pub fn port(name: &str, rx: &[MbufRing], tx: &[MbufRing]) -> Result<u16, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::InvalidArgument(format!("port name {name:?} contains NUL")))?;
        if rx.is_empty() || tx.is_empty() {
            return Err(DpdkError::InvalidArgument("a ring port needs rings".into()));
        }
        let _g = running()?;
        let rxp: Vec<*mut sys::rte_ring> = rx.iter().map(|r| r.r.as_ptr()).collect();
        let txp: Vec<*mut sys::rte_ring> = tx.iter().map(|r| r.r.as_ptr()).collect();
        // SAFETY: the EAL runs (lock held); the arrays hold valid rings that
        // are never freed, so the port may keep their pointers forever; DPDK
        // copies the name and the arrays.
        let ret = unsafe {
            sys::rte_eth_from_rings(
                cname.as_ptr(),
                rxp.as_ptr(),
                rxp.len() as u32,
                txp.as_ptr(),
                txp.len() as u32,
                sys::rte_socket_id(),
            )
        };
        if ret < 0 {
            return Err(DpdkError::last("rte_eth_from_rings"));
        }
        Ok(ret as u16)
    }
}
