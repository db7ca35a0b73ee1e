//! End to end: Debian's unmodified keepalived 2.2.7 (checker process only,
//! `-C`) manages rvs's table through `librvs_ipvs.so` and rvsd's IPVS
//! generic-netlink socket, exactly as it manages the kernel's: it adds its
//! virtual and real servers, removes a real server whose check fails
//! (TCP_CHECK, HTTP_GET with two urls, MISC_CHECK against the topology's
//! nginx real servers) or sets its weight to 0 (`inhibit_on_failure`) and
//! adds it back when it recovers, applies an edited
//! file on SIGHUP, and — killed — leaves the table as it was.
//!
//! keepalived runs in the director's namespace and probes the real servers
//! from its kernel (mgmt0, 10.0.1.250). The table as real `ipvsadm -Ln` and
//! `rvsadm -Ln` list it is the signal every wait polls for (bounded); the
//! bounds are generous and never a pass/fail threshold.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ipvs::{self, ipvsadm_ok, wait_for};
use common::topo::{self, Rvsd, Topology};

/// How long a state keepalived's checks must reach may take (its timing is
/// 1-2 s here; the bound only keeps a broken run from hanging).
const CHECK_BOUND: Duration = Duration::from_secs(60);

/// keepalived's checker running in the director's namespace; both its
/// processes SIGKILLed on drop (a panic included).
struct Keepalived {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
    checker_pid: PathBuf,
}

impl Keepalived {
    fn start(t: &Topology, conf_text: &str) -> Keepalived {
        let dir = &t.state_dir;
        let conf = dir.join("keepalived.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let log = dir.join("keepalived.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let checker_pid = dir.join("keepalived-checkers.pid");
        // -n: stay in the foreground (ip netns exec execs, so this child is
        // keepalived's parent process); -C: the checker process only; -l -D:
        // log to the console in detail; pid files of our own.
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.lb_ns(),
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-C",
            ])
            .arg("-f")
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-c")
            .arg(&checker_pid)
            .arg("-r")
            .arg(dir.join("keepalived-vrrp.pid"))
            .env("LD_PRELOAD", ipvs::preload_lib())
            .env("RVS_IPVS_SOCKET", ipvs::ipvs_socket(t))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn keepalived");
        Keepalived {
            child,
            conf,
            log,
            checker_pid,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn checker(&self) -> Option<u32> {
        std::fs::read_to_string(&self.checker_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn signal(pid: u32, sig: &str) {
        let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
    }

    /// SIGKILL, the checker first (so it cannot be told to clean up by its
    /// parent), then the parent; reaped.
    fn kill(&mut self) {
        if let Some(c) = self.checker() {
            Self::signal(c, "-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- keepalived log ----\n{}\n---- end ----", self.log());
        }
    }
}

/// The real servers `rvsadm -L -n` lists under service `svc` ("TCP
/// 10.0.0.100:80"), as "ip:port weight".
fn dests_of(listing: &str, svc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in listing.lines() {
        if l.starts_with("TCP") || l.starts_with("UDP") {
            inside = l.starts_with(&format!("{svc} "));
            continue;
        }
        if inside && l.trim_start().starts_with("->") {
            let f: Vec<&str> = l.split_whitespace().collect();
            out.push(format!("{} {}", f[1], f[3]));
        }
    }
    out
}

/// Waits (bounded by [`CHECK_BOUND`]) until `ipvsadm -Ln` (real, through
/// the library) and `rvsadm -Ln` agree and that listing satisfies `cond`;
/// on timeout, panics with both listings.
fn wait_listing(t: &Topology, rvsd: &Rvsd, what: &str, cond: impl Fn(&str) -> bool) {
    let last = std::cell::RefCell::new((String::new(), String::new()));
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(what, CHECK_BOUND, || {
            let a = ipvsadm_ok(t, &["-L", "-n"]);
            let b = rvsd.rvsadm_ok(&["-L", "-n"]);
            let done = a == b && cond(&b);
            *last.borrow_mut() = (a, b);
            done
        })
    }));
    if ok.is_err() {
        let (a, b) = last.into_inner();
        panic!("timed out waiting for {what}:\n--- ipvsadm\n{a}--- rvsadm\n{b}");
    }
}

fn curl_bodies(t: &Topology, url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            topo::curl_from(&t.client_ns(), url)
                .map(|b| b.trim().to_string())
                .unwrap_or_else(|e| format!("error: {e}"))
        })
        .collect()
}

const CONF: &str = r#"global_defs {
    router_id rvs_e2e
    script_user root
    enable_script_security
}

virtual_server 10.0.0.100 80 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.1.11 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }
    }
    real_server 10.0.1.12 80 {
        weight 1
        HTTP_GET {
            url {
                path /
                status_code 200
            }
            url {
                path /big
                status_code 200
            }
            connect_timeout 2
            retry 1
            delay_before_retry 1
        }
    }
}

virtual_server 10.0.0.100 8080 {
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 10.0.1.11 80 {
        weight 1
        inhibit_on_failure
        MISC_CHECK {
            misc_path "/usr/bin/curl -sf --max-time 2 -o /dev/null http://10.0.1.11/"
            misc_timeout 4
        }
    }
    real_server 10.0.1.12 80 {
        weight 1
        MISC_CHECK {
            misc_path "/usr/bin/curl -sf --max-time 2 -o /dev/null http://10.0.1.12/"
            misc_timeout 4
        }
    }
}
"#;

const VS80: &str = "TCP  10.0.0.100:80";
const VS8080: &str = "TCP  10.0.0.100:8080";

#[test]
fn keepalived_checkers_drive_rvs_through_failures_reload_and_kill() {
    let t = Topology::up_unique();
    let rvsd = ipvs::start_rvsd(&t, &t.default_config());
    let mut ka = Keepalived::start(&t, CONF);
    let all = vec!["10.0.1.11:80 1".to_string(), "10.0.1.12:80 1".to_string()];

    wait_listing(
        &t,
        &rvsd,
        "keepalived's services with both real servers",
        |l| dests_of(l, VS80) == all && dests_of(l, VS8080) == all,
    );
    for url in ["http://10.0.0.100/", "http://10.0.0.100:8080/"] {
        let seen = curl_bodies(&t, url, 6);
        assert!(
            seen.contains(&"rs1".to_string()) && seen.contains(&"rs2".to_string()),
            "{url}: {seen:?}"
        );
    }

    // rs1 down: TCP_CHECK (port 80) and MISC_CHECK (port 8080) fail;
    // keepalived removes it from port 80 and, inhibit_on_failure, sets its
    // weight to 0 on port 8080; traffic goes to rs2 only.
    t.nginx_stop("rs1");
    let t0 = std::time::Instant::now();
    wait_listing(&t, &rvsd, "rs1 removed (80) and inhibited (8080)", |l| {
        dests_of(l, VS80) == ["10.0.1.12:80 1"]
            && dests_of(l, VS8080) == ["10.0.1.11:80 0", "10.0.1.12:80 1"]
    });
    eprintln!("rs1 out {:?} after its nginx stopped", t0.elapsed());
    for url in ["http://10.0.0.100/", "http://10.0.0.100:8080/"] {
        let seen = curl_bodies(&t, url, 6);
        assert!(seen.iter().all(|b| b == "rs2"), "{url}: {seen:?}");
    }
    t.nginx_start("rs1");
    let t0 = std::time::Instant::now();
    wait_listing(&t, &rvsd, "rs1 back", |l| {
        dests_of(l, VS80) == all && dests_of(l, VS8080) == all
    });
    eprintln!("rs1 back {:?} after its nginx started", t0.elapsed());
    let seen = curl_bodies(&t, "http://10.0.0.100/", 6);
    assert!(seen.contains(&"rs1".to_string()), "{seen:?}");

    // rs2 down: HTTP_GET (both urls) and MISC_CHECK fail.
    t.nginx_stop("rs2");
    wait_listing(&t, &rvsd, "rs2 removed by HTTP_GET and MISC_CHECK", |l| {
        dests_of(l, VS80) == ["10.0.1.11:80 1"] && dests_of(l, VS8080) == ["10.0.1.11:80 1"]
    });
    let seen = curl_bodies(&t, "http://10.0.0.100:8080/", 6);
    assert!(seen.iter().all(|b| b == "rs1"), "{seen:?}");
    t.nginx_start("rs2");
    wait_listing(&t, &rvsd, "rs2 back", |l| {
        dests_of(l, VS80) == all && dests_of(l, VS8080) == all
    });

    // SIGHUP with an edited file: port 80 becomes wlc, rs1 weight 3.
    let edited = CONF
        .replacen("lb_algo rr", "lb_algo wlc", 1)
        .replacen("weight 1", "weight 3", 1);
    std::fs::write(&ka.conf, edited).unwrap();
    Keepalived::signal(ka.child.id(), "-HUP");
    let t0 = std::time::Instant::now();
    wait_listing(&t, &rvsd, "the edit applied after SIGHUP", |l| {
        l.contains(&format!("{VS80} wlc\n"))
            && dests_of(l, VS80) == ["10.0.1.11:80 3", "10.0.1.12:80 1"]
            && dests_of(l, VS8080) == all
    });
    eprintln!("SIGHUP edit applied after {:?}", t0.elapsed());

    // Killed, keepalived leaves the table as it was, and traffic flows.
    let before = rvsd.rvsadm_ok(&["-S", "-n"]);
    ka.kill();
    let after = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert_eq!(before, after);
    assert_eq!(ipvsadm_ok(&t, &["-S", "-n"]), after);
    let seen = curl_bodies(&t, "http://10.0.0.100/", 4);
    assert!(seen.iter().all(|b| b == "rs1" || b == "rs2"), "{seen:?}");
    assert!(
        ka.log().contains("Initializing ipvs"),
        "keepalived used IPVS:\n{}",
        ka.log()
    );
}

/// Seed article 004's virtual_server block, verbatim but for its
/// sorry_server line (127.0.0.1 is no usable real server address for
/// rvs; keepalived adds a sorry server as an ordinary real server once all
/// others are down, which rvs would refuse). Its real servers 10.0.0.11/12
/// do not exist here, so keepalived adds them, its TCP_CHECKs fail, and it
/// removes them: the whole cycle, in both listings.
const SEED_004: &str = "virtual_server 10.0.0.100 80 {
delay_loop 6
lb_algo wlc
lb_kind DR
persistence_timeout 50
persistence_granularity 255.255.255.0
protocol TCP
real_server 10.0.0.11 80 {
weight 100
TCP_CHECK {
connect_timeout 3
nb_get_retry 3
delay_before_retry 2
connect_port 80
}
}
real_server 10.0.0.12 80 {
weight 100
TCP_CHECK {
connect_timeout 3
nb_get_retry 3
delay_before_retry 2
connect_port 80
}
}
}
";

#[test]
fn seed_004_virtual_server_block() {
    let t = Topology::up_unique();
    let rvsd = ipvs::start_rvsd(&t, &t.default_config());
    let _ka = Keepalived::start(&t, SEED_004);
    // Added: wlc, persistence 50 s with a /24 granularity, DR, weight 100.
    wait_for("seed 004's service", CHECK_BOUND, || {
        let s = rvsd.rvsadm_ok(&["-S", "-n"]);
        s.starts_with("-A -t 10.0.0.100:80 -s wlc -p 50 -M 255.255.255.0\n")
            && ipvsadm_ok(&t, &["-S", "-n"]) == s
    });
    // Its real servers are unreachable from the director: removed.
    wait_listing(
        &t,
        &rvsd,
        "both real servers removed after failed TCP_CHECKs",
        |l| {
            l.contains("TCP  10.0.0.100:80 wlc persistent 50 mask 255.255.255.0\n")
                && dests_of(l, VS80).is_empty()
        },
    );
}
