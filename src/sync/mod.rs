//! Connection synchronisation between directors, compatible with the
//! kernel's IPVS sync daemon (`net/netfilter/ipvs/ip_vs_sync.c`): version 1
//! messages (see [`proto`]) multicast to 224.0.0.81:8848, TTL 1, on a kernel
//! interface (`--mcast-interface`, normally the management interface).
//!
//! # Master
//! The kernel marks connections to sync from the packet path
//! (`ip_vs_sync_conn`, every `sync_period` packets and on state changes).
//! rvs keeps its data path untouched instead: a sync thread scans the
//! connection table every [`SCAN_MS`] (a read-only pass, workers are never
//! blocked) and sends a connection when it is new to the backup, when its
//! state changed, or when half its timeout passed since it was last sent
//! (so the backup's copy never expires under a live connection). Only the
//! states the kernel syncs go out (`ip_vs_sync_conn_needed`: TCP
//! ESTABLISHED, FIN_WAIT, CLOSE, CLOSE_WAIT, TIME_WAIT; every UDP one).
//! At most [`MAX_MSGS_PER_SCAN`] messages leave per scan; what does not fit
//! waits for the next scan (`deferred`), so the rate and the memory (one
//! small record per tracked connection, bounded by the table) are bounded.
//!
//! # Backup
//! A thread on a UDP socket bound to the group and port, joined on the
//! interface, parses each datagram ([`proto::parse`]: size, syncid, entry
//! checks), and for each connection does what `ip_vs_proc_conn` does: an
//! existing entry is updated (state, INACTIVE flag, timer); a new one is
//! bound to the backup's own real server with the synced address and port
//! (`ip_vs_find_dest`) and inserted in the connection table, so a packet
//! of that flow reaching this director is forwarded to the same server.
//! Every rejected message or entry is counted by reason.

pub mod proto;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::flow::FlowKey;

use crate::conn::{ConnTable, Dir, NewConn, State};
use crate::flow::{ClientAddr, Forward, Proto};
use crate::service::ServiceTable;
use proto::{flags, Builder, Error, FnatOpt, Seq, SyncConn};

/// How often the master scans the connection table.
pub const SCAN_MS: u64 = 200;
/// Messages the master sends per scan at most.
pub const MAX_MSGS_PER_SCAN: usize = 256;
/// The least re-send period of a connection (the kernel's sync_refresh
/// minimum difference is 10 s).
pub const MIN_REFRESH_MS: u64 = 10_000;
/// A connection that had traffic since it was last sent is sent again
/// after this long. The kernel re-sends on traffic too (one packet in every
/// `sync_period` 50, when `pkts % sync_period == sync_threshold`); rvs has
/// no per-connection packet count, so it looks at the connection's timer,
/// which every packet re-arms. This is what lets a backup that started late
/// (a recovered director) learn the live connections before it takes over.
pub const ACTIVE_RESEND_MS: u64 = 1_000;

/// Which daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Backup,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Backup => "backup",
        }
    }
}

/// A sync daemon's configuration (`struct ipvs_sync_daemon_cfg`); zero
/// fields take the kernel's defaults in [`SyncConf::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConf {
    pub mcast_ifn: String,
    #[serde(default)]
    pub syncid: u8,
    #[serde(default)]
    pub sync_maxlen: u16,
    #[serde(default)]
    pub mcast_group: Option<Ipv4Addr>,
    #[serde(default)]
    pub mcast_port: u16,
    #[serde(default)]
    pub mcast_ttl: u8,
}

impl SyncConf {
    /// Fill in the defaults as `start_sync_thread` does: group 224.0.0.81,
    /// port 8848, TTL 1, maxlen = MTU - 28 (MTU 1500 for a master, the
    /// interface's clamped to 1500..65535 for a backup), a given maxlen
    /// clamped to [1 (1024 for a backup), 65535 - 28].
    pub fn resolve(&mut self, role: Role, dev_mtu: u32) {
        const HLEN: u32 = 20 + 8;
        if self.mcast_group.is_none() {
            self.mcast_group = Some(proto::SYNC_GROUP);
        }
        if self.mcast_port == 0 {
            self.mcast_port = proto::SYNC_PORT;
        }
        if self.mcast_ttl == 0 {
            self.mcast_ttl = 1;
        }
        let (mtu, min) = match role {
            Role::Backup => (dev_mtu.clamp(1500, 65535), 1024),
            Role::Master => (1500, 1),
        };
        self.sync_maxlen = if self.sync_maxlen != 0 {
            (self.sync_maxlen as u32).clamp(min, 65535 - HLEN) as u16
        } else {
            (mtu - HLEN) as u16
        };
    }
    pub fn group(&self) -> Ipv4Addr {
        self.mcast_group.unwrap_or(proto::SYNC_GROUP)
    }
}

/// Counters of both daemons (reported by the `daemon` request).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent_msgs: AtomicU64,
    pub sent_conns: AtomicU64,
    pub send_errors: AtomicU64,
    /// Connections that waited for a later scan (rate bound).
    pub deferred: AtomicU64,
    /// Connections the master cannot sync (a SYN-proxied one whose server
    /// handshake is not done), once per connection and
    /// state.
    pub not_synced: AtomicU64,
    pub recv_msgs: AtomicU64,
    pub recv_conns: AtomicU64,
    pub inserted: AtomicU64,
    pub updated: AtomicU64,
    /// Entries for a service or real server this director does not have.
    pub no_dest: AtomicU64,
    /// Entries the connection table had no room for.
    pub table_full: AtomicU64,
    /// Expiry messages for a connection already replaced (kernel: ignored).
    pub stale: AtomicU64,
    /// Messages or entries rejected, by [`Error`].
    pub errors: [AtomicU64; 8],
}

impl Counters {
    fn error(&self, e: Error) {
        let i = Error::ALL.iter().position(|x| *x == e).unwrap_or(0);
        self.errors[i].fetch_add(1, Relaxed);
    }
    /// A plain copy, as the `daemon` request reports it.
    pub fn read(&self) -> CountersView {
        let g = |a: &AtomicU64| a.load(Relaxed);
        CountersView {
            sent_msgs: g(&self.sent_msgs),
            sent_conns: g(&self.sent_conns),
            send_errors: g(&self.send_errors),
            deferred: g(&self.deferred),
            not_synced: g(&self.not_synced),
            recv_msgs: g(&self.recv_msgs),
            recv_conns: g(&self.recv_conns),
            inserted: g(&self.inserted),
            updated: g(&self.updated),
            no_dest: g(&self.no_dest),
            table_full: g(&self.table_full),
            stale: g(&self.stale),
            errors: Error::ALL
                .iter()
                .zip(&self.errors)
                .map(|(e, n)| (e.name().to_string(), g(n)))
                .collect(),
        }
    }
}

/// [`Counters`] read at one moment (fields as there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CountersView {
    pub sent_msgs: u64,
    pub sent_conns: u64,
    pub send_errors: u64,
    pub deferred: u64,
    pub not_synced: u64,
    pub recv_msgs: u64,
    pub recv_conns: u64,
    pub inserted: u64,
    pub updated: u64,
    pub no_dest: u64,
    pub table_full: u64,
    pub stale: u64,
    /// Rejected messages or entries by reason (every reason listed).
    pub errors: std::collections::BTreeMap<String, u64>,
}

struct Running {
    conf: SyncConf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a daemon could not be started or stopped (the kernel's errno).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonError {
    /// `EEXIST`, `ESRCH`, `ENODEV`, `EADDRNOTAVAIL`, `EIO`.
    pub errno: &'static str,
    pub message: String,
}

fn err(errno: &'static str, message: impl Into<String>) -> DaemonError {
    DaemonError {
        errno,
        message: message.into(),
    }
}

/// The master and backup daemons of one rvsd (both may run at once, as in
/// the kernel).
pub struct Daemons {
    conns: Arc<ConnTable>,
    table: Arc<ArcSwap<ServiceTable>>,
    master: Mutex<Option<Running>>,
    backup: Mutex<Option<Running>>,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Daemons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemons").finish_non_exhaustive()
    }
}

/// The first IPv4 address of a kernel interface (`ip -4 -o addr show dev`)
/// and its MTU (`/sys/class/net/IF/mtu`).
fn interface(ifn: &str) -> Result<(Ipv4Addr, u32), DaemonError> {
    let valid = !ifn.is_empty()
        && ifn.len() < 16
        && ifn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if !valid {
        return Err(err("ENODEV", "No such device"));
    }
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{ifn}/mtu"))
        .map_err(|_| err("ENODEV", "No such device"))?;
    let mtu = mtu.trim().parse().unwrap_or(1500);
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", ifn])
        .output()
        .map_err(|e| err("EIO", format!("ip addr show: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            err(
                "EADDRNOTAVAIL",
                format!("no IPv4 address on mcast interface {ifn}"),
            )
        })?;
    Ok((addr, mtu))
}

impl Daemons {
    pub fn new(conns: Arc<ConnTable>, table: Arc<ArcSwap<ServiceTable>>) -> Daemons {
        Daemons {
            conns,
            table,
            master: Mutex::new(None),
            backup: Mutex::new(None),
            counters: Arc::new(Counters::default()),
        }
    }

    fn slot(&self, role: Role) -> &Mutex<Option<Running>> {
        match role {
            Role::Master => &self.master,
            Role::Backup => &self.backup,
        }
    }

    /// Start a daemon (`IPVS_CMD_NEW_DAEMON`, ipvsadm --start-daemon).
    pub fn start(&self, role: Role, mut conf: SyncConf) -> Result<SyncConf, DaemonError> {
        let mut slot = self.slot(role).lock();
        if slot.is_some() {
            // libipvs ipvs_strerror: { ipvs_start_daemon, EEXIST, ... }.
            return Err(err("EEXIST", "Daemon has already run"));
        }
        let (addr, mtu) = interface(&conf.mcast_ifn)?;
        conf.resolve(role, mtu);
        let group = conf.group();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match role {
            Role::Master => {
                let sock = UdpSocket::bind(SocketAddrV4::new(addr, 0))
                    .map_err(|e| err("EIO", format!("sync socket: {e}")))?;
                let _ = sock.set_multicast_loop_v4(false);
                sock.set_multicast_ttl_v4(conf.mcast_ttl as u32)
                    .and_then(|_| sock.connect(SocketAddrV4::new(group, conf.mcast_port)))
                    .map_err(|e| err("EIO", format!("sync socket: {e}")))?;
                let m = Master {
                    conns: self.conns.clone(),
                    counters: self.counters.clone(),
                    stop: stop.clone(),
                    sock,
                    syncid: conf.syncid,
                    maxlen: conf.sync_maxlen as usize,
                    sent: HashMap::new(),
                };
                std::thread::Builder::new()
                    .name("rvs-sync-m".into())
                    .spawn(move || m.run())
            }
            Role::Backup => {
                let sock = UdpSocket::bind(SocketAddrV4::new(group, conf.mcast_port))
                    .map_err(|e| err("EIO", format!("sync socket: {e}")))?;
                sock.join_multicast_v4(&group, &addr)
                    .map_err(|e| err("EIO", format!("joining {group}: {e}")))?;
                sock.set_read_timeout(Some(Duration::from_millis(SCAN_MS)))
                    .map_err(|e| err("EIO", format!("sync socket: {e}")))?;
                let b = Backup {
                    conns: self.conns.clone(),
                    table: self.table.clone(),
                    counters: self.counters.clone(),
                    stop: stop.clone(),
                    sock,
                    syncid: conf.syncid,
                    maxlen: conf.sync_maxlen as usize,
                };
                std::thread::Builder::new()
                    .name("rvs-sync-b".into())
                    .spawn(move || b.run())
            }
        }
        .map_err(|e| err("EIO", format!("sync thread: {e}")))?;
        log::info!(
            "sync thread started: state = {}, mcast_ifn = {}, syncid = {}",
            role.name(),
            conf.mcast_ifn,
            conf.syncid
        );
        *slot = Some(Running {
            conf: conf.clone(),
            stop,
            thread: Some(thread),
        });
        Ok(conf)
    }

    /// Stop a daemon (`IPVS_CMD_DEL_DAEMON`, ipvsadm --stop-daemon):
    /// `ESRCH` when it is not running, as `stop_sync_thread`.
    pub fn stop(&self, role: Role) -> Result<(), DaemonError> {
        let r = self.slot(role).lock().take();
        match r {
            Some(r) => {
                drop(r);
                Ok(())
            }
            // libipvs ipvs_strerror: { ipvs_stop_daemon, ESRCH, ... }.
            None => Err(err("ESRCH", "No daemon is running")),
        }
    }

    /// The running daemons' configurations (`IPVS_CMD_GET_DAEMON`).
    pub fn status(&self) -> Vec<(Role, SyncConf)> {
        let mut v = Vec::new();
        for role in [Role::Master, Role::Backup] {
            if let Some(r) = &*self.slot(role).lock() {
                v.push((role, r.conf.clone()));
            }
        }
        v
    }
}

// ---- master ------------------------------------------------------------

struct Master {
    conns: Arc<ConnTable>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    sock: UdpSocket,
    syncid: u8,
    maxlen: usize,
    /// Per connection (slot, generation): what was last sent.
    sent: HashMap<(u32, u16), Sent>,
}

/// Whether the kernel syncs a connection in this state
/// (`ip_vs_sync_conn_needed`).
pub fn state_synced(s: State) -> bool {
    matches!(
        s,
        State::Established
            | State::FinWait
            | State::Close
            | State::CloseWait
            | State::TimeWait
            | State::Udp
    )
}

/// The sync entry of a connection (`ip_vs_sync_conn`'s copy of `cp`).
/// None for what the protocol cannot carry (SYN-proxied connections whose
/// sequence adjustment the backup cannot apply, NAT64 connections).
pub fn sync_conn(c: &crate::conn::Conn, timeout_s: u32) -> Option<SyncConn> {
    // NAT64 and IPv4 in IPv6 have no entry in the format (one family per
    // entry): counted as not synced.
    if c.is_nat64() || c.dip6.is_some() {
        return None;
    }
    entry(c, timeout_s)
}

/// [`sync_conn`] without the wire format's limits: a NAT64 connection's
/// entry mixes families, which a successor taking over a table file
/// applies as it applies any entry.
pub(crate) fn entry(c: &crate::conn::Conn, timeout_s: u32) -> Option<SyncConn> {
    // A proxied connection carries its adjustment (rvs's option); one whose
    // server handshake is not done yet is not sent (the backup could not
    // finish it: the cookie state is this director's).
    let synproxy = match c.synproxy {
        None => None,
        Some(crate::conn::SynProxy::Pending { .. }) => return None,
        Some(crate::conn::SynProxy::Proxied(bits)) => {
            let a = crate::synproxy::SeqAdj::from_bits(bits);
            Some(proto::SynOpt {
                delta: a.delta,
                c2s_shift: a.c2s_shift,
                s2c_shift: a.s2c_shift,
            })
        }
    };
    let mut f = match c.fwd {
        Forward::Nat | Forward::FullNat => flags::MASQ,
        Forward::Tun => flags::TUNNEL | flags::NOOUTPUT,
        Forward::Dr => flags::DROUTE | flags::NOOUTPUT,
        Forward::Local => flags::LOCALNODE | flags::NOOUTPUT,
    };
    if !c.is_active() {
        f |= flags::INACTIVE;
    }
    let st = c.state();
    let mut sc = SyncConn {
        protocol: c.proto.number(),
        flags: f,
        state: if st == State::Udp { 0 } else { st as u16 },
        cport: c.cport,
        vport: c.vport,
        dport: c.dport,
        fwmark: 0,
        timeout: timeout_s,
        caddr: c.client(),
        vaddr: c.virt(),
        daddr: c.real(),
        seq: None,
        fnat: None,
        synproxy,
    };
    if let Some(fn_) = &c.fnat {
        sc.fnat = Some(FnatOpt {
            lip: c.local().map_or(IpAddr::V4(fn_.lip), |l| l.0),
            lport: fn_.lport,
            client_addr: match fn_.client_addr {
                ClientAddr::None => 0,
                ClientAddr::Toa => 1,
                ClientAddr::ProxyV2 => 3,
            },
        });
        // FULLNAT's client ISN and inserted bytes (PROXY header) as the
        // kernel's input sequence adjustment.
        // With PROXY v2 always (the header may not be sent yet, and the
        // backup must insert it then); otherwise only when bytes were
        // inserted.
        let (isn, delta) = (fn_.isn.get(), fn_.delta.get());
        if delta != 0 || (fn_.client_addr == ClientAddr::ProxyV2 && c.synproxy.is_none()) {
            sc.flags |= flags::IN_SEQ;
            sc.seq = Some((
                Seq {
                    init_seq: isn,
                    delta,
                    previous_delta: 0,
                },
                Seq::default(),
            ));
        }
    }
    Some(sc)
}

impl Master {
    fn run(mut self) {
        while !self.stop.load(Relaxed) {
            self.scan(crate::clock::now_ms());
            std::thread::sleep(Duration::from_millis(SCAN_MS));
        }
    }

    fn scan(&mut self, now: u64) {
        let t = self.conns.timeouts();
        // Due entries by priority: 0 new or changed state, 1 refresh due,
        // 2 had traffic since last sent. Each class holds at most what one
        // scan can send, so a scan's cost in memory is bounded and new
        // connections are never starved by re-sends.
        const CLASSES: usize = 3;
        let cap = MAX_MSGS_PER_SCAN * (self.maxlen / proto::CONN_V4_LEN).max(1);
        let mut todo: [Vec<Due>; CLASSES] = Default::default();
        let mut over = 0u64;
        let mut not_synced = 0u64;
        let sent = &mut self.sent;
        for v in sent.values_mut() {
            v.seen = false;
        }
        self.conns.for_each(|c| {
            let st = c.state();
            if !state_synced(st) {
                return;
            }
            let id = c.id();
            let timeout = t.get(st);
            let exp = c.expires_ms();
            let refresh = (timeout as u64 * 500).max(MIN_REFRESH_MS);
            let class = match sent.get_mut(&id) {
                Some(e) => {
                    e.seen = true;
                    let since = now.saturating_sub(e.at);
                    if e.state != st {
                        Some(0)
                    } else if e.at == NEVER {
                        // Not syncable in this state: counted once.
                        None
                    } else if since >= refresh {
                        Some(1)
                    } else if exp != e.exp && since >= ACTIVE_RESEND_MS {
                        // A packet re-armed the timer since it was sent.
                        Some(2)
                    } else {
                        None
                    }
                }
                None => Some(0),
            };
            let Some(class) = class else {
                return;
            };
            if todo[class].len() >= cap {
                over += 1;
                return;
            }
            match sync_conn(c, timeout) {
                Some(sc) => todo[class].push((sc, id, st, exp)),
                None => {
                    not_synced += 1;
                    sent.insert(
                        id,
                        Sent {
                            state: st,
                            at: NEVER,
                            exp,
                            seen: true,
                        },
                    );
                }
            }
        });
        // Forget connections that have ended.
        sent.retain(|_, v| v.seen);
        self.counters.not_synced.fetch_add(not_synced, Relaxed);
        let todo: Vec<_> = todo.into_iter().flatten().collect();
        let mut msgs = 0;
        let mut i = 0;
        while i < todo.len() && msgs < MAX_MSGS_PER_SCAN {
            let mut b = Builder::new(self.syncid, self.maxlen);
            let start = i;
            while i < todo.len() && b.push(&todo[i].0) {
                i += 1;
            }
            if i == start {
                // One entry larger than maxlen: cannot be sent.
                self.counters.send_errors.fetch_add(1, Relaxed);
                i += 1;
                continue;
            }
            let n = b.count() as u64;
            match self.sock.send(&b.finish()) {
                Ok(_) => {
                    self.counters.sent_msgs.fetch_add(1, Relaxed);
                    self.counters.sent_conns.fetch_add(n, Relaxed);
                    for (_, id, st, exp) in &todo[start..i] {
                        self.sent.insert(
                            *id,
                            Sent {
                                state: *st,
                                at: now,
                                exp: *exp,
                                seen: true,
                            },
                        );
                    }
                }
                Err(_) => {
                    self.counters.send_errors.fetch_add(1, Relaxed);
                }
            }
            msgs += 1;
        }
        self.counters
            .deferred
            .fetch_add((todo.len() - i) as u64 + over, Relaxed);
    }
}

/// A due entry: what to send, the connection's id, state and deadline.
type Due = (SyncConn, (u32, u16), State, u64);

/// What the master last sent of a connection.
struct Sent {
    state: State,
    /// When ([`NEVER`]: not syncable in `state`, counted once).
    at: u64,
    /// Its timer's deadline then: a packet since moves it.
    exp: u64,
    /// Seen in the current scan.
    seen: bool,
}

const NEVER: u64 = u64::MAX;

// ---- backup ------------------------------------------------------------

struct Backup {
    conns: Arc<ConnTable>,
    table: Arc<ArcSwap<ServiceTable>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    sock: UdpSocket,
    syncid: u8,
    maxlen: usize,
}

impl Backup {
    fn run(self) {
        let mut buf = vec![0u8; self.maxlen.max(proto::MESG_HDR_LEN)];
        while !self.stop.load(Relaxed) {
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            self.handle(&buf[..n], crate::clock::now_ms());
        }
    }

    fn handle(&self, msg: &[u8], now: u64) {
        let c = &self.counters;
        c.recv_msgs.fetch_add(1, Relaxed);
        let p = match proto::parse(msg, self.syncid) {
            Ok(p) => p,
            Err(e) => return c.error(e),
        };
        for e in &p.skipped {
            c.error(*e);
        }
        if let Some(e) = p.dropped {
            c.error(e);
        }
        let table = self.table.load();
        for sc in &p.conns {
            c.recv_conns.fetch_add(1, Relaxed);
            if sc.flags & flags::TEMPLATE != 0 {
                // Persistence templates are not synced by rvs (yet).
                c.error(Error::Unsupported);
                continue;
            }
            let ctr = match apply(&self.conns, &table, sc, now) {
                Applied::Inserted => &c.inserted,
                Applied::Updated => &c.updated,
                Applied::NoDest => &c.no_dest,
                Applied::Full => &c.table_full,
                Applied::Stale => &c.stale,
            };
            ctr.fetch_add(1, Relaxed);
        }
    }
}

/// `ipvsadm -L --daemon`'s lines for a `daemon` reply.
mod apply;
pub use apply::*;

#[cfg(test)]
mod tests;
