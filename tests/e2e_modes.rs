//! End to end, DR and TUN: client, director and real servers on one bridge,
//! real kernel TCP, replies that bypass the director.

mod common;

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, Rvsd, Topology};

fn split(topo: &Topology, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for i in 0..n {
        match curl_from(&topo.client_ns(), "http://10.0.1.100/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"))
            .trim()
        {
            "rs1" => a += 1,
            "rs2" => b += 1,
            o => panic!("unexpected {o:?}"),
        }
    }
    (a, b)
}

fn service(rvsd: &Rvsd, proto: &str, port: u16, flag: &str) {
    let vs = format!("10.0.1.100:{port}");
    rvsd.rvsadm_ok(&["-A", proto, &vs, "-s", "rr"]);
    for rip in ["10.0.1.11", "10.0.1.12"] {
        rvsd.rvsadm_ok(&["-a", proto, &vs, "-r", &format!("{rip}:{port}"), flag]);
    }
}

#[test]
fn dr_serves_through_the_vip_and_replies_bypass_the_director() {
    let topo = Topology::up_unique_mode("dr");
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    service(&rvsd, "-t", 80, "-g");
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("  -> 10.0.1.11:80                 Route   1      "),
        "{list}"
    );
    // DR cannot map ports: another port is the service's, as ipvsadm sends
    // it (ipvsadm.c process_options: ce.dest.port = ce.svc.port).
    let other = rvsd.rvsadm(&["-a", "-t", "10.0.1.100:80", "-r", "10.0.1.13:8080", "-g"]);
    assert!(other.status.success(), "{other:?}");
    assert!(rvsd
        .rvsadm_ok(&["-L", "-n"])
        .contains("  -> 10.0.1.13:80                 Route   1      "));
    rvsd.rvsadm_ok(&["-d", "-t", "10.0.1.100:80", "-r", "10.0.1.13:80"]);

    let cap = Capture::start(
        &topo.lb_ns(),
        "lb1",
        topo.state_dir.join("lb1.pcap"),
        "host 10.0.1.100",
    );
    assert_eq!(split(&topo, 20), (10, 10));
    let pkts = cap.lines();
    let inbound = pkts
        .iter()
        .filter(|l| l.contains("> 10.0.1.100.80:"))
        .count();
    let replies: Vec<_> = pkts
        .iter()
        .filter(|l| l.contains(" IP 10.0.1.100.80 >"))
        .collect();
    assert!(
        inbound >= 20 * 4,
        "the capture saw the requests ({inbound})"
    );
    assert!(
        replies.is_empty(),
        "replies went through the director: {replies:?}"
    );
}

#[test]
fn tun_carries_ipip_to_user_space_decapsulating_real_servers() {
    let topo = Topology::up_unique_mode("tun");
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    service(&rvsd, "-t", 80, "-i");
    service(&rvsd, "-u", 5353, "-i");
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("  -> 10.0.1.11:80                 Tunnel  1      "),
        "{list}"
    );

    let cap = Capture::start(
        &topo.rs_ns(1),
        "eth0",
        topo.state_dir.join("rs1.pcap"),
        "ip proto 4",
    );
    assert_eq!(split(&topo, 20), (10, 10));
    let pkts = cap.lines();
    // tcpdump decodes both headers: outer director -> rs1, inner client -> VIP.
    let syns: Vec<_> = pkts
        .iter()
        .filter(|l| {
            l.contains("IP 10.0.1.1 > 10.0.1.11: IP 10.0.1.2.")
                && l.contains("> 10.0.1.100.80: Flags [S]")
        })
        .collect();
    assert_eq!(
        syns.len(),
        10,
        "one encapsulated SYN per connection to rs1:\n{}",
        pkts.join("\n")
    );

    // A DF datagram that cannot fit once encapsulated: the client gets
    // "fragmentation needed" with MTU 1480 and lowers its path MTU.
    let out = ns_exec(
        &topo.client_ns(),
        &[
            "python3",
            "-c",
            "import socket,time\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IP,10,2)\n\
             s.connect(('10.0.1.100',5353))\n\
             s.send(b'x'*1472)\n\
             end=time.time()+5\n\
             mtu=s.getsockopt(socket.IPPROTO_IP,14)\n\
             while mtu==1500 and time.time()<end:\n\
             \x20time.sleep(0.05)\n\
             \x20mtu=s.getsockopt(socket.IPPROTO_IP,14)\n\
             print(mtu)",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1480",
        "{out:?}"
    );
    let route = ns_exec(&topo.client_ns(), &["ip", "route", "get", "10.0.1.100"]);
    assert!(
        String::from_utf8_lossy(&route.stdout).contains("mtu 1480"),
        "{route:?}"
    );
    let stats = rvsd.rvsadm_ok(&["-L", "-n", "--stats"]);
    assert!(stats.contains("UDP  10.0.1.100:5353"), "{stats}");
}
