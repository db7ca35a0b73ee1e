use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::io::VecFrame;
use crate::prng::Rng;
use crate::wire::{checksum, MacAddr, PacketBuilder};

const KEY: SynKey = SynKey::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
const CMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0c]);
const DMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0d]);
const NOW: u64 = 1_000 * SLOT_MS + 1234;
const ISN: u32 = 0xffff_fff0;

fn client() -> SocketAddrV4 {
    "192.0.2.7:40001".parse().unwrap()
}
fn vip() -> SocketAddrV4 {
    "10.0.0.100:80".parse().unwrap()
}
fn rip() -> SocketAddrV4 {
    "10.0.1.11:8080".parse().unwrap()
}

/// A TCP frame `src` -> `dst`.
fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> PacketBuilder {
    PacketBuilder::new()
        .eth(CMAC, DMAC)
        .ipv4(*src.ip(), *dst.ip())
        .tcp(src.port(), dst.port())
}

/// Client SYN with MSS 1460, SACK-permitted, timestamps, window scale 7.
const LINUX_SYN_OPTS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn syn(opts: &[u8]) -> VecFrame {
    VecFrame::from_bytes(
        &tcp(client(), vip())
            .flags(TcpFlags::SYN)
            .seq(ISN)
            .window(64240)
            .tcp_options(opts)
            .build(),
    )
}

/// The TCP fields of a frame whose IPv4 and TCP checksums verify.
#[derive(Debug, PartialEq)]
struct Seg {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn seg(frame: &[u8]) -> Seg {
    let e = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(e.ethertype(), EtherType::IPV4);
    let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.protocol(), IpProtocol::TCP);
    let t = TcpSegment::new_checked(ip.payload()).unwrap();
    // Independent check: recompute from scratch.
    let mut copy = ip.payload().to_vec();
    copy[16] = 0;
    copy[17] = 0;
    let want = checksum::l4_checksum_v4(ip.src_addr(), ip.dst_addr(), 6, &copy);
    assert_eq!(t.checksum(), want, "TCP checksum");
    Seg {
        src: SocketAddrV4::new(ip.src_addr(), t.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
        seq: t.seq(),
        ack: t.ack(),
        flags: t.flags(),
        window: t.window(),
        options: t.options().to_vec(),
        payload: t.payload().to_vec(),
    }
}

fn macs(frame: &[u8]) -> (MacAddr, MacAddr) {
    let e = EthernetFrame::new_checked(frame).unwrap();
    (e.src(), e.dst())
}

/// The client's SYN answered, and its third ACK: (cookie, the ACK frame).
fn handshake(opts: &[u8]) -> (u32, VecFrame) {
    let mut f = syn(opts);
    answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
    let cookie = seg(f.data()).seq;
    let ack = tcp(client(), vip())
        .flags(TcpFlags::ACK)
        .seq(ISN.wrapping_add(1))
        .ack(cookie.wrapping_add(1))
        .window(502)
        .build();
    (cookie, VecFrame::from_bytes(&ack))
}

#[test]
fn siphash_reference_vectors() {
    // Key 00..0f, messages 00 01 02 ... (the SipHash paper, appendix A,
    // and the reference implementation's vectors).
    let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
    let msg: Vec<u8> = (0..15).collect();
    assert_eq!(siphash24(k0, k1, &msg[..0]), 0x726f_db47_dd0e_0e31);
    assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
    assert_eq!(siphash24(k0, k1, &msg[..8]), 0x93f5_f579_9a93_2462);
    assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
}

#[test]
fn random_keys_differ_and_stay_secret_in_debug() {
    let (a, b) = (SynKey::random().unwrap(), SynKey::random().unwrap());
    assert_ne!(a, b);
    assert_eq!(format!("{a:?}"), "SynKey(..)");
}

#[test]
fn mss_table_picks_the_largest_entry_not_above_the_client_mss() {
    let cases = [
        (0, 536),
        (100, 536),
        (535, 536),
        (536, 536),
        (1299, 536),
        (1300, 1300),
        (1439, 1300),
        (1440, 1440),
        (1452, 1440),
        (1459, 1440),
        (1460, 1460),
        (8960, 1460),
        (u16::MAX, 1460),
    ];
    for (mss, want) in cases {
        assert_eq!(MSS_TABLE[mss_index(mss)], want, "client MSS {mss}");
        let o = CookieOpts {
            mss,
            wscale: None,
            sack_ok: false,
        };
        let (c, enc) = make_cookie(&KEY, client(), vip(), 1, &o, NOW);
        assert_eq!(enc.mss, want);
        assert_eq!(check_cookie(&KEY, client(), vip(), 1, c, NOW), Some(enc));
    }
}

#[test]
fn cookie_round_trip_for_many_flows_and_options() {
    let mut rng = Rng(0x5eed);
    for i in 0..20_000u32 {
        let c = SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.next_u16());
        let v = SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.next_u16());
        let isn = rng.next_u32();
        let now = rng.next_u64() >> 20;
        let asked = CookieOpts {
            mss: rng.next_u16(),
            wscale: (i % 3 != 0).then(|| (rng.next_u32() % 20) as u8),
            sack_ok: i % 2 == 0,
        };
        let (cookie, enc) = make_cookie(&KEY, c, v, isn, &asked, now);
        assert_eq!(enc.mss, MSS_TABLE[mss_index(asked.mss)]);
        assert_eq!(enc.wscale, asked.wscale.map(|w| w.min(14)));
        assert_eq!(enc.sack_ok, asked.sack_ok);
        assert_eq!(check_cookie(&KEY, c, v, isn, cookie, now), Some(enc));
        // Another flow, ISN or key does not accept it.
        let other = SocketAddrV4::new(*c.ip(), c.port() ^ 1);
        assert_eq!(check_cookie(&KEY, other, v, isn, cookie, now), None);
        assert_eq!(check_cookie(&KEY, c, v, isn ^ 1, cookie, now), None);
        let k2 = SynKey::new(KEY.k0, KEY.k1 ^ 1);
        assert_eq!(check_cookie(&k2, c, v, isn, cookie, now), None);
    }
}

#[test]
fn cookie_from_the_previous_slot_is_accepted_older_and_newer_rejected() {
    let o = CookieOpts {
        mss: 1460,
        wscale: Some(7),
        sack_ok: true,
    };
    for slot_no in [0u64, 1, 2, 1000, 1001, u64::from(u32::MAX) - 1] {
        let start = slot_no * SLOT_MS;
        for made in [start, start + SLOT_MS - 1] {
            let (c, enc) = make_cookie(&KEY, client(), vip(), ISN, &o, made);
            let check = |now| check_cookie(&KEY, client(), vip(), ISN, c, now);
            assert_eq!(check(made), Some(enc));
            assert_eq!(check(start + SLOT_MS), Some(enc), "next slot");
            assert_eq!(
                check(start + 2 * SLOT_MS - 1),
                Some(enc),
                "end of next slot"
            );
            assert_eq!(check(start + 2 * SLOT_MS), None, "two slots later");
            assert_eq!(check(start + 5 * SLOT_MS), None);
            if slot_no > 0 {
                assert_eq!(check(start - 1), None, "made in the future");
            }
        }
    }
}

#[test]
fn tampered_cookie_is_rejected() {
    let o = CookieOpts {
        mss: 1440,
        wscale: Some(9),
        sack_ok: true,
    };
    let mut rng = Rng(99);
    for _ in 0..200 {
        let isn = rng.next_u32();
        let (c, _) = make_cookie(&KEY, client(), vip(), isn, &o, NOW);
        for bit in 0..32 {
            let bad = c ^ (1 << bit);
            assert_eq!(
                check_cookie(&KEY, client(), vip(), isn, bad, NOW),
                None,
                "bit {bit}"
            );
            assert_eq!(
                check_cookie(&KEY, client(), vip(), isn, bad, NOW + SLOT_MS),
                None,
                "bit {bit}, next slot"
            );
        }
        assert_eq!(
            check_cookie(&KEY, client(), vip(), isn, c.wrapping_add(1), NOW),
            None
        );
    }
    // Random guesses: the MAC is 24 bits, so 100k guesses almost surely
    // all fail (expected passes: 0.006).
    let (c, _) = make_cookie(&KEY, client(), vip(), ISN, &o, NOW);
    let passes = (0..100_000)
        .map(|_| rng.next_u32())
        .filter(|&g| g != c && check_cookie(&KEY, client(), vip(), ISN, g, NOW).is_some())
        .count();
    assert_eq!(passes, 0);
}

#[test]
fn answer_syn_writes_a_valid_synack() {
    let mut f = syn(&LINUX_SYN_OPTS);
    answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
    assert_eq!(macs(f.data()), (DMAC, CMAC), "MACs swapped");
    let s = seg(f.data());
    assert_eq!((s.src, s.dst), (vip(), client()));
    assert_eq!(s.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(s.ack, ISN.wrapping_add(1));
    assert_eq!(s.window, 0);
    // MSS 1400 (ours), SACK-permitted, window scale WSCALE; no timestamps.
    assert_eq!(s.options, [2, 4, 0x05, 0x78, 1, 1, 4, 2, 1, 3, 3, WSCALE]);
    assert!(s.payload.is_empty());
    assert_eq!(
        check_cookie(&KEY, client(), vip(), ISN, s.seq, NOW),
        Some(CookieOpts {
            mss: 1460,
            wscale: Some(7),
            sack_ok: true
        })
    );
    let ip = Ipv4Packet::new_checked(&f.data()[ETH..]).unwrap();
    assert_eq!(
        (ip.ttl(), ip.header_len(), ip.dont_frag()),
        (DEFAULT_TTL, 20, true)
    );
    assert_eq!(f.data().len(), ETH + 20 + 32);
}

#[test]
fn answer_syn_offers_only_what_the_client_offered() {
    let cases: [(&[u8], &[u8], CookieOpts); 4] = [
        (
            &[],
            &[2, 4, 0x05, 0x78],
            CookieOpts {
                mss: 536,
                wscale: None,
                sack_ok: false,
            },
        ),
        (
            &[2, 4, 0x05, 0xac, 4, 2],
            &[2, 4, 0x05, 0x78, 1, 1, 4, 2],
            CookieOpts {
                mss: 1440,
                wscale: None,
                sack_ok: true,
            },
        ),
        // Window scale 15 is taken as 14; NOPs and an end-of-list are fine.
        (
            &[1, 3, 3, 15, 1, 1, 2, 4, 0x05, 0x14, 0, 0],
            &[2, 4, 0x05, 0x78, 1, 3, 3, WSCALE],
            CookieOpts {
                mss: 1300,
                wscale: Some(14),
                sack_ok: false,
            },
        ),
        // Unknown options (TFO cookie request, MD5) are ignored.
        (
            &[34, 2, 2, 4, 0x05, 0xb4, 19, 6, 1, 2, 3, 4],
            &[2, 4, 0x05, 0x78],
            CookieOpts {
                mss: 1460,
                wscale: None,
                sack_ok: false,
            },
        ),
    ];
    for (asked, answered, decoded) in cases {
        let mut f = syn(asked);
        answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
        let s = seg(f.data());
        assert_eq!(s.options, answered, "SYN options {asked:?}");
        let opts = check_cookie(&KEY, client(), vip(), ISN, s.seq, NOW);
        assert_eq!(opts, Some(decoded), "SYN options {asked:?}");
        // Short answers are padded to the Ethernet minimum... and valid.
        assert!(f.data().len() >= 60);
    }
}

#[test]
fn answer_syn_rejects_with_a_reason() {
    let build = |b: PacketBuilder| VecFrame::from_bytes(&b.build());
    let base = || tcp(client(), vip()).flags(TcpFlags::SYN).seq(ISN);
    let cases: Vec<(VecFrame, Reject)> = vec![
        (build(base().payload(b"GET /")), Reject::SynPayload),
        (
            build(base().flags(TcpFlags::SYN | TcpFlags::ACK)),
            Reject::NotSyn,
        ),
        (
            build(base().flags(TcpFlags::SYN | TcpFlags::RST)),
            Reject::NotSyn,
        ),
        (
            build(base().flags(TcpFlags::SYN | TcpFlags::FIN)),
            Reject::NotSyn,
        ),
        (build(base().flags(TcpFlags::ACK)), Reject::NotSyn),
        (build(base().tcp_options(&[2, 3, 5, 0])), Reject::BadOptions),
        (
            build(base().tcp_options(&[2, 4, 5, 0xb4, 3, 4, 7, 0])),
            Reject::BadOptions,
        ),
        (build(base().tcp_options(&[4, 3, 0, 0])), Reject::BadOptions),
        (
            build(base().tcp_options(&[2, 4, 5, 0xb4, 8, 1])),
            Reject::BadOptions,
        ),
        (
            build(base().tcp_options(&[1, 1, 8, 40])),
            Reject::BadOptions,
        ),
        (
            build(
                PacketBuilder::new()
                    .ipv4(*client().ip(), *vip().ip())
                    .udp(1, 80),
            ),
            Reject::NotTcp,
        ),
    ];
    for (i, (mut f, want)) in cases.into_iter().enumerate() {
        let before = f.clone();
        assert_eq!(answer_syn(&mut f, &KEY, 1460, NOW), Err(want), "case {i}");
        assert_eq!(f, before, "case {i}: a refused frame is left alone");
        assert!(!want.as_str().is_empty());
    }
    let mut f = VecFrame::from_bytes(&[0u8; 10]);
    assert_eq!(
        answer_syn(&mut f, &KEY, 1460, NOW),
        Err(Reject::Malformed(WireError::EthTruncated))
    );
}

#[test]
fn check_ack_validates_the_cookie_and_syn_to_server_writes_the_syn() {
    let (cookie, mut f) = handshake(&LINUX_SYN_OPTS);
    let info = check_ack(&f, &KEY, NOW + SLOT_MS).unwrap();
    assert_eq!(
        info,
        CookieInfo {
            client_isn: ISN,
            cookie,
            opts: CookieOpts {
                mss: 1460,
                wscale: Some(7),
                sack_ok: true
            },
            window: 502,
            payload_len: 0,
        }
    );
    syn_to_server(&mut f, &info).unwrap();
    assert_eq!(
        macs(f.data()),
        (CMAC, DMAC),
        "MACs are the next hop's business"
    );
    let s = seg(f.data());
    assert_eq!((s.src, s.dst), (client(), vip()));
    assert_eq!((s.seq, s.ack, s.flags), (ISN, 0, TcpFlags::SYN));
    // The ACK's window in bytes (502 << 7): a SYN's is never scaled.
    assert_eq!(s.window, 502 << 7);
    assert_eq!(s.options, [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
    assert!(s.payload.is_empty());
    // ... capped at 65535.
    let big = CookieInfo {
        window: 513,
        ..info
    };
    syn_to_server(&mut f, &big).unwrap();
    assert_eq!(seg(f.data()).window, 65535);

    // A client without options: MSS 536 only, window as is.
    let (_, mut f) = handshake(&[]);
    let info = check_ack(&f, &KEY, NOW).unwrap();
    syn_to_server(&mut f, &info).unwrap();
    let s = seg(f.data());
    assert_eq!((s.window, s.options), (502, vec![2, 4, 0x02, 0x18]));
}

#[test]
fn check_ack_rejects_forged_stale_and_non_acks() {
    let (cookie, f) = handshake(&LINUX_SYN_OPTS);
    assert!(check_ack(&f, &KEY, NOW).is_ok());
    assert_eq!(
        check_ack(&f, &KEY, NOW + 2 * SLOT_MS),
        Err(Reject::BadCookie)
    );
    let ack = |seq: u32, ack: u32, flags: TcpFlags| {
        let b = tcp(client(), vip()).flags(flags).seq(seq).ack(ack).build();
        check_ack(&VecFrame::from_bytes(&b), &KEY, NOW)
    };
    let (seq, good) = (ISN.wrapping_add(1), cookie.wrapping_add(1));
    assert!(ack(seq, good, TcpFlags::ACK | TcpFlags::PSH).is_ok());
    for bit in 0..32 {
        assert_eq!(
            ack(seq, good ^ (1 << bit), TcpFlags::ACK),
            Err(Reject::BadCookie)
        );
    }
    assert_eq!(
        ack(seq.wrapping_add(1), good, TcpFlags::ACK),
        Err(Reject::BadCookie)
    );
    assert_eq!(
        ack(seq, good, TcpFlags::SYN | TcpFlags::ACK),
        Err(Reject::NotAck)
    );
    assert_eq!(
        ack(seq, good, TcpFlags::RST | TcpFlags::ACK),
        Err(Reject::NotAck)
    );
    assert_eq!(
        ack(seq, good, TcpFlags::FIN | TcpFlags::ACK),
        Err(Reject::NotAck)
    );
    assert_eq!(ack(seq, good, TcpFlags::NONE), Err(Reject::NotAck));
    // From another client port: not its cookie.
    let other = SocketAddrV4::new(*client().ip(), 40002);
    let b = tcp(other, vip()).seq(seq).ack(good).build();
    assert_eq!(
        check_ack(&VecFrame::from_bytes(&b), &KEY, NOW),
        Err(Reject::BadCookie)
    );
    // Data on the third ACK is reported.
    let b = tcp(client(), vip())
        .seq(seq)
        .ack(good)
        .payload(b"hi")
        .build();
    assert_eq!(
        check_ack(&VecFrame::from_bytes(&b), &KEY, NOW)
            .unwrap()
            .payload_len,
        2
    );
}

/// The server's SYN-ACK to the director's SYN (NAT: rip -> client).
fn server_synack_frame(server_isn: u32, ack: u32, opts: &[u8]) -> VecFrame {
    VecFrame::from_bytes(
        &tcp(rip(), client())
            .flags(TcpFlags::SYN | TcpFlags::ACK)
            .seq(server_isn)
            .ack(ack)
            .window(65160)
            .tcp_options(opts)
            .build(),
    )
}

#[test]
fn server_handshake_is_completed_and_the_client_window_opened() {
    let (cookie, f) = handshake(&LINUX_SYN_OPTS);
    let info = check_ack(&f, &KEY, NOW).unwrap();
    let server_isn = 0x1234_5678;
    let mut sa = server_synack_frame(
        server_isn,
        ISN.wrapping_add(1),
        &[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 9],
    );
    let est = server_synack(&sa, &info).unwrap();
    assert_eq!(
        est,
        Established {
            server_isn,
            server_window: 65160,
            adj: SeqAdj {
                delta: server_isn.wrapping_sub(cookie),
                c2s_shift: 0,
                s2c_shift: 9 - WSCALE as i8,
            },
        }
    );
    write_server_ack(&mut sa, client(), vip(), &info, &est).unwrap();
    let s = seg(sa.data());
    assert_eq!((s.src, s.dst), (client(), vip()));
    assert_eq!(s.seq, ISN.wrapping_add(1));
    assert_eq!(s.ack, server_isn.wrapping_add(1));
    assert_eq!((s.flags, s.window), (TcpFlags::ACK, 502));
    assert!(s.options.is_empty() && s.payload.is_empty());
    assert_eq!(sa.data().len(), 60, "padded to the Ethernet minimum");

    let mut up = VecFrame::empty();
    write_client_update(&mut up, client(), vip(), &info, &est).unwrap();
    let s = seg(up.data());
    assert_eq!((s.src, s.dst), (vip(), client()));
    assert_eq!(s.seq, cookie.wrapping_add(1));
    assert_eq!(s.ack, ISN.wrapping_add(1));
    assert_eq!((s.flags, s.window), (TcpFlags::ACK, 65160 >> WSCALE));

    let mut rst = VecFrame::empty();
    write_client_rst(&mut rst, client(), vip(), &info).unwrap();
    let s = seg(rst.data());
    assert_eq!((s.src, s.dst, s.flags), (vip(), client(), TcpFlags::RST));
    assert_eq!(s.seq, cookie.wrapping_add(1));
}

#[test]
fn window_scales_are_reconciled() {
    // (client's scale, server's offer, c2s, s2c)
    let cases = [
        (Some(7), Some(7), 0, 0),
        (Some(2), Some(9), 0, 9 - WSCALE as i8),
        (Some(2), Some(0), 0, -(WSCALE as i8)),
        (Some(3), None, 3, -(WSCALE as i8)),
        (None, None, 0, 0),
        // The server may not scale when our SYN did not offer it.
        (None, Some(5), 0, 0),
    ];
    for (cws, sws, c2s, s2c) in cases {
        let mut opts = vec![2, 4, 5, 0xb4];
        if let Some(w) = cws {
            opts.extend_from_slice(&[1, 3, 3, w]);
        }
        let (_, f) = handshake(&opts);
        let info = check_ack(&f, &KEY, NOW).unwrap();
        let mut sopts = vec![2, 4, 5, 0xb4];
        if let Some(w) = sws {
            sopts.extend_from_slice(&[1, 3, 3, w]);
        }
        let sa = server_synack_frame(7, ISN.wrapping_add(1), &sopts);
        let adj = server_synack(&sa, &info).unwrap().adj;
        assert_eq!(
            (adj.c2s_shift, adj.s2c_shift),
            (c2s, s2c),
            "{cws:?} {sws:?}"
        );
    }
    assert_eq!(shift_window(1000, 2), 4000);
    assert_eq!(shift_window(1000, -2), 250);
    assert_eq!(shift_window(65535, -7), 511);
    assert_eq!(shift_window(40000, 1), 65535);
    assert_eq!(shift_window(65535, 14), 65535);
    assert_eq!(shift_window(65535, -14), 3);
    assert_eq!(shift_window(7, 0), 7);
}

#[test]
fn server_answers_other_than_our_synack_are_rejected() {
    let (_, f) = handshake(&LINUX_SYN_OPTS);
    let info = check_ack(&f, &KEY, NOW).unwrap();
    let ours = ISN.wrapping_add(1);
    let with = |flags: TcpFlags, ack: u32| {
        let b = tcp(rip(), client()).flags(flags).seq(9).ack(ack).build();
        server_synack(&VecFrame::from_bytes(&b), &info)
    };
    assert_eq!(
        with(TcpFlags::RST | TcpFlags::ACK, ours),
        Err(Reject::Refused)
    );
    assert_eq!(
        with(TcpFlags::RST | TcpFlags::ACK, ours + 1),
        Err(Reject::BadAck)
    );
    assert_eq!(with(TcpFlags::RST, 0), Err(Reject::BadAck));
    assert_eq!(
        with(TcpFlags::SYN | TcpFlags::ACK, ours + 1),
        Err(Reject::BadAck)
    );
    assert_eq!(with(TcpFlags::ACK, ours), Err(Reject::NotSynAck));
    assert_eq!(with(TcpFlags::SYN, 0), Err(Reject::NotSynAck));
    assert!(with(TcpFlags::SYN | TcpFlags::ACK, ours).is_ok());
}

/// SACK option with the given edges, after `lead` NOPs (1 misaligns it).
fn sack(lead: usize, edges: &[u32]) -> Vec<u8> {
    let mut o = vec![1u8; lead];
    o.extend_from_slice(&[5, 2 + 4 * edges.len() as u8]);
    for e in edges {
        o.extend_from_slice(&e.to_be_bytes());
    }
    o
}

#[test]
fn translation_matches_frames_built_from_scratch() {
    let adj = SeqAdj {
        delta: 0x8000_0010,
        c2s_shift: 2,
        s2c_shift: -3,
    };
    let d = adj.delta;
    let (a, b) = (0xffff_fff0u32, 0x0000_0100u32);
    for lead in [0, 1, 2, 3] {
        // Client -> server: ack and SACK edges move up, window converts.
        let edges = [a, a.wrapping_add(10), b, b.wrapping_add(5)];
        let moved: Vec<u32> = edges.iter().map(|e| e.wrapping_add(d)).collect();
        let client_pkt = |ack: u32, win: u16, edges: &[u32]| {
            tcp(client(), vip())
                .flags(TcpFlags::ACK | TcpFlags::PSH)
                .seq(ISN)
                .ack(ack)
                .window(win)
                .tcp_options(&sack(lead, edges))
                .payload(b"abc")
                .build()
        };
        let mut f = VecFrame::from_bytes(&client_pkt(a, 1000, &edges));
        to_server(&mut f, &adj).unwrap();
        assert_eq!(
            f.data(),
            &client_pkt(a.wrapping_add(d), 4000, &moved)[..],
            "lead {lead}"
        );
        seg(f.data());

        // Server -> client: seq moves down, its SACK edges (client
        // bytes) stay, window converts.
        let server_pkt = |seq: u32, win: u16| {
            tcp(rip(), client())
                .flags(TcpFlags::ACK)
                .seq(seq)
                .ack(ISN)
                .window(win)
                .tcp_options(&sack(lead, &edges))
                .payload(b"defg")
                .build()
        };
        let mut f = VecFrame::from_bytes(&server_pkt(b, 800));
        to_client(&mut f, &adj).unwrap();
        assert_eq!(
            f.data(),
            &server_pkt(b.wrapping_sub(d), 100)[..],
            "lead {lead}"
        );
        seg(f.data());
    }
}

#[test]
fn translation_round_trips_with_valid_checksums() {
    let mut rng = Rng(0xfeed);
    for i in 0..5_000 {
        let adj = SeqAdj {
            delta: rng.next_u32(),
            c2s_shift: 0,
            s2c_shift: 0,
        };
        let server_seq = rng.next_u32();
        let len = 1 + (rng.next_u32() % 1400);
        // The server sends [server_seq, +len); the client sees it ...
        let mut f = VecFrame::from_bytes(
            &tcp(rip(), client())
                .seq(server_seq)
                .ack(rng.next_u32())
                .payload(&vec![7u8; len as usize])
                .build(),
        );
        to_client(&mut f, &adj).unwrap();
        let s = seg(f.data());
        assert_eq!(s.seq, server_seq.wrapping_sub(adj.delta));
        // ... acknowledges it and SACKs a later block ...
        let next = s.seq.wrapping_add(len);
        let hole = [next.wrapping_add(1000), next.wrapping_add(2448)];
        let mut f = VecFrame::from_bytes(
            &tcp(client(), vip())
                .seq(s.ack)
                .ack(next)
                .tcp_options(&sack(i % 4, &hole))
                .build(),
        );
        to_server(&mut f, &adj).unwrap();
        // ... which the server reads in its own sequence space.
        let s = seg(f.data());
        let srv_next = server_seq.wrapping_add(len);
        assert_eq!(s.ack, srv_next);
        let want = sack(
            i % 4,
            &[srv_next.wrapping_add(1000), srv_next.wrapping_add(2448)],
        );
        assert_eq!(&s.options[..want.len()], &want[..]);
    }
}

#[test]
fn a_bad_checksum_stays_bad() {
    let adj = SeqAdj {
        delta: 12345,
        c2s_shift: 1,
        s2c_shift: -1,
    };
    for lead in [0, 1] {
        let b = tcp(client(), vip())
            .ack(99)
            .tcp_options(&sack(lead, &[1, 2]))
            .bad_l4_checksum()
            .build();
        let mut f = VecFrame::from_bytes(&b);
        to_server(&mut f, &adj).unwrap();
        let mut g = f.clone();
        to_client(&mut g, &adj).unwrap();
        for fr in [&f, &g] {
            let ip = Ipv4Packet::new_checked(&fr.data()[ETH..]).unwrap();
            let t = TcpSegment::new_checked(ip.payload()).unwrap();
            assert!(!t.verify_checksum(ip.src_addr(), ip.dst_addr()));
        }
    }
}

#[test]
fn cookie_info_is_rebuilt_from_what_the_connection_stores() {
    for opts in [&LINUX_SYN_OPTS[..], &[], &[2, 4, 5, 0x14, 4, 2]] {
        let (_, f) = handshake(opts);
        let info = check_ack(&f, &KEY, NOW).unwrap();
        let back = CookieInfo::from_stored(info.client_isn, info.cookie, info.window);
        assert_eq!(back, info);
    }
}

#[test]
fn icmp_errors_quote_the_server_sequence_number() {
    let adj = SeqAdj {
        delta: 0x1000_0000,
        ..SeqAdj::default()
    };
    // What the client got (client space) ...
    let sent = tcp(vip(), client())
        .seq(0xf000_0001)
        .ack(ISN)
        .payload(&[1; 100])
        .build_ipv4();
    let icmp_from = |quoted: &[u8]| {
        PacketBuilder::new()
            .ipv4(Ipv4Addr::new(198, 51, 100, 1), *rip().ip())
            .icmp(3, 4, 1400)
            .payload(quoted)
            .build_ipv4()
    };
    let mut ip = icmp_from(&sent[..28]);
    icmp_quote_to_server(&mut ip, &adj).unwrap();
    // ... quoted as the server sent it (server space), checksums valid.
    let want = tcp(vip(), client())
        .seq(0x0000_0001)
        .ack(ISN)
        .payload(&[1; 100])
        .build_ipv4();
    assert_eq!(ip, icmp_from(&want[..28]));
    let p = Ipv4Packet::new_checked(&ip[..]).unwrap();
    assert!(Icmpv4Packet::new_checked(p.payload())
        .unwrap()
        .verify_checksum());
    // Too short a quote, or not TCP: refused, not mangled.
    let mut short = icmp_from(&sent[..26]);
    assert!(icmp_quote_to_server(&mut short, &adj).is_err());
    assert_eq!(short, icmp_from(&sent[..26]));
    let udp = PacketBuilder::new()
        .ipv4(*vip().ip(), *client().ip())
        .udp(1, 2)
        .build_ipv4();
    assert_eq!(
        icmp_quote_to_server(&mut icmp_from(&udp), &adj),
        Err(Reject::NotTcp)
    );
    assert_eq!(
        icmp_quote_to_server(&mut sent.clone(), &adj),
        Err(Reject::NotTcp)
    );
    for n in 0..ip.len() {
        let _ = icmp_quote_to_server(&mut ip[..n].to_vec(), &adj);
    }
}

#[test]
fn seq_adj_packs_into_a_u64() {
    for adj in [
        SeqAdj::default(),
        SeqAdj {
            delta: u32::MAX,
            c2s_shift: 14,
            s2c_shift: -14,
        },
        SeqAdj {
            delta: 0x8000_0001,
            c2s_shift: 0,
            s2c_shift: 7,
        },
    ] {
        assert_eq!(SeqAdj::from_bits(adj.to_bits()), adj);
    }
}

#[test]
fn short_and_mangled_frames_never_panic() {
    let (_, ack) = handshake(&LINUX_SYN_OPTS);
    let info = check_ack(&ack, &KEY, NOW).unwrap();
    let adj = SeqAdj {
        delta: 5,
        c2s_shift: 3,
        s2c_shift: -3,
    };
    let frames = [
        syn(&LINUX_SYN_OPTS).data().to_vec(),
        ack.data().to_vec(),
        server_synack_frame(1, ISN.wrapping_add(1), &[1, 3, 3, 9])
            .data()
            .to_vec(),
        tcp(client(), vip())
            .tcp_options(&sack(1, &[1, 2, 3, 4]))
            .build(),
    ];
    let mut rng = Rng(3);
    for full in &frames {
        for n in 0..=full.len() {
            for mangle in [false, true] {
                let mut bytes = full[..n].to_vec();
                if mangle && n > ETH + 20 {
                    // Random TCP header and options, valid IP header.
                    rng.fill(&mut bytes[ETH + 20..]);
                }
                let f = VecFrame::from_bytes(&bytes);
                let _ = answer_syn(&mut f.clone(), &KEY, 1460, NOW);
                let _ = check_ack(&f, &KEY, NOW);
                let _ = syn_to_server(&mut f.clone(), &info);
                let _ = server_synack(&f, &info);
                let _ = to_server(&mut f.clone(), &adj);
                let _ = to_client(&mut f.clone(), &adj);
            }
        }
    }
}

#[test]
fn an_ipv6_cookie_is_bound_to_its_flow() {
    use std::net::{Ipv6Addr, SocketAddrV6};
    let c = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2), 41000, 0, 0);
    let v = SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100), 80, 0, 0);
    let opts = CookieOpts {
        mss: 1440,
        wscale: Some(7),
        sack_ok: true,
    };
    let (ck, enc) = make_cookie(&KEY, c, v, ISN, &opts, NOW);
    assert_eq!(check_cookie(&KEY, c, v, ISN, ck, NOW), Some(enc));
    // Every part of the flow is covered: the upper address bits too.
    let mut far = c;
    far.set_ip(Ipv6Addr::new(0x2001, 0xdb9, 0, 0, 0, 0, 0, 2));
    assert_eq!(check_cookie(&KEY, far, v, ISN, ck, NOW), None);
    let mut port = c;
    port.set_port(41001);
    assert_eq!(check_cookie(&KEY, port, v, ISN, ck, NOW), None);
    assert_eq!(check_cookie(&KEY, c, v, ISN + 1, ck, NOW), None);
    // Not the IPv4 flow whose addresses are the IPv6 ones' last bytes.
    let c4 = SocketAddrV4::new(Ipv4Addr::new(0, 0, 0, 2), 41000);
    let v4 = SocketAddrV4::new(Ipv4Addr::new(0, 0, 1, 0), 80);
    assert_eq!(check_cookie(&KEY, c4, v4, ISN, ck, NOW), None);
}
