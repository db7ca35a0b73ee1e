//! A [`Ctx`] outside a worker: what it borrows, owned, for driving a
//! [`Dataplane`] on one thread (the packet-path bench, differential tests).

use std::cell::{Cell, RefCell};
use std::net::Ipv6Addr;
use std::sync::Arc;

use super::{ClientUpdate, Ctx, Dataplane};
use crate::conn::Timeouts;
use crate::neigh::{HopCache, NeighMap};
use crate::service::ServiceTable;
use crate::stats::{TrafficAcc, WorkerStats};

/// The per-worker cells a [`Ctx`] borrows, and the snapshots a poll loads
/// (taken when made: make a new one to see later changes).
pub struct Solo {
    pub ident: Cell<u16>,
    pub lport: Cell<u32>,
    pub traffic: RefCell<TrafficAcc>,
    pub update: Cell<Option<ClientUpdate>>,
    pub hops: HopCache,
    services: Arc<ServiceTable>,
    neigh: Arc<NeighMap>,
    neigh6: Arc<NeighMap<Ipv6Addr>>,
    timeouts: Timeouts,
}

impl Solo {
    pub fn new(dp: &Dataplane) -> Solo {
        Solo {
            ident: Cell::new(0),
            lport: Cell::new(0),
            traffic: RefCell::new(TrafficAcc::default()),
            update: Cell::new(None),
            hops: HopCache::default(),
            services: dp.table.load_full(),
            neigh: Arc::clone(&dp.neigh.snapshot()),
            neigh6: Arc::clone(&dp.neigh6.snapshot()),
            timeouts: dp.conns.timeouts(),
        }
    }

    /// The context of worker 0 of 1 at `now_ms`, counting into `stats`.
    pub fn cx<'a>(&'a self, stats: &'a WorkerStats, now_ms: u64) -> Ctx<'a> {
        Ctx {
            stats,
            ident: &self.ident,
            lport: &self.lport,
            worker: 0,
            n_workers: 1,
            now_ms,
            services: &self.services,
            timeouts: &self.timeouts,
            traffic: &self.traffic,
            update: &self.update,
            neigh: &self.neigh,
            neigh6: &self.neigh6,
            hops: &self.hops,
            late: None,
        }
    }
}
