//! End to end, the exception path: rvsd gives port 0 a kernel twin
//! (DPDK net_tap "rvs0" in the director namespace, with the port's MAC and
//! address). What rvs does not own reaches the kernel there; what the
//! kernel sends leaves by the port.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, ns_exec_ok, Rvsd, Topology};
use serde_json::{json, Value};

fn ctl(socket: &Path, req: &str) -> Value {
    let mut s = BufReader::new(UnixStream::connect(socket).unwrap());
    s.get_mut().write_all(req.as_bytes()).unwrap();
    s.get_mut().write_all(b"\n").unwrap();
    let mut l = String::new();
    s.read_line(&mut l).unwrap();
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["ok"], true, "{req} -> {v}");
    v
}

/// The summed worker counters.
fn stats(rvsd: &Rvsd) -> Value {
    let v = ctl(&rvsd.socket, r#"{"cmd":"stats"}"#);
    let mut sum = json!({});
    for w in v["workers"].as_array().unwrap() {
        for (k, x) in w.as_object().unwrap() {
            if let Some(n) = x.as_u64() {
                let e = sum[k].as_u64().unwrap_or(0);
                sum[k] = json!(e + n);
            }
        }
        for (k, x) in w["drops"].as_object().unwrap() {
            let e = sum["drops"][k].as_u64().unwrap_or(0);
            sum["drops"][k] = json!(e + x.as_u64().unwrap());
        }
    }
    sum
}

/// af_packet binds a veth end the director namespace's kernel also
/// receives on: with the port address now on the twin, the kernel would
/// accept frames from lb0 as well (weak host model) and answer twice.
/// Strict reverse-path filtering on lb0 stops that (the route back to the
/// client is the twin). A NIC that DPDK owns has no such second path.
fn quiet_af_packet_end(topo: &Topology) {
    ns_exec_ok(
        &topo.lb_ns(),
        &["sysctl", "-qw", "net.ipv4.conf.lb0.rp_filter=1"],
    );
}

fn twin_config(topo: &Topology, rate: u32, burst: u32) -> Value {
    quiet_af_packet_end(topo);
    let mut c = topo.default_config();
    c["ports"][0]["kernel_twin"] =
        json!({"kind": "tap", "name": "rvs0", "rate_pps": rate, "burst": burst});
    c
}

/// A one-line TCP server on the twin's address in the director namespace
/// (the "SSH-like" service of the director's own kernel).
struct Server(Child);

impl Server {
    fn start(ns: &str) -> Server {
        Server::python(
            ns,
            r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.1", 2222))
s.listen(16)
print("listening", flush=True)
while True:
    c, a = s.accept()
    c.sendall(b"kernel-here %s\n" % a[0].encode())
    c.close()
"#,
        )
    }

    /// Runs `code` with python3 in namespace `ns`; ready once it prints
    /// "listening".
    fn python(ns: &str, code: &str) -> Server {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/bin/python3", "-c", code])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut l = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut l)
            .unwrap();
        assert_eq!(l.trim(), "listening");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_to_director(client_ns: &str) -> String {
    let code = r#"
import socket
s = socket.create_connection(("10.0.0.1", 2222), timeout=5)
print(s.recv(100).decode().strip())
"#;
    ns_exec_ok(client_ns, &["/usr/bin/python3", "-c", code])
        .trim()
        .to_string()
}

#[test]
fn tcp_to_the_port_address_reaches_the_kernel_twin_and_ping_is_answered_once() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &twin_config(&topo, 100_000, 1024));
    // The twin exists in the director namespace with the port's MAC and
    // address, up.
    let link = ns_exec_ok(&topo.lb_ns(), &["ip", "-o", "link", "show", "rvs0"]);
    assert!(
        link.contains(&topo.fact("LB0_MAC").to_lowercase()),
        "twin MAC: {link} vs {}",
        topo.fact("LB0_MAC")
    );
    let addr = ns_exec_ok(&topo.lb_ns(), &["ip", "-o", "-4", "addr", "show", "rvs0"]);
    assert!(addr.contains("10.0.0.1/24"), "{addr}");

    let _srv = Server::start(&topo.lb_ns());
    let before = stats(&rvsd);
    for _ in 0..3 {
        assert_eq!(tcp_to_director(&topo.client_ns()), "kernel-here 10.0.0.2");
    }
    let after = stats(&rvsd);
    let to_k = after["exception_to_kernel"].as_u64().unwrap()
        - before["exception_to_kernel"].as_u64().unwrap();
    let from_k = after["exception_from_kernel"].as_u64().unwrap()
        - before["exception_from_kernel"].as_u64().unwrap();
    // Three connections: at least SYN, ACK, FIN/ACK each way.
    assert!(to_k >= 9 && from_k >= 9, "to {to_k} from {from_k}");

    // Ping the port address: one reply per request (rvs answers; the
    // kernel never sees the request), checked in a capture on the client.
    let cap = Capture::start(
        &topo.client_ns(),
        "eth0",
        topo.state_dir.join("ping.pcap"),
        "icmp or arp",
    );
    let ping = ns_exec(
        &topo.client_ns(),
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.1"],
    );
    let ping_out = String::from_utf8_lossy(&ping.stdout).to_string();
    let lines = cap.lines();
    assert!(ping_out.contains("3 received"), "{ping_out}");
    let replies = lines
        .iter()
        .filter(|l| l.contains("ICMP echo reply"))
        .count();
    assert_eq!(replies, 3, "{lines:#?}");
    let arp_replies = lines
        .iter()
        .filter(|l| l.contains("Reply 10.0.0.1 is-at"))
        .count();
    let arp_requests = lines
        .iter()
        .filter(|l| l.contains("Request who-has 10.0.0.1 tell"))
        .count();
    assert_eq!(arp_replies, arp_requests, "{lines:#?}");
    rvsd.stop().expect("rvsd stops cleanly");
}

#[test]
fn a_flood_at_the_host_is_bounded_vip_traffic_flows_and_counts_add_up() {
    let topo = Topology::up_unique();
    // A small bucket so the flood certainly exceeds it.
    let rvsd = Rvsd::start(&topo, &twin_config(&topo, 2000, 200));
    rvsd.nat_service("rr", 1, 1);
    assert_eq!(
        curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap()
            .trim()
            .len(),
        3
    );
    // 200k UDP datagrams to the host address (the kernel twin's), bounded
    // in count and time, while requests go to the VIP.
    const FLOOD: u64 = 200_000;
    let code = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + 60
n = 0
while n < {FLOOD} and time.time() < end:
    try:
        s.sendto(b"x" * 18, ("10.0.0.1", 9))
        n += 1
    except OSError:
        pass
print(n)
"#
    );
    let mut flood = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.client_ns(),
            "/usr/bin/python3",
            "-c",
            &code,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ok = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while flood.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap_or_else(|e| panic!("VIP request during the flood: {e}"));
        assert!(matches!(body.trim(), "rs1" | "rs2"), "{body}");
        ok += 1;
    }
    let out = flood.wait_with_output().unwrap();
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(ok > 0, "no VIP request completed during the flood");
    // Let the ports drain: the counters settle when rx stops moving.
    let mut last = stats(&rvsd);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = stats(&rvsd);
        if now["rx_packets"] == last["rx_packets"] {
            break;
        }
        last = now;
    }
    let s = last;
    let g = |k: &str| s[k].as_u64().unwrap_or(0);
    let drops: u64 = s["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let rate_dropped = s["drops"]["exception_rate"].as_u64().unwrap();
    eprintln!(
        "flood: sent {sent}, VIP requests {ok}; rx {} tx {} to_kernel {} rate-dropped {rate_dropped} drops {drops} consumed {}",
        g("rx_packets"),
        g("tx_packets"),
        g("exception_to_kernel"),
        g("consumed")
    );
    // Every received frame is accounted for exactly once.
    assert_eq!(
        g("rx_packets"),
        g("tx_packets") + g("consumed") + g("exception_to_kernel") + drops,
        "{s}"
    );
    // The bucket held: most of the flood was dropped and counted, and the
    // kernel got no more than the bucket allows plus what else it got.
    assert!(rate_dropped > 0, "{s}");
    assert!(g("exception_to_kernel") + rate_dropped >= sent / 2, "{s}");
    // VIP traffic kept working after it too.
    assert!(curl_from(&topo.client_ns(), "http://10.0.0.100/").is_ok());
    rvsd.stop().expect("rvsd stops cleanly");
}

#[test]
fn virtio_user_twin_is_refused_clearly_without_vhost_net() {
    if Path::new("/dev/vhost-net").exists() {
        eprintln!("skipped: this host has /dev/vhost-net");
        return;
    }
    let dir = std::env::temp_dir().join(format!("rvs-exc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("rvsd.json");
    std::fs::write(
        &conf,
        r#"{"eal_args":["--no-pci","--in-memory"],
            "ports":[{"device":"net_null0","ipv4":"10.0.0.1/24",
                      "kernel_twin":{"kind":"virtio_user","name":"rvs0"}}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--config")
        .arg(&conf)
        .arg("--socket")
        .arg(dir.join("s.sock"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("virtio_user needs /dev/vhost-net") && err.contains("\"tap\""),
        "{err}"
    );
}

/// Seed article 004's `sorry_server 127.0.0.1 80`: with a kernel twin the
/// loopback sorry server is IPVS's "Local" real server — the director's
/// own stack, here a server in the director namespace listening on the VIP
/// (which the kernel must hold, as keepalived's `virtual_ipaddress` puts it
/// on the twin). Imported from keepalived.conf, listed as ipvsadm lists it,
/// and it answers the client while no real server is in service.
#[test]
fn a_loopback_sorry_server_is_the_director_s_own_stack() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &twin_config(&topo, 100_000, 1024));
    ns_exec_ok(
        &topo.lb_ns(),
        &["ip", "addr", "add", "10.0.0.100/32", "dev", "rvs0"],
    );
    let conf = topo.state_dir.join("sorry.conf");
    std::fs::write(
        &conf,
        "virtual_server 10.0.0.100 80 {\n  lb_algo wlc\n  lb_kind NAT\n  protocol TCP\n  \
         sorry_server 127.0.0.1 80\n}\n",
    )
    .unwrap();
    let out = rvsd.rvsadm(&["--import-keepalived", conf.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("sorry_server"), "dropped: {err}");
    let l = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(l.contains("-> 127.0.0.1:80") && l.contains("Local"), "{l}");

    let code = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.0.100", 80))
s.listen(16)
print("listening", flush=True)
while True:
    c, a = s.accept()
    c.recv(1024)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nsorry\n")
    c.close()
"#;
    let _srv = Server::python(&topo.lb_ns(), code);
    let before = stats(&rvsd);
    for _ in 0..3 {
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("sorry server");
        assert_eq!(body.trim(), "sorry");
    }
    let after = stats(&rvsd);
    let to_k = after["exception_to_kernel"].as_u64().unwrap()
        - before["exception_to_kernel"].as_u64().unwrap();
    assert!(to_k >= 9, "to the twin: {to_k}");
    let c = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(c.contains("10.0.0.2:") && c.contains("127.0.0.1:80"), "{c}");
}
