//! Message-by-message tests: requests laid out byte for byte as libipvs
//! (ipvsadm 1.31 `libipvs/libipvs.c`, keepalived `check/libipvs.c`) puts
//! them with libnl, answers checked against `ip_vs_ctl.c`'s layouts.

use super::codec::*;
use super::*;
use crate::conn::ConnTable;
use crate::stats::WorkerStats;
use crossbeam_utils::CachePadded;
use std::sync::Arc;

fn control() -> Control {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    Control::new(Arc::new(ConnTable::new(4096, 1)), workers, vec![])
}

const PID: u32 = 4242;

/// An attribute as bytes: len, type, payload, padding.
fn nla(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(payload);
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut v = nla(ty | NLA_F_NESTED, &body);
    // nla() padded the body already; the nested length covers it.
    let len = (4 + body.len()) as u16;
    v[0..2].copy_from_slice(&len.to_ne_bytes());
    v
}

/// A genl request: nlmsghdr (len, type, flags, seq, pid), genlmsghdr (cmd,
/// version 1, reserved), attributes.
fn request(ty: u16, flags: u16, seq: u32, cmd: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = attrs.concat();
    let len = (16 + 4 + body.len()) as u32;
    let mut v = Vec::new();
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&PID.to_ne_bytes());
    v.extend_from_slice(&[cmd, 1, 0, 0]);
    v.extend_from_slice(&body);
    v
}

const REQ_ACK: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// `ipvs_nl_fill_service_attr` for TCP `a.b.c.d:port` with `sched`,
/// flags/timeout/netmask as ipvsadm's defaults (flags 0 mask ~0, timeout 0,
/// netmask 255.255.255.255 in network order).
fn svc_attr(addr: [u8; 4], port: u16, sched: &str, flags: u32, timeout: u32) -> Vec<u8> {
    let mut a16 = [0u8; 16];
    a16[..4].copy_from_slice(&addr);
    let mut f = flags.to_ne_bytes().to_vec();
    f.extend_from_slice(&u32::MAX.to_ne_bytes());
    let mut s = sched.as_bytes().to_vec();
    s.push(0);
    nest(
        1,
        &[
            nla(1, &2u16.to_ne_bytes()),    // AF_INET
            nla(2, &6u16.to_ne_bytes()),    // IPPROTO_TCP
            nla(3, &a16),                   // ADDR, 16 bytes
            nla(4, &port.to_be_bytes()),    // PORT, network order
            nla(6, &s),                     // SCHED_NAME
            nla(7, &f),                     // FLAGS {flags, mask}
            nla(8, &timeout.to_ne_bytes()), // TIMEOUT
            nla(9, &[255, 255, 255, 255]),  // NETMASK
        ],
    )
}

fn svc_id_attr(addr: [u8; 4], port: u16) -> Vec<u8> {
    let mut a16 = [0u8; 16];
    a16[..4].copy_from_slice(&addr);
    nest(
        1,
        &[
            nla(1, &2u16.to_ne_bytes()),
            nla(2, &6u16.to_ne_bytes()),
            nla(3, &a16),
            nla(4, &port.to_be_bytes()),
        ],
    )
}

/// `ipvs_nl_fill_dest_attr` (ipvsadm 1.31: ADDR, PORT, TUN_TYPE/PORT/FLAGS,
/// FWD_METHOD, WEIGHT, U/L_THRESH, ADDR_FAMILY).
fn dest_attr(addr: [u8; 4], port: u16, fwd: u32, weight: u32) -> Vec<u8> {
    let mut a16 = [0u8; 16];
    a16[..4].copy_from_slice(&addr);
    nest(
        2,
        &[
            nla(1, &a16),
            nla(2, &port.to_be_bytes()),
            nla(13, &[0]),
            nla(14, &0u16.to_be_bytes()),
            nla(15, &0u16.to_ne_bytes()),
            nla(3, &fwd.to_ne_bytes()),
            nla(4, &weight.to_ne_bytes()),
            nla(5, &0u32.to_ne_bytes()),
            nla(6, &0u32.to_ne_bytes()),
            nla(11, &2u16.to_ne_bytes()),
        ],
    )
}

/// The NLMSG_ERROR code of an answer (None if it is no error message).
fn error_of(m: &[u8]) -> Option<i32> {
    let h = NlHeader::parse(m).unwrap();
    (h.ty == NLMSG_ERROR).then(|| i32::from_ne_bytes(m[16..20].try_into().unwrap()))
}

fn only_ack(out: &[Vec<u8>]) -> i32 {
    assert_eq!(out.len(), 1, "one answer: {out:?}");
    error_of(&out[0]).expect("an NLMSG_ERROR")
}

#[test]
fn getfamily_ipvs_answers_rvs_family_id_then_acks() {
    let ctl = control();
    // genl_ctrl_probe_by_name: CTRL_CMD_GETFAMILY, version 1,
    // CTRL_ATTR_FAMILY_NAME "IPVS\0".
    let req = request(0x10, REQ_ACK, 9, 3, &[nla(2, b"IPVS\0")]);
    let out = handle_datagram(&ctl, PID, &req);
    assert_eq!(out.len(), 2);
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!((g.hdr.ty, g.hdr.seq, g.hdr.pid, g.cmd), (0x10, 9, PID, 1));
    assert_eq!(g.attrs.u16(1).unwrap(), Some(IPVS_FAMILY_ID));
    assert_eq!(g.attrs.string(2).unwrap().as_deref(), Some("IPVS"));
    assert_eq!(g.attrs.u32(3).unwrap(), Some(1));
    assert_eq!(error_of(&out[1]), Some(0));
    // Another family is not ours: ENOENT, as the kernel answers for an
    // unknown family.
    let req = request(0x10, REQ_ACK, 10, 3, &[nla(2, b"nl80211\0")]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &req)), -errno::ENOENT);
}

#[test]
fn get_info_reports_version_1_2_1_and_table_size() {
    let ctl = control();
    let out = handle_datagram(&ctl, PID, &request(IPVS_FAMILY_ID, REQ_ACK, 3, 15, &[]));
    assert_eq!(out.len(), 2, "reply then ACK");
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!(g.cmd, cmd::SET_INFO);
    assert_eq!(g.hdr.flags, 0);
    assert_eq!(g.attrs.u32(1).unwrap(), Some(0x010201));
    assert_eq!(g.attrs.u32(2).unwrap(), Some(4096));
    assert_eq!(error_of(&out[1]), Some(0));
    // Without NLM_F_ACK: the reply only.
    let out = handle_datagram(
        &ctl,
        PID,
        &request(IPVS_FAMILY_ID, NLM_F_REQUEST, 4, 15, &[]),
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn new_service_then_dump_it_back_with_the_kernels_layout() {
    let ctl = control();
    let add = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        5,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 100], 80, "rr", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), 0);
    // Again: EEXIST ("Service already exists").
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), -errno::EEXIST);
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
        6,
        cmd::GET_SERVICE,
        &[],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    assert_eq!(out.len(), 2, "one service and NLMSG_DONE");
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!(g.cmd, cmd::NEW_SERVICE);
    assert_eq!(g.hdr.flags, NLM_F_MULTI);
    assert_eq!(g.hdr.seq, 6);
    let s = g.attrs.nested(1).unwrap().unwrap();
    assert_eq!(s.u16(1).unwrap(), Some(2));
    assert_eq!(s.u16(2).unwrap(), Some(6));
    let addr = s.get(3).unwrap();
    assert_eq!(addr.len(), 16, "sizeof(union nf_inet_addr)");
    assert_eq!(&addr[..4], &[10, 0, 0, 100]);
    // Port in network order: 80 = 0x0050.
    assert_eq!(s.get(4).unwrap(), &[0x00, 0x50]);
    assert_eq!(s.string(6).unwrap().as_deref(), Some("rr"));
    let f = s.get(7).unwrap();
    assert_eq!(f.len(), 8, "struct ip_vs_flags");
    assert_eq!(
        u32::from_ne_bytes(f[4..8].try_into().unwrap()),
        u32::MAX,
        "mask ~0"
    );
    assert_eq!(s.u32(8).unwrap(), Some(0));
    assert_eq!(s.get(9).unwrap(), &[255, 255, 255, 255]);
    // STATS: u32 conns/pkts, u64 bytes; STATS64 all u64.
    let st = s.nested(10).unwrap().unwrap();
    assert_eq!(st.get(1).unwrap().len(), 4);
    assert_eq!(st.get(4).unwrap().len(), 8);
    let st64 = s.nested(12).unwrap().unwrap();
    assert_eq!(st64.get(1).unwrap().len(), 8);
    let done = NlHeader::parse(&out[1]).unwrap();
    assert_eq!(
        (done.ty, done.flags, done.seq),
        (NLMSG_DONE, NLM_F_MULTI, 6)
    );
}

#[test]
fn persistent_flag_timeout_and_sched_flags_map_onto_the_service() {
    let ctl = control();
    let add = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::NEW_SERVICE,
        &[svc_attr(
            [10, 0, 0, 100],
            443,
            "sh",
            svc_flags::PERSISTENT | svc_flags::SCHED1,
            360,
        )],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), 0);
    let c = &ctl.services()[0];
    assert_eq!(c.persistent, Some(360));
    assert_eq!(c.sched_flags, vec!["sh-fallback".to_string()]);
    // SET_SERVICE to rr without persistence (ipvsadm -E).
    let edit = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        2,
        cmd::SET_SERVICE,
        &[svc_attr([10, 0, 0, 100], 443, "rr", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &edit)), 0);
    let c = &ctl.services()[0];
    assert_eq!((c.sched.as_str(), c.persistent), ("rr", None));
    // An unknown scheduler: ENOENT ("Scheduler or persistence engine not found").
    let bad = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        3,
        cmd::SET_SERVICE,
        &[svc_attr([10, 0, 0, 100], 443, "nosuch", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &bad)), -errno::ENOENT);
    // Editing a service that does not exist: ESRCH.
    let none = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        4,
        cmd::SET_SERVICE,
        &[svc_attr([10, 0, 0, 101], 443, "rr", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &none)), -errno::ESRCH);
}

#[test]
fn a_service_without_its_full_entry_is_einval() {
    let ctl = control();
    // NEW_SERVICE with identifying fields only.
    let req = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::NEW_SERVICE,
        &[svc_id_attr([10, 0, 0, 100], 80)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &req)), -errno::EINVAL);
    // No AF: EINVAL; AF 7: EAFNOSUPPORT (ip_vs_genl_parse_service).
    let no_af = nest(1, &[nla(5, &1u32.to_ne_bytes())]);
    let req = request(IPVS_FAMILY_ID, REQ_ACK, 2, cmd::DEL_SERVICE, &[no_af]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &req)), -errno::EINVAL);
    let bad_af = nest(
        1,
        &[nla(1, &7u16.to_ne_bytes()), nla(5, &1u32.to_ne_bytes())],
    );
    let req = request(IPVS_FAMILY_ID, REQ_ACK, 3, cmd::DEL_SERVICE, &[bad_af]);
    assert_eq!(
        only_ack(&handle_datagram(&ctl, PID, &req)),
        -errno::EAFNOSUPPORT
    );
    // Nothing was added.
    assert!(ctl.services().is_empty());
}

#[test]
fn dests_add_edit_dump_delete_with_kernel_errnos() {
    let ctl = control();
    let vip = [10, 0, 0, 100];
    let add_svc = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::NEW_SERVICE,
        &[svc_attr(vip, 80, "wlc", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add_svc)), 0);
    let add = |seq, c, addr, w| {
        request(
            IPVS_FAMILY_ID,
            REQ_ACK,
            seq,
            c,
            &[svc_id_attr(vip, 80), dest_attr(addr, 80, fwd::MASQ, w)],
        )
    };
    assert_eq!(
        only_ack(&handle_datagram(
            &ctl,
            PID,
            &add(2, cmd::NEW_DEST, [10, 0, 1, 11], 1)
        )),
        0
    );
    assert_eq!(
        only_ack(&handle_datagram(
            &ctl,
            PID,
            &add(3, cmd::NEW_DEST, [10, 0, 1, 11], 1)
        )),
        -errno::EEXIST
    );
    assert_eq!(
        only_ack(&handle_datagram(
            &ctl,
            PID,
            &add(4, cmd::SET_DEST, [10, 0, 1, 11], 7)
        )),
        0
    );
    assert_eq!(ctl.services()[0].dests[0].weight, 7);
    // SET_DEST of an unknown destination: ENOENT; negative weight: ERANGE.
    assert_eq!(
        only_ack(&handle_datagram(
            &ctl,
            PID,
            &add(5, cmd::SET_DEST, [10, 0, 1, 12], 1)
        )),
        -errno::ENOENT
    );
    assert_eq!(
        only_ack(&handle_datagram(
            &ctl,
            PID,
            &add(6, cmd::NEW_DEST, [10, 0, 1, 12], u32::MAX)
        )),
        -errno::ERANGE
    );
    // A dest for a service that does not exist: ESRCH.
    let orphan = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        7,
        cmd::NEW_DEST,
        &[
            svc_id_attr([10, 0, 0, 99], 80),
            dest_attr([10, 0, 1, 11], 80, 0, 1),
        ],
    );
    assert_eq!(
        only_ack(&handle_datagram(&ctl, PID, &orphan)),
        -errno::ESRCH
    );
    // GET_DEST dump: one NEW_DEST message with the kernel's attributes.
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
        8,
        cmd::GET_DEST,
        &[svc_id_attr(vip, 80)],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    assert_eq!(out.len(), 2);
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!((g.cmd, g.hdr.flags), (cmd::NEW_DEST, NLM_F_MULTI));
    let d = g.attrs.nested(2).unwrap().unwrap();
    assert_eq!(&d.get(1).unwrap()[..4], &[10, 0, 1, 11]);
    assert_eq!(d.get(1).unwrap().len(), 16);
    assert_eq!(d.get(2).unwrap(), &[0, 80]);
    assert_eq!(d.u32(3).unwrap(), Some(fwd::MASQ));
    assert_eq!(d.u32(4).unwrap(), Some(7));
    assert_eq!(d.u16(11).unwrap(), Some(2));
    assert_eq!(d.u32(7).unwrap(), Some(0), "ACTIVE_CONNS");
    // The dump of an unknown service is empty, not an error.
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_DUMP,
        9,
        cmd::GET_DEST,
        &[svc_id_attr([1, 2, 3, 4], 80)],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    assert_eq!(out.len(), 1);
    assert_eq!(NlHeader::parse(&out[0]).unwrap().ty, NLMSG_DONE);
    // DEL_DEST, then again: ENOENT.
    let del = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        10,
        cmd::DEL_DEST,
        &[
            svc_id_attr(vip, 80),
            nest(
                2,
                &[
                    nla(1, &[10, 0, 1, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                    nla(2, &80u16.to_be_bytes()),
                ],
            ),
        ],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &del)), 0);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &del)), -errno::ENOENT);
}

#[test]
fn config_timeouts_zero_flush_and_daemons() {
    let ctl = control();
    let set = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::SET_CONFIG,
        &[
            nla(4, &600u32.to_ne_bytes()),
            nla(5, &0u32.to_ne_bytes()),
            nla(6, &200u32.to_ne_bytes()),
        ],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &set)), 0);
    let out = handle_datagram(
        &ctl,
        PID,
        &request(IPVS_FAMILY_ID, REQ_ACK, 2, cmd::GET_CONFIG, &[]),
    );
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!(g.cmd, cmd::SET_CONFIG);
    // 0 left FIN_WAIT at its default 120 s.
    assert_eq!(
        (
            g.attrs.u32(4).unwrap(),
            g.attrs.u32(5).unwrap(),
            g.attrs.u32(6).unwrap()
        ),
        (Some(600), Some(120), Some(200))
    );
    // ZERO of an unknown service: ESRCH; of all: fine.
    let z = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        3,
        cmd::ZERO,
        &[svc_id_attr([1, 1, 1, 1], 1)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &z)), -errno::ESRCH);
    let z = request(IPVS_FAMILY_ID, REQ_ACK, 4, cmd::ZERO, &[]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &z)), 0);
    // No sync daemon: an empty GET_DAEMON dump, ESRCH to stop one.
    let dump = |seq| {
        handle_datagram(
            &ctl,
            PID,
            &request(
                IPVS_FAMILY_ID,
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                cmd::GET_DAEMON,
                &[],
            ),
        )
    };
    let out = dump(5);
    assert_eq!(out.len(), 1);
    assert_eq!(NlHeader::parse(&out[0]).unwrap().ty, NLMSG_DONE);
    let daemon = |seq, cmd, attrs: &[Vec<u8>]| {
        let r = request(IPVS_FAMILY_ID, REQ_ACK, seq, cmd, &[nest(3, attrs)]);
        only_ack(&handle_datagram(&ctl, PID, &r))
    };
    let state = |s: u32| nla(1, &s.to_ne_bytes());
    let ifn = |n: &str| nla(2, format!("{n}\0").as_bytes());
    let syncid = |i: u32| nla(3, &i.to_ne_bytes());
    assert_eq!(daemon(6, cmd::DEL_DAEMON, &[state(1)]), -errno::ESRCH);
    // ip_vs_genl_new_daemon: state, interface and syncid are required;
    // a group must be multicast; start_sync_thread: no such device.
    assert_eq!(daemon(7, cmd::NEW_DAEMON, &[state(1)]), -errno::EINVAL);
    assert_eq!(
        daemon(
            7,
            cmd::NEW_DAEMON,
            &[state(1), ifn("lo"), syncid(7), nla(5, &[10, 0, 0, 1])]
        ),
        -errno::EINVAL
    );
    assert_eq!(
        daemon(7, cmd::NEW_DAEMON, &[state(1), ifn("nosuch9"), syncid(7)]),
        -errno::ENODEV
    );
    // A master on lo, then the dump as ip_vs_genl_fill_daemon fills it
    // (the kernel's defaults: maxlen 1500 - 28, port 8848, TTL 1).
    assert_eq!(
        daemon(7, cmd::NEW_DAEMON, &[state(1), ifn("lo"), syncid(7)]),
        0
    );
    assert_eq!(
        daemon(7, cmd::NEW_DAEMON, &[state(1), ifn("lo"), syncid(7)]),
        -errno::EEXIST
    );
    let out = dump(8);
    assert_eq!(out.len(), 2);
    let g = GenlMsg::parse(&out[0]).unwrap();
    assert_eq!(g.cmd, cmd::NEW_DAEMON);
    let d = g.attrs.nested(3).unwrap().unwrap();
    assert_eq!(d.u32(1).unwrap(), Some(1));
    assert_eq!(d.string(2).unwrap().as_deref(), Some("lo"));
    assert_eq!(d.u32(3).unwrap(), Some(7));
    assert_eq!(d.u16(4).unwrap(), Some(1472));
    assert_eq!(d.get(5), Some(&[224, 0, 0, 81][..]));
    assert_eq!(d.u16(7).unwrap(), Some(8848));
    assert_eq!(d.u8(8).unwrap(), Some(1));
    assert_eq!(daemon(9, cmd::DEL_DAEMON, &[state(1)]), 0);
    assert_eq!(daemon(9, cmd::DEL_DAEMON, &[state(1)]), -errno::ESRCH);
    assert_eq!(NlHeader::parse(&dump(10)[0]).unwrap().ty, NLMSG_DONE);
    // FLUSH empties the table.
    let add = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        8,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 1], 80, "rr", 0, 0)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), 0);
    let f = request(IPVS_FAMILY_ID, REQ_ACK, 9, cmd::FLUSH, &[]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &f)), 0);
    assert!(ctl.services().is_empty());
}

#[test]
fn unknown_commands_garbage_and_non_requests() {
    let ctl = control();
    // A command number past IPVS_CMD_MAX: EOPNOTSUPP (genl: no such op).
    let r = request(IPVS_FAMILY_ID, REQ_ACK, 1, 42, &[]);
    assert_eq!(
        only_ack(&handle_datagram(&ctl, PID, &r)),
        -errno::EOPNOTSUPP
    );
    // A message that is not a request gets no answer.
    let r = request(IPVS_FAMILY_ID, 0, 2, cmd::FLUSH, &[]);
    assert!(handle_datagram(&ctl, PID, &r).is_empty());
    // Truncated attributes: EINVAL, nothing applied.
    let mut r = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        3,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 1], 80, "rr", 0, 0)],
    );
    r[20] = 0xff; // the service nest claims 255+ bytes
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &r)), -errno::EINVAL);
    assert!(ctl.services().is_empty());
    // Every prefix of a valid request: never a panic.
    let full = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        4,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 1], 80, "rr", 0, 0)],
    );
    for cut in 0..full.len() {
        let mut m = full[..cut].to_vec();
        if m.len() >= 4 {
            m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
        }
        let _ = handle_datagram(&ctl, PID, &m);
    }
}

#[test]
fn two_messages_in_one_datagram_are_both_answered() {
    let ctl = control();
    let mut d = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 1], 80, "rr", 0, 0)],
    );
    d.extend(request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        2,
        cmd::NEW_SERVICE,
        &[svc_attr([10, 0, 0, 2], 80, "rr", 0, 0)],
    ));
    let out = handle_datagram(&ctl, PID, &d);
    assert_eq!(out.len(), 2);
    assert_eq!(ctl.services().len(), 2);
}

#[test]
fn conn_text_has_the_kernels_header() {
    let ctl = control();
    let t = conn_text(&ctl);
    assert_eq!(
        t,
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
    );
}

#[test]
fn dest_dump_lists_what_is_in_service_as_rvsadm_does() {
    use crate::flow::{Proto, ServiceKey};
    use crate::health::HealthEvent;
    let ctl = control();
    // rs1 with a check that will fail (remove), rs2 with one that quiesces,
    // rs3 unchecked; a sorry server.
    let req = r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80,
        "sched":"rr","sorry_server":{"ip":"10.0.1.13","port":8081,"fwd":"nat"},
        "dests":[{"ip":"10.0.1.11","fwd":"nat","weight":2,"health":{"type":"tcp"}},
                 {"ip":"10.0.1.12","fwd":"nat","weight":3,"health":{"type":"tcp","on_failure":"quiesce"}},
                 {"ip":"10.0.1.14","fwd":"nat","weight":0}]}}"#;
    assert!(ctl.handle_line(req).contains("\"ok\":true"));
    let key = ServiceKey::new(Proto::Tcp, "10.0.0.100".parse().unwrap(), 80);
    for ip in ["10.0.1.11", "10.0.1.12"] {
        ctl.health_event(HealthEvent {
            dest: (key, ip.parse().unwrap(), 80),
            ok: false,
            error: Some("refused".into()),
            transition: Some(false),
            failed_attempts: 1,
            weight: None,
        });
    }
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_DUMP,
        1,
        cmd::GET_DEST,
        &[svc_id_attr([10, 0, 0, 100], 80)],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    let got: Vec<(Vec<u8>, u16, u32)> = out[..out.len() - 1]
        .iter()
        .map(|m| {
            let g = GenlMsg::parse(m).unwrap();
            let d = g.attrs.nested(2).unwrap().unwrap();
            (
                d.get(1).unwrap()[..4].to_vec(),
                d.be16(2).unwrap().unwrap(),
                d.u32(4).unwrap().unwrap(),
            )
        })
        .collect();
    // rs1 removed; rs2 quiesced (weight 0); rs3 configured 0; the sorry
    // server in service (no real server has a positive weight).
    assert_eq!(
        got,
        vec![
            (vec![10, 0, 1, 12], 80, 0),
            (vec![10, 0, 1, 14], 80, 0),
            (vec![10, 0, 1, 13], 8081, 1),
        ]
    );
}

#[test]
fn fwmark_services_map_onto_the_fwmark_contract() {
    let ctl = control();
    // ipvs_nl_fill_service_attr for `-A -f 7 -s rr -p 300`: AF, FWMARK (no
    // protocol/address/port), SCHED_NAME, FLAGS, TIMEOUT, NETMASK.
    let svc = nest(
        1,
        &[
            nla(1, &2u16.to_ne_bytes()),
            nla(5, &7u32.to_ne_bytes()),
            nla(6, b"rr\0"),
            nla(7, &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            nla(8, &300u32.to_ne_bytes()),
            nla(9, &[255, 255, 255, 255]),
        ],
    );
    let add = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        1,
        cmd::NEW_SERVICE,
        std::slice::from_ref(&svc),
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), 0);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &add)), -errno::EEXIST);
    let id = nest(
        1,
        &[nla(1, &2u16.to_ne_bytes()), nla(5, &7u32.to_ne_bytes())],
    );
    let dest = request(
        IPVS_FAMILY_ID,
        REQ_ACK,
        2,
        cmd::NEW_DEST,
        &[id.clone(), dest_attr([10, 0, 1, 11], 80, fwd::MASQ, 2)],
    );
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &dest)), 0);
    let c = &ctl.services()[0];
    assert_eq!((c.fwmark, c.persistent, c.dests.len()), (7, Some(300), 1));
    // The dump names it by its mark alone, as ip_vs_genl_fill_service.
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_DUMP,
        3,
        cmd::GET_SERVICE,
        &[],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    let g = GenlMsg::parse(&out[0]).unwrap();
    let s = g.attrs.nested(1).unwrap().unwrap();
    assert_eq!(s.u32(5).unwrap(), Some(7));
    assert!(
        !s.has(2) && !s.has(3) && !s.has(4),
        "no protocol/address/port"
    );
    assert_eq!(s.u32(8).unwrap(), Some(300));
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_DUMP,
        4,
        cmd::GET_DEST,
        std::slice::from_ref(&id),
    );
    assert_eq!(
        handle_datagram(&ctl, PID, &dump).len(),
        2,
        "one dest + DONE"
    );
    // Another mark: ESRCH; delete it: gone.
    let other = nest(
        1,
        &[nla(1, &2u16.to_ne_bytes()), nla(5, &8u32.to_ne_bytes())],
    );
    let del = request(IPVS_FAMILY_ID, REQ_ACK, 5, cmd::DEL_SERVICE, &[other]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &del)), -errno::ESRCH);
    let del = request(IPVS_FAMILY_ID, REQ_ACK, 6, cmd::DEL_SERVICE, &[id]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &del)), 0);
    assert!(ctl.services().is_empty());
}

#[test]
fn one_packet_scheduling_is_ops_for_udp_and_einval_for_tcp() {
    let ctl = control();
    let svc = |proto: u16| {
        let mut a16 = [0u8; 16];
        a16[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut f = svc_flags::ONEPACKET.to_ne_bytes().to_vec();
        f.extend_from_slice(&u32::MAX.to_ne_bytes());
        nest(
            1,
            &[
                nla(1, &2u16.to_ne_bytes()),
                nla(2, &proto.to_ne_bytes()),
                nla(3, &a16),
                nla(4, &53u16.to_be_bytes()),
                nla(6, b"rr\0"),
                nla(7, &f),
                nla(8, &0u32.to_ne_bytes()),
                nla(9, &[255, 255, 255, 255]),
            ],
        )
    };
    // TCP with ONEPACKET: ipvsadm.c refuses it before asking ("One-Packet
    // Scheduling is only for UDP virtual services"); the kernel would take
    // the flag and ignore it for TCP. rvs's control validation refuses it,
    // so a netlink client gets EINVAL (a deliberate difference).
    let tcp = request(IPVS_FAMILY_ID, REQ_ACK, 1, cmd::NEW_SERVICE, &[svc(6)]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &tcp)), -errno::EINVAL);
    assert!(ctl.services().is_empty());
    let udp = request(IPVS_FAMILY_ID, REQ_ACK, 2, cmd::NEW_SERVICE, &[svc(17)]);
    assert_eq!(only_ack(&handle_datagram(&ctl, PID, &udp)), 0);
    assert!(ctl.services()[0].ops);
    // The dump carries IP_VS_SVC_F_ONEPACKET in FLAGS.
    let dump = request(
        IPVS_FAMILY_ID,
        NLM_F_REQUEST | NLM_F_DUMP,
        3,
        cmd::GET_SERVICE,
        &[],
    );
    let out = handle_datagram(&ctl, PID, &dump);
    let g = GenlMsg::parse(&out[0]).unwrap();
    let s = g.attrs.nested(1).unwrap().unwrap();
    let f = u32::from_ne_bytes(s.get(7).unwrap()[..4].try_into().unwrap());
    assert_ne!(f & svc_flags::ONEPACKET, 0, "flags {f:#x}");
}
