//! Raw bindings to the system DPDK. Placeholder until the bindgen build lands.
