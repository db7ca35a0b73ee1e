//! Smoke test for the benchmark: `rvs-bench --quick` runs every scenario
//! for a moment on DPDK virtual devices and writes JSON in which each
//! scenario moved frames. No time or rate thresholds: CI machines vary.
//! (rvs-bench is a subprocess: one EAL per process.)

use std::process::Command;

#[test]
fn rvs_bench_quick_produces_sane_json() {
    let out = std::env::temp_dir().join(format!("rvs-bench-smoke-{}.json", std::process::id()));
    let have_testpmd = Command::new("sh")
        .args(["-c", "command -v dpdk-testpmd"])
        .output()
        .is_ok_and(|o| o.status.success());
    let status = Command::new(env!("CARGO_BIN_EXE_rvs-bench"))
        .args(["--quick", "--flows", "1000", "--secs", "0.2", "--out"])
        .arg(&out)
        .args(["--testpmd", if have_testpmd { "dpdk-testpmd" } else { "" }])
        .status()
        .expect("run rvs-bench");
    assert!(status.success(), "rvs-bench --quick failed: {status}");
    let text = std::fs::read_to_string(&out).expect("results json");
    let _ = std::fs::remove_file(&out);
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["mode"], "quick");
    let mut names = Vec::new();
    for group in ["ceilings", "scenarios", "multi_worker"] {
        let items = v[group]
            .as_array()
            .unwrap_or_else(|| panic!("{group} missing"));
        assert!(!items.is_empty(), "{group} empty");
        for s in items {
            let mpps = s["mpps"].as_f64().unwrap_or(0.0);
            assert!(mpps > 0.0 && mpps.is_finite(), "{group}: {s}");
            names.push(s["name"].as_str().unwrap_or("").to_string());
        }
    }
    for want in [
        "nat_new_conn_syn",
        "nat_est_64",
        "nat_est_imix",
        "ring_noop_64",
        "null_noop_dpdkio",
        "preload_nat_est_64",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    if have_testpmd {
        assert!(names.iter().any(|n| n == "testpmd_5tswap"), "{names:?}");
    }
    for s in v["scenarios"].as_array().unwrap() {
        if s["name"].as_str().unwrap().starts_with("nat_") {
            assert_eq!(s["drops"], serde_json::json!({}), "no drops: {s}");
            assert!(s["latency"]["p50_ns"].as_u64().unwrap() > 0, "{s}");
        }
    }
}
