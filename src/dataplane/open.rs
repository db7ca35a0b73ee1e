//! Step 5: scheduling. A packet without a connection finds its service,
//! the scheduler (or a persistence template) picks a real server, FULLNAT
//! takes a local address, and the connection is inserted.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::lookup::Ipv4Head;
use super::{Ctx, Dataplane, Verdict};
use crate::conn::state::tcp_next;
use crate::conn::{Conn, Dir, InsertError, NewConn, State, TcpEvent, Template, TemplateKey};
use crate::flow::{FlowKey, Forward, Proto};
use crate::io::Frame;
use crate::service::Service;
use crate::stats::DropReason;
use crate::synproxy::CookieInfo;

/// What step 5 did with a packet that had no connection.
pub(super) enum Opened<'a> {
    /// A new connection; `one_packet` ends it once this datagram is sent.
    Conn { conn: Conn<'a>, one_packet: bool },
    /// Nothing to forward: this verdict (a drop, the kernel twin, or the
    /// SYN proxy's answer).
    Done(Verdict),
}

impl Dataplane {
    /// Step 5: a packet without a connection. The service, as the kernel's
    /// ip_vs_service_find: the fwmark service of the packet's mark first
    /// (never for the director's own addresses), then the VIP's; its
    /// scheduler picks a real server and the connection is created. The
    /// SYN proxy answers for its services instead.
    #[inline(never)]
    pub(super) fn open<F: Frame>(
        &self,
        cx: &Ctx,
        in_port: u16,
        frame: &mut F,
        h: &Ipv4Head,
        key: &FlowKey,
        ev: TcpEvent,
    ) -> Opened<'_> {
        if h.unowned_vip {
            return Opened::Done(Verdict::Drop(DropReason::VipNotOwned));
        }
        if !h.vip && self.router.local_port(h.dst).is_some() {
            return Opened::Done(if h.twin {
                Verdict::ToKernel(in_port)
            } else {
                Verdict::Drop(DropReason::LocalUnhandled)
            });
        }
        let Some(svc) = cx.services.find_new(key.proto, h.dst, key.dport, h.vip) else {
            return Opened::Done(Verdict::Drop(if h.vip {
                DropReason::NoService
            } else {
                DropReason::NotRouted
            }));
        };
        if svc.conf.synproxy && key.proto == Proto::Tcp {
            return Opened::Done(self.synproxy_new(cx, in_port, frame, svc, key, ev));
        }
        // One-packet scheduling (kernel IP_VS_CONN_F_ONE_PACKET, set in
        // ip_vs_schedule for a UDP packet of an `ops` service).
        let one_packet = svc.conf.ops && key.proto == Proto::Udp;
        match self.new_conn(cx, svc, key, ev, None) {
            Ok(conn) => Opened::Conn { conn, one_packet },
            Err(r) => Opened::Done(Verdict::Drop(r)),
        }
    }

    /// Schedule a new flow to a real server and track it. `syn` is the
    /// client handshake the SYN proxy completed (the packet is its ACK).
    pub(super) fn new_conn(
        &self,
        cx: &Ctx,
        svc: &Service,
        key: &FlowKey,
        ev: TcpEvent,
        syn: Option<&CookieInfo>,
    ) -> Result<Conn<'_>, DropReason> {
        // As the kernel's tcp_conn_schedule: only a SYN (without RST) opens
        // a connection; SYN+ACK is allowed (active FTP). With sloppy_tcp
        // any packet but a RST does (`(th->syn || sysctl_sloppy_tcp(ipvs))
        // && !th->rst`), here only where every director would pick the
        // same real server; the state machine then goes on from NONE with
        // this packet (an ACK: ESTABLISHED, as the kernel's tables say).
        let sloppy = self.sloppy_tcp && matches!(svc.conf.sched.as_str(), "mh" | "sh");
        if key.proto == Proto::Tcp && syn.is_none() && (ev.rst || !(ev.syn || sloppy)) {
            return Err(DropReason::NoConnNotSyn);
        }
        let (i, template) = match svc.conf.persistent {
            Some(timeout) => {
                let (i, t) = self.persist(cx, svc, key, timeout)?;
                (i, Some(t))
            }
            None => {
                let i = svc
                    .sched
                    .pick(&svc.dests, key, cx.now_ms)
                    .ok_or(DropReason::NoDest)?;
                (i, None)
            }
        };
        let d = &svc.dests[i];
        // Another director's FULLNAT connection had its own local address
        // and port: the real server would not know this one.
        if key.proto == Proto::Tcp && syn.is_none() && !ev.syn && d.fwd == Forward::FullNat {
            return Err(DropReason::NoConnNotSyn);
        }
        // The configuration refuses SYN-proxy services with DR/TUN servers.
        if syn.is_some() && !matches!(d.fwd, Forward::Nat | Forward::FullNat) {
            return Err(DropReason::FwdUnsupported);
        }
        // A real server of port 0 takes the port asked for; so does every
        // real server of a persistent port-zero or fwmark service (whose
        // port is 0): ip_vs_sched_persist's `dport = dst_port; if (dport ==
        // svc->port && dest->port) dport = dest->port`, and ip_vs_schedule's
        // `dest->port ? dest->port : pptr[1]` otherwise.
        let dport = if d.port == 0 || (svc.conf.port == 0 && svc.conf.persistent.is_some()) {
            key.dport
        } else {
            d.port
        };
        let mut c = NewConn::new(
            key.proto,
            (key.src, key.sport),
            (key.dst, key.dport),
            (d.ip, dport),
            d.fwd,
            &d.state,
            &svc.state,
        );
        if let Some(t) = template {
            c = c.with_template(t);
        }
        if let Some(i) = syn {
            c = c.with_synproxy(i.client_isn, i.cookie, i.window);
        } else if key.proto == Proto::Tcp {
            // Bound in the state this packet leads to.
            let dir = super::forward::state_dir_of(d.fwd, Dir::In);
            c = c.with_first_state(tcp_next(State::None, dir, ev));
        }
        if d.fwd == Forward::FullNat {
            let (lip, lport) = self
                .local_addr(cx, svc, key.proto, d.ip, dport)
                .ok_or(DropReason::LaddrExhausted)?;
            c = c.with_fnat(lip, lport, svc.conf.client_addr);
        }
        // FULLNAT's local port pick has just read the reply key's bucket
        // (`local_addr`): nothing to overlap, and leaving the entry late
        // would only add its link's compare-and-swap. (The pick cannot
        // meet a late entry of its own burst: a worker's cursor revisits
        // a port only after thousands of connections.)
        let late = cx.late.filter(|_| d.fwd != Forward::FullNat);
        let mut late = late.map(|l| l.borrow_mut());
        let (c, new) = self
            .conns
            .insert_late(c, cx.now_ms, cx.worker as usize, late.as_deref_mut())
            .map_err(|e| match e {
                InsertError::Full => DropReason::ConnTableFull,
                InsertError::MixedFamily => DropReason::ProtoUnsupported,
            })?;
        if new {
            // The Conns statistic, as the kernel's ip_vs_conn_stats at the
            // end of ip_vs_schedule (synced connections are not counted).
            d.state.traffic.conns.fetch_add(1, Relaxed);
            svc.state.traffic.conns.fetch_add(1, Relaxed);
        }
        cx.stats.conns_created.inc();
        Ok(c)
    }

    /// The kernel's `ip_vs_sched_persist`: clients of one network (source
    /// masked by the service netmask) keep the real server recorded in their
    /// template while it lives; a template whose server was deleted is
    /// replaced by a fresh pick. Quiesced (weight 0) servers keep their
    /// persistent clients, as with the kernel's default
    /// `expire_quiescent_template = 0`.
    pub(super) fn persist(
        &self,
        cx: &Ctx,
        svc: &Service,
        key: &FlowKey,
        timeout: u32,
    ) -> Result<(usize, Arc<Template>), DropReason> {
        // IPv4: the mask; IPv6: a prefix length (the u32 of `netmask`,
        // 255.255.255.255 for /128), as ip_vs_sched_persist's
        // ipv6_addr_prefix.
        let cnet = match key.src {
            IpAddr::V4(cip) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(cip) & u32::from(svc.conf.netmask)))
            }
            IpAddr::V6(cip) => {
                let plen = match u32::from(svc.conf.netmask) {
                    p @ 1..=127 => p,
                    _ => 128,
                };
                let keep = u128::MAX.checked_shl(128 - plen).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(cip) & keep))
            }
        };
        // <proto, cnet, 0, vip, vport>; vport 0 for port-zero services; a
        // fwmark service's is <IPPROTO_IP, cnet, 0, fwmark, 0>, one for all
        // the client's ports and protocols (ip_vs_sched_persist).
        let tkey = if key.dport != svc.conf.port && svc.conf.is_fwmark() {
            TemplateKey::fwmark(cnet, svc.conf.fwmark)
        } else {
            TemplateKey {
                proto: Some(key.proto),
                cnet,
                vaddr: key.dst,
                vport: if key.dport == svc.conf.port {
                    key.dport
                } else {
                    0
                },
            }
        };
        if let Some(t) = self.conns.template(&tkey) {
            if let Some(i) = svc
                .dests
                .iter()
                .position(|d| d.ip == t.dip && d.port == t.dport)
            {
                t.touch(cx.now_ms);
                return Ok((i, t));
            }
        }
        let i = svc
            .sched
            .pick(&svc.dests, key, cx.now_ms)
            .ok_or(DropReason::NoDest)?;
        let d = &svc.dests[i];
        let t = Template::new(tkey, d.ip, d.port, d.state.clone(), timeout, cx.now_ms);
        let t = self
            .conns
            .insert_template(t)
            .map_err(|_| DropReason::ConnTableFull)?;
        Ok((i, t))
    }

    /// A free FULLNAT local address and port towards `rip:rport`: ports in
    /// 1024..=65535 are split among workers (port % workers), each worker
    /// walks its share and the service's addresses in turn, skipping pairs
    /// whose reply key is taken.
    pub(super) fn local_addr(
        &self,
        cx: &Ctx,
        svc: &Service,
        proto: Proto,
        rip: IpAddr,
        rport: u16,
    ) -> Option<(IpAddr, u16)> {
        // The real server's family: an IPv6 service's IPv4 servers (NAT64)
        // take its IPv4 local addresses.
        let laddrs = || {
            svc.conf
                .laddrs
                .iter()
                .filter(move |l| l.is_ipv4() == rip.is_ipv4())
        };
        let len = laddrs().count() as u32;
        if len == 0 {
            return None;
        }
        let n = cx.n_workers.max(1) as u32;
        let per_worker = (65536 - 1024) / n;
        for _ in 0..64 {
            let k = cx.lport.get();
            cx.lport.set(k.wrapping_add(1));
            let lip = *laddrs().nth((k % len) as usize)?;
            let slot = (k / len) % per_worker;
            let lport = (1024 + slot * n + cx.worker as u32) as u16;
            let key = FlowKey {
                proto,
                src: rip,
                sport: rport,
                dst: lip,
                dport: lport,
            };
            if !self.conns.contains(&key) {
                return Some((lip, lport));
            }
        }
        None
    }
}
