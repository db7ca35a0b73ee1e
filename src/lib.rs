//! rvs — Rust Virtual Server: a kernel-bypass layer-4 load balancer on DPDK.
//!
//! Everything except `dpdk` is safe, pure Rust over byte slices and runs
//! without an EAL; `dpdk` is the one module that talks to `dpdk-sys`.
//! The fence is a compile-time fact: the crate denies `unsafe_code`, and
//! only `dpdk` is allowed it (every block there carries a `// SAFETY:`
//! comment, enforced by clippy's `undocumented_unsafe_blocks`).

#![deny(unsafe_code)]

pub mod adm;
pub mod announce;
pub mod clock;
pub mod config;
pub mod conn;
pub mod control;
pub mod dataplane;
pub mod director;
#[allow(unsafe_code)]
pub mod dpdk;
pub mod flow;
pub mod fwmark;
pub mod health;
pub mod io;
pub mod ipvs_nl;
pub mod keepalived;
pub mod live;
pub mod metrics;
pub mod neigh;
pub mod ownership;
pub mod prng;
pub mod sched;
pub mod sdnotify;
pub mod service;
pub mod siphash;
pub mod statefile;
pub mod stats;
pub mod sync;
pub mod synproxy;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;
pub mod worker;
pub mod xmit;
