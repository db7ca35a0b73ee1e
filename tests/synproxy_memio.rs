//! The SYN proxy through the whole per-packet path (worker loop, dataplane,
//! control plane) on the in-memory device: cookies answered without state,
//! the server handshake opened only after the client's ACK, sequence
//! translation both ways, the window update the director originates, and
//! a flood of spoofed SYNs and forged ACKs that leaves the table empty.

mod common;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::{Ipv4Packet, PacketBuilder, TcpFlags, TcpSegment};
use std::net::Ipv4Addr;

/// A director with a SYN-proxy service (see `service`) that knows the
/// client's and rs1's MACs.
fn rig(fwd: &str, extra: &str) -> Rig<MemIo> {
    rig_on(
        Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000),
        fwd,
        extra,
    )
}

/// [`rig`] with this SYN-cookie secret (rvsd's `synproxy_secret`).
fn rig_keyed(fwd: &str, secret: &str) -> Rig<MemIo> {
    let key = rvs::synproxy::SynKey::from_hex(secret).unwrap();
    let b = director([DIR0_MAC, DIR1_MAC])
        .max_connections(1000)
        .syn_key(key);
    rig_on(Rig::with(MemIo::new(2), b), fwd, "")
}

fn rig_on(mut r: Rig<MemIo>, fwd: &str, extra: &str) -> Rig<MemIo> {
    service(&r, fwd, extra);
    // The client and the server ARP for the director, which learns them.
    r.worker.io.push(
        0,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .build(),
    );
    r.worker.io.push(
        1,
        &PacketBuilder::new()
            .arp_request(RS1_MAC, rs1(), dir1())
            .build(),
    );
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0).len(), 1);
    assert_eq!(r.worker.io.take_tx(1).len(), 1);
    r
}

/// A SYN-proxy service on vip:80 with rs1:80 as its only real server, in
/// `fwd` mode (`extra` is added to the service object).
fn service(r: &Rig<MemIo>, fwd: &str, extra: &str) {
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","synproxy":true{extra}}}}}"#
    ));
    r.ctl(&format!(
        r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","port":80,"fwd":"{fwd}"}}}}"#
    ));
}

fn lip() -> Ipv4Addr {
    ip("10.0.1.200")
}

/// Client MSS 1460, SACK permitted, window scale 7.
const CLIENT_OPTS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7];

fn from_client(src: Ipv4Addr, sport: u16, flags: TcpFlags, seq: u32, ack: u32) -> PacketBuilder {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(src, vip())
        .ttl(64)
        .tcp(sport, 80)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .window(502)
}

fn from_server(dst: Ipv4Addr, dport: u16, flags: TcpFlags, seq: u32, ack: u32) -> PacketBuilder {
    PacketBuilder::new()
        .eth(RS1_MAC, DIR1_MAC)
        .ipv4(rs1(), dst)
        .ttl(64)
        .tcp(80, dport)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .window(29200)
}

/// seq, ack, flags, window, options, payload.
fn tcp(f: &[u8]) -> (u32, u32, TcpFlags, u16, Vec<u8>, Vec<u8>) {
    let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
    let t = TcpSegment::new_checked(p.payload()).unwrap();
    (
        t.seq(),
        t.ack(),
        t.flags(),
        t.window(),
        t.options().to_vec(),
        t.payload().to_vec(),
    )
}

/// Push `f` on `port`, poll, and return what went out on each port.
fn send(r: &mut Rig<MemIo>, port: u16, f: &[u8]) -> [Vec<Vec<u8>>; 2] {
    r.worker.io.push(port, f);
    r.step(1);
    let out = [r.worker.io.take_tx(0), r.worker.io.take_tx(1)];
    for f in out.iter().flatten() {
        assert_checksums(f);
    }
    out
}

fn conns(r: &Rig<MemIo>) -> Vec<serde_json::Value> {
    r.ctl(r#"{"cmd":"connections"}"#)["connections"]
        .as_array()
        .unwrap()
        .clone()
}

fn accounted(r: &Rig<MemIo>) {
    let s = r.stats();
    assert_eq!(
        s.rx_packets,
        s.tx_packets + s.total_drops() + s.consumed,
        "{s:?}"
    );
}

/// The client's handshake with the director: returns the cookie.
fn client_handshake(r: &mut Rig<MemIo>, sport: u16, isn: u32) -> u32 {
    let syn = from_client(client(), sport, TcpFlags::SYN, isn, 0)
        .tcp_options(&CLIENT_OPTS)
        .build();
    let [to_client, to_servers] = send(r, 0, &syn);
    assert!(to_servers.is_empty(), "nothing reaches a server on a SYN");
    assert_eq!(to_client.len(), 1);
    let synack = &to_client[0];
    assert_eq!(macs(synack), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(endpoints(synack), (vip(), 80, client(), sport, 64));
    let (cookie, ack, flags, window, opts, _) = tcp(synack);
    assert_eq!(flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(ack, isn.wrapping_add(1));
    assert_eq!(window, 0, "zero window until the server answers");
    assert_eq!(&opts[..4], &[2, 4, 0x05, 0xb4], "MSS of a 1500-byte port");
    assert!(conns(r).is_empty(), "no state for a SYN");
    cookie
}

#[test]
fn nat_handshakes_are_spliced_and_sequence_numbers_translated() {
    let mut r = rig("nat", "");
    let isn = 0xfff0_0000;
    let cookie = client_handshake(&mut r, 40000, isn);
    assert_eq!(r.stats().synproxy_syn_answered, 1);

    // The client's ACK opens the connection: the server gets a SYN with the
    // client's ISN and options.
    let ack = from_client(
        client(),
        40000,
        TcpFlags::ACK,
        isn + 1,
        cookie.wrapping_add(1),
    )
    .build();
    let [c, s] = send(&mut r, 0, &ack);
    assert!(c.is_empty());
    assert_eq!(s.len(), 1);
    assert_eq!(macs(&s[0]), (RS1_MAC, DIR1_MAC));
    assert_eq!(endpoints(&s[0]), (client(), 40000, rs1(), 80, 63));
    let (seq, _, flags, _, opts, _) = tcp(&s[0]);
    assert_eq!((seq, flags), (isn, TcpFlags::SYN));
    assert_eq!(opts, CLIENT_OPTS, "MSS 1460, SACK, window scale 7");
    let c = conns(&r);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["state"], "SYN_RECV");
    assert_eq!(r.stats().synproxy_ack_accepted, 1);

    // The server answers: it gets the handshake's last ACK, the client a
    // window update.
    let server_isn = 0x1234_5678;
    let synack = from_server(
        client(),
        40000,
        TcpFlags::SYN | TcpFlags::ACK,
        server_isn,
        isn + 1,
    )
    .tcp_options(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7])
    .build();
    let [c, s] = send(&mut r, 1, &synack);
    assert_eq!(s.len(), 1, "ACK to the server");
    assert_eq!(endpoints(&s[0]), (client(), 40000, rs1(), 80, 63));
    let (seq, ack, flags, window, _, payload) = tcp(&s[0]);
    assert_eq!((seq, ack, flags), (isn + 1, server_isn + 1, TcpFlags::ACK));
    assert_eq!(window, 502, "the client's window, same scale both sides");
    assert!(payload.is_empty());
    assert_eq!(c.len(), 1, "window update to the client");
    assert_eq!(macs(&c[0]), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(endpoints(&c[0]), (vip(), 80, client(), 40000, 64));
    let (seq, ack, flags, window, _, _) = tcp(&c[0]);
    assert_eq!(
        (seq, ack, flags),
        (cookie.wrapping_add(1), isn + 1, TcpFlags::ACK)
    );
    assert_eq!(
        window,
        29200 >> 7,
        "the server's window in the client's scale"
    );
    let st = r.stats();
    assert_eq!((st.synproxy_established, st.synproxy_updates_sent), (1, 1));
    assert_eq!(conns(&r)[0]["state"], "ESTABLISHED");

    // Data both ways: client sequence numbers pass unchanged, the server's
    // are moved into the cookie's space and back.
    let req = from_client(
        client(),
        40000,
        TcpFlags::ACK | TcpFlags::PSH,
        isn + 1,
        cookie.wrapping_add(1),
    )
    .payload(b"GET / HTTP/1.0\r\n\r\n")
    .build();
    let [_, s] = send(&mut r, 0, &req);
    let (seq, ack, _, _, _, payload) = tcp(&s[0]);
    assert_eq!((seq, ack), (isn + 1, server_isn + 1));
    assert_eq!(payload, b"GET / HTTP/1.0\r\n\r\n");
    let resp = from_server(
        client(),
        40000,
        TcpFlags::ACK | TcpFlags::PSH,
        server_isn + 1,
        isn + 19,
    )
    .payload(b"HTTP/1.0 200 OK\r\n\r\n")
    .build();
    let [c, _] = send(&mut r, 1, &resp);
    assert_eq!(endpoints(&c[0]), (vip(), 80, client(), 40000, 63));
    let (seq, ack, _, window, _, payload) = tcp(&c[0]);
    assert_eq!((seq, ack), (cookie.wrapping_add(1), isn + 19));
    assert_eq!(window, 29200, "both sides scale by 7: unchanged");
    assert_eq!(payload, b"HTTP/1.0 200 OK\r\n\r\n");
    accounted(&r);
}

#[test]
fn fullnat_with_toa_opens_the_server_side_from_a_local_address() {
    let mut r = rig("fullnat", r#","client_addr":"toa","laddrs":["10.0.1.200"]"#);
    let isn = 7000;
    let cookie = client_handshake(&mut r, 40001, isn);
    let ack = from_client(
        client(),
        40001,
        TcpFlags::ACK,
        isn + 1,
        cookie.wrapping_add(1),
    )
    .build();
    let [_, s] = send(&mut r, 0, &ack);
    let (src, lport, dst, dport, _) = endpoints(&s[0]);
    assert_eq!((src, dst, dport), (lip(), rs1(), 80));
    let toa = [254u8, 8, 0x9c, 0x41, 10, 0, 0, 2]; // port 40001, 10.0.0.2
    let (seq, _, flags, _, opts, _) = tcp(&s[0]);
    assert_eq!((seq, flags), (isn, TcpFlags::SYN));
    assert_eq!(&opts[..8], &toa, "TOA on the SYN");

    let synack = from_server(lip(), lport, TcpFlags::SYN | TcpFlags::ACK, 90_000, isn + 1).build();
    let [c, s] = send(&mut r, 1, &synack);
    let (seq, ack, flags, _, opts, _) = tcp(&s[0]);
    assert_eq!((seq, ack, flags), (isn + 1, 90_001, TcpFlags::ACK));
    assert_eq!(&opts[..8], &toa, "TOA on the handshake's last ACK");
    assert_eq!(endpoints(&s[0]).0, lip());
    assert_eq!(c.len(), 1);
    // The server did not scale: the client (scale 7) gets its window
    // unscaled, and the client's windows are scaled up for the server.
    let (seq, _, _, window, _, _) = tcp(&c[0]);
    assert_eq!((seq, window), (cookie.wrapping_add(1), 29200 >> 7));

    let req = from_client(
        client(),
        40001,
        TcpFlags::ACK,
        isn + 1,
        cookie.wrapping_add(1),
    )
    .payload(b"x")
    .build();
    let [_, s] = send(&mut r, 0, &req);
    let (seq, ack, _, window, opts, _) = tcp(&s[0]);
    assert_eq!((seq, ack), (isn + 1, 90_001));
    assert!(opts.is_empty(), "TOA only on the handshake");
    assert_eq!(
        window,
        502 << 7,
        "the client's scale applied for the server"
    );
    let resp = from_server(lip(), lport, TcpFlags::ACK, 90_001, isn + 2)
        .payload(b"y")
        .build();
    let [c, _] = send(&mut r, 1, &resp);
    assert_eq!(endpoints(&c[0]).0, vip());
    assert_eq!(tcp(&c[0]).0, cookie.wrapping_add(1));
    accounted(&r);
}

#[test]
fn a_refusing_server_resets_the_client_and_a_pending_connection_resends_its_syn() {
    let mut r = rig("nat", "");
    let cookie = client_handshake(&mut r, 40002, 500);
    let ack = from_client(client(), 40002, TcpFlags::ACK, 501, cookie.wrapping_add(1)).build();
    let [_, s] = send(&mut r, 0, &ack);
    assert_eq!(s.len(), 1);
    // The client probes its zero window: the SYN goes out again.
    let [c, s] = send(&mut r, 0, &ack);
    assert!(c.is_empty());
    assert_eq!(s.len(), 1);
    assert_eq!(tcp(&s[0]).2, TcpFlags::SYN);
    assert_eq!(conns(&r).len(), 1);
    // A stray segment from the server is no answer.
    let stray = from_server(client(), 40002, TcpFlags::ACK, 1, 2).build();
    let [c, s] = send(&mut r, 1, &stray);
    assert!(c.is_empty() && s.is_empty());
    assert_eq!(r.drops("synproxy_bad_synack"), 1);
    // The server refuses.
    let rst = from_server(client(), 40002, TcpFlags::RST | TcpFlags::ACK, 0, 501).build();
    let [c, s] = send(&mut r, 1, &rst);
    assert!(s.is_empty());
    assert_eq!(c.len(), 1);
    assert_eq!(endpoints(&c[0]), (vip(), 80, client(), 40002, 64));
    let (seq, _, flags, _, _, _) = tcp(&c[0]);
    assert_eq!((seq, flags), (cookie.wrapping_add(1), TcpFlags::RST));
    assert!(conns(&r).is_empty());
    assert_eq!(r.stats().synproxy_refused, 1);
    accounted(&r);
}

/// A bounded flood on the in-memory device: 20,000 SYNs from spoofed
/// sources and 5,000 forged ACKs. Every SYN is answered, no connection is
/// created, no frame reaches a server, and a legitimate client still gets
/// through.
#[test]
fn a_flood_of_spoofed_syns_and_forged_acks_creates_no_state() {
    let mut r = rig("nat", "");
    let mut rng = rvs::prng::Rng(0x2545_f491);
    let mut rnd = move || rng.next_u32();
    let (mut answered, mut to_servers) = (0, 0);
    for i in 0..25_000u32 {
        let src = Ipv4Addr::from(0x0b00_0000 | (rnd() & 0x00ff_ffff));
        let sport = (rnd() % 60000 + 1024) as u16;
        let f = if i % 5 == 4 {
            from_client(src, sport, TcpFlags::ACK, rnd(), rnd()).build()
        } else {
            from_client(src, sport, TcpFlags::SYN, rnd(), 0)
                .tcp_options(&CLIENT_OPTS)
                .build()
        };
        r.worker.io.push(0, &f);
        if i % 32 == 31 {
            r.step(0);
            answered += r.worker.io.take_tx(0).len();
            to_servers += r.worker.io.take_tx(1).len();
        }
    }
    r.step(1);
    answered += r.worker.io.take_tx(0).len();
    to_servers += r.worker.io.take_tx(1).len();
    assert_eq!(answered, 20_000);
    assert_eq!(to_servers, 0);
    assert!(conns(&r).is_empty());
    assert_eq!(r.drops("synproxy_bad_cookie"), 5_000);
    assert_eq!(r.stats().synproxy_syn_answered, 20_000);

    let cookie = client_handshake(&mut r, 40003, 1);
    let ack = from_client(client(), 40003, TcpFlags::ACK, 2, cookie.wrapping_add(1)).build();
    let [_, s] = send(&mut r, 0, &ack);
    assert_eq!(s.len(), 1);
    assert_eq!(conns(&r).len(), 1);
    accounted(&r);
}

#[test]
fn a_cookie_is_bound_to_its_flow_and_expires() {
    let mut r = rig("nat", "");
    let cookie = client_handshake(&mut r, 40004, 100);
    // The same cookie from another port, another ISN, or off by one.
    for (sport, seq, ack) in [
        (40005, 101, cookie.wrapping_add(1)),
        (40004, 102, cookie.wrapping_add(1)),
        (40004, 101, cookie.wrapping_add(2)),
    ] {
        let f = from_client(client(), sport, TcpFlags::ACK, seq, ack).build();
        let [c, s] = send(&mut r, 0, &f);
        assert!(c.is_empty() && s.is_empty());
    }
    assert_eq!(r.drops("synproxy_bad_cookie"), 3);
    // Cookies live two 64-second slots at most.
    r.step(130_000);
    let f = from_client(client(), 40004, TcpFlags::ACK, 101, cookie.wrapping_add(1)).build();
    let [_, s] = send(&mut r, 0, &f);
    assert!(s.is_empty());
    assert_eq!(r.drops("synproxy_bad_cookie"), 4);
    assert!(conns(&r).is_empty());
}

/// Directors behind ECMP share `synproxy_secret`: the client's ACK may
/// reach another director than the one that sent the SYN-ACK (issue #19).
#[test]
fn a_cookie_is_taken_by_any_director_with_the_same_secret() {
    let shared = "000102030405060708090a0b0c0d0e0f";
    let mut a = rig_keyed("nat", shared);
    let cookie = client_handshake(&mut a, 40010, 500);
    let ack = from_client(client(), 40010, TcpFlags::ACK, 501, cookie.wrapping_add(1)).build();
    let mut b = rig_keyed("nat", shared);
    let [_, to_server] = send(&mut b, 0, &ack);
    assert_eq!(to_server.len(), 1, "B opens the server side");
    assert_eq!(tcp(&to_server[0]).2, TcpFlags::SYN);
    assert_eq!(conns(&b).len(), 1);
    let mut c = rig_keyed("nat", "f0e0d0c0b0a090807060504030201000");
    let [_, to_server] = send(&mut c, 0, &ack);
    assert!(to_server.is_empty(), "another secret refuses it");
    assert_eq!(c.drops("synproxy_bad_cookie"), 1);
    for bad in ["", "0011", "zz0102030405060708090a0b0c0d0e0f"] {
        assert!(rvs::synproxy::SynKey::from_hex(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn impossible_synproxy_configurations_are_refused_and_change_nothing() {
    let r = rig("nat", "");
    let before = r.ctl(r#"{"cmd":"list"}"#);
    for (req, why) in [
        (
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.12","port":80,"fwd":"dr"}}"#,
            "NAT or FULLNAT",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"synproxy":true}}"#,
            "TCP services only",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":81,"synproxy":true,"client_addr":"proxy_v2","laddrs":["10.0.1.201"]}}"#,
            "PROXY protocol",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":82,"synproxy":"yes"}}"#,
            "",
        ),
    ] {
        let v: serde_json::Value = serde_json::from_str(&r.ctl.handle_line(req)).unwrap();
        assert!(v["error"].is_object(), "{req}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(why), "{req}: {msg}");
    }
    assert_eq!(r.ctl(r#"{"cmd":"list"}"#), before);
}

/// A client whose valid ACK cannot become a connection (here: the only
/// real server quiesced) is reset rather than left waiting on a closed
/// window; a zero-window probe (seq = the client's ISN) after a lost third
/// ACK still opens the connection; a client's reset while the server has
/// not answered reaches the server and ends the connection.
#[test]
fn failed_opens_reset_the_client_probes_reopen_and_client_resets_pass() {
    let mut r = rig("nat", "");
    r.ctl(&format!(
        r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","port":80,"weight":0,"fwd":"nat"}}}}"#
    ));
    let cookie = client_handshake(&mut r, 40010, 900);
    let ack = from_client(client(), 40010, TcpFlags::ACK, 901, cookie.wrapping_add(1)).build();
    let [c, s] = send(&mut r, 0, &ack);
    assert!(s.is_empty());
    assert_eq!(c.len(), 1, "the client is reset");
    assert_eq!(macs(&c[0]), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(endpoints(&c[0]), (vip(), 80, client(), 40010, 64));
    let (seq, _, flags, _, _, _) = tcp(&c[0]);
    assert_eq!((seq, flags), (cookie.wrapping_add(1), TcpFlags::RST));
    assert_eq!(r.stats().synproxy_open_failed, 1);
    assert!(conns(&r).is_empty());

    // The server is back; the client's third ACK was lost, it probes.
    r.ctl(&format!(
        r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","port":80,"weight":1,"fwd":"nat"}}}}"#
    ));
    let cookie = client_handshake(&mut r, 40011, 5000);
    let probe = from_client(client(), 40011, TcpFlags::ACK, 5000, cookie.wrapping_add(1)).build();
    let [_, s] = send(&mut r, 0, &probe);
    assert_eq!(s.len(), 1, "the probe opens the connection");
    let (seq, _, flags, _, _, _) = tcp(&s[0]);
    assert_eq!((seq, flags), (5000, TcpFlags::SYN), "the client's own ISN");

    // The client gives up before the server answers.
    let rst = from_client(client(), 40011, TcpFlags::RST, 5001, 0).build();
    let [c, s] = send(&mut r, 0, &rst);
    assert!(c.is_empty());
    assert_eq!(s.len(), 1, "the reset goes on to the server");
    assert_eq!(endpoints(&s[0]), (client(), 40011, rs1(), 80, 63));
    assert_eq!(tcp(&s[0]).2, TcpFlags::RST);
    assert!(conns(&r).is_empty());
    // The server's late SYN-ACK finds nothing.
    let synack = from_server(client(), 40011, TcpFlags::SYN | TcpFlags::ACK, 1, 5001).build();
    let [c, s] = send(&mut r, 1, &synack);
    assert!(c.is_empty() && s.is_empty());
    assert_eq!(r.stats().synproxy_established, 0);
    accounted(&r);
}
