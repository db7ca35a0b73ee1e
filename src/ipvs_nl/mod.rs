//! The kernel's IPVS generic-netlink interface, served by rvsd, so that
//! unmodified `ipvsadm` and `keepalived` (through the preload library in
//! `preload/`) configure rvs.
//!
//! This module owns the protocol: it decodes the messages libipvs sends
//! (`include/uapi/linux/ip_vs.h`), answers the family lookup
//! (`CTRL_CMD_GETFAMILY` "IPVS"), and maps each `IPVS_CMD_*` onto the JSON
//! control [`Request`]s — built as JSON text and parsed by
//! [`crate::control::parse_request`], so validation and apply are the JSON
//! socket's, never a copy of them. Replies, dumps, ACKs and errors are laid
//! out as `net/netfilter/ipvs/ip_vs_ctl.c` (`ip_vs_genl_*`) lays them out,
//! refusals carry the errno the kernel returns, and libipvs's
//! `ipvs_strerror` then prints the texts operators know.
//!
//! It may not touch the data path or the configuration except through
//! [`Control::handle`].

pub mod codec;
mod fill;
pub mod server;
mod uapi;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{json, Value};

use crate::control::{
    from_reply, parse_request, Control, CtlError, ErrorCode, ListReply, ServiceView, TimeoutsReply,
};
use crate::flow::{Proto, ServiceKey};
use codec::{Attrs, GenlMsg, MsgBuilder, NlHeader};
use fill::*;
pub use uapi::*;

/// A refusal: the (positive) errno, and why, for rvsd's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub errno: i32,
    pub why: String,
}

impl Refusal {
    fn new(errno: i32, why: impl Into<String>) -> Refusal {
        Refusal {
            errno,
            why: why.into(),
        }
    }
    fn inval(why: impl Into<String>) -> Refusal {
        Refusal::new(errno::EINVAL, why)
    }
}

impl From<codec::Error> for Refusal {
    fn from(e: codec::Error) -> Refusal {
        Refusal::inval(e.to_string())
    }
}

/// Answer one request datagram from the socket with netlink port id
/// `portid`: the datagrams the kernel would queue on that socket, in order
/// (for a dump, one message per datagram and `NLMSG_DONE` last).
pub fn handle_datagram(ctl: &Control, portid: u32, data: &[u8]) -> Vec<Vec<u8>> {
    let msgs = match codec::split_messages(data) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("ipvs netlink: undecodable datagram: {e}");
            // The kernel drops a datagram it cannot frame (netlink_rcv_skb
            // stops at a bad length) without an answer.
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for m in msgs {
        out.extend(handle_message(ctl, portid, m));
    }
    out
}

/// One netlink message (see [`handle_datagram`]).
pub fn handle_message(ctl: &Control, portid: u32, msg: &[u8]) -> Vec<Vec<u8>> {
    let Ok(hdr) = NlHeader::parse(msg) else {
        return Vec::new();
    };
    // Only requests are acted on (`netlink_rcv_skb`: no NLM_F_REQUEST → skip,
    // no answer).
    if hdr.flags & codec::NLM_F_REQUEST == 0 {
        return Vec::new();
    }
    let wants_ack = hdr.flags & codec::NLM_F_ACK != 0;
    let result = match GenlMsg::parse(msg) {
        Err(e) => Err(Refusal::from(e)),
        Ok(g) if hdr.ty == ctrl::GENL_ID_CTRL => ctrl_request(&g, portid),
        Ok(g) if hdr.ty == IPVS_FAMILY_ID => ipvs_request(ctl, &g, portid),
        Ok(_) => Err(Refusal::new(
            errno::EOPNOTSUPP,
            format!("message type {:#x} is not the IPVS family", hdr.ty),
        )),
    };
    match result {
        Ok(Reply::Dump(mut msgs)) => {
            // A dump ends with NLMSG_DONE and is never ACKed.
            msgs.push(codec::done(hdr.seq, portid));
            msgs
        }
        Ok(Reply::Doit(mut msgs)) => {
            if wants_ack {
                msgs.push(codec::ack(msg, 0, portid));
            }
            msgs
        }
        Err(r) => {
            log::info!("ipvs netlink: refused ({}): {}", errno_name(r.errno), r.why);
            vec![codec::ack(msg, -r.errno, portid)]
        }
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        errno::EPERM => "EPERM",
        errno::ENOENT => "ENOENT",
        errno::ESRCH => "ESRCH",
        errno::EEXIST => "EEXIST",
        errno::EINVAL => "EINVAL",
        errno::ERANGE => "ERANGE",
        errno::EOPNOTSUPP => "EOPNOTSUPP",
        errno::EAFNOSUPPORT => "EAFNOSUPPORT",
        _ => "errno",
    }
}

enum Reply {
    /// A `doit` answer: zero or one message, then the ACK if asked for.
    Doit(Vec<Vec<u8>>),
    /// A dump: its messages (NLMSG_DONE is added).
    Dump(Vec<Vec<u8>>),
}

/// `CTRL_CMD_GETFAMILY` for "IPVS" (`ctrl_getfamily`): the family with
/// rvs's id. Any other name is the kernel's business; the preload library
/// sends only this one here, so another name is `ENOENT` as the kernel says
/// for a family it does not know.
fn ctrl_request(g: &GenlMsg, portid: u32) -> Result<Reply, Refusal> {
    if g.cmd != ctrl::CMD_GETFAMILY {
        return Err(Refusal::new(errno::EOPNOTSUPP, "only CTRL_CMD_GETFAMILY"));
    }
    let name = g.attrs.string(ctrl::ATTR_FAMILY_NAME)?;
    if name.as_deref() != Some(IPVS_GENL_NAME) {
        return Err(Refusal::new(
            errno::ENOENT,
            format!("family {name:?} is not served here"),
        ));
    }
    let mut b = MsgBuilder::genl(
        ctrl::GENL_ID_CTRL,
        0,
        g.hdr.seq,
        portid,
        ctrl::CMD_NEWFAMILY,
        2,
    );
    b.put_str(ctrl::ATTR_FAMILY_NAME, IPVS_GENL_NAME)
        .put_u16(ctrl::ATTR_FAMILY_ID, IPVS_FAMILY_ID)
        .put_u32(ctrl::ATTR_VERSION, IPVS_GENL_VERSION)
        .put_u32(ctrl::ATTR_HDRSIZE, 0)
        .put_u32(ctrl::ATTR_MAXATTR, u32::from(cmd_attr::TIMEOUT_UDP));
    Ok(Reply::Doit(vec![b.finish()]))
}

fn ipvs_request(ctl: &Control, g: &GenlMsg, portid: u32) -> Result<Reply, Refusal> {
    let dump = g.hdr.flags & codec::NLM_F_DUMP == codec::NLM_F_DUMP;
    let seq = g.hdr.seq;
    let reply = |cmd: u8| MsgBuilder::genl(IPVS_FAMILY_ID, 0, seq, portid, cmd, 1);
    let multi = |cmd: u8| MsgBuilder::genl(IPVS_FAMILY_ID, codec::NLM_F_MULTI, seq, portid, cmd, 1);
    match (g.cmd, dump) {
        (cmd::GET_SERVICE, true) => {
            let msgs = ctl
                .list()
                .services
                .iter()
                .map(|s| {
                    let mut b = multi(cmd::NEW_SERVICE);
                    fill_service(&mut b, s);
                    b.finish()
                })
                .collect();
            Ok(Reply::Dump(msgs))
        }
        (cmd::GET_SERVICE, false) => {
            let id = parse_svc_id(&g.attrs)?;
            let list = ctl.list();
            let s =
                find(&list, &id).ok_or_else(|| Refusal::new(errno::ESRCH, "no such service"))?;
            let mut b = reply(cmd::NEW_SERVICE);
            fill_service(&mut b, s);
            Ok(Reply::Doit(vec![b.finish()]))
        }
        (cmd::GET_DEST, true) => {
            // ip_vs_genl_dump_dests: an unknown or malformed service is an
            // empty dump, not an error.
            let Ok(id) = parse_svc_id(&g.attrs) else {
                return Ok(Reply::Dump(Vec::new()));
            };
            let list = ctl.list();
            let msgs = find(&list, &id)
                .map(|s| {
                    // What the kernel's table holds when keepalived manages
                    // it, as `rvsadm -L` lists it: a real server rvsd's own
                    // check removed is absent, the sorry server is there
                    // while it stands in.
                    s.serving()
                        .map(|d| {
                            let mut b = multi(cmd::NEW_DEST);
                            fill_dest(&mut b, d, svc_af(s));
                            b.finish()
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Reply::Dump(msgs))
        }
        // ip_vs_genl_dump_daemons: the master, then the backup.
        (cmd::GET_DAEMON, true) => Ok(Reply::Dump(
            ctl.sync
                .status()
                .iter()
                .map(|(role, conf)| {
                    let mut b = multi(cmd::NEW_DAEMON);
                    fill_daemon(&mut b, *role, conf);
                    b.finish()
                })
                .collect(),
        )),
        (cmd::GET_INFO, false) => {
            let size = ctl.list().conn_table.capacity as u64;
            let mut b = reply(cmd::SET_INFO);
            b.put_u32(info_attr::VERSION, IP_VS_VERSION_CODE)
                .put_u32(info_attr::CONN_TAB_SIZE, size.min(u32::MAX as u64) as u32);
            Ok(Reply::Doit(vec![b.finish()]))
        }
        (cmd::GET_CONFIG, false) => {
            let t = control(ctl, json!({"cmd": "get_timeouts"}))?;
            let t: TimeoutsReply = from_reply(t).map_err(map_ctl_error)?;
            let mut b = reply(cmd::SET_CONFIG);
            b.put_u32(cmd_attr::TIMEOUT_TCP, t.timeouts.tcp)
                .put_u32(cmd_attr::TIMEOUT_TCP_FIN, t.timeouts.tcpfin)
                .put_u32(cmd_attr::TIMEOUT_UDP, t.timeouts.udp);
            Ok(Reply::Doit(vec![b.finish()]))
        }
        (cmd::SET_CONFIG, false) => {
            // ip_vs_genl_set_config: absent or 0 leaves a timeout as it is.
            let get = |t| g.attrs.u32(t).map(|v| v.unwrap_or(0));
            let timeouts = json!({
                "tcp": get(cmd_attr::TIMEOUT_TCP)?,
                "tcpfin": get(cmd_attr::TIMEOUT_TCP_FIN)?,
                "udp": get(cmd_attr::TIMEOUT_UDP)?,
            });
            control(ctl, json!({"cmd": "set_timeouts", "timeouts": timeouts}))?;
            Ok(Reply::Doit(Vec::new()))
        }
        (cmd::FLUSH, false) => {
            control(ctl, json!({"cmd": "clear"}))?;
            Ok(Reply::Doit(Vec::new()))
        }
        (cmd::ZERO, false) => {
            let req = if g.attrs.has(cmd_attr::SERVICE) {
                let id = parse_svc_id(&g.attrs)?;
                json!({"cmd": "zero", "service": id.svc_ref()})
            } else {
                json!({"cmd": "zero"})
            };
            control(ctl, req).map_err(|r| svc_errno(r, errno::ESRCH))?;
            Ok(Reply::Doit(Vec::new()))
        }
        (cmd::NEW_SERVICE | cmd::SET_SERVICE | cmd::DEL_SERVICE, false) => {
            service_cmd(ctl, g)?;
            Ok(Reply::Doit(Vec::new()))
        }
        (cmd::NEW_DEST | cmd::SET_DEST | cmd::DEL_DEST, false) => {
            dest_cmd(ctl, g)?;
            Ok(Reply::Doit(Vec::new()))
        }
        (cmd::NEW_DAEMON | cmd::DEL_DAEMON, false) => {
            daemon_cmd(ctl, g)?;
            Ok(Reply::Doit(Vec::new()))
        }
        // genl_family_rcv_msg: a command without the requested handler.
        (c, d) => Err(Refusal::new(
            errno::EOPNOTSUPP,
            format!("command {c} ({})", if d { "dump" } else { "do" }),
        )),
    }
}

/// `IP_VS_STATE_MASTER` / `IP_VS_STATE_BACKUP`.
const STATE_MASTER: u32 = 1;
const STATE_BACKUP: u32 = 2;

fn role_state(role: crate::sync::Role) -> u32 {
    match role {
        crate::sync::Role::Master => STATE_MASTER,
        crate::sync::Role::Backup => STATE_BACKUP,
    }
}

/// `ip_vs_genl_fill_daemon`: state, interface, syncid, maxlen, port, TTL
/// and the IPv4 group, nested in `IPVS_CMD_ATTR_DAEMON`.
fn fill_daemon(b: &mut MsgBuilder, role: crate::sync::Role, c: &crate::sync::SyncConf) {
    let at = b.nest_start(cmd_attr::DAEMON);
    b.put_u32(daemon_attr::STATE, role_state(role))
        .put_str(daemon_attr::MCAST_IFN, &c.mcast_ifn)
        .put_u32(daemon_attr::SYNC_ID, u32::from(c.syncid))
        .put_u16(daemon_attr::SYNC_MAXLEN, c.sync_maxlen)
        .put_u16(daemon_attr::MCAST_PORT, c.mcast_port)
        .put_u8(daemon_attr::MCAST_TTL, c.mcast_ttl);
    if let Some(g) = c.mcast_group {
        b.put(daemon_attr::MCAST_GROUP, &g.octets());
    }
    b.nest_end(at);
}

/// `ip_vs_genl_set_daemon` → `ip_vs_genl_new_daemon` /
/// `ip_vs_genl_del_daemon`, on the same daemons as `rvsadm
/// --start-daemon`.
fn daemon_cmd(ctl: &Control, g: &GenlMsg) -> Result<(), Refusal> {
    let a = g
        .attrs
        .nested(cmd_attr::DAEMON)?
        .ok_or_else(|| Refusal::inval("no IPVS_CMD_ATTR_DAEMON"))?;
    let state = a.u32(daemon_attr::STATE)?;
    let role = |state: u32| match state {
        STATE_MASTER => Ok(crate::sync::Role::Master),
        STATE_BACKUP => Ok(crate::sync::Role::Backup),
        s => Err(Refusal::inval(format!("sync state {s}"))),
    };
    let sync_err = |e: crate::sync::DaemonError| {
        let n = match e.errno {
            "EEXIST" => errno::EEXIST,
            "ESRCH" => errno::ESRCH,
            "ENODEV" => errno::ENODEV,
            "EADDRNOTAVAIL" => errno::EADDRNOTAVAIL,
            "EINVAL" => errno::EINVAL,
            "EBUSY" => errno::EBUSY,
            _ => errno::EIO,
        };
        Refusal::new(n, e.message)
    };
    if g.cmd == cmd::DEL_DAEMON {
        let state = state.ok_or_else(|| Refusal::inval("no IPVS_DAEMON_ATTR_STATE"))?;
        return ctl.stop_daemon(role(state)?).map_err(sync_err);
    }
    let (Some(state), Some(ifn), Some(syncid)) = (
        state,
        a.string(daemon_attr::MCAST_IFN)?,
        a.u32(daemon_attr::SYNC_ID)?,
    ) else {
        return Err(Refusal::inval(
            "IPVS_DAEMON_ATTR_STATE, MCAST_IFN and SYNC_ID are required",
        ));
    };
    let mcast_group = match a.fixed::<4>(daemon_attr::MCAST_GROUP)? {
        Some(o) => {
            let g = std::net::Ipv4Addr::from(o);
            if !g.is_multicast() {
                return Err(Refusal::inval(format!("{g} is not a multicast group")));
            }
            Some(g)
        }
        // IPv6 sync is not built (rvs's data path is IPv4).
        None if a.has(daemon_attr::MCAST_GROUP6) => {
            return Err(Refusal::new(errno::EAFNOSUPPORT, "IPv6 sync group"))
        }
        None => None,
    };
    let conf = crate::sync::SyncConf {
        mcast_ifn: ifn,
        // struct ipvs_sync_daemon_cfg keeps a u8.
        syncid: syncid as u8,
        sync_maxlen: a.u16(daemon_attr::SYNC_MAXLEN)?.unwrap_or(0),
        mcast_group,
        mcast_port: a.u16(daemon_attr::MCAST_PORT)?.unwrap_or(0),
        mcast_ttl: a.u8(daemon_attr::MCAST_TTL)?.unwrap_or(0),
    };
    ctl.start_daemon(role(state)?, conf)
        .map(drop)
        .map_err(sync_err)
}

/// Run a JSON control request through the JSON socket's own parse and apply.
fn control(ctl: &Control, req: Value) -> Result<Value, Refusal> {
    let req = parse_request(&req.to_string()).map_err(map_ctl_error)?;
    ctl.handle(req).map_err(map_ctl_error)
}

/// The listed service `id` names.
fn find<'a>(list: &'a ListReply, id: &SvcId) -> Option<&'a ServiceView> {
    let key = id.key()?;
    list.services.iter().find(|s| s.key() == key)
}

/// The errno the kernel returns for what the control plane refused, by the
/// control error's code (and, where one code covers several kernel cases,
/// its message, which is libipvs's text).
fn map_ctl_error(e: CtlError) -> Refusal {
    let m = e.message.as_str();
    let errno = match e.code {
        ErrorCode::Exists => errno::EEXIST,
        ErrorCode::NotFound if m.contains("destination") => errno::ENOENT,
        ErrorCode::NotFound => errno::ESRCH,
        // ip_vs_add_service/ip_vs_edit_service: ip_vs_scheduler_get fails.
        ErrorCode::Invalid if m.starts_with("unknown scheduler") => errno::ENOENT,
        // ip_vs_add_dest/ip_vs_edit_dest: weight < 0, l_threshold > u_threshold.
        ErrorCode::Invalid if m.contains("illegal weight") || m.contains("threshold") => {
            errno::ERANGE
        }
        ErrorCode::Unsupported => errno::EOPNOTSUPP,
        // Refused while rvsd hands over to a new process: try again there.
        ErrorCode::Busy => errno::EBUSY,
        // A field this build's control protocol does not have yet (a
        // contract field that has not landed): the kernel's "not supported".
        ErrorCode::BadRequest if m.contains("unknown field") || m.contains("unknown variant") => {
            errno::EOPNOTSUPP
        }
        _ => errno::EINVAL,
    };
    Refusal::new(errno, format!("{}: {}", e.code, e.message))
}

/// For service commands the kernel answers a missing service with ESRCH
/// whatever the control plane's wording.
fn svc_errno(r: Refusal, missing: i32) -> Refusal {
    if r.why.starts_with("not_found") {
        Refusal::new(missing, r.why)
    } else {
        r
    }
}

/// How a request names a service: protocol/address/port or a firewall mark.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SvcId {
    Addr {
        af: u16,
        proto: u16,
        addr: IpAddr,
        port: u16,
    },
    Fwmark {
        af: u16,
        mark: u32,
    },
}

impl SvcId {
    fn svc_ref(&self) -> Value {
        match self {
            SvcId::Addr {
                proto, addr, port, ..
            } => json!({"proto": proto_name(*proto), "vip": addr, "port": port}),
            SvcId::Fwmark { af, mark } => {
                let mut v = json!({"fwmark": mark});
                if *af == AF_INET6 {
                    v["af"] = json!("inet6");
                }
                v
            }
        }
    }

    /// The service's key; None for a protocol rvs has no handler for.
    fn key(&self) -> Option<ServiceKey> {
        match *self {
            SvcId::Addr {
                proto, addr, port, ..
            } => Some(ServiceKey::new(
                Proto::from_number(u8::try_from(proto).ok()?)?,
                addr,
                port,
            )),
            SvcId::Fwmark { af, mark } => Some(ServiceKey::fwmark(mark, af == AF_INET6)),
        }
    }
}

/// The JSON name of an IP protocol number; an unknown one is passed on as
/// its number, which the control plane refuses (EINVAL, as the kernel's
/// `ip_vs_add_service` does for a protocol it has no handler for).
fn proto_name(p: u16) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        _ => "unknown",
    }
}

fn svc_af(s: &ServiceView) -> u16 {
    if s.is_inet6() {
        AF_INET6
    } else {
        AF_INET
    }
}

/// An address attribute (16 bytes, `union nf_inet_addr`) for family `af`.
fn parse_addr(af: u16, p: &[u8]) -> Result<IpAddr, Refusal> {
    match af {
        AF_INET if p.len() >= 4 => Ok(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
        AF_INET6 if p.len() >= 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&p[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(a)))
        }
        AF_INET | AF_INET6 => Err(Refusal::inval("address attribute too short")),
        _ => Err(Refusal::new(
            errno::EAFNOSUPPORT,
            format!("address family {af}"),
        )),
    }
}

/// `ip_vs_genl_parse_service`'s identifying part: AF, and FWMARK or
/// PROTOCOL+ADDR+PORT, else EINVAL; an AF other than inet/inet6 is
/// EAFNOSUPPORT.
fn parse_svc_id(attrs: &Attrs) -> Result<SvcId, Refusal> {
    let s = attrs
        .nested(cmd_attr::SERVICE)?
        .ok_or_else(|| Refusal::inval("no IPVS_CMD_ATTR_SERVICE"))?;
    svc_id_of(&s)
}

fn svc_id_of(s: &Attrs) -> Result<SvcId, Refusal> {
    let af = s.u16(svc_attr::AF)?;
    let mark = s.u32(svc_attr::FWMARK)?;
    let proto = s.u16(svc_attr::PROTOCOL)?;
    let addr = s.get(svc_attr::ADDR);
    let port = s.be16(svc_attr::PORT)?;
    let Some(af) = af else {
        return Err(Refusal::inval("service without IPVS_SVC_ATTR_AF"));
    };
    if af != AF_INET && af != AF_INET6 {
        return Err(Refusal::new(
            errno::EAFNOSUPPORT,
            format!("address family {af}"),
        ));
    }
    if let Some(mark) = mark {
        return Ok(SvcId::Fwmark { af, mark });
    }
    match (proto, addr, port) {
        (Some(proto), Some(addr), Some(port)) => Ok(SvcId::Addr {
            af,
            proto,
            addr: parse_addr(af, addr)?,
            port,
        }),
        _ => Err(Refusal::inval(
            "service needs IPVS_SVC_ATTR_FWMARK or PROTOCOL, ADDR and PORT",
        )),
    }
}

/// NEW_SERVICE / SET_SERVICE / DEL_SERVICE (`ip_vs_genl_set_cmd`).
fn service_cmd(ctl: &Control, g: &GenlMsg) -> Result<(), Refusal> {
    let s = g
        .attrs
        .nested(cmd_attr::SERVICE)?
        .ok_or_else(|| Refusal::inval("no IPVS_CMD_ATTR_SERVICE"))?;
    let id = svc_id_of(&s)?;
    if g.cmd == cmd::DEL_SERVICE {
        return control(ctl, json!({"cmd": "del_service", "service": id.svc_ref()}))
            .map(drop)
            .map_err(|r| svc_errno(r, errno::ESRCH));
    }
    // A full entry: SCHED_NAME, FLAGS, TIMEOUT and NETMASK are required.
    let (Some(sched), Some(flags), Some(timeout), Some(netmask)) = (
        s.string(svc_attr::SCHED_NAME)?,
        s.fixed::<8>(svc_attr::FLAGS)?,
        s.u32(svc_attr::TIMEOUT)?,
        s.fixed::<4>(svc_attr::NETMASK)?,
    ) else {
        return Err(Refusal::inval(
            "service needs SCHED_NAME, FLAGS, TIMEOUT and NETMASK",
        ));
    };
    if s.string(svc_attr::PE_NAME)?.is_some_and(|p| !p.is_empty()) {
        // No persistence engine (sip) in rvs: ip_vs_pe_getbyname fails.
        return Err(Refusal::new(
            errno::ENOENT,
            "persistence engines are not supported",
        ));
    }
    let f_new = u32::from_ne_bytes(flags[0..4].try_into().unwrap_or([0; 4]));
    let f_mask = u32::from_ne_bytes(flags[4..8].try_into().unwrap_or([0; 4]));
    let existing = ctl
        .services()
        .into_iter()
        .find(|c| Some(c.key()) == id.key());
    // "prefill flags from service if it already exists", then apply the
    // masked new ones.
    let old = existing.as_ref().map_or(0, |c| {
        conf_flags(c.persistent.is_some(), c.ops, &c.sched_flags)
    });
    let existing = existing.map(|c| serde_json::to_value(c).unwrap_or(Value::Null));
    let flags = (old & !f_mask) | (f_new & f_mask);
    let mut conf = match (&existing, g.cmd) {
        (Some(_), cmd::NEW_SERVICE) => {
            return Err(Refusal::new(errno::EEXIST, "service exists"));
        }
        (None, cmd::SET_SERVICE) => return Err(Refusal::new(errno::ESRCH, "no such service")),
        (Some(c), _) => {
            // An edit keeps what ipvs commands cannot express (health
            // checks, sorry server, local addresses...); real servers are
            // kept by edit_service itself.
            let mut c = c.clone();
            if let Some(o) = c.as_object_mut() {
                o.remove("dests");
                o.remove("laddrs");
            }
            c
        }
        (None, _) => id.svc_ref(),
    };
    conf["sched"] = json!(sched);
    let persistent = flags & svc_flags::PERSISTENT != 0;
    if persistent {
        conf["persistent"] = json!(timeout);
    } else if let Some(o) = conf.as_object_mut() {
        o.remove("persistent");
    }
    // An IPv6 service's NETMASK is a prefix length, a host-order u32, as
    // ipvsadm sends it (128 by default) and ip_vs_add_service checks it
    // (1..=128); an IPv4 service's is the mask in network order.
    let v6 = conf["af"] == "inet6"
        || conf["vip"]
            .as_str()
            .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
    if v6 {
        match u32::from_ne_bytes(netmask) {
            128 => conf["netmask"] = json!(Ipv4Addr::BROADCAST.to_string()),
            p @ 1..=127 => conf["netmask"] = json!(p),
            _ => return Err(Refusal::inval("IPv6 netmask must be 1..128")),
        }
    } else {
        conf["netmask"] = json!(Ipv4Addr::from(netmask).to_string());
    }
    let mut sf = Vec::new();
    let (n1, n2) = match sched.as_str() {
        "sh" | "mh" => (format!("{sched}-fallback"), format!("{sched}-port")),
        _ => ("flag-1".to_string(), "flag-2".to_string()),
    };
    if flags & svc_flags::SCHED1 != 0 {
        sf.push(n1);
    }
    if flags & svc_flags::SCHED2 != 0 {
        sf.push(n2);
    }
    if flags & svc_flags::SCHED3 != 0 {
        sf.push("flag-3".to_string());
    }
    conf["sched_flags"] = json!(sf);
    if flags & svc_flags::ONEPACKET != 0 {
        conf["ops"] = json!(true);
    } else if let Some(o) = conf.as_object_mut() {
        o.remove("ops");
    }
    let verb = if g.cmd == cmd::NEW_SERVICE {
        "add_service"
    } else {
        "edit_service"
    };
    control(ctl, json!({"cmd": verb, "service": conf}))
        .map(drop)
        .map_err(|r| svc_errno(r, errno::ESRCH))
}

/// The `IP_VS_SVC_F_*` flags of a configured or listed service.
fn conf_flags(persistent: bool, ops: bool, sched_flags: &[String]) -> u32 {
    let mut f = svc_flags::HASHED;
    if persistent {
        f |= svc_flags::PERSISTENT;
    }
    if ops {
        f |= svc_flags::ONEPACKET;
    }
    for n in sched_flags {
        match n.as_str() {
            "sh-fallback" | "mh-fallback" | "flag-1" => f |= svc_flags::SCHED1,
            "sh-port" | "mh-port" | "flag-2" => f |= svc_flags::SCHED2,
            "flag-3" => f |= svc_flags::SCHED3,
            _ => {}
        }
    }
    f
}

/// NEW_DEST / SET_DEST / DEL_DEST (`ip_vs_genl_set_cmd`,
/// `ip_vs_genl_parse_dest`).
fn dest_cmd(ctl: &Control, g: &GenlMsg) -> Result<(), Refusal> {
    let id = parse_svc_id(&g.attrs)?;
    let Some(svc) = ctl
        .services()
        .into_iter()
        .find(|c| Some(c.key()) == id.key())
    else {
        return Err(Refusal::new(errno::ESRCH, "service not defined"));
    };
    let d = g
        .attrs
        .nested(cmd_attr::DEST)?
        .ok_or_else(|| Refusal::inval("no IPVS_CMD_ATTR_DEST"))?;
    let (Some(addr), Some(port)) = (d.get(dest_attr::ADDR), d.be16(dest_attr::PORT)?) else {
        return Err(Refusal::inval("destination needs ADDR and PORT"));
    };
    // "Old protocols did not allow the user to specify address family":
    // none means the service's.
    let af = d.u16(dest_attr::ADDR_FAMILY)?.unwrap_or(match &id {
        SvcId::Addr { af, .. } | SvcId::Fwmark { af, .. } => *af,
    });
    let ip = parse_addr(af, addr)?;
    let svc_ref = id.svc_ref();
    if g.cmd == cmd::DEL_DEST {
        return control(
            ctl,
            json!({"cmd": "del_dest", "service": svc_ref, "dest": {"ip": ip, "port": port}}),
        )
        .map(drop)
        .map_err(dest_errno);
    }
    let (Some(fwd), Some(weight), Some(u), Some(l)) = (
        d.u32(dest_attr::FWD_METHOD)?,
        d.u32(dest_attr::WEIGHT)?,
        d.u32(dest_attr::U_THRESH)?,
        d.u32(dest_attr::L_THRESH)?,
    ) else {
        return Err(Refusal::inval(
            "destination needs FWD_METHOD, WEIGHT, U_THRESH and L_THRESH",
        ));
    };
    // ip_vs_add_dest / ip_vs_edit_dest (__ip_vs_update_dest's checks).
    if (weight as i32) < 0 {
        return Err(Refusal::new(errno::ERANGE, "negative weight"));
    }
    if l > u {
        return Err(Refusal::new(
            errno::ERANGE,
            "lower threshold above the upper threshold",
        ));
    }
    let fwd = match fwd & fwd::MASK {
        fwd::MASQ => "nat",
        fwd::TUNNEL => "tun",
        fwd::DROUTE => "dr",
        fwd::RVS_FULLNAT => "fullnat",
        // The kernel takes LOCALNODE as asked, and makes any own address
        // LOCALNODE whatever was asked (rvsd's check does the same).
        fwd::LOCALNODE => "local",
        m => {
            return Err(Refusal::new(
                errno::EOPNOTSUPP,
                format!("forwarding method {m} (bypass) is not supported"),
            ))
        }
    };
    let existing = svc.dests.iter().find(|x| x.ip == ip && x.port == port);
    let mut dest = match existing {
        // An edit keeps what the IPVS message cannot say (a health check).
        Some(x) if g.cmd == cmd::SET_DEST => serde_json::to_value(x).unwrap_or_else(|_| json!({})),
        _ => json!({}),
    };
    dest["ip"] = json!(ip);
    dest["port"] = json!(port);
    dest["fwd"] = json!(fwd);
    dest["weight"] = json!(weight);
    dest["u_threshold"] = json!(u);
    dest["l_threshold"] = json!(l);
    // Tunnel attributes (kernel 5.2+, ipvsadm 1.31 --tun-*), onto the
    // contract's fields; the kernel default (ipip, no checksum) is left out.
    if let Some(t) = d.u8(dest_attr::TUN_TYPE)? {
        match t {
            0 => {}
            1 => dest["tun_type"] = json!("gue"),
            2 => dest["tun_type"] = json!("gre"),
            _ => return Err(Refusal::inval(format!("tunnel type {t}"))),
        }
    }
    if let Some(p) = d.be16(dest_attr::TUN_PORT)? {
        if p != 0 {
            dest["tun_port"] = json!(p);
        }
    }
    if let Some(f) = d.u16(dest_attr::TUN_FLAGS)? {
        match f {
            0 => {}
            1 => dest["tun_csum"] = json!("csum"),
            2 => dest["tun_csum"] = json!("remcsum"),
            _ => return Err(Refusal::inval(format!("tunnel flags {f:#x}"))),
        }
    }
    let verb = if g.cmd == cmd::NEW_DEST {
        "add_dest"
    } else {
        "edit_dest"
    };
    control(ctl, json!({"cmd": verb, "service": svc_ref, "dest": dest}))
        .map(drop)
        .map_err(dest_errno)
}

/// Destination commands: a missing service is ESRCH, a missing
/// destination ENOENT (ip_vs_edit_dest / ip_vs_del_dest).
fn dest_errno(r: Refusal) -> Refusal {
    if r.why.starts_with("not_found") {
        let e = if r.why.contains("destination") {
            errno::ENOENT
        } else {
            errno::ESRCH
        };
        Refusal::new(e, r.why)
    } else {
        r
    }
}

#[cfg(test)]
mod tests;
