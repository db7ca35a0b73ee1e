//! `--import-keepalived` on keepalived's own doc/samples (tests/keepalived/,
//! see its README) and on seed article 004's keepalived.conf: each file
//! imports the services keepalived would build, or reports exactly which
//! blocks it skipped (keepalived/check/check_parser.c is the reference for
//! what each keyword means).

use std::path::Path;

use rvs::flow::Forward;
use rvs::keepalived::import_file;
use rvs::service::{CheckKind, OnFailure};

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

#[test]
fn ipv6_files_report_why_nothing_imports_fwmark_imports() {
    let e = load("keepalived.conf.IPv6").unwrap_err();
    assert!(e.contains("IPv6: rvs has no IPv6 services yet"), "{e}");
    assert!(
        e.contains("the running configuration is left as it is"),
        "{e}"
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
