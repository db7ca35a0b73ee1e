//! TCP segment headers (RFC 9293). The view covers one segment: pass the IP
//! payload (not the frame tail), since checksums run over the whole buffer.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum;
use super::ipv4::IpProtocol;
use super::{get_u16, get_u32, put_u16, put_u32, WireError};

/// MSS assumed when a SYN carries no MSS option (RFC 9293 3.7.1, the
/// IPv4 default of 536), and the smallest MSS the SYN proxy encodes.
pub const DEFAULT_MSS: u16 = 536;

/// The TCP flags byte (CWR..FIN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    pub const NONE: TcpFlags = TcpFlags(0);

    pub const fn bits(self) -> u8 {
        self.0
    }
    /// All bits of `other` set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
    pub const fn psh(self) -> bool {
        self.0 & 0x08 != 0
    }
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }
    pub const fn urg(self) -> bool {
        self.0 & 0x20 != 0
    }
    pub const fn ece(self) -> bool {
        self.0 & 0x40 != 0
    }
    pub const fn cwr(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        if first {
            f.write_str("NONE")?;
        }
        Ok(())
    }
}

/// TCP option kinds (IANA "TCP Option Kind Numbers").
pub mod opt {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// One option of a TCP header: its kind, where it starts within the
/// options and its whole length (kind and length bytes included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOption {
    pub kind: u8,
    pub at: usize,
    pub len: usize,
}

impl TcpOption {
    /// The option's bytes after kind and length.
    pub fn value<'a>(&self, opts: &'a [u8]) -> &'a [u8] {
        &opts[self.at + 2..self.at + self.len]
    }
}

/// The options of a TCP header, in order (RFC 9293 3.1), NOPs skipped.
/// Iteration stops at the end-of-list option, at the end of the bytes, or
/// at the first malformed option (a length below 2 or past the end);
/// [`TcpOptions::stop`] tells which.
#[derive(Clone, Debug)]
pub struct TcpOptions<'a> {
    opts: &'a [u8],
    i: usize,
    done: bool,
}

/// Where a [`TcpOptions`] walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsEnd {
    /// The bytes ran out, or an end-of-list option.
    Clean,
    /// A malformed option at this offset.
    Malformed(usize),
}

impl<'a> TcpOptions<'a> {
    pub fn new(opts: &'a [u8]) -> Self {
        TcpOptions {
            opts,
            i: 0,
            done: false,
        }
    }

    /// How the walk ended (call once the iterator returned `None`).
    pub fn stop(&self) -> OptionsEnd {
        match self.opts.get(self.i) {
            None | Some(&opt::END) => OptionsEnd::Clean,
            Some(_) => OptionsEnd::Malformed(self.i),
        }
    }
}

impl Iterator for TcpOptions<'_> {
    type Item = TcpOption;

    fn next(&mut self) -> Option<TcpOption> {
        while !self.done {
            match *self.opts.get(self.i)? {
                opt::END => self.done = true,
                opt::NOP => self.i += 1,
                kind => {
                    let len = usize::from(*self.opts.get(self.i + 1).or_else(|| {
                        self.done = true;
                        None
                    })?);
                    if len < 2 || self.i + len > self.opts.len() {
                        self.done = true;
                        return None;
                    }
                    let o = TcpOption {
                        kind,
                        at: self.i,
                        len,
                    };
                    self.i += len;
                    return Some(o);
                }
            }
        }
        None
    }
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DOFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A TCP segment (header + payload).
#[derive(Debug, Clone)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub const MIN_HEADER_LEN: usize = 20;

    pub fn new_unchecked(buf: T) -> Self {
        TcpSegment { buf }
    }

    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let b = buf.as_ref();
        if b.len() < Self::MIN_HEADER_LEN {
            return Err(WireError::TcpTruncated);
        }
        let hl = usize::from(b[field::DOFF] >> 4) * 4;
        if hl < Self::MIN_HEADER_LEN || hl > b.len() {
            return Err(WireError::TcpBadDataOffset);
        }
        Ok(TcpSegment { buf })
    }

    pub fn into_inner(self) -> T {
        self.buf
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::DST_PORT)
    }

    pub fn seq(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::SEQ)
    }

    pub fn ack(&self) -> u32 {
        get_u32(self.buf.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[field::DOFF] >> 4) * 4
    }

    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buf.as_ref()[field::FLAGS])
    }

    pub fn window(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::CHECKSUM)
    }

    pub fn urgent(&self) -> u16 {
        get_u16(self.buf.as_ref(), field::URGENT)
    }

    pub fn options(&self) -> &[u8] {
        &self.buf.as_ref()[Self::MIN_HEADER_LEN..self.header_len()]
    }

    /// A copy of the options (at most 40 bytes) and their length, to walk
    /// with [`TcpOptions`] while the segment itself is being written.
    pub fn options_copy(&self) -> ([u8; 40], usize) {
        let mut copy = [0u8; 40];
        let n = self.options().len().min(copy.len());
        copy[..n].copy_from_slice(&self.options()[..n]);
        (copy, n)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..]
    }

    /// Verify the checksum over pseudo-header + the whole buffer.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::l4_checksum_v4(src, dst, IpProtocol::TCP.0, self.buf.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::DST_PORT, v);
    }

    pub fn set_seq(&mut self, v: u32) {
        put_u32(self.buf.as_mut(), field::SEQ, v);
    }

    pub fn set_ack(&mut self, v: u32) {
        put_u32(self.buf.as_mut(), field::ACK, v);
    }

    /// Header length in bytes (multiple of 4, 20..=60); keeps the NS bit.
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buf.as_mut();
        b[field::DOFF] = (((len / 4) as u8) << 4) | (b[field::DOFF] & 0x0f);
    }

    pub fn set_flags(&mut self, f: TcpFlags) {
        self.buf.as_mut()[field::FLAGS] = f.0;
    }

    pub fn set_window(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::CHECKSUM, v);
    }

    pub fn set_urgent(&mut self, v: u16) {
        put_u16(self.buf.as_mut(), field::URGENT, v);
    }

    /// Compute the checksum over pseudo-header + the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::l4_checksum_v4(src, dst, IpProtocol::TCP.0, self.buf.as_ref());
        self.set_checksum(c);
    }

    /// Set the source port, updating the checksum incrementally.
    pub fn set_src_port_inc(&mut self, v: u16) {
        let c = checksum::l4_update_port(self.checksum(), self.src_port(), v);
        self.set_src_port(v);
        self.set_checksum(c);
    }

    /// Set the destination port, updating the checksum incrementally.
    pub fn set_dst_port_inc(&mut self, v: u16) {
        let c = checksum::l4_update_port(self.checksum(), self.dst_port(), v);
        self.set_dst_port(v);
        self.set_checksum(c);
    }

    pub fn set_seq_inc(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.seq(), v);
        self.set_seq(v);
        self.set_checksum(c);
    }

    pub fn set_ack_inc(&mut self, v: u32) {
        let c = checksum::update32(self.checksum(), self.ack(), v);
        self.set_ack(v);
        self.set_checksum(c);
    }

    pub fn set_window_inc(&mut self, v: u16) {
        let c = checksum::update16(self.checksum(), self.window(), v);
        self.set_window(v);
        self.set_checksum(c);
    }

    /// Account in the checksum for a pseudo-header address change (the IP
    /// header's src or dst was rewritten from `old` to `new`).
    pub fn update_checksum_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::l4_update_addr(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Rewrite every edge of every SACK block with `map`, updating the
    /// checksum incrementally (a segment with a bad checksum stays bad).
    /// Returns whether an edge changed.
    pub fn map_sack_edges(&mut self, map: impl Fn(u32) -> u32) -> bool {
        // Walk a copy while writing the segment.
        let (copy, n) = self.options_copy();
        let mut changed = false;
        for o in TcpOptions::new(&copy[..n]) {
            if o.kind == opt::SACK && o.len >= 10 && (o.len - 2) % 8 == 0 {
                for e in (o.at + 2..o.at + o.len).step_by(4) {
                    let v = u32::from_be_bytes([copy[e], copy[e + 1], copy[e + 2], copy[e + 3]]);
                    let m = map(v);
                    if m != v {
                        self.put_option_u32_inc(e, m);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// Write `v` at offset `at` of the options, updating the checksum over
    /// the 16-bit words it covers (three when the value is not 16-bit
    /// aligned; options start at the even offset 20, so alignment within
    /// them is that of the segment).
    fn put_option_u32_inc(&mut self, at: usize, v: u32) {
        let (start, end) = (at & !1, (at + 5) & !1);
        let word = |o: &[u8], w: usize| u16::from_be_bytes([o[w], o[w + 1]]);
        let mut old = [0u16; 3];
        let o = self.options_mut();
        for (i, w) in (start..end).step_by(2).enumerate() {
            old[i] = word(o, w);
        }
        o[at..at + 4].copy_from_slice(&v.to_be_bytes());
        let mut new = [0u16; 3];
        for (i, w) in (start..end).step_by(2).enumerate() {
            new[i] = word(o, w);
        }
        let mut c = self.checksum();
        for i in 0..(end - start) / 2 {
            c = checksum::update16(c, old[i], new[i]);
        }
        self.set_checksum(c);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buf.as_mut()[Self::MIN_HEADER_LEN..hl]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buf.as_mut()[hl..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpSegment<T> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_iterate_in_order_and_say_where_they_stopped() {
        // MSS 1460, NOP, WS 7, SACK-permitted, then end of list.
        let o = [2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0];
        let mut it = TcpOptions::new(&o);
        let got: Vec<(u8, usize, usize)> = it.by_ref().map(|x| (x.kind, x.at, x.len)).collect();
        assert_eq!(got, [(2, 0, 4), (3, 5, 3), (4, 8, 2)]);
        assert_eq!(it.stop(), OptionsEnd::Clean);
        let mss = TcpOptions::new(&o).next().unwrap();
        assert_eq!(mss.value(&o), [5, 0xb4]);
        // A length of 1, and a length past the end: malformed where found.
        for (bad, at) in [(&[1u8, 8, 1][..], 1), (&[2, 4, 5, 0xb4, 8, 10, 0][..], 4)] {
            let mut it = TcpOptions::new(bad);
            let n = it.by_ref().count();
            assert_eq!(it.stop(), OptionsEnd::Malformed(at), "{bad:?} after {n}");
        }
        // Only NOPs, and nothing: clean and empty.
        assert_eq!(TcpOptions::new(&[1, 1, 1]).count(), 0);
        assert_eq!(TcpOptions::new(&[]).stop(), OptionsEnd::Clean);
    }
    use crate::prng::Rng;

    fn sample() -> Vec<u8> {
        // SYN from 10.0.0.1:12345 -> 10.0.0.2:80 with MSS option.
        let mut s = vec![
            0x30, 0x39, 0x00, 0x50, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02,
            0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, b'h', b'i',
        ];
        let mut t = TcpSegment::new_checked(&mut s[..]).unwrap();
        t.fill_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        s
    }

    #[test]
    fn parse() {
        let s = sample();
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        assert_eq!(t.src_port(), 12345);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq(), 0x1000);
        assert_eq!(t.ack(), 0);
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), TcpFlags::SYN);
        assert!(t.flags().syn() && !t.flags().ack());
        assert_eq!(t.window(), 0xffff);
        assert_eq!(t.urgent(), 0);
        assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(t.payload(), b"hi");
        assert!(t.verify_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!t.verify_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn flags() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.syn() && f.ack() && !f.fin() && !f.rst());
        assert!(f.contains(TcpFlags::ACK) && !f.contains(TcpFlags::ACK | TcpFlags::FIN));
        let all = TcpFlags(0xff);
        assert!(all.fin() && all.syn() && all.rst() && all.psh());
        assert!(all.ack() && all.urg() && all.ece() && all.cwr());
        assert_eq!(format!("{f:?}"), "SYN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::NONE), "NONE");
        assert_eq!((f & TcpFlags::SYN).bits(), 0x02);
        let mut g = TcpFlags::FIN;
        g |= TcpFlags::PSH;
        assert_eq!(g.bits(), 0x09);
    }

    #[test]
    fn truncated_and_bad_doff() {
        let s = sample();
        for n in 0..20 {
            assert_eq!(
                TcpSegment::new_checked(&s[..n]).unwrap_err(),
                WireError::TcpTruncated
            );
        }
        // doff 6 (24 bytes) beyond a 20..23 byte buffer
        for n in 20..24 {
            assert_eq!(
                TcpSegment::new_checked(&s[..n]).unwrap_err(),
                WireError::TcpBadDataOffset
            );
        }
        let mut b = s.clone();
        for doff in 0..5u8 {
            b[12] = doff << 4;
            assert_eq!(
                TcpSegment::new_checked(&b[..]).unwrap_err(),
                WireError::TcpBadDataOffset
            );
        }
        b[12] = 0xf0;
        assert_eq!(
            TcpSegment::new_checked(&b[..]).unwrap_err(),
            WireError::TcpBadDataOffset
        );
        b.resize(60, 0);
        let t = TcpSegment::new_checked(&b[..]).unwrap();
        assert_eq!(t.options().len(), 40);
        assert!(t.payload().is_empty());
    }

    #[test]
    fn setters_and_incremental() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut rng = Rng(77);
        let mut s = sample();
        for i in 0..5_000u32 {
            let mut t = TcpSegment::new_checked(&mut s[..]).unwrap();
            let p = match i % 5 {
                0 => 0,
                1 => 0xffff,
                _ => rng.next_u16(),
            };
            t.set_dst_port_inc(p);
            t.set_src_port_inc(rng.next_u16());
            t.set_seq_inc(if i % 7 == 0 { u32::MAX } else { rng.next_u32() });
            t.set_ack_inc(rng.next_u32());
            t.set_window_inc(rng.next_u16());
            let ndst = Ipv4Addr::from(if i % 3 == 0 { 0 } else { rng.next_u32() });
            t.update_checksum_addr(dst, ndst);
            assert!(t.verify_checksum(src, ndst), "iteration {i}");
            let inc = t.checksum();
            t.fill_checksum(src, ndst);
            assert_eq!(inc, t.checksum());
            assert_eq!(t.dst_port(), p);
            // restore dst for the next round
            t.update_checksum_addr(ndst, dst);
        }
        let mut t = TcpSegment::new_checked(&mut s[..]).unwrap();
        t.set_flags(TcpFlags::FIN | TcpFlags::ACK);
        t.set_window(1234);
        t.set_urgent(7);
        t.set_header_len(20);
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq(3);
        t.set_ack(4);
        t.set_checksum(5);
        assert_eq!(t.flags(), TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!((t.window(), t.urgent(), t.header_len()), (1234, 7, 20));
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq(), t.ack(), t.checksum()),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(t.payload_mut().len(), 6);
        assert!(t.options_mut().is_empty());
    }
}
