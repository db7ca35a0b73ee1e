//! End to end, `rvsadm --import-keepalived` into a running rvsd: seed
//! article 004's keepalived.conf imports all but its loopback sorry server
//! (which IPVS would hand to the host's own stack); a real server with
//! several checkers (TCP_CHECK, HTTP_GET with two urls, MISC_CHECK) stays in
//! the rotation only while all of them pass, as keepalived's
//! update_svr_checker_state does, and a `misc_dynamic` MISC_CHECK sets its
//! weight from the exit code. Waits poll rvsadm's output (bounded).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::topo::{self, Rvsd, Topology};

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Real servers `rvsadm -L -n` lists (in the rotation), sorted.
fn addrs(rvsd: &Rvsd) -> Vec<String> {
    let mut v: Vec<String> = rvsd
        .rvsadm_ok(&["-L", "-n"])
        .lines()
        .filter(|l| l.trim_start().starts_with("-> ") && !l.contains("RemoteAddress"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

/// (state, checks) of `dest` in `rvsadm -L -n --health`.
fn health(rvsd: &Rvsd, dest: &str) -> (String, u64) {
    let out = rvsd.rvsadm_ok(&["-L", "-n", "--health"]);
    let f: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|f| f.get(2).map(String::as_str) == Some(dest))
        .unwrap_or_else(|| panic!("{dest} not in --health:\n{out}"));
    (f[4].clone(), f[5].parse().unwrap_or(0))
}

#[test]
fn seed_004_imports_without_its_loopback_sorry_server() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keepalived/seed004.conf");
    let out = rvsd.rvsadm(&["--import-keepalived", seed]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("sorry_server 127.0.0.1:80 is a loopback address"),
        "{err}"
    );
    assert!(err.contains("imported 1 virtual server(s)"), "{err}");
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    for want in [
        "-a -t 10.0.0.100:80 -r 10.0.0.11:80 -g -w 100",
        "-a -t 10.0.0.100:80 -r 10.0.0.12:80 -g -w 100",
    ] {
        assert!(saved.contains(want), "{want} not in:\n{saved}");
    }
    assert!(saved.contains("-s wlc -p 50"), "{saved}");

    // A sorry server at the director's own address (its data port's
    // 10.0.0.1): reported the same way, the rest imports.
    let kc = topo.state_dir.join("own-sorry.conf");
    std::fs::write(
        &kc,
        format!(
            "virtual_server 10.0.0.100 80 {{\n lb_kind NAT\n sorry_server {} 80\n real_server 10.0.1.11 80 {{\n }}\n}}\n",
            topo::LB0_IP
        ),
    )
    .unwrap();
    let out = rvsd.rvsadm(&["--import-keepalived", kc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("sorry_server 10.0.0.1:80 is the director's own address"),
        "{err}"
    );
    assert_eq!(addrs(&rvsd), ["10.0.1.11:80"]);
}

#[test]
fn every_checker_of_a_real_server_must_pass() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    let flag = topo.state_dir.join("rs2-ok");
    let script = topo.state_dir.join("check-rs2.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntest -e {}\n", flag.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(&flag, "").unwrap();
    let kc = topo.state_dir.join("keepalived.conf");
    std::fs::write(
        &kc,
        format!(
            "virtual_server 10.0.0.100 80 {{\n  delay_loop 1\n  lvs_sched rr\n  lvs_method NAT\n  connect_timeout 1\n  warmup 0\n\
             real_server 10.0.1.11 80 {{\n    TCP_CHECK {{\n    }}\n    HTTP_GET {{\n      url {{\n        path /\n      }}\n      url {{\n        path /no-such-page\n        status_code 404\n      }}\n    }}\n  }}\n\
             real_server 10.0.1.12 80 {{\n    TCP_CHECK {{\n    }}\n    MISC_CHECK {{\n      misc_path {}\n      misc_timeout 2\n    }}\n  }}\n}}\n",
            script.display()
        ),
    )
    .unwrap();
    let out = rvsd.rvsadm(&["--import-keepalived", kc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("0 keyword(s) not applied"), "{err}");
    wait_for(
        "both real servers checked up",
        Duration::from_secs(20),
        || {
            ["10.0.1.11:80", "10.0.1.12:80"]
                .iter()
                .all(|d| health(&rvsd, d).0 == "up" && health(&rvsd, d).1 >= 2)
        },
    );
    assert_eq!(addrs(&rvsd), ["10.0.1.11:80", "10.0.1.12:80"]);

    // rs2's MISC_CHECK fails (its TCP_CHECK still passes): rs2 leaves.
    std::fs::remove_file(&flag).unwrap();
    wait_for("rs2 to leave", Duration::from_secs(20), || {
        addrs(&rvsd) == ["10.0.1.11:80"]
    });
    for _ in 0..4 {
        let body = topo::curl_from(&topo.client_ns(), "http://10.0.0.100/").unwrap();
        assert_eq!(body.trim(), "rs1");
    }
    std::fs::write(&flag, "").unwrap();
    wait_for("rs2 to return", Duration::from_secs(20), || {
        addrs(&rvsd) == ["10.0.1.11:80", "10.0.1.12:80"]
    });

    // rs1's TCP_CHECK and both urls pass while nginx runs; stopped, it goes.
    topo.nginx_stop("rs1");
    wait_for("rs1 to leave", Duration::from_secs(20), || {
        addrs(&rvsd) == ["10.0.1.12:80"]
    });
    topo.nginx_start("rs1");
    wait_for("rs1 to return", Duration::from_secs(20), || {
        addrs(&rvsd) == ["10.0.1.11:80", "10.0.1.12:80"]
    });

    // misc_dynamic (check_misc.c): exit code 2..255 sets the weight to
    // code - 2, 0 restores the configured weight, 1 is down.
    let code = topo.state_dir.join("rs2-code");
    let dynamic = topo.state_dir.join("dynamic-rs2.sh");
    std::fs::write(
        &dynamic,
        format!("#!/bin/sh\nexit $(cat {})\n", code.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &dynamic,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(&code, "9\n").unwrap();
    std::fs::write(
        &kc,
        format!(
            "virtual_server 10.0.0.100 80 {{\n delay_loop 1\n lvs_sched wrr\n lvs_method NAT\n warmup 0\n\
             real_server 10.0.1.11 80 {{\n  weight 3\n }}\n\
             real_server 10.0.1.12 80 {{\n  weight 3\n  MISC_CHECK {{\n   misc_path {}\n   misc_dynamic\n  }}\n }}\n}}\n",
            dynamic.display()
        ),
    )
    .unwrap();
    let out = rvsd.rvsadm(&["--import-keepalived", kc.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let weight = |rvsd: &Rvsd| -> Option<u32> {
        rvsd.rvsadm_ok(&["-L", "-n"])
            .lines()
            .find(|l| l.contains("10.0.1.12:80"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
    };
    wait_for("rs2 at weight 9-2", Duration::from_secs(20), || {
        weight(&rvsd) == Some(7)
    });
    std::fs::write(&code, "0\n").unwrap();
    wait_for(
        "rs2 back at its configured weight",
        Duration::from_secs(20),
        || weight(&rvsd) == Some(3),
    );
    std::fs::write(&code, "1\n").unwrap();
    wait_for("rs2 to leave", Duration::from_secs(20), || {
        addrs(&rvsd) == ["10.0.1.11:80"]
    });
    // -S keeps the configured weight (operator intent).
    assert!(rvsd
        .rvsadm_ok(&["-S", "-n"])
        .contains("-a -t 10.0.0.100:80 -r 10.0.1.12:80 -m -w 3"));
}
