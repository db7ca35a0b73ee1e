//! End to end: established connections survive rvsd being stopped and
//! started again (SIGTERM), being replaced by another binary (an upgrade:
//! SIGTERM, then a copy of rvsd started), and being killed (SIGKILL) and
//! started again, when the connection table lives in `conn_table_file`: a keep-alive HTTP
//! connection held open across the restart answers its next request on the
//! same TCP connection, and a download paused across the restart (see
//! common::download) completes whole. NAT, so every packet of both directions needs
//! the connection entry. Real namespaces, nginx, kernel TCP clients.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use common::download::Paused;
use common::topo::{Rvsd, Topology};
use serde_json::json;

/// A keep-alive HTTP client in the client namespace: one request now, the
/// next when told, on the same connection (its local port says so).
struct Held {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

const HELD: &str = r#"
import http.client, sys
c = http.client.HTTPConnection("10.0.0.100", 80, timeout=30)
for i in range(2):
    if i:
        sys.stdin.readline()
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    print(r.status, c.sock.getsockname()[1], flush=True)
"#;

impl Held {
    fn open(topo: &Topology) -> Held {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "python3", "-c", HELD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 in the client namespace");
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        Held { child, stdin, out }
    }
    /// (HTTP status, local port) of the next answer.
    fn answer(&mut self) -> (u16, u16) {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let mut f = line
            .split_whitespace()
            .map(|x| x.parse::<u16>().unwrap_or(0));
        (f.next().unwrap_or(0), f.next().unwrap_or(0))
    }
    fn again(&mut self) -> (u16, u16) {
        writeln!(self.stdin).unwrap();
        self.answer()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ping` from the client namespace to the VIP, 2500 echo requests 2 ms
/// apart (5 s), quiet: its summary says how many were answered.
struct Pings(Child);

impl Pings {
    fn start(topo: &Topology) -> Pings {
        let child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "ping", "-q", "-n"])
            .args(["-c", "2500", "-i", "0.002", "-W", "1", "10.0.0.100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ping in the client namespace");
        Pings(child)
    }
    /// (sent, answered), from "N packets transmitted, M received".
    fn finish(self) -> (u64, u64) {
        let out = self.0.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("ping said: {text}"));
        let n: Vec<u64> = line
            .split(',')
            .filter_map(|f| f.split_whitespace().next()?.parse().ok())
            .collect();
        (n[0], n[1])
    }
}

/// The client address:port of every entry `rvsadm -L -n -c` lists.
fn sources(rvsd: &Rvsd) -> BTreeSet<String> {
    let out = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    out.lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect()
}

#[test]
fn held_connections_and_a_download_survive_a_restart_and_a_crash() {
    let topo = Topology::up_unique();
    // The held keep-alive connection idles across each restart.
    topo.nginx_default_keepalive();
    let mut cfg = topo.default_config();
    let file = topo.state_dir.join("conns");
    cfg["conn_table_file"] = json!(file);
    cfg["services"] = json!([{"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]}]);
    let mut rvsd = Rvsd::start(&topo, &cfg);
    assert!(file.exists(), "the table file is made at start");
    // A second rvsd on the same file stops at once, before touching it.
    let second = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--config")
        .arg(&rvsd.config_path)
        .arg("--socket")
        .arg(topo.state_dir.join("second.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("in use by another rvsd"),
        "{}: {err}",
        second.status
    );
    // `rvsd --check` reads the file (without the lock) and says what a
    // start would take over.
    let check = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check")
        .arg("--config")
        .arg(&rvsd.config_path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && out.contains("connection(s) to take over"),
        "{}: {out}",
        check.status
    );

    // The "new version": another file with rvsd's code.
    let upgrade = topo.state_dir.join("rvsd-upgraded");
    let mut successor = None;
    std::fs::copy(env!("CARGO_BIN_EXE_rvsd"), &upgrade).unwrap();
    for (how, crash, bin) in [
        ("SIGTERM", false, None),
        ("upgrade", false, Some(upgrade.as_path())),
        ("handover", false, Some(upgrade.as_path())),
        ("SIGKILL", true, None),
        ("SIGUSR2", false, None),
        ("rvsadm --handover", false, None),
    ] {
        let before = sources(&rvsd).len();
        let mut held = Held::open(&topo);
        let (status, port) = held.answer();
        assert_eq!(status, 200, "{how}: first request");
        let download = Paused::start(&topo.client_ns(), "10.0.0.100", "/big");
        // Both connections are in the table before rvsd goes.
        let t0 = Instant::now();
        let listed = loop {
            let now = sources(&rvsd);
            if now.len() >= before + 2 {
                break now;
            }
            assert!(t0.elapsed().as_secs() < 10, "{how}: connections not seen");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(listed.contains(&format!("10.0.0.2:{port}")), "{listed:?}");
        assert!(
            listed.contains(&format!("10.0.0.2:{}", download.port)),
            "{listed:?}"
        );
        // Pings to the VIP, answered by the director itself, every 2 ms
        // through the change: the ones lost measure the gap.
        let pings = Pings::start(&topo);
        let stopped = Instant::now();
        if how == "handover" {
            let st = rvsd.hand_over_to(bin.unwrap());
            assert!(st.success(), "{how}: the old rvsd exited with {st}");
        } else if how == "SIGUSR2" || how == "rvsadm --handover" {
            // The SIGUSR2 one is succeeded in turn by rvsadm's.
            let (st, pid) = rvsd.hand_over_to_successor(how == "SIGUSR2", successor);
            if let Some(st) = st {
                assert!(st.success(), "{how}: the old rvsd exited with {st}");
            }
            successor = Some(pid);
        } else {
            if crash {
                rvsd.kill();
            } else {
                let st = rvsd.terminate().expect("rvsd stops on SIGTERM");
                assert!(st.success(), "{how}: rvsd exited with {st}");
            }
            match bin {
                Some(b) => rvsd.start_again_bin(b),
                None => rvsd.start_again(),
            }
        }
        let gap = stopped.elapsed();
        // Every entry is in the new table before a packet of it arrives.
        assert_eq!(sources(&rvsd), listed, "{how}: the table after");
        // The held connection answers on the same TCP connection.
        let (status2, port2) = held.again();
        assert_eq!(
            (status2, port2),
            (200, port),
            "{how}: same connection, answered"
        );
        // The download, paused with most of it still to come while rvsd
        // changed, completes whole.
        assert_eq!(download.finish(), (200, 102400), "{how}: download");
        let log = rvsd.log();
        let line = log
            .lines()
            .rfind(|l| l.contains("taken over"))
            .unwrap_or_else(|| panic!("{how}: no take-over logged:\n{log}"));
        let n: usize = line
            .split(" connection(s) taken over")
            .next()
            .and_then(|x| x.rsplit(' ').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        assert!(n >= 2, "{how}: both connections taken over: {line}");
        let (sent, answered) = pings.finish();
        assert!(answered > 0, "{how}: no ping answered at all");
        if how != "SIGTERM" && how != "upgrade" && how != "SIGKILL" {
            let gap_line = log
                .lines()
                .rfind(|l| l.contains("forwarding again"))
                .unwrap_or_else(|| panic!("handover not logged:\n{log}"));
            eprintln!("{how}: {gap_line}");
        }
        eprintln!(
            "{how}: stop to ready {} ms, {} of {sent} pings (2 ms apart) lost; {line}",
            gap.as_millis(),
            sent - answered,
        );
    }
    // The last successor is no child of the test.
    let pid = successor.expect("the successor cases ran");
    assert!(
        common::topo::stop_pid(pid),
        "the successor stops on SIGTERM"
    );
}
