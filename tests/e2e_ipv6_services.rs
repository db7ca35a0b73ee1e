//! End to end, IPv6 services: kernel clients with `curl -6` through rvsd
//! (af_packet ports) to nginx real servers listening on IPv6, in NAT, DR
//! and FULLNAT. The topologies are the IPv4 ones (tests/lib/topo.sh) with
//! IPv6 turned on where these tests need it: the client's and the real
//! servers' links get 2001:db8::/64 and 2001:db8:1::/64, without Duplicate
//! Address Detection so the addresses are usable at once.

mod common;

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, ns_exec_ok, Rvsd, Topology};

/// Turn IPv6 on for `ifc` in `ns` and give it `addr` (CIDR).
fn v6_addr(ns: &str, ifc: &str, addr: &str) {
    for s in [
        format!("net.ipv6.conf.{ifc}.accept_dad=0"),
        format!("net.ipv6.conf.{ifc}.disable_ipv6=0"),
    ] {
        ns_exec_ok(ns, &["sysctl", "-qw", &s]);
    }
    ns_exec_ok(ns, &["ip", "addr", "add", addr, "dev", ifc, "nodad"]);
}

/// A second nginx in the real server's namespace, on [::]:80 only, serving
/// the topology's pages (`/` says "rsN"); returns once it listens.
fn nginx6(topo: &Topology, rs: &str) {
    let ns = topo.ns(rs);
    let dir = topo.state_dir.join(format!("{rs}-v6"));
    let www = topo.state_dir.join(rs).join("www");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        "user root;\nworker_processes 1;\ndaemon on;\npid {d}/nginx.pid;\n\
         error_log {d}/logs/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n  default_type text/plain;\n  access_log {d}/logs/access.log;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         server {{\n    listen [::]:80 ipv6only=on;\n    root {w};\n\
         location = / {{ try_files /index.html =404; }}\n  }}\n\
         server {{\n    listen [::]:8080 ipv6only=on proxy_protocol;\n\
         location / {{ return 200 \"{rs} $proxy_protocol_addr:$proxy_protocol_port\\n\"; }}\n  }}\n}}\n",
        d = dir.display(),
        w = www.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let p = path.to_string_lossy().into_owned();
    let d = dir.to_string_lossy().into_owned();
    ns_exec_ok(&ns, &["nginx", "-q", "-c", &p, "-p", &d]);
    // Readiness: the socket is listening (bounded).
    for _ in 0..200 {
        let out = ns_exec(&ns, &["ss", "-Hltn6", "sport = :80"]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nginx on [::]:80 in {ns} is not listening");
}

/// `n` requests from the client: how many each server answered.
fn split(topo: &Topology, url: &str, n: usize) -> (usize, usize) {
    let (mut a, mut b) = (0, 0);
    for i in 0..n {
        match curl_from(&topo.client_ns(), url)
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

/// `wrk` from the client for 2 s (4 connections, keep-alive): it must
/// complete requests without a socket error or a non-2xx answer.
fn wrk_ok(topo: &Topology, url: &str) {
    let out = ns_exec(&topo.client_ns(), &["wrk", "-t1", "-c4", "-d2s", url]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let n: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(out.status.success() && n > 0, "wrk {url}: {text}");
    assert!(
        !text.contains("Socket errors") && !text.contains("Non-2xx"),
        "wrk {url}: {text}"
    );
}

/// NAT and FULLNAT: the client on port 0's link, the servers on port 1's.
fn two_links(mode: &str) -> (Topology, Rvsd) {
    two_links_with(mode, |_, _| {})
}

/// [`two_links`], `edit` changing rvsd's configuration first.
fn two_links_with(
    mode: &str,
    edit: impl FnOnce(&Topology, &mut serde_json::Value),
) -> (Topology, Rvsd) {
    let topo = Topology::up_unique_mode(mode);
    let c = topo.client_ns();
    v6_addr(&c, "eth0", "2001:db8::2/64");
    for (rs, a) in [("rs1", "2001:db8:1::11/64"), ("rs2", "2001:db8:1::12/64")] {
        v6_addr(&topo.ns(rs), "eth0", a);
        if mode == "nat" {
            // NAT: replies must come back through the director.
            ns_exec_ok(
                &topo.ns(rs),
                &[
                    "ip",
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    "2001:db8:1::1",
                ],
            );
        }
        nginx6(&topo, rs);
    }
    let mut config = topo.default_config();
    config["ports"][0]["ipv6"] = "2001:db8::1/64".into();
    config["ports"][1]["ipv6"] = "2001:db8:1::1/64".into();
    edit(&topo, &mut config);
    let rvsd = Rvsd::start(&topo, &config);
    (topo, rvsd)
}

/// DR and TUN: client, director and servers on one link (2001:db8:1::/64),
/// the VIP 2001:db8:1::100 on each server's `vip_dev`, and the service with
/// both servers in the mode (`flag`, -g or -i).
fn one_link(mode: &str, vip_dev: &str, flag: &str) -> (Topology, Rvsd) {
    let topo = Topology::up_unique_mode(mode);
    v6_addr(&topo.client_ns(), "eth0", "2001:db8:1::2/64");
    for (rs, a) in [("rs1", "2001:db8:1::11/64"), ("rs2", "2001:db8:1::12/64")] {
        let ns = topo.ns(rs);
        v6_addr(&ns, "eth0", a);
        v6_addr(&ns, vip_dev, "2001:db8:1::100/128");
        nginx6(&topo, rs);
    }
    let mut config = topo.default_config();
    config["ports"][0]["ipv6"] = "2001:db8:1::1/64".into();
    let rvsd = Rvsd::start(&topo, &config);
    let vs = "[2001:db8:1::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    for rip in ["[2001:db8:1::11]:80", "[2001:db8:1::12]:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, flag]);
    }
    (topo, rvsd)
}

#[test]
fn nat_serves_an_ipv6_vip_from_ipv6_servers() {
    let (topo, rvsd) = two_links("nat");
    let vs = "[2001:db8::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    for rip in ["[2001:db8:1::11]:80", "[2001:db8:1::12]:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, "-m"]);
    }
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("TCP  [2001:db8::100]:80 rr"), "{list}");
    assert!(list.contains("  -> [2001:db8:1::11]:80"), "{list}");

    assert_eq!(split(&topo, "http://[2001:db8::100]/", 10), (5, 5));
    wrk_ok(&topo, "http://[2001:db8::100]/");
    // The servers saw the client's own address (NAT keeps it).
    let log = std::fs::read_to_string(topo.state_dir.join("rs1-v6/logs/access.log")).unwrap();
    assert!(log.starts_with("2001:db8::2 "), "{log}");
    // The connections are listed with their IPv6 addresses.
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(conns.contains("[2001:db8::2]:"), "{conns}");
    // The client pings the VIP; the director answered its solicitations
    // and solicited the servers itself.
    let ping = ns_exec(
        &topo.client_ns(),
        &[
            "ping",
            "-6",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "2001:db8::100",
        ],
    );
    assert!(ping.status.success(), "{ping:?}");
    assert!(rvsd.counter("nd_solicits_sent") >= 2);
    assert!(rvsd.counter("nd_adverts_sent") >= 1);
    let log = rvsd.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn the_syn_proxy_answers_ipv6_clients_and_opens_the_server_side() {
    // The kernel client's handshake is with the director (a cookie); the
    // server's starts on the client's ACK; the client's kernel must take
    // the window update and the translated sequence numbers for the pages
    // to arrive.
    let (topo, rvsd) = two_links("nat");
    let vs = "[2001:db8::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr", "--synproxy"]);
    for rip in ["[2001:db8:1::11]:80", "[2001:db8:1::12]:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, "-m"]);
    }
    let save = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert!(
        save.contains("-A -t [2001:db8::100]:80 -s rr --synproxy\n"),
        "{save}"
    );
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 6), (3, 3));
    assert!(rvsd.counter("synproxy_syn_answered") >= 6);
    assert_eq!(rvsd.counter("synproxy_established"), 6);
    assert_eq!(rvsd.counter("synproxy_updates_sent"), 6);
    // The servers saw the client's own address (NAT).
    let log = std::fs::read_to_string(topo.state_dir.join("rs1-v6/logs/access.log")).unwrap();
    assert!(log.starts_with("2001:db8::2 "), "{log}");
    let log = rvsd.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn fullnat_serves_an_ipv6_vip_through_an_ipv6_local_address() {
    let (topo, rvsd) = two_links("fullnat");
    let vs = "[2001:db8::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-P", "-t", vs, "-z", "2001:db8:1::5"]);
    for rip in ["[2001:db8:1::11]:80", "[2001:db8:1::12]:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, "--fullnat"]);
    }
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 6), (3, 3));
    wrk_ok(&topo, "http://[2001:db8::100]/");
    // The servers (no route back) saw the director's local address.
    let log = std::fs::read_to_string(topo.state_dir.join("rs2-v6/logs/access.log")).unwrap();
    assert!(log.starts_with("2001:db8:1::5 "), "{log}");

    // With PROXY v2 the servers learn the client's IPv6 address and port:
    // nginx answers with what the header (AF_INET6) announced.
    let pp = "[2001:db8::100]:8080";
    rvsd.rvsadm_ok(&["-A", "-t", pp, "-s", "rr", "--proxy-protocol"]);
    rvsd.rvsadm_ok(&["-P", "-t", pp, "-z", "2001:db8:1::5"]);
    for rip in ["[2001:db8:1::11]:8080", "[2001:db8:1::12]:8080"] {
        rvsd.rvsadm_ok(&["-a", "-t", pp, "-r", rip, "--fullnat"]);
    }
    let mut seen = Vec::new();
    for i in 0..4 {
        let body = curl_from(&topo.client_ns(), "http://[2001:db8::100]:8080/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let (rs, addr) = body.trim().split_once(' ').expect("rsN ADDR:PORT");
        let (ip, port) = addr.rsplit_once(':').expect("ADDR:PORT");
        assert_eq!(ip, "2001:db8::2", "{body}");
        assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "{body}");
        seen.push(rs.to_string());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["rs1", "rs2"]);
}

#[test]
fn dr_serves_an_ipv6_vip_and_replies_bypass_the_director() {
    // The VIP on lo: the kernel answers Neighbor Solicitations only for
    // addresses of the receiving interface, so it never claims it.
    let (topo, rvsd) = one_link("dr", "lo", "-g");
    let cap = Capture::start(
        &topo.lb_ns(),
        "lb1",
        topo.state_dir.join("lb1-v6.pcap"),
        "ip6 and tcp port 80",
    );
    let before = rvsd.counter("tx_packets");
    assert_eq!(split(&topo, "http://[2001:db8:1::100]/", 10), (5, 5));
    // Every request's packets (at least SYN, ACK, GET, FIN) went through
    // the director; no reply did.
    let sent = rvsd.counter("tx_packets") - before;
    assert!(sent >= 10 * 4, "{sent} packets forwarded");
    let pkts = cap.lines();
    let replies: Vec<_> = pkts
        .iter()
        .filter(|l| l.contains(" IP6 2001:db8:1::100.80 >"))
        .collect();
    assert!(
        pkts.iter().any(|l| l.contains("> 2001:db8:1::100.80:")),
        "the capture saw the requests: {pkts:?}"
    );
    assert!(
        replies.is_empty(),
        "replies went through the director: {replies:?}"
    );
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("  -> [2001:db8:1::11]:80"), "{list}");
    assert!(list.contains("Route"), "{list}");
    wrk_ok(&topo, "http://[2001:db8:1::100]/");
}

#[test]
fn tun_carries_ipv6_in_ipv6_and_packet_too_big_shrinks_the_client_path_mtu() {
    // The VIP on the device the user-space decapsulator feeds
    // (tests/lib/ipip_decap.py: this kernel has no ip6_tunnel).
    let (topo, rvsd) = one_link("tun", "tun0", "-i");
    let c = topo.client_ns();
    assert!(rvsd.rvsadm_ok(&["-L", "-n"]).contains("Tunnel"));
    assert_eq!(split(&topo, "http://[2001:db8:1::100]/", 6), (3, 3));
    wrk_ok(&topo, "http://[2001:db8:1::100]/");

    // A request body in full-size segments: 1500-byte packets do not fit
    // the 1500-byte link once wrapped. The director answers Packet Too Big
    // (1460); the client's kernel lowers its path MTU to the VIP and sends
    // again, smaller.
    let body = topo.state_dir.join("body");
    std::fs::write(&body, vec![b'x'; 20_000]).unwrap();
    let out = ns_exec(
        &c,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            &format!("@{}", body.display()),
            "http://[2001:db8:1::100]/",
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    // nginx answers a POST to a static page 405, after reading the body.
    assert!(out.status.success() && code == "405", "{out:?}");
    assert!(rvsd.counter("icmp_errors_sent") >= 1);
    let route = ns_exec_ok(&c, &["ip", "-6", "route", "get", "2001:db8:1::100"]);
    assert!(route.contains("mtu 1460"), "{route}");
}

#[test]
fn nat64_serves_an_ipv6_only_client_from_ipv4_only_nginx() {
    // The FULLNAT topology as built: the real servers have IPv4 only (the
    // topology's nginx on 10.0.1.1x:80) and no route back. Only the
    // client's link gets IPv6.
    let topo = Topology::up_unique_mode("fullnat");
    let c = topo.client_ns();
    v6_addr(&c, "eth0", "2001:db8::2/64");
    let mut config = topo.default_config();
    config["ports"][0]["ipv6"] = "2001:db8::1/64".into();
    let rvsd = Rvsd::start(&topo, &config);
    let vs = "[2001:db8::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-P", "-t", vs, "-z", "10.0.1.200"]);
    for rip in ["10.0.1.11:80", "10.0.1.12:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", rip, "--fullnat"]);
    }
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 6), (3, 3));
    // A 100 kB answer arrives whole, translated segment by segment.
    let out = ns_exec(
        &c,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            "http://[2001:db8::100]/big",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "102400", "{out:?}");
    // The IPv4 servers saw the director's IPv4 local address.
    let log = std::fs::read_to_string(topo.state_dir.join("rs1/logs/access.log")).unwrap();
    assert!(log.starts_with("10.0.1.200 "), "{log}");
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(
        conns.contains("[2001:db8::2]:") && conns.contains("10.0.1.1"),
        "{conns}"
    );
    // The IPv6 client's address reaches IPv4 nginx in a PROXY v2 header
    // (AF_INET6), which it answers with.
    let pv = "[2001:db8::100]:8080";
    rvsd.rvsadm_ok(&["-A", "-t", pv, "-s", "rr", "--proxy-protocol"]);
    rvsd.rvsadm_ok(&["-P", "-t", pv, "-z", "10.0.1.200"]);
    rvsd.rvsadm_ok(&["-a", "-t", pv, "-r", "10.0.1.11:8080", "--fullnat"]);
    let body = curl_from(&c, "http://[2001:db8::100]:8080/").unwrap();
    assert!(body.starts_with("rs1 2001:db8::2:"), "{body}");
    // ICMP crosses too: a UDP service whose IPv4 server has nothing on the
    // port. The server's kernel answers Port Unreachable to the local
    // address; the client's kernel must take the ICMPv6 translation as
    // about its own socket (quoted packet, checksum) to report it.
    let us = "[2001:db8::100]:5353";
    rvsd.rvsadm_ok(&["-A", "-u", us, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-P", "-u", us, "-z", "10.0.1.200"]);
    rvsd.rvsadm_ok(&["-a", "-u", us, "-r", "10.0.1.11:5353", "--fullnat"]);
    let before = rvsd.counter("icmp_errors_forwarded");
    let py = "import socket\n\
              s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
              s.settimeout(3)\n\
              s.connect(('2001:db8::100', 5353))\n\
              s.send(b'x')\n\
              try:\n    s.recv(100); print('data')\n\
              except ConnectionRefusedError:\n    print('refused')\n\
              except socket.timeout:\n    print('timeout')\n";
    let out = ns_exec(&c, &["python3", "-c", py]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "refused",
        "{out:?}"
    );
    assert!(rvsd.counter("icmp_errors_forwarded") > before);
}

#[test]
fn health_checks_reach_ipv6_servers_and_a_failed_one_leaves_the_rotation() {
    let (topo, rvsd) = two_links("nat");
    // rvsd's checks leave through the director's kernel (mgmt0, on the
    // servers' link), over IPv6 like the traffic.
    v6_addr(&topo.lb_ns(), "mgmt0", "2001:db8:1::250/64");
    let svc = serde_json::json!({"cmd": "add_service", "service": {
        "proto": "tcp", "vip": "2001:db8::100", "port": 80, "sched": "rr",
        "health": {"type": "tcp", "interval_ms": 300, "timeout_ms": 200, "retries": 1,
                   "retry_delay_ms": 100},
        "dests": [{"ip": "2001:db8:1::11", "fwd": "nat"}, {"ip": "2001:db8:1::12", "fwd": "nat"}]
    }});
    rvsd.ctl(&svc.to_string());
    let state = |d: &str| {
        let out = rvsd.rvsadm_ok(&["-L", "-n", "--health"]);
        out.lines()
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .find(|f| f.get(2).map(String::as_str) == Some(d))
            .and_then(|f| f.get(4).cloned())
            .unwrap_or_default()
    };
    let (r1, r2) = ("[2001:db8:1::11]:80", "[2001:db8:1::12]:80");
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        for _ in 0..300 {
            if cond() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    };
    wait("both checked up", &|| {
        state(r1) == "up" && state(r2) == "up"
    });
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 4), (2, 2));
    // rs1's IPv6 nginx stops: its check fails and it leaves the rotation.
    let pid = std::fs::read_to_string(topo.state_dir.join("rs1-v6/nginx.pid")).unwrap();
    ns_exec_ok(&topo.ns("rs1"), &["kill", pid.trim()]);
    wait("rs1 checked down", &|| state(r1) == "down");
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 4), (0, 4));
}

#[test]
fn an_ipv6_fwmark_service_serves_a_marked_address_and_a_routed_prefix() {
    // ipvsadm -A -f 7 -6: the rules mark the VIP's port 80 (a /128: the
    // director answers NS for it) and a whole /48 routed to the director.
    let (topo, rvsd) = two_links("nat");
    let rules = r#"{"cmd":"set_fwmark_rules","rules":[{"mark":7,"dst":"2001:db8::100","proto":"tcp","ports":"80"},{"mark":7,"dst":"2001:db8:7::/48","proto":"tcp"}]}"#;
    assert_eq!(rvsd.ctl(rules)["ok"], true);
    rvsd.rvsadm_ok(&["-A", "-f", "7", "-6", "-s", "rr"]);
    for rip in ["[2001:db8:1::11]:80", "[2001:db8:1::12]:80"] {
        rvsd.rvsadm_ok(&["-a", "-f", "7", "-6", "-r", rip, "-m"]);
    }
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("FWM  7 IPv6 rr\n"), "{list}");
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 10), (5, 5));
    // The /48 is reached through a route, as an operator would set one.
    ns_exec_ok(
        &topo.client_ns(),
        &[
            "ip",
            "-6",
            "route",
            "add",
            "2001:db8:7::/48",
            "via",
            "2001:db8::1",
        ],
    );
    assert_eq!(split(&topo, "http://[2001:db8:7::9]/", 4), (2, 2));
    // Unmarked: port 8081 of the VIP has no service of its own.
    let before = rvsd.counter("no_service");
    let out = ns_exec(
        &topo.client_ns(),
        &[
            "curl",
            "-sS",
            "--max-time",
            "1",
            "http://[2001:db8::100]:8081/",
        ],
    );
    assert!(!out.status.success());
    assert!(rvsd.counter("no_service") > before);
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(conns.contains("[2001:db8:7::9]:80"), "{conns}");
    let log = rvsd.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// A keep-alive HTTP client over IPv6: one request now, the next when a
/// line comes on its stdin, on the same connection (it prints its port).
const HELD6: &str = r#"
import http.client, sys
c = http.client.HTTPConnection("2001:db8::100", 80, timeout=30)
for i in range(2):
    if i:
        sys.stdin.readline()
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read().decode().strip()
    print(r.status, c.sock.getsockname()[1], body, flush=True)
"#;

#[test]
fn with_conn_table_ipv6_ipv6_connections_survive_a_crash() {
    use std::io::{BufRead, BufReader, Write};
    let (topo, mut rvsd) = two_links_with("nat", |topo, cfg| {
        cfg["conn_table_file"] = serde_json::json!(topo.state_dir.join("conns"));
        cfg["conn_table_ipv6"] = true.into();
        // In the configuration: the new rvsd has the service too.
        cfg["services"] = serde_json::json!([{"proto": "tcp", "vip": "2001:db8::100",
            "port": 80, "sched": "rr", "dests": [
                {"ip": "2001:db8:1::11", "port": 80, "fwd": "nat"},
                {"ip": "2001:db8:1::12", "port": 80, "fwd": "nat"}]}]);
    });
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &topo.client_ns(), "python3", "-c", HELD6])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let first: Vec<String> = line.split_whitespace().map(String::from).collect();
    assert_eq!(first[0], "200", "{line}");
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    let entry = format!("[2001:db8::2]:{}", first[1]);
    assert!(conns.contains(&entry), "{conns}");
    // The process dies; the new one takes the IPv6 entry over (NAT: both
    // directions need it), and the same TCP connection answers again.
    rvsd.kill();
    rvsd.start_again();
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(conns.contains(&entry), "taken over: {conns}");
    writeln!(stdin).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let second: Vec<String> = line.split_whitespace().map(String::from).collect();
    assert_eq!(second, first, "same connection, same server, answered");
    let _ = child.kill();
    let _ = child.wait();
    let log = rvsd.log();
    assert!(log.contains("connection(s) taken over"), "{log}");
}

#[test]
fn on_a_kernel_twin_an_ipv6_vip_is_served_while_it_is_on_the_twin() {
    // vip_ownership "kernel" with the client's port twinned: the kernel
    // answers for the port's IPv6 address (Neighbor Discovery, ping) and
    // for the VIP once an address keepalived would add is on the twin;
    // rvsd serves the VIP only then.
    let (topo, rvsd) = two_links_with("nat", |topo, cfg| {
        ns_exec_ok(
            &topo.lb_ns(),
            &["sysctl", "-qw", "net.ipv4.conf.lb0.rp_filter=1"],
        );
        cfg["ports"][0]["kernel_twin"] = serde_json::json!({"kind": "tap", "name": "rvs0"});
        cfg["vip_ownership"] = "kernel".into();
        cfg["services"] = serde_json::json!([{"proto": "tcp", "vip": "2001:db8::100",
            "port": 80, "sched": "rr", "dests": [
                {"ip": "2001:db8:1::11", "port": 80, "fwd": "nat"},
                {"ip": "2001:db8:1::12", "port": 80, "fwd": "nat"}]}]);
    });
    let c = topo.client_ns();
    let ping = |to: &str| {
        ns_exec(&c, &["ping", "-6", "-c", "1", "-W", "2", to])
            .status
            .success()
    };
    // The twin's kernel has the port's address: it answers.
    assert!(ping("2001:db8::1"), "the port address through the twin");
    // Not owned: nobody answers for the VIP.
    let quick = |url: &str| ns_exec(&c, &["curl", "-sS", "--max-time", "2", url]);
    assert!(!quick("http://[2001:db8::100]/").status.success());
    // keepalived's MASTER would add it to the twin.
    ns_exec_ok(
        &topo.lb_ns(),
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8::100/128",
            "dev",
            "rvs0",
            "nodad",
        ],
    );
    let t0 = std::time::Instant::now();
    while !rvsd
        .rvsadm_ok(&["--vip-ownership"])
        .contains("2001:db8::100")
    {
        assert!(t0.elapsed().as_secs() < 20, "ownership not seen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = ns_exec(&c, &["ip", "-6", "neigh", "flush", "to", "2001:db8::100"]);
    assert_eq!(split(&topo, "http://[2001:db8::100]/", 4), (2, 2));
    // BACKUP again: removed, no new connection is served.
    ns_exec_ok(
        &topo.lb_ns(),
        &[
            "ip",
            "-6",
            "addr",
            "del",
            "2001:db8::100/128",
            "dev",
            "rvs0",
        ],
    );
    let t0 = std::time::Instant::now();
    loop {
        let before = rvsd.counter("vip_not_owned");
        if !quick("http://[2001:db8::100]/").status.success()
            && rvsd.counter("vip_not_owned") > before
        {
            break;
        }
        assert!(t0.elapsed().as_secs() < 20, "still served after removal");
    }
    let log = rvsd.log();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn an_ipv4_tunnel_real_server_gets_the_ipv6_client_packet_in_ipv4() {
    // IPv6 in IPv4 (protocol 41), as IPVS tunnels an IPv6 service to an
    // IPv4 real server. This machine has no sit module to decapsulate, so
    // the real server's link is captured: the client kernel's own SYN,
    // inside an IPv4 header from the director.
    let (topo, rvsd) = two_links("nat");
    let vs = "[2001:db8::100]:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", "10.0.1.11:80", "-i"]);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        list.contains("  -> 10.0.1.11:80                 Tunnel"),
        "{list}"
    );
    let cap = Capture::start(
        &topo.ns("rs1"),
        "eth0",
        topo.state_dir.join("rs1-sit.pcap"),
        "ip proto 41",
    );
    let out = ns_exec(
        &topo.client_ns(),
        &["curl", "-sS", "--max-time", "2", "http://[2001:db8::100]/"],
    );
    assert!(!out.status.success(), "nothing decapsulates here");
    let lines = cap.lines();
    assert!(
        lines.iter().any(|l| l.contains("10.0.1.1 > 10.0.1.11")
            && l.contains("2001:db8::2.")
            && l.contains("2001:db8::100.80")
            && l.contains("Flags [S]")),
        "{lines:#?}"
    );
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(conns.contains("10.0.1.11:80"), "{conns}");
}

#[test]
fn an_ipv6_tunnel_real_server_gets_the_ipv4_client_packet_in_ipv6() {
    // IPv4 in IPv6 (next header 4), as IPVS tunnels an IPv4 service to an
    // IPv6 real server; captured on the real server's link (no
    // ip6_tunnel module here to decapsulate).
    let (topo, rvsd) = two_links("nat");
    let vs = "10.0.0.100:80";
    rvsd.rvsadm_ok(&["-A", "-t", vs, "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-t", vs, "-r", "[2001:db8:1::11]:80", "-i"]);
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(list.contains("  -> [2001:db8:1::11]:80"), "{list}");
    let cap = Capture::start(
        &topo.ns("rs1"),
        "eth0",
        topo.state_dir.join("rs1-ip4in6.pcap"),
        "ip6 proto 4",
    );
    let out = ns_exec(
        &topo.client_ns(),
        &["curl", "-sS", "--max-time", "2", "http://10.0.0.100/"],
    );
    assert!(!out.status.success(), "nothing decapsulates here");
    let lines = cap.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2001:db8:1::1 > 2001:db8:1::11")
                && l.contains("10.0.0.2.")
                && l.contains("10.0.0.100.80")
                && l.contains("Flags [S]")),
        "{lines:#?}"
    );
    let conns = rvsd.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(conns.contains("[2001:db8:1::11]:80"), "{conns}");
}
