use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// An MLDv2 report the Linux kernel sent (captured on a veth with
/// checksum offload off; tcpdump: "HBH (rtalert) ... [icmp6 sum ok]"):
/// a Hop-by-Hop header before ICMPv6.
const KERNEL_MLD: &str = "600000000038000100000000000000000000000000000000ff02000000000000\
                          00000000000000163a000502000001008f00dac40000000204000000ff020000\
                          0000000000000001ff8a922004000000ff0200000000000000000001ff000001";

/// A Neighbor Solicitation the kernel sent for 2001:db8::2.
const KERNEL_NS: &str = "6000000000203aff20010db8000000000000000000000001ff02000000000000\
                         00000001ff000002870055030000000020010db8000000000000000000000002\
                         01017679c08a9220";

#[test]
fn the_kernel_s_mld_report_walks_its_hop_by_hop_header_and_verifies() {
    let b = hex(KERNEL_MLD);
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.payload_len(), p.next_header(), p.hop_limit()),
        (56, 0, 1)
    );
    assert_eq!(p.dst(), "ff02::16".parse::<Ipv6Addr>().unwrap());
    let u = p.upper_layer().unwrap();
    assert_eq!(
        u,
        UpperLayer {
            proto: IpProtocol(58),
            offset: 48,
            fragment: None,
            ext_headers: 1,
            routed: false,
        }
    );
    let icmp = &p.packet()[u.offset..];
    assert_eq!(l4_checksum_v6(p.src(), p.dst(), 58, icmp), 0);
}

#[test]
fn the_kernel_s_neighbor_solicitation_verifies_and_a_flipped_bit_does_not() {
    let mut b = hex(KERNEL_NS);
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        (p.hop_limit(), p.flow_label(), p.traffic_class()),
        (255, 0, 0)
    );
    let u = p.upper_layer().unwrap();
    assert_eq!((u.proto, u.offset, u.ext_headers), (IpProtocol(58), 40, 0));
    assert_eq!(l4_checksum_v6(p.src(), p.dst(), 58, p.payload()), 0);
    b[40 + 8] ^= 0x80; // the target address
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_ne!(l4_checksum_v6(p.src(), p.dst(), 58, p.payload()), 0);
}

/// A packet with `exts` ((next header of this one, its bytes)) before a
/// 20-byte TCP header; Ethernet padding after it.
fn packet(first: u8, exts: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = exts.iter().flatten().copied().chain([0u8; 20]).collect();
    let mut b = vec![0u8; 40 + body.len() + 6];
    let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
    p.fill_header(0x12345, body.len() as u16, first, 64);
    p.set_src("2001:db8::1".parse().unwrap());
    p.set_dst("2001:db8::100".parse().unwrap());
    b[40..40 + body.len()].copy_from_slice(&body);
    b
}

/// An extension header of `len8` 8-byte units, followed by `next`.
fn ext(next: u8, len8: usize) -> Vec<u8> {
    let mut h = vec![0u8; len8 * 8];
    h[0] = next;
    h[1] = (len8 - 1) as u8;
    h
}

#[test]
fn a_chain_of_extension_headers_is_walked_to_tcp_with_the_fragment_reported() {
    use next_header as nh;
    let mut frag = vec![nh::TCP, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    frag[2..4].copy_from_slice(&((185u16 << 3) | 1).to_be_bytes());
    let b = packet(
        nh::HOP_BY_HOP,
        &[
            ext(nh::DEST_OPTS, 1),
            ext(nh::ROUTING, 3),
            ext(nh::FRAGMENT, 2),
            frag,
        ],
    );
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.flow_label(), 0x12345);
    assert_eq!(p.packet().len(), b.len() - 6, "padding is not the packet's");
    let u = p.upper_layer().unwrap();
    assert_eq!(u.proto, IpProtocol::TCP);
    assert_eq!(u.offset, 40 + 8 + 24 + 16 + 8);
    assert_eq!(u.ext_headers, 4);
    assert_eq!(
        u.fragment,
        Some(Fragment {
            offset: 185 * 8,
            more: true,
            ident: 0xdeadbeef
        })
    );
}

#[test]
fn malformed_headers_and_chains_are_refused_never_panic() {
    use next_header as nh;
    let good = packet(nh::TCP, &[]);
    let mut v4 = good.clone();
    v4[0] = 0x45;
    assert_eq!(
        Ipv6Packet::new_checked(&v4[..]).unwrap_err(),
        WireError::Ipv6BadVersion
    );
    assert_eq!(
        Ipv6Packet::new_checked(&good[..39]).unwrap_err(),
        WireError::Ipv6Truncated
    );
    let mut zero = good.clone();
    zero[4..6].copy_from_slice(&[0, 0]);
    assert_eq!(
        Ipv6Packet::new_checked(&zero[..]).unwrap_err(),
        WireError::Ipv6BadPayloadLen
    );
    let mut long = good.clone();
    long[4..6].copy_from_slice(&[0, 100]);
    assert_eq!(
        Ipv6Packet::new_checked(&long[..]).unwrap_err(),
        WireError::Ipv6BadPayloadLen
    );

    let hbh_late = packet(nh::DEST_OPTS, &[ext(nh::HOP_BY_HOP, 1), ext(nh::TCP, 1)]);
    let p = Ipv6Packet::new_checked(&hbh_late[..]).unwrap();
    assert_eq!(
        p.upper_layer().unwrap_err(),
        WireError::Ipv6HopByHopNotFirst
    );

    let chain: Vec<Vec<u8>> = (0..9)
        .map(|i| ext(if i == 8 { nh::TCP } else { nh::DEST_OPTS }, 1))
        .collect();
    let b = packet(nh::DEST_OPTS, &chain);
    let p = Ipv6Packet::new_checked(&b[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap_err(), WireError::Ipv6ExtChainTooLong);
    let b = packet(nh::DEST_OPTS, &chain[1..]);
    assert_eq!(
        Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .upper_layer()
            .unwrap()
            .ext_headers,
        8
    );

    // A header claiming more than the payload holds.
    let mut over = packet(nh::ROUTING, &[ext(nh::TCP, 1)]);
    over[41] = 200;
    let p = Ipv6Packet::new_checked(&over[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap_err(), WireError::Ipv6ExtTruncated);

    // Every payload length over a valid chain: a result, never a panic,
    // never an upper layer beyond the payload.
    let b = packet(
        nh::HOP_BY_HOP,
        &[
            ext(nh::ROUTING, 2),
            ext(nh::FRAGMENT, 1),
            vec![nh::UDP, 0, 0, 0, 0, 0, 0, 0],
        ],
    );
    for pl in 1..=(b.len() - 40) as u16 {
        let mut c = b.clone();
        c[4..6].copy_from_slice(&pl.to_be_bytes());
        let p = Ipv6Packet::new_checked(&c[..]).unwrap();
        if let Ok(u) = p.upper_layer() {
            assert!(u.offset <= 40 + usize::from(pl), "{pl}: {u:?}");
        }
    }
}

#[test]
fn a_tcp_checksum_over_ipv6_matches_an_independent_sum() {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:ffff::2".parse().unwrap();
    let mut seg = vec![0u8; 24];
    seg[..4].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]); // 12345 -> 80
    seg[12] = 0x60;
    seg[13] = 0x02; // SYN
    seg[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let c = l4_checksum_v6(src, dst, 6, &seg);
    // RFC 1071 by hand over the RFC 8200 8.1 pseudo-header, 32-bit words.
    let mut pseudo = Vec::new();
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend((seg.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 6]);
    let mut acc: u32 = 0;
    for w in pseudo.chunks(2).chain(seg.chunks(2)) {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    assert_eq!(c, !(acc as u16));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    assert_eq!(l4_checksum_v6(src, dst, 6, &seg), 0);
}

#[test]
fn an_incremental_address_update_keeps_the_checksum_valid() {
    let mut rng = crate::prng::Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        let mut addr =
            || Ipv6Addr::from((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()));
        let (src, dst, new) = (addr(), addr(), addr());
        let mut seg = vec![0u8; 20 + rng.below(40)];
        rng.fill(&mut seg);
        seg[16..18].copy_from_slice(&[0, 0]);
        let c = l4_checksum_v6(src, dst, 6, &seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        // The destination rewritten (NAT to a real server).
        let inc = l4_update_addr_v6(c, dst, new);
        seg[16..18].copy_from_slice(&inc.to_be_bytes());
        assert_eq!(l4_checksum_v6(src, new, 6, &seg), 0, "round {round}");
    }
}
