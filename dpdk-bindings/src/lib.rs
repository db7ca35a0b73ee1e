//! Raw bindings to the system DPDK (22.11): bindgen output over `wrapper.h`
//! plus the `rvs_*` C shim for static inline functions and TLS variables.
//!
//! Nothing here is safe to call directly; `rvs::dpdk` is the only user and
//! the only place that may wrap these in a safe API.

#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]
#![allow(dead_code, improper_ctypes, clippy::all)]
#![allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
