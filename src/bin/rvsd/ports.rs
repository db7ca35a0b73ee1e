//! The data ports as the control plane sees them (`PortView`): reports,
//! VIP ownership, route announcements, and the handover's stopping and
//! giving up of ports and connection table.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use rvs::config::VipOwnership;
use rvs::control::{MempoolReport, OwnershipView, PortReport, PortView};
use rvs::dpdk::{Mempool, Port};
use rvs::wire::MacAddr;

use super::handover;

/// The data ports as the control plane reports them, and what a handover
/// stops and gives up.
pub(crate) struct Ports {
    pub(crate) ports: Mutex<Vec<Port>>,
    pub(crate) info: Vec<(String, MacAddr, String)>,
    pub(crate) pool: Mempool,
    pub(crate) owned: Option<Arc<rvs::ownership::OwnedSet>>,
    pub(crate) twins: Mutex<Vec<Port>>,
    /// The packet workers, and what stops them (alone).
    pub(crate) workers: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    pub(crate) workers_stop: Arc<AtomicBool>,
    /// Stops the daemon.
    pub(crate) stop: Arc<AtomicBool>,
    /// Holds the connection table file's lock.
    pub(crate) takeover: Mutex<Option<rvs::conn::Takeover>>,
    /// Set when the successor did not confirm in time: the exit is then a
    /// failure (systemd's Restart=on-failure starts rvsd again, which takes
    /// the table file over).
    pub(crate) handover_failed: Arc<AtomicBool>,
    /// Set by `handover_done`: the successor runs (no STOPPING=1 then).
    pub(crate) handed_over: Arc<AtomicBool>,
    pub(crate) successors: Arc<handover::Successors>,
    pub(crate) announcer: Option<Arc<rvs::announce::Announcer>>,
}

/// How long a successor has between `handover` and `handover_done`.
const HANDOVER_LIMIT: Duration = Duration::from_secs(60);
/// After a handover, how long the old process's orderly exit may take.
const HANDOVER_EXIT_GRACE: Duration = Duration::from_secs(15);

impl PortView for Ports {
    fn ports(&self) -> Vec<PortReport> {
        let ports = self.ports.lock();
        ports
            .iter()
            .zip(&self.info)
            .map(|(p, (dev, mac, ip))| PortReport {
                device: dev.clone(),
                mac: mac.to_string(),
                ipv4: ip.clone(),
                counters: p.stats().unwrap_or_default(),
            })
            .collect()
    }

    fn mempools(&self) -> Vec<MempoolReport> {
        vec![MempoolReport {
            name: self.pool.name(),
            in_use: self.pool.in_use(),
            available: self.pool.available(),
        }]
    }

    fn start_successor(&self) -> std::result::Result<u32, String> {
        self.successors.start()
    }

    fn check_successor(&self, successor: u32) -> std::result::Result<(), String> {
        handover::check_successor(successor)
    }

    fn announce(&self) -> Option<rvs::announce::AnnounceView> {
        self.announcer.as_ref().map(|a| a.view())
    }

    fn drain(&self, on: bool) -> std::result::Result<(), String> {
        let a = self
            .announcer
            .as_ref()
            .ok_or("no route announcements configured (\"announce\" in the configuration)")?;
        a.set_draining(on);
        Ok(())
    }

    fn hand_over(&self, successor: u32) -> std::result::Result<u64, String> {
        // The guard first: if it cannot run, nothing has stopped. It ends
        // this process (as a failure, so systemd's Restart=on-failure
        // starts rvsd again, which takes the table file over) if the
        // successor dies or does not confirm in time.
        let (stop, failed, done) = (
            self.stop.clone(),
            self.handover_failed.clone(),
            self.handed_over.clone(),
        );
        std::thread::Builder::new()
            .name("rvs-handover".into())
            .spawn(move || {
                let until = std::time::Instant::now() + HANDOVER_LIMIT;
                let alive = || successor == 0 || handover::alive(successor);
                while !stop.load(Ordering::Relaxed) {
                    let why = if done.load(Ordering::Relaxed) {
                        None
                    } else if !alive() {
                        Some(format!("the successor (pid {successor}) died"))
                    } else if std::time::Instant::now() >= until {
                        Some(format!("no handover_done in {HANDOVER_LIMIT:?}"))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        log::error!("handover failed: {why}; exiting");
                        failed.store(true, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // The orderly exit has a while; then this process goes
                // anyway (a worker that never stopped must not keep a
                // director that forwards nothing alive).
                std::thread::sleep(HANDOVER_EXIT_GRACE);
                log::error!("handover: no orderly exit in {HANDOVER_EXIT_GRACE:?}; exiting now");
                std::process::exit(1);
            })
            .map_err(|e| e.to_string())?;
        if let Some(a) = &self.announcer {
            a.suspend();
        }
        let t0 = rvs::sys::boottime_ms();
        self.workers_stop.store(true, Ordering::Relaxed);
        let workers: Vec<_> = self.workers.lock().drain(..).collect();
        for h in workers {
            let _ = h.join();
        }
        let stopped = rvs::sys::boottime_ms();
        // af_packet ports stay open until this process exits: the
        // successor's sockets on the same interfaces already receive.
        for p in self
            .ports
            .lock()
            .iter_mut()
            .chain(self.twins.lock().iter_mut())
        {
            if p.info().is_ok_and(|i| i.driver == "net_af_packet") {
                continue;
            }
            if let Err(e) = p.close() {
                log::warn!("handover: closing port {}: {e}", p.id());
            }
        }
        let closed = rvs::sys::boottime_ms();
        drop(self.takeover.lock().take());
        log::info!(
            "handover to pid {successor}: workers stopped ({} ms), ports closed ({} ms), \
             connection table file released",
            stopped - t0,
            closed - stopped
        );
        Ok(stopped)
    }

    fn hand_over_done(&self) {
        log::info!("handover: the successor runs; exiting");
        self.handed_over.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn vip_ownership(&self) -> Option<OwnershipView> {
        Some(match &self.owned {
            None => OwnershipView {
                mode: VipOwnership::Always,
                on_twins: None,
            },
            Some(o) => {
                let mut on: Vec<IpAddr> = o.set.load().keys().copied().collect();
                on.sort();
                OwnershipView {
                    mode: VipOwnership::Kernel,
                    on_twins: Some(on),
                }
            }
        })
    }
}
