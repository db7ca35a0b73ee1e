//! rvsadm's command line, parsed as ipvsadm 1.31 parses it (ipvsadm.c
//! `parse_options`, `process_options`, `generic_opt_check`,
//! `tunnel_opt_check`, popt's option syntax), into a [`Entry`] that
//! carries the control-socket request: pure and unit-tested, no I/O
//! except the resolver and `/etc/services` for names.
//!
//! Every failure is an [`Exit`]: ipvsadm's message and exit code.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use super::names::{self, string_to_number};

mod checks;
mod options;
mod popt;

use checks::*;
use options::*;
use popt::*;

/// ipvsadm's `MAX_TIMEOUT` (31 days).
pub const MAX_TIMEOUT: i64 = 86400 * 31;
/// ipvsadm's `IPVS_SVC_PERSISTENT_TIMEOUT` (`-p` without a value).
pub const DEFAULT_PERSISTENT: i64 = 360;

/// A message for stderr (may be empty) and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit(pub i32, pub String);

fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T, Exit> {
    Err(Exit(code, msg.into()))
}

/// Commands, in ipvsadm's `CMD_*` order, then rvs's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
    // rvs extensions.
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Load,
    Dump,
    ImportKeepalived,
    Handover,
}

impl Cmd {
    /// ipvsadm's `cmdnames` (and rvs's for its own commands).
    pub fn name(self) -> &'static str {
        CMD_TABLE[self as usize].0
    }
}

/// Option columns: ipvsadm's `OPTC_*` (0..=33), then rvs's own.
pub mod optc {
    pub const NUMERIC: usize = 0;
    pub const CONNECTION: usize = 1;
    pub const SERVICE: usize = 2;
    pub const SCHEDULER: usize = 3;
    pub const PERSISTENT: usize = 4;
    pub const NETMASK: usize = 5;
    pub const SERVER: usize = 6;
    pub const FORWARD: usize = 7;
    pub const WEIGHT: usize = 8;
    pub const UTHRESHOLD: usize = 9;
    pub const LTHRESHOLD: usize = 10;
    pub const MCAST: usize = 11;
    pub const TIMEOUT: usize = 12;
    pub const DAEMON: usize = 13;
    pub const STATS: usize = 14;
    pub const RATE: usize = 15;
    pub const THRESHOLDS: usize = 16;
    pub const PERSISTENTCONN: usize = 17;
    pub const NOSORT: usize = 18;
    pub const SYNCID: usize = 19;
    pub const EXACT: usize = 20;
    pub const ONEPACKET: usize = 21;
    pub const PE: usize = 22;
    pub const SCHED_FLAGS: usize = 23;
    pub const MCAST_GROUP: usize = 24;
    pub const MCAST_PORT: usize = 25;
    pub const MCAST_TTL: usize = 26;
    pub const SYNC_MAXLEN: usize = 27;
    pub const TUN_INFO: usize = 28;
    pub const TUN_TYPE: usize = 29;
    pub const TUN_PORT: usize = 30;
    pub const TUN_NOCSUM: usize = 31;
    pub const TUN_CSUM: usize = 32;
    pub const TUN_REMCSUM: usize = 33;
    // rvs extensions.
    pub const LADDR: usize = 34;
    pub const TOA: usize = 35;
    pub const PROXY_PROTOCOL: usize = 36;
    pub const SYNPROXY: usize = 37;
    pub const JSON: usize = 38;
    pub const HEALTH: usize = 39;
}

/// Listing flags (ipvsadm's `FMT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fmt {
    pub numeric: bool,
    pub stats: bool,
    pub rate: bool,
    pub thresholds: bool,
    pub persistent_conn: bool,
    pub nosort: bool,
    pub exact: bool,
    pub tun_info: bool,
}

/// The virtual service a command names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Svc {
    /// `-t`/`-u`: protocol, address, port (None: none given).
    Addr {
        proto: &'static str,
        addr: IpAddr,
        port: Option<u16>,
    },
    /// `-f N` (`-6`: IPv6).
    Fwmark { mark: u32, v6: bool },
}

impl Svc {
    /// The control socket's service reference (SvcRef).
    pub fn key(&self) -> Value {
        match self {
            Svc::Addr { proto, addr, port } => {
                json!({"proto": proto, "vip": addr, "port": port.unwrap_or(0)})
            }
            Svc::Fwmark { mark, v6: false } => json!({"fwmark": mark}),
            Svc::Fwmark { mark, v6: true } => json!({"fwmark": mark, "af": "inet6"}),
        }
    }
    /// The service's key; None for a protocol rvs has no handler for
    /// (`--sctp-service`).
    pub fn service_key(&self) -> Option<crate::flow::ServiceKey> {
        use crate::flow::{Proto, ServiceKey};
        match *self {
            Svc::Addr { proto, addr, port } => {
                let p = match proto {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => return None,
                };
                Some(ServiceKey::new(p, addr, port.unwrap_or(0)))
            }
            Svc::Fwmark { mark, v6 } => Some(ServiceKey::fwmark(mark, v6)),
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Svc::Addr { port, .. } => port.unwrap_or(0),
            Svc::Fwmark { .. } => 0,
        }
    }
    fn proto(&self) -> &'static str {
        match self {
            Svc::Addr { proto, .. } => proto,
            Svc::Fwmark { .. } => "tcp",
        }
    }
    pub fn is_v6(&self) -> bool {
        match self {
            Svc::Addr { addr, .. } => addr.is_ipv6(),
            Svc::Fwmark { v6, .. } => *v6,
        }
    }
}

/// One parsed command line (ipvsadm's `struct ipvs_command_entry` plus
/// its option and format masks).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub cmd: Cmd,
    pub options: u64,
    pub fmt: Fmt,
    pub svc: Option<Svc>,
    pub sched: Option<String>,
    /// Persistence timeout; Some only with `-p`.
    pub persistent: Option<u32>,
    /// `-M`: an IPv4 mask, or an IPv6 prefix length for `-f N -6`.
    pub netmask: Option<Netmask>,
    pub sched_flags: Vec<&'static str>,
    pub ops: bool,
    pub pe: Option<String>,
    /// `-r` address and port (port already the service's where ipvsadm
    /// puts it there).
    pub dest: Option<(IpAddr, u16)>,
    pub fwd: &'static str,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub tun_type: Option<&'static str>,
    pub tun_port: Option<u16>,
    pub tun_csum: Option<&'static str>,
    pub timeouts: Option<[u32; 3]>,
    pub laddr: Option<IpAddr>,
    pub client_addr: Option<&'static str>,
    pub synproxy: bool,
    pub json: bool,
    pub health: bool,
    /// `--load` / `--import-keepalived` file.
    pub file: Option<String>,
    /// A warning for stderr that does not stop the command (DR/TUN port).
    pub warning: Option<String>,
    /// --start-daemon/--stop-daemon: the state and the daemon options.
    pub daemon: DaemonArgs,
}

/// ipvsadm's `ipvs_daemon_t` as the command line fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonArgs {
    pub state: &'static str,
    pub mcast_ifn: Option<String>,
    pub syncid: u8,
    pub sync_maxlen: u16,
    pub mcast_group: Option<std::net::Ipv4Addr>,
    pub mcast_port: u16,
    pub mcast_ttl: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Netmask {
    V4(Ipv4Addr),
    Prefix(u8),
}

/// What the command line asks for besides a command.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Box<Entry>),
    /// `-h`: usage on stdout, exit 0.
    Help,
    /// `-v`: version on stdout, exit 0.
    Version,
}

fn tryhelp(program: &str) -> Exit {
    Exit(
        255,
        format!("Try `{program} -h' or '{program} --help' for more information."),
    )
}

fn set_option(options: &mut u64, c: usize) -> Result<(), Exit> {
    let bit = 1u64 << c;
    if *options & bit != 0 {
        return fail(2, format!("multiple '{}' options specified", OPTNAMES[c]));
    }
    *options |= bit;
    Ok(())
}

fn parse_timeout(s: Option<&str>, min: i64, max: i64) -> Result<u32, Exit> {
    let Some(s) = s else {
        return Ok(DEFAULT_PERSISTENT as u32);
    };
    match string_to_number(s, min, max) {
        Some(v) => Ok(v as u32),
        None => fail(2, format!("invalid timeout value `{s}' specified")),
    }
}

/// `parse_fwmark`: strtol, 1..=UINT_MAX.
fn parse_fwmark(s: &str) -> Result<u32, Exit> {
    match s.trim_start().parse::<i64>() {
        Ok(v) if v > 0 && v <= u32::MAX as i64 => Ok(v as u32),
        _ => fail(2, format!("invalid fwmark value `{s}' specified")),
    }
}

/// `parse_sched_flags`: names to the IP_VS_SVC_F_SCHED1..3 bits, checked
/// against the scheduler (default wlc).
fn parse_sched_flags(sched: Option<&str>, arg: &str) -> Result<u8, Exit> {
    let sched = sched.filter(|s| !s.is_empty()).unwrap_or("wlc");
    let mut bits = 0u8;
    // strtok: empty tokens vanish; a string of commas only is one flag "".
    let toks: Vec<&str> = arg.split(',').filter(|t| !t.is_empty()).collect();
    let toks = if toks.is_empty() { vec![arg] } else { toks };
    for flag in toks {
        let (bit, need) = match flag {
            "flag-1" => (1, None),
            "flag-2" => (2, None),
            "flag-3" => (4, None),
            "sh-fallback" => (1, Some("sh")),
            "sh-port" => (2, Some("sh")),
            "mh-fallback" => (1, Some("mh")),
            "mh-port" => (2, Some("mh")),
            _ => return fail(2, format!("invalid scheduler flag `{flag}'")),
        };
        if need.is_some_and(|n| n != sched) {
            return fail(2, format!("incompatible scheduler flag `{flag}'"));
        }
        bits |= bit;
    }
    Ok(bits)
}

/// The SCHED1..3 bits in ipvsadm's `print_sched_flags` spelling for
/// `sched` (flag-3 under sh/mh has no name there; rvs keeps "flag-3").
pub fn sched_flag_names(sched: &str, bits: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    let names: [&'static str; 3] = match sched {
        "sh" => ["sh-fallback", "sh-port", "flag-3"],
        "mh" => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    for (i, n) in names.iter().enumerate() {
        if bits & (1 << i) != 0 {
            v.push(*n);
        }
    }
    v
}

fn parse_svc(proto: &'static str, arg: &str) -> Result<Svc, Exit> {
    match names::parse_service(arg, proto) {
        Some(p) => Ok(Svc::Addr {
            proto,
            addr: p.addr,
            port: p.port,
        }),
        None => fail(2, "illegal virtual server address[:port] specified"),
    }
}

/// Parse one command line (`args[0]` is the program name) as ipvsadm's
/// `parse_options` + `process_options` do, up to the kernel call.
pub fn parse(args: &[String]) -> Result<Parsed, Exit> {
    let program = args.first().map(String::as_str).unwrap_or("rvsadm");
    let mut p = Popt::new(args);
    // The first option must be a command (or -h/-v).
    let cmd = match p.next() {
        Some(Tok::Opt(Tag::Help, _)) => return Ok(Parsed::Help),
        Some(Tok::Opt(Tag::Version, _)) => return Ok(Parsed::Version),
        Some(Tok::Opt(Tag::Cmd(c), arg)) => (c, arg),
        _ => return Err(tryhelp(program)),
    };
    let (cmd, cmd_arg) = cmd;
    let mut e = Entry {
        cmd,
        options: 0,
        fmt: Fmt::default(),
        svc: None,
        sched: None,
        persistent: None,
        netmask: None,
        sched_flags: Vec::new(),
        ops: false,
        pe: None,
        dest: None,
        fwd: "dr",
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: None,
        tun_port: None,
        tun_csum: None,
        timeouts: None,
        laddr: None,
        client_addr: None,
        synproxy: false,
        json: false,
        health: false,
        file: None,
        warning: None,
        daemon: DaemonArgs::default(),
    };
    match cmd {
        Cmd::StartDaemon | Cmd::StopDaemon => {
            let a = cmd_arg.unwrap_or_default();
            e.daemon.state = if a == "master" { "master" } else { "backup" };
            if a != "master" && a != "backup" {
                return fail(
                    2,
                    if cmd == Cmd::StartDaemon {
                        "illegal start-daemon parameter specified"
                    } else {
                        "illegal start_daemon specified"
                    },
                );
            }
        }
        Cmd::Load | Cmd::ImportKeepalived => e.file = cmd_arg,
        _ => {}
    }
    let mut dest_port_given = false;
    let mut dest_parsed: Option<(IpAddr, Option<u16>)> = None;
    let mut sched_flags_arg: Option<String> = None;
    let o = &mut e.options;
    while let Some(tok) = p.next() {
        let (tag, arg) = match tok {
            Tok::Opt(t, a) => (t, a),
            // popt error after the first option: "<opt>: <error>", -1.
            Tok::Bad(w, why) => return fail(255, format!("{w}: {why}")),
        };
        let a = arg.as_deref().unwrap_or("");
        match tag {
            Tag::Cmd(_) | Tag::Help | Tag::Version => {
                let bad = args.get(p.i - 1).cloned().unwrap_or_default();
                return fail(2, format!("invalid option `{bad}'"));
            }
            Tag::Tcp | Tag::Udp | Tag::Sctp => {
                set_option(o, optc::SERVICE)?;
                if tag == Tag::Sctp {
                    return fail(2, "SCTP virtual services are not supported by rvs");
                }
                let proto = if tag == Tag::Tcp { "tcp" } else { "udp" };
                e.svc = Some(parse_svc(proto, a)?);
            }
            Tag::Fwmark => {
                set_option(o, optc::SERVICE)?;
                e.svc = Some(Svc::Fwmark {
                    mark: parse_fwmark(a)?,
                    v6: false,
                });
            }
            Tag::Sched => {
                set_option(o, optc::SCHEDULER)?;
                // strncpy to IP_VS_SCHEDNAME_MAXLEN - 1 (15).
                e.sched = Some(a.chars().take(15).collect());
            }
            Tag::Persistent => {
                set_option(o, optc::PERSISTENT)?;
                e.persistent = Some(parse_timeout(arg.as_deref(), 1, MAX_TIMEOUT)?);
            }
            Tag::Netmask => {
                set_option(o, optc::NETMASK)?;
                if e.svc.as_ref().is_some_and(Svc::is_v6) {
                    // atoi
                    let v = atoi(a);
                    if !(1..=128).contains(&v) {
                        return fail(2, "illegal ipv6 netmask specified");
                    }
                    e.netmask = Some(Netmask::Prefix(v as u8));
                } else {
                    match names::inet_aton(a).or_else(|| names::host_to_addr(a)) {
                        Some(m) => e.netmask = Some(Netmask::V4(m)),
                        None => return fail(2, "illegal virtual server persistent mask specified"),
                    }
                }
            }
            Tag::Real => {
                set_option(o, optc::SERVER)?;
                let proto = e.svc.as_ref().map(Svc::proto).unwrap_or("tcp");
                match names::parse_service(a, proto) {
                    Some(p) => {
                        dest_port_given = p.port.is_some();
                        dest_parsed = Some((p.addr, p.port));
                    }
                    None => return fail(2, "illegal real server address[:port] specified"),
                }
            }
            Tag::Ipip | Tag::Gate | Tag::Masq | Tag::FullNat => {
                set_option(o, optc::FORWARD)?;
                e.fwd = match tag {
                    Tag::Ipip => "tun",
                    Tag::Gate => "dr",
                    Tag::Masq => "nat",
                    _ => "fullnat",
                };
            }
            Tag::Weight => {
                set_option(o, optc::WEIGHT)?;
                e.weight = string_to_number(a, 0, 65535)
                    .ok_or_else(|| Exit(2, "illegal weight specified".into()))?
                    as u32;
            }
            Tag::UThr => {
                set_option(o, optc::UTHRESHOLD)?;
                e.u_threshold = string_to_number(a, 0, i32::MAX as i64)
                    .ok_or_else(|| Exit(2, "illegal u_threshold specified".into()))?
                    as u32;
            }
            Tag::LThr => {
                set_option(o, optc::LTHRESHOLD)?;
                e.l_threshold = string_to_number(a, 0, i32::MAX as i64)
                    .ok_or_else(|| Exit(2, "illegal l_threshold specified".into()))?
                    as u32;
            }
            Tag::Conn => set_option(o, optc::CONNECTION)?,
            Tag::Numeric => {
                set_option(o, optc::NUMERIC)?;
                e.fmt.numeric = true;
            }
            Tag::McastIf => {
                set_option(o, optc::MCAST)?;
                // IP_VS_IFNAME_MAXLEN 16, with the terminating zero.
                e.daemon.mcast_ifn = Some(a.chars().take(15).collect());
            }
            Tag::SyncId => {
                set_option(o, optc::SYNCID)?;
                match string_to_number(a, 0, 255) {
                    Some(n) => e.daemon.syncid = n as u8,
                    None => return fail(2, "illegal syncid specified"),
                }
            }
            Tag::Timeout => set_option(o, optc::TIMEOUT)?,
            Tag::Daemon => set_option(o, optc::DAEMON)?,
            Tag::Stats => {
                set_option(o, optc::STATS)?;
                e.fmt.stats = true;
            }
            Tag::Rate => {
                set_option(o, optc::RATE)?;
                e.fmt.rate = true;
            }
            Tag::Thresholds => {
                set_option(o, optc::THRESHOLDS)?;
                e.fmt.thresholds = true;
            }
            Tag::PersistConn => {
                set_option(o, optc::PERSISTENTCONN)?;
                e.fmt.persistent_conn = true;
            }
            Tag::NoSort => {
                set_option(o, optc::NOSORT)?;
                e.fmt.nosort = true;
            }
            Tag::Sort => {}
            Tag::Exact => {
                set_option(o, optc::EXACT)?;
                e.fmt.exact = true;
            }
            Tag::Ipv6 => match &mut e.svc {
                Some(Svc::Fwmark { v6, .. }) => *v6 = true,
                _ => return fail(2, "-6 used before -f\n"),
            },
            Tag::Ops => {
                set_option(o, optc::ONEPACKET)?;
                e.ops = true;
            }
            Tag::Pe => {
                set_option(o, optc::PE)?;
                e.pe = Some(a.to_string());
            }
            Tag::SchedFlags => {
                set_option(o, optc::SCHED_FLAGS)?;
                sched_flags_arg = Some(a.chars().take(127).collect());
            }
            Tag::McastGroup => {
                set_option(o, optc::MCAST_GROUP)?;
                match a.parse::<std::net::Ipv4Addr>() {
                    Ok(g) if g.is_multicast() => e.daemon.mcast_group = Some(g),
                    _ => return fail(2, "illegal mcast-group specified"),
                }
            }
            Tag::McastPort => {
                set_option(o, optc::MCAST_PORT)?;
                match string_to_number(a, 1, 65535) {
                    Some(n) => e.daemon.mcast_port = n as u16,
                    None => return fail(2, "illegal mcast-port specified"),
                }
            }
            Tag::McastTtl => {
                set_option(o, optc::MCAST_TTL)?;
                match string_to_number(a, 1, 255) {
                    Some(n) => e.daemon.mcast_ttl = n as u8,
                    None => return fail(2, "illegal mcast-ttl specified"),
                }
            }
            Tag::SyncMaxlen => {
                set_option(o, optc::SYNC_MAXLEN)?;
                match string_to_number(a, 1, 65535 - 20 - 8) {
                    Some(n) => e.daemon.sync_maxlen = n as u16,
                    None => return fail(2, "illegal sync-maxlen specified"),
                }
            }
            Tag::TunInfo => {
                set_option(o, optc::TUN_INFO)?;
                e.fmt.tun_info = true;
            }
            Tag::TunType => {
                set_option(o, optc::TUN_TYPE)?;
                e.tun_type = Some(match a {
                    "ipip" => "ipip",
                    "gue" => "gue",
                    "gre" => "gre",
                    _ => return fail(2, "illegal tunnel type specified"),
                });
            }
            Tag::TunPort => {
                set_option(o, optc::TUN_PORT)?;
                e.tun_port = Some(
                    string_to_number(a, 1, 65535)
                        .ok_or_else(|| Exit(2, "illegal tunnel port specified".into()))?
                        as u16,
                );
            }
            // ipvsadm ORs the flag bits; with nocsum = 0 the last one given
            // wins among csum/remcsum, and tunnel_opt_check refuses two.
            Tag::TunNocsum => {
                set_option(o, optc::TUN_NOCSUM)?;
                e.tun_csum = Some("nocsum");
            }
            Tag::TunCsum => {
                set_option(o, optc::TUN_CSUM)?;
                e.tun_csum = Some("csum");
            }
            Tag::TunRemcsum => {
                set_option(o, optc::TUN_REMCSUM)?;
                e.tun_csum = Some("remcsum");
            }
            Tag::Laddr => {
                set_option(o, optc::LADDR)?;
                e.laddr = Some(
                    a.parse()
                        .map_err(|_| Exit(2, "illegal local address specified".into()))?,
                );
            }
            Tag::Toa => {
                set_option(o, optc::TOA)?;
                e.client_addr = Some("toa");
            }
            Tag::ProxyProtocol => {
                set_option(o, optc::PROXY_PROTOCOL)?;
                e.client_addr = Some("proxy_v2");
            }
            Tag::Synproxy => {
                set_option(o, optc::SYNPROXY)?;
                e.synproxy = true;
            }
            Tag::Json => {
                set_option(o, optc::JSON)?;
                e.json = true;
            }
            Tag::Health => {
                set_option(o, optc::HEALTH)?;
                e.health = true;
            }
        }
    }
    let mut leftover = p.leftover.into_iter();
    if cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (leftover.next(), leftover.next(), leftover.next())
        else {
            return fail(2, "--set option requires 3 timeout values");
        };
        e.timeouts = Some([
            parse_timeout(Some(&a), 0, MAX_TIMEOUT)?,
            parse_timeout(Some(&b), 0, MAX_TIMEOUT)?,
            parse_timeout(Some(&c), 0, MAX_TIMEOUT)?,
        ]);
    }
    if let Some(x) = leftover.next() {
        return fail(2, format!("unexpected argument {x}"));
    }
    if let Some(b) = &sched_flags_arg {
        let bits = parse_sched_flags(e.sched.as_deref(), b)?;
        e.sched_flags = sched_flag_names(e.sched.as_deref().unwrap_or("wlc"), bits);
    }
    generic_opt_check(cmd, e.options)?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        let fwmark = matches!(e.svc, Some(Svc::Fwmark { .. }));
        if !fwmark && e.svc.as_ref().map(Svc::port) == Some(0) && e.persistent.is_none() {
            return fail(2, "Zero port specified for non-persistent service");
        }
        if e.ops && !fwmark && e.svc.as_ref().map(Svc::proto) != Some("udp") {
            return fail(2, "One-Packet Scheduling is only for UDP virtual services");
        }
        if e.sched.is_none() {
            e.sched = Some("wlc".into());
        }
    }
    if let Some((addr, port)) = dest_parsed {
        // "copy vport to dport if not specified"
        let svc_port = e.svc.as_ref().map(Svc::port).unwrap_or(0);
        e.dest = Some((addr, port.unwrap_or(svc_port)));
    }
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        let svc = e.svc.clone();
        let fwmark = matches!(svc, Some(Svc::Fwmark { .. }));
        if let (Some(s), Some((addr, port))) = (&svc, e.dest) {
            // "The destination port must be equal to the service port if
            // the IP_VS_CONN_F_TUNNEL or IP_VS_CONN_F_DROUTE is set."
            if !fwmark && matches!(e.fwd, "tun" | "dr") && port != s.port() {
                if dest_port_given {
                    e.warning = Some(format!(
                        "{}: real server port {port} ignored: {} uses the service's port {}",
                        addr,
                        if e.fwd == "dr" { "-g" } else { "-i" },
                        s.port()
                    ));
                }
                e.dest = Some((addr, s.port()));
            }
            // ipvsadm's rule, and rvs's FULLNAT extension: an IPv6 service
            // may reach IPv4 servers through IPv4 local addresses (NAT64).
            let nat64 = s.is_v6() && !addr.is_ipv6() && e.fwd == "fullnat";
            if addr.is_ipv6() != s.is_v6() && e.fwd != "tun" && !nat64 {
                return fail(
                    2,
                    "Different address family is allowed only for tunneling servers",
                );
            }
        }
        let tun_opts = (1u64 << optc::TUN_TYPE)
            | (1 << optc::TUN_PORT)
            | (1 << optc::TUN_NOCSUM)
            | (1 << optc::TUN_CSUM)
            | (1 << optc::TUN_REMCSUM);
        if e.options & tun_opts != 0 && e.fwd != "tun" {
            return fail(2, "Tunnel options conflict with forward method");
        }
        tunnel_opt_check(e.tun_type.unwrap_or("ipip"), e.options)?;
    }
    if cmd == Cmd::List {
        let has = |c: usize| e.options & (1 << c) != 0;
        if ((has(optc::CONNECTION) || has(optc::TIMEOUT) || has(optc::DAEMON))
            && (has(optc::STATS) || has(optc::RATE) || has(optc::THRESHOLDS)))
            || ((has(optc::TIMEOUT) || has(optc::DAEMON)) && has(optc::PERSISTENTCONN))
        {
            return fail(2, "options conflicts in the list command");
        }
    }
    Ok(Parsed::Run(Box::new(e)))
}

impl Entry {
    fn has(&self, c: usize) -> bool {
        self.options & (1 << c) != 0
    }

    /// The ServiceConf `-A`/`-E` send (ipvsadm sends the whole service:
    /// what is not given is the default, as `ipvs_update_service`).
    pub fn service_conf(&self) -> Value {
        let Some(svc) = &self.svc else {
            return Value::Null;
        };
        let mut s = svc.key();
        s["sched"] = json!(self.sched.as_deref().unwrap_or("wlc"));
        if let Some(p) = self.persistent {
            s["persistent"] = json!(p);
        }
        match self.netmask {
            Some(Netmask::V4(m)) => s["netmask"] = json!(m),
            Some(Netmask::Prefix(p)) => s["netmask"] = json!(p),
            None => {}
        }
        if !self.sched_flags.is_empty() {
            s["sched_flags"] = json!(self.sched_flags);
        }
        if self.ops {
            s["ops"] = json!(true);
        }
        if let Some(c) = self.client_addr {
            s["client_addr"] = json!(c);
        }
        if self.synproxy {
            s["synproxy"] = json!(true);
        }
        s
    }

    /// The DestConf `-a`/`-e` send (`-d` sends address and port only).
    pub fn dest_conf(&self) -> Value {
        let Some((ip, port)) = self.dest else {
            return Value::Null;
        };
        if self.cmd == Cmd::DelDest {
            return json!({"ip": ip, "port": port});
        }
        let mut d = json!({"ip": ip, "port": port, "weight": self.weight, "fwd": self.fwd,
            "u_threshold": self.u_threshold, "l_threshold": self.l_threshold});
        if self.fwd == "tun" {
            if let Some(t) = self.tun_type.filter(|t| *t != "ipip") {
                d["tun_type"] = json!(t);
            }
            if let Some(p) = self.tun_port {
                d["tun_port"] = json!(p);
            }
            if let Some(c) = self.tun_csum.filter(|c| *c != "nocsum") {
                d["tun_csum"] = json!(c);
            }
        }
        d
    }

    /// `--toa`/`--proxy-protocol` together are refused (rvs options).
    pub fn check_extensions(&self) -> Result<(), Exit> {
        if self.has(optc::TOA) && self.has(optc::PROXY_PROTOCOL) {
            return fail(2, "--toa and --proxy-protocol are exclusive");
        }
        if self.pe.is_some() {
            return fail(2, "persistence engines (--pe) are not supported by rvs");
        }
        Ok(())
    }
}

/// The kernel's check in `ip_vs_add_dest`/`ip_vs_edit_dest`: a lower
/// threshold above the upper one is -ERANGE, which ipvsadm prints as
/// `strerror(ERANGE)`.
pub fn thresholds_in_range(e: &Entry) -> Result<(), Exit> {
    if matches!(e.cmd, Cmd::AddDest | Cmd::EditDest) && e.l_threshold > e.u_threshold {
        return fail(255, "Numerical result out of range");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
