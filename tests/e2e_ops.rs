//! Operations against a running rvsd: ipvsadm command lines verbatim, save
//! and restore, JSON load/dump (atomic), keepalived import.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::topo::{Rvsd, Topology};

#[test]
fn ipvsadm_commands_save_restore_load_and_keepalived_import() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());

    // Command lines as the seed documents write them (rvsadm for ipvsadm).
    for line in [
        "-A -t 192.168.1.100:80 -s rr",
        "-a -t 192.168.1.100:80 -r 192.168.1.11:80 -g",
        "-a -t 192.168.1.100:80 -r 192.168.1.12:80 -g -w 2",
        "-A -t 192.168.1.100:443 -s wlc -p 600",
        "-a -t 192.168.1.100:443 -r 192.168.1.11 -g",
        "-A -u 192.168.1.100:53 -s sh",
        "-a -u 192.168.1.100:53 -r 192.168.1.11:53 -i",
        "-e -t 192.168.1.100:80 -r 192.168.1.12:80 -g -w 3",
        "-Ln",
        "-Ln --stats",
        "-Ln --rate",
        "-Lnc",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        "-L -n --exact --stats",
        "-L --timeout",
        "--set 900 120 300",
        "-Z",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        rvsd.rvsadm_ok(&args);
    }
    let list = rvsd.rvsadm_ok(&["-Ln"]);
    let want = "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  192.168.1.100:80 rr\n\
\x20 -> 192.168.1.11:80              Route   1      0          0         \n\
\x20 -> 192.168.1.12:80              Route   3      0          0         \n\
TCP  192.168.1.100:443 wlc persistent 600\n\
\x20 -> 192.168.1.11:443             Route   1      0          0         \n\
UDP  192.168.1.100:53 sh\n\
\x20 -> 192.168.1.11:53              Tunnel  1      0          0         \n";
    assert!(list.ends_with(want), "{list}");
    // The seed's awk one-liner: real servers and their weights.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} -Ln | awk '/->/ && $2 != \"RemoteAddress:Port\" {{print $2, $4}}'",
            env!("CARGO_BIN_EXE_rvsadm"),
            rvsd.socket.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "192.168.1.11:80 1\n192.168.1.12:80 3\n192.168.1.11:443 1\n192.168.1.11:53 1\n"
    );

    // -S | -R recreates the same configuration.
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    rvsd.rvsadm_ok(&["-C"]);
    assert!(!rvsd.rvsadm_ok(&["-Ln"]).contains("192.168.1.100"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(["--socket", rvsd.socket.to_str().unwrap(), "-R"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(saved.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);

    // --dump / --load round trip; a file with one bad entry among good ones
    // changes nothing and names every problem.
    let dump = rvsd.rvsadm_ok(&["--dump"]);
    let file = topo.state_dir.join("dump.json");
    std::fs::write(&file, &dump).unwrap();
    rvsd.rvsadm_ok(&["-C"]);
    rvsd.rvsadm_ok(&["--load", file.to_str().unwrap()]);
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);
    let mut v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    v["services"][0]["sched"] = "fastest".into();
    v["services"][2]["dests"][0]["weight"] = 70000.into();
    std::fs::write(&file, v.to_string()).unwrap();
    let bad = rvsd.rvsadm(&["--load", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(255));
    assert!(
        err.contains("unknown scheduler") && err.contains("illegal weight"),
        "{err}"
    );
    assert_eq!(
        rvsd.rvsadm_ok(&["-S", "-n"]),
        saved,
        "configuration unchanged"
    );

    // keepalived import: virtual servers applied, the rest reported.
    let kc = topo.state_dir.join("keepalived.conf");
    std::fs::write(
        &kc,
        "global_defs {\n  router_id LVS\n}\nvirtual_server 10.0.0.100 80 {\n  delay_loop 6\n  lb_algo wrr\n  lb_kind NAT\n  protocol TCP\n  real_server 10.0.1.11 80 {\n    weight 3\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n  real_server 10.0.1.12 80 {\n    weight 1\n    SSL_GET {\n    }\n  }\n}\n",
    )
    .unwrap();
    let imp = rvsd.rvsadm(&["--import-keepalived", kc.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&imp.stderr);
    assert!(imp.status.success(), "{err}");
    assert!(
        err.contains("line 1: global_defs") && err.contains("line 17: SSL_GET"),
        "{err}"
    );
    let list = rvsd.rvsadm_ok(&["-Ln"]);
    assert!(
        list.contains("TCP  10.0.0.100:80 wrr\n  -> 10.0.1.11:80                 Masq    3"),
        "{list}"
    );
    assert!(
        !list.contains("192.168.1.100"),
        "import replaced the configuration"
    );
    let body = common::topo::curl_from(&topo.client_ns(), "http://10.0.0.100/").unwrap();
    assert!(body.starts_with("rs"), "imported service serves");
}
