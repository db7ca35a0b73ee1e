//! The exception path's decisions on the in-memory device: which frames go
//! to a port's kernel twin, the token bucket, what the kernel sends, VIP
//! ownership and gratuitous ARPs. Device ports 0 and 1 are the data ports,
//! 2 and 3 their twins.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::rig::*;
use rvs::io::MemIo;
use rvs::ownership::{Exception, Owned, OwnedSet};
use rvs::wire::{ArpOp, ArpPacket, MacAddr, PacketBuilder, TcpFlags};
use rvs::worker::{TwinQueue, Worker};

/// A rig whose ports have twins; `owned`: VIP ownership "kernel" with this
/// set (None: "always").
fn rig(rate: u32, burst: u32, owned: Option<Arc<OwnedSet>>) -> Rig<MemIo> {
    let exc = Exception {
        twin: vec![true, true],
        owned,
    };
    let b = director([DIR0_MAC, DIR1_MAC]).max_connections(1024);
    let mut r = Rig::with(MemIo::new(4), b.exception(exc));
    let io = std::mem::replace(&mut r.worker.io, MemIo::new(0));
    let twin = |dev_port| {
        Some(TwinQueue {
            dev_port,
            rate_pps: rate,
            burst,
        })
    };
    r.worker = Worker::new(0, 1, io, r.dp.clone(), r.stats.clone(), Duration::ZERO)
        .with_twins(vec![twin(2), twin(3)]);
    r
}

fn tcp_to_dir0(sport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .eth(CLIENT_MAC, DIR0_MAC)
        .ipv4(client(), dir0())
        .ttl(64)
        .tcp(sport, 22)
        .flags(TcpFlags::SYN)
        .build()
}

#[test]
fn unowned_frames_go_to_the_twin_and_the_kernel_s_frames_leave_by_the_port() {
    let mut r = rig(1000, 100, None);
    // TCP to the port's own address (no service there): the kernel's.
    r.worker.io.push(0, &tcp_to_dir0(40000));
    // An ARP reply: learnt by rvs, and passed on for the kernel's table.
    r.worker.io.push(
        0,
        &PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .arp_reply(CLIENT_MAC, client(), DIR0_MAC, dir0())
            .build(),
    );
    // An ARP request for the port address: answered by rvs only.
    r.worker.io.push(
        0,
        &PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), dir0())
            .pad60()
            .build(),
    );
    r.step(1);
    let to_kernel = r.worker.io.take_tx(2);
    assert_eq!(to_kernel.len(), 2);
    assert_eq!(to_kernel[0], tcp_to_dir0(40000), "handed over unchanged");
    let out = r.worker.io.take_tx(0);
    assert_eq!(out.len(), 1);
    let a = ArpPacket::new_checked(&out[0][14..]).unwrap();
    assert_eq!(a.operation(), ArpOp::REPLY);
    assert_eq!(r.dp.neigh.lookup(client()), Some(CLIENT_MAC));
    // The kernel answers on its twin: out of port 0 as is.
    let syn_ack = PacketBuilder::new()
        .eth(DIR0_MAC, CLIENT_MAC)
        .ipv4(dir0(), client())
        .ttl(64)
        .tcp(22, 40000)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .build();
    r.worker.io.push(2, &syn_ack);
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0), vec![syn_ack]);
    let s = r.stats();
    assert_eq!((s.exception_to_kernel, s.exception_from_kernel), (2, 1));
    assert_eq!(
        s.rx_packets,
        s.tx_packets + s.consumed + s.exception_to_kernel + s.total_drops()
    );
}

#[test]
fn the_bucket_bounds_what_the_kernel_gets_and_counts_the_rest() {
    // 1000 frames/s, 10 banked: 10 at once, then one per millisecond.
    let mut r = rig(1000, 10, None);
    // Fewer than a burst (BURST = 32) so that one poll sees them all.
    for i in 0..30 {
        r.worker.io.push(0, &tcp_to_dir0(40000 + i));
    }
    r.step(0);
    assert_eq!(r.worker.io.take_tx(2).len(), 10);
    assert_eq!(r.drops("exception_rate"), 20);
    r.step(3);
    for i in 0..5 {
        r.worker.io.push(0, &tcp_to_dir0(41000 + i));
    }
    r.step(1);
    // 3 ms later: 3 tokens.
    assert_eq!(r.worker.io.take_tx(2).len(), 3);
    assert_eq!(r.drops("exception_rate"), 22);
    let s = r.stats();
    assert_eq!(s.rx_packets, 35);
    assert_eq!(s.exception_to_kernel + s.drops["exception_rate"], 35);
}

#[test]
fn an_unowned_vip_is_silent_and_gained_vips_are_announced() {
    let owned = Arc::new(OwnedSet::default());
    let mut r = rig(1000, 100, Some(owned.clone()));
    nat_service(&r, "rr", 1, 1);
    let arp_for_vip = PacketBuilder::new()
        .arp_request(CLIENT_MAC, client(), vip())
        .pad60()
        .build();
    r.worker.io.push(0, &arp_for_vip);
    r.worker
        .io
        .push(0, &client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC));
    r.step(1);
    assert!(r.worker.io.take_tx(0).is_empty());
    assert!(r.worker.io.take_tx(1).is_empty());
    assert!(r.worker.io.take_tx(2).is_empty(), "not the kernel's either");
    assert_eq!(r.drops("vip_not_owned"), 2);
    assert_eq!(r.stats().conns_created, 0);

    // The VIP appears on twin 0: five gratuitous ARPs on port 0.
    let mut o = Owned::new();
    o.insert(vip().into(), 0);
    owned.publish(o);
    r.step(1);
    let garps = r.worker.io.take_tx(0);
    assert_eq!(garps.len(), 5);
    for g in &garps {
        assert_eq!(macs(g), (MacAddr::BROADCAST, DIR0_MAC));
        let a = ArpPacket::new_checked(&g[14..]).unwrap();
        assert_eq!(a.operation(), ArpOp::REQUEST);
        assert_eq!((a.sender_ip(), a.target_ip()), (vip(), vip()));
        assert_eq!(a.target_hw(), MacAddr::BROADCAST);
    }
    r.worker.io.push(0, &arp_for_vip);
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0).len(), 1, "answered once owned");
    // Published again unchanged: no new announcement.
    let mut o = Owned::new();
    o.insert(vip().into(), 0);
    owned.publish(o);
    r.step(1);
    assert!(r.worker.io.take_tx(0).is_empty());
    assert_eq!(r.stats().garp_sent, 5);
}

/// keepalived's NAT pair floats the real servers' gateway (here
/// 10.0.1.254) on the inside twin: the director holding it answers ARP for
/// it on that port only, with the port's MAC, so the real servers' replies
/// come to rvs; without it, it stays silent.
#[test]
fn an_address_floated_onto_a_twin_is_answered_on_its_port() {
    let owned = Arc::new(OwnedSet::default());
    let mut r = rig(1000, 100, Some(owned.clone()));
    nat_service(&r, "rr", 1, 1);
    let gw: std::net::Ipv4Addr = "10.0.1.254".parse().unwrap();
    let ask = |mac, ip| {
        PacketBuilder::new()
            .arp_request(mac, ip, gw)
            .pad60()
            .build()
    };
    r.worker.io.push(1, &ask(RS1_MAC, rs1()));
    r.step(1);
    assert!(
        r.worker.io.take_tx(1).is_empty(),
        "answered before it is held"
    );
    assert!(r.worker.io.take_tx(3).is_empty(), "not the kernel's");

    let mut o = Owned::new();
    o.insert(gw.into(), 1);
    owned.publish(o);
    r.step(1);
    assert_eq!(r.stats().garp_sent, 0, "rvs announces VIPs only");
    r.worker.io.push(1, &ask(RS1_MAC, rs1()));
    r.step(1);
    let tx = r.worker.io.take_tx(1);
    assert_eq!(tx.len(), 1);
    assert_eq!(macs(&tx[0]), (RS1_MAC, DIR1_MAC));
    let a = ArpPacket::new_checked(&tx[0][14..]).unwrap();
    assert_eq!(a.operation(), ArpOp::REPLY);
    assert_eq!((a.sender_hw(), a.sender_ip()), (DIR1_MAC, gw));
    // Asked on the other port: not this port's address there.
    r.worker.io.push(0, &ask(CLIENT_MAC, client()));
    r.step(1);
    assert!(r.worker.io.take_tx(0).is_empty());
}

/// IPVS's "Local" forwarding: a real server (here the sorry server) at a
/// loopback address is the director's own stack. With a twin, its
/// connections' packets go to the receiving port's twin unchanged, tracked
/// like any connection; the kernel's answers leave by the port as they
/// are.
#[test]
fn a_local_real_server_is_the_twin_s_stack() {
    let mut r = rig(1000, 100, None);
    std::sync::Arc::get_mut(&mut r.ctl)
        .expect("the rig's control is not shared yet")
        .local_twin = true;
    r.ctl(
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
            "sorry_server":{"ip":"127.0.0.1","port":80}}}"#,
    );
    let list: serde_json::Value =
        serde_json::from_str(&r.ctl.handle_line(r#"{"cmd":"list"}"#)).unwrap();
    assert_eq!(
        list["services"][0]["sorry_server"]["fwd"], "local",
        "{list}"
    );
    let syn = client_tcp(40000, TcpFlags::SYN, b"", DIR0_MAC);
    let ack = client_tcp(40000, TcpFlags::ACK, b"GET /", DIR0_MAC);
    r.worker.io.push(0, &syn);
    r.worker.io.push(0, &ack);
    r.step(1);
    let to_kernel = r.worker.io.take_tx(2);
    assert_eq!(to_kernel, vec![syn, ack], "unchanged, in order");
    assert!(r.worker.io.take_tx(1).is_empty());
    assert_eq!(r.stats().conns_created, 1);
    assert_eq!(r.stats().exception_to_kernel, 2);
    // The kernel answers from the VIP: out of port 0 as it is.
    let answer = PacketBuilder::new()
        .eth(DIR0_MAC, CLIENT_MAC)
        .ipv4(vip(), client())
        .ttl(64)
        .tcp(80, 40000)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .build();
    r.worker.io.push(2, &answer);
    r.step(1);
    assert_eq!(r.worker.io.take_tx(0), vec![answer]);
}

/// An IPv6 frame of a director address's TCP port 22 (the kernel's).
fn frame6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, next: u8, upper: &[u8]) -> Vec<u8> {
    ipv6_frame((DIR0_MAC, CLIENT_MAC), src, dst, 64, next, upper)
}

/// A TCP segment over IPv6 with its checksum.
fn tcp6(
    src: std::net::Ipv6Addr,
    sport: u16,
    dst: std::net::Ipv6Addr,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    tcp6_segment(
        (src, sport),
        (dst, dport),
        flags,
        (1000, 0),
        8192,
        (&[], &[]),
    )
}

/// With a kernel twin, IPv6 splits as IPv4 does: Neighbor Discovery and
/// the port's own addresses are the kernel's (rvs learns the neighbours on
/// the way), IPv6 service traffic is rvs's, and only while it owns the VIP
/// (vip_ownership "kernel": the address keepalived put on the twin).
#[test]
fn ipv6_on_a_twin_port_splits_between_the_kernel_and_the_services() {
    use rvs::wire::icmpv6::{self, multicast_mac, solicited_node};
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
    let (client6, vip6, rs6) = (v6("2001:db8::2"), v6("2001:db8::100"), v6("2001:db8:1::11"));
    let owned = Arc::new(OwnedSet::default());
    let mut r = rig(1000, 100, Some(owned.clone()));
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"2001:db8::100","port":80,"sched":"rr"}}"#);
    r.ctl(r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"2001:db8::100","port":80},"dest":{"ip":"2001:db8:1::11","port":80,"fwd":"nat"}}"#);
    // The client's NS for the port address (a group frame): the kernel's,
    // and rvs learns the client on the way.
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_solicit(&mut m, client6, dir0_v6(), CLIENT_MAC);
    let g = solicited_node(dir0_v6());
    r.worker.io.push(
        0,
        &ipv6_frame((multicast_mac(g), CLIENT_MAC), client6, g, 255, 58, &m),
    );
    // The real server's NA to the inside port's address: the same.
    let mut m = [0u8; 32];
    let me1 = v6("2001:db8:1::1");
    icmpv6::write_neighbor_advert(&mut m, rs6, me1, rs6, RS1_MAC, true);
    r.worker
        .io
        .push(1, &ipv6_frame((DIR1_MAC, RS1_MAC), rs6, me1, 255, 58, &m));
    // SSH to the port's address: the kernel's, unchanged.
    let ssh = frame6(
        client6,
        dir0_v6(),
        6,
        &tcp6(client6, 40000, dir0_v6(), 22, 0x02),
    );
    r.worker.io.push(0, &ssh);
    r.step(1);
    let k0 = r.worker.io.take_tx(2);
    assert_eq!(k0.len(), 2, "NS and SSH to twin 0");
    assert_eq!(k0[1], ssh);
    assert_eq!(r.worker.io.take_tx(3).len(), 1, "NA to twin 1");
    assert_eq!(r.dp.neigh6.lookup(client6), Some(CLIENT_MAC));
    assert_eq!(r.dp.neigh6.lookup(rs6), Some(RS1_MAC));
    assert!(r.worker.io.take_tx(0).is_empty(), "rvs answered nothing");

    // Not owned: the VIP takes no flow, and nothing goes to the kernel.
    let syn = frame6(client6, vip6, 6, &tcp6(client6, 41000, vip6, 80, 0x02));
    r.worker.io.push(0, &syn);
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
    assert!(r.worker.io.take_tx(2).is_empty());
    assert_eq!(r.drops("vip_not_owned"), 1);
    // keepalived puts it on twin 0: the SYN goes to the real server, its
    // answer back to the client, no GARP (keepalived sends the NAs).
    let mut o = Owned::new();
    o.insert(vip6.into(), 0);
    owned.publish(o);
    r.worker.io.push(0, &syn);
    r.step(1);
    let out = r.worker.io.take_tx(1);
    assert_eq!(out.len(), 1, "{:?}", r.stats());
    assert_eq!(macs(&out[0]), (RS1_MAC, DIR1_MAC));
    assert_eq!(&out[0][14 + 24..14 + 40], &rs6.octets());
    let reply = ipv6_frame(
        (DIR1_MAC, RS1_MAC),
        rs6,
        client6,
        64,
        6,
        &tcp6(rs6, 80, client6, 41000, 0x12),
    );
    r.worker.io.push(1, &reply);
    r.step(1);
    let back = r.worker.io.take_tx(0);
    assert_eq!(back.len(), 1);
    assert_eq!(macs(&back[0]), (CLIENT_MAC, DIR0_MAC));
    assert_eq!(&back[0][14 + 8..14 + 24], &vip6.octets());
    assert!(r.worker.io.take_tx(2).is_empty() && r.worker.io.take_tx(3).is_empty());
    assert_eq!(r.stats().garp_sent, 0);
}
