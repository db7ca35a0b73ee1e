//! Least privilege, tested without a container engine: rvsd runs with its
//! capability bounding set cut down by `setpriv` (util-linux) and with device
//! nodes or mounts hidden by a private mount namespace (`unshare`), which is
//! what `docker/podman run --cap-drop ALL --cap-add ...` and leaving out
//! `--device`/`-v` do to a container. Checked both ways: with exactly the
//! documented permissions rvsd starts and serves, and without one of them it
//! stops before DPDK starts, naming what is missing and the flag that grants
//! it (not "no DPDK port named ...").

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use common::topo::{self, describe, run_with_timeout, Rvsd, Topology, RVSD_BIN};

/// Effective capability bits (linux/capability.h).
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;

/// A script that runs rvsd with only `caps` (setpriv syntax, e.g.
/// "+net_raw,+net_admin") in its bounding set, so root's effective set after
/// exec is exactly those. It execs, so its pid is rvsd's.
fn rvsd_with_only(dir: &Path, caps: &str) -> PathBuf {
    let path = dir.join(format!("rvsd-caps{}.sh", caps.replace([',', '+'], "_")));
    std::fs::write(
        &path,
        format!("#!/bin/sh\nexec setpriv --bounding-set -all,{caps} --inh-caps=-all -- {RVSD_BIN} \"$@\"\n"),
    )
    .expect("write wrapper");
    let status = Command::new("chmod").arg("+x").arg(&path).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "chmod {}",
        path.display()
    );
    path
}

fn write_config(dir: &Path, name: &str, config: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).expect("write config");
    path
}

/// Runs rvsd once with `prefix` in front of it (in namespace `ns`) and returns
/// its output; it must exit by itself, quickly, as the preflight stops it.
fn run_rvsd(ns: &str, prefix: &[&str], config: &Path, socket: &Path) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).args(prefix).arg(RVSD_BIN);
    cmd.arg("--config").arg(config).arg("--socket").arg(socket);
    run_with_timeout(&mut cmd, Duration::from_secs(30))
}

/// rvsd refused to start for the right reason: exit status 1, `expected` in
/// its message, and neither the EAL started nor the old misleading error.
fn assert_refused(out: &Output, expected: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    assert!(
        err.contains("missing permissions for the configured DPDK devices"),
        "{}",
        describe(out)
    );
    for e in expected {
        assert!(err.contains(e), "no {e:?} in: {}", describe(out));
    }
    assert!(!err.contains("no DPDK port named"), "{}", describe(out));
    assert!(!err.contains("EAL: "), "the EAL ran: {}", describe(out));
}

/// The effective capabilities of process `pid`.
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff line");
    u64::from_str_radix(hex.trim(), 16).expect("hex CapEff")
}

#[test]
fn af_packet_needs_exactly_net_raw_and_net_admin() {
    let topo = Topology::up_unique();
    let dir = topo.state_dir.clone();
    let config = write_config(&dir, "afp.json", &topo.default_config());
    let socket = dir.join("refused.sock");

    // What `--cap-drop ALL --cap-add NET_ADMIN` leaves: no CAP_NET_RAW.
    let out = run_rvsd(
        &topo.lb_ns(),
        &["setpriv", "--bounding-set", "-all,+net_admin", "--"],
        &config,
        &socket,
    );
    assert_refused(
        &out,
        &[
            "net_af_packet0 (iface=lb0)",
            "net_af_packet1 (iface=lb1)",
            "CAP_NET_RAW",
            "--cap-add NET_RAW",
        ],
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("CAP_NET_ADMIN"),
        "CAP_NET_ADMIN was there: {}",
        describe(&out)
    );
    // And the other way round.
    let out = run_rvsd(
        &topo.lb_ns(),
        &["setpriv", "--bounding-set", "-all,+net_raw", "--"],
        &config,
        &socket,
    );
    assert_refused(&out, &["CAP_NET_ADMIN", "--cap-add NET_ADMIN"]);

    // With exactly the two it starts, and balances real traffic.
    let bin = rvsd_with_only(&dir, "+net_raw,+net_admin");
    let rvsd = Rvsd::start_bin(&bin, &topo, &topo.default_config());
    assert_eq!(
        cap_eff(rvsd.pid()),
        CAP_NET_RAW | CAP_NET_ADMIN,
        "rvsd did not run with only CAP_NET_RAW and CAP_NET_ADMIN"
    );
    rvsd.nat_service("rr", 1, 1);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let body = topo::curl_from(&topo.client_ns(), "http://10.0.0.100/").unwrap();
        seen.push(body.trim().to_owned());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        ["rs1", "rs2"],
        "both real servers answer through rvsd"
    );
    let status = rvsd.stop().expect("rvsd stops on SIGTERM");
    assert!(status.success(), "rvsd exit status {status}");
}

#[test]
fn tap_needs_net_admin_and_dev_net_tun() {
    let topo = Topology::up_unique();
    let dir = topo.state_dir.clone();
    let mut eal = vec!["--no-pci".to_owned()];
    let mem = topo::eal_mem_args();
    if !mem.iter().any(|a| a == "--in-memory") {
        eal.extend(["--file-prefix".to_owned(), format!("{}tap", topo.name)]);
    }
    eal.extend(mem);
    eal.extend(["-l", "0", "--vdev", "net_tap0,iface=rvstap0"].map(String::from));
    let cfg = json!({
        "eal_args": eal,
        "ports": [{"device": "net_tap0", "ipv4": "10.9.0.1/24"}],
        "workers": [1],
        "idle_sleep_us": 50,
        "services": []
    });
    let config = write_config(&dir, "tap.json", &cfg);
    let socket = dir.join("refused.sock");

    // No CAP_NET_ADMIN (CAP_NET_RAW is no use to a TAP device).
    let out = run_rvsd(
        &topo.lb_ns(),
        &["setpriv", "--bounding-set", "-all,+net_raw", "--"],
        &config,
        &socket,
    );
    assert_refused(
        &out,
        &[
            "net_tap0 (iface=rvstap0)",
            "CAP_NET_ADMIN",
            "--cap-add NET_ADMIN",
        ],
    );
    // No /dev/net/tun: a container started without --device /dev/net/tun.
    let out = run_rvsd(
        &topo.lb_ns(),
        &[
            "unshare",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs rvs-no-tun /dev/net && exec \"$0\" \"$@\"",
        ],
        &config,
        &socket,
    );
    assert_refused(&out, &["/dev/net/tun", "--device /dev/net/tun"]);

    // With CAP_NET_ADMIN alone it creates the interface and runs.
    let bin = rvsd_with_only(&dir, "+net_admin");
    let rvsd = Rvsd::start_bin(&bin, &topo, &cfg);
    assert_eq!(cap_eff(rvsd.pid()), CAP_NET_ADMIN);
    let link = topo::ns_exec(&topo.lb_ns(), &["ip", "link", "show", "rvstap0"]);
    assert!(link.status.success(), "no rvstap0: {}", describe(&link));
    let status = rvsd.stop().expect("rvsd stops on SIGTERM");
    assert!(status.success(), "rvsd exit status {status}");
}

#[test]
fn hugepages_without_a_hugetlbfs_mount_are_named() {
    let name = topo::unique_name();
    let dir = std::env::temp_dir().join(format!("{name}-perm"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Hugepages from a mount: neither --in-memory nor --no-huge.
    let cfg = json!({
        "eal_args": ["--no-pci", "--file-prefix", name, "-l", "0", "--vdev", "net_null0"],
        "ports": [{"device": "net_null0", "ipv4": "10.9.0.1/24"}],
        "workers": [1],
        "services": []
    });
    let config = write_config(&dir, "null.json", &cfg);
    // A container without -v /dev/hugepages:/dev/hugepages: no hugetlbfs
    // mount in its mount namespace.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "sh",
        "-c",
        "awk '$3 == \"hugetlbfs\" {print $2}' /proc/self/mounts | \
         while read -r m; do umount -l \"$m\" || exit 1; done; exec \"$0\" \"$@\"",
        RVSD_BIN,
    ]);
    cmd.arg("--config").arg(&config);
    cmd.arg("--socket").arg(dir.join("refused.sock"));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert_refused(
        &out,
        &[
            "EAL memory (hugepages)",
            "no hugetlbfs is mounted",
            "-v /dev/hugepages:/dev/hugepages",
            "--in-memory",
        ],
    );
}
