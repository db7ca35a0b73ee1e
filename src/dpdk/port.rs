//! Ethernet ports: configuration, start/stop/close and the slow-path queries
//! (MAC, MTU, link, counters). Bursts live in `DpdkIo`.
//!
//! A `Port` shares its state with every `DpdkIo` that polls it, so the port
//! cannot be stopped or closed under a worker (`PortBusy`), and each queue is
//! claimed by at most one `DpdkIo` (DPDK queues are single-threaded).

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex, MutexGuard};

use dpdk_sys as sys;

use super::{check, global, running, DpdkError, Mempool};
use crate::io::PortCounters;

/// What a device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// PMD name, e.g. `net_pcap`, `net_af_packet`.
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    /// RSS hash functions the device supports (`RTE_ETH_RSS_*` bits); 0 when
    /// it cannot spread flows over RX queues.
    pub rss_offloads: u64,
}

/// A configured port, owned: at most one `Port` per port id. Stopped and
/// closed on drop (by the last of it and its `DpdkIo`s).
#[derive(Debug)]
pub struct Port {
    inner: Arc<PortInner>,
}

#[derive(Debug)]
pub(super) struct PortInner {
    pub(super) id: u16,
    n_rxq: u16,
    n_txq: u16,
    rss: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: bool,
    closed: bool,
    /// Held while the RX rings may refill from it; dropped at close.
    pool: Option<Mempool>,
    rx_claimed: Vec<bool>,
    tx_claimed: Vec<bool>,
}

impl PortInner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve `rxq`/`txq` for one `DpdkIo`.
    pub(super) fn claim(&self, rxq: u16, txq: u16) -> Result<(), DpdkError> {
        let mut s = self.state();
        let free = |v: &[bool], q: u16| v.get(q as usize) == Some(&false);
        if s.closed || !free(&s.rx_claimed, rxq) {
            return Err(DpdkError::QueueUnavailable {
                port: self.id,
                queue: rxq,
            });
        }
        if !free(&s.tx_claimed, txq) {
            return Err(DpdkError::QueueUnavailable {
                port: self.id,
                queue: txq,
            });
        }
        s.rx_claimed[rxq as usize] = true;
        s.tx_claimed[txq as usize] = true;
        Ok(())
    }

    pub(super) fn release(&self, rxq: u16, txq: u16) {
        let mut s = self.state();
        if let Some(c) = s.rx_claimed.get_mut(rxq as usize) {
            *c = false;
        }
        if let Some(c) = s.tx_claimed.get_mut(txq as usize) {
            *c = false;
        }
    }

    fn stop(&self, s: &mut State) -> Result<(), DpdkError> {
        if s.started {
            // SAFETY: the port is configured and open; no DpdkIo polls it
            // (callers hold the only reference), so no burst races the stop.
            check("rte_eth_dev_stop", unsafe {
                sys::rte_eth_dev_stop(self.id)
            })?;
            s.started = false;
        }
        Ok(())
    }

    fn close(&self, s: &mut State) -> Result<(), DpdkError> {
        if s.closed {
            return Ok(());
        }
        self.stop(s)?;
        // SAFETY: the port is stopped and open; nobody else uses it.
        let ret = unsafe { sys::rte_eth_dev_close(self.id) };
        // Whatever close reports, the port is unusable now: release it.
        s.closed = true;
        s.pool = None;
        let mut g = global();
        g.owned_ports[self.id as usize] = false;
        g.live -= 1;
        check("rte_eth_dev_close", ret)
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = std::mem::replace(
            &mut *s,
            State {
                started: false,
                closed: true,
                pool: None,
                rx_claimed: vec![],
                tx_claimed: vec![],
            },
        );
        if let Err(e) = self.close(&mut s) {
            log::warn!("closing port {}: {e}", self.id);
        }
    }
}

fn dev_info(port_id: u16) -> Result<sys::rte_eth_dev_info, DpdkError> {
    let mut info = sys::rte_eth_dev_info::default();
    // SAFETY: info is a valid, writable rte_eth_dev_info; DPDK validates the
    // port id.
    check("rte_eth_dev_info_get", unsafe {
        sys::rte_eth_dev_info_get(port_id, &mut info)
    })?;
    Ok(info)
}

impl Port {
    /// The port id of the device called `name` (e.g. `net_pcap0`).
    pub fn by_name(name: &str) -> Result<u16, DpdkError> {
        let _g = running()?;
        let cname = CString::new(name).map_err(|_| DpdkError::NoSuchPort(name.to_owned()))?;
        let mut id = 0u16;
        // SAFETY: cname is a valid C string and id a valid out pointer; the
        // EAL runs (lock held).
        let ret = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(DpdkError::NoSuchPort(name.to_owned()));
        }
        Ok(id)
    }

    /// Configure `port_id` with `n_rxq` RX and `n_txq` TX queues of
    /// `rx_desc`/`tx_desc` descriptors (adjusted to the device's limits), RX
    /// buffers from `pool`. RSS over IP/TCP/UDP is enabled when `n_rxq > 1`
    /// and the device supports it. The port is left stopped.
    pub fn configure(
        port_id: u16,
        n_rxq: u16,
        n_txq: u16,
        rx_desc: u16,
        tx_desc: u16,
        pool: &Mempool,
    ) -> Result<Port, DpdkError> {
        let mut g = running()?;
        if port_id as u32 >= sys::RTE_MAX_ETHPORTS
            // SAFETY: any port id may be asked about.
            || unsafe { sys::rte_eth_dev_is_valid_port(port_id) } == 0
        {
            return Err(DpdkError::NoSuchPort(port_id.to_string()));
        }
        if g.owned_ports[port_id as usize] {
            return Err(DpdkError::PortInUse(port_id));
        }
        let info = dev_info(port_id)?;
        if n_rxq == 0 || n_txq == 0 || n_rxq > info.max_rx_queues || n_txq > info.max_tx_queues {
            return Err(DpdkError::InvalidArgument(format!(
                "port {port_id}: {n_rxq} rx / {n_txq} tx queues requested, device allows 1..={} / 1..={}",
                info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        let rss_hf = sys::RVS_ETH_RSS_IP_TCP_UDP as u64 & info.flow_type_rss_offloads;
        let rss = n_rxq > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // SAFETY: the port is valid and not started by us; conf is a fully
        // initialised rte_eth_conf that DPDK copies.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(port_id, n_rxq, n_txq, &conf)
        })?;
        let (mut rxd, mut txd) = (rx_desc, tx_desc);
        // SAFETY: valid port, valid out pointers.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rxd, &mut txd)
        })?;
        // SAFETY: valid port id; a negative result means "any socket".
        let socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
        // SOCKET_ID_ANY (-1) is what the queue setup calls expect, as unsigned.
        let socket = if socket < 0 {
            sys::SOCKET_ID_ANY
        } else {
            socket
        } as u32;
        for q in 0..n_rxq {
            // SAFETY: the port is configured with n_rxq queues; a NULL rxconf
            // selects the device defaults; pool is a live mbuf pool that this
            // Port keeps alive until close.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            })?;
        }
        for q in 0..n_txq {
            // SAFETY: as above, with n_txq TX queues and default txconf.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(port_id, q, txd, socket, std::ptr::null())
            })?;
        }
        g.owned_ports[port_id as usize] = true;
        g.live += 1;
        Ok(Port {
            inner: Arc::new(PortInner {
                id: port_id,
                n_rxq,
                n_txq,
                rss,
                state: Mutex::new(State {
                    started: false,
                    closed: false,
                    pool: Some(pool.clone()),
                    rx_claimed: vec![false; n_rxq as usize],
                    tx_claimed: vec![false; n_txq as usize],
                }),
            }),
        })
    }

    /// The DPDK port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Configured (rx, tx) queue counts.
    pub fn queues(&self) -> (u16, u16) {
        (self.inner.n_rxq, self.inner.n_txq)
    }

    /// Whether RX is spread over the queues by RSS.
    pub fn rss_enabled(&self) -> bool {
        self.inner.rss
    }

    pub(super) fn inner(&self) -> &Arc<PortInner> {
        &self.inner
    }

    fn open(&self) -> Result<MutexGuard<'_, State>, DpdkError> {
        let s = self.inner.state();
        if s.closed {
            return Err(DpdkError::PortClosed(self.inner.id));
        }
        Ok(s)
    }

    fn busy(&mut self) -> Result<(), DpdkError> {
        // Only DpdkIo clones the Arc and &mut self rules out one being made
        // now. get_mut (unlike strong_count) synchronises with the last
        // DpdkIo's drop, so its final burst happens-before our stop.
        if Arc::get_mut(&mut self.inner).is_none() {
            return Err(DpdkError::PortBusy(self.inner.id));
        }
        Ok(())
    }

    pub fn start(&mut self) -> Result<(), DpdkError> {
        let mut s = self.open()?;
        if !s.started {
            // SAFETY: the port is configured, open and stopped.
            check("rte_eth_dev_start", unsafe {
                sys::rte_eth_dev_start(self.inner.id)
            })?;
            s.started = true;
        }
        Ok(())
    }

    /// Stop the port; fails with `PortBusy` while a `DpdkIo` still uses it.
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        self.busy()?;
        let mut s = self.open()?;
        self.inner.stop(&mut s)
    }

    /// Stop and close the port (flushing what PMDs such as net_pcap buffer);
    /// fails with `PortBusy` while a `DpdkIo` still uses it. Idempotent.
    pub fn close(&mut self) -> Result<(), DpdkError> {
        self.busy()?;
        let mut s = self.inner.state();
        self.inner.close(&mut s)
    }

    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), DpdkError> {
        let _s = self.open()?;
        let id = self.inner.id;
        if on {
            // SAFETY: the port is open.
            check("rte_eth_promiscuous_enable", unsafe {
                sys::rte_eth_promiscuous_enable(id)
            })
        } else {
            // SAFETY: the port is open.
            check("rte_eth_promiscuous_disable", unsafe {
                sys::rte_eth_promiscuous_disable(id)
            })
        }
    }

    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let _s = self.open()?;
        let mut addr = sys::rte_ether_addr::default();
        // SAFETY: the port is open and addr a valid out pointer.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(self.inner.id, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    pub fn info(&self) -> Result<PortInfo, DpdkError> {
        let _s = self.open()?;
        let info = dev_info(self.inner.id)?;
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-NULL driver_name is the PMD's static C string.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            rss_offloads: info.flow_type_rss_offloads,
        })
    }

    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let _s = self.open()?;
        let mut mtu = 0u16;
        // SAFETY: the port is open and mtu a valid out pointer.
        check("rte_eth_dev_get_mtu", unsafe {
            sys::rte_eth_dev_get_mtu(self.inner.id, &mut mtu)
        })?;
        Ok(mtu)
    }

    pub fn stats(&self) -> Result<PortCounters, DpdkError> {
        let _s = self.open()?;
        let mut st = sys::rte_eth_stats::default();
        // SAFETY: the port is open and st a valid out pointer.
        check("rte_eth_stats_get", unsafe {
            sys::rte_eth_stats_get(self.inner.id, &mut st)
        })?;
        Ok(PortCounters {
            ipackets: st.ipackets,
            opackets: st.opackets,
            ibytes: st.ibytes,
            obytes: st.obytes,
            imissed: st.imissed,
            ierrors: st.ierrors,
            oerrors: st.oerrors,
            rx_nombuf: st.rx_nombuf,
        })
    }

    /// Link status without waiting for autonegotiation.
    pub fn link_up(&self) -> Result<bool, DpdkError> {
        let _s = self.open()?;
        let mut link = sys::rte_eth_link::default();
        // SAFETY: the port is open and link a valid out pointer.
        check("rte_eth_link_get_nowait", unsafe {
            sys::rte_eth_link_get_nowait(self.inner.id, &mut link)
        })?;
        Ok(link.link_status() != 0)
    }
}
