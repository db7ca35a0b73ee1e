//! Step 6: forwarding. The SYN proxy's sequence translation around the
//! mode, the mode itself (`xmit::transmit`), ICMP errors about tracked
//! connections, and what a mode's failure becomes.

use std::net::{IpAddr, Ipv4Addr};

use super::{Ctx, Dataplane, Verdict, ETH};
use crate::conn::{Conn, Dir, SynProxy, TcpEvent};
use crate::flow::Forward;
use crate::io::Frame;
use crate::stats::DropReason;
use crate::synproxy::{self as sp, SeqAdj};
use crate::xmit::{self, Egress, XmitError};

impl Dataplane {
    /// Step 6: a packet of a connection, found or just opened: the SYN
    /// proxy's translation, Local delivery, the mode's rewrite, then the
    /// connection's state, the counts and the next hop.
    #[inline(always)]
    pub(super) fn forward_conn<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
        total: usize,
    ) -> Verdict {
        // IPv4 in IPv6: an IPv6 TUN real server (service6.rs).
        if let Some(rip6) = conn.dip6 {
            return self.tunnel4_in_v6(cx, in_port, frame, conn, (dir, ev), (total, rip6));
        }
        let adj = match self.synproxy_before(cx, in_port, frame, conn, (dir, ev)) {
            Ok(adj) => adj,
            Err(v) => return v,
        };
        if conn.fwd == Forward::Local {
            // IPVS's LOCALNODE (ip_vs_null_xmit): the director's own stack
            // takes the packet unchanged, here through the receiving port's
            // kernel twin (without one the worker counts local_unhandled).
            // Its replies leave through the twin from the VIP.
            self.account(cx, conn, (Dir::InOnly, ev), false, total);
            return Verdict::ToKernel(in_port);
        }
        let next = match self.forward(cx, in_port, frame, conn, dir) {
            Ok(next) => next,
            Err(v) => return v,
        };
        if let Err(v) = synproxy_after(frame, &adj, dir) {
            return v;
        }
        conn.commit();
        let state = (state_dir(conn, dir), ev);
        self.sent(cx, in_port, frame, conn, state, total, IpAddr::V4(next))
    }

    /// The SYN proxy's part before a connection's mode: while its
    /// handshake with the server is pending the proxy decides (`Err`);
    /// afterwards a client's packet is moved into the server's sequence
    /// space and the adjustment returned for [`synproxy_after`].
    #[inline(always)]
    pub(super) fn synproxy_before<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
    ) -> Result<Option<SeqAdj>, Verdict> {
        let adj = match conn.synproxy {
            None => return Ok(None),
            Some(SynProxy::Proxied(bits)) => SeqAdj::from_bits(bits),
            Some(SynProxy::Pending { .. }) => {
                return Err(self.synproxy_pending(cx, in_port, frame, conn, (dir, ev)));
            }
        };
        if dir == Dir::In && sp::to_server(frame, &adj).is_err() {
            return Err(Verdict::Drop(DropReason::L4Malformed));
        }
        Ok(Some(adj))
    }

    /// Have the connection's forwarding mode rewrite the packet; returns the
    /// address whose next hop gets the frame, or the verdict that replaces
    /// forwarding (a drop, or an ICMP error sent back instead).
    #[inline(always)]
    pub(super) fn forward<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        dir: Dir,
    ) -> Result<Ipv4Addr, Verdict> {
        let eg = Egress {
            router: &self.router,
            ident: cx.ident,
        };
        xmit::transmit(frame, conn, dir, &eg).map_err(|e| match e {
            XmitError::Malformed(_) => Verdict::Drop(DropReason::L4Malformed),
            XmitError::TtlExceeded => Verdict::Drop(DropReason::TtlExceeded),
            XmitError::NoRoom => Verdict::Drop(DropReason::NoBuffer),
            XmitError::TooBig => Verdict::Drop(DropReason::TooBig),
            XmitError::NoRoute => Verdict::Drop(DropReason::NoRoute),
            XmitError::Unsupported => Verdict::Drop(DropReason::FwdUnsupported),
            XmitError::FragNeeded(mtu) => self.frag_needed(cx, in_port, frame, mtu),
        })
    }

    /// An IPv4 packet that no longer fits once rewritten: its sender is
    /// told `mtu` by a Fragmentation Needed from the port it used.
    pub(super) fn frag_needed<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        mtu: u16,
    ) -> Verdict {
        let me = self.router.ports[in_port as usize];
        if xmit::icmp::frag_needed(frame, me.cidr.addr, me.mac, mtu) {
            cx.stats.icmp_errors_sent.inc();
            Verdict::Tx(in_port)
        } else {
            Verdict::Drop(DropReason::NoBuffer)
        }
    }

    /// A packet of `conn` sent on: its state moves (`state_dir`, `ev`) and
    /// its bytes count for its real server and service.
    #[inline(always)]
    pub(super) fn account(
        &self,
        cx: &Ctx,
        conn: &Conn,
        (state_dir, ev): (Dir, TcpEvent),
        out: bool,
        total: usize,
    ) {
        conn.on_packet(state_dir, ev, cx.now_ms, cx.timeouts);
        cx.traffic
            .borrow_mut()
            .count(conn.dest_id(), conn.svc_id(), out, total);
    }

    /// Forward an ICMP error about a tracked connection the way its packets
    /// go, translated as the kernel's `ip_vs_nat_icmp` does (NAT, FULLNAT),
    /// or as the connection's own packets (DR, TUN: towards the server only).
    pub(super) fn icmp_error<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        dir: Dir,
        total: usize,
    ) -> Verdict {
        let (cip, vip, rip) = (conn.cip, conn.vip, conn.dip);
        let (c, v, r) = ((cip, conn.cport), (vip, conn.vport), (rip, conn.dport));
        let local = conn.fnat.as_ref().map(|f| (f.lip, f.lport));
        let ip = &mut frame.data_mut()[ETH..ETH + total];
        if matches!(conn.fwd, Forward::Nat | Forward::FullNat) && ip[8] <= 1 {
            return Verdict::Drop(DropReason::TtlExceeded);
        }
        use xmit::icmp::rewrite_error;
        let done = match (conn.fwd, dir, local) {
            (Forward::Nat, Dir::Out, _) => {
                rewrite_error(ip, Some(vip), None, None, Some(v)).map(|_| cip)
            }
            (Forward::Nat, Dir::In, _) => {
                rewrite_error(ip, None, Some(rip), Some(r), None).map(|_| rip)
            }
            (Forward::FullNat, Dir::Out, Some(_)) => {
                rewrite_error(ip, Some(vip), Some(cip), Some(c), Some(v)).map(|_| cip)
            }
            (Forward::FullNat, Dir::In, Some(l)) => {
                rewrite_error(ip, Some(l.0), Some(rip), Some(r), Some(l)).map(|_| rip)
            }
            // An error about a Local connection is the local stack's.
            (Forward::Local, Dir::In, _) => return Verdict::ToKernel(in_port),
            (Forward::Dr | Forward::Tun, Dir::In, _) => {
                return match self.forward(cx, in_port, frame, conn, dir) {
                    Ok(next) => {
                        cx.stats.icmp_errors_forwarded.inc();
                        self.to_next_hop(cx, frame.data_mut(), next)
                    }
                    Err(v) => v,
                };
            }
            _ => return Verdict::Drop(DropReason::NotRouted),
        };
        // An error about a packet the SYN proxy sent the client quotes the
        // client's sequence space; the server needs its own.
        if let (Ok(_), Dir::In, Some(SynProxy::Proxied(bits))) = (&done, dir, conn.synproxy) {
            let ip = &mut frame.data_mut()[ETH..ETH + total];
            if sp::icmp_quote_to_server(ip, &SeqAdj::from_bits(bits)).is_err() {
                return Verdict::Drop(DropReason::L4Malformed);
            }
        }
        match done {
            Ok(next) => {
                cx.stats.icmp_errors_forwarded.inc();
                self.to_next_hop(cx, frame.data_mut(), next)
            }
            Err(_) => Verdict::Drop(DropReason::L4Malformed),
        }
    }
}

/// The SYN proxy's part after the mode: a server's packet (`dir` Out) is
/// moved into the client's sequence space.
#[inline(always)]
pub(super) fn synproxy_after<F: Frame>(
    frame: &mut F,
    adj: &Option<SeqAdj>,
    dir: Dir,
) -> Result<(), Verdict> {
    match (adj, dir) {
        (Some(adj), Dir::Out) if sp::to_client(frame, adj).is_err() => {
            Err(Verdict::Drop(DropReason::L4Malformed))
        }
        _ => Ok(()),
    }
}

/// The direction a packet moves its connection's state by: DR, TUN and
/// Local see only the client's half of the flow (the kernel's input-only
/// table).
#[inline(always)]
pub(super) fn state_dir(conn: &Conn, dir: Dir) -> Dir {
    state_dir_of(conn.fwd, dir)
}

/// [`state_dir`] for a connection forwarded by `fwd` (one not yet made).
#[inline(always)]
pub(super) fn state_dir_of(fwd: Forward, dir: Dir) -> Dir {
    if dir == Dir::In && matches!(fwd, Forward::Dr | Forward::Tun | Forward::Local) {
        Dir::InOnly
    } else {
        dir
    }
}
