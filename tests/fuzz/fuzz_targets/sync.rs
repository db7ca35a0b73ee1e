//! Fuzz target `sync`: see `rvs_fuzz::tables::sync` for what it runs and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rvs_fuzz::tables::sync(data);
});
