//! What the rvs fuzz targets do with one input, as a library: the libFuzzer
//! targets in `fuzz_targets/` are one-line wrappers around `harness` and
//! `tables`, the
//! seed generator (`examples/seeds.rs`) drives the same code, and the stable
//! test `tests/fuzz_corpus.rs` of the main crate replays the committed seeds
//! and every past finding through it without libFuzzer.

/// The in-memory director of the integration tests (`tests/common/rig.rs`),
/// shared rather than copied so both follow the library's constructors.
#[allow(dead_code)]
#[path = "../../common/rig.rs"]
pub mod rig;

pub mod harness;
pub mod tables;
