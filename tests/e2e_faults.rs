//! End to end, faults under load: a real server crashes, real servers come
//! and go and change weight, rvsd restarts (keeping run-time changes through
//! its state file) — each while kernel TCP clients
//! (tests/lib/load.py in the client namespace) keep sending. The load
//! counts every operation by phase (the phase in which it started); a test
//! marks a new phase at each event it observes, so "after the event" is
//! exact, and asserts on the phases where nothing may fail.
//!
//! Every wait polls a signal (rvsadm's listing, the control socket's
//! counters) with a bound; nothing waits a fixed time for the daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::load::{Load, LoadSpec, Report};
use common::topo::{self, Rvsd, Topology};
use serde_json::{json, Value};

const SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;

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

/// A control-socket connection kept open for many requests.
struct Ctl(BufReader<UnixStream>);

impl Ctl {
    fn open(socket: &Path) -> Ctl {
        let s = UnixStream::connect(socket).expect("control socket");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Ctl(BufReader::new(s))
    }

    fn call(&mut self, req: &str) -> Value {
        let s = self.0.get_mut();
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{req} -> {l:?}: {e}"))
    }

    fn ok(&mut self, req: &str) -> Value {
        let v = self.call(req);
        assert_eq!(v["ok"], true, "{req} -> {v}");
        v
    }
}

fn once(socket: &Path, req: &str) -> Value {
    Ctl::open(socket).ok(req)
}

/// Connections scheduled so far by the service on port 80.
fn service_conns(socket: &Path) -> u64 {
    let l = once(socket, r#"{"cmd":"list"}"#);
    l["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["port"] == 80)
        .map(|s| s["stats"]["conns"].as_u64().unwrap())
        .unwrap_or(0)
}

/// Connections scheduled to real server `ip` (0 if it is not listed).
fn dest_conns(ctl: &mut Ctl, ip: &str) -> u64 {
    let l = ctl.ok(r#"{"cmd":"list"}"#);
    l["services"][0]["dests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ip"] == ip)
        .map(|d| d["stats"]["conns"].as_u64().unwrap())
        .unwrap_or(0)
}

/// Waits until the service has scheduled `n` more connections than now.
fn wait_more_conns(socket: &Path, n: u64, what: &str) {
    let start = service_conns(socket);
    wait_for(what, Duration::from_secs(30), || {
        service_conns(socket) >= start + n
    });
}

/// Real servers `rvsadm -L -n` lists (in service), sorted.
fn listed(rvsd: &Rvsd) -> Vec<String> {
    let mut v: Vec<String> = rvsd
        .rvsadm_ok(&["-L", "-n"])
        .lines()
        .filter(|l| l.trim_start().starts_with("-> ") && !l.contains("RemoteAddress"))
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// SIGKILL every process in namespace `ns`: the server crashes.
fn kill_all_in(ns: &str) {
    let out = topo::run_with_timeout(
        std::process::Command::new("ip").args(["netns", "pids", ns]),
        topo::CMD_TIMEOUT,
    );
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(!pids.is_empty(), "no process in {ns}");
    let mut args = vec!["-KILL".to_string()];
    args.extend(pids);
    let st = topo::run_with_timeout(
        std::process::Command::new("kill").args(&args),
        topo::CMD_TIMEOUT,
    );
    assert!(st.status.success(), "{}", topo::describe(&st));
}

fn held_summary(report: &common::load::Report) -> String {
    serde_json::to_string(report.held()).unwrap()
}

#[test]
fn a_crashed_real_server_costs_no_request_once_the_health_check_removes_it() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "health": {"type": "tcp", "interval_ms": 300, "timeout_ms": 300, "retries": 2,
                   "retry_delay_ms": 100},
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]
    }]);
    let rvsd = Rvsd::start(&topo, &cfg);
    let sock = rvsd.socket.clone();
    // Six held connections (rr: three on each server), new connections and
    // 100 KB downloads.
    let mut load = Load::start(
        &topo,
        &LoadSpec {
            new: 3,
            big: 1,
            held: 6,
            held_interval_ms: 50,
            fresh_ports: true,
            // Generous: an operation fails on an error, not on a slow CPU.
            timeout_s: 15.0,
            ..LoadSpec::default()
        },
    );
    wait_more_conns(&sock, 30, "traffic through both servers");

    // rs1 crashes: nginx master and workers SIGKILLed; its kernel now
    // refuses connections to port 80 and has closed the established ones.
    // The detection phase, from the crash to the removal.
    load.mark();
    kill_all_in(&topo.rs_ns(1));
    wait_for(
        "the health check to remove rs1",
        Duration::from_secs(15),
        || listed(&rvsd) == ["10.0.1.12:80"],
    );
    let p_after = load.mark();
    wait_more_conns(&sock, 60, "traffic after the removal");
    let report = load.finish();
    eprintln!("{}", report.summary());

    // Before the crash both served, and what ended before it succeeded.
    let before = report.servers("new", 0);
    assert!(
        before.len() == 2 && report.err("new", 0) + report.err("big", 0) == 0,
        "phase 0: {before:?}, errors {} {}",
        report.errors("new", 0),
        report.errors("big", 0)
    );
    // After the removal: not one failure, and only rs2 answers.
    for kind in ["new", "big"] {
        assert_eq!(
            report.failures(kind, p_after),
            0,
            "{kind} failed after rs1 was removed: {}",
            report.errors(kind, p_after)
        );
    }
    let after = report.servers("new", p_after);
    assert!(
        after.len() == 1 && after[0].0 == "rs2" && after[0].1 >= 20,
        "after removal: {after:?}"
    );
    assert!(report.ok("big", p_after) >= 1);
    // Connections held to rs2 never noticed: no error in any phase,
    // exchanges in every phase. Those held to rs1 broke with it.
    let held = report.held();
    let on = |s: &str| held.iter().filter(|h| h["server"] == s).count();
    assert_eq!((on("rs1"), on("rs2")), (3, 3), "{}", held_summary(&report));
    for h in held {
        let errs = Report::held_errors(h);
        if h["server"] == "rs2" {
            assert_eq!(errs, 0, "a connection held to rs2 failed: {h}");
            // The detection phase lasts only until the checker acts (under
            // a second): a starved client may make no exchange in it; no
            // error in it is what counts (above).
            let ok = |p: usize| h["ok"][p].as_u64().unwrap();
            assert!(ok(0) > 0 && ok(p_after) > 0, "{h}");
        } else {
            assert!(
                errs > 0,
                "a connection held to the crashed rs1 kept working: {h}"
            );
        }
    }
    // The crash was seen as such; operator intent kept.
    let health = rvsd.rvsadm_ok(&["-L", "-n", "--health"]);
    let row = health
        .lines()
        .find(|l| l.contains("10.0.1.11:80"))
        .unwrap_or_else(|| panic!("rs1 not in --health:\n{health}"));
    assert!(row.contains(" down "), "{row}");
    assert!(rvsd
        .rvsadm_ok(&["-S", "-n"])
        .contains("-a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 1"));
}

#[test]
fn servers_added_removed_and_reweighted_under_load_leave_established_connections_alone() {
    const ROUNDS: usize = 40;
    const SCHEDS: [&str; 4] = ["wrr", "wlc", "rr", "lc"];
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "wrr",
        "dests": [{"ip": "10.0.1.11", "fwd": "nat", "weight": 2}]
    }]);
    let rvsd = Rvsd::start(&topo, &cfg);
    // Only rs1 is in the service: every held connection is on rs1.
    let mut load = Load::start(
        &topo,
        &LoadSpec {
            new: 2,
            held: 8,
            held_interval_ms: 20,
            fresh_ports: true,
            // Generous: an operation fails on an error, not on a slow CPU.
            timeout_s: 15.0,
            ..LoadSpec::default()
        },
    );
    let mut ctl = Ctl::open(&rvsd.socket);
    let p_churn = load.mark();
    let mut last = (String::new(), 0u32);
    for i in 0..ROUNDS {
        // rs2 in; it must take new connections before it goes again, so
        // every deletion hits a server with live flows.
        let before = dest_conns(&mut ctl, "10.0.1.12");
        ctl.ok(&format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat","weight":{}}}}}"#,
            1 + i % 4
        ));
        wait_for("rs2 to take a connection", Duration::from_secs(10), || {
            dest_conns(&mut ctl, "10.0.1.12") > before
        });
        ctl.ok(&format!(
            r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat","weight":{}}}}}"#,
            i % 3
        ));
        // rs1 reweighted (never 0: new connections always have a server),
        // through rvsadm every other round.
        let w1 = 1 + (i % 5) as u32;
        if i % 2 == 0 {
            rvsd.rvsadm_ok(&[
                "-e",
                "-t",
                "10.0.0.100:80",
                "-r",
                "10.0.1.11:80",
                "-m",
                "-w",
                &w1.to_string(),
            ]);
        } else {
            ctl.ok(&format!(
                r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":{w1}}}}}"#
            ));
        }
        let sched = SCHEDS[i % SCHEDS.len()];
        ctl.ok(&format!(
            r#"{{"cmd":"edit_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"{sched}"}}}}"#
        ));
        ctl.ok(&format!(
            r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.12"}}}}"#
        ));
        last = (sched.to_string(), w1);
    }
    let p_after = load.mark();
    wait_more_conns(&rvsd.socket, 40, "traffic after the churn");
    let report = load.finish();
    eprintln!("{}", report.summary());

    let held = report.held();
    assert_eq!(held.len(), 8);
    for h in held {
        assert_eq!(h["server"], "rs1", "{h}");
        assert_eq!(h["switched"], false, "{h}");
        let errs = Report::held_errors(h);
        assert_eq!(
            errs, 0,
            "a connection held to rs1 failed during the churn: {h}"
        );
        for p in [p_churn, p_after] {
            assert!(
                h["ok"][p].as_u64().unwrap() > 0,
                "no exchange in phase {p}: {h}"
            );
        }
    }
    // New connections, including those to rs2 when it was deleted under
    // them, all succeeded.
    for p in [p_churn, p_after] {
        assert_eq!(
            report.failures("new", p),
            0,
            "new connections failed in phase {p}: {}",
            report.errors("new", p)
        );
    }
    let churn = report.servers("new", p_churn);
    assert!(
        churn.iter().any(|(s, n)| s == "rs2" && *n >= ROUNDS as u64),
        "rs2 took connections in every round: {churn:?}"
    );
    let after = report.servers("new", p_after);
    assert!(
        after.len() == 1 && after[0].0 == "rs1",
        "after rs2 was deleted for good: {after:?}; churn: {churn:?}"
    );
    // The last state of the churn is the configuration.
    let d = once(&rvsd.socket, r#"{"cmd":"dump"}"#);
    let s = &d["services"][0];
    assert_eq!(s["sched"], last.0.as_str(), "{d}");
    let dests = s["dests"].as_array().unwrap();
    assert_eq!(dests.len(), 1, "{d}");
    assert_eq!(
        (dests[0]["ip"].as_str(), dests[0]["weight"].as_u64()),
        (Some("10.0.1.11"), Some(last.1 as u64))
    );
}

/// rvsd restarts (SIGTERM, then SIGKILL) under load with `--state-file`: it
/// comes back with the table as it was last changed at run time (an
/// `rvsadm -A` made after the start), not merely the config file's, and
/// serves. Then a damaged (truncated) state file: rvsd still starts, with
/// the config file's services, says so loudly and keeps the damaged file
/// aside for the operator (see docs/operations.md, "State file").
#[test]
fn a_restarted_rvsd_comes_back_with_its_runtime_changes_and_serves() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]
    }]);
    let state = topo.state_dir.join("rvsd-state.json");
    let state_arg = state.to_str().unwrap().to_owned();
    let mut rvsd = Rvsd::start_args(&topo, &cfg, &["--state-file", &state_arg]);
    let sock = rvsd.socket.clone();
    let from_file = once(&sock, r#"{"cmd":"dump"}"#);
    let mut load = Load::start(
        &topo,
        &LoadSpec {
            new: 2,
            pace_ms: 10,
            fresh_ports: true,
            // Generous, yet short enough: requests caught by a restart
            // hang this long before the run can end.
            timeout_s: 10.0,
            ..LoadSpec::default()
        },
    );
    wait_more_conns(&sock, 20, "traffic before the restart");
    // A change made at run time: saved in the state file, not the config.
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:8080", "-s", "rr"]);
    let changed = once(&sock, r#"{"cmd":"dump"}"#);
    assert_ne!(changed, from_file);
    assert_eq!(
        changed["services"].as_array().unwrap().len(),
        2,
        "{changed}"
    );

    // SIGTERM: a clean stop (exit 0, socket removed), then the same files.
    load.mark();
    let status = rvsd.terminate().expect("rvsd stops on SIGTERM");
    assert!(status.success(), "rvsd exited with {status}");
    assert!(!sock.exists(), "the socket is removed on a clean stop");
    rvsd.start_again();
    let p_up = load.mark();
    assert_eq!(once(&sock, r#"{"cmd":"dump"}"#), changed);
    wait_more_conns(&sock, 20, "traffic after the restart");

    // SIGKILL: no chance to save anything at exit; the change made before
    // is still there because it was saved when it was applied.
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:8080", "-r", "10.0.1.11:80", "-m"]);
    let changed2 = once(&sock, r#"{"cmd":"dump"}"#);
    load.mark();
    rvsd.kill();
    assert!(sock.exists(), "a killed rvsd leaves its socket");
    rvsd.start_again();
    let p_up2 = load.mark();
    assert_eq!(once(&sock, r#"{"cmd":"dump"}"#), changed2);
    wait_more_conns(&sock, 20, "traffic after the second restart");
    let report = load.finish();
    eprintln!("{}", report.summary());

    // Requests in flight when rvsd stopped fail (their connections are
    // gone with it, as with kernel IPVS without connection sync); they
    // count in the phase they started in, as failed late.
    for p in [0, p_up, p_up2] {
        assert_eq!(
            report.err("new", p),
            0,
            "phase {p}: {}",
            report.errors("new", p)
        );
        let who: Vec<String> = report.servers("new", p).into_iter().map(|x| x.0).collect();
        assert_eq!(who, ["rs1", "rs2"], "phase {p}");
    }
    let log = rvsd.log();
    assert_eq!(log.matches("] ready:").count(), 3, "{log}");
    assert_eq!(log.matches("] stopped").count(), 1, "{log}");
    assert_eq!(log.matches("service(s) restored").count(), 2, "{log}");

    // A truncated state file (a disk or an editor, not rvsd: it renames a
    // complete file into place). Refusing to start would leave the VIPs
    // down until someone edits files; rvsd starts with the config file's
    // services, logs the problem at error level and moves the file aside.
    rvsd.kill();
    let text = std::fs::read(&state).unwrap();
    let cut = &text[..text.len() / 2];
    std::fs::write(&state, cut).unwrap();
    rvsd.start_again();
    assert_eq!(once(&sock, r#"{"cmd":"dump"}"#), from_file);
    let log = rvsd.log();
    assert!(log.contains("IGNORED and moved to"), "{log}");
    let bad: Vec<_> = std::fs::read_dir(&topo.state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("rvsd-state.json.bad-"))
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(std::fs::read(&bad[0]).unwrap(), cut);
    // The state file is the running table again, and follows changes.
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["services"], from_file["services"]);
    rvsd.rvsadm_ok(&["-D", "-t", "10.0.0.100:80"]);
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["services"], json!([]));
}

/// Regression test of a connection-table bug found by the churn test above:
/// a SYN that reused the address/port tuple of a connection entry still in
/// TIME_WAIT was forwarded to that entry's real server — even after the
/// server was deleted (or quiesced, or removed by a failed health check).
/// Kernel IPVS, with its default `conn_reuse_mode=1`, expires such an entry
/// and schedules the SYN anew; so does rvs now.
/// Clients reuse ports after a few thousand connections (Linux steps
/// through the ephemeral range), so under load new connections keep going
/// to a deleted server for up to the TIME_WAIT timeout (120 s).
#[test]
fn a_syn_reusing_a_time_wait_tuple_is_scheduled_anew() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{
        "proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "dests": [{"ip": "10.0.1.12", "fwd": "nat"}]
    }]);
    let rvsd = Rvsd::start(&topo, &cfg);
    // Two requests from the same client port 40000, the second once told to.
    let script = "import socket,sys\n\
        def get():\n\
        \x20   s=socket.socket()\n\
        \x20   s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
        \x20   s.bind(('10.0.0.2',40000))\n\
        \x20   s.settimeout(5)\n\
        \x20   s.connect(('10.0.0.100',80))\n\
        \x20   s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
        \x20   d=b''\n\
        \x20   while True:\n\
        \x20       c=s.recv(4096)\n\
        \x20       if not c: break\n\
        \x20       d+=c\n\
        \x20   s.close()\n\
        \x20   return d.split(b'\\r\\n\\r\\n',1)[-1].decode().strip()\n\
        print(get(),flush=True)\n\
        sys.stdin.readline()\n\
        try:\n\
        \x20   print(get(),flush=True)\n\
        except Exception as e:\n\
        \x20   print('error',e,flush=True)\n";
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &topo.client_ns(), "python3", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 client");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "rs2");
    // rs1 in, rs2 deleted: the only server is rs1.
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"]);
    rvsd.rvsadm_ok(&["-d", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80"]);
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(
        conns.contains("TIME_WAIT   10.0.0.2:40000     10.0.0.100:80      10.0.1.12:80"),
        "the old entry lingers:\n{conns}"
    );
    writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    let mut second = String::new();
    out.read_line(&mut second).unwrap();
    let _ = child.wait();
    assert_eq!(
        second.trim(),
        "rs1",
        "a new connection went to the deleted real server:\n{}",
        rvsd.rvsadm_ok(&["-L", "-n", "-c"])
    );
}

/// Regression test of a bug of the former (sharded HashMap) connection
/// table, found by the soak test: the expiry sweep removed an expired
/// connection's reply-direction index when it reached that shard first,
/// without ending the connection; a client packet arriving before the sweep
/// reached the client-key shard (up to ~1 s later) found the connection,
/// re-armed its timer and revived it — without its reply index. (The slot
/// table marks a connection dead before unlinking either key, and a dead
/// connection is never found.) From then on
/// every reply is dropped (`not_routed`) while each client packet keeps the
/// half-connection alive: a UDP client that pauses about one timeout and
/// then keeps sending is black-holed for good; a TCP client reusing a port
/// hangs. Here: UDP with a 1 s timeout, eight client ports, pauses of 1.0
/// to 2.5 s between datagrams, 12 rounds (the old table failed within 1 to
/// 10; the slot table passed 3 runs of 30).
#[test]
fn a_flow_resuming_just_after_its_entry_expired_gets_its_replies() {
    let topo = Topology::up_unique();
    let _echo = common::load::UdpEcho::start(&topo.rs_ns(1), "rs1", "10.0.1.11", 9000);
    let mut cfg = topo.default_config();
    cfg["services"] = json!([{"proto": "udp", "vip": "10.0.0.100", "port": 5353, "sched": "rr",
                              "dests": [{"ip": "10.0.1.11", "port": 9000, "fwd": "nat"}]}]);
    cfg["timeouts"] = json!({"udp": 1});
    let rvsd = Rvsd::start(&topo, &cfg);
    // Eight client ports: whether a flow's two index entries are swept in
    // the order that exposes the bug depends on the table's random hash
    // seed; with eight flows at least one almost surely is.
    let script = "import socket,random,time,sys\n\
        ss=[]\n\
        for p in range(40001,40009):\n\
        \x20   s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
        \x20   s.bind(('10.0.0.2',p))\n\
        \x20   s.settimeout(1.0)\n\
        \x20   ss.append(s)\n\
        for i in range(12):\n\
        \x20   for s in ss:\n\
        \x20       s.sendto(b'%d'%i,('10.0.0.100',5353))\n\
        \x20   for s in ss:\n\
        \x20       try:\n\
        \x20           s.recvfrom(100)\n\
        \x20       except socket.timeout:\n\
        \x20           lost=0\n\
        \x20           for j in range(5):\n\
        \x20               s.sendto(b'again',('10.0.0.100',5353))\n\
        \x20               try: s.recvfrom(100)\n\
        \x20               except socket.timeout: lost+=1\n\
        \x20           print('round %d, port %d: no answer, then %d of 5 more lost' % (i, s.getsockname()[1], lost))\n\
        \x20           sys.exit(0)\n\
        \x20   time.sleep(random.uniform(1.0,2.5))\n\
        print('all answered')\n";
    let out = topo::run_with_timeout(
        std::process::Command::new("ip").args([
            "netns",
            "exec",
            &topo.client_ns(),
            "python3",
            "-c",
            script,
        ]),
        Duration::from_secs(150),
    );
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = once(&rvsd.socket, r#"{"cmd":"stats"}"#);
    assert_eq!(
        said,
        "all answered",
        "not_routed drops: {}; entries:\n{}",
        st["total"]["drops"]["not_routed"],
        rvsd.rvsadm_ok(&["-L", "-n", "-c"])
    );
}
