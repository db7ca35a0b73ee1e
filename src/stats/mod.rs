//! Per-worker counters, summed on read.
//!
//! Each worker owns one [`WorkerStats`] (cache-padded) and is its only writer,
//! so increments are plain relaxed load+store, not locked read-modify-write.
//! Readers (the control thread) may see a value a few packets old; they never
//! see a torn one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($name:ident => $label:literal, $doc:literal;)*) => {
        /// Why a frame was not forwarded. Every dropped frame has exactly one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $name,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Stable label used in the JSON API and metrics.
            pub fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

reasons! {
    EthTruncated => "eth_truncated", "Shorter than an Ethernet header.";
    NotForUs => "not_for_us", "Destination MAC is neither ours nor broadcast.";
    Vlan => "vlan", "802.1Q/802.1ad tagged (not supported).";
    Ipv6 => "ipv6", "IPv6 not for the director itself (IPv6 is not forwarded yet).";
    Ipv6Malformed => "ipv6_malformed", "Bad IPv6 version, payload length or extension-header chain.";
    Ipv6Fragment => "ipv6_fragment", "IPv6 fragment to the director (not reassembled).";
    NdInvalid => "nd_invalid", "Neighbor Discovery that fails RFC 4861's checks (hop limit, code, checksum, options).";
    NdNotForUs => "nd_not_for_us", "Neighbor Solicitation for an address the director does not own.";
    NdBadLinkAddr => "nd_bad_link_addr", "Neighbor Discovery link-layer address option zero, multicast or the director's own.";
    UnknownEtherType => "unknown_ethertype", "Neither IPv4 nor ARP.";
    ArpMalformed => "arp_malformed", "ARP that is not Ethernet/IPv4 or is truncated.";
    ArpNotForUs => "arp_not_for_us", "ARP request for an address we do not own.";
    Ipv4Malformed => "ipv4_malformed", "Bad version, header length or total length.";
    Ipv4BadChecksum => "ipv4_bad_checksum", "IPv4 header checksum wrong.";
    Ipv4Fragment => "ipv4_fragment", "IPv4 fragment (not reassembled).";
    TtlExceeded => "ttl_exceeded", "TTL would reach zero when routed (NAT, FULLNAT), or is zero (DR, TUN).";
    BadSource => "bad_source", "Broadcast, multicast, loopback or zero source address.";
    BadSourceMac => "bad_source_mac", "Ethernet source MAC zero, broadcast, multicast or the director's own.";
    ArpBadSender => "arp_bad_sender", "ARP sender hardware address zero, multicast or the director's own.";
    L4Malformed => "l4_malformed", "Truncated or inconsistent TCP/UDP/ICMP header.";
    ProtoUnsupported => "proto_unsupported", "IP protocol not balanced (e.g. GRE to a VIP).";
    NoService => "no_service", "Addressed to a VIP port with no virtual service.";
    NoConnNotSyn => "no_conn_not_syn", "TCP packet for a VIP with no connection that is not a SYN.";
    NoDest => "no_dest", "No real server available (all weight 0 or overloaded).";
    ConnTableFull => "conn_table_full", "Connection table at max_connections.";
    FwdUnsupported => "fwd_unsupported", "Forwarding method not available in this build.";
    NoRoute => "no_route", "No route to the destination.";
    NeighQueueFull => "neigh_queue_full", "Too many frames waiting for ARP resolution.";
    NeighUnresolved => "neigh_unresolved", "ARP resolution timed out.";
    NotRouted => "not_routed", "Not for a VIP, a local address or a tracked connection.";
    LocalUnhandled => "local_unhandled", "For a local address but not something the director answers.";
    IcmpUnhandled => "icmp_unhandled", "ICMP other than echo to a VIP or local address.";
    NoBuffer => "no_buffer", "Could not allocate a frame for a reply.";
    TooBig => "too_big", "Too big to encapsulate with DF clear (rvs does not fragment).";
    LaddrExhausted => "laddr_exhausted", "No free FULLNAT local address and port.";
    SynproxyBadSyn => "synproxy_bad_syn", "SYN to a SYN-proxy service carrying data or malformed options (not answered).";
    SynproxyBadCookie => "synproxy_bad_cookie", "ACK to a SYN-proxy service with no connection and no valid SYN cookie.";
    ExceptionRate => "exception_rate", "For the kernel twin, but over its rate limit (token bucket).";
    VipNotOwned => "vip_not_owned", "For a VIP this director does not own now (vip_ownership kernel: the address is not on a kernel twin).";
    SynproxyBadSynAck => "synproxy_bad_synack", "Real server packet for a SYN-proxied connection still opening that is not the SYN-ACK to its SYN.";
}

pub const N_REASONS: usize = DropReason::ALL.len();

/// One counter per [`DropReason`] (an array type of its own: `Default` is
/// derived only for arrays of up to 32).
#[derive(Debug)]
pub struct Drops(pub [Counter; N_REASONS]);

impl Default for Drops {
    fn default() -> Self {
        Drops(std::array::from_fn(|_| Counter::default()))
    }
}

impl std::ops::Deref for Drops {
    type Target = [Counter; N_REASONS];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    /// Used by single-writer tests and the sum over workers.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Frames the TX path had to free because the device queue was full.
    pub tx_dropped: Counter,
    /// Multi-segment frames dropped on receive.
    pub rx_chained: Counter,
    pub arp_replies_sent: Counter,
    pub arp_requests_sent: Counter,
    /// Frames for the director that need no answer (ARP replies).
    pub consumed: Counter,
    pub icmp_echo_replies: Counter,
    /// ICMPv6 echo replies to the director's IPv6 addresses.
    pub icmpv6_echo_replies: Counter,
    /// Neighbor Advertisements answering solicitations for its addresses.
    pub nd_adverts_sent: Counter,
    /// Neighbor Solicitations for IPv6 next hops (the hold queue's).
    pub nd_solicits_sent: Counter,
    pub icmp_errors_sent: Counter,
    /// ICMP errors about tracked connections, translated and passed on.
    pub icmp_errors_forwarded: Counter,
    pub conns_created: Counter,
    pub conns_expired: Counter,
    /// Connections in TIME_WAIT/CLOSE ended early by a new SYN on their
    /// tuple (kernel conn_reuse_mode 1).
    pub conns_reused: Counter,
    /// SYN proxy: SYNs answered with a cookie.
    pub synproxy_syn_answered: Counter,
    /// SYN proxy: ACKs with a valid cookie (a connection is opened).
    pub synproxy_ack_accepted: Counter,
    /// SYN proxy: real servers' SYN-ACKs (both handshakes done).
    pub synproxy_established: Counter,
    /// SYN proxy: real servers that reset the connection (the client gets a
    /// reset).
    pub synproxy_refused: Counter,
    /// SYN proxy: clients reset because no connection could be opened for
    /// their valid ACK (what a SYN would have been dropped for: no real
    /// server available, table full, no local port).
    pub synproxy_open_failed: Counter,
    /// SYN proxy: window updates sent to clients (frames the director
    /// originates, like ARP requests).
    pub synproxy_updates_sent: Counter,
    /// SYN proxy: window updates that could not be sent (no buffer, or the
    /// client's next hop did not resolve); the client's window probe
    /// recovers.
    pub synproxy_updates_unsent: Counter,
    /// Frames handed to a port's kernel twin.
    pub exception_to_kernel: Counter,
    /// Frames the kernel sent on a twin, sent out of its port.
    pub exception_from_kernel: Counter,
    /// Gratuitous ARPs sent on taking a VIP.
    pub garp_sent: Counter,
    pub drops: Drops,
    /// Loop iterations (for idle-ness and liveness).
    pub loops: Counter,
}

impl WorkerStats {
    #[inline]
    pub fn drop(&self, r: DropReason) {
        self.drops[r as usize].inc();
    }
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize].get()
    }
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        s.add(self);
        s
    }
}

/// A plain copy of counters, for one worker or summed over all.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct StatsSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub rx_chained: u64,
    pub arp_replies_sent: u64,
    pub arp_requests_sent: u64,
    pub consumed: u64,
    pub icmp_echo_replies: u64,
    pub icmpv6_echo_replies: u64,
    pub nd_adverts_sent: u64,
    pub nd_solicits_sent: u64,
    pub icmp_errors_sent: u64,
    pub icmp_errors_forwarded: u64,
    pub conns_created: u64,
    pub conns_expired: u64,
    pub conns_reused: u64,
    pub synproxy_syn_answered: u64,
    pub synproxy_ack_accepted: u64,
    pub synproxy_established: u64,
    pub synproxy_refused: u64,
    pub synproxy_open_failed: u64,
    pub synproxy_updates_sent: u64,
    pub synproxy_updates_unsent: u64,
    pub exception_to_kernel: u64,
    pub exception_from_kernel: u64,
    pub garp_sent: u64,
    /// Drop counts by reason label (zero reasons included, so scripts can
    /// rely on every key being present).
    /// (Borrowed where rvsd counts, owned where a client reads them.)
    pub drops: std::collections::BTreeMap<std::borrow::Cow<'static, str>, u64>,
}

impl StatsSnapshot {
    pub fn add(&mut self, w: &WorkerStats) {
        self.rx_packets += w.rx_packets.get();
        self.rx_bytes += w.rx_bytes.get();
        self.tx_packets += w.tx_packets.get();
        self.tx_bytes += w.tx_bytes.get();
        self.tx_dropped += w.tx_dropped.get();
        self.rx_chained += w.rx_chained.get();
        self.arp_replies_sent += w.arp_replies_sent.get();
        self.arp_requests_sent += w.arp_requests_sent.get();
        self.consumed += w.consumed.get();
        self.icmp_echo_replies += w.icmp_echo_replies.get();
        self.icmpv6_echo_replies += w.icmpv6_echo_replies.get();
        self.nd_adverts_sent += w.nd_adverts_sent.get();
        self.nd_solicits_sent += w.nd_solicits_sent.get();
        self.icmp_errors_sent += w.icmp_errors_sent.get();
        self.icmp_errors_forwarded += w.icmp_errors_forwarded.get();
        self.conns_created += w.conns_created.get();
        self.conns_expired += w.conns_expired.get();
        self.conns_reused += w.conns_reused.get();
        self.synproxy_syn_answered += w.synproxy_syn_answered.get();
        self.synproxy_ack_accepted += w.synproxy_ack_accepted.get();
        self.synproxy_established += w.synproxy_established.get();
        self.synproxy_refused += w.synproxy_refused.get();
        self.synproxy_open_failed += w.synproxy_open_failed.get();
        self.synproxy_updates_sent += w.synproxy_updates_sent.get();
        self.synproxy_updates_unsent += w.synproxy_updates_unsent.get();
        self.exception_to_kernel += w.exception_to_kernel.get();
        self.exception_from_kernel += w.exception_from_kernel.get();
        self.garp_sent += w.garp_sent.get();
        for r in DropReason::ALL {
            *self.drops.entry(r.label().into()).or_default() += w.dropped(*r);
        }
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_snapshots_sum() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.label()), "{}", r.label());
        }
        let a = WorkerStats::default();
        let b = WorkerStats::default();
        a.drop(DropReason::NoService);
        b.drop(DropReason::NoService);
        b.rx_packets.add(5);
        let mut s = a.snapshot();
        s.add(&b);
        assert_eq!(s.drops["no_service"], 2);
        assert_eq!(s.drops["ipv6"], 0);
        assert_eq!(s.rx_packets, 5);
        assert_eq!(s.total_drops(), 2);
    }
}

/// A worker's packet and byte counts per real server and service, gathered
/// without touching shared memory and added to the shared counters once
/// per poll ([`TrafficAcc::flush`]): no per-packet atomic on a cache line
/// that other workers write.
#[derive(Debug, Default)]
pub struct TrafficAcc {
    dests: Vec<[u64; 4]>,
    svcs: Vec<[u64; 4]>,
    touched_dests: Vec<u32>,
    touched_svcs: Vec<u32>,
}

impl TrafficAcc {
    #[inline(always)]
    fn bump(v: &mut Vec<[u64; 4]>, touched: &mut Vec<u32>, id: u32, out: bool, bytes: u64) {
        let i = id as usize;
        if i >= v.len() {
            Self::grow(v, i);
        }
        let e = &mut v[i];
        // Untouched since the last flush: no packet either way.
        if e[0] | e[1] == 0 {
            touched.push(id);
        }
        let o = out as usize;
        e[o] += 1;
        e[2 + o] += bytes;
    }
    #[cold]
    fn grow(v: &mut Vec<[u64; 4]>, i: usize) {
        v.resize(i + 1, [0; 4]);
    }
    /// One packet of `bytes` for real server `dest` and service `svc`,
    /// inbound (client to server) or `out`.
    #[inline]
    pub fn count(&mut self, dest: u32, svc: u32, out: bool, bytes: usize) {
        Self::bump(
            &mut self.dests,
            &mut self.touched_dests,
            dest,
            out,
            bytes as u64,
        );
        Self::bump(
            &mut self.svcs,
            &mut self.touched_svcs,
            svc,
            out,
            bytes as u64,
        );
    }
    pub fn is_empty(&self) -> bool {
        self.touched_dests.is_empty() && self.touched_svcs.is_empty()
    }
    /// Add everything gathered to the shared counters and start over.
    pub fn flush(&mut self, ids: &crate::service::Ids) {
        for id in self.touched_dests.drain(..) {
            let e = std::mem::take(&mut self.dests[id as usize]);
            if let Some(d) = ids.dests.get(id) {
                d.traffic.add(e[0], e[1], e[2], e[3]);
            }
        }
        for id in self.touched_svcs.drain(..) {
            let e = std::mem::take(&mut self.svcs[id as usize]);
            if let Some(s) = ids.services.get(id) {
                s.traffic.add(e[0], e[1], e[2], e[3]);
            }
        }
    }
}
