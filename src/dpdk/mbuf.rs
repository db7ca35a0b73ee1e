//! Owned packet buffers. An `Mbuf` is always a single segment (the only
//! constructors are `DpdkIo`'s rx path, which drops chains, and `alloc`), so
//! the packet is the contiguous `buf_addr + data_off .. + data_len` and
//! `pkt_len == data_len` holds throughout. Field access is plain Rust: a C
//! call per packet for `mtod` or length updates costs too much.

use std::ptr::NonNull;

use dpdk_sys as sys;

use crate::io::Frame;

/// One owned, single-segment mbuf, returned to its pool on drop.
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its rte_mbuf; the fields it touches are
// not shared, and freeing into a default (MP/MC ring) mempool is thread-safe.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of `m`.
    ///
    /// # Safety
    /// `m` must be a valid, single-segment mbuf with refcount 1 that nobody
    /// else will use or free.
    pub(super) unsafe fn from_raw(m: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    /// Give up ownership (for handing to tx_burst).
    pub(super) fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer, ownership kept (for handing a burst to DPDK, which
    /// takes over only the ones it accepts).
    pub(super) fn as_raw(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    fn m(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for our whole lifetime.
        unsafe { self.0.as_ref() }
    }

    fn m_mut(&mut self) -> &mut sys::rte_mbuf {
        // SAFETY: we own a valid mbuf and &mut self makes access exclusive.
        unsafe { self.0.as_mut() }
    }

    /// Number of segments (always 1 for an `Mbuf` handed out by this module).
    pub fn nb_segs(&self) -> u16 {
        self.m().nb_segs
    }

    /// Packet length as DPDK sees it (equals `data().len()`).
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }

    /// Bytes free in front of the packet (what `prepend` can take).
    pub fn headroom(&self) -> usize {
        self.m().data_off as usize
    }

    /// Bytes free after the packet (what `append` can take).
    pub fn tailroom(&self) -> usize {
        let m = self.m();
        (m.buf_len as usize).saturating_sub(m.data_off as usize + m.data_len as usize)
    }

    fn set_len(&mut self, len: u16) {
        let m = self.m_mut();
        m.data_len = len;
        m.pkt_len = len as u32;
    }
}

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: for a single-segment mbuf, buf_addr + data_off points at
        // data_len initialised bytes inside the buffer DPDK allocated; the
        // bytes are owned by us and borrowed no longer than &self.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m();
        let (addr, off, len) = (
            m.buf_addr as *mut u8,
            m.data_off as usize,
            m.data_len as usize,
        );
        // SAFETY: as in data(); &mut self gives exclusive access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    fn prepend(&mut self, n: usize) -> bool {
        let m = self.m_mut();
        if n > m.data_off as usize {
            return false;
        }
        // n <= data_off and data_off + data_len <= buf_len, both u16: no overflow.
        m.data_off -= n as u16;
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        true
    }

    fn adj(&mut self, n: usize) -> bool {
        let m = self.m_mut();
        if n > m.data_len as usize {
            return false;
        }
        m.data_off += n as u16;
        m.data_len -= n as u16;
        m.pkt_len -= n as u32;
        true
    }

    fn append(&mut self, n: usize) -> bool {
        if n > self.tailroom() {
            return false;
        }
        let len = self.m().data_len as usize + n;
        // len <= buf_len - data_off, which fits u16.
        self.set_len(len as u16);
        true
    }

    fn truncate(&mut self, len: usize) {
        if len < self.m().data_len as usize {
            self.set_len(len as u16);
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody uses it after this; its pool is
        // still alive (a pool with mbufs out is never freed).
        unsafe { sys::rvs_pktmbuf_free(self.0.as_ptr()) }
    }
}
