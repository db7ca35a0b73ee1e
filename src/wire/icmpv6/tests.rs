use super::*;

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The ICMPv6 part of a Neighbor Solicitation the Linux kernel sent from
/// 2001:db8::1 (MAC 76:79:c0:8a:92:20) for 2001:db8::2, to ff02::1:ff00:2,
/// hop limit 255 (captured on a veth, checksum offload off).
const KERNEL_NS: [u8; 32] = [
    0x87, 0x00, 0x55, 0x03, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x02, 0x01, 0x01, 0x76, 0x79, 0xc0, 0x8a, 0x92, 0x20,
];
const KERNEL_MAC: MacAddr = MacAddr([0x76, 0x79, 0xc0, 0x8a, 0x92, 0x20]);

#[test]
fn the_kernel_s_solicitation_parses_and_ours_is_byte_for_byte_the_same() {
    let dst = a("ff02::1:ff00:2");
    assert_eq!(solicited_node(a("2001:db8::2")), dst);
    assert_eq!(multicast_mac(dst), MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
    let m = NdMessage::parse(&KERNEL_NS, a("2001:db8::1"), dst, 255).unwrap();
    assert_eq!(
        m,
        NdMessage::Solicit {
            target: a("2001:db8::2"),
            source_ll: Some(KERNEL_MAC)
        }
    );
    let mut ours = [0u8; 32];
    write_neighbor_solicit(&mut ours, a("2001:db8::1"), a("2001:db8::2"), KERNEL_MAC);
    assert_eq!(ours, KERNEL_NS);
}

#[test]
fn an_advertisement_answering_it_verifies_and_parses_back() {
    let me = MacAddr([2, 0, 0, 0, 0, 1]);
    let mut na = [0u8; 32];
    write_neighbor_advert(
        &mut na,
        a("2001:db8::2"),
        a("2001:db8::1"),
        a("2001:db8::2"),
        me,
        true,
    );
    assert!(Icmpv6::new(&na)
        .unwrap()
        .verify(a("2001:db8::2"), a("2001:db8::1")));
    assert!(!Icmpv6::new(&na)
        .unwrap()
        .verify(a("2001:db8::3"), a("2001:db8::1")));
    let m = NdMessage::parse(&na, a("2001:db8::2"), a("2001:db8::1"), 255).unwrap();
    assert_eq!(
        m,
        NdMessage::Advert {
            target: a("2001:db8::2"),
            router: false,
            solicited: true,
            override_: true,
            target_ll: Some(me),
        }
    );
}

#[test]
fn rfc_4861_s_receive_checks_refuse_with_a_reason() {
    let (src, dst) = (a("2001:db8::1"), a("ff02::1:ff00:2"));
    let parse = |m: &[u8], hl| NdMessage::parse(m, src, dst, hl);
    assert_eq!(parse(&KERNEL_NS, 254), Err(NdError::HopLimit));
    assert_eq!(parse(&KERNEL_NS[..20], 255), Err(NdError::Truncated));
    assert_eq!(parse(&KERNEL_NS[..3], 255), Err(NdError::Truncated));
    let mut m = KERNEL_NS;
    m[0] = ECHO_REQUEST;
    assert_eq!(parse(&m, 255), Err(NdError::NotNd));
    let mut m = KERNEL_NS;
    m[1] = 1;
    assert_eq!(parse(&m, 255), Err(NdError::BadCode));
    let mut m = KERNEL_NS;
    m[31] ^= 1;
    assert_eq!(parse(&m, 255), Err(NdError::BadChecksum));

    // Rewritten and checksummed again, so only the tested field is wrong.
    let fixed = |f: &dyn Fn(&mut [u8; 32]), s: Ipv6Addr, d: Ipv6Addr| {
        let mut m = KERNEL_NS;
        f(&mut m);
        fill_checksum(&mut m, s, d);
        NdMessage::parse(&m, s, d, 255)
    };
    let multicast = |m: &mut [u8; 32]| m[8..24].copy_from_slice(&a("ff02::1").octets());
    assert_eq!(fixed(&multicast, src, dst), Err(NdError::MulticastTarget));
    assert_eq!(fixed(&|m| m[25] = 0, src, dst), Err(NdError::BadOption));
    assert_eq!(fixed(&|m| m[25] = 2, src, dst), Err(NdError::BadOption));
    assert_eq!(
        fixed(&|_| {}, Ipv6Addr::UNSPECIFIED, dst),
        Err(NdError::UnspecifiedWithSourceLl)
    );
    let solicited_na = |m: &mut [u8; 32]| {
        m[0] = NEIGHBOR_ADVERT;
        m[4] = 0x40;
        m[24] = 2;
    };
    assert_eq!(
        fixed(&solicited_na, src, a("ff02::1")),
        Err(NdError::SolicitedToMulticast)
    );
    // Without options: fine, no link-layer address.
    let short = {
        let mut m = KERNEL_NS[..24].to_vec();
        fill_checksum(&mut m, src, dst);
        NdMessage::parse(&m, src, dst, 255)
    };
    assert_eq!(
        short,
        Ok(NdMessage::Solicit {
            target: a("2001:db8::2"),
            source_ll: None
        })
    );
}
