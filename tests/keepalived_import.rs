//! `--import-keepalived` on keepalived's own doc/samples (tests/keepalived/,
//! see its README), on seed article 004's keepalived.conf and on rvs's own
//! IPv6 director file (rvs-ipv6-director.conf): each file
//! imports the services keepalived would build, or reports exactly which
//! blocks it skipped (keepalived/check/check_parser.c is the reference for
//! what each keyword means).

use std::path::Path;
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use rvs::conn::ConnTable;
use rvs::control::Control;
use rvs::flow::Forward;
use rvs::keepalived::import_file;
use rvs::service::{CheckKind, OnFailure};
use rvs::stats::WorkerStats;
use serde_json::{json, Value};

fn load(name: &str) -> Result<rvs::keepalived::Import, String> {
    import_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keepalived")
            .join(name),
    )
}

/// (file, services as "TCP vip:port" with their real-server count, the
/// locations of every note, in order).
type Case = (
    &'static str,
    &'static [(&'static str, usize)],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "keepalived.conf.sample",
        &[("TCP 10.10.10.2:1358", 1)],
        &[
            "line 3: global_defs",
            "line 13: vrrp_instance",
            "line 40: url digest",
        ],
    ),
    (
        "keepalived.conf.inhibit",
        &[("TCP 10.10.10.2:1358", 1)],
        &["line 3: global_defs", "line 26: url digest"],
    ),
    (
        "keepalived.conf.misc_check",
        &[("TCP 10.10.10.2:1358", 1)],
        &["line 4: global_defs"],
    ),
    (
        "keepalived.conf.misc_check_arg",
        &[("TCP 10.10.10.2:1358", 1)],
        &["line 3: global_defs"],
    ),
    (
        "keepalived.conf.status_code",
        &[("TCP 192.168.200.100:443", 1)],
        &[
            "line 4: global_defs",
            "line 23: SSL_GET",
            "line 30: url digest",
        ],
    ),
    (
        "keepalived.conf.HTTP_GET.port",
        &[("TCP 192.168.200.100:443", 1)],
        &[
            "line 3: global_defs",
            "line 22: SSL_GET",
            "line 25: url digest",
        ],
    ),
    (
        "keepalived.conf.virtualhost",
        &[("TCP 192.168.200.100:80", 1)],
        &[
            "line 3: global_defs",
            "line 24: SSL_GET",
            "line 27: url digest",
            "line 31: url digest",
        ],
    ),
    (
        "keepalived.conf.SSL_GET",
        &[
            ("TCP 192.168.200.100:443", 1),
            ("TCP 192.168.200.100:80", 1),
        ],
        &[
            "line 3: global_defs",
            "line 13: vrrp_instance",
            "line 39: SSL_GET",
            "line 42: url digest",
            "line 46: url digest",
            "line 67: url digest",
            "line 71: url digest",
        ],
    ),
    (
        "keepalived.conf.quorum",
        &[("TCP 10.0.1.1:80", 10)],
        &[
            "line 29: alpha",
            "line 30: omega",
            "line 31: quorum",
            "line 32: hysteresis",
            "line 33: quorum_up",
            "line 34: quorum_down",
        ],
    ),
    (
        "keepalived.conf.UDP_CHECK",
        &[("UDP 10.10.10.2:1358", 1)],
        &["line 4: global_defs"],
    ),
    (
        "keepalived.conf.PING_CHECK",
        &[("UDP 10.10.10.2:1358", 1)],
        &["line 4: global_defs", "line 23: PING_CHECK"],
    ),
    (
        "keepalived.conf.SMTP_CHECK",
        &[("TCP 192.168.200.100:25", 3)],
        &[
            "line 15: global_defs",
            "line 39: SMTP_CHECK",
            "line 43: SMTP_CHECK helo_name",
            "line 58: SMTP_CHECK",
            "line 62: SMTP_CHECK helo_name",
            "line 64: SMTP_CHECK host",
            "line 68: SMTP_CHECK host",
            "line 72: SMTP_CHECK host",
            "line 89: SMTP_CHECK",
            "line 93: SMTP_CHECK helo_name",
            "line 95: SMTP_CHECK host",
            "line 101: SMTP_CHECK host",
            "line 107: SMTP_CHECK host",
        ],
    ),
    // keepalived's IPv6 sample: `virtual_server ae00::1 80` (its
    // virtual_server_group is not used: the `group` line is commented out).
    (
        "keepalived.conf.IPv6",
        &[("TCP [ae00::1]:80", 1)],
        &[
            "line 3: global_defs",
            "line 24: SMTP_CHECK",
            "line 27: SMTP_CHECK helo_name",
        ],
    ),
    // rvs's own IPv6 director file: NAT, DR (UDP), FULLNAT, NAT64, a /64
    // persistence granularity and an IPv6 fwmark service import; an IPv4
    // real server under NAT is reported.
    (
        "rvs-ipv6-director.conf",
        &[
            ("TCP [2001:db8::100]:80", 2),
            ("UDP [2001:db8::53]:53", 2),
            ("TCP [2001:db8::100]:443", 1),
            ("TCP [2001:db8::100]:8080", 1),
            ("TCP [2001:db8::100]:8443", 1),
            ("FWM 100 IPv6", 1),
        ],
        &[
            "line 4: global_defs",
            "line 8: vrrp_instance",
            "line 51: real_server 10.0.1.13",
            "line 127: virtual_server fwmark 100: imported; packets reach it once rvs's \
             fwmark rules mark them",
        ],
    ),
    (
        "keepalived.conf.vrrp.lvs_syncd",
        &[("TCP 192.168.200.19:80", 1)],
        &[
            "line 3: vrrp_sync_group",
            "line 8: vrrp_instance",
            "line 26: vrrp_instance",
            "line 38: vrrp_instance",
        ],
    ),
];

fn locs(notes: &[String]) -> Vec<String> {
    notes
        .iter()
        .map(|n| {
            // "line N: keyword [more]" -> "line N: keyword [word]"
            let mut w = n.split_whitespace();
            let head: Vec<&str> = w.by_ref().take(4).collect();
            let s = head.join(" ");
            match s.find(" (") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        })
        .collect()
}

#[test]
fn keepalived_doc_samples_import_or_report_what_they_skip() {
    for (file, services, notes) in CASES {
        let imp = load(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got: Vec<(String, usize)> = imp
            .services
            .iter()
            .map(|s| (s.key().to_string(), s.dests.len()))
            .collect();
        let want: Vec<(String, usize)> =
            services.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(got, want, "{file}");
        let got = locs(&imp.unsupported);
        let got: Vec<&str> = got.iter().map(String::as_str).collect();
        let want: Vec<&str> = notes.to_vec();
        // Each note starts with its location and keyword.
        assert_eq!(got.len(), want.len(), "{file}: {:#?}", imp.unsupported);
        for (g, w) in imp.unsupported.iter().zip(&want) {
            assert!(g.starts_with(w), "{file}: {g:?} should start with {w:?}");
        }
        for s in &imp.services {
            for d in &s.dests {
                if let Some(h) = &d.health {
                    h.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
                }
            }
        }
    }
}

#[test]
fn sample_checks_are_keepalived_s() {
    // keepalived.conf.sample: HTTP_GET with a url block (path, digest),
    // connect_timeout 3, retry 3, delay_before_retry 3 (lines 37-46).
    let imp = load("keepalived.conf.sample").unwrap();
    let s = &imp.services[0];
    assert_eq!((s.sched.as_str(), s.persistent), ("rr", Some(50)));
    let d = &s.dests[0];
    assert_eq!(d.fwd, Forward::Nat);
    let h = d.health.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Http);
    assert_eq!((h.timeout_ms, h.retries, h.retry_delay_ms), (3000, 4, 3000));
    assert_eq!(
        (h.path.as_deref(), h.status),
        (Some("/testurl3/test.jsp"), None),
        "no status_code: any 2xx"
    );
    assert_eq!(
        s.sorry_server.as_ref().unwrap().ip.to_string(),
        "192.168.200.200"
    );

    // misc_check: MISC_CHECK with misc_path and misc_timeout.
    let imp = load("keepalived.conf.misc_check").unwrap();
    let h = imp.services[0].dests[0].health.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Misc);
    assert!(h
        .script
        .as_deref()
        .unwrap()
        .starts_with("/usr/local/bin/script.sh"));

    // inhibit: inhibit_on_failure -> quiesce.
    let imp = load("keepalived.conf.inhibit").unwrap();
    let h = imp.services[0].dests[0].health.as_ref().unwrap();
    assert_eq!(h.on_failure, OnFailure::Quiesce);

    // status_code: ranges kept in keepalived's syntax (SSL_GET is a TCP
    // stand-in, reported above) - HTTP_GET's status_code lines.
    let imp = load("keepalived.conf.SSL_GET").unwrap();
    let h = imp.services[1].dests[0].health.as_ref().unwrap();
    assert_eq!(h.kind, CheckKind::Http);
}

/// keepalived.conf.UDP_CHECK: connect_timeout 3, retry 3,
/// delay_before_retry 3, `require_reply` commented out (line 27).
#[test]
fn udp_check_sample() {
    let imp = load("keepalived.conf.UDP_CHECK").unwrap();
    let h = imp.services[0].dests[0].health.as_ref().unwrap();
    assert_eq!(
        (
            h.kind,
            h.timeout_ms,
            h.retries,
            h.retry_delay_ms,
            h.require_reply
        ),
        (CheckKind::Udp, 3000, 4, 3000, false)
    );
}

#[test]
fn virtual_server_groups_expand_into_services_with_the_same_real_servers() {
    let imp = load("keepalived.conf.virtual_server_group").unwrap();
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    // VSG_1: 192.168.200.1 1358, 192.168.200.2-10? see the file: the
    // ranges expand within the last octet.
    assert!(
        keys.contains(&"TCP 192.168.200.1:1358".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"TCP 192.168.200.10:80".to_string()),
        "{keys:?}"
    );
    assert!(imp.services.iter().all(|s| s.dests.len() == 2));
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains("line 13: virtual_server_group VSG_1 mixes addresses and fwmarks"),
        "{u}"
    );
}

/// keepalived.conf.IPv6 (doc/samples): an IPv6 NAT service whose real
/// server has an SMTP_CHECK (connect_timeout 3, retry 3).
#[test]
fn ipv6_sample_imports_fwmark_imports() {
    let imp = load("keepalived.conf.IPv6").unwrap();
    let s = &imp.services[0];
    assert_eq!((s.sched.as_str(), s.persistent), ("rr", Some(50)));
    let d = &s.dests[0];
    assert_eq!(
        (d.ip.to_string(), d.port, d.fwd),
        ("ae00::10".to_string(), 25, Forward::Nat)
    );
    let h = d.health.as_ref().unwrap();
    assert_eq!(
        (h.kind, h.port, h.timeout_ms, h.retries),
        (CheckKind::Tcp, Some(25), 3000, 4)
    );
    // A fwmark service imports, with a note that rvs's own rules mark.
    let imp = load("keepalived.conf.fwmark").unwrap();
    assert_eq!(imp.services.len(), 1);
    assert_eq!(imp.services[0].key().to_string(), "FWM 1");
    assert!(
        imp.unsupported
            .iter()
            .any(|u| u.starts_with("line 7: virtual_server fwmark 1: imported")),
        "{:?}",
        imp.unsupported
    );
}

/// rvs-ipv6-director.conf in detail: what each imported block became, and
/// why the others were not.
#[test]
fn ipv6_director_file() {
    let imp = load("rvs-ipv6-director.conf").unwrap();
    let web = &imp.services[0];
    // persistence_granularity 128 is IPv6's only granularity rvs keeps: the
    // service persists per client address (the default mask).
    assert_eq!(
        (web.sched.as_str(), web.persistent, web.netmask),
        ("wrr", Some(300), std::net::Ipv4Addr::BROADCAST)
    );
    let sorry = web.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.ip.to_string(), sorry.port, sorry.fwd),
        ("2001:db8:1::200".to_string(), 8080, Forward::Nat)
    );
    let h = web.dests[0].health.as_ref().unwrap();
    assert_eq!(
        (h.kind, h.path.as_deref(), h.status, h.retries, h.on_failure),
        (
            CheckKind::Http,
            Some("/healthz"),
            Some(200),
            3,
            OnFailure::Quiesce
        )
    );
    let dns = &imp.services[1];
    assert!(dns.dests.iter().all(|d| d.fwd == Forward::Dr));
    assert_eq!(dns.dests[0].health.as_ref().unwrap().kind, CheckKind::Udp);
    // The group's addresses of both families: IPv6 ones for IPv6 real
    // servers, the IPv4 one for NAT64.
    let laddrs = ["2001:db8:2::10", "2001:db8:2::11", "192.168.88.240"];
    let fnat = &imp.services[2];
    assert_eq!(
        fnat.laddrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        laddrs
    );
    assert_eq!(fnat.dests[0].fwd, Forward::FullNat);
    let nat64 = &imp.services[3];
    assert_eq!(
        (nat64.dests[0].ip.to_string(), nat64.dests[0].fwd),
        ("10.0.1.21".to_string(), Forward::FullNat)
    );
    assert_eq!(nat64.laddrs.len(), 3);
    // persistence_granularity 64: a prefix length.
    let p64 = &imp.services[4];
    assert_eq!((p64.persistent, u32::from(p64.netmask)), (Some(600), 64));
    let u = imp.unsupported.join("\n");
    let want = "keepalived skips it too, check_parser.c rs_end_handler";
    assert!(u.contains(want), "{want}\nmissing from:\n{u}");
}

fn control() -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    Control::new(
        Arc::new(ConnTable::new(1000, 1)),
        workers,
        vec!["10.0.1.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
    )
}

fn load_into(c: &Control, services: &Value) -> Value {
    let line = json!({"cmd": "load", "services": services}).to_string();
    serde_json::from_str(&c.handle_line(&line)).unwrap()
}

/// What the importer builds from the IPv6 files, rvsd's control plane
/// takes as one `load` (as `rvsadm --import-keepalived` sends it).
#[test]
fn imported_ipv6_services_load_into_the_control_plane() {
    for file in ["keepalived.conf.IPv6", "rvs-ipv6-director.conf"] {
        let imp = load(file).unwrap();
        let c = control();
        let services = serde_json::to_value(&imp.services).unwrap();
        let r = load_into(&c, &services);
        assert_eq!(r["ok"], true, "{file}: {r}");
        let d: Value = serde_json::from_str(&c.handle_line(r#"{"cmd":"dump"}"#)).unwrap();
        assert_eq!(
            d["services"].as_array().map(Vec::len),
            Some(imp.services.len()),
            "{file}: {d}"
        );
        if file == "rvs-ipv6-director.conf" {
            // The /64 granularity as the control plane keeps it.
            let p64 = d["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["port"] == 8443)
                .unwrap();
            assert_eq!(p64["netmask"], 64, "{p64}");
        }
    }
}

/// What the importer reports for IPv6 instead of importing is what the
/// control plane (control/validate.rs) refuses: the same services built
/// by hand are refused, each with its reason. Should the control plane
/// come to accept one of them, this fails and the importer can follow.
#[test]
fn what_the_importer_skips_for_ipv6_the_control_plane_refuses() {
    let v6 = |extra: Value, dest: Value| {
        let mut s = json!({"proto": "tcp", "vip": "2001:db8::100", "port": 80,
                           "dests": [dest]});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let nat6 = json!({"ip": "2001:db8:1::11", "port": 80, "fwd": "nat"});
    for (what, svc, why) in [
        (
            "IPv4 real server of a fwmark service with ip_family inet6",
            json!({"fwmark": 100, "af": "inet6",
                   "dests": [{"ip": "10.0.1.13", "port": 80, "fwd": "nat"}]}),
            "a real server of the other address family needs",
        ),
        (
            "syn_proxy through NAT64",
            v6(
                json!({"synproxy": true, "laddrs": ["10.0.1.200"]}),
                json!({"ip": "10.0.1.11", "port": 80, "fwd": "fullnat"}),
            ),
            "the SYN proxy is not supported through NAT64",
        ),
        (
            "IPv6 FULLNAT real server of an IPv4 service",
            json!({"proto": "tcp", "vip": "10.0.0.100", "port": 80, "laddrs": ["10.0.9.1"],
                   "dests": [{"ip": "2001:db8:1::11", "port": 80, "fwd": "fullnat"}]}),
            "a real server of the other address family needs",
        ),
        (
            "GUE tunnel from an IPv4 service to an IPv6 real server",
            json!({"proto": "tcp", "vip": "10.0.0.100", "port": 80,
                   "dests": [{"ip": "2001:db8:1::13", "port": 80, "fwd": "tun",
                              "tun_type": "gue", "tun_port": 6080}]}),
            "takes --tun-type ipip",
        ),
        (
            "GRE tunnel to an IPv4 real server of an IPv6 service",
            v6(
                json!({}),
                json!({"ip": "10.0.1.13", "port": 80, "fwd": "tun", "tun_type": "gre"}),
            ),
            "takes --tun-type ipip (IPv6 in IPv4) only",
        ),
        (
            "GUE tunnel to an IPv6 real server",
            v6(
                json!({}),
                json!({"ip": "2001:db8:1::14", "port": 80, "fwd": "tun",
                       "tun_type": "gue", "tun_port": 6080}),
            ),
            "takes --tun-type ipip (IPv6 in IPv6) only",
        ),
        (
            // The importer drops the IPv4 local address and, with no IPv6
            // one left, skips the block: refused either way.
            "FULLNAT with only an IPv4 local address",
            v6(
                json!({"laddrs": ["192.168.88.240"]}),
                json!({"ip": "2001:db8:1::11", "port": 80, "fwd": "fullnat"}),
            ),
            "",
        ),
        (
            "IPv6 loopback sorry server",
            v6(
                json!({"sorry_server": {"ip": "::1", "port": 80, "fwd": "nat"}}),
                nat6.clone(),
            ),
            "::1 is not a usable real server address",
        ),
    ] {
        let r = load_into(&control(), &json!([svc]));
        assert!(r["error"].is_object(), "{what}: {r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{what}: {msg}");
    }
}

#[test]
fn seed_article_004_imports_all_but_the_loopback_sorry_server() {
    let mut imp = load("seed004.conf").unwrap();
    imp.drop_local_sorry(&[]);
    assert_eq!(imp.services.len(), 1);
    let s = &imp.services[0];
    assert_eq!(s.key().to_string(), "TCP 10.0.0.100:80");
    assert_eq!((s.sched.as_str(), s.persistent), ("wlc", Some(50)));
    assert_eq!(s.sorry_server, None);
    assert_eq!(s.dests.len(), 2);
    for d in &s.dests {
        assert_eq!((d.weight, d.fwd), (100, Forward::Dr));
        let h = d.health.as_ref().unwrap();
        // nb_get_retry 3 = keepalived's retry 3: four attempts.
        assert_eq!(
            (
                h.kind,
                h.port,
                h.timeout_ms,
                h.retries,
                h.retry_delay_ms,
                h.interval_ms
            ),
            (CheckKind::Tcp, Some(80), 3000, 4, 2000, 6000)
        );
    }
    let u = imp.unsupported.join("\n");
    for want in [
        "line 3: global_defs",
        "vrrp_script",
        "vrrp_instance",
        "sorry_server 127.0.0.1:80 is a loopback address",
    ] {
        assert!(u.contains(want), "{want} missing:\n{u}");
    }
    assert_eq!(imp.unsupported.len(), 4, "{u}");
}
