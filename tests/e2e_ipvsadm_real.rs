//! End to end: Debian's unmodified `ipvsadm` 1.31 configures rvs through
//! `librvs_ipvs.so` and rvsd's IPVS generic-netlink socket, traffic flows
//! through what it configured, and its listings are compared byte for byte
//! with rvsadm's for the same state: real ipvsadm is the oracle of
//! rvsadm's formats (`ipvsadm.c`: `print_title`, `print_service_entry`,
//! `list_conn`; `libipvs.c`: `ipvs_strerror`).

mod common;

use std::time::Duration;

use common::ipvs::{self, ipvsadm, ipvsadm_ok};
use common::topo::{self, Rvsd, Topology};

/// Seed articles 000 and 002: their ipvsadm command lines, verbatim, one
/// group per article, all in one table. 192.168.1.100 and 10.10.120.193
/// are 2^31 or more apart, so ipvsadm's sort (`ipvs_cmp_services`
/// subtracts host-order addresses as `int`, then glibc's qsort) puts
/// 192.168.x before 10.x: rvsadm must reproduce that order.
const SEED_COMMANDS: &[&[&str]] = &[
    &[
        "-A -t 111.11.11.11:80 -s rr",
        "-a -t 111.11.11.11:80 -r 10.10.120.210:8000 -m",
        "-A -t 10.10.120.193:80 -s rr",
        "-a -t 10.10.120.193:80 -r 10.10.120.210:8000 -g",
    ],
    &[
        "-A -t 192.168.1.100:80 -s rr",
        "-a -t 192.168.1.100:80 -r 192.168.1.101:80 -g",
        "-a -t 192.168.1.100:80 -r 192.168.1.102:80 -g",
    ],
];

fn split(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

/// `ipvsadm ARGS` and `rvsadm ARGS` print the same bytes. Listings with
/// live numbers (rates move every 2 s estimator tick) are read again, up
/// to 20 times, until both were taken between two ticks; a format
/// difference never converges and fails.
fn same_listing(t: &Topology, rvsd: &Rvsd, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..20 {
        let a = ipvsadm_ok(t, args);
        let b = rvsd.rvsadm_ok(args);
        if a == b {
            return a;
        }
        last = (a, b);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "ipvsadm {args:?} and rvsadm differ:\n--- ipvsadm\n{}--- rvsadm\n{}",
        last.0, last.1
    );
}

#[test]
fn seed_commands_and_a_nat_service_through_real_ipvsadm() {
    let t = Topology::up_unique();
    let rvsd = ipvs::start_rvsd(&t, &t.default_config());

    // The empty table: the version header with the connection table size.
    same_listing(&t, &rvsd, &["-L", "-n"]);

    let mut listed = Vec::new();
    for article in SEED_COMMANDS {
        for c in *article {
            ipvsadm_ok(&t, &split(c));
            same_listing(&t, &rvsd, &["-L", "-n"]);
            same_listing(&t, &rvsd, &["-S", "-n"]);
        }
        listed.push(ipvsadm_ok(&t, &["-L", "-n"]));
    }
    assert!(
        listed[0].contains("TCP  111.11.11.11:80 rr\n  -> 10.10.120.210:8000           Masq    1"),
        "{}",
        listed[0]
    );
    // DR cannot map ports: ipvsadm stores the service's port.
    assert!(
        listed[0].contains("  -> 10.10.120.210:80             Route   1"),
        "{}",
        listed[0]
    );
    assert!(
        listed[1].contains("  -> 192.168.1.102:80             Route   1"),
        "{}",
        listed[1]
    );

    // A NAT service to the topology's nginx real servers, configured by
    // real ipvsadm only, carries traffic.
    ipvsadm_ok(&t, &["-A", "-t", "10.0.0.100:80", "-s", "rr"]);
    ipvsadm_ok(
        &t,
        &["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"],
    );
    ipvsadm_ok(
        &t,
        &[
            "-a",
            "-t",
            "10.0.0.100:80",
            "-r",
            "10.0.1.12:80",
            "-m",
            "-w",
            "2",
        ],
    );
    let mut seen = Vec::new();
    for _ in 0..6 {
        let body = topo::curl_from(&t.client_ns(), "http://10.0.0.100/").expect("curl via VIP");
        seen.push(body.trim().to_string());
    }
    assert!(
        seen.iter().any(|b| b == "rs1") && seen.iter().any(|b| b == "rs2"),
        "both real servers answer: {seen:?}"
    );

    // With traffic counted: every listing ipvsadm makes from netlink is
    // rvsadm's, byte for byte.
    for args in [
        &["-L", "-n"][..],
        &["-L", "-n", "--stats"],
        &["-L", "-n", "--rate"],
        &["-L", "-n", "--thresholds"],
        &["-L", "-n", "--persistent-conn"],
        &["-L", "-n", "--exact", "--stats"],
        &["-S", "-n"],
        &["-L", "-n", "-t", "10.0.0.100:80"],
        &["-L", "--timeout"],
    ] {
        same_listing(&t, &rvsd, args);
    }
    let stats = ipvsadm_ok(&t, &["-L", "-n", "--stats"]);
    let row = stats
        .lines()
        .find(|l| l.starts_with("TCP  10.0.0.100:80"))
        .unwrap_or_else(|| panic!("{stats}"));
    let conns: u64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(conns >= 6, "6 connections counted: {row}");

    // -L -c reads /proc/net/ip_vs_conn (the library hands it rvsd's text in
    // the kernel's format): the 6 connections (TIME_WAIT/CLOSE by now), the
    // seconds left included, in both listings (read again if a second
    // ticked between the two).
    let mut last = (String::new(), String::new());
    let mut matched = false;
    for _ in 0..20 {
        let a = ipvsadm_ok(&t, &["-L", "-n", "-c"]);
        let b = rvsd.rvsadm_ok(&["-L", "-n", "-c"]);
        if a == b {
            matched = true;
            last = (a, b);
            break;
        }
        last = (a, b);
    }
    assert!(
        matched,
        "-L -n -c differ:\n--- ipvsadm\n{}\n--- rvsadm\n{}",
        last.0, last.1
    );
    assert!(
        last.0.matches("10.0.0.2:").count() >= 6,
        "connections listed:\n{}",
        last.0
    );
}

#[test]
fn edits_errors_timeouts_zero_save_and_restore() {
    let t = Topology::up_unique();
    let rvsd = ipvs::start_rvsd(&t, &t.default_config());
    let svc = ["-t", "10.0.0.100:80"];
    ipvsadm_ok(&t, &["-A", svc[0], svc[1], "-s", "wlc", "-p", "120"]);
    ipvsadm_ok(
        &t,
        &["-a", svc[0], svc[1], "-r", "10.0.1.11:80", "-m", "-w", "3"],
    );
    ipvsadm_ok(
        &t,
        &["-A", "-u", "10.0.0.100:53", "-s", "sh", "-b", "sh-port"],
    );
    // A TUN real server: -S prints `--tun-type ipip` (print_tunnel_rule).
    ipvsadm_ok(
        &t,
        &[
            "-a",
            "-u",
            "10.0.0.100:53",
            "-r",
            "10.0.1.12",
            "-i",
            "-w",
            "2",
        ],
    );
    same_listing(&t, &rvsd, &["-L", "-n"]);
    let saved = same_listing(&t, &rvsd, &["-S", "-n"]);
    assert!(saved.contains(" -i -w 2 --tun-type ipip\n"), "{saved}");
    // GUE and GRE real servers (IPVS_DEST_ATTR_TUN_TYPE/PORT/FLAGS).
    ipvsadm_ok(
        &t,
        &[
            "-a",
            "-u",
            "10.0.0.100:53",
            "-r",
            "10.0.1.11",
            "-i",
            "--tun-type",
            "gue",
            "--tun-port",
            "6080",
            "--tun-csum",
        ],
    );
    ipvsadm_ok(
        &t,
        &[
            "-a",
            "-u",
            "10.0.0.100:53",
            "-r",
            "10.0.1.13",
            "-i",
            "--tun-type",
            "gre",
            "--tun-csum",
        ],
    );
    let info = same_listing(&t, &rvsd, &["-L", "-n", "--tun-info"]);
    assert!(
        info.contains("gue:6080:+c") && info.contains("gre:+c"),
        "{info}"
    );
    let saved = same_listing(&t, &rvsd, &["-S", "-n"]);
    assert!(
        saved.contains("--tun-type gue --tun-port 6080 --tun-csum\n"),
        "{saved}"
    );
    // A firewall-mark service (IPVS_SVC_ATTR_FWMARK): `FWM  1 rr ...`.
    ipvsadm_ok(&t, &["-A", "-f", "1", "-s", "rr", "-p", "300"]);
    ipvsadm_ok(&t, &["-a", "-f", "1", "-r", "10.0.1.11:80", "-m"]);
    let l = same_listing(&t, &rvsd, &["-L", "-n"]);
    assert!(l.contains("FWM  1 rr persistent 300\n"), "{l}");
    same_listing(&t, &rvsd, &["-S", "-n"]);
    // One-packet scheduling (IP_VS_SVC_F_ONEPACKET): ` ops`.
    ipvsadm_ok(&t, &["-A", "-u", "10.0.0.100:54", "-s", "rr", "-o"]);
    let l = same_listing(&t, &rvsd, &["-L", "-n"]);
    assert!(l.contains("UDP  10.0.0.100:54 rr ops\n"), "{l}");

    // Refusals: ipvsadm's own texts (ipvs_strerror over the kernel's
    // errno) and exit status; rvsadm must print and return the same.
    for (args, text) in [
        (
            &["-A", "-t", "10.0.0.100:80", "-s", "rr"][..],
            "Service already exists",
        ),
        (&["-D", "-t", "10.0.0.101:80"], "No such service"),
        (
            &["-a", "-t", "10.0.0.101:80", "-r", "10.0.1.11:80", "-m"],
            "Service not defined",
        ),
        (
            &["-d", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80"],
            "No such destination",
        ),
        (
            &["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"],
            "Destination already exists",
        ),
        (
            &["-A", "-t", "10.0.0.102:80", "-s", "nosuch"],
            "Scheduler or persistence engine not found",
        ),
        (
            &["-e", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80", "-m"],
            "No such destination",
        ),
    ] {
        let a = ipvsadm(&t, args);
        assert!(!a.status.success(), "ipvsadm {args:?} succeeded");
        let err = String::from_utf8_lossy(&a.stderr);
        assert_eq!(err.trim(), text, "ipvsadm {args:?}");
        let r = rvsd.rvsadm(args);
        assert_eq!(
            (String::from_utf8_lossy(&r.stderr).trim(), r.status.code()),
            (text, a.status.code()),
            "rvsadm {args:?} as ipvsadm"
        );
    }
    // Nothing changed by the refusals.
    same_listing(&t, &rvsd, &["-L", "-n"]);

    // Edits.
    ipvsadm_ok(&t, &["-E", svc[0], svc[1], "-s", "rr"]);
    ipvsadm_ok(
        &t,
        &["-e", svc[0], svc[1], "-r", "10.0.1.11:80", "-m", "-w", "5"],
    );
    let l = same_listing(&t, &rvsd, &["-L", "-n"]);
    assert!(l.contains("TCP  10.0.0.100:80 rr\n"), "{l}");
    assert!(l.contains("Masq    5"), "{l}");

    // Timeouts (--set; 0 keeps a value, as the kernel does).
    ipvsadm_ok(&t, &["--set", "600", "0", "200"]);
    let tmo = same_listing(&t, &rvsd, &["-L", "--timeout"]);
    assert_eq!(tmo, "Timeout (tcp tcpfin udp): 600 120 200\n");
    // No sync daemon: ipvsadm lists none and cannot stop one.
    assert_eq!(ipvsadm_ok(&t, &["-L", "--daemon"]), "");
    let d = ipvsadm(&t, &["--stop-daemon", "master"]);
    assert_eq!(
        String::from_utf8_lossy(&d.stderr).trim(),
        "No daemon is running"
    );

    // Zero.
    ipvsadm_ok(&t, &["-Z"]);
    ipvsadm_ok(&t, &["-Z", svc[0], svc[1]]);

    // Save, clear, restore: the same table.
    let saved = ipvsadm_ok(&t, &["-S", "-n"]);
    assert_eq!(saved, rvsd.rvsadm_ok(&["-S", "-n"]));
    ipvsadm_ok(&t, &["-C"]);
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), "");
    let file = t.state_dir.join("saved.rules");
    std::fs::write(&file, &saved).unwrap();
    let lib = ipvs::preload_lib();
    let out = topo::run_with_timeout(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("ipvsadm -R < {}", file.display()))
            .env("LD_PRELOAD", &lib)
            .env("RVS_IPVS_SOCKET", ipvs::ipvs_socket(&t)),
        topo::CMD_TIMEOUT,
    );
    assert!(out.status.success(), "ipvsadm -R: {}", topo::describe(&out));
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);

    // Sync daemons (IPVS_CMD_NEW/DEL/GET_DAEMON) as ipvsadm drives them,
    // on the director's kernel interface mgmt0; both may run at once.
    ipvsadm_ok(
        &t,
        &[
            "--start-daemon",
            "master",
            "--mcast-interface",
            "mgmt0",
            "--syncid",
            "5",
        ],
    );
    ipvsadm_ok(
        &t,
        &[
            "--start-daemon",
            "backup",
            "--mcast-interface",
            "mgmt0",
            "--mcast-port",
            "8850",
        ],
    );
    let d = same_listing(&t, &rvsd, &["-L", "--daemon"]);
    assert!(
        d.contains("master sync daemon (mcast=mgmt0, syncid=5")
            && d.contains("backup sync daemon (mcast=mgmt0, syncid=0")
            && d.contains("port=8850"),
        "{d}"
    );
    // libipvs ipvs_strerror: EEXIST for a second master.
    let again = ipvsadm(
        &t,
        &["--start-daemon", "master", "--mcast-interface", "mgmt0"],
    );
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("Daemon has already run"),
        "{}",
        topo::describe(&again)
    );
    ipvsadm_ok(&t, &["--stop-daemon", "master"]);
    ipvsadm_ok(&t, &["--stop-daemon", "backup"]);
    assert_eq!(same_listing(&t, &rvsd, &["-L", "--daemon"]), "");
    let none = ipvsadm(&t, &["--stop-daemon", "backup"]);
    assert!(
        !none.status.success()
            && String::from_utf8_lossy(&none.stderr).contains("No daemon is running"),
        "{}",
        topo::describe(&none)
    );

    // Deletes.
    ipvsadm_ok(&t, &["-d", svc[0], svc[1], "-r", "10.0.1.11:80"]);
    ipvsadm_ok(&t, &["-D", "-u", "10.0.0.100:53"]);
    ipvsadm_ok(&t, &["-D", "-f", "1"]);
    ipvsadm_ok(&t, &["-D", "-u", "10.0.0.100:54"]);
    let l = same_listing(&t, &rvsd, &["-L", "-n"]);
    assert!(
        !l.contains("10.0.1.11") && !l.contains("UDP") && !l.contains("FWM"),
        "{l}"
    );
}

#[test]
fn without_rvsd_the_library_leaves_ipvsadm_to_the_kernel() {
    // No rvsd at RVS_IPVS_SOCKET: the family lookup goes to the kernel,
    // which (without ip_vs, as on this machine) does not know "IPVS", so
    // ipvsadm fails as it does without the library; nothing hangs.
    let t = Topology::up_unique();
    let out = ipvsadm(&t, &["-L", "-n"]);
    let plain = topo::run_with_timeout(
        std::process::Command::new("ipvsadm").args(["-L", "-n"]),
        topo::CMD_TIMEOUT,
    );
    assert_eq!(out.status.code(), plain.status.code());
    assert_eq!(out.stdout, plain.stdout);
}

#[test]
fn ipv6_services_and_their_persistence_through_real_ipvsadm() {
    // ipvsadm sends an IPv6 service's netmask as a prefix length (128 by
    // default, `-M 64`), a host-order u32 (ipvsadm.c parse_options,
    // libipvs.c ipvs_nl_fill_service_attr); the kernel checks 1..128 and
    // lists it back the same way.
    let t = Topology::up_unique();
    let rvsd = ipvs::start_rvsd(&t, &t.default_config());
    for c in [
        "-A -t [2001:db8::100]:80 -s rr",
        "-a -t [2001:db8::100]:80 -r [2001:db8:1::11]:80 -m",
        "-A -t [2001:db8::100]:443 -s wlc -p 300",
        "-A -u [2001:db8::100]:53 -s rr -p 60 -M 64",
        "-a -u [2001:db8::100]:53 -r [2001:db8:1::12]:53 -g",
        // An IPv6 fwmark service (the kernel keys it on af and mark): its
        // own family, its real servers IPv6.
        "-A -f 7 -6 -s sh -p 60 -M 64",
        "-a -f 7 -6 -r [2001:db8:1::11]:0 -m",
        "-A -f 7 -s rr",
    ] {
        ipvsadm_ok(&t, &split(c));
    }
    // An IPv4 real server under the IPv6 mark is the other family.
    assert!(!ipvsadm(&t, &split("-a -f 7 -6 -r 10.0.1.11:0 -m"))
        .status
        .success());
    let list = same_listing(&t, &rvsd, &["-L", "-n"]);
    assert!(
        list.contains("TCP  [2001:db8::100]:443 wlc persistent 300\n"),
        "{list}"
    );
    assert!(
        list.contains("UDP  [2001:db8::100]:53 rr persistent 60 mask 64\n"),
        "{list}"
    );
    assert!(
        list.contains("FWM  7 IPv6 sh persistent 60 mask 64\n"),
        "{list}"
    );
    assert!(list.contains("FWM  7 rr\n"), "{list}");
    let save = same_listing(&t, &rvsd, &["-S", "-n"]);
    assert!(
        save.contains("-A -u [2001:db8::100]:53 -s rr -p 60 -M 64\n"),
        "{save}"
    );
    // rvsd holds the prefix as rvsadm and the control socket show it.
    let d = rvsd.ctl(r#"{"cmd":"dump"}"#);
    let dump = d.to_string();
    assert!(dump.contains(r#""netmask":64"#), "{dump}");
    let fwm = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["af"] == "inet6" && s["fwmark"] == 7)
        .unwrap_or_else(|| panic!("{dump}"));
    assert_eq!((&fwm["sched"], &fwm["netmask"]), (&"sh".into(), &64.into()));
    // A prefix the kernel refuses (EINVAL) is refused the same way.
    let bad = ipvsadm(&t, &split("-E -u [2001:db8::100]:53 -s rr -p 60 -M 0"));
    assert!(!bad.status.success());
}
