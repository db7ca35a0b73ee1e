//! The boundary between the data path and whatever moves frames: DPDK ports in
//! production (`crate::dpdk::DpdkIo`), an in-memory device in tests (`MemIo`).
//!
//! The data path only ever sees these traits, so every packet decision is
//! testable without an EAL. Implementations own buffer lifetimes: a frame is
//! freed when dropped, and sending one hands it back to the device.

/// Maximum frames one `rx_burst` returns.
pub const BURST: usize = 32;

/// A packet buffer the data path may rewrite in place and grow or shrink at
/// either end (TUN encapsulation needs headroom).
pub trait Frame {
    /// The packet bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the packet by `n` bytes at the front. Returns false (and leaves
    /// the frame unchanged) when there is not enough headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Remove `n` bytes from the front. Returns false when `n` > length.
    fn adj(&mut self, n: usize) -> bool;
    /// Grow the packet by `n` bytes at the end (contents unspecified).
    /// Returns false when there is not enough tailroom.
    fn append(&mut self, n: usize) -> bool;
    /// Cut the packet to `len` bytes (no-op when already shorter).
    fn truncate(&mut self, len: usize);
}

/// Counters a device keeps for one of its ports (hardware/PMD view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PortCounters {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Dropped by the device because the RX queue was full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX failed because the mempool was empty.
    pub rx_nombuf: u64,
}

/// One worker's view of the ports: one RX and one TX queue on each.
pub trait PortIo {
    type Frame: Frame;
    /// Number of ports (port indexes are `0..n_ports()`).
    fn n_ports(&self) -> usize;
    /// Receive up to `BURST` frames from `port`, appending them to `out`.
    /// Returns how many were appended.
    fn rx_burst(&mut self, port: u16, out: &mut Vec<Self::Frame>) -> usize;
    /// Queue `frame` for transmission on `port`. It may be sent at once or at
    /// the next `flush`; if the device cannot take it, it is freed and counted
    /// in `tx_dropped`.
    fn tx(&mut self, port: u16, frame: Self::Frame);
    /// Send everything queued by `tx`.
    fn flush(&mut self);
    /// A fresh, empty frame (length 0) for packets the director originates
    /// (ARP requests). None when the pool is exhausted.
    fn alloc(&mut self) -> Option<Self::Frame>;
    /// Frames this worker's TX path had to free because the device was full.
    fn tx_dropped(&self) -> u64;
}

/// A heap-backed frame for tests and tools: `buf[head..tail]` is the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecFrame {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
}

/// Headroom a `VecFrame` gets, matching DPDK's default `RTE_PKTMBUF_HEADROOM`.
pub const VEC_HEADROOM: usize = 128;
/// Total room a `VecFrame` gets, like a 2048-byte mbuf data room plus headroom.
pub const VEC_ROOM: usize = 2048 + VEC_HEADROOM;

impl VecFrame {
    /// A frame holding a copy of `bytes`, with mbuf-like head and tail room.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let room = VEC_ROOM.max(VEC_HEADROOM + bytes.len());
        let mut buf = vec![0u8; room];
        buf[VEC_HEADROOM..VEC_HEADROOM + bytes.len()].copy_from_slice(bytes);
        VecFrame {
            buf,
            head: VEC_HEADROOM,
            tail: VEC_HEADROOM + bytes.len(),
        }
    }

    /// An empty frame.
    pub fn empty() -> Self {
        Self::from_bytes(&[])
    }
}

impl Frame for VecFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.tail]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.tail - self.head {
            return false;
        }
        self.head += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if self.tail + n > self.buf.len() {
            return false;
        }
        self.tail += n;
        true
    }
    fn truncate(&mut self, len: usize) {
        if len < self.tail - self.head {
            self.tail = self.head + len;
        }
    }
}

/// An in-memory device: tests push frames into `rx[port]` and read what the
/// worker sent from `tx[port]`.
#[derive(Default, Debug)]
pub struct MemIo {
    pub rx: Vec<std::collections::VecDeque<VecFrame>>,
    pub tx: Vec<Vec<VecFrame>>,
    /// When set, `alloc` fails (pool exhausted).
    pub alloc_fails: bool,
}

impl MemIo {
    pub fn new(n_ports: usize) -> Self {
        MemIo {
            rx: (0..n_ports).map(|_| Default::default()).collect(),
            tx: (0..n_ports).map(|_| Vec::new()).collect(),
            alloc_fails: false,
        }
    }
    /// Queue a frame for the worker to receive on `port`.
    pub fn push(&mut self, port: u16, bytes: &[u8]) {
        self.rx[port as usize].push_back(VecFrame::from_bytes(bytes));
    }
    /// Take everything sent on `port` so far.
    pub fn take_tx(&mut self, port: u16) -> Vec<Vec<u8>> {
        self.tx[port as usize]
            .drain(..)
            .map(|f| f.data().to_vec())
            .collect()
    }
}

impl PortIo for MemIo {
    type Frame = VecFrame;
    fn n_ports(&self) -> usize {
        self.rx.len()
    }
    fn rx_burst(&mut self, port: u16, out: &mut Vec<VecFrame>) -> usize {
        let q = &mut self.rx[port as usize];
        let n = q.len().min(BURST);
        out.extend(q.drain(..n));
        n
    }
    fn tx(&mut self, port: u16, frame: VecFrame) {
        self.tx[port as usize].push(frame);
    }
    fn flush(&mut self) {}
    fn alloc(&mut self) -> Option<VecFrame> {
        (!self.alloc_fails).then(VecFrame::empty)
    }
    fn tx_dropped(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_frame_grows_and_shrinks_within_its_room() {
        let mut f = VecFrame::from_bytes(&[1, 2, 3]);
        assert!(f.prepend(2));
        assert_eq!(f.data().len(), 5);
        assert_eq!(&f.data()[2..], &[1, 2, 3]);
        assert!(f.adj(2));
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(!f.prepend(VEC_HEADROOM + 1));
        assert!(!f.adj(4));
        f.truncate(1);
        assert_eq!(f.data(), &[1]);
        assert!(f.append(2));
        assert_eq!(f.data().len(), 3);
        assert!(!f.append(VEC_ROOM));
    }
}
