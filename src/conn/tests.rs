use super::*;

const SYN: TcpEvent = TcpEvent {
    syn: true,
    fin: false,
    ack: false,
    rst: false,
};
const ACK: TcpEvent = TcpEvent {
    syn: false,
    fin: false,
    ack: true,
    rst: false,
};
const FIN: TcpEvent = TcpEvent {
    syn: false,
    fin: true,
    ack: true,
    rst: false,
};
const RST: TcpEvent = TcpEvent {
    syn: false,
    fin: false,
    ack: false,
    rst: true,
};

/// A table with one registered real server and service.
pub(super) fn table(max: usize, workers: usize) -> (ConnTable, Arc<DestState>, Arc<ServiceState>) {
    registered(ConnTable::new(max, workers))
}

/// `t` with one real server and one service registered.
pub(super) fn registered(t: ConnTable) -> (ConnTable, Arc<DestState>, Arc<ServiceState>) {
    let d = t.ids().dests.push(|id| DestState {
        id,
        ..Default::default()
    });
    let s = t.ids().services.push(|id| ServiceState {
        id,
        ..Default::default()
    });
    (t, d.unwrap(), s.unwrap())
}

pub(super) fn new_conn(
    cip: [u8; 4],
    cport: u16,
    fwd: Forward,
    d: &DestState,
    s: &ServiceState,
) -> NewConn {
    NewConn::new(
        Proto::Tcp,
        (IpAddr::from(cip), cport),
        ("10.0.0.100".parse().unwrap(), 80),
        ("10.0.1.11".parse().unwrap(), 8080),
        fwd,
        d,
        s,
    )
}

/// Entries in the index, whoever's.
pub(super) fn index_entries(t: &ConnTable) -> usize {
    let used = |b: &Bucket| b.e.iter().filter(|e| e.load(Relaxed) != 0).count();
    t.index.iter().map(used).sum()
}

fn mk<'t>(t: &'t ConnTable, cport: u16, d: &DestState, s: &ServiceState) -> Conn<'t> {
    t.insert(new_conn([192, 0, 2, 1], cport, Forward::Nat, d, s), 0, 0)
        .unwrap()
}

fn counts(d: &DestState) -> (u32, u32) {
    (d.active.load(Relaxed), d.inactive.load(Relaxed))
}

#[test]
fn synproxy_state_is_kept_beside_fullnat_and_lost_on_slot_reuse() {
    let (t, d, sv) = table(1, 1);
    for fnat in [false, true] {
        let mut n = new_conn([192, 0, 2, 1], 4000, Forward::Nat, &d, &sv).with_synproxy(
            0xdead_beef,
            0x1234_5678,
            502,
        );
        if fnat {
            n.fwd = Forward::FullNat;
            n = n.with_fnat("10.0.1.200".parse().unwrap(), 5000, ClientAddr::Toa);
        }
        let c = t.insert(n, 0, 0).unwrap();
        let pending = Some(SynProxy::Pending {
            client_isn: 0xdead_beef,
            cookie: 0x1234_5678,
            window: 502,
        });
        assert_eq!(c.synproxy, pending);
        if let Some(f) = &c.fnat {
            assert_eq!(
                (f.lport, f.isn.get(), f.delta.get()),
                (5000, 0xdead_beef, 0)
            );
            assert_eq!(f.lip, "10.0.1.200".parse::<IpAddr>().unwrap());
        }
        // Negative server-to-client shift: the top bits are used.
        let adj = 0xff07_9abc_def0_u64 & !SYNP_PROXIED;
        assert!(c.synproxy_establish(adj));
        assert!(!c.synproxy_establish(adj), "a stale snapshot cannot");
        let (c2, _) = t.lookup(&c.in_key()).unwrap();
        assert_eq!(c2.synproxy, Some(SynProxy::Proxied(adj)));
        assert!(!c2.synproxy_establish(adj), "only once");
        if let Some(f) = &c2.fnat {
            assert_eq!((f.lport, f.isn.get(), f.delta.get()), (5000, 0, 0));
            c2.commit();
            let (c3, _) = t.lookup(&c.in_key()).unwrap();
            assert_eq!(c3.synproxy, Some(SynProxy::Proxied(adj)), "commit keeps it");
        }
        t.end(&c2);
    }
    // A connection ended meanwhile is not established by a snapshot
    // taken before.
    let n = new_conn([192, 0, 2, 1], 4002, Forward::Nat, &d, &sv).with_synproxy(1, 2, 3);
    let c = t.insert(n, 0, 0).unwrap();
    let (stale, _) = t.lookup(&c.in_key()).unwrap();
    t.end(&c);
    assert!(!stale.synproxy_establish(5));
    // The slot reused by a plain connection has no proxy state.
    let c = mk(&t, 4001, &d, &sv);
    assert_eq!(c.synproxy, None);
    assert_eq!(c.id().0, 0);
}

#[test]
fn wheel_buckets_give_back_the_room_of_a_burst() {
    let (t, d, sv) = table(200_000, 1);
    // 100,000 timers in a handful of buckets (a burst of new flows).
    for i in 0..100_000u32 {
        let n = new_conn(
            [192, 0, 2, (i % 250) as u8],
            1024 + (i / 250) as u16,
            Forward::Nat,
            &d,
            &sv,
        );
        t.insert(n, 0, 0).unwrap();
    }
    let peak = t.wheel_capacity();
    assert!(peak >= 100_000, "{peak}");
    assert_eq!(t.expire_all(24 * 3600 * 1000), 100_000);
    let after = t.wheel_capacity();
    assert!(
        after <= WHEEL_SLOTS * WHEEL_KEEP / 64 + 4 * WHEEL_KEEP,
        "{after} entries of room kept after the burst (peak {peak})"
    );
}

#[test]
fn a_slot_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Slot>(), 64);
    assert_eq!(std::mem::size_of::<Bucket>(), 64);
}

#[test]
fn both_directions_find_the_connection() {
    let (t, d, s) = table(10, 1);
    let c = mk(&t, 1234, &d, &s);
    let (c1, d1) = t.lookup(&c.in_key()).unwrap();
    assert_eq!((c1.id(), d1), (c.id(), Dir::In));
    let rk = FlowKey::v4(
        Proto::Tcp,
        "10.0.1.11".parse().unwrap(),
        8080,
        "192.0.2.1".parse().unwrap(),
        1234,
    );
    let (c2, d2) = t.lookup(&rk).unwrap();
    assert_eq!((c2.id(), d2), (c.id(), Dir::Out));
    assert_eq!((c2.cip, c2.cport, c2.dport), (c.cip, 1234, 8080));
    // Neither a different port nor the reversed client key matches.
    let mut other = c.in_key();
    other.sport = 1235;
    assert!(t.lookup(&other).is_none());
    let (s_, d_) = (rk.src, rk.dst);
    let rev = FlowKey {
        src: d_,
        dst: s_,
        ..rk
    };
    assert!(t.lookup(&rev).is_none());
    assert_eq!(t.len(), 1);
    assert_eq!(counts(&d), (0, 1), "new connections start inactive");
    // Conns is the scheduler's count (ip_vs_conn_stats), not the table's.
    assert_eq!(d.traffic.conns.load(Relaxed), 0);
}

#[test]
fn inserting_the_same_client_flow_twice_gives_the_first() {
    let (t, d, s) = table(10, 1);
    let a = mk(&t, 7, &d, &s);
    let n = new_conn([192, 0, 2, 1], 7, Forward::Nat, &d, &s);
    let (b, new) = t.insert_new(n, 0, 0).unwrap();
    assert!(!new, "the second insert finds the first");
    assert_eq!(a.id(), b.id());
    assert_eq!((t.len(), counts(&d)), (1, (0, 1)));
}

#[test]
fn fullnat_connections_are_found_by_the_local_address() {
    let (t, d, s) = table(10, 1);
    let n = new_conn([192, 0, 2, 1], 5555, Forward::FullNat, &d, &s).with_fnat(
        "10.0.1.200".parse().unwrap(),
        40000,
        ClientAddr::ProxyV2,
    );
    let c = t.insert(n, 0, 0).unwrap();
    let ok = c.out_key().unwrap();
    assert_eq!((ok.dst, ok.dport), ("10.0.1.200".parse().unwrap(), 40000));
    let (r, dir) = t.lookup(&ok).unwrap();
    assert_eq!((r.id(), dir), (c.id(), Dir::Out));
    // The NAT-style reply key (to the client itself) is not indexed.
    let nat_key = FlowKey {
        dst: c.cip.into(),
        dport: c.cport,
        ..ok
    };
    assert!(t.lookup(&nat_key).is_none());
    // Sequence data written back through a snapshot is seen by the next.
    let f = c.fnat.as_ref().unwrap();
    assert_eq!(f.client_addr, ClientAddr::ProxyV2);
    f.isn.set(0xdead_beef);
    f.delta.set(28);
    c.commit();
    let (again, _) = t.lookup(&c.in_key()).unwrap();
    let g = again.fnat.as_ref().unwrap();
    assert_eq!((g.isn.get(), g.delta.get()), (0xdead_beef, 28));
}

#[test]
fn active_inactive_follow_state_and_expiry() {
    let (t, d, s) = table(10, 1);
    let c = mk(&t, 1, &d, &s);
    let to = Timeouts::default();
    assert_eq!(counts(&d), (0, 1), "bound inactive (ip_vs_bind_dest)");
    // SYN_RECV is active since Linux 4.8 (tcp_state_active_table).
    assert_eq!(c.on_packet(Dir::In, SYN, 0, &to), State::SynRecv);
    assert_eq!(counts(&d), (1, 0));
    c.on_packet(Dir::In, ACK, 0, &to);
    let c = t.lookup(&c.in_key()).unwrap().0;
    assert_eq!(c.state(), State::Established);
    assert!(c.is_active());
    assert_eq!(counts(&d), (1, 0));
    assert_eq!(c.expires_ms(), 900_000);
    c.on_packet(Dir::In, FIN, 1000, &to);
    assert_eq!(counts(&d), (0, 1));
    assert_eq!(t.expire_all(1000 + 59_990), 0, "CLOSE_WAIT lasts 60 s");
    assert_eq!(t.expire_all(1000 + 60_000 + 2 * 16), 1);
    assert_eq!(counts(&d), (0, 0));
    assert!(t.lookup(&c.in_key()).is_none() && t.lookup(&c.out_key().unwrap()).is_none());
    assert!(t.is_empty());
}

/// A connection bound in its opening packet's state: listed in it with its
/// timeout and counted active from the start; that packet, applied again,
/// changes nothing (not the control word either); its end releases
/// ActiveConn.
#[test]
fn a_connection_bound_in_its_first_state_counts_it_at_once() {
    let (t, d, s) = table(10, 1);
    let n = new_conn([192, 0, 2, 1], 3, Forward::Nat, &d, &s).with_first_state(State::SynRecv);
    let c = t.insert(n, 1000, 0).unwrap();
    assert_eq!(
        (c.state(), c.expires_ms(), counts(&d)),
        (State::SynRecv, 61_000, (1, 0))
    );
    let word = |c: &Conn| t.slots()[c.id().0 as usize][W_CTL].load(Relaxed);
    let before = word(&c);
    assert_eq!(
        c.on_packet(Dir::In, SYN, 1000, &Timeouts::default()),
        State::SynRecv
    );
    assert_eq!((word(&c), counts(&d)), (before, (1, 0)));
    assert!(t.end(&c));
    assert_eq!(counts(&d), (0, 0));
    // A first state that is not active (a sloppy FIN's CLOSE) is InActConn.
    let n = new_conn([192, 0, 2, 1], 4, Forward::Nat, &d, &s).with_first_state(State::Close);
    t.insert(n, 1000, 0).unwrap();
    assert_eq!(counts(&d), (0, 1));
}

/// ip_vs_proto_tcp.c's `tcp_state_active_table`, state by state, in the
/// kernel's numbering (which `State` keeps).
#[test]
fn active_states_are_the_kernels() {
    let kernel = [
        (0, false), // NONE
        (1, true),  // ESTABLISHED
        (2, true),  // SYN_SENT
        (3, true),  // SYN_RECV
        (4, false), // FIN_WAIT
        (5, false), // TIME_WAIT
        (6, false), // CLOSE
        (7, false), // CLOSE_WAIT
        (8, false), // LAST_ACK
        (9, false), // LISTEN
        (10, true), // SYNACK
    ];
    for (n, active) in kernel {
        let s = State::from_u8(n);
        assert_eq!(s as u8, n);
        assert_eq!(s.is_active(), active, "{}", s.name());
    }
    assert!(!State::Udp.is_active());
}

/// A connection that goes from one active state to another stays counted
/// once, and a RST moves it to InActConn (CLOSE). (A client's RST in
/// SYN_RECV leaves it there, as the kernel's input table says.)
#[test]
fn handshake_states_count_once_and_a_reset_makes_it_inactive() {
    let (t, d, s) = table(10, 1);
    let c = mk(&t, 2, &d, &s);
    let to = Timeouts::default();
    c.on_packet(Dir::In, SYN, 0, &to);
    assert_eq!(c.on_packet(Dir::In, SYN, 0, &to), State::SynRecv);
    assert_eq!(counts(&d), (1, 0));
    assert_eq!(c.on_packet(Dir::In, RST, 0, &to), State::SynRecv);
    assert_eq!(c.on_packet(Dir::In, ACK, 0, &to), State::Established);
    assert_eq!(counts(&d), (1, 0));
    assert_eq!(c.on_packet(Dir::In, RST, 0, &to), State::Close);
    assert_eq!(counts(&d), (0, 1));
}

#[test]
fn a_rst_moves_the_timer_forward_from_fifteen_minutes_to_ten_seconds() {
    let (t, d, s) = table(10, 1);
    let to = Timeouts::default();
    let c = mk(&t, 1, &d, &s);
    c.on_packet(Dir::In, SYN, 0, &to);
    c.on_packet(Dir::In, ACK, 0, &to);
    // Timers are handled on the way: ESTABLISHED at 900 s.
    assert_eq!(t.expire_all(5_000), 0);
    c.on_packet(Dir::In, RST, 5_000, &to);
    assert_eq!(t.expire_all(14_990), 0, "CLOSE lasts 10 s");
    assert_eq!(t.expire_all(15_040), 1, "ended 10 s after the RST");
    assert!(t.is_empty() && counts(&d) == (0, 0));
}

#[test]
fn timers_beyond_one_wheel_turn_and_extended_timers_wait() {
    let (t, d, s) = table(10, 1);
    let mut to = Timeouts::default();
    to.0[State::Established as usize] = 200; // > 4096 ticks of 16 ms
    let c = mk(&t, 1, &d, &s);
    c.on_packet(Dir::In, SYN, 0, &to);
    c.on_packet(Dir::In, ACK, 0, &to);
    let mut now = 0;
    while now < 150_000 {
        now += 997;
        assert_eq!(t.expire_all(now), 0, "not before 200 s ({now} ms)");
    }
    // A packet at 150 s pushes the deadline to 350 s.
    c.on_packet(Dir::In, ACK, 150_000, &to);
    while now < 349_900 {
        now += 997;
        assert_eq!(t.expire_all(now.min(349_900)), 0, "not before 350 s");
    }
    assert_eq!(t.expire_all(350_100), 1);
}

#[test]
fn expiry_work_per_call_is_bounded() {
    let (t, d, s) = table(5000, 1);
    let to = Timeouts::default();
    for p in 0..4000 {
        mk(&t, p, &d, &s).on_packet(Dir::In, SYN, 0, &to);
    }
    // SYN_RECV: 60 s. Every call does at most 100 units of work.
    let mut calls = 0;
    let mut ended = 0;
    t.expire(0, 0, 100);
    while ended < 4000 {
        let n = t.expire(0, 61_000, 100);
        assert!(n <= 100);
        ended += n;
        calls += 1;
        assert!(calls < 10_000, "expiry makes progress");
    }
    assert!(calls >= 40, "4000 endings took {calls} calls of 100");
    assert_eq!((t.len(), counts(&d)), (0, (0, 0)));
}

#[test]
fn full_table_rejects_and_counts_stay_bounded() {
    let (t, d, s) = table(2, 1);
    mk(&t, 1, &d, &s);
    mk(&t, 2, &d, &s);
    let n = new_conn([192, 0, 2, 9], 9, Forward::Nat, &d, &s);
    assert_eq!(t.insert(n.clone(), 0, 0).err(), Some(InsertError::Full));
    assert_eq!(t.len(), 2);
    assert_eq!(counts(&d), (0, 2));
    // Once one has ended, its slot is used again.
    t.expire_all(3_000);
    assert!(t.is_empty());
    let c = t.insert(n, 3_000, 0).unwrap();
    assert!(c.id().0 < 2);
}

#[test]
fn a_worker_reuses_the_slots_its_expiry_freed_and_lends_them_when_short() {
    // A table whose region holds exactly `max` slots, all in one run.
    let n = ConnTable::new(8, 2).slots().len();
    let (t, d, s) = table(n, 2);
    assert_eq!(t.slots().len(), n);
    assert!(n > 8 && n <= FRESH_RUN as usize, "{n} slots");
    let conn = |cport: u16| new_conn([192, 0, 2, 1], cport, Forward::Nat, &d, &s);
    // Worker 0's first insert takes the run of every never-used slot.
    let first = t.insert(conn(1), 0, 0).unwrap().slot;
    // Worker 1 has none of its own and none shared: it borrows them.
    for p in 2..=n as u16 {
        t.insert(conn(p), 0, 1).unwrap();
    }
    assert_eq!(t.len(), n);
    assert_eq!(t.insert(conn(999), 0, 1).err(), Some(InsertError::Full));
    assert_eq!(counts(&d), (0, n as u32));
    // Worker 0's expiry keeps the slot it freed for worker 0's next insert;
    // the shared stack stays empty.
    let later = 1_000_000;
    assert_eq!(t.expire(0, later, usize::MAX), 1);
    assert_eq!(t.free.load(Relaxed) as u32, 0);
    assert_eq!(t.insert(conn(1000), later, 0).unwrap().slot, first);
    assert_eq!(t.expire(0, 2 * later, usize::MAX), 1);
    // Worker 1's expiry keeps its own. Worker 0 uses its one spare, then,
    // with the shared stack empty and no slot never used, borrows those.
    assert_eq!(t.expire(1, 2 * later, usize::MAX), n - 1);
    assert!(t.is_empty());
    assert_eq!(t.free.load(Relaxed) as u32, 0);
    let mut slots: Vec<u32> = (0..n as u16)
        .map(|p| t.insert(conn(2000 + p), 2 * later, 0).unwrap().slot)
        .collect();
    assert_eq!(
        t.insert(conn(999), 2 * later, 1).err(),
        Some(InsertError::Full)
    );
    slots.sort_unstable();
    slots.dedup();
    assert_eq!(slots.len(), n, "no slot handed out twice");
    assert_eq!(counts(&d), (0, n as u32));
}

/// An IPv6 NAT connection: client 2001:db8::c:cport -> [2001:db8::100]:80,
/// real server [2001:db8:1::11]:8080.
fn new_conn6(cport: u16, fwd: Forward, d: &DestState, s: &ServiceState) -> NewConn {
    NewConn::new(
        Proto::Tcp,
        ("2001:db8::c".parse().unwrap(), cport),
        ("2001:db8::100".parse().unwrap(), 80),
        ("2001:db8:1::11".parse().unwrap(), 8080),
        fwd,
        d,
        s,
    )
}

#[test]
fn ipv6_connections_are_found_in_both_directions_and_end_cleanly() {
    let (t, d, s) = table(8, 1);
    let c = t
        .insert(new_conn6(1234, Forward::Nat, &d, &s), 0, 0)
        .unwrap();
    assert_eq!(c.client(), "2001:db8::c".parse::<IpAddr>().unwrap());
    assert_eq!(c.virt(), "2001:db8::100".parse::<IpAddr>().unwrap());
    assert_eq!(c.real(), "2001:db8:1::11".parse::<IpAddr>().unwrap());
    // The IPv4 fields say nothing of an IPv6 connection.
    assert_eq!(c.cip, Ipv4Addr::UNSPECIFIED);
    let kin = c.in_key();
    let kout = c.out_key().unwrap();
    assert_eq!(kout.src, c.real());
    assert_eq!((kout.dst, kout.dport), (c.client(), 1234));
    let (hit, dir) = t.lookup(&kin).unwrap();
    assert_eq!((hit.id(), dir), (c.id(), Dir::In));
    let (hit, dir) = t.lookup(&kout).unwrap();
    assert_eq!((hit.id(), dir), (c.id(), Dir::Out));
    // Another client port, or the same numbers as IPv4, is another flow.
    let mut other = kin;
    other.sport = 1235;
    assert!(t.lookup(&other).is_none());
    assert!(t
        .lookup(&FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::UNSPECIFIED,
            1234,
            Ipv4Addr::UNSPECIFIED,
            80
        ))
        .is_none());
    // The same client flow inserted again is the same connection.
    let again = t
        .insert(new_conn6(1234, Forward::Nat, &d, &s), 0, 0)
        .unwrap();
    assert_eq!(again.id(), c.id());
    assert_eq!(t.len(), 1);
    assert_eq!(counts(&d), (0, 1));
    assert!(t.end(&c));
    assert!(t.lookup(&kin).is_none() && t.lookup(&kout).is_none());
    assert!(t.is_empty() && counts(&d) == (0, 0));
}

#[test]
fn ipv4_and_ipv6_connections_share_the_slots_and_the_index() {
    let (t, d, s) = table(64, 2);
    let to = Timeouts::default();
    for i in 0..20u16 {
        let c4 = t.insert(
            new_conn([192, 0, 2, 1], 1000 + i, Forward::Nat, &d, &s),
            0,
            0,
        );
        let c6 = t.insert(new_conn6(1000 + i, Forward::Dr, &d, &s), 0, 1);
        c4.unwrap().on_packet(Dir::In, SYN, 0, &to);
        c6.unwrap().on_packet(Dir::InOnly, SYN, 0, &to);
    }
    assert_eq!(t.len(), 40);
    let mut v6 = 0;
    t.for_each(|c| {
        let (hit, _) = t.lookup(&c.in_key()).unwrap();
        assert_eq!(hit.id(), c.id());
        assert_eq!(hit.client().is_ipv6(), c.v6.is_some());
        v6 += usize::from(c.v6.is_some());
    });
    assert_eq!(v6, 20);
    // DR: no reply key.
    t.for_each(|c| assert_eq!(c.out_key().is_some(), c.v6.is_none()));
    // Expiry ends both families and unlinks every key.
    assert_eq!(t.expire_all(1_000_000), 40);
    assert!(t.is_empty() && counts(&d) == (0, 0));
    for i in 0..20u16 {
        let k = new_conn6(1000 + i, Forward::Dr, &d, &s);
        let key = FlowKey {
            proto: Proto::Tcp,
            src: k.cip,
            sport: k.cport,
            dst: k.vip,
            dport: k.vport,
        };
        assert!(t.lookup(&key).is_none());
    }
}

#[test]
fn a_connection_of_mixed_families_is_refused_not_tracked() {
    let (t, d, s) = table(2, 1);
    let mut n = new_conn([192, 0, 2, 9], 9, Forward::Nat, &d, &s);
    n.cip = "2001:db8::1".parse().unwrap();
    assert_eq!(t.insert(n, 0, 0).err(), Some(InsertError::MixedFamily));
    let mut n = new_conn6(9, Forward::FullNat, &d, &s);
    n.fnat = Some(("10.0.0.5".parse().unwrap(), 5000, ClientAddr::None));
    assert_eq!(t.insert(n, 0, 0).err(), Some(InsertError::MixedFamily));
    assert!(t.is_empty() && counts(&d) == (0, 0));
}

#[test]
fn an_ipv6_fullnat_connection_is_found_by_its_local_address() {
    let (t, d, s) = table(4, 1);
    let lip: IpAddr = "2001:db8:1::5".parse().unwrap();
    let n = new_conn6(4000, Forward::FullNat, &d, &s).with_fnat(lip, 5000, ClientAddr::None);
    let c = t.insert(n, 0, 0).unwrap();
    assert_eq!(c.local(), Some((lip, 5000)));
    let out = c.out_key().unwrap();
    assert_eq!((out.dst, out.dport), (lip, 5000));
    assert_eq!(t.lookup(&out).unwrap().1, Dir::Out);
    assert!(t.end(&c));
    assert!(t.lookup(&out).is_none());
}

#[test]
fn a_stale_snapshot_cannot_touch_the_connection_that_reuses_its_slot() {
    let (t, d, s) = table(1, 1);
    let to = Timeouts::default();
    let old = mk(&t, 1, &d, &s);
    t.expire_all(3_000); // NONE lasts 2 s
    let new = mk(&t, 2, &d, &s);
    assert_eq!(old.id().0, new.id().0, "the only slot is reused");
    assert_ne!(old.id().1, new.id().1, "with a new generation");
    // The old snapshot's packet changes nothing.
    old.on_packet(Dir::In, SYN, 3_000, &to);
    old.on_packet(Dir::In, ACK, 3_000, &to);
    let cur = t.lookup(&new.in_key()).unwrap().0;
    assert_eq!((cur.state(), counts(&d)), (State::None, (0, 1)));
    assert!(t.lookup(&old.in_key()).is_none());
}

#[test]
fn concurrent_transitions_keep_counts_exact() {
    let (t, d, s) = table(10_000, 2);
    let conns: Vec<_> = (0..1000).map(|i| mk(&t, i, &d, &s)).collect();
    let keys: Vec<FlowKey> = conns.iter().map(|c| c.in_key()).collect();
    let to = Timeouts::default();
    std::thread::scope(|sc| {
        for dir in [Dir::In, Dir::Out] {
            let (keys, t) = (&keys, &t);
            sc.spawn(move || {
                for k in keys {
                    for ev in [SYN, ACK, FIN] {
                        t.lookup(k).unwrap().0.on_packet(dir, ev, 0, &to);
                    }
                }
            });
        }
    });
    let mut active = 0;
    t.for_each(|c| active += c.is_active() as u32);
    assert_eq!(counts(&d), (active, 1000 - active));
    t.flush();
    assert_eq!((t.len(), counts(&d)), (0, (0, 0)));
}

/// A wheel no worker has run yet starts at the first insert's time, not at
/// its deadline: a long timer inserted first must not hold back a shorter
/// one inserted after it (connections taken over at start are inserted
/// before any worker polls).
#[test]
fn an_unrun_wheel_does_not_hold_short_timers_behind_a_long_first_one() {
    let (t, d, s) = table(10, 1);
    let mut udp = new_conn([192, 0, 2, 1], 1000, Forward::Nat, &d, &s);
    udp.proto = Proto::Udp;
    t.insert(udp, 1_000, 0).unwrap(); // UDP: 300 s
    t.insert(
        new_conn([192, 0, 2, 1], 1001, Forward::Nat, &d, &s),
        1_000,
        0,
    )
    .unwrap(); // TCP NONE: 2 s
    assert_eq!(t.len(), 2);
    let mut ended = 0;
    for ms in (1_000..=4_000).step_by(16) {
        ended += t.expire(0, ms, 1_000);
    }
    assert_eq!(
        (ended, t.len()),
        (1, 1),
        "the 2 s one ended, the 300 s one stays"
    );
}

#[test]
fn a_reset_table_is_empty_and_fills_as_a_new_one() {
    let (mut t, d, s) = table(2, 1);
    t.set_timeouts(Timeouts([1; state::N_STATES]));
    let key = mk(&t, 1, &d, &s).in_key();
    mk(&t, 2, &d, &s);
    let n = new_conn([192, 0, 2, 9], 9, Forward::Nat, &d, &s);
    assert_eq!(t.insert(n, 0, 0).err(), Some(InsertError::Full));
    drop((d, s));
    t.reset();
    assert!(t.is_empty());
    assert_eq!(t.timeouts(), Timeouts::default());
    assert!(t.ids().dests.is_empty() && t.ids().services.is_empty());
    assert!(t.lookup(&key).is_none(), "no key survives in the index");
    let (t, d, s) = registered(t);
    assert_eq!((d.id, s.id), (0, 0), "ids start at 0 again");
    let c = mk(&t, 1, &d, &s);
    assert_eq!(c.id().0, 0, "slots are handed out from the first again");
    assert_eq!(t.expire(0, 1_000, 100), 0, "no timer survives the reset");
    mk(&t, 2, &d, &s);
    assert_eq!(t.len(), 2, "the whole capacity is free");
}

#[test]
fn an_empty_wheel_catches_up_with_the_clock_at_once() {
    let (t, d, s) = table(10, 1);
    let tcp = |port| new_conn([192, 0, 2, 1], port, Forward::Nat, &d, &s);
    t.insert(tcp(1000), 0, 0).unwrap(); // TCP NONE: 2 s
    assert_eq!(t.expire(0, 3_000, 1_000), 1);
    // Ten hours later (2.25 M ticks), with nothing queued, a budget of 10
    // would walk 10 ticks a call; the cursor moves to the present instead,
    // so a new 2 s timer ends on time with the same small budget.
    let later = 10 * 3_600_000;
    assert_eq!(t.expire(0, later, 10), 0);
    t.insert(tcp(1001), later, 0).unwrap();
    let mut ended = 0;
    for ms in (later..=later + 3_000).step_by(16) {
        ended += t.expire(0, ms, 10);
    }
    assert_eq!((ended, t.len()), (1, 0));
}

#[test]
fn a_nat64_connection_is_found_by_its_ipv6_client_key_and_ipv4_reply_key() {
    let (t, d, s) = table(4, 1);
    let n = NewConn::new(
        Proto::Tcp,
        ("2001:db8::c".parse().unwrap(), 4000),
        ("2001:db8::100".parse().unwrap(), 80),
        ("10.0.1.11".parse().unwrap(), 80),
        Forward::FullNat,
        &d,
        &s,
    )
    .with_fnat("10.0.1.200".parse().unwrap(), 5000, ClientAddr::None);
    let c = t.insert(n, 0, 0).unwrap();
    assert!(c.is_nat64());
    assert_eq!(c.client(), "2001:db8::c".parse::<IpAddr>().unwrap());
    assert_eq!(c.real(), "10.0.1.11".parse::<IpAddr>().unwrap());
    assert_eq!(c.local(), Some(("10.0.1.200".parse().unwrap(), 5000)));
    let kin = c.in_key();
    let kout = c.out_key().unwrap();
    assert_eq!(
        kout,
        FlowKey::v4(
            Proto::Tcp,
            "10.0.1.11".parse().unwrap(),
            80,
            "10.0.1.200".parse().unwrap(),
            5000
        )
    );
    assert_eq!(
        t.lookup(&kin).map(|(h, d)| (h.id(), d)),
        Some((c.id(), Dir::In))
    );
    assert_eq!(
        t.lookup(&kout).map(|(h, d)| (h.id(), d)),
        Some((c.id(), Dir::Out))
    );
    // A NAT64 connection needs its IPv4 local address.
    let bad = NewConn::new(
        Proto::Tcp,
        ("2001:db8::c".parse().unwrap(), 4001),
        ("2001:db8::100".parse().unwrap(), 80),
        ("10.0.1.11".parse().unwrap(), 80),
        Forward::Nat,
        &d,
        &s,
    );
    assert_eq!(t.insert(bad, 0, 0).err(), Some(InsertError::MixedFamily));
    assert!(t.end(&c));
    assert!(t.lookup(&kin).is_none() && t.lookup(&kout).is_none());
    assert!(t.is_empty());
}

#[test]
fn a_stale_or_wrong_hint_falls_back_to_the_bucket() {
    let (t, d, s) = table(1, 1);
    let (cip, vip) = (u32::from_be_bytes([192, 0, 2, 1]), 0x0a00_0064);
    let plain_cport = |l: Lookup| match l {
        Lookup::Plain(p) => Some((p.cport, p.dir)),
        _ => None,
    };
    let old = mk(&t, 1, &d, &s);
    let h_old = t.hash4(Proto::Tcp, cip, 1, vip, 80);
    let hint = t.prefetch_slots_hashed(h_old);
    assert_ne!(hint, 0, "stage 2 finds the entry");
    let found = t.lookup_plain_from(hint, h_old, Proto::Tcp, (cip, 1), (vip, 80));
    assert_eq!(plain_cport(found), Some((1, Dir::In)));
    // The connection ends and its slot (the only one) goes to another
    // flow: the old hint now names a slot holding someone else.
    t.expire_all(3_000);
    let new = mk(&t, 2, &d, &s);
    assert_eq!(old.id().0, new.id().0, "the only slot is reused");
    let stale = t.lookup_plain_from(hint, h_old, Proto::Tcp, (cip, 1), (vip, 80));
    assert_eq!(
        stale,
        Lookup::Miss,
        "the ended flow is not found through its hint"
    );
    // A hint under the right tag but for the other direction of the
    // slot: not the key's, so the bucket is scanned.
    let h_new = t.hash4(Proto::Tcp, cip, 2, vip, 80);
    let wrong = entry(tag_of(h_new), Dir::Out, new.id().0);
    let found = t.lookup_plain_from(wrong, h_new, Proto::Tcp, (cip, 2), (vip, 80));
    assert_eq!(plain_cport(found), Some((2, Dir::In)));
    // And a hint of another tag is not even read.
    let found = t.lookup_plain_from(hint, h_new, Proto::Tcp, (cip, 2), (vip, 80));
    assert_eq!(plain_cport(found), Some((2, Dir::In)));
}
