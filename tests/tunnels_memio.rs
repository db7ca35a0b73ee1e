//! GUE and GRE tunnels (ipvsadm --tun-type/--tun-port/--tun-*csum) through
//! the real control plane and data path on the in-memory device: what the
//! control socket accepts and refuses, what `list`/`dump` give back, and the
//! encapsulated frames, checked field by field with checksums recomputed by
//! a summing function of this file (not the code under test).

mod common;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::{Icmpv4Packet, Ipv4Packet, MacAddr, PacketBuilder, TcpFlags};
use serde_json::{json, Value};

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

/// RFC 1071 ones-complement sum, folded: a region whose checksum is right
/// (checksum field included) sums to 0xFFFF.
fn ones(data: &[u8]) -> u16 {
    let mut s: u64 = 0;
    for c in data.chunks(2) {
        s += (c[0] as u64) << 8 | c.get(1).copied().unwrap_or(0) as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn add_service(r: &Rig<MemIo>) {
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#);
}

fn request(r: &Rig<MemIo>, cmd: &str, dest: Value) -> Value {
    let req = json!({"cmd": cmd, "service": {"proto":"tcp","vip":"10.0.0.100","port":80},
                     "dest": dest});
    serde_json::from_str(&r.ctl.handle_line(&req.to_string())).unwrap()
}

fn learn_neighbours(r: &mut Rig<MemIo>) {
    r.worker.io.push(
        0,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .build(),
    );
    for (mac, ip) in [(RS1_MAC, rs1()), (RS2_MAC, rs2())] {
        r.worker.io.push(
            1,
            &PacketBuilder::new().arp_request(mac, ip, dir1()).build(),
        );
    }
    r.step(1);
    r.worker.io.take_tx(0);
    r.worker.io.take_tx(1);
}

#[test]
fn tunnel_options_are_checked_as_ipvsadm_and_the_kernel_do() {
    let r = rig();
    add_service(&r);
    // ipvsadm 1.31 tunnel_types_v_options: ipip takes no option, gue needs
    // --tun-port and takes one checksum option, gre takes nocsum or csum;
    // tunnel options only with -i; the kernel refuses GUE port 0 (EINVAL).
    let refused = [
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gue"}),
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gue","tun_port":0}),
            "tunnel port is zero",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_port":6080}),
            "Illegal 'tun-port' option with the 'ipip' tunnel type",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"ipip","tun_csum":"nocsum"}),
            "Illegal 'tun-nocsum' option with the 'ipip' tunnel type",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gre","tun_port":6080}),
            "Illegal 'tun-port' option with the 'gre' tunnel type",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gre","tun_csum":"remcsum"}),
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"dr","tun_type":"ipip"}),
            "Tunnel options conflict with forward method",
        ),
        (
            json!({"ip":"10.0.1.11","fwd":"nat","tun_csum":"csum"}),
            "Tunnel options conflict with forward method",
        ),
    ];
    for (dest, msg) in refused {
        let v = request(&r, "add_dest", dest.clone());
        assert_eq!(v["error"]["code"], "invalid", "{dest} -> {v}");
        assert_eq!(v["error"]["message"], msg, "{dest}");
    }
    // Unknown values are refused by the parser, not stored.
    for dest in [
        json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"vxlan"}),
        json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gue","tun_port":65536}),
        json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gre","tun_csum":"yes"}),
    ] {
        let v = request(&r, "add_dest", dest.clone());
        assert!(v["error"].is_object(), "{dest} -> {v}");
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"], json!([]), "nothing was added");

    for (ip, dest) in [
        ("10.0.1.11", json!({"fwd":"tun"})),
        ("10.0.1.12", json!({"fwd":"tun","tun_type":"ipip"})),
        (
            "10.0.1.13",
            json!({"fwd":"tun","tun_type":"gue","tun_port":6080}),
        ),
        (
            "10.0.1.14",
            json!({"fwd":"tun","tun_type":"gue","tun_port":1,"tun_csum":"remcsum"}),
        ),
        ("10.0.1.15", json!({"fwd":"tun","tun_type":"gre"})),
        (
            "10.0.1.16",
            json!({"fwd":"tun","tun_type":"gre","tun_csum":"csum"}),
        ),
        (
            "10.0.1.17",
            json!({"fwd":"tun","tun_type":"gue","tun_port":65535,"tun_csum":"nocsum"}),
        ),
    ] {
        let mut d = dest.clone();
        d["ip"] = json!(ip);
        let v = request(&r, "add_dest", d.clone());
        assert_eq!(v["ok"], true, "{d} -> {v}");
    }
    // An edit is validated the same way and leaves the dest alone if refused.
    let v = request(
        &r,
        "edit_dest",
        json!({"ip":"10.0.1.13","fwd":"tun","tun_type":"gue"}),
    );
    assert_eq!(v["error"]["code"], "invalid", "{v}");
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][2]["tun_port"], 6080);
}

#[test]
fn list_fills_in_defaults_and_dump_load_round_trips() {
    let r = rig();
    add_service(&r);
    for d in [
        json!({"ip":"10.0.1.11","fwd":"tun"}),
        json!({"ip":"10.0.1.12","fwd":"tun","tun_type":"gue","tun_port":6080}),
        json!({"ip":"10.0.1.13","fwd":"tun","tun_type":"gue","tun_port":5555,"tun_csum":"remcsum"}),
        json!({"ip":"10.0.1.14","fwd":"tun","tun_type":"gre","tun_csum":"csum"}),
        json!({"ip":"10.0.1.15","fwd":"tun","tun_type":"gre"}),
        json!({"ip":"10.0.1.16","fwd":"dr"}),
    ] {
        assert_eq!(request(&r, "add_dest", d.clone())["ok"], true, "{d}");
    }
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let tun = |i: usize| {
        let d = &l["services"][0]["dests"][i];
        (
            d["tun_type"].clone(),
            d["tun_port"].clone(),
            d["tun_csum"].clone(),
        )
    };
    let n = Value::Null;
    // What ipvsadm -S prints for each: --tun-type always, --tun-port for
    // gue, a checksum option for gue and gre.
    assert_eq!(tun(0), (json!("ipip"), n.clone(), n.clone()));
    assert_eq!(tun(1), (json!("gue"), json!(6080), json!("nocsum")));
    assert_eq!(tun(2), (json!("gue"), json!(5555), json!("remcsum")));
    assert_eq!(tun(3), (json!("gre"), n.clone(), json!("csum")));
    assert_eq!(tun(4), (json!("gre"), n.clone(), json!("nocsum")));
    assert_eq!(tun(5), (n.clone(), n.clone(), n.clone()), "not a tunnel");

    // dump gives what was configured; loading it gives the same dump.
    let dump = r.ctl(r#"{"cmd":"dump"}"#);
    let dests = &dump["services"][0]["dests"];
    assert_eq!(dests[0].get("tun_type"), None, "omitted stays omitted");
    assert_eq!(dests[2]["tun_csum"], "remcsum");
    assert_eq!(dests[3]["tun_type"], "gre");
    let fresh = rig();
    fresh.ctl(&json!({"cmd":"load","services": dump["services"]}).to_string());
    assert_eq!(fresh.ctl(r#"{"cmd":"dump"}"#), dump);
}

/// The encapsulation of one frame, parsed and checked independently.
struct Outer {
    proto: u8,
    ttl: u8,
    df: bool,
    tos: u8,
    /// GUE: UDP source and destination port and checksum field.
    udp: Option<(u16, u16, u16)>,
    /// GRE: flags/version word.
    gre_flags: Option<u16>,
    inner: Vec<u8>,
}

fn parse_outer(f: &[u8], rip: [u8; 4]) -> Outer {
    assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4");
    let ip = &f[14..];
    assert_eq!(ip[0], 0x45);
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    assert_eq!(total, f.len() - 14, "no padding after the packet");
    assert_eq!(ones(&ip[..20]), 0xffff, "outer IPv4 checksum");
    assert_eq!(&ip[12..16], &[10, 0, 1, 1], "from the director's port");
    assert_eq!(&ip[16..20], &rip, "to the real server");
    let flags = u16::from_be_bytes([ip[6], ip[7]]);
    assert_eq!(flags & 0xbfff, 0, "no fragment, no MF");
    let body = &ip[20..total];
    let (udp, gre_flags, inner) = match ip[9] {
        4 => (None, None, body.to_vec()),
        17 => {
            let ulen = u16::from_be_bytes([body[4], body[5]]) as usize;
            assert_eq!(ulen, body.len(), "UDP length");
            let csum = u16::from_be_bytes([body[6], body[7]]);
            if csum != 0 {
                let mut p = vec![10, 0, 1, 1];
                p.extend_from_slice(&rip);
                p.extend_from_slice(&[0, 17]);
                p.extend_from_slice(&(ulen as u16).to_be_bytes());
                p.extend_from_slice(body);
                assert_eq!(ones(&p), 0xffff, "outer UDP checksum");
            }
            assert_eq!(
                &body[8..12],
                &[0, 4, 0, 0],
                "GUE v0, hlen 0, IPIP, no flags"
            );
            (
                Some((
                    u16::from_be_bytes([body[0], body[1]]),
                    u16::from_be_bytes([body[2], body[3]]),
                    csum,
                )),
                None,
                body[12..].to_vec(),
            )
        }
        47 => {
            let fl = u16::from_be_bytes([body[0], body[1]]);
            assert_eq!(&body[2..4], &[0x08, 0x00], "GRE protocol IPv4");
            let hl = if fl & 0x8000 != 0 {
                assert_eq!(ones(body), 0xffff, "GRE checksum");
                assert_eq!(&body[6..8], &[0, 0], "GRE reserved1");
                8
            } else {
                4
            };
            (None, Some(fl), body[hl..].to_vec())
        }
        p => panic!("outer protocol {p}"),
    };
    Outer {
        proto: ip[9],
        ttl: ip[8],
        df: flags & 0x4000 != 0,
        tos: ip[1],
        udp,
        gre_flags,
        inner,
    }
}

fn tcp_from(sport: u16, payload: &[u8], df: bool) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .ttl(63)
        .tos(0x28)
        .dont_frag(df)
        .tcp(sport, 80)
        .flags(if payload.is_empty() {
            TcpFlags::SYN
        } else {
            TcpFlags::ACK
        })
        .payload(payload)
        .build()
}

#[test]
fn each_tunnel_type_and_checksum_flag_on_the_data_path() {
    // (dest options, outer protocol, GUE port, checksum expected, GRE flags)
    let cases = [
        (json!({}), 4u8, None, false, None),
        (
            json!({"tun_type":"gue","tun_port":6080}),
            17,
            Some(6080),
            false,
            None,
        ),
        (
            json!({"tun_type":"gue","tun_port":6080,"tun_csum":"csum"}),
            17,
            Some(6080),
            true,
            None,
        ),
        (
            json!({"tun_type":"gue","tun_port":7777,"tun_csum":"remcsum"}),
            17,
            Some(7777),
            true,
            None,
        ),
        (json!({"tun_type":"gre"}), 47, None, false, Some(0u16)),
        (
            json!({"tun_type":"gre","tun_csum":"csum"}),
            47,
            None,
            true,
            Some(0x8000),
        ),
    ];
    for (opts, proto, port, csum, gre) in cases {
        let mut r = rig();
        add_service(&r);
        let mut d = opts.clone();
        d["ip"] = json!("10.0.1.11");
        d["fwd"] = json!("tun");
        assert_eq!(request(&r, "add_dest", d)["ok"], true);
        learn_neighbours(&mut r);
        let mut sports = Vec::new();
        for (i, payload) in [&b""[..], b"GET / HTTP/1.0\r\n\r\n", &[7u8; 1001][..]]
            .iter()
            .enumerate()
        {
            let inp = tcp_from(40000, payload, i != 1);
            r.worker.io.push(0, &inp);
            r.step(1);
            let out = r.worker.io.take_tx(1);
            assert_eq!(out.len(), 1, "{opts}");
            let f = &out[0];
            assert_eq!(&f[0..6], &RS1_MAC.0, "to rs1's MAC");
            assert_eq!(&f[6..12], &DIR1_MAC.0);
            let o = parse_outer(f, [10, 0, 1, 11]);
            assert_eq!(o.proto, proto, "{opts}");
            assert_eq!(o.inner, &inp[14..], "{opts}: inner packet unchanged");
            assert_eq!((o.ttl, o.tos, o.df), (63, 0x28, i != 1), "{opts}");
            assert_eq!(o.gre_flags, gre, "{opts}");
            if let Some((sport, dport, c)) = o.udp {
                assert_eq!(Some(dport), port, "{opts}");
                assert_eq!(c != 0, csum, "{opts}: checksum present iff asked");
                assert!((32768..60999).contains(&sport), "{opts}: sport {sport}");
                sports.push(sport);
            }
        }
        sports.dedup();
        assert!(sports.len() <= 1, "{opts}: one source port per flow");
        assert_eq!(r.stats().drops.values().sum::<u64>(), 0, "{opts}");
    }
}

#[test]
fn df_packets_over_the_tunnel_mtu_get_frag_needed_less_the_overhead() {
    for (opts, room) in [
        (json!({}), 1480usize),
        (json!({"tun_type":"gue","tun_port":6080}), 1468),
        (
            json!({"tun_type":"gue","tun_port":6080,"tun_csum":"remcsum"}),
            1468,
        ),
        (json!({"tun_type":"gre"}), 1476),
        (json!({"tun_type":"gre","tun_csum":"csum"}), 1472),
    ] {
        let mut r = rig();
        add_service(&r);
        let mut d = opts.clone();
        d["ip"] = json!("10.0.1.11");
        d["fwd"] = json!("tun");
        assert_eq!(request(&r, "add_dest", d)["ok"], true);
        learn_neighbours(&mut r);
        r.worker.io.push(0, &tcp_from(40000, b"", true));
        r.step(1);
        assert_eq!(r.worker.io.take_tx(1).len(), 1);
        // Fits exactly: a 1500-byte outer packet.
        r.worker
            .io
            .push(0, &tcp_from(40000, &vec![1; room - 40], true));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1, "{opts}");
        assert_eq!(out[0].len(), 14 + 1500, "{opts}");
        // One byte more: ICMP "fragmentation needed" with the tunnel's MTU.
        r.worker
            .io
            .push(0, &tcp_from(40000, &vec![1; room + 1 - 40], true));
        r.step(1);
        assert!(r.worker.io.take_tx(1).is_empty(), "{opts}");
        let back = r.worker.io.take_tx(0);
        assert_eq!(back.len(), 1, "{opts}: ICMP error to the client");
        let ip = Ipv4Packet::new_checked(&back[0][14..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (dir0(), client()));
        assert_eq!(ones(ip.header()), 0xffff);
        let ic = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (ic.msg_type(), ic.code(), ic.next_hop_mtu() as usize),
            (3, 4, room),
            "{opts}"
        );
        assert_eq!(ones(ip.payload()), 0xffff, "ICMP checksum");
        assert_eq!(r.stats().icmp_errors_sent, 1);
        // Without DF: dropped and counted (rvs does not fragment).
        r.worker
            .io
            .push(0, &tcp_from(40000, &vec![1; room + 1 - 40], false));
        r.step(1);
        assert!(r.worker.io.take_tx(1).is_empty());
        assert_eq!(r.drops("too_big"), 1, "{opts}");
    }
}

#[test]
fn an_edit_changes_the_tunnel_of_established_connections() {
    // The kernel reads cp->dest->tun_type/tun_port/tun_flags for every
    // packet (ip_vs_tunnel_xmit), so an edited real server's existing
    // connections switch encapsulation with it.
    let mut r = rig();
    add_service(&r);
    let d = json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gue","tun_port":6080});
    assert_eq!(request(&r, "add_dest", d)["ok"], true);
    learn_neighbours(&mut r);
    let send = |r: &mut Rig<MemIo>, payload: &[u8]| {
        r.worker.io.push(0, &tcp_from(40000, payload, true));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        parse_outer(&out[0], [10, 0, 1, 11])
    };
    assert_eq!(send(&mut r, b"").proto, 17);
    let d = json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gre","tun_csum":"csum"});
    assert_eq!(request(&r, "edit_dest", d)["ok"], true);
    let o = send(&mut r, b"x");
    assert_eq!((o.proto, o.gre_flags), (47, Some(0x8000)));
    let d = json!({"ip":"10.0.1.11","fwd":"tun"});
    assert_eq!(request(&r, "edit_dest", d)["ok"], true);
    assert_eq!(send(&mut r, b"y").proto, 4);
    let c = r.ctl(r#"{"cmd":"connections"}"#);
    assert_eq!(
        c["connections"].as_array().unwrap().len(),
        1,
        "one connection"
    );
}

#[test]
fn two_real_servers_two_encapsulations() {
    let mut r = rig();
    add_service(&r);
    for d in [
        json!({"ip":"10.0.1.11","fwd":"tun","tun_type":"gue","tun_port":6080,"tun_csum":"csum"}),
        json!({"ip":"10.0.1.12","fwd":"tun","tun_type":"gre"}),
    ] {
        assert_eq!(request(&r, "add_dest", d)["ok"], true);
    }
    learn_neighbours(&mut r);
    let mut got = Vec::new();
    for sport in 1000..1004u16 {
        r.worker.io.push(0, &tcp_from(sport, b"", true));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        let mac = MacAddr::from_slice(&out[0][0..6]).unwrap();
        let rip = if mac == RS1_MAC {
            [10, 0, 1, 11]
        } else {
            [10, 0, 1, 12]
        };
        got.push((rip[3], parse_outer(&out[0], rip).proto));
    }
    got.sort();
    assert_eq!(got, vec![(11, 17), (11, 17), (12, 47), (12, 47)]);
}
