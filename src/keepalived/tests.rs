use super::*;
use crate::flow::{Forward, Proto};

const SEED: &str = r#"
! Configuration File for keepalived
global_defs {
   router_id LVS_DEVEL
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        192.168.1.100
    }
}

virtual_server 192.168.1.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    persistence_granularity 255.255.255.0
    protocol TCP
    sorry_server 192.168.1.200 80

    real_server 192.168.1.11 80 {
        weight 3
        inhibit_on_failure
        TCP_CHECK {
            connect_port 80
            connect_timeout 3
            retry 3
            delay_before_retry 2
        }
    }
    real_server 192.168.1.12 80 {
        weight 1
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 2
            nb_get_retry 2
            delay_before_retry 1
        }
    }
}
"#;

#[test]
fn virtual_server_with_checks_and_sorry_server() {
    let imp = import(SEED).unwrap();
    assert_eq!(imp.services.len(), 1);
    let s = &imp.services[0];
    assert_eq!(
        (s.proto, s.vip.to_string(), s.port, s.sched.as_str()),
        (Proto::Tcp, "192.168.1.100".into(), 80, "wrr")
    );
    assert_eq!(
        (s.persistent, s.netmask),
        (Some(50), Ipv4Addr::new(255, 255, 255, 0))
    );
    let sorry = s.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.ip.to_string(), sorry.fwd),
        ("192.168.1.200".into(), Forward::Dr)
    );
    let d1 = &s.dests[0];
    assert_eq!((d1.weight, d1.fwd), (3, Forward::Dr));
    let h1 = d1.health.as_ref().unwrap();
    // keepalived's `retry 3`: three retries after the first attempt.
    assert_eq!(
        (
            h1.kind,
            h1.port,
            h1.timeout_ms,
            h1.retries,
            h1.retry_delay_ms,
            h1.interval_ms
        ),
        (CheckKind::Tcp, Some(80), 3000, 4, 2000, 6000)
    );
    assert_eq!(h1.on_failure, OnFailure::Quiesce);
    let h2 = s.dests[1].health.as_ref().unwrap();
    assert_eq!(
        (
            h2.kind,
            h2.path.as_deref(),
            h2.status,
            h2.retries,
            h2.on_failure
        ),
        (
            CheckKind::Http,
            Some("/health"),
            Some(200),
            3,
            OnFailure::Remove
        )
    );
    // VRRP and global settings are reported, not silently dropped.
    assert_eq!(imp.unsupported.len(), 2, "{:?}", imp.unsupported);
    assert!(imp.unsupported[0].starts_with("line 3: global_defs"));
    assert!(imp.unsupported[1].starts_with("line 7: vrrp_instance"));
}

/// keepalived's defaults per checker (check_api.c queue_checker,
/// check_http.c, check_misc.c; check_data.c alloc_vs for delay_loop and
/// connect_timeout) and their inheritance virtual_server ->
/// real_server -> checker.
#[test]
fn check_defaults_and_inheritance_follow_keepalived() {
    let imp = import(
            "virtual_server 10.0.0.1 80 {\n\
               lvs_sched rr\n lvs_method DR\n\
               real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n HTTP_GET {\n url {\n path /\n }\n }\n\
                 MISC_CHECK {\n misc_path \"/bin/check a\"\n }\n }\n\
               retry 4\n connect_timeout 2\n delay_before_retry 7\n\
               real_server 10.0.1.2 80 {\n delay_loop 9\n retry 0\n TCP_CHECK {\n retry 2\n }\n }\n\
               real_server 10.0.1.3 80 {\n HTTP_GET {\n url {\n path /a\n }\n url {\n path /b\n status_code 200-299 302\n }\n }\n }\n\
             }\n\
             virtual_server 10.0.0.2 80 {\n real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n HTTP_GET {\n url {\n path /\n }\n }\n MISC_CHECK {\n misc_path /bin/true\n }\n }\n }\n",
        )
        .unwrap();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    let s = &imp.services[0];
    assert_eq!((s.sched.as_str(), s.dests[0].fwd), ("rr", Forward::Dr));
    // vs-level retry/connect_timeout/delay_before_retry reach every
    // checker of a real server that does not set them (the position
    // of the keyword in the block does not matter).
    let h = s.dests[0].health.as_ref().unwrap();
    let all: Vec<_> = h.all().collect();
    assert_eq!(all.len(), 3);
    for c in &all {
        assert_eq!(
            (c.retries, c.retry_delay_ms, c.interval_ms),
            (5, 7000, 60_000),
            "{c:?}"
        );
    }
    assert_eq!((all[0].timeout_ms, all[1].timeout_ms), (2000, 2000));
    assert_eq!(all[2].timeout_ms, 60_000, "misc: the vs's delay_loop");
    let h = s.dests[1].health.as_ref().unwrap();
    assert_eq!(
        (h.retries, h.interval_ms),
        (3, 9000),
        "checker's own retry wins"
    );
    let h = s.dests[2].health.as_ref().unwrap();
    assert_eq!(h.urls.len(), 2);
    assert_eq!(h.urls[1].status.as_deref(), Some("200-299 302"));
    // Nothing set anywhere: keepalived's per-checker defaults.
    let h = imp.services[1].dests[0].health.as_ref().unwrap();
    let all: Vec<_> = h.all().collect();
    let got: Vec<_> = all
        .iter()
        .map(|c| (c.kind, c.retries, c.retry_delay_ms, c.timeout_ms))
        .collect();
    assert_eq!(
        got,
        [
            (CheckKind::Tcp, 2, 1000, 5000),
            (CheckKind::Http, 2, 3000, 5000),
            (CheckKind::Misc, 1, 1000, 60_000)
        ]
    );
    assert_eq!((all[1].path.as_deref(), all[1].status), (Some("/"), None));
    assert_eq!(imp.services[1].dests[0].fwd, Forward::Nat);
}

#[test]
fn unsupported_blocks_are_skipped_with_their_lines_and_the_rest_imports() {
    let imp = import(
            "virtual_server 10.0.0.100 53 {\n  protocol UDP\n  lb_kind NAT\n  quorum 2\n  real_server 10.0.1.11 53 {\n    DNS_CHECK {\n      type A\n    }\n    frobnicate\n  }\n}\nlocal_address_group lg {\n  10.0.1.200\n}\nvirtual_server 10.0.0.100 80 {\n  lb_kind FNAT\n  laddr_group_name lg\n  real_server 10.0.1.11 80 {\n    SMTP_CHECK {\n    }\n  }\n}\nvirtual_server [2001:db8::1]:80 {\n}\nvirtual_server 10.0.0.101 80 {\n lb_kind MAGIC\n protocol SCTP\n}\n",
        )
        .unwrap();
    assert_eq!(imp.services.len(), 2, "{:?}", imp.unsupported);
    assert_eq!(imp.services[0].proto, Proto::Udp);
    assert_eq!(imp.services[0].dests[0].health, None);
    assert_eq!(
        imp.services[1].laddrs,
        vec!["10.0.1.200".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(imp.services[1].dests[0].fwd, Forward::FullNat);
    let smtp = imp.services[1].dests[0].health.as_ref().unwrap();
    assert_eq!((smtp.kind, smtp.port), (CheckKind::Tcp, Some(25)));
    let u = imp.unsupported.join("\n");
    for want in [
        "line 4: quorum",
        "line 6: DNS_CHECK",
        "line 9: frobnicate",
        "line 19: SMTP_CHECK",
        "line 23: virtual_server [2001:db8::1]:80 (keepalived reads a plain address",
        "line 25: virtual_server 10.0.0.101 80 (protocol SCTP",
        "line 26: lb_kind MAGIC",
    ] {
        assert!(u.contains(want), "{want} missing from:\n{u}");
    }
}

#[test]
fn groups_expand_and_fwmarks_need_the_fwmark_build() {
    let imp = import(
            "virtual_server_group web {\n 10.0.0.1-3 80\n 10.0.0.9 8080\n 10.0.0.x 80\n}\n\
             virtual_server group web {\n lb_algo rr\n real_server 10.0.1.1 80 {\n weight 2\n }\n}\n\
             virtual_server fwmark 7 {\n real_server 10.0.1.1 80 {\n }\n}\n",
        )
        .unwrap();
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert!(
        keys.starts_with(&[
            "TCP 10.0.0.1:80".to_string(),
            "TCP 10.0.0.2:80".into(),
            "TCP 10.0.0.3:80".into(),
            "TCP 10.0.0.9:8080".into()
        ]),
        "{keys:?}"
    );
    assert!(imp.services[..4]
        .iter()
        .all(|s| s.dests.len() == 1 && s.dests[0].weight == 2));
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains("line 4: virtual_server_group web entry 10.0.0.x"),
        "{u}"
    );
    // The fwmark service imports, with a note on marking.
    assert_eq!(imp.services.len(), 5, "{u}");
    assert_eq!(imp.services[4].key().to_string(), "FWM 7");
    assert!(
        u.contains("line 12: virtual_server fwmark 7: imported"),
        "{u}"
    );
}

/// check_parser.c svr_forwarding_handler: `lvs_method TUN type gue port
/// N csum` per virtual or real server.
#[test]
fn tunnel_types_of_lvs_method() {
    use crate::flow::{TunCsum, TunType};
    let imp = import(
        "virtual_server 10.0.0.1 80 {\n lvs_method TUN type gue port 6080 csum\n\
             real_server 10.0.1.1 80 {\n }\n\
             real_server 10.0.1.2 80 {\n  lvs_method TUN type gre\n }\n\
             real_server 10.0.1.3 80 {\n  lvs_method DR\n }\n}\n",
    )
    .unwrap();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    let d = &imp.services[0].dests;
    assert_eq!(
        (d[0].fwd, d[0].tun_type, d[0].tun_port, d[0].tun_csum),
        (
            Forward::Tun,
            Some(TunType::Gue),
            Some(6080),
            Some(TunCsum::Csum)
        )
    );
    assert_eq!(
        (d[1].fwd, d[1].tun_type),
        (Forward::Tun, Some(TunType::Gre))
    );
    assert_eq!((d[2].fwd, d[2].tun_type), (Forward::Dr, None));
}

#[test]
fn loopback_sorry_server_is_dropped_with_a_specific_message() {
    let mut imp = import(
            "virtual_server 10.0.0.100 80 {\n sorry_server 127.0.0.1 80\n real_server 10.0.0.11 80 {\n }\n}\n\
             virtual_server 10.0.0.100 81 {\n sorry_server 10.0.0.10 81\n real_server 10.0.0.11 81 {\n }\n}\n",
        )
        .unwrap();
    imp.drop_local_sorry(&["10.0.0.10".parse().unwrap()]);
    assert!(imp.services.iter().all(|s| s.sorry_server.is_none()));
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains("sorry_server 127.0.0.1:80 is a loopback address"),
        "{u}"
    );
    assert!(
        u.contains("sorry_server 10.0.0.10:81 is the director's own address"),
        "{u}"
    );
}

#[test]
fn includes_follow_globs_relative_to_the_including_file() {
    let dir = std::env::temp_dir().join(format!("rvs-ka-inc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf.d/sub")).unwrap();
    std::fs::write(
            dir.join("keepalived.conf"),
            "global_defs {\n}\ninclude conf.d/*.conf\ninclude conf.d/{x,y}.vs\ninclude missing/*.conf\n",
        )
        .unwrap();
    std::fs::write(
        dir.join("conf.d/a.conf"),
        "virtual_server 10.0.0.1 80 {\n include sub/rs\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("conf.d/sub/rs"), "real_server 10.0.1.1 80 {\n}\n").unwrap();
    std::fs::write(
        dir.join("conf.d/b.conf"),
        "virtual_server 10.0.0.2 80 {\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("conf.d/y.vs"), "virtual_server 10.0.0.3 80 {\n}\n").unwrap();
    let imp = import_file(&dir.join("keepalived.conf")).unwrap();
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(
        keys,
        ["TCP 10.0.0.1:80", "TCP 10.0.0.2:80", "TCP 10.0.0.3:80"]
    );
    assert_eq!(imp.services[0].dests.len(), 1);
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains("line 5: include missing/*.conf (no file matches"),
        "{u}"
    );
    // Text without a file: include is reported, not followed.
    let t = import("include x.conf\nvirtual_server 10.0.0.1 80 {\n}\n").unwrap();
    assert!(
        t.unsupported[0].starts_with("line 1: include"),
        "{:?}",
        t.unsupported
    );
    // An include loop ends.
    std::fs::write(
        dir.join("loop.conf"),
        "include loop.conf\nvirtual_server 10.0.0.1 80 {\n}\n",
    )
    .unwrap();
    let l = import_file(&dir.join("loop.conf")).unwrap();
    assert!(l.unsupported.iter().any(|m| m.contains("nested more than")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn glob_matching() {
    assert!(wildmatch(b"*.conf", b"a.conf"));
    assert!(!wildmatch(b"*.conf", b"a.conf~"));
    assert!(wildmatch(b"a?[0-9][!x]", b"ab7y"));
    assert!(!wildmatch(b"a?[0-9][!x]", b"ab7x"));
    assert_eq!(expand_braces("a{b,c}d{e,f}").len(), 4);
}

#[test]
fn malformed_files_are_errors_not_panics() {
    for bad in [
        "virtual_server 10.0.0.1 80 {",
        "}",
        "",
        "global_defs {\n}\n",
        // keepalived has no [v6]:port form (inet_pton): nothing imports.
        "virtual_server [2001:db8::1]:80 {\n}",
    ] {
        assert!(import(bad).is_err(), "{bad:?}");
    }
    // Bad values are skipped keyword by keyword, as keepalived does.
    let imp = import(
            "virtual_server 10.0.0.1 80 {\n lb_kind MAGIC\n delay_loop soon\n laddr_group_name nope\n real_server 10.0.0.2 80 {\n weight x\n }\n}",
        )
        .unwrap();
    assert_eq!(imp.unsupported.len(), 4, "{:?}", imp.unsupported);
    assert_eq!(imp.services[0].dests[0].weight, 1);
    // Arbitrary bytes never panic.
    let mut rng = crate::prng::Rng(0x9e37_79b9);
    for _ in 0..2000 {
        let s: String = (0..64)
            .map(|_| {
                b"{}\n \"#!abvirtual_server 10.0.0.1 80real_server weight"[rng.below(52)] as char
            })
            .collect();
        let _ = import(&s);
    }
}
