use super::*;
use crate::conn::TcpEvent;
use crate::control::Control;
use crate::stats::WorkerStats;
use crossbeam_utils::CachePadded;
use serde_json::{json, Value};

fn director() -> Control {
    director_with(100)
}

/// A director with a connection table of `cap` entries, service
/// 10.0.0.100:80 and real servers 10.0.2.10 and 10.0.2.11.
fn director_with(cap: usize) -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    let c = Control::new(
        Arc::new(ConnTable::new(cap, 1)),
        workers,
        vec!["10.0.1.1".parse().unwrap()],
    );
    for line in [
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.2.10","port":8080,"fwd":"nat"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.2.11","port":8080,"fwd":"nat"}}"#,
    ] {
        let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
        assert_eq!(r["ok"], true, "{line}: {r}");
    }
    c
}

const ACK: TcpEvent = TcpEvent {
    syn: false,
    fin: false,
    ack: true,
    rst: false,
};
const SYN: TcpEvent = TcpEvent {
    syn: true,
    fin: false,
    ack: false,
    rst: false,
};

/// An established NAT connection on `c` to real server `rip`.
fn establish(c: &Control, cport: u16, rip: &str) {
    let t = c.table.load();
    let svc = t
        .find(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
        .unwrap();
    let d = svc.dests.iter().find(|d| d.ip.to_string() == rip).unwrap();
    let n = NewConn::new(
        Proto::Tcp,
        ("192.0.2.1".parse().unwrap(), cport),
        ("10.0.0.100".parse().unwrap(), 80),
        (d.ip, 8080),
        Forward::Nat,
        &d.state,
        &svc.state,
    );
    let now = crate::clock::now_ms();
    let conn = c.conns.insert(n, now, 0).unwrap();
    let to = c.conns.timeouts();
    conn.on_packet(Dir::In, SYN, now, &to);
    conn.on_packet(Dir::Out, SYN, now, &to);
    assert_eq!(conn.on_packet(Dir::In, ACK, now, &to), State::Established);
}

/// A master daemon on `c`'s table sending to a local socket (kept
/// open by the caller), and its counters.
fn master(c: &Control, maxlen: usize) -> (Master, Arc<Counters>, UdpSocket) {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(rx.local_addr().unwrap()).unwrap();
    let counters = Arc::new(Counters::default());
    let m = Master {
        conns: c.conns.clone(),
        counters: counters.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        sock,
        syncid: 0,
        maxlen,
        sent: HashMap::new(),
    };
    (m, counters, rx)
}

/// The client key of the test connections (192.0.2.1:`cport`).
fn client_key(cport: u16) -> FlowKey {
    FlowKey::v4(
        Proto::Tcp,
        "192.0.2.1".parse().unwrap(),
        cport,
        "10.0.0.100".parse().unwrap(),
        80,
    )
}

fn entries(c: &Control) -> Vec<SyncConn> {
    let mut v = Vec::new();
    let t = c.conns.timeouts();
    c.conns
        .for_each(|x| v.push(sync_conn(x, t.get(x.state())).unwrap()));
    v
}

/// The master re-sends an established connection only when it had
/// traffic since the last send and ACTIVE_RESEND_MS have passed, or
/// when its refresh (half its timeout) is due; an idle one is not
/// re-sent before.
#[test]
fn master_resends_a_connection_with_traffic_not_an_idle_one() {
    let m = director();
    establish(&m, 40000, "10.0.2.11");
    let (mut master, counters, _rx) = master(&m, 1472);
    let sent = || counters.sent_conns.load(Relaxed);
    let mut last = 0;
    m.conns.for_each(|c| last = c.expires_ms());
    let t0 = last - 900 * 1000; // the last packet's time
    master.scan(t0 + 10);
    assert_eq!(sent(), 1, "a new connection is sent at once");
    master.scan(t0 + 10 + ACTIVE_RESEND_MS + 500);
    assert_eq!(sent(), 1, "idle: not sent again");
    // A packet, then the next scan at least ACTIVE_RESEND_MS after
    // the last send: sent again; and not again without traffic.
    let to = m.conns.timeouts();
    m.conns.for_each(|c| {
        c.on_packet(Dir::In, ACK, t0 + 2_000, &to);
    });
    master.scan(t0 + 2_100);
    assert_eq!(sent(), 2, "traffic since the last send: re-sent");
    master.scan(t0 + 2_100 + ACTIVE_RESEND_MS + 10);
    assert_eq!(sent(), 2, "no traffic since: not re-sent");
    // Traffic, but less than ACTIVE_RESEND_MS after the last send.
    m.conns.for_each(|c| {
        c.on_packet(Dir::In, ACK, t0 + 2_200, &to);
    });
    master.scan(t0 + 2_300);
    assert_eq!(sent(), 2, "re-sent at most every ACTIVE_RESEND_MS");
    master.scan(t0 + 2_100 + ACTIVE_RESEND_MS);
    assert_eq!(sent(), 3);
    // Refresh: half the 900 s timeout after the last send.
    master.scan(t0 + 2_100 + ACTIVE_RESEND_MS + 450_000);
    assert_eq!(sent(), 4, "refresh due");
}

/// A SYN-proxied connection is sent with rvs's option once both
/// handshakes are done (not while pending) and the backup holds the
/// same adjustment, so it translates the connection's sequence numbers
/// and windows as the master did.
#[test]
fn a_proxied_connection_carries_its_adjustment_to_the_backup() {
    use crate::conn::SynProxy;
    use crate::synproxy::SeqAdj;
    let (m, b) = (director(), director());
    let t = m.table.load();
    let svc = t
        .find(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
        .unwrap();
    let d = &svc.dests[0];
    let now = crate::clock::now_ms();
    let to = m.conns.timeouts();
    let new = |cport| {
        NewConn::new(
            Proto::Tcp,
            ("192.0.2.1".parse().unwrap(), cport),
            ("10.0.0.100".parse().unwrap(), 80),
            (d.ip, 8080),
            Forward::Nat,
            &d.state,
            &svc.state,
        )
        .with_synproxy(1000, 2000, 512)
    };
    let pending = m.conns.insert(new(40001), now, 0).unwrap();
    pending.on_packet(Dir::In, ACK, now, &to);
    let proxied = m.conns.insert(new(40002), now, 0).unwrap();
    let adj = SeqAdj {
        delta: 0x1234_5678,
        c2s_shift: 2,
        s2c_shift: -3,
    };
    assert!(proxied.synproxy_establish(adj.to_bits()));
    proxied.on_packet(Dir::In, ACK, now, &to);
    let mut sent = Vec::new();
    m.conns
        .for_each(|c| sent.extend(sync_conn(c, to.get(c.state()))));
    assert_eq!(sent.len(), 1, "the pending one is not sent: {sent:?}");
    assert_eq!(sent[0].cport, 40002);
    let mut bl = Builder::new(0, 1472);
    assert!(bl.push(&sent[0]));
    let msg = bl.finish();
    // The option on the wire: type 9, length 8, delta, shifts, 0, 0.
    let at = msg.len() - 10;
    assert_eq!(
        &msg[at..],
        &[9, 8, 0x12, 0x34, 0x56, 0x78, 2, 0xfd, 0, 0],
        "{msg:02x?}"
    );
    let p = proto::parse(&msg, 0).unwrap();
    assert_eq!(
        apply(&b.conns, &b.table.load(), &p.conns[0], now),
        Applied::Inserted
    );
    let key = client_key(40002);
    let (c, _) = b.conns.lookup(&key).expect("synced connection");
    assert_eq!(c.synproxy, Some(SynProxy::Proxied(adj.to_bits())));
    assert_eq!(c.state(), State::Established);
}

/// New connections go first: with the scan's budget full of re-sends,
/// connections never sent are still sent in the next scan.
#[test]
fn new_connections_are_not_starved_by_re_sends() {
    let m = director_with(1000);
    let n = MAX_MSGS_PER_SCAN + 44;
    for i in 0..n {
        establish(&m, 20000 + i as u16, "10.0.2.10");
    }
    // One entry per message: the budget is MAX_MSGS_PER_SCAN entries.
    let (mut master, counters, _rx) = master(&m, proto::MESG_HDR_LEN + proto::CONN_V4_LEN);
    let t0 = crate::clock::now_ms();
    master.scan(t0);
    assert_eq!(counters.sent_conns.load(Relaxed), MAX_MSGS_PER_SCAN as u64);
    assert_eq!(counters.deferred.load(Relaxed), 44);
    // Traffic on every connection: the sent ones are due for re-send,
    // but the 44 never sent come first.
    let to = m.conns.timeouts();
    m.conns.for_each(|c| {
        c.on_packet(Dir::In, ACK, t0 + 10, &to);
    });
    master.scan(t0 + ACTIVE_RESEND_MS + 20);
    assert_eq!(master.sent.len(), n, "every connection sent once");
}

/// An entry for a tuple the backup holds with another SYN-proxy
/// adjustment is a new connection of the master's: replaced, not
/// updated; FULLNAT sequence data arriving later is applied.
#[test]
fn an_update_that_is_another_connection_replaces_it() {
    use crate::conn::SynProxy;
    let (m, b) = (director(), director());
    establish(&m, 40000, "10.0.2.11");
    let mut e = entries(&m).remove(0);
    let now = crate::clock::now_ms();
    let t = b.table.load();
    assert_eq!(apply(&b.conns, &t, &e, now), Applied::Inserted);
    e.synproxy = Some(proto::SynOpt {
        delta: 7,
        c2s_shift: 0,
        s2c_shift: 0,
    });
    assert_eq!(apply(&b.conns, &t, &e, now), Applied::Inserted);
    let key = client_key(40000);
    let (c, _) = b.conns.lookup(&key).unwrap();
    assert!(matches!(c.synproxy, Some(SynProxy::Proxied(_))));
    assert_eq!(b.conns.len(), 1, "the old one ended");
    assert_eq!(apply(&b.conns, &t, &e, now), Applied::Updated);
}

#[test]
fn master_entry_to_backup_connection() {
    let (m, b) = (director(), director());
    establish(&m, 40000, "10.0.2.11");
    let e = entries(&m);
    assert_eq!(e.len(), 1);
    // Flags as the kernel sends a NAT connection in ESTABLISHED.
    assert_eq!(e[0].flags, flags::MASQ);
    assert_eq!(e[0].state, 1);
    assert_eq!(e[0].timeout, 900);
    let mut bl = Builder::new(9, 1472);
    assert!(bl.push(&e[0]));
    let p = proto::parse(&bl.finish(), 9).unwrap();
    let now = crate::clock::now_ms();
    assert_eq!(
        apply(&b.conns, &b.table.load(), &p.conns[0], now),
        Applied::Inserted
    );
    let key = client_key(40000);
    let (c, _) = b.conns.lookup(&key).expect("synced connection");
    assert_eq!(c.state(), State::Established);
    assert!(c.is_active());
    assert_eq!(c.dip.to_string(), "10.0.2.11");
    assert_eq!(c.fwd, Forward::Nat);
    assert_eq!(c.dest().active.load(Relaxed), 1);
    assert_eq!(c.dest().inactive.load(Relaxed), 0);
    // Not in the Conns statistic: the kernel's ip_vs_proc_conn makes the
    // connection with ip_vs_conn_new and never calls ip_vs_conn_stats
    // (ip_vs_schedule does, for the connections a director schedules).
    let t = b.table.load();
    let svc = t
        .find(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
        .unwrap();
    assert_eq!(c.dest().traffic.conns.load(Relaxed), 0);
    assert_eq!(svc.state.traffic.conns.load(Relaxed), 0);
    // The reply key is there too (NAT replies pass the director).
    let out = FlowKey::v4(
        Proto::Tcp,
        "10.0.2.11".parse().unwrap(),
        8080,
        "192.0.2.1".parse().unwrap(),
        40000,
    );
    assert!(b.conns.lookup(&out).is_some());
    let left = c.expires_ms().saturating_sub(now);
    assert!(left > 800_000 && left <= 900_000, "{left}");

    // An update to FIN_WAIT, inactive: same entry, counts move.
    let mut u = p.conns[0].clone();
    u.state = State::FinWait as u16;
    u.flags |= flags::INACTIVE;
    u.timeout = 120;
    assert_eq!(apply(&b.conns, &b.table.load(), &u, now), Applied::Updated);
    let (c, _) = b.conns.lookup(&key).unwrap();
    assert_eq!(c.state(), State::FinWait);
    assert_eq!(c.dest().active.load(Relaxed), 0);
    assert_eq!(c.dest().inactive.load(Relaxed), 1);
    assert!(c.expires_ms() <= now + 120_000);
    assert_eq!(b.conns.len(), 1);

    // Another real server and INACTIVE: the expiry of a replaced
    // connection, ignored; active: the old one is replaced.
    let mut r = u.clone();
    r.daddr = "10.0.2.10".parse().unwrap();
    assert_eq!(apply(&b.conns, &b.table.load(), &r, now), Applied::Stale);
    r.flags &= !flags::INACTIVE;
    r.state = 1;
    assert_eq!(apply(&b.conns, &b.table.load(), &r, now), Applied::Inserted);
    let (c, _) = b.conns.lookup(&key).unwrap();
    assert_eq!(c.dip.to_string(), "10.0.2.10");
    assert_eq!(b.conns.len(), 1);
}

#[test]
fn unknown_service_or_server_is_not_inserted() {
    let b = director();
    let mut sc = SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 1,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 0,
        caddr: "192.0.2.9".parse().unwrap(),
        vaddr: "10.0.0.100".parse().unwrap(),
        daddr: "10.0.2.99".parse().unwrap(),
        seq: None,
        fnat: None,
        synproxy: None,
    };
    let now = crate::clock::now_ms();
    assert_eq!(apply(&b.conns, &b.table.load(), &sc, now), Applied::NoDest);
    sc.daddr = "10.0.2.10".parse().unwrap();
    sc.vport = 81;
    assert_eq!(apply(&b.conns, &b.table.load(), &sc, now), Applied::NoDest);
    assert!(b.conns.is_empty());
    // Timeout 0 (a version 0 message): the backup's own table.
    sc.vport = 80;
    assert_eq!(
        apply(&b.conns, &b.table.load(), &sc, now),
        Applied::Inserted
    );
    b.conns.for_each(|c| {
        assert_eq!(c.expires_ms(), now + 900_000);
    });
}

#[test]
fn dr_and_tun_entries_as_the_kernel_sends_them() {
    let b = director();
    for line in [
        r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.101","port":53}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.101","port":53},"dest":{"ip":"10.0.2.20","port":53,"fwd":"dr"}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.101","port":53},"dest":{"ip":"10.0.2.21","port":53,"fwd":"tun"}}"#,
    ] {
        let r: Value = serde_json::from_str(&b.handle_line(line)).unwrap();
        assert_eq!(r["ok"], true, "{line}: {r}");
    }
    let now = crate::clock::now_ms();
    for (rip, f, fwd) in [
        ("10.0.2.20", flags::DROUTE, Forward::Dr),
        ("10.0.2.21", flags::TUNNEL, Forward::Tun),
    ] {
        // UDP: state 0 (IP_VS_UDP_S_NORMAL), NOOUTPUT as for every
        // non-MASQ destination (ip_vs_ctl.c __ip_vs_update_dest).
        let sc = SyncConn {
            protocol: 17,
            flags: f | flags::NOOUTPUT | flags::SYNC,
            state: 0,
            cport: 5353,
            vport: 53,
            dport: 53,
            fwmark: 0,
            timeout: 300,
            caddr: "192.0.2.7".parse().unwrap(),
            vaddr: "10.0.0.101".parse().unwrap(),
            daddr: rip.parse().unwrap(),
            seq: None,
            fnat: None,
            synproxy: None,
        };
        b.conns.flush();
        assert_eq!(
            apply(&b.conns, &b.table.load(), &sc, now),
            Applied::Inserted
        );
        let key = FlowKey {
            proto: Proto::Udp,
            src: sc.caddr,
            sport: 5353,
            dst: "10.0.0.101".parse().unwrap(),
            dport: 53,
        };
        let (c, _) = b.conns.lookup(&key).unwrap();
        assert_eq!((c.fwd, c.state()), (fwd, State::Udp));
        // No reply key: replies bypass the director.
        assert!(c.out_key().is_none());
        // And back: the master sends what it received.
        let again = sync_conn(&c, 300).unwrap();
        assert_eq!(again.flags, f | flags::NOOUTPUT);
        assert_eq!(
            (again.state, again.protocol, again.daddr),
            (0, 17, sc.daddr)
        );
    }
}

#[test]
fn kernel_defaults_for_the_daemon() {
    // start_sync_thread: group, port, ttl, maxlen = 1500 - 28 for a
    // master whatever the MTU; a backup uses the MTU (at least 1500).
    let mut c = SyncConf {
        mcast_ifn: "eth0".into(),
        syncid: 1,
        sync_maxlen: 0,
        mcast_group: None,
        mcast_port: 0,
        mcast_ttl: 0,
    };
    let mut b = c.clone();
    c.resolve(Role::Master, 9000);
    assert_eq!(c.sync_maxlen, 1472);
    assert_eq!(c.mcast_group, Some(Ipv4Addr::new(224, 0, 0, 81)));
    assert_eq!((c.mcast_port, c.mcast_ttl), (8848, 1));
    b.resolve(Role::Backup, 9000);
    assert_eq!(b.sync_maxlen, 9000 - 28);
    let mut s = c.clone();
    s.sync_maxlen = 100;
    s.resolve(Role::Backup, 1500);
    assert_eq!(s.sync_maxlen, 1024);
}

#[test]
fn daemon_requests_errors() {
    let c = director();
    let r: Value =
        serde_json::from_str(&c.handle_line(r#"{"cmd":"stop_daemon","state":"master"}"#)).unwrap();
    assert_eq!(r["error"]["code"], "not_running");
    let r: Value = serde_json::from_str(
        &c.handle_line(r#"{"cmd":"start_daemon","state":"backup","mcast_ifn":"nosuchif0"}"#),
    )
    .unwrap();
    assert_eq!(r["error"]["code"], "no_device");
    let r: Value = serde_json::from_str(
        &c.handle_line(r#"{"cmd":"start_daemon","state":"backup","mcast_ifn":"lo","bogus":1}"#),
    )
    .unwrap();
    assert_eq!(r["error"]["code"], "bad_request");
    let r: Value = serde_json::from_str(&c.handle_line(r#"{"cmd":"daemon"}"#)).unwrap();
    assert_eq!(r["daemons"], json!([]));
    assert_eq!(r["counters"]["errors"]["foreign_syncid"], 0);
}

/// rvsd restarted on its table file: the connections a previous process
/// left are taken over against the new configuration, as a backup takes
/// synced ones, and answer in both directions at once.
#[test]
fn a_restarted_director_takes_over_the_connections_in_its_table_file() {
    let dir = std::env::temp_dir().join(format!("rvs-takeover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conns");
    let on_file = |lines: &[&str]| {
        let (t, k) = ConnTable::open_file(&path, 100, 1, Default::default(), false).unwrap();
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        let c = Control::new(Arc::new(t), workers, vec!["10.0.1.1".parse().unwrap()]);
        for line in lines {
            let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
            assert_eq!(r["ok"], true, "{line}: {r}");
        }
        (c, k)
    };
    let svc = r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#;
    let rs = |ip: &str| {
        format!(
            r#"{{"cmd":"add_dest","service":{{"proto":"tcp","vip":"10.0.0.100","port":80}},"dest":{{"ip":"{ip}","port":8080,"fwd":"nat"}}}}"#
        )
    };
    let (a, mut k) = on_file(&[svc, &rs("10.0.2.10"), &rs("10.0.2.11")]);
    k.commit().unwrap();
    for (port, rip) in [
        (1000, "10.0.2.10"),
        (1001, "10.0.2.11"),
        (1002, "10.0.2.10"),
    ] {
        establish(&a, port, rip);
    }
    assert_eq!(a.conns.len(), 3);
    drop((a, k));

    // The new configuration has lost 10.0.2.11.
    let (b, mut k) = on_file(&[svc, &rs("10.0.2.10")]);
    let prev = k.previous.take().unwrap();
    let r = b.adopt(&prev);
    k.commit().unwrap();
    assert_eq!((r.adopted, r.no_dest, r.expired), (2, 1, 0), "{r:?}");
    let (c, dir_in) = b.conns.lookup(&client_key(1000)).unwrap();
    assert_eq!((dir_in, c.state()), (Dir::In, State::Established));
    assert_eq!(
        (c.dip, c.dport, c.fwd),
        ("10.0.2.10".parse().unwrap(), 8080, Forward::Nat)
    );
    let (_, dir_out) = b.conns.lookup(&c.out_key().unwrap()).unwrap();
    assert_eq!(dir_out, Dir::Out);
    assert!(b.conns.lookup(&client_key(1001)).is_none());
    // The real server's counters follow (ActiveConn as ipvsadm shows it).
    let l = b.list();
    assert_eq!(l.services[0].dests[0].active, 2);
    assert_eq!(l.conn_table.adopted, Some(r));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_big_table_is_taken_over_in_parts_and_whole() {
    let dir = std::env::temp_dir().join(format!("rvs-takeover-big-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conns");
    let n = ADOPT_PARALLEL_FROM + 5000;
    let on_file = || {
        let (t, k) = ConnTable::open_file(&path, n + 100, 2, Default::default(), false).unwrap();
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        let c = Control::new(Arc::new(t), workers, vec!["10.0.1.1".parse().unwrap()]);
        for line in [
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.2.10","port":8080,"fwd":"nat"}}"#,
        ] {
            let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
            assert_eq!(r["ok"], true, "{line}: {r}");
        }
        (c, k)
    };
    let client = |i: usize| -> (IpAddr, u16) {
        (
            IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + (i / 50_000) as u32)),
            (1024 + i % 50_000) as u16,
        )
    };
    let (a, mut k) = on_file();
    k.commit().unwrap();
    {
        let t = a.table.load();
        let svc = t
            .find(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
            .unwrap();
        let d = &svc.dests[0];
        let now = crate::clock::now_ms();
        let to = a.conns.timeouts();
        for i in 0..n {
            let c = a
                .conns
                .insert(
                    NewConn::new(
                        Proto::Tcp,
                        client(i),
                        ("10.0.0.100".parse().unwrap(), 80),
                        (d.ip, 8080),
                        Forward::Nat,
                        &d.state,
                        &svc.state,
                    ),
                    now,
                    0,
                )
                .unwrap();
            c.on_packet(Dir::In, SYN, now, &to);
            c.on_packet(Dir::In, ACK, now, &to);
        }
    }
    drop((a, k));
    let (b, mut k) = on_file();
    let prev = k.previous.take().unwrap();
    assert!(
        prev.capacity() >= ADOPT_PARALLEL_FROM,
        "the parallel path runs"
    );
    let r = b.adopt(&prev);
    assert_eq!(
        (r.adopted, r.no_dest, r.expired, r.full),
        (n as u64, 0, 0, 0)
    );
    assert_eq!(b.conns.len(), n);
    for i in [0, n / 2, n - 1] {
        let (ip, port) = client(i);
        let key = FlowKey::v4(
            Proto::Tcp,
            match ip {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => unreachable!(),
            },
            port,
            "10.0.0.100".parse().unwrap(),
            80,
        );
        assert!(b.conns.lookup(&key).is_some(), "client {i} taken over");
    }
    // With two threads or more, the timers went to both workers' wheels:
    // each ends its share.
    let later = crate::clock::now_ms() + 16 * 60 * 1000;
    let (w0, w1) = (
        b.conns.expire(0, later, usize::MAX),
        b.conns.expire(1, later, usize::MAX),
    );
    assert_eq!(w0 + w1, n);
    if std::thread::available_parallelism().map_or(1, |t| t.get()) > 1 {
        assert!(w0 > 0 && w1 > 0, "{w0} + {w1}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_ipv6_connection_is_synced_to_the_backup() {
    let (m, b) = (director(), director());
    for c in [&m, &b] {
        for line in [
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"2001:db8::100","port":80,"sched":"rr"}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"2001:db8::100","port":80},"dest":{"ip":"2001:db8:1::11","port":80,"fwd":"nat"}}"#,
        ] {
            let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
            assert_eq!(r["ok"], true, "{line}: {r}");
        }
    }
    let t = m.table.load();
    let svc = t
        .find(Proto::Tcp, "2001:db8::100".parse().unwrap(), 80)
        .unwrap();
    let d = &svc.dests[0];
    let n = NewConn::new(
        Proto::Tcp,
        ("2001:db8::2".parse().unwrap(), 41000),
        ("2001:db8::100".parse().unwrap(), 80),
        (d.ip, 80),
        Forward::Nat,
        &d.state,
        &svc.state,
    );
    let now = crate::clock::now_ms();
    let conn = m.conns.insert(n, now, 0).unwrap();
    let to = m.conns.timeouts();
    conn.on_packet(Dir::In, SYN, now, &to);
    conn.on_packet(Dir::Out, SYN, now, &to);
    conn.on_packet(Dir::In, ACK, now, &to);
    let e = entries(&m);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].caddr, "2001:db8::2".parse::<IpAddr>().unwrap());
    let mut bl = Builder::new(1, 1472);
    assert!(bl.push(&e[0]));
    let p = proto::parse(&bl.finish(), 1).unwrap();
    assert_eq!(
        apply(&b.conns, &b.table.load(), &p.conns[0], now),
        Applied::Inserted
    );
    let (c, _) = b.conns.lookup(&conn.in_key()).expect("synced");
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.real(), d.ip);
    // The reply key is there too.
    assert!(b.conns.lookup(&conn.out_key().unwrap()).is_some());
}

#[test]
fn a_fwmark_services_connections_are_found_by_mark_or_by_the_rules() {
    // The kernel's ip_vs_proc_conn finds the service as
    // ip_vs_service_find does: by the entry's fwmark when it has one (a
    // kernel master's), else by <protocol, vaddr, vport>; an rvs master
    // sends no mark, so the backup classifies the address with its rules.
    let b = director();
    for line in [
        r#"{"cmd":"add_service","service":{"fwmark":7,"af":"inet6","sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"fwmark":7,"af":"inet6"},"dest":{"ip":"2001:db8:1::11","fwd":"nat"}}"#,
        r#"{"cmd":"add_service","service":{"fwmark":7,"sched":"rr"}}"#,
        r#"{"cmd":"add_dest","service":{"fwmark":7},"dest":{"ip":"10.0.2.10","fwd":"nat"}}"#,
        r#"{"cmd":"set_fwmark_rules","rules":[{"mark":7,"dst":"2001:db8:7::/48"},{"mark":7,"dst":"10.0.7.0/24"}]}"#,
    ] {
        let r: Value = serde_json::from_str(&b.handle_line(line)).unwrap();
        assert_eq!(r["ok"], true, "{line}: {r}");
    }
    let now = crate::clock::now_ms();
    let entry = |c: &str, v: &str, d: &str, mark: u32| SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: 1,
        cport: 40000,
        vport: 443,
        dport: 443,
        fwmark: mark,
        timeout: 900,
        caddr: c.parse().unwrap(),
        vaddr: v.parse().unwrap(),
        daddr: d.parse().unwrap(),
        seq: None,
        fnat: None,
        synproxy: None,
    };
    let t = b.table.load();
    for (sc, want) in [
        // By the rules (an rvs master), each family its own service.
        (
            entry("2001:db8::2", "2001:db8:7:1::9", "2001:db8:1::11", 0),
            Applied::Inserted,
        ),
        (
            entry("192.0.2.9", "10.0.7.9", "10.0.2.10", 0),
            Applied::Inserted,
        ),
        // By the mark (a kernel master), whatever the address.
        (
            entry("2001:db8::3", "2001:db8:9::1", "2001:db8:1::11", 7),
            Applied::Inserted,
        ),
        // Neither: no service here.
        (
            entry("2001:db8::4", "2001:db8:9::1", "2001:db8:1::11", 0),
            Applied::NoDest,
        ),
        // The mark of the other family's service only.
        (
            entry("2001:db8::5", "2001:db8:9::1", "2001:db8:1::11", 8),
            Applied::NoDest,
        ),
    ] {
        assert_eq!(apply(&b.conns, &t, &sc, now), want, "{sc:?}");
    }
    assert_eq!(b.conns.len(), 3);
    let key = FlowKey {
        proto: Proto::Tcp,
        src: "2001:db8::2".parse().unwrap(),
        sport: 40000,
        dst: "2001:db8:7:1::9".parse().unwrap(),
        dport: 443,
    };
    let (c, _) = b.conns.lookup(&key).unwrap();
    assert_eq!(c.real().to_string(), "2001:db8:1::11");
}

#[test]
fn with_conn_table_ipv6_a_restart_takes_over_ipv6_and_nat64_connections() {
    let dir = std::env::temp_dir().join(format!("rvs-takeover6-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("conns");
    let on_file = || {
        let (t, k) = crate::conn::Prepared::new(&path, 100, 1, Default::default(), true)
            .unwrap()
            .take_over(false)
            .unwrap();
        let workers: Arc<[CachePadded<WorkerStats>]> =
            Arc::from(vec![CachePadded::new(WorkerStats::default())]);
        let c = Control::new(Arc::new(t), workers, vec!["10.0.1.1".parse().unwrap()]);
        for line in [
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"2001:db8::100","port":80,"sched":"rr"}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"2001:db8::100","port":80},"dest":{"ip":"2001:db8:1::11","port":80,"fwd":"nat"}}"#,
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"2001:db8::100","port":443,"sched":"rr","laddrs":["10.0.1.200"]}}"#,
            r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"2001:db8::100","port":443},"dest":{"ip":"10.0.1.21","port":443,"fwd":"fullnat"}}"#,
        ] {
            let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
            assert_eq!(r["ok"], true, "{line}: {r}");
        }
        (c, k)
    };
    let entry = |cport: u16, vport: u16, daddr: &str, fnat: Option<&str>| SyncConn {
        protocol: 6,
        flags: flags::MASQ,
        state: State::Established as u16,
        cport,
        vport,
        dport: vport,
        fwmark: 0,
        timeout: 900,
        caddr: "2001:db8::2".parse().unwrap(),
        vaddr: "2001:db8::100".parse().unwrap(),
        daddr: daddr.parse().unwrap(),
        seq: None,
        fnat: fnat.map(|l| FnatOpt {
            lip: l.parse().unwrap(),
            lport: 7000,
            client_addr: 0,
        }),
        synproxy: None,
    };
    let (a, mut k) = on_file();
    k.commit().unwrap();
    let now = crate::clock::now_ms();
    let t = a.table.load();
    assert_eq!(
        apply(&a.conns, &t, &entry(41000, 80, "2001:db8:1::11", None), now),
        Applied::Inserted
    );
    assert_eq!(
        apply(
            &a.conns,
            &t,
            &entry(41001, 443, "10.0.1.21", Some("10.0.1.200")),
            now
        ),
        Applied::Inserted
    );
    drop(t);
    drop((a, k));

    let (b, mut k) = on_file();
    let prev = k.previous.take().unwrap();
    let r = b.adopt(&prev);
    k.commit().unwrap();
    assert_eq!((r.adopted, r.no_dest, r.unfinished), (2, 0, 0), "{r:?}");
    let key = |dport: u16| FlowKey {
        proto: Proto::Tcp,
        src: "2001:db8::2".parse().unwrap(),
        sport: 41000 + u16::from(dport == 443),
        dst: "2001:db8::100".parse().unwrap(),
        dport,
    };
    let (c, d) = b.conns.lookup(&key(80)).unwrap();
    assert_eq!(
        (d, c.real().to_string()),
        (Dir::In, "2001:db8:1::11".into())
    );
    let (_, d) = b.conns.lookup(&c.out_key().unwrap()).unwrap();
    assert_eq!(d, Dir::Out);
    // NAT64: the IPv6 client's key, and the IPv4 reply's.
    let (c, _) = b.conns.lookup(&key(443)).unwrap();
    assert!(c.is_nat64());
    let out = c.out_key().unwrap();
    assert_eq!(out.src.to_string(), "10.0.1.21");
    assert_eq!(b.conns.lookup(&out).unwrap().1, Dir::Out);
    std::fs::remove_dir_all(&dir).unwrap();
}
