//! What one datapath fuzz input costs, without libFuzzer or coverage
//! instrumentation: the time to set up (and recycle) a session alone, and
//! a whole run (set-up, records, finish), averaged over every file of a
//! directory run ROUNDS times. For work on the harness's speed:
//!
//!     cargo run --release --manifest-path tests/fuzz/Cargo.toml \
//!         --example cost -- [DIR (tests/fuzz/seeds/datapath)] [ROUNDS (200)]

use std::time::Instant;

use rvs_fuzz::harness::{datapath, DatapathInput, Session};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/datapath").into());
    let rounds: usize = args.next().map_or(200, |s| s.parse().expect("ROUNDS"));
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .filter(|d| !d.is_empty())
        .collect();
    let runs = (rounds * inputs.len()) as f64;
    let t = Instant::now();
    for _ in 0..rounds {
        for d in &inputs {
            let config = DatapathInput::decode(d).unwrap().config;
            Session::new(config).recycle();
        }
    }
    let setup = t.elapsed().as_secs_f64() / runs;
    let t = Instant::now();
    for _ in 0..rounds {
        for d in &inputs {
            if let Some(s) = datapath(d) {
                s.recycle();
            }
        }
    }
    let whole = t.elapsed().as_secs_f64() / runs;
    println!(
        "{} inputs x {rounds}: set-up {:.1} us, whole run {:.1} us",
        inputs.len(),
        setup * 1e6,
        whole * 1e6
    );
}
