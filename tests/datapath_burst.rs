//! The burst's stages (classify, prefetch, the established fast path)
//! against the full per-packet decision, differentially: two directors
//! built alike receive the same random stream of frames (new
//! connections, established traffic both ways, FIN, RST, UDP, DR,
//! FULLNAT and TUN (not plain: handed to their modes' code), and
//! frames the full path drops or treats specially: TTL 1 and 0, bad IP
//! checksums, fragments, IP options, short TCP headers, foreign MACs,
//! broadcast sources). Director A decides every frame with
//! `Dataplane::process`; director B takes each burst of 32 through
//! `classify`, `prefetch_conns` and `decide`, as the worker does. Every
//! verdict and every output byte must be equal, and so must the counters,
//! the connection tables (state, deadline, real server) and the per-server
//! traffic and ActiveConn/InActConn the control plane lists. The worker
//! is also held to sending no SYN before its reply key is in the table.

mod common;

use std::net::Ipv4Addr;

use common::rig::{director, ip, CLIENT_MAC, DIR0_MAC, DIR1_MAC, RS1_MAC, RS2_MAC};
use rvs::dataplane::{Rec, Solo, Stages, Verdict};
use rvs::director::Director;
use rvs::io::{Frame, VecFrame, BURST};
use rvs::prng::Rng;
use rvs::wire::{MacAddr, PacketBuilder, TcpFlags};

fn build() -> Director {
    let d = director([DIR0_MAC, DIR1_MAC]).max_connections(4096).build();
    for req in [
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.11","port":8080,"fwd":"nat"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.12","port":80,"fwd":"nat"}}"#,
        r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.11","port":5353,"fwd":"nat"}}"#,
        // A real server whose MAC is never learnt: its frames are held.
        r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.13","port":5353,"fwd":"nat"}}"#,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.101","port":80},"dest":{"ip":"10.0.1.12","port":80,"fwd":"dr"}}"#,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.102","port":80,"sched":"rr","laddrs":["10.0.1.200"]}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.102","port":80},"dest":{"ip":"10.0.1.11","port":80,"fwd":"fullnat"}}"#,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.103","port":80,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.103","port":80},"dest":{"ip":"10.0.1.12","port":80,"fwd":"tun"}}"#,
    ] {
        let r = d.ctl.handle_line(req);
        assert!(!r.contains("\"error\""), "{req} -> {r}");
    }
    d.dp.neigh.learn(ip("10.0.1.11"), RS1_MAC);
    d.dp.neigh.learn(ip("10.0.1.12"), RS2_MAC);
    d.dp.neigh.learn(ip("10.0.0.2"), CLIENT_MAC);
    d
}

/// One frame of the stream: the port it arrives on and its bytes.
type Input = (u16, Vec<u8>);

/// A random frame of one of `flows` flows (each a client port; its
/// service and real server follow from it), in some shape.
fn frame(rng: &mut Rng, flows: u16) -> Input {
    let i = (rng.next_u64() % u64::from(flows)) as u16;
    let sport = 20_000 + i;
    let client = ip("10.0.0.2");
    // Flow kinds: TCP NAT (two real servers, rr), UDP NAT, TCP DR, TCP
    // FULLNAT and TCP TUN (the last two are not plain: the fast path hands
    // them to their modes' code).
    let kind = i % 6;
    let (vip, vport) = match kind {
        0 | 1 => (ip("10.0.0.100"), 80),
        2 => (ip("10.0.0.100"), 53),
        3 => (ip("10.0.0.101"), 80),
        4 => (ip("10.0.0.102"), 80),
        _ => (ip("10.0.0.103"), 80),
    };
    let flags = match rng.next_u64() % 16 {
        0..=2 => TcpFlags::SYN,
        3 => TcpFlags::FIN | TcpFlags::ACK,
        4 => TcpFlags::RST,
        5 => TcpFlags::SYN | TcpFlags::ACK,
        6 => TcpFlags::PSH | TcpFlags::ACK,
        7 => TcpFlags(0),
        _ => TcpFlags::ACK,
    };
    // Replies from either real server (the one rr picked, or not).
    let reply = kind != 3 && kind != 5 && rng.next_u64().is_multiple_of(3);
    let mut b = PacketBuilder::new();
    let port;
    if reply && kind == 4 {
        // To the FULLNAT local address: one worker, one address, so the
        // director's local ports go up from 1024 (some of these are in use).
        let lport = 1024 + (rng.next_u64() % 16) as u16;
        b = b
            .eth(RS1_MAC, DIR1_MAC)
            .ipv4(ip("10.0.1.11"), ip("10.0.1.200"))
            .tcp(80, lport)
            .flags(flags);
        port = 1;
    } else if reply {
        let (mac, rs, rport) = match rng.next_u64() % 3 {
            0 => (
                RS1_MAC,
                ip("10.0.1.11"),
                if kind == 2 { 5353 } else { 8080 },
            ),
            _ => (RS2_MAC, ip("10.0.1.12"), 80),
        };
        b = b.eth(mac, DIR1_MAC).ipv4(rs, client);
        b = if kind == 2 {
            b.udp(rport, sport)
        } else {
            b.tcp(rport, sport).flags(flags)
        };
        port = 1;
    } else {
        b = b.eth(CLIENT_MAC, DIR0_MAC).ipv4(client, vip);
        b = if kind == 2 {
            b.udp(sport, vport)
        } else {
            b.tcp(sport, vport).flags(flags)
        };
        port = 0;
    }
    b = b
        .ttl(64)
        .seq(rng.next_u32())
        .payload(&b"x".repeat((rng.next_u64() % 40) as usize));
    // One frame in four is bent into something the full path treats
    // specially.
    match rng.next_u64() % 40 {
        0 => b = b.ttl(1),
        1 => b = b.ttl(0),
        2 => b = b.bad_ip_checksum(),
        3 => b = b.more_frags(true),
        4 => b = b.frag_offset(8),
        5 => b = b.ip_options(&[1, 1, 1, 0]),
        6 => b = b.eth(CLIENT_MAC, MacAddr([0x02, 0xee, 0, 0, 0, 9])),
        7 => b = b.eth(MacAddr([0x03, 0, 0, 0, 0, 1]), DIR0_MAC),
        8 => b = b.ipv4(Ipv4Addr::BROADCAST, vip),
        9 => b = b.bad_l4_checksum(),
        10 => b = b.dont_frag(true),
        _ => {}
    }
    let mut bytes = b.build();
    match rng.next_u64() % 60 {
        // A TCP data offset below 5, or beyond the segment.
        0 if kind != 2 => bytes[14 + 20 + 12] = 0x40,
        1 if kind != 2 => bytes[14 + 20 + 12] = 0xf0,
        // Cut short: the IPv4 total length beyond the frame.
        2 => bytes.truncate(14 + 30),
        _ => {}
    }
    (port, bytes)
}

/// What a director's run leaves behind, for comparison.
#[derive(Debug, PartialEq)]
struct Outcome {
    verdicts: Vec<(Verdict, Vec<u8>)>,
    stats: String,
    conns: Vec<String>,
    list: String,
}

fn run(stream: &[Input], staged: bool, times: &[u64]) -> Outcome {
    let d = build();
    let dp = &d.dp;
    let solo = Solo::new(dp);
    let mut stages = Box::<Stages>::default();
    let mut verdicts = Vec::new();
    for (chunk, &now_ms) in stream.chunks(BURST).zip(times.iter().cycle()) {
        let cx = solo.cx(&d.stats()[0], now_ms);
        // The worker takes one port's burst at a time.
        for port in [0u16, 1] {
            let mut frames: Vec<VecFrame> = chunk
                .iter()
                .filter(|(p, _)| *p == port)
                .map(|(_, b)| VecFrame::from_bytes(b))
                .collect();
            if staged {
                dp.classify(port, &frames, &mut stages);
                dp.prefetch_conns(frames.len(), &mut stages);
            }
            for (i, f) in frames.iter_mut().enumerate() {
                let r = if staged {
                    stages.recs[i]
                } else {
                    Rec::default()
                };
                let v = dp.decide(&cx, port, f, &r);
                verdicts.push((v, f.data().to_vec()));
            }
        }
        solo.traffic.borrow_mut().flush(dp.conns.ids());
        dp.conns.expire(0, now_ms, usize::MAX);
    }
    let mut conns = Vec::new();
    dp.conns.for_each(|c| {
        conns.push(format!(
            "{:?}:{} {:?}:{} {:?}:{} {:?} {:?} {}",
            c.client(),
            c.cport,
            c.virt(),
            c.vport,
            c.real(),
            c.dport,
            c.fwd,
            c.state(),
            c.expires_ms()
        ))
    });
    conns.sort();
    Outcome {
        verdicts,
        stats: format!("{:?}", d.stats()[0].snapshot()),
        conns,
        list: d.ctl.handle_line(r#"{"cmd":"list"}"#),
    }
}

#[test]
fn the_burst_stages_decide_every_frame_as_the_full_path_does() {
    for seed in 0..6u64 {
        let mut rng = Rng(seed);
        let flows = [8u16, 64, 400][seed as usize % 3];
        let stream: Vec<Input> = (0..6000).map(|_| frame(&mut rng, flows)).collect();
        // Time moves on between bursts, now and then past the SYN and
        // FIN timeouts, so connections expire and are made afresh.
        let times: Vec<u64> = (0..stream.len() / BURST + 1)
            .scan(1u64, |t, _| {
                *t += if rng.next_u64().is_multiple_of(50) {
                    70_000
                } else {
                    7
                };
                Some(*t)
            })
            .collect();
        let full = run(&stream, false, &times);
        let staged = run(&stream, true, &times);
        for (i, (a, b)) in full.verdicts.iter().zip(&staged.verdicts).enumerate() {
            assert_eq!(a, b, "seed {seed}, frame {i}");
        }
        assert_eq!(full.stats, staged.stats, "seed {seed}: counters");
        assert_eq!(full.conns, staged.conns, "seed {seed}: connections");
        assert_eq!(full.list, staged.list, "seed {seed}: services");
        // The stream exercised what it is meant to: forwarded frames of
        // established connections both ways, drops, and live connections.
        let tx = staged
            .verdicts
            .iter()
            .filter(|(v, _)| matches!(v, Verdict::Tx(_)))
            .count();
        let dropped = staged
            .verdicts
            .iter()
            .filter(|(v, _)| matches!(v, Verdict::Drop(_)))
            .count();
        assert!(
            tx > 1000 && dropped > 100,
            "seed {seed}: tx {tx}, dropped {dropped}"
        );
        let held = staged
            .verdicts
            .iter()
            .filter(|(v, _)| matches!(v, Verdict::Hold { .. }))
            .count();
        assert!(held > 10, "seed {seed}: {held} frames held for ARP");
        // FULLNAT both ways and TUN were forwarded too.
        let sent = |f: &dyn Fn(&[u8]) -> bool| {
            staged
                .verdicts
                .iter()
                .filter(|(v, b)| matches!(v, Verdict::Tx(_)) && b.len() > 34 && f(b))
                .count()
        };
        let fnat_in = sent(&|b| b[26..30] == [10, 0, 1, 200]);
        let fnat_out = sent(&|b| b[26..30] == [10, 0, 0, 102]);
        let tun = sent(&|b| b[23] == 4);
        assert!(
            fnat_in > 20 && fnat_out > 0 && tun > 20,
            "seed {seed}: FULLNAT {fnat_in} in, {fnat_out} out; TUN {tun}"
        );
        assert!(!staged.conns.is_empty());
    }
}

/// The fast path is taken: after a handshake, a burst of established
/// packets is forwarded with the table's state untouched but the timer
/// moved, and one that would change the state (FIN) is not taken by it
/// (the full path moves the state).
#[test]
fn established_frames_take_the_fast_path_and_state_changes_do_not() {
    let d = build();
    let dp = &d.dp;
    let solo = Solo::new(dp);
    let cx = |now_ms| solo.cx(&d.stats()[0], now_ms);
    let pkt = |flags| {
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(ip("10.0.0.2"), ip("10.0.0.100"))
            .ttl(64)
            .tcp(30_000, 80)
            .flags(flags)
            .build()
    };
    let mut stages = Box::<Stages>::default();
    let mut go = |port: u16, bytes: &[u8], now| {
        let mut f = [VecFrame::from_bytes(bytes)];
        dp.classify(port, &f, &mut stages);
        dp.prefetch_conns(1, &mut stages);
        let r = stages.recs[0];
        (
            dp.decide(&cx(now), port, &mut f[0], &r),
            r,
            f[0].data().to_vec(),
        )
    };
    assert_eq!(go(0, &pkt(TcpFlags::SYN), 10).0, Verdict::Tx(1));
    // The real server rr picked answers.
    let mut real = Vec::new();
    dp.conns.for_each(|c| real.push((c.real(), c.dport)));
    let (rs, rport) = match real[..] {
        [(std::net::IpAddr::V4(a), p)] => (a, p),
        _ => panic!("one IPv4 connection: {real:?}"),
    };
    let rs_mac = if rs == ip("10.0.1.11") {
        RS1_MAC
    } else {
        RS2_MAC
    };
    let reply = PacketBuilder::new()
        .eth(rs_mac, DIR1_MAC)
        .ipv4(rs, ip("10.0.0.2"))
        .ttl(64)
        .tcp(rport, 30_000)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .build();
    let (v, _, out) = go(1, &reply, 20);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(
        common::rig::endpoints(&out),
        (ip("10.0.0.100"), 80, ip("10.0.0.2"), 30_000, 63)
    );
    let (v, r, out) = go(0, &pkt(TcpFlags::ACK), 30);
    assert_eq!(v, Verdict::Tx(1));
    assert!(r.fast, "an established ACK qualifies");
    common::rig::assert_checksums(&out);
    assert_eq!(
        common::rig::endpoints(&out),
        (ip("10.0.0.2"), 30_000, rs, rport, 63)
    );
    assert_eq!(common::rig::macs(&out), (rs_mac, DIR1_MAC));
    // An established reply, through the fast path both ways.
    let ack = PacketBuilder::new()
        .eth(rs_mac, DIR1_MAC)
        .ipv4(rs, ip("10.0.0.2"))
        .ttl(64)
        .tcp(rport, 30_000)
        .flags(TcpFlags::ACK)
        .payload(b"hello")
        .build();
    let (v, r, out) = go(1, &ack, 40);
    assert!(r.fast);
    assert_eq!(v, Verdict::Tx(0));
    common::rig::assert_checksums(&out);
    assert_eq!(
        common::rig::endpoints(&out),
        (ip("10.0.0.100"), 80, ip("10.0.0.2"), 30_000, 63)
    );
    assert_eq!(common::rig::macs(&out), (CLIENT_MAC, DIR0_MAC));
    let conn = || {
        let mut v = Vec::new();
        dp.conns.for_each(|c| v.push((c.state(), c.expires_ms())));
        v[0]
    };
    let est = rvs::conn::State::Established;
    assert_eq!(conn(), (est, 40 + 900_000));
    // Through the fast path (lookup_plain_from and touch) alone: the timer moves.
    assert_eq!(go(0, &pkt(TcpFlags::ACK), 5_000).0, Verdict::Tx(1));
    assert_eq!(conn(), (est, 5_000 + 900_000));
    let (v, r, _) = go(0, &pkt(TcpFlags::FIN | TcpFlags::ACK), 6_000);
    assert!(r.fast, "it qualifies by shape");
    assert_eq!(v, Verdict::Tx(1));
    // A client FIN in ESTABLISHED: the kernel's tcp_states (ip_vs_proto_tcp.c,
    // INPUT, fin row, sES column) gives sCW, CLOSE_WAIT, whose timeout in
    // tcp_timeouts is 60 s.
    assert_eq!(conn(), (rvs::conn::State::CloseWait, 6_000 + 60_000));
}

/// The in-memory device, checking as each frame leaves that a SYN sent to
/// a real server already has its connection's reply key in the table:
/// the worker links a burst's late reply entries before it sends any of
/// the burst's frames (`Dataplane::finish_burst`).
struct Watch {
    io: rvs::io::MemIo,
    dp: Option<std::sync::Arc<rvs::dataplane::Dataplane>>,
    syns: usize,
    unlinked: usize,
}

impl rvs::io::PortIo for Watch {
    type Frame = VecFrame;
    fn n_ports(&self) -> usize {
        self.io.n_ports()
    }
    fn rx_burst(&mut self, port: u16, out: &mut Vec<VecFrame>) -> usize {
        self.io.rx_burst(port, out)
    }
    fn tx(&mut self, port: u16, frame: VecFrame) {
        let d = frame.data();
        let syn = d.len() >= 54 && d[12..14] == [8, 0] && d[23] == 6 && d[47] & 0x12 == 0x02;
        if let (true, Some(dp)) = (syn, &self.dp) {
            let addr = |at: usize| Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3]);
            let port_at = |at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
            // The real server's answer: from where the SYN goes, to where
            // it comes from.
            let reply = rvs::flow::FlowKey::v4(
                rvs::flow::Proto::Tcp,
                addr(30),
                port_at(36),
                addr(26),
                port_at(34),
            );
            self.syns += 1;
            self.unlinked += usize::from(!dp.conns.contains(&reply));
        }
        self.io.tx(port, frame)
    }
    fn flush(&mut self) {
        self.io.flush()
    }
    fn alloc(&mut self) -> Option<VecFrame> {
        self.io.alloc()
    }
    fn tx_dropped(&self) -> u64 {
        self.io.tx_dropped()
    }
}

#[test]
fn a_bursts_syns_leave_only_once_their_reply_keys_are_in() {
    use common::rig::{client, client_tcp, nat_service, rs1, rs2, Rig};
    let io = Watch {
        io: rvs::io::MemIo::new(2),
        dp: None,
        syns: 0,
        unlinked: 0,
    };
    let mut r = Rig::new(io, [DIR0_MAC, DIR1_MAC], 1000);
    r.worker.io.dp = Some(r.dp.clone());
    nat_service(&r, "rr", 1, 1);
    for (ip, mac) in [(client(), CLIENT_MAC), (rs1(), RS1_MAC), (rs2(), RS2_MAC)] {
        r.dp.neigh.learn(ip, mac);
    }
    for p in 0..2 * BURST as u16 {
        let syn = client_tcp(40000 + p, TcpFlags::SYN, b"", DIR0_MAC);
        r.worker.io.io.push(0, &syn);
    }
    // Two polls of one full burst each.
    r.step(1);
    r.step(1);
    let out = r.worker.io.io.take_tx(1);
    assert_eq!(out.len(), 2 * BURST, "every SYN forwarded");
    assert_eq!(r.worker.io.syns, 2 * BURST);
    assert_eq!(r.worker.io.unlinked, 0, "a SYN left before its reply key");
}
