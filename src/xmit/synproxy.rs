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
//! - IPv4 only.
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
use std::net::SocketAddrV4;

use crate::io::Frame;
use crate::wire::{
    EtherType, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpFlags, TcpSegment, WireError,
};

use super::fullnat::{map_sack, options};

const ETH: usize = EthernetFrame::<&[u8]>::HEADER_LEN;

/// Client MSS values a cookie can carry (Linux's `msstab`).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
/// Window scale the director announces to clients that offer scaling.
pub const WSCALE: u8 = 7;
/// Length of a cookie time slot.
pub const SLOT_MS: u64 = 64_000;
/// TTL of the packets the director writes.
pub const TTL: u8 = 64;
/// RFC 7323: larger shifts are treated as 14.
const MAX_WSCALE: u8 = 14;
/// MSS assumed when a SYN has none (RFC 9293).
const DEFAULT_MSS: u16 = 536;

/// Why a packet was not accepted or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Malformed(WireError),
    /// Not an IPv4 TCP packet.
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

/// The 24-bit MAC of a cookie.
fn mac(
    key: &SynKey,
    client: SocketAddrV4,
    vip: SocketAddrV4,
    isn: u32,
    slot: u32,
    bits: u32,
) -> u32 {
    let mut m = [0u8; 21];
    m[0..4].copy_from_slice(&client.ip().octets());
    m[4..8].copy_from_slice(&vip.ip().octets());
    m[8..10].copy_from_slice(&client.port().to_be_bytes());
    m[10..12].copy_from_slice(&vip.port().to_be_bytes());
    m[12..16].copy_from_slice(&isn.to_be_bytes());
    m[16..20].copy_from_slice(&slot.to_be_bytes());
    m[20] = bits as u8;
    (siphash24(key.k0, key.k1, &m) >> 40) as u32
}

/// The cookie (the director's ISN) for a client SYN `client -> vip` with
/// sequence number `client_isn`, and the options as the cookie encodes them.
pub fn make_cookie(
    key: &SynKey,
    client: SocketAddrV4,
    vip: SocketAddrV4,
    client_isn: u32,
    opts: &CookieOpts,
    now_ms: u64,
) -> (u32, CookieOpts) {
    let (bits, enc) = opts.encode();
    let s = slot(now_ms);
    let low = ((s & 1) << 7) | bits;
    ((mac(key, client, vip, client_isn, s, low) << 8) | low, enc)
}

/// The options of `cookie` if it is valid for this flow and client ISN, made
/// in the current time slot or the previous one.
pub fn check_cookie(
    key: &SynKey,
    client: SocketAddrV4,
    vip: SocketAddrV4,
    client_isn: u32,
    cookie: u32,
    now_ms: u64,
) -> Option<CookieOpts> {
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

/// Addresses and ports of the Ethernet frame's IPv4 TCP packet, and where
/// its TCP segment lies in the frame.
struct Located {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    tcp: std::ops::Range<usize>,
}

fn locate(data: &[u8]) -> Result<Located, Reject> {
    let ip = Ipv4Packet::new_checked(data.get(ETH..).ok_or(WireError::EthTruncated)?)?;
    if ip.protocol() != IpProtocol::TCP {
        return Err(Reject::NotTcp);
    }
    let (ihl, total) = (ip.header_len(), usize::from(ip.total_len()));
    let t = TcpSegment::new_checked(ip.payload())?;
    Ok(Located {
        src: SocketAddrV4::new(ip.src_addr(), t.src_port()),
        dst: SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
        tcp: ETH + ihl..ETH + total,
    })
}

/// Options of a SYN, or None when malformed.
fn syn_options(o: &[u8]) -> Option<(Option<u16>, Option<u8>, bool)> {
    let (list, n) = options(o);
    // `options` stops at the end-of-list option or at a malformed one: only
    // NOPs and then the end or an end-of-list may follow what it parsed.
    let end = list[..n].last().map_or(0, |&(_, at, len)| at + len);
    if let Some(&b) = o[end..].iter().find(|&&b| b != 1) {
        if b != 0 {
            return None;
        }
    }
    let (mut mss, mut ws, mut sack) = (None, None, false);
    for &(kind, at, len) in &list[..n] {
        match (kind, len) {
            (2, 4) => mss = Some(u16::from_be_bytes([o[at + 2], o[at + 3]])),
            (3, 3) => ws = Some(o[at + 2].min(MAX_WSCALE)),
            (4, 2) => sack = true,
            (2..=4, _) => return None,
            _ => {}
        }
    }
    Some((mss, ws, sack))
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
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    options: &'a [u8],
}

/// Make `frame` an Ethernet frame holding exactly `s` (padded to 60 bytes):
/// a fresh IPv4 header (no options, DF, TTL [`TTL`]) and TCP header, full
/// checksums. The MAC addresses already in the frame are kept.
fn write_segment<F: Frame>(frame: &mut F, s: &Out) -> Result<(), Reject> {
    let total = 40 + s.options.len();
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
    EthernetFrame::new_unchecked(&mut data[..ETH]).set_ethertype(EtherType::IPV4);
    data[ETH..].fill(0);
    let (ip, tcp) = data[ETH..ETH + total].split_at_mut(20);
    let (saddr, daddr) = (*s.src.ip(), *s.dst.ip());
    let mut p = Ipv4Packet::new_unchecked(ip);
    p.set_header_len(20);
    p.set_total_len(total as u16);
    p.set_dont_frag(true);
    p.set_ttl(TTL);
    p.set_protocol(IpProtocol::TCP);
    p.set_src_addr(saddr);
    p.set_dst_addr(daddr);
    p.fill_checksum();
    tcp[20..].copy_from_slice(s.options);
    let mut t = TcpSegment::new_unchecked(tcp);
    t.set_src_port(s.src.port());
    t.set_dst_port(s.dst.port());
    t.set_seq(s.seq);
    t.set_ack(s.ack);
    t.set_header_len(20 + s.options.len());
    t.set_flags(s.flags);
    t.set_window(s.window);
    t.fill_checksum(saddr, daddr);
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
    let (list, n) = options(t.options());
    let offered = list[..n]
        .iter()
        .find(|&&(kind, _, len)| kind == 3 && len == 3)
        .map(|&(_, at, _)| t.options()[at + 2].min(MAX_WSCALE));
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
    client: SocketAddrV4,
    vip: SocketAddrV4,
    info: &CookieInfo,
    est: &Established,
) -> Result<(), Reject> {
    write_segment(
        frame,
        &Out {
            src: client,
            dst: vip,
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
    client: SocketAddrV4,
    vip: SocketAddrV4,
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
            src: vip,
            dst: client,
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
    client: SocketAddrV4,
    vip: SocketAddrV4,
    info: &CookieInfo,
) -> Result<(), Reject> {
    write_segment(
        frame,
        &Out {
            src: vip,
            dst: client,
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
        map_sack(&mut t, |e| e.wrapping_add(adj.delta));
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::io::VecFrame;
    use crate::wire::{checksum, MacAddr, PacketBuilder, XorShift};

    const KEY: SynKey = SynKey::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
    const CMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0c]);
    const DMAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0d]);
    const NOW: u64 = 1_000 * SLOT_MS + 1234;
    const ISN: u32 = 0xffff_fff0;

    fn client() -> SocketAddrV4 {
        "192.0.2.7:40001".parse().unwrap()
    }
    fn vip() -> SocketAddrV4 {
        "10.0.0.100:80".parse().unwrap()
    }
    fn rip() -> SocketAddrV4 {
        "10.0.1.11:8080".parse().unwrap()
    }

    /// A TCP frame `src` -> `dst`.
    fn tcp(src: SocketAddrV4, dst: SocketAddrV4) -> PacketBuilder {
        PacketBuilder::new()
            .eth(CMAC, DMAC)
            .ipv4(*src.ip(), *dst.ip())
            .tcp(src.port(), dst.port())
    }

    /// Client SYN with MSS 1460, SACK-permitted, timestamps, window scale 7.
    const LINUX_SYN_OPTS: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    fn syn(opts: &[u8]) -> VecFrame {
        VecFrame::from_bytes(
            &tcp(client(), vip())
                .flags(TcpFlags::SYN)
                .seq(ISN)
                .window(64240)
                .tcp_options(opts)
                .build(),
        )
    }

    /// The TCP fields of a frame whose IPv4 and TCP checksums verify.
    #[derive(Debug, PartialEq)]
    struct Seg {
        src: SocketAddrV4,
        dst: SocketAddrV4,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
        options: Vec<u8>,
        payload: Vec<u8>,
    }

    fn seg(frame: &[u8]) -> Seg {
        let e = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(e.ethertype(), EtherType::IPV4);
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert_eq!(ip.protocol(), IpProtocol::TCP);
        let t = TcpSegment::new_checked(ip.payload()).unwrap();
        // Independent check: recompute from scratch.
        let mut copy = ip.payload().to_vec();
        copy[16] = 0;
        copy[17] = 0;
        let want = checksum::l4_checksum_v4(ip.src_addr(), ip.dst_addr(), 6, &copy);
        assert_eq!(t.checksum(), want, "TCP checksum");
        Seg {
            src: SocketAddrV4::new(ip.src_addr(), t.src_port()),
            dst: SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
            seq: t.seq(),
            ack: t.ack(),
            flags: t.flags(),
            window: t.window(),
            options: t.options().to_vec(),
            payload: t.payload().to_vec(),
        }
    }

    fn macs(frame: &[u8]) -> (MacAddr, MacAddr) {
        let e = EthernetFrame::new_checked(frame).unwrap();
        (e.src(), e.dst())
    }

    /// The client's SYN answered, and its third ACK: (cookie, the ACK frame).
    fn handshake(opts: &[u8]) -> (u32, VecFrame) {
        let mut f = syn(opts);
        answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
        let cookie = seg(f.data()).seq;
        let ack = tcp(client(), vip())
            .flags(TcpFlags::ACK)
            .seq(ISN.wrapping_add(1))
            .ack(cookie.wrapping_add(1))
            .window(502)
            .build();
        (cookie, VecFrame::from_bytes(&ack))
    }

    #[test]
    fn siphash_reference_vectors() {
        // Key 00..0f, messages 00 01 02 ... (the SipHash paper, appendix A,
        // and the reference implementation's vectors).
        let (k0, k1) = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(k0, k1, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(k0, k1, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn random_keys_differ_and_stay_secret_in_debug() {
        let (a, b) = (SynKey::random().unwrap(), SynKey::random().unwrap());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "SynKey(..)");
    }

    #[test]
    fn mss_table_picks_the_largest_entry_not_above_the_client_mss() {
        let cases = [
            (0, 536),
            (100, 536),
            (535, 536),
            (536, 536),
            (1299, 536),
            (1300, 1300),
            (1439, 1300),
            (1440, 1440),
            (1452, 1440),
            (1459, 1440),
            (1460, 1460),
            (8960, 1460),
            (u16::MAX, 1460),
        ];
        for (mss, want) in cases {
            assert_eq!(MSS_TABLE[mss_index(mss)], want, "client MSS {mss}");
            let o = CookieOpts {
                mss,
                wscale: None,
                sack_ok: false,
            };
            let (c, enc) = make_cookie(&KEY, client(), vip(), 1, &o, NOW);
            assert_eq!(enc.mss, want);
            assert_eq!(check_cookie(&KEY, client(), vip(), 1, c, NOW), Some(enc));
        }
    }

    #[test]
    fn cookie_round_trip_for_many_flows_and_options() {
        let mut rng = XorShift(0x5eed);
        for i in 0..20_000u32 {
            let c = SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.next_u16());
            let v = SocketAddrV4::new(Ipv4Addr::from(rng.next_u32()), rng.next_u16());
            let isn = rng.next_u32();
            let now = rng.next_u64() >> 20;
            let asked = CookieOpts {
                mss: rng.next_u16(),
                wscale: (i % 3 != 0).then(|| (rng.next_u32() % 20) as u8),
                sack_ok: i % 2 == 0,
            };
            let (cookie, enc) = make_cookie(&KEY, c, v, isn, &asked, now);
            assert_eq!(enc.mss, MSS_TABLE[mss_index(asked.mss)]);
            assert_eq!(enc.wscale, asked.wscale.map(|w| w.min(14)));
            assert_eq!(enc.sack_ok, asked.sack_ok);
            assert_eq!(check_cookie(&KEY, c, v, isn, cookie, now), Some(enc));
            // Another flow, ISN or key does not accept it.
            let other = SocketAddrV4::new(*c.ip(), c.port() ^ 1);
            assert_eq!(check_cookie(&KEY, other, v, isn, cookie, now), None);
            assert_eq!(check_cookie(&KEY, c, v, isn ^ 1, cookie, now), None);
            let k2 = SynKey::new(KEY.k0, KEY.k1 ^ 1);
            assert_eq!(check_cookie(&k2, c, v, isn, cookie, now), None);
        }
    }

    #[test]
    fn cookie_from_the_previous_slot_is_accepted_older_and_newer_rejected() {
        let o = CookieOpts {
            mss: 1460,
            wscale: Some(7),
            sack_ok: true,
        };
        for slot_no in [0u64, 1, 2, 1000, 1001, u64::from(u32::MAX) - 1] {
            let start = slot_no * SLOT_MS;
            for made in [start, start + SLOT_MS - 1] {
                let (c, enc) = make_cookie(&KEY, client(), vip(), ISN, &o, made);
                let check = |now| check_cookie(&KEY, client(), vip(), ISN, c, now);
                assert_eq!(check(made), Some(enc));
                assert_eq!(check(start + SLOT_MS), Some(enc), "next slot");
                assert_eq!(
                    check(start + 2 * SLOT_MS - 1),
                    Some(enc),
                    "end of next slot"
                );
                assert_eq!(check(start + 2 * SLOT_MS), None, "two slots later");
                assert_eq!(check(start + 5 * SLOT_MS), None);
                if slot_no > 0 {
                    assert_eq!(check(start - 1), None, "made in the future");
                }
            }
        }
    }

    #[test]
    fn tampered_cookie_is_rejected() {
        let o = CookieOpts {
            mss: 1440,
            wscale: Some(9),
            sack_ok: true,
        };
        let mut rng = XorShift(99);
        for _ in 0..200 {
            let isn = rng.next_u32();
            let (c, _) = make_cookie(&KEY, client(), vip(), isn, &o, NOW);
            for bit in 0..32 {
                let bad = c ^ (1 << bit);
                assert_eq!(
                    check_cookie(&KEY, client(), vip(), isn, bad, NOW),
                    None,
                    "bit {bit}"
                );
                assert_eq!(
                    check_cookie(&KEY, client(), vip(), isn, bad, NOW + SLOT_MS),
                    None,
                    "bit {bit}, next slot"
                );
            }
            assert_eq!(
                check_cookie(&KEY, client(), vip(), isn, c.wrapping_add(1), NOW),
                None
            );
        }
        // Random guesses: the MAC is 24 bits, so 100k guesses almost surely
        // all fail (expected passes: 0.006).
        let (c, _) = make_cookie(&KEY, client(), vip(), ISN, &o, NOW);
        let passes = (0..100_000)
            .map(|_| rng.next_u32())
            .filter(|&g| g != c && check_cookie(&KEY, client(), vip(), ISN, g, NOW).is_some())
            .count();
        assert_eq!(passes, 0);
    }

    #[test]
    fn answer_syn_writes_a_valid_synack() {
        let mut f = syn(&LINUX_SYN_OPTS);
        answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
        assert_eq!(macs(f.data()), (DMAC, CMAC), "MACs swapped");
        let s = seg(f.data());
        assert_eq!((s.src, s.dst), (vip(), client()));
        assert_eq!(s.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(s.ack, ISN.wrapping_add(1));
        assert_eq!(s.window, 0);
        // MSS 1400 (ours), SACK-permitted, window scale WSCALE; no timestamps.
        assert_eq!(s.options, [2, 4, 0x05, 0x78, 1, 1, 4, 2, 1, 3, 3, WSCALE]);
        assert!(s.payload.is_empty());
        assert_eq!(
            check_cookie(&KEY, client(), vip(), ISN, s.seq, NOW),
            Some(CookieOpts {
                mss: 1460,
                wscale: Some(7),
                sack_ok: true
            })
        );
        let ip = Ipv4Packet::new_checked(&f.data()[ETH..]).unwrap();
        assert_eq!((ip.ttl(), ip.header_len(), ip.dont_frag()), (TTL, 20, true));
        assert_eq!(f.data().len(), ETH + 20 + 32);
    }

    #[test]
    fn answer_syn_offers_only_what_the_client_offered() {
        let cases: [(&[u8], &[u8], CookieOpts); 4] = [
            (
                &[],
                &[2, 4, 0x05, 0x78],
                CookieOpts {
                    mss: 536,
                    wscale: None,
                    sack_ok: false,
                },
            ),
            (
                &[2, 4, 0x05, 0xac, 4, 2],
                &[2, 4, 0x05, 0x78, 1, 1, 4, 2],
                CookieOpts {
                    mss: 1440,
                    wscale: None,
                    sack_ok: true,
                },
            ),
            // Window scale 15 is taken as 14; NOPs and an end-of-list are fine.
            (
                &[1, 3, 3, 15, 1, 1, 2, 4, 0x05, 0x14, 0, 0],
                &[2, 4, 0x05, 0x78, 1, 3, 3, WSCALE],
                CookieOpts {
                    mss: 1300,
                    wscale: Some(14),
                    sack_ok: false,
                },
            ),
            // Unknown options (TFO cookie request, MD5) are ignored.
            (
                &[34, 2, 2, 4, 0x05, 0xb4, 19, 6, 1, 2, 3, 4],
                &[2, 4, 0x05, 0x78],
                CookieOpts {
                    mss: 1460,
                    wscale: None,
                    sack_ok: false,
                },
            ),
        ];
        for (asked, answered, decoded) in cases {
            let mut f = syn(asked);
            answer_syn(&mut f, &KEY, 1400, NOW).unwrap();
            let s = seg(f.data());
            assert_eq!(s.options, answered, "SYN options {asked:?}");
            let opts = check_cookie(&KEY, client(), vip(), ISN, s.seq, NOW);
            assert_eq!(opts, Some(decoded), "SYN options {asked:?}");
            // Short answers are padded to the Ethernet minimum... and valid.
            assert!(f.data().len() >= 60);
        }
    }

    #[test]
    fn answer_syn_rejects_with_a_reason() {
        let build = |b: PacketBuilder| VecFrame::from_bytes(&b.build());
        let base = || tcp(client(), vip()).flags(TcpFlags::SYN).seq(ISN);
        let cases: Vec<(VecFrame, Reject)> = vec![
            (build(base().payload(b"GET /")), Reject::SynPayload),
            (
                build(base().flags(TcpFlags::SYN | TcpFlags::ACK)),
                Reject::NotSyn,
            ),
            (
                build(base().flags(TcpFlags::SYN | TcpFlags::RST)),
                Reject::NotSyn,
            ),
            (
                build(base().flags(TcpFlags::SYN | TcpFlags::FIN)),
                Reject::NotSyn,
            ),
            (build(base().flags(TcpFlags::ACK)), Reject::NotSyn),
            (build(base().tcp_options(&[2, 3, 5, 0])), Reject::BadOptions),
            (
                build(base().tcp_options(&[2, 4, 5, 0xb4, 3, 4, 7, 0])),
                Reject::BadOptions,
            ),
            (build(base().tcp_options(&[4, 3, 0, 0])), Reject::BadOptions),
            (
                build(base().tcp_options(&[2, 4, 5, 0xb4, 8, 1])),
                Reject::BadOptions,
            ),
            (
                build(base().tcp_options(&[1, 1, 8, 40])),
                Reject::BadOptions,
            ),
            (
                build(
                    PacketBuilder::new()
                        .ipv4(*client().ip(), *vip().ip())
                        .udp(1, 80),
                ),
                Reject::NotTcp,
            ),
        ];
        for (i, (mut f, want)) in cases.into_iter().enumerate() {
            let before = f.clone();
            assert_eq!(answer_syn(&mut f, &KEY, 1460, NOW), Err(want), "case {i}");
            assert_eq!(f, before, "case {i}: a refused frame is left alone");
            assert!(!want.as_str().is_empty());
        }
        let mut f = VecFrame::from_bytes(&[0u8; 10]);
        assert_eq!(
            answer_syn(&mut f, &KEY, 1460, NOW),
            Err(Reject::Malformed(WireError::EthTruncated))
        );
    }

    #[test]
    fn check_ack_validates_the_cookie_and_syn_to_server_writes_the_syn() {
        let (cookie, mut f) = handshake(&LINUX_SYN_OPTS);
        let info = check_ack(&f, &KEY, NOW + SLOT_MS).unwrap();
        assert_eq!(
            info,
            CookieInfo {
                client_isn: ISN,
                cookie,
                opts: CookieOpts {
                    mss: 1460,
                    wscale: Some(7),
                    sack_ok: true
                },
                window: 502,
                payload_len: 0,
            }
        );
        syn_to_server(&mut f, &info).unwrap();
        assert_eq!(
            macs(f.data()),
            (CMAC, DMAC),
            "MACs are the next hop's business"
        );
        let s = seg(f.data());
        assert_eq!((s.src, s.dst), (client(), vip()));
        assert_eq!((s.seq, s.ack, s.flags), (ISN, 0, TcpFlags::SYN));
        // The ACK's window in bytes (502 << 7): a SYN's is never scaled.
        assert_eq!(s.window, 502 << 7);
        assert_eq!(s.options, [2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
        assert!(s.payload.is_empty());
        // ... capped at 65535.
        let big = CookieInfo {
            window: 513,
            ..info
        };
        syn_to_server(&mut f, &big).unwrap();
        assert_eq!(seg(f.data()).window, 65535);

        // A client without options: MSS 536 only, window as is.
        let (_, mut f) = handshake(&[]);
        let info = check_ack(&f, &KEY, NOW).unwrap();
        syn_to_server(&mut f, &info).unwrap();
        let s = seg(f.data());
        assert_eq!((s.window, s.options), (502, vec![2, 4, 0x02, 0x18]));
    }

    #[test]
    fn check_ack_rejects_forged_stale_and_non_acks() {
        let (cookie, f) = handshake(&LINUX_SYN_OPTS);
        assert!(check_ack(&f, &KEY, NOW).is_ok());
        assert_eq!(
            check_ack(&f, &KEY, NOW + 2 * SLOT_MS),
            Err(Reject::BadCookie)
        );
        let ack = |seq: u32, ack: u32, flags: TcpFlags| {
            let b = tcp(client(), vip()).flags(flags).seq(seq).ack(ack).build();
            check_ack(&VecFrame::from_bytes(&b), &KEY, NOW)
        };
        let (seq, good) = (ISN.wrapping_add(1), cookie.wrapping_add(1));
        assert!(ack(seq, good, TcpFlags::ACK | TcpFlags::PSH).is_ok());
        for bit in 0..32 {
            assert_eq!(
                ack(seq, good ^ (1 << bit), TcpFlags::ACK),
                Err(Reject::BadCookie)
            );
        }
        assert_eq!(
            ack(seq.wrapping_add(1), good, TcpFlags::ACK),
            Err(Reject::BadCookie)
        );
        assert_eq!(
            ack(seq, good, TcpFlags::SYN | TcpFlags::ACK),
            Err(Reject::NotAck)
        );
        assert_eq!(
            ack(seq, good, TcpFlags::RST | TcpFlags::ACK),
            Err(Reject::NotAck)
        );
        assert_eq!(
            ack(seq, good, TcpFlags::FIN | TcpFlags::ACK),
            Err(Reject::NotAck)
        );
        assert_eq!(ack(seq, good, TcpFlags::NONE), Err(Reject::NotAck));
        // From another client port: not its cookie.
        let other = SocketAddrV4::new(*client().ip(), 40002);
        let b = tcp(other, vip()).seq(seq).ack(good).build();
        assert_eq!(
            check_ack(&VecFrame::from_bytes(&b), &KEY, NOW),
            Err(Reject::BadCookie)
        );
        // Data on the third ACK is reported.
        let b = tcp(client(), vip())
            .seq(seq)
            .ack(good)
            .payload(b"hi")
            .build();
        assert_eq!(
            check_ack(&VecFrame::from_bytes(&b), &KEY, NOW)
                .unwrap()
                .payload_len,
            2
        );
    }

    /// The server's SYN-ACK to the director's SYN (NAT: rip -> client).
    fn server_synack_frame(server_isn: u32, ack: u32, opts: &[u8]) -> VecFrame {
        VecFrame::from_bytes(
            &tcp(rip(), client())
                .flags(TcpFlags::SYN | TcpFlags::ACK)
                .seq(server_isn)
                .ack(ack)
                .window(65160)
                .tcp_options(opts)
                .build(),
        )
    }

    #[test]
    fn server_handshake_is_completed_and_the_client_window_opened() {
        let (cookie, f) = handshake(&LINUX_SYN_OPTS);
        let info = check_ack(&f, &KEY, NOW).unwrap();
        let server_isn = 0x1234_5678;
        let mut sa = server_synack_frame(
            server_isn,
            ISN.wrapping_add(1),
            &[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 9],
        );
        let est = server_synack(&sa, &info).unwrap();
        assert_eq!(
            est,
            Established {
                server_isn,
                server_window: 65160,
                adj: SeqAdj {
                    delta: server_isn.wrapping_sub(cookie),
                    c2s_shift: 0,
                    s2c_shift: 9 - WSCALE as i8,
                },
            }
        );
        write_server_ack(&mut sa, client(), vip(), &info, &est).unwrap();
        let s = seg(sa.data());
        assert_eq!((s.src, s.dst), (client(), vip()));
        assert_eq!(s.seq, ISN.wrapping_add(1));
        assert_eq!(s.ack, server_isn.wrapping_add(1));
        assert_eq!((s.flags, s.window), (TcpFlags::ACK, 502));
        assert!(s.options.is_empty() && s.payload.is_empty());
        assert_eq!(sa.data().len(), 60, "padded to the Ethernet minimum");

        let mut up = VecFrame::empty();
        write_client_update(&mut up, client(), vip(), &info, &est).unwrap();
        let s = seg(up.data());
        assert_eq!((s.src, s.dst), (vip(), client()));
        assert_eq!(s.seq, cookie.wrapping_add(1));
        assert_eq!(s.ack, ISN.wrapping_add(1));
        assert_eq!((s.flags, s.window), (TcpFlags::ACK, 65160 >> WSCALE));

        let mut rst = VecFrame::empty();
        write_client_rst(&mut rst, client(), vip(), &info).unwrap();
        let s = seg(rst.data());
        assert_eq!((s.src, s.dst, s.flags), (vip(), client(), TcpFlags::RST));
        assert_eq!(s.seq, cookie.wrapping_add(1));
    }

    #[test]
    fn window_scales_are_reconciled() {
        // (client's scale, server's offer, c2s, s2c)
        let cases = [
            (Some(7), Some(7), 0, 0),
            (Some(2), Some(9), 0, 9 - WSCALE as i8),
            (Some(2), Some(0), 0, -(WSCALE as i8)),
            (Some(3), None, 3, -(WSCALE as i8)),
            (None, None, 0, 0),
            // The server may not scale when our SYN did not offer it.
            (None, Some(5), 0, 0),
        ];
        for (cws, sws, c2s, s2c) in cases {
            let mut opts = vec![2, 4, 5, 0xb4];
            if let Some(w) = cws {
                opts.extend_from_slice(&[1, 3, 3, w]);
            }
            let (_, f) = handshake(&opts);
            let info = check_ack(&f, &KEY, NOW).unwrap();
            let mut sopts = vec![2, 4, 5, 0xb4];
            if let Some(w) = sws {
                sopts.extend_from_slice(&[1, 3, 3, w]);
            }
            let sa = server_synack_frame(7, ISN.wrapping_add(1), &sopts);
            let adj = server_synack(&sa, &info).unwrap().adj;
            assert_eq!(
                (adj.c2s_shift, adj.s2c_shift),
                (c2s, s2c),
                "{cws:?} {sws:?}"
            );
        }
        assert_eq!(shift_window(1000, 2), 4000);
        assert_eq!(shift_window(1000, -2), 250);
        assert_eq!(shift_window(65535, -7), 511);
        assert_eq!(shift_window(40000, 1), 65535);
        assert_eq!(shift_window(65535, 14), 65535);
        assert_eq!(shift_window(65535, -14), 3);
        assert_eq!(shift_window(7, 0), 7);
    }

    #[test]
    fn server_answers_other_than_our_synack_are_rejected() {
        let (_, f) = handshake(&LINUX_SYN_OPTS);
        let info = check_ack(&f, &KEY, NOW).unwrap();
        let ours = ISN.wrapping_add(1);
        let with = |flags: TcpFlags, ack: u32| {
            let b = tcp(rip(), client()).flags(flags).seq(9).ack(ack).build();
            server_synack(&VecFrame::from_bytes(&b), &info)
        };
        assert_eq!(
            with(TcpFlags::RST | TcpFlags::ACK, ours),
            Err(Reject::Refused)
        );
        assert_eq!(
            with(TcpFlags::RST | TcpFlags::ACK, ours + 1),
            Err(Reject::BadAck)
        );
        assert_eq!(with(TcpFlags::RST, 0), Err(Reject::BadAck));
        assert_eq!(
            with(TcpFlags::SYN | TcpFlags::ACK, ours + 1),
            Err(Reject::BadAck)
        );
        assert_eq!(with(TcpFlags::ACK, ours), Err(Reject::NotSynAck));
        assert_eq!(with(TcpFlags::SYN, 0), Err(Reject::NotSynAck));
        assert!(with(TcpFlags::SYN | TcpFlags::ACK, ours).is_ok());
    }

    /// SACK option with the given edges, after `lead` NOPs (1 misaligns it).
    fn sack(lead: usize, edges: &[u32]) -> Vec<u8> {
        let mut o = vec![1u8; lead];
        o.extend_from_slice(&[5, 2 + 4 * edges.len() as u8]);
        for e in edges {
            o.extend_from_slice(&e.to_be_bytes());
        }
        o
    }

    #[test]
    fn translation_matches_frames_built_from_scratch() {
        let adj = SeqAdj {
            delta: 0x8000_0010,
            c2s_shift: 2,
            s2c_shift: -3,
        };
        let d = adj.delta;
        let (a, b) = (0xffff_fff0u32, 0x0000_0100u32);
        for lead in [0, 1, 2, 3] {
            // Client -> server: ack and SACK edges move up, window converts.
            let edges = [a, a.wrapping_add(10), b, b.wrapping_add(5)];
            let moved: Vec<u32> = edges.iter().map(|e| e.wrapping_add(d)).collect();
            let client_pkt = |ack: u32, win: u16, edges: &[u32]| {
                tcp(client(), vip())
                    .flags(TcpFlags::ACK | TcpFlags::PSH)
                    .seq(ISN)
                    .ack(ack)
                    .window(win)
                    .tcp_options(&sack(lead, edges))
                    .payload(b"abc")
                    .build()
            };
            let mut f = VecFrame::from_bytes(&client_pkt(a, 1000, &edges));
            to_server(&mut f, &adj).unwrap();
            assert_eq!(
                f.data(),
                &client_pkt(a.wrapping_add(d), 4000, &moved)[..],
                "lead {lead}"
            );
            seg(f.data());

            // Server -> client: seq moves down, its SACK edges (client
            // bytes) stay, window converts.
            let server_pkt = |seq: u32, win: u16| {
                tcp(rip(), client())
                    .flags(TcpFlags::ACK)
                    .seq(seq)
                    .ack(ISN)
                    .window(win)
                    .tcp_options(&sack(lead, &edges))
                    .payload(b"defg")
                    .build()
            };
            let mut f = VecFrame::from_bytes(&server_pkt(b, 800));
            to_client(&mut f, &adj).unwrap();
            assert_eq!(
                f.data(),
                &server_pkt(b.wrapping_sub(d), 100)[..],
                "lead {lead}"
            );
            seg(f.data());
        }
    }

    #[test]
    fn translation_round_trips_with_valid_checksums() {
        let mut rng = XorShift(0xfeed);
        for i in 0..5_000 {
            let adj = SeqAdj {
                delta: rng.next_u32(),
                c2s_shift: 0,
                s2c_shift: 0,
            };
            let server_seq = rng.next_u32();
            let len = 1 + (rng.next_u32() % 1400);
            // The server sends [server_seq, +len); the client sees it ...
            let mut f = VecFrame::from_bytes(
                &tcp(rip(), client())
                    .seq(server_seq)
                    .ack(rng.next_u32())
                    .payload(&vec![7u8; len as usize])
                    .build(),
            );
            to_client(&mut f, &adj).unwrap();
            let s = seg(f.data());
            assert_eq!(s.seq, server_seq.wrapping_sub(adj.delta));
            // ... acknowledges it and SACKs a later block ...
            let next = s.seq.wrapping_add(len);
            let hole = [next.wrapping_add(1000), next.wrapping_add(2448)];
            let mut f = VecFrame::from_bytes(
                &tcp(client(), vip())
                    .seq(s.ack)
                    .ack(next)
                    .tcp_options(&sack(i % 4, &hole))
                    .build(),
            );
            to_server(&mut f, &adj).unwrap();
            // ... which the server reads in its own sequence space.
            let s = seg(f.data());
            let srv_next = server_seq.wrapping_add(len);
            assert_eq!(s.ack, srv_next);
            let want = sack(
                i % 4,
                &[srv_next.wrapping_add(1000), srv_next.wrapping_add(2448)],
            );
            assert_eq!(&s.options[..want.len()], &want[..]);
        }
    }

    #[test]
    fn a_bad_checksum_stays_bad() {
        let adj = SeqAdj {
            delta: 12345,
            c2s_shift: 1,
            s2c_shift: -1,
        };
        for lead in [0, 1] {
            let b = tcp(client(), vip())
                .ack(99)
                .tcp_options(&sack(lead, &[1, 2]))
                .bad_l4_checksum()
                .build();
            let mut f = VecFrame::from_bytes(&b);
            to_server(&mut f, &adj).unwrap();
            let mut g = f.clone();
            to_client(&mut g, &adj).unwrap();
            for fr in [&f, &g] {
                let ip = Ipv4Packet::new_checked(&fr.data()[ETH..]).unwrap();
                let t = TcpSegment::new_checked(ip.payload()).unwrap();
                assert!(!t.verify_checksum(ip.src_addr(), ip.dst_addr()));
            }
        }
    }

    #[test]
    fn cookie_info_is_rebuilt_from_what_the_connection_stores() {
        for opts in [&LINUX_SYN_OPTS[..], &[], &[2, 4, 5, 0x14, 4, 2]] {
            let (_, f) = handshake(opts);
            let info = check_ack(&f, &KEY, NOW).unwrap();
            let back = CookieInfo::from_stored(info.client_isn, info.cookie, info.window);
            assert_eq!(back, info);
        }
    }

    #[test]
    fn icmp_errors_quote_the_server_sequence_number() {
        let adj = SeqAdj {
            delta: 0x1000_0000,
            ..SeqAdj::default()
        };
        // What the client got (client space) ...
        let sent = tcp(vip(), client())
            .seq(0xf000_0001)
            .ack(ISN)
            .payload(&[1; 100])
            .build_ipv4();
        let icmp_from = |quoted: &[u8]| {
            PacketBuilder::new()
                .ipv4(Ipv4Addr::new(198, 51, 100, 1), *rip().ip())
                .icmp(3, 4, 1400)
                .payload(quoted)
                .build_ipv4()
        };
        let mut ip = icmp_from(&sent[..28]);
        icmp_quote_to_server(&mut ip, &adj).unwrap();
        // ... quoted as the server sent it (server space), checksums valid.
        let want = tcp(vip(), client())
            .seq(0x0000_0001)
            .ack(ISN)
            .payload(&[1; 100])
            .build_ipv4();
        assert_eq!(ip, icmp_from(&want[..28]));
        let p = Ipv4Packet::new_checked(&ip[..]).unwrap();
        assert!(Icmpv4Packet::new_checked(p.payload())
            .unwrap()
            .verify_checksum());
        // Too short a quote, or not TCP: refused, not mangled.
        let mut short = icmp_from(&sent[..26]);
        assert!(icmp_quote_to_server(&mut short, &adj).is_err());
        assert_eq!(short, icmp_from(&sent[..26]));
        let udp = PacketBuilder::new()
            .ipv4(*vip().ip(), *client().ip())
            .udp(1, 2)
            .build_ipv4();
        assert_eq!(
            icmp_quote_to_server(&mut icmp_from(&udp), &adj),
            Err(Reject::NotTcp)
        );
        assert_eq!(
            icmp_quote_to_server(&mut sent.clone(), &adj),
            Err(Reject::NotTcp)
        );
        for n in 0..ip.len() {
            let _ = icmp_quote_to_server(&mut ip[..n].to_vec(), &adj);
        }
    }

    #[test]
    fn seq_adj_packs_into_a_u64() {
        for adj in [
            SeqAdj::default(),
            SeqAdj {
                delta: u32::MAX,
                c2s_shift: 14,
                s2c_shift: -14,
            },
            SeqAdj {
                delta: 0x8000_0001,
                c2s_shift: 0,
                s2c_shift: 7,
            },
        ] {
            assert_eq!(SeqAdj::from_bits(adj.to_bits()), adj);
        }
    }

    #[test]
    fn short_and_mangled_frames_never_panic() {
        let (_, ack) = handshake(&LINUX_SYN_OPTS);
        let info = check_ack(&ack, &KEY, NOW).unwrap();
        let adj = SeqAdj {
            delta: 5,
            c2s_shift: 3,
            s2c_shift: -3,
        };
        let frames = [
            syn(&LINUX_SYN_OPTS).data().to_vec(),
            ack.data().to_vec(),
            server_synack_frame(1, ISN.wrapping_add(1), &[1, 3, 3, 9])
                .data()
                .to_vec(),
            tcp(client(), vip())
                .tcp_options(&sack(1, &[1, 2, 3, 4]))
                .build(),
        ];
        let mut rng = XorShift(3);
        for full in &frames {
            for n in 0..=full.len() {
                for mangle in [false, true] {
                    let mut bytes = full[..n].to_vec();
                    if mangle && n > ETH + 20 {
                        // Random TCP header and options, valid IP header.
                        rng.fill(&mut bytes[ETH + 20..]);
                    }
                    let f = VecFrame::from_bytes(&bytes);
                    let _ = answer_syn(&mut f.clone(), &KEY, 1460, NOW);
                    let _ = check_ack(&f, &KEY, NOW);
                    let _ = syn_to_server(&mut f.clone(), &info);
                    let _ = server_synack(&f, &info);
                    let _ = to_server(&mut f.clone(), &adj);
                    let _ = to_client(&mut f.clone(), &adj);
                }
            }
        }
    }
}
