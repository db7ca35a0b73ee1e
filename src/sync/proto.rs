//! The kernel's IPVS connection-sync wire format (`net/netfilter/ipvs/
//! ip_vs_sync.c`): version 1 messages (`struct ip_vs_sync_mesg` and
//! `struct ip_vs_sync_v4` or, with `STYPE_F_INET6`, `struct ip_vs_sync_v6`
//! entries with type/length options) are built and parsed; version 0 messages (`struct ip_vs_sync_mesg_v0`,
//! `struct ip_vs_sync_conn_v0`) are parsed. Parsing never panics: every
//! malformed input is an [`Error`] the receiver counts by reason.
//!
//! rvs's own options, [`OPT_RVS_FNAT`] (FULLNAT's local address and port)
//! and [`OPT_RVS_SYNPROXY`] (the SYN proxy's sequence and window
//! adjustment), are *mandatory* (the `IPVS_OPT_F_PARAM` bit is clear), so a
//! kernel backup skips that one connection ("Unknown mandatory param",
//! `ip_vs_proc_sync_conn` returns 20 and the message goes on) instead of
//! installing it as a NAT connection it cannot forward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `IP_VS_SYNC_GROUP`: 224.0.0.81.
pub const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// `IP_VS_SYNC_PORT`.
pub const SYNC_PORT: u16 = 8848;
/// `SYNC_PROTO_VER`.
pub const SYNC_PROTO_VER: u8 = 1;
/// `sizeof(struct ip_vs_sync_mesg)`.
pub const MESG_HDR_LEN: usize = 8;
/// `sizeof(struct ip_vs_sync_mesg_v0)`.
pub const MESG_V0_HDR_LEN: usize = 4;
/// `sizeof(struct ip_vs_sync_v4)`.
pub const CONN_V4_LEN: usize = 36;
/// `sizeof(struct ip_vs_sync_v6)`.
pub const CONN_V6_LEN: usize = 72;
/// `sizeof(struct ip_vs_sync_conn_v0)` (`SIMPLE_CONN_SIZE`).
pub const CONN_V0_LEN: usize = 24;
/// `sizeof(struct ip_vs_sync_conn_options)`: two `struct ip_vs_seq`.
pub const SEQ_OPTS_LEN: usize = 24;
/// `STYPE_F_INET6`.
pub const STYPE_F_INET6: u8 = 1;
/// `SVER_SHIFT`, `SVER_MASK`.
pub const SVER_SHIFT: u16 = 12;
pub const SVER_MASK: u16 = 0x0fff;

/// `IPVS_OPT_SEQ_DATA`, `IPVS_OPT_PE_DATA`, `IPVS_OPT_PE_NAME`.
pub const OPT_SEQ_DATA: u8 = 1;
pub const OPT_PE_DATA: u8 = 2;
pub const OPT_PE_NAME: u8 = 3;
/// `IPVS_OPT_F_PARAM` (`1 << (IPVS_OPT_PARAM - 1)`): an option a receiver
/// that does not know it may skip.
pub const OPT_F_PARAM: u8 = 1 << 6;
/// rvs: FULLNAT local address (4), local port (2), client-address delivery
/// (1: 0 none, 1 TOA, 2 PROXY v1, 3 PROXY v2) and a zero byte: 8 bytes.
/// Type 8 is unused by the kernel (1, 2, 3 and the 7th bit are taken).
pub const OPT_RVS_FNAT: u8 = 8;
pub const OPT_RVS_FNAT_LEN: usize = 8;
/// The same option in an IPv6 entry: a 16-byte local address, 20 bytes.
pub const OPT_RVS_FNAT6_LEN: usize = 20;
/// rvs: the SYN proxy's adjustment of a proxied connection: sequence delta
/// (4, server ISN - cookie), client-to-server window shift (1),
/// server-to-client window shift (1, signed), two zero bytes: 8 bytes.
/// Type 9 is unused by the kernel.
pub const OPT_RVS_SYNPROXY: u8 = 9;
pub const OPT_RVS_SYNPROXY_LEN: usize = 8;

/// `IP_VS_CONN_F_*` (include/uapi/linux/ip_vs.h).
pub mod flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const BYPASS: u32 = 0x0004;
    pub const SYNC: u32 = 0x0020;
    pub const HASHED: u32 = 0x0040;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const OUT_SEQ: u32 = 0x0200;
    pub const IN_SEQ: u32 = 0x0400;
    pub const SEQ_MASK: u32 = 0x0600;
    pub const NO_CPORT: u32 = 0x0800;
    pub const TEMPLATE: u32 = 0x1000;
    pub const ONE_PACKET: u32 = 0x2000;
    /// `IP_VS_CONN_F_BACKUP_MASK`: what a backup keeps of the sent flags.
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// `struct ip_vs_seq` in host order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seq {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// rvs's FULLNAT option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnatOpt {
    pub lip: IpAddr,
    pub lport: u16,
    pub client_addr: u8,
}

/// rvs's SYN-proxy option (`crate::synproxy::SeqAdj`'s fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynOpt {
    pub delta: u32,
    pub c2s_shift: u8,
    pub s2c_shift: i8,
}

/// One synced connection (IPv4, or IPv6 with every address IPv6), in host
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    /// `IP_VS_CONN_F_*`.
    pub flags: u32,
    /// `IP_VS_TCP_S_*` (or 0 for UDP).
    pub state: u16,
    pub cport: u16,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
    /// Seconds; 0 in version 0 messages (the backup uses its own table).
    pub timeout: u32,
    pub caddr: IpAddr,
    pub vaddr: IpAddr,
    pub daddr: IpAddr,
    /// `IPVS_OPT_SEQ_DATA`: (in_seq, out_seq).
    pub seq: Option<(Seq, Seq)>,
    pub fnat: Option<FnatOpt>,
    pub synproxy: Option<SynOpt>,
}

/// Why a message, or one connection in it, was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Shorter than `struct ip_vs_sync_mesg_v0`.
    TooShort,
    /// The header's size is not the datagram's length.
    BadSize,
    /// Another sync group (the backup's syncid is not 0 and differs).
    ForeignSyncId,
    /// A connection runs past the end of the message.
    Truncated,
    /// A connection's version nibble is not 0.
    BadConnVersion,
    /// An option's header or length is wrong, or an option is repeated.
    BadOption,
    /// An unknown mandatory option, an unknown entry type:
    /// that connection is skipped, the rest of the message is taken.
    Unsupported,
    /// Not TCP/UDP, or a state number past the protocol's last.
    BadState,
}

impl Error {
    pub const ALL: [Error; 8] = [
        Error::TooShort,
        Error::BadSize,
        Error::ForeignSyncId,
        Error::Truncated,
        Error::BadConnVersion,
        Error::BadOption,
        Error::Unsupported,
        Error::BadState,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Error::TooShort => "too_short",
            Error::BadSize => "bad_size",
            Error::ForeignSyncId => "foreign_syncid",
            Error::Truncated => "truncated",
            Error::BadConnVersion => "bad_conn_version",
            Error::BadOption => "bad_option",
            Error::Unsupported => "unsupported",
            Error::BadState => "bad_state",
        }
    }
}

/// `IP_VS_TCP_S_LAST`: TCP states are 0..=10.
pub const TCP_STATES: u16 = 11;
/// UDP has one state (`IP_VS_UDP_S_LAST` = 2: NORMAL, LAST).
pub const UDP_STATES: u16 = 2;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn ip(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(be32(b, at)))
}
fn ip6(b: &[u8], at: usize) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    IpAddr::V6(Ipv6Addr::from(a))
}

/// The result of parsing one datagram.
#[derive(Debug, Default)]
pub struct Parsed {
    pub syncid: u8,
    pub version: u8,
    pub conns: Vec<SyncConn>,
    /// Connections skipped, by reason (the rest of the message was taken).
    pub skipped: Vec<Error>,
    /// Set when the rest of the message was dropped (`Dropping buffer`).
    pub dropped: Option<Error>,
}

/// Parse a datagram as the kernel's `ip_vs_process_message` does: size and
/// syncid checks first (`want_syncid` 0 takes any), then version 1 if the
/// header says so (reserved 0, version 1, spare 0), else version 0.
/// `Err` when nothing was taken from the message.
pub fn parse(buf: &[u8], want_syncid: u8) -> Result<Parsed, Error> {
    if buf.len() < MESG_V0_HDR_LEN {
        return Err(Error::TooShort);
    }
    if be16(buf, 2) as usize != buf.len() {
        return Err(Error::BadSize);
    }
    let syncid = buf[1];
    if want_syncid != 0 && syncid != want_syncid {
        return Err(Error::ForeignSyncId);
    }
    let mut out = Parsed {
        syncid,
        ..Parsed::default()
    };
    if buf.len() >= MESG_HDR_LEN && buf[0] == 0 && buf[5] == SYNC_PROTO_VER && be16(buf, 6) == 0 {
        out.version = 1;
        let n = buf[4] as usize;
        let mut at = MESG_HDR_LEN;
        for _ in 0..n {
            if at + CONN_V4_LEN > buf.len() {
                out.dropped = Some(Error::Truncated);
                break;
            }
            let vs = be16(buf, at + 2);
            let size = (vs & SVER_MASK) as usize;
            let end = at + size;
            if end > buf.len() {
                out.dropped = Some(Error::Truncated);
                break;
            }
            if vs >> SVER_SHIFT != 0 {
                out.dropped = Some(Error::BadConnVersion);
                break;
            }
            match parse_conn_v1(&buf[at..end]) {
                Ok(c) => out.conns.push(c),
                Err(Fatal(e)) => {
                    out.dropped = Some(e);
                    break;
                }
                Err(Skip(e)) => out.skipped.push(e),
            }
            at += (size + 3) & !3;
        }
    } else {
        out.version = 0;
        let n = buf[0] as usize;
        let mut at = MESG_V0_HDR_LEN;
        for _ in 0..n {
            if at + CONN_V0_LEN > buf.len() {
                out.dropped = Some(Error::Truncated);
                break;
            }
            let s = &buf[at..];
            // struct ip_vs_sync_conn_v0: reserved, protocol, cport 2,
            // vport 4, dport 6, caddr 8, vaddr 12, daddr 16, flags 20,
            // state 22.
            let mut c = SyncConn {
                protocol: s[1],
                cport: be16(s, 2),
                vport: be16(s, 4),
                dport: be16(s, 6),
                caddr: ip(s, 8),
                vaddr: ip(s, 12),
                daddr: ip(s, 16),
                flags: ((be16(s, 20) as u32) | flags::SYNC) & !flags::HASHED,
                state: be16(s, 22),
                fwmark: 0,
                timeout: 0,
                seq: None,
                fnat: None,
                synproxy: None,
            };
            at += CONN_V0_LEN;
            if c.flags & flags::SEQ_MASK != 0 {
                if at + SEQ_OPTS_LEN > buf.len() {
                    out.dropped = Some(Error::Truncated);
                    break;
                }
                c.seq = Some(seq_pair(&buf[at..at + SEQ_OPTS_LEN]));
                at += SEQ_OPTS_LEN;
            }
            match check_state(&c) {
                Ok(()) => out.conns.push(c),
                Err(e) => out.skipped.push(e),
            }
        }
    }
    Ok(out)
}

/// A connection error that drops the rest of the message (the kernel's
/// negative return codes) or only this connection (positive ones).
enum ConnErr {
    Fatal(Error),
    Skip(Error),
}
use ConnErr::{Fatal, Skip};

fn seq_pair(b: &[u8]) -> (Seq, Seq) {
    let s = |o: usize| Seq {
        init_seq: be32(b, o),
        delta: be32(b, o + 4),
        previous_delta: be32(b, o + 8),
    };
    (s(0), s(12))
}

fn check_state(c: &SyncConn) -> Result<(), Error> {
    if c.flags & flags::TEMPLATE != 0 {
        return Ok(());
    }
    let n = match c.protocol {
        6 => TCP_STATES,
        17 => UDP_STATES,
        _ => return Err(Error::BadState),
    };
    if c.state >= n {
        return Err(Error::BadState);
    }
    Ok(())
}

/// `ip_vs_proc_sync_conn` for one entry (`s` is exactly `size` bytes).
fn parse_conn_v1(s: &[u8]) -> Result<SyncConn, ConnErr> {
    if s.len() < CONN_V4_LEN {
        return Err(Fatal(Error::Truncated));
    }
    // struct ip_vs_sync_v6: the v4 layout with 16-byte addresses.
    let v6 = s[0] == STYPE_F_INET6;
    if s[0] & !STYPE_F_INET6 != 0 {
        return Err(Fatal(Error::Unsupported));
    }
    if v6 && s.len() < CONN_V6_LEN {
        return Err(Fatal(Error::Truncated));
    }
    let (caddr, vaddr, daddr) = if v6 {
        (ip6(s, 24), ip6(s, 40), ip6(s, 56))
    } else {
        (ip(s, 24), ip(s, 28), ip(s, 32))
    };
    let mut c = SyncConn {
        protocol: s[1],
        flags: (be32(s, 4) & flags::BACKUP_MASK) | flags::SYNC,
        state: be16(s, 8),
        cport: be16(s, 10),
        vport: be16(s, 12),
        dport: be16(s, 14),
        fwmark: be32(s, 16),
        timeout: be32(s, 20),
        caddr,
        vaddr,
        daddr,
        seq: None,
        fnat: None,
        synproxy: None,
    };
    let mut p = if v6 { CONN_V6_LEN } else { CONN_V4_LEN };
    let mut seen = 0u32;
    let mut skip = None;
    while p < s.len() {
        if p + 2 > s.len() {
            return Err(Fatal(Error::BadOption));
        }
        let (ty, len) = (s[p], s[p + 1] as usize);
        p += 2;
        if len == 0 || p + len > s.len() {
            return Err(Fatal(Error::BadOption));
        }
        let d = &s[p..p + len];
        let once = |seen: &mut u32, bit: u32| {
            if *seen & bit != 0 {
                return Err(Fatal(Error::BadOption));
            }
            *seen |= bit;
            Ok(())
        };
        match ty & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if len != SEQ_OPTS_LEN {
                    return Err(Fatal(Error::BadOption));
                }
                once(&mut seen, 1)?;
                c.seq = Some(seq_pair(d));
            }
            OPT_PE_DATA => {
                // IP_VS_PEDATA_MAXLEN 255 (always fits a u8 length).
                once(&mut seen, 2)?;
                // Persistence engines are not supported: skip the entry.
                skip = Some(Error::Unsupported);
            }
            OPT_PE_NAME => {
                // IP_VS_PENAME_MAXLEN 16.
                if len > 16 {
                    return Err(Fatal(Error::BadOption));
                }
                once(&mut seen, 4)?;
            }
            OPT_RVS_FNAT => {
                if len
                    != if v6 {
                        OPT_RVS_FNAT6_LEN
                    } else {
                        OPT_RVS_FNAT_LEN
                    }
                {
                    return Err(Fatal(Error::BadOption));
                }
                once(&mut seen, 8)?;
                let (lip, at) = if v6 { (ip6(d, 0), 16) } else { (ip(d, 0), 4) };
                c.fnat = Some(FnatOpt {
                    lip,
                    lport: be16(d, at),
                    client_addr: d[at + 2],
                });
            }
            OPT_RVS_SYNPROXY => {
                if len != OPT_RVS_SYNPROXY_LEN {
                    return Err(Fatal(Error::BadOption));
                }
                once(&mut seen, 16)?;
                // TCP window scales are 0..=14 (RFC 7323): so are the
                // shifts between two of them.
                let (c2s, s2c) = (d[4], d[5] as i8);
                if c2s > 14 || !(-14..=14).contains(&s2c) {
                    return Err(Fatal(Error::BadOption));
                }
                c.synproxy = Some(SynOpt {
                    delta: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                    c2s_shift: c2s,
                    s2c_shift: s2c,
                });
            }
            _ => {
                // "Unknown mandatory param": this entry only is dropped.
                if ty & OPT_F_PARAM == 0 {
                    return Err(Skip(Error::Unsupported));
                }
            }
        }
        p += len;
    }
    if let Some(e) = skip {
        return Err(Skip(e));
    }
    check_state(&c).map_err(Skip)?;
    Ok(c)
}

/// Bytes `c` takes in a version 1 message (without alignment padding).
pub fn conn_len(c: &SyncConn) -> usize {
    let v6 = c.caddr.is_ipv6();
    (if v6 { CONN_V6_LEN } else { CONN_V4_LEN })
        + if c.seq.is_some() { 2 + SEQ_OPTS_LEN } else { 0 }
        + match (c.fnat.is_some(), v6) {
            (false, _) => 0,
            (true, false) => 2 + OPT_RVS_FNAT_LEN,
            (true, true) => 2 + OPT_RVS_FNAT6_LEN,
        }
        + if c.synproxy.is_some() {
            2 + OPT_RVS_SYNPROXY_LEN
        } else {
            0
        }
}

/// Builds version 1 messages of at most `maxlen` bytes, as
/// `ip_vs_sync_conn` fills a sync buffer: header, then entries each padded
/// to 32 bits before the next one.
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
    maxlen: usize,
}

impl Builder {
    pub fn new(syncid: u8, maxlen: usize) -> Builder {
        let mut buf = Vec::with_capacity(maxlen.max(MESG_HDR_LEN));
        // reserved 0, syncid, size, nr_conns, version, spare.
        buf.extend_from_slice(&[0, syncid, 0, MESG_HDR_LEN as u8, 0, SYNC_PROTO_VER, 0, 0]);
        Builder {
            buf,
            maxlen: maxlen.max(MESG_HDR_LEN + CONN_V4_LEN),
        }
    }
    pub fn count(&self) -> usize {
        self.buf[4] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
    /// Append `c`; false (nothing appended) when it does not fit, the
    /// message already holds 255 connections, or its addresses are of
    /// mixed families (the format has one family per entry).
    pub fn push(&mut self, c: &SyncConn) -> bool {
        let pad = (4 - self.buf.len() % 4) % 4;
        let len = conn_len(c);
        let v6 = c.caddr.is_ipv6();
        let one_family = [c.vaddr, c.daddr]
            .into_iter()
            .chain(c.fnat.map(|f| f.lip))
            .all(|a| a.is_ipv6() == v6);
        if !one_family || self.buf.len() + pad + len > self.maxlen || self.count() == 255 {
            return false;
        }
        self.buf.resize(self.buf.len() + pad, 0);
        let b = &mut self.buf;
        b.push(if v6 { STYPE_F_INET6 } else { 0 });
        b.push(c.protocol);
        b.extend_from_slice(&((len as u16) & SVER_MASK).to_be_bytes());
        b.extend_from_slice(&(c.flags & !flags::HASHED).to_be_bytes());
        b.extend_from_slice(&c.state.to_be_bytes());
        b.extend_from_slice(&c.cport.to_be_bytes());
        b.extend_from_slice(&c.vport.to_be_bytes());
        b.extend_from_slice(&c.dport.to_be_bytes());
        b.extend_from_slice(&c.fwmark.to_be_bytes());
        b.extend_from_slice(&c.timeout.to_be_bytes());
        for a in [c.caddr, c.vaddr, c.daddr] {
            put_ip(b, a);
        }
        if let Some((i, o)) = c.seq {
            b.push(OPT_SEQ_DATA);
            b.push(SEQ_OPTS_LEN as u8);
            for s in [i, o] {
                b.extend_from_slice(&s.init_seq.to_be_bytes());
                b.extend_from_slice(&s.delta.to_be_bytes());
                b.extend_from_slice(&s.previous_delta.to_be_bytes());
            }
        }
        if let Some(f) = c.fnat {
            b.push(OPT_RVS_FNAT);
            b.push(OPT_RVS_FNAT_LEN as u8);
            b.pop();
            b.push(if v6 {
                OPT_RVS_FNAT6_LEN
            } else {
                OPT_RVS_FNAT_LEN
            } as u8);
            put_ip(b, f.lip);
            b.extend_from_slice(&f.lport.to_be_bytes());
            b.push(f.client_addr);
            b.push(0);
        }
        if let Some(sp) = c.synproxy {
            b.push(OPT_RVS_SYNPROXY);
            b.push(OPT_RVS_SYNPROXY_LEN as u8);
            b.extend_from_slice(&sp.delta.to_be_bytes());
            b.push(sp.c2s_shift);
            b.push(sp.s2c_shift as u8);
            b.extend_from_slice(&[0, 0]);
        }
        self.buf[4] += 1;
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        true
    }
    /// The finished message (its size field is its length).
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

fn put_ip(b: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
    }
}

#[cfg(test)]
mod tests;
