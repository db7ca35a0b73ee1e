//! NAT64's ICMP errors on the in-memory device (RFC 7915 4.2, 5.2): a
//! server-side ICMPv4 error reaches the IPv6 client as ICMPv6, and a
//! client's ICMPv6 error reaches the IPv4 server as ICMPv4, each quoting
//! the packet its receiver sent, byte for byte. Every checksum is summed
//! again here from scratch.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::rig::ipv6_frame as frame;
use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::icmpv6::{self, multicast_mac, solicited_node};
use rvs::wire::{PacketBuilder, TcpFlags};

const VIP: &str = "2001:db8::100";
const CLIENT: &str = "2001:db8::2";
const LIP: &str = "10.0.1.200";

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An ICMPv6 message (or TCP segment: `proto`) over IPv6 sums to 0xffff
/// with its pseudo-header.
fn assert_v6_sum(f: &[u8], proto: u8) {
    let ip = &f[14..];
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let pseudo = [
        &ip[8..40],
        &(plen as u32).to_be_bytes()[..],
        &[0, 0, 0, proto][..],
    ]
    .concat();
    assert_eq!(ones_sum(&[&pseudo, &ip[40..40 + plen]]), 0xffff);
}

/// The client's TCP segment (SYN with a payload) with its checksum.
fn client_segment() -> Vec<u8> {
    tcp6_segment(
        (v6(CLIENT), 44000),
        (v6(VIP), 80),
        0x02,
        (1000, 0),
        8192,
        (&[], b"hello"),
    )
}

/// A director with a TCP service on [VIP]:80 (`extra` JSON fields) and
/// IPv4 real server 10.0.1.11:80 (`fwd`), both neighbours known (the
/// client from its NS for the VIP).
fn rig(extra: &str, fwd: &str) -> Rig<MemIo> {
    let mut r = Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000);
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{VIP}","port":80,"sched":"rr"{extra}}}}}"#
    ));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"10.0.1.11","port":80,"fwd":"{fwd}"}}}}"#
    ));
    r.dp.neigh.learn(rs1(), RS1_MAC);
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut m, v6(CLIENT), v6(VIP), CLIENT_MAC);
    let g = solicited_node(v6(VIP));
    r.worker.io.push(
        0,
        &frame((multicast_mac(g), CLIENT_MAC), v6(CLIENT), g, 255, 58, &m),
    );
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0).len(), 1, "NA");
    r
}

struct Nat64 {
    r: Rig<MemIo>,
    /// The client's segment as it sent it.
    seg: Vec<u8>,
    /// The director's IPv4 SYN to the server, as sent.
    syn4: Vec<u8>,
    rip: Ipv4Addr,
    lport: u16,
    rs_mac: rvs::wire::MacAddr,
}

/// A NAT64 service (an IPv6 VIP, IPv4 FULLNAT servers, an IPv4 local
/// address) and one client connection through it.
fn nat64() -> Nat64 {
    let mut r = rig(&format!(r#","laddrs":["{LIP}"]"#), "fullnat");
    let seg = client_segment();
    r.worker.io.push(
        0,
        &frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 6, &seg),
    );
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    let (src, lport, rip, _, _) = endpoints(&out[0]);
    assert_eq!((src, rip), (ip(LIP), rs1()));
    Nat64 {
        r,
        seg,
        syn4: out[0].clone(),
        rip,
        lport,
        rs_mac: RS1_MAC,
    }
}

/// What `n`'s server side sends the director: an ICMPv4 error quoting
/// `quote` bytes of the director's SYN.
fn icmp4_error(n: &Nat64, ty: u8, code: u8, rest: u32, quote: usize) -> Vec<u8> {
    let q = &n.syn4[14..14 + quote];
    PacketBuilder::new()
        .eth(n.rs_mac, DIR1_MAC)
        .ipv4(n.rip, ip(LIP))
        .ttl(64)
        .icmp(ty, code, rest)
        .payload(q)
        .build()
}

#[test]
fn server_side_icmpv4_errors_reach_the_ipv6_client_as_icmpv6() {
    let mut n = nat64();
    // Fragmentation Needed, MTU 1400, quoting the whole SYN: a Packet Too
    // Big of 1420 from the VIP, quoting the client's packet as it sent it.
    let e = icmp4_error(&n, 3, 4, 1400, 20 + 25);
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    let out = n.r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1, "{:?}", n.r.stats());
    let f = &out[0];
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
    let ip6 = &f[14..];
    assert_eq!(ip6[6], 58);
    assert_eq!(ip6[7], 63, "hop limit: the error's TTL less one");
    assert_eq!(&ip6[8..24], &v6(VIP).octets());
    assert_eq!(&ip6[24..40], &v6(CLIENT).octets());
    let m = &ip6[40..];
    assert_eq!((m[0], m[1]), (2, 0), "Packet Too Big");
    assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 1420);
    assert_v6_sum(f, 58);
    let q = &m[8..];
    assert_eq!(q[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([q[4], q[5]]), 25, "payload length");
    assert_eq!(q[6], 6);
    assert_eq!(&q[8..24], &v6(CLIENT).octets());
    assert_eq!(&q[24..40], &v6(VIP).octets());
    assert_eq!(
        &q[40..],
        &n.seg[..],
        "the client's own segment, checksum too"
    );

    // Port Unreachable quoting 8 bytes: Destination Unreachable, code 4.
    let e = icmp4_error(&n, 3, 3, 0, 20 + 8);
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    let out = n.r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1);
    let m = &out[0][14 + 40..];
    assert_eq!((m[0], m[1]), (1, 4));
    assert_eq!(&m[8 + 40..], &n.seg[..8]);
    assert_v6_sum(&out[0], 58);

    // An old router's Fragmentation Needed without an MTU: the plateau
    // below the quoted size, never under IPv6's 1280.
    let e = icmp4_error(&n, 3, 4, 0, 20 + 25);
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    let out = n.r.worker.io.take_tx(0);
    let m = &out[0][14 + 40..];
    assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 1280);

    // Time Exceeded keeps its code.
    let e = icmp4_error(&n, 11, 1, 0, 20 + 8);
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    let out = n.r.worker.io.take_tx(0);
    let m = &out[0][14 + 40..];
    assert_eq!((m[0], m[1]), (3, 1));

    // What RFC 7915 drops (precedence cutoff, code 15 is mapped, 14 is
    // not) is counted.
    let before = n.r.drops("icmp_unhandled");
    let e = icmp4_error(&n, 3, 14, 0, 20 + 8);
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    assert!(n.r.worker.io.take_tx(0).is_empty());
    assert_eq!(n.r.drops("icmp_unhandled"), before + 1);
    // An error about no connection is not translated.
    let mut other = n.syn4.clone();
    other[14 + 20 + 1] ^= 1; // another local port
    let e = PacketBuilder::new()
        .eth(n.rs_mac, DIR1_MAC)
        .ipv4(n.rip, ip(LIP))
        .icmp(3, 3, 0)
        .payload(&other[14..14 + 28])
        .build();
    n.r.worker.io.push(1, &e);
    n.r.step(1);
    assert!(n.r.worker.io.take_tx(0).is_empty());
}

#[test]
fn a_clients_icmpv6_errors_reach_the_ipv4_server_as_icmpv4() {
    let mut n = nat64();
    // The server's SYN-ACK, translated to the client.
    let reply = PacketBuilder::new()
        .eth(n.rs_mac, DIR1_MAC)
        .ipv4(n.rip, ip(LIP))
        .ttl(64)
        .tcp(80, n.lport)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .seq(5000)
        .ack(1001)
        .payload(b"hi")
        .build();
    n.r.worker.io.push(1, &reply);
    n.r.step(1);
    let back = n.r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    let quoted6 = back[0][14..].to_vec();
    let send = |n: &mut Nat64, ty: u8, code: u8, rest: u32| {
        let mut m = vec![ty, code, 0, 0];
        m.extend_from_slice(&rest.to_be_bytes());
        m.extend_from_slice(&quoted6);
        icmpv6::fill_checksum(&mut m, v6(CLIENT), v6(VIP));
        n.r.worker.io.push(
            0,
            &frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 58, &m),
        );
        n.r.step(1);
        n.r.worker.io.take_tx(1)
    };
    // Packet Too Big, 1300: Fragmentation Needed, 1280, from the local
    // address to the server, quoting the server's reply as it sent it.
    let out = send(&mut n, 2, 0, 1300);
    assert_eq!(out.len(), 1, "{:?}", n.r.stats());
    let f = &out[0];
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    assert_eq!(macs(f), (n.rs_mac, DIR1_MAC));
    assert_checksums(f);
    let ip4 = &f[14..];
    assert_eq!(ip4[9], 1);
    assert_eq!(ip4[8], 63);
    assert_eq!(&ip4[12..16], &ip(LIP).octets());
    assert_eq!(&ip4[16..20], &n.rip.octets());
    let total = u16::from_be_bytes([ip4[2], ip4[3]]) as usize;
    assert_eq!(total, ip4.len());
    let m = &ip4[20..];
    assert_eq!(ones_sum(&[m]), 0xffff, "ICMP checksum");
    assert_eq!((m[0], m[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([m[6], m[7]]), 1280);
    let inner = &m[8..28];
    assert_eq!(ones_sum(&[inner]), 0xffff, "quoted header checksum");
    assert_eq!(inner[9], 6);
    assert_eq!(&inner[12..16], &n.rip.octets());
    assert_eq!(&inner[16..20], &ip(LIP).octets());
    assert_eq!(u16::from_be_bytes([inner[2], inner[3]]), 20 + 20 + 2);
    assert_eq!(
        &m[28..],
        &reply[14 + 20..],
        "the server's own segment, checksum too"
    );
    // Port unreachable and an unrecognized next header.
    let out = send(&mut n, 1, 4, 0);
    assert_eq!((out[0][14 + 20], out[0][14 + 21]), (3, 3));
    let out = send(&mut n, 4, 1, 6);
    assert_eq!((out[0][14 + 20], out[0][14 + 21]), (3, 2));
    // What RFC 7915 drops (source address failed ingress policy) is
    // counted.
    let before = n.r.drops("icmp_unhandled");
    assert!(send(&mut n, 1, 5, 0).is_empty());
    assert_eq!(n.r.drops("icmp_unhandled"), before + 1);
}

/// A NAT64 service delivering the client's address (`client_addr`), and
/// the client's SYN through it: (rig, the IPv4 SYN, its local port).
fn delivering(client_addr: &str) -> (Rig<MemIo>, Vec<u8>, u16) {
    let mut r = rig(
        &format!(r#","laddrs":["{LIP}"],"client_addr":"{client_addr}""#),
        "fullnat",
    );
    let syn = client_tcp6(0x02, 1000, 0, b"");
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_checksums(&out[0]);
    let lport = endpoints(&out[0]).1;
    (r, out[0].clone(), lport)
}

/// The client's TCP segment to the VIP's port 80 from port 44000.
fn client_tcp6(flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let t = tcp6_segment(
        (v6(CLIENT), 44000),
        (v6(VIP), 80),
        flags,
        (seq, ack),
        8192,
        (&[], data),
    );
    frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 6, &t)
}

#[test]
fn toa_carries_the_ipv6_client_to_an_ipv4_server() {
    // DPVS's toa module reads kind 254, length 20 (port, IPv6 address) on
    // an IPv4 connection from its NAT64.
    let (_r, syn, _) = delivering("toa");
    let tcp = &syn[14 + 20..];
    let hl = usize::from(tcp[12] >> 4) * 4;
    assert_eq!(hl, 40, "the option grew the header");
    let o = &tcp[20..40];
    assert_eq!((o[0], o[1]), (254, 20));
    assert_eq!(u16::from_be_bytes([o[2], o[3]]), 44000);
    assert_eq!(&o[4..20], &v6(CLIENT).octets());
}

#[test]
fn proxy_v2_announces_the_ipv6_client_to_an_ipv4_server() {
    let (mut r, _, lport) = delivering("proxy_v2");
    // The server's SYN-ACK: its MSS lowered by the 52-byte header.
    let synack = PacketBuilder::new()
        .eth(RS1_MAC, DIR1_MAC)
        .ipv4(rs1(), ip(LIP))
        .tcp(80, lport)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .seq(5000)
        .ack(1001)
        .tcp_options(&[2, 4, 0x05, 0xb4])
        .build();
    r.worker.io.push(1, &synack);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    let t = &back[0][14 + 40..];
    assert_eq!(&t[20..24], &[2, 4, 0x05, 0x80], "MSS 1460 - 52");
    assert_v6_sum(&back[0], 6);
    r.worker.io.push(0, &client_tcp6(0x10, 1001, 5001, b""));
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1).len(), 1);
    // The first data: the header before it, sequence numbers after it.
    r.worker
        .io
        .push(0, &client_tcp6(0x18, 1001, 5001, b"GET /"));
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1);
    assert_checksums(&out[0]);
    let p = &out[0][14 + 20 + 20..];
    assert_eq!(&p[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!((p[12], p[13]), (0x21, 0x21), "v2 PROXY, AF_INET6 over TCP");
    assert_eq!(u16::from_be_bytes([p[14], p[15]]), 36);
    assert_eq!(&p[16..32], &v6(CLIENT).octets());
    assert_eq!(&p[32..48], &v6(VIP).octets());
    assert_eq!(u16::from_be_bytes([p[48], p[49]]), 44000);
    assert_eq!(&p[52..], b"GET /");
    r.worker.io.push(0, &client_tcp6(0x18, 1006, 5001, b"more"));
    r.step(1);
    let out = r.worker.io.take_tx(1);
    let t = &out[0][14 + 20..];
    assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 1006 + 52);
    // The server acknowledges header and data; the client hears of its own.
    let ack = PacketBuilder::new()
        .eth(RS1_MAC, DIR1_MAC)
        .ipv4(rs1(), ip(LIP))
        .tcp(80, lport)
        .flags(TcpFlags::ACK)
        .seq(5001)
        .ack(1001 + 52 + 5 + 4)
        .build();
    r.worker.io.push(1, &ack);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    let t = &back[0][14 + 40..];
    assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), 1010);
    assert_v6_sum(&back[0], 6);
}

#[test]
fn an_ipv6_service_tunnels_to_an_ipv4_real_server_ipv6_in_ipv4() {
    // ip_vs_tunnel_xmit with an IPv6 packet: protocol 41, TTL the hop
    // limit, DF clear, from the egress port's address; the client's packet
    // inside, unchanged.
    let mut r = rig("", "tun");
    let syn = client_tcp6(0x02, 1000, 0, b"");
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "{:?}", r.stats());
    let f = &out[0];
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    assert_eq!(macs(f), (RS1_MAC, DIR1_MAC));
    let ip4 = rvs::wire::Ipv4Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(ip4.protocol().0, 41);
    assert_eq!((ip4.src_addr(), ip4.dst_addr()), (ip("10.0.1.1"), rs1()));
    assert_eq!(ip4.ttl(), 64, "the inner hop limit");
    assert!(!ip4.dont_frag());
    assert_eq!(ones_sum(&[&f[14..34]]), 0xffff, "header checksum");
    assert_eq!(&f[14 + 20..], &syn[14..], "the client's packet, unchanged");
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let c = &conns["connections"][0];
    assert_eq!(
        (c["cip"].as_str(), c["dip"].as_str()),
        (Some(CLIENT), Some("10.0.1.11"))
    );
    // A full-size IPv6 packet does not fit with 20 more bytes: the client
    // is told 1480 by a Packet Too Big from the VIP.
    let big = client_tcp6(0x10, 1001, 1, &[7u8; 1440]);
    assert_eq!(big.len(), 14 + 1500);
    r.worker.io.push(0, &big);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    let m = &back[0][14 + 40..];
    assert_eq!((m[0], m[1]), (2, 0));
    assert_eq!(u32::from_be_bytes([m[4], m[5], m[6], m[7]]), 1480);
    assert_eq!(&back[0][14 + 8..14 + 24], &v6(VIP).octets());
    assert_v6_sum(&back[0], 58);
}

#[test]
fn an_ipv4_service_tunnels_to_an_ipv6_real_server_ipv4_in_ipv6() {
    // ip_vs_tunnel_xmit_v6 with an IPv4 packet: next header 4, hop limit
    // the TTL, from the egress port's IPv6 address; the client's packet
    // inside, unchanged.
    let mut r = Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000);
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#);
    r.ctl(r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"2001:db8:1::11","port":80,"fwd":"tun"}}"#);
    let rs6 = v6("2001:db8:1::11");
    r.dp.neigh6.learn(rs6, RS1_MAC);
    let syn = client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC);
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "{:?}", r.stats());
    let f = &out[0];
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    assert_eq!(macs(f), (RS1_MAC, DIR1_MAC));
    let ip6 = &f[14..];
    assert_eq!((ip6[6], ip6[7]), (4, 64), "IPIP, the inner TTL");
    assert_eq!(&ip6[8..24], &v6("2001:db8:1::1").octets());
    assert_eq!(&ip6[24..40], &rs6.octets());
    assert_eq!(
        u16::from_be_bytes([ip6[4], ip6[5]]) as usize,
        syn.len() - 14
    );
    assert_eq!(&ip6[40..], &syn[14..], "the client's packet, unchanged");
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let c = &conns["connections"][0];
    assert_eq!(
        (c["cip"].as_str(), c["dip"].as_str()),
        (Some("10.0.0.2"), Some("2001:db8:1::11"))
    );
    // A full-size packet with DF no longer fits with 40 more bytes: the
    // client is told 1460.
    let big = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .dont_frag(true)
        .tcp(40000, 80)
        .flags(TcpFlags::ACK)
        .seq(1001)
        .payload(&[7u8; 1460])
        .build();
    r.worker.io.push(0, &big);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    let icmp = &back[0][14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1460);
}
