//! End to end, a fleet (issue 19): three directors behind a router that
//! spreads flows with ECMP, each announcing the VIP over BGP.
//!
//! The DR topology's L2 segment carries three rvsd (the topology's
//! director namespace and two more), the two nginx real servers and a
//! router namespace; a client namespace sits behind the router. Every
//! director runs rvsd (`mh`, DR, `sloppy_tcp`, `announce`) and a real
//! BIRD 2 that announces rvsd's VIP route through the kernel twin; the
//! router runs BIRD too and installs one ECMP route for the VIP with the
//! three directors as next hops, hashed on the 5-tuple
//! (`fib_multipath_hash_policy` 3, see below). Replies go from the real servers through the router to the
//! client (DR).
//!
//! BGP sessions run with BFD (conf/fleet/, 3 x 100 ms).
//!
//! Under keep-alive connections and a paced new-connection loop: one
//! director is killed (SIGKILL), started again, and another drained. The
//! flows the router moves land on a director that never saw their SYN;
//! `sloppy_tcp` and `mh` send them to the same real server.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::bird::{route, wait_until, Bird};
use common::load::{Load, LoadSpec, Report};
use common::topo::{ip, ns_exec_ok, offloads_off, Rvsd, Topology};
use serde_json::{json, Value};

const VIP: &str = "10.0.1.100";
const ROUTER: &str = "10.0.1.254";
const CLIENT: &str = "10.78.0.2";
const DIRECTORS: [&str; 3] = ["10.0.1.1", "10.0.1.3", "10.0.1.4"];
const TABLE: u32 = 4242;
const HELD: usize = 30;

/// A namespace deleted on drop (with every veth end in it).
struct Ns(String);

impl Ns {
    fn new(name: String, forward: bool) -> Ns {
        ip(&["netns", "add", &name]);
        let ns = Ns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns_exec_ok(
            &ns.0,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                &format!("net.ipv4.ip_forward={}", u8::from(forward)),
            ],
        );
        ns
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// A veth `a` in `ns_a` to `b` in `ns_b`, offloads off, both up.
fn veth(ns_a: &str, a: &str, ns_b: &str, b: &str) {
    ip(&[
        "-n", ns_a, "link", "add", a, "type", "veth", "peer", "name", b, "netns", ns_b,
    ]);
    offloads_off(ns_a, a);
    offloads_off(ns_b, b);
    ip(&["-n", ns_a, "link", "set", a, "up"]);
    ip(&["-n", ns_b, "link", "set", b, "up"]);
}

/// The next hops of the router's route to the VIP.
fn next_hops(router: &str) -> Vec<String> {
    let r = route(router, VIP);
    DIRECTORS
        .iter()
        .filter(|d| r.contains(&format!("via {d} ")))
        .map(|d| d.to_string())
        .collect()
}

/// The client ports of the established connections a director carries
/// now: entries a packet refreshed in the last 3 s (an ESTABLISHED entry
/// is set to expire 900 s after its last packet; the held connections
/// send every 200 ms). A flow the router moved away leaves a stale entry
/// behind, which this leaves out.
fn live(d: &Rvsd) -> BTreeSet<u64> {
    let v: Value = d.ctl(r#"{"cmd":"connections","limit":10000}"#);
    v["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["cip"] == CLIENT && c["state"] == "ESTABLISHED")
        .filter(|c| c["expires_ms"].as_u64().unwrap_or(0) > 897_000)
        .filter_map(|c| c["cport"].as_u64())
        .collect()
}

/// The union of what `ds` carry.
fn live_on(ds: &[&Rvsd]) -> BTreeSet<u64> {
    ds.iter().flat_map(|d| live(d)).collect()
}

/// A file of conf/fleet/: the BIRD configurations a user starts from
/// are the ones under test (their addresses are this topology's).
fn shipped(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("conf/fleet")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn director_config(topo: &Topology, k: usize) -> Value {
    let c = topo.default_config();
    let eal: Vec<Value> = c["eal_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a.as_str() {
            // Its own EAL file prefix where hugepage files are kept.
            Some(s) if s == topo.name && k > 0 => json!(format!("{s}d{k}")),
            _ => a.clone(),
        })
        .collect();
    // conf/fleet/rvsd-director.json with this topology's interface and
    // this director's address; a short drain.
    let mut d: Value = serde_json::from_str(&shipped("rvsd-director.json")).unwrap();
    d["eal_args"] = json!(eal);
    d["idle_sleep_us"] = c["idle_sleep_us"].clone();
    d["ports"][0]["ipv4"] = json!(format!("{}/24", DIRECTORS[k]));
    d["announce"]["drain_grace_s"] = json!(1);
    assert_eq!(d["announce"]["table"], TABLE);
    for dest in d["services"][0]["dests"].as_array_mut().unwrap() {
        dest["fwd"] = json!(topo.mode());
    }
    d
}

#[test]
fn dr_flows_survive_a_director_s_death_return_and_drain() {
    fleet("dr");
}

#[test]
fn tun_flows_survive_a_director_s_death_return_and_drain() {
    fleet("tun");
}

fn fleet(mode: &str) {
    let topo = Topology::up_unique_mode(mode);
    let sw = topo.sw_ns();
    // The router: one leg on the segment, one to the client.
    let router = Ns::new(topo.ns("r"), true);
    let client = Ns::new(topo.ns("f"), false);
    // ECMP on the 5-tuple. Not policy 1: it takes an skb's L4 hash as it
    // is when one is set, and the client's packets are made on this
    // machine, carrying its socket's random txhash (kept across the veth),
    // which TCP changes on every retransmission timeout — flows would move
    // between directors on a lost packet, unlike behind a real router.
    // Policy 3 with these fields (source and destination address,
    // protocol, ports) hashes the packet's own 5-tuple.
    ns_exec_ok(
        &router.0,
        &[
            "sysctl",
            "-qw",
            "net.ipv4.fib_multipath_hash_policy=3",
            "net.ipv4.fib_multipath_hash_fields=0x0037",
        ],
    );
    veth(&router.0, "up0", &sw, "p-r");
    ip(&["-n", &sw, "link", "set", "p-r", "master", "br0"]);
    ip(&[
        "-n",
        &router.0,
        "addr",
        "add",
        &format!("{ROUTER}/24"),
        "dev",
        "up0",
    ]);
    veth(&router.0, "down0", &client.0, "eth0");
    ip(&[
        "-n",
        &router.0,
        "addr",
        "add",
        "10.78.0.1/24",
        "dev",
        "down0",
    ]);
    ip(&[
        "-n",
        &client.0,
        "addr",
        "add",
        &format!("{CLIENT}/24"),
        "dev",
        "eth0",
    ]);
    ip(&[
        "-n",
        &client.0,
        "route",
        "add",
        "default",
        "via",
        "10.78.0.1",
    ]);
    for rs in [topo.rs_ns(1), topo.rs_ns(2)] {
        ip(&["-n", &rs, "route", "add", "10.78.0.0/24", "via", ROUTER]);
    }
    // Two more director namespaces on the segment, like the topology's.
    let extra: Vec<Ns> = (2..=3)
        .map(|k| {
            let ns = Ns::new(topo.ns(&format!("lb{k}")), false);
            veth(&ns.0, "lb1", &sw, &format!("p-lb{k}"));
            ip(&[
                "-n",
                &sw,
                "link",
                "set",
                &format!("p-lb{k}"),
                "master",
                "br0",
            ]);
            ip(&["-n", &ns.0, "link", "set", "lb1", "arp", "off"]);
            ns
        })
        .collect();
    let names: Vec<String> = std::iter::once(topo.lb_ns())
        .chain(extra.iter().map(|n| n.0.clone()))
        .collect();
    // The topology's director namespace also has mgmt0 on the segment:
    // its kernel must not answer ARP there for the twin's address (it
    // would take the router's traffic for that director).
    ns_exec_ok(
        &topo.lb_ns(),
        &[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
        ],
    );
    let mut directors = Vec::new();
    let mut birds = Vec::new();
    for (k, ns) in names.iter().enumerate() {
        // See e2e_exception: the kernel must not answer on the af_packet end.
        ns_exec_ok(ns, &["sysctl", "-qw", "net.ipv4.conf.lb1.rp_filter=1"]);
        directors.push(Rvsd::start_in(&topo, ns, &director_config(&topo, k)));
        birds.push(Bird::start(
            ns,
            &topo.state_dir,
            &format!("d{k}"),
            &shipped("bird-director.conf")
                .replace("id 10.0.1.1;", &format!("id {};", DIRECTORS[k]))
                .replace("local 10.0.1.1 ", &format!("local {} ", DIRECTORS[k])),
        ));
    }
    let _router_bird = Bird::start(
        &router.0,
        &topo.state_dir,
        "router",
        &shipped("bird-router.conf"),
    );
    let t = wait_until(
        "three next hops at the router",
        Duration::from_secs(60),
        || next_hops(&router.0).len() == 3,
    );
    eprintln!(
        "fleet up: ECMP route with 3 next hops after {t:?}\n{}",
        route(&router.0, VIP)
    );

    let mut load = Load::start(
        &topo,
        &LoadSpec {
            new: 1,
            held: HELD,
            held_interval_ms: 200,
            pace_ms: 50,
            timeout_s: 10.0,
            duration_s: 150.0,
            vip: VIP,
            client_ip: CLIENT,
            ns: Some(client.0.clone()),
            ..LoadSpec::default()
        },
    );
    // The held connections: spread over the three by the router's hash.
    let all: Vec<&Rvsd> = directors.iter().collect();
    wait_until(
        "every held connection live on a director",
        Duration::from_secs(30),
        || live_on(&all).len() == HELD,
    );
    let held = live_on(&all);
    assert_eq!(held.len(), HELD, "held connections seen by the directors");
    let spread: Vec<BTreeSet<u64>> = directors.iter().map(live).collect();
    let counts: Vec<usize> = spread.iter().map(BTreeSet::len).collect();
    eprintln!("held connections per director: {counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "ECMP left a director idle: {counts:?}"
    );

    // SIGKILL director 1: the router's BFD session with it fails (the
    // kernel twin went with rvsd), BIRD withdraws it, and its
    // flows go on through the other two.
    let p_kill = load.mark();
    let t0 = Instant::now();
    directors[1].kill();
    let detect = wait_until(
        "the dead director's withdrawal",
        Duration::from_secs(20),
        || next_hops(&router.0).len() == 2,
    );
    eprintln!("SIGKILL: next hop withdrawn after {detect:?} (BFD, 3 x 100 ms)");
    let t = wait_until(
        "every held flow on the survivors",
        Duration::from_secs(30),
        || live_on(&[&directors[0], &directors[2]]) == held,
    );
    eprintln!(
        "SIGKILL: the {} flows of the dead director resumed on the others {t:?} after the \
         withdrawal ({:?} after the kill)",
        counts[1],
        t0.elapsed()
    );

    // Started again: it peers, is announced, and the flows the router's
    // hash gives it move to it (sloppy_tcp: it never saw their SYN).
    let p_back = load.mark();
    directors[1].start_again();
    let t = wait_until(
        "the director back in the route",
        Duration::from_secs(60),
        || next_hops(&router.0).len() == 3,
    );
    wait_until(
        "flows on the restarted director",
        Duration::from_secs(10),
        || !live(&directors[1]).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let back = live(&directors[1]);
    eprintln!(
        "restart: back in the ECMP route {t:?} after ready; {} of {HELD} held flows moved to it \
         ({} of them the ones it carried before)",
        back.len(),
        back.intersection(&spread[1]).count()
    );
    // Settled: each flow live on one director only (a moved flow's old
    // entry stops counting 3 s after its last packet).
    wait_until(
        "each held flow on one director",
        Duration::from_secs(15),
        || {
            let sets: Vec<BTreeSet<u64>> = directors.iter().map(live).collect();
            sets.iter().map(BTreeSet::len).sum::<usize>() == HELD
                && sets.iter().flatten().copied().collect::<BTreeSet<u64>>() == held
        },
    );

    // Drain director 2: withdrawn, its flows move to the other two.
    let p_drain = load.mark();
    let drained = live(&directors[2]);
    directors[2].rvsadm_ok(&["--drain"]);
    let t = wait_until(
        "the drained director's withdrawal",
        Duration::from_secs(20),
        || !next_hops(&router.0).contains(&DIRECTORS[2].to_string()),
    );
    eprintln!("drain: withdrawn at the router after {t:?}");
    let t = wait_until(
        "the drained director's flows on the others",
        Duration::from_secs(30),
        || live_on(&[&directors[0], &directors[1]]) == held,
    );
    eprintln!(
        "drain: its {} flows carried on by the others {t:?} later",
        drained.len()
    );
    wait_until(
        "nothing left on the drained director",
        Duration::from_secs(10),
        || live(&directors[2]).is_empty(),
    );
    let p_end = load.mark();
    // Readiness for the last phase: load.py's new connections reach the
    // two directors left (their services schedule them).
    let scheduled = || -> u64 {
        directors[..2]
            .iter()
            .map(|d| {
                d.rvsadm_ok(&["-L", "-n", "--stats", "--exact"])
                    .lines()
                    .find(|x| x.starts_with(&format!("TCP  {VIP}:80")))
                    .and_then(|x| x.split_whitespace().nth(2)?.parse().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = scheduled();
    wait_until(
        "new connections in the last phase",
        Duration::from_secs(30),
        || scheduled() >= before + 5,
    );
    let report = load.finish();
    eprintln!("{}", report.summary());

    // Every keep-alive connection lived through all of it, on one real
    // server (mh: every director picks the same one).
    assert_eq!(report.held().len(), HELD, "{}", report.summary());
    for h in report.held() {
        let errs = Report::held_errors(h);
        assert_eq!(errs, 0, "{}\n{h}", report.summary());
        assert_eq!(h["switched"], false, "a flow changed real server: {h}");
    }
    // New connections: served in every phase; failures only while the dead
    // director was still a next hop (counted and printed).
    for p in [p_kill, p_back, p_drain, p_end] {
        assert!(report.ok("new", p) > 0, "phase {p}: {}", report.summary());
    }
    for p in [p_back, p_drain, p_end] {
        assert_eq!(
            report.failures("new", p),
            0,
            "phase {p}: {}",
            report.summary()
        );
    }
    eprintln!(
        "new connections failed while the dead director was a next hop: {} of {}",
        report.failures("new", p_kill),
        report.ok("new", p_kill) + report.failures("new", p_kill)
    );
    drop(birds);
}
