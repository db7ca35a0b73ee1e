//! Fuzz target `region`: see `rvs_fuzz::harness::region` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rvs_fuzz::harness::region(data);
});
