//! `sloppy_tcp` (issue #19: directors behind ECMP carry on each other's
//! flows) through the whole per-packet path on the in-memory device.
//!
//! The kernel (ip_vs_proto_tcp.c `tcp_conn_schedule`) opens a connection
//! for `(th->syn || sysctl_sloppy_tcp(ipvs)) && !th->rst`, and its state
//! table takes a connection in NONE to ESTABLISHED on an input ACK
//! (`/*ack*/ {{sES, ...` in `tcp_states`). rvs does so only where every
//! director picks the same real server for a flow: `mh` and `sh` services,
//! not SYN-proxied, to real servers that are not FULLNAT (another
//! director's FULLNAT connection had its own local address and port).

mod common;

use std::net::Ipv4Addr;

use common::rig::*;
use rvs::io::MemIo;
use rvs::wire::TcpFlags;

/// A director with the TCP service of [`service`], neighbours learnt.
fn director(sloppy: bool, sched: &str, fwd: &str) -> Rig<MemIo> {
    let b = common::rig::director([DIR0_MAC, DIR1_MAC])
        .max_connections(1000)
        .sloppy_tcp(sloppy);
    let mut r = Rig::with(MemIo::new(2), b);
    service(&r, sched, fwd);
    r.learn_neighbours();
    r
}

/// The TCP service on the VIP with `sched`, real servers rs1 and rs2;
/// mh and sh hash the client's port too (`mh-port`, `sh-port`), so one
/// client's flows spread over both.
fn service(r: &Rig<MemIo>, sched: &str, fwd: &str) {
    let laddrs = if fwd == "fullnat" {
        r#","laddrs":["10.0.1.200"]"#
    } else {
        ""
    };
    let flags = match sched {
        "mh" | "sh" => format!(r#","sched_flags":["{sched}-port"]"#),
        _ => String::new(),
    };
    r.ctl(&format!(
        r#"{{"cmd":"add_service","service":{{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"{sched}"{flags}{laddrs}}}}}"#
    ));
    for ip in ["10.0.1.11", "10.0.1.12"] {
        r.ctl(&format!(
            r#"{{"cmd":"add_dest","service":{SVC},"dest":{{"ip":"{ip}","port":80,"fwd":"{fwd}"}}}}"#
        ));
    }
}

/// One client packet from `sport` with `flags`: the real server it was
/// sent to, or None if nothing left towards the servers.
fn send(r: &mut Rig<MemIo>, sport: u16, flags: TcpFlags) -> Option<Ipv4Addr> {
    r.worker
        .io
        .push(0, &client_tcp(sport, flags, b"GET /", DIR0_MAC));
    r.step(1);
    let out = r.worker.io.take_tx(1);
    out.first().map(|f| endpoints(f).2)
}

fn states(r: &Rig<MemIo>) -> Vec<String> {
    r.ctl(r#"{"cmd":"connections"}"#)["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap().to_owned())
        .collect()
}

const PSH_ACK: TcpFlags = TcpFlags(TcpFlags::PSH.0 | TcpFlags::ACK.0);

#[test]
fn mid_flow_packets_of_mh_and_sh_services_reach_the_server_a_syn_would() {
    for sched in ["mh", "sh"] {
        // Director A saw the handshakes; the router then moved the flows to
        // B, which has never seen them.
        let mut a = director(true, sched, "nat");
        let ports: Vec<u16> = (40000..40040).collect();
        let picked: Vec<_> = ports
            .iter()
            .map(|&p| send(&mut a, p, TcpFlags::SYN).expect("a SYN is forwarded"))
            .collect();
        assert!(
            picked.contains(&rs1()) && picked.contains(&rs2()),
            "{sched}: both servers used: {picked:?}"
        );
        let mut b = director(true, sched, "nat");
        for (&p, &rs) in ports.iter().zip(&picked) {
            assert_eq!(send(&mut b, p, PSH_ACK), Some(rs), "{sched}: port {p}");
        }
        let st = states(&b);
        assert_eq!(st.len(), ports.len());
        assert!(
            st.iter().all(|s| s == "ESTABLISHED"),
            "{sched}: NONE + ACK is ESTABLISHED: {st:?}"
        );
        // A RST never opens one.
        assert_eq!(send(&mut b, 41000, TcpFlags::RST), None);
        // Without sloppy_tcp (the default), B drops them, as the kernel.
        let mut c = director(false, sched, "nat");
        for &p in &ports {
            assert_eq!(send(&mut c, p, PSH_ACK), None);
        }
        assert_eq!(c.drops("no_conn_not_syn"), ports.len() as u64);
        assert!(states(&c).is_empty());
    }
}

#[test]
fn sloppy_stays_out_of_other_schedulers_and_fullnat() {
    // rr would send a moved flow to any server.
    let mut r = director(true, "rr", "nat");
    assert_eq!(send(&mut r, 40000, PSH_ACK), None);
    assert_eq!(r.drops("no_conn_not_syn"), 1);
    assert!(send(&mut r, 40001, TcpFlags::SYN).is_some());
    // FULLNAT: the real server knew the flow by another local address.
    let mut f = director(true, "mh", "fullnat");
    assert_eq!(send(&mut f, 40000, PSH_ACK), None);
    assert_eq!(f.drops("no_conn_not_syn"), 1);
    assert!(states(&f).is_empty());
    assert!(send(&mut f, 40001, TcpFlags::SYN).is_some());
}
