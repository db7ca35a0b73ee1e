//! Internet checksum (RFC 1071) and incremental update (RFC 1624).
//!
//! `sum` returns a partial ones-complement sum already folded to 16 bits, so
//! partial sums can be added together (a few thousand of them fit in a u32)
//! and finished with `fold`. Incremental updates use RFC 1624 eqn. 3,
//! HC' = ~(~HC + ~m + m'), which never turns a valid checksum into -0.

use std::net::Ipv4Addr;

/// Fold carries of a ones-complement accumulator into 16 bits (not complemented).
#[inline]
fn carry(mut acc: u64) -> u32 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Ones-complement sum of `data` as big-endian 16-bit words; an odd final
/// byte is padded with zero. The result is <= 0xFFFF.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    carry(acc)
}

/// Whether a 20-byte IPv4 header (no options) has a valid checksum: the
/// ones-complement sum of its words is 0xFFFF. Summed as five 32-bit words
/// (ones-complement addition is the same at any word size once folded), a
/// third of [`sum`]'s work; the burst's classify stage checks every frame.
#[inline(always)]
pub fn ipv4_header_valid(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    carry(acc) == 0xffff
}

/// Finish a checksum: fold carries and complement.
#[inline]
pub fn fold(acc: u32) -> u16 {
    !(carry(u64::from(acc)) as u16)
}

/// Partial sum of the IPv4 pseudo-header for a TCP/UDP checksum.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    carry(
        u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(proto)
            + u64::from(l4_len),
    )
}

/// Full TCP/UDP checksum over pseudo-header + `segment`. To compute, zero
/// the checksum field first; to verify, a correct segment yields 0.
/// (UDP: a computed 0 must be sent as 0xFFFF; see `udp`.)
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    // Segments longer than 0xFFFF can't be in an IPv4 packet; truncating the
    // length just yields a wrong checksum rather than a panic.
    let len = segment.len() as u16;
    fold(pseudo_header_v4(src, dst, proto, len) + sum(segment))
}

/// RFC 1624 eqn. 3: checksum after a 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!csum) + u64::from(!old) + u64::from(new);
    !(carry(acc) as u16)
}

/// As `update16`, for a 32-bit field (two adjacent words).
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!csum)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !(carry(acc) as u16)
}

/// RFC 1624 eqn. 3 for a 32-bit field and a 16-bit word changed at once
/// (NAT's address and port, or address and the IPv4 header's TTL word):
/// the checksum [`update32`] then [`update16`] give, with one fold.
/// Ones-complement addition is associative and the two only differ in how
/// an intermediate zero is written, which eqn. 3 makes the same.
#[inline(always)]
pub fn update32_16(csum: u16, old: u32, new: u32, old16: u16, new16: u16) -> u16 {
    let acc = u64::from(!csum)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + u64::from(new >> 16)
        + u64::from(new & 0xffff)
        + u64::from(!old16)
        + u64::from(new16);
    // Seven terms below 2^16: two folds always suffice.
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// [`update32_16`] for a UDP checksum: 0 ("none") stays 0, and a computed
/// 0 is sent as 0xFFFF (what [`udp_update_addr`] then [`udp_update_port`]
/// give).
#[inline(always)]
pub fn udp_update32_16(csum: u16, old: u32, new: u32, old16: u16, new16: u16) -> u16 {
    udp_fix(csum, update32_16(csum, old, new, old16, new16))
}

/// TCP (or IPv4 header) checksum after an address in the covered data or the
/// pseudo-header changed.
#[inline]
pub fn l4_update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update32(csum, u32::from(old), u32::from(new))
}

/// TCP checksum after a port changed.
#[inline]
pub fn l4_update_port(csum: u16, old: u16, new: u16) -> u16 {
    update16(csum, old, new)
}

/// Apply the UDP rules to an updated checksum: 0 in means "no checksum" and
/// stays 0; a computed 0 is sent as 0xFFFF.
#[inline]
fn udp_fix(orig: u16, updated: u16) -> u16 {
    match (orig, updated) {
        (0, _) => 0,
        (_, 0) => 0xffff,
        (_, u) => u,
    }
}

/// UDP checksum after an address change (0 stays 0, never yields 0).
#[inline]
pub fn udp_update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    udp_fix(csum, l4_update_addr(csum, old, new))
}

/// UDP checksum after a port change (0 stays 0, never yields 0).
#[inline]
pub fn udp_update_port(csum: u16, old: u16, new: u16) -> u16 {
    udp_fix(csum, update16(csum, old, new))
}

/// UDP checksum after any 16-bit word change (e.g. the length field).
#[inline]
pub fn udp_update16(csum: u16, old: u16, new: u16) -> u16 {
    udp_fix(csum, update16(csum, old, new))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_fold_gives_what_the_two_updates_give() {
        // Edge values (all-ones, zero, the checksum's two zeros) and a
        // pseudo-random sweep.
        let edges16 = [0u16, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
        let edges32 = [
            0u32,
            1,
            0xffff,
            0x1_0000,
            0xffff_fffe,
            0xffff_ffff,
            0x0a00_0164,
        ];
        let mut cases = Vec::new();
        for &c in &edges16 {
            for &o in &edges32 {
                for &n in &edges32 {
                    for &(a, b) in &[(0u16, 0xffffu16), (0xffff, 0), (0x4006, 0x3f06), (80, 8080)] {
                        cases.push((c, o, n, a, b));
                    }
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let y = x.rotate_left(29);
            cases.push((
                x as u16,
                (x >> 16) as u32,
                y as u32,
                (y >> 32) as u16,
                (y >> 48) as u16,
            ));
        }
        for (c, o, n, a, b) in cases {
            let two = update16(update32(c, o, n), a, b);
            assert_eq!(
                update32_16(c, o, n, a, b),
                two,
                "{c:#x} {o:#x} {n:#x} {a:#x} {b:#x}"
            );
            assert_eq!(update32(update16(c, a, b), o, n), two, "either order");
            let (oa, na) = (Ipv4Addr::from(o), Ipv4Addr::from(n));
            let udp = udp_update_port(udp_update_addr(c, oa, na), a, b);
            assert_eq!(
                udp_update32_16(c, o, n, a, b),
                udp,
                "udp {c:#x} {o:#x} {n:#x} {a:#x} {b:#x}"
            );
        }
    }

    use super::*;
    use crate::prng::Rng;

    /// The word-wise check agrees with [`sum`] on random headers, valid
    /// (checksum filled in) and not.
    #[test]
    fn ipv4_header_valid_agrees_with_sum() {
        let mut rng = Rng(7);
        for i in 0..20_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            if i % 2 == 0 {
                h[10] = 0;
                h[11] = 0;
                let c = fold(sum(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            assert_eq!(ipv4_header_valid(&h), fold(sum(&h)) == 0, "{h:?}");
        }
        assert!(ipv4_header_valid(&RFC_HDR));
    }

    const RFC_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn known_answer_ipv4_header() {
        let mut h = RFC_HDR;
        assert_eq!(fold(sum(&h)), 0, "valid header verifies to 0");
        h[10] = 0;
        h[11] = 0;
        assert_eq!(fold(sum(&h)), 0xb861);
    }

    #[test]
    fn rfc1071_example_and_odd_length() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 -> sum 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&d), 0xddf2);
        assert_eq!(fold(sum(&d)), !0xddf2);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
        assert_eq!(fold(0), 0xffff);
        // Large buffers don't overflow.
        let big = vec![0xffu8; 65535];
        // 32767 words of 0xFFFF (== -0) plus 0xFF00.
        assert_eq!(sum(&big), 0xff00);
        assert_eq!(fold(sum(&big)), 0x00ff);
    }

    #[test]
    fn udp_known_answer() {
        // Hand-computed UDP checksum, cross-checked by the 0 verify rule.
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut seg = vec![
            0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0, 0, b'a', b'b', b'c', b'd',
        ];
        let c = l4_checksum_v4(src, dst, 17, &seg);
        // pseudo: 0a00+0001+0a00+0002+0011+000c = 0x1420
        // udp: 3039+0035+000c+6162+6364 = 0xf540 -> 0x10960 -> 0x0961 -> ~0xf69e
        assert_eq!(c, 0xf69e);
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(l4_checksum_v4(src, dst, 17, &seg), 0);
    }

    /// Build a pseudo-random header-like buffer, checksum it fully, change a
    /// word/dword incrementally and compare with full recomputation.
    #[test]
    fn incremental_matches_full() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let edge16 = [0x0000u16, 0xffff, 0x0001, 0xfffe, 0x8000, 0x7fff];
        for i in 0..20_000 {
            let mut buf = [0u8; 24];
            rng.fill(&mut buf);
            buf[0] |= 1; // never all-zero data: avoids the +0/-0 full-sum edge
            let at = 4 + 2 * (rng.next_u32() as usize % 8); // a word in 4..20
            if i % 7 == 0 {
                let e = edge16[i % edge16.len()];
                buf[at..at + 2].copy_from_slice(&e.to_be_bytes());
            }
            buf[2] = 0;
            buf[3] = 0;
            let c0 = fold(sum(&buf));
            buf[2..4].copy_from_slice(&c0.to_be_bytes());
            assert_eq!(fold(sum(&buf)), 0);

            let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let new = if i % 5 == 0 {
                edge16[(i / 5) % edge16.len()]
            } else {
                rng.next_u16()
            };
            buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let inc = update16(c0, old, new);
            buf[2] = 0;
            buf[3] = 0;
            let full = fold(sum(&buf));
            assert_eq!(inc, full, "update16 old={old:#x} new={new:#x} c0={c0:#x}");

            // 32-bit change at an aligned dword in 4..20.
            buf[2..4].copy_from_slice(&full.to_be_bytes());
            let at = 4 + 4 * (rng.next_u32() as usize % 4);
            let old = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let new = match i % 9 {
                0 => 0,
                1 => u32::MAX,
                2 => 0x0000_ffff,
                3 => 0xffff_0000,
                _ => rng.next_u32(),
            };
            buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let inc = update32(full, old, new);
            buf[2] = 0;
            buf[3] = 0;
            assert_eq!(inc, fold(sum(&buf)), "update32 old={old:#x} new={new:#x}");
        }
    }

    #[test]
    fn l4_address_and_port_updates_match_full() {
        let mut rng = Rng(12345);
        for i in 0..5_000 {
            let src = Ipv4Addr::from(rng.next_u32());
            let dst = Ipv4Addr::from(rng.next_u32());
            let mut seg = vec![0u8; 20 + (i % 13)];
            rng.fill(&mut seg);
            seg[16] = 0;
            seg[17] = 0;
            let c = l4_checksum_v4(src, dst, 6, &seg);
            // change dst address (pseudo-header) and dst port
            let ndst = match i % 4 {
                0 => Ipv4Addr::new(0, 0, 0, 0),
                1 => Ipv4Addr::new(255, 255, 255, 255),
                _ => Ipv4Addr::from(rng.next_u32()),
            };
            let oport = u16::from_be_bytes([seg[2], seg[3]]);
            let nport = match i % 3 {
                0 => 0,
                1 => 0xffff,
                _ => rng.next_u16(),
            };
            seg[2..4].copy_from_slice(&nport.to_be_bytes());
            let inc = l4_update_port(l4_update_addr(c, dst, ndst), oport, nport);
            assert_eq!(inc, l4_checksum_v4(src, ndst, 6, &seg));
        }
    }

    #[test]
    fn udp_zero_rules() {
        let a = Ipv4Addr::new(1, 2, 3, 4);
        let b = Ipv4Addr::new(5, 6, 7, 8);
        assert_eq!(udp_update_addr(0, a, b), 0);
        assert_eq!(udp_update_port(0, 1, 2), 0);
        assert_eq!(udp_update16(0, 1, 2), 0);
        // A change that would produce 0 yields 0xFFFF instead:
        // ~(~c + ~old + new) == 0  <=>  ~c + ~old + new == 0xFFFF.
        // With c = 0x1234, old = 0x0000 -> ~c + 0xFFFF + new; pick new = c.
        let c = 0x1234;
        assert_eq!(update16(c, 0, 0x1234), 0);
        assert_eq!(udp_update_port(c, 0, 0x1234), 0xffff);
        // 0xFFFF is a valid (nonzero) UDP checksum and updates like any other.
        let u = udp_update_port(0xffff, 5, 6);
        assert_ne!(u, 0);
        assert_eq!(u, update16(0xffff, 5, 6));
    }
}
