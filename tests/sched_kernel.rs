//! Scheduler picks through the real control plane while the configuration
//! changes, against sequences traced by hand from the kernel's sources
//! (net/netfilter/ipvs/ip_vs_{rr,wrr,lblc,mh}.c, ip_vs_ctl.c).
//!
//! What the kernel does with a scheduler across changes (ip_vs_ctl.c):
//! `ip_vs_add_service` binds the scheduler (`init_service`) before any real
//! server exists; `__ip_vs_update_dest` puts a new server at the head of
//! `svc->destinations` (`list_add_rcu`) and calls the scheduler's `add_dest`
//! hook, or `upd_dest` for an edit; `__ip_vs_unlink_dest` calls `del_dest`.
//! Nothing else touches a service's scheduler: a change to another service,
//! or to a service's persistence or flags, leaves its state alone.
//! keepalived applies a failed check as `-d` (or `-e -w 0` with
//! `inhibit_on_failure`) and a recovery as `-a`, so rvs's health flips go
//! through the same hooks.
//!
//! Servers below are added in the order rs1, rs2, rs3, so the kernel's list
//! (newest first) is rs3, rs2, rs1.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use rvs::conn::ConnTable;
use rvs::control::Control;
use rvs::flow::FlowKey;
use rvs::flow::{Proto, ServiceKey};
use rvs::health::HealthEvent;
use rvs::stats::WorkerStats;

fn ctl() -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    Control::new(
        Arc::new(ConnTable::new(100, 1)),
        workers,
        vec!["10.0.1.1".parse().unwrap()],
    )
}

fn req(c: &Control, line: &str) {
    let r: serde_json::Value = serde_json::from_str(&c.handle_line(line)).unwrap();
    assert_eq!(r["ok"], true, "{line} -> {r}");
}

const A: &str = r#"{"proto":"tcp","vip":"10.0.0.100","port":80}"#;
const B: &str = r#"{"proto":"tcp","vip":"10.0.0.101","port":80}"#;

/// `-A` of service `svc` with scheduler `sched` (and extra JSON fields).
fn add_service(c: &Control, svc: &str, sched: &str, extra: &str) {
    let body = &svc[..svc.len() - 1];
    req(
        c,
        &format!(r#"{{"cmd":"add_service","service":{body},"sched":"{sched}"{extra}}}}}"#),
    );
}

/// `-a` of 10.0.1.1N with weight `w` (NAT) to `svc`.
fn add(c: &Control, svc: &str, n: u8, w: u32, extra: &str) {
    req(
        c,
        &format!(
            r#"{{"cmd":"add_dest","service":{svc},"dest":{{"ip":"10.0.1.1{n}","fwd":"nat","weight":{w}{extra}}}}}"#
        ),
    );
}

/// `-e` of 10.0.1.1N to weight `w`.
fn edit(c: &Control, svc: &str, n: u8, w: u32, extra: &str) {
    req(
        c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{svc},"dest":{{"ip":"10.0.1.1{n}","fwd":"nat","weight":{w}{extra}}}}}"#
        ),
    );
}

/// `-d` of 10.0.1.1N.
fn del(c: &Control, svc: &str, n: u8) {
    req(
        c,
        &format!(r#"{{"cmd":"del_dest","service":{svc},"dest":{{"ip":"10.0.1.1{n}"}}}}"#),
    );
}

fn key(vip: &str) -> ServiceKey {
    ServiceKey::new(Proto::Tcp, vip.parse().unwrap(), 80)
}

/// A health check's verdict on 10.0.1.1N of service `vip`.
fn health(c: &Control, vip: &str, n: u8, up: bool) {
    c.health_event(HealthEvent {
        dest: (key(vip), format!("10.0.1.1{n}").parse().unwrap(), 80),
        ok: up,
        error: (!up).then(|| "connect: refused".into()),
        transition: Some(up),
        failed_attempts: 1,
        weight: None,
    });
}

/// A change to service B only (another service's server edited).
fn unrelated_change(c: &Control, k: u32) {
    edit(c, B, 1, 1 + k % 7, "");
}

/// The real server (N of 10.0.1.1N, 0 = none) the current snapshot's
/// scheduler of service A picks for a connection from client `cip` to
/// destination `dst`, at `now_ms`.
fn pick_to(c: &Control, cip: Ipv4Addr, dst: Ipv4Addr, now_ms: u64) -> u8 {
    let t = c.table.load();
    let s = t.get(&key("10.0.0.100")).expect("service A");
    let flow = FlowKey::v4(Proto::Tcp, cip, 40000, dst, 80);
    match s.sched.pick(&s.dests, &flow, now_ms) {
        None => 0,
        Some(i) => match s.dests[i].ip {
            IpAddr::V4(a) => a.octets()[3] - 10,
            IpAddr::V6(_) => unreachable!(),
        },
    }
}

fn pick(c: &Control) -> u8 {
    pick_to(
        c,
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(10, 0, 0, 100),
        0,
    )
}

fn picks(c: &Control, n: usize) -> Vec<u8> {
    (0..n).map(|_| pick(c)).collect()
}

/// Service A with scheduler `sched` and servers rs1..rsN (weights), added
/// one by one after the service, and a service B with one server.
fn setup(sched: &str, weights: &[u32], dest_extra: &str) -> Control {
    let c = ctl();
    add_service(&c, A, sched, "");
    for (i, &w) in weights.iter().enumerate() {
        add(&c, A, i as u8 + 1, w, dest_extra);
    }
    add_service(&c, B, "wlc", "");
    add(&c, B, 1, 1, "");
    c
}

#[test]
fn rr_cursor_survives_other_services_changes() {
    // ip_vs_rr_schedule resumes after the last picked dest; nothing but
    // this service's del_dest moves it.
    let c = setup("rr", &[1, 1, 1], "");
    let mut seq = picks(&c, 2);
    for k in 0..4 {
        unrelated_change(&c, k);
        seq.extend(picks(&c, 2));
    }
    assert_eq!(seq, [3, 2, 1, 3, 2, 1, 3, 2, 1, 3]);
}

#[test]
fn rr_add_keeps_the_cursor_and_del_moves_it_to_the_previous_entry() {
    let c = setup("rr", &[1, 1, 1], "");
    // List rs3 rs2 rs1: rs3, then the cursor is on rs3.
    assert_eq!(pick(&c), 3);
    // rr has no add_dest hook: rs4 joins at the head, the cursor stays on
    // rs3, so rs2 and rs1 come first and rs4 after the wrap.
    add(&c, A, 4, 1, "");
    assert_eq!(picks(&c, 4), [2, 1, 4, 3]);
    // Cursor on rs3 (list rs4 rs3 rs2 rs1). ip_vs_rr_del_dest: the cursor
    // was on the deleted dest, so it moves to the entry before it, rs4;
    // the next pick is the one after rs4: rs2.
    del(&c, A, 3);
    assert_eq!(picks(&c, 3), [2, 1, 4]);
}

#[test]
fn rr_health_flips_go_through_del_and_add() {
    // on_failure remove = keepalived's -d; recovery = -a (at the head).
    let c = setup("rr", &[1, 1, 1], r#","health":{"type":"tcp"}"#);
    assert_eq!(picks(&c, 2), [3, 2]);
    // rs2 (the cursor) fails: the cursor moves back to rs3; next is rs1.
    health(&c, "10.0.0.100", 2, false);
    assert_eq!(pick(&c), 1);
    // rs2 recovers: added at the head (list rs2 rs3 rs1); the cursor on
    // rs1 (the tail) wraps to the head: rs2, rs3, rs1.
    health(&c, "10.0.0.100", 2, true);
    assert_eq!(picks(&c, 4), [2, 3, 1, 2]);
    // A flip in service B changes nothing here.
    let c2 = setup("rr", &[1, 1, 1], "");
    req(
        &c2,
        &format!(
            r#"{{"cmd":"edit_dest","service":{B},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":1,"health":{{"type":"tcp"}}}}}}"#
        ),
    );
    assert_eq!(pick(&c2), 3);
    health(&c2, "10.0.0.101", 1, false);
    assert_eq!(pick(&c2), 2);
    health(&c2, "10.0.0.101", 1, true);
    assert_eq!(picks(&c2, 2), [1, 3]);
}

#[test]
fn wrr_starts_where_the_kernel_does_after_add_service_then_add_dests() {
    // ip_vs_wrr_init_svc on the empty list: di = 1 (no weights), mw = 0,
    // cw = 0. -a rs1 w3 (dest_changed): di = 3, mw = 3 - 2 = 1, cw = 0 ->
    // cw = mw = 1. -a rs2 w1: di = 1, mw = 3, cw = 1 stays (not > mw, not
    // 0, di not > 1); cl = head. List rs2 rs1.
    // pick 1: from head, cw 1: rs2 (1 >= 1). pick 2: rs1.
    // pick 3: list end -> cw 0 -> mw 3 (restarted): rs2 no, rs1 yes.
    // pick 4: end -> cw 2: rs1. pick 5: end -> cw 1: rs2. pick 6: rs1.
    // pick 7: end -> cw 3: rs1. pick 8: cw 2: rs1.
    let c = setup("wrr", &[3, 1], "");
    assert_eq!(picks(&c, 8), [2, 1, 1, 1, 2, 1, 1, 1]);
}

#[test]
fn wrr_edit_resets_the_cursor_but_keeps_the_current_weight() {
    let c = setup("wrr", &[3, 1], "");
    // As above: rs2, rs1; now cw = 1, cl = rs1.
    assert_eq!(picks(&c, 2), [2, 1]);
    // -e rs2 -w 2 (upd_dest = dest_changed): cl = head, di = gcd(3, 2) = 1,
    // mw = 3, cw = 1 kept. From head at cw 1: rs2, rs1; end -> cw 0 -> 3:
    // rs1; end -> cw 2: rs2, rs1; end -> cw 1: rs2, rs1; end -> cw 3: rs1.
    edit(&c, A, 2, 2, "");
    assert_eq!(picks(&c, 8), [2, 1, 1, 2, 1, 2, 1, 1]);
    // A new scheduler for the same list (-E -s wrr after -s rr) is
    // ip_vs_wrr_init_svc on the full list: cw = mw = 3: rs1 first.
    req(
        &c,
        r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr"}}"#,
    );
    req(
        &c,
        r#"{"cmd":"edit_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wrr"}}"#,
    );
    assert_eq!(picks(&c, 3), [1, 2, 1]);
}

/// Picks of service A per server (index N-1 for rsN).
fn shares(c: &Control, cycles: usize, every: usize, change: impl Fn(&Control, u32)) -> Vec<u32> {
    let mut n = vec![0u32; 3];
    for k in 0..cycles {
        for _ in 0..every {
            let s = pick(c);
            assert_ne!(s, 0, "no server picked");
            n[s as usize - 1] += 1;
        }
        change(c, k as u32);
    }
    n
}

#[test]
fn no_server_starves_while_changes_arrive_faster_than_a_cycle() {
    // rr over 3 servers, a change (another service's edit, alternating with
    // a health flip of another service's server) every 2 connections: a
    // rebuilt rr would start at rs3 each time and rs1 would get nothing.
    let flip = |c: &Control, k: u32| {
        if k.is_multiple_of(2) {
            unrelated_change(c, k);
        } else {
            health(c, "10.0.0.101", 1, k % 4 == 3);
        }
    };
    let c = setup("rr", &[1, 1, 1], "");
    req(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{B},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":1,"health":{{"type":"tcp","on_failure":"quiesce"}}}}}}"#
        ),
    );
    assert_eq!(shares(&c, 15, 2, flip), [10, 10, 10]);

    // wrr 5:3:1, a change every 3 connections. Traced from the kernel:
    // after -A and -a rs1 w5, rs2 w3, rs3 w1, cw = 1 at the head (see
    // above): the first 3 picks are rs3 rs2 rs1, then whole cycles of 9
    // (cw 5: rs1 | 4: rs1 | 3: rs2 rs1 | 2: rs2 rs1 | 1: rs3 rs2 rs1).
    // 27 picks = 3 + 9 + 9 + 6 (rs1 rs1 rs2 rs1 rs2 rs1):
    // rs1 = 1 + 5 + 5 + 4 = 15, rs2 = 1 + 3 + 3 + 2 = 9, rs3 = 1 + 1 + 1 = 3.
    // A rebuilt wrr (cw = 5 each time) would pick rs1 rs1 rs2 forever.
    let c = setup("wrr", &[5, 3, 1], "");
    req(
        &c,
        &format!(
            r#"{{"cmd":"edit_dest","service":{B},"dest":{{"ip":"10.0.1.11","fwd":"nat","weight":1,"health":{{"type":"tcp","on_failure":"quiesce"}}}}}}"#
        ),
    );
    assert_eq!(shares(&c, 9, 3, flip), [15, 9, 3]);
}

#[test]
fn lblc_bindings_survive_changes_to_the_list() {
    // lblc has no dest hooks: a binding holds while its server is in the
    // list, whatever else joins or goes.
    let c = setup("lblc", &[1, 1], "");
    let cip = Ipv4Addr::new(192, 0, 2, 1);
    let d = Ipv4Addr::new(198, 51, 100, 7);
    // Idle servers: wlc ties go to the newest, rs2.
    assert_eq!(pick_to(&c, cip, d, 0), 2);
    // rs3 joins (idle, newest: wlc's choice now) and B changes: the binding
    // to rs2 holds (a rebuilt table would start empty and pick rs3).
    add(&c, A, 3, 1, "");
    unrelated_change(&c, 1);
    assert_eq!(pick_to(&c, cip, d, 1000), 2);
    assert_eq!(pick_to(&c, cip, Ipv4Addr::new(198, 51, 100, 8), 1000), 3);
    // rs2 deleted: not available, so D is scheduled again (wlc: rs3) and
    // stays there when rs2 comes back.
    del(&c, A, 2);
    assert_eq!(pick_to(&c, cip, d, 2000), 3);
    add(&c, A, 2, 1, "");
    assert_eq!(pick_to(&c, cip, d, 3000), 3);
}

#[test]
fn mh_table_after_each_change_is_the_one_for_the_new_list() {
    // ip_vs_mh_dest_changed rebuilds the lookup table from the list: after
    // -a rs3 the picks are those of a service created with rs1..rs3.
    let grown = setup("mh", &[1, 1], "");
    add(&grown, A, 3, 1, "");
    let fresh = setup("mh", &[1, 1, 1], "");
    let clients: Vec<Ipv4Addr> = (1..=200).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    let dst = Ipv4Addr::new(10, 0, 0, 100);
    let a: Vec<u8> = clients
        .iter()
        .map(|&ci| pick_to(&grown, ci, dst, 0))
        .collect();
    let b: Vec<u8> = clients
        .iter()
        .map(|&ci| pick_to(&fresh, ci, dst, 0))
        .collect();
    assert_eq!(a, b);
    assert!(a.contains(&3), "rs3 takes clients after its -a");
}

/// One step of a table-driven sequence on service A.
enum Step {
    /// `-a` rsN with a weight.
    Add(u8, u32),
    /// `-e` rsN to a weight.
    Edit(u8, u32),
    /// `-d` rsN.
    Del(u8),
    /// A change to service B only.
    Other,
    /// The next pick for client 192.0.2.1 to the VIP: rsN (0 = none).
    Pick(u8),
}

fn run(sched: &str, flags: &str, steps: &[Step]) {
    use Step::*;
    let c = ctl();
    add_service(&c, A, sched, flags);
    add_service(&c, B, "wlc", "");
    add(&c, B, 1, 1, "");
    for (k, s) in steps.iter().enumerate() {
        match *s {
            Add(n, w) => add(&c, A, n, w, ""),
            Edit(n, w) => edit(&c, A, n, w, ""),
            Del(n) => del(&c, A, n),
            Other => unrelated_change(&c, k as u32),
            Pick(want) => assert_eq!(pick(&c), want, "{sched}: step {k}"),
        }
    }
}

#[test]
fn hashing_schedulers_follow_each_change_with_hash_32() {
    use Step::*;
    // sh, client 192.0.2.1 = 0xC0000201: hash_32(x, 8) = top byte of
    // x * 0x61C88647 = 0x32D51447 -> bucket 50. ip_vs_sh_reassign deals the
    // 256 buckets round robin over the list (weight 1: one bucket each), so
    // bucket 50 is list[50 % n]. Each -a/-d/-e rebuilds the table
    // (ip_vs_sh_dest_changed); weight 0 keeps its one bucket but refuses.
    // Fallback (ip_vs_sh_get_fallback): offset k probes bucket
    // (50 + k + 50) & 255.
    run(
        "sh",
        "",
        &[
            Add(1, 1),
            Add(2, 1),
            Pick(2), // [rs2 rs1]: 50 % 2 = 0
            Other,
            Pick(2),
            Add(3, 1),
            Pick(1), // [rs3 rs2 rs1]: 50 % 3 = 2
            Del(1),
            Pick(3), // [rs3 rs2]: 0
            Edit(3, 0),
            Pick(0), // quiesced, no fallback
        ],
    );
    run(
        "sh",
        r#","sched_flags":["sh-fallback"]"#,
        &[
            Add(2, 1),
            Add(3, 1),
            Pick(3),
            Edit(3, 0),
            // offset 0: bucket 100 -> 100 % 2 = 0, rs3 (weight 0);
            // offset 1: bucket 101 -> 1, rs2.
            Pick(2),
            Other,
            Pick(2),
            Edit(3, 1),
            Pick(3),
        ],
    );
    // dh, destination 10.0.0.100 = 0x0A000064: 0x0A000064 * 0x61C88647 =
    // 0xF85473BC -> bucket 248; one bucket per server round robin
    // (ip_vs_dh_reassign); no fallback.
    run(
        "dh",
        "",
        &[
            Add(1, 1),
            Add(2, 1),
            Pick(2), // 248 % 2 = 0
            Add(3, 1),
            Pick(1), // 248 % 3 = 2
            Other,
            Pick(1),
            Del(1),
            Pick(3), // [rs3 rs2]: 0
            Edit(3, 0),
            Pick(0),
        ],
    );
}

#[test]
fn stateless_schedulers_see_each_change() {
    use Step::*;
    // fo (ip_vs_fo_schedule): the highest weight, the first in the list on
    // ties. ovf (ip_vs_ovf_schedule): likewise among servers whose
    // ActiveConn <= weight (all idle here).
    for sched in ["fo", "ovf"] {
        run(
            sched,
            "",
            &[
                Add(1, 2),
                Add(2, 1),
                Pick(1),
                Add(3, 2),
                Pick(3), // list rs3 rs2 rs1: rs3 reaches 2 first
                Edit(3, 1),
                Pick(1),
                Other,
                Pick(1),
                Del(1),
                Pick(3), // rs3 and rs2 at 1: rs3 first
                Edit(3, 0),
                Edit(2, 0),
                Pick(0),
            ],
        );
    }
    // rr as a table: -a after a pick joins at the head, the cursor stays.
    run(
        "rr",
        "",
        &[
            Add(1, 1),
            Pick(1),
            Add(2, 1),
            Pick(2), // after rs1 (the tail): wrap to the head, rs2
            Add(3, 1),
            Pick(1), // list rs3 rs2 rs1, cursor on rs2: rs1
            Other,
            Pick(3),
            Edit(2, 0),
            Pick(1),
            Pick(3),
        ],
    );
}
