//! Byte layouts written from the kernel's structs in
//! net/netfilter/ipvs/ip_vs_sync.c (struct ip_vs_sync_mesg,
//! ip_vs_sync_v4, ip_vs_sync_conn_v0, ip_vs_sync_conn_options) and the
//! flag values of include/uapi/linux/ip_vs.h, not from the builder.
use super::*;

fn conn() -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 0x1234,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        vaddr: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
        daddr: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)),
        seq: None,
        fnat: None,
        synproxy: None,
    }
}

#[test]
fn constants_are_the_kernels() {
    // #define IP_VS_SYNC_GROUP 0xe0000051, IP_VS_SYNC_PORT 8848.
    assert_eq!(u32::from(SYNC_GROUP), 0xe000_0051);
    assert_eq!(SYNC_PORT, 8848);
    // u8 reserved, u8 syncid, be16 size, u8 nr_conns, s8 version, u16 spare.
    assert_eq!(MESG_HDR_LEN, 1 + 1 + 2 + 1 + 1 + 2);
    // u8 type, u8 protocol, be16 ver_size, be32 flags, be16 state,
    // be16 cport, vport, dport, be32 fwmark, timeout, caddr, vaddr, daddr.
    assert_eq!(CONN_V4_LEN, 1 + 1 + 2 + 4 + 2 + 2 * 3 + 4 * 5);
    // reserved, protocol, 3 ports, 3 addresses, be16 flags, be16 state.
    assert_eq!(CONN_V0_LEN, 1 + 1 + 2 * 3 + 4 * 3 + 2 + 2);
    assert_eq!(SEQ_OPTS_LEN, 2 * 3 * 4);
    assert_eq!(flags::BACKUP_MASK, 0x1f87);
}

#[test]
fn v1_message_field_by_field() {
    let mut b = Builder::new(7, 1472);
    let mut c = conn();
    c.flags = flags::DROUTE | flags::INACTIVE | flags::HASHED;
    c.state = 4; // IP_VS_TCP_S_FIN_WAIT
    assert!(b.push(&c));
    let m = b.finish();
    let want: Vec<u8> = [
        // header: reserved 0, syncid 7, size 8+36, nr_conns 1, version 1, spare 0
        &[0u8, 7, 0, 44, 1, 1, 0, 0][..],
        // type 0 (IPv4), protocol 6, ver_size = version 0 << 12 | 36
        &[0, 6, 0, 36],
        // flags: DROUTE|INACTIVE = 0x0103, HASHED (0x40) never sent
        &[0, 0, 0x01, 0x03],
        // state 4, cport 0x1234, vport 80, dport 8080
        &[0, 4, 0x12, 0x34, 0, 80, 0x1f, 0x90],
        // fwmark 0, timeout 900 s
        &[0, 0, 0, 0, 0, 0, 0x03, 0x84],
        // caddr, vaddr, daddr
        &[10, 0, 0, 1, 192, 168, 1, 1, 172, 16, 0, 2],
    ]
    .concat();
    assert_eq!(m, want);
    let p = parse(&m, 7).unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(p.conns.len(), 1);
    let got = &p.conns[0];
    // The backup keeps BACKUP_MASK bits and adds IP_VS_CONN_F_SYNC.
    assert_eq!(got.flags, 0x0103 | flags::SYNC);
    assert_eq!(
        (got.state, got.cport, got.vport, got.dport),
        (4, 0x1234, 80, 8080)
    );
    assert_eq!(got.timeout, 900);
    assert_eq!(got.daddr, IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)));
}

#[test]
fn v1_options_and_padding() {
    let mut b = Builder::new(1, 1472);
    let mut c = conn();
    c.flags = flags::MASQ | flags::IN_SEQ;
    c.seq = Some((
        Seq {
            init_seq: 1,
            delta: 2,
            previous_delta: 3,
        },
        Seq {
            init_seq: 4,
            delta: 5,
            previous_delta: 6,
        },
    ));
    assert!(b.push(&c));
    let mut c2 = conn();
    c2.cport = 2;
    c2.fnat = Some(FnatOpt {
        lip: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
        lport: 5000,
        client_addr: 1,
    });
    assert!(b.push(&c2));
    let m = b.finish();
    // First entry: 36 + 2 + 24 = 62 bytes, ver_size 62.
    assert_eq!(&m[8 + 2..8 + 4], &[0, 62]);
    // Option header right after daddr: IPVS_OPT_SEQ_DATA, 24.
    assert_eq!(&m[8 + 36..8 + 38], &[1, 24]);
    assert_eq!(&m[8 + 38..8 + 42], &[0, 0, 0, 1]);
    assert_eq!(&m[8 + 58..8 + 62], &[0, 0, 0, 6]);
    // Padded to 32 bits: the second entry starts at 8 + 64.
    assert_eq!(&m[8 + 62..8 + 64], &[0, 0]);
    let e2 = 8 + 64;
    assert_eq!(&m[e2 + 2..e2 + 4], &[0, 46]);
    assert_eq!(&m[e2 + 36..e2 + 38], &[OPT_RVS_FNAT, 8]);
    assert_eq!(&m[e2 + 38..e2 + 46], &[10, 9, 9, 9, 0x13, 0x88, 1, 0]);
    assert_eq!(m.len(), e2 + 46);
    assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len());
    assert_eq!(m[4], 2);
    let p = parse(&m, 0).unwrap();
    assert_eq!(p.conns.len(), 2);
    assert_eq!(p.conns[0].seq, c.seq);
    assert_eq!(p.conns[1].fnat, c2.fnat);
    assert!(p.skipped.is_empty() && p.dropped.is_none());
}

#[test]
fn v0_message_field_by_field() {
    // struct ip_vs_sync_mesg_v0: nr_conns 2, syncid 3, size.
    let mut m = vec![2u8, 3, 0, 0];
    // Entry 1: UDP, NAT, state 0, no options.
    m.extend_from_slice(&[0, 17, 0, 53, 0, 53, 0, 54]);
    m.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    m.extend_from_slice(&[0x00, 0x40, 0, 0]); // flags HASHED, state 0
                                              // Entry 2: TCP, TUNNEL|OUT_SEQ, ESTABLISHED, with seq options.
    m.extend_from_slice(&[0, 6, 0, 1, 0, 2, 0, 3]);
    m.extend_from_slice(&[4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6]);
    m.extend_from_slice(&[0x02, 0x02, 0, 1]);
    for v in 1u32..=6 {
        m.extend_from_slice(&v.to_be_bytes());
    }
    let n = m.len() as u16;
    m[2..4].copy_from_slice(&n.to_be_bytes());
    let p = parse(&m, 3).unwrap();
    assert_eq!(p.version, 0);
    assert_eq!(p.conns.len(), 2);
    let a = &p.conns[0];
    assert_eq!((a.protocol, a.cport, a.vport, a.dport), (17, 53, 53, 54));
    assert_eq!(a.caddr, IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)));
    assert_eq!(a.daddr, IpAddr::V4(Ipv4Addr::new(3, 3, 3, 3)));
    assert_eq!(a.flags, flags::SYNC, "HASHED cleared, SYNC set");
    let b = &p.conns[1];
    assert_eq!(b.flags, 0x0202 | flags::SYNC);
    assert_eq!(b.state, 1);
    assert_eq!(b.timeout, 0);
    assert_eq!(b.seq.unwrap().1.previous_delta, 6);
}

#[test]
fn malformed_and_foreign_are_errors() {
    let mut b = Builder::new(5, 1472);
    b.push(&conn());
    let m = b.finish();
    assert_eq!(parse(&m, 6).unwrap_err(), Error::ForeignSyncId);
    assert!(parse(&m, 0).is_ok(), "syncid 0 takes any");
    assert_eq!(parse(&m[..3], 5).unwrap_err(), Error::TooShort);
    assert_eq!(parse(&m[..m.len() - 1], 5).unwrap_err(), Error::BadSize);
    // A connection whose size runs past the message drops the rest.
    let mut bad = m.clone();
    bad[8 + 3] = 40;
    assert_eq!(parse(&bad, 5).unwrap().dropped, Some(Error::Truncated));
    // Version nibble 1 in ver_size: "Unknown version".
    let mut bad = m.clone();
    bad[8 + 2] = 0x10;
    assert_eq!(parse(&bad, 5).unwrap().dropped, Some(Error::BadConnVersion));
    // TCP state 11 is past IP_VS_TCP_S_LAST: that entry is skipped.
    let mut bad = m.clone();
    bad[8 + 9] = 11;
    let p = parse(&bad, 5).unwrap();
    assert!(p.conns.is_empty());
    assert_eq!(p.skipped, vec![Error::BadState]);
}

#[test]
fn unknown_options_follow_ipvs_opt_f_param() {
    // A 36-byte entry plus a 4-byte option of type `ty`.
    let msg = |ty: u8| {
        let mut b = Builder::new(1, 1472);
        b.push(&conn());
        let mut m = b.finish();
        m.extend_from_slice(&[ty, 2, 0xaa, 0xbb]);
        m[8 + 3] = 40;
        let n = m.len() as u16;
        m[2..4].copy_from_slice(&n.to_be_bytes());
        m
    };
    // Optional (bit 0x40 set): skipped, the connection is taken.
    assert_eq!(parse(&msg(0x40 | 10), 1).unwrap().conns.len(), 1);
    // Mandatory and unknown: that connection is skipped.
    let p = parse(&msg(10), 1).unwrap();
    assert!(p.conns.is_empty());
    assert_eq!(p.skipped, vec![Error::Unsupported]);
    // A zero-length option is malformed (`!plen` → -40).
    let mut m = msg(0x4a);
    m[8 + 37] = 0;
    assert_eq!(parse(&m, 1).unwrap().dropped, Some(Error::BadOption));
    // Sequence data of the wrong length (-50).
    let mut m = msg(1);
    m[8 + 37] = 2;
    assert_eq!(parse(&m, 1).unwrap().dropped, Some(Error::BadOption));
}

/// rvs's SYN-proxy option: window shifts beyond TCP's 14 are refused.
#[test]
fn synproxy_option_round_trip_and_range() {
    let mut c = conn();
    c.synproxy = Some(SynOpt {
        delta: 0xdead_beef,
        c2s_shift: 14,
        s2c_shift: -14,
    });
    let mut b = Builder::new(1, 1472);
    assert!(b.push(&c));
    let m = b.finish();
    assert_eq!(parse(&m, 1).unwrap().conns[0].synproxy, c.synproxy);
    let mut bad = m.clone();
    let at = bad.len() - 4;
    bad[at] = 15;
    assert_eq!(parse(&bad, 1).unwrap().dropped, Some(Error::BadOption));
}

#[test]
fn builder_respects_maxlen() {
    let mut b = Builder::new(1, 8 + 36 * 3 + 2);
    assert!(b.push(&conn()) && b.push(&conn()) && b.push(&conn()));
    assert!(!b.push(&conn()));
    assert_eq!(b.finish().len(), 8 + 36 * 3);
}

#[test]
fn never_panics_on_prefixes_and_flips() {
    let mut b = Builder::new(1, 1472);
    let mut c = conn();
    c.fnat = Some(FnatOpt {
        lip: IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
        lport: 1,
        client_addr: 0,
    });
    b.push(&c);
    b.push(&conn());
    let m = b.finish();
    for n in 0..=m.len() {
        let _ = parse(&m[..n], 0);
        for i in 0..n {
            let mut x = m[..n].to_vec();
            x[i] ^= 0xff;
            let _ = parse(&x, 0);
        }
    }
}

#[test]
fn v6_entry_is_struct_ip_vs_sync_v6_with_its_options() {
    // struct ip_vs_sync_v6: as ip_vs_sync_v4 with struct in6_addr caddr,
    // vaddr, daddr: 1+1+2+4+2+2*3+4*2+16*3 = 72; type STYPE_F_INET6 (1).
    assert_eq!(CONN_V6_LEN, 1 + 1 + 2 + 4 + 2 + 2 * 3 + 4 * 2 + 16 * 3);
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    let mut c = conn();
    c.caddr = a("2001:db8::2");
    c.vaddr = a("2001:db8::100");
    c.daddr = a("2001:db8:1::11");
    c.fnat = Some(FnatOpt {
        lip: a("2001:db8:1::5"),
        lport: 5000,
        client_addr: 0,
    });
    let mut b = Builder::new(1, 1472);
    assert!(b.push(&c));
    let m = b.finish();
    let e = &m[MESG_HDR_LEN..];
    // type 1, protocol 6, ver_size 72 + the option (2 + 20)
    assert_eq!(&e[0..4], &[1, 6, 0, 94]);
    let o = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
    assert_eq!(&e[24..40], &o("2001:db8::2"));
    assert_eq!(&e[40..56], &o("2001:db8::100"));
    assert_eq!(&e[56..72], &o("2001:db8:1::11"));
    // rvs's FULLNAT option, its IPv6 form: 16-byte address, port, delivery.
    assert_eq!(&e[72..74], &[OPT_RVS_FNAT, 20]);
    assert_eq!(&e[74..90], &o("2001:db8:1::5"));
    assert_eq!(&e[90..94], &[0x13, 0x88, 0, 0]);
    let p = parse(&m, 1).unwrap();
    assert!(p.skipped.is_empty() && p.dropped.is_none(), "{p:?}");
    let mut want = c.clone();
    want.flags |= flags::SYNC;
    assert_eq!(p.conns, vec![want]);
    // An IPv4-sized FULLNAT option in an IPv6 entry is malformed.
    let mut bad = m.clone();
    bad[MESG_HDR_LEN + 73] = 8;
    assert_eq!(parse(&bad, 1).unwrap().dropped, Some(Error::BadOption));
    // A truncated IPv6 entry drops the rest of the message.
    let mut short = m[..MESG_HDR_LEN + 40].to_vec();
    let n = short.len() as u16;
    short[2..4].copy_from_slice(&n.to_be_bytes());
    short[MESG_HDR_LEN + 2..MESG_HDR_LEN + 4].copy_from_slice(&40u16.to_be_bytes());
    assert!(parse(&short, 1).unwrap().dropped.is_some());
    // One family per entry: NAT64 cannot be written.
    let mut mixed = c.clone();
    mixed.daddr = a("10.0.1.11");
    assert!(!Builder::new(1, 1472).push(&mixed));
}
