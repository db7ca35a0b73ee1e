//! The SYN proxy's steps in the data path: a SYN answered with a cookie,
//! a cookie ACK that opens the connection and becomes the server's SYN, the
//! server's SYN-ACK that completes it, and the client's window update. The
//! cookie and segment logic is `crate::synproxy`. Both families: the
//! segments are written in the connection's family and go through its mode
//! (`forward` for IPv4, `forward6` for IPv6).

use std::net::{IpAddr, SocketAddr};

use super::{ClientUpdate, Ctx, Dataplane, Verdict, ETH};
use crate::conn::{Conn, Dir, SynProxy, TcpEvent};
use crate::flow::FlowKey;
use crate::io::Frame;
use crate::service::Service;
use crate::stats::DropReason;
use crate::synproxy::{self as sp, CookieInfo};
use crate::wire::tcp::DEFAULT_MSS;
use crate::wire::EthernetFrame;

impl Dataplane {
    /// A packet without a connection for a SYN-proxy service: a SYN is
    /// answered with a cookie (nothing is stored); an ACK carrying a valid
    /// cookie opens the connection and becomes the SYN to the real server.
    pub(super) fn synproxy_new<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        svc: &Service,
        key: &FlowKey,
        ev: TcpEvent,
    ) -> Verdict {
        let port = self.router.ports[in_port as usize];
        if ev.syn && !ev.ack && !ev.rst && !ev.fin {
            // Answer with the MSS the client's side of the director takes
            // (less IPv6's longer header).
            let headers = if key.src.is_ipv6() { 60 } else { 40 };
            let mss = port.mtu.saturating_sub(headers).max(DEFAULT_MSS);
            return match sp::answer_syn(frame, &self.syn_key, mss, cx.now_ms) {
                Ok(()) => {
                    // The SYN may have come to the broadcast MAC.
                    EthernetFrame::new_unchecked(frame.data_mut()).set_src(port.mac);
                    cx.stats.synproxy_syn_answered.inc();
                    Verdict::Tx(in_port)
                }
                Err(sp::Reject::NoRoom) => Verdict::Drop(DropReason::NoBuffer),
                Err(_) => Verdict::Drop(DropReason::SynproxyBadSyn),
            };
        }
        if !ev.ack || ev.syn || ev.rst || ev.fin {
            return Verdict::Drop(DropReason::NoConnNotSyn);
        }
        let info = match sp::check_ack(frame, &self.syn_key, cx.now_ms) {
            Ok(info) => info,
            Err(_) => return Verdict::Drop(DropReason::SynproxyBadCookie),
        };
        let conn = match self.new_conn(cx, svc, key, ev, Some(&info)) {
            Ok(c) => c,
            Err(_) => {
                // The client believes it is connected (with a closed
                // window) and would wait for ever: tell it.
                cx.stats.synproxy_open_failed.inc();
                let client = SocketAddr::new(key.src, key.sport);
                let vip = SocketAddr::new(key.dst, key.dport);
                if sp::write_client_rst(frame, client, vip, &info).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                let mut e = EthernetFrame::new_unchecked(frame.data_mut());
                let src = e.src();
                e.set_dst(src);
                e.set_src(port.mac);
                return Verdict::Tx(in_port);
            }
        };
        // Another worker may have opened it from the same ACK first: its
        // stored handshake is the one the server is told about.
        let info = match conn.synproxy {
            Some(SynProxy::Pending {
                client_isn,
                cookie,
                window,
            }) => CookieInfo::from_stored(client_isn, cookie, window),
            _ => info,
        };
        cx.stats.synproxy_ack_accepted.inc();
        self.synproxy_syn(cx, in_port, frame, &conn, &info)
    }

    /// A packet of a connection whose server has not answered the SYN
    /// proxy's SYN yet: the server's answer completes it; a client's reset
    /// goes to the server (in SYN_RECV) and ends it; anything else from the
    /// client (a window probe) sends the SYN again.
    pub(super) fn synproxy_pending<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        (dir, ev): (Dir, TcpEvent),
    ) -> Verdict {
        let Some(SynProxy::Pending {
            client_isn,
            cookie,
            window,
        }) = conn.synproxy
        else {
            return Verdict::Drop(DropReason::NotRouted);
        };
        let info = CookieInfo::from_stored(client_isn, cookie, window);
        match dir {
            Dir::Out => self.synproxy_answer(cx, in_port, frame, conn, &info),
            _ if ev.rst => {
                let v = match self.forward_any(cx, in_port, frame, conn, Dir::In) {
                    Ok(next) => self.next_hop_any(cx, frame.data_mut(), in_port, next),
                    Err(v) => v,
                };
                self.conns.end(conn);
                v
            }
            _ => self.synproxy_syn(cx, in_port, frame, conn, &info),
        }
    }

    /// Turn a client's packet of a pending SYN-proxied connection into the
    /// SYN for the real server and forward it.
    pub(super) fn synproxy_syn<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        info: &CookieInfo,
    ) -> Verdict {
        if sp::syn_to_server(frame, info).is_err() {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        let total = ip_len(frame.data());
        let next = match self.forward_any(cx, in_port, frame, conn, Dir::In) {
            Ok(next) => next,
            Err(v) => return v,
        };
        conn.commit();
        let syn = TcpEvent {
            syn: true,
            ..TcpEvent::default()
        };
        self.sent(cx, in_port, frame, conn, (Dir::In, syn), total, next)
    }

    /// The real server's answer to the SYN proxy's SYN: a SYN-ACK becomes
    /// the ACK completing its handshake (and the worker sends the client a
    /// window update); a reset becomes a reset for the client.
    pub(super) fn synproxy_answer<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        info: &CookieInfo,
    ) -> Verdict {
        let client = SocketAddr::new(conn.client(), conn.cport);
        let vip = SocketAddr::new(conn.virt(), conn.vport);
        match sp::server_synack(frame, info) {
            Ok(est) => {
                if !conn.synproxy_establish(est.adj.to_bits()) {
                    // Another worker took a duplicate SYN-ACK first.
                    return Verdict::Drop(DropReason::SynproxyBadSynAck);
                }
                cx.stats.synproxy_established.inc();
                let synack = TcpEvent {
                    syn: true,
                    ack: true,
                    ..TcpEvent::default()
                };
                conn.on_packet(Dir::Out, synack, cx.now_ms, cx.timeouts);
                if sp::write_server_ack(frame, client, vip, info, &est).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                // The snapshot still sees the connection opening, so
                // FULLNAT puts TOA on this ACK as on any handshake's last.
                let total = ip_len(frame.data());
                let next = match self.forward_any(cx, in_port, frame, conn, Dir::In) {
                    Ok(next) => next,
                    Err(v) => return v,
                };
                // Only once the server's ACK is on its way: the client's
                // window update (the worker originates it).
                cx.update.set(Some(ClientUpdate {
                    client,
                    vip,
                    info: *info,
                    est,
                }));
                let ack = TcpEvent {
                    ack: true,
                    ..TcpEvent::default()
                };
                self.sent(cx, in_port, frame, conn, (Dir::In, ack), total, next)
            }
            Err(sp::Reject::Refused) => {
                cx.stats.synproxy_refused.inc();
                self.conns.end(conn);
                if sp::write_client_rst(frame, client, vip, info).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                self.next_hop_any(cx, frame.data_mut(), in_port, conn.client())
            }
            Err(_) => Verdict::Drop(DropReason::SynproxyBadSynAck),
        }
    }

    /// Write the SYN proxy's window update `u` into `buf` (an empty frame
    /// from the pool), addressed to the client's next hop.
    pub fn client_update<F: Frame>(&self, cx: &Ctx, u: &ClientUpdate, buf: &mut F) -> Verdict {
        if sp::write_client_update(buf, u.client, u.vip, &u.info, &u.est).is_err() {
            return Verdict::Drop(DropReason::NoBuffer);
        }
        self.next_hop_any(cx, buf.data_mut(), 0, u.client.ip())
    }

    /// The connection's mode for a frame the SYN proxy wrote (IPv4, or
    /// IPv6 without extension headers).
    fn forward_any<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        conn: &Conn,
        dir: Dir,
    ) -> Result<IpAddr, Verdict> {
        if conn.v6.is_none() {
            return self.forward(cx, in_port, frame, conn, dir).map(IpAddr::V4);
        }
        let end = ETH + ip_len(frame.data());
        let span = (40, crate::wire::ipv6::next_header::TCP, end);
        self.forward6(cx, in_port, frame, conn, dir, span)
            .map(IpAddr::V6)
    }
}

/// The IP packet's length (IPv4 total length, or IPv6's header and
/// payload) of a frame the SYN proxy handles.
fn ip_len(data: &[u8]) -> usize {
    if data[ETH] >> 4 == 6 {
        40 + u16::from_be_bytes([data[ETH + 4], data[ETH + 5]]) as usize
    } else {
        u16::from_be_bytes([data[ETH + 2], data[ETH + 3]]) as usize
    }
}
