//! The connection table: every packet of a tracked flow finds its
//! connection here, in either direction, from any worker, without a lock.
//!
//! # Layout
//! - **Slots**: one 64-byte cache line per connection, `max_connections` of
//!   them allocated (and faulted in, on transparent huge pages where the
//!   kernel allows) when the table is made. A slot is eight `AtomicU64`
//!   words; real servers and services are referred to by `u32` ids
//!   ([`crate::service::Ids`]), so a slot holds no pointer and no `Arc`.
//! - **Index**: an open-addressed array of 64-byte buckets of seven entries
//!   (`tag:32 | dir:1 | slot+1:31`) and an overflow count (F14 style: how
//!   many entries probed past this bucket, so a lookup stops at the first
//!   bucket nobody overflowed). Each connection is indexed under the
//!   client's key and, where replies pass the director (NAT, FULLNAT), the
//!   real server's. Entries are set and cleared with compare-and-swap. A
//!   worker's new connection may leave its reply entry to the end of the
//!   burst ([`Late`], late.rs), so that a burst's misses on those buckets
//!   overlap.
//! - **Reads** are seqlock-style: the control word (`W_CTL`: generation,
//!   flags, deadline) is read before and after the other words; a slot that
//!   was freed and reused in between has a new generation and the read is
//!   retried. All mutation of a live connection (state, timer, FULLNAT
//!   sequence data) is a compare-and-swap that includes the generation, so a
//!   stale snapshot can never change a reused slot.
//! - **Expiry**: a lazy timer wheel per worker (4096 ticks of 16 ms). A
//!   connection sits in its inserting worker's wheel at its deadline; when
//!   the tick passes, the worker ends it or, if packets pushed the deadline
//!   out, moves it on. A packet that brings the deadline *forward* (FIN,
//!   RST) moves it to the earlier tick. Each poll does a bounded amount of
//!   this work, so expiring millions of connections never stalls a worker.
//! - **Free slots**: each worker keeps the slots its expiry ended (up to
//!   65,536) and a run of never-used ones, under its wheel's lock, which its
//!   inserts and expiry take anyway; beyond those, a lock-free (tagged)
//!   stack and a cursor shared by all. A worker that finds none of its own
//!   and none shared takes one from another worker's. Inserts of the same
//!   client flow are serialised by a striped lock so a flow is never
//!   tracked twice.
//!
//! The state byte carries the INACTIVE and DEAD flags, so ActiveConn and
//! InActConn change exactly once per transition even when the two
//! directions of a flow race on different workers.

pub mod state;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{
    fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::{Mutex, RwLock};

use crate::flow::{ClientAddr, FlowKey, Forward, Proto};

use crate::live::{DestState, Ids, ServiceState};
pub use state::{Dir, State, TcpEvent, Timeouts};

mod fast;
mod free;
mod index;
mod keys;
mod late;
mod persist;
mod slot;
mod snapshot;
mod table;
mod templates;
mod wheel;

pub use fast::{Lookup, Plain};
use index::*;
pub use late::{Late, LATE_MAX};
use persist::clamp_max;
pub use persist::{check_file, PersistError, Prepared, Previous, Takeover, LAYOUT};
use slot::*;
pub use snapshot::*;
pub use table::*;
pub use templates::*;
use wheel::*;

/// Why a connection could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    #[error("connection table full")]
    Full,
    /// A connection's addresses must all be of one family (NAT64 is not
    /// there yet).
    #[error("a connection's addresses are of mixed families")]
    MixedFamily,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stress;
