//! End to end, GUE and GRE tunnels (`tun_type`, `tun_port`, `tun_csum`):
//! kernel curl through the VIP reaches nginx on real servers that
//! decapsulate in their own namespace, and every frame rvsd puts on the wire
//! is checked.
//!
//! This kernel has no fou (GUE), ip_gre or ipip module, so the real servers
//! run user-space decapsulators (tests/lib/gue_decap.py: a UDP socket on the
//! tunnel port; tests/lib/gre_decap.py: a raw IPPROTO_GRE socket), each
//! writing the inner packets into its own TUN device; the VIP sits on the
//! topology's tun0 (tests/lib/topo.sh, mode tun).
//!
//! Topology (topo.sh tun): client 10.0.1.2, director port 10.0.1.1, rs1
//! 10.0.1.11, rs2 10.0.1.12 on one bridge; VIP 10.0.1.100. Two captures on
//! the bridge: the client's port (what it sends to the VIP) and the
//! director's port (what rvsd sends). Every frame from the director must be
//! one encapsulated client packet, with the outer headers, GUE/GRE header
//! and checksums each real server's configuration asks for, recomputed here
//! by a summing function of this file; and every client packet must be
//! among them, byte for byte.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, ns_exec_ok, Rvsd, Topology};
use serde_json::{json, Value};

const GUE_PORT: u16 = 6080;
const VIP: &str = "10.0.1.100";

/// RFC 1071 ones-complement sum, folded (0xFFFF over a correct region).
fn ones(data: &[u8]) -> u16 {
    let mut s: u64 = 0;
    for c in data.chunks(2) {
        s += (c[0] as u64) << 8 | c.get(1).copied().unwrap_or(0) as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A user-space decapsulator in a real server's namespace; killed on drop
/// (the topology's teardown would also kill it).
struct Decap {
    child: Child,
    log: PathBuf,
}

impl Decap {
    fn start(ns: &str, script: &str, args: &[&str], dir: &Path) -> Decap {
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lib");
        let ready = dir.join(format!("{script}.ready"));
        let log = dir.join(format!("{script}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3"])
            .arg(lib.join(script))
            .args(args)
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let d = Decap { child, log };
        let end = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&ready).map_or(true, |s| s.is_empty()) {
            assert!(
                Instant::now() < end,
                "{script} did not start: {}",
                d.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// Packets decapsulated so far.
    fn ok_count(&self) -> usize {
        self.lines().iter().filter(|x| x.starts_with("ok ")).count()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Wait (bounded) until it has decapsulated `n` packets; its lines.
    fn wait_ok(&self, n: usize) -> Vec<String> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let l = self.lines();
            let ok = l.iter().filter(|x| x.starts_with("ok ")).count();
            if ok >= n || Instant::now() > end {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(socket: &Path, req: Value) -> Value {
    let mut s = UnixStream::connect(socket).expect("control socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut l = String::new();
    BufReader::new(s).read_line(&mut l).unwrap();
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["ok"], true, "{req} -> {v}");
    v
}

/// What one real server's tunnel must look like on the wire.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// GUE to this UDP port, with (true) or without a UDP checksum.
    Gue(u16, bool),
    /// GRE with (true) or without the checksum field.
    Gre(bool),
}

fn dest(ip: &str, w: Want) -> Value {
    let mut d = json!({"ip": ip, "fwd": "tun"});
    match w {
        Want::Gue(port, csum) => {
            d["tun_type"] = json!("gue");
            d["tun_port"] = json!(port);
            d["tun_csum"] = json!(if csum { "csum" } else { "nocsum" });
        }
        Want::Gre(csum) => {
            d["tun_type"] = json!("gre");
            if csum {
                d["tun_csum"] = json!("csum");
            }
        }
    }
    d
}

/// The IPv4 packet of an Ethernet frame, without Ethernet padding.
fn ip_packet(f: &[u8]) -> &[u8] {
    assert_eq!(&f[12..14], &[8, 0], "IPv4");
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    &f[14..14 + total]
}

/// Check one frame rvsd sent against the tunnel its real server has; the
/// inner packet and, for GUE, the outer UDP source port.
fn check_frame(
    f: &[u8],
    lb_mac: [u8; 6],
    servers: &HashMap<[u8; 4], ([u8; 6], Want)>,
) -> (Vec<u8>, Option<u16>) {
    let ip = ip_packet(f);
    assert_eq!(&f[6..12], &lb_mac, "from the director");
    assert_eq!(ip[0], 0x45, "outer IPv4, no options");
    assert_eq!(ones(&ip[..20]), 0xffff, "outer IPv4 checksum");
    assert_eq!(&ip[12..16], &[10, 0, 1, 1], "outer source: the director");
    let rip: [u8; 4] = ip[16..20].try_into().unwrap();
    let (rs_mac, want) = servers
        .get(&rip)
        .unwrap_or_else(|| panic!("frame to {rip:?}, not a real server"));
    assert_eq!(&f[0..6], rs_mac, "to the real server's MAC");
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    assert_eq!(frag & 0xbfff, 0, "not a fragment");
    let body = &ip[20..];
    let (inner, sport) = match *want {
        Want::Gue(port, csum) => {
            assert_eq!(ip[9], 17, "GUE is UDP");
            assert_eq!(u16::from_be_bytes([body[2], body[3]]), port, "tun_port");
            assert_eq!(
                u16::from_be_bytes([body[4], body[5]]) as usize,
                body.len(),
                "UDP length"
            );
            let c = u16::from_be_bytes([body[6], body[7]]);
            if csum {
                let mut p = ip[12..20].to_vec();
                p.extend_from_slice(&[0, 17]);
                p.extend_from_slice(&(body.len() as u16).to_be_bytes());
                p.extend_from_slice(body);
                assert_ne!(c, 0, "tun_csum csum: a UDP checksum");
                assert_eq!(ones(&p), 0xffff, "outer UDP checksum");
            } else {
                assert_eq!(c, 0, "tun_csum nocsum: UDP checksum 0");
            }
            assert_eq!(
                &body[8..12],
                &[0, 4, 0, 0],
                "GUE v0 C0 hlen0 IPIP, no flags"
            );
            let sport = u16::from_be_bytes([body[0], body[1]]);
            assert!((32768..60999).contains(&sport), "source port {sport}");
            (body[12..].to_vec(), Some(sport))
        }
        Want::Gre(csum) => {
            assert_eq!(ip[9], 47, "GRE");
            let flags = u16::from_be_bytes([body[0], body[1]]);
            assert_eq!(&body[2..4], &[8, 0], "GRE protocol 0x0800");
            if csum {
                assert_eq!(flags, 0x8000, "C bit, version 0");
                assert_eq!(ones(body), 0xffff, "GRE checksum");
                assert_eq!(&body[6..8], &[0, 0], "reserved1");
                (body[8..].to_vec(), None)
            } else {
                assert_eq!(flags, 0, "no flags, version 0");
                (body[4..].to_vec(), None)
            }
        }
    };
    let inner_ip = &inner[..];
    assert_eq!(inner_ip[0] >> 4, 4, "inner IPv4");
    assert_eq!(ip[8], inner_ip[8], "TTL copied");
    assert_eq!(ip[6] & 0x40, inner_ip[6] & 0x40, "DF copied");
    (inner, sport)
}

struct Round<'a> {
    topo: &'a Topology,
    socket: &'a Path,
    n: usize,
    decaps: [&'a Decap; 2],
}

impl Round<'_> {
    /// `n` curls through the VIP with rs1 and rs2 on these tunnels; returns
    /// how many GUE and GRE frames were on the wire.
    fn run(&self, name: &str, rs1: Want, rs2: Want) -> (usize, usize) {
        let t = self.topo;
        for (ip, w) in [("10.0.1.11", rs1), ("10.0.1.12", rs2)] {
            ctl(
                self.socket,
                json!({"cmd": "edit_dest",
                       "service": {"proto": "tcp", "vip": VIP, "port": 80},
                       "dest": dest(ip, w)}),
            );
        }
        let decapsulated = || self.decaps.iter().map(|d| d.ok_count()).sum::<usize>();
        let before = decapsulated();
        let sw = t.sw_ns();
        let from_lb = Capture::start(
            &sw,
            "p-lb",
            t.state_dir.join(format!("{name}-lb.pcap")),
            &format!("ether src {} and ip", t.fact("LB1_MAC")),
        );
        let from_client = Capture::start(
            &sw,
            "p-c",
            t.state_dir.join(format!("{name}-c.pcap")),
            &format!("ip and src host 10.0.1.2 and dst host {VIP}"),
        );
        let (mut a, mut b) = (0, 0);
        for i in 0..self.n {
            match curl_from(&t.client_ns(), &format!("http://{VIP}/"))
                .unwrap_or_else(|e| panic!("{name}: request {i}: {e}"))
                .trim()
            {
                "rs1" => a += 1,
                "rs2" => b += 1,
                o => panic!("{name}: unexpected {o:?}"),
            }
        }
        assert_eq!((a, b), (self.n / 2, self.n / 2), "{name}: rr over both");
        // Stop the captures only when everything is through: the client's
        // last packet of each connection (the ACK of the server's FIN) may
        // still be on its way after curl exits. Readiness: every client
        // socket to the VIP in TIME-WAIT (its last ACK sent); then, the
        // client's capture stopped, the decapsulators (behind the
        // director's capture point) have received as many packets.
        let settled = Instant::now() + Duration::from_secs(10);
        while Instant::now() < settled {
            let ss = ns_exec_ok(&t.client_ns(), &["ss", "-Htan", "dst", VIP]);
            if ss.lines().all(|l| l.starts_with("TIME-WAIT")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let client = from_client.frames();
        let want = before + client.len();
        let settled = Instant::now() + Duration::from_secs(10);
        while decapsulated() < want && Instant::now() < settled {
            std::thread::sleep(Duration::from_millis(20));
        }
        let lb = from_lb.frames();

        let servers: HashMap<[u8; 4], ([u8; 6], Want)> = [
            ([10, 0, 1, 11], (mac(t.fact("RS1_MAC")), rs1)),
            ([10, 0, 1, 12], (mac(t.fact("RS2_MAC")), rs2)),
        ]
        .into();
        let lb_mac = mac(t.fact("LB1_MAC"));
        let mut inners = Vec::new();
        let mut sports: HashMap<Vec<u8>, u16> = HashMap::new();
        let (mut gue, mut gre) = (0, 0);
        for (i, f) in lb.iter().enumerate() {
            let (inner, sport) = check_frame(f, lb_mac, &servers);
            if let Some(s) = sport {
                gue += 1;
                // One source port per flow: key on the inner addresses and ports.
                let mut key = inner[12..20].to_vec();
                key.extend_from_slice(&inner[20..24]);
                let prev = *sports.entry(key).or_insert(s);
                assert_eq!(prev, s, "{name}: frame {i}: GUE source port per flow");
            } else {
                gre += 1;
            }
            inners.push(inner);
        }
        let mut sent: Vec<Vec<u8>> = client.iter().map(|f| ip_packet(f).to_vec()).collect();
        assert!(
            sent.len() >= self.n * 5,
            "{name}: the client's capture saw its packets ({})",
            sent.len()
        );
        sent.sort();
        inners.sort();
        assert_eq!(
            inners.len(),
            sent.len(),
            "{name}: each client packet encapsulated once, nothing else"
        );
        assert!(
            inners == sent,
            "{name}: inner packets are the client's, byte for byte"
        );
        assert!(
            gue > 0 && gre > 0,
            "{name}: both tunnels used ({gue}, {gre})"
        );
        eprintln!(
            "{name}: {} client packets, {gue} GUE + {gre} GRE frames, {} GUE flows",
            sent.len(),
            sports.len()
        );
        (gue, gre)
    }
}

/// Udp counters of /proc/net/snmp in namespace `ns`, by name.
fn udp_snmp(ns: &str) -> HashMap<String, u64> {
    let s = ns_exec_ok(ns, &["cat", "/proc/net/snmp"]);
    let udp: Vec<&str> = s.lines().filter(|l| l.starts_with("Udp:")).collect();
    let names = udp[0].split_whitespace().skip(1);
    let vals = udp[1].split_whitespace().skip(1);
    names
        .zip(vals)
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

#[test]
fn curl_through_gue_and_gre_to_user_space_decapsulating_real_servers() {
    let topo = Topology::up_unique_mode("tun");
    let dir = topo.state_dir.clone();
    let gue = Decap::start(
        &topo.rs_ns(1),
        "gue_decap.py",
        &[&GUE_PORT.to_string(), "gue0"],
        &dir,
    );
    let gre = Decap::start(&topo.rs_ns(2), "gre_decap.py", &["gre0"], &dir);
    let mut config = topo.default_config();
    config["services"] = json!([
        {"proto": "tcp", "vip": VIP, "port": 80, "sched": "rr",
         "dests": [dest("10.0.1.11", Want::Gue(GUE_PORT, true)),
                   dest("10.0.1.12", Want::Gre(true))]},
        {"proto": "udp", "vip": VIP, "port": 5353, "sched": "rr",
         "dests": [dest("10.0.1.11", Want::Gue(GUE_PORT, false))]},
        {"proto": "udp", "vip": VIP, "port": 5354, "sched": "rr",
         "dests": [dest("10.0.1.12", Want::Gre(true))]},
    ]);
    let rvsd = Rvsd::start(&topo, &config);

    let l = ctl(&rvsd.socket, json!({"cmd": "list"}));
    let d = &l["services"][0]["dests"];
    assert_eq!(
        (&d[0]["tun_type"], &d[0]["tun_port"], &d[0]["tun_csum"]),
        (&json!("gue"), &json!(GUE_PORT), &json!("csum"))
    );
    assert_eq!(
        (&d[1]["tun_type"], &d[1]["tun_csum"]),
        (&json!("gre"), &json!("csum"))
    );

    let round = Round {
        topo: &topo,
        socket: &rvsd.socket,
        n: 10,
        decaps: [&gue, &gre],
    };
    let mut total = (0, 0);
    for (name, rs1, rs2) in [
        ("csum", Want::Gue(GUE_PORT, true), Want::Gre(true)),
        ("nocsum", Want::Gue(GUE_PORT, false), Want::Gre(false)),
    ] {
        let (a, b) = round.run(name, rs1, rs2);
        total = (total.0 + a, total.1 + b);
    }
    // remcsum: the packets rvs forwards carry complete checksums, so, as the
    // kernel does for them, a full UDP checksum and no GUE option.
    ctl(
        &rvsd.socket,
        json!({"cmd": "edit_dest", "service": {"proto": "tcp", "vip": VIP, "port": 80},
               "dest": {"ip": "10.0.1.11", "fwd": "tun", "tun_type": "gue",
                        "tun_port": GUE_PORT, "tun_csum": "remcsum"}}),
    );
    let (a, b) = round.run("remcsum", Want::Gue(GUE_PORT, true), Want::Gre(false));
    total = (total.0 + a, total.1 + b);

    // Every frame on the wire was decapsulated, none refused.
    let lines = gue.wait_ok(total.0);
    let bad: Vec<_> = lines.iter().filter(|l| !l.starts_with("ok ")).collect();
    assert!(bad.is_empty(), "GUE decapsulator: {bad:?}");
    assert_eq!(lines.len(), total.0, "GUE frames decapsulated");
    let lines = gre.wait_ok(total.1);
    let bad: Vec<_> = lines.iter().filter(|l| !l.starts_with("ok ")).collect();
    assert!(bad.is_empty(), "GRE decapsulator: {bad:?}");
    assert_eq!(lines.len(), total.1, "GRE frames decapsulated");
    assert!(
        lines.iter().any(|l| l.ends_with(" csum")) && lines.iter().any(|l| l.ends_with(" nocsum")),
        "GRE with and without checksum seen"
    );
    // rs1's kernel checked every non-zero UDP checksum: none was bad.
    let snmp = udp_snmp(&topo.rs_ns(1));
    assert_eq!(snmp["InCsumErrors"], 0, "{snmp:?}");
    assert!(snmp["InDatagrams"] >= total.0 as u64, "{snmp:?}");

    // Path MTU: a DF datagram that fits the wire but not the tunnel gets
    // "fragmentation needed" with the MTU less the tunnel's overhead:
    // GRE with checksum 1500-20-8 = 1472, then GUE 1500-20-8-4 = 1468.
    let pmtu = |port: u16, payload: usize, from: u32, want: u32| {
        let script = format!(
            "import socket,time\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IP,10,2)\n\
             s.connect(('{VIP}',{port}))\n\
             s.send(b'x'*{payload})\n\
             end=time.time()+5\n\
             mtu=s.getsockopt(socket.IPPROTO_IP,14)\n\
             while mtu=={from} and time.time()<end:\n\
             \x20time.sleep(0.05)\n\
             \x20mtu=s.getsockopt(socket.IPPROTO_IP,14)\n\
             print(mtu)"
        );
        let out = ns_exec(&topo.client_ns(), &["python3", "-c", &script]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want.to_string(),
            "{out:?}"
        );
        let route = ns_exec_ok(&topo.client_ns(), &["ip", "route", "get", VIP]);
        assert!(route.contains(&format!("mtu {want}")), "{route}");
    };
    pmtu(5354, 1500 - 28, 1500, 1472);
    pmtu(5353, 1472 - 28, 1472, 1468);
    let stats = ctl(&rvsd.socket, json!({"cmd": "stats"}));
    assert_eq!(
        stats["total"]["icmp_errors_sent"], 2,
        "two frag-needed errors sent: {}",
        stats["total"]
    );
}
