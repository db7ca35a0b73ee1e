//! Forwarding modes: each rewrites (or wraps) the IP packet of a frame for
//! one direction of a connection. Mode code never routes, frees or
//! transmits; the data path does that with the verdict.

pub mod dr;
pub mod fullnat;
pub mod icmp;
pub mod nat;
pub mod tun;
