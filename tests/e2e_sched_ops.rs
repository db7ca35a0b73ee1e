//! End to end, one-packet scheduling (`"ops": true`, ipvsadm `-o`) for a
//! DNS-like UDP service in DR mode: a kernel UDP client in its namespace
//! sends queries from one socket (one source port), real servers in theirs
//! answer from the VIP, rvsd on af_packet ports in between.
//!
//! The kernel schedules each UDP datagram of an ops service on its own and
//! keeps no connection entry for it (ip_vs_core.c `ip_vs_schedule` flags it
//! IP_VS_CONN_F_ONE_PACKET; ip_vs_conn.c never hashes such a connection), so
//! rr spreads one client's queries over the servers and `-L -c` lists
//! nothing; without ops the flow sticks to its first server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::topo::{ns_exec, Rvsd, Topology};
use serde_json::json;

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP server on the VIP in real server `n`'s namespace, answering every
/// datagram on `port` with "rsN:" + the datagram; returns once it is bound.
fn udp_server(topo: &Topology, n: usize, port: u16) -> KillOnDrop {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('10.0.1.100',{port}))\nprint('ready',flush=True)\n\
         while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'rs{n}:'+d,a)\n"
    );
    let mut child = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", &topo.rs_ns(n), "python3", "-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .expect("udp server"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "udp server {n}");
    child
}

/// `n` queries to VIP:port from one client socket, each awaiting its answer
/// (3 s timeout, one retry); the answering server of each, in order.
fn queries(topo: &Topology, port: u16, n: usize) -> Vec<String> {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(3)\n\
         s.bind(('0.0.0.0',0))\n\
         for i in range({n}):\n\
         \x20q=('q%d'%i).encode()\n\
         \x20for attempt in range(2):\n\
         \x20\x20s.sendto(q,('10.0.1.100',{port}))\n\
         \x20\x20try:\n\
         \x20\x20\x20d,a=s.recvfrom(2048)\n\
         \x20\x20\x20break\n\
         \x20\x20except socket.timeout:\n\
         \x20\x20\x20d=b'timeout:'\n\
         \x20assert a==('10.0.1.100',{port}), a\n\
         \x20print(d.decode().split(':')[0])\n"
    );
    let out = ns_exec(&topo.client_ns(), &["python3", "-c", &code]);
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ops_spreads_one_clients_udp_queries_and_keeps_no_entries() {
    let topo = Topology::up_unique_mode("dr");
    let mut cfg = topo.default_config();
    let dests = json!([{"ip": "10.0.1.11", "fwd": "dr"}, {"ip": "10.0.1.12", "fwd": "dr"}]);
    cfg["services"] = json!([
        {"proto": "udp", "vip": "10.0.1.100", "port": 53, "sched": "rr", "ops": true,
         "dests": dests},
        {"proto": "udp", "vip": "10.0.1.100", "port": 5353, "sched": "rr",
         "dests": dests}
    ]);
    let _servers = [
        udp_server(&topo, 1, 53),
        udp_server(&topo, 2, 53),
        udp_server(&topo, 1, 5353),
        udp_server(&topo, 2, 5353),
    ];
    let rvsd = Rvsd::start(&topo, &cfg);

    // ops: every datagram scheduled on its own, rr over the kernel's list
    // (rs2 newest first): rs2 rs1 rs2 rs1 ...
    let got = queries(&topo, 53, 10);
    let want: Vec<&str> = (0..10).map(|i| ["rs2", "rs1"][i % 2]).collect();
    assert_eq!(got, want);
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(
        !conns.contains("10.0.1.100:53 "),
        "ops connections are not kept: {conns}"
    );
    // The service's Conns count every datagram (ip_vs_conn_stats per
    // scheduled packet), InActConn is back to 0.
    let stats = rvsd.rvsadm_ok(&["-L", "-n", "--stats", "--exact"]);
    let line = stats
        .lines()
        .find(|l| l.starts_with("UDP  10.0.1.100:53 "))
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(line.split_whitespace().nth(2), Some("10"), "{stats}");
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("UDP  10.0.1.100:53 rr ops\n"), "{list}");
    assert!(
        rvsd.rvsadm_ok(&["-S", "-n"])
            .contains("-A -u 10.0.1.100:53 -s rr -o\n"),
        "-S"
    );
    let mut in_53 = false;
    for l in list.lines() {
        if l.starts_with("UDP") {
            in_53 = l.starts_with("UDP  10.0.1.100:53 ");
        } else if in_53 && l.contains("->") && l.contains("Route") {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols[4..], ["0", "0"], "ActiveConn InActConn: {list}");
        }
    }

    // Without ops the client's flow sticks to its first server and is
    // listed.
    let got = queries(&topo, 5353, 6);
    assert!(got.iter().all(|s| *s == got[0]), "{got:?}");
    assert!(got[0] == "rs1" || got[0] == "rs2", "{got:?}");
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    assert!(conns.contains("10.0.1.100:5353"), "{conns}");
    rvsd.stop().expect("rvsd stops cleanly");
}
