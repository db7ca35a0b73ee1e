//! One-packet scheduling (ipvsadm `-o`/`--ops`) through the whole per-packet
//! path on the in-memory device, configured through the JSON control path.
//!
//! The kernel (ip_vs_core.c `ip_vs_schedule`): a UDP packet of a service
//! with IP_VS_SVC_F_ONEPACKET gets a connection flagged
//! IP_VS_CONN_F_ONE_PACKET; ip_vs_conn.c does not hash such a connection
//! (`ip_vs_conn_hash` returns early), so `-L -c` never lists it and the next
//! datagram of the same flow is scheduled again, and `ip_vs_conn_put`
//! expires it at once after the packet was sent (unbinding it from its real
//! server, so InActConn goes back down). ipvsadm refuses `-o` for a TCP
//! service ("One-Packet Scheduling is only for UDP virtual services").

mod common;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::PacketBuilder;

const DNS: &str = r#"{"proto":"udp","vip":"10.0.0.100","port":53}"#;

fn rig() -> Rig<MemIo> {
    Rig::new(MemIo::new(2), [DIR0_MAC, DIR1_MAC], 1000)
}

/// A UDP service on the VIP, port 53, rr over rs1 and rs2 (NAT).
fn dns_service(r: &Rig<MemIo>, ops: bool) {
    let ops = if ops { r#","ops":true"# } else { "" };
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr"{ops}}}}}"#
    ));
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{DNS},"dest":{{"ip":"{ip}","fwd":"nat"}}}}"#
        ));
    }
}

/// Send `n` queries from the same client port; the real server each went to.
fn queries(r: &mut Rig<MemIo>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let q = PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), vip())
                .udp(41000, 53)
                .payload(format!("query {i}").as_bytes())
                .build();
            r.worker.io.push(0, &q);
            r.step(1);
            let out = r.worker.io.take_tx(1);
            assert_eq!(out.len(), 1, "drops {:?}", r.stats().drops);
            assert_checksums(&out[0]);
            let (_, _, dst, dport, _) = endpoints(&out[0]);
            // IPv4 protocol byte: UDP.
            assert_eq!((dport, out[0][14 + 9]), (53, 17));
            dst.to_string()
        })
        .collect()
}

/// (InActConn of rs1, of rs2, connection entries listed by `-L -c`).
fn counts(r: &Rig<MemIo>) -> (u64, u64, usize) {
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"];
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let listed = conns["connections"].as_array().map_or(0, |a| a.len());
    (
        d[0]["inactive"].as_u64().unwrap(),
        d[1]["inactive"].as_u64().unwrap(),
        listed,
    )
}

#[test]
fn ops_schedules_every_datagram_and_keeps_no_entry() {
    let mut r = rig();
    dns_service(&r, true);
    r.learn_neighbours();
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert_eq!(l["services"][0]["ops"], true);
    let d = r.ctl(r#"{"cmd":"dump"}"#);
    assert_eq!(d["services"][0]["ops"], true);
    // rr over rs2 (newest, the kernel's list head) and rs1: each datagram
    // of the one flow is scheduled on its own.
    assert_eq!(
        queries(&mut r, 4),
        ["10.0.1.12", "10.0.1.11", "10.0.1.12", "10.0.1.11"]
    );
    assert_eq!(counts(&r), (0, 0, 0), "no entry kept, none counted");
    assert_eq!(r.dp.conns.len(), 0);
    // Each datagram counted as a connection of its server (the kernel's
    // ip_vs_conn_stats in ip_vs_schedule).
    let l = r.ctl(r#"{"cmd":"list"}"#);
    let d = &l["services"][0]["dests"];
    assert_eq!(
        (
            d[0]["stats"]["conns"].as_u64(),
            d[1]["stats"]["conns"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

#[test]
fn nat_replies_of_ops_datagrams_have_no_entry_and_persistence_still_holds() {
    let mut r = rig();
    dns_service(&r, true);
    r.learn_neighbours();
    assert_eq!(queries(&mut r, 1), ["10.0.1.12"]);
    // The real server's answer finds no entry to be translated by.
    let reply = PacketBuilder::new()
        .eth(RS2_MAC, DIR1_MAC)
        .ipv4(rs2(), client())
        .udp(53, 41000)
        .payload(b"answer")
        .build();
    let before = r.drops("not_routed");
    r.worker.io.push(1, &reply);
    r.step(1);
    assert!(r.worker.io.take_tx(0).is_empty());
    assert_eq!(r.drops("not_routed"), before + 1);

    // A persistent ops service: the template (kept, as the kernel's
    // ip_vs_sched_persist makes it without ONE_PACKET) pins the client,
    // the per-datagram entries still go.
    let mut r = rig();
    r.ctl(r#"{"cmd":"add_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr","ops":true,"persistent":300}}"#);
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{DNS},"dest":{{"ip":"{ip}","fwd":"nat"}}}}"#
        ));
    }
    r.learn_neighbours();
    assert_eq!(queries(&mut r, 3), ["10.0.1.12", "10.0.1.12", "10.0.1.12"]);
    let conns = r.ctl(r#"{"cmd":"connections"}"#);
    let listed = conns["connections"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{conns}");
    assert_eq!(listed[0]["template"], true);
    assert_eq!(listed[0]["controls"], 0, "no live entry under it: {conns}");
}

#[test]
fn without_ops_the_flow_keeps_its_server_and_entry() {
    let mut r = rig();
    dns_service(&r, false);
    r.learn_neighbours();
    let l = r.ctl(r#"{"cmd":"list"}"#);
    assert!(l["services"][0].get("ops").is_none());
    assert_eq!(queries(&mut r, 3), ["10.0.1.12", "10.0.1.12", "10.0.1.12"]);
    assert_eq!(counts(&r), (0, 1, 1));
}

#[test]
fn ops_can_be_switched_on_and_is_refused_for_tcp() {
    let mut r = rig();
    dns_service(&r, false);
    r.learn_neighbours();
    assert_eq!(queries(&mut r, 1), ["10.0.1.12"]);
    // -E -o: the entry made before stays until it expires (the kernel only
    // flags new connections); new flows are scheduled per datagram.
    r.ctl(
        r#"{"cmd":"edit_service","service":{"proto":"udp","vip":"10.0.0.100","port":53,"sched":"rr","ops":true}}"#,
    );
    assert_eq!(queries(&mut r, 2), ["10.0.1.12", "10.0.1.12"]);
    assert_eq!(counts(&r).2, 1);
    let q = |sport: u16| {
        PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .udp(sport, 53)
            .payload(b"q")
            .build()
    };
    let mut to = Vec::new();
    for sport in [42000, 42000, 42000] {
        r.worker.io.push(0, &q(sport));
        r.step(1);
        let out = r.worker.io.take_tx(1);
        assert_eq!(out.len(), 1);
        to.push(endpoints(&out[0]).2.to_string());
    }
    // The rr cursor is on rs2 (the first flow's pick): rs1, rs2, rs1.
    assert_eq!(to, ["10.0.1.11", "10.0.1.12", "10.0.1.11"]);
    assert_eq!(counts(&r).2, 1);

    let e: serde_json::Value = serde_json::from_str(&r.ctl.handle_line(
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"ops":true}}"#,
    ))
    .unwrap();
    assert_eq!(e["error"]["code"], "invalid", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only for UDP"),
        "{e}"
    );
}
