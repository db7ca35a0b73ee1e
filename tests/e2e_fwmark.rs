//! End to end, a persistent fwmark service (`ipvsadm -A -f 1 -s rr -p`):
//! real namespaces, rvsd on af_packet ports, nginx real servers listening
//! on :80 and :443 (plain HTTP on both), kernel TCP clients (curl). The
//! classifier rule marks TCP 80 and 443 of the VIP, so one client's two
//! ports share the kernel's `<IPPROTO_IP, cip, 0, fwmark, 0>` persistence
//! template (ip_vs_core.c `ip_vs_sched_persist`) and land on one server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::topo::{curl_from, ns_exec, ns_exec_ok, Rvsd, Topology};
use serde_json::{json, Value};

fn ctl(rvsd: &Rvsd, line: &Value) -> Value {
    let mut s = UnixStream::connect(&rvsd.socket).unwrap();
    s.write_all(line.to_string().as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut resp = String::new();
    BufReader::new(s).read_line(&mut resp).unwrap();
    serde_json::from_str(&resp).unwrap_or_else(|e| panic!("not JSON: {resp:?}: {e}"))
}

/// A second nginx in real server `n`'s namespace answering plain HTTP on
/// :443 with the server's name (the topology's nginx serves :80). Waits
/// until it listens; the topology's teardown ends it with the namespace's
/// other processes.
fn nginx_443(topo: &Topology, n: usize) {
    let ip = format!("10.0.1.{}", 10 + n);
    let dir = topo.state_dir.join(format!("rs{n}-443"));
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        "user root;\nworker_processes 1;\ndaemon on;\npid {d}/nginx.pid;\n\
         error_log {d}/logs/error.log warn;\nevents {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         server {{ listen {ip}:443; location / {{ return 200 \"rs{n}\\n\"; }} }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    ns_exec_ok(
        &topo.rs_ns(n),
        &[
            "nginx",
            "-q",
            "-c",
            path.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
        ],
    );
    let t0 = Instant::now();
    loop {
        let out = ns_exec(&topo.rs_ns(n), &["ss", "-Hltn", "sport = :443"]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nginx :443 in rs{n} not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server that answered `url` from `src` (curl --interface).
fn who(topo: &Topology, src: &str, url: &str) -> String {
    let out = ns_exec(
        &topo.client_ns(),
        &["curl", "-sS", "--max-time", "5", "--interface", src, url],
    );
    assert!(
        out.status.success(),
        "curl {url} from {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn persistent_fwmark_service_keeps_a_clients_http_and_https_on_one_server() {
    let topo = Topology::up_unique();
    for n in [1, 2] {
        nginx_443(&topo, n);
    }
    // A second client address, to see rr at work between clients.
    ns_exec_ok(
        &topo.client_ns(),
        &["ip", "addr", "add", "10.0.0.3/24", "dev", "eth0"],
    );
    let mut cfg = topo.default_config();
    cfg["fwmark_rules"] = json!([
        {"mark": 1, "dst": "10.0.0.100/32", "proto": "tcp", "ports": "80,443"}
    ]);
    cfg["services"] = json!([
        {"fwmark": 1, "sched": "rr", "persistent": 300,
         "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]}
    ]);
    let rvsd = Rvsd::start(&topo, &cfg);

    let urls = ["http://10.0.0.100/", "http://10.0.0.100:443/"];
    let mut first = Vec::new();
    for src in ["10.0.0.2", "10.0.0.3"] {
        let s = who(&topo, src, urls[0]);
        assert!(s == "rs1" || s == "rs2", "{s:?}");
        // Every later connection of this client, to either port, goes to
        // the same server (rr alone would alternate).
        for i in 0..6 {
            assert_eq!(who(&topo, src, urls[(i + 1) % 2]), s, "{src} request {i}");
        }
        first.push(s);
    }
    assert_ne!(
        first[0], first[1],
        "rr gives the second client the other server"
    );

    // One template per client, the kernel's <IPPROTO_IP, cip, 0, fwmark, 0>.
    let c = ctl(&rvsd, &json!({"cmd": "connections"}));
    let mut t: Vec<(String, String, String)> = c["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["template"] == true)
        .map(|x| {
            (
                x["proto"].as_str().unwrap().into(),
                x["cip"].as_str().unwrap().into(),
                x["vip"].as_str().unwrap().into(),
            )
        })
        .collect();
    t.sort();
    assert_eq!(
        t,
        vec![
            ("ip".into(), "10.0.0.2".into(), "0.0.0.1".into()),
            ("ip".into(), "10.0.0.3".into(), "0.0.0.1".into())
        ],
        "{c}"
    );
    let l = ctl(&rvsd, &json!({"cmd": "list"}));
    assert_eq!(l["services"][0]["fwmark"], 1);
    assert_eq!(l["services"][0]["stats"]["conns"], 14);

    // A bad rule set (the second rule can never match) is refused; the
    // running rules, service and templates stay.
    let bad = ctl(
        &rvsd,
        &json!({"cmd": "set_fwmark_rules", "rules": [
            {"mark": 1, "dst": "10.0.0.0/24"},
            {"mark": 2, "dst": "10.0.0.100", "proto": "tcp", "ports": "443"}]}),
    );
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fwmark_rules[1]: can never match"),
        "{bad}"
    );
    let d = ctl(&rvsd, &json!({"cmd": "dump"}));
    assert_eq!(d["fwmark_rules"], cfg["fwmark_rules"]);
    for (i, src) in ["10.0.0.2", "10.0.0.3"].into_iter().enumerate() {
        assert_eq!(who(&topo, src, urls[1]), first[i]);
    }
    // Without the rules, no packet is marked and the VIP has no service of
    // its own: a new connection fails.
    let ok = ctl(&rvsd, &json!({"cmd": "set_fwmark_rules", "rules": []}));
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(curl_from(&topo.client_ns(), "http://10.0.0.100:443/").is_err());
    rvsd.stop().expect("rvsd stops cleanly on SIGTERM");
}
