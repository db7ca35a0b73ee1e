//! End to end, the control socket of a running rvsd under hostile use:
//! permissions (`control_group`), a storm of 2000 clients at once, clients
//! that idle, trickle, vanish mid-request or send oversized, malformed,
//! wrongly typed or out-of-range requests. Each gets a clear error or is
//! dropped; afterwards the daemon still answers, its configuration (`dump`)
//! is what it was, and traffic still flows through the VIP.
//!
//! The per-connection mechanics (deadlines, write timeouts, the request size
//! boundary, pipelining) are unit-tested in `src/control/server.rs`;
//! validation of each field in `src/control/mod.rs`; a few bad requests
//! in `e2e_nat.rs`. This file adds what needs the real daemon and its
//! config file.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::topo::{self, Rvsd, Topology};
use serde_json::{json, Value};

/// The daemon's client limit (`rvs::control::server::MAX_CLIENTS`).
const MAX_CLIENTS: usize = 64;
const STORM: usize = 2000;
const IDLE_MS: u64 = 1000;

fn config(topo: &Topology, group: Option<&str>) -> Value {
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "wrr",
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat", "weight": 2}]
    }]);
    cfg["control_idle_timeout_ms"] = json!(IDLE_MS);
    if let Some(g) = group {
        cfg["control_group"] = json!(g);
    }
    cfg
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect to the control socket");
    // Bounds every read below: a daemon that hangs fails the test.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// One request on a fresh connection; the parsed answer.
fn ask(socket: &Path, line: &[u8]) -> Value {
    let mut s = connect(socket);
    s.write_all(line).unwrap();
    s.write_all(b"\n").unwrap();
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp).unwrap();
    serde_json::from_str(&resp).unwrap_or_else(|e| panic!("not JSON: {resp:?}: {e}"))
}

fn dump(socket: &Path) -> Value {
    let v = ask(socket, br#"{"cmd":"dump"}"#);
    assert_eq!(v["ok"], true, "{v}");
    v
}

/// Everything the daemon sent until it closed, and whether it did close
/// (rather than the 20 s read timeout ending the wait). A close with our
/// request unread shows as a reset on AF_UNIX.
fn read_to_close(s: &mut UnixStream) -> (String, bool) {
    let mut all = Vec::new();
    let closed = match s.read_to_end(&mut all) {
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    };
    (String::from_utf8_lossy(&all).into_owned(), closed)
}

/// The error code of a one-line answer ("ok" for success).
fn code(v: &Value) -> String {
    if v["ok"] == true {
        "ok".into()
    } else {
        v["error"]["code"].as_str().unwrap_or("?").to_string()
    }
}

/// Runs rvsadm as uid 65534 (nobody) with primary group `gid` and no others.
fn rvsadm_as_nobody(gid: u32, socket: &Path) -> std::process::Output {
    topo::run_with_timeout(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                &format!("--regid={gid}"),
                "--clear-groups",
                topo::RVSADM_BIN,
                "--socket",
            ])
            .arg(socket)
            .args(["-L", "-n"]),
        Duration::from_secs(20),
    )
}

#[test]
fn the_socket_is_root_only_or_shared_with_control_group_alone() {
    let topo = Topology::up_unique();
    // Without control_group: 0600, root's, and nobody else gets in.
    let rvsd = Rvsd::start(&topo, &config(&topo, None));
    let m = std::fs::metadata(&rvsd.socket).unwrap();
    assert_eq!(
        (m.permissions().mode() & 0o777, m.uid(), m.gid()),
        (0o600, 0, 0)
    );
    let out = rvsadm_as_nobody(65534, &rvsd.socket);
    assert!(
        !out.status.success(),
        "nobody got in: {}",
        topo::describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        topo::describe(&out)
    );
    drop(rvsd);

    // control_group "nogroup" (gid 65534, from /etc/group): 0660 root:nogroup.
    let rvsd = Rvsd::start(&topo, &config(&topo, Some("nogroup")));
    let m = std::fs::metadata(&rvsd.socket).unwrap();
    assert_eq!(
        (m.permissions().mode() & 0o777, m.uid(), m.gid()),
        (0o660, 0, 65534)
    );
    let out = rvsadm_as_nobody(65534, &rvsd.socket);
    assert!(out.status.success(), "{}", topo::describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TCP  10.0.0.100:80 wrr"));
    // The same user outside the group is refused.
    let out = rvsadm_as_nobody(1, &rvsd.socket);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ermission denied"),
        "{}",
        topo::describe(&out)
    );
    drop(rvsd);

    // An unknown group stops rvsd before it starts anything (and --check
    // says so too).
    let bad = config(&topo, Some("no-such-group-rvs"));
    let f = topo.state_dir.join("badgroup.json");
    std::fs::write(&f, bad.to_string()).unwrap();
    let out = topo::run_with_timeout(
        Command::new(topo::RVSD_BIN)
            .arg("--config")
            .arg(&f)
            .arg("--check"),
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("control_group: group \"no-such-group-rvs\" not found"),
        "{}",
        topo::describe(&out)
    );
}

#[test]
fn a_storm_of_2000_clients_and_hostile_requests_leave_the_daemon_serving_unchanged() {
    let topo = Topology::up_unique();
    let mut rvsd = Rvsd::start(&topo, &config(&topo, None));
    let socket = rvsd.socket.clone();
    let before = dump(&socket);
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);

    // --- 2000 clients at once, from 8 threads; every one holds its
    // connection until all have their answer, so the daemon sees them all
    // together. Each asks for a ping: answered, or refused with "busy".
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let answers: Vec<Vec<String>> = (0..8)
        .map(|_| {
            let (socket, barrier) = (socket.clone(), barrier.clone());
            thread::spawn(move || {
                let conns: Vec<UnixStream> = (0..STORM / 8).map(|_| connect(&socket)).collect();
                let answers: Vec<String> = conns
                    .iter()
                    .map(|mut s| {
                        // A refused client may find the socket closed already.
                        let _ = s.write_all(b"{\"cmd\":\"ping\"}\n");
                        let mut l = String::new();
                        match BufReader::new(s).read_line(&mut l) {
                            Ok(_) => serde_json::from_str::<Value>(&l)
                                .map(|v| code(&v))
                                .unwrap_or_else(|_| format!("garbage {l:?}")),
                            Err(e) => format!("read error {e}"),
                        }
                    })
                    .collect();
                barrier.wait();
                drop(conns);
                answers
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("storm thread"))
        .collect();
    let all: Vec<&String> = answers.iter().flatten().collect();
    let ok = all.iter().filter(|a| a.as_str() == "ok").count();
    let busy = all.iter().filter(|a| a.as_str() == "busy").count();
    let other: Vec<&&String> = all
        .iter()
        .filter(|a| !matches!(a.as_str(), "ok" | "busy"))
        .take(5)
        .collect();
    assert_eq!(
        ok + busy,
        STORM,
        "every client answered ok or busy; others: {other:?}"
    );
    assert!(
        (1..=MAX_CLIENTS).contains(&ok),
        "{ok} clients served at once (limit {MAX_CLIENTS})"
    );
    // The slots come back: 64 clients at once are all served again (polled:
    // a slot is freed just after its client's connection closes).
    let t0 = Instant::now();
    loop {
        let conns: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| connect(&socket)).collect();
        let served = conns
            .iter()
            .filter(|s| {
                let mut w: &UnixStream = s;
                let _ = w.write_all(b"{\"cmd\":\"ping\"}\n");
                let mut l = String::new();
                BufReader::new(w).read_line(&mut l).is_ok() && l.contains("\"ok\":true")
            })
            .count();
        if served == MAX_CLIENTS {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "only {served} of {MAX_CLIENTS} slots free after the storm"
        );
        drop(conns);
        thread::sleep(Duration::from_millis(50));
    }
    let log = rvsd.log();
    assert!(
        log.contains("control: refused")
            && log
                .lines()
                .filter(|l| l.contains("control: refused"))
                .count()
                < 100,
        "refusals are logged, rate-limited:\n{log}"
    );

    // --- An idle client: told "timeout" after control_idle_timeout_ms.
    let mut s = connect(&socket);
    let (resp, closed) = read_to_close(&mut s);
    assert!(closed, "idle client not disconnected");
    assert_eq!(
        code(&serde_json::from_str(resp.trim()).unwrap()),
        "timeout",
        "{resp}"
    );

    // --- Clients that vanish mid-request: prefixes of mutating requests,
    // some after a partial line, some right after connecting.
    let mutating = [
        r#"{"cmd":"clear"}"#.to_string(),
        r#"{"cmd":"del_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#.into(),
        r#"{"cmd":"load","services":[{"proto":"udp","vip":"10.0.0.200","port":53,"sched":"rr"}]}"#
            .into(),
        r#"{"cmd":"edit_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.11","fwd":"nat","weight":0}}"#.into(),
    ];
    for req in &mutating {
        // Every proper prefix of the line (never the whole request).
        for cut in (0..req.len()).step_by(7) {
            let mut s = connect(&socket);
            s.write_all(&req.as_bytes()[..cut]).unwrap();
            drop(s);
        }
        // Half-closed after a partial request: the daemon answers the
        // fragment (bad_json) and closes.
        let mut s = connect(&socket);
        s.write_all(&req.as_bytes()[..req.len() / 2]).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let (resp, closed) = read_to_close(&mut s);
        assert!(closed && resp.contains("\"bad_json\""), "{resp}");
    }

    // --- Oversized: a valid `load` of 2 MiB (one huge line) is refused whole.
    let svc = json!({"proto": "tcp", "vip": "10.0.0.200", "port": 80, "sched": "rr"});
    let many: Vec<Value> = (0..40_000u32)
        .map(|i| {
            let mut s = svc.clone();
            s["port"] = json!(1 + i % 65535);
            s["vip"] = json!(format!("10.0.{}.{}", 2 + i / 65535 / 250, 200));
            s
        })
        .collect();
    let huge = json!({"cmd": "load", "services": many}).to_string();
    assert!(huge.len() > 2 << 20, "{}", huge.len());
    let mut s = connect(&socket);
    let _ = s.write_all(huge.as_bytes());
    let (resp, closed) = read_to_close(&mut s);
    assert!(closed && resp.contains("\"too_large\""), "{resp}");

    // --- Malformed, wrongly typed, unknown and out-of-range requests, each
    // on its own connection, each with its error code.
    let svc80 = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;
    let cases: Vec<(String, &str)> = vec![
        ("{\"cmd\":\"ping\"".into(), "bad_json"),
        ("\"ping\"".into(), "bad_request"),
        ("null".into(), "bad_request"),
        (r#"{"cmd":1}"#.into(), "bad_request"),
        (r#"{"cmd":["ping"]}"#.into(), "bad_request"),
        (r#"{"CMD":"ping"}"#.into(), "bad_request"),
        (r#"{"cmd":"PING"}"#.into(), "unknown_command"),
        (r#"{"cmd":"list","services":[]}"#.into(), "bad_request"),
        // Duplicate keys: not "the last one wins" (that cleared everything).
        (r#"{"cmd":"ping","cmd":"clear"}"#.into(), "bad_request"),
        (format!(r#"{{"cmd":"edit_dest","service":{svc80},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":1,"weight":0}}}}"#), "bad_request"),
        (r#"{"cmd":"add_service","service":"tcp 10.0.0.101:80"}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":"80"}}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.256","port":80}}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":-80}}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80.5}}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"persistent":4294967296}}"#.into(), "bad_request"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"persistent":0}}"#.into(), "invalid"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"255.255.255.255","port":80}}"#.into(), "invalid"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"::1","port":80}}"#.into(), "invalid"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"health":{"type":"http","timeout_ms":0}}}"#.into(), "invalid"),
        (r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"health":{"type":"ping"}}}"#.into(), "bad_request"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":{{"ip":"10.0.1.13","fwd":"nat","u_threshold":-1}}}}"#), "bad_request"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":4294967296}}}}"#), "bad_request"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":65536}}}}"#), "invalid"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":{{"ip":"10.0.1.13","fwd":"nat","u_threshold":5,"l_threshold":9}}}}"#), "invalid"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":{{"ip":"10.0.1.13","fwd":"teleport"}}}}"#), "bad_request"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80},"dest":null}}"#), "bad_request"),
        (format!(r#"{{"cmd":"add_dest","service":{svc80}}}"#), "bad_request"),
        (format!(r#"{{"cmd":"del_dest","service":{svc80},"dest":{{"ip":"10.0.1.11","weight":1}}}}"#), "bad_request"),
        (format!(r#"{{"cmd":"add_laddr","service":{svc80},"laddr":"10.0.0.100"}}"#), "invalid"),
        (format!(r#"{{"cmd":"add_laddr","service":{svc80},"laddr":"fe80::1"}}"#), "unsupported"),
        (r#"{"cmd":"zero","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#.into(), "bad_request"),
        (r#"{"cmd":"connections","limit":-1}"#.into(), "bad_request"),
        (r#"{"cmd":"connections","limit":"all"}"#.into(), "bad_request"),
        (r#"{"cmd":"set_timeouts","timeouts":{"tcp":-1}}"#.into(), "bad_request"),
        (r#"{"cmd":"set_timeouts","timeouts":{"tcp":4294967296}}"#.into(), "bad_request"),
        (r#"{"cmd":"set_timeouts","timeouts":{"tcp":60,"keepalive":5}}"#.into(), "bad_request"),
        (r#"{"cmd":"load","services":{}}"#.into(), "bad_request"),
        (r#"{"cmd":"load","services":[{"proto":"tcp","vip":"10.0.0.100","port":80},{"proto":"tcp","vip":"10.0.0.100","port":80}]}"#.into(), "invalid"),
        (format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), "bad_json"),
        (format!("{{\"cmd\":\"ping\",\"pad\":\"{}\"}}", "\u{1F4A3}".repeat(1000)), "bad_request"),
    ];
    for (req, want) in &cases {
        let v = ask(&socket, req.as_bytes());
        assert_eq!(code(&v), *want, "{} -> {v}", &req[..req.len().min(200)]);
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{req}: an error says what is wrong: {v}"
        );
    }
    // Not UTF-8, and a NUL: errors, and the connection goes on.
    let mut s = connect(&socket);
    s.write_all(b"\xc3\x28{\"cmd\":\"ping\"}\n\0\n{\"cmd\":\"ping\"}\n")
        .unwrap();
    let mut rd = BufReader::new(&s);
    let codes: Vec<String> = (0..3)
        .map(|_| {
            let mut l = String::new();
            rd.read_line(&mut l).unwrap();
            code(&serde_json::from_str(&l).unwrap())
        })
        .collect();
    assert_eq!(codes, ["bad_json", "bad_json", "ok"]);

    // --- Unchanged and serving.
    assert!(rvsd.is_running(), "rvsd died; log:\n{}", rvsd.log());
    assert_eq!(dump(&socket), before, "configuration changed");
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);
    let mut who: Vec<String> = (0..3)
        .map(|i| {
            topo::curl_from(&topo.client_ns(), "http://10.0.0.100/")
                .unwrap_or_else(|e| panic!("request {i}: {e}"))
                .trim()
                .to_string()
        })
        .collect();
    who.sort();
    assert_eq!(who, ["rs1", "rs2", "rs2"], "wrr 1:2 through the VIP");
}
