//! Fuzz target `region`: see `rvs_fuzz::tables::region` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rvs_fuzz::tables::region(data);
});
