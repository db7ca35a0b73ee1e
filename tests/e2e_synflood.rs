//! End to end, SYN flood: a bounded flood of SYNs from spoofed sources
//! (tests/lib/synflood.py, raw sockets inside the client's namespace) at a
//! NAT service with the SYN proxy on. The connection table gets none of
//! them, rvsd's memory and packet pool stay flat, and a real client's HTTP
//! requests (kernel TCP, curl) to real servers (nginx) all succeed during
//! the flood. Then the same flood with the proxy off: the table fills to
//! its bound and no further (`conn_table_full`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::topo::{curl_from, Rvsd, Topology};
use serde_json::Value;

/// The table's bound; each flood sends many times as many SYNs.
const MAX_CONNS: u64 = 2_000;
/// The first flood: as many SYNs as it can for this long (tens of
/// thousands a second here), while the client makes its requests.
const FLOOD_SECS: u32 = 6;
/// The second flood: this many SYNs.
const FLOOD: u64 = 20_000;

fn ctl(socket: &Path, req: &str) -> Value {
    let mut s = UnixStream::connect(socket).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut l = String::new();
    BufReader::new(s).read_line(&mut l).unwrap();
    serde_json::from_str(&l).unwrap()
}

fn rss_kb(pid: u32) -> i64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("rvsd's status");
    st.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lib/synflood.py")
}

/// Run the flood in the client's namespace (in the background); returns
/// its handle, whose output is "sent N seconds S".
fn flood(topo: &Topology, count: u64, secs: u32) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &topo.client_ns(), "python3"])
        .arg(script())
        .args(["10.0.0.100", "80", &count.to_string(), &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start synflood.py")
}

fn sent(child: std::process::Child) -> u64 {
    let out = child.wait_with_output().expect("synflood.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "synflood.py: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("synflood.py said {text:?}"))
}

fn total(socket: &Path, key: &str) -> u64 {
    let s = ctl(socket, r#"{"cmd":"stats"}"#);
    s["total"][key]
        .as_u64()
        .or_else(|| s["total"]["drops"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

/// Waits until the director's received count stops moving for 300 ms
/// (at most 30 s, a hang guard): the flood's frames are all decided.
fn drained(socket: &Path) {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = total(socket, "rx_packets");
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = total(socket, "rx_packets");
        if now == last || std::time::Instant::now() > end {
            return;
        }
        last = now;
    }
}

fn table_count(socket: &Path) -> u64 {
    ctl(socket, r#"{"cmd":"stats"}"#)["conn_table"]["count"]
        .as_u64()
        .unwrap()
}

fn in_use(socket: &Path) -> u64 {
    ctl(socket, r#"{"cmd":"stats"}"#)["mempools"][0]["in_use"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_spoofed_syn_flood_leaves_the_table_and_memory_flat_and_clients_served() {
    let topo = Topology::up_unique();
    let mut config = topo.default_config();
    config["max_connections"] = MAX_CONNS.into();
    let rvsd = Rvsd::start(&topo, &config);
    let vs = "10.0.0.100:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr", "--synproxy"]);
    for rip in ["10.0.1.11:80", "10.0.1.12:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, "-m"]);
    }
    let save = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert!(
        save.contains("-A -t 10.0.0.100:80 -s rr --synproxy\n"),
        "{save}"
    );
    let sock = rvsd.socket.clone();

    // Through the proxy, before the flood: both servers answer.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..10 {
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap_or_else(|e| panic!("request {i} before the flood: {e}"));
        seen.insert(body.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(total(&sock, "synproxy_established"), 10);
    let rss0 = rss_kb(rvsd.pid());
    let pool0 = in_use(&sock);
    let answered0 = total(&sock, "synproxy_syn_answered");

    // The flood, and a client making requests all along.
    let mut f = flood(&topo, u64::MAX >> 1, FLOOD_SECS);
    let (mut ok, mut during) = (0, 0);
    let mut max_table = 0;
    loop {
        let flooding = f.try_wait().unwrap().is_none();
        if !flooding && ok >= 20 {
            break;
        }
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap_or_else(|e| panic!("request {ok} during the flood: {e}"));
        assert!(body.starts_with("rs"), "{body}");
        ok += 1;
        // Counted only if the flood was still on when it ended.
        if f.try_wait().unwrap().is_none() {
            during += 1;
        }
        max_table = max_table.max(table_count(&sock));
    }
    let n = sent(f);
    assert!(n >= 10_000, "the flood sent only {n} SYNs");
    assert!(
        during >= 5,
        "only {during} requests completed during the flood"
    );
    // Let the answers drain, then look.
    drained(&sock);
    let answered = total(&sock, "synproxy_syn_answered") - answered0;
    assert!(
        answered >= n / 2,
        "{answered} of {n} SYNs reached and were answered by the director"
    );
    assert!(
        max_table <= 2 * ok as u64 + 10,
        "the table held {max_table} entries for {ok} real connections"
    );
    assert_eq!(total(&sock, "conn_table_full"), 0);
    let rss1 = rss_kb(rvsd.pid());
    assert!(
        rss1 - rss0 < 2 * 1024,
        "RSS {rss0} KiB -> {rss1} KiB after {answered} SYNs"
    );
    assert_eq!(in_use(&sock), pool0, "every mbuf back in the pool");
    eprintln!(
        "proxy on: {n} SYNs sent, {answered} answered, {ok} requests ok ({during} during the flood), table max {max_table}, RSS {rss0} -> {rss1} KiB"
    );

    // The proxy off (-E without --synproxy): the same flood fills the table
    // to its bound, and no further.
    rvsd.rvsadm_ok(&["-E", "-t", vs, "-s", "rr"]);
    let n = sent(flood(&topo, FLOOD, 60));
    drained(&sock);
    let count = table_count(&sock);
    assert!(
        count <= MAX_CONNS,
        "{count} entries in a table of {MAX_CONNS}"
    );
    let full = total(&sock, "conn_table_full");
    assert!(
        count == MAX_CONNS && full > 0,
        "{n} SYNs without the proxy: {count} entries, {full} refused as full"
    );
    let rss2 = rss_kb(rvsd.pid());
    eprintln!("proxy off: {n} SYNs sent, table {count}, {full} refused as full, RSS {rss2} KiB");
    assert!(
        rss2 - rss0 < 2 * 1024,
        "RSS {rss0} KiB -> {rss2} KiB with a full table (allocated at start)"
    );
}
