use super::super::tests::{ctl, ok};
use super::*;

/// `value` read as `T` and written again is `value`: the type has a place
/// for every field, and reading it back does not change one.
fn round_trip<T: Serialize + serde::de::DeserializeOwned>(value: &Value) -> T {
    let typed: T = from_reply(value.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), value);
    typed
}

#[test]
fn replies_round_trip_through_their_types() {
    let c = ctl();
    for line in [
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
            "persistent":300,
            "health":{"type":"http","interval_ms":500,"timeout_ms":300,"retries":2},
            "sorry_server":{"ip":"10.0.1.13","port":8081,"fwd":"nat"},
            "dests":[{"ip":"10.0.1.11","fwd":"nat","weight":2,"u_threshold":9,"l_threshold":3},
                     {"ip":"10.0.1.12","fwd":"tun","tun_type":"gue","tun_port":6080},
                     {"ip":"10.0.1.14","fwd":"tun","tun_type":"gre"},
                     {"ip":"10.0.1.15","fwd":"dr","health":{"type":"tcp","on_failure":"quiesce"}}]}}"#,
        r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.101","port":53,"ops":true,
            "sched":"sh","sched_flags":["sh-port"],"dests":[{"ip":"10.0.1.11","fwd":"nat"}]}}"#,
        r#"{"cmd":"add_service","service":{"fwmark":7,"sched":"wlc"}}"#,
        r#"{"cmd":"add_service","service":{"fwmark":8,"persistent":60,"netmask":"255.255.255.0",
            "dests":[{"ip":"10.0.1.11","port":80,"fwd":"dr"}]}}"#,
    ] {
        ok(&c, line);
    }
    let l: ListReply = round_trip(&ok(&c, r#"{"cmd":"list"}"#));
    assert_eq!(l.services.len(), 4);
    let web = &l.services[0];
    assert_eq!(
        web.key(),
        ServiceKey::new(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80)
    );
    assert_eq!(web.dests[1].tun_port, Some(6080));
    assert_eq!(web.dests[2].tun_csum, Some(TunCsum::default()));
    assert_eq!(web.dests[3].check, Some(CheckKind::Tcp));
    assert!(web.sorry_server.as_ref().is_some_and(|s| !s.in_service));
    assert!(l.services[1].ops && !web.ops);
    assert_eq!(l.services[2].key(), ServiceKey::fwmark(7, false));
    assert!(!l.services[2].is_inet6());

    let s: StatsReply = round_trip(&ok(&c, r#"{"cmd":"stats"}"#));
    assert_eq!(s.workers.len(), 1);
    assert_eq!(s.vip_ownership, None);
    round_trip::<DumpReply>(&ok(&c, r#"{"cmd":"dump"}"#));
    round_trip::<TimeoutsReply>(&ok(&c, r#"{"cmd":"get_timeouts"}"#));
    round_trip::<PingReply>(&ok(&c, r#"{"cmd":"ping"}"#));
    round_trip::<ConnectionsReply>(&ok(&c, r#"{"cmd":"connections"}"#));
    round_trip::<OkReply>(&ok(&c, r#"{"cmd":"zero"}"#));
    let st: StartDaemonReply = round_trip(&ok(
        &c,
        r#"{"cmd":"start_daemon","state":"backup","mcast_ifn":"lo","syncid":3}"#,
    ));
    assert_eq!(st.state, crate::sync::Role::Backup);
    let d: DaemonReply = round_trip(&ok(&c, r#"{"cmd":"daemon"}"#));
    assert_eq!(d.daemons.len(), 1);
    assert_eq!(d.daemons[0].syncid, 3);
    assert_eq!(
        d.counters.errors.len(),
        crate::sync::proto::Error::ALL.len()
    );
    round_trip::<OkReply>(&ok(&c, r#"{"cmd":"stop_daemon","state":"backup"}"#));
    let n: LoadReply = round_trip(&ok(&c, r#"{"cmd":"load","services":[]}"#));
    assert_eq!(n.services, 0);
}

#[test]
fn connection_and_template_views_round_trip() {
    let conn = serde_json::json!({
        "proto": "tcp", "state": "ESTABLISHED", "expires_ms": 899_000,
        "cip": "192.0.2.1", "cport": 40000, "vip": "10.0.0.100", "vport": 80,
        "dip": "10.0.1.11", "dport": 80, "fwd": "nat"});
    let t = serde_json::json!({
        "proto": "ip", "state": "NONE", "template": true, "expires_ms": 1000,
        "cip": "192.0.2.0", "cport": 0, "vip": "0.0.0.1", "vport": 0,
        "dip": "10.0.1.11", "dport": 80, "controls": 2, "fwmark": 1});
    let c: ConnView = round_trip(&conn);
    assert!(!c.template && c.fwd == Some(Forward::Nat));
    let t: ConnView = round_trip(&t);
    assert!(t.template && t.fwmark == Some(1) && t.controls == Some(2));
}

#[test]
fn ownership_says_which_vips_are_served() {
    let v: OwnershipView =
        round_trip(&serde_json::json!({"mode": "kernel", "on_twins": ["10.0.0.1"]}));
    assert!(v.owns("10.0.0.1".parse().unwrap()));
    assert!(!v.owns("10.0.0.2".parse().unwrap()));
    let always: OwnershipView = round_trip(&serde_json::json!({"mode": "always"}));
    assert!(always.owns("10.0.0.2".parse().unwrap()));
}

#[test]
fn names_used_by_the_formatters_are_the_protocol_names() {
    use crate::service::CheckKind;
    for k in [
        CheckKind::Tcp,
        CheckKind::Http,
        CheckKind::Misc,
        CheckKind::Udp,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.name());
    }
    for p in [Proto::Tcp, Proto::Udp] {
        assert_eq!(serde_json::to_value(p).unwrap(), p.name());
    }
}
