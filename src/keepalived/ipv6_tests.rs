//! IPv6 virtual and real servers (and NAT64), as keepalived reads them:
//! keepalived reads every address with inet_pton and takes an address with
//! a ':' as IPv6 (lib/utils.c inet_stosockaddr); a virtual server's family
//! comes from its address (check_data.c alloc_vs), else from `ip_family`,
//! an IPv6 `persistence_granularity` or its first untunnelled real server
//! (check_parser.c ip_family_handler, pgr_handler, rs_end_handler).

use super::*;
use crate::flow::Forward;

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
/// tunnelled; rvs tunnels IPv6 in IPv4 (an IPv6 virtual server's IPv4
/// real server), not IPv4 in IPv6 yet, and not with GUE/GRE to IPv6 real
/// servers (ipip, IPv6 in IPv6, only).
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
           real_server 10.0.1.17 80 {\n lvs_method TUN type gre\n }\n\
         }\n",
    )
    .unwrap();
    let s = &imp.services[0];
    assert_eq!(s.dests.len(), 3, "{:?}", imp.unsupported);
    assert_eq!(
        (s.dests[0].ip.to_string(), s.dests[0].fwd),
        ("2001:db8::11".into(), Forward::Nat)
    );
    // IPv6 in IPv4 to the IPv4 tunnel real server.
    assert_eq!(
        (s.dests[1].ip.to_string(), s.dests[1].fwd),
        ("10.0.1.13".into(), Forward::Tun)
    );
    // IPv6 in IPv6 (ipip, keepalived's default tunnel type).
    assert_eq!(
        (s.dests[2].ip.to_string(), s.dests[2].fwd),
        ("2001:db8::16".into(), Forward::Tun)
    );
    let u = imp.unsupported.join("\n");
    for want in [
        "line 5: real_server 10.0.1.12 (IPv4 real server of an IPv6 virtual server: the \
         families of a virtual server (IPv6, set by its address 2001:db8::100)",
        "keepalived skips it too, check_parser.c rs_end_handler; skipped)",
        "line 12: real_server 2001:db8::14 (lvs_method TUN type gue to an IPv6 real server: \
         rvs tunnels there with ipip (IPv6 in IPv6) only so far; skipped)",
        "line 18: real_server 10.0.1.17 (lvs_method TUN type gre to an IPv4 real server of \
         an IPv6 virtual server: rvs tunnels there with ipip (IPv6 in IPv4) only so far",
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

/// IPv6 fwmark services, by ip_family inet6, an untunnelled IPv6 real
/// server or a group's `fwmark N inet6`, import as `-f N -6`; a fwmark
/// service whose real servers are all tunnelled takes their family if
/// they agree, else IPv4 (vs_end_handler). A group with entries of the
/// other family is ignored, as keepalived ignores it.
#[test]
fn ipv6_fwmark_services_import_in_their_family() {
    let imp = import(
        "virtual_server fwmark 5 {\n ip_family inet6\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server fwmark 6 {\n persistence_timeout 60\n persistence_granularity 64\n real_server 2001:db8::11 {\n }\n}\n\
         virtual_server fwmark 7 {\n lb_kind TUN\n real_server 2001:db8::11 {\n }\n}\n\
         virtual_server_group g6 {\n fwmark 8 inet6\n fwmark 10 inet\n}\n\
         virtual_server group g6 {\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server fwmark 9 {\n lb_kind TUN\n real_server 2001:db8::11 {\n }\n real_server 10.0.1.1 {\n }\n}\n\
         virtual_server_group g7 {\n fwmark 11 inet6\n}\n\
         virtual_server group g7 {\n lb_kind DR\n}\n",
    )
    .unwrap();
    let u = imp.unsupported.join("\n");
    // A group of both families under IPv6 real servers: keepalived
    // ignores it (link_vsg_to_vs).
    let want = "line 21: virtual_server group g6 (its group has IPv4 and IPv6 entries but line \
                22: real_server 2001:db8::11";
    assert!(u.contains(want), "{want}\nmissing from:\n{u}");
    let keys: Vec<String> = imp.services.iter().map(|s| s.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            "FWM 5 IPv6",
            "FWM 6 IPv6",
            "FWM 7 IPv6",
            "FWM 9",
            "FWM 11 IPv6"
        ]
    );
    // An IPv6 granularity is the prefix length, as IPVS holds it.
    assert_eq!(u32::from(imp.services[1].netmask), 64);
    assert_eq!(imp.services[1].persistent, Some(60));
    assert_eq!(imp.services[0].dests[0].ip.to_string(), "2001:db8::11");
    // Mixed tunnelled real servers: an IPv4 service; the IPv6 one is
    // tunnelled IPv4 in IPv6.
    let ips: Vec<String> = imp.services[3]
        .dests
        .iter()
        .map(|d| d.ip.to_string())
        .collect();
    assert_eq!(ips, ["2001:db8::11", "10.0.1.1"]);
    // Each is one rvsd takes: the control plane's own validation.
    let c = crate::control::Control::new(
        std::sync::Arc::new(crate::conn::ConnTable::new(16, 1)),
        std::sync::Arc::from(vec![crossbeam_utils::CachePadded::new(
            crate::stats::WorkerStats::default(),
        )]),
        vec![],
    );
    let load = serde_json::json!({"cmd": "load", "services": imp.services});
    let r: serde_json::Value = serde_json::from_str(&c.handle_line(&load.to_string())).unwrap();
    assert_eq!(r["ok"], true, "{r}");
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
fn ipv6_syn_proxy_imports_but_not_through_nat64() {
    let imp = import(
        "virtual_server 2001:db8::100 80 {\n lb_kind NAT\n syn_proxy\n real_server 2001:db8::11 80 {\n }\n}\n\
         virtual_server 10.0.0.100 80 {\n syn_proxy\n real_server 10.0.1.11 80 {\n }\n}\n\
         virtual_server 2001:db8::100 443 {\n lb_kind FNAT\n syn_proxy\n laddr_group_name l4\n \
         real_server 10.0.1.11 443 {\n }\n}\n\
         local_address_group l4 {\n 10.0.1.200\n}\n",
    )
    .unwrap();
    assert_eq!(imp.services.len(), 2);
    assert!(imp.services.iter().all(|s| s.synproxy));
    assert_eq!(imp.services[0].key().to_string(), "TCP [2001:db8::100]:80");
    assert_eq!(
        imp.unsupported,
        [
            "line 14: syn_proxy on IPv6 virtual_server 2001:db8::100 443 with IPv4 real server \
             10.0.1.11 (the SYN proxy is not supported through NAT64 yet; virtual_server skipped)"
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
