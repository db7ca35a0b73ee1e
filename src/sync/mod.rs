//! Connection synchronisation (the kernel's IPVS sync daemon, see
//! `proto`).
pub mod proto;
