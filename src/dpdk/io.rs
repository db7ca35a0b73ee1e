//! `DpdkIo`: one worker's burst device over DPDK queues, implementing
//! `crate::io::PortIo`. It owns the worker's RX scratch array and per-port TX
//! buffers, so nothing is allocated per packet or per burst.

use std::ptr::{self, NonNull};
use std::sync::Arc;

use dpdk_sys as sys;

use super::port::PortInner;
use super::{DpdkError, Mbuf, Mempool, Port};
use crate::io::{PortIo, BURST};

/// How many times a flush offers the rest of a TX buffer to a full queue
/// before freeing it: enough to ride out a ring that drains as we go, small
/// enough that a stuck port cannot stall the worker.
const TX_RETRIES: usize = 4;

struct IoPort {
    port: Arc<PortInner>,
    rxq: u16,
    txq: u16,
    tx_buf: [*mut sys::rte_mbuf; BURST],
    tx_len: usize,
}

/// One worker's queues: for each port index `i` in `0..n_ports()`, one RX and
/// one TX queue of the `i`th port given to `new`.
pub struct DpdkIo {
    ports: Vec<IoPort>,
    rx_scratch: [*mut sys::rte_mbuf; BURST],
    pool: Mempool,
    tx_dropped: u64,
    rx_chained_dropped: u64,
}

// SAFETY: the raw pointers are mbufs this DpdkIo owns exclusively (buffered
// for TX) or scratch slots; the queues it polls are claimed for it alone, and
// DPDK allows a queue to be used from any one thread at a time.
unsafe impl Send for DpdkIo {}

impl std::fmt::Debug for DpdkIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkIo")
            .field(
                "queues",
                &self
                    .ports
                    .iter()
                    .map(|p| (p.port.id, p.rxq, p.txq))
                    .collect::<Vec<_>>(),
            )
            .field("tx_dropped", &self.tx_dropped)
            .field("rx_chained_dropped", &self.rx_chained_dropped)
            .finish()
    }
}

impl DpdkIo {
    /// A device over `(port, rx queue, tx queue)` triples; port index `i` of
    /// the `PortIo` trait is `queues[i]`. Each queue is claimed for this
    /// `DpdkIo` until it drops; `alloc` takes mbufs from `pool`.
    pub fn new(pool: &Mempool, queues: &[(&Port, u16, u16)]) -> Result<DpdkIo, DpdkError> {
        let mut ports: Vec<IoPort> = Vec::with_capacity(queues.len());
        for &(port, rxq, txq) in queues {
            // On error, the ports claimed so far are released by IoPort's Drop.
            port.inner().claim(rxq, txq)?;
            ports.push(IoPort {
                port: Arc::clone(port.inner()),
                rxq,
                txq,
                tx_buf: [ptr::null_mut(); BURST],
                tx_len: 0,
            });
        }
        Ok(DpdkIo {
            ports,
            rx_scratch: [ptr::null_mut(); BURST],
            pool: pool.clone(),
            tx_dropped: 0,
            rx_chained_dropped: 0,
        })
    }

    /// Multi-segment frames received and freed (the data path needs
    /// contiguous frames; a nonzero count means the mempool's data room is
    /// smaller than the port's MTU).
    pub fn rx_chained_dropped(&self) -> u64 {
        self.rx_chained_dropped
    }

    fn flush_port(p: &mut IoPort, dropped: &mut u64) {
        let mut sent = 0;
        for _ in 0..TX_RETRIES {
            if sent == p.tx_len {
                break;
            }
            // SAFETY: the queue is claimed by us and exists (claim checked the
            // configured count); tx_buf[sent..tx_len] are mbufs we own, which
            // the PMD takes ownership of for the first n it accepts.
            let n = unsafe {
                sys::rvs_tx_burst(
                    p.port.id,
                    p.txq,
                    p.tx_buf.as_mut_ptr().add(sent),
                    (p.tx_len - sent) as u16,
                )
            };
            sent += n as usize;
        }
        let rest = p.tx_len - sent;
        if rest > 0 {
            // SAFETY: tx_buf[sent..tx_len] are still ours, valid, and freed once.
            unsafe { sys::rvs_pktmbuf_free_bulk(p.tx_buf.as_mut_ptr().add(sent), rest as u32) };
            *dropped += rest as u64;
        }
        p.tx_len = 0;
    }
}

impl PortIo for DpdkIo {
    type Frame = Mbuf;

    fn n_ports(&self) -> usize {
        self.ports.len()
    }

    fn rx_burst(&mut self, port: u16, out: &mut Vec<Mbuf>) -> usize {
        let Some(p) = self.ports.get(port as usize) else {
            return 0;
        };
        // SAFETY: the queue is claimed by us and exists; rx_scratch has room
        // for BURST pointers, which the PMD fills with mbufs we then own.
        let n = unsafe {
            sys::rvs_rx_burst(p.port.id, p.rxq, self.rx_scratch.as_mut_ptr(), BURST as u16)
        };
        let before = out.len();
        for &m in &self.rx_scratch[..n as usize] {
            let Some(m) = NonNull::new(m) else { continue };
            // SAFETY: m is a valid mbuf the PMD just handed us.
            if unsafe { m.as_ref() }.nb_segs != 1 {
                // SAFETY: we own m (and its chain) and drop it here, once.
                unsafe { sys::rvs_pktmbuf_free(m.as_ptr()) };
                self.rx_chained_dropped += 1;
                continue;
            }
            // SAFETY: a fresh single-segment mbuf with refcount 1 that only
            // the new Mbuf will use.
            out.push(unsafe { Mbuf::from_raw(m) });
        }
        out.len() - before
    }

    fn tx(&mut self, port: u16, frame: Mbuf) {
        let Some(p) = self.ports.get_mut(port as usize) else {
            self.tx_dropped += 1;
            return; // frame drops here, back to its pool
        };
        p.tx_buf[p.tx_len] = frame.into_raw();
        p.tx_len += 1;
        if p.tx_len == BURST {
            Self::flush_port(p, &mut self.tx_dropped);
        }
    }

    fn flush(&mut self) {
        for p in &mut self.ports {
            if p.tx_len > 0 {
                Self::flush_port(p, &mut self.tx_dropped);
            }
        }
    }

    fn alloc(&mut self) -> Option<Mbuf> {
        // SAFETY: the pool is alive for as long as self holds its handle.
        let m = NonNull::new(unsafe { sys::rvs_pktmbuf_alloc(self.pool.as_ptr()) })?;
        // SAFETY: a freshly allocated, reset single-segment mbuf we own.
        Some(unsafe { Mbuf::from_raw(m) })
    }

    fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }
}

impl Drop for DpdkIo {
    fn drop(&mut self) {
        // Frames queued but never flushed would otherwise leak their mbufs.
        self.flush();
    }
}

impl Drop for IoPort {
    fn drop(&mut self) {
        self.port.release(self.rxq, self.txq);
    }
}
