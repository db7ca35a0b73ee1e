//! The operator's intent: services, real servers, health checks and sorry
//! servers as plain, validated data (what the JSON socket, rvsadm and the
//! keepalived import produce, and what the state file stores).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::flow::{unspecified, ClientAddr, Forward, Proto, ServiceKey, TunCsum, TunType, Tunnel};

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
pub(super) fn default_netmask() -> Ipv4Addr {
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
    /// The control protocol's name ("tcp", "http", "misc", "udp").
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Misc => "misc",
            CheckKind::Udp => "udp",
        }
    }
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
        let v6_mask = self.vip.is_ipv6() && self.netmask != Ipv4Addr::BROADCAST;
        if self.fwmark == 0 && !v6_mask {
            return ServiceConf::serialize(self, s);
        }
        let mut v = ServiceConf::serialize(self, serde_json::value::Serializer)
            .map_err(S::Error::custom)?;
        if let Some(o) = v.as_object_mut() {
            if self.fwmark != 0 {
                for k in ["proto", "vip", "port"] {
                    o.remove(k);
                }
                if self.vip.is_ipv6() {
                    o.insert("af".into(), "inet6".into());
                }
            }
            // An IPv6 service's persistence granularity is a prefix length
            // (held as the kernel holds it, a u32 in `netmask`).
            if v6_mask {
                o.insert("netmask".into(), u32::from(self.netmask).into());
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
        // `"netmask": N` is an IPv6 service's prefix length (ipvsadm's
        // `-M 64` for IPv6); 128 is the whole address. Held as the kernel
        // holds it: the number in the u32, 255.255.255.255 for 128.
        if let Some(n) = m.get("netmask").and_then(Value::as_u64) {
            let v6 = af == Some(true)
                || m.get("vip")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.parse::<std::net::Ipv6Addr>().is_ok());
            if !v6 {
                return Err(D::Error::custom(
                    "an IPv4 service's netmask is a dotted quad (255.255.255.0)",
                ));
            }
            let mask = match n {
                128 => Ipv4Addr::BROADCAST,
                1..=127 => Ipv4Addr::from(n as u32),
                _ => {
                    return Err(D::Error::custom(format!(
                        "illegal ipv6 netmask {n}: a prefix length 1..128"
                    )))
                }
            };
            m.insert("netmask".into(), mask.to_string().into());
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
