//! Steps 1, 3 and 4: the IPv4 header, the transport header, and the
//! connection table.

use std::net::{IpAddr, Ipv4Addr};

use super::{bad_source, Ctx, Dataplane, Verdict, ETH};
use crate::conn::{Conn, Dir, State, TcpEvent};
use crate::flow::Proto;
use crate::stats::DropReason;
use crate::wire::{IpProtocol, Ipv4Packet, TcpSegment, UdpDatagram};

/// What the IPv4 header says, and what the director is to the packet.
pub(super) struct Ipv4Head {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: IpProtocol,
    pub ihl: usize,
    pub total: usize,
    /// To a VIP this director owns now.
    pub vip: bool,
    /// To a VIP it does not own now (vip_ownership "kernel"): tracked
    /// connections keep being forwarded (as the kernel's IPVS forwards what
    /// still reaches it), nothing new is accepted or answered.
    pub unowned_vip: bool,
    /// The receiving port has a kernel twin (the exception path).
    pub twin: bool,
}

impl Dataplane {
    /// Step 1: a valid, unfragmented IPv4 header from a sane source.
    #[inline(always)]
    pub(super) fn parse_ipv4(
        &self,
        cx: &Ctx,
        in_port: u16,
        data: &[u8],
    ) -> Result<Ipv4Head, Verdict> {
        let Ok(ip) = Ipv4Packet::new_checked(&data[ETH..]) else {
            return Err(Verdict::Drop(DropReason::Ipv4Malformed));
        };
        if !ip.verify_checksum() {
            return Err(Verdict::Drop(DropReason::Ipv4BadChecksum));
        }
        if ip.is_fragment() {
            return Err(Verdict::Drop(DropReason::Ipv4Fragment));
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if bad_source(src) || self.router.is_broadcast(src) {
            return Err(Verdict::Drop(DropReason::BadSource));
        }
        let vip = cx.services.is_vip(IpAddr::V4(dst));
        let unowned_vip = vip && !self.exc.owns(std::net::IpAddr::V4(dst));
        Ok(Ipv4Head {
            src,
            dst,
            proto: ip.protocol(),
            ihl: ip.header_len(),
            total: ip.total_len() as usize,
            vip: vip && !unowned_vip,
            unowned_vip,
            twin: self.exc.has_twin(in_port),
        })
    }

    /// Step 3: the protocol, ports and TCP flags of a TCP or UDP packet.
    /// Other protocols to the director's own address (VRRP, OSPF, GRE...)
    /// go to its kernel twin; to a VIP they are refused. The caller builds
    /// the key where it is used: returned through memory, the key cost a
    /// store-forwarding stall in the table lookup (~8 ns a packet).
    #[inline(always)]
    pub(super) fn transport(
        &self,
        in_port: u16,
        data: &[u8],
        h: &Ipv4Head,
    ) -> Result<(Proto, u16, u16, TcpEvent), Verdict> {
        let l4proto = match h.proto {
            IpProtocol::TCP => Proto::Tcp,
            IpProtocol::UDP => Proto::Udp,
            _ if h.vip => return Err(Verdict::Drop(DropReason::ProtoUnsupported)),
            _ if h.unowned_vip => return Err(Verdict::Drop(DropReason::VipNotOwned)),
            _ if h.twin && self.router.local_port(h.dst).is_some() => {
                return Err(Verdict::ToKernel(in_port))
            }
            _ => return Err(Verdict::Drop(DropReason::NotRouted)),
        };
        let l4 = &data[ETH + h.ihl..ETH + h.total];
        let (sport, dport, ev) = match l4proto {
            Proto::Tcp => match TcpSegment::new_checked(l4) {
                Ok(t) => {
                    let f = t.flags();
                    (
                        t.src_port(),
                        t.dst_port(),
                        TcpEvent {
                            syn: f.syn(),
                            fin: f.fin(),
                            ack: f.ack(),
                            rst: f.rst(),
                        },
                    )
                }
                Err(_) => return Err(Verdict::Drop(DropReason::L4Malformed)),
            },
            Proto::Udp => match UdpDatagram::new_checked(l4) {
                Ok(u) => (u.src_port(), u.dst_port(), TcpEvent::default()),
                Err(_) => return Err(Verdict::Drop(DropReason::L4Malformed)),
            },
        };
        Ok((l4proto, sport, dport, ev))
    }

    /// Step 4 (after the table lookup, which stays in the caller: a
    /// connection snapshot is a couple of hundred bytes, and returning it
    /// from here cost a copy per packet, ~15 % of the NAT path): whether a
    /// hit must be dropped. conn_reuse_mode 1 (the kernel default): a client
    /// SYN that reuses the tuple of a connection in TIME_WAIT or CLOSE, not
    /// controlled by a persistence template, ends it and is scheduled afresh
    /// (so it never follows a real server that has since been removed).
    #[inline(always)]
    pub(super) fn reused(&self, cx: &Ctx, hit: &Option<(Conn<'_>, Dir)>, ev: TcpEvent) -> bool {
        if let Some((c, Dir::In)) = hit {
            if ev.syn
                && !ev.ack
                && !ev.rst
                && !ev.fin
                && c.proto == Proto::Tcp
                && !c.persistent
                && matches!(c.state(), State::TimeWait | State::Close)
            {
                self.conns.end(c);
                cx.stats.conns_reused.inc();
                return true;
            }
        }
        false
    }
}
