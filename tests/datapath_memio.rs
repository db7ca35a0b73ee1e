//! The whole per-packet path (worker loop + dataplane + control plane) on the
//! in-memory device with a fake clock: frames in, frames and counters out.

mod common;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::{
    ArpOp, ArpPacket, EtherType, Icmpv4Packet, IpProtocol, Ipv4Packet, MacAddr, PacketBuilder,
    TcpFlags,
};

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

fn arp_reply_from_rs(rs_mac: MacAddr, rs: std::net::Ipv4Addr) -> Vec<u8> {
    PacketBuilder::new()
        .eth(rs_mac, DIR1_MAC)
        .arp_reply(rs_mac, rs, DIR1_MAC, dir1())
        .build()
}

#[test]
fn arp_is_answered_for_own_addresses_and_vips_only() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 1);
    for (target, answered) in [(vip(), true), (dir0(), true), (ip("10.0.0.50"), false)] {
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
            let f = &out[0];
            assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
            let a = ArpPacket::new_checked(&f[14..]).unwrap();
            assert_eq!(a.operation(), ArpOp::REPLY);
            assert_eq!((a.sender_hw(), a.sender_ip()), (DIR0_MAC, target));
            assert_eq!((a.target_hw(), a.target_ip()), (CLIENT_MAC, client()));
        }
    }
    assert_eq!(r.drops("arp_not_for_us"), 1);
    assert_eq!(
        r.dp.neigh.lookup(client()),
        Some(CLIENT_MAC),
        "learned from a request to us"
    );
}

#[test]
fn ping_to_vip_and_director_is_answered() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 1);
    for dst in [vip(), dir0()] {
        let req = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), dst)
            .icmp_echo(7, 3, b"abcdefgh")
            .build();
        r.worker.io.push(0, &req);
        r.step(1);
        let out = r.worker.io.take_tx(0);
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
        let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((p.src_addr(), p.dst_addr()), (dst, client()));
        assert!(p.verify_checksum());
        let ic = Icmpv4Packet::new_checked(p.payload()).unwrap();
        assert_eq!((ic.msg_type(), ic.echo_ident(), ic.echo_seq()), (0, 7, 3));
        assert_eq!(ic.payload(), b"abcdefgh");
        assert!(ic.verify_checksum());
    }
    assert_eq!(r.stats().icmp_echo_replies, 2);
}

#[test]
fn nat_flow_resolves_next_hop_rewrites_both_ways_and_tracks_state() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 0);
    // Client's ARP for the VIP teaches us its MAC.
    r.worker.io.push(
        0,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .build(),
    );
    r.worker
        .io
        .push(0, &client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC));
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0).len(), 1, "ARP reply to the client");
    // The SYN waits: the director asks for rs1's MAC on port 1.
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_eq!(
        EtherType(u16::from_be_bytes([out[0][12], out[0][13]])),
        EtherType::ARP
    );
    let a = ArpPacket::new_checked(&out[0][14..]).unwrap();
    assert_eq!(
        (a.operation(), a.sender_ip(), a.target_ip()),
        (ArpOp::REQUEST, dir1(), rs1())
    );
    assert_eq!(macs(&out[0]), (MacAddr::BROADCAST, DIR1_MAC));
    assert_eq!(r.worker.held(), 1);
    // rs1 answers; the held SYN goes out rewritten.
    r.worker.io.push(1, &arp_reply_from_rs(RS1_MAC, rs1()));
    r.step(1);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "released SYN");
    let syn = &out[0];
    assert_eq!(macs(syn), (RS1_MAC, DIR1_MAC));
    assert_eq!(endpoints(syn), (client(), 40000, rs1(), 80, 63));
    assert_checksums(syn);
    // SYN_RECV counts as active (Linux >= 4.8's tcp_state_active_table).
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"][0];
    assert_eq!(
        (d["active"].as_u64(), d["inactive"].as_u64()),
        (Some(1), Some(0))
    );
    // SYN-ACK from rs1 goes back to the client as from the VIP.
    r.worker.io.push(
        1,
        &rs_tcp(
            RS1_MAC,
            rs1(),
            40000,
            TcpFlags::SYN | TcpFlags::ACK,
            DIR1_MAC,
        ),
    );
    r.step(1);
    let out = r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1);
    assert_eq!(macs(&out[0]), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(endpoints(&out[0]), (vip(), 80, client(), 40000, 63));
    assert_checksums(&out[0]);
    // The client's ACK establishes the connection: still ActiveConn 1.
    r.worker.io.push(
        0,
        &client_tcp(40000, TcpFlags::ACK, b"GET / HTTP/1.0\r\n\r\n", DIR0_MAC),
    );
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_checksums(&out[0]);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"][0];
    assert_eq!(
        (d["active"].as_u64(), d["inactive"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(d["stats"]["inpkts"], 2);
    assert_eq!(d["stats"]["outpkts"], 1);
    assert_eq!(d["stats"]["conns"], 1);
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(c["connections"][0]["state"], "ESTABLISHED");
    // RST closes it; after CLOSE's 10 s the entry expires and counts return to 0.
    r.worker
        .io
        .push(0, &client_tcp(40000, TcpFlags::RST, b"", DIR0_MAC));
    r.step(1);
    r.worker.io.take_tx(1);
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(c["connections"][0]["state"], "CLOSE");
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"][0];
    assert_eq!(
        (d["active"].as_u64(), d["inactive"].as_u64()),
        (Some(0), Some(1))
    );
    r.now += 10_000;
    for _ in 0..64 {
        r.step(1);
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"][0];
    assert_eq!(
        (d["active"].as_u64(), d["inactive"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(l["conn_table"]["count"], 0);
    assert_eq!(r.stats().conns_expired, 1);
}

/// Real server (1 or 2) picked for each of `n` new flows from client ports
/// `base..`.
fn picks(r: &mut Rig<MemIo>, base: u16, n: u16) -> Vec<u8> {
    let mut got = Vec::new();
    for i in 0..n {
        r.worker
            .io
            .push(0, &client_tcp(base + i, TcpFlags::SYN, b"", DIR0_MAC));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        let (_, _, dst, _, _) = endpoints(&out[0]);
        got.push(dst.octets()[3] - 10);
    }
    got
}

#[test]
fn rr_and_wrr_through_the_data_path() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 1);
    r.learn_neighbours();
    // rr starts with the newest server (the kernel's list head).
    assert_eq!(picks(&mut r, 41000, 6), [2, 1, 2, 1, 2, 1]);
    r.ctl(r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wrr"}}"#);
    r.ctl(&format!(r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","weight":3,"fwd":"nat"}}}}"#));
    // As the kernel: -E -s wrr is ip_vs_wrr_init_svc on rs2 w1, rs1 w1
    // (cw = mw = 1); -e rs1 -w 3 is ip_vs_wrr_dest_changed: mw = 3, the walk
    // restarts at the list head and cw = 1 is kept. So cw 1: rs2 rs1, then
    // cw 3: rs1, 2: rs1, 1: rs2 rs1, 3: rs1, 2: rs1.
    assert_eq!(picks(&mut r, 42000, 8), [2, 1, 1, 1, 2, 1, 1, 1]);
    // Quiesce rs1: new flows avoid it, an existing flow keeps going to it.
    r.ctl(&format!(r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","weight":0,"fwd":"nat"}}}}"#));
    assert_eq!(picks(&mut r, 43000, 3), [2, 2, 2]);
    r.worker
        .io
        .push(0, &client_tcp(41001, TcpFlags::ACK, b"x", DIR0_MAC));
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(
        endpoints(&out[0]).2,
        rs1(),
        "established flow stays on quiesced rs1"
    );
}

/// Half-open connections weigh on the schedulers that look only at
/// ActiveConn: with sed and two equal servers, each SYN's connection (in
/// SYN_RECV, active since Linux 4.8's tcp_state_active_table) makes the
/// next SYN go to the other server. Were SYN_RECV inactive, every SYN
/// would tie and go to the same (newest) server.
#[test]
fn half_open_connections_count_for_sed() {
    let mut r = rig();
    nat_service(&r, "sed", 1, 1);
    r.learn_neighbours();
    assert_eq!(picks(&mut r, 44000, 4), [2, 1, 2, 1]);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    for d in l["services"][0]["dests"].as_array().unwrap() {
        assert_eq!(
            (d["active"].as_u64(), d["inactive"].as_u64()),
            (Some(2), Some(0))
        );
    }
}

#[test]
fn malformed_and_unwanted_frames_are_dropped_with_their_reason() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 1);
    r.learn_neighbours();
    let base = || {
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
    };
    let tcp = client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC);
    let mut short_ihl = tcp.clone();
    short_ihl[14] = 0x44;
    let mut long_total = tcp.clone();
    long_total[16] = 0x05;
    let mut bad_doff = tcp.clone();
    bad_doff[14 + 20 + 12] = 0x40;
    let mut vlan = tcp.clone();
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated ethernet", vec![0u8; 10], "eth_truncated"),
        (
            "other host's MAC",
            client_tcp(40000, TcpFlags::SYN, b"", MacAddr([2, 9, 9, 9, 9, 9])),
            "not_for_us",
        ),
        ("VLAN tag", vlan, "vlan"),
        (
            "IPv6 with a payload length beyond the frame",
            base()
                .ethertype(EtherType::IPV6)
                .no_l3()
                .payload(&[0x60; 40])
                .build(),
            "ipv6_malformed",
        ),
        (
            "IPv6 to another host",
            base()
                .ethertype(EtherType::IPV6)
                .no_l3()
                .payload(&{
                    let mut h = [0u8; 48];
                    h[0] = 0x60;
                    h[5] = 8; // payload length
                    h[6] = 59; // no next header
                    h[7] = 64;
                    h[8..24]
                        .copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
                    h[24..40]
                        .copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
                    h
                })
                .build(),
            "ipv6",
        ),
        (
            "unknown ethertype",
            base()
                .ethertype(EtherType(0x88cc))
                .no_l3()
                .payload(&[0; 46])
                .build(),
            "unknown_ethertype",
        ),
        ("IHL < 5", short_ihl, "ipv4_malformed"),
        ("total length beyond frame", long_total, "ipv4_malformed"),
        ("truncated IPv4", tcp[..14 + 12].to_vec(), "ipv4_malformed"),
        (
            "bad header checksum",
            base()
                .bad_ip_checksum()
                .tcp(40000, 80)
                .flags(TcpFlags::SYN)
                .build(),
            "ipv4_bad_checksum",
        ),
        (
            "fragment",
            base()
                .more_frags(true)
                .tcp(40000, 80)
                .flags(TcpFlags::SYN)
                .build(),
            "ipv4_fragment",
        ),
        (
            "non-first fragment",
            base().frag_offset(1480).udp(40000, 80).build(),
            "ipv4_fragment",
        ),
        (
            "broadcast source",
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(ip("255.255.255.255"), vip())
                .tcp(1, 80)
                .flags(TcpFlags::SYN)
                .build(),
            "bad_source",
        ),
        (
            "TTL 1",
            base().ttl(1).tcp(40001, 80).flags(TcpFlags::SYN).build(),
            "ttl_exceeded",
        ),
        (
            "stray ACK",
            base().tcp(40002, 80).flags(TcpFlags::ACK).build(),
            "no_conn_not_syn",
        ),
        (
            "SYN+RST",
            base()
                .tcp(40003, 80)
                .flags(TcpFlags::SYN | TcpFlags::RST)
                .build(),
            "no_conn_not_syn",
        ),
        (
            "no such port",
            base().tcp(40004, 81).flags(TcpFlags::SYN).build(),
            "no_service",
        ),
        (
            "UDP to a TCP service",
            base().udp(40005, 80).build(),
            "no_service",
        ),
        ("TCP data offset beyond segment", bad_doff, "l4_malformed"),
        (
            "truncated TCP",
            {
                let mut f = base().tcp(40006, 80).build();
                f.truncate(14 + 20 + 10);
                let l = (20 + 10) as u16;
                f[16..18].copy_from_slice(&l.to_be_bytes());
                let mut p = Ipv4Packet::new_checked(&mut f[14..]).unwrap();
                p.fill_checksum();
                f
            },
            "l4_malformed",
        ),
        (
            "GRE to the VIP",
            base().raw(IpProtocol(47)).payload(&[0; 8]).build(),
            "proto_unsupported",
        ),
        (
            "TCP to an unrelated host",
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), ip("10.0.1.50"))
                .tcp(1, 80)
                .build(),
            "not_routed",
        ),
        (
            "TCP to the director itself",
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), dir0())
                .tcp(1, 22)
                .flags(TcpFlags::SYN)
                .build(),
            "local_unhandled",
        ),
        (
            "ICMP other than echo",
            base().icmp(13, 0, 0).build(),
            "icmp_unhandled",
        ),
    ];
    for (desc, frame, reason) in cases {
        let before = r.drops(reason);
        r.worker.io.push(0, &frame);
        r.step(1);
        assert_eq!(
            r.drops(reason),
            before + 1,
            "{desc}: expected drop reason {reason}, stats {:?}",
            r.stats().drops
        );
        assert!(
            r.worker.io.take_tx(0).is_empty() && r.worker.io.take_tx(1).is_empty(),
            "{desc}: nothing sent"
        );
    }
    let s = r.stats();
    assert_eq!(
        s.rx_packets,
        s.tx_packets + s.total_drops(),
        "every frame is sent or counted"
    );
}

#[test]
fn no_available_server_and_full_table_are_counted() {
    let mut r = Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 2);
    nat_service(&r, "wrr", 0, 0);
    r.learn_neighbours();
    r.worker
        .io
        .push(0, &client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC));
    r.step(1);
    assert_eq!(r.drops("no_dest"), 1);
    r.ctl(&format!(r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","weight":1,"fwd":"nat"}}}}"#));
    for p in 0..3 {
        r.worker
            .io
            .push(0, &client_tcp(40100 + p, TcpFlags::SYN, b"", DIR0_MAC));
    }
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1).len(), 2);
    assert_eq!(r.drops("conn_table_full"), 1);
    // An established flow still passes while the table is full.
    r.worker
        .io
        .push(0, &client_tcp(40100, TcpFlags::ACK, b"x", DIR0_MAC));
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1).len(), 1);
}

/// The worker keeps each destination's next hop (port and MACs) between
/// packets; a neighbour that answers ARP from a new MAC (a replaced NIC, a
/// failover) must get the very next packet there, on the fast path and on
/// the full one alike.
#[test]
fn a_real_server_that_moves_to_a_new_mac_gets_the_next_packet_there() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 0);
    r.learn_neighbours();
    let moved = MacAddr([0x02, 0x51, 0, 0, 0, 0x99]);
    let send = |r: &mut Rig<MemIo>, flags, sport| {
        r.worker
            .io
            .push(0, &client_tcp(sport, flags, b"x", DIR0_MAC));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1, "forwarded to rs1");
        assert_eq!(endpoints(&out[0]).2, rs1());
        macs(&out[0]).0
    };
    assert_eq!(send(&mut r, TcpFlags::SYN, 40000), RS1_MAC);
    // Established: the burst's fast path, twice (the second from the
    // worker's cache of next hops).
    for _ in 0..2 {
        assert_eq!(send(&mut r, TcpFlags::ACK, 40000), RS1_MAC);
    }
    r.worker.io.push(1, &arp_reply_from_rs(moved, rs1()));
    r.step(1);
    assert_eq!(r.dp.neigh.lookup(rs1()), Some(moved));
    assert_eq!(send(&mut r, TcpFlags::ACK, 40000), moved, "fast path");
    assert_eq!(send(&mut r, TcpFlags::SYN, 40001), moved, "new connection");
    // And back: the cache follows every change, not only the first.
    r.worker.io.push(1, &arp_reply_from_rs(RS1_MAC, rs1()));
    r.step(1);
    assert_eq!(send(&mut r, TcpFlags::ACK, 40001), RS1_MAC);
}

#[test]
fn unresolved_next_hop_retries_then_drops() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 0);
    r.worker
        .io
        .push(0, &client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC));
    let mut requests = 0;
    for _ in 0..3500 {
        r.step(1);
        requests += r.worker.io.take_tx(1).len();
    }
    assert_eq!(r.worker.held(), 0);
    assert_eq!(r.drops("neigh_unresolved"), 1);
    assert_eq!(requests, 3, "one ARP request per second while waiting 3 s");
    assert_eq!(r.stats().arp_requests_sent, 3);
}

/// SYN from `client_ip:sport`; returns the real server it went to (1/2).
fn pick_from(r: &mut Rig<MemIo>, client_ip: std::net::Ipv4Addr, sport: u16) -> u8 {
    let f = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client_ip, vip())
        .tcp(sport, 80)
        .flags(TcpFlags::SYN)
        .build();
    r.worker.io.push(0, &f);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(
        out.len(),
        1,
        "SYN from {client_ip}:{sport} forwarded; drops {:?}",
        r.stats().drops
    );
    endpoints(&out[0]).2.octets()[3] - 10
}

#[test]
fn persistence_keeps_a_client_network_on_its_server_until_the_template_expires() {
    let mut r = rig();
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","persistent":30,"netmask":"255.255.255.0"}}"#);
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{ip}","fwd":"nat"}}}}"#
        ));
    }
    r.learn_neighbours();
    // rr would alternate; persistence pins every connection of 10.0.0.2.
    let first = pick_from(&mut r, client(), 50000);
    for sport in 50001..50006 {
        assert_eq!(pick_from(&mut r, client(), sport), first);
    }
    // Same /24: same template, same server.
    r.dp.neigh.learn(ip("10.0.0.3"), CLIENT_MAC);
    assert_eq!(pick_from(&mut r, ip("10.0.0.3"), 50010), first);
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    let templates: Vec<_> = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["template"] == true)
        .collect();
    assert_eq!(templates.len(), 1);
    assert_eq!(
        (templates[0]["cip"].as_str(), templates[0]["cport"].as_u64()),
        (Some("10.0.0.0"), Some(0))
    );
    assert_eq!(templates[0]["controls"], 7);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][first as usize - 1]["persist"], 1);

    // At 31 s the template is due, but it still controls 7 connections
    // (SYN_RECV lasts 60 s): pushed back 60 s, to ~91 s.
    let sweep = |r: &mut Rig<MemIo>| {
        for _ in 0..40 {
            r.step(1);
        }
        r.ctl(r#"{"cmd":"list"}"#)["conn_table"]["count"]
            .as_u64()
            .unwrap()
    };
    r.now += 31_000;
    assert_eq!(
        sweep(&mut r),
        8,
        "template kept while it controls connections"
    );
    // At ~62 s the connections have ended; the template lives to ~91 s.
    r.now += 31_000;
    assert_eq!(sweep(&mut r), 1, "only the template is left");
    // Then it ends, and the next connection is scheduled afresh: rr moves
    // on to the other server.
    r.now += 30_000;
    assert_eq!(sweep(&mut r), 0);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][first as usize - 1]["persist"], 0);
    assert_ne!(pick_from(&mut r, client(), 50100), first);
}

#[test]
fn persistence_survives_quiescing_but_not_deletion_of_the_server() {
    let mut r = rig();
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","persistent":300}}"#);
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{ip}","fwd":"nat"}}}}"#
        ));
    }
    r.learn_neighbours();
    // rr's first pick is the newest server, rs2.
    assert_eq!(pick_from(&mut r, client(), 50000), 2);
    r.ctl(&format!(r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","weight":0,"fwd":"nat"}}}}"#));
    assert_eq!(
        pick_from(&mut r, client(), 50001),
        2,
        "weight 0 keeps persistent clients (kernel default)"
    );
    r.ctl(&format!(
        r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.12"}}}}"#
    ));
    assert_eq!(
        pick_from(&mut r, client(), 50002),
        1,
        "deleted server: rescheduled"
    );
}

#[test]
fn port_zero_persistent_service_takes_every_port() {
    let mut r = rig();
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":0,"sched":"rr","persistent":60}}"#);
    r.ctl(r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":0},"dest":{"ip":"10.0.1.12","fwd":"nat"}}"#);
    r.learn_neighbours();
    for dport in [22u16, 443, 8080] {
        let f = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .tcp(40000, dport)
            .flags(TcpFlags::SYN)
            .build();
        r.worker.io.push(0, &f);
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        assert_eq!(endpoints(&out[0]), (client(), 40000, rs2(), dport, 63));
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(
        l["services"][0]["dests"][0]["persist"], 1,
        "one template for the whole address"
    );
}

#[test]
fn upper_threshold_overloads_and_lower_threshold_restores() {
    let mut r = rig();
    // fo: the available server with the highest weight takes everything.
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"fo"}}"#);
    r.ctl(&format!(r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":100,"u_threshold":2,"l_threshold":1}}}}"#));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat","weight":1}}}}"#
    ));
    r.learn_neighbours();
    // fo picks rs1 (weight 100) until its 2nd connection overloads it.
    assert_eq!(pick_from(&mut r, client(), 1), 1);
    assert_eq!(pick_from(&mut r, client(), 2), 1);
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][0]["overloaded"], true);
    assert_eq!(pick_from(&mut r, client(), 3), 2);
    assert_eq!(pick_from(&mut r, client(), 4), 2);
    // One rs1 connection ends: 1 left, not below l_threshold 1: still
    // overloaded. (A client RST in SYN_RECV keeps SYN_RECV per the kernel's
    // table, so the connections simply time out after 60 s.)
    r.worker
        .io
        .push(0, &client_tcp(1, TcpFlags::ACK, b"", DIR0_MAC));
    r.step(1);
    r.worker.io.take_tx(1);
    r.now += 60_000;
    for _ in 0..40 {
        r.step(1);
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][0]["active"], 1);
    assert_eq!(l["services"][0]["dests"][0]["overloaded"], true);
    // Both gone: below the lower threshold, rs1 takes connections again.
    r.worker
        .io
        .push(0, &client_tcp(1, TcpFlags::RST, b"", DIR0_MAC));
    r.step(1);
    r.worker.io.take_tx(1);
    r.now += 10_000;
    for _ in 0..40 {
        r.step(1);
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][0]["overloaded"], false);
    assert_eq!(pick_from(&mut r, client(), 5), 1);
}

fn mode_service(r: &Rig<MemIo>, fwd: &str) {
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#);
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"{fwd}"}}}}"#
    ));
}

#[test]
fn dr_changes_only_the_destination_mac() {
    let mut r = rig();
    mode_service(&r, "dr");
    r.learn_neighbours();
    for (flags, payload) in [(TcpFlags::SYN, &b""[..]), (TcpFlags::ACK, &b"GET /"[..])] {
        let inp = client_tcp(40000, flags, payload, DIR0_MAC);
        r.worker.io.push(0, &inp);
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        assert_eq!(macs(&out[0]), (RS1_MAC, DIR1_MAC));
        assert_eq!(
            &out[0][12..],
            &inp[12..],
            "IP packet byte for byte, TTL included"
        );
    }
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(
        c["connections"][0]["state"], "ESTABLISHED",
        "input-only state table"
    );
    // A reply from the real server is not the director's business.
    r.worker
        .io
        .push(1, &rs_tcp(RS1_MAC, rs1(), 40000, TcpFlags::ACK, DIR1_MAC));
    r.step(1);
    assert_eq!(r.drops("not_routed"), 1);
}

#[test]
fn tun_encapsulates_and_refuses_df_packets_over_the_mtu_with_icmp() {
    let mut r = rig();
    mode_service(&r, "tun");
    r.learn_neighbours();
    let inp = client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC);
    r.worker.io.push(0, &inp);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(macs(f), (RS1_MAC, DIR1_MAC));
    let outer = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(outer.verify_checksum());
    assert_eq!(
        (outer.src_addr(), outer.dst_addr(), outer.protocol()),
        (dir1(), rs1(), IpProtocol::IPIP)
    );
    assert_eq!((outer.ttl(), outer.dont_frag()), (64, true));
    assert_eq!(outer.payload(), &inp[14..], "inner packet unchanged");

    // 1480-byte inner packets fit (1500 with the outer header); 1481 do not.
    let big = |n: usize| {
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .tcp(40000, 80)
            .flags(TcpFlags::ACK)
            .payload(&vec![1u8; n - 40])
            .build()
    };
    r.worker.io.push(0, &big(1480));
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1)[0].len(), 14 + 1500);
    r.worker.io.push(0, &big(1481));
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1, "ICMP error back to the client");
    let ip = Ipv4Packet::new_checked(&back[0][14..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (dir0(), client()));
    let ic = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!((ic.msg_type(), ic.code(), ic.next_hop_mtu()), (3, 4, 1480));
    assert!(ic.verify_checksum());
    assert_eq!(r.stats().icmp_errors_sent, 1);
    // Without DF it is dropped and counted: rvs does not fragment.
    let nodf = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .dont_frag(false)
        .tcp(40000, 80)
        .flags(TcpFlags::ACK)
        .payload(&vec![1u8; 1441])
        .build();
    r.worker.io.push(0, &nodf);
    r.step(1);
    assert_eq!(r.drops("too_big"), 1);
}

#[test]
fn every_scheduler_carries_flows_through_the_data_path() {
    for sched in [
        "rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "lblc", "lblcr", "mh",
    ] {
        let mut r = rig();
        nat_service(&r, sched, 1, 1);
        r.learn_neighbours();
        let mut seen = [0u32; 3];
        let mut order = Vec::new();
        for sport in 0..40u16 {
            let p = pick_from(&mut r, client(), 30000 + sport);
            order.push(p);
            seen[p as usize] += 1;
            // Establish it: sed and nq count only active connections.
            r.worker
                .io
                .push(0, &client_tcp(30000 + sport, TcpFlags::ACK, b"", DIR0_MAC));
            r.step(1);
            assert_eq!(r.worker.io.take_tx(1).len(), 1);
        }
        let l = r.ctl(r#"{"cmd":"list"}"#);
        assert_eq!(l["services"][0]["sched"], sched);
        assert_eq!(l["conn_table"]["count"], 40, "{sched}");
        assert_eq!(seen[1] + seen[2], 40, "{sched}");
        // sh and mh hash the source, dh the destination: one server for
        // this client/VIP. lblc/lblcr keep the destination's server until
        // it passes their overload rule (active > weight, here 1): the
        // first two flows share a server, then load spreads. The rest
        // spread from the start.
        let pinned = matches!(sched, "sh" | "dh" | "mh");
        assert_eq!(seen[1] == 0 || seen[2] == 0, pinned, "{sched}: {seen:?}");
        if matches!(sched, "lblc" | "lblcr") {
            assert_eq!(order[0], order[1], "{sched}: {order:?}");
        }
    }
}

fn fullnat_rig(client_addr: &str) -> Rig<MemIo> {
    let mut r = rig();
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","client_addr":"{client_addr}","laddrs":["10.0.1.200"]}}}}"#
    ));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"fullnat"}}}}"#
    ));
    r.learn_neighbours();
    r
}

fn lip() -> std::net::Ipv4Addr {
    ip("10.0.1.200")
}

fn tcp_of(f: &[u8]) -> (u32, u32, TcpFlags, Vec<u8>, Vec<u8>) {
    let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let t = rvs::wire::TcpSegment::new_checked(p.payload()).unwrap();
    (
        t.seq(),
        t.ack(),
        t.flags(),
        t.options().to_vec(),
        t.payload().to_vec(),
    )
}

/// A frame from rs1 to the local address with these fields.
fn rs_to_lip(lport: u16, flags: TcpFlags, seq: u32, ack: u32, opts: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .eth(RS1_MAC, DIR1_MAC)
        .ipv4(rs1(), lip())
        .tcp(80, lport)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .tcp_options(opts)
        .build()
}

fn client_seg(flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .tcp(40000, 80)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .payload(payload)
        .build()
}

fn one(r: &mut Rig<MemIo>, port: u16, f: &[u8], out_port: u16) -> Vec<u8> {
    r.worker.io.push(port, f);
    r.step(1);
    let mut out = r.worker.io.take_tx(out_port);
    assert_eq!(out.len(), 1, "drops {:?}", r.stats().drops);
    let f = out.remove(0);
    assert_checksums(&f);
    f
}

#[test]
fn fullnat_rewrites_both_addresses_and_answers_arp_for_the_local_address() {
    let mut r = fullnat_rig("none");
    let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
    let (src, lport, dst, dport, ttl) = endpoints(&syn);
    assert_eq!((src, dst, dport, ttl), (lip(), rs1(), 80, 63));
    assert!(lport >= 1024, "local port {lport}");
    let back = one(
        &mut r,
        1,
        &rs_to_lip(lport, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, &[]),
        0,
    );
    assert_eq!(endpoints(&back), (vip(), 80, client(), 40000, 63));
    assert_eq!(macs(&back), (CLIENT_MAC, DIR0_MAC));
    // The real server ARPs for the local address: answered on port 1.
    r.worker.io.push(
        1,
        &PacketBuilder::new()
            .arp_request(RS1_MAC, rs1(), lip())
            .build(),
    );
    r.step(1);
    let arp = r.worker.io.take_tx(1);
    let a = ArpPacket::new_checked(&arp[0][14..]).unwrap();
    assert_eq!((a.sender_ip(), a.sender_hw()), (lip(), DIR1_MAC));
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(c["connections"][0]["fwd"], "fullnat");
}

#[test]
fn fullnat_toa_goes_on_the_syn_and_the_handshake_ack_only() {
    let mut r = fullnat_rig("toa");
    let toa = [254u8, 8, 0x9c, 0x40, 10, 0, 0, 2]; // port 40000, 10.0.0.2
    let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
    let (seq, _, flags, opts, _) = tcp_of(&syn);
    assert_eq!((seq, flags), (1000, TcpFlags::SYN));
    assert_eq!(&opts[..8], &toa, "TOA right after the fixed header");
    let lport = endpoints(&syn).1;
    one(
        &mut r,
        1,
        &rs_to_lip(lport, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, &[]),
        0,
    );
    let ack = one(&mut r, 0, &client_seg(TcpFlags::ACK, 1001, 5001, b""), 1);
    assert_eq!(&tcp_of(&ack).3[..8], &toa, "handshake ACK carries TOA");
    let data = one(
        &mut r,
        0,
        &client_seg(
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            5001,
            b"GET / HTTP/1.0\r\n\r\n",
        ),
        1,
    );
    let (seq, _, _, opts, payload) = tcp_of(&data);
    assert!(opts.is_empty(), "later segments unchanged");
    assert_eq!(
        (seq, payload.as_slice()),
        (1001, &b"GET / HTTP/1.0\r\n\r\n"[..])
    );
}

/// The handshake's pure ACK lost before the director: the client's first
/// data segment completes the handshake at the real server, so it carries
/// TOA (as DPVS puts TOA on the first data packet), unless the 8 bytes
/// would take the packet over the port's MTU. Only the first: a later
/// segment is unchanged.
#[test]
fn fullnat_toa_rides_the_first_data_segment_when_the_handshake_ack_is_lost() {
    let toa = [254u8, 8, 0x9c, 0x40, 10, 0, 0, 2]; // port 40000, 10.0.0.2
    let get = b"GET / HTTP/1.0\r\n\r\n";
    // The port's MTU is 1500: a 1460-byte payload fills it (20 + 20 +
    // 1460), so 8 more bytes do not fit.
    for (payload, fits) in [(get.to_vec(), true), (vec![b'x'; 1460], false)] {
        let mut r = fullnat_rig("toa");
        let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
        let lport = endpoints(&syn).1;
        one(
            &mut r,
            1,
            &rs_to_lip(lport, TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, &[]),
            0,
        );
        let seg = |p: &[u8]| client_seg(TcpFlags::ACK | TcpFlags::PSH, 1001, 5001, p);
        let data = one(&mut r, 0, &seg(&payload), 1);
        let (seq, _, _, opts, got) = tcp_of(&data);
        assert_eq!((seq, got.as_slice()), (1001, payload.as_slice()));
        assert_checksums(&data);
        if fits {
            assert_eq!(opts, toa, "the first data segment carries TOA");
        } else {
            assert!(opts.is_empty(), "no TOA past the MTU");
            assert_eq!(data.len(), 14 + 20 + 20 + 1460);
        }
        let again = one(&mut r, 0, &seg(&payload), 1);
        assert!(tcp_of(&again).3.is_empty(), "only the first");
    }
}

/// Every MSS option of the server's SYN-ACK is lowered, not the first
/// only: a client keeps the last MSS option it reads.
#[test]
fn fullnat_proxy_v2_lowers_every_mss_option_of_the_synack() {
    let mut r = fullnat_rig("proxy_v2");
    let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
    let lport = endpoints(&syn).1;
    let synack = one(
        &mut r,
        1,
        &rs_to_lip(
            lport,
            TcpFlags::SYN | TcpFlags::ACK,
            5000,
            1001,
            &[2, 4, 0x05, 0xb4, 2, 4, 0x05, 0x78],
        ),
        0,
    );
    assert_eq!(tcp_of(&synack).3, [2, 4, 0x05, 0x98, 2, 4, 0x05, 0x5c]);
    assert_checksums(&synack);
}

#[test]
fn fullnat_proxy_v2_header_and_sequence_translation() {
    let mut r = fullnat_rig("proxy_v2");
    let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
    let lport = endpoints(&syn).1;
    // Server's MSS 1460 reaches the client as 1432: room for the header.
    let synack = one(
        &mut r,
        1,
        &rs_to_lip(
            lport,
            TcpFlags::SYN | TcpFlags::ACK,
            5000,
            1001,
            &[2, 4, 0x05, 0xb4],
        ),
        0,
    );
    assert_eq!(tcp_of(&synack).3, [2, 4, 0x05, 0x98]);
    // Pure ACK: nothing inserted.
    let ack = one(&mut r, 0, &client_seg(TcpFlags::ACK, 1001, 5001, b""), 1);
    assert_eq!((tcp_of(&ack).0, tcp_of(&ack).4.len()), (1001, 0));
    // First data: the PROXY v2 header goes in front, sequence unchanged.
    let data = one(
        &mut r,
        0,
        &client_seg(TcpFlags::ACK | TcpFlags::PSH, 1001, 5001, b"GET"),
        1,
    );
    let (seq, _, _, _, payload) = tcp_of(&data);
    assert_eq!(seq, 1001);
    let mut want = vec![
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12,
    ];
    want.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 100, 0x9c, 0x40, 0, 80]);
    want.extend_from_slice(b"GET");
    assert_eq!(payload, want);
    // The server acknowledges 28 + 3 bytes; the client hears 3. SACK edges
    // move the same way.
    let sack = [
        1,
        1,
        5,
        10,
        0,
        0,
        0x04,
        0x20 + 0x1c,
        0,
        0,
        0x04,
        0x30 + 0x1c,
    ]; // 1084..1100 server-side
    let back = one(
        &mut r,
        1,
        &rs_to_lip(lport, TcpFlags::ACK, 5001, 1001 + 28 + 3, &sack),
        0,
    );
    let (_, ack, _, opts, _) = tcp_of(&back);
    assert_eq!(ack, 1004);
    assert_eq!(&opts[4..], &[0, 0, 0x04, 0x20, 0, 0, 0x04, 0x30]);
    // Later client data moves up by 28.
    let more = one(
        &mut r,
        0,
        &client_seg(
            TcpFlags::ACK | TcpFlags::PSH,
            1004,
            5001,
            b" / HTTP/1.0\r\n\r\n",
        ),
        1,
    );
    assert_eq!(tcp_of(&more).0, 1004 + 28);
    // A retransmitted first segment gets the header again.
    let again = one(
        &mut r,
        0,
        &client_seg(TcpFlags::ACK | TcpFlags::PSH, 1001, 5001, b"GET"),
        1,
    );
    assert_eq!(tcp_of(&again).4.len(), 28 + 3);
}

#[test]
fn fullnat_local_ports_never_collide() {
    let mut r = fullnat_rig("none");
    let mut seen = std::collections::HashSet::new();
    for sport in 0..500u16 {
        let f = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .tcp(20000 + sport, 80)
            .flags(TcpFlags::SYN)
            .build();
        let out = one(&mut r, 0, &f, 1);
        assert!(seen.insert(endpoints(&out).1), "local port reused");
    }
}

/// An ICMP error from `src` to `dst` quoting `quoted` (a whole IP packet).
fn icmp_err(
    eth: (MacAddr, MacAddr),
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    ty: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    PacketBuilder::new()
        .eth(eth.0, eth.1)
        .ipv4(src, dst)
        .icmp(ty, code, rest)
        .payload(&quoted[..quoted.len().min(28)])
        .build()
}

/// (outer src, outer dst, quoted src:port, quoted dst:port) of an ICMP
/// error frame, after checking every checksum that must be right.
fn icmp_view(f: &[u8]) -> (String, String, String, String) {
    let o = Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(o.verify_checksum());
    let ic = Icmpv4Packet::new_checked(o.payload()).unwrap();
    assert!(ic.verify_checksum(), "ICMP checksum");
    let q = Ipv4Packet::new_checked_truncated(ic.payload()).unwrap();
    assert!(q.verify_checksum(), "quoted header checksum");
    let l4 = q.payload();
    let p = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    (
        o.src_addr().to_string(),
        o.dst_addr().to_string(),
        format!("{}:{}", q.src_addr(), p(0)),
        format!("{}:{}", q.dst_addr(), p(2)),
    )
}

#[test]
fn icmp_errors_about_connections_are_translated_both_ways() {
    // NAT, UDP: the real server's port unreachable reaches the client as if
    // from the VIP, quoting the client's own datagram.
    let mut r = rig();
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr"}}"#);
    r.ctl(r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.11","port":5353,"fwd":"nat"}}"#);
    r.learn_neighbours();
    let q = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .udp(41000, 53)
        .payload(b"q")
        .build();
    let fwd = one(&mut r, 0, &q, 1);
    let err = icmp_err((RS1_MAC, DIR1_MAC), rs1(), client(), 3, 3, 0, &fwd[14..]);
    let back = one_icmp(&mut r, 1, &err, 0);
    assert_eq!(
        icmp_view(&back),
        (
            "10.0.0.100".into(),
            "10.0.0.2".into(),
            "10.0.0.2:41000".into(),
            "10.0.0.100:53".into()
        )
    );
    // The client's network says a reply was too big: the real server hears
    // it about its own packet.
    let reply = PacketBuilder::new()
        .ipv4(vip(), client())
        .udp(53, 41000)
        .payload(b"a")
        .build_ipv4();
    let err = icmp_err(
        (CLIENT_MAC, DIR0_MAC),
        ip("10.0.0.254"),
        vip(),
        3,
        4,
        1400,
        &reply,
    );
    let to_rs = one_icmp(&mut r, 0, &err, 1);
    assert_eq!(
        icmp_view(&to_rs),
        (
            "10.0.0.254".into(),
            "10.0.1.11".into(),
            "10.0.1.11:5353".into(),
            "10.0.0.2:41000".into()
        )
    );
    assert_eq!(r.stats().icmp_errors_forwarded, 2);
    // An error about no known connection is counted, not forwarded.
    let stray = PacketBuilder::new()
        .ipv4(client(), vip())
        .udp(9, 9)
        .build_ipv4();
    r.worker.io.push(
        1,
        &icmp_err((RS1_MAC, DIR1_MAC), rs1(), client(), 3, 3, 0, &stray),
    );
    r.step(1);
    assert_eq!(r.drops("not_routed"), 1);

    // FULLNAT: the quoted packet names the local address; the client sees
    // its own addresses.
    let mut r = fullnat_rig("none");
    let syn = one(&mut r, 0, &client_seg(TcpFlags::SYN, 1000, 0, b""), 1);
    let lport = endpoints(&syn).1;
    let err = icmp_err((RS1_MAC, DIR1_MAC), rs1(), lip(), 3, 3, 0, &syn[14..]);
    let back = one_icmp(&mut r, 1, &err, 0);
    assert_eq!(
        icmp_view(&back),
        (
            "10.0.0.100".into(),
            "10.0.0.2".into(),
            "10.0.0.2:40000".into(),
            "10.0.0.100:80".into()
        )
    );
    let reply = PacketBuilder::new()
        .ipv4(vip(), client())
        .tcp(80, 40000)
        .build_ipv4();
    let err = icmp_err(
        (CLIENT_MAC, DIR0_MAC),
        ip("10.0.0.254"),
        vip(),
        3,
        4,
        1400,
        &reply,
    );
    let to_rs = one_icmp(&mut r, 0, &err, 1);
    assert_eq!(
        icmp_view(&to_rs),
        (
            "10.0.1.200".into(),
            "10.0.1.11".into(),
            "10.0.1.11:80".into(),
            format!("10.0.1.200:{lport}")
        )
    );
}

fn one_icmp(r: &mut Rig<MemIo>, port: u16, f: &[u8], out_port: u16) -> Vec<u8> {
    r.worker.io.push(port, f);
    r.step(1);
    let mut out = r.worker.io.take_tx(out_port);
    assert_eq!(out.len(), 1, "drops {:?}", r.stats().drops);
    out.remove(0)
}

#[test]
fn udp_through_dr_tun_and_fullnat() {
    for fwd in ["dr", "tun", "fullnat"] {
        let mut r = rig();
        r.ctl(r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr","laddrs":["10.0.1.200"]}}"#);
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"udp","vip":"10.0.0.100","port":53}},"dest":{{"ip":"10.0.1.11","fwd":"{fwd}"}}}}"#
        ));
        r.learn_neighbours();
        let q = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .udp(41000, 53)
            .payload(b"query")
            .build();
        let out = one(&mut r, 0, &q, 1);
        assert_eq!(macs(&out), (RS1_MAC, DIR1_MAC), "{fwd}");
        match fwd {
            "dr" => assert_eq!(&out[12..], &q[12..]),
            "tun" => assert_eq!(&out[34..], &q[14..]),
            _ => {
                let (s, _, d, dp, _) = endpoints(&out);
                assert_eq!((s, d, dp), (lip(), rs1(), 53));
                let lport = endpoints(&out).1;
                let a = PacketBuilder::new()
                    .eth(RS1_MAC, DIR1_MAC)
                    .ipv4(rs1(), lip())
                    .udp(53, lport)
                    .payload(b"answer")
                    .build();
                let back = one(&mut r, 1, &a, 0);
                assert_eq!(endpoints(&back), (vip(), 53, client(), 41000, 63));
            }
        }
        let c = r.ctl(r#"{"cmd":"connections"}"#);
        assert_eq!(c["connections"][0]["state"], "UDP", "{fwd}");
    }
}

/// Deterministic fuzzing of the whole per-packet path in every forwarding
/// mode: valid frames of many kinds, then byte flips, truncations and
/// extensions of them. Nothing may panic, and every received frame must be
/// accounted for: sent, dropped with a reason, or consumed.
#[test]
fn mutated_frames_never_panic_and_are_all_accounted_for() {
    let mut rng = rvs::prng::Rng(0x2545_f491_4f6c_dd1d);
    let mut rnd = move || rng.next_u64();
    for (fwd, client_addr) in [
        ("nat", "none"),
        ("dr", "none"),
        ("tun", "none"),
        ("fullnat", "toa"),
        ("fullnat", "proxy_v2"),
    ] {
        let mut r = rig();
        r.ctl(&format!(
            r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","laddrs":["10.0.1.200"],"client_addr":"{client_addr}"}}}}"#
        ));
        r.ctl(r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr","laddrs":["10.0.1.200"]}}"#);
        for svc in [
            r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#,
            r#"{"proto":"udp","vip":"10.0.0.100","port":53}"#,
        ] {
            r.ctl(&format!(
                r#"{{"cmd":"add_dest","service":{svc},"dest":{{"ip":"10.0.1.11","fwd":"{fwd}"}}}}"#
            ));
        }
        r.learn_neighbours();
        let seeds: Vec<(u16, Vec<u8>)> = vec![
            (0, client_seg(TcpFlags::SYN, 1000, 0, b"")),
            (
                0,
                client_seg(
                    TcpFlags::ACK | TcpFlags::PSH,
                    1001,
                    5001,
                    b"GET / HTTP/1.0\r\n\r\n",
                ),
            ),
            (
                0,
                PacketBuilder::new()
                    .eth(CLIENT_MAC, DIR0_MAC)
                    .ipv4(client(), vip())
                    .udp(41000, 53)
                    .payload(b"q")
                    .build(),
            ),
            (
                0,
                PacketBuilder::new()
                    .eth(CLIENT_MAC, DIR0_MAC)
                    .ipv4(client(), vip())
                    .icmp_echo(1, 1, b"ping")
                    .build(),
            ),
            (
                0,
                PacketBuilder::new()
                    .arp_request(CLIENT_MAC, client(), vip())
                    .pad60()
                    .build(),
            ),
            (
                1,
                rs_to_lip(
                    1024,
                    TcpFlags::SYN | TcpFlags::ACK,
                    5000,
                    1001,
                    &[2, 4, 5, 0xb4, 1, 1, 5, 10, 0, 0, 4, 0, 0, 0, 5, 0],
                ),
            ),
            (1, rs_tcp(RS1_MAC, rs1(), 40000, TcpFlags::ACK, DIR1_MAC)),
            (
                1,
                icmp_err(
                    (RS1_MAC, DIR1_MAC),
                    rs1(),
                    client(),
                    3,
                    3,
                    0,
                    &client_seg(TcpFlags::SYN, 1, 0, b"")[14..],
                ),
            ),
        ];
        for (port, f) in &seeds {
            r.worker.io.push(*port, f);
        }
        r.step(1);
        for i in 0..20_000u32 {
            let (port, base) = &seeds[(rnd() % seeds.len() as u64) as usize];
            let mut f = base.clone();
            match i % 4 {
                0 => {
                    for _ in 0..1 + rnd() % 4 {
                        let at = (rnd() % f.len() as u64) as usize;
                        f[at] ^= 1 << (rnd() % 8);
                    }
                }
                1 => f.truncate((rnd() % (f.len() as u64 + 1)) as usize),
                2 => f.extend((0..rnd() % 64).map(|_| rnd() as u8)),
                _ => {
                    // a random header byte set to an extreme value
                    let at = (rnd() % f.len().min(80) as u64) as usize;
                    f[at] = if rnd() % 2 == 0 { 0 } else { 0xff };
                }
            }
            r.worker.io.push(*port, &f);
            if i % 32 == 31 {
                r.step(1);
                r.worker.io.take_tx(0);
                r.worker.io.take_tx(1);
            }
        }
        // Let held frames resolve or time out, then account for everything.
        r.now += 5_000;
        for _ in 0..8 {
            r.step(1);
        }
        assert_eq!(r.worker.held(), 0);
        let s = r.stats();
        assert_eq!(
            s.rx_packets,
            s.tx_packets + s.total_drops() + s.consumed,
            "{fwd}/{client_addr}: every frame sent, dropped with a reason or consumed: {s:?}"
        );
        assert!(
            s.tx_packets > 1000 && s.total_drops() > 1000,
            "{fwd}: both paths exercised: {s:?}"
        );
    }
}

/// conn_reuse_mode 1: a SYN on the tuple of a connection in TIME_WAIT or
/// CLOSE ends it and is scheduled afresh (here: away from a server deleted
/// meanwhile); on a live (ESTABLISHED) connection a SYN changes nothing.
#[test]
fn a_syn_reusing_a_closed_tuple_is_scheduled_afresh() {
    let mut r = rig();
    nat_service(&r, "rr", 1, 1);
    r.learn_neighbours();
    let send = |r: &mut Rig<MemIo>, sport: u16, flags: TcpFlags| {
        r.worker
            .io
            .push(0, &client_tcp(sport, flags, b"", DIR0_MAC));
        r.step(1);
        r.worker.io.take_tx(1)
    };
    // Two flows: rr puts 50000 on rs2 and 50001 on rs1.
    assert_eq!(endpoints(&send(&mut r, 50000, TcpFlags::SYN)[0]).2, rs2());
    assert_eq!(endpoints(&send(&mut r, 50001, TcpFlags::SYN)[0]).2, rs1());
    // 50000 is established then reset (CLOSE), 50001 is established.
    send(&mut r, 50000, TcpFlags::ACK);
    send(&mut r, 50000, TcpFlags::RST);
    send(&mut r, 50001, TcpFlags::ACK);
    r.ctl(&format!(
        r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.12"}}}}"#
    ));
    let out = send(&mut r, 50000, TcpFlags::SYN);
    assert_eq!(endpoints(&out[0]).2, rs1(), "not the deleted rs2");
    assert_eq!(r.stats().conns_reused, 1);
    // A SYN on the established flow keeps it where it is.
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat"}}}}"#
    ));
    let out = send(&mut r, 50001, TcpFlags::SYN);
    assert_eq!(endpoints(&out[0]).2, rs1());
    assert_eq!(r.stats().conns_reused, 1);
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(c["connections"].as_array().unwrap().len(), 2);
}
