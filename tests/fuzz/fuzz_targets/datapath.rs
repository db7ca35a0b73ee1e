//! Fuzz target `datapath`: see `rvs_fuzz::harness::datapath` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(s) = rvs_fuzz::harness::datapath(data) {
        s.recycle();
    }
});
