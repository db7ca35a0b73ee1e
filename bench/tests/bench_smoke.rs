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
        "nat_first_ack_64",
        "nat_est_64",
        "nat_est_imix",
        "ring_noop_64",
        "null_noop_dpdkio",
        "preload_nat_est_64",
        "dr_est_64",
        "tun_est_64",
        "fullnat_est_64",
        "synproxy_syn_64",
        "nat6_new_conn_syn",
        "nat6_est_64",
        "ring_noop6_64",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    if have_testpmd {
        assert!(names.iter().any(|n| n == "testpmd_5tswap"), "{names:?}");
    }
    for s in v["scenarios"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        if name.ends_with("_est_64") || name.starts_with("nat") || name.starts_with("synproxy_") {
            // Every frame forwarded (or, for the SYN proxy, answered).
            assert_eq!(s["drops"], serde_json::json!({}), "no drops: {s}");
            assert_eq!(s["tx_dropped"], 0, "{s}");
            assert!(s["latency"]["p50_ns"].as_u64().unwrap() > 0, "{s}");
        }
        if name == "nat_first_ack_64" {
            // Every flow's handshake completed before the established
            // traffic: all its connections are in ESTABLISHED.
            assert_eq!(s["established"], s["conns"], "{s}");
        }
        if name == "nat_first_ack_64" || name == "nat_est_64" {
            // None ended: all count in ActiveConn.
            assert_eq!(s["active_conns"], s["conns"], "{s}");
        }
        if name.starts_with("nat6_") {
            // The smallest IPv6 TCP frame: 14 + 40 + 20 bytes.
            assert_eq!(s["mean_frame_bytes"], 74.0, "{s}");
            assert_eq!(s["conns"], 1000, "{s}");
        }
        if name == "synproxy_syn_64" {
            assert!(
                s["syn_answered"].as_u64().unwrap() >= s["frames"].as_u64().unwrap(),
                "{s}"
            );
            assert_eq!(s["conns"], 0, "cookies keep no state: {s}");
        }
    }
}

/// rvs-tablebench's three measurements at tiny sizes: each reports
/// figures that make sense (every connection found, all expired).
#[test]
fn rvs_tablebench_quick_produces_sane_json() {
    let run = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_rvs-tablebench"))
            .args(args)
            .output()
            .expect("run rvs-tablebench");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("valid JSON")
    };
    let ops = run(&["ops", "--sizes", "1000,20000", "--lookups", "50000"]);
    let ops = ops["ops"].as_array().expect("ops");
    assert_eq!(ops.len(), 2);
    for o in ops {
        for k in [
            "lookup_mops",
            "insert_mops",
            "miss_mops",
            "fill_mops",
            "lookup_plain_burst_ns",
            "dependent_access_ns",
        ] {
            let v = o[k].as_f64().unwrap_or(0.0);
            assert!(v > 0.0 && v.is_finite(), "{k}: {o}");
        }
    }
    let mem = run(&["memory", "--n", "50000"]);
    assert_eq!(mem["memory"]["live"], 50000);
    assert!(mem["memory"]["bytes_per_conn"].as_f64().unwrap() > 0.0);
    for owner in ["creator", "fwd"] {
        let e = run(&["expiry", "--n", "20000", "--timeout", "1", "--owner", owner]);
        let e = &e["expiry"];
        assert_eq!(e["left"], 0, "everything expired: {e}");
        assert!(
            e["all_ended_ms"].as_u64().unwrap() >= e["last_deadline_ms"].as_u64().unwrap(),
            "{e}"
        );
        assert!(e["fwd_lookups"].as_u64().unwrap() > 0, "{e}");
    }
    let dir = std::env::temp_dir();
    let t = run(&[
        "takeover",
        "--sizes",
        "1000,3000",
        "--max",
        "5000",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let rows = t["takeover"].as_array().expect("takeover rows");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(
            r["adopted"], r["connections"],
            "every connection taken over: {r}"
        );
        assert!(r["gap_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// rvs-dpbench at a tiny size: it forwards (it checks that itself) and
/// reports a positive, finite cost per packet.
#[test]
fn rvs_dpbench_reports_a_cost_per_packet() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-dpbench"))
        .args(["--flows", "64", "--passes", "10", "--rounds", "2"])
        .output()
        .expect("run rvs-dpbench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let ns = v["ns_per_packet"].as_f64().unwrap_or(0.0);
    assert!(ns > 0.0 && ns.is_finite(), "{v}");
    assert_eq!(v["flows"], 64);
}
