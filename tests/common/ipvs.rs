//! Real `ipvsadm` and `keepalived` against rvsd through `librvs_ipvs.so`
//! (the preload crate, `preload/`): rvsd started with an IPVS netlink
//! socket in the topology's state directory, and the programs run with
//! `LD_PRELOAD` and `RVS_IPVS_SOCKET` pointing at it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::topo::{describe, run_with_timeout, Rvsd, Topology, CMD_TIMEOUT, RVSD_BIN};

/// `librvs_ipvs.so`, built next to the binaries (`cargo build --workspace`
/// or `cargo build -p rvs-ipvs-preload`).
pub fn preload_lib() -> PathBuf {
    let lib = Path::new(RVSD_BIN)
        .parent()
        .expect("binary directory")
        .join("librvs_ipvs.so");
    // Test builds do not produce a cdylib: tests/run.sh builds it first.
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it with `cargo build -p rvs-ipvs-preload` \
                 (tests/run.sh does)",
                lib.display()
            )
        });
    // A library older than its sources would test old code: refuse it.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload/src");
    for f in std::fs::read_dir(&src).expect("preload/src") {
        let f = f.unwrap().path();
        let changed = std::fs::metadata(&f).unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `cargo build -p rvs-ipvs-preload`",
            lib.display(),
            f.display()
        );
    }
    lib
}

/// rvsd serving its IPVS netlink socket at [`ipvs_socket`]: started through
/// a two-line wrapper that adds `--ipvs-socket`, so the shared [`Rvsd`]
/// harness (readiness, logs, clean stop) is reused as it is.
pub fn start_rvsd(topo: &Topology, config: &Value) -> Rvsd {
    let wrapper = topo.state_dir.join("rvsd-ipvs.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} --ipvs-socket {} \"$@\"\n",
            RVSD_BIN,
            ipvs_socket(topo).display()
        ),
    )
    .expect("write the rvsd wrapper");
    let _ = Command::new("chmod").arg("+x").arg(&wrapper).status();
    let rvsd = Rvsd::start_bin(&wrapper, topo, config);
    assert!(
        ipvs_socket(topo).exists(),
        "rvsd did not create its IPVS socket; log:\n{}",
        rvsd.log()
    );
    rvsd
}

pub fn ipvs_socket(topo: &Topology) -> PathBuf {
    topo.state_dir.join("ipvs.sock")
}

/// `ipvsadm ARGS` (Debian's binary) through the preload library.
pub fn ipvsadm<S: AsRef<str>>(topo: &Topology, args: &[S]) -> Output {
    let mut cmd = Command::new("ipvsadm");
    cmd.args(args.iter().map(AsRef::as_ref))
        .env("LD_PRELOAD", preload_lib())
        .env("RVS_IPVS_SOCKET", ipvs_socket(topo));
    run_with_timeout(&mut cmd, CMD_TIMEOUT)
}

/// [`ipvsadm`] that must succeed; its stdout.
pub fn ipvsadm_ok<S: AsRef<str>>(topo: &Topology, args: &[S]) -> String {
    let out = ipvsadm(topo, args);
    if !out.status.success() {
        let a: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        panic!("ipvsadm {a:?} failed: {}", describe(&out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
