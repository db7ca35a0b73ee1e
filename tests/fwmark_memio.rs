//! fwmark services (`ipvsadm -f`) on the whole per-packet path (worker +
//! dataplane + control plane) over the in-memory device with a fake clock.
//!
//! The expectations come from the kernel, net/netfilter/ipvs/:
//! - ip_vs_ctl.c `ip_vs_service_find`: "Check the table hashed by fwmark
//!   first", then `<protocol, addr, port>`, then the port-zero service.
//! - ip_vs_core.c `ip_vs_sched_persist`: a fwmark service's template is
//!   `<IPPROTO_IP, caddr & netmask, 0, fwmark, 0, daddr, 0>`, shared by all
//!   of the client's ports; the connection's port is the packet's
//!   (`dport = dst_port; if (dport == svc->port && dest->port) ...`, and a
//!   fwmark service's port is 0).
//! - ip_vs_core.c `ip_vs_schedule` (not persistent): the connection goes to
//!   `dest->port ? dest->port : pptr[1]`.

mod common;

use std::net::Ipv4Addr;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::{ArpOp, ArpPacket, PacketBuilder, TcpFlags};

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

/// Teach the director the MACs of the clients and both real servers.
fn learn(r: &mut Rig<MemIo>) {
    for c in [client(), ip("10.0.0.3")] {
        r.dp.neigh.learn(c, CLIENT_MAC);
    }
    r.dp.neigh.learn(rs1(), RS1_MAC);
    r.dp.neigh.learn(rs2(), RS2_MAC);
}

fn syn(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(src, dst)
        .tcp(sport, dport)
        .flags(TcpFlags::SYN)
        .build()
}

/// Send `frame` from the client side; the frame forwarded to a real server,
/// if any.
fn send(r: &mut Rig<MemIo>, frame: &[u8]) -> Option<Vec<u8>> {
    r.worker.io.push(0, frame);
    r.step(1);
    let mut out = r.worker.io.take_tx(1);
    assert!(out.len() <= 1);
    out.pop()
}

/// A SYN that must be forwarded: (real server 1/2, its port).
fn pick(r: &mut Rig<MemIo>, src: Ipv4Addr, sport: u16, dport: u16) -> (u8, u16) {
    let out = send(r, &syn(src, sport, vip(), dport)).unwrap_or_else(|| {
        panic!(
            "SYN {src}:{sport} -> :{dport} not forwarded; drops {:?}",
            r.stats().drops
        )
    });
    assert_checksums(&out);
    let (s, sp, d, dp, _) = endpoints(&out);
    assert_eq!((s, sp), (src, sport), "NAT keeps the client's address");
    (d.octets()[3] - 10, dp)
}

fn fwmark_service(r: &Rig<MemIo>, mark: u32, extra: &str, dests: &[(&str, u16)]) {
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"fwmark":{mark},"sched":"rr"{extra}}}}}"#
    ));
    for (ip, port) in dests {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{{"fwmark":{mark}}},"dest":{{"ip":"{ip}","port":{port},"fwd":"nat"}}}}"#
        ));
    }
}

#[test]
fn persistent_fwmark_keeps_http_and_https_of_a_client_on_one_server() {
    let mut r = rig();
    fwmark_service(
        &r,
        1,
        r#","persistent":300"#,
        &[("10.0.1.11", 0), ("10.0.1.12", 0)],
    );
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.0.100/32","proto":"tcp","ports":"80,443"}]}"#);
    learn(&mut r);
    let a = client();
    let b = ip("10.0.0.3");
    // rr alternates between clients; each client's HTTP and HTTPS go to
    // the server its first connection got, on the port it asked for.
    let (sa, pa) = pick(&mut r, a, 40000, 80);
    assert_eq!(pa, 80);
    let (sb, _) = pick(&mut r, b, 40000, 443);
    assert_ne!(sa, sb, "rr: the second client gets the other server");
    for (sport, dport) in [(40001, 443), (40002, 80), (40003, 443)] {
        assert_eq!(pick(&mut r, a, sport, dport), (sa, dport));
        assert_eq!(pick(&mut r, b, sport, dport), (sb, dport));
    }
    // One template per client: <IPPROTO_IP, cip, 0, fwmark, 0>.
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    let mut t: Vec<_> = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["template"] == true)
        .map(|x| {
            (
                x["proto"].as_str().unwrap().to_string(),
                x["cip"].as_str().unwrap().to_string(),
                x["vip"].as_str().unwrap().to_string(),
                x["vport"].as_u64().unwrap(),
                x["fwmark"].as_u64(),
                x["controls"].as_u64().unwrap(),
            )
        })
        .collect();
    t.sort();
    assert_eq!(
        t,
        vec![
            (
                "ip".into(),
                "10.0.0.2".into(),
                "0.0.0.1".into(),
                0,
                Some(1),
                4
            ),
            (
                "ip".into(),
                "10.0.0.3".into(),
                "0.0.0.1".into(),
                0,
                Some(1),
                4
            ),
        ]
    );
    // The connection entries carry the packet's VIP and port.
    let https = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["cip"] == "10.0.0.2" && x["cport"] == 40001)
        .unwrap();
    assert_eq!(
        (https["vip"].as_str(), https["vport"].as_u64()),
        (Some("10.0.0.100"), Some(443))
    );
    // The server's reply from :443 goes back as from VIP:443.
    let rs = if sa == 1 {
        (RS1_MAC, rs1())
    } else {
        (RS2_MAC, rs2())
    };
    r.worker.io.push(
        1,
        &PacketBuilder::new()
            .eth(rs.0, DIR1_MAC)
            .ipv4(rs.1, a)
            .tcp(443, 40001)
            .flags(TcpFlags::SYN | TcpFlags::ACK)
            .ack(1)
            .build(),
    );
    r.step(1);
    let out = r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1, "drops {:?}", r.stats().drops);
    assert_eq!(endpoints(&out[0]).0, vip());
    assert_eq!(endpoints(&out[0]).1, 443);
    assert_checksums(&out[0]);
    // A port the rule does not cover is not the fwmark service's, and the
    // VIP has no service of its own.
    assert!(send(&mut r, &syn(a, 40009, vip(), 22)).is_none());
    assert_eq!(r.drops("no_service"), 1);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let s = &l["services"][0];
    assert_eq!(s["fwmark"], 1);
    assert_eq!(s["stats"]["conns"], 8);
    assert_eq!(s["dests"][sa as usize - 1]["persist"], 1);
}

#[test]
fn fwmark_port_range_is_balanced_and_ports_follow_the_kernel() {
    let mut r = rig();
    // rs2 has a port: non-persistent connections go to it (ip_vs_schedule's
    // `dest->port ? dest->port : pptr[1]`); rs1 has none: the packet's.
    fwmark_service(&r, 2, "", &[("10.0.1.11", 0), ("10.0.1.12", 9000)]);
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":2,"dst":"10.0.0.100","proto":"tcp","ports":"1000-2000"}]}"#);
    learn(&mut r);
    let mut per = [0u32; 2];
    for (i, dport) in [1000u16, 1001, 1500, 1999, 2000, 1234]
        .into_iter()
        .enumerate()
    {
        let (s, p) = pick(&mut r, client(), 41000 + i as u16, dport);
        per[s as usize - 1] += 1;
        assert_eq!(p, if s == 1 { dport } else { 9000 });
    }
    assert_eq!(per, [3, 3], "rr over the range");
    // Outside the range, or UDP: no mark, no service.
    assert!(send(&mut r, &syn(client(), 41100, vip(), 2001)).is_none());
    assert!(send(&mut r, &syn(client(), 41101, vip(), 999)).is_none());
    let udp = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .udp(41102, 1500)
        .payload(b"x")
        .build();
    assert!(send(&mut r, &udp).is_none());
    assert_eq!(r.drops("no_service"), 3);
}

#[test]
fn fwmark_is_tried_before_the_vip_service_and_a_mark_without_service_falls_through() {
    let mut r = rig();
    // The <proto, vip, port> service sends everything to rs1 ...
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#);
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#
    ));
    // ... the fwmark service to rs2.
    fwmark_service(&r, 1, "", &[("10.0.1.12", 0)]);
    learn(&mut r);
    assert_eq!(pick(&mut r, client(), 42000, 80), (1, 80));
    // Port 80 marked 1: the fwmark service wins (ip_vs_service_find).
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.0.100/32","ports":"80"}]}"#);
    assert_eq!(pick(&mut r, client(), 42001, 80), (2, 80));
    // Marked 5, which has no service: the VIP's service takes it.
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":5,"dst":"10.0.0.0/24"}]}"#);
    assert_eq!(pick(&mut r, client(), 42002, 80), (1, 80));
    // First match wins: the narrow rule before the broad one.
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.0.100","proto":"tcp","ports":"80"},{"mark":5,"dst":"10.0.0.0/24"}]}"#);
    assert_eq!(pick(&mut r, client(), 42003, 80), (2, 80));
    // Established connections keep their server whatever the rules say.
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[]}"#);
    let ack = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .tcp(42003, 80)
        .flags(TcpFlags::ACK)
        .build();
    let out = send(&mut r, &ack).unwrap();
    assert_eq!(endpoints(&out).2, rs2());
}

#[test]
fn prefix_rules_take_routed_addresses_and_arp_is_answered_for_host_rules_only() {
    let mut r = rig();
    fwmark_service(&r, 3, "", &[("10.0.1.11", 0)]);
    r.ctl(
        r#"{"cmd":"set_fwmark_rules","rules":[
        {"mark":3,"dst":"10.0.0.100"},
        {"mark":3,"dst":"10.0.5.0/24","proto":"tcp"},
        {"mark":4,"dst":"10.0.0.101"}]}"#,
    );
    learn(&mut r);
    // A destination inside the prefix, routed to the director.
    let other = ip("10.0.5.7");
    let out = send(&mut r, &syn(client(), 43000, other, 8080)).unwrap();
    assert_eq!(endpoints(&out).2, rs1());
    assert_eq!(endpoints(&out).3, 8080);
    // The reply leaves as from that address.
    r.worker.io.push(
        1,
        &PacketBuilder::new()
            .eth(RS1_MAC, DIR1_MAC)
            .ipv4(rs1(), client())
            .tcp(8080, 43000)
            .flags(TcpFlags::SYN | TcpFlags::ACK)
            .ack(1)
            .build(),
    );
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(endpoints(&back[0]).0, other);
    assert_eq!(endpoints(&back[0]).1, 8080);
    // Outside the prefix: not routed.
    assert!(send(&mut r, &syn(client(), 43001, ip("10.0.6.7"), 80)).is_none());
    assert_eq!(r.drops("not_routed"), 1);
    // ARP: the /32 of a configured fwmark service is answered; an address
    // inside a prefix, or of a mark without service, is not.
    for (target, answered) in [(vip(), true), (other, false), (ip("10.0.0.101"), false)] {
        r.worker.io.push(
            0,
            &PacketBuilder::new()
                .arp_request(CLIENT_MAC, client(), target)
                .pad60()
                .build(),
        );
        r.step(1);
        let out = r.worker.io.take_tx(0);
        assert_eq!(out.len(), answered as usize, "{target}");
        if answered {
            let a = ArpPacket::new_checked(&out[0][14..]).unwrap();
            assert_eq!(a.operation(), ArpOp::REPLY);
            assert_eq!((a.sender_hw(), a.sender_ip()), (DIR0_MAC, target));
        }
    }
    // A bad rule set is refused and the running one keeps working.
    let bad: serde_json::Value = serde_json::from_str(
        &r.ctl
            .handle_line(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":3,"dst":"10.0.5.1/24"}]}"#),
    )
    .unwrap();
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
    assert!(send(&mut r, &syn(client(), 43002, other, 8080)).is_some());
}

#[test]
fn one_fwmark_template_serves_tcp_and_udp_of_a_client() {
    let mut r = rig();
    fwmark_service(
        &r,
        9,
        r#","persistent":60"#,
        &[("10.0.1.11", 0), ("10.0.1.12", 0)],
    );
    // No proto: TCP and UDP of the VIP both get mark 9.
    r.ctl(r#"{"cmd":"set_fwmark_rules","rules":[{"mark":9,"dst":"10.0.0.100"}]}"#);
    learn(&mut r);
    let (s, _) = pick(&mut r, client(), 44000, 443);
    for dport in [53u16, 443, 5000] {
        let udp = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .udp(44001, dport)
            .payload(b"q")
            .build();
        let out = send(&mut r, &udp).expect("UDP forwarded");
        assert_checksums(&out);
        let (_, _, d, p, _) = endpoints(&out);
        assert_eq!((d.octets()[3] - 10, p), (s, dport), "UDP :{dport}");
    }
    // A second client goes to the other server, by UDP first.
    let udp = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(ip("10.0.0.3"), vip())
        .udp(44002, 53)
        .payload(b"q")
        .build();
    let out = send(&mut r, &udp).expect("UDP forwarded");
    let other = endpoints(&out).2.octets()[3] - 10;
    assert_ne!(other, s);
    assert_eq!(pick(&mut r, ip("10.0.0.3"), 44003, 80), (other, 80));
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    let templates = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["template"] == true)
        .count();
    assert_eq!(templates, 2, "one per client, shared by TCP and UDP: {c}");
}
