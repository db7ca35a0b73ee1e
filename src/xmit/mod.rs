//! Forwarding modes: each rewrites the IP packet of a frame in place for one
//! direction of a connection. Mode code never routes, frees or transmits; the
//! data path does that with the verdict.

pub mod nat;
