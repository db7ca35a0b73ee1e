//! Writes the seed corpus of the fuzz targets into `tests/fuzz/seeds/<target>/`:
//!
//!     cargo run --manifest-path tests/fuzz/Cargo.toml --example seeds
//!
//! Datapath seeds are real conversations driven through the harness itself
//! (so every seed passes the invariants, and replies carry the addresses,
//! ports and sequence numbers the director actually chose): in every
//! forwarding mode a TCP connection from handshake to close, a UDP exchange,
//! pings, ICMP errors about a connection, ARP, frames waiting for ARP
//! resolution, control requests under live connections and timeouts.
//! Wire seeds are single frames of every kind; control seeds are request
//! scripts.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rvs::wire::{Ipv4Packet, MacAddr, PacketBuilder, TcpFlags, TcpSegment};
use rvs_fuzz::harness::{
    control_menu, datapath, lip, Config, DatapathInput, Session, MAX_CONTROLS, MODES, VIP6,
};
use rvs_fuzz::rig::*;

/// Poll after the frame and advance the clock 1 ms (see `advance_ms`).
const STEP: u8 = 2;

fn seeds_dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    fs::write(seeds_dir(target).join(name), bytes).unwrap();
}

/// (src ip, src port, dst ip, dst port, seq, payload length, SYN|FIN count)
/// of an Ethernet/IPv4/TCP frame.
struct TcpView {
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    seq: u32,
    /// Sequence space the segment uses (payload, plus one for SYN or FIN).
    len: u32,
}

fn tcp_view(f: &[u8]) -> Option<TcpView> {
    let ip = Ipv4Packet::new_checked(&f[14..]).ok()?;
    let t = TcpSegment::new_checked(ip.payload()).ok()?;
    let fl = t.flags();
    let syn_fin = u32::from(fl.0 & (TcpFlags::SYN.0 | TcpFlags::FIN.0) != 0);
    Some(TcpView {
        src: ip.src_addr(),
        sport: t.src_port(),
        dst: ip.dst_addr(),
        dport: t.dst_port(),
        seq: t.seq(),
        len: t.payload().len() as u32 + syn_fin,
    })
}

fn client_seg(sport: u16, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .tcp(sport, 80)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .tcp_options(if flags.0 & TcpFlags::SYN.0 != 0 {
            &[2, 4, 5, 0xb4, 1, 1, 4, 2]
        } else {
            &[]
        })
        .payload(payload)
        .build()
}

/// The frame a real server sends back for the segment the director sent
/// it (`to_rs`, as it left port 1): addresses and ports swapped.
fn server_reply(
    to_rs: &[u8],
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    opts: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let v = tcp_view(to_rs).unwrap();
    let rs_mac = MacAddr::from_slice(&to_rs[0..6]).unwrap();
    PacketBuilder::new()
        .eth(rs_mac, DIR1_MAC)
        .ipv4(v.dst, v.src)
        .tcp(v.dport, v.sport)
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .tcp_options(opts)
        .payload(payload)
        .build()
}

fn only(outs: Vec<(u16, Vec<u8>)>, port: u16) -> Vec<u8> {
    let mut it = outs.into_iter().filter(|(p, _)| *p == port);
    let (_, f) = it.next().expect("a frame out");
    f
}

/// An ICMP error from `src` (MAC, IP) about `quoted` (an IP packet).
fn icmp_error(
    macs: (MacAddr, MacAddr),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ty: u8,
    code: u8,
    rest: u32,
    quoted: &[u8],
) -> Vec<u8> {
    PacketBuilder::new()
        .eth(macs.0, macs.1)
        .ipv4(src, dst)
        .icmp(ty, code, rest)
        .payload(&quoted[..quoted.len().min(28)])
        .build()
}

/// A whole TCP connection through the director in `mode`, plus UDP, ping and
/// ICMP errors; replies from the servers only where they come back through
/// the director (NAT, FULLNAT).
fn conversation(mode: usize, persistent: bool) -> Vec<u8> {
    let cfg = Config::new(mode, 0, true, false, persistent);
    let replies = !MODES[mode].fwd.contains(&"dr") && !MODES[mode].fwd.contains(&"tun");
    let mut s = Session::new(cfg);
    let syn = only(
        s.frame(
            0,
            false,
            STEP,
            &client_seg(40000, TcpFlags::SYN, 1000, 0, b""),
        ),
        1,
    );
    let to_rs = tcp_view(&syn);
    if replies {
        let v = to_rs.as_ref().unwrap();
        let mss = [2, 4, 5, 0xb4];
        let f = server_reply(
            &syn,
            TcpFlags::SYN | TcpFlags::ACK,
            5000,
            v.seq + 1,
            &mss,
            b"",
        );
        s.frame(1, false, STEP, &f);
    }
    s.frame(
        0,
        false,
        STEP,
        &client_seg(40000, TcpFlags::ACK, 1001, 5001, b""),
    );
    let req = b"GET / HTTP/1.0\r\n\r\n";
    let data = only(
        s.frame(
            0,
            false,
            STEP,
            &client_seg(40000, TcpFlags::ACK | TcpFlags::PSH, 1001, 5001, req),
        ),
        1,
    );
    if replies {
        let v = tcp_view(&data).unwrap();
        let ack = v.seq + v.len;
        let resp = b"HTTP/1.0 200 OK\r\n\r\nhello";
        let f = server_reply(&data, TcpFlags::ACK | TcpFlags::PSH, 5001, ack, &[], resp);
        s.frame(1, false, STEP, &f);
        let f = server_reply(
            &data,
            TcpFlags::ACK | TcpFlags::FIN,
            5001 + resp.len() as u32,
            ack,
            &[],
            b"",
        );
        s.frame(1, false, STEP, &f);
        // The client says the reply's port is unreachable (ICMP about the
        // director's packet to it, quoting VIP:80 -> client:40000).
        let quoted = PacketBuilder::new()
            .ipv4(vip(), client())
            .tcp(80, 40000)
            .build_ipv4();
        let e = icmp_error((CLIENT_MAC, DIR0_MAC), client(), vip(), 3, 3, 0, &quoted);
        s.frame(0, false, STEP, &e);
        // The server says "fragmentation needed" about the director's packet.
        let quoted = &data[14..];
        let e = icmp_error(
            (RS1_MAC, DIR1_MAC),
            to_rs.as_ref().unwrap().dst,
            to_rs.as_ref().unwrap().src,
            3,
            4,
            1400,
            quoted,
        );
        let e = if MacAddr::from_slice(&data[0..6]).unwrap() == RS2_MAC {
            let mut e = e;
            e[6..12].copy_from_slice(&RS2_MAC.0);
            e
        } else {
            e
        };
        s.frame(1, false, STEP, &e);
    }
    s.frame(
        0,
        false,
        STEP,
        &client_seg(
            40000,
            TcpFlags::ACK | TcpFlags::FIN,
            1001 + req.len() as u32,
            5001,
            b"",
        ),
    );
    // A second connection from the same client (persistence keeps it on
    // the same server), reset at once.
    s.frame(0, false, 0, &client_seg(40001, TcpFlags::SYN, 7000, 0, b""));
    s.frame(
        0,
        false,
        STEP,
        &client_seg(40001, TcpFlags::RST, 7001, 0, b""),
    );
    // UDP query (and answer through the director where it comes back).
    let q = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .udp(41000, 53)
        .payload(b"query")
        .build();
    let out = only(s.frame(0, false, STEP, &q), 1);
    if replies {
        let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
        let l4 = ip.payload();
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let rs_mac = MacAddr::from_slice(&out[0..6]).unwrap();
        let a = PacketBuilder::new()
            .eth(rs_mac, DIR1_MAC)
            .ipv4(ip.dst_addr(), ip.src_addr())
            .udp(53, sport)
            .payload(b"answer")
            .build();
        s.frame(1, false, STEP, &a);
    }
    // Pings to the VIP and to the director.
    for dst in [vip(), dir0()] {
        let p = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), dst)
            .icmp_echo(7, 1, b"ping")
            .build();
        s.frame(0, false, STEP, &p);
    }
    // Let the connections time out.
    s.frame(
        0,
        false,
        31,
        &client_seg(40002, TcpFlags::ACK, 1, 1, b"late"),
    );
    s.input.encode()
}

/// Nothing learnt: the first SYN waits for ARP; the server answers the
/// director's request, which releases it. FULLNAT: the server also asks for
/// the local address.
fn unresolved(mode: usize) -> Vec<u8> {
    let mut s = Session::new(Config::new(mode, 1, false, false, false));
    let syn = client_seg(40000, TcpFlags::SYN, 1000, 0, b"");
    let outs = s.frame(0, false, STEP, &syn);
    // The director asked for a server's MAC; answer for both.
    assert!(!outs.is_empty(), "an ARP request");
    for (mac, ip) in [(RS1_MAC, rs1()), (RS2_MAC, rs2())] {
        let r = PacketBuilder::new()
            .eth(mac, DIR1_MAC)
            .arp_reply(mac, ip, DIR1_MAC, dir1())
            .build();
        s.frame(1, false, 0, &r);
    }
    s.frame(
        1,
        false,
        STEP,
        &PacketBuilder::new()
            .arp_request(RS1_MAC, rs1(), lip())
            .build(),
    );
    // The client asks for the VIP, then for a non-local address.
    s.frame(
        0,
        false,
        0,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .pad60()
            .build(),
    );
    s.frame(
        0,
        false,
        STEP,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), ip("10.0.0.77"))
            .pad60()
            .build(),
    );
    s.frame(
        0,
        false,
        STEP,
        &client_seg(40000, TcpFlags::ACK, 1001, 5001, b"x"),
    );
    s.input.encode()
}

/// Control requests under live connections, with traffic in between:
/// MAX_CONTROLS menu entries per mode, every entry in some mode.
fn reconfigure(mode: usize) -> Vec<u8> {
    let cfg = Config::new(mode, 2, true, true, false);
    let n = control_menu(cfg).len();
    let mut s = Session::new(cfg);
    for k in 0..MAX_CONTROLS {
        let sport = 50000 + k as u16;
        let index = ((MAX_CONTROLS * mode + k) % n) as u8;
        s.frame(0, false, 0, &client_seg(sport, TcpFlags::SYN, 1000, 0, b""));
        s.frame(
            0,
            false,
            STEP,
            &client_seg(sport, TcpFlags::ACK, 1001, 1, b"data"),
        );
        s.control(index, STEP);
    }
    s.input.encode()
}

/// TUN: a DF packet too big to encapsulate is answered with "fragmentation
/// needed"; one without DF is dropped.
fn too_big(mode: usize) -> Vec<u8> {
    let mut s = Session::new(Config::new(mode, 0, true, false, false));
    s.frame(
        0,
        false,
        STEP,
        &client_seg(40000, TcpFlags::SYN, 1000, 0, b""),
    );
    let big = vec![0x61; 1460];
    s.frame(
        0,
        false,
        STEP,
        &client_seg(40000, TcpFlags::ACK, 1001, 1, &big),
    );
    let f = PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), vip())
        .dont_frag(false)
        .tcp(40000, 80)
        .flags(TcpFlags::ACK)
        .payload(&big)
        .build();
    s.frame(0, false, STEP, &f);
    s.input.encode()
}

/// Malformed frames of many kinds, with and without checksum fix-up.
fn malformed() -> Vec<u8> {
    let mut s = Session::new(Config::new(0, 0, true, false, false));
    let good = client_seg(40000, TcpFlags::SYN, 1000, 0, b"");
    let mut v: Vec<Vec<u8>> = vec![
        vec![],
        good[..13].to_vec(),
        good[..30].to_vec(),
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .bad_ip_checksum()
            .tcp(40000, 80)
            .build(),
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .more_frags(true)
            .udp(41000, 53)
            .build(),
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .ttl(1)
            .tcp(40000, 80)
            .flags(TcpFlags::SYN)
            .build(),
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .ip_options(&[1, 1, 1, 0])
            .tcp(40000, 80)
            .flags(TcpFlags::SYN)
            .build(),
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(ip("255.255.255.255"), vip())
            .udp(41000, 53)
            .build(),
    ];
    let mut vlan = good.clone();
    vlan[12..14].copy_from_slice(&[0x81, 0x00]);
    v.push(vlan);
    let mut bad_doff = good.clone();
    bad_doff[14 + 20 + 12] = 0xf0;
    v.push(bad_doff);
    for (i, f) in v.iter().enumerate() {
        s.frame(0, i + 1 == v.len(), STEP, f);
    }
    s.input.encode()
}

/// IPv6 to the director: a Neighbor Solicitation for its address on port
/// 0, a DAD probe, an echo request and one to another host.
fn ipv6_director() -> Vec<u8> {
    use rvs::wire::icmpv6::{self, fill_checksum, multicast_mac, solicited_node};
    use rvs::wire::{EtherType, EthernetFrame, Ipv6Packet};
    use std::net::Ipv6Addr;
    let frame = |dst_mac, src: Ipv6Addr, dst: Ipv6Addr, hops, upper: &[u8]| {
        let mut f = vec![0u8; 54 + upper.len()];
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        e.set_dst(dst_mac);
        e.set_src(CLIENT_MAC);
        e.set_ethertype(EtherType::IPV6);
        let mut ip = Ipv6Packet::new_unchecked(&mut f[14..]);
        ip.fill_header(0, upper.len() as u16, 58, hops);
        ip.set_src(src);
        ip.set_dst(dst);
        f[54..].copy_from_slice(upper);
        f
    };
    let me = dir0_v6();
    let client: Ipv6Addr = "fe80::c0:ff:fe00:2".parse().unwrap();
    let group = solicited_node(me);
    let mut ns = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut ns, client, me, CLIENT_MAC);
    let mut dad = [0u8; 24];
    dad[0] = icmpv6::NEIGHBOR_SOLICIT;
    dad[8..24].copy_from_slice(&me.octets());
    fill_checksum(&mut dad, Ipv6Addr::UNSPECIFIED, group);
    let echo = |dst: Ipv6Addr| {
        let mut m = vec![icmpv6::ECHO_REQUEST, 0, 0, 0, 0, 1, 0, 1, b'x'];
        fill_checksum(&mut m, client, dst);
        m
    };
    let v = [
        frame(multicast_mac(group), client, group, 255, &ns[..]),
        frame(
            multicast_mac(group),
            Ipv6Addr::UNSPECIFIED,
            group,
            255,
            &dad[..],
        ),
        frame(DIR0_MAC, client, me, 64, &echo(me)),
        frame(
            DIR0_MAC,
            client,
            "2001:db8::9".parse().unwrap(),
            64,
            &echo(me),
        ),
    ];
    let mut s = Session::new(Config::new(0, 0, true, false, false));
    for (i, f) in v.iter().enumerate() {
        s.frame(0, i + 1 == v.len(), STEP, f);
    }
    s.input.encode()
}

/// An IPv6 conversation through the IPv6 service in `mode`: the client
/// resolves the VIP, opens a connection (the server is solicited), the
/// servers answer the solicitations, data and a reply pass, then an ICMPv6
/// error about the connection.
fn ipv6_services(mode: usize) -> Vec<u8> {
    use rvs::wire::icmpv6::{self, fill_checksum, multicast_mac, solicited_node};
    use rvs::wire::ipv6::l4_checksum_v6;
    use rvs::wire::{EtherType, EthernetFrame, Ipv6Packet, MacAddr};
    use std::net::Ipv6Addr;
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let frame = |macs: (MacAddr, MacAddr), src: Ipv6Addr, dst: Ipv6Addr, next, upper: &[u8]| {
        let mut f = vec![0u8; 54 + upper.len()];
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        e.set_dst(macs.0);
        e.set_src(macs.1);
        e.set_ethertype(EtherType::IPV6);
        let mut ip = Ipv6Packet::new_unchecked(&mut f[14..]);
        // Neighbor Discovery must come with 255 (it never crossed a router).
        let hops = if next == 58 && matches!(upper[0], 135 | 136) {
            255
        } else {
            64
        };
        ip.fill_header(0, upper.len() as u16, next, hops);
        ip.set_src(src);
        ip.set_dst(dst);
        f[54..].copy_from_slice(upper);
        f
    };
    let tcp = |macs, src, sport: u16, dst, dport: u16, flags: u8, data: &[u8]| {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t[14] = 0x20;
        t.extend_from_slice(data);
        let c = l4_checksum_v6(src, dst, 6, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        frame(macs, src, dst, 6, &t)
    };
    let (client, vip) = (v6("2001:db8::2"), v6(VIP6));
    let (rs1, rs2) = (v6("2001:db8:1::11"), v6("2001:db8:1::12"));
    let mut ns = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut ns, client, vip, CLIENT_MAC);
    let g = solicited_node(vip);
    let na = |rs: Ipv6Addr, mac| {
        let mut m = [0u8; 32];
        icmpv6::write_neighbor_advert(&mut m, rs, v6("2001:db8:1::1"), rs, mac, true);
        frame((DIR1_MAC, mac), rs, v6("2001:db8:1::1"), 58, &m)
    };
    let syn = tcp((DIR0_MAC, CLIENT_MAC), client, 40000, vip, 80, 0x02, b"");
    // The client's error about a reply it got from the VIP.
    let reply = tcp((CLIENT_MAC, DIR0_MAC), vip, 80, client, 40000, 0x12, b"");
    let mut err = vec![icmpv6::PACKET_TOO_BIG, 0, 0, 0, 0, 0, 5, 0];
    err.extend_from_slice(&reply[14..]);
    fill_checksum(&mut err, client, vip);
    let v: Vec<(u16, Vec<u8>)> = vec![
        (0, frame((multicast_mac(g), CLIENT_MAC), client, g, 58, &ns)),
        (0, syn.clone()),
        (1, na(rs1, RS1_MAC)),
        (1, na(rs2, RS2_MAC)),
        (
            0,
            tcp(
                (DIR0_MAC, CLIENT_MAC),
                client,
                40000,
                vip,
                80,
                0x18,
                b"GET /",
            ),
        ),
        (
            1,
            tcp((DIR1_MAC, RS1_MAC), rs1, 80, client, 40000, 0x12, b""),
        ),
        (0, frame((DIR0_MAC, CLIENT_MAC), client, vip, 58, &err)),
    ];
    let mut s = Session::new(Config::new(mode, 0, false, false, false));
    for (i, (port, f)) in v.iter().enumerate() {
        s.frame(*port, i + 1 == v.len(), STEP, f);
    }
    s.input.encode()
}

fn datapath_seeds() -> usize {
    let mut n = 0;
    let mut put = |name: String, bytes: Vec<u8>| {
        // Every seed must decode back to what was run.
        assert_eq!(DatapathInput::decode(&bytes).unwrap().encode(), bytes);
        // What it exercises, for whoever reads the output.
        let st = datapath(&bytes).unwrap().rig.stats();
        let drops: Vec<String> = st
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!(
            "{name:42} rx {:3} tx {:3} consumed {:2} arp_req {} conns {} drops [{}]",
            st.rx_packets,
            st.tx_packets,
            st.consumed,
            st.arp_requests_sent,
            st.conns_created,
            drops.join(" ")
        );
        write("datapath", &name, &bytes);
        n += 1;
    };
    for (i, m) in MODES.iter().enumerate() {
        put(format!("conversation-{}", m.name), conversation(i, false));
        put(format!("unresolved-{}", m.name), unresolved(i));
        put(format!("reconfigure-{}", m.name), reconfigure(i));
    }
    put("conversation-nat-persistent".into(), conversation(0, true));
    put(
        "conversation-fullnat-proxy_v2-persistent".into(),
        conversation(5, true),
    );
    put("too-big-tun".into(), too_big(2));
    put("ipv6-director".into(), ipv6_director());
    for (mode, name) in [
        (0, "nat"),
        (1, "dr"),
        (2, "tun"),
        (3, "fullnat"),
        (4, "fullnat-toa"),
        (5, "fullnat-proxy_v2"),
    ] {
        put(format!("ipv6-services-{name}"), ipv6_services(mode));
    }
    put("malformed".into(), malformed());
    n
}

fn wire_seeds() -> usize {
    let inner = PacketBuilder::new()
        .ipv4(client(), vip())
        .tcp(40000, 80)
        .build_ipv4();
    let frames: Vec<(&str, Vec<u8>)> = vec![
        (
            "tcp-syn-options",
            client_seg(40000, TcpFlags::SYN, 1000, 0, b""),
        ),
        (
            "tcp-data",
            client_seg(
                40000,
                TcpFlags::ACK | TcpFlags::PSH,
                1001,
                5001,
                b"GET / HTTP/1.0\r\n\r\n",
            ),
        ),
        (
            "udp",
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), vip())
                .udp(41000, 53)
                .payload(b"query")
                .pad60()
                .build(),
        ),
        (
            "udp-zero-checksum",
            PacketBuilder::new()
                .ipv4(client(), vip())
                .udp(41000, 53)
                .udp_zero_checksum()
                .payload(b"q")
                .build(),
        ),
        (
            "icmp-echo-ip-options",
            PacketBuilder::new()
                .ipv4(client(), vip())
                .ip_options(&[1, 1, 1, 0])
                .icmp_echo(1, 2, b"ping")
                .build(),
        ),
        (
            "icmp-frag-needed",
            PacketBuilder::new()
                .icmp(3, 4, 1400)
                .payload(&inner[..28])
                .build(),
        ),
        (
            "ipip",
            PacketBuilder::new()
                .raw(rvs::wire::IpProtocol::IPIP)
                .payload(&inner)
                .build(),
        ),
        (
            "arp-request",
            PacketBuilder::new()
                .arp_request(CLIENT_MAC, client(), vip())
                .pad60()
                .build(),
        ),
        (
            "arp-reply",
            PacketBuilder::new()
                .arp_reply(RS1_MAC, rs1(), DIR1_MAC, dir1())
                .build(),
        ),
    ];
    let n = frames.len();
    for (name, f) in frames {
        // As a frame, and as a bare IP packet.
        write("wire", &format!("eth-{name}"), &f);
        write("wire", &format!("ip-{name}"), &f[14..]);
    }
    // IPv6 packets the Linux kernel sent (captured on a veth, checksum
    // offload off): a Neighbor Solicitation, and an MLDv2 report behind a
    // Hop-by-Hop header.
    let v6 = [
        ("neighbor-solicitation", "6000000000203aff20010db8000000000000000000000001ff0200000000000000000001ff000002870055030000000020010db800000000000000000000000201017679c08a9220"),
        ("mld-report-hop-by-hop", "600000000038000100000000000000000000000000000000ff0200000000000000000000000000163a000502000001008f00dac40000000204000000ff0200000000000000000001ff8a922004000000ff0200000000000000000001ff000001"),
    ];
    for (name, hex) in v6 {
        let b: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        write("wire", &format!("ipv6-kernel-{name}"), &b);
    }
    2 * n + v6.len()
}

fn control_seeds() -> usize {
    let scripts: &[(&str, &str)] = &[
        (
            "nat",
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wrr"}}
{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.11","port":80,"weight":3,"fwd":"nat"}}
{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.12","port":8080,"weight":1,"fwd":"nat","u_threshold":10,"l_threshold":5}}
{"cmd":"edit_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.12","port":8080,"weight":0,"fwd":"nat"}}
{"cmd":"list"}"#,
        ),
        (
            "fullnat",
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":8080,"sched":"wlc","laddrs":["10.0.1.200","10.0.1.201"],"client_addr":"proxy_v2"}}
{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":8080},"dest":{"ip":"10.0.1.11","fwd":"fullnat"}}
{"cmd":"add_laddr","service":{"proto":"tcp","vip":"10.0.0.100","port":8080},"laddr":"10.0.1.202"}
{"cmd":"del_laddr","service":{"proto":"tcp","vip":"10.0.0.100","port":8080},"laddr":"10.0.1.200"}
{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":8080,"sched":"mh","sched_flags":["mh-port"],"laddrs":["10.0.1.201"],"client_addr":"toa"}}"#,
        ),
        (
            "persistent-udp",
            r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"sh","sched_flags":["sh-fallback"],"persistent":300,"netmask":"255.255.255.0"}}
{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.11","fwd":"dr"}}
{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.12","fwd":"tun"}}
{"cmd":"zero","service":{"proto":"udp","vip":"10.0.0.100","port":53}}
{"cmd":"del_dest","service":{"proto":"udp","vip":"10.0.0.100","port":53},"dest":{"ip":"10.0.1.11"}}"#,
        ),
        (
            "health-sorry",
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":0,"sched":"lblc","persistent":60,"health":{"type":"http","path":"/health","status":200,"interval_ms":1000},"sorry_server":{"ip":"10.0.1.99","port":80,"fwd":"nat"}}}
{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":0},"dest":{"ip":"10.0.1.11","port":80,"fwd":"nat","health":{"type":"tcp","port":81}}}
{"cmd":"dump"}"#,
        ),
        (
            "load-timeouts",
            r#"{"cmd":"load","services":[{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","dests":[{"ip":"10.0.1.11","fwd":"nat"},{"ip":"10.0.1.12","fwd":"dr"}]},{"proto":"udp","vip":"10.0.0.101","port":53,"laddrs":["10.0.1.200"],"dests":[{"ip":"10.0.1.11","fwd":"fullnat"}]}]}
{"cmd":"set_timeouts","timeouts":{"tcp":900,"tcpfin":120,"udp":300,"syn_recv":30,"time_wait":60}}
{"cmd":"get_timeouts"}
{"cmd":"connections","limit":10}
{"cmd":"stats"}
{"cmd":"ping"}"#,
        ),
        (
            "errors",
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.1","port":80}}
{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"nope"}}
{"cmd":"del_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}
{"cmd":"frobnicate"}
{"cmd":"list","extra":1}
{"cmd":
["cmd"]
{"cmd":"clear"}"#,
        ),
    ];
    for (name, text) in scripts {
        write("control", name, text.as_bytes());
    }
    scripts.len()
}

fn main() {
    let d = datapath_seeds();
    let w = wire_seeds();
    let c = control_seeds();
    println!("seeds written: datapath {d}, wire {w}, control {c}");
}
