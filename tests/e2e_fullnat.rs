//! End to end, FULLNAT: real servers with no VIP and no route back to the
//! client; the client address reaches them by PROXY protocol v2 (read by
//! nginx) or by the TOA option (checked in a capture).

mod common;

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, Rvsd, Topology};
use rvs::wire::{Ipv4Packet, TcpSegment};

fn fullnat_service(rvsd: &Rvsd, port: u16, option: &str) {
    let vs = format!("10.0.0.100:{port}");
    rvsd.rvsadm_ok(&["-A", "-t", &vs, "-s", "rr", option]);
    rvsd.rvsadm_ok(&["-P", "-t", &vs, "-z", "10.0.1.200"]);
    for rip in ["10.0.1.11", "10.0.1.12"] {
        rvsd.rvsadm_ok(&["-a", "-t", &vs, "-r", &format!("{rip}:{port}"), "--fullnat"]);
    }
}

#[test]
fn proxy_protocol_v2_tells_nginx_the_client_address() {
    let topo = Topology::up_unique_mode("fullnat");
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    fullnat_service(&rvsd, 8080, "--proxy-protocol");
    let laddrs = rvsd.rvsadm_ok(&["-G"]);
    assert!(laddrs.contains("10.0.1.200"), "{laddrs}");
    let save = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert!(
        save.contains(
            "-A -t 10.0.0.100:8080 -s rr --proxy-protocol\n-P -t 10.0.0.100:8080 -z 10.0.1.200\n"
        ),
        "{save}"
    );
    assert!(save.contains("-r 10.0.1.11:8080 --fullnat -w 1"), "{save}");

    let (mut a, mut b) = (0, 0);
    for i in 0..20 {
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100:8080/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        let (rs, client) = body
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("body {body:?}"));
        assert!(
            client.starts_with("10.0.0.2:"),
            "nginx saw {client:?}, not the client"
        );
        match rs {
            "rs1" => a += 1,
            "rs2" => b += 1,
            o => panic!("{o}"),
        }
    }
    assert_eq!((a, b), (10, 10));
    // 100 KB through the translated connection, byte for byte.
    let out = ns_exec(
        &topo.client_ns(),
        &[
            "sh",
            "-c",
            "curl -sS --max-time 10 http://10.0.0.100:8080/big | sha256sum",
        ],
    );
    let rs_sum = ns_exec(
        &topo.rs_ns(1),
        &[
            "sha256sum",
            topo.state_dir.join("rs1/www/big").to_str().unwrap(),
        ],
    );
    let rs2_sum = ns_exec(
        &topo.rs_ns(2),
        &[
            "sha256sum",
            topo.state_dir.join("rs2/www/big").to_str().unwrap(),
        ],
    );
    let got = String::from_utf8_lossy(&out.stdout)[..64].to_string();
    assert!(
        String::from_utf8_lossy(&rs_sum.stdout).starts_with(&got)
            || String::from_utf8_lossy(&rs2_sum.stdout).starts_with(&got),
        "download corrupted"
    );
    // The real servers saw the local address, not the client, on the wire.
    let log = std::fs::read_to_string(topo.state_dir.join("rs1/logs/pp.log")).unwrap();
    assert!(
        log.lines().count() >= 10 && log.lines().all(|l| l.starts_with("10.0.0.2:")),
        "{log}"
    );
}

#[test]
fn toa_option_carries_the_client_address_to_the_real_server() {
    let topo = Topology::up_unique_mode("fullnat");
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    fullnat_service(&rvsd, 80, "--toa");
    let dump = Capture::start(
        &topo.rs_ns(1),
        "eth0",
        topo.state_dir.join("toa.pcap"),
        "tcp dst port 80",
    );
    for i in 0..10 {
        let body = curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(body.starts_with("rs"));
    }
    let frames = dump.frames();
    let conns = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
    // Counted per connection (the server-side local port), so that a SYN
    // the client retransmits on a loaded machine counts once.
    let mut syns = std::collections::HashSet::new();
    let mut syns_without_toa = 0;
    let mut acks_with_toa = std::collections::HashSet::new();
    let mut ack_frames_with_toa = 0;
    for f in &frames {
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(
            ip.src_addr().to_string(),
            "10.0.1.200",
            "the server sees the local address"
        );
        let t = TcpSegment::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let opts = t.options();
        let toa = opts.len() >= 8 && opts[0] == 254;
        if t.flags().syn() {
            syns.insert(t.src_port());
            if !toa {
                syns_without_toa += 1;
            }
        } else if toa {
            acks_with_toa.insert(t.src_port());
            ack_frames_with_toa += 1;
        }
        if toa {
            assert_eq!(opts[1], 8);
            assert_eq!(&opts[4..8], &[10, 0, 0, 2], "client address in TOA");
            let port = u16::from_be_bytes([opts[2], opts[3]]);
            assert!(
                conns.contains(&format!("10.0.0.2:{port} ")),
                "TOA port {port} is a client port:\n{conns}"
            );
        }
    }
    assert_eq!(syns.len(), 5, "rr: half the connections went to rs1");
    assert_eq!(syns_without_toa, 0, "TOA on every SYN");
    assert_eq!(
        acks_with_toa, syns,
        "TOA on the handshake ACK of every connection"
    );
    assert_eq!(ack_frames_with_toa, 5, "and on no other segment");
}
