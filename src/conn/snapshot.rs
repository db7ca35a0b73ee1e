//! What a connection is to its users: `NewConn` to insert one, `Conn` a
//! consistent snapshot of a live slot with the operations on it.

use super::*;

/// A new connection, before it is in the table.
#[derive(Debug, Clone)]
pub struct NewConn {
    pub proto: Proto,
    pub cip: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
    pub dip: IpAddr,
    pub dport: u16,
    pub fwd: Forward,
    /// [`DestState::id`] and [`ServiceState::id`].
    pub dest: u32,
    pub svc: u32,
    pub template: Option<Arc<Template>>,
    /// FULLNAT: local address, port and client-address delivery.
    pub fnat: Option<(IpAddr, u16, ClientAddr)>,
    /// SYN proxy: (client ISN, cookie, client window) of the handshake the
    /// director completed with the client.
    pub synproxy: Option<(u32, u32, u16)>,
    /// A SYN-proxied connection whose server handshake is already done
    /// (a sync backup's copy): the adjustment, written before the
    /// connection is visible.
    pub synproxy_adj: Option<u64>,
    /// The TCP state the opening packet moves the connection to, bound in
    /// it from the start ([`NewConn::with_first_state`]); `None`: NONE.
    pub first: Option<State>,
}

impl NewConn {
    pub fn new(
        proto: Proto,
        (cip, cport): (IpAddr, u16),
        (vip, vport): (IpAddr, u16),
        (dip, dport): (IpAddr, u16),
        fwd: Forward,
        dest: &DestState,
        svc: &ServiceState,
    ) -> NewConn {
        NewConn {
            proto,
            cip,
            cport,
            vip,
            vport,
            dip,
            dport,
            fwd,
            dest: dest.id,
            svc: svc.id,
            template: None,
            fnat: None,
            synproxy: None,
            synproxy_adj: None,
            first: None,
        }
    }
    /// Make this a FULLNAT connection from `lip:lport`.
    pub fn with_fnat(mut self, lip: IpAddr, lport: u16, client_addr: ClientAddr) -> NewConn {
        self.fnat = Some((lip, lport, client_addr));
        self
    }
    /// Make this a SYN-proxied connection, pending until the real server
    /// answers ([`Conn::synproxy_establish`]). Not with PROXY v2 (both use
    /// the FULLNAT sequence word).
    pub fn with_synproxy(mut self, client_isn: u32, cookie: u32, window: u16) -> NewConn {
        self.synproxy = Some((client_isn, cookie, window));
        self
    }
    /// A SYN-proxied connection already proxied with `adj` (as
    /// `SeqAdj::to_bits`): never visible as pending.
    pub fn with_synproxy_proxied(mut self, adj: u64) -> NewConn {
        self.synproxy = Some((0, 0, 0));
        self.synproxy_adj = Some(adj);
        self
    }
    /// Bind a TCP connection in `first`, the state its opening packet
    /// moves it to from NONE, with that state's timeout and ActiveConn or
    /// InActConn at once. The kernel sets the state before the packet is
    /// sent (ip_vs_set_state in ip_vs_in, then packet_xmit); applying the
    /// packet again ([`Conn::on_packet`]) then changes nothing, since an
    /// opening packet leaves the state it led to as it is
    /// (`state::tests::opening_packets_are_idempotent`). Saves the
    /// state-change compare-and-swap, the counter move and a timer
    /// re-arm per new connection.
    pub fn with_first_state(mut self, first: State) -> NewConn {
        self.first = Some(first);
        self
    }
    /// Bind to the persistence template that picked the real server.
    pub fn with_template(mut self, t: Arc<Template>) -> NewConn {
        self.template = Some(t);
        self
    }
}

/// FULLNAT per-connection data in a [`Conn`] snapshot. `isn` and `delta`
/// may be changed by the forwarding code; [`Conn::commit`] writes them back.
#[derive(Debug)]
pub struct Fnat {
    pub lip: Ipv4Addr,
    pub lport: u16,
    pub client_addr: ClientAddr,
    /// Client's initial sequence number (from its SYN).
    pub isn: Cell<u32>,
    /// Bytes inserted into the client's stream (the PROXY header), added to
    /// client sequence numbers and taken off the server's acknowledgements.
    pub delta: Cell<u32>,
}

/// The SYN proxy's part of a connection (see `crate::synproxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynProxy {
    /// The client's handshake is done (the director answered its SYN with
    /// `cookie`); the real server's is not.
    Pending {
        client_isn: u32,
        cookie: u32,
        window: u16,
    },
    /// Both handshakes are done: the sequence adjustment, as packed by
    /// `SeqAdj::to_bits`.
    Proxied(u64),
}

/// A consistent snapshot of one live connection, tied to its slot by the
/// slot's generation: methods that change the connection do nothing once
/// the connection has ended.
#[derive(Debug)]
pub struct Conn<'t> {
    pub(super) table: &'t ConnTable,
    pub(super) slot: u32,
    pub(super) gen: u16,
    pub(super) ctl: u64,
    pub(super) seq: u64,
    pub proto: Proto,
    /// The IPv4 addresses (the hot path reads them directly); all four
    /// are 0.0.0.0 for an IPv6 connection, whose addresses are in `v6`.
    /// [`Conn::client`], [`Conn::virt`], [`Conn::real`] give either family.
    pub cip: Ipv4Addr,
    pub cport: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// Real server address and port.
    pub dip: Ipv4Addr,
    pub dport: u16,
    pub fwd: Forward,
    pub(super) dest: u32,
    pub(super) svc: u32,
    /// Controlled by a persistence template.
    pub persistent: bool,
    /// FULLNAT only: the director's local address and port the real server
    /// sees as the client, and the client-address delivery state.
    pub fnat: Option<Fnat>,
    /// SYN-proxied connections only.
    pub synproxy: Option<SynProxy>,
    /// An IPv6 connection's addresses.
    pub v6: Option<Addrs6>,
    /// An IPv4 connection's IPv6 TUN real server (IPv4 in IPv6; `dip` is
    /// then 0.0.0.0).
    pub dip6: Option<Ipv6Addr>,
}

/// The addresses of an IPv6 connection (its slot's extension line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs6 {
    pub cip: Ipv6Addr,
    pub vip: Ipv6Addr,
    pub dip: Ipv6Addr,
    /// FULLNAT's local address (:: otherwise).
    pub lip: Ipv6Addr,
    /// NAT64: the real server and local address are IPv4 ([`Conn::dip`]
    /// and the FULLNAT data's `lip`); `dip` and `lip` here are ::.
    pub nat64: bool,
}

impl<'t> Conn<'t> {
    /// The client's address, of either family.
    pub fn client(&self) -> IpAddr {
        self.v6.map_or(IpAddr::V4(self.cip), |a| IpAddr::V6(a.cip))
    }
    /// The virtual address, of either family.
    pub fn virt(&self) -> IpAddr {
        self.v6.map_or(IpAddr::V4(self.vip), |a| IpAddr::V6(a.vip))
    }
    /// The real server's address, of either family.
    pub fn real(&self) -> IpAddr {
        if let Some(d) = self.dip6 {
            return IpAddr::V6(d);
        }
        match self.v6 {
            Some(a) if !a.nat64 => IpAddr::V6(a.dip),
            _ => IpAddr::V4(self.dip),
        }
    }
    /// FULLNAT's local address and port, of either family.
    pub fn local(&self) -> Option<(IpAddr, u16)> {
        let f = self.fnat.as_ref()?;
        Some(match self.v6 {
            Some(a) if !a.nat64 => (IpAddr::V6(a.lip), f.lport),
            _ => (IpAddr::V4(f.lip), f.lport),
        })
    }
    /// A NAT64 connection: IPv6 client side, IPv4 server side.
    pub fn is_nat64(&self) -> bool {
        self.v6.is_some_and(|a| a.nat64)
    }

    /// The client's key: cip:cport -> vip:vport.
    pub fn in_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.client(),
            sport: self.cport,
            dst: self.virt(),
            dport: self.vport,
        }
    }

    /// The reply key where replies pass the director.
    pub fn out_key(&self) -> Option<FlowKey> {
        let (dst, dport) = match self.fwd {
            Forward::Nat => (self.client(), self.cport),
            Forward::FullNat => self.local()?,
            _ => return None,
        };
        Some(FlowKey {
            proto: self.proto,
            src: self.real(),
            sport: self.dport,
            dst,
            dport,
        })
    }

    /// State when the snapshot was taken.
    pub fn state(&self) -> State {
        State::from_u8(ctl_flags(self.ctl) & ST_MASK)
    }
    pub fn is_active(&self) -> bool {
        ctl_flags(self.ctl) & F_INACTIVE == 0
    }
    /// Deadline in milliseconds of the table's clock.
    pub fn expires_ms(&self) -> u64 {
        ctl_deadline(self.ctl)
    }
    /// The real server's live state.
    pub fn dest(&self) -> &'t DestState {
        self.table.dest_state(self.dest)
    }
    /// The service's live state.
    pub fn svc(&self) -> &'t ServiceState {
        self.table.svc_state(self.svc)
    }
    /// [`DestState::id`] of the real server.
    pub fn dest_id(&self) -> u32 {
        self.dest
    }
    /// [`ServiceState::id`] of the service.
    pub fn svc_id(&self) -> u32 {
        self.svc
    }
    /// Slot number and generation (for tests and diagnostics).
    pub fn id(&self) -> (u32, u16) {
        (self.slot, self.gen)
    }

    /// Apply a packet's TCP flags (or, for UDP, just its arrival), re-arm
    /// the timer and keep ActiveConn/InActConn of the real server exact.
    /// Returns the new state (the old one if the connection has ended).
    pub fn on_packet(&self, dir: Dir, ev: TcpEvent, now_ms: u64, t: &Timeouts) -> State {
        let w = &self.table.slots()[self.slot as usize][W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let flags = ctl_flags(cur);
            let old = State::from_u8(flags & ST_MASK);
            if ctl_gen(cur) != self.gen || flags & F_DEAD != 0 {
                return old;
            }
            let new = if self.proto == Proto::Tcp {
                state::tcp_next(old, dir, ev)
            } else {
                old
            };
            let was_inactive = flags & F_INACTIVE != 0;
            // The kernel re-evaluates the flag only on a state change
            // (set_tcp_state).
            let now_inactive = if new != old {
                !new.is_active()
            } else {
                was_inactive
            };
            let mut nf = (flags & !(ST_MASK | F_INACTIVE)) | new as u8;
            if now_inactive {
                nf |= F_INACTIVE;
            }
            let deadline = now_ms + t.get(new) as u64 * 1000;
            let next = ctl(self.gen, nf, deadline);
            if next != cur {
                if let Err(actual) = w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                    cur = actual;
                    continue;
                }
                self.moved(was_inactive, now_inactive, deadline, cur);
            }
            return new;
        }
    }

    /// After a successful change of the control word from `cur`: move the
    /// connection between the real server's ActiveConn and InActConn, and
    /// re-arm the timer if the deadline moved earlier.
    pub(super) fn moved(&self, was_inactive: bool, inactive: bool, deadline: u64, cur: u64) {
        let d = self.dest();
        match (was_inactive, inactive) {
            (true, false) => {
                d.inactive.fetch_sub(1, Relaxed);
                d.active.fetch_add(1, Relaxed);
            }
            (false, true) => {
                d.active.fetch_sub(1, Relaxed);
                d.inactive.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        if deadline < ctl_deadline(cur) {
            self.table.rearm(self.slot, self.gen, deadline);
        }
    }

    /// Set the state, activity and timer a sync message carries (kernel
    /// `ip_vs_proc_conn` on a backup: `cp->state = state`, the INACTIVE
    /// flag moves ActiveConn/InActConn, the timer restarts with the sent
    /// timeout). The deadline may move either way. False if the
    /// connection has ended.
    pub fn set_synced(&self, new: State, inactive: bool, deadline: u64) -> bool {
        let w = &self.table.slots()[self.slot as usize][W_CTL];
        let mut cur = w.load(Relaxed);
        loop {
            let flags = ctl_flags(cur);
            if ctl_gen(cur) != self.gen || flags & F_DEAD != 0 {
                return false;
            }
            let was_inactive = flags & F_INACTIVE != 0;
            let mut nf = (flags & !(ST_MASK | F_INACTIVE)) | new as u8;
            if inactive {
                nf |= F_INACTIVE;
            }
            let next = ctl(self.gen, nf, deadline);
            if let Err(actual) = w.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                cur = actual;
                continue;
            }
            self.moved(was_inactive, inactive, deadline, cur);
            return true;
        }
    }

    /// The SYN proxy's server handshake is done: record the sequence
    /// adjustment (48 bits, bit 39 clear). True if this call moved the
    /// connection from pending to proxied; false if it was not pending (or
    /// has ended, or another worker did it first).
    pub fn synproxy_establish(&self, adj: u64) -> bool {
        if !matches!(self.synproxy, Some(SynProxy::Pending { .. })) {
            return false;
        }
        debug_assert!(adj < 1 << 48 && adj & SYNP_PROXIED == 0);
        let next = (self.gen as u64) << 48 | SYNP_PROXIED | (adj & ((1 << 48) - 1) & !SYNP_PROXIED);
        let s = &self.table.slots()[self.slot as usize];
        let live = || {
            let c = s[W_CTL].load(Acquire);
            ctl_gen(c) == self.gen && ctl_flags(c) & (F_LIVE | F_DEAD) == F_LIVE
        };
        // Not for a connection ended meanwhile (a client reset, expiry on
        // another worker): W_SEQ alone does not show that.
        live()
            && s[W_SEQ]
                .compare_exchange(self.seq, next, Relaxed, Relaxed)
                .is_ok()
            && live()
    }

    /// Write back FULLNAT sequence data the forwarding code changed.
    pub fn commit(&self) {
        let Some(f) = &self.fnat else { return };
        if matches!(self.synproxy, Some(SynProxy::Proxied(_))) {
            // The word holds the proxy's adjustment; FULLNAT's ISN is
            // only needed up to the handshake, and PROXY v2 is excluded.
            return;
        }
        let next =
            (self.gen as u64) << 48 | ((f.delta.get() as u64) & 0xff) << 40 | f.isn.get() as u64;
        if next != self.seq {
            let w = &self.table.slots()[self.slot as usize][W_SEQ];
            // Only if the slot still holds this connection (same generation).
            let _ = w.compare_exchange(self.seq, next, Relaxed, Relaxed);
        }
    }
}
