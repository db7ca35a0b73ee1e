//! The SYN proxy's steps in the data path: a SYN answered with a cookie,
//! a cookie ACK that opens the connection and becomes the server's SYN, the
//! server's SYN-ACK that completes it, and the client's window update. The
//! cookie and segment logic is `crate::synproxy`.

use std::net::{IpAddr, SocketAddrV4};

use super::{ip_total, ClientUpdate, Ctx, Dataplane, Verdict};
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
            // Answer with the MSS the client's side of the director takes.
            let mss = port.mtu.saturating_sub(40).max(DEFAULT_MSS);
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
            Err(r) => {
                // The client believes it is connected (with a closed
                // window) and would wait for ever: tell it.
                cx.stats.synproxy_open_failed.inc();
                let (IpAddr::V4(cip), IpAddr::V4(vip)) = (key.src, key.dst) else {
                    return Verdict::Drop(r);
                };
                let client = SocketAddrV4::new(cip, key.sport);
                let vip = SocketAddrV4::new(vip, key.dport);
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
        let total = ip_total(frame.data());
        let next = match self.forward(cx, in_port, frame, conn, Dir::In) {
            Ok(next) => next,
            Err(v) => return v,
        };
        conn.commit();
        let syn = TcpEvent {
            syn: true,
            ..TcpEvent::default()
        };
        self.sent(cx, frame, conn, (Dir::In, syn), total, next)
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
        let client = SocketAddrV4::new(conn.cip, conn.cport);
        let vip = SocketAddrV4::new(conn.vip, conn.vport);
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
                let total = ip_total(frame.data());
                let next = match self.forward(cx, in_port, frame, conn, Dir::In) {
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
                self.sent(cx, frame, conn, (Dir::In, ack), total, next)
            }
            Err(sp::Reject::Refused) => {
                cx.stats.synproxy_refused.inc();
                self.conns.end(conn);
                if sp::write_client_rst(frame, client, vip, info).is_err() {
                    return Verdict::Drop(DropReason::NoBuffer);
                }
                self.to_next_hop(cx, frame.data_mut(), conn.cip)
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
        self.to_next_hop(cx, buf.data_mut(), *u.client.ip())
    }
}
