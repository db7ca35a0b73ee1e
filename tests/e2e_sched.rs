//! End to end, schedulers: real kernel TCP clients through rvsd in network
//! namespaces, checking who answers.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::topo::{curl_from, Rvsd, Topology};
use serde_json::json;

fn who(topo: &Topology) -> String {
    curl_from(&topo.client_ns(), "http://10.0.0.100/")
        .expect("request through the VIP")
        .trim()
        .to_string()
}

/// `n` TCP connections from the client to the VIP, held open until drop.
struct HeldConns(Child);

impl HeldConns {
    fn open(topo: &Topology, n: usize) -> HeldConns {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "python3", "-c"])
            .arg(format!(
                "import socket,sys\nss=[socket.create_connection(('10.0.0.100',80),timeout=5) for _ in range({n})]\n\
                 print('ready',flush=True)\nsys.stdin.read()\n"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 client");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "held connections did not open");
        HeldConns(child)
    }
}

impl Drop for HeldConns {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// (ActiveConn, InActConn) of real server `rip` from `rvsadm -L -n`.
fn counts(rvsd: &Rvsd, rip: &str) -> (u32, u32) {
    let out = rvsd.rvsadm_ok(&["-L", "-n"]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("-> {rip}:")))
        .unwrap_or_else(|| panic!("{rip} not listed:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[4].parse().unwrap(), f[5].parse().unwrap())
}

/// Poll (bounded) until `cond` holds; the daemon's own state is the signal.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn lc_and_wlc_steer_new_connections_away_from_a_busy_server() {
    for sched in ["lc", "wlc"] {
        let topo = Topology::up_unique();
        let mut cfg = topo.default_config();
        cfg["timeouts"] = json!({"time_wait": 1, "close": 1, "close_wait": 1, "last_ack": 1});
        let rvsd = Rvsd::start(&topo, &cfg);
        rvsd.nat_service(sched, 1, 0);
        // rs1 is the only server with weight: it gets 8 long-lived connections.
        let held = HeldConns::open(&topo, 8);
        // The clients are connected; the last handshake's ACK may still be
        // on its way through the director.
        wait_for(
            &format!("{sched}: 8 ESTABLISHED on rs1"),
            Duration::from_secs(10),
            || counts(&rvsd, "10.0.1.11") == (8, 0),
        );
        rvsd.rvsadm_ok(&[
            "-e",
            "-t",
            "10.0.0.100:80",
            "-r",
            "10.0.1.12:80",
            "-m",
            "-w",
            "1",
        ]);
        for i in 0..10 {
            assert_eq!(
                who(&topo),
                "rs2",
                "{sched}: request {i} must avoid busy rs1"
            );
        }
        assert_eq!(counts(&rvsd, "10.0.1.11").0, 8);
        // The held connections close: ActiveConn returns to 0, and once the
        // short closing timeouts pass the entries are gone.
        drop(held);
        wait_for("rs1 ActiveConn 0", Duration::from_secs(10), || {
            counts(&rvsd, "10.0.1.11").0 == 0
        });
        wait_for("rs1 entries expired", Duration::from_secs(15), || {
            counts(&rvsd, "10.0.1.11") == (0, 0)
        });
    }
}

#[test]
fn persistence_holds_across_separate_clients_runs_and_expires() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["timeouts"] = json!({"time_wait": 1, "close": 1, "close_wait": 1, "last_ack": 1, "syn_recv": 1, "tcpfin": 1});
    let rvsd = Rvsd::start(&topo, &cfg);
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", "rr", "-p", "2"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80", "-m"]);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("TCP  10.0.0.100:80 rr persistent 2\n"),
        "{list}"
    );
    // Separate curl processes, separate connections: one server.
    let first = who(&topo);
    for _ in 0..5 {
        assert_eq!(who(&topo), first, "persistent client moved");
    }
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(
        conns.contains("NONE        10.0.0.2:0         10.0.0.100:80"),
        "template listed:\n{conns}"
    );
    // When the connections and then the template have expired, rr moves on.
    // (A template that comes due while a connection it controls still
    // lives is re-armed for 60 s: the bound is a hang guard above that.)
    wait_for("the template to expire", Duration::from_secs(90), || {
        rvsd.rvsadm_ok(&["-L", "-n", "-c"]).lines().count() == 2
    });
    let next = who(&topo);
    assert_ne!(next, first, "a fresh pick after expiry");
}

#[test]
fn sh_and_mh_send_every_connection_of_a_client_to_one_server() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", "sh", "-b", "sh-fallback"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80", "-m"]);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("TCP  10.0.0.100:80 sh (sh-fallback)\n"),
        "{list}"
    );
    let first = who(&topo);
    for _ in 0..15 {
        assert_eq!(who(&topo), first, "sh moved the client");
    }
    // Quiescing that server: with sh-fallback the client moves to the other.
    let rip = if first == "rs1" {
        "10.0.1.11:80"
    } else {
        "10.0.1.12:80"
    };
    rvsd.rvsadm_ok(&["-e", "-t", "10.0.0.100:80", "-r", rip, "-m", "-w", "0"]);
    let other = who(&topo);
    assert_ne!(other, first);
    for _ in 0..5 {
        assert_eq!(who(&topo), other);
    }
    // mh (Maglev) likewise pins the client.
    rvsd.rvsadm_ok(&["-E", "-t", "10.0.0.100:80", "-s", "mh"]);
    rvsd.rvsadm_ok(&["-e", "-t", "10.0.0.100:80", "-r", rip, "-m", "-w", "1"]);
    let m = who(&topo);
    for _ in 0..10 {
        assert_eq!(who(&topo), m, "mh moved the client");
    }
    let bad = rvsd.rvsadm(&["-E", "-t", "10.0.0.100:80", "-s", "fastest"]);
    // The kernel's -ENOENT, as ipvsadm prints it (libipvs ipvs_strerror).
    assert_eq!(
        (
            bad.status.code(),
            String::from_utf8_lossy(&bad.stderr).as_ref()
        ),
        (Some(255), "Scheduler or persistence engine not found\n")
    );
}
