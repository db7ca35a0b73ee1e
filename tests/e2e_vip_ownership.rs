//! End to end, VIP ownership follows the kernel (`vip_ownership:
//! "kernel"`): rvsd answers ARP for and forwards a VIP only while the VIP
//! address is on its kernel twin, which is what keepalived's VRRP does on
//! MASTER (adds `virtual_ipaddress`) and BACKUP/FAULT (removes it). Here
//! the address is added and removed with `ip addr`, as keepalived would.

mod common;

use std::time::{Duration, Instant};

use common::capture::Capture;
use common::topo::{curl_from, ns_exec, ns_exec_ok, Rvsd, Topology};
use serde_json::json;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One ARP probe for the VIP from the client: forget the neighbour, then a
/// ping (its ARP request is the probe). Returns whether ping got through.
fn probe(topo: &Topology) -> bool {
    let _ = ns_exec(
        &topo.client_ns(),
        &["ip", "neigh", "flush", "to", "10.0.0.100"],
    );
    ns_exec(
        &topo.client_ns(),
        &["ping", "-c", "1", "-W", "1", "10.0.0.100"],
    )
    .status
    .success()
}

#[test]
fn the_vip_is_served_only_while_it_is_on_the_kernel_twin() {
    let topo = Topology::up_unique();
    let mut c = topo.twin_config();
    c["vip_ownership"] = json!("kernel");
    let rvsd = Rvsd::start(&topo, &c);
    rvsd.nat_service("rr", 1, 1);

    // BACKUP: the VIP is not on the twin. The ARP probe reaches rvsd (the
    // refusal is counted) and no reply for the VIP is on the wire.
    let cap = Capture::start(
        &topo.client_ns(),
        "eth0",
        topo.state_dir.join("backup.pcap"),
        "arp",
    );
    let refused = rvsd.counter("vip_not_owned");
    assert!(!probe(&topo), "the VIP answered while not owned");
    wait_for("the refused ARP probe", || {
        rvsd.counter("vip_not_owned") > refused
    });
    assert!(curl_from(&topo.client_ns(), "http://10.0.0.100/").is_err());
    let table = rvsd.rvsadm_ok(&["--vip-ownership"]);
    assert!(
        table.starts_with("VIP ownership: kernel\n")
            && table.contains("10.0.0.100       not owned\n"),
        "{table}"
    );
    let lines = cap.lines();
    assert!(
        lines.iter().any(|l| l.contains("who-has 10.0.0.100")),
        "no probe captured: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Reply 10.0.0.100")),
        "BACKUP answered ARP for the VIP: {lines:#?}"
    );

    // MASTER: the VIP is added to the twin. rvsd announces it with
    // gratuitous ARPs and serves it.
    let cap = Capture::start(
        &topo.client_ns(),
        "eth0",
        topo.state_dir.join("master.pcap"),
        "arp",
    );
    let garps = rvsd.counter("garp_sent");
    ns_exec_ok(
        &topo.lb_ns(),
        &["ip", "addr", "add", "10.0.0.100/32", "dev", "rvs0"],
    );
    wait_for("gratuitous ARPs", || rvsd.counter("garp_sent") >= garps + 5);
    let own = &rvsd.ctl(r#"{"cmd":"stats"}"#)["vip_ownership"];
    assert_eq!(own["mode"], "kernel", "{own}");
    assert!(
        own["on_twins"]
            .as_array()
            .unwrap()
            .contains(&json!("10.0.0.100")),
        "{own}"
    );
    let table = rvsd.rvsadm_ok(&["--vip-ownership"]);
    assert!(table.contains("10.0.0.100       owned\n"), "{table}");
    let body = curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("VIP served as MASTER");
    assert!(matches!(body.trim(), "rs1" | "rs2"), "{body}");
    assert!(probe(&topo));
    let lines = cap.lines();
    let garp_lines = lines
        .iter()
        .filter(|l| l.contains("who-has 10.0.0.100") && l.contains("tell 10.0.0.100"))
        .count();
    assert_eq!(garp_lines, 5, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("Reply 10.0.0.100 is-at")),
        "{lines:#?}"
    );

    // BACKUP again: removed from the twin, rvsd falls silent for it.
    ns_exec_ok(
        &topo.lb_ns(),
        &["ip", "addr", "del", "10.0.0.100/32", "dev", "rvs0"],
    );
    // Readiness: a probe is refused (counted) rather than answered.
    wait_for("the VIP to be given up", || {
        let before = rvsd.counter("vip_not_owned");
        !probe(&topo) && rvsd.counter("vip_not_owned") > before
    });
    let cap = Capture::start(
        &topo.client_ns(),
        "eth0",
        topo.state_dir.join("backup2.pcap"),
        "arp",
    );
    for _ in 0..3 {
        assert!(!probe(&topo), "the VIP answered after it was removed");
    }
    let lines = cap.lines();
    assert!(
        !lines.iter().any(|l| l.contains("Reply 10.0.0.100")),
        "answered ARP for a VIP no longer owned: {lines:#?}"
    );
    rvsd.stop().expect("rvsd stops cleanly");
}

/// keepalived (Debian's, unmodified, no notify scripts) in the director
/// namespace, run in the foreground; killed on drop.
struct Keepalived(std::process::Child);

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn keepalived_drives_ownership_through_the_twin() {
    let topo = Topology::up_unique();
    ns_exec_ok(
        &topo.lb_ns(),
        &["sysctl", "-qw", "net.ipv4.conf.lb0.rp_filter=1"],
    );
    let mut c = topo.default_config();
    c["ports"][0]["kernel_twin"] = json!({"kind": "tap", "name": "rvs0"});
    c["vip_ownership"] = json!("kernel");
    let rvsd = Rvsd::start(&topo, &c);
    rvsd.nat_service("rr", 1, 1);
    assert!(!probe(&topo), "the VIP answered before keepalived ran");

    // A VRRP instance on the twin whose only peer does not exist: it
    // becomes MASTER when its timer runs out and adds the VIP.
    let dir = &topo.state_dir;
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        "global_defs {\n  router_id rvs_e2e\n}\n\
         vrrp_instance VI_1 {\n  state BACKUP\n  interface rvs0\n  virtual_router_id 51\n  \
         priority 100\n  advert_int 1\n  unicast_src_ip 10.0.0.1\n  unicast_peer {\n    10.0.0.250\n  }\n  \
         virtual_ipaddress {\n    10.0.0.100/32 dev rvs0\n  }\n}\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("keepalived.log")).unwrap();
    let ka = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.lb_ns(),
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-P",
        ])
        .arg("-f")
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("keepalived");
    let mut ka = Keepalived(ka);
    let ka_log = || std::fs::read_to_string(dir.join("keepalived.log")).unwrap_or_default();

    // Readiness: keepalived put the VIP on the twin, and rvsd announced it.
    let garps = rvsd.counter("garp_sent");
    let end = Instant::now() + Duration::from_secs(30);
    while rvsd.counter("garp_sent") < garps + 5 {
        assert!(
            Instant::now() < end,
            "no gratuitous ARPs from rvsd; keepalived log:\n{}",
            ka_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let on_twin = ns_exec_ok(&topo.lb_ns(), &["ip", "-o", "-4", "addr", "show", "rvs0"]);
    assert!(on_twin.contains("10.0.0.100/32"), "{on_twin}");
    assert!(ka_log().contains("Entering MASTER STATE"), "{}", ka_log());
    let body = curl_from(&topo.client_ns(), "http://10.0.0.100/").expect("VIP served");
    assert!(matches!(body.trim(), "rs1" | "rs2"), "{body}");

    // keepalived stops (SIGTERM): it removes the VIP, rvsd falls silent.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &ka.0.id().to_string()])
        .status();
    let _ = ka.0.wait();
    wait_for("the VIP to be given up", || {
        let before = rvsd.counter("vip_not_owned");
        !probe(&topo) && rvsd.counter("vip_not_owned") > before
    });
    let cap = Capture::start(
        &topo.client_ns(),
        "eth0",
        topo.state_dir.join("after-keepalived.pcap"),
        "arp",
    );
    for _ in 0..3 {
        assert!(!probe(&topo), "the VIP answered after keepalived stopped");
    }
    let lines = cap.lines();
    assert!(
        !lines.iter().any(|l| l.contains("Reply 10.0.0.100")),
        "{lines:#?}"
    );
    rvsd.stop().expect("rvsd stops cleanly");
}
