//! A connection's 64-byte slot: the word layout, the control word
//! (generation, flags, deadline) and the kind byte.

use super::*;

/// gen:16 | flags:8 | deadline in ms of the table's clock:40.
pub(super) const W_CTL: usize = 0;
/// cip:32 | vip:32
pub(super) const W_ADDR: usize = 1;
/// dip:32 | cport:16 | vport:16
pub(super) const W_DST: usize = 2;
/// dport:16 | kind:8 | flags2:8 | lport:16 | SYN-proxy client window:16
/// (flags2: [`K2_V6`]).
pub(super) const W_KIND: usize = 3;
/// Bit 32 of W_KIND: an IPv6 connection. Its addresses are in the slot's
/// extension line ([`Ext6`]); W_ADDR, W_DST's and W_LOCAL's address halves
/// are zero.
pub(super) const K2_V6: u64 = 1 << 32;
/// Bit 33 of W_KIND, with [`K2_V6`]: NAT64, an IPv6 client and VIP (in the
/// extension line) served by an IPv4 real server through an IPv4 local
/// address (in W_DST and W_LOCAL, as for an IPv4 connection).
pub(super) const K2_64: u64 = 1 << 33;
/// Bit 34 of W_KIND, without [`K2_V6`]: an IPv4 connection whose real
/// server is IPv6 (TUN, IPv4 in IPv6): its address in the extension line's
/// real-server words, everything else as for an IPv4 connection.
pub(super) const K2_46: u64 = 1 << 34;
/// lip:32 | SYN-proxy cookie:32
pub(super) const W_LOCAL: usize = 4;
/// dest id:32 | service id:32
pub(super) const W_IDS: usize = 5;
/// Live: unused:16 | owner wheel:16 | wheel tick:32. Free: next free slot+1
/// in the top 32 bits.
pub(super) const W_WHEEL: usize = 6;
/// gen:16 | delta:8 | unused:8 | isn:32 (FULLNAT sequence data; for a
/// SYN-proxied connection, isn is the client's ISN while it is pending).
/// A SYN-proxied connection once the server has answered:
/// gen:16 | [`SYNP_PROXIED`] | sequence adjustment:48 (bit 39 clear).
pub(super) const W_SEQ: usize = 7;
/// Bit 39 of W_SEQ: the SYN proxy's server handshake is done.
pub(super) const SYNP_PROXIED: u64 = 1 << 39;

pub(super) const ST_MASK: u8 = 0x0f;
/// Counted in InActConn rather than ActiveConn (kernel IP_VS_CONN_F_INACTIVE).
pub(super) const F_INACTIVE: u8 = 0x10;
/// Holds a connection (set at insert, never cleared; DEAD ends it).
pub(super) const F_LIVE: u8 = 0x20;
/// Ended: unlinked or being unlinked; no more accounting.
pub(super) const F_DEAD: u8 = 0x40;
/// Its reply entry is not in the index yet ([`super::late`]): an end
/// leaves that entry to [`ConnTable::link_late`].
pub(super) const F_LATE: u8 = 0x80;

pub(super) const DEADLINE_MASK: u64 = (1 << 40) - 1;

#[inline]
pub(super) fn ctl(gen: u16, flags: u8, deadline: u64) -> u64 {
    (gen as u64) << 48 | (flags as u64) << 40 | deadline.min(DEADLINE_MASK)
}
#[inline]
pub(super) fn ctl_gen(c: u64) -> u16 {
    (c >> 48) as u16
}
#[inline]
pub(super) fn ctl_flags(c: u64) -> u8 {
    (c >> 40) as u8
}
#[inline]
pub(super) fn ctl_deadline(c: u64) -> u64 {
    c & DEADLINE_MASK
}

// kind byte: proto:1 | fwd:2 | client_addr:2 | fnat:1 | template:1 | synp:1
// fwd 3 is FULLNAT with the fnat bit (a FULLNAT connection always has its
// local address) and Local without it.
pub(super) const K_UDP: u8 = 1;
pub(super) const K_FNAT: u8 = 1 << 5;
pub(super) const K_TEMPLATE: u8 = 1 << 6;
pub(super) const K_SYNP: u8 = 1 << 7;

pub(super) fn fwd_bits(f: Forward) -> u8 {
    (match f {
        Forward::Nat => 0,
        Forward::Dr => 1,
        Forward::Tun => 2,
        Forward::FullNat | Forward::Local => 3,
    }) << 1
}
pub(super) fn fwd_of(kind: u8) -> Forward {
    match (kind >> 1) & 3 {
        0 => Forward::Nat,
        1 => Forward::Dr,
        2 => Forward::Tun,
        _ if kind & K_FNAT != 0 => Forward::FullNat,
        _ => Forward::Local,
    }
}
pub(super) fn ca_bits(c: ClientAddr) -> u8 {
    (match c {
        ClientAddr::None => 0,
        ClientAddr::Toa => 1,
        ClientAddr::ProxyV2 => 2,
    }) << 3
}
pub(super) fn ca_of(kind: u8) -> ClientAddr {
    match (kind >> 3) & 3 {
        1 => ClientAddr::Toa,
        2 => ClientAddr::ProxyV2,
        _ => ClientAddr::None,
    }
}

/// One connection: a cache line of atomics (64-byte aligned in its region:
/// the slots start a page after the region's start).
pub(super) type Slot = [AtomicU64; 8];

/// The second line of an IPv6 connection, beside its slot (same index):
/// client, virtual, real-server and local address, two words each (high,
/// low). Written before the slot's control word makes the connection live
/// and never changed while it is, so the slot's seqlock covers it.
pub(super) type Ext6 = [AtomicU64; 8];

pub(super) const X_CIP: usize = 0;
pub(super) const X_VIP: usize = 2;
pub(super) const X_DIP: usize = 4;
pub(super) const X_LIP: usize = 6;

/// The addresses of an IPv6 connection's line, wherever the line lives
/// (the table's own memory, or its file: [`ConnTable::ext`]).
pub(super) trait Ext6Line {
    fn addr(&self, at: usize) -> u128;
    fn set_addr(&self, at: usize, v: u128);
}

impl Ext6Line for [AtomicU64; 8] {
    #[inline]
    fn addr(&self, at: usize) -> u128 {
        (self[at].load(Relaxed) as u128) << 64 | self[at + 1].load(Relaxed) as u128
    }
    #[inline]
    fn set_addr(&self, at: usize, v: u128) {
        self[at].store((v >> 64) as u64, Relaxed);
        self[at + 1].store(v as u64, Relaxed);
    }
}
