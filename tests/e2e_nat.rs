//! End to end, NAT mode: real network namespaces, rvsd on af_packet ports,
//! nginx real servers, kernel TCP clients (curl), ipvsadm-style commands.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use common::topo::{curl_from, ns_exec, Rvsd, Topology};
use serde_json::{json, Value};

const VIP_URL: &str = "http://10.0.0.100/";

/// `n` requests through the VIP; every one must succeed. Returns how many
/// each real server answered.
fn requests(topo: &Topology, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for i in 0..n {
        let body =
            curl_from(&topo.client_ns(), VIP_URL).unwrap_or_else(|e| panic!("request {i}: {e}"));
        match body.trim() {
            "rs1" => a += 1,
            "rs2" => b += 1,
            other => panic!("request {i}: unexpected body {other:?}"),
        }
    }
    (a, b)
}

/// The `--stats` Conns column of the service line.
fn service_conns(rvsd: &Rvsd) -> u64 {
    let out = rvsd.rvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("TCP  10.0.0.100:80"))
        .expect("service line");
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn rr_splits_200_requests_evenly_and_the_vip_answers_ping() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    rvsd.nat_service("rr", 1, 1);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("TCP  10.0.0.100:80 rr\n"), "{list}");
    assert!(
        list.contains("  -> 10.0.1.11:80                 Masq    1      "),
        "{list}"
    );

    let (a, b) = requests(&topo, 200);
    assert!(
        a.abs_diff(100) <= 1 && b.abs_diff(100) <= 1,
        "rr split {a}/{b}"
    );
    assert_eq!(service_conns(&rvsd), 200);

    let ping = ns_exec(
        &topo.client_ns(),
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.100"],
    );
    assert!(
        ping.status.success(),
        "ping VIP: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(String::from_utf8_lossy(&ping.stdout).contains("3 received"));
    rvsd.stop().expect("rvsd stops cleanly on SIGTERM");
}

#[test]
fn wrr_3_to_1_within_5_percent_and_weight_0_quiesces() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    rvsd.nat_service("wrr", 3, 1);
    let (a, b) = requests(&topo, 200);
    let share = a as f64 / 200.0;
    assert!((share - 0.75).abs() <= 0.05, "wrr 3:1 gave {a}/{b}");
    // Quiesce rs1 (weight 0): every new connection goes to rs2.
    rvsd.rvsadm_ok(&[
        "-e",
        "-t",
        "10.0.0.100:80",
        "-r",
        "10.0.1.11:80",
        "-m",
        "-w",
        "0",
    ]);
    let (a, b) = requests(&topo, 20);
    assert_eq!((a, b), (0, 20));
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("  -> 10.0.1.11:80                 Masq    0      "),
        "{list}"
    );
}

#[test]
fn services_from_the_config_file_serve_tcp_and_udp() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["services"] = json!([
        {"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
         "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]},
        {"proto": "udp", "vip": "10.0.0.100", "port": 5353, "sched": "rr",
         "dests": [{"ip": "10.0.1.11", "port": 9000, "fwd": "nat"}]}
    ]);
    // A UDP server on rs1 that answers every datagram with its own name.
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &topo.rs_ns(1), "python3", "-c"])
        .arg(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('10.0.1.11',9000))\nprint('ready',flush=True)\n\
             while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'rs1:'+d,a)\n",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("udp server");
    let mut server = KillOnDrop(server);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let rvsd = Rvsd::start(&topo, &cfg);
    let (a, b) = requests(&topo, 10);
    assert_eq!((a, b), (5, 5));
    let out = ns_exec(
        &topo.client_ns(),
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n\
             s.sendto(b'hello',('10.0.0.100',5353))\nd,a=s.recvfrom(2048)\nprint(d.decode(),a[0],a[1])",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "rs1:hello 10.0.0.100 5353",
        "reply comes from VIP:vport"
    );
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(
        conns.contains("UDP")
            && conns.contains("10.0.0.100:5353")
            && conns.contains("10.0.1.11:9000"),
        "{conns}"
    );
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn raw_request(socket: &std::path::Path, line: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(line).unwrap();
    s.write_all(b"\n").unwrap();
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp).unwrap();
    serde_json::from_str(&resp).unwrap_or_else(|e| panic!("not JSON: {resp:?}: {e}"))
}

#[test]
fn bad_control_requests_get_errors_and_the_service_keeps_working() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    rvsd.nat_service("rr", 1, 1);
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    let mode = std::fs::metadata(&rvsd.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    for (req, code) in [
        (&b"{this is not json"[..], "bad_json"),
        (br#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#, "exists"),
        (br#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.13","fwd":"nat","weight":-5}}"#, "bad_request"),
        (br#"{"cmd":"clear","now":true}"#, "bad_request"),
        (br#"{"cmd":"self_destruct"}"#, "unknown_command"),
    ] {
        let r = raw_request(&rvsd.socket, req);
        assert_eq!(r["error"]["code"], code, "{} -> {r}", String::from_utf8_lossy(req));
    }
    let bad = rvsd.rvsadm(&["-E", "-t", "10.0.0.100:80", "-s", "fastest"]);
    assert_eq!(bad.status.code(), Some(255));
    assert!(
        // ipvsadm prints the kernel's ENOENT text (libipvs ipvs_strerror).
        String::from_utf8_lossy(&bad.stderr).contains("Scheduler or persistence engine not found"),
        "{:?}",
        bad
    );
    let bad = rvsd.rvsadm(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"]);
    assert_eq!(
        String::from_utf8_lossy(&bad.stderr).trim(),
        "Destination already exists"
    );

    assert_eq!(
        rvsd.rvsadm_ok(&["-S", "-n"]),
        saved,
        "configuration unchanged"
    );
    let (a, b) = requests(&topo, 10);
    assert_eq!((a, b), (5, 5));
}

#[test]
fn port_unreachable_from_a_real_server_reaches_the_client_translated() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    // Nothing listens on the real servers' UDP 9999.
    cfg["services"] = json!([{"proto": "udp", "vip": "10.0.0.100", "port": 9999, "sched": "rr",
                              "dests": [{"ip": "10.0.1.11", "fwd": "nat"}]}]);
    let rvsd = Rvsd::start(&topo, &cfg);
    // The client's connected UDP socket only reports ECONNREFUSED if the
    // ICMP error matches it: from the VIP, quoting client -> VIP:9999.
    let out = ns_exec(
        &topo.client_ns(),
        &[
            "python3",
            "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n\
             s.connect(('10.0.0.100',9999))\ns.send(b'ping')\n\
             try:\n s.recv(100)\n print('answer')\nexcept ConnectionRefusedError:\n print('refused')\n\
             except socket.timeout:\n print('timeout')",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused",
        "{out:?}"
    );
    let r = raw_request(&rvsd.socket, br#"{"cmd":"stats"}"#);
    assert_eq!(r["total"]["icmp_errors_forwarded"], 1);
}
