//! Packet mbuf pools (`rte_pktmbuf_pool_create`), shared by ports (their RX
//! rings refill from it) and workers (`DpdkIo::alloc`).

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys as sys;

use super::{global, running, DpdkError, Mbuf};

/// A handle to a packet mempool; clones share the pool. The pool is returned
/// to DPDK when the last handle goes, unless mbufs are still out (then it is
/// leaked on purpose: an outstanding `Mbuf` must never point into freed
/// memory).
#[derive(Clone, Debug)]
pub struct Mempool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mp: NonNull<sys::rte_mempool>,
}

// SAFETY: an rte_mempool created by rte_pktmbuf_pool_create uses the default
// multi-producer/multi-consumer ring ops, so get/put/count from any thread is
// thread-safe; the pointer itself is only freed in Drop of the last handle.
unsafe impl Send for Inner {}
// SAFETY: as above; every operation through &Inner is thread-safe in DPDK.
unsafe impl Sync for Inner {}

impl Mempool {
    /// Create a pool of `n_mbufs` mbufs with a per-lcore cache of `cache`
    /// and `data_room` bytes per buffer, headroom included (DPDK's default is
    /// `RTE_MBUF_DEFAULT_BUF_SIZE` = 2048 + 128). Names are process-unique.
    pub fn new(name: &str, n_mbufs: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| {
            DpdkError::InvalidArgument(format!("mempool name {name:?} contains NUL"))
        })?;
        if (data_room as u32) < sys::RTE_PKTMBUF_HEADROOM {
            return Err(DpdkError::InvalidArgument(format!(
                "data_room {data_room} is smaller than the mbuf headroom ({})",
                sys::RTE_PKTMBUF_HEADROOM
            )));
        }
        let mut g = running()?;
        // SAFETY: the EAL is running (lock held, so cleanup cannot start);
        // rte_socket_id has no preconditions.
        let socket = unsafe { sys::rte_socket_id() } as i32;
        // SAFETY: cname is a valid C string for the call; DPDK validates the
        // sizes and copies the name.
        let mp = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), n_mbufs, cache, 0, data_room, socket)
        };
        let mp = NonNull::new(mp).ok_or_else(|| DpdkError::last("rte_pktmbuf_pool_create"))?;
        g.live += 1;
        Ok(Mempool {
            inner: Arc::new(Inner { mp }),
        })
    }

    /// Mbufs in the pool, per-lcore caches included.
    pub fn available(&self) -> u32 {
        // SAFETY: mp is a live pool (freed only when the last handle drops).
        unsafe { sys::rte_mempool_avail_count(self.inner.mp.as_ptr()) }
    }

    /// Mbufs taken out of the pool and not yet returned: held by the
    /// application, by device rings or in flight. Meant for leak checks.
    pub fn in_use(&self) -> u32 {
        // SAFETY: mp is a live pool (freed only when the last handle drops).
        unsafe { sys::rte_mempool_in_use_count(self.inner.mp.as_ptr()) }
    }

    /// The pool's name, as given to `new`.
    pub fn name(&self) -> String {
        // SAFETY: mp is live and rte_mempool.name is a NUL-terminated array
        // filled in by rte_mempool_create_empty.
        unsafe { CStr::from_ptr((*self.inner.mp.as_ptr()).name.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// A fresh, empty (length 0) mbuf from the pool; None when exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive while self holds its handle.
        let m = NonNull::new(unsafe { sys::rvs_pktmbuf_alloc(self.inner.mp.as_ptr()) })?;
        // SAFETY: a freshly allocated, reset single-segment mbuf we own.
        Some(unsafe { Mbuf::from_raw(m) })
    }

    pub(super) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.inner.mp.as_ptr()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut g = global();
        // SAFETY: the pool is live: it is counted in `live`, so EAL cleanup
        // cannot have run, and only this (last) handle frees it.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.mp.as_ptr()) };
        if in_use > 0 {
            log::warn!("mempool dropped with {in_use} mbufs still out: leaking it");
            return;
        }
        // SAFETY: no handle and no mbuf refer to the pool any more (ports
        // hold a handle while their rings may), so nothing can touch it after
        // this.
        unsafe { sys::rte_mempool_free(self.mp.as_ptr()) };
        g.live -= 1;
    }
}
