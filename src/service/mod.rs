//! Virtual services and their real servers.
//!
//! Two layers: the control plane edits [`ServiceConf`] values (plain data,
//! validated whole), and from them builds an immutable [`ServiceTable`]
//! snapshot that workers read without locks. Counters live in `Arc`s that
//! survive snapshot rebuilds, so edits never reset ActiveConn/InActConn or
//! traffic statistics, and connections keep counting against the real server
//! they were bound to even after it is deleted (the kernel's "trash" dests).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::sched::{self, Scheduler};

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
    /// ipvsadm's spelling ("TCP"/"UDP").
    pub fn upper(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// Packet forwarding method (ipvsadm -m / -g / -i, plus rvs's FULLNAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// LVS-NAT, `-m`, "Masq".
    Nat,
    /// Direct routing, `-g`, "Route": ipvsadm's default.
    #[default]
    Dr,
    /// IPIP tunnelling, `-i`, "Tunnel".
    Tun,
    /// Double NAT from a local address pool, `--fullnat`, "FullNat".
    FullNat,
    /// IPVS's LOCALNODE, "Local": the real server is the director itself
    /// (a loopback or own address, as the kernel decides by
    /// `inet_addr_type() == RTN_LOCAL`). Packets go unchanged to the
    /// receiving port's kernel twin, whose stack holds the VIP.
    Local,
}

impl Forward {
    /// The name `ipvsadm -L` prints in the Forward column.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Forward::Nat => "Masq",
            Forward::Dr => "Route",
            Forward::Tun => "Tunnel",
            Forward::FullNat => "FullNat",
            Forward::Local => "Local",
        }
    }
}

/// The encapsulation of a TUN real server (`ipvsadm --tun-type`, the
/// kernel's `IP_VS_CONN_F_TUNNEL_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TunType {
    /// IPv4 in IPv4 (protocol 4): the default.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation: outer UDP to the real server's `tun_port`
    /// and a 4-byte GUE header.
    Gue,
    /// GRE (protocol 47), protocol type 0x0800.
    Gre,
}

/// Checksum of a GUE/GRE encapsulation (`ipvsadm --tun-nocsum/--tun-csum/
/// --tun-remcsum`, the kernel's `IP_VS_TUNNEL_ENCAP_FLAG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TunCsum {
    /// GUE: outer UDP checksum 0; GRE: no checksum field.
    #[default]
    Nocsum,
    /// GUE: full outer UDP checksum; GRE: the checksum field (C bit).
    Csum,
    /// GUE remote checksum offload. The kernel adds the option only for a
    /// packet whose inner checksum is still to be done (CHECKSUM_PARTIAL);
    /// packets rvs forwards come complete from the wire, so, as the kernel
    /// does for them, this is a full outer UDP checksum and no option.
    Remcsum,
}

/// The tunnel a TUN real server's packets get: the data path reads it per
/// packet from [`DestState::tunnel`], so an edit applies to established
/// connections too (the kernel reads `cp->dest->tun_*` in
/// `ip_vs_tunnel_xmit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Tunnel {
    pub kind: TunType,
    /// GUE destination port (0 for the other types).
    pub port: u16,
    pub csum: TunCsum,
}

impl Tunnel {
    fn pack(self) -> u32 {
        (self.kind as u32) << 24 | (self.csum as u32) << 16 | self.port as u32
    }
    fn unpack(v: u32) -> Tunnel {
        Tunnel {
            kind: match v >> 24 {
                1 => TunType::Gue,
                2 => TunType::Gre,
                _ => TunType::Ipip,
            },
            csum: match (v >> 16) & 0xff {
                1 => TunCsum::Csum,
                2 => TunCsum::Remcsum,
                _ => TunCsum::Nocsum,
            },
            port: v as u16,
        }
    }
}

/// How a FULLNAT real server learns the client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAddr {
    /// Not at all: the server sees the local address.
    #[default]
    None,
    /// The TOA TCP option (kind 254, length 8: port, IPv4) on the SYN and the
    /// handshake's last ACK, as DPVS / Alibaba LVS (a TOA kernel module on the
    /// server reads it).
    Toa,
    /// A PROXY protocol v2 header at the start of the client's stream (TCP).
    ProxyV2,
}

/// Identity of a virtual service: protocol, VIP and port; or, for a fwmark
/// service (`fwmark` != 0), the mark and the address family (the family of
/// `vip`, which is then 0.0.0.0 or ::, with proto TCP and port 0, the
/// values ipvsadm's `-f` fills in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct ServiceKey {
    pub proto: Proto,
    pub vip: IpAddr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "is_default")]
    pub fwmark: u32,
}

impl ServiceKey {
    /// A `<proto, vip, port>` service.
    pub fn new(proto: Proto, vip: IpAddr, port: u16) -> ServiceKey {
        ServiceKey {
            proto,
            vip,
            port,
            fwmark: 0,
        }
    }
    /// The fwmark service of `mark` (`ipvsadm -f mark`, `-6` for IPv6).
    pub fn fwmark(mark: u32, inet6: bool) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: unspecified(inet6),
            port: 0,
            fwmark: mark,
        }
    }
}

/// The placeholder address of a fwmark service of either family.
fn unspecified(inet6: bool) -> IpAddr {
    if inet6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.proto.upper();
        if self.fwmark != 0 {
            // ipvsadm's listing: "FWM  1", "FWM  1 IPv6".
            let v6 = if self.vip.is_ipv6() { " IPv6" } else { "" };
            return write!(f, "FWM {}{v6}", self.fwmark);
        }
        match self.vip {
            IpAddr::V4(a) => write!(f, "{proto} {a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "{proto} [{a}]:{}", self.port),
        }
    }
}

/// Default scheduler when none is given (ipvsadm's default).
pub const DEFAULT_SCHED: &str = "wlc";
/// Default persistence timeout for `-p` without a value: libipvs's
/// `IPVS_SVC_PERSISTENT_TIMEOUT` (6*60); its man page says 300, the code wins.
pub const DEFAULT_PERSISTENT_TIMEOUT: u32 = 360;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_sched() -> String {
    DEFAULT_SCHED.to_string()
}
fn default_netmask() -> Ipv4Addr {
    Ipv4Addr::BROADCAST
}
fn default_weight() -> u32 {
    1
}

/// What a health check probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect (keepalived TCP_CHECK).
    Tcp,
    /// HTTP GETs whose status must match (keepalived HTTP_GET).
    Http,
    /// A program run on the director: exit code 0 = up (keepalived
    /// MISC_CHECK).
    Misc,
    /// A UDP datagram: down on an ICMP unreachable, up on a reply or
    /// (without `require_reply`) on silence (keepalived UDP_CHECK).
    Udp,
}

impl CheckKind {
    /// keepalived's name of the checker.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http => "HTTP_GET",
            CheckKind::Misc => "MISC_CHECK",
            CheckKind::Udp => "UDP_CHECK",
        }
    }
}

/// What happens to a real server that fails its health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Taken out of the service until it recovers (keepalived's default).
    #[default]
    Remove,
    /// Kept with weight 0: established connections continue, no new ones
    /// (keepalived `inhibit_on_failure`).
    Quiesce,
}

fn d_interval() -> u32 {
    6000
}
fn d_timeout() -> u32 {
    3000
}
fn d_retries() -> u32 {
    1
}
fn d_retry_delay() -> u32 {
    1000
}

/// One URL an HTTP check fetches (keepalived's `url { path; status_code }`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUrl {
    pub path: String,
    /// Accepted statuses in keepalived's `status_code` syntax: codes and
    /// ranges separated by spaces or commas ("200 301-302"). Absent = any
    /// 2xx (keepalived's HTTP_DEFAULT_STATUS_CODE_MIN..MAX, 200..=299).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Parse keepalived's `status_code` list ("200 300-399", commas allowed)
/// into inclusive ranges; keepalived's check_http.c status_code_handler
/// accepts 100..=999 per code (HTTP_STATUS_CODE_MIN/MAX).
pub fn parse_status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split([' ', ',', '\t']).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (a.parse::<u16>(), b.parse::<u16>()) else {
            return Err(format!("bad status code {part:?}"));
        };
        if !(100..=999).contains(&lo) || !(100..=999).contains(&hi) || lo > hi {
            return Err(format!("status code {part:?} is not within 100..=999"));
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err("empty status code list".into());
    }
    Ok(out)
}

/// A health check run by rvsd from the director's own network stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// Port to probe; absent = the real server's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTP path (default "/"), when `urls` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Expected HTTP status with `path` (default: any 2xx, as keepalived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Several URLs (keepalived: several `url` blocks): every one must
    /// answer with an accepted status. Replaces `path`/`status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<HttpUrl>,
    /// HTTP Host header (keepalived `virtualhost`); default: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// MISC check: the program and its arguments (keepalived `misc_path`),
    /// split on white space, double quotes group; run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// MISC check: exit codes 2..=255 mean up with weight code-2
    /// (keepalived `misc_dynamic`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub misc_dynamic: bool,
    /// UDP check: the datagram to send, in hex (keepalived `payload`;
    /// default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// UDP check: silence until the timeout is a failure (keepalived
    /// `require_reply`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_reply: bool,
    /// Time between checks of a healthy server, ms (keepalived `delay_loop`).
    #[serde(default = "d_interval")]
    pub interval_ms: u32,
    /// Connect/response timeout, ms (keepalived `connect_timeout`; for a
    /// MISC check `misc_timeout`, after which the program is killed).
    #[serde(default = "d_timeout")]
    pub timeout_ms: u32,
    /// Consecutive failed attempts before the server is declared down,
    /// counting the first attempt (keepalived's `retry N` is N+1 attempts).
    #[serde(default = "d_retries")]
    pub retries: u32,
    /// Pause between the attempts of one check, ms (keepalived
    /// `delay_before_retry`).
    #[serde(default = "d_retry_delay")]
    pub retry_delay_ms: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The first check of a new server starts at a random moment within
    /// this many ms, so thousands do not start at once (keepalived
    /// `warmup`, default `delay_loop`: check_api.c register_checkers_thread).
    /// Absent = `interval_ms`; 0 = at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<u32>,
    /// Further checks of the same real server (keepalived: several checkers
    /// in one `real_server`); the server is up only while every check
    /// passes. Their own `on_failure` and `also` are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<HealthCheck>,
}

/// The longest probe timeout accepted: it bounds how long one probe can keep
/// a socket (and a MISC program) alive.
pub const MAX_CHECK_TIMEOUT_MS: u32 = 60_000;

impl HealthCheck {
    /// A check of `kind` with rvs's JSON defaults.
    pub fn new(kind: CheckKind) -> HealthCheck {
        HealthCheck {
            kind,
            port: None,
            path: None,
            status: None,
            urls: Vec::new(),
            host: None,
            script: None,
            misc_dynamic: false,
            payload: None,
            require_reply: false,
            interval_ms: d_interval(),
            timeout_ms: d_timeout(),
            retries: d_retries(),
            retry_delay_ms: d_retry_delay(),
            on_failure: OnFailure::Remove,
            warmup_ms: None,
            also: Vec::new(),
        }
    }
    /// The HTTP path to request ("/" by default).
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
    /// The URLs an HTTP check fetches, in order, with their accepted
    /// statuses (inclusive ranges).
    pub fn http_urls(&self) -> Vec<(String, Vec<(u16, u16)>)> {
        if self.urls.is_empty() {
            let st = self.status.map_or(vec![(200, 299)], |s| vec![(s, s)]);
            return vec![(self.path().to_string(), st)];
        }
        self.urls
            .iter()
            .map(|u| {
                let st = u
                    .status
                    .as_deref()
                    .and_then(|s| parse_status_ranges(s).ok())
                    .unwrap_or_else(|| vec![(200, 299)]);
                (u.path.clone(), st)
            })
            .collect()
    }
    /// This check and its `also` checks.
    pub fn all(&self) -> impl Iterator<Item = &HealthCheck> {
        std::iter::once(self).chain(self.also.iter())
    }
    fn validate_path(p: &str) -> Result<(), String> {
        if !p.starts_with('/') {
            return Err(format!("path must start with '/': {p:?}"));
        }
        if p.len() > 1024 || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "path must be at most 1024 characters without spaces or control characters: {p:?}"
            ));
        }
        Ok(())
    }
    /// Values a checker can run with; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_one()?;
        for (i, c) in self.also.iter().enumerate() {
            if !c.also.is_empty() {
                return Err(format!("also[{i}]: nested \"also\" is not allowed"));
            }
            c.validate_one().map_err(|e| format!("also[{i}]: {e}"))?;
        }
        Ok(())
    }
    fn validate_one(&self) -> Result<(), String> {
        if self.interval_ms == 0 {
            return Err("interval_ms must be at least 1".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_CHECK_TIMEOUT_MS {
            return Err(format!(
                "timeout_ms must be 1..={MAX_CHECK_TIMEOUT_MS}, not {}",
                self.timeout_ms
            ));
        }
        if self.retries == 0 {
            return Err("retries must be at least 1 (it counts the first attempt)".into());
        }
        if self.port == Some(0) {
            return Err("port must be 1..=65535 (or absent: the real server's port)".into());
        }
        let http = self.path.is_some()
            || self.status.is_some()
            || !self.urls.is_empty()
            || self.host.is_some();
        if self.kind != CheckKind::Http && http {
            return Err("path, status, urls and host apply to HTTP checks only".into());
        }
        if self.kind != CheckKind::Misc && (self.script.is_some() || self.misc_dynamic) {
            return Err("script and misc_dynamic apply to MISC checks only".into());
        }
        if self.kind != CheckKind::Udp && (self.payload.is_some() || self.require_reply) {
            return Err("payload and require_reply apply to UDP checks only".into());
        }
        if let Some(p) = &self.payload {
            if parse_hex(p).is_none() {
                return Err(format!("payload must be hex bytes (at most 1400): {p:?}"));
            }
        }
        if self.kind == CheckKind::Misc {
            let argv = self
                .script
                .as_deref()
                .map(split_command)
                .unwrap_or_default();
            if argv.is_empty() {
                return Err("a misc check needs a script".into());
            }
        }
        if !self.urls.is_empty() && (self.path.is_some() || self.status.is_some()) {
            return Err("give either path/status or urls, not both".into());
        }
        if let Some(p) = &self.path {
            Self::validate_path(p)?;
        }
        for u in &self.urls {
            Self::validate_path(&u.path)?;
            if let Some(s) = &u.status {
                parse_status_ranges(s).map_err(|e| format!("url {}: {e}", u.path))?;
            }
        }
        if let Some(h) = &self.host {
            if h.is_empty()
                || h.len() > 255
                || h.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!("host must be a name without spaces: {h:?}"));
            }
        }
        if let Some(st) = self.status {
            if !(100..=599).contains(&st) {
                return Err(format!("status must be 100..=599, not {st}"));
            }
        }
        Ok(())
    }
}

/// The bytes of a hex string (keepalived read_hex_str: pairs of hex
/// digits); None if it is not one or longer than 1400 bytes.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) || s.len() > 2800 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Split a MISC check's command line as keepalived does for `misc_path`:
/// on white space, with double quotes grouping words (no shell).
pub fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A real server of a service: service key, address, real-server port.
pub type DestKey = (ServiceKey, IpAddr, u16);

/// The server that takes traffic when no real server is available
/// (keepalived `sorry_server`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    pub ip: IpAddr,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub fwd: Forward,
}

/// A virtual service as configured (control-plane data).
///
/// A fwmark service (`fwmark` != 0) has proto TCP, vip 0.0.0.0 (or :: for
/// IPv6) and port 0 here, as ipvsadm fills them in for `-f`; in JSON it
/// carries `"fwmark": N` (and `"af": "inet6"` for IPv6) instead of
/// proto/vip/port (see the `Serialize`/`Deserialize` impls below).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ServiceConf {
    pub proto: Proto,
    pub vip: IpAddr,
    pub port: u16,
    /// Firewall mark of a fwmark service (`ipvsadm -f`); 0 = none.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fwmark: u32,
    #[serde(default = "default_sched")]
    pub sched: String,
    /// Persistence timeout in seconds (`-p`); None = not persistent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<u32>,
    /// Persistence granularity (`-M`).
    #[serde(default = "default_netmask")]
    pub netmask: Ipv4Addr,
    /// Scheduler flags (`-b`): sh-fallback, sh-port, mh-fallback, mh-port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sched_flags: Vec<String>,
    /// FULLNAT local addresses (LIP pool): the source addresses real servers
    /// see; the director answers ARP for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub laddrs: Vec<IpAddr>,
    /// FULLNAT client-address delivery.
    #[serde(default, skip_serializing_if = "is_default")]
    pub client_addr: ClientAddr,
    /// SYN proxy (`--synproxy`): the director answers clients' SYNs with
    /// SYN cookies and opens the connection to a real server only after
    /// the client's ACK. TCP, NAT and FULLNAT only, not with PROXY v2.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synproxy: bool,
    /// One-packet scheduling (ipvsadm `-o`/`--ops`, the kernel's
    /// `IP_VS_SVC_F_ONEPACKET`): every UDP datagram is scheduled on its own
    /// and its connection entry ends as soon as it is forwarded
    /// (`IP_VS_CONN_F_ONE_PACKET`). UDP services only, as ipvsadm checks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ops: bool,
    /// Health check for every real server without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Takes new connections while no real server is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<SorryServer>,
    #[serde(default)]
    pub dests: Vec<DestConf>,
}

impl Serialize for ServiceConf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if self.fwmark == 0 {
            return ServiceConf::serialize(self, s);
        }
        let mut v = ServiceConf::serialize(self, serde_json::value::Serializer)
            .map_err(S::Error::custom)?;
        if let Some(o) = v.as_object_mut() {
            for k in ["proto", "vip", "port"] {
                o.remove(k);
            }
            if self.vip.is_ipv6() {
                o.insert("af".into(), "inet6".into());
            }
        }
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ServiceConf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let mut m = UniqueMap::deserialize(d)?.0;
        let af = match m.remove("af") {
            None => None,
            Some(Value::String(a)) if a == "inet" => Some(false),
            Some(Value::String(a)) if a == "inet6" => Some(true),
            Some(a) => {
                return Err(D::Error::custom(format!(
                    "af must be \"inet\" or \"inet6\", not {a}"
                )))
            }
        };
        if let Some(f) = m.get("fwmark") {
            let mark = f
                .as_u64()
                .filter(|n| (1..=u32::MAX as u64).contains(n))
                .ok_or_else(|| {
                    D::Error::custom(format!("invalid fwmark {f}: must be 1..=4294967295"))
                })?;
            if let Some(k) = ["proto", "vip", "port"]
                .into_iter()
                .find(|k| m.contains_key(*k))
            {
                return Err(D::Error::custom(format!(
                    "a fwmark service has no `{k}` (its packets are the ones the fwmark rules mark {mark})"
                )));
            }
            let inet6 = af.unwrap_or(false);
            m.insert("proto".into(), "tcp".into());
            m.insert("vip".into(), unspecified(inet6).to_string().into());
            m.insert("port".into(), 0.into());
        } else if let (Some(inet6), Some(vip)) = (af, m.get("vip").and_then(Value::as_str)) {
            // Only for a fwmark service does "af" say something; elsewhere
            // it must agree with the VIP.
            if vip.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() != inet6) {
                return Err(D::Error::custom(format!(
                    "af {} does not match vip {vip}",
                    if inet6 { "inet6" } else { "inet" }
                )));
            }
        }
        ServiceConf::deserialize(Value::Object(m)).map_err(D::Error::custom)
    }
}

/// A JSON object read with duplicate keys refused (a `serde_json::Value`
/// would keep the last one silently).
struct UniqueMap(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a service object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueMap, A::Error> {
                use serde::de::Error;
                let mut m = serde_json::Map::new();
                while let Some((k, v)) = a.next_entry::<String, serde_json::Value>()? {
                    if m.contains_key(&k) {
                        return Err(A::Error::custom(format!("duplicate field `{k}`")));
                    }
                    m.insert(k, v);
                }
                Ok(UniqueMap(m))
            }
        }
        d.deserialize_map(V)
    }
}

impl ServiceConf {
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            proto: self.proto,
            vip: self.vip,
            port: self.port,
            fwmark: self.fwmark,
        }
    }
    /// A fwmark service (`ipvsadm -f`).
    pub fn is_fwmark(&self) -> bool {
        self.fwmark != 0
    }
    /// The health check that applies to `d`: its own, else the service's.
    pub fn check_for<'a>(&'a self, d: &'a DestConf) -> Option<&'a HealthCheck> {
        d.health.as_ref().or(self.health.as_ref())
    }
    /// The sorry server's address and port (port 0 = the service port).
    pub fn sorry_addr(&self) -> Option<(IpAddr, u16)> {
        self.sorry_server
            .as_ref()
            .map(|s| (s.ip, if s.port == 0 { self.port } else { s.port }))
    }
}

/// A real server as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestConf {
    pub ip: IpAddr,
    /// Real-server port; 0 or absent = the service port.
    #[serde(default)]
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub fwd: Forward,
    /// Upper connection threshold (`-x`); 0 = none.
    #[serde(default)]
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`); 0 = none.
    #[serde(default)]
    pub l_threshold: u32,
    /// This server's own health check (overrides the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// TUN only: the encapsulation; absent = ipip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_type: Option<TunType>,
    /// GUE only, and required there: the outer UDP destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_port: Option<u16>,
    /// GUE/GRE only: the encapsulation's checksum; absent = nocsum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tun_csum: Option<TunCsum>,
}

impl DestConf {
    /// The tunnel this real server's packets get, defaults filled in.
    pub fn tunnel(&self) -> Tunnel {
        Tunnel {
            kind: self.tun_type.unwrap_or_default(),
            port: self.tun_port.unwrap_or(0),
            csum: self.tun_csum.unwrap_or_default(),
        }
    }

    /// The tunnel options' rules: ipvsadm 1.31's (`process_options`: "Only
    /// tunneling allows tunnel options"; `tunnel_opt_check` over the
    /// `tunnel_types_v_options` table: ipip takes none, gue needs
    /// `--tun-port` and one checksum option, gre one of nocsum/csum) and the
    /// kernel's (`ip_vs_add_dest`/`ip_vs_edit_dest`: GUE with port 0 is
    /// EINVAL, "tunnel port is zero"). The messages are ipvsadm's.
    pub fn check_tunnel(&self) -> Result<(), String> {
        let given = self.tun_type.is_some() || self.tun_port.is_some() || self.tun_csum.is_some();
        if self.fwd != Forward::Tun {
            return if given {
                Err("Tunnel options conflict with forward method".into())
            } else {
                Ok(())
            };
        }
        let kind = self.tun_type.unwrap_or_default();
        let name = match kind {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        };
        let illegal = |opt: &str| {
            Err(format!(
                "Illegal '{opt}' option with the '{name}' tunnel type"
            ))
        };
        match (kind, self.tun_port) {
            (TunType::Gue, None) => {
                return Err(
                    "You need to supply the 'tun-port' option for the 'gue' tunnel type".into(),
                )
            }
            (TunType::Gue, Some(0)) => return Err("tunnel port is zero".into()),
            (TunType::Gue, Some(_)) => {}
            (_, Some(_)) => return illegal("tun-port"),
            (_, None) => {}
        }
        match (kind, self.tun_csum) {
            (_, None) | (TunType::Gue, Some(_)) => Ok(()),
            (TunType::Gre, Some(TunCsum::Nocsum | TunCsum::Csum)) => Ok(()),
            (_, Some(c)) => illegal(match c {
                TunCsum::Nocsum => "tun-nocsum",
                TunCsum::Csum => "tun-csum",
                TunCsum::Remcsum => "tun-remcsum",
            }),
        }
    }
}

/// Traffic counters shared by a service or real server and every snapshot
/// and connection that refers to it.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    pub conns: AtomicU64,
    pub inpkts: AtomicU64,
    pub outpkts: AtomicU64,
    pub inbytes: AtomicU64,
    pub outbytes: AtomicU64,
}

/// A plain copy of [`TrafficCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficStats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl TrafficCounters {
    pub fn read(&self) -> TrafficStats {
        TrafficStats {
            conns: self.conns.load(Relaxed),
            inpkts: self.inpkts.load(Relaxed),
            outpkts: self.outpkts.load(Relaxed),
            inbytes: self.inbytes.load(Relaxed),
            outbytes: self.outbytes.load(Relaxed),
        }
    }
    pub fn clear(&self) {
        for c in [
            &self.conns,
            &self.inpkts,
            &self.outpkts,
            &self.inbytes,
            &self.outbytes,
        ] {
            c.store(0, Relaxed);
        }
    }
    /// Add a worker's batch of packet counts.
    pub fn add(&self, inpkts: u64, outpkts: u64, inbytes: u64, outbytes: u64) {
        for (c, v) in [
            (&self.inpkts, inpkts),
            (&self.outpkts, outpkts),
            (&self.inbytes, inbytes),
            (&self.outbytes, outbytes),
        ] {
            if v != 0 {
                c.fetch_add(v, Relaxed);
            }
        }
    }
    #[inline]
    pub fn count_in(&self, bytes: usize) {
        self.inpkts.fetch_add(1, Relaxed);
        self.inbytes.fetch_add(bytes as u64, Relaxed);
    }
    #[inline]
    pub fn count_out(&self, bytes: usize) {
        self.outpkts.fetch_add(1, Relaxed);
        self.outbytes.fetch_add(bytes as u64, Relaxed);
    }
}

/// Live state of a real server that outlives snapshots: connection counts the
/// schedulers read, the overload flag, traffic counters.
#[derive(Debug, Default)]
pub struct DestState {
    /// Index in [`Ids::dests`]; connections refer to their server by it.
    pub id: u32,
    pub active: AtomicU32,
    pub inactive: AtomicU32,
    /// Persistence templates bound to this server (kernel counts them in
    /// `persistconns`).
    pub persist: AtomicU32,
    /// Set when the upper threshold was reached, cleared below the lower one
    /// (kernel IP_VS_DEST_F_OVERLOAD).
    pub overloaded: AtomicBool,
    /// Upper and lower connection thresholds (`-x`, `-y`); 0 = none.
    pub u_threshold: AtomicU32,
    pub l_threshold: AtomicU32,
    /// The latest non-zero weight (kernel `dest->last_weight`, set on add
    /// and on every edit to a non-zero weight): mh keeps a quiesced
    /// (weight 0) server's table slots so that draining it moves no other
    /// client.
    pub last_weight: AtomicU32,
    pub traffic: TrafficCounters,
    /// Rate estimator over `traffic` (ipvsadm --rate).
    pub est: crate::est::Estimator,
    /// The encapsulation for TUN, packed: read it with
    /// [`DestState::tunnel`], write it with [`DestState::set_tunnel`].
    pub tun_packed: AtomicU32,
}

impl DestState {
    /// The encapsulation the data path gives this server's TUN packets.
    #[inline]
    pub fn tunnel(&self) -> Tunnel {
        Tunnel::unpack(self.tun_packed.load(Relaxed))
    }
    /// Set by the control plane on every snapshot build.
    pub fn set_tunnel(&self, t: Tunnel) {
        self.tun_packed.store(t.pack(), Relaxed);
    }

    /// The kernel's `ip_vs_dest_conn_overhead`: (active << 8) + inactive.
    pub fn overhead(&self) -> u32 {
        (self.active.load(Relaxed) << 8).wrapping_add(self.inactive.load(Relaxed))
    }
    /// ActiveConn + InActConn (persistence templates do not count).
    pub fn total_conns(&self) -> u32 {
        self.active.load(Relaxed) + self.inactive.load(Relaxed)
    }

    /// After a connection or template was bound (kernel end of
    /// `ip_vs_bind_dest`): reaching the upper threshold overloads the server.
    pub fn check_overload_on_bind(&self) {
        let u = self.u_threshold.load(Relaxed);
        if u != 0 && self.total_conns() >= u {
            self.overloaded.store(true, Relaxed);
        }
    }

    /// After a connection or template was unbound (kernel end of
    /// `ip_vs_unbind_dest`): below the lower threshold (or 3/4 of the upper
    /// one when no lower is set, or always without thresholds) it recovers.
    pub fn check_overload_on_unbind(&self) {
        let (u, l) = (
            self.u_threshold.load(Relaxed),
            self.l_threshold.load(Relaxed),
        );
        let total = self.total_conns() as u64;
        let clear = if l != 0 {
            total < l as u64
        } else if u != 0 {
            total * 4 < u as u64 * 3
        } else {
            true
        };
        if clear {
            self.overloaded.store(false, Relaxed);
        }
    }

    /// New thresholds from an add or edit (kernel `__ip_vs_update_dest`).
    fn set_thresholds(&self, u: u32, l: u32) {
        if u == 0 || u > self.u_threshold.load(Relaxed) {
            self.overloaded.store(false, Relaxed);
        }
        self.u_threshold.store(u, Relaxed);
        self.l_threshold.store(l, Relaxed);
    }
}

/// A real server in a snapshot.
#[derive(Clone, Debug)]
pub struct Dest {
    pub ip: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub fwd: Forward,
    pub u_threshold: u32,
    pub l_threshold: u32,
    pub state: Arc<DestState>,
}

impl Dest {
    /// Usable for new connections: positive weight and not overloaded.
    #[inline]
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.state.overloaded.load(Relaxed)
    }
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// Live state of a service that outlives snapshots.
#[derive(Debug, Default)]
pub struct ServiceState {
    /// Index in [`Ids::services`].
    pub id: u32,
    pub traffic: TrafficCounters,
    /// Rate estimator over `traffic` (ipvsadm --rate).
    pub est: crate::est::Estimator,
}

/// A virtual service in a snapshot, with its scheduler (shared by every
/// snapshot since the service got it, and kept up to date with `dests`).
pub struct Service {
    pub conf: ServiceConf,
    /// Real servers in the order they joined the list (oldest first; the
    /// kernel's list is this reversed, see `sched::kernel_order`).
    pub dests: Vec<Dest>,
    pub sched: Arc<dyn Scheduler>,
    pub state: Arc<ServiceState>,
}

impl Service {
    /// Whether the sorry server is standing in (no real server available).
    pub fn sorry_in_service(&self) -> bool {
        self.conf
            .sorry_addr()
            .is_some_and(|(ip, port)| self.dests.iter().any(|d| d.ip == ip && d.port == port))
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("key", &self.conf.key())
            .field("sched", &self.sched.name())
            .field("dests", &self.dests.len())
            .finish()
    }
}

/// An append-only map from dense `u32` ids to `Arc<T>` whose reads take no
/// lock: chunks of slots that are each set once ([`OnceLock`]). The
/// connection table stores ids (4 bytes) instead of pointers, and workers
/// resolve them here without touching a reference count.
pub struct IdVec<T> {
    chunks: Box<[OnceLock<IdChunk<T>>]>,
    next: parking_lot::Mutex<u32>,
}

type IdChunk<T> = Box<[OnceLock<Arc<T>>]>;

const ID_CHUNK: usize = 1024;
/// At most this many distinct services, and as many real servers, can be
/// configured over a daemon's life.
pub const MAX_IDS: usize = 1 << 20;

impl<T> Default for IdVec<T> {
    fn default() -> Self {
        IdVec {
            chunks: (0..MAX_IDS / ID_CHUNK).map(|_| OnceLock::new()).collect(),
            next: parking_lot::Mutex::new(0),
        }
    }
}

impl<T> IdVec<T> {
    #[inline]
    pub fn get(&self, id: u32) -> Option<&Arc<T>> {
        let id = id as usize;
        self.chunks.get(id / ID_CHUNK)?.get()?[id % ID_CHUNK].get()
    }
    /// Append `make(id)`; None once [`MAX_IDS`] are used.
    pub fn push(&self, make: impl FnOnce(u32) -> T) -> Option<Arc<T>> {
        let mut next = self.next.lock();
        let id = *next as usize;
        let chunk = self.chunks.get(id / ID_CHUNK)?;
        let slots = chunk.get_or_init(|| (0..ID_CHUNK).map(|_| OnceLock::new()).collect());
        let v = Arc::new(make(id as u32));
        let _ = slots[id % ID_CHUNK].set(v.clone());
        *next += 1;
        Some(v)
    }
    pub fn len(&self) -> usize {
        *self.next.lock() as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> fmt::Debug for IdVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdVec").field("len", &self.len()).finish()
    }
}

/// Every service and real server the daemon has known, by id. A key seen
/// again (a real server deleted and added back) gets its old state back,
/// as the kernel takes a deleted destination back from its trash: live
/// connections still count in ActiveConn/InActConn, traffic starts at zero.
/// So the ids in use are bounded by the distinct keys ever configured.
#[derive(Debug, Default)]
pub struct Ids {
    pub dests: IdVec<DestState>,
    pub services: IdVec<ServiceState>,
    by_key: parking_lot::Mutex<(HashMap<ServiceKey, u32>, HashMap<DestKey, u32>)>,
}

impl Ids {
    fn service(&self, key: ServiceKey) -> Option<(Arc<ServiceState>, bool)> {
        let mut m = self.by_key.lock();
        if let Some(&id) = m.0.get(&key) {
            return Some((self.services.get(id)?.clone(), false));
        }
        let s = self.services.push(|id| ServiceState {
            id,
            ..Default::default()
        })?;
        m.0.insert(key, s.id);
        Some((s, true))
    }
    fn dest(&self, key: DestKey) -> Option<(Arc<DestState>, bool)> {
        let mut m = self.by_key.lock();
        if let Some(&id) = m.1.get(&key) {
            return Some((self.dests.get(id)?.clone(), false));
        }
        let d = self.dests.push(|id| DestState {
            id,
            ..Default::default()
        })?;
        m.1.insert(key, d.id);
        Some((d, true))
    }
}

/// Counter state kept by the control plane across snapshot rebuilds: the
/// configured services and real servers, out of [`Ids`], and each
/// service's scheduler instance.
#[derive(Default, Debug)]
pub struct StateRegistry {
    ids: Arc<Ids>,
    services: HashMap<ServiceKey, Arc<ServiceState>>,
    dests: HashMap<(ServiceKey, IpAddr, u16), Arc<DestState>>,
    scheds: HashMap<ServiceKey, SchedEntry>,
}

/// A service's scheduler as the kernel keeps it in `svc->scheduler` and
/// `svc->sched_data`: created when the service is (or when `-E -s` changes
/// the scheduler), told about every change of the server list through its
/// hooks, dropped with the service.
struct SchedEntry {
    name: String,
    flags: sched::SchedFlags,
    inst: Arc<dyn Scheduler>,
    /// The list the instance was last told about.
    dests: Vec<Dest>,
}

impl fmt::Debug for SchedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedEntry")
            .field("name", &self.name)
            .field("dests", &self.dests.len())
            .finish()
    }
}

/// What the kernel's `__ip_vs_update_dest` changes on `-e` (each edit calls
/// the `upd_dest` hook).
fn dest_edited(a: &Dest, b: &Dest) -> bool {
    (a.weight, a.fwd, a.u_threshold, a.l_threshold)
        != (b.weight, b.fwd, b.u_threshold, b.l_threshold)
}

impl SchedEntry {
    /// The kernel's `ip_vs_bind_scheduler` for a new service: `init_service`
    /// on an empty list, then one `add_dest` per server in the order they
    /// joined (the `-A` then `-a` ... of ipvsadm -R and keepalived).
    fn create(name: &str, flags: sched::SchedFlags, dests: &[Dest]) -> Result<SchedEntry, String> {
        let inst: Arc<dyn Scheduler> = sched::build(name, &[], flags)
            .map_err(|e| e.to_string())?
            .into();
        for k in 0..dests.len() {
            inst.add_dest(&dests[..=k], k);
        }
        Ok(SchedEntry {
            name: name.to_string(),
            flags,
            inst,
            dests: dests.to_vec(),
        })
    }

    /// Bring the instance from its last list to `new` through the hooks, one
    /// kernel operation at a time: deletions (`-d`, a health check's
    /// removal), then edits (`-e`, a quiesce), then additions (`-a`, which
    /// `new` has last: see [`order_like`]).
    fn update(&mut self, new: &[Dest]) {
        let same = self.dests.len() == new.len()
            && self
                .dests
                .iter()
                .zip(new)
                .all(|(a, b)| a.state.id == b.state.id && !dest_edited(a, b));
        if same {
            // Nothing this service's scheduler sees changed (the common
            // case: another service was edited).
            self.dests = new.to_vec();
            return;
        }
        let in_new: HashMap<u32, &Dest> = new.iter().map(|d| (d.state.id, d)).collect();
        let mut cur = std::mem::take(&mut self.dests);
        let mut i = 0;
        while i < cur.len() {
            if in_new.contains_key(&cur[i].state.id) {
                i += 1;
                continue;
            }
            let before = cur.clone();
            cur.remove(i);
            self.inst.del_dest(&before, i, &cur);
        }
        for i in 0..cur.len() {
            let d = in_new[&cur[i].state.id];
            if dest_edited(&cur[i], d) {
                cur[i] = d.clone();
                self.inst.upd_dest(&cur, i);
            }
        }
        let in_cur: HashSet<u32> = cur.iter().map(|d| d.state.id).collect();
        for d in new {
            if !in_cur.contains(&d.state.id) {
                cur.push(d.clone());
                self.inst.add_dest(&cur, cur.len() - 1);
            }
        }
        debug_assert!(cur
            .iter()
            .map(|d| d.state.id)
            .eq(new.iter().map(|d| d.state.id)));
        self.dests = new.to_vec();
    }
}

/// `dests` in the order the kernel's list would have them: servers already
/// in `prev` keep their relative order, servers new to the list follow (in
/// configuration order), as `-a` puts them at the head of the kernel's list.
/// A server that a health check removed and restored therefore comes back
/// as the newest, as keepalived's `-d` then `-a` does on a kernel director.
fn order_like(prev: &[Dest], mut dests: Vec<Dest>) -> Vec<Dest> {
    if prev.len() == dests.len()
        && prev
            .iter()
            .zip(&dests)
            .all(|(p, d)| p.state.id == d.state.id)
    {
        return dests;
    }
    let rank: HashMap<u32, usize> = prev
        .iter()
        .enumerate()
        .map(|(i, p)| (p.state.id, i))
        .collect();
    dests.sort_by_key(|d| rank.get(&d.state.id).copied().unwrap_or(usize::MAX));
    dests
}

impl StateRegistry {
    /// A registry handing out ids from `ids` (the connection table's).
    pub fn new(ids: Arc<Ids>) -> Self {
        StateRegistry {
            ids,
            ..Default::default()
        }
    }
    fn service(&mut self, key: ServiceKey) -> Result<Arc<ServiceState>, String> {
        if let Some(s) = self.services.get(&key) {
            return Ok(s.clone());
        }
        let (s, fresh) = self
            .ids
            .service(key)
            .ok_or_else(|| format!("more than {MAX_IDS} distinct services since start"))?;
        if !fresh {
            s.est.zero_with(&s.traffic);
        }
        self.services.insert(key, s.clone());
        Ok(s)
    }
    fn dest(
        &mut self,
        key: ServiceKey,
        ip: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<Arc<DestState>, String> {
        let s = match self.dests.get(&(key, ip, port)) {
            Some(s) => s.clone(),
            None => {
                let (s, fresh) = self.ids.dest((key, ip, port)).ok_or_else(|| {
                    format!("more than {MAX_IDS} distinct real servers since start")
                })?;
                if !fresh {
                    // Back from the trash: a new server as far as traffic
                    // and weight go (connections it still has keep counting).
                    s.est.zero_with(&s.traffic);
                    s.last_weight.store(0, Relaxed);
                }
                self.dests.insert((key, ip, port), s.clone());
                s
            }
        };
        // __ip_vs_update_dest: `if (add || udest->weight != 0) last_weight = weight`
        // (a new entry starts at 0, so storing on add is the same as skipping 0).
        if weight != 0 {
            s.last_weight.store(weight, Relaxed);
        }
        Ok(s)
    }
    /// Forget state of services and dests no longer configured (connections
    /// still holding them keep their own `Arc`).
    fn retain(&mut self, confs: &[ServiceConf]) {
        let svc: HashSet<ServiceKey> = confs.iter().map(ServiceConf::key).collect();
        let dst: HashSet<DestKey> = confs
            .iter()
            .flat_map(|s| {
                s.dests
                    .iter()
                    .map(move |d| (s.key(), d.ip, d.port))
                    .chain(s.sorry_addr().map(|(ip, port)| (s.key(), ip, port)))
            })
            .collect();
        self.services.retain(|k, _| svc.contains(k));
        self.dests.retain(|k, _| dst.contains(k));
        // ip_vs_unbind_scheduler (done_service) with the service.
        self.scheds.retain(|k, _| svc.contains(k));
    }

    /// The scheduler of service `key` for the list `dests`: the instance
    /// the service already has, told about the changes, or a new one when
    /// the service is new or its scheduler changed (`-E -s`, which the
    /// kernel handles with `init_service` on the current list).
    fn scheduler(
        &mut self,
        key: ServiceKey,
        name: &str,
        flags: sched::SchedFlags,
        dests: &[Dest],
    ) -> Result<Arc<dyn Scheduler>, String> {
        match self.scheds.get_mut(&key) {
            Some(e) if e.name == name => {
                if e.flags != flags {
                    e.inst.set_flags(flags);
                    e.flags = flags;
                }
                e.update(dests);
                Ok(e.inst.clone())
            }
            Some(e) => {
                let inst: Arc<dyn Scheduler> = sched::build(name, dests, flags)
                    .map_err(|er| er.to_string())?
                    .into();
                *e = SchedEntry {
                    name: name.to_string(),
                    flags,
                    inst: inst.clone(),
                    dests: dests.to_vec(),
                };
                Ok(inst)
            }
            None => {
                let e = SchedEntry::create(name, flags, dests)?;
                let inst = e.inst.clone();
                self.scheds.insert(key, e);
                Ok(inst)
            }
        }
    }

    /// The order of the list service `key`'s scheduler last saw.
    fn sched_dests(&self, key: &ServiceKey) -> &[Dest] {
        self.scheds.get(key).map_or(&[], |e| &e.dests)
    }
    /// The live state of a configured real server (or sorry server), if any.
    pub fn dest_state(&self, key: &DestKey) -> Option<Arc<DestState>> {
        self.dests.get(key).cloned()
    }
    /// The live state of a configured service, if any.
    pub fn service_state(&self, key: &ServiceKey) -> Option<Arc<ServiceState>> {
        self.services.get(key).cloned()
    }
    /// Zero the traffic counters (ipvsadm -Z), of one service or all.
    pub fn zero(&self, only: Option<ServiceKey>) {
        for (k, s) in &self.services {
            if only.is_none_or(|o| o == *k) {
                s.est.zero_with(&s.traffic);
            }
        }
        for ((k, _, _), d) in &self.dests {
            if only.is_none_or(|o| o == *k) {
                d.est.zero_with(&d.traffic);
            }
        }
    }
}

/// The immutable service table workers read.
#[derive(Debug, Default)]
pub struct ServiceTable {
    // Looked up for every packet: foldhash rather than SipHash (keys are
    // the operator's, not the attacker's).
    services: HashMap<ServiceKey, Service, foldhash::fast::FixedState>,
    vips: HashSet<IpAddr, foldhash::fast::FixedState>,
    /// FULLNAT local addresses of every service.
    lips: HashSet<IpAddr, foldhash::fast::FixedState>,
    /// The fwmark classifier (see [`crate::fwmark`]); empty: no marks.
    fwmark: crate::fwmark::Classifier,
    /// Services in the order they were added (ipvsadm lists in its own hash
    /// order; we list in configuration order, which is stable).
    order: Vec<ServiceKey>,
}

impl ServiceTable {
    /// Build a snapshot from validated configuration. Schedulers are built
    /// here, on the control thread, so workers never do heavy set-up.
    pub fn build(confs: &[ServiceConf], reg: &mut StateRegistry) -> Result<ServiceTable, String> {
        Self::build_with_health(confs, reg, &HashSet::new())
    }

    /// [`ServiceTable::build`] with health state applied: a real server in
    /// `down` that has a health check is left out (`on_failure: remove`) or
    /// given weight 0 (`quiesce`); a service with no real server of positive
    /// weight gets its sorry server (weight 1) as an extra, last real server.
    /// The configuration itself (`confs`, what `list`/`-S` show) is untouched.
    ///
    /// Each service keeps its scheduler instance: only a service whose
    /// server list changed has its scheduler told (through the kernel's
    /// hooks), and that happens only once the whole table has built, so a
    /// refused change leaves every scheduler as it was.
    pub fn build_with_health(
        confs: &[ServiceConf],
        reg: &mut StateRegistry,
        down: &HashSet<DestKey>,
    ) -> Result<ServiceTable, String> {
        Self::build_with_health_weights(confs, reg, down, &HashMap::new())
    }

    /// [`ServiceTable::build_with_health`] with the weights health checks
    /// set (keepalived `misc_dynamic`) in place of the configured ones.
    pub fn build_with_health_weights(
        confs: &[ServiceConf],
        reg: &mut StateRegistry,
        down: &HashSet<DestKey>,
        weights: &HashMap<DestKey, u32>,
    ) -> Result<ServiceTable, String> {
        let mut t = ServiceTable::default();
        let mut built = Vec::with_capacity(confs.len());
        for c in confs {
            let key = c.key();
            let mut dests: Vec<Dest> = Vec::with_capacity(c.dests.len() + 1);
            for d in &c.dests {
                let port = if d.port == 0 { c.port } else { d.port };
                let mut weight = weights.get(&(key, d.ip, port)).copied().unwrap_or(d.weight);
                if down.contains(&(key, d.ip, port)) {
                    match c.check_for(d).map(|h| h.on_failure) {
                        Some(OnFailure::Remove) => continue,
                        Some(OnFailure::Quiesce) => weight = 0,
                        None => {}
                    }
                }
                let state = reg.dest(key, d.ip, port, weight)?;
                state.set_thresholds(d.u_threshold, d.l_threshold);
                state.set_tunnel(d.tunnel());
                dests.push(Dest {
                    ip: d.ip,
                    port,
                    weight,
                    fwd: d.fwd,
                    u_threshold: d.u_threshold,
                    l_threshold: d.l_threshold,
                    state,
                });
            }
            if let (Some(sorry), Some((ip, port))) = (&c.sorry_server, c.sorry_addr()) {
                if !dests.iter().any(|d| d.weight > 0) {
                    let state = reg.dest(key, ip, port, 1)?;
                    state.set_thresholds(0, 0);
                    state.set_tunnel(Tunnel::default());
                    dests.push(Dest {
                        ip,
                        port,
                        weight: 1,
                        fwd: sorry.fwd,
                        u_threshold: 0,
                        l_threshold: 0,
                        state,
                    });
                }
            }
            let flags = sched::SchedFlags::parse(&c.sched, &c.sched_flags)?;
            if !sched::is_known(&c.sched) {
                return Err(sched::build(&c.sched, &[], flags)
                    .err()
                    .map_or_else(String::new, |e| e.to_string()));
            }
            let dests = order_like(reg.sched_dests(&key), dests);
            let state = reg.service(key)?;
            built.push((c, dests, flags, state));
        }
        for (c, dests, flags, state) in built {
            let key = c.key();
            let sched = reg.scheduler(key, &c.sched, flags, &dests)?;
            if !c.is_fwmark() {
                t.vips.insert(c.vip);
            }
            t.lips.extend(c.laddrs.iter().copied());
            t.order.push(key);
            t.services.insert(
                key,
                Service {
                    conf: c.clone(),
                    dests,
                    sched,
                    state,
                },
            );
        }
        reg.retain(confs);
        Ok(t)
    }

    #[inline]
    pub fn get(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }
    /// Attach the fwmark classifier. The single addresses of its rules
    /// (/32) whose mark has an IPv4 fwmark service become VIPs: the
    /// director answers ARP and pings for them. Wider prefixes must be
    /// routed to the director (it answers no ARP for a whole range).
    pub fn set_fwmark(&mut self, c: crate::fwmark::Classifier) {
        for (ip, mark) in c.hosts() {
            if self.services.contains_key(&ServiceKey::fwmark(mark, false)) {
                self.vips.insert(IpAddr::V4(ip));
            }
        }
        self.fwmark = c;
    }
    /// The fwmark classifier of this snapshot.
    #[inline]
    pub fn fwmark_rules(&self) -> &crate::fwmark::Classifier {
        &self.fwmark
    }
    /// The service a new IPv4 flow to `dst:dport` belongs to, as the
    /// kernel's `ip_vs_service_find`: the fwmark service of the packet's
    /// mark (from the classifier) first, then, if `dst` is a VIP, the
    /// `<proto, vip, port>` service and the port-zero one ([`Self::find`]).
    /// A mark without a fwmark service falls through, as in the kernel.
    #[inline]
    pub fn find_new(&self, proto: Proto, dst: Ipv4Addr, dport: u16, vip: bool) -> Option<&Service> {
        if !self.fwmark.is_empty() {
            let mark = self.fwmark.classify(proto, dst, dport);
            if mark != 0 {
                if let Some(s) = self.services.get(&ServiceKey::fwmark(mark, false)) {
                    return Some(s);
                }
            }
        }
        if vip {
            self.find(proto, IpAddr::V4(dst), dport)
        } else {
            None
        }
    }
    #[inline]
    pub fn is_vip(&self, ip: IpAddr) -> bool {
        self.vips.contains(&ip)
    }
    /// A FULLNAT local address (the director answers ARP for it).
    #[inline]
    pub fn is_lip(&self, ip: IpAddr) -> bool {
        self.lips.contains(&ip)
    }
    /// Services in configuration order.
    /// The service a packet to vip:port belongs to: the exact one, else a
    /// persistent port-zero service on that address (all ports).
    #[inline]
    pub fn find(&self, proto: Proto, vip: IpAddr, port: u16) -> Option<&Service> {
        self.services
            .get(&ServiceKey::new(proto, vip, port))
            .or_else(|| {
                self.services
                    .get(&ServiceKey::new(proto, vip, 0))
                    .filter(|s| s.conf.persistent.is_some())
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.order.iter().filter_map(|k| self.services.get(k))
    }
    pub fn len(&self) -> usize {
        self.services.len()
    }
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_weight_keeps_the_latest_non_zero_weight() {
        let conf = |w: u32| {
            vec![ServiceConf {
                proto: Proto::Tcp,
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                fwmark: 0,
                sched: "mh".into(),
                persistent: None,
                netmask: default_netmask(),
                sched_flags: vec![],
                laddrs: vec![],
                client_addr: ClientAddr::None,
                synproxy: false,
                ops: false,
                health: None,
                sorry_server: None,
                dests: vec![DestConf {
                    ip: "10.0.1.1".parse().unwrap(),
                    port: 80,
                    weight: w,
                    fwd: Forward::Nat,
                    u_threshold: 0,
                    l_threshold: 0,
                    health: None,
                    tun_type: None,
                    tun_port: None,
                    tun_csum: None,
                }],
            }]
        };
        let mut reg = StateRegistry::default();
        let lw = |t: &ServiceTable| {
            t.iter().next().unwrap().dests[0]
                .state
                .last_weight
                .load(Relaxed)
        };
        assert_eq!(lw(&ServiceTable::build(&conf(0), &mut reg).unwrap()), 0);
        assert_eq!(lw(&ServiceTable::build(&conf(3), &mut reg).unwrap()), 3);
        assert_eq!(lw(&ServiceTable::build(&conf(0), &mut reg).unwrap()), 3);
        assert_eq!(lw(&ServiceTable::build(&conf(5), &mut reg).unwrap()), 5);
    }
}
