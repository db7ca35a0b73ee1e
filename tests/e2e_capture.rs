//! Live capture: dpdk-dumpcap attaches to a running rvsd (DPDK
//! multi-process) and records what its ports receive and send.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::topo::{curl_from, eal_mem_args, Rvsd, Topology};

#[test]
fn dpdk_dumpcap_captures_a_running_rvsd() {
    let topo = Topology::up_unique();
    // Multi-process needs hugepages and a shared runtime directory: no
    // --in-memory, a per-topology file prefix.
    if eal_mem_args().iter().any(|a| a == "--no-huge") {
        panic!("live capture needs hugepages; tests/lib/setup.sh reserves them");
    }
    let mut cfg = topo.default_config();
    let args: Vec<String> = topo
        .eal_args()
        .into_iter()
        .filter(|a| a != "--in-memory")
        .collect();
    let prefix = format!("{}cap", topo.name);
    let mut eal = vec!["--file-prefix".to_string(), prefix.clone()];
    eal.extend(args);
    cfg["eal_args"] = serde_json::json!(eal);
    cfg["live_capture"] = true.into();
    cfg["services"] = serde_json::json!([{"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
        "dests": [{"ip": "10.0.1.11", "fwd": "nat"}, {"ip": "10.0.1.12", "fwd": "nat"}]}]);
    let rvsd = Rvsd::start(&topo, &cfg);
    assert!(rvsd.log().contains("live capture on"), "{}", rvsd.log());

    let file = topo.state_dir.join("capture.pcapng");
    let mut dumpcap = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.lb_ns(),
            "dpdk-dumpcap",
            &format!("--file-prefix={prefix}"),
            "-i",
            "net_af_packet0",
            "-w",
        ])
        .arg(&file)
        .current_dir(&topo.state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-dumpcap");
    // Readiness: dumpcap prints "Packets captured:" once rvsd has enabled
    // the capture (app/dumpcap/main.c: after enable_pdump()); its output
    // file exists earlier, before the request. A thread drains its stderr
    // (the count it keeps printing must never fill the pipe).
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = dumpcap.stderr.take().unwrap();
    let sink = said.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let end = Instant::now() + Duration::from_secs(20);
    while !said.lock().unwrap().contains("Packets captured:") {
        if let Ok(Some(st)) = dumpcap.try_wait() {
            panic!("dpdk-dumpcap exited ({st}): {}", said.lock().unwrap());
        }
        assert!(
            Instant::now() < end,
            "dpdk-dumpcap did not start: {}",
            said.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..4 {
        assert!(curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap()
            .starts_with("rs"));
    }
    let _ = Command::new("kill")
        .args(["-INT", &dumpcap.id().to_string()])
        .status();
    assert!(dumpcap.wait().unwrap().success());
    let out = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Both directions on the client-side port: the client's SYNs in, the
    // rewritten SYN-ACKs (from the VIP) out.
    assert!(
        text.lines()
            .filter(|l| l.contains("> 10.0.0.100.80: Flags [S]"))
            .count()
            >= 4,
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("IP 10.0.0.100.80 > 10.0.0.2.") && l.contains("Flags [S.]"))
            .count()
            >= 4,
        "{text}"
    );
    drop(rvsd);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}
