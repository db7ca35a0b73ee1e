//! IPv6 services on the in-memory device: NAT, DR and FULLNAT rewrites,
//! Neighbor Discovery for next hops (the hold queue), Neighbor
//! Solicitations and echo requests for a VIP, and the refusals. Every
//! forwarded frame's checksum is summed again here from scratch.

mod common;

use std::net::Ipv6Addr;

use common::rig::ipv6_frame as frame;
use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::icmpv6::{self, fill_checksum, multicast_mac, solicited_node, NdMessage};
use rvs::wire::{Ipv6Packet, MacAddr};

const VIP: &str = "2001:db8::100";
const CLIENT: &str = "2001:db8::2";
const RS1: &str = "2001:db8:1::11";
const RS2: &str = "2001:db8:1::12";
const LIP: &str = "2001:db8:1::5";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

fn service(r: &Rig<MemIo>, fwd: &str, extra: &str) {
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{VIP}","port":80,"sched":"rr"{extra}}}}}"#
    ));
    for ip in [RS1, RS2] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"{ip}","port":8080,"fwd":"{fwd}"}}}}"#
        ));
    }
}

/// A TCP or UDP segment over IPv6 sums to 0xffff with its pseudo-header
/// (RFC 8200 8.1).
fn assert_l4_checksum(f: &[u8]) {
    let ip = &f[14..];
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let l4 = &ip[40..40 + plen];
    let pseudo = [
        &ip[8..40],
        &(plen as u32).to_be_bytes()[..],
        &[0, 0, 0, ip[6]][..],
    ]
    .concat();
    assert_eq!(ones_sum(&[&pseudo, l4]), 0xffff, "upper-layer checksum");
}

/// An IPv6 TCP frame with a valid checksum.
#[allow(clippy::too_many_arguments)]
fn tcp6(
    macs: (MacAddr, MacAddr),
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: u8,
    hops: u8,
    payload: &[u8],
) -> Vec<u8> {
    let t = tcp6_segment(
        (src, sport),
        (dst, dport),
        flags,
        (1000, 0),
        8192,
        (&[], payload),
    );
    frame(macs, src, dst, hops, 6, &t)
}

const SYN: u8 = 0x02;

/// A client's SYN to the VIP's port 80, hop limit 64.
fn client_syn(src: Ipv6Addr, sport: u16) -> Vec<u8> {
    tcp6(
        (DIR0_MAC, CLIENT_MAC),
        src,
        sport,
        v6(VIP),
        80,
        SYN,
        64,
        b"",
    )
}
const ACK: u8 = 0x10;

/// (src, sport, dst, dport, hop limit) of an IPv6 TCP frame.
fn ends(f: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16, u8) {
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    let l4 = &f[54..];
    (
        ip.src(),
        u16::from_be_bytes([l4[0], l4[1]]),
        ip.dst(),
        u16::from_be_bytes([l4[2], l4[3]]),
        ip.hop_limit(),
    )
}

/// A real server's solicited NA to the director's port 1 address.
fn rs_na(rs: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_advert(&mut m, rs, v6("2001:db8:1::1"), rs, mac, true);
    frame((DIR1_MAC, mac), rs, v6("2001:db8:1::1"), 255, 58, &m)
}

/// The client's NS for a target on port 0, answered; returns the NA.
fn client_ns(r: &mut Rig<MemIo>, target: Ipv6Addr) -> Vec<Vec<u8>> {
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut m, v6(CLIENT), target, CLIENT_MAC);
    let g = solicited_node(target);
    r.worker.io.push(
        0,
        &frame((multicast_mac(g), CLIENT_MAC), v6(CLIENT), g, 255, 58, &m),
    );
    r.step(1);
    r.worker.io.take_tx(0)
}

/// Resolve both real servers the way the network would: the first packet
/// towards each waits while the director solicits it.
fn resolve_servers(r: &mut Rig<MemIo>) {
    for (ip, mac) in [(RS1, RS1_MAC), (RS2, RS2_MAC)] {
        r.worker.io.push(1, &rs_na(v6(ip), mac));
    }
    r.step(1);
}

#[test]
fn nat_forwards_both_ways_after_resolving_the_server() {
    let mut r = rig();
    service(&r, "nat", "");
    // The client learns the VIP's MAC from the director (and the director
    // the client's, from the NS).
    let na = client_ns(&mut r, v6(VIP));
    assert_eq!(na.len(), 1);
    let ip = Ipv6Packet::new_checked(&na[0][14..]).unwrap();
    let adv = NdMessage::parse(ip.payload(), ip.src(), ip.dst(), ip.hop_limit()).unwrap();
    assert!(
        matches!(adv, NdMessage::Advert { target, target_ll: Some(m), solicited: true, .. } if target == v6(VIP) && m == DIR0_MAC)
    );

    let syn = client_syn(v6(CLIENT), 40000);
    r.worker.io.push(0, &syn);
    r.step(1);
    // The server's MAC is unknown: the SYN waits and an NS goes out.
    let ns = r.worker.io.take_tx(1);
    assert_eq!(ns.len(), 1, "one solicitation");
    let ip = Ipv6Packet::new_checked(&ns[0][14..]).unwrap();
    // Whichever server rr picked first; the next client gets the other.
    let NdMessage::Solicit { target: first, .. } =
        NdMessage::parse(ip.payload(), ip.src(), ip.dst(), ip.hop_limit()).unwrap()
    else {
        panic!("not an NS")
    };
    let (rs, rs_mac, other) = if first == v6(RS1) {
        (v6(RS1), RS1_MAC, v6(RS2))
    } else {
        (v6(RS2), RS2_MAC, v6(RS1))
    };
    let group = solicited_node(rs);
    assert_eq!(ip.dst(), group);
    assert_eq!(macs(&ns[0]), (multicast_mac(group), DIR1_MAC));
    assert_eq!(
        ip.src(),
        v6("2001:db8:1::1"),
        "from the port's address on the prefix"
    );
    let sol = NdMessage::parse(ip.payload(), ip.src(), ip.dst(), ip.hop_limit()).unwrap();
    assert_eq!(
        sol,
        NdMessage::Solicit {
            target: rs,
            source_ll: Some(DIR1_MAC)
        }
    );
    assert_eq!(r.stats().nd_solicits_sent, 1);
    // The answer releases it, rewritten for the server.
    r.worker.io.push(1, &rs_na(rs, rs_mac));
    r.step(1);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "the held SYN");
    assert_eq!(macs(&out[0]), (rs_mac, DIR1_MAC));
    assert_eq!(ends(&out[0]), (v6(CLIENT), 40000, rs, 8080, 63));
    assert_l4_checksum(&out[0]);

    // The reply goes back from the VIP (the client is known from its NS).
    let reply = tcp6(
        (DIR1_MAC, rs_mac),
        rs,
        8080,
        v6(CLIENT),
        40000,
        SYN | ACK,
        64,
        b"",
    );
    r.worker.io.push(1, &reply);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(macs(&back[0]), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(ends(&back[0]), (v6(VIP), 80, v6(CLIENT), 40000, 63));
    assert_l4_checksum(&back[0]);

    // The connection is listed with its IPv6 addresses, established once
    // the client's ACK passes.
    let ack = tcp6(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        40000,
        v6(VIP),
        80,
        ACK,
        64,
        b"GET /",
    );
    r.worker.io.push(0, &ack);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_l4_checksum(&out[0]);
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let c = &conns["connections"][0];
    assert_eq!(c["cip"], CLIENT);
    assert_eq!(c["vip"], VIP);
    assert_eq!(c["dip"], rs.to_string());
    assert_eq!(c["state"], "ESTABLISHED");
    // The next client goes to the other server (rr).
    resolve_servers(&mut r);
    let syn2 = client_syn(v6(CLIENT), 40001);
    r.worker.io.push(0, &syn2);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_eq!(ends(&out[0]).2, other);
}

#[test]
fn dr_changes_only_the_mac_and_fullnat_both_ends() {
    let mut r = rig();
    service(&r, "dr", "");
    resolve_servers(&mut r);
    let syn = client_syn(v6(CLIENT), 41000);
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_eq!(macs(&out[0]).1, DIR1_MAC);
    assert!([RS1_MAC, RS2_MAC].contains(&macs(&out[0]).0));
    // Not a byte of the IPv6 packet changed (not even the hop limit), and
    // DR servers take the service's port.
    assert_eq!(out[0][14..], syn[14..]);

    let mut r = rig();
    service(&r, "fullnat", &format!(r#","laddrs":["{LIP}"]"#));
    resolve_servers(&mut r);
    client_ns(&mut r, v6(VIP));
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    let (src, lport, dst, dport, hops) = ends(&out[0]);
    assert_eq!((src, dport, hops), (v6(LIP), 8080, 63));
    assert!([v6(RS1), v6(RS2)].contains(&dst));
    assert_l4_checksum(&out[0]);
    // The server answers the local address; the client gets it from the VIP.
    let mac = macs(&out[0]).0;
    let reply = tcp6(
        (DIR1_MAC, mac),
        dst,
        8080,
        v6(LIP),
        lport,
        SYN | ACK,
        64,
        b"",
    );
    r.worker.io.push(1, &reply);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(ends(&back[0]), (v6(VIP), 80, v6(CLIENT), 41000, 63));
    assert_l4_checksum(&back[0]);
    // The director answers for its local address too.
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut m, v6(RS1), v6(LIP), RS1_MAC);
    let g = solicited_node(v6(LIP));
    r.worker.io.push(
        1,
        &frame((multicast_mac(g), RS1_MAC), v6(RS1), g, 255, 58, &m),
    );
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1).len(), 1, "NA for the local address");
}

#[test]
fn the_vip_answers_echo_and_what_cannot_go_through_is_counted() {
    let mut r = rig();
    service(&r, "nat", "");
    client_ns(&mut r, v6(VIP));
    let mut m = vec![icmpv6::ECHO_REQUEST, 0, 0, 0, 0, 1, 0, 1, b'h', b'i'];
    fill_checksum(&mut m, v6(CLIENT), v6(VIP));
    r.worker.io.push(
        0,
        &frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 58, &m),
    );
    r.step(1);
    let out = r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1);
    let ip = Ipv6Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (v6(VIP), v6(CLIENT)));
    assert_eq!(ip.payload()[0], icmpv6::ECHO_REPLY);

    let syn = |sport, hops| {
        tcp6(
            (DIR0_MAC, CLIENT_MAC),
            v6(CLIENT),
            sport,
            v6(VIP),
            80,
            SYN,
            hops,
            b"",
        )
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("hop limit 1 through NAT", syn(1, 1), "ttl_exceeded"),
        (
            "another port of the VIP",
            tcp6(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                2,
                v6(VIP),
                81,
                SYN,
                64,
                b"",
            ),
            "no_service",
        ),
        (
            "not a SYN",
            tcp6(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                3,
                v6(VIP),
                80,
                ACK,
                64,
                b"",
            ),
            "no_conn_not_syn",
        ),
        (
            "UDP without a checksum",
            {
                let mut u = vec![0u8; 8];
                u[0..2].copy_from_slice(&5u16.to_be_bytes());
                u[2..4].copy_from_slice(&80u16.to_be_bytes());
                u[4..6].copy_from_slice(&8u16.to_be_bytes());
                frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 17, &u)
            },
            "l4_malformed",
        ),
        (
            "a truncated TCP header",
            frame(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                v6(VIP),
                64,
                6,
                &[0u8; 12],
            ),
            "l4_malformed",
        ),
        (
            "a fragment to the VIP",
            frame(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                v6(VIP),
                64,
                44,
                &[6, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0],
            ),
            "ipv6_fragment",
        ),
        (
            "GRE to the VIP",
            frame(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                v6(VIP),
                64,
                47,
                &[0u8; 8],
            ),
            "proto_unsupported",
        ),
        (
            "TCP to an address that is not a VIP",
            tcp6(
                (DIR0_MAC, CLIENT_MAC),
                v6(CLIENT),
                4,
                v6("2001:db8::77"),
                80,
                SYN,
                64,
                b"",
            ),
            "ipv6",
        ),
        (
            "from a multicast source",
            client_syn(v6("ff02::5"), 4),
            "bad_source",
        ),
    ];
    for (what, f, reason) in cases {
        let before = r.drops(reason);
        r.worker.io.push(0, &f);
        r.step(1);
        assert!(r.worker.io.take_tx(0).is_empty(), "{what}: answered");
        assert!(r.worker.io.take_tx(1).is_empty(), "{what}: forwarded");
        assert_eq!(
            r.drops(reason),
            before + 1,
            "{what}: not counted as {reason}"
        );
    }
    // Only the SYN whose hop limit ran out was scheduled (as the kernel
    // schedules before it transmits).
    assert_eq!(r.dp.conns.len(), 1);
}

#[test]
fn ipv6_configurations_rvs_cannot_run_are_refused_with_reasons() {
    let r = rig();
    let refused = |req: String, want: &str| {
        let v: serde_json::Value = serde_json::from_str(&r.ctl.handle_line(&req)).unwrap();
        let e = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{req}: accepted"));
        assert!(e.contains(want), "{req}: {e}");
    };
    let svc = |extra: &str| {
        format!(
            r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{VIP}","port":80,"sched":"rr"{extra}}}}}"#
        )
    };
    // The SYN proxy runs on IPv6 (synproxy_ipv6.rs), not through NAT64.
    refused(
        svc(
            r#","synproxy":true,"laddrs":["10.0.1.200"],"dests":[{"ip":"10.0.1.11","port":80,"fwd":"fullnat"}]"#,
        ),
        "SYN proxy is not supported through NAT64",
    );
    // An IPv6 service's granularity is a prefix length (ipvsadm -M 64).
    refused(
        svc(r#","persistent":300,"netmask":"255.255.255.0""#),
        "illegal ipv6 netmask",
    );
    refused(svc(r#","persistent":300,"netmask":129"#), "1..128");
    r.ctl(&svc(""));
    let dest = |ip: &str, fwd: &str| {
        format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"{ip}","port":80,"fwd":"{fwd}"}}}}"#
        )
    };
    refused(dest("10.0.1.11", "nat"), "other address family");
    // Loopback is the director's own address (local delivery, which
    // needs a kernel twin; for IPv6 services not supported at all yet).
    refused(dest("::1", "nat"), "own address");
    refused(
        format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"{RS1}","port":80,"fwd":"tun","tun_type":"gre"}}}}"#
        ),
        "ipip",
    );
    // An IPv4 service takes no IPv6 real server either.
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#);
    refused(
        format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{RS1}","port":80,"fwd":"nat"}}}}"#
        ),
        "other address family",
    );
    // The configuration is intact: one IPv6 service, one IPv4, no servers.
    let list = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(list["services"].as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn tun_wraps_ipv6_in_ipv6_and_too_big_packets_get_packet_too_big() {
    let mut r = rig();
    service(&r, "tun", "");
    resolve_servers(&mut r);
    client_ns(&mut r, v6(VIP));
    let syn = client_syn(v6(CLIENT), 42000);
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    let outer = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(
        outer.src(),
        v6("2001:db8:1::1"),
        "from the egress port's address"
    );
    assert!([v6(RS1), v6(RS2)].contains(&outer.dst()));
    assert_eq!(outer.next_header(), 41, "IPv6 in IPv6");
    assert_eq!(outer.hop_limit(), 64, "the inner hop limit, copied");
    assert_eq!(outer.flow_label(), 0);
    // The inner packet is the client's, byte for byte (DR/TUN servers take
    // the service's port).
    assert_eq!(outer.payload(), &syn[14..]);
    assert_eq!(f.len(), syn.len() + 40);

    // 1500 bytes of IPv6 do not fit a 1500-byte link once wrapped: the
    // client is told 1460, from the VIP, with its packet quoted.
    let big = tcp6(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        42000,
        v6(VIP),
        80,
        ACK,
        64,
        &[7u8; 1440],
    );
    assert_eq!(big.len(), 14 + 1500);
    let sent = r.stats().icmp_errors_sent;
    r.worker.io.push(0, &big);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty(), "not forwarded");
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(r.stats().icmp_errors_sent, sent + 1);
    let f = &back[0];
    assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), ip.next_header()),
        (v6(VIP), v6(CLIENT), 58)
    );
    // RFC 4443 2.4 (c): the whole error fits the minimum MTU.
    assert_eq!(f.len() - 14, 1280);
    let msg = ip.payload();
    assert_eq!((msg[0], msg[1]), (icmpv6::PACKET_TOO_BIG, 0));
    assert_eq!(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]), 1460);
    assert_eq!(&msg[8..], &big[14..14 + 1280 - 48], "the packet quoted");
    let pseudo = [
        &f[14 + 8..14 + 40],
        &(msg.len() as u32).to_be_bytes()[..],
        &[0, 0, 0, 58][..],
    ]
    .concat();
    assert_eq!(ones_sum(&[&pseudo, msg]), 0xffff, "ICMPv6 checksum");
}

/// An ICMPv6 error of `ty` from `src` to `dst` quoting `quoted` (an IPv6
/// packet, Ethernet header excluded), with a valid checksum.
fn icmp6_error(
    macs: (MacAddr, MacAddr),
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(quoted);
    fill_checksum(&mut m, src, dst);
    frame(macs, src, dst, 64, 58, &m)
}

fn assert_icmp6_checksum(f: &[u8]) {
    let ip = &f[14..];
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let pseudo = [
        &ip[8..40],
        &(plen as u32).to_be_bytes()[..],
        &[0, 0, 0, 58][..],
    ]
    .concat();
    assert_eq!(
        ones_sum(&[&pseudo, &ip[40..40 + plen]]),
        0xffff,
        "ICMPv6 checksum"
    );
}

#[test]
fn icmpv6_errors_about_nat_connections_are_translated_both_ways() {
    let mut r = rig();
    service(&r, "nat", "");
    resolve_servers(&mut r);
    client_ns(&mut r, v6(VIP));
    let syn = client_syn(v6(CLIENT), 43000);
    r.worker.io.push(0, &syn);
    r.step(1);
    let fwd = r.worker.io.take_tx(1).remove(0);
    let (_, _, rs, _, _) = ends(&fwd);
    let rs_mac = macs(&fwd).0;

    // The server's side says the forwarded SYN's port is unreachable: the
    // client gets it from the VIP, about the packet it sent to the VIP.
    let unreach = icmp6_error((DIR1_MAC, rs_mac), rs, v6(CLIENT), 1, 0, &fwd[14..]);
    r.worker.io.push(1, &unreach);
    r.step(1);
    let out = r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1, "forwarded to the client");
    let f = &out[0];
    assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), ip.hop_limit()),
        (v6(VIP), v6(CLIENT), 63)
    );
    let q = &ip.payload()[8..];
    assert_eq!(&q[8..24], &v6(CLIENT).octets(), "quoted source kept");
    assert_eq!(&q[24..40], &v6(VIP).octets(), "quoted destination: the VIP");
    assert_eq!(u16::from_be_bytes([q[42], q[43]]), 80, "and its port");
    assert_icmp6_checksum(f);

    // The client says a reply was too big: the server gets it, about the
    // packet it sent.
    let reply = tcp6(
        (DIR0_MAC, CLIENT_MAC),
        v6(VIP),
        80,
        v6(CLIENT),
        43000,
        SYN | ACK,
        63,
        b"",
    );
    let ptb = icmp6_error(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        v6(VIP),
        2,
        1280,
        &reply[14..],
    );
    let fwd_before = r.stats().icmp_errors_forwarded;
    r.worker.io.push(0, &ptb);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "forwarded to the server");
    let f = &out[0];
    assert_eq!(macs(f).0, rs_mac);
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (v6(CLIENT), rs));
    let msg = ip.payload();
    assert_eq!(msg[0], 2);
    assert_eq!(
        u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]),
        1280,
        "MTU kept"
    );
    let q = &msg[8..];
    assert_eq!(&q[8..24], &rs.octets(), "quoted source: the server");
    assert_eq!(u16::from_be_bytes([q[40], q[41]]), 8080);
    assert_icmp6_checksum(f);
    assert_eq!(r.stats().icmp_errors_forwarded, fwd_before + 1);

    // An error about no connection of ours is counted.
    let mut other = reply.clone();
    other[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&1u16.to_be_bytes());
    let stray = icmp6_error(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        v6(VIP),
        2,
        1280,
        &other[14..],
    );
    let before = r.drops("icmp_unhandled");
    r.worker.io.push(0, &stray);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    assert_eq!(r.drops("icmp_unhandled"), before + 1);
}

#[test]
fn nat64_serves_an_ipv6_vip_from_ipv4_servers_through_an_ipv4_local_address() {
    let mut r = rig();
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{VIP}","port":80,"sched":"rr","laddrs":["10.0.1.200"]}}}}"#
    ));
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"{ip}","port":80,"fwd":"fullnat"}}}}"#
        ));
    }
    // The IPv4 servers are known (as if they had ARPed for the director).
    r.dp.neigh.learn(rs1(), RS1_MAC);
    r.dp.neigh.learn(rs2(), RS2_MAC);
    client_ns(&mut r, v6(VIP));
    let syn = tcp6(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        44000,
        v6(VIP),
        80,
        SYN,
        64,
        b"hello",
    );
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(&f[12..14], &[0x08, 0x00], "an IPv4 frame");
    // RFC 7915 5.1: TTL = hop limit - 1, DF clear for a small packet;
    // every checksum summed again from scratch.
    assert_checksums(f);
    let (src, lport, dst, dport, ttl) = endpoints(f);
    assert_eq!(src, ip("10.0.1.200"));
    assert!([rs1(), rs2()].contains(&dst));
    assert_eq!((dport, ttl), (80, 63));
    let ip4 = rvs::wire::Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert!(!ip4.dont_frag());
    // Flags and fragment offset: all zero (the reserved bit too).
    assert_eq!(&f[14 + 6..14 + 8], &[0, 0]);
    assert_eq!(ip4.total_len() as usize, 20 + 20 + 5);
    assert_eq!(&f[14 + 40..], b"hello", "the payload carried");

    // The server's reply comes back IPv6, from the VIP.
    let mac = macs(f).0;
    let reply = rvs::wire::PacketBuilder::new()
        .eth(mac, DIR1_MAC)
        .ipv4(dst, ip("10.0.1.200"))
        .ttl(64)
        .tcp(80, lport)
        .flags(rvs::wire::TcpFlags::SYN | rvs::wire::TcpFlags::ACK)
        .seq(5000)
        .ack(1001)
        .payload(b"hi")
        .build();
    r.worker.io.push(1, &reply);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    let b = &back[0];
    assert_eq!(&b[12..14], &[0x86, 0xdd], "an IPv6 frame");
    assert_eq!(macs(b), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(ends(b), (v6(VIP), 80, v6(CLIENT), 44000, 63));
    assert_l4_checksum(b);
    assert_eq!(&b[14 + 40 + 20..], b"hi");
    // A full-size IPv4 reply with DF does not fit the client's 1500-byte
    // link once it is IPv6 (20 bytes more): the server is told 1480, as
    // RFC 7915 answers with Fragmentation Needed.
    let big = rvs::wire::PacketBuilder::new()
        .eth(mac, DIR1_MAC)
        .ipv4(dst, ip("10.0.1.200"))
        .ttl(64)
        .dont_frag(true)
        .tcp(80, lport)
        .flags(rvs::wire::TcpFlags::ACK)
        .seq(5001)
        .ack(1001)
        .payload(&[9u8; 1460])
        .build();
    assert_eq!(big.len(), 14 + 1500);
    r.worker.io.push(1, &big);
    r.step(1);
    assert!(r.worker.io.take_tx(0).is_empty(), "not sent on");
    let back = r.worker.io.take_tx(1);
    assert_eq!(back.len(), 1);
    let icmp = &back[0][14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1480);
    // Listed with its IPv6 client and IPv4 server.
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let c = &conns["connections"][0];
    assert_eq!(
        (c["cip"].as_str(), c["dip"].as_str()),
        (Some(CLIENT), Some(dst.to_string().as_str()))
    );
}

#[test]
fn ipv6_clients_of_one_prefix_persist_to_one_server() {
    let mut r = rig();
    service(&r, "dr", r#","persistent":300,"netmask":64"#);
    // Listed as ipvsadm gives it: a prefix length.
    let list = r.ctl(r#"{"cmd":"dump"}"#);
    let text = list.to_string();
    assert!(text.contains(r#""netmask":64"#), "{text}");
    resolve_servers(&mut r);
    let mut picked = Vec::new();
    // Four clients of 2001:db8::/64, several connections each: rr alone
    // would alternate; the template keeps them on one server.
    for (i, c) in [
        "2001:db8::2",
        "2001:db8::3",
        "2001:db8::2:1",
        "2001:db8::ffff",
    ]
    .iter()
    .enumerate()
    {
        for port in 0..2u16 {
            let syn = client_syn(v6(c), 45000 + 10 * i as u16 + port);
            r.worker.io.push(0, &syn);
            r.step(1);
            let out = r.worker.io.take_tx(1);
            assert_eq!(out.len(), 1);
            picked.push(macs(&out[0]).0);
        }
    }
    assert!(picked.iter().all(|m| *m == picked[0]), "{picked:?}");
    // Another /64 may go elsewhere: the next rr pick is the other server.
    let syn = client_syn(v6("2001:db8:0:1::2"), 46000);
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_ne!(macs(&out[0]).0, picked[0]);
}

#[test]
fn nat64_headers_carry_nothing_of_the_ipv6_header_they_replace() {
    // A VIP whose second group has its top bit set (2400:cb00::, ...): the
    // IPv4 header is written over those bytes, the reserved flag must not
    // inherit one of them.
    let mut r = rig();
    let vip = "2400:cb00::100";
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{vip}","port":80,"sched":"rr","laddrs":["10.0.1.200"]}}}}"#
    ));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{vip}","port":80}},"dest":{{"ip":"10.0.1.11","port":80,"fwd":"fullnat"}}}}"#
    ));
    r.dp.neigh.learn(rs1(), RS1_MAC);
    let syn = tcp6(
        (DIR0_MAC, CLIENT_MAC),
        v6(CLIENT),
        47000,
        v6(vip),
        80,
        SYN,
        64,
        b"",
    );
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_eq!(
        &out[0][14 + 6..14 + 8],
        &[0, 0],
        "flags and fragment offset"
    );
    assert_checksums(&out[0]);
}

#[test]
fn a_routing_header_with_segments_left_is_not_taken_for_the_vip() {
    let mut r = rig();
    service(&r, "nat", "");
    resolve_servers(&mut r);
    // Routing header type 4 (segment routing), Segments Left 1, one more
    // address after the VIP; then the client's SYN.
    let syn = client_syn(v6(CLIENT), 48000);
    let mut rh = vec![6u8, 2, 4, 1, 0, 0, 0, 0];
    rh.extend_from_slice(&v6("2001:db8:9::9").octets());
    let mut upper = rh;
    upper.extend_from_slice(&syn[54..]);
    let f = frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 43, &upper);
    let before = r.drops("ipv6_malformed");
    r.worker.io.push(0, &f);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    assert_eq!(r.drops("ipv6_malformed"), before + 1);
    assert_eq!(r.dp.conns.len(), 0);
}

/// A TCP segment with an MSS option (SYN-ACK from a server).
#[allow(clippy::too_many_arguments)]
fn tcp6_mss(
    macs: (MacAddr, MacAddr),
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    mss: u16,
) -> Vec<u8> {
    let mss_opt = [2, 4, (mss >> 8) as u8, mss as u8];
    let t = tcp6_segment(
        (src, sport),
        (dst, dport),
        flags,
        (seq, ack),
        8192,
        (&mss_opt, &[]),
    );
    frame(macs, src, dst, 64, 6, &t)
}

/// A client segment with sequence and acknowledgement numbers.
fn client_seg(sport: u16, flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let (c, v) = (v6(CLIENT), v6(VIP));
    let t = tcp6_segment((c, sport), (v, 80), flags, (seq, ack), 8192, (&[], data));
    frame((DIR0_MAC, CLIENT_MAC), c, v, 64, 6, &t)
}

/// A rig with the FULLNAT service delivering client addresses by
/// `client_addr`, its servers and the client resolved.
fn fullnat_delivering(client_addr: &str) -> Rig<MemIo> {
    let mut r = rig();
    service(
        &r,
        "fullnat",
        &format!(r#","laddrs":["{LIP}"],"client_addr":"{client_addr}""#),
    );
    resolve_servers(&mut r);
    client_ns(&mut r, v6(VIP));
    r
}

#[test]
fn fullnat_delivers_the_ipv6_client_address_by_proxy_v2_and_toa() {
    // PROXY v2: the header (AF_INET6, 52 bytes) before the first data,
    // the server's MSS lowered by 52, its acknowledgements moved back.
    let mut r = fullnat_delivering("proxy_v2");
    r.worker.io.push(0, &client_seg(49000, SYN, 1000, 0, b""));
    r.step(1);
    let syn = r.worker.io.take_tx(1).remove(0);
    let (lip, lport, rs, _, _) = ends(&syn);
    assert_eq!(lip, v6(LIP));
    let rs_mac = macs(&syn).0;
    let synack = tcp6_mss(
        (DIR1_MAC, rs_mac),
        rs,
        8080,
        lip,
        lport,
        SYN | ACK,
        7000,
        1001,
        1440,
    );
    r.worker.io.push(1, &synack);
    r.step(1);
    let back = r.worker.io.take_tx(0).remove(0);
    assert_l4_checksum(&back);
    assert_eq!(
        &back[54 + 20..54 + 24],
        &[2, 4, 0x05, 0x6c],
        "MSS 1440 - 52 = 1388"
    );
    r.worker
        .io
        .push(0, &client_seg(49000, ACK, 1001, 7001, b""));
    r.worker
        .io
        .push(0, &client_seg(49000, ACK | 0x08, 1001, 7001, b"GET /"));
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 2);
    let data = &out[1];
    assert_l4_checksum(data);
    let payload = &data[54 + 20..];
    assert_eq!(payload.len(), 52 + 5);
    assert_eq!(&payload[..12], &rvs::xmit::fullnat::PP2_SIG);
    assert_eq!(
        &payload[12..16],
        &[0x21, 0x21, 0, 36],
        "v2 PROXY, TCP over IPv6, 36 bytes"
    );
    assert_eq!(&payload[16..32], &v6(CLIENT).octets());
    assert_eq!(&payload[32..48], &v6(VIP).octets());
    assert_eq!(
        &payload[48..52],
        &[0xbf, 0x68, 0, 80],
        "client port 49000, VIP port 80"
    );
    assert_eq!(&payload[52..], b"GET /");
    assert_eq!(
        u16::from_be_bytes([data[18], data[19]]) as usize,
        20 + 57,
        "payload length"
    );
    // The server acknowledges header and request; the client hears of its
    // request only.
    let ack = tcp6_mss(
        (DIR1_MAC, rs_mac),
        rs,
        8080,
        lip,
        lport,
        ACK,
        7001,
        1001 + 57,
        1440,
    );
    r.worker.io.push(1, &ack);
    r.step(1);
    let back = r.worker.io.take_tx(0).remove(0);
    assert_l4_checksum(&back);
    assert_eq!(
        u32::from_be_bytes(back[54 + 8..54 + 12].try_into().unwrap()),
        1006
    );

    // TOA: the IPv6 form (kind 254, length 20) on the SYN.
    let mut r = fullnat_delivering("toa");
    r.worker.io.push(0, &client_seg(49001, SYN, 2000, 0, b""));
    r.step(1);
    let syn = r.worker.io.take_tx(1).remove(0);
    assert_l4_checksum(&syn);
    let l4 = &syn[54..];
    assert_eq!(l4[12] >> 4, 10, "a 40-byte TCP header");
    assert_eq!(
        &l4[20..24],
        &[254, 20, 0xbf, 0x69],
        "TOA, client port 49001"
    );
    assert_eq!(&l4[24..40], &v6(CLIENT).octets());
}

#[test]
fn an_ipv6_fwmark_service_takes_what_the_ipv6_rules_mark() {
    let mut r = rig();
    // ipvsadm -A -f 7 -6 -p 300 -M 128, two NAT servers keeping the
    // packet's port; the same mark over IPv4 is another service.
    r.ctl(
        r#"{"cmd":"add_service","service":{"fwmark":7,"af":"inet6","sched":"rr","persistent":300,"netmask":128}}"#,
    );
    for ip in [RS1, RS2] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{{"fwmark":7,"af":"inet6"}},"dest":{{"ip":"{ip}","fwd":"nat"}}}}"#
        ));
    }
    r.ctl(r#"{"cmd":"add_service","service":{"fwmark":7,"sched":"rr"}}"#);
    r.ctl(&format!(
        r#"{{"cmd":"set_fwmark_rules","rules":[{{"mark":7,"dst":"{VIP}","proto":"tcp","ports":"80,443"}},{{"mark":7,"dst":"2001:db8:7::/48"}},{{"mark":7,"dst":"10.0.0.100"}}]}}"#
    ));
    // The /128 rule's address is answered for, as a VIP's.
    let na = client_ns(&mut r, v6(VIP));
    assert_eq!(na.len(), 1, "NS for the marked address answered");
    resolve_servers(&mut r);
    let send = |r: &mut Rig<MemIo>, src: &str, sport: u16, dst: &str, dport: u16| {
        let syn = tcp6(
            (DIR0_MAC, CLIENT_MAC),
            v6(src),
            sport,
            v6(dst),
            dport,
            SYN,
            64,
            b"",
        );
        r.worker.io.push(0, &syn);
        r.step(1);
        r.worker.io.take_tx(1)
    };
    // Ports 80 and 443 of one client: one fwmark template (<IPPROTO_IP,
    // cnet, 0, fwmark, 0>), so one server, though rr alone alternates.
    let a = send(&mut r, CLIENT, 42000, VIP, 80);
    let b = send(&mut r, CLIENT, 42001, VIP, 443);
    assert_eq!((a.len(), b.len()), (1, 1));
    let (_, _, rs, dport, _) = ends(&a[0]);
    assert_eq!(dport, 80, "port 0 real servers keep the packet's port");
    assert_eq!(ends(&b[0]).2, rs, "one template for both ports");
    assert_eq!(ends(&b[0]).3, 443);
    assert_l4_checksum(&b[0]);
    // A routed prefix (no VIP, no NS) is marked too; another client is
    // scheduled afresh: the other server.
    let c = send(&mut r, "2001:db8::3", 42002, "2001:db8:7:1::9", 5000);
    assert_eq!(c.len(), 1, "{:?}", r.stats());
    let (src, _, other, dport, _) = ends(&c[0]);
    assert_eq!((src, dport), (v6("2001:db8::3"), 5000));
    assert_ne!(other, rs);
    // The reply leaves from the marked address the client spoke to (once
    // the director has resolved that client: it solicits it first).
    let mut m = [0u8; 32];
    let c3 = v6("2001:db8::3");
    icmpv6::write_neighbor_advert(&mut m, c3, v6("2001:db8::1"), c3, CLIENT_MAC, true);
    r.worker.io.push(
        0,
        &frame((DIR0_MAC, CLIENT_MAC), c3, v6("2001:db8::1"), 255, 58, &m),
    );
    r.step(1);
    let mac = if other == v6(RS1) { RS1_MAC } else { RS2_MAC };
    let reply = tcp6(
        (DIR1_MAC, mac),
        other,
        5000,
        v6("2001:db8::3"),
        42002,
        SYN | ACK,
        64,
        b"",
    );
    r.worker.io.push(1, &reply);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(ends(&back[0]).0, v6("2001:db8:7:1::9"));
    assert_l4_checksum(&back[0]);
    // Unmarked: another port of the /128 address (no service of its
    // own) and an address outside every rule.
    let no_svc = r.drops("no_service");
    assert!(send(&mut r, CLIENT, 42003, VIP, 8080).is_empty());
    assert_eq!(r.drops("no_service"), no_svc + 1);
    let not_ours = r.drops("ipv6");
    assert!(send(&mut r, CLIENT, 42004, "2001:db8:8::1", 80).is_empty());
    assert_eq!(r.drops("ipv6"), not_ours + 1);
    // Listed as ipvsadm lists it, three connections on the IPv6 service.
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let svc = &l["services"][0];
    assert_eq!(svc["af"], "inet6", "{l}");
    let conns: u64 = svc["dests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["stats"]["conns"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(conns, 3, "{l}");
}
