//! End to end, route announcements for a fleet (issue 19): rvsd keeps a
//! /32 route per servable VIP in a kernel table of its own (`announce`);
//! a real BIRD 2 in the director's namespace learns the table and
//! announces it over eBGP, through the kernel twin, to a real BIRD in the
//! client's namespace acting as the router, which installs the route into
//! its kernel. The router's kernel route is what is checked: announced
//! while a real server can take connections, withdrawn when none can, on
//! `rvsadm --drain`, on SIGTERM (before rvsd stops forwarding), and on
//! SIGKILL (the twin and the BGP session die with rvsd: the router's hold
//! timer withdraws).

mod common;

use std::time::Duration;

use common::bird::{director_conf, route, router_conf, wait_until, Bird};
use common::topo::{curl_from, ns_exec_ok, Rvsd, Topology, CLIENT_IP, LB0_IP, VIP};
use serde_json::json;

const TABLE: u32 = 4242;
const GRACE_S: u64 = 3;

/// The router's route to the VIP through the director, or its absence.
fn announced(topo: &Topology) -> bool {
    route(&topo.client_ns(), VIP).contains(&format!("via {LB0_IP}"))
}

/// The VIP's line of `rvsadm --announce` ("" before the announcer has
/// seen the VIP).
fn state(rvsd: &Rvsd) -> String {
    let t = rvsd.rvsadm_ok(&["--announce"]);
    t.lines()
        .find(|l| l.starts_with(VIP))
        .unwrap_or_default()
        .to_string()
}

fn set_weights(rvsd: &Rvsd, w: u32) {
    for rip in ["10.0.1.11:80", "10.0.1.12:80"] {
        rvsd.rvsadm_ok(&[
            "-e",
            "-t",
            "10.0.0.100:80",
            "-r",
            rip,
            "-m",
            "-w",
            &w.to_string(),
        ]);
    }
}

#[test]
fn the_router_learns_a_vip_only_while_rvsd_can_serve_it() {
    let topo = Topology::up_unique();
    let mut c = topo.twin_config();
    c["announce"] = json!({"table": TABLE, "drain_grace_s": GRACE_S});
    let mut rvsd = Rvsd::start(&topo, &c);

    let dir = &topo.state_dir;
    let _router = Bird::start(
        &topo.client_ns(),
        dir,
        "router",
        &router_conf(CLIENT_IP, &[LB0_IP]),
    );
    let director = Bird::start(
        &topo.lb_ns(),
        dir,
        "director",
        &director_conf(LB0_IP, CLIENT_IP, TABLE),
    );
    let t = wait_until(
        "the BGP session through the twin",
        Duration::from_secs(30),
        || director.established("uplink"),
    );
    eprintln!("BGP session established through the twin in {t:?}");

    // A service without a real server: nothing announced.
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", "rr"]);
    wait_until("the announcer's first look", Duration::from_secs(5), || {
        state(&rvsd).contains("no real server available")
    });
    assert!(!announced(&topo), "announced without a real server");

    // Real servers: announced, the router's kernel has the route.
    for rip in ["10.0.1.11:80", "10.0.1.12:80"] {
        rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", rip, "-m"]);
    }
    let t = wait_until("the route at the router", Duration::from_secs(20), || {
        announced(&topo)
    });
    eprintln!("announced: route at the router {t:?} after the real servers were added");
    assert!(state(&rvsd).ends_with(" announced"), "{}", state(&rvsd));
    let table = ns_exec_ok(
        &topo.lb_ns(),
        &["ip", "-4", "route", "show", "table", &TABLE.to_string()],
    );
    assert!(
        table.contains("10.0.0.100 dev rvs0 proto static"),
        "{table}"
    );
    curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("the VIP serves through the route");

    // Every real server quiesced (weight 0): withdrawn; and back.
    set_weights(&rvsd, 0);
    let t = wait_until(
        "the withdrawal at the router",
        Duration::from_secs(20),
        || !announced(&topo),
    );
    eprintln!("no real server: withdrawn at the router in {t:?}");
    assert!(state(&rvsd).contains("withdrawn (no real server available)"));
    set_weights(&rvsd, 1);
    wait_until("the route back", Duration::from_secs(20), || {
        announced(&topo)
    });

    // Drain: withdrawn, forwarding goes on; undrain: back.
    rvsd.rvsadm_ok(&["--drain"]);
    let t = wait_until("the drained withdrawal", Duration::from_secs(20), || {
        !announced(&topo)
    });
    eprintln!("drain: withdrawn at the router in {t:?}");
    assert!(state(&rvsd).contains("withdrawn (draining)"));
    assert!(rvsd.rvsadm_ok(&["--announce"]).contains("(draining)"));
    curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("a draining director still forwards");
    rvsd.rvsadm_ok(&["--undrain"]);
    wait_until("the route after undrain", Duration::from_secs(20), || {
        announced(&topo)
    });

    // SIGTERM: withdrawn first, forwarding for the grace period, then exit.
    let pid = rvsd.pid().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let t = wait_until("the withdrawal on SIGTERM", Duration::from_secs(20), || {
        !announced(&topo)
    });
    assert!(rvsd.is_running(), "rvsd exited before the router withdrew");
    eprintln!("SIGTERM: withdrawn at the router in {t:?}, rvsd still forwarding");
    curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("forwarding during the grace period");
    let status = rvsd.terminate().expect("rvsd exits after its grace period");
    assert!(status.success(), "{status:?}\n{}", rvsd.log());
    assert!(rvsd
        .log()
        .contains(&format!("draining: forwarding {GRACE_S} s more")));

    // Started again: a new twin, the session comes back, announced again.
    rvsd.start_again();
    rvsd.nat_service("rr", 1, 1);
    let t = wait_until("the route after a restart", Duration::from_secs(30), || {
        announced(&topo)
    });
    eprintln!("restart: announced again {t:?} after ready");

    // Handover (an upgrade): the old rvsd leaves the table alone, its twin
    // and routes go with it; the successor (services from the config
    // file now) announces anew.
    let mut c2 = c.clone();
    c2["services"] = json!([{"proto": "tcp", "vip": VIP, "port": 80, "sched": "rr",
        "dests": [{"ip": "10.0.1.11", "port": 80, "fwd": "nat"},
                  {"ip": "10.0.1.12", "port": 80, "fwd": "nat"}]}]);
    std::fs::write(&rvsd.config_path, serde_json::to_vec_pretty(&c2).unwrap()).unwrap();
    let t0 = std::time::Instant::now();
    let status = rvsd.hand_over_to(std::path::Path::new(common::topo::RVSD_BIN));
    assert!(status.success(), "{status:?}\n{}", rvsd.log());
    let t = wait_until(
        "the route after a handover",
        Duration::from_secs(30),
        || announced(&topo) && state(&rvsd).ends_with(" announced"),
    );
    eprintln!(
        "handover: announced by the successor {t:?} after it answered ({:?} in all)",
        t0.elapsed()
    );
    curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("the successor serves");

    // SIGKILL: the twin goes with the process, its routes with the twin;
    // the router notices the dead session by its hold timer (3 s).
    rvsd.kill();
    let table = ns_exec_ok(
        &topo.lb_ns(),
        &["ip", "-4", "route", "show", "table", &TABLE.to_string()],
    );
    assert!(
        !table.contains("10.0.0.100"),
        "a killed rvsd left its route: {table}"
    );
    let t = wait_until(
        "the withdrawal after SIGKILL",
        Duration::from_secs(20),
        || !announced(&topo),
    );
    eprintln!("SIGKILL: withdrawn at the router in {t:?} (hold time 3 s)");
}
