use super::super::tests::{new_conn, registered};
use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rvs-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A table on `path` with one registered real server and service, as
/// `conn::tests::table` makes one in memory.
fn on_file(path: &Path, max: usize) -> (ConnTable, Takeover, Arc<DestState>, Arc<ServiceState>) {
    let (t, k) = ConnTable::open_file(path, max, 1, Arc::new(Ids::default()), false).unwrap();
    let (t, d, s) = registered(t);
    (t, k, d, s)
}

#[test]
fn connections_outlive_the_table_that_held_them() {
    let d = dir("outlive");
    let path = d.join("conns");
    let (t, mut k, ds, ss) = on_file(&path, 100);
    assert!(k.previous.is_none(), "no file, nothing to take over");
    // A second rvsd on the same file is refused while this one runs.
    assert!(matches!(
        ConnTable::open_file(&path, 10, 1, Arc::new(Ids::default()), false),
        Err(PersistError::InUse(_))
    ));
    // New TCP entries (state NONE) get 60 s here, not 2 s: a loaded CI
    // machine must not see them expire before they are read back.
    let mut to = Timeouts::default();
    to.0[State::None as usize] = 60;
    t.set_timeouts(to);
    k.commit().unwrap();
    let now = crate::clock::now_ms();
    for port in 1000..1010 {
        t.insert(
            new_conn([192, 0, 2, 1], port, Forward::Nat, &ds, &ss),
            now,
            0,
        )
        .unwrap();
    }
    let fnat = new_conn([192, 0, 2, 2], 2000, Forward::FullNat, &ds, &ss).with_fnat(
        "10.0.1.1".parse().unwrap(),
        5000,
        ClientAddr::Toa,
    );
    t.insert(fnat, now, 0).unwrap();
    // An IPv6 connection's addresses are not in the file: it is not
    // carried (and never read back with zero addresses).
    t.insert(
        NewConn::new(
            Proto::Tcp,
            ("2001:db8::c".parse().unwrap(), 4000),
            ("2001:db8::100".parse().unwrap(), 80),
            ("2001:db8::11".parse().unwrap(), 80),
            Forward::Dr,
            &ds,
            &ss,
        ),
        now,
        0,
    )
    .unwrap();
    // One that has ended is not taken over.
    let gone = t
        .insert(
            new_conn([192, 0, 2, 3], 3000, Forward::Nat, &ds, &ss),
            now,
            0,
        )
        .unwrap();
    t.end(&gone);
    // The process dies: no clean-up, the mapping goes, the file stays.
    drop((t, k));
    // What `rvsd --check` reports before a start: the 11 still live.
    assert_eq!(check_file(&path).unwrap(), Some(11));

    let (t2, mut k2, ..) = on_file(&path, 50);
    let prev = k2.previous.take().expect("the previous table is found");
    assert_eq!(prev.capacity(), 100);
    let mut seen = Vec::new();
    prev.for_each(|c, left| {
        assert!(left > 0 && left <= 60_000, "{left} ms left of a 60 s entry");
        assert!(c.v6.is_none());
        seen.push((c.cip, c.cport, c.vip, c.vport, c.dip, c.dport, c.fwd));
        if c.cport == 2000 {
            let f = c.fnat.as_ref().unwrap();
            assert_eq!(
                (f.lip, f.lport, f.client_addr),
                ("10.0.1.1".parse().unwrap(), 5000, ClientAddr::Toa)
            );
        }
    });
    seen.sort_by_key(|s| (s.1, s.0));
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(seen[0].1, 1000);
    assert_eq!(seen[10].6, Forward::FullNat);
    // Until the new table takes the name, a crash would find the old one.
    assert!(path.exists() && t2.is_empty());
    k2.commit().unwrap();
    drop((t2, k2));
    let (_, k3, ..) = on_file(&path, 50);
    let prev = k3.previous.expect("the committed table is found");
    let mut n = 0;
    prev.for_each(|_, _| n += 1);
    // A table that never held a connection: (at most) one slot is read.
    assert_eq!((prev.capacity(), n), (1, 0));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_file_of_another_layout_is_refused_unless_discarded() {
    let d = dir("refuse");
    let path = d.join("conns");
    let table_file = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        ConnTable::open_file(&path, 10, 1, Arc::new(Ids::default()), false).map(|_| ())
    };
    let header = |magic: u64, layout: u64, slots: u64, len: usize| {
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&magic.to_ne_bytes());
        b[8..16].copy_from_slice(&layout.to_ne_bytes());
        b[16..24].copy_from_slice(&slots.to_ne_bytes());
        b
    };
    let page = HEADER_WORDS * 8;
    assert_eq!(check_file(&path).unwrap(), None, "no file yet");
    for (what, bytes, says) in [
        (
            "not a table",
            vec![7u8; 8192],
            "not an rvs connection table",
        ),
        ("too short", vec![0u8; 64], "shorter than a header"),
        ("odd size", vec![0u8; 4100], "not a table's"),
        (
            "other layout",
            header(MAGIC, LAYOUT + 1, 1, page + 64),
            "layout",
        ),
        (
            "slots beyond the file",
            header(MAGIC, LAYOUT, 3, page + 128),
            "room for 2",
        ),
        ("no slots", header(MAGIC, LAYOUT, 0, page + 64), "0 slots"),
    ] {
        match table_file(&bytes) {
            Err(PersistError::Incompatible(m)) => assert!(m.contains(says), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
        // `rvsd --check` says the same, and leaves the file as it was.
        assert!(
            matches!(check_file(&path), Err(PersistError::Incompatible(_))),
            "{what}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}");
        // Asked to, rvsd replaces it and starts with an empty table.
        let (t, k) = ConnTable::open_file(&path, 10, 1, Arc::new(Ids::default()), true).unwrap();
        assert!(k.previous.is_none() && t.is_empty(), "{what}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hostile_slots_never_panic_and_are_read_as_the_table_reads_them() {
    let d = dir("hostile");
    let path = d.join("conns");
    let mut rng = crate::prng::Rng(7);
    for round in 0..20 {
        let n = 64;
        let mut bytes = vec![0u8; region_len(n)];
        for b in bytes[HEADER_WORDS * 8..].iter_mut() {
            *b = rng.next_u64() as u8;
        }
        // Every other round, the live bit set on every slot.
        if round % 2 == 1 {
            for s in 0..n {
                let at = HEADER_WORDS * 8 + s * 64 + 5;
                bytes[at] = (bytes[at] | F_LIVE) & !F_DEAD;
            }
        }
        bytes[0..8].copy_from_slice(&MAGIC.to_ne_bytes());
        bytes[8..16].copy_from_slice(&LAYOUT.to_ne_bytes());
        bytes[16..24].copy_from_slice(&(n as u64).to_ne_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (_, k) = ConnTable::open_file(&path, 10, 1, Arc::new(Ids::default()), false).unwrap();
        let prev = k.previous.unwrap();
        let mut live = 0;
        prev.for_each(|c, _| {
            live += 1;
            let _ = (c.state(), c.in_key(), c.out_key(), c.synproxy, c.fwd);
        });
        assert!(live <= n);
        if round % 2 == 1 {
            assert!(live > 0, "round {round}: live slots are read");
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_table_prepared_before_the_lock_waits_for_it_and_stale_builds_go() {
    let d = dir("prepared");
    let path = d.join("conns");
    let (running, mut k) =
        ConnTable::open_file(&path, 10, 1, Arc::new(Ids::default()), false).unwrap();
    k.commit().unwrap();
    // Left by processes that died while building (pid 4294967 is beyond
    // any pid_max), and by an older rvsd.
    let stale = [d.join("conns.new.4294967-0"), d.join("conns.new")];
    for f in &stale {
        std::fs::write(f, b"x").unwrap();
    }
    // A successor prepares its table while the running one holds the lock.
    let p = Prepared::new(&path, 10, 1, Arc::new(Ids::default()), false).unwrap();
    let built: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with(&format!("conns.new.{}-", std::process::id()))
                .then_some(n)
        })
        .collect();
    assert_eq!(built.len(), 1, "its file exists before the lock is taken");
    let refused = Prepared::new(&path, 10, 1, Arc::new(Ids::default()), false).unwrap();
    assert!(matches!(
        refused.take_over(false),
        Err(PersistError::InUse(_))
    ));
    // (Its file is removed with it: nothing is left below.)
    drop((running, k));
    let (_t, mut k) = p.take_over(false).unwrap();
    assert!(stale.iter().all(|f| !f.exists()), "stale builds removed");
    k.commit().unwrap();
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("conns.new"))
        .collect();
    assert!(
        left.is_empty(),
        "nothing but the table and its lock: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn only_slots_ever_used_are_read_back() {
    let d = dir("high");
    let path = d.join("conns");
    let (t, mut k, ds, ss) = on_file(&path, 5000);
    k.commit().unwrap();
    let mut to = Timeouts::default();
    to.0[State::None as usize] = 60;
    t.set_timeouts(to);
    for port in 1..=3 {
        let n = new_conn([192, 0, 2, 1], port, Forward::Nat, &ds, &ss);
        t.insert(n, crate::clock::now_ms(), 0).unwrap();
    }
    drop((t, k));
    let (_, mut k2, ..) = on_file(&path, 5000);
    let prev = k2.previous.take().expect("found");
    let mut n = 0;
    prev.for_each(|_, _| n += 1);
    assert_eq!(
        (prev.capacity(), n),
        (2 * HIGH_STEP, 3),
        "two steps of slots read (the mark runs a step ahead)"
    );
    drop(k2);
    // A mark beyond the file (damaged, or hostile) is held to it.
    let r = crate::sys::Region::create(&d.join("copy"), file_len(5000, false)).unwrap();
    let src = crate::sys::Region::open_private(&path).unwrap();
    for (a, b) in r.words().iter().zip(src.words()) {
        a.store(b.load(Relaxed), Relaxed);
    }
    r.words()[H_HIGH].store(u64::MAX, Relaxed);
    let prev = read_region(r.words()).unwrap();
    assert_eq!(prev.capacity(), 5000);
    // A file of an older build (no mark) is read whole.
    r.words()[H_HIGH].store(0, Relaxed);
    assert_eq!(read_region(r.words()).unwrap().capacity(), 5000);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn with_conn_table_ipv6_ipv6_connections_are_carried_too() {
    let d = dir("ipv6");
    let path = d.join("conns");
    let open = |max: usize, ipv6: bool| {
        let (t, k) = Prepared::new(&path, max, 1, Arc::new(Ids::default()), ipv6)
            .unwrap()
            .take_over(false)
            .unwrap();
        let (t, ds, ss) = registered(t);
        (t, k, ds, ss)
    };
    let (t, mut k, ds, ss) = open(100, true);
    k.commit().unwrap();
    let mut to = Timeouts::default();
    to.0[State::None as usize] = 60;
    t.set_timeouts(to);
    let now = crate::clock::now_ms();
    let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    // IPv6 NAT, IPv6 FULLNAT (an IPv6 local address), NAT64 and IPv4.
    t.insert(
        NewConn::new(
            Proto::Tcp,
            (v6("2001:db8::c"), 4000),
            (v6("2001:db8::100"), 80),
            (v6("2001:db8:1::11"), 8080),
            Forward::Nat,
            &ds,
            &ss,
        ),
        now,
        0,
    )
    .unwrap();
    t.insert(
        NewConn::new(
            Proto::Tcp,
            (v6("2001:db8::d"), 4001),
            (v6("2001:db8::100"), 80),
            (v6("2001:db8:1::12"), 80),
            Forward::FullNat,
            &ds,
            &ss,
        )
        .with_fnat(v6("2001:db8:1::5"), 6000, ClientAddr::None),
        now,
        0,
    )
    .unwrap();
    t.insert(
        NewConn::new(
            Proto::Tcp,
            (v6("2001:db8::e"), 4002),
            (v6("2001:db8::100"), 80),
            (v6("10.0.1.11"), 80),
            Forward::FullNat,
            &ds,
            &ss,
        )
        .with_fnat(v6("10.0.1.200"), 6001, ClientAddr::None),
        now,
        0,
    )
    .unwrap();
    t.insert(
        new_conn([192, 0, 2, 1], 1000, Forward::Nat, &ds, &ss),
        now,
        0,
    )
    .unwrap();
    // The file is twice a plain table's, rounded to 2 MiB pages.
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert_eq!(len, file_len(100, true));
    drop((t, k));
    assert_eq!(check_file(&path).unwrap(), Some(4));
    // A successor without the option still reads them (the file has the
    // lines); its own file will not carry IPv6 connections.
    let (t2, mut k2, ds2, ss2) = open(50, false);
    let prev = k2.previous.take().unwrap();
    let mut seen = Vec::new();
    prev.for_each(|c, _| {
        seen.push((
            c.client().to_string(),
            c.real().to_string(),
            c.local().map(|l| l.0.to_string()),
            c.is_nat64(),
        ))
    });
    seen.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        seen,
        vec![
            (s("192.0.2.1"), s("10.0.1.11"), None, false),
            (s("2001:db8::c"), s("2001:db8:1::11"), None, false),
            (
                s("2001:db8::d"),
                s("2001:db8:1::12"),
                Some(s("2001:db8:1::5")),
                false
            ),
            (
                s("2001:db8::e"),
                s("10.0.1.11"),
                Some(s("10.0.1.200")),
                true
            ),
        ]
    );
    // Its own IPv6 connections are not carried on.
    t2.insert(
        NewConn::new(
            Proto::Tcp,
            (v6("2001:db8::f"), 4003),
            (v6("2001:db8::100"), 80),
            (v6("2001:db8:1::11"), 80),
            Forward::Nat,
            &ds2,
            &ss2,
        ),
        now,
        0,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    k2.commit().unwrap();
    drop((t2, k2));
    assert_eq!(check_file(&path).unwrap(), Some(0));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_ipv6_lines_offset_out_of_the_file_is_ignored() {
    // A hostile header: lines said to start beyond the file, or over the
    // slots. The slots are read; IPv6 ones are skipped, nothing panics.
    let mut slot = [0u8; 64];
    slot[0] = 1;
    for at in [
        u64::MAX,
        EXT_SET | 1,
        EXT_SET | (HEADER_WORDS as u64),
        EXT_SET | (1 << 40),
    ] {
        let r = crate::sys::Region::anonymous(region_len(2)).unwrap();
        write_header(&r, 2, 0);
        r.words()[H_HIGH].store(HIGH_SET | 2, Relaxed);
        r.words()[H_EXT].store(at, Relaxed);
        for (w, c) in r.words()[HEADER_WORDS..].iter().zip(slot.chunks(8)) {
            w.store(u64::from_ne_bytes(c.try_into().unwrap()), Relaxed);
        }
        let p = read_region(r.words()).unwrap();
        assert!(p.table.ext.is_none(), "{at:#x}");
        p.for_each(|_, _| {});
    }
}
