use super::tests::new_conn;
use super::*;
use std::sync::atomic::AtomicBool;

/// Inserters, readers and expirers run at once; afterwards every
/// connection ever inserted was either found by its two keys while live
/// or expired exactly once, and all counts are back to zero.
#[test]
fn concurrent_insert_lookup_expire_keeps_invariants() {
    const PER_THREAD: u16 = 3000;
    const THREADS: usize = 4;
    let (t, d, svc) = super::tests::table(1 << 16, THREADS);
    let stop = AtomicBool::new(false);
    let expired = AtomicUsize::new(0);
    let now = AtomicU64::new(1);
    let to = Timeouts::default();
    /// Stops the expirers however the scope ends (a failed assertion
    /// in an inserter must fail the test, not hang it).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        // Two expirers, each running two of the four wheels, at the
        // shared clock `now`, with a small budget per call.
        for e in 0..2 {
            let (t, stop, expired, now) = (&t, &stop, &expired, &now);
            s.spawn(move || {
                while !stop.load(Relaxed) {
                    for w in [e, e + 2] {
                        let n = t.expire(w, now.load(Relaxed), 16);
                        expired.fetch_add(n, Relaxed);
                    }
                }
            });
        }
        let mut inserters = Vec::new();
        for th in 0..THREADS {
            let (t, d, svc, to) = (&t, &d, &svc, &to);
            inserters.push(s.spawn(move || {
                let mut created = 0usize;
                for p in 0..PER_THREAD {
                    let n = new_conn([192, 0, 2, th as u8], p, Forward::Nat, d, svc);
                    let c = t.insert(n, 0, th).expect("capacity is ample");
                    created += 1;
                    // Inserted at time 0: NONE's 2 s keep it alive
                    // against the expirers (clock at 1 ms) until its
                    // first packet. Half become ESTABLISHED (900 s);
                    // the other half stay NONE and end once the clock
                    // passes 2 s below.
                    if p % 2 == 0 {
                        c.on_packet(
                            Dir::In,
                            TcpEvent {
                                syn: true,
                                ..Default::default()
                            },
                            0,
                            to,
                        );
                        c.on_packet(
                            Dir::In,
                            TcpEvent {
                                ack: true,
                                ..Default::default()
                            },
                            0,
                            to,
                        );
                        // Both keys find the very same connection.
                        let (a, da) = t.lookup(&c.in_key()).expect("in key");
                        let (b, db) = t.lookup(&c.out_key().unwrap()).expect("out key");
                        assert_eq!((a.id(), b.id()), (c.id(), c.id()));
                        assert_eq!((da, db), (Dir::In, Dir::Out));
                        assert_eq!(a.state(), State::Established);
                    }
                }
                created
            }));
        }
        let created: usize = inserters.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(created, THREADS * PER_THREAD as usize);
        assert_eq!(
            expired.load(Relaxed),
            0,
            "nothing expired before its deadline"
        );
        // Move the clock past NONE's 2 s while the expirers run, then
        // run every wheel once more so everything due has ended.
        now.store(2_100, Relaxed);
        expired.fetch_add(t.expire_all(2_100), Relaxed);
    });
    let live = THREADS * PER_THREAD as usize / 2;
    assert_eq!(
        expired.load(Relaxed),
        live,
        "each short-lived connection expired exactly once"
    );
    assert_eq!(t.len(), live);
    assert_eq!(d.active.load(Relaxed) as usize, live);
    assert_eq!(d.inactive.load(Relaxed), 0);
    let mut seen = std::collections::HashSet::new();
    t.for_each(|c| {
        assert_eq!(c.state(), State::Established);
        assert!(seen.insert(c.in_key()), "listed twice: {:?}", c.in_key());
    });
    assert_eq!(seen.len(), live, "no lost or duplicated entries");
    t.flush();
    assert_eq!((t.len(), d.active.load(Relaxed)), (0, 0));
}

/// Churn through a small table many times over (slots and index
/// entries reused again and again) while readers look up live keys.
#[test]
fn churn_reuses_slots_without_losing_or_confusing_flows() {
    let (t, d, svc) = super::tests::table(256, 2);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // A reader: whatever it finds must be the flow it asked for.
        s.spawn(|| {
            let mut p = 0u16;
            while !stop.load(Relaxed) {
                let k = FlowKey::v4(
                    Proto::Tcp,
                    Ipv4Addr::new(192, 0, 2, 1),
                    p % 512,
                    Ipv4Addr::new(10, 0, 0, 100),
                    80,
                );
                if let Some((c, dir)) = t.lookup(&k) {
                    assert_eq!((c.cport, dir), (p % 512, Dir::In));
                }
                p = p.wrapping_add(1);
            }
        });
        let mut now = 0u64;
        for round in 0..200u16 {
            for p in 0..200u16 {
                let port = (round.wrapping_mul(37).wrapping_add(p)) % 512;
                let n = new_conn([192, 0, 2, 1], port, Forward::Nat, &d, &svc);
                let c = t
                    .insert(n, now, (p % 2) as usize)
                    .expect("room after each round");
                assert_eq!(c.cport, port);
            }
            now += 2_100; // NONE lasts 2 s
            t.expire_all(now);
            assert!(t.is_empty(), "round {round}: {} left", t.len());
        }
        stop.store(true, Relaxed);
    });
    assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
}

/// Inserters leave their reply entries late (a burst at a time) while
/// another thread ends every connection over and over (`ipvsadm -C`
/// during a SYN flood): whichever of the end and the link comes first,
/// each late entry is unlinked exactly once, so the index ends empty and
/// no connection's reply key is lost while it lives.
#[test]
fn ends_racing_late_reply_entries_leave_the_index_exact() {
    const THREADS: usize = 2;
    let (t, d, svc) = super::tests::table(4096, THREADS);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Relaxed) {
                t.flush();
            }
        });
        let inserters: Vec<_> = (0..THREADS)
            .map(|th| {
                let (t, d, svc) = (&t, &d, &svc);
                s.spawn(move || {
                    let mut late = Late::default();
                    for round in 0..300u16 {
                        for p in 0..LATE_MAX as u16 {
                            let port = round.wrapping_mul(LATE_MAX as u16).wrapping_add(p);
                            let n = new_conn([192, 0, 2, th as u8], port, Forward::Nat, d, svc);
                            // Full only if the flusher lags; then skip it.
                            let _ = t.insert_late(n, 0, th, Some(&mut late));
                        }
                        t.link_late(&mut late);
                        // A connection still live has both keys.
                        for p in 0..LATE_MAX as u16 {
                            let port = round.wrapping_mul(LATE_MAX as u16).wrapping_add(p);
                            let client = Ipv4Addr::new(192, 0, 2, th as u8);
                            let vip = Ipv4Addr::new(10, 0, 0, 100);
                            let rs = Ipv4Addr::new(10, 0, 1, 11);
                            let fwd = FlowKey::v4(Proto::Tcp, client, port, vip, 80);
                            let reply = FlowKey::v4(Proto::Tcp, rs, 8080, client, port);
                            let id = |k: &FlowKey| t.lookup(k).map(|(c, _)| c.id());
                            let Some(before) = id(&fwd) else {
                                continue;
                            };
                            // A miss is fine only if it ended meanwhile.
                            if id(&reply).is_none() {
                                assert_ne!(id(&fwd), Some(before), "{port}: live, no reply entry");
                            }
                        }
                    }
                })
            })
            .collect();
        for i in inserters {
            i.join().unwrap();
        }
        stop.store(true, Relaxed);
    });
    t.flush();
    let used = super::tests::index_entries(&t);
    assert_eq!((used, t.len()), (0, 0), "index entries left behind");
    assert_eq!((d.active.load(Relaxed), d.inactive.load(Relaxed)), (0, 0));
}
