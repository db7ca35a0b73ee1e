//! Health checks and sorry servers through the control plane: what a
//! checker's verdict does to the published table, and the refusals of bad
//! checks. Shares the helpers of `tests.rs`.

use super::tests::{ctl, err, ok, SVC};
use super::*;

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
