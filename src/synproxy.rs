//! SYN proxy: the director answers a client's SYN itself with a SYN cookie
//! and opens the connection to a real server only once the client's ACK
//! proves the client exists (issue #8; DPVS's `ip_vs_synproxy.c` and Linux's
//! netfilter SYNPROXY do the same). A SYN flood then costs the director one
//! hash per SYN and no memory, and never reaches the servers.
//!
//! Everything here is pure packet logic over frames; the data path owns the
//! state and the decisions. Only NAT and FULLNAT can use it: the director must
//! see the server's packets to translate their sequence numbers.
//!
//! # How the data path uses it
//!
//! ```text
//!  client                     director                                server
//!  SYN ──────────▶ answer_syn: in place into a SYN-ACK
//!      ◀────────── (seq = cookie, window 0; nothing stored)
//!  ACK ──────────▶ check_ack -> CookieInfo. Schedule a server, create the
//!                  connection in state Pending(CookieInfo), then
//!                  syn_to_server: in place into the SYN (seq = client ISN)
//!                  ─ forwarding mode (NAT/FULLNAT forward) ──────────▶ SYN
//!                                                    SYN-ACK (server ISN) ◀
//!                  server_synack -> Established { adj }; state Proxied(adj)
//!                  write_server_ack: the SYN-ACK's frame into the ACK
//!                  ─ forwarding mode ─────────────────────────────────▶ ACK
//!      ◀────────── write_client_update (a new frame): opens the window
//! data ──────────▶ to_server(adj), forwarding mode ──────────────────▶
//!      ◀────────── to_client(adj) after the reverse forwarding mode ◀── data
//! ```
//!
//! Sequence spaces: client sequence numbers are the same on both sides (the
//! director gives the server the client's own ISN). The server's are not: the
//! client knows the cookie as the server's ISN, the server picked its own.
//! With `delta = server ISN - cookie` (mod 2^32), a server sequence number
//! `s` is `s - delta` for the client. So packets to the server get
//! `ack += delta` and every SACK edge `+= delta` (the client's SACK blocks
//! acknowledge server bytes); packets to the client get `seq -= delta` (the
//! server's SACK blocks acknowledge client bytes and stay as they are).
//!
//! The SYN-ACK to the client advertises a zero window, as Linux SYNPROXY does:
//! the client completes its handshake but sends no data until the director,
//! once the server has answered, sends it a window update. So the director
//! never has to hold client data, and the third ACK carries none.
//!
//! # The cookie
//!
//! ```text
//!  31                                  8   7   6       3   2   1   0
//! | MAC: 24 bits                        | t | wscale+1 | sack | mss  |
//! ```
//!
//! The low 7 bits carry the client's options, in the clear (they are the
//! client's own) but covered by the MAC: an index into [`MSS_TABLE`]
//! (the largest entry not above the client's MSS), SACK-permitted, and the
//! window scale plus one (0 when the client sent none). Bit 7 is the parity
//! of the 64-second time slot the cookie was made in. The MAC is SipHash-2-4,
//! keyed with a 128-bit secret, over the client and VIP addresses and ports,
//! the client's ISN, the full slot number and those options bits. A cookie is
//! valid during its slot and the next one (64 to 128 seconds). A forged ACK
//! passes with probability 2^-24.
//!
//! # Limits
//!
//! - IPv4 and IPv6 (the cookie's MAC covers either family's addresses;
//!   one MSS table serves both, so an IPv6 client's 1220 or 1420 reaches
//!   the server as 536 or 1300). Not across families (NAT64).
//! - Timestamps (RFC 7323) are not offered to either side, so connections run
//!   without PAWS and timestamp RTT samples. ECN is not negotiated. A SYN
//!   carrying data (TCP Fast Open with a cookie from before the proxy) is
//!   refused; the client retransmits its SYN (Linux without the data). TCP
//!   MD5 signatures and TCP-AO cannot pass: they cover sequence numbers.
//! - The client's MSS reaches the server rounded down to [`MSS_TABLE`] (below
//!   536 it becomes 536, as with Linux syncookies). The MSS announced to the
//!   client is the service's (`answer_syn`'s `mss`), not the server's.
//! - The director announces window scale [`WSCALE`] to clients that scale.
//!   The server's windows are rescaled on the way to the client (see
//!   [`SeqAdj`]); going from a smaller to a larger scale rounds them down by
//!   less than 2^WSCALE bytes. If the server does not scale while the client
//!   does, the client's windows are converted for it (capped at 65535).
//! - Data the client sends before the window opens (it should not) is lost
//!   with the third ACK's conversion into a SYN, or must be dropped by the
//!   data path while the connection is pending; the client retransmits it.
//! - ICMP errors about packets sent to the client quote client-space
//!   sequence numbers: `icmp_quote_to_server` fixes them for the server.
//! - The secret lives as long as the process (or is shared by configuration
//!   between directors behind ECMP): handshakes in flight across a restart
//!   fail.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};

use crate::io::Frame;
use crate::wire::ipv4::DEFAULT_TTL;
use crate::wire::ipv6::{l4_checksum_v6, next_header, Ipv6Packet};
use crate::wire::tcp::DEFAULT_MSS;
use crate::wire::{
    EtherType, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpFlags, TcpSegment, WireError,
};

use crate::wire::tcp::{opt, OptionsEnd, TcpOptions};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

/// Client MSS values a cookie can carry (Linux's `msstab`).
pub const MSS_TABLE: [u16; 4] = [DEFAULT_MSS, 1300, 1440, 1460];
/// Window scale the director announces to clients that offer scaling.
pub const WSCALE: u8 = 7;
/// Length of a cookie time slot.
pub const SLOT_MS: u64 = 64_000;
/// RFC 7323: larger shifts are treated as 14.
const MAX_WSCALE: u8 = 14;

/// Why a packet was not accepted or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Malformed(WireError),
    /// Not a TCP packet (IPv4 or IPv6, not a fragment).
    NotTcp,
    /// `answer_syn`: not a SYN without ACK, RST and FIN.
    NotSyn,
    /// `answer_syn`: the SYN carries data.
    SynPayload,
    /// `answer_syn`: malformed TCP options (bad length, truncated option).
    BadOptions,
    /// `check_ack`: not an ACK without SYN, RST and FIN.
    NotAck,
    /// `check_ack`: the acknowledgement is not a valid cookie for this flow.
    BadCookie,
    /// `server_synack`: neither a SYN-ACK nor a reset.
    NotSynAck,
    /// `server_synack`: the server reset the connection.
    Refused,
    /// `server_synack`: the server acknowledges something else than our SYN.
    BadAck,
    /// The frame has no room for the packet to write.
    NoRoom,
}

impl From<WireError> for Reject {
    fn from(e: WireError) -> Self {
        Reject::Malformed(e)
    }
}

impl Reject {
    /// Stable short name, usable as a counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed(_) => "malformed",
            Reject::NotTcp => "not_tcp",
            Reject::NotSyn => "not_syn",
            Reject::SynPayload => "syn_payload",
            Reject::BadOptions => "bad_options",
            Reject::NotAck => "not_ack",
            Reject::BadCookie => "bad_cookie",
            Reject::NotSynAck => "not_synack",
            Reject::Refused => "refused",
            Reject::BadAck => "bad_ack",
            Reject::NoRoom => "no_room",
        }
    }
}

/// The secret of the cookie MAC. One per director (or shared by directors
/// that must accept each other's cookies).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SynKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for SynKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SynKey(..)")
    }
}

impl SynKey {
    pub const fn new(k0: u64, k1: u64) -> Self {
        SynKey { k0, k1 }
    }

    /// A fresh secret from the kernel's random source.
    /// A key from 32 hex digits (rvsd's `synproxy_secret`).
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("synproxy_secret: 32 hex digits (16 bytes)".into());
        }
        let word = |h: &str| u64::from_str_radix(h, 16).map_err(|e| e.to_string());
        Ok(SynKey::new(word(&s[..16])?, word(&s[16..])?))
    }

    pub fn random() -> std::io::Result<Self> {
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        let (lo, hi) = b.split_at(8);
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        Ok(SynKey::new(word(lo), word(hi)))
    }
}

/// SipHash-2-4, the keyed hash of the cookie MAC.
fn siphash24(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    crate::siphash::siphash::<2, 4>(k0, k1, msg)
}

/// The client's SYN options a cookie carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOpts {
    /// The client's MSS, rounded down to [`MSS_TABLE`].
    pub mss: u16,
    /// The client's window scale (at most 14), if it offered scaling.
    pub wscale: Option<u8>,
    /// The client offered SACK.
    pub sack_ok: bool,
}

/// Index of the largest [`MSS_TABLE`] entry not above `mss` (0 below all).
pub fn mss_index(mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0)
}

impl CookieOpts {
    /// The 7 option bits of a cookie; also returns the options as encoded.
    fn encode(&self) -> (u32, CookieOpts) {
        let i = mss_index(self.mss);
        let ws = self.wscale.map(|w| w.min(MAX_WSCALE));
        let bits =
            i as u32 | (u32::from(self.sack_ok) << 2) | (ws.map_or(0, |w| u32::from(w) + 1) << 3);
        let opts = CookieOpts {
            mss: MSS_TABLE[i],
            wscale: ws,
            sack_ok: self.sack_ok,
        };
        (bits, opts)
    }

    /// Every 7-bit value decodes (window scale code 15 is 14).
    fn decode(bits: u32) -> CookieOpts {
        CookieOpts {
            mss: MSS_TABLE[(bits & 3) as usize],
            wscale: ((bits >> 3) & 0xf).checked_sub(1).map(|w| w as u8),
            sack_ok: bits & 4 != 0,
        }
    }
}

fn slot(now_ms: u64) -> u32 {
    (now_ms / SLOT_MS) as u32
}

/// The 24-bit MAC of a cookie: over the addresses (4 bytes each for IPv4,
/// 16 for IPv6), the ports, the client's ISN, the slot and the option bits.
fn mac(key: &SynKey, client: SocketAddr, vip: SocketAddr, isn: u32, slot: u32, bits: u32) -> u32 {
    let mut m = [0u8; 45];
    let mut n = 0;
    for a in [client.ip(), vip.ip()] {
        match a {
            IpAddr::V4(a) => {
                m[n..n + 4].copy_from_slice(&a.octets());
                n += 4;
            }
            IpAddr::V6(a) => {
                m[n..n + 16].copy_from_slice(&a.octets());
                n += 16;
            }
        }
    }
    m[n..n + 2].copy_from_slice(&client.port().to_be_bytes());
    m[n + 2..n + 4].copy_from_slice(&vip.port().to_be_bytes());
    m[n + 4..n + 8].copy_from_slice(&isn.to_be_bytes());
    m[n + 8..n + 12].copy_from_slice(&slot.to_be_bytes());
    m[n + 12] = bits as u8;
    (siphash24(key.k0, key.k1, &m[..n + 13]) >> 40) as u32
}

/// The cookie (the director's ISN) for a client SYN `client -> vip` with
/// sequence number `client_isn`, and the options as the cookie encodes them.
pub fn make_cookie(
    key: &SynKey,
    client: impl Into<SocketAddr>,
    vip: impl Into<SocketAddr>,
    client_isn: u32,
    opts: &CookieOpts,
    now_ms: u64,
) -> (u32, CookieOpts) {
    let (client, vip) = (client.into(), vip.into());
    let (bits, enc) = opts.encode();
    let s = slot(now_ms);
    let low = ((s & 1) << 7) | bits;
    ((mac(key, client, vip, client_isn, s, low) << 8) | low, enc)
}

/// The options of `cookie` if it is valid for this flow and client ISN, made
/// in the current time slot or the previous one.
pub fn check_cookie(
    key: &SynKey,
    client: impl Into<SocketAddr>,
    vip: impl Into<SocketAddr>,
    client_isn: u32,
    cookie: u32,
    now_ms: u64,
) -> Option<CookieOpts> {
    let (client, vip) = (client.into(), vip.into());
    let now = slot(now_ms);
    let low = cookie & 0xff;
    let s = if low >> 7 == now & 1 {
        now
    } else {
        now.checked_sub(1)?
    };
    (mac(key, client, vip, client_isn, s, low) == cookie >> 8)
        .then(|| CookieOpts::decode(low & 0x7f))
}

/// A validated third ACK: what the data path keeps while the connection to
/// the server is being opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieInfo {
    /// The client's ISN (the ACK's sequence number - 1).
    pub client_isn: u32,
    /// The director's ISN towards the client (the ACK's acknowledgement - 1).
    pub cookie: u32,
    pub opts: CookieOpts,
    /// The window of the client's ACK (scaled by the client's shift).
    pub window: u16,
    /// Bytes of data on the ACK (0 unless the client ignored the zero
    /// window); they are not forwarded.
    pub payload_len: u16,
}

impl CookieInfo {
    /// Rebuild the info from what a connection stores: the options are in
    /// the cookie's low bits (valid for a cookie `check_ack` accepted).
    pub fn from_stored(client_isn: u32, cookie: u32, window: u16) -> Self {
        CookieInfo {
            client_isn,
            cookie,
            opts: CookieOpts::decode(cookie & 0x7f),
            window,
            payload_len: 0,
        }
    }
}

/// How packets of an established proxied connection are translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqAdj {
    /// Server ISN - cookie: added to acknowledgements and SACK edges towards
    /// the server, subtracted from sequence numbers towards the client.
    pub delta: u32,
    /// Left shift (capped at 65535) of client windows for the server: the
    /// client's scale when the client scales and the server does not, else 0.
    pub c2s_shift: u8,
    /// Shift of server windows for the client: the server's scale minus the
    /// scale the director announced to the client (left when positive,
    /// capped at 65535; right when negative).
    pub s2c_shift: i8,
}

impl SeqAdj {
    /// Packed into a u64, for an atomic in the connection.
    pub const fn to_bits(self) -> u64 {
        self.delta as u64 | ((self.c2s_shift as u64) << 32) | ((self.s2c_shift as u8 as u64) << 40)
    }

    pub const fn from_bits(b: u64) -> Self {
        SeqAdj {
            delta: b as u32,
            c2s_shift: (b >> 32) as u8,
            s2c_shift: (b >> 40) as u8 as i8,
        }
    }
}

/// The server's answer to the director's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Established {
    pub server_isn: u32,
    /// The window of the server's SYN-ACK (never scaled).
    pub server_window: u16,
    pub adj: SeqAdj,
}

/// Addresses and ports of the Ethernet frame's TCP packet (IPv4, or IPv6
/// after its extension headers), and where its TCP segment lies.
struct Located {
    src: SocketAddr,
    dst: SocketAddr,
    tcp: std::ops::Range<usize>,
}

fn locate(data: &[u8]) -> Result<Located, Reject> {
    let l3 = data.get(ETH..).ok_or(WireError::EthTruncated)?;
    if EthernetFrame::new_unchecked(&data[..ETH]).ethertype() == EtherType::IPV6 {
        let ip = Ipv6Packet::new_checked(l3)?;
        let ul = ip.upper_layer()?;
        if ul.proto.0 != next_header::TCP || ul.fragment.is_some() {
            return Err(Reject::NotTcp);
        }
        let tcp = ETH + ul.offset..ETH + ip.packet().len();
        let t = TcpSegment::new_checked(&data[tcp.clone()])?;
        return Ok(Located {
            src: SocketAddr::new(IpAddr::V6(ip.src()), t.src_port()),
            dst: SocketAddr::new(IpAddr::V6(ip.dst()), t.dst_port()),
            tcp,
        });
    }
    let ip = Ipv4Packet::new_checked(l3)?;
    if ip.protocol() != IpProtocol::TCP {
        return Err(Reject::NotTcp);
    }
    let (ihl, total) = (ip.header_len(), usize::from(ip.total_len()));
    let t = TcpSegment::new_checked(ip.payload())?;
    Ok(Located {
        src: SocketAddr::new(IpAddr::V4(ip.src_addr()), t.src_port()),
        dst: SocketAddr::new(IpAddr::V4(ip.dst_addr()), t.dst_port()),
        tcp: ETH + ihl..ETH + total,
    })
}

/// Options of a SYN, or None when malformed.
fn syn_options(o: &[u8]) -> Option<(Option<u16>, Option<u8>, bool)> {
    let (mut mss, mut ws, mut sack) = (None, None, false);
    let mut it = TcpOptions::new(o);
    for x in it.by_ref() {
        let v = x.value(o);
        match (x.kind, x.len) {
            (opt::MSS, 4) => mss = Some(u16::from_be_bytes([v[0], v[1]])),
            (opt::WSCALE, 3) => ws = Some(v[0].min(MAX_WSCALE)),
            (opt::SACK_PERMITTED, 2) => sack = true,
            (opt::MSS..=opt::SACK_PERMITTED, _) => return None,
            _ => {}
        }
    }
    // After the end-of-list option only padding may follow; a malformed
    // option refuses the SYN.
    match it.stop() {
        OptionsEnd::Clean => Some((mss, ws, sack)),
        OptionsEnd::Malformed(_) => None,
    }
}

/// Options of a SYN or SYN-ACK: MSS, then SACK-permitted and window scale
/// when set, NOP-aligned as Linux lays them out.
fn handshake_options(mss: u16, wscale: Option<u8>, sack: bool) -> ([u8; 12], usize) {
    let mut o = [0u8; 12];
    let m = mss.to_be_bytes();
    o[..4].copy_from_slice(&[2, 4, m[0], m[1]]);
    let mut n = 4;
    if sack {
        o[n..n + 4].copy_from_slice(&[1, 1, 4, 2]);
        n += 4;
    }
    if let Some(w) = wscale {
        o[n..n + 4].copy_from_slice(&[1, 3, 3, w]);
        n += 4;
    }
    (o, n)
}

/// A TCP segment the director writes.
struct Out<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    options: &'a [u8],
}

/// Make `frame` an Ethernet frame holding exactly `s` (padded to 60 bytes):
/// a fresh IPv4 header (no options, DF, TTL [`DEFAULT_TTL`]) or IPv6 one
/// (hop limit [`DEFAULT_TTL`], no extension headers), by `s`'s family, and
/// TCP header, full checksums. The MAC addresses already in the frame are
/// kept.
fn write_segment<F: Frame>(frame: &mut F, s: &Out) -> Result<(), Reject> {
    let ip_len = if s.src.is_ipv6() { 40 } else { 20 };
    let tcp_len = 20 + s.options.len();
    let total = ip_len + tcp_len;
    let len = (ETH + total).max(EthernetFrame::<&[u8]>::MIN_LEN);
    let have = frame.data().len();
    if have < len {
        if !frame.append(len - have) {
            return Err(Reject::NoRoom);
        }
    } else {
        frame.truncate(len);
    }
    let data = frame.data_mut();
    data[ETH..].fill(0);
    let (eth, rest) = data.split_at_mut(ETH);
    let (ip, tcp) = rest[..total].split_at_mut(ip_len);
    tcp[20..].copy_from_slice(s.options);
    let mut t = TcpSegment::new_unchecked(&mut *tcp);
    t.set_src_port(s.src.port());
    t.set_dst_port(s.dst.port());
    t.set_seq(s.seq);
    t.set_ack(s.ack);
    t.set_header_len(tcp_len);
    t.set_flags(s.flags);
    t.set_window(s.window);
    match (s.src.ip(), s.dst.ip()) {
        (IpAddr::V4(saddr), IpAddr::V4(daddr)) => {
            EthernetFrame::new_unchecked(eth).set_ethertype(EtherType::IPV4);
            let mut p = Ipv4Packet::new_unchecked(ip);
            p.set_header_len(20);
            p.set_total_len(total as u16);
            p.set_dont_frag(true);
            p.set_ttl(DEFAULT_TTL);
            p.set_protocol(IpProtocol::TCP);
            p.set_src_addr(saddr);
            p.set_dst_addr(daddr);
            p.fill_checksum();
            t.fill_checksum(saddr, daddr);
        }
        (IpAddr::V6(saddr), IpAddr::V6(daddr)) => {
            EthernetFrame::new_unchecked(eth).set_ethertype(EtherType::IPV6);
            let mut p = Ipv6Packet::new_unchecked(ip);
            p.fill_header(0, tcp_len as u16, next_header::TCP, DEFAULT_TTL);
            p.set_src(saddr);
            p.set_dst(daddr);
            let sum = l4_checksum_v6(saddr, daddr, next_header::TCP, tcp);
            TcpSegment::new_unchecked(tcp).set_checksum(sum);
        }
        // Both ends of a segment are of one family.
        _ => return Err(Reject::NotTcp),
    }
    Ok(())
}

/// Turn a client's SYN to a VIP, in place, into the director's SYN-ACK:
/// Ethernet, IP and port ends swapped, sequence number = the cookie,
/// acknowledgement = client ISN + 1, window 0, options MSS `mss` (the
/// service's; lower it by the PROXY header length for PROXY v2 services) and
/// SACK-permitted and window scale [`WSCALE`] if the client offered them.
/// Ready to send back out of the port it came in on.
pub fn answer_syn<F: Frame>(
    frame: &mut F,
    key: &SynKey,
    mss: u16,
    now_ms: u64,
) -> Result<(), Reject> {
    let l = locate(frame.data())?;
    let data = frame.data();
    let t = TcpSegment::new_unchecked(&data[l.tcp.clone()]);
    let f = t.flags();
    if !f.syn() || f.ack() || f.rst() || f.fin() {
        return Err(Reject::NotSyn);
    }
    if !t.payload().is_empty() {
        return Err(Reject::SynPayload);
    }
    let (cmss, ws, sack_ok) = syn_options(t.options()).ok_or(Reject::BadOptions)?;
    let client_isn = t.seq();
    let asked = CookieOpts {
        mss: cmss.unwrap_or(DEFAULT_MSS),
        wscale: ws,
        sack_ok,
    };
    let (cookie, _) = make_cookie(key, l.src, l.dst, client_isn, &asked, now_ms);
    let (o, n) = handshake_options(mss, ws.map(|_| WSCALE), sack_ok);
    {
        let mut e = EthernetFrame::new_unchecked(&mut frame.data_mut()[..ETH]);
        let (src, dst) = (e.src(), e.dst());
        e.set_src(dst);
        e.set_dst(src);
    }
    write_segment(
        frame,
        &Out {
            src: l.dst,
            dst: l.src,
            seq: cookie,
            ack: client_isn.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: 0,
            options: &o[..n],
        },
    )
}

/// Validate a client's packet to a VIP with no connection as the ACK that
/// completes a cookie handshake: its acknowledgement - 1 must be a valid
/// cookie for its flow and sequence number - 1.
pub fn check_ack<F: Frame>(frame: &F, key: &SynKey, now_ms: u64) -> Result<CookieInfo, Reject> {
    let data = frame.data();
    let l = locate(data)?;
    let t = TcpSegment::new_unchecked(&data[l.tcp]);
    let f = t.flags();
    if !f.ack() || f.syn() || f.rst() || f.fin() {
        return Err(Reject::NotAck);
    }
    let mut client_isn = t.seq().wrapping_sub(1);
    let cookie = t.ack().wrapping_sub(1);
    let mut opts = check_cookie(key, l.src, l.dst, client_isn, cookie, now_ms);
    if opts.is_none() && t.payload().is_empty() {
        // A zero-window probe carries seq = snd_una - 1 = the client's
        // ISN: the client whose third ACK was lost (or whose connection
        // could not be kept) is still waiting for its window to open.
        client_isn = t.seq();
        opts = check_cookie(key, l.src, l.dst, client_isn, cookie, now_ms);
    }
    let opts = opts.ok_or(Reject::BadCookie)?;
    Ok(CookieInfo {
        client_isn,
        cookie,
        opts,
        window: t.window(),
        payload_len: t.payload().len() as u16,
    })
}

/// Turn a client's packet of the flow (the third ACK, or any later one while
/// the connection is pending, to send the SYN again), in place, into the SYN
/// the server must get: still client -> VIP, sequence number = client ISN,
/// the client's MSS (as the cookie rounded it), SACK-permitted and window
/// scale. For the forwarding mode, like a client's SYN; not for `to_server`.
pub fn syn_to_server<F: Frame>(frame: &mut F, info: &CookieInfo) -> Result<(), Reject> {
    let l = locate(frame.data())?;
    let o = &info.opts;
    let shift = o.wscale.unwrap_or(0);
    let window = (u32::from(info.window) << shift).min(0xffff) as u16;
    let (opts, n) = handshake_options(o.mss, o.wscale, o.sack_ok);
    write_segment(
        frame,
        &Out {
            src: l.src,
            dst: l.dst,
            seq: info.client_isn,
            ack: 0,
            flags: TcpFlags::SYN,
            window,
            options: &opts[..n],
        },
    )
}

/// Check the server's answer to the director's SYN (as received, or after
/// the reverse forwarding mode: only TCP fields are read) and work out the
/// translation. `Refused` is a reset acknowledging our SYN: tell the client
/// with `write_client_rst`.
pub fn server_synack<F: Frame>(frame: &F, info: &CookieInfo) -> Result<Established, Reject> {
    let data = frame.data();
    let l = locate(data)?;
    let t = TcpSegment::new_unchecked(&data[l.tcp]);
    let f = t.flags();
    let ours = f.ack() && t.ack() == info.client_isn.wrapping_add(1);
    if f.rst() {
        return Err(if ours {
            Reject::Refused
        } else {
            Reject::BadAck
        });
    }
    if !f.syn() || !f.ack() {
        return Err(Reject::NotSynAck);
    }
    if !ours {
        return Err(Reject::BadAck);
    }
    let offered = TcpOptions::new(t.options())
        .find(|x| x.kind == opt::WSCALE && x.len == 3)
        .map(|x| x.value(t.options())[0].min(MAX_WSCALE));
    // Scaling is on between client and director iff the client offered it
    // (the director answered with WSCALE), and between director and server
    // iff the director's SYN (which carries the client's scale) and the
    // server's SYN-ACK both offer it.
    let client_ws = info.opts.wscale;
    let server_ws = client_ws.and(offered);
    let c2s_shift = match (client_ws, server_ws) {
        (Some(c), None) => c,
        _ => 0,
    };
    let ours = if client_ws.is_some() { WSCALE } else { 0 };
    let server_isn = t.seq();
    Ok(Established {
        server_isn,
        server_window: t.window(),
        adj: SeqAdj {
            delta: server_isn.wrapping_sub(info.cookie),
            c2s_shift,
            s2c_shift: server_ws.unwrap_or(0) as i8 - ours as i8,
        },
    })
}

/// Overwrite `frame` with the ACK completing the server's handshake, in the
/// client's addressing (`client` -> `vip`) and already in the server's
/// sequence space (ack = server ISN + 1): for the forwarding mode (which
/// adds TOA for FULLNAT), not for `to_server`.
pub fn write_server_ack<F: Frame>(
    frame: &mut F,
    client: impl Into<SocketAddr>,
    vip: impl Into<SocketAddr>,
    info: &CookieInfo,
    est: &Established,
) -> Result<(), Reject> {
    write_segment(
        frame,
        &Out {
            src: client.into(),
            dst: vip.into(),
            seq: info.client_isn.wrapping_add(1),
            ack: est.server_isn.wrapping_add(1),
            flags: TcpFlags::ACK,
            window: shift_window(info.window, est.adj.c2s_shift as i8),
            options: &[],
        },
    )
}

/// Overwrite `frame` (e.g. an empty one from the pool) with the window
/// update that lets the client send: `vip` -> `client`, seq = cookie + 1,
/// ack = client ISN + 1, the server's SYN-ACK window in the client's scale.
/// Ready to route to the client (the MAC addresses are left to the caller).
pub fn write_client_update<F: Frame>(
    frame: &mut F,
    client: impl Into<SocketAddr>,
    vip: impl Into<SocketAddr>,
    info: &CookieInfo,
    est: &Established,
) -> Result<(), Reject> {
    let ours = if info.opts.wscale.is_some() {
        WSCALE
    } else {
        0
    };
    write_segment(
        frame,
        &Out {
            src: vip.into(),
            dst: client.into(),
            seq: info.cookie.wrapping_add(1),
            ack: info.client_isn.wrapping_add(1),
            flags: TcpFlags::ACK,
            // A small window must not round down to a closed one.
            window: match shift_window(est.server_window, -(ours as i8)) {
                0 if est.server_window > 0 => 1,
                w => w,
            },
            options: &[],
        },
    )
}

/// Overwrite `frame` with a reset for the client (`vip` -> `client`, seq =
/// cookie + 1): the server refused, or no connection could be opened for
/// the client's ACK.
pub fn write_client_rst<F: Frame>(
    frame: &mut F,
    client: impl Into<SocketAddr>,
    vip: impl Into<SocketAddr>,
    info: &CookieInfo,
) -> Result<(), Reject> {
    write_segment(
        frame,
        &Out {
            src: vip.into(),
            dst: client.into(),
            seq: info.cookie.wrapping_add(1),
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            options: &[],
        },
    )
}

/// `w` shifted left (capped at 65535) or right.
fn shift_window(w: u16, shift: i8) -> u16 {
    if shift >= 0 {
        (u32::from(w) << shift.min(16)).min(0xffff) as u16
    } else {
        w >> (-i16::from(shift)).min(15)
    }
}

/// Translate a client's packet of an established proxied connection for the
/// server: ack += delta, SACK edges += delta, window per `c2s_shift`.
/// Incremental checksum updates. Before or after the forwarding mode.
pub fn to_server<F: Frame>(frame: &mut F, adj: &SeqAdj) -> Result<(), Reject> {
    let l = locate(frame.data())?;
    let mut t = TcpSegment::new_unchecked(&mut frame.data_mut()[l.tcp]);
    let f = t.flags();
    if f.ack() {
        let ack = t.ack().wrapping_add(adj.delta);
        t.set_ack_inc(ack);
    }
    if adj.c2s_shift != 0 && !f.syn() {
        let w = shift_window(t.window(), adj.c2s_shift as i8);
        t.set_window_inc(w);
    }
    if adj.delta != 0 {
        t.map_sack_edges(|e| e.wrapping_add(adj.delta));
    }
    Ok(())
}

/// Translate a server's packet of an established proxied connection for the
/// client: seq -= delta, window per `s2c_shift` (SACK edges refer to client
/// bytes and stay). Incremental checksum updates. Before or after the
/// reverse forwarding mode.
pub fn to_client<F: Frame>(frame: &mut F, adj: &SeqAdj) -> Result<(), Reject> {
    let l = locate(frame.data())?;
    let mut t = TcpSegment::new_unchecked(&mut frame.data_mut()[l.tcp]);
    let seq = t.seq().wrapping_sub(adj.delta);
    t.set_seq_inc(seq);
    if adj.s2c_shift != 0 && !t.flags().syn() {
        let w = shift_window(t.window(), adj.s2c_shift);
        t.set_window_inc(w);
    }
    Ok(())
}

/// An ICMP error about a packet the director sent to the client (such as
/// "fragmentation needed" from a router on the client's path), on its way to
/// the server: the quoted TCP sequence number is in the client's space and
/// the server checks it against its own, so it gets `+ delta`. `ip` is the
/// ICMP error's IPv4 packet; the ICMP checksum is recomputed (as
/// `icmp::rewrite_error` does). Errors quoting anything else are left alone.
pub fn icmp_quote_to_server(ip: &mut [u8], adj: &SeqAdj) -> Result<(), Reject> {
    let mut outer = Ipv4Packet::new_checked(ip)?;
    if outer.protocol() != IpProtocol::ICMP {
        return Err(Reject::NotTcp);
    }
    let mut ic = Icmpv4Packet::new_checked(outer.payload_mut())?;
    {
        let mut inner = Ipv4Packet::new_checked_truncated(ic.payload_mut())?;
        if inner.protocol() != IpProtocol::TCP {
            return Err(Reject::NotTcp);
        }
        let l4 = inner.payload_mut();
        if l4.len() < 8 {
            return Err(Reject::Malformed(WireError::TcpTruncated));
        }
        let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]).wrapping_add(adj.delta);
        l4[4..8].copy_from_slice(&seq.to_be_bytes());
    }
    ic.fill_checksum();
    Ok(())
}

/// [`icmp_quote_to_server`] for an ICMPv6 error: `msg` is the ICMPv6
/// message, quoting the director's IPv6 packet to the client (no extension
/// headers: the director writes none). The caller computes the ICMPv6
/// checksum again (`xmit::v6::rewrite_error` does).
pub fn icmp6_quote_to_server(msg: &mut [u8], adj: &SeqAdj) -> Result<(), Reject> {
    let q = msg
        .get_mut(8..)
        .ok_or(Reject::Malformed(WireError::Ipv6Truncated))?;
    if q.len() < 40 + 8 {
        return Err(Reject::Malformed(WireError::TcpTruncated));
    }
    if q[6] != next_header::TCP {
        return Err(Reject::NotTcp);
    }
    let seq = u32::from_be_bytes([q[44], q[45], q[46], q[47]]).wrapping_add(adj.delta);
    q[44..48].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
