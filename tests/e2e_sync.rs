//! End to end, connection sync: a master rvsd and a backup rvsd in two
//! director namespaces on the same bridge, synced over their kernel
//! management interfaces (mgmt0) with the kernel's IPVS sync protocol
//! (224.0.0.81:8848, TTL 1). A held client connection through the master
//! must show up on the backup with its state and real server; foreign and
//! malformed sync datagrams must be counted and ignored.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::topo::{describe, ip, ns_exec, Rvsd, SecondNs, Topology};
use serde_json::Value;

/// The backup director's namespace (mgmt0 on the topology's bridge) with
/// two veth pairs inside it (x0/y0, x1/y1) for its af_packet ports.
fn backup(topo: &Topology) -> SecondNs {
    let b = SecondNs::up(topo);
    for (x, y) in [("x0", "y0"), ("x1", "y1")] {
        b.veth(x, y, &b.ns);
        ip(&["-n", &b.ns, "link", "set", y, "up"]);
    }
    b
}

/// A client TCP connection to the VIP held open (nginx waits for the
/// request line): killed on drop.
struct Held {
    child: Child,
    port: u16,
}

impl Held {
    fn open(topo: &Topology) -> Held {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "python3", "-c"])
            .arg(
                "import socket,time\n\
                 s=socket.create_connection(('10.0.0.100',80),timeout=10)\n\
                 print(s.getsockname()[1],flush=True)\n\
                 time.sleep(50)\n",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("client did not connect: {line:?}"));
        Held { child, port }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives Some, for at most `secs` (a readiness wait:
/// sync messages leave every 200 ms).
fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn daemon_json(r: &Rvsd) -> Value {
    serde_json::from_str(&r.rvsadm_ok(&["-L", "--daemon", "--json"])).unwrap()
}

/// Sends `hex` as one UDP datagram to 224.0.0.81:8848 from namespace `ns`,
/// source 10.0.1.250 (the master's management address).
fn send_raw(ns: &str, hex: &str) {
    let script = format!(
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('10.0.1.250',0))\n\
         s.sendto(bytes.fromhex('{hex}'),('224.0.0.81',8848))\n"
    );
    let out = ns_exec(ns, &["python3", "-c", &script]);
    assert!(out.status.success(), "send: {}", describe(&out));
}

#[test]
fn held_connection_is_synced_to_the_backup_and_bad_messages_are_counted() {
    let topo = Topology::up_unique();
    let master = Rvsd::start(&topo, &topo.default_config());
    // All new connections to rs1, so the synced real server is known.
    master.nat_service("rr", 1, 0);
    let b = backup(&topo);
    let backup = Rvsd::start_in(
        &topo,
        &b.ns,
        &topo.second_config(&[("lb0", "x0"), ("lb1", "x1")]),
    );
    backup.nat_service("rr", 1, 1);

    backup.rvsadm_ok(&[
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "mgmt0",
        "--syncid",
        "5",
    ]);
    master.rvsadm_ok(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        "mgmt0",
        "--syncid",
        "5",
    ]);
    // ipvsadm's list_daemon lines, with the kernel's defaults
    // (start_sync_thread: group 224.0.0.81, port 8848, ttl 1, 1500 - 28).
    assert_eq!(
        master.rvsadm_ok(&["-L", "--daemon"]),
        "master sync daemon (mcast=mgmt0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    assert_eq!(
        backup.rvsadm_ok(&["-L", "--daemon"]),
        "backup sync daemon (mcast=mgmt0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    // A second master is the kernel's EEXIST, in libipvs's words.
    let again = master.rvsadm(&["--start-daemon", "master", "--mcast-interface", "mgmt0"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Daemon has already run"),
        "{}",
        describe(&again)
    );

    let held = Held::open(&topo);
    let want = format!("10.0.0.2:{}", held.port);
    let line = wait_for(15, || {
        let l = backup.rvsadm_ok(&["-L", "-c", "-n"]);
        l.lines().find(|x| x.contains(&want)).map(str::to_owned)
    });
    let line = line.unwrap_or_else(|| {
        panic!(
            "connection {want} not on the backup; master:\n{}\nbackup:\n{}\nbackup daemon: {}",
            master.rvsadm_ok(&["-L", "-c", "-n"]),
            backup.rvsadm_ok(&["-L", "-c", "-n"]),
            daemon_json(&backup)
        )
    });
    let f: Vec<&str> = line.split_whitespace().collect();
    // pro expire state source virtual destination
    assert_eq!(f[0], "TCP", "{line}");
    assert_eq!(f[2], "ESTABLISHED", "{line}");
    assert_eq!(f[4], "10.0.0.100:80", "{line}");
    assert_eq!(f[5], "10.0.1.11:80", "{line}");
    let d = daemon_json(&backup);
    assert!(d["counters"]["inserted"].as_u64().unwrap() >= 1, "{d}");
    let m = daemon_json(&master);
    assert!(m["counters"]["sent_conns"].as_u64().unwrap() >= 1, "{m}");

    // A well-formed message of syncid 6 for client 10.9.9.9: foreign.
    // Header: 00 syncid 002c(44) 01 01 0000; entry: type 0, TCP, ver_size
    // 36, flags 0, state 1, cport 1, vport 80, dport 80, fwmark 0,
    // timeout 900, 10.9.9.9, 10.0.0.100, 10.0.1.11.
    let entry = "0006002400000000000100010050005000000000000003840a0909090a0000640a00010b";
    send_raw(&topo.lb_ns(), &format!("0006002c01010000{entry}"));
    // Malformed: the header's size (0x0030) is not the datagram's length.
    send_raw(&topo.lb_ns(), &format!("00050030010100000{}", &entry[1..]));
    let counted = wait_for(10, || {
        let d = daemon_json(&backup);
        let e = &d["counters"]["errors"];
        (e["foreign_syncid"].as_u64() >= Some(1) && e["bad_size"].as_u64() >= Some(1)).then_some(d)
    });
    assert!(counted.is_some(), "not counted: {}", daemon_json(&backup));
    let l = backup.rvsadm_ok(&["-L", "-c", "-n"]);
    assert!(!l.contains("10.9.9.9"), "{l}");

    // The same entry with the right syncid is taken (the test's bytes are
    // the kernel's format, not only what rvs's builder makes).
    send_raw(&topo.lb_ns(), &format!("0005002c01010000{entry}"));
    let taken = wait_for(10, || {
        let l = backup.rvsadm_ok(&["-L", "-c", "-n"]);
        l.lines()
            .find(|x| x.contains("10.9.9.9:1"))
            .map(str::to_owned)
    });
    let taken =
        taken.unwrap_or_else(|| panic!("kernel-format entry not taken: {}", daemon_json(&backup)));
    assert!(
        taken.contains("ESTABLISHED") && taken.contains("10.0.1.11:80"),
        "{taken}"
    );

    // Stop: -L --daemon empty; stopping again is ESRCH.
    master.rvsadm_ok(&["--stop-daemon", "master"]);
    assert_eq!(master.rvsadm_ok(&["-L", "--daemon"]), "");
    let again = master.rvsadm(&["--stop-daemon", "master"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("No daemon is running"),
        "{}",
        describe(&again)
    );
    drop(held);
    drop(backup);
    drop(b);
}

/// A backup director with real ports: l0 to the client (its peer eth1 in
/// the client namespace, without an address until failover) and l1 to the
/// bridge (its peer p-lb2 down until failover, so the two directors never
/// answer ARP for 10.0.1.1 at the same time), plus mgmt0 as in [`backup`].
fn backup_with_ports(topo: &Topology) -> SecondNs {
    let (c, sw) = (topo.client_ns(), topo.sw_ns());
    let b = SecondNs::up(topo);
    b.veth("l0", "eth1", &c);
    b.veth("l1", "p-lb2", &sw);
    ip(&["-n", &sw, "link", "set", "p-lb2", "master", "br0"]);
    ip(&["-n", &c, "link", "set", "eth1", "up"]);
    b
}

/// The held connection, then a request on it once told to (a line on
/// stdin): prints the local port, then the response body.
struct Waiting {
    child: Child,
    port: u16,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn held_connection_continues_on_the_backup_after_failover() {
    let topo = Topology::up_unique();
    let master = Rvsd::start(&topo, &topo.default_config());
    master.nat_service("rr", 1, 0);
    let b = backup_with_ports(&topo);
    let cfg = topo.second_config(&[("lb0", "l0"), ("lb1", "l1")]);
    let mut backup = Rvsd::start_in(&topo, &b.ns, &cfg);
    // The backup's real servers the other way round: a new connection there
    // would go to rs2, a synced one must stay on rs1.
    backup.nat_service("rr", 0, 1);
    backup.rvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", "mgmt0"]);
    master.rvsadm_ok(&["--start-daemon", "master", "--mcast-interface", "mgmt0"]);

    let mut child = Command::new("ip")
        .args(["netns", "exec", &topo.client_ns(), "python3", "-c"])
        .arg(
            "import socket,sys\n\
             s=socket.create_connection(('10.0.0.100',80),timeout=10)\n\
             print(s.getsockname()[1],flush=True)\n\
             sys.stdin.readline()\n\
             s.sendall(b'GET / HTTP/1.0\\r\\nHost: vip\\r\\n\\r\\n')\n\
             d=b''\n\
             while True:\n\
             \x20   x=s.recv(65536)\n\
             \x20   if not x: break\n\
             \x20   d+=x\n\
             print(d.split(b'\\r\\n\\r\\n',1)[-1].decode().strip(),flush=True)\n",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read port");
    let w = Waiting {
        port: line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no connection: {line:?}")),
        child,
    };
    let want = format!("10.0.0.2:{}", w.port);
    let synced = wait_for(15, || {
        let l = backup.rvsadm_ok(&["-L", "-c", "-n"]);
        l.lines()
            .find(|x| x.contains(&want) && x.contains("ESTABLISHED"))
            .map(str::to_owned)
    });
    assert!(
        synced.is_some(),
        "not synced: {}",
        backup.rvsadm_ok(&["-L", "-c", "-n"])
    );

    // Failover: the master goes away; the client and the real servers
    // reach the backup's ports instead.
    master.stop().expect("master stops");
    let (c, sw) = (topo.client_ns(), topo.sw_ns());
    ip(&["-n", &sw, "link", "set", "p-lb", "down"]);
    ip(&["-n", &sw, "link", "set", "p-lb2", "up"]);
    ip(&["-n", &c, "addr", "del", "10.0.0.2/24", "dev", "eth0"]);
    ip(&["-n", &c, "addr", "add", "10.0.0.2/24", "dev", "eth1"]);
    ip(&[
        "-n", &c, "route", "replace", "default", "via", "10.0.0.1", "dev", "eth1",
    ]);
    ip(&["-n", &c, "neigh", "flush", "all"]);
    ip(&["-n", &topo.rs_ns(1), "neigh", "flush", "all"]);

    use std::io::Write;
    let mut w = w;
    w.child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .expect("tell the client");
    let mut body = String::new();
    out.read_line(&mut body).expect("read body");
    assert_eq!(
        body.trim(),
        "rs1",
        "the held connection did not continue on the backup; backup: {}\n{}",
        backup.rvsadm_ok(&["-L", "-c", "-n"]),
        backup.log()
    );
    let _ = backup.terminate();
}

#[test]
fn a_kernel_format_ipv6_entry_is_taken_by_the_backup() {
    // The backup has the IPv6 service; the entry is written here byte by
    // byte from the kernel's struct ip_vs_sync_v6 (ip_vs_sync.c), not by
    // rvs's builder, and sent from the master's namespace.
    let topo = Topology::up_unique();
    let b = backup(&topo);
    let mut config = topo.second_config(&[("lb0", "x0"), ("lb1", "x1")]);
    config["ports"][0]["ipv6"] = "2001:db8::1/64".into();
    config["ports"][1]["ipv6"] = "2001:db8:1::1/64".into();
    let backup = Rvsd::start_in(&topo, &b.ns, &config);
    backup.rvsadm_ok(&["-A", "-t", "[2001:db8::100]:80", "-s", "rr"]);
    backup.rvsadm_ok(&[
        "-a",
        "-t",
        "[2001:db8::100]:80",
        "-r",
        "[2001:db8:1::11]:80",
        "-m",
    ]);
    backup.rvsadm_ok(&[
        "--start-daemon",
        "backup",
        "--mcast-interface",
        "mgmt0",
        "--syncid",
        "5",
    ]);
    // Entry: type STYPE_F_INET6 (1), TCP, ver_size 72, flags 0 (MASQ),
    // state 1 (ESTABLISHED), cport 1, vport 80, dport 80, fwmark 0,
    // timeout 900, then caddr 2001:db8::9:9, vaddr 2001:db8::100, daddr
    // 2001:db8:1::11, 16 bytes each.
    let entry = concat!(
        "01060048",
        "00000000",
        "0001",
        "0001",
        "0050",
        "0050",
        "00000000",
        "00000384",
        "20010db8000000000000000000090009",
        "20010db8000000000000000000000100",
        "20010db8000100000000000000000011",
    );
    // Header: reserved 0, syncid 5, size 8 + 72 = 80, one entry, version 1.
    send_raw(&topo.lb_ns(), &format!("0005005001010000{entry}"));
    let taken = wait_for(10, || {
        let l = backup.rvsadm_ok(&["-L", "-c", "-n"]);
        l.lines()
            .find(|x| x.contains("[2001:db8::9:9]:1"))
            .map(str::to_owned)
    });
    let taken = taken.unwrap_or_else(|| panic!("IPv6 entry not taken: {}", daemon_json(&backup)));
    assert!(
        taken.contains("ESTABLISHED")
            && taken.contains("[2001:db8::100]:80")
            && taken.contains("[2001:db8:1::11]:80"),
        "{taken}"
    );
    let d = daemon_json(&backup);
    assert!(d["counters"]["inserted"].as_u64().unwrap() >= 1, "{d}");
    drop(backup);
    drop(b);
}
