//! What outlives a snapshot: each service's and real server's live state
//! (connection counts, overload, traffic, rates), and the lock-free id maps
//! through which the connection table refers to them without pointers.
//! Below both the schedulers (which pick among [`Dest`]s) and the service
//! table (which holds them), so the two never import each other in a
//! circle.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

pub mod rates;

use crate::flow::{DestKey, Forward, ServiceKey, Tunnel};
pub use rates::{Estimator, Rates, TrafficCounters, TrafficStats, INTERVAL};

/// Live state of a real server that outlives snapshots: connection counts the
/// schedulers read, the overload flag, traffic counters.
#[derive(Debug, Default)]
pub struct DestState {
    /// Index in [`Ids::dests`]; connections refer to their server by it.
    pub id: u32,
    pub active: AtomicU32,
    pub inactive: AtomicU32,
    /// Persistence templates bound to this server (kernel counts them in
    /// `persistconns`).
    pub persist: AtomicU32,
    /// Set when the upper threshold was reached, cleared below the lower one
    /// (kernel IP_VS_DEST_F_OVERLOAD).
    pub overloaded: AtomicBool,
    /// Upper and lower connection thresholds (`-x`, `-y`); 0 = none.
    pub u_threshold: AtomicU32,
    pub l_threshold: AtomicU32,
    /// The latest non-zero weight (kernel `dest->last_weight`, set on add
    /// and on every edit to a non-zero weight): mh keeps a quiesced
    /// (weight 0) server's table slots so that draining it moves no other
    /// client.
    pub last_weight: AtomicU32,
    pub traffic: TrafficCounters,
    /// Rate estimator over `traffic` (ipvsadm --rate).
    pub est: Estimator,
    /// The encapsulation for TUN, packed: read it with
    /// [`DestState::tunnel`], write it with [`DestState::set_tunnel`].
    pub tun_packed: AtomicU32,
}

impl DestState {
    /// The encapsulation the data path gives this server's TUN packets.
    #[inline]
    pub fn tunnel(&self) -> Tunnel {
        Tunnel::unpack(self.tun_packed.load(Relaxed))
    }
    /// Set by the control plane on every snapshot build.
    pub fn set_tunnel(&self, t: Tunnel) {
        self.tun_packed.store(t.pack(), Relaxed);
    }

    /// The kernel's `ip_vs_dest_conn_overhead`: (active << 8) + inactive.
    pub fn overhead(&self) -> u32 {
        (self.active.load(Relaxed) << 8).wrapping_add(self.inactive.load(Relaxed))
    }
    /// ActiveConn + InActConn (persistence templates do not count).
    pub fn total_conns(&self) -> u32 {
        self.active.load(Relaxed) + self.inactive.load(Relaxed)
    }

    /// After a connection or template was bound (kernel end of
    /// `ip_vs_bind_dest`): reaching the upper threshold overloads the server.
    pub fn check_overload_on_bind(&self) {
        let u = self.u_threshold.load(Relaxed);
        if u != 0 && self.total_conns() >= u {
            self.overloaded.store(true, Relaxed);
        }
    }

    /// After a connection or template was unbound (kernel end of
    /// `ip_vs_unbind_dest`): below the lower threshold (or 3/4 of the upper
    /// one when no lower is set, or always without thresholds) it recovers.
    pub fn check_overload_on_unbind(&self) {
        let (u, l) = (
            self.u_threshold.load(Relaxed),
            self.l_threshold.load(Relaxed),
        );
        let total = self.total_conns() as u64;
        let clear = if l != 0 {
            total < l as u64
        } else if u != 0 {
            total * 4 < u as u64 * 3
        } else {
            true
        };
        if clear {
            self.overloaded.store(false, Relaxed);
        }
    }

    /// New thresholds from an add or edit (kernel `__ip_vs_update_dest`).
    pub(super) fn set_thresholds(&self, u: u32, l: u32) {
        if u == 0 || u > self.u_threshold.load(Relaxed) {
            self.overloaded.store(false, Relaxed);
        }
        self.u_threshold.store(u, Relaxed);
        self.l_threshold.store(l, Relaxed);
    }
}

/// A real server in a snapshot.
#[derive(Clone, Debug)]
pub struct Dest {
    pub ip: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub fwd: Forward,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub state: Arc<DestState>,
}

impl Dest {
    /// Usable for new connections: positive weight and not overloaded.
    #[inline]
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.state.overloaded.load(Relaxed)
    }
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// Live state of a service that outlives snapshots.
#[derive(Debug, Default)]
pub struct ServiceState {
    /// Index in [`Ids::services`].
    pub id: u32,
    pub traffic: TrafficCounters,
    /// Rate estimator over `traffic` (ipvsadm --rate).
    pub est: Estimator,
}

/// An append-only map from dense `u32` ids to `Arc<T>` whose reads take no
/// lock: chunks of slots that are each set once ([`OnceLock`]). The
/// connection table stores ids (4 bytes) instead of pointers, and workers
/// resolve them here without touching a reference count.
pub struct IdVec<T> {
    chunks: Box<[OnceLock<IdChunk<T>>]>,
    next: parking_lot::Mutex<u32>,
}

type IdChunk<T> = Box<[OnceLock<Arc<T>>]>;

const ID_CHUNK: usize = 1024;
/// At most this many distinct services, and as many real servers, can be
/// configured over a daemon's life.
pub const MAX_IDS: usize = 1 << 20;

impl<T> Default for IdVec<T> {
    fn default() -> Self {
        IdVec {
            chunks: (0..MAX_IDS / ID_CHUNK).map(|_| OnceLock::new()).collect(),
            next: parking_lot::Mutex::new(0),
        }
    }
}

impl<T> IdVec<T> {
    #[inline]
    pub fn get(&self, id: u32) -> Option<&Arc<T>> {
        let id = id as usize;
        self.chunks.get(id / ID_CHUNK)?.get()?[id % ID_CHUNK].get()
    }
    /// Append `make(id)`; None once [`MAX_IDS`] are used.
    pub fn push(&self, make: impl FnOnce(u32) -> T) -> Option<Arc<T>> {
        let mut next = self.next.lock();
        let id = *next as usize;
        let chunk = self.chunks.get(id / ID_CHUNK)?;
        let slots = chunk.get_or_init(|| (0..ID_CHUNK).map(|_| OnceLock::new()).collect());
        let v = Arc::new(make(id as u32));
        let _ = slots[id % ID_CHUNK].set(v.clone());
        *next += 1;
        Some(v)
    }
    pub fn len(&self) -> usize {
        *self.next.lock() as usize
    }
    /// Forget every entry, keeping the chunks allocated; ids start at 0
    /// again.
    pub fn reset(&mut self) {
        let next = *self.next.get_mut() as usize;
        for (i, chunk) in self.chunks[..next.div_ceil(ID_CHUNK)]
            .iter_mut()
            .enumerate()
        {
            if let Some(slots) = chunk.get_mut() {
                let set = (next - i * ID_CHUNK).min(ID_CHUNK);
                slots[..set].iter_mut().for_each(|s| drop(s.take()));
            }
        }
        *self.next.get_mut() = 0;
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> fmt::Debug for IdVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdVec").field("len", &self.len()).finish()
    }
}

/// Every service and real server the daemon has known, by id. A key seen
/// again (a real server deleted and added back) gets its old state back,
/// as the kernel takes a deleted destination back from its trash: live
/// connections still count in ActiveConn/InActConn, traffic starts at zero.
/// So the ids in use are bounded by the distinct keys ever configured.
#[derive(Debug, Default)]
pub struct Ids {
    pub dests: IdVec<DestState>,
    pub services: IdVec<ServiceState>,
    by_key: parking_lot::Mutex<(HashMap<ServiceKey, u32>, HashMap<DestKey, u32>)>,
}

impl Ids {
    /// Forget every service and real server (see [`IdVec::reset`]).
    pub fn reset(&mut self) {
        self.dests.reset();
        self.services.reset();
        let m = self.by_key.get_mut();
        m.0.clear();
        m.1.clear();
    }
    pub(super) fn service(&self, key: ServiceKey) -> Option<(Arc<ServiceState>, bool)> {
        let mut m = self.by_key.lock();
        if let Some(&id) = m.0.get(&key) {
            return Some((self.services.get(id)?.clone(), false));
        }
        let s = self.services.push(|id| ServiceState {
            id,
            ..Default::default()
        })?;
        m.0.insert(key, s.id);
        Some((s, true))
    }
    pub(super) fn dest(&self, key: DestKey) -> Option<(Arc<DestState>, bool)> {
        let mut m = self.by_key.lock();
        if let Some(&id) = m.1.get(&key) {
            return Some((self.dests.get(id)?.clone(), false));
        }
        let d = self.dests.push(|id| DestState {
            id,
            ..Default::default()
        })?;
        m.1.insert(key, d.id);
        Some((d, true))
    }
}
