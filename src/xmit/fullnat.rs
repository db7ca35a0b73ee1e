//! FULLNAT: both addresses rewritten. Inbound, client cip:cport -> vip:vport
//! becomes lip:lport -> rip:rport, where lip:lport is a local address and
//! port of the director's pool (allocated per connection by the data path);
//! replies rip:rport -> lip:lport become vip:vport -> cip:cport. The real
//! server needs no VIP and no route back through the director.
//!
//! Because the server would otherwise see only the local address, the client
//! address can be delivered (per service):
//! - **TOA**: TCP option kind 254, length 8 (client port, client IPv4), as
//!   DPVS and Alibaba LVS do, inserted right after the fixed TCP header of the
//!   client's SYN and of the ACK that completes the handshake (the TOA kernel
//!   module on the server reads it from the latter). Packets whose header has
//!   no room left (60 bytes) go without it.
//! - **PROXY protocol v2**: a 28-byte binary header (TCP over IPv4) inserted
//!   in front of the first data the client sends. Every later client
//!   sequence number moves up by 28 and every acknowledgement (and SACK edge)
//!   from the server moves down by 28; the server's MSS in its SYN-ACK is
//!   lowered by 28 so the grown first segment still fits the path. The
//!   header is re-inserted if that first segment is retransmitted. (A server
//!   that speaks first gets the header only once the client sends.)
//!
//! Checksums: incremental for address, port, sequence, acknowledgement and
//! SACK edge changes; a full TCP recomputation when bytes are inserted or
//! the MSS rewritten (only the handful of packets around the handshake).

use std::net::Ipv4Addr;

use super::{Egress, XmitError};
use crate::conn::{Conn, Dir, Fnat, State};
use crate::flow::ClientAddr;
use crate::io::Frame;
use crate::wire::tcp::{opt, TcpOptions};
use crate::wire::{EthernetFrame, IpProtocol, Ipv4Packet, TcpSegment, UdpDatagram, WireError};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// TOA option kind and length.
pub const TOA_KIND: u8 = 254;
pub const TOA_LEN: usize = 8;
/// PROXY protocol v2 signature.
pub const PP2_SIG: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// PROXY v2 header for TCP over IPv4: 16 fixed + 12 address bytes.
pub const PP2_LEN: usize = 28;

/// Why a packet could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FnatError {
    Malformed(WireError),
    /// Not a FULLNAT connection or not IPv4.
    NotFullNat,
    /// No tailroom to insert TOA/PROXY bytes.
    NoRoom,
}

impl From<WireError> for FnatError {
    fn from(e: WireError) -> Self {
        FnatError::Malformed(e)
    }
}

/// `a` comes after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Rewrite both ends; returns (protocol, IP header length, IP total length).
fn rewrite_ends(
    frame: &mut impl Frame,
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
) -> Result<(IpProtocol, usize, usize), FnatError> {
    let data = frame.data_mut();
    let mut p = Ipv4Packet::new_checked(&mut data[ETH..])?;
    let (ihl, total) = (p.header_len(), p.total_len() as usize);
    p.dec_ttl_inc();
    let (osrc, odst) = (p.src_addr(), p.dst_addr());
    p.set_src_addr_inc(src);
    p.set_dst_addr_inc(dst);
    let proto = p.protocol();
    let l4 = p.payload_mut();
    if proto == IpProtocol::TCP {
        let mut t = TcpSegment::new_checked(l4)?;
        t.update_checksum_addr(osrc, src);
        t.update_checksum_addr(odst, dst);
        t.set_src_port_inc(sport);
        t.set_dst_port_inc(dport);
    } else if proto == IpProtocol::UDP {
        let mut u = UdpDatagram::new_checked(l4)?;
        u.update_checksum_addr(osrc, src);
        u.update_checksum_addr(odst, dst);
        u.set_src_port_inc(sport);
        u.set_dst_port_inc(dport);
    }
    Ok((proto, ihl, total))
}

/// Insert `bytes` into the TCP segment at offset `at` (from the TCP header
/// start), growing the IP packet; `grow_header` also grows the TCP data
/// offset (for an option). Recomputes the TCP checksum.
pub(super) fn insert(
    frame: &mut impl Frame,
    ihl: usize,
    total: usize,
    at: usize,
    bytes: &[u8],
    grow_header: bool,
) -> Result<(), FnatError> {
    let n = bytes.len();
    frame.truncate(ETH + total);
    if !frame.append(n) {
        return Err(FnatError::NoRoom);
    }
    let tcp = ETH + ihl;
    let data = frame.data_mut();
    data.copy_within(tcp + at..ETH + total, tcp + at + n);
    data[tcp + at..tcp + at + n].copy_from_slice(bytes);
    let mut p = Ipv4Packet::new_unchecked(&mut data[ETH..ETH + total + n]);
    p.set_total_len_inc((total + n) as u16);
    let (src, dst) = (p.src_addr(), p.dst_addr());
    let seg = p.payload_mut();
    let mut t = TcpSegment::new_unchecked(seg);
    if grow_header {
        let hl = t.header_len();
        t.set_header_len(hl + n);
    }
    t.fill_checksum(src, dst);
    Ok(())
}

fn toa_option(cip: Ipv4Addr, cport: u16) -> [u8; TOA_LEN] {
    let p = cport.to_be_bytes();
    let a = cip.octets();
    [TOA_KIND, TOA_LEN as u8, p[0], p[1], a[0], a[1], a[2], a[3]]
}

/// The PROXY v2 header announcing cip:cport -> vip:vport over TCP/IPv4.
pub fn pp2_header(cip: Ipv4Addr, cport: u16, vip: Ipv4Addr, vport: u16) -> [u8; PP2_LEN] {
    let mut h = [0u8; PP2_LEN];
    h[..12].copy_from_slice(&PP2_SIG);
    h[12] = 0x21; // version 2, PROXY
    h[13] = 0x11; // AF_INET, STREAM
    h[14..16].copy_from_slice(&12u16.to_be_bytes());
    h[16..20].copy_from_slice(&cip.octets());
    h[20..24].copy_from_slice(&vip.octets());
    h[24..26].copy_from_slice(&cport.to_be_bytes());
    h[26..28].copy_from_slice(&vport.to_be_bytes());
    h
}

/// What client-address delivery does to a client segment (either family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Nothing,
    /// Insert the TOA option after the fixed TCP header.
    Toa,
    /// Insert the PROXY header before the payload.
    ProxyHeader,
    /// Move the sequence number up over the inserted header.
    Seq(u32),
}

/// The delivery step for a client segment of a FULLNAT connection: its
/// flags, sequence number, TCP header length and payload length, and how
/// long a TOA option is (IPv4's 8, IPv6's 20). A SYN records the client's
/// ISN. TOA goes on the SYN and on the ACK completing the handshake (the
/// state is still SYN_RECV then: the state machine sees the packet after
/// the rewrite), when the header has room; PROXY v2 before the first data.
/// If the handshake's pure ACK never reached the director, the client's
/// first data segment completes the handshake at the server instead: it
/// carries TOA when the packet may grow by `room()` bytes (the egress
/// port's MTU less the packet's length; asked only then, not for every
/// packet) without exceeding the MTU, as DPVS puts TOA on the first data
/// packet.
pub(crate) fn delivery(
    c: &Conn,
    f: &Fnat,
    (flags, seq, hl, payload): (crate::wire::TcpFlags, u32, usize, usize),
    (toa_len, room): (usize, impl Fn() -> usize),
) -> Delivery {
    let toa_fits = hl + toa_len <= 60;
    if flags.syn() && !flags.ack() {
        f.isn.set(seq);
        return if f.client_addr == ClientAddr::Toa && toa_fits {
            Delivery::Toa
        } else {
            Delivery::Nothing
        };
    }
    let first = f.isn.get().wrapping_add(1);
    match f.client_addr {
        ClientAddr::Toa
            if flags.ack()
                && !flags.rst()
                && !flags.fin()
                && seq == first
                && (payload == 0 || toa_len <= room())
                && c.state() == State::SynRecv
                && toa_fits =>
        {
            Delivery::Toa
        }
        ClientAddr::ProxyV2 if seq == first && payload > 0 => Delivery::ProxyHeader,
        ClientAddr::ProxyV2 if f.delta.get() > 0 && after(seq, first) => {
            Delivery::Seq(seq.wrapping_add(f.delta.get()))
        }
        _ => Delivery::Nothing,
    }
}

/// PROXY v2, server to client: a SYN-ACK's MSS options lowered by the
/// header's length `hdr` (the client's first segment grows by it), and the
/// server's acknowledgement and SACK edges moved back over the header the
/// client never sent (edges inside it map to where it began). True if the
/// options changed (the caller then recomputes the checksum; the rest is
/// incremental).
pub(crate) fn to_client<T: AsRef<[u8]> + AsMut<[u8]>>(
    t: &mut TcpSegment<T>,
    f: &Fnat,
    hdr: usize,
) -> bool {
    let flags = t.flags();
    let first = f.isn.get().wrapping_add(1);
    let delta = f.delta.get();
    let mut options_changed = false;
    if flags.syn() && flags.ack() {
        // Every MSS option: a client keeps the last one it reads.
        let (copy, n) = t.options_copy();
        for at in TcpOptions::new(&copy[..n])
            .filter(|x| x.kind == opt::MSS && x.len == 4)
            .map(|x| x.at)
        {
            let o = t.options_mut();
            let mss = u16::from_be_bytes([o[at + 2], o[at + 3]]);
            let clamped = mss.saturating_sub(hdr as u16).max(64);
            o[at + 2..at + 4].copy_from_slice(&clamped.to_be_bytes());
            options_changed = true;
        }
    }
    if delta > 0 && flags.ack() {
        let end = first.wrapping_add(delta);
        let map = |a: u32| {
            if a == end || after(a, end) {
                a.wrapping_sub(delta)
            } else if after(a, first) {
                first
            } else {
                a
            }
        };
        let ack = t.ack();
        if map(ack) != ack {
            t.set_ack_inc(map(ack));
        }
        t.map_sack_edges(map);
    }
    options_changed
}

/// Client to real server; `mtu()`: the egress port's (see [`delivery`]).
pub fn forward<F: Frame>(
    frame: &mut F,
    c: &Conn,
    mtu: impl Fn() -> usize,
) -> Result<(), FnatError> {
    let f: &Fnat = c.fnat.as_ref().ok_or(FnatError::NotFullNat)?;
    let (cip, vip) = (c.cip, c.vip);
    let (proto, ihl, total) = rewrite_ends(frame, (f.lip, f.lport), (c.dip, c.dport))?;
    if proto != IpProtocol::TCP || f.client_addr == ClientAddr::None {
        return Ok(());
    }
    let seg = {
        let t = TcpSegment::new_checked(&frame.data()[ETH + ihl..ETH + total])?;
        (t.flags(), t.seq(), t.header_len(), t.payload().len())
    };
    match delivery(c, f, seg, (TOA_LEN, || mtu().saturating_sub(total))) {
        Delivery::Toa => insert(frame, ihl, total, 20, &toa_option(cip, c.cport), true)?,
        Delivery::ProxyHeader => {
            let h = pp2_header(cip, c.cport, vip, c.vport);
            insert(frame, ihl, total, seg.2, &h, false)?;
            f.delta.set(PP2_LEN as u32);
        }
        Delivery::Seq(s) => {
            let data = frame.data_mut();
            TcpSegment::new_unchecked(&mut data[ETH + ihl..ETH + total]).set_seq_inc(s);
        }
        Delivery::Nothing => {}
    }
    Ok(())
}

/// The mode's entry (see [`super::transmit`]): inbound to the real server
/// from a local address, replies to the client from the VIP.
pub fn xmit<F: Frame>(
    frame: &mut F,
    c: &Conn,
    dir: Dir,
    eg: &Egress,
) -> Result<Ipv4Addr, XmitError> {
    if super::ttl_of(frame) <= 1 {
        return Err(XmitError::TtlExceeded);
    }
    let next = match dir {
        Dir::In => forward(frame, c, || eg.router.mtu_to(c.dip)).map(|_| c.dip),
        Dir::Out => reply(frame, c).map(|_| c.cip),
        Dir::InOnly => return Err(XmitError::Unsupported),
    };
    match next {
        Ok(next) => Ok(next),
        Err(FnatError::NoRoom) => Err(XmitError::NoRoom),
        Err(FnatError::Malformed(e)) => Err(XmitError::Malformed(e)),
        Err(FnatError::NotFullNat) => Err(XmitError::Unsupported),
    }
}

/// Real server to client.
pub fn reply<F: Frame>(frame: &mut F, c: &Conn) -> Result<(), FnatError> {
    let f: &Fnat = c.fnat.as_ref().ok_or(FnatError::NotFullNat)?;
    let (proto, ihl, total) = rewrite_ends(frame, (c.vip, c.vport), (c.cip, c.cport))?;
    if proto != IpProtocol::TCP || f.client_addr != ClientAddr::ProxyV2 {
        return Ok(());
    }
    let data = frame.data_mut();
    let (src, dst) = {
        let p = Ipv4Packet::new_unchecked(&data[ETH..ETH + total]);
        (p.src_addr(), p.dst_addr())
    };
    let mut t = TcpSegment::new_checked(&mut data[ETH + ihl..ETH + total])?;
    let options_changed = to_client(&mut t, f, PP2_LEN);
    if options_changed {
        t.fill_checksum(src, dst);
    }
    Ok(())
}
