use super::*;

pub(super) fn ctl() -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    Control::new(
        Arc::new(ConnTable::new(100, 4)),
        workers,
        vec!["10.0.1.1".parse().unwrap()],
    )
}

pub(super) fn ok(c: &Control, line: &str) -> Value {
    let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
    assert_eq!(r["ok"], true, "{line} -> {r}");
    r
}

#[test]
fn every_applied_change_and_only_those_reach_the_state_file() {
    let dir = std::env::temp_dir().join(format!("rvs-ctl-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.json");
    let mut c = ctl();
    c.state_file = Some(crate::statefile::StateFile::new(&path));
    let saved = || crate::statefile::StateFile::new(&path).read().unwrap();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#,
    );
    let after_add = saved().unwrap();
    assert_eq!(after_add.services, c.services());
    let dump = ok(&c, r#"{"cmd":"dump"}"#);
    assert_eq!(
        serde_json::to_value(&after_add.services).unwrap(),
        dump["services"]
    );
    // A refused change leaves the file as it was; so does a read.
    std::fs::remove_file(&path).unwrap();
    err(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#,
    );
    ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(saved(), None);
    ok(&c, r#"{"cmd":"clear"}"#);
    assert_eq!(saved().unwrap().services, vec![]);
    // Sync daemons started and stopped are recorded too (a restarted
    // rvsd starts a backup daemon from them).
    ok(
        &c,
        r#"{"cmd":"start_daemon","state":"master","mcast_ifn":"lo","syncid":9}"#,
    );
    let sync = saved().unwrap().sync;
    assert_eq!(sync.len(), 1, "{sync:?}");
    assert_eq!(sync[0].state, crate::sync::Role::Master);
    assert_eq!(
        (sync[0].conf.mcast_ifn.as_str(), sync[0].conf.syncid),
        ("lo", 9)
    );
    ok(&c, r#"{"cmd":"stop_daemon","state":"master"}"#);
    assert!(saved().unwrap().sync.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

pub(super) fn err(c: &Control, line: &str) -> (String, String) {
    let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
    let e = &r["error"];
    assert!(e.is_object(), "{line} -> {r}");
    (
        e["code"].as_str().unwrap().into(),
        e["message"].as_str().unwrap().into(),
    )
}

pub(super) const SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;

/// DR/TUN real servers (and sorry servers) on another port are stored
/// with the service's port, as ipvsadm sends them (ipvsadm.c
/// `process_options`: `ce.dest.port = ce.svc.port`); the kernel's
/// threshold check (`ip_vs_add_dest`: l_threshold > u_threshold is
/// -ERANGE, with or without an upper threshold); any -M mask, with or
/// without -p (the kernel checks IPv6 prefix lengths only).
#[test]
fn ipvsadm_port_threshold_and_mask_rules() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
                "sorry_server":{"ip":"10.0.1.13","port":8081}}}"#,
    );
    for (ip, fwd) in [("10.0.1.11", "dr"), ("10.0.1.12", "tun")] {
        ok(
            &c,
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{ip}","port":8000,"fwd":"{fwd}"}}}}"#
            ),
        );
    }
    ok(
        &c,
        &format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.14","port":8000,"fwd":"nat"}}}}"#
        ),
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    let ports: Vec<_> = l["services"][0]["dests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["ip"].clone(), d["port"].clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (json!("10.0.1.11"), json!(80)),
            (json!("10.0.1.12"), json!(80)),
            (json!("10.0.1.14"), json!(8000))
        ]
    );
    assert_eq!(l["services"][0]["sorry_server"]["port"], 80);
    let (code, msg) = err(
        &c,
        &format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.15","fwd":"nat","l_threshold":5}}}}"#
        ),
    );
    assert_eq!(
        (code.as_str(), msg.contains("threshold")),
        ("invalid", true)
    );
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"netmask":"0.0.0.24"}}"#,
    );
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.102","port":80,"persistent":60,"netmask":"255.0.255.0"}}"#,
    );
}

const RULES: &str = r#"[{"mark":1,"dst":"10.0.0.100/32","proto":"tcp","ports":"80,443"},
        {"mark":2,"dst":"10.0.2.0/24","proto":"udp","ports":"1000-2000"}]"#;

#[test]
fn fwmark_service_round_trip() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"fwmark":1,"sched":"rr","persistent":300}}"#,
    );
    // Real servers without a port keep port 0 (the packet's port), as
    // ipvsadm's `-r ip` under `-f` (svc.port is 0); DR may not map
    // ports elsewhere, but a fwmark service has none to map.
    ok(
        &c,
        r#"{"cmd":"add_dest","service":{"fwmark":1},"dest":{"ip":"10.0.1.11","fwd":"nat"}}"#,
    );
    ok(
        &c,
        r#"{"cmd":"add_dest","service":{"fwmark":1,"af":"inet"},"dest":{"ip":"10.0.1.12","port":8443,"fwd":"dr"}}"#,
    );
    ok(
        &c,
        &format!(r#"{{"cmd":"set_fwmark_rules","rules":{RULES}}}"#),
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    let s = &l["services"][0];
    assert_eq!(s["fwmark"], 1);
    assert_eq!(s["persistent"], 300);
    for k in ["proto", "vip", "port", "af"] {
        assert!(s.get(k).is_none(), "{k} in {s}");
    }
    assert_eq!(s["dests"][0]["port"], 0);
    assert_eq!(s["dests"][1]["port"], 8443);
    let d = ok(&c, r#"{"cmd":"dump"}"#);
    assert_eq!(
        d["services"][0],
        json!({"fwmark": 1, "sched": "rr", "persistent": 300, "netmask": "255.255.255.255",
                   "dests": [
                     {"ip": "10.0.1.11", "port": 0, "weight": 1, "fwd": "nat", "u_threshold": 0, "l_threshold": 0},
                     {"ip": "10.0.1.12", "port": 8443, "weight": 1, "fwd": "dr", "u_threshold": 0, "l_threshold": 0}]})
    );
    let rules: Value = serde_json::from_str(RULES).unwrap();
    assert_eq!(d["fwmark_rules"], rules);
    // What dump gives, load takes: into a fresh daemon, identically.
    let c2 = ctl();
    ok(
        &c2,
        &json!({"cmd": "load", "services": d["services"], "fwmark_rules": d["fwmark_rules"]})
            .to_string(),
    );
    let d2 = ok(&c2, r#"{"cmd":"dump"}"#);
    assert_eq!(d, d2);
    // The snapshot: the /32 rule's address is answered for (a VIP), the
    // classifier is the one configured.
    let t = c2.table.load();
    assert!(t.is_vip("10.0.0.100".parse().unwrap()));
    assert_eq!(t.fwmark_rules().len(), 2);
    let svc = t
        .find_new(Proto::Tcp, "10.0.0.100".parse().unwrap(), 443, true)
        .unwrap();
    assert_eq!(svc.conf.fwmark, 1);
    // Mark 2 has no service: falls through to the (absent) VIP service.
    assert!(t
        .find_new(Proto::Udp, "10.0.2.9".parse().unwrap(), 1500, false)
        .is_none());
    // del_dest / zero / del_service by mark.
    ok(
        &c,
        r#"{"cmd":"del_dest","service":{"fwmark":1},"dest":{"ip":"10.0.1.11"}}"#,
    );
    ok(&c, r#"{"cmd":"zero","service":{"fwmark":1}}"#);
    assert_eq!(
        err(&c, r#"{"cmd":"del_service","service":{"fwmark":2}}"#).0,
        "not_found"
    );
    ok(&c, r#"{"cmd":"del_service","service":{"fwmark":1}}"#);
    assert!(ok(&c, r#"{"cmd":"list"}"#)["services"]
        .as_array()
        .unwrap()
        .is_empty());
    // ipvsadm -C leaves the firewall alone: the rules stay.
    ok(&c, r#"{"cmd":"clear"}"#);
    assert_eq!(ok(&c, r#"{"cmd":"dump"}"#)["fwmark_rules"], rules);
}

#[test]
fn ipv6_fwmark_services_are_their_own_family() {
    // ipvsadm -A -f 1 -6: mark 1 of IPv6 is another service than mark 1 of
    // IPv4 (the kernel's __ip_vs_svc_fwm_find keys on af and mark), its
    // real servers are IPv6 (or IPv4 through FULLNAT: NAT64), and the
    // IPv6 rules' marks select it.
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"fwmark":1,"sched":"rr","dests":[{"ip":"10.0.1.11","fwd":"nat"}]}}"#,
    );
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"fwmark":1,"af":"inet6","sched":"sh","persistent":60,"netmask":64,"dests":[{"ip":"2001:db8:1::11","fwd":"nat"}]}}"#,
    );
    ok(
        &c,
        r#"{"cmd":"add_dest","service":{"fwmark":1,"af":"inet6"},"dest":{"ip":"2001:db8:1::12","port":8443,"fwd":"dr"}}"#,
    );
    let (code, msg) = err(
        &c,
        r#"{"cmd":"add_dest","service":{"fwmark":1,"af":"inet6"},"dest":{"ip":"10.0.1.13","fwd":"nat"}}"#,
    );
    assert_eq!(code, "unsupported", "{msg}");
    let (code, msg) = err(
        &c,
        r#"{"cmd":"add_dest","service":{"fwmark":1},"dest":{"ip":"2001:db8:1::13","fwd":"nat"}}"#,
    );
    assert_eq!(code, "unsupported", "{msg}");
    ok(
        &c,
        r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"2001:db8::100","proto":"tcp","ports":"80,443"},{"mark":1,"dst":"10.0.0.100","proto":"tcp","ports":"80,443"},{"mark":2,"dst":"2001:db8:5::/48"}]}"#,
    );
    let d = ok(&c, r#"{"cmd":"dump"}"#);
    assert_eq!(d["services"][1]["af"], "inet6", "{d}");
    assert_eq!(d["services"][1]["netmask"], 64, "{d}");
    assert_eq!(d["services"][1]["dests"][1]["port"], 8443, "{d}");
    // What dump gives, load takes.
    let c2 = ctl();
    ok(
        &c2,
        &json!({"cmd": "load", "services": d["services"], "fwmark_rules": d["fwmark_rules"]})
            .to_string(),
    );
    assert_eq!(ok(&c2, r#"{"cmd":"dump"}"#), d);
    let t = c2.table.load();
    // The /128 rule's address is a VIP (NS, echo); the /48 is routed.
    assert!(t.is_vip("2001:db8::100".parse().unwrap()));
    assert!(t.is_vip("10.0.0.100".parse().unwrap()));
    assert!(!t.is_vip("2001:db8:5::1".parse().unwrap()));
    let v6 = t
        .find_new6(Proto::Tcp, "2001:db8::100".parse().unwrap(), 443, true)
        .unwrap();
    assert_eq!(v6.conf.key(), ServiceKey::fwmark(1, true));
    let v4 = t
        .find_new(Proto::Tcp, "10.0.0.100".parse().unwrap(), 443, true)
        .unwrap();
    assert_eq!(v4.conf.key(), ServiceKey::fwmark(1, false));
    // Mark 2 has no IPv6 service: nothing, as in the kernel.
    assert!(t
        .find_new6(Proto::Udp, "2001:db8:5::9".parse().unwrap(), 53, false)
        .is_none());
    // del_service by mark and family leaves the other family's alone.
    ok(
        &c,
        r#"{"cmd":"del_service","service":{"fwmark":1,"af":"inet6"}}"#,
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(l["services"].as_array().unwrap().len(), 1, "{l}");
    assert!(l["services"][0].get("af").is_none(), "{l}");
}

#[test]
fn fwmark_bad_input_is_refused_and_changes_nothing() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"fwmark":1,"sched":"rr","dests":[{"ip":"10.0.1.11","fwd":"nat"}]}}"#,
    );
    ok(
        &c,
        &format!(r#"{{"cmd":"set_fwmark_rules","rules":{RULES}}}"#),
    );
    let before = ok(&c, r#"{"cmd":"dump"}"#);
    for (line, code, text) in [
        (
            r#"{"cmd":"add_service","service":{"fwmark":1,"proto":"tcp"}}"#,
            "bad_request",
            "no `proto`",
        ),
        (
            r#"{"cmd":"add_service","service":{"fwmark":0}}"#,
            "bad_request",
            "invalid fwmark 0",
        ),
        (
            r#"{"cmd":"add_service","service":{"fwmark":1,"fwmark":2}}"#,
            "bad_request",
            "duplicate field",
        ),
        (
            r#"{"cmd":"add_service","service":{"fwmark":3,"af":"inet6","dests":[{"ip":"10.0.1.12","fwd":"nat"}]}}"#,
            "unsupported",
            "other address family",
        ),
        (
            r#"{"cmd":"add_service","service":{"fwmark":1}}"#,
            "exists",
            "Service already exists",
        ),
        (
            r#"{"cmd":"add_dest","service":{"fwmark":1,"port":80},"dest":{"ip":"10.0.1.12"}}"#,
            "bad_request",
            "mark alone",
        ),
        (
            r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.0.0/16"},{"mark":3,"dst":"10.0.0.100","proto":"tcp","ports":"443"}]}"#,
            "invalid",
            "fwmark_rules[1]: can never match",
        ),
        (
            r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.1.1"}]}"#,
            "invalid",
            "director's own address",
        ),
        (
            r#"{"cmd":"set_fwmark_rules","rules":[{"mark":1,"dst":"10.0.0.1/24","ports":"9-1"}]}"#,
            "invalid",
            "host bits set",
        ),
        (
            r#"{"cmd":"load","services":[],"fwmark_rules":[{"mark":0,"dst":"10.0.0.1"}]}"#,
            "invalid",
            "mark must be",
        ),
    ] {
        let (got, msg) = err(&c, line);
        assert_eq!(got, code, "{line}: {msg}");
        assert!(msg.contains(text), "{line}: {msg}");
    }
    assert_eq!(ok(&c, r#"{"cmd":"dump"}"#), before);
    // `load` without fwmark_rules keeps the rules (as ipvsadm -R).
    ok(
        &c,
        &json!({"cmd": "load", "services": before["services"]}).to_string(),
    );
    assert_eq!(ok(&c, r#"{"cmd":"dump"}"#), before);
    // DR servers of a fwmark service may have any port, sorry server too.
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"fwmark":4,"sorry_server":{"ip":"10.0.1.13","port":8080,"fwd":"dr"},
                "dests":[{"ip":"10.0.1.11","port":443,"fwd":"dr"}]}}"#,
    );
    // Elsewhere a DR sorry server takes the service's port, as ipvsadm.
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.9","port":80,"sorry_server":{"ip":"10.0.1.13","port":8080,"fwd":"dr"}}}"#,
    );
    let d = ok(&c, r#"{"cmd":"dump"}"#);
    let svcs = d["services"].as_array().unwrap();
    let fw4 = svcs.iter().find(|s| s["fwmark"] == 4).unwrap();
    assert_eq!(fw4["sorry_server"]["port"], 8080);
    assert_eq!(fw4["dests"][0]["port"], 443);
    let v9 = svcs.iter().find(|s| s["vip"] == "10.0.0.9").unwrap();
    assert_eq!(v9["sorry_server"]["port"], 80);
}

#[test]
fn add_list_edit_delete() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
    );
    ok(
        &c,
        &format!(r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#),
    );
    ok(
        &c,
        &format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","port":8080,"weight":3,"fwd":"nat"}}}}"#
        ),
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    let s = &l["services"][0];
    assert_eq!(s["sched"], "rr");
    assert_eq!(s["dests"][0]["port"], 80, "port 0 means the service port");
    assert_eq!(s["dests"][0]["weight"], 1);
    assert_eq!(s["dests"][1]["weight"], 3);
    ok(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","port":8080,"weight":0,"fwd":"nat"}}}}"#
        ),
    );
    ok(
        &c,
        r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wrr"}}"#,
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["sched"], "wrr");
    assert_eq!(l["services"][0]["dests"][1]["weight"], 0);
    assert_eq!(
        l["services"][0]["dests"].as_array().unwrap().len(),
        2,
        "edit keeps real servers"
    );
    ok(
        &c,
        &format!(r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.11"}}}}"#),
    );
    ok(&c, &format!(r#"{{"cmd":"del_service","service":{SVC}}}"#));
    assert_eq!(
        ok(&c, r#"{"cmd":"list"}"#)["services"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn default_scheduler_is_wlc_and_default_forwarding_is_route() {
    let s: ServiceConf = serde_json::from_str(SVC).unwrap();
    assert_eq!(s.sched, "wlc");
    let d: DestConf = serde_json::from_str(r#"{"ip":"10.0.1.11"}"#).unwrap();
    assert_eq!((d.fwd, d.weight), (Forward::Dr, 1));
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let c = ctl();
    ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
    ok(
        &c,
        &format!(r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#),
    );
    let before = ok(&c, r#"{"cmd":"list"}"#);
    let cases: &[(&str, &str, &str)] = &[
        ("{not json", "bad_json", ""),
        ("[1,2]", "bad_request", "cmd"),
        (r#"{"cmd":"reboot"}"#, "unknown_command", "reboot"),
        (
            r#"{"cmd":"list","extra":1}"#,
            "bad_request",
            "unknown field",
        ),
        (
            &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#),
            "exists",
            "Service already exists",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"sched":"fastest"}}"#,
            "invalid",
            "unknown scheduler",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"sctp","vip":"10.0.0.101","port":80}}"#,
            "bad_request",
            "unknown variant",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":70000}}"#,
            "bad_request",
            "",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":0}}"#,
            "invalid",
            "zero port",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.101","port":80,"colour":"red"}}"#,
            "bad_request",
            "unknown field",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat"}}}}"#
            ),
            "exists",
            "Destination already exists",
        ),
        (
            r#"{"cmd":"add_dest","service":{"proto":"udp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.13","fwd":"nat"}}"#,
            "not_found",
            "Service not defined",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":70000}}}}"#
            ),
            "invalid",
            "illegal weight",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"fullnat"}}}}"#
            ),
            "invalid",
            "need a local address",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.1","fwd":"nat"}}}}"#
            ),
            "invalid",
            "own address",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"nat","weight":-1}}}}"#
            ),
            "bad_request",
            "",
        ),
        (
            r#"{"cmd":"del_service","service":{"proto":"udp","vip":"10.0.0.100","port":80}}"#,
            "not_found",
            "No such service",
        ),
        (
            &format!(r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.9.9"}}}}"#),
            "not_found",
            "No such destination",
        ),
        (
            r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"255.255.255.255","port":80}}"#,
            "invalid",
            "not a usable virtual address",
        ),
        (
            r#"{"cmd":"list","cmd":"clear"}"#,
            "bad_request",
            "duplicate field `cmd`",
        ),
        (
            &format!(
                r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":2,"weight":0}}}}"#
            ),
            "bad_request",
            "duplicate field `weight`",
        ),
        (
            &format!(
                r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"255.255.255.255","fwd":"nat"}}}}"#
            ),
            "invalid",
            "not a usable real server address",
        ),
    ];
    for (line, code, needle) in cases {
        let (got, msg) = err(&c, line);
        assert_eq!(got, *code, "{line}: {msg}");
        assert!(msg.contains(needle), "{line}: {msg}");
    }
    assert_eq!(ok(&c, r#"{"cmd":"list"}"#), before);
}

#[test]
fn load_is_all_or_nothing_and_lists_every_problem() {
    let c = ctl();
    ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
    let good: ServiceConf =
        serde_json::from_str(r#"{"proto":"udp","vip":"10.0.0.100","port":53}"#).unwrap();
    let bad1: ServiceConf =
        serde_json::from_str(r#"{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"x"}"#)
            .unwrap();
    let bad2: ServiceConf =
        serde_json::from_str(r#"{"proto":"tcp","vip":"10.0.0.100","port":0}"#).unwrap();
    let e = c.load(vec![good.clone(), bad1, bad2]).unwrap_err();
    assert!(
        e.message.contains("unknown scheduler") && e.message.contains("zero port"),
        "{}",
        e.message
    );
    assert_eq!(c.services().len(), 1);
    assert_eq!(c.services()[0].port, 80);
    c.load(vec![good]).unwrap();
    assert_eq!(c.services()[0].port, 53);
}

#[test]
fn local_addresses_are_managed_and_required_for_fullnat() {
    let c = ctl();
    ok(&c, &format!(r#"{{"cmd":"add_service","service":{SVC}}}"#));
    let (code, msg) = err(
        &c,
        &format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"fullnat"}}}}"#
        ),
    );
    assert_eq!(
        (code.as_str(), msg.contains("need a local address")),
        ("invalid", true)
    );
    ok(
        &c,
        &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#),
    );
    ok(
        &c,
        &format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"fullnat"}}}}"#
        ),
    );
    assert_eq!(
        err(
            &c,
            &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#)
        )
        .0,
        "exists"
    );
    assert_eq!(
        err(
            &c,
            &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.1"}}"#)
        )
        .0,
        "invalid"
    );
    assert_eq!(
        err(
            &c,
            &format!(r#"{{"cmd":"add_laddr","service":{SVC},"laddr":"10.0.1.11"}}"#)
        )
        .0,
        "invalid"
    );
    let (code, _) = err(
        &c,
        &format!(r#"{{"cmd":"del_laddr","service":{SVC},"laddr":"10.0.1.200"}}"#),
    );
    assert_eq!(
        code, "invalid",
        "the last local address of a FULLNAT service stays"
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["laddrs"][0], "10.0.1.200");
    let (code, msg) = err(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"client_addr":"toa"}}"#,
    );
    assert_eq!(
        (code.as_str(), msg.contains("TCP services only")),
        ("invalid", true)
    );
}

/// With a kernel twin, real servers at the director's own or a loopback
/// address are IPVS "Local" whatever method was asked (the kernel's
/// `__ip_vs_update_dest`); "local" for another address is refused.
#[test]
fn own_addresses_are_local_real_servers_with_a_twin() {
    let mut c = ctl();
    c.local_twin = true;
    let ok = |line: &str| {
        let v: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
        assert_eq!(v["ok"], true, "{line}: {v}");
    };
    ok(
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
            "sorry_server":{"ip":"127.0.0.1","port":80,"fwd":"nat"},
            "dests":[{"ip":"10.0.1.11","fwd":"nat"},{"ip":"127.0.0.2","fwd":"dr"}]}}"#,
    );
    let s = &c.services()[0];
    assert_eq!(s.sorry_server.as_ref().unwrap().fwd, Forward::Local);
    assert_eq!(s.dests[0].fwd, Forward::Nat);
    assert_eq!(s.dests[1].fwd, Forward::Local);
    let (code, msg) = err(
        &c,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.12","fwd":"local"}}"#,
    );
    assert_eq!(code, "invalid", "{msg}");
    assert!(
        msg.contains("local forwarding is for the director's own"),
        "{msg}"
    );
}

#[test]
fn set_timeouts_zero_keeps_value() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"set_timeouts","timeouts":{"tcp":60,"tcpfin":0,"udp":5}}"#,
    );
    let t = ok(&c, r#"{"cmd":"get_timeouts"}"#);
    assert_eq!(t["timeouts"], json!({"tcp":60,"tcpfin":120,"udp":5}));
}

/// A daemon's ports as a handover sees them: counts the calls.
#[derive(Default)]
struct HandOverPorts {
    handed: std::sync::atomic::AtomicU32,
    done: std::sync::atomic::AtomicU32,
}

impl PortView for Arc<HandOverPorts> {
    fn ports(&self) -> Vec<PortReport> {
        Vec::new()
    }
    fn hand_over(&self, successor: u32) -> Result<u64, String> {
        assert_eq!(successor, 77, "the successor pid is passed on");
        self.handed.fetch_add(1, Relaxed);
        Ok(42)
    }
    fn hand_over_done(&self) {
        self.done.fetch_add(1, Relaxed);
    }
}

#[test]
fn a_handover_freezes_the_configuration_and_stops_the_data_path_once() {
    let add = r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#;
    let mut c = ctl();
    // Without ports (a library user, the tests) there is nothing to hand over.
    let r = c.handle_line(r#"{"cmd":"handover"}"#);
    assert!(r.contains("not_running"), "{r}");
    ok(&c, add);
    let p = Arc::new(HandOverPorts::default());
    c.ports = Some(Box::new(p.clone()));
    let done = c.handle_line(r#"{"cmd":"handover_done"}"#);
    assert!(done.contains("no handover under way"), "{done}");
    let r = ok(&c, r#"{"cmd":"handover","pid":77}"#);
    let reply: HandoverReply = from_reply(r).unwrap();
    assert_eq!((reply.pid, reply.stopped_ms), (std::process::id(), 42));
    // Changes are refused from now on (the successor has read the state
    // file); reads are answered.
    for change in [
        r#"{"cmd":"clear"}"#,
        r#"{"cmd":"del_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#,
        r#"{"cmd":"set_timeouts","timeouts":{"tcp":5}}"#,
    ] {
        let r = c.handle_line(change);
        assert!(r.contains("handing over"), "{change} -> {r}");
    }
    // Sync daemons too (keepalived reaches them through the IPVS socket,
    // not `handle`).
    let e = c
        .start_daemon(
            crate::sync::Role::Master,
            crate::sync::SyncConf {
                mcast_ifn: "lo".into(),
                syncid: 0,
                sync_maxlen: 0,
                mcast_group: None,
                mcast_port: 0,
                mcast_ttl: 0,
            },
        )
        .unwrap_err();
    assert_eq!(e.errno, "EBUSY", "{}", e.message);
    assert_eq!(c.services().len(), 1);
    ok(&c, r#"{"cmd":"list"}"#);
    // A second successor is turned away; the first one's done is passed on.
    assert!(c.handle_line(r#"{"cmd":"handover"}"#).contains("under way"));
    ok(&c, r#"{"cmd":"handover_done"}"#);
    assert_eq!((p.handed.load(Relaxed), p.done.load(Relaxed)), (1, 1));
}
