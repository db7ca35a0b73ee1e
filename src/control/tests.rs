use super::*;

fn ctl() -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    Control::new(
        Arc::new(ConnTable::new(100, 4)),
        workers,
        vec!["10.0.1.1".parse().unwrap()],
    )
}

fn ok(c: &Control, line: &str) -> Value {
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

fn err(c: &Control, line: &str) -> (String, String) {
    let r: Value = serde_json::from_str(&c.handle_line(line)).unwrap();
    let e = &r["error"];
    assert!(e.is_object(), "{line} -> {r}");
    (
        e["code"].as_str().unwrap().into(),
        e["message"].as_str().unwrap().into(),
    )
}

const SVC: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;

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
            r#"{"cmd":"add_service","service":{"fwmark":3,"af":"inet6"}}"#,
            "unsupported",
            "IPv6 fwmark",
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

const HSVC: &str = r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
        "health":{"type":"http","interval_ms":500,"timeout_ms":300,"retries":2,"retry_delay_ms":100},
        "sorry_server":{"ip":"10.0.1.13","port":8081,"fwd":"nat"},
        "dests":[{"ip":"10.0.1.11","fwd":"nat","weight":2},
                 {"ip":"10.0.1.12","fwd":"nat","health":{"type":"tcp","on_failure":"quiesce"}}]}}"#;

fn dkey(ip: &str) -> DestKey {
    (
        ServiceKey {
            proto: Proto::Tcp,
            vip: "10.0.0.100".parse().unwrap(),
            port: 80,
            fwmark: 0,
        },
        ip.parse().unwrap(),
        80,
    )
}

fn event(c: &Control, ip: &str, up: bool) {
    c.health_event(HealthEvent {
        dest: dkey(ip),
        ok: up,
        error: (!up).then(|| "connect: refused".to_string()),
        transition: Some(up),
        failed_attempts: 2,
        weight: None,
    });
}

/// (ip, port, weight) of the snapshot's real servers.
fn snapshot(c: &Control) -> Vec<(String, u16, u32)> {
    let t = c.table.load();
    let s = t.iter().next().unwrap();
    s.dests
        .iter()
        .map(|d| (d.ip.to_string(), d.port, d.weight))
        .collect()
}

#[test]
fn health_removes_quiesces_and_brings_in_the_sorry_server() {
    let c = ctl();
    ok(&c, HSVC);
    let targets = c.health_targets();
    assert_eq!(targets.len(), 2);
    let t11 = targets
        .iter()
        .find(|t| t.dest == dkey("10.0.1.11"))
        .unwrap();
    assert_eq!(t11.check.kind, CheckKind::Http, "the service's check");
    assert!(t11.up);
    let t12 = targets
        .iter()
        .find(|t| t.dest == dkey("10.0.1.12"))
        .unwrap();
    assert_eq!(t12.check.kind, CheckKind::Tcp, "its own check wins");
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.11".into(), 80, 2), ("10.0.1.12".into(), 80, 1)]
    );
    let g = c.health_generation();

    // rs1 (remove) fails: gone from the snapshot, still configured.
    event(&c, "10.0.1.11", false);
    assert_eq!(snapshot(&c), vec![("10.0.1.12".into(), 80, 1)]);
    assert!(c.health_generation() > g);
    assert!(!c.health_targets()[0].up || !c.health_targets()[1].up);
    let l = ok(&c, r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"];
    assert_eq!(
        (&d[0]["weight"], &d[0]["health"], &d[0]["in_service"]),
        (&json!(2), &json!("down"), &json!(false)),
        "configured weight kept: {d}"
    );
    assert_eq!(d[0]["last_error"], "connect: refused");
    assert_eq!(d[0]["health_counters"]["transitions"], 1);
    assert_eq!(d[0]["check"], "http");
    assert_eq!(l["services"][0]["sorry_server"]["in_service"], false);
    assert_eq!(c.services()[0].dests[0].weight, 2, "operator intent");

    // rs2 (quiesce) fails: weight 0, kept; nobody left: sorry server in.
    event(&c, "10.0.1.12", false);
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.12".into(), 80, 0), ("10.0.1.13".into(), 8081, 1)]
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    let svc = &l["services"][0];
    assert_eq!(svc["dests"][1]["effective_weight"], 0);
    assert_eq!(svc["dests"][1]["weight"], 1);
    assert_eq!(svc["dests"][1]["in_service"], true);
    assert_eq!(svc["sorry_server"]["in_service"], true);
    assert_eq!(svc["sorry_server"]["port"], 8081);
    assert_eq!(
        svc["dests"].as_array().unwrap().len(),
        2,
        "sorry not a dest"
    );
    // A quiesced server with configured weight 0 does not count either.
    // rs1 back: the sorry server goes. rs1 rejoins the list as its
    // newest server, as keepalived's `-a` puts it at the head of a
    // kernel director's list (the snapshot lists oldest first).
    event(&c, "10.0.1.11", true);
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.12".into(), 80, 0), ("10.0.1.11".into(), 80, 2)]
    );
    // An event without a transition only counts.
    c.health_event(HealthEvent {
        dest: dkey("10.0.1.12"),
        ok: false,
        error: Some("x".into()),
        transition: None,
        failed_attempts: 0,
        weight: None,
    });
    let l = ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(
        l["services"][0]["dests"][1]["health_counters"],
        json!({"checks": 2, "failures": 2, "transitions": 1})
    );
    assert_eq!(l["services"][0]["dests"][0]["health"], "up");

    // Operator edits go through untouched; health stays applied on top.
    ok(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat","weight":5,"health":{{"type":"tcp","on_failure":"quiesce"}}}}}}"#
        ),
    );
    assert_eq!(c.services()[0].dests[1].weight, 5);
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.12".into(), 80, 0), ("10.0.1.11".into(), 80, 2)]
    );
    // Without its check (nor the service's) a server is never held down.
    ok(
        &c,
        r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
    );
    ok(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.12","fwd":"nat","weight":5}}}}"#
        ),
    );
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.12".into(), 80, 5), ("10.0.1.11".into(), 80, 2)]
    );
    let l = ok(&c, r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["dests"][1]["health"], "unchecked");
    assert!(c.health_targets().is_empty());
    // Deleted servers' health is forgotten; events for them are ignored.
    event(&c, "10.0.1.11", false);
    ok(
        &c,
        &format!(r#"{{"cmd":"del_dest","service":{SVC},"dest":{{"ip":"10.0.1.11"}}}}"#),
    );
    assert!(c.master.lock().health.is_empty());
}

#[test]
fn a_service_with_only_zero_weights_uses_its_sorry_server() {
    let c = ctl();
    ok(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,
                "sorry_server":{"ip":"10.0.1.13","fwd":"nat"},
                "dests":[{"ip":"10.0.1.11","fwd":"nat","weight":0}]}}"#,
    );
    assert_eq!(
        snapshot(&c),
        vec![("10.0.1.11".into(), 80, 0), ("10.0.1.13".into(), 80, 1)]
    );
    ok(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{SVC},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":1}}}}"#
        ),
    );
    assert_eq!(snapshot(&c), vec![("10.0.1.11".into(), 80, 1)]);
}

#[test]
fn bad_health_checks_and_sorry_servers_are_rejected_clearly() {
    let c = ctl();
    let svc = |extra: &str| {
        format!(
            r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80{extra}}}}}"#
        )
    };
    let cases: &[(&str, &str, &str)] = &[
        (
            r#","health":{"type":"tcp","interval_ms":0}"#,
            "invalid",
            "interval_ms must be at least 1",
        ),
        (
            r#","health":{"type":"tcp","timeout_ms":0}"#,
            "invalid",
            "timeout_ms must be 1..=60000",
        ),
        (
            r#","health":{"type":"tcp","timeout_ms":60001}"#,
            "invalid",
            "timeout_ms",
        ),
        (
            r#","health":{"type":"tcp","retries":0}"#,
            "invalid",
            "retries must be at least 1",
        ),
        (
            r#","health":{"type":"http","path":"health"}"#,
            "invalid",
            "path must start with '/'",
        ),
        (
            r#","health":{"type":"http","path":"/a b"}"#,
            "invalid",
            "without spaces",
        ),
        (
            r#","health":{"type":"http","status":99}"#,
            "invalid",
            "status must be 100..=599",
        ),
        (
            r#","health":{"type":"http","status":600}"#,
            "invalid",
            "status must be 100..=599",
        ),
        (
            r#","health":{"type":"tcp","path":"/"}"#,
            "invalid",
            "HTTP checks only",
        ),
        (
            r#","health":{"type":"tcp","port":0}"#,
            "invalid",
            "port must be",
        ),
        (
            r#","health":{"type":"icmp"}"#,
            "bad_request",
            "unknown variant",
        ),
        (
            r#","health":{"type":"tcp","colour":1}"#,
            "bad_request",
            "unknown field",
        ),
        (
            r#","health":{"type":"tcp","on_failure":"panic"}"#,
            "bad_request",
            "unknown variant",
        ),
        (
            r#","sorry_server":{"ip":"10.0.1.1"}"#,
            "invalid",
            "director's own address",
        ),
        (
            r#","sorry_server":{"ip":"127.0.0.1"}"#,
            "invalid",
            "needs a port with a kernel_twin",
        ),
        (
            r#","sorry_server":{"ip":"0.0.0.0"}"#,
            "invalid",
            "not a usable",
        ),
        (
            r#","sorry_server":{"ip":"10.0.1.13","fwd":"fullnat"}"#,
            "invalid",
            "needs a local address",
        ),
        (
            r#","sorry_server":{"ip":"10.0.1.11","fwd":"nat"},"dests":[{"ip":"10.0.1.11","fwd":"nat"}]"#,
            "invalid",
            "is also a real server",
        ),
        (
            r#","dests":[{"ip":"10.0.1.11","fwd":"nat","health":{"type":"http","status":1000}}]"#,
            "invalid",
            "health check: status must be",
        ),
    ];
    for (extra, code, needle) in cases {
        let line = svc(extra);
        let (got, msg) = err(&c, &line);
        assert_eq!(got, *code, "{line}: {msg}");
        assert!(msg.contains(needle), "{line}: {msg}");
    }
    let (code, msg) = err(
        &c,
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":0,"persistent":60,
                "health":{"type":"tcp"},"dests":[{"ip":"10.0.1.11","fwd":"nat"}]}}"#,
    );
    assert_eq!(
        (code.as_str(), msg.contains("needs a port")),
        ("invalid", true),
        "{msg}"
    );
    assert!(c.services().is_empty());
    // The defaults are keepalived's; a good check is accepted.
    ok(
        &c,
        &svc(r#","health":{"type":"http","path":"/health","status":204}"#),
    );
    let h = c.services()[0].health.clone().unwrap();
    assert_eq!(
        (
            h.interval_ms,
            h.timeout_ms,
            h.retries,
            h.retry_delay_ms,
            h.on_failure
        ),
        (6000, 3000, 1, 1000, OnFailure::Remove)
    );
    // A real server added later may not take the sorry server's place.
    ok(
        &c,
        r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sorry_server":{"ip":"10.0.1.13","fwd":"nat"}}}"#,
    );
    let (code, msg) = err(
        &c,
        &format!(r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"10.0.1.13","fwd":"nat"}}}}"#),
    );
    assert_eq!(
        (code.as_str(), msg.contains("also a real server")),
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
