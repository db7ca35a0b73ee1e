//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod bird;
pub mod capture;
pub mod download;
pub mod ipvs;
pub mod load;
pub mod pcap;
pub mod rig;
pub mod topo;
