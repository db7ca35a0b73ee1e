//! The data path's clock: milliseconds since the process started, monotonic.
//! Workers read it once per burst, never per packet.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process.
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}
