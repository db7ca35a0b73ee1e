//! End to end, health checks: rvsd probes the real servers from the
//! director's kernel (through the topology's management interface mgmt0,
//! 10.0.1.250), takes a failed server out of the rotation (removed or
//! quiesced), puts it back when it recovers, and lets the sorry server
//! answer while no real server is left. rvsadm's output is the signal every
//! wait polls for (bounded); nothing waits a fixed time for the daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::topo::{self, Rvsd, Topology};
use serde_json::{json, Value};

/// When a request started, and who answered (or why it failed).
type Outcome = (Instant, Result<String, String>);

const VIP_URL: &str = "http://10.0.0.100/";
/// The sorry server: an extra address on rs2's interface, python http.server.
const SORRY_IP: &str = "10.0.1.13";
const SORRY_PORT: u16 = 8081;

fn curl(topo: &Topology, max_time: &str) -> Result<String, String> {
    let out = topo::ns_exec(
        &topo.client_ns(),
        &["curl", "-sS", "--max-time", max_time, VIP_URL],
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(topo::describe(&out))
    }
}

/// (RemoteAddress:Port, Weight, ActiveConn) of every real server `rvsadm -L -n` lists.
fn listed(rvsd: &Rvsd) -> Vec<(String, u32, u32)> {
    rvsd.rvsadm_ok(&["-L", "-n"])
        .lines()
        .filter(|l| l.trim_start().starts_with("-> ") && !l.contains("RemoteAddress"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].to_string(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

fn addrs(rvsd: &Rvsd) -> Vec<String> {
    let mut v: Vec<String> = listed(rvsd).into_iter().map(|x| x.0).collect();
    v.sort();
    v
}

/// The `rvsadm -L -n --health` row of `dest`, split on whitespace.
fn health_row(rvsd: &Rvsd, dest: &str) -> Vec<String> {
    let out = rvsd.rvsadm_ok(&["-L", "-n", "--health"]);
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|f| f.get(2).map(String::as_str) == Some(dest))
        .unwrap_or_else(|| panic!("{dest} not in --health:\n{out}"))
}

/// Poll (bounded) until `cond` holds.
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

/// Who answers `n` requests (each must succeed).
fn answers(topo: &Topology, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| curl(topo, "3").unwrap_or_else(|e| panic!("request {i}: {e}")))
        .collect()
}

fn both_checked_up(rvsd: &Rvsd) -> bool {
    ["10.0.1.11:80", "10.0.1.12:80"].iter().all(|d| {
        let r = health_row(rvsd, d);
        r[4] == "up" && r[5].parse::<u64>().unwrap_or(0) >= 1
    })
}

/// python3 http.server answering "sorry" on SORRY_IP:SORRY_PORT in rs2's
/// namespace; stopped on drop.
struct SorryServer(Child);

impl SorryServer {
    fn start(topo: &Topology) -> SorryServer {
        let dir = topo.state_dir.join("sorry");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "sorry\n").unwrap();
        topo::ns_exec_ok(
            &topo.rs_ns(2),
            &[
                "ip",
                "addr",
                "add",
                &format!("{SORRY_IP}/32"),
                "dev",
                "eth0",
            ],
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topo.rs_ns(2),
                "python3",
                "-m",
                "http.server",
            ])
            .arg(SORRY_PORT.to_string())
            .args(["--bind", SORRY_IP, "--directory"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        let s = SorryServer(child);
        let url = format!("http://{SORRY_IP}:{SORRY_PORT}/");
        wait_for(
            "the sorry server to listen",
            Duration::from_secs(10),
            || topo::curl_from(&topo.rs_ns(2), &url).is_ok_and(|b| b == "sorry\n"),
        );
        s
    }
}

impl Drop for SorryServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service(health: Value, sorry: Option<Value>) -> Value {
    let mut s = json!({
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "health": health,
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]
    });
    if let Some(z) = sorry {
        s["sorry_server"] = z;
    }
    s
}

#[test]
fn failed_server_leaves_the_rotation_and_the_sorry_server_answers_when_none_is_left() {
    let topo = Topology::up_unique();
    let _sorry = SorryServer::start(&topo);
    let mut cfg = topo.default_config();
    cfg["services"] = json!([service(
        json!({"type": "http", "interval_ms": 500, "timeout_ms": 300, "retries": 2,
               "retry_delay_ms": 100}),
        Some(json!({"ip": SORRY_IP, "port": SORRY_PORT, "fwd": "nat"}))
    )]);
    let rvsd = Rvsd::start(&topo, &cfg);
    wait_for(
        "both real servers checked up",
        Duration::from_secs(10),
        || both_checked_up(&rvsd),
    );
    let mut who = answers(&topo, 6);
    who.sort();
    who.dedup();
    assert_eq!(who, ["rs1", "rs2"]);

    // A bounded request loop runs while rs1's nginx stops.
    let log: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let looper = {
        let (log, name) = (log.clone(), topo.client_ns());
        thread::spawn(move || {
            for _ in 0..60 {
                let t = Instant::now();
                let out = topo::ns_exec(&name, &["curl", "-sS", "--max-time", "3", VIP_URL]);
                let r = if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
                } else {
                    Err(topo::describe(&out))
                };
                log.lock().unwrap().push((t, r));
                thread::sleep(Duration::from_millis(100));
            }
        })
    };
    topo.nginx_stop("rs1");
    wait_for("rs1 to leave the rotation", Duration::from_secs(15), || {
        addrs(&rvsd) == ["10.0.1.12:80"]
    });
    let removed_at = Instant::now();
    looper.join().expect("request loop");
    let log = log.lock().unwrap();
    let after: Vec<&Result<String, String>> = log
        .iter()
        .filter(|(t, _)| *t >= removed_at)
        .map(|(_, r)| r)
        .collect();
    assert!(
        after.len() >= 5,
        "only {} of 60 requests after rs1 left (detection too slow?)",
        after.len()
    );
    for r in &after {
        assert_eq!(
            r.as_deref(),
            Ok("rs2"),
            "a request after rs1 left the rotation"
        );
    }
    // Operator intent is untouched: -S still saves rs1 with its weight.
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert!(
        saved.contains("-a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 1"),
        "{saved}"
    );
    let row = health_row(&rvsd, "10.0.1.11:80");
    assert_eq!(
        (row[3].as_str(), row[4].as_str()),
        ("http", "down"),
        "{row:?}"
    );
    assert!(row[8..].join(" ").contains("connect"), "{row:?}");
    let json: Value = serde_json::from_str(&rvsd.rvsadm_ok(&["-L", "-n", "--json"])).unwrap();
    assert_eq!(json[0]["dests"][0]["health"], "down");
    assert_eq!(json[0]["dests"][1]["health"], "up");

    // rs1 back: both answer again.
    topo.nginx_start("rs1");
    wait_for("rs1 to return", Duration::from_secs(15), || {
        addrs(&rvsd) == ["10.0.1.11:80", "10.0.1.12:80"]
    });
    let mut who = answers(&topo, 6);
    who.sort();
    who.dedup();
    assert_eq!(who, ["rs1", "rs2"]);

    // Both down: the sorry server is the only real server and answers.
    topo.nginx_stop("rs1");
    topo.nginx_stop("rs2");
    let sorry = format!("{SORRY_IP}:{SORRY_PORT}");
    wait_for("the sorry server alone", Duration::from_secs(15), || {
        addrs(&rvsd) == [sorry.clone()]
    });
    assert_eq!(listed(&rvsd)[0].1, 1, "the sorry server has weight 1");
    assert_eq!(answers(&topo, 4), ["sorry"; 4]);
    assert_eq!(health_row(&rvsd, &sorry)[4], "serving");

    // One recovers: the sorry server goes again.
    topo.nginx_start("rs2");
    wait_for(
        "rs2 to replace the sorry server",
        Duration::from_secs(15),
        || addrs(&rvsd) == ["10.0.1.12:80"],
    );
    assert_eq!(answers(&topo, 4), ["rs2"; 4]);

    let log = rvsd.log();
    for needle in [
        "real server 10.0.1.11:80 is DOWN",
        "real server 10.0.1.11:80 is UP",
        "sorry server 10.0.1.13:8081 in service",
        "sorry server 10.0.1.13:8081 out of service",
    ] {
        assert!(log.contains(needle), "{needle:?} not logged:\n{log}");
    }
}

/// `n` TCP connections to the VIP held open; `exchange` sends one HTTP
/// request on each and returns the bodies.
struct HeldConns(Child, BufReader<std::process::ChildStdout>);

impl HeldConns {
    fn open(topo: &Topology, n: usize) -> HeldConns {
        let script = format!(
            "import socket,sys\n\
             ss=[socket.create_connection(('10.0.0.100',80),timeout=5) for _ in range({n})]\n\
             print('ready',flush=True)\n\
             sys.stdin.readline()\n\
             for s in ss:\n\
             \x20   s.sendall(b'GET / HTTP/1.0\\r\\nHost: vip\\r\\n\\r\\n')\n\
             \x20   d=b''\n\
             \x20   while True:\n\
             \x20       c=s.recv(4096)\n\
             \x20       if not c: break\n\
             \x20       d+=c\n\
             \x20   print(d.split(b'\\r\\n\\r\\n',1)[-1].decode().strip(),flush=True)\n\
             sys.stdin.readline()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "python3", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 client");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "held connections did not open");
        HeldConns(child, out)
    }

    fn exchange(&mut self, n: usize) -> Vec<String> {
        writeln!(self.0.stdin.as_mut().unwrap(), "go").unwrap();
        (0..n)
            .map(|_| {
                let mut l = String::new();
                self.1.read_line(&mut l).unwrap();
                l.trim().to_string()
            })
            .collect()
    }
}

impl Drop for HeldConns {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn quiesced_server_shows_weight_0_and_keeps_its_established_connections() {
    let topo = Topology::up_unique();
    // The check asks for /health: deleting that file fails the check while
    // nginx (and its established connections) stays up.
    let health_file = |rs: &str| topo.state_dir.join(rs).join("www/health");
    for rs in ["rs1", "rs2"] {
        std::fs::write(health_file(rs), "ok\n").unwrap();
    }
    let mut cfg = topo.default_config();
    cfg["services"] = json!([service(
        json!({"type": "http", "path": "/health", "interval_ms": 500, "timeout_ms": 300,
               "retries": 2, "retry_delay_ms": 100, "on_failure": "quiesce"}),
        None
    )]);
    let rvsd = Rvsd::start(&topo, &cfg);
    wait_for(
        "both real servers checked up",
        Duration::from_secs(10),
        || both_checked_up(&rvsd),
    );

    let mut held = HeldConns::open(&topo, 4);
    let active = |rvsd: &Rvsd, rip: &str| {
        listed(rvsd)
            .into_iter()
            .find(|x| x.0 == rip)
            .unwrap_or_else(|| panic!("{rip} not listed"))
    };
    wait_for("4 established connections", Duration::from_secs(10), || {
        active(&rvsd, "10.0.1.11:80").2 + active(&rvsd, "10.0.1.12:80").2 == 4
    });
    let on_rs1 = active(&rvsd, "10.0.1.11:80").2;
    assert!(on_rs1 >= 1, "rr spreads 4 connections over both servers");

    std::fs::remove_file(health_file("rs1")).unwrap();
    wait_for("rs1 quiesced (weight 0)", Duration::from_secs(15), || {
        active(&rvsd, "10.0.1.11:80").1 == 0
    });
    let row = health_row(&rvsd, "10.0.1.11:80");
    assert_eq!(row[4], "down", "{row:?}");
    assert!(row[8..].join(" ").contains("HTTP status 404"), "{row:?}");
    // Still listed, with its established connections...
    assert_eq!(active(&rvsd, "10.0.1.11:80").2, on_rs1);
    // ...which still work; new connections go to rs2 only.
    assert_eq!(answers(&topo, 6), ["rs2"; 6]);
    let mut bodies = held.exchange(4);
    bodies.sort();
    let rs1_bodies = bodies.iter().filter(|b| *b == "rs1").count();
    assert_eq!(rs1_bodies as u32, on_rs1, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b == "rs1" || b == "rs2"),
        "{bodies:?}"
    );
    drop(held);

    // The configured weight is what -S saves.
    assert!(rvsd
        .rvsadm_ok(&["-S", "-n"])
        .contains("-r 10.0.1.11:80 -m -w 1"));

    std::fs::write(health_file("rs1"), "ok\n").unwrap();
    wait_for("rs1 back to weight 1", Duration::from_secs(15), || {
        active(&rvsd, "10.0.1.11:80").1 == 1
    });
    let mut who = answers(&topo, 6);
    who.sort();
    who.dedup();
    assert_eq!(who, ["rs1", "rs2"]);
}
