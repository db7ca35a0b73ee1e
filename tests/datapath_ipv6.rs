//! IPv6 to the director on the in-memory device: Neighbor Discovery for its
//! addresses (RFC 4861 7.2.3/7.2.4, as the kernel's ndisc_recv_ns answers)
//! and ICMPv6 echo; everything else counted with its reason.

mod common;

use std::net::Ipv6Addr;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::icmpv6::{
    self, fill_checksum, multicast_mac, solicited_node, write_neighbor_solicit, Icmpv6, NdMessage,
};
use rvs::wire::{Ipv6Packet, MacAddr};

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The kernel's link-local address for `mac` (EUI-64), written out by hand
/// for the rig's port 0 MAC 02:d0:00:00:00:00.
fn dir0_ll() -> Ipv6Addr {
    v6("fe80::d0:ff:fe00:0")
}

const CLIENT_LL: &str = "fe80::c0:ff:fe00:2";

/// A frame from the client (see [`ipv6_frame`]).
fn frame(
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    next: u8,
    upper: &[u8],
) -> Vec<u8> {
    ipv6_frame((dst_mac, CLIENT_MAC), src, dst, hops, next, upper)
}

fn ns(src: Ipv6Addr, target: Ipv6Addr, hops: u8) -> Vec<u8> {
    let mut m = [0u8; 32];
    write_neighbor_solicit(&mut m, src, target, CLIENT_MAC);
    let group = solicited_node(target);
    frame(multicast_mac(group), src, group, hops, 58, &m)
}

/// A DAD probe: from the unspecified address, without a Source Link-Layer
/// option (RFC 4861 7.2.2 forbids one).
fn dad(target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let mut m = [0u8; 24];
    m[0] = icmpv6::NEIGHBOR_SOLICIT;
    m[8..24].copy_from_slice(&target.octets());
    fill_checksum(&mut m, Ipv6Addr::UNSPECIFIED, group);
    frame(
        multicast_mac(group),
        Ipv6Addr::UNSPECIFIED,
        group,
        255,
        58,
        &m,
    )
}

fn echo(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![icmpv6::ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 7];
    m.extend_from_slice(payload);
    fill_checksum(&mut m, src, dst);
    frame(DIR0_MAC, src, dst, 64, 58, &m)
}

fn one(r: &mut Rig<MemIo>, f: &[u8]) -> Vec<Vec<u8>> {
    r.worker.io.push(0, f);
    r.step(1);
    r.worker.io.take_tx(0)
}

#[test]
fn solicitations_for_both_own_addresses_are_answered() {
    let mut r = rig();
    let client = v6(CLIENT_LL);
    for target in [dir0_v6(), dir0_ll()] {
        let out = one(&mut r, &ns(client, target, 255));
        assert_eq!(out.len(), 1, "{target}");
        let f = &out[0];
        assert_eq!(f.len(), 14 + 40 + 32);
        assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
        let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.hop_limit()), (target, client, 255));
        assert_eq!(ip.next_header(), 58);
        // The reply passes the same RFC 4861 checks a host applies.
        let na = NdMessage::parse(ip.payload(), ip.src(), ip.dst(), ip.hop_limit()).unwrap();
        assert_eq!(
            na,
            NdMessage::Advert {
                target,
                router: false,
                solicited: true,
                override_: true,
                target_ll: Some(DIR0_MAC),
            }
        );
    }
    assert_eq!(r.stats().nd_adverts_sent, 2);
}

#[test]
fn duplicate_address_detection_is_answered_to_all_nodes() {
    let mut r = rig();
    let out = one(&mut r, &dad(dir0_v6()));
    assert_eq!(out.len(), 1);
    let f = &out[0];
    let all_nodes = v6("ff02::1");
    assert_eq!(macs(f), (multicast_mac(all_nodes), DIR0_MAC));
    assert_eq!(multicast_mac(all_nodes), MacAddr([0x33, 0x33, 0, 0, 0, 1]));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (dir0_v6(), all_nodes));
    let na = NdMessage::parse(ip.payload(), ip.src(), ip.dst(), 255).unwrap();
    let NdMessage::Advert { solicited, .. } = na else {
        panic!("{na:?}")
    };
    assert!(
        !solicited,
        "RFC 4861 7.2.4: not solicited when sent to all-nodes"
    );
}

#[test]
fn echo_requests_to_own_addresses_are_answered() {
    let mut r = rig();
    let client = v6("2001:db8::2");
    let out = one(&mut r, &echo(client, dir0_v6(), b"0123456789"));
    assert_eq!(out.len(), 1);
    let f = &out[0];
    assert_eq!(macs(f), (CLIENT_MAC, DIR0_MAC));
    let ip = Ipv6Packet::new_checked(&f[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (dir0_v6(), client));
    let m = Icmpv6::new(ip.payload()).unwrap();
    assert_eq!((m.msg_type(), m.code()), (icmpv6::ECHO_REPLY, 0));
    assert!(m.verify(ip.src(), ip.dst()));
    assert_eq!(
        &ip.payload()[4..],
        &[0x12, 0x34, 0, 7, b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9']
    );
    // And to the link-local address, from a link-local one.
    let out = one(&mut r, &echo(v6(CLIENT_LL), dir0_ll(), b"x"));
    assert_eq!(out.len(), 1);
    assert_eq!(r.stats().icmpv6_echo_replies, 2);
}

#[test]
fn what_is_not_answered_is_counted_with_its_reason() {
    let mut r = rig();
    let client = v6(CLIENT_LL);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            // Same low 24 bits, so the same solicited-node group as ours.
            "NS for another address in our group",
            ns(client, v6("2001:db8:1::1"), 255),
            "nd_not_for_us",
        ),
        (
            "NS that crossed a router",
            ns(client, dir0_v6(), 64),
            "nd_invalid",
        ),
        (
            "NS with a bad checksum",
            {
                let mut f = ns(client, dir0_v6(), 255);
                f[14 + 40 + 2] ^= 1;
                f
            },
            "nd_invalid",
        ),
        (
            "echo to another host",
            echo(client, v6("2001:db8::99"), b""),
            "ipv6",
        ),
        (
            "echo with a bad checksum",
            {
                let mut f = echo(client, dir0_v6(), b"ab");
                f[14 + 40 + 8] ^= 1;
                f
            },
            "l4_malformed",
        ),
        (
            "echo to all-nodes",
            {
                let mut m = vec![icmpv6::ECHO_REQUEST, 0, 0, 0, 0, 1, 0, 1];
                fill_checksum(&mut m, client, v6("ff02::1"));
                frame(
                    multicast_mac(v6("ff02::1")),
                    client,
                    v6("ff02::1"),
                    1,
                    58,
                    &m,
                )
            },
            "icmp_unhandled",
        ),
        (
            "TCP to the director",
            frame(DIR0_MAC, client, dir0_v6(), 64, 6, &[0u8; 20]),
            "local_unhandled",
        ),
        (
            "a fragment",
            frame(
                DIR0_MAC,
                client,
                dir0_v6(),
                64,
                44,
                &[58, 0, 0, 1, 0, 0, 0, 9, 128, 0, 0, 0],
            ),
            "ipv6_fragment",
        ),
        (
            "hop-by-hop after another header",
            frame(
                DIR0_MAC,
                client,
                dir0_v6(),
                64,
                60,
                &[0, 0, 0, 0, 0, 0, 0, 0, 58, 0, 0, 0, 0, 0, 0, 0],
            ),
            "ipv6_malformed",
        ),
        (
            "from the director's own address",
            echo(dir0_v6(), dir0_v6(), b""),
            "bad_source",
        ),
        (
            "another group's MAC",
            {
                let mut f = ns(client, dir0_v6(), 255);
                f[5] ^= 0x55;
                f
            },
            "not_for_us",
        ),
    ];
    for (what, f, reason) in cases {
        let before = r.drops(reason);
        let out = one(&mut r, &f);
        assert!(out.is_empty(), "{what}: answered");
        assert_eq!(
            r.drops(reason),
            before + 1,
            "{what}: not counted as {reason}"
        );
    }
    // An NA is taken in without an answer.
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_advert(&mut m, client, dir0_ll(), client, CLIENT_MAC, true);
    let consumed = r.stats().consumed;
    assert!(one(&mut r, &frame(DIR0_MAC, client, dir0_ll(), 255, 58, &m)).is_empty());
    assert_eq!(r.stats().consumed, consumed + 1);
}

#[test]
fn a_port_without_a_configured_address_still_has_its_link_local() {
    let mut r = rig();
    // Port 1 (MAC 02:d0:00:00:00:01) has no `ipv6`.
    let target = v6("fe80::d0:ff:fe00:1");
    let mut m = [0u8; 32];
    write_neighbor_solicit(&mut m, v6(CLIENT_LL), target, CLIENT_MAC);
    let group = solicited_node(target);
    r.worker.io.push(
        1,
        &frame(multicast_mac(group), v6(CLIENT_LL), group, 255, 58, &m),
    );
    r.step(1);
    assert_eq!(r.worker.io.take_tx(1).len(), 1);
    // The configured address of port 0 is not port 1's.
    r.worker.io.push(1, &ns(v6(CLIENT_LL), dir0_v6(), 255));
    r.step(1);
    assert!(r.worker.io.take_tx(1).is_empty());
}

fn na(target: Ipv6Addr, dst: Ipv6Addr, mac: MacAddr, solicited: bool, override_: bool) -> Vec<u8> {
    let mut m = [0u8; 32];
    icmpv6::write_neighbor_advert(&mut m, target, dst, target, mac, solicited);
    if !override_ {
        // write_neighbor_advert sets Override; clear it and re-checksum.
        m[4] &= !0x20;
        fill_checksum(&mut m, target, dst);
    }
    frame(DIR0_MAC, target, dst, 255, 58, &m)
}

#[test]
fn neighbours_are_learnt_as_the_kernel_learns_them() {
    let mut r = rig();
    let client = v6(CLIENT_LL);
    // The source of an NS for our address, at its Source Link-Layer option.
    one(&mut r, &ns(client, dir0_v6(), 255));
    assert_eq!(r.dp.neigh6.lookup(client), Some(CLIENT_MAC));
    // Not from a DAD probe, nor from an NS for someone else.
    one(&mut r, &dad(dir0_v6()));
    one(&mut r, &ns(v6("2001:db8::5"), v6("2001:db8:1::1"), 255));
    assert_eq!(r.dp.neigh6.lookup(v6("2001:db8::5")), None);
    // An unsolicited NA for an unknown target teaches nothing; a solicited
    // one to our unicast address does.
    let rs = v6("2001:db8::11");
    let rs_mac = MacAddr([2, 0x51, 0, 0, 0, 11]);
    one(&mut r, &na(rs, v6("ff02::1"), rs_mac, false, true));
    assert_eq!(r.dp.neigh6.lookup(rs), None);
    one(&mut r, &na(rs, dir0_v6(), rs_mac, true, true));
    assert_eq!(r.dp.neigh6.lookup(rs), Some(rs_mac));
    // A known MAC changes only with the Override flag (RFC 4861 7.2.5).
    let other = MacAddr([2, 0x51, 0, 0, 0, 99]);
    one(&mut r, &na(rs, dir0_v6(), other, true, false));
    assert_eq!(r.dp.neigh6.lookup(rs), Some(rs_mac));
    one(&mut r, &na(rs, v6("ff02::1"), other, false, true));
    assert_eq!(r.dp.neigh6.lookup(rs), Some(other));
    // Off-link targets and group or own MACs are never learnt.
    one(
        &mut r,
        &na(v6("2001:db9::1"), dir0_v6(), rs_mac, true, true),
    );
    assert_eq!(r.dp.neigh6.lookup(v6("2001:db9::1")), None);
    let before = r.drops("nd_bad_link_addr");
    one(
        &mut r,
        &na(v6("2001:db8::12"), dir0_v6(), DIR1_MAC, true, true),
    );
    assert_eq!(r.drops("nd_bad_link_addr"), before + 1);
    assert_eq!(r.dp.neigh6.lookup(v6("2001:db8::12")), None);
}
