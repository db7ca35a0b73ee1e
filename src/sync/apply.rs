//! What a backup does with a synced connection ([`apply`], as the
//! kernel's `ip_vs_proc_conn`), and what a restarted or succeeding rvsd
//! does with the connections a previous one left ([`adopt`]): both insert
//! through the live table, resolving service and real server by address.

use super::*;
use crate::flow::ServiceKey;

/// What [`apply`] did with one synced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Inserted,
    Updated,
    /// No such service or real server here.
    NoDest,
    Full,
    /// An expiry for a connection already replaced.
    Stale,
}

/// The SYN proxy's packed adjustment an entry carries.
pub(super) fn synproxy_bits(sc: &SyncConn) -> Option<u64> {
    sc.synproxy.map(|sp| {
        crate::synproxy::SeqAdj {
            delta: sp.delta,
            c2s_shift: sp.c2s_shift,
            s2c_shift: sp.s2c_shift,
        }
        .to_bits()
    })
}

/// Whether an existing connection is the one an entry describes beyond its
/// tuple and real server: the same forwarding, FULLNAT local address and
/// port, and SYN-proxy adjustment. If not, the master has a new connection
/// on that tuple and the old one is replaced.
pub(super) fn same_shape(c: &crate::conn::Conn, sc: &SyncConn) -> bool {
    let fnat = match (&c.fnat, &sc.fnat) {
        (None, None) => true,
        (Some(_), Some(o)) => c.local() == Some((o.lip, o.lport)),
        _ => false,
    };
    let proxied = match c.synproxy {
        None => None,
        Some(crate::conn::SynProxy::Proxied(b)) => Some(b),
        Some(crate::conn::SynProxy::Pending { .. }) => Some(u64::MAX),
    };
    fnat && proxied == synproxy_bits(sc)
}

/// Insert or update one synced connection (kernel `ip_vs_proc_conn`).
pub fn apply(conns: &ConnTable, table: &ServiceTable, sc: &SyncConn, now: u64) -> Applied {
    apply_on(conns, table, sc, now, 0)
}

/// [`apply`], a new connection's timer on worker `wheel`'s wheel.
pub(super) fn apply_on(
    conns: &ConnTable,
    table: &ServiceTable,
    sc: &SyncConn,
    now: u64,
    wheel: usize,
) -> Applied {
    let Some(proto) = Proto::from_number(sc.protocol) else {
        return Applied::NoDest;
    };
    let inactive = sc.flags & flags::INACTIVE != 0;
    let state = if proto == Proto::Udp {
        State::Udp
    } else {
        State::from_u8(sc.state as u8)
    };
    let timeout_s = if sc.timeout != 0 {
        sc.timeout
    } else {
        conns.timeouts().get(state)
    };
    let deadline = now + timeout_s as u64 * 1000;
    let key = FlowKey {
        proto,
        src: sc.caddr,
        sport: sc.cport,
        dst: sc.vaddr,
        dport: sc.vport,
    };
    if let Some((c, Dir::In)) = conns.lookup(&key) {
        if c.dport == sc.dport && c.real() == sc.daddr && same_shape(&c, sc) {
            // ip_vs_proc_conn overwrites the sequence data on an update
            // too: FULLNAT's client ISN and PROXY bytes may arrive later
            // than the connection.
            if let (Some(f), Some((i, _)), None) = (&c.fnat, sc.seq, c.synproxy) {
                f.isn.set(i.init_seq);
                f.delta.set(i.delta);
                c.commit();
            }
            c.set_synced(state, inactive, deadline);
            return Applied::Updated;
        }
        if inactive {
            return Applied::Stale;
        }
        // Another connection on the same client tuple (the master ended
        // and re-created it): replaced.
        conns.end(&c);
    }
    // ip_vs_find_dest: the service as ip_vs_service_find finds it, the
    // real server by <daddr, dport>. A kernel master sends a fwmark
    // service's mark (`s->fwmark = htonl(cp->fwmark)`); rvs's connections
    // do not keep theirs, so without one the backup classifies the entry
    // with its own fwmark rules (the pair runs the same configuration),
    // then tries <protocol, vaddr, vport>.
    let marked = (sc.fwmark != 0)
        .then(|| table.get(&ServiceKey::fwmark(sc.fwmark, sc.vaddr.is_ipv6())))
        .flatten();
    let vip = table.is_vip(sc.vaddr);
    let found = marked.or_else(|| match sc.vaddr {
        IpAddr::V4(a) => table.find_new(proto, a, sc.vport, vip),
        IpAddr::V6(a) => table.find_new6(proto, a, sc.vport, vip),
    });
    let Some(svc) = found else {
        return Applied::NoDest;
    };
    // ip_vs_find_dest's ports: the entry's, then 0 (a port-0 real server
    // of a fwmark service takes the packet's port); for a fwmark service
    // not in MASQ, 0 first.
    let first = if svc.conf.is_fwmark() && sc.flags & flags::FWD_MASK != flags::MASQ {
        0
    } else {
        sc.dport
    };
    let dest = |port: u16| {
        svc.dests
            .iter()
            .find(|d| d.ip == sc.daddr && d.port == port)
    };
    let Some(d) = dest(first).or_else(|| dest(first ^ sc.dport)) else {
        return Applied::NoDest;
    };
    let fwd = match (sc.flags & flags::FWD_MASK, sc.fnat) {
        (flags::MASQ, Some(_)) => Forward::FullNat,
        (flags::MASQ, None) => Forward::Nat,
        (flags::TUNNEL, _) => Forward::Tun,
        (flags::DROUTE, _) => Forward::Dr,
        // Bound to this director's own Local real server.
        (flags::LOCALNODE, _) if d.fwd == Forward::Local => Forward::Local,
        _ => return Applied::NoDest,
    };
    let mut n = NewConn::new(
        proto,
        (sc.caddr, sc.cport),
        (sc.vaddr, sc.vport),
        (sc.daddr, sc.dport),
        fwd,
        &d.state,
        &svc.state,
    );
    if let Some(f) = sc.fnat {
        let ca = match f.client_addr {
            1 => ClientAddr::Toa,
            3 => ClientAddr::ProxyV2,
            _ => ClientAddr::None,
        };
        n = n.with_fnat(f.lip, f.lport, ca);
    }
    if let Some(adj) = synproxy_bits(sc) {
        // Inserted already proxied with the master's adjustment (never
        // visible as pending); the proxy's word replaces FULLNAT's ISN.
        n = n.with_synproxy_proxied(adj);
    }
    match conns.insert(n, now, wheel) {
        Ok(c) => {
            if let (Some(f), Some((i, _)), None) = (&c.fnat, sc.seq, sc.synproxy) {
                f.isn.set(i.init_seq);
                f.delta.set(i.delta);
                c.commit();
            }
            c.set_synced(state, inactive, deadline);
            Applied::Inserted
        }
        Err(_) => Applied::Full,
    }
}

/// What adopting a previous rvsd's connections did (`conn::persist`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Adopted {
    /// Taken into the new table.
    pub adopted: u64,
    /// Their time ran out while no rvsd ran.
    pub expired: u64,
    /// No such service or real server in the new configuration.
    pub no_dest: u64,
    /// SYN-proxied connections whose server handshake was not done (the
    /// cookie state went with the old process).
    pub unfinished: u64,
    /// No room in the new table.
    pub full: u64,
}

/// Take a previous table's connections into `conns`, each as a backup
/// director takes a synced one (kernel `ip_vs_proc_conn`): the service and
/// real server found by address in `table`, the time left kept, but never
/// more than a fresh connection in that state would get.
pub fn adopt(prev: &crate::conn::Previous, conns: &ConnTable, table: &ServiceTable) -> Adopted {
    // Big tables are taken over by several threads, each over a part of
    // the slots (inserts into the table are safe side by side, as the
    // workers' are): a handover's gap is this time.
    let n = prev.capacity();
    let threads = match n >= ADOPT_PARALLEL_FROM {
        true => std::thread::available_parallelism().map_or(1, |t| t.get().min(8)),
        false => 1,
    };
    if threads == 1 {
        return adopt_part(prev, 0..n, conns, table, 0);
    }
    let part = n.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || adopt_part(prev, i * part..(i + 1) * part, conns, table, i)))
            .collect();
        parts.into_iter().fold(Adopted::default(), |a, p| {
            let b = p.join().unwrap_or_default();
            Adopted {
                adopted: a.adopted + b.adopted,
                expired: a.expired + b.expired,
                no_dest: a.no_dest + b.no_dest,
                unfinished: a.unfinished + b.unfinished,
                full: a.full + b.full,
            }
        })
    })
}

/// Below this many slots one thread takes a table over.
pub(super) const ADOPT_PARALLEL_FROM: usize = 1 << 16;

/// The connections of `range`, their timers on wheel `wheel` (taken
/// modulo the workers: a big table's timers are spread over them).
pub(super) fn adopt_part(
    prev: &crate::conn::Previous,
    range: std::ops::Range<usize>,
    conns: &ConnTable,
    table: &ServiceTable,
    wheel: usize,
) -> Adopted {
    let now = crate::clock::now_ms();
    let timeouts = conns.timeouts();
    let mut r = Adopted::default();
    prev.for_each_in(range, |c, left_ms| {
        if left_ms == 0 {
            r.expired += 1;
            return;
        }
        let cap = u64::from(timeouts.get(c.state()).max(1)) * 1000;
        let left_s = left_ms.min(cap).div_ceil(1000) as u32;
        let Some(sc) = super::entry(c, left_s) else {
            r.unfinished += 1;
            return;
        };
        match apply_on(conns, table, &sc, now, wheel) {
            Applied::Inserted | Applied::Updated => r.adopted += 1,
            Applied::NoDest | Applied::Stale => r.no_dest += 1,
            Applied::Full => r.full += 1,
        }
    });
    r
}
