//! The SYN proxy on IPv6 services, on the in-memory device: the cookie
//! SYN-ACK, the server's handshake opened by the client's ACK, the window
//! update, sequence translation both ways in NAT and FULLNAT, a refusing
//! server, forged ACKs, and ICMPv6 errors quoting the client's sequence
//! space. Every segment's checksum is summed again here from scratch.

mod common;

use std::net::Ipv6Addr;

use common::rig::ipv6_frame as frame;
use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::icmpv6::{self, multicast_mac, solicited_node};

const VIP: &str = "2001:db8::100";
const CLIENT: &str = "2001:db8::2";
const RS1: &str = "2001:db8:1::11";
const LIP: &str = "2001:db8:1::5";

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A TCP segment over IPv6 with its checksum.
/// A TCP segment of a frame, checked: (src, sport, dst, dport, seq, ack,
/// flags, window, options, payload).
struct Seg {
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn parse(f: &[u8]) -> Seg {
    assert_eq!(&f[12..14], &[0x86, 0xdd], "an IPv6 frame");
    let ip = &f[14..];
    assert_eq!(ip[6], 6, "TCP right after the header");
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let t = &ip[40..40 + plen];
    let pseudo = [
        &ip[8..40],
        &(plen as u32).to_be_bytes()[..],
        &[0, 0, 0, 6][..],
    ]
    .concat();
    assert_eq!(ones_sum(&[&pseudo, t]), 0xffff, "TCP checksum");
    let hl = usize::from(t[12] >> 4) * 4;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[at..at + 16]);
        Ipv6Addr::from(a)
    };
    let be32 = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
    Seg {
        src: addr(8),
        dst: addr(24),
        sport: u16::from_be_bytes([t[0], t[1]]),
        dport: u16::from_be_bytes([t[2], t[3]]),
        seq: be32(4),
        ack: be32(8),
        flags: t[13],
        window: u16::from_be_bytes([t[14], t[15]]),
        options: t[20..hl].to_vec(),
        payload: t[hl..].to_vec(),
    }
}

/// A director with an IPv6 SYN-proxy service (`fwd` "nat" or "fullnat")
/// on port 80 to RS1:8080, the client and the server resolved.
fn rig(fwd: &str) -> Rig<MemIo> {
    let mut r = Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000);
    let laddrs = if fwd == "fullnat" {
        format!(r#","laddrs":["{LIP}"]"#)
    } else {
        String::new()
    };
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"{VIP}","port":80,"sched":"rr","synproxy":true{laddrs}}}}}"#
    ));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"{VIP}","port":80}},"dest":{{"ip":"{RS1}","port":8080,"fwd":"{fwd}"}}}}"#
    ));
    // The client's NS for the VIP, the server's NA: both known.
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut m, v6(CLIENT), v6(VIP), CLIENT_MAC);
    let g = solicited_node(v6(VIP));
    r.worker.io.push(
        0,
        &frame((multicast_mac(g), CLIENT_MAC), v6(CLIENT), g, 255, 58, &m),
    );
    let mut m = [0u8; 32];
    let me1 = v6("2001:db8:1::1");
    icmpv6::write_neighbor_advert(&mut m, v6(RS1), me1, v6(RS1), RS1_MAC, true);
    r.worker
        .io
        .push(1, &frame((DIR1_MAC, RS1_MAC), v6(RS1), me1, 255, 58, &m));
    r.step(1);
    r.worker.io.take_tx(0);
    r.worker.io.take_tx(1);
    r
}

fn from_client(flags: u8, (seq, ack): (u32, u32), opts: &[u8], data: &[u8]) -> Vec<u8> {
    let t = tcp6_segment(
        (v6(CLIENT), 41000),
        (v6(VIP), 80),
        flags,
        (seq, ack),
        1000,
        (opts, data),
    );
    frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 6, &t)
}

fn from_server(
    src_of_client: Ipv6Addr,
    dport: u16,
    flags: u8,
    (seq, ack): (u32, u32),
    opts: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let t = tcp6_segment(
        (v6(RS1), 8080),
        (src_of_client, dport),
        flags,
        (seq, ack),
        2000,
        (opts, data),
    );
    frame((DIR1_MAC, RS1_MAC), v6(RS1), src_of_client, 64, 6, &t)
}

fn send(r: &mut Rig<MemIo>, port: u16, f: &[u8]) -> [Vec<Vec<u8>>; 2] {
    r.worker.io.push(port, f);
    r.step(1);
    [r.worker.io.take_tx(0), r.worker.io.take_tx(1)]
}

/// MSS 1440, SACK-permitted, window scale 7 (as Linux lays them out).
const SYN_OPTS: [u8; 12] = [2, 4, 0x05, 0xa0, 1, 1, 4, 2, 1, 3, 3, 7];

/// The client's SYN and the cookie answer; returns the cookie.
fn cookie(r: &mut Rig<MemIo>, isn: u32) -> u32 {
    let [to_client, to_server] = send(r, 0, &from_client(SYN, (isn, 0), &SYN_OPTS, b""));
    assert!(to_server.is_empty(), "nothing reaches the server");
    assert_eq!(to_client.len(), 1);
    assert_eq!(macs(&to_client[0]), (CLIENT_MAC, DIR0_MAC));
    let s = parse(&to_client[0]);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (v6(VIP), 80, v6(CLIENT), 41000)
    );
    assert_eq!(s.flags, SYN | ACK);
    assert_eq!((s.ack, s.window), (isn + 1, 0));
    // MSS: the port's 1500 less IPv6's 60 bytes of headers.
    assert_eq!(&s.options[..4], &[2, 4, 0x05, 0xa0]);
    s.seq
}

fn no_state(r: &Rig<MemIo>) {
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert!(c["connections"].as_array().unwrap().is_empty(), "{c}");
}

#[test]
fn nat_handshakes_are_spliced_and_sequence_numbers_translated() {
    let mut r = rig("nat");
    let isn = 7_000;
    let ck = cookie(&mut r, isn);
    no_state(&r);
    assert_eq!(r.stats().synproxy_syn_answered, 1);
    // The client's ACK opens the server side: the SYN carries the client's
    // ISN and options.
    let [_, to_server] = send(&mut r, 0, &from_client(ACK, (isn + 1, ck + 1), &[], b""));
    assert_eq!(to_server.len(), 1, "{:?}", r.stats());
    let s = parse(&to_server[0]);
    assert_eq!((s.src, s.dst, s.dport), (v6(CLIENT), v6(RS1), 8080));
    assert_eq!((s.flags, s.seq), (SYN, isn));
    assert_eq!(&s.options[..4], &[2, 4, 0x05, 0xa0]);
    assert_eq!(r.stats().synproxy_ack_accepted, 1);
    // The server answers: it gets the handshake's ACK, the client the
    // window update.
    let server_isn = 900_000;
    let [to_client, to_server] = send(
        &mut r,
        1,
        &from_server(
            v6(CLIENT),
            41000,
            SYN | ACK,
            (server_isn, isn + 1),
            &[2, 4, 5, 0xa0, 1, 3, 3, 7],
            b"",
        ),
    );
    assert_eq!(to_server.len(), 1);
    let s = parse(&to_server[0]);
    assert_eq!((s.flags, s.seq, s.ack), (ACK, isn + 1, server_isn + 1));
    assert_eq!(to_client.len(), 1, "the window update");
    let u = parse(&to_client[0]);
    assert_eq!((u.src, u.dst), (v6(VIP), v6(CLIENT)));
    assert_eq!((u.flags, u.seq, u.ack), (ACK, ck + 1, isn + 1));
    assert!(u.window > 0);
    assert_eq!(r.stats().synproxy_established, 1);
    // Data both ways, each side in its own sequence space.
    let [_, to_server] = send(
        &mut r,
        0,
        &from_client(ACK, (isn + 1, ck + 1), &[], b"GET /"),
    );
    let s = parse(&to_server[0]);
    assert_eq!(
        (s.seq, s.ack, s.payload.as_slice()),
        (isn + 1, server_isn + 1, &b"GET /"[..])
    );
    let [to_client, _] = send(
        &mut r,
        1,
        &from_server(
            v6(CLIENT),
            41000,
            ACK,
            (server_isn + 1, isn + 6),
            &[],
            b"200",
        ),
    );
    let c = parse(&to_client[0]);
    assert_eq!((c.src, c.sport), (v6(VIP), 80));
    assert_eq!((c.seq, c.ack), (ck + 1, isn + 6));
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(conns["connections"][0]["state"], "ESTABLISHED", "{conns}");

    // An ICMPv6 error about a packet sent to the client quotes the
    // client's sequence space; the server gets its own.
    let quoted = to_client[0][14..].to_vec();
    let mut m = vec![2, 0, 0, 0];
    m.extend_from_slice(&1400u32.to_be_bytes());
    m.extend_from_slice(&quoted);
    icmpv6::fill_checksum(&mut m, v6(CLIENT), v6(VIP));
    let e = frame((DIR0_MAC, CLIENT_MAC), v6(CLIENT), v6(VIP), 64, 58, &m);
    let [_, to_server] = send(&mut r, 0, &e);
    assert_eq!(to_server.len(), 1);
    let ip = &to_server[0][14..];
    assert_eq!(&ip[24..40], &v6(RS1).octets());
    let q = &ip[40 + 8..];
    let qseq = u32::from_be_bytes([q[44], q[45], q[46], q[47]]);
    assert_eq!(qseq, server_isn + 1, "the server's own sequence number");
    let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    let pseudo = [
        &ip[8..40],
        &(plen as u32).to_be_bytes()[..],
        &[0, 0, 0, 58][..],
    ]
    .concat();
    assert_eq!(ones_sum(&[&pseudo, &ip[40..40 + plen]]), 0xffff);
}

#[test]
fn fullnat_opens_the_server_side_from_the_local_address() {
    let mut r = rig("fullnat");
    let isn = 10;
    let ck = cookie(&mut r, isn);
    let [_, to_server] = send(&mut r, 0, &from_client(ACK, (isn + 1, ck + 1), &[], b""));
    let s = parse(&to_server[0]);
    assert_eq!((s.src, s.dst, s.flags, s.seq), (v6(LIP), v6(RS1), SYN, isn));
    let lport = s.sport;
    let [to_client, to_server] = send(
        &mut r,
        1,
        &from_server(v6(LIP), lport, SYN | ACK, (5_000, isn + 1), &[], b""),
    );
    let s = parse(&to_server[0]);
    assert_eq!((s.src, s.flags, s.ack), (v6(LIP), ACK, 5_001));
    let u = parse(&to_client[0]);
    assert_eq!((u.src, u.dst, u.seq), (v6(VIP), v6(CLIENT), ck + 1));
    let [to_client, _] = send(
        &mut r,
        1,
        &from_server(v6(LIP), lport, ACK, (5_001, isn + 1), &[], b"x"),
    );
    let c = parse(&to_client[0]);
    assert_eq!(
        (c.src, c.dst, c.dport, c.seq),
        (v6(VIP), v6(CLIENT), 41000, ck + 1)
    );
}

#[test]
fn forged_acks_make_no_state_and_a_refusing_server_resets_the_client() {
    let mut r = rig("nat");
    // An ACK whose acknowledgement is no cookie of this flow.
    let [a, b] = send(&mut r, 0, &from_client(ACK, (51, 12345), &[], b""));
    assert!(a.is_empty() && b.is_empty());
    assert_eq!(r.drops("synproxy_bad_cookie"), 1);
    no_state(&r);
    // A SYN with data is refused (the client sends it again without).
    let [a, _] = send(&mut r, 0, &from_client(SYN, (50, 0), &[], b"data"));
    assert!(a.is_empty());
    assert_eq!(r.drops("synproxy_bad_syn"), 1);
    // The server refuses: the client gets a reset from the VIP.
    let ck = cookie(&mut r, 50);
    let [_, to_server] = send(&mut r, 0, &from_client(ACK, (51, ck + 1), &[], b""));
    assert_eq!(to_server.len(), 1);
    let [to_client, _] = send(
        &mut r,
        1,
        &from_server(v6(CLIENT), 41000, RST | ACK, (0, 51), &[], b""),
    );
    assert_eq!(to_client.len(), 1);
    let c = parse(&to_client[0]);
    assert_eq!(
        (c.src, c.dst, c.flags, c.seq),
        (v6(VIP), v6(CLIENT), RST, ck + 1)
    );
    assert_eq!(r.stats().synproxy_refused, 1);
    no_state(&r);
}
