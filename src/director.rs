//! One way to assemble a director: the connection table, the workers'
//! counters, the control plane and the data path over its tables. rvsd,
//! the benchmarks, the test rig and the fuzz harness all build theirs here,
//! so a new part (a table, a handle the data path reads) is wired in once.
//!
//! ```
//! use rvs::director::Builder;
//! use rvs::neigh::PortAddr;
//!
//! let port = |mac: &str, cidr: &str| PortAddr {
//!     mac: mac.parse().unwrap(),
//!     cidr: cidr.parse().unwrap(),
//!     gateway: None,
//!     mtu: 1500,
//!     ipv6: None,
//!     gateway6: None,
//! };
//! let d = Builder::new()
//!     .max_connections(1000)
//!     .ports(vec![port("02:00:00:00:00:01", "10.0.0.1/24")])
//!     .build();
//! assert_eq!(d.ctl.local_ips, vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
//! assert!(d.dp.conns.is_empty());
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::conn::{ConnTable, Timeouts};
use crate::control::Control;
use crate::dataplane::Dataplane;
use crate::neigh::{NeighTable, PortAddr, Router};
use crate::ownership::Exception;
use crate::stats::WorkerStats;
use crate::synproxy::SynKey;

/// The parts of a running director.
pub struct Director {
    pub ctl: Arc<Control>,
    pub dp: Arc<Dataplane>,
}

impl Director {
    pub fn conns(&self) -> &Arc<ConnTable> {
        &self.ctl.conns
    }
    pub fn stats(&self) -> &Arc<[CachePadded<WorkerStats>]> {
        &self.ctl.workers
    }
}

/// What a director is built from. Defaults: one worker, 1 M connections,
/// the kernel's timeouts, a SYN-cookie key of fixed test value (rvsd sets
/// a random one), no kernel twins, every VIP owned.
pub struct Builder {
    max_connections: usize,
    conns: Option<Arc<ConnTable>>,
    workers: usize,
    timeouts: Option<Timeouts>,
    local_ips: Option<Vec<IpAddr>>,
    ports: Vec<PortAddr>,
    neigh: Arc<NeighTable>,
    syn_key: SynKey,
    exc: Exception,
    sloppy_tcp: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            max_connections: 1 << 20,
            conns: None,
            workers: 1,
            timeouts: None,
            local_ips: None,
            ports: Vec::new(),
            neigh: Arc::new(NeighTable::default()),
            syn_key: SynKey::new(0x5eed, 0xc00c1e),
            exc: Exception::default(),
            sloppy_tcp: false,
        }
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }
    /// Use this connection table (e.g. one on a file, `ConnTable::open_file`)
    /// instead of a new one of `max_connections`.
    pub fn conn_table(mut self, t: Arc<ConnTable>) -> Self {
        self.conns = Some(t);
        self
    }
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    pub fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = Some(t);
        self
    }
    /// The director's own addresses (never a VIP or real server). Default:
    /// the ports' addresses.
    pub fn local_ips(mut self, ips: Vec<IpAddr>) -> Self {
        self.local_ips = Some(ips);
        self
    }
    /// The data ports, in port-id order.
    pub fn ports(mut self, ports: Vec<PortAddr>) -> Self {
        self.ports = ports;
        self
    }
    /// A neighbour table to start from (benchmarks pre-learn theirs).
    pub fn neighbours(mut self, n: Arc<NeighTable>) -> Self {
        self.neigh = n;
        self
    }
    pub fn syn_key(mut self, k: SynKey) -> Self {
        self.syn_key = k;
        self
    }
    /// A TCP non-SYN without a connection opens one in `mh`/`sh` services
    /// (see `DaemonConfig::sloppy_tcp`).
    pub fn sloppy_tcp(mut self, on: bool) -> Self {
        self.sloppy_tcp = on;
        self
    }
    /// Kernel twins and VIP ownership.
    pub fn exception(mut self, e: Exception) -> Self {
        self.exc = e;
        self
    }

    /// The connection table, the workers' counters and the control plane,
    /// not yet shared: rvsd sets its state file, sync daemons and port
    /// view before the data path is made.
    pub fn control(&self) -> Control {
        let conns = match &self.conns {
            Some(t) => t.clone(),
            None => Arc::new(ConnTable::new(self.max_connections, self.workers)),
        };
        if let Some(t) = self.timeouts {
            conns.set_timeouts(t);
        }
        let stats: Arc<[CachePadded<WorkerStats>]> = (0..self.workers)
            .map(|_| CachePadded::new(WorkerStats::default()))
            .collect();
        let local = self
            .local_ips
            .clone()
            .unwrap_or_else(|| self.ports.iter().map(|p| IpAddr::V4(p.cidr.addr)).collect());
        Control::new(conns, stats, local)
    }

    /// The data path over `ctl`'s service and connection tables.
    pub fn dataplane(self, ctl: &Control) -> Dataplane {
        Dataplane {
            router: Router::new(self.ports),
            neigh: self.neigh,
            neigh6: Arc::new(NeighTable::default()),
            table: ctl.table.clone(),
            conns: ctl.conns.clone(),
            syn_key: self.syn_key,
            exc: self.exc,
            sloppy_tcp: self.sloppy_tcp,
        }
    }

    /// Control plane and data path, for users that need nothing between.
    pub fn build(self) -> Director {
        let ctl = Arc::new(self.control());
        let dp = Arc::new(self.dataplane(&ctl));
        Director { ctl, dp }
    }
}
