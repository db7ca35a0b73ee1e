//! End to end, metrics: rvsd's Prometheus endpoint inside the director's
//! namespace, scraped with curl and parsed by the reference Python parser
//! (`prometheus_client.parser`, installed by tests/lib/setup.sh); rate
//! estimation seen through `rvsadm -L -n --rate`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::topo::{curl_from, describe, ns_exec_ok, run_with_timeout, Rvsd, Topology};
use serde_json::{json, Value};

const METRICS: &str = "127.0.0.1:9100";

/// One parsed sample: family name, family type, sample name, labels, value.
#[derive(Debug)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: Value,
    value: f64,
}

const PARSE: &str = "import sys, json; \
from prometheus_client.parser import text_string_to_metric_families as p; \
print(json.dumps([[f.name, f.type, s.name, s.labels, s.value] \
for f in p(open(sys.argv[1]).read()) for s in f.samples]))";

/// Scrape /metrics from inside the director's namespace and parse it with
/// prometheus_client; panics if the text does not parse.
fn scrape(topo: &Topology) -> Vec<Sample> {
    let text = ns_exec_ok(
        &topo.lb_ns(),
        &[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    let path: PathBuf = topo.state_dir.join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    parse(&path)
}

fn parse(path: &Path) -> Vec<Sample> {
    let out = run_with_timeout(
        Command::new("python3").args(["-c", PARSE]).arg(path),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition ({}): {}",
        path.display(),
        describe(&out)
    );
    let v: Vec<(String, String, String, Value, f64)> =
        serde_json::from_slice(&out.stdout).expect("parser output");
    v.into_iter()
        .map(|(family, kind, name, labels, value)| Sample {
            family,
            kind,
            name,
            labels,
            value,
        })
        .collect()
}

/// The value of sample `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &Value) -> Option<f64> {
    let want = want.as_object().unwrap();
    samples
        .iter()
        .find(|s| s.name == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| s.value)
}

fn must(samples: &[Sample], name: &str, want: Value) -> f64 {
    value(samples, name, &want).unwrap_or_else(|| panic!("no sample {name} {want}"))
}

fn svc() -> Value {
    json!({"vip": "10.0.0.100", "port": "80", "proto": "tcp"})
}

fn dest(rip: &str) -> Value {
    json!({"vip": "10.0.0.100", "port": "80", "proto": "tcp", "rip": rip, "rport": "80"})
}

#[test]
fn metrics_endpoint_counts_the_traffic_sent() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["metrics_listen"] = json!(METRICS);
    let rvsd = Rvsd::start(&topo, &cfg);
    rvsd.nat_service("rr", 1, 1);

    let (mut a, mut b) = (0, 0);
    for i in 0..20 {
        match curl_from(&topo.client_ns(), "http://10.0.0.100/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"))
            .trim()
        {
            "rs1" => a += 1,
            "rs2" => b += 1,
            other => panic!("request {i}: body {other:?}"),
        }
    }
    assert_eq!((a, b), (10, 10));
    // A datagram to a VIP port without a service: dropped as no_service.
    ns_exec_ok(
        &topo.client_ns(),
        &[
            "python3",
            "-c",
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\
             .sendto(b'x', ('10.0.0.100', 9999))",
        ],
    );
    let no_service = json!({"worker": "0", "reason": "no_service"});
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape(&topo);
        if value(&m, "rvs_worker_drops_total", &no_service).unwrap_or(0.0) >= 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "no no_service drop counted");
        std::thread::sleep(Duration::from_millis(100));
    };

    // Types as parsed: counters lose `_total` in the family name.
    let fam = |n: &str| {
        m.iter()
            .find(|s| s.name == n)
            .map(|s| (s.family.as_str(), s.kind.as_str()))
    };
    assert_eq!(
        fam("rvs_service_connections_total"),
        Some(("rvs_service_connections", "counter"))
    );
    assert_eq!(
        fam("rvs_dest_connections_per_second"),
        Some(("rvs_dest_connections_per_second", "gauge"))
    );

    assert_eq!(must(&m, "rvs_service_connections_total", svc()), 20.0);
    for rip in ["10.0.1.11", "10.0.1.12"] {
        assert_eq!(
            must(&m, "rvs_dest_connections_total", dest(rip)),
            10.0,
            "{rip}"
        );
        for n in [
            "rvs_dest_in_packets_total",
            "rvs_dest_out_packets_total",
            "rvs_dest_in_bytes_total",
            "rvs_dest_out_bytes_total",
        ] {
            assert!(must(&m, n, dest(rip)) > 0.0, "{n} {rip}");
        }
        assert_eq!(must(&m, "rvs_dest_weight", dest(rip)), 1.0);
        assert_eq!(must(&m, "rvs_dest_overloaded", dest(rip)), 0.0);
        let conns = must(&m, "rvs_dest_active_connections", dest(rip))
            + must(&m, "rvs_dest_inactive_connections", dest(rip));
        assert!(conns <= 10.0, "{rip}: {conns} entries");
        must(&m, "rvs_dest_persistent_connections", dest(rip));
        must(&m, "rvs_dest_connections_per_second", dest(rip));
    }
    let inp = must(&m, "rvs_service_in_packets_total", svc());
    let outp = must(&m, "rvs_service_out_packets_total", svc());
    // At least SYN, ACK, request, FIN... each way for each of 20 connections.
    assert!(inp >= 60.0 && outp >= 60.0, "packets {inp}/{outp}");
    assert!(must(&m, "rvs_service_in_bytes_total", svc()) > inp * 40.0);
    must(&m, "rvs_service_connections_per_second", svc());

    // Every drop reason is there, labelled.
    let reasons: Vec<&str> = m
        .iter()
        .filter(|s| s.name == "rvs_worker_drops_total")
        .map(|s| s.labels["reason"].as_str().unwrap())
        .collect();
    for r in rvs::stats::DropReason::ALL {
        assert!(reasons.contains(&r.label()), "reason {}", r.label());
    }
    let w0 = json!({"worker": "0"});
    assert!(must(&m, "rvs_worker_rx_packets_total", w0.clone()) >= inp);
    assert!(must(&m, "rvs_worker_tx_packets_total", w0.clone()) >= outp);
    assert!(must(&m, "rvs_worker_arp_replies_sent_total", w0.clone()) >= 1.0);
    assert_eq!(
        must(&m, "rvs_worker_connections_created_total", w0.clone()),
        20.0
    );
    for (port, dev) in [("0", "net_af_packet0"), ("1", "net_af_packet1")] {
        let l = json!({"port": port, "device": dev});
        assert!(
            must(&m, "rvs_port_rx_packets_total", l.clone()) > 0.0,
            "{dev}"
        );
        assert!(
            must(&m, "rvs_port_tx_bytes_total", l.clone()) > 0.0,
            "{dev}"
        );
        must(&m, "rvs_port_rx_nombuf_total", l);
    }
    // The packet pool: every mbuf is either in it or out of it.
    let pool = json!({"pool": "rvs_pkts"});
    assert_eq!(
        must(&m, "rvs_mempool_in_use", pool.clone()) + must(&m, "rvs_mempool_available", pool),
        16383.0,
        "in use + available = the configured mbufs"
    );
    assert_eq!(must(&m, "rvs_conn_table_capacity", json!({})), 1048576.0);
    assert!(must(&m, "rvs_conn_table_entries", json!({})) <= 20.0);
    assert_eq!(
        must(
            &m,
            "rvs_build_info",
            json!({"version": env!("CARGO_PKG_VERSION")})
        ),
        1.0
    );

    // HTTP: content type, 404 elsewhere; the endpoint keeps serving.
    let lb = topo.lb_ns();
    let head = ns_exec_ok(
        &lb,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    assert!(
        head.starts_with("HTTP/1.0 200")
            && head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let code = ns_exec_ok(
        &lb,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &format!("http://{METRICS}/"),
        ],
    );
    assert_eq!(code, "404");
    assert!(!scrape(&topo).is_empty());
    rvsd.stop()
        .expect("rvsd stops cleanly with the metrics server running");
}

/// A curl loop in the client namespace, bounded in count, stopped by a file.
struct CurlLoop {
    child: Child,
    stop_file: PathBuf,
}

impl CurlLoop {
    fn start(topo: &Topology) -> CurlLoop {
        let stop_file = topo.state_dir.join("curl-loop.stop");
        let script = format!(
            "for i in $(seq 1 600); do [ -e '{}' ] && break; \
             curl -s -o /dev/null --max-time 2 http://10.0.0.100/; sleep 0.05; done",
            stop_file.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &topo.client_ns(), "bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl loop");
        CurlLoop { child, stop_file }
    }
}

impl Drop for CurlLoop {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop_file, b"");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers of the `--rate --exact` line that starts with `prefix`.
fn rate_line(out: &str, prefix: &str) -> Vec<u64> {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in\n{out}"));
    line.split_whitespace()
        .skip(2)
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn rate_shows_connections_per_second_while_traffic_flows() {
    let topo = Topology::up_unique();
    let mut cfg = topo.default_config();
    cfg["metrics_listen"] = json!(METRICS);
    let rvsd = Rvsd::start(&topo, &cfg);
    rvsd.nat_service("rr", 1, 1);
    let idle = rvsd.rvsadm_ok(&["-L", "-n", "--rate", "--exact"]);
    assert_eq!(rate_line(&idle, "TCP  10.0.0.100:80"), vec![0; 5], "{idle}");

    let traffic = CurlLoop::start(&topo);
    // The estimator ticks every 2 s; a few ticks at ≥ 5 conn/s give CPS ≥ 1.
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = rvsd.rvsadm_ok(&["-L", "-n", "--rate", "--exact"]);
        let r = rate_line(&out, "TCP  10.0.0.100:80");
        if r[0] > 0 && r[1] > 0 && r[3] > 0 {
            break out;
        }
        assert!(Instant::now() < deadline, "CPS still zero:\n{out}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let r = rate_line(&out, "TCP  10.0.0.100:80");
    assert!(
        r.iter().all(|&n| n > 0),
        "every rate non-zero under load: {out}"
    );
    for rip in ["  -> 10.0.1.11:80", "  -> 10.0.1.12:80"] {
        let d = rate_line(&out, rip);
        assert!(d[1] > 0 && d[3] > 0, "{rip}: {out}");
    }
    // The same figures as gauges.
    let m = scrape(&topo);
    assert!(must(&m, "rvs_service_connections_per_second", svc()) > 0.0);
    assert!(must(&m, "rvs_service_in_bytes_per_second", svc()) > 0.0);
    drop(traffic);

    // ipvsadm -Z zeroes the estimators with the counters (the kernel's
    // ip_vs_zero_estimator); with the traffic stopped they stay at zero.
    rvsd.rvsadm_ok(&["-Z"]);
    let out = rvsd.rvsadm_ok(&["-L", "-n", "--rate", "--exact"]);
    assert_eq!(rate_line(&out, "TCP  10.0.0.100:80"), vec![0; 5], "{out}");
    rvsd.stop().expect("rvsd stops cleanly");
}
