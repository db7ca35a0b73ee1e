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

// ---- IPv6 -------------------------------------------------------------
//
// keepalived reads every address with inet_pton and takes an address with
// a ':' as IPv6 (lib/utils.c inet_stosockaddr); a virtual server's family
// comes from its address (check_data.c alloc_vs), else from `ip_family`,
// an IPv6 `persistence_granularity` or its first untunnelled real server
// (check_parser.c ip_family_handler, pgr_handler, rs_end_handler).

/// A NAT service in both families: the IPv6 file imports exactly the
/// objects the IPv4 one does, with IPv6 address strings.
const NAT_V4: &str = "
virtual_server 192.0.2.100 80 {
    delay_loop 6
    lb_algo wlc
    lb_kind NAT
    persistence_timeout 50
    protocol TCP
    sorry_server 198.51.100.200 8080

    real_server 198.51.100.11 8080 {
        weight 3
        inhibit_on_failure
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 3
            retry 2
            delay_before_retry 2
        }
    }
    real_server 198.51.100.12 8080 {
        TCP_CHECK {
            connect_port 8080
        }
    }
}
";

fn v6_of(text: &str) -> String {
    text.replace("192.0.2.100", "2001:db8::100")
        .replace("198.51.100.", "2001:db8:1::")
}

#[test]
fn ipv6_nat_service_imports_as_the_ipv4_one_does() {
    let v4 = import(NAT_V4).unwrap();
    let v6 = import(&v6_of(NAT_V4)).unwrap();
    assert!(v6.unsupported.is_empty(), "{:?}", v6.unsupported);
    assert_eq!(v6.services.len(), 1);
    let s = &v6.services[0];
    assert_eq!(s.key().to_string(), "TCP [2001:db8::100]:80");
    // No granularity: the IPv6 service keeps the default mask, which the
    // control plane requires of a persistent IPv6 service (/128).
    assert_eq!((s.persistent, s.netmask), (Some(50), Ipv4Addr::BROADCAST));
    assert_eq!(
        s.dests.iter().map(|d| d.ip.to_string()).collect::<Vec<_>>(),
        ["2001:db8:1::11", "2001:db8:1::12"]
    );
    assert!(s.dests.iter().all(|d| d.fwd == Forward::Nat));
    let h = s.dests[0].health.as_ref().unwrap();
    assert_eq!(
        (h.kind, h.retries, h.on_failure),
        (CheckKind::Http, 3, OnFailure::Quiesce)
    );
    let json = |i: &Import| serde_json::to_string(&i.services).unwrap();
    assert_eq!(json(&v6), v6_of(&json(&v4)));
}

/// DR, with `persistence_granularity 128` (pgr_handler: a prefix length
/// for an IPv6 virtual server; without persistence_timeout it makes the
/// service persistent with IPVS_SVC_PERSISTENT_TIMEOUT).
#[test]
fn ipv6_dr_with_granularity_128() {
    let imp = import(
        "virtual_server 2001:db8::100 443 {\n\
         \x20   lb_algo rr\n    lb_kind DR\n    protocol TCP\n    persistence_granularity 128\n\
         \x20   real_server 2001:db8::11 443 {\n        TCP_CHECK {\n            connect_timeout 2\n        }\n    }\n\
         \x20   real_server 2001:db8::12 443 {\n    }\n}\n",
    )
    .unwrap();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    let s = &imp.services[0];
    assert_eq!(s.key().to_string(), "TCP [2001:db8::100]:443");
    assert_eq!(
        (s.persistent, s.netmask),
        (
            Some(crate::service::DEFAULT_PERSISTENT_TIMEOUT),
            Ipv4Addr::BROADCAST
        )
    );
    assert!(s
        .dests
        .iter()
        .all(|d| d.fwd == Forward::Dr && d.ip.is_ipv6()));
}

/// pgr_handler: an IPv6 virtual server's granularity is a prefix length
/// 1..128, which IPVS keeps as the service's netmask (ipvswrapper.c
/// ipvs_set_srule; the kernel's ip_vs_add_service takes 1..128): rvs's
/// `"netmask": 64`. An IPv4 netmask given to an IPv6 virtual server is
/// ignored by keepalived ("Invalid IPv6 persistence_granularity").
#[test]
fn ipv6_persistence_granularity_is_a_prefix_length() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n  persistence_timeout 600\n  persistence_granularity 64\n  \
         real_server 2001:db8::11 80 {\n  }\n}\n\
         virtual_server 2001:db8::101 80 {\n  persistence_granularity 255.255.255.0\n  \
         real_server 2001:db8::11 80 {\n  }\n}\n\
         virtual_server 2001:db8::102 80 {\n  persistence_granularity 129\n  \
         real_server 2001:db8::11 80 {\n  }\n}\n",
    )
    .unwrap();
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "TCP [2001:db8::100]:80",
            "TCP [2001:db8::101]:80",
            "TCP [2001:db8::102]:80"
        ]
    );
    let s = &imp.services[0];
    // Held as the kernel holds it (the number in the u32), shown as 64.
    assert_eq!(
        (s.persistent, s.netmask),
        (Some(600), Ipv4Addr::from(64u32))
    );
    let j = serde_json::to_value(s).unwrap();
    assert_eq!(j["netmask"], 64);
    // Ignored, so neither a granularity nor persistent (pgr_handler
    // returns before setting the timeout).
    for s in &imp.services[1..] {
        assert_eq!((s.persistent, s.netmask), (None, Ipv4Addr::BROADCAST));
    }
    let u = imp.unsupported.join("\n");
    for want in [
        "line 8: persistence_granularity \"255.255.255.0\" (an IPv6 virtual server's \
         granularity is a prefix length 1..128; ignored, as keepalived does)",
        "line 13: persistence_granularity \"129\" (an IPv6",
    ] {
        assert!(u.contains(want), "{want}\nmissing from:\n{u}");
    }
    assert_eq!(imp.unsupported.len(), 2, "{u}");
}

/// rs_end_handler: a real server of the other family is skipped unless
/// tunnelled; rvs does not tunnel across families yet, nor with GUE/GRE to
/// IPv6 real servers (ipip, IPv6 in IPv6, only).
#[test]
fn mixed_family_and_ipv6_tunnel_real_servers_are_skipped() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n\
           lb_kind NAT\n\
           real_server 2001:db8::11 80 {\n }\n\
           real_server 10.0.1.12 80 {\n TCP_CHECK {\n }\n }\n\
           real_server 10.0.1.13 80 {\n lvs_method TUN\n }\n\
           real_server 2001:db8::14 80 {\n lvs_method TUN type gue port 6080\n }\n\
           real_server 2001:db8::16 80 {\n lvs_method TUN\n }\n\
         }\n",
    )
    .unwrap();
    let s = &imp.services[0];
    assert_eq!(s.dests.len(), 2, "{:?}", imp.unsupported);
    assert_eq!(
        (s.dests[0].ip.to_string(), s.dests[0].fwd),
        ("2001:db8::11".into(), Forward::Nat)
    );
    // IPv6 in IPv6 (ipip, keepalived's default tunnel type).
    assert_eq!(
        (s.dests[1].ip.to_string(), s.dests[1].fwd),
        ("2001:db8::16".into(), Forward::Tun)
    );
    let u = imp.unsupported.join("\n");
    for want in [
        "line 5: real_server 10.0.1.12 (IPv4 real server of an IPv6 virtual server: the \
         families of a virtual server (IPv6, set by its address 2001:db8::100)",
        "keepalived skips it too, check_parser.c rs_end_handler; skipped)",
        "line 9: real_server 10.0.1.13 (IPv4 real server of an IPv6 virtual server: \
         keepalived has IPVS tunnel",
        "line 12: real_server 2001:db8::14 (lvs_method TUN type gue to an IPv6 real server: \
         rvs tunnels to IPv6 real servers with ipip (IPv6 in IPv6) only so far; skipped)",
    ] {
        assert!(u.contains(want), "{want}\nmissing from:\n{u}");
    }
    // The skipped real server's checker is not reported on its own.
    assert!(!u.contains("TCP_CHECK"), "{u}");
    assert_eq!(imp.unsupported.len(), 3, "{u}");
    // With no real server left for an rvs reason the block is skipped.
    let e = import("virtual_server 2001:db8::100 80 {\n lb_kind TUN type gre\n real_server 2001:db8::11 80 {\n }\n}\n")
        .unwrap_err();
    assert!(
        e.contains("line 3: real_server 2001:db8::11 (lvs_method TUN type gre"),
        "{e}"
    );
    assert!(
        e.contains("line 1: virtual_server 2001:db8::100 80 (none of its real servers"),
        "{e}"
    );
    // And the reverse: an IPv6 real server of an IPv4 virtual server, by
    // NAT or FULLNAT (NAT64 goes from IPv6 to IPv4 only).
    let imp = import(
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n real_server 2001:db8::1 80 {\n }\n\
         real_server 2001:db8::2 80 {\n lvs_method FNAT\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services[0].dests.len(), 1);
    assert!(imp.unsupported[0]
        .starts_with("line 4: real_server 2001:db8::1 (IPv6 real server of an IPv4"));
    assert!(
        imp.unsupported[1].starts_with(
            "line 6: real_server 2001:db8::2 (IPv6 real server of an IPv4 virtual server: \
             FULLNAT from an IPv4 virtual server reaches IPv4 real servers only"
        ),
        "{:?}",
        imp.unsupported
    );
}

/// DPVS FULLNAT: a local_address_group may hold both families (`ADDR
/// IFNAME`, ranges as inet_stor reads them). An IPv6 service takes them
/// all (IPv4 ones serve its IPv4 real servers: NAT64), an IPv4 one its
/// IPv4 ones; each FULLNAT real server needs one of its own family.
#[test]
fn fullnat_local_addresses_by_family() {
    let imp = import(
        "local_address_group laddr_g1 {\n\
         \x20   2001:db8:2::10 dpdk0\n    2001:db8:2::20-21 dpdk0\n    192.168.88.240 dpdk0\n}\n\
         virtual_server 2001:db8::100 443 {\n\
         \x20   lb_algo rr\n    lb_kind FNAT\n    protocol TCP\n    laddr_group_name laddr_g1\n\
         \x20   real_server 2001:db8:1::11 443 {\n        weight 100\n        inhibit_on_failure\n\
         \x20       TCP_CHECK {\n            retry 1\n            connect_timeout 1\n            connect_port 443\n        }\n    }\n}\n\
         virtual_server 192.168.88.1 80 {\n    lb_kind FNAT\n    laddr_group_name laddr_g1\n\
         \x20   real_server 192.168.88.30 80 {\n    }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 2, "{:?}", imp.unsupported);
    let s6 = &imp.services[0];
    assert_eq!(
        s6.laddrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        [
            "2001:db8:2::10",
            "2001:db8:2::20",
            "2001:db8:2::21",
            "192.168.88.240"
        ]
    );
    assert_eq!(
        (s6.dests[0].fwd, s6.dests[0].weight),
        (Forward::FullNat, 100)
    );
    let s4 = &imp.services[1];
    assert_eq!(s4.laddrs, vec!["192.168.88.240".parse::<IpAddr>().unwrap()]);
    let u = imp.unsupported.join("\n");
    for ip in ["2001:db8:2::10", "2001:db8:2::20", "2001:db8:2::21"] {
        let want = format!(
            "line 23: laddr_group_name laddr_g1: local address {ip} (IPv6 local address of an \
             IPv4 virtual server"
        );
        assert!(u.contains(&want), "{want}\nmissing from:\n{u}");
    }
    assert_eq!(imp.unsupported.len(), 3, "{u}");
    // FULLNAT with no local address of the real server's family cannot
    // run: skipped.
    let imp = import(
        "local_address_group v4only {\n 10.0.9.1 dpdk0\n}\n\
         virtual_server 2001:db8::100 80 {\n lb_kind FNAT\n laddr_group_name v4only\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 1);
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains(
            "line 4: virtual_server 2001:db8::100 80 (FULLNAT to 2001:db8::11 needs an IPv6 \
             local address"
        ),
        "{u}"
    );
}

/// IPv6 fwmark services (ip_family inet6, an untunnelled IPv6 real server,
/// a group's `fwmark N inet6`) are refused by rvs; a fwmark service whose
/// real servers are all tunnelled takes their family if they agree, else
/// IPv4 (vs_end_handler).
#[test]
fn ipv6_fwmark_services_are_refused() {
    let imp = import(
        "virtual_server fwmark 5 {\n ip_family inet6\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server fwmark 6 {\n real_server 2001:db8::11 {\n }\n}\n\
         virtual_server fwmark 7 {\n lb_kind TUN\n real_server 2001:db8::11 {\n }\n}\n\
         virtual_server_group g6 {\n fwmark 8 inet6\n}\n\
         virtual_server group g6 {\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server fwmark 9 {\n lb_kind TUN\n real_server 2001:db8::11 {\n }\n real_server 10.0.1.1 {\n }\n}\n",
    )
    .unwrap();
    let u = imp.unsupported.join("\n");
    for want in [
        "line 1: virtual_server fwmark 5 (an IPv6 fwmark service, by line 2: ip_family inet6: \
         IPv6 fwmark services are not supported by rvs yet; skipped)",
        "line 6: virtual_server fwmark 6 (an IPv6 fwmark service, by line 7: real_server \
         2001:db8::11",
        "line 10: virtual_server fwmark 7 (an IPv6 fwmark service, by its (tunnelled) real \
         servers, all IPv6",
        "line 18: virtual_server group g6 (an IPv6 fwmark service, by its group entry fwmark 8 \
         inet6",
        // Mixed tunnelled real servers: IPv4; the IPv6 one cannot be
        // tunnelled across families by rvs.
        "line 24: real_server 2001:db8::11 (IPv6 real server of an IPv4 virtual server: \
         keepalived has IPVS tunnel",
    ] {
        assert!(u.contains(want), "{want}\nmissing from:\n{u}");
    }
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(keys, ["FWM 9"]);
    assert_eq!(imp.services[0].dests[0].ip.to_string(), "10.0.1.1");
}

/// ip_family_handler: a family that conflicts with the address is ignored.
#[test]
fn ip_family_conflicting_with_the_address_is_ignored() {
    let imp = import(
        "virtual_server 10.0.0.1 80 {\n ip_family inet6\n real_server 10.0.1.1 80 {\n }\n}\n\
         virtual_server 2001:db8::1 80 {\n ip_family inet6\n real_server 2001:db8::11 80 {\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 2);
    assert_eq!(
        imp.unsupported,
        ["line 2: ip_family inet6 (conflicts with its address 10.0.0.1; ignored, as keepalived does)"]
    );
}

/// virtual_server_group IPv6 entries: `ADDR-END` ranges in the last
/// 16-bit group, END in hex (lib/utils.c inet_stor); a group whose family
/// differs from its real servers' is ignored by keepalived
/// (ipwrapper.c link_vsg_to_vs).
#[test]
fn ipv6_groups_expand_and_must_match_their_real_servers() {
    let imp = import(
        "virtual_server_group v6 {\n 2001:db8::9-b 80\n 2001:db8::100 8080\n}\n\
         virtual_server group v6 {\n lb_kind DR\n real_server 2001:db8:1::1 80 {\n }\n}\n\
         virtual_server_group mixed {\n 10.0.0.1 80\n 2001:db8::1 80\n}\n\
         virtual_server group mixed {\n real_server 10.0.1.1 80 {\n }\n}\n\
         virtual_server group v6 {\n real_server 10.0.1.1 80 {\n }\n}\n",
    )
    .unwrap();
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "TCP [2001:db8::9]:80",
            "TCP [2001:db8::a]:80",
            "TCP [2001:db8::b]:80",
            "TCP [2001:db8::100]:8080"
        ]
    );
    let u = imp.unsupported.join("\n");
    assert!(
        u.contains("line 14: virtual_server group mixed (its group has IPv4 and IPv6 entries but line 15: real_server 10.0.1.1 makes the virtual server IPv4"),
        "{u}"
    );
    assert!(
        u.contains("line 18: virtual_server group v6 (its group has IPv6 entries but line 19: real_server 10.0.1.1"),
        "{u}"
    );
    assert_eq!(imp.unsupported.len(), 2, "{u}");
    assert_eq!(
        group_range("ae00::2-9").map(|v| v.len()),
        Some(8),
        "keepalived's doc/samples/keepalived.conf.IPv6 range"
    );
    assert_eq!(
        group_range("2001:db8::1-2001:db8::3").map(|v| v.len()),
        Some(3)
    );
    for bad in [
        "2001:db8::5-5",
        "2001:db8::5-4",
        "2001:db8::1-2001:db9::3",
        "2001:db8::1-g",
        "2001:db8::1-",
    ] {
        assert_eq!(group_range(bad), None, "{bad}");
    }
}

/// vs_end_handler: an untunnelled sorry server of the other family is
/// dropped by keepalived; an IPv6 loopback one (LOCALNODE) rvs cannot
/// serve for IPv6 yet. The service imports without it. An IPv6 TUN sorry
/// server is IPv6 in IPv6, as for real servers.
#[test]
fn ipv6_sorry_servers_rvs_cannot_use_are_dropped() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n sorry_server 10.0.0.200 80\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server 2001:db8::100 81 {\n sorry_server ::1 81\n real_server 2001:db8::11 81 {\n }\n}\n\
         virtual_server 2001:db8::100 82 {\n sorry_server 2001:db8::200 82\n sorry_server_lvs_method TUN\n real_server 2001:db8::11 82 {\n }\n}\n\
         virtual_server 2001:db8::100 83 {\n lb_kind DR\n sorry_server 2001:db8::200 83\n real_server 2001:db8::11 83 {\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 4);
    assert!(imp.services[..2].iter().all(|s| s.sorry_server.is_none()));
    let tun = imp.services[2].sorry_server.as_ref().unwrap();
    assert_eq!(
        (tun.ip.to_string(), tun.fwd),
        ("2001:db8::200".into(), Forward::Tun)
    );
    let sorry = imp.services[3].sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.ip.to_string(), sorry.fwd),
        ("2001:db8::200".into(), Forward::Dr)
    );
    let u = imp.unsupported.join("\n");
    for want in [
        "line 2: sorry_server 10.0.0.200 (IPv4 sorry server of a virtual server that is IPv6 \
         by its address 2001:db8::100: keepalived skips it too",
        "line 7: sorry_server ::1 (IPVS would deliver it to the director's own stack \
         (LOCALNODE), which rvs does not do for IPv6 yet",
    ] {
        assert!(u.contains(want), "{want}\nmissing from:\n{u}");
    }
    assert_eq!(imp.unsupported.len(), 2, "{u}");
}

/// DPVS's syn_proxy on an IPv6 service: refused by rvs, the block skipped.
#[test]
fn ipv6_syn_proxy_is_refused() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n lb_kind NAT\n syn_proxy\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server 10.0.0.100 80 {\n syn_proxy\n real_server 10.0.1.11 80 {\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 1);
    assert!(imp.services[0].synproxy);
    assert_eq!(
        imp.unsupported,
        [
            "line 3: syn_proxy on IPv6 virtual_server 2001:db8::100 80 (the SYN proxy is not \
          supported for IPv6 services yet; virtual_server skipped)"
        ]
    );
}

/// `virtual_server 2001:db8::100:80 {` is one address and no port, as for
/// keepalived (inet_pton): validate_check_config makes a port-0 service
/// persistent; the note says how to write the port.
#[test]
fn an_ipv6_address_without_port_is_a_persistent_port_0_service() {
    let imp = import("virtual_server 2001:db8::100:80 {\n real_server 2001:db8::11 80 {\n }\n}\n")
        .unwrap();
    let s = &imp.services[0];
    assert_eq!(s.key().to_string(), "TCP [2001:db8::100:80]:0");
    assert_eq!(
        s.persistent,
        Some(crate::service::DEFAULT_PERSISTENT_TIMEOUT)
    );
    assert!(
        imp.unsupported[0].ends_with("two words: `virtual_server 2001:db8::100 80`)"),
        "{:?}",
        imp.unsupported
    );
    // Brackets or a zone are not keepalived's syntax: the block is skipped.
    for bad in ["[2001:db8::100] 80", "fe80::1%eth0 80"] {
        let e = import(&format!(
            "virtual_server {bad} {{\n real_server 2001:db8::11 80 {{\n }}\n}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("keepalived reads a plain address"), "{e}");
    }
}

/// check_parser.c pto_handler: a persistence_timeout outside
/// 1..LVS_MAX_TIMEOUT is "invalid" and ignored (rvs's control plane
/// refuses 0, which would fail the whole import's load).
#[test]
fn persistence_timeout_0_is_ignored_as_keepalived_does() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n persistence_timeout 0\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server 10.0.0.1 80 {\n persistence_timeout 0\n persistence_granularity 255.255.255.0\n real_server 10.0.1.1 80 {\n }\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services[0].persistent, None);
    // pgr_handler then makes it persistent with the default timeout.
    assert_eq!(
        imp.services[1].persistent,
        Some(crate::service::DEFAULT_PERSISTENT_TIMEOUT)
    );
    assert!(
        imp.unsupported[0]
            .starts_with("line 2: persistence_timeout 0 (keepalived takes 1..2678400"),
        "{:?}",
        imp.unsupported
    );
}

/// DPVS's doc/containerized/keepalived.conf (iqiyi/dpvs), cut down: an
/// IPv4 and an IPv6 VIP, both FNAT to IPv4 real servers with IPv4 local
/// addresses (`ADDR IFNAME`). The IPv6 one is DPVS's NAT64, which rvs's
/// control plane takes (control/validate.rs check_family): both import.
#[test]
fn dpvs_nat64_sample_imports() {
    let imp = import(
        "local_address_group laddr_g1 {\n    192.168.88.240 dpdk0.102\n    192.168.88.241 dpdk0.102\n}\n\
         virtual_server_group 192.168.88.1-80-TCP_QLB {\n    192.168.88.1 80\n}\n\
         virtual_server group 192.168.88.1-80-TCP_QLB {\n    delay_loop 3\n    lb_algo rr\n    lb_kind FNAT\n    protocol TCP\n    laddr_group_name laddr_g1\n\
         \x20   real_server 192.168.88.30 80 {\n        weight 100\n        inhibit_on_failure\n        TCP_CHECK {\n            retry 1\n            connect_timeout 1\n            connect_port 80\n        }\n    }\n}\n\
         virtual_server_group 2001::1-80-TCP_QLB {\n    2001::1 80\n}\n\
         virtual_server group 2001::1-80-TCP_QLB {\n    delay_loop 3\n    lb_algo rr\n    lb_kind FNAT\n    protocol TCP\n    laddr_group_name laddr_g1\n\
         \x20   real_server 192.168.88.30 80 {\n        weight 100\n    }\n    real_server 192.168.88.130 8080 {\n        weight 100\n    }\n}\n",
    )
    .unwrap();
    assert!(imp.unsupported.is_empty(), "{:?}", imp.unsupported);
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(keys, ["TCP 192.168.88.1:80", "TCP [2001::1]:80"]);
    let s6 = &imp.services[1];
    assert_eq!(s6.laddrs.len(), 2);
    assert_eq!(
        s6.dests
            .iter()
            .map(|d| (d.ip.to_string(), d.port, d.fwd))
            .collect::<Vec<_>>(),
        [
            ("192.168.88.30".to_string(), 80, Forward::FullNat),
            ("192.168.88.130".to_string(), 8080, Forward::FullNat)
        ]
    );
}
