//! Fuzz target `control`: see `rvs_fuzz::harness::control` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rvs_fuzz::harness::control(data);
});
