use super::*;

fn args(line: &str) -> Vec<String> {
    std::iter::once("ipvsadm".to_string())
        .chain(line.split_whitespace().map(String::from))
        .collect()
}
fn entry(line: &str) -> Entry {
    match parse(&args(line)) {
        Ok(Parsed::Run(e)) => *e,
        other => panic!("{line}: {other:?}"),
    }
}
fn err(line: &str) -> (i32, String) {
    match parse(&args(line)) {
        Err(Exit(c, m)) => (c, m),
        Ok(p) => panic!("{line}: parsed {p:?}"),
    }
}

#[test]
fn daemon_options_are_kept() {
    let e = entry(
        "--start-daemon backup --mcast-interface mgmt0 --syncid 7 --sync-maxlen 1400 \
             --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 2",
    );
    assert_eq!(e.cmd, Cmd::StartDaemon);
    assert_eq!(
        e.daemon,
        DaemonArgs {
            state: "backup",
            mcast_ifn: Some("mgmt0".into()),
            syncid: 7,
            sync_maxlen: 1400,
            mcast_group: Some("239.1.2.3".parse().unwrap()),
            mcast_port: 9000,
            mcast_ttl: 2,
        }
    );
    assert!(e.check_extensions().is_ok());
    let e = entry("--stop-daemon master");
    assert_eq!((e.cmd, e.daemon.state), (Cmd::StopDaemon, "master"));
    assert_eq!(
        err("--start-daemon both").1,
        "illegal start-daemon parameter specified"
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --syncid 256").1,
        "illegal syncid specified"
    );
    assert_eq!(
        err("--start-daemon master --mcast-interface eth0 --mcast-group 10.0.0.1").1,
        "illegal mcast-group specified"
    );
}

/// Each expectation below is what ipvsadm 1.31 (built from its release
/// tarball with `ipvs_init` stubbed so parsing runs without ip_vs)
/// printed and returned for the same line.
#[test]
fn refused_like_ipvsadm() {
    let cases: &[(&str, i32, &str)] = &[
            (
                "-D -t 1.2.3.4:80 -r 1.1.1.1",
                2,
                "Illegal 'real-server' option with the 'delete-service' command",
            ),
            (
                "-C -t 1.2.3.4:80",
                2,
                "Illegal 'service-address' option with the 'flush' command",
            ),
            (
                "-E -t 1.2.3.4:80 -r 1.1.1.1 -w 0",
                2,
                "Illegal 'real-server' option with the 'edit-service' command",
            ),
            ("--bogus", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
            ("-n", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
            ("-n -L", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
            ("-L --bogus", 255, "--bogus: unknown option"),
            ("-Lq", 255, "-Lq: unknown option"),
            ("-L -q", 255, "-q: unknown option"),
            ("-A -t 1.2.3.4:80 -b", 255, "-b: missing argument"),
            ("-A -t 1.2.3.4:80 -b bad", 2, "invalid scheduler flag `bad'"),
            (
                "-A -t 1.2.3.4:80 -b sh-port",
                2,
                "incompatible scheduler flag `sh-port'",
            ),
            ("--set 1 2", 2, "--set option requires 3 timeout values"),
            (
                "--set 1 2 99999999",
                2,
                "invalid timeout value `99999999' specified",
            ),
            ("-A -t 1.2.3.4:80 -p 0", 2, "invalid timeout value `0' specified"),
            ("-A -f 0", 2, "invalid fwmark value `0' specified"),
            (
                "-A -t foo.invalid:80",
                2,
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -u 1.2.3.4:80 -o -x 3",
                2,
                "Illegal 'u-threshold' option with the 'add-service' command",
            ),
            ("-A -t 1.2.3.4:80 -s rr extra", 2, "unexpected argument extra"),
            ("foo -L", 2, "unexpected argument foo"),
            ("-6 -A -f 1", 255, "Try `ipvsadm -h' or 'ipvsadm --help' for more information."),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 --tun-type gue",
                2,
                "Tunnel options conflict with forward method",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gue",
                2,
                "You need to supply the 'tun-port' option for the 'gue' tunnel type",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gre --tun-port 5",
                2,
                "Illegal 'tun-port' option with the 'gre' tunnel type",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 -i --tun-type gue --tun-port 5 --tun-csum --tun-remcsum",
                2,
                "The option 'tun-remcsum' conflicts with the 'tun-csum' option in the 'gue' tunnel type",
            ),
            (
                "-a -t 1.2.3.4:80 -r [::1]:80 -g",
                2,
                "Different address family is allowed only for tunneling servers",
            ),
            ("-L -n -c --stats", 2, "options conflicts in the list command"),
            (
                "-L -c --timeout",
                2,
                "The option 'timeout' conflicts with the 'connection' option in the 'list' command",
            ),
            (
                "-L -c -t 1.2.3.4:80",
                2,
                "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
            ),
            ("-C -C", 2, "invalid option `-C'"),
            ("-A -a -t 1.2.3.4:80", 2, "invalid option `-a'"),
            (
                "-A -t 1.2.3.4:80 -s rr -s wlc",
                2,
                "multiple 'scheduler' options specified",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 -m -g",
                2,
                "multiple 'forwarding-method' options specified",
            ),
            ("-A -t 1.2.3.4:80 -6", 2, "-6 used before -f\n"),
            (
                "-A",
                2,
                "You need to supply the 'service-address' option for the 'add-service' command",
            ),
            (
                "-A -t 1.2.3.4",
                2,
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 1.2.3.4:80 -o",
                2,
                "One-Packet Scheduling is only for UDP virtual services",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.2.3.5 -w 70000",
                2,
                "illegal weight specified",
            ),
            (
                "-a -t 1.2.3.4:80 -r x.invalid:y",
                2,
                "illegal real server address[:port] specified",
            ),
            (
                "-A -t 1.2.3.4:80 -p 30 -M 1.2.3.x.y",
                2,
                "illegal virtual server persistent mask specified",
            ),
            ("-A -f 1 -6 -M 129", 2, "illegal ipv6 netmask specified"),
            ("-S -c", 2, "Illegal 'connection' option with the 'save' command"),
            (
                "-Z -r 1.1.1.1",
                2,
                "Illegal 'real-server' option with the 'zero' command",
            ),
            (
                "-d -t 1.2.3.4:80 -r 1.1.1.1 -w 2",
                2,
                "Illegal 'weight' option with the 'delete-server' command",
            ),
            (
                "-a -t 1.2.3.4:80 -r 1.1.1.1 --tun-type vxlan",
                2,
                "illegal tunnel type specified",
            ),
        ];
    for (line, code, msg) in cases {
        assert_eq!(err(line), (*code, msg.to_string()), "{line}");
    }
}

#[test]
fn accepted_like_ipvsadm() {
    // DR with another port: ipvsadm quietly uses the service's port.
    let e = entry("-a -t 10.10.120.193:80 -r 10.10.120.210:8000 -g");
    assert_eq!(e.dest, Some(("10.10.120.210".parse().unwrap(), 80)));
    assert!(e.warning.is_some());
    assert_eq!(e.dest_conf()["port"], 80);
    // NAT keeps the port; no port given copies the service's.
    let e = entry("-a -t 111.11.11.11:80 -r 10.10.120.210:8000 -m");
    assert_eq!(e.dest.unwrap().1, 8000);
    assert_eq!(entry("-a -t 1.2.3.4:80 -r 1.1.1.1").dest.unwrap().1, 80);
    // -d does not normalise (ipvsadm only does it for -a/-e).
    assert_eq!(
        entry("-d -t 1.2.3.4:80 -r 1.1.1.1:8000").dest.unwrap().1,
        8000
    );
    // popt forms.
    assert!(entry("-Ln").fmt.numeric);
    let e = entry("-A -t1.2.3.4:80 -p");
    assert_eq!(e.persistent, Some(360));
    let e = entry("-A --tcp-service=1.2.3.4:80 -p -s rr");
    assert_eq!((e.persistent, e.sched.as_deref()), (Some(360), Some("rr")));
    assert_eq!(entry("-a -t 1.2.3.4:80 -r 1.1.1.1 -w=3").weight, 3);
    assert_eq!(
        entry("-A -t 1.2.3.4:80 --persistent=30").persistent,
        Some(30)
    );
    // -M as inet_aton reads it, and without -p.
    let e = entry("-A -t 1.2.3.4:80 -M 24");
    assert_eq!(e.service_conf()["netmask"], "0.0.0.24");
    assert!(e.service_conf().get("persistent").is_none());
    // -y without -x passes the parser (the kernel refuses it).
    let e = entry("-a -t 1.2.3.4:80 -r 1.1.1.1 -y 5");
    assert_eq!(
        thresholds_in_range(&e),
        Err(Exit(255, "Numerical result out of range".into()))
    );
    // -b flags, named as print_sched_flags names them.
    assert_eq!(
        entry("-A -t 1.2.3.4:80 -s sh -b flag-1,sh-port").sched_flags,
        ["sh-fallback", "sh-port"]
    );
    assert_eq!(entry("-A -t 1.2.3.4:80 -b flag-3").sched_flags, ["flag-3"]);
    // --set
    assert_eq!(entry("--set 900 120 300").timeouts, Some([900, 120, 300]));
    // -h/-v
    assert_eq!(parse(&args("-h")), Ok(Parsed::Help));
    assert_eq!(parse(&args("--version")), Ok(Parsed::Version));
}

/// The JSON each command sends, as CONTRACT.md shapes it.
#[test]
fn contract_json() {
    let e = entry("-A -f 1 -s rr -p 300");
    assert_eq!(
        e.service_conf(),
        json!({"fwmark": 1, "sched": "rr", "persistent": 300})
    );
    let e = entry("-A -f 7 -6 -s rr -p 300 -M 64");
    assert_eq!(
        e.service_conf(),
        json!({"fwmark": 7, "af": "inet6", "sched": "rr", "persistent": 300, "netmask": 64})
    );
    let e = entry("-a -f 1 -r 10.0.1.11:8080 -g");
    assert_eq!(e.svc.as_ref().unwrap().key(), json!({"fwmark": 1}));
    // fwmark: DR keeps the given port (ipvsadm skips the copy).
    assert_eq!(e.dest_conf()["port"], 8080);
    let e = entry("-a -f 1 -r 10.0.1.11 -g");
    assert_eq!(e.dest_conf()["port"], 0);
    let e = entry("-A -u 1.2.3.4:53 -o -s rr");
    assert_eq!(e.service_conf()["ops"], true);
    assert_eq!(entry("-A -f 3 -o").service_conf()["ops"], true);
    let e = entry("-a -t 1.2.3.4:80 -r 10.0.1.11 -i --tun-type gue --tun-port 6080 --tun-remcsum");
    assert_eq!(
        e.dest_conf(),
        json!({"ip": "10.0.1.11", "port": 80, "weight": 1, "fwd": "tun", "u_threshold": 0,
                   "l_threshold": 0, "tun_type": "gue", "tun_port": 6080, "tun_csum": "remcsum"})
    );
    let e = entry("-a -t 1.2.3.4:80 -r 10.0.1.11 -i --tun-type gre --tun-csum");
    assert_eq!(
        (&e.dest_conf()["tun_type"], &e.dest_conf()["tun_csum"]),
        (&json!("gre"), &json!("csum"))
    );
    // ipip and nocsum are the defaults: omitted.
    let e = entry("-a -t 1.2.3.4:80 -r 10.0.1.11 -i --tun-type ipip");
    assert!(e.dest_conf().get("tun_type").is_none());
    let e = entry("-d -f 1 -r 10.0.1.11:80");
    assert_eq!(e.dest_conf(), json!({"ip": "10.0.1.11", "port": 80}));
}

/// The first 34 columns of each row are ipvsadm 1.31's
/// `commands_v_options`, copied here from ipvsadm.c by a script; the
/// rest are rvs's. Every row has all 40 columns.
#[test]
fn command_table_is_ipvsadm_s() {
    let ipvsadm = [
        "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
        "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
        "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        " 11xxxxxxxxx11       xxxxxxx xxxxx",
        "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
        "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
        "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ];
    for (i, row) in CMD_TABLE.iter().enumerate() {
        assert_eq!(row.1.len(), OPTNAMES.len(), "{}", row.0);
        if let Some(want) = ipvsadm.get(i) {
            assert_eq!(&row.1[..34], *want, "{}", row.0);
        }
    }
    // -P/-Q need a service and -z; -G takes an optional service.
    for r in [
        &CMD_TABLE[Cmd::AddLaddr as usize],
        &CMD_TABLE[Cmd::DelLaddr as usize],
    ] {
        assert_eq!(r.1.as_bytes()[optc::SERVICE], b'+');
        assert_eq!(r.1.as_bytes()[optc::LADDR], b'+');
    }
    assert_eq!(
        CMD_TABLE[Cmd::GetLaddr as usize].1.as_bytes()[optc::SERVICE],
        b' '
    );
    assert_eq!(CMD_TABLE[Cmd::Add as usize].1.as_bytes()[optc::TOA], b' ');
    assert_eq!(CMD_TABLE[Cmd::List as usize].1.as_bytes()[optc::JSON], b' ');
    assert_eq!(
        CMD_TABLE[Cmd::List as usize].1.as_bytes()[optc::HEALTH],
        b' '
    );
}
