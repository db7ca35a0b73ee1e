//! Proves the e2e helpers themselves: tests/lib/topo.sh builds the NAT
//! topology, each real server's nginx answers with its own name, the
//! nginx-stop/start helpers work, and dropping the topology removes every
//! namespace and the state directory. Needs root; no rvsd involved.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use common::topo::{self, Rvsd, Topology, RS1_IP, RS2_IP, VIP};

#[test]
fn topology_up_serves_and_drop_cleans_up() {
    let name = topo::unique_name();
    let state_dir;
    {
        let t = Topology::up(&name);
        state_dir = t.state_dir.clone();
        assert_eq!(t.fact("VIP"), VIP);
        assert_eq!(t.fact("LB_NS"), t.lb_ns());
        assert_eq!(topo::namespaces_of(&name).len(), 5);
        assert!(state_dir.join("env").is_file());

        for (n, ip) in [(1, RS1_IP), (2, RS2_IP)] {
            let body = topo::curl_from(&t.rs_ns(n), &format!("http://{ip}/"))
                .unwrap_or_else(|e| panic!("rs{n}: {e}"));
            assert_eq!(body, format!("rs{n}\n"));
            let size = topo::ns_exec_ok(
                &t.rs_ns(n),
                &[
                    "curl",
                    "-sS",
                    "--max-time",
                    "5",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download}",
                    &format!("http://{ip}/big"),
                ],
            );
            assert_eq!(size, "102400", "rs{n} /big size");
        }

        // The director's ports belong to DPDK: no addresses on lb0/lb1.
        let addrs = topo::ns_exec_ok(&t.lb_ns(), &["ip", "-4", "-o", "addr", "show"]);
        assert!(!addrs.contains("lb0") && !addrs.contains("lb1"), "{addrs}");

        t.nginx_stop("rs1");
        assert!(topo::curl_from(&t.rs_ns(1), &format!("http://{RS1_IP}/")).is_err());
        t.nginx_start("rs1");
        assert_eq!(
            topo::curl_from(&t.rs_ns(1), &format!("http://{RS1_IP}/")).unwrap(),
            "rs1\n"
        );
    }
    assert_eq!(topo::namespaces_of(&name), Vec::<String>::new());
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
}

#[test]
fn eal_args_have_exactly_one_memory_mode() {
    let t_name = topo::unique_name();
    assert!(t_name.starts_with("rv"));
    let mem = topo::eal_mem_args();
    let in_memory = mem.iter().any(|a| a == "--in-memory");
    let no_huge = mem.iter().any(|a| a == "--no-huge");
    assert!(in_memory != no_huge, "{mem:?}");
}

#[test]
fn rvsd_dying_before_ready_fails_with_its_log() {
    let t = Topology::up_unique();
    let cfg = t.default_config();
    // /bin/sh rejects rvsd's options and exits at once, like a broken rvsd.
    let err = panic::catch_unwind(AssertUnwindSafe(|| {
        Rvsd::start_bin(Path::new("/bin/sh"), &t, &cfg)
    }))
    .err()
    .expect("start must fail");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("before it was ready"), "{msg}");
    let log = msg.split("log:\n").nth(1).unwrap_or("");
    assert!(
        !log.trim().is_empty(),
        "the panic should carry rvsd's output: {msg}"
    );
    let cfg_file = t.state_dir.join("rvsd0.json");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg_file).unwrap()).unwrap();
    assert_eq!(written, cfg);
}
