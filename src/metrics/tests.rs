use super::*;
use crate::control::from_reply;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Render from `list` and `stats` answers as the socket sends them.
fn render_json(list: &Value, stats: &Value) -> String {
    render(
        &from_reply(list.clone()).unwrap(),
        &from_reply(stats.clone()).unwrap(),
    )
}

fn sample_list() -> Value {
    json!({"ok": true, "services": [
            {"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "rr",
             "stats": {"conns": 20, "inpkts": 120, "outpkts": 100, "inbytes": 8000, "outbytes": 16000},
             "rates": {"cps": 3, "inpps": 18, "outpps": 15, "inbps": 1200, "outbps": 2400},
             "dests": [
                {"ip": "10.0.1.11", "port": 80, "fwd": "nat", "weight": 1, "active": 2,
                 "inactive": 8, "persist": 0, "overloaded": false,
                 "stats": {"conns": 10, "inpkts": 60, "outpkts": 50, "inbytes": 4000, "outbytes": 8000},
                 "rates": {"cps": 1, "inpps": 9, "outpps": 7, "inbps": 600, "outbps": 1200}},
                {"ip": "10.0.1.12", "port": 8080, "fwd": "nat", "weight": 0, "active": 0,
                 "inactive": 10, "persist": 1, "overloaded": true,
                 "stats": {"conns": 10, "inpkts": 60, "outpkts": 50, "inbytes": 4000, "outbytes": 8000},
                 "rates": {"cps": 2, "inpps": 9, "outpps": 8, "inbps": 600, "outbps": 1200}}]}],
            "conn_table": {"count": 18, "capacity": 1048576}})
}

fn sample_stats() -> Value {
    json!({"ok": true, "workers": [
            {"rx_packets": 300, "rx_bytes": 30000, "tx_packets": 290, "tx_bytes": 29000,
             "tx_dropped": 0, "rx_chained": 0, "arp_replies_sent": 2, "arp_requests_sent": 2,
             "icmp_echo_replies": 3, "icmp_errors_sent": 0, "icmp_errors_forwarded": 1,
             "conns_created": 20, "conns_expired": 2,
             "drops": {"no_service": 4, "ipv6": 7}}],
            "ports": [{"device": "net_af_packet0", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1/24",
                       "counters": {"ipackets": 150, "opackets": 140, "ibytes": 15000, "obytes": 14000,
                                    "imissed": 1, "ierrors": 0, "oerrors": 0, "rx_nombuf": 0}}],
            "mempools": [{"name": "rvs_pkts", "in_use": 12, "available": 16371}]})
}

/// Every `# TYPE` name in `text`.
fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn announcements_are_a_gauge_per_vip_with_drain_and_errors() {
    let mut st = sample_stats();
    st["announce"] = json!({"ok": true, "table": 4242, "dev": "rvs0", "draining": false,
        "vips": [{"vip": "10.0.0.100", "state": "announced", "installed": true},
                 {"vip": "10.0.0.101", "state": "no_real_server", "installed": false}],
        "route_errors": 2});
    let t = render_json(&sample_list(), &st);
    for line in [
        "rvs_vip_announced{vip=\"10.0.0.100\"} 1\n",
        "rvs_vip_announced{vip=\"10.0.0.101\"} 0\n",
        "rvs_announce_draining 0\n",
        "rvs_announce_route_errors_total 2\n",
    ] {
        assert!(t.contains(line), "{line} not in {t}");
    }
    st["announce"]["draining"] = json!(true);
    assert!(render_json(&sample_list(), &st).contains("rvs_announce_draining 1\n"));
    // Not configured: no family.
    assert!(!render_json(&sample_list(), &sample_stats()).contains("announce"));
}

#[test]
fn vip_ownership_is_a_gauge_per_service() {
    let mut st = sample_stats();
    st["vip_ownership"] = json!({"mode": "kernel", "on_twins": ["10.0.0.1"]});
    let t = render_json(&sample_list(), &st);
    assert!(
        t.contains("rvs_service_vip_owned{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\"} 0\n"),
        "{t}"
    );
    st["vip_ownership"] = json!({"mode": "kernel", "on_twins": ["10.0.0.1", "10.0.0.100"]});
    let t = render_json(&sample_list(), &st);
    assert!(t.contains("rvs_service_vip_owned{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\"} 1\n"));
    st["vip_ownership"] = json!({"mode": "always"});
    assert!(render_json(&sample_list(), &st).contains("proto=\"tcp\"} 1\n"));
    // Without a daemon (no ownership in stats): no family.
    assert!(!render_json(&sample_list(), &sample_stats()).contains("vip_owned"));
}

#[test]
fn sync_daemons_and_counters_are_exported() {
    let d = serde_json::json!({"ok": true,
            "daemons": [{"state": "backup", "mcast_ifn": "mgmt0", "syncid": 5, "sync_maxlen": 1472,
                         "mcast_group": "224.0.0.81", "mcast_port": 8848, "mcast_ttl": 1}],
            "counters": {"sent_msgs": 0, "recv_msgs": 12, "inserted": 30, "updated": 4,
                         "errors": {"foreign_syncid": 2, "bad_size": 0}}});
    let t = render_sync(&from_reply(d).unwrap());
    for line in [
        "rvs_sync_daemon_up{state=\"master\"} 0\n",
        "rvs_sync_daemon_up{state=\"backup\"} 1\n",
        "# TYPE rvs_sync_received_messages_total counter\n",
        "rvs_sync_received_messages_total 12\n",
        "rvs_sync_inserted_total 30\n",
        "rvs_sync_updated_total 4\n",
        "rvs_sync_errors_total{reason=\"foreign_syncid\"} 2\n",
    ] {
        assert!(t.contains(line), "{line:?} not in\n{t}");
    }
}

#[test]
fn every_family_has_help_and_type_and_the_expected_samples() {
    let t = render_json(&sample_list(), &sample_stats());
    let fams = families(&t);
    let mut expected: Vec<String> = Vec::new();
    for (s, ..) in TRAFFIC {
        expected.push(format!("rvs_service_{s}"));
    }
    for (s, ..) in TRAFFIC {
        expected.push(format!("rvs_dest_{s}"));
    }
    expected.extend(DEST_GAUGES.iter().map(|r| r.0.to_owned()));
    expected.extend(WORKER.iter().map(|r| r.0.to_owned()));
    expected.push("rvs_worker_drops_total".into());
    expected.extend(PORT.iter().map(|r| r.0.to_owned()));
    expected.extend(MEMPOOL.iter().map(|r| r.0.to_owned()));
    expected.extend(
        [
            "rvs_conn_table_entries",
            "rvs_conn_table_capacity",
            "rvs_build_info",
        ]
        .map(String::from),
    );
    assert_eq!(fams, expected);
    for f in &fams {
        assert!(t.contains(&format!("# HELP {f} ")), "{f} has HELP");
        let ty = if f.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert!(t.contains(&format!("# TYPE {f} {ty}\n")), "{f} is a {ty}");
    }
    for want in [
        r#"rvs_service_connections_total{vip="10.0.0.100",port="80",proto="tcp"} 20"#,
        r#"rvs_service_in_packets_total{vip="10.0.0.100",port="80",proto="tcp"} 120"#,
        r#"rvs_service_out_bytes_total{vip="10.0.0.100",port="80",proto="tcp"} 16000"#,
        r#"rvs_service_connections_per_second{vip="10.0.0.100",port="80",proto="tcp"} 3"#,
        r#"rvs_dest_connections_total{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 10"#,
        r#"rvs_dest_connections_per_second{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 2"#,
        r#"rvs_dest_active_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 2"#,
        r#"rvs_dest_inactive_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 8"#,
        r#"rvs_dest_persistent_connections{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 1"#,
        r#"rvs_dest_weight{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 0"#,
        r#"rvs_dest_overloaded{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.12",rport="8080"} 1"#,
        r#"rvs_dest_overloaded{vip="10.0.0.100",port="80",proto="tcp",rip="10.0.1.11",rport="80"} 0"#,
        r#"rvs_worker_rx_packets_total{worker="0"} 300"#,
        r#"rvs_worker_icmp_errors_forwarded_total{worker="0"} 1"#,
        r#"rvs_worker_connections_created_total{worker="0"} 20"#,
        r#"rvs_worker_drops_total{worker="0",reason="no_service"} 4"#,
        r#"rvs_worker_drops_total{worker="0",reason="ipv6"} 7"#,
        r#"rvs_port_rx_packets_total{port="0",device="net_af_packet0"} 150"#,
        r#"rvs_port_rx_missed_total{port="0",device="net_af_packet0"} 1"#,
        r#"rvs_mempool_in_use{pool="rvs_pkts"} 12"#,
        r#"rvs_mempool_available{pool="rvs_pkts"} 16371"#,
        "rvs_conn_table_entries 18",
        "rvs_conn_table_capacity 1048576",
        &format!(
            r#"rvs_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(t.lines().any(|l| l == want), "missing {want:?} in\n{t}");
    }
    // No health field yet: the family is there, without samples.
    assert!(!t.lines().any(|l| l.starts_with("rvs_dest_up{")));
    assert!(t.ends_with('\n'));
}

#[test]
fn health_field_becomes_rvs_dest_up() {
    let mut l = sample_list();
    l["services"][0]["dests"][0]["health"] = json!("up");
    l["services"][0]["dests"][1]["health"] = json!("down");
    let t = render_json(&l, &sample_stats());
    assert!(t.contains(
            "rvs_dest_up{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\",rip=\"10.0.1.11\",rport=\"80\"} 1\n"
        ));
    assert!(t.contains(
            "rvs_dest_up{vip=\"10.0.0.100\",port=\"80\",proto=\"tcp\",rip=\"10.0.1.12\",rport=\"8080\"} 0\n"
        ));
    l["services"][0]["dests"][1]["health"] = json!("unchecked");
    assert!(render_json(&l, &sample_stats()).contains("rport=\"8080\"} 1\n"));
}

#[test]
fn a_fwmark_service_is_labelled_by_its_mark() {
    let mut l = sample_list();
    let s = l["services"][0].as_object_mut().unwrap();
    for k in ["proto", "vip", "port"] {
        s.remove(k);
    }
    s.insert("fwmark".into(), json!(7));
    let t = render_json(&l, &sample_stats());
    assert!(
        t.contains("rvs_service_connections_total{fwmark=\"7\"} 20\n"),
        "{t}"
    );
    assert!(
        t.contains("rvs_dest_active_connections{fwmark=\"7\",rip=\"10.0.1.11\",rport=\"80\"} 2\n")
    );
    assert!(!t.contains("vip=\"\""));
}

#[test]
fn label_values_and_help_are_escaped() {
    assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape_label("x\ny"), "x\\ny");
    assert_eq!(escape_label("plain-10.0.0.1"), "plain-10.0.0.1");
    assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    let mut st = sample_stats();
    st["ports"][0]["device"] = json!("0000:01:00.0,\"evil\"\\\n");
    let t = render_json(&sample_list(), &st);
    assert!(
        t.contains(r#"rvs_port_rx_packets_total{port="0",device="0000:01:00.0,\"evil\"\\\n"} 150"#),
        "{t}"
    );
    // Every sample line is NAME{...} VALUE or NAME VALUE, one line each.
    for l in t.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
}

#[test]
fn values_are_formatted_exactly() {
    assert_eq!(fmt_value(0.0), "0");
    assert_eq!(fmt_value(18446744073709.0), "18446744073709");
    assert_eq!(fmt_value(1.5), "1.5");
    assert_eq!(fmt_value(f64::NAN), "NaN");
    assert_eq!(fmt_value(f64::INFINITY), "+Inf");
    assert_eq!(fmt_value(1e20), "100000000000000000000");
}

#[test]
fn empty_answers_render_families_without_samples() {
    let t = render(&ListReply::default(), &StatsReply::default());
    assert!(t.contains("# TYPE rvs_service_connections_total counter\n"));
    let samples: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(samples.len(), 3, "{t}");
    assert!(t.contains("\nrvs_conn_table_entries 0\n"));
    // Garbage never reaches rendering: it is not a reply.
    assert!(from_reply::<StatsReply>(json!({"workers": "x", "ports": [1]})).is_err());
}

#[test]
fn http_routing() {
    let body = || "x 1\n".to_string();
    let r = String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", body)).unwrap();
    assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(r.contains("Content-Length: 4\r\n") && r.ends_with("\r\n\r\nx 1\n"));
    let r = String::from_utf8(respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", body)).unwrap();
    assert!(r.starts_with("HTTP/1.0 200 OK\r\n"));
    let r = String::from_utf8(respond(b"HEAD /metrics HTTP/1.0\r\n\r\n", body)).unwrap();
    assert!(r.starts_with("HTTP/1.0 200 OK\r\n") && r.ends_with("\r\n\r\n"));
    for (req, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "404"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "405"),
        (b"", "400"),
        (b"\xff\xfe\r\n\r\n", "400"),
        (b"GET\r\n\r\n", "400"),
        (b"GET /metrics\r\n\r\n", "400"),
        (b"GET metrics HTTP/1.1\r\n\r\n", "400"),
        (b"GET /metrics HTTP/1.1 extra\r\n\r\n", "400"),
        (b"GET /metrics SPDY/3\r\n\r\n", "400"),
    ] {
        let r = String::from_utf8(respond(req, || panic!("no body for {req:?}"))).unwrap();
        assert!(
            r.starts_with(&format!("HTTP/1.0 {status} ")),
            "{req:?} -> {r}"
        );
    }
}

#[test]
fn server_answers_and_survives_bad_clients() {
    use crate::conn::ConnTable;
    use crate::stats::WorkerStats;
    use crossbeam_utils::CachePadded;
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    let ctl = Arc::new(Control::new(
        Arc::new(ConnTable::new(100, 4)),
        workers,
        vec![],
    ));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_server(l, ctl, stop.clone()).unwrap();
    let ask = |req: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(req);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut r = Vec::new();
        let _ = s.read_to_end(&mut r);
        String::from_utf8_lossy(&r).into_owned()
    };
    assert!(ask(&[b'A'; MAX_REQUEST_HEAD * 2]).starts_with("HTTP/1.0 431 "));
    assert!(ask(b"\x00\x01\x02").starts_with("HTTP/1.0 400 "));
    assert!(ask(b"GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
    // A client that connects and says nothing does not stop the server.
    let silent = TcpStream::connect(addr).unwrap();
    let r = ask(b"GET /metrics HTTP/1.0\r\n\r\n");
    drop(silent);
    assert!(r.starts_with("HTTP/1.0 200 OK"), "{r}");
    assert!(r.contains("\nrvs_conn_table_capacity 100\n"), "{r}");
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
}
