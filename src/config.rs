//! The daemon's configuration file: one flat, documented structure with
//! defaults. Everything here is read once at start; services can also be
//! changed live over the control socket.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fwmark::{Classifier, FwmarkRule};
use crate::service::ServiceConf;

/// An IPv4 address with its prefix length, written "10.0.0.1/24".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn netmask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }
    /// Whether `ip` is on this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.netmask() == 0
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.netmask())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if prefix > 32 {
            return Err(format!("{s:?}: prefix length over 32"));
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv6 address with its prefix length, written "2001:db8::1/64".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Ipv6Cidr {
    /// Whether `ip` is on this prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        (u128::from(ip) ^ u128::from(self.addr)) & mask == 0
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| format!("{s:?}: bad IPv6 address"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if prefix > 128 {
            return Err(format!("{s:?}: prefix length over 128"));
        }
        // The director's own unicast address: an NS for it is answered and
        // echo requests to it are, so nothing that is not one host's.
        if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
            return Err(format!("{s:?}: not a unicast address"));
        }
        if addr.segments()[0] & 0xffc0 == 0xfe80 {
            return Err(format!(
                "{s:?}: link-local; every port has one already (fe80:: and its MAC, EUI-64)"
            ));
        }
        if addr.to_ipv4_mapped().is_some() {
            return Err(format!("{s:?}: an IPv4-mapped address"));
        }
        Ok(Ipv6Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv6Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv6Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One data port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConf {
    /// DPDK device name: a vdev ("net_af_packet0") or PCI address.
    pub device: String,
    /// The director's address on this port.
    pub ipv4: Ipv4Cidr,
    /// The director's IPv6 address on this port. It answers Neighbor
    /// Solicitations and echo requests for it and for the port's
    /// link-local address (fe80:: with the MAC as EUI-64); IPv6 real
    /// servers and clients on its prefix are reached directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Cidr>,
    /// IPv6 next hop for destinations on no port's prefix: on this port's
    /// prefix or link-local. At most one port may have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
    /// Next hop for destinations not on any port's subnet. At most one port
    /// may have one (it is the default route).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// A kernel interface twinned with this port (the exception path):
    /// frames rvs does not own go to it, what the kernel sends on it goes
    /// out of the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_twin: Option<TwinConf>,
}

/// The kind of kernel twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwinKind {
    /// DPDK's `net_tap`: a kernel TAP interface.
    Tap,
    /// DPDK's `virtio_user` over `/dev/vhost-net` (KNI's documented
    /// replacement). Needs the vhost-net module.
    VirtioUser,
}

fn d_twin_rate() -> u32 {
    100_000
}
fn d_twin_burst() -> u32 {
    1024
}

/// `"kernel_twin": {"kind": "tap", "name": "rvs0"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinConf {
    pub kind: TwinKind,
    /// The kernel interface name (at most 15 bytes).
    pub name: String,
    /// Frames per second each worker may hand to the kernel (a token
    /// bucket); more are dropped and counted `exception_rate`.
    #[serde(default = "d_twin_rate")]
    pub rate_pps: u32,
    /// The token bucket's depth.
    #[serde(default = "d_twin_burst")]
    pub burst: u32,
}

/// Who decides whether this director answers for a VIP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VipOwnership {
    /// Every configured VIP, always (a single director).
    #[default]
    Always,
    /// A VIP only while the address is configured on a kernel twin (as
    /// keepalived's VRRP adds it on MASTER and removes it otherwise).
    Kernel,
}

/// Connection timeouts in seconds; 0 or absent keeps the current value.
/// `tcp`, `tcpfin` and `udp` are `ipvsadm --set tcp tcpfin udp` (ESTABLISHED,
/// FIN_WAIT, UDP); the others set the remaining TCP states, which kernel
/// IPVS does not expose through ipvsadm (useful for short-lived tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutConf {
    #[serde(default)]
    pub tcp: u32,
    #[serde(default)]
    pub tcpfin: u32,
    #[serde(default)]
    pub udp: u32,
    #[serde(default)]
    pub syn_recv: u32,
    #[serde(default)]
    pub time_wait: u32,
    #[serde(default)]
    pub close: u32,
    #[serde(default)]
    pub close_wait: u32,
    #[serde(default)]
    pub last_ack: u32,
}

fn d_workers() -> Vec<usize> {
    vec![1]
}
fn d_desc() -> u16 {
    1024
}
fn d_mbufs() -> u32 {
    16383
}
fn d_max_conns() -> usize {
    1 << 20
}
fn d_ctl_idle() -> u64 {
    30_000
}

/// `rvsd --config FILE.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Passed to `rte_eal_init` verbatim (vdevs, memory, main lcore).
    pub eal_args: Vec<String>,
    pub ports: Vec<PortConf>,
    /// CPU cores of the polling workers, one worker per core. Worker i uses
    /// RX/TX queue i on every port.
    #[serde(default = "d_workers")]
    pub workers: Vec<usize>,
    /// Sleep this long after a loop that received nothing (0 = pure busy
    /// polling, the right choice on a dedicated host; tests and containers
    /// sharing cores set it to give the CPU back).
    #[serde(default)]
    pub idle_sleep_us: u32,
    #[serde(default = "d_desc")]
    pub rx_descriptors: u16,
    #[serde(default = "d_desc")]
    pub tx_descriptors: u16,
    /// Mbufs in the packet pool (a power of two minus one is most efficient).
    #[serde(default = "d_mbufs")]
    pub mbufs: u32,
    /// Connection table capacity; new flows beyond it are dropped and counted.
    #[serde(default = "d_max_conns")]
    pub max_connections: usize,
    /// Keep the connection table in this file (on tmpfs or hugetlbfs), so
    /// that a restarted, upgraded or crashed rvsd takes its connections
    /// over (`conn::persist`). None: the table lives and dies with rvsd.
    #[serde(default)]
    pub conn_table_file: Option<std::path::PathBuf>,
    /// The table file also holds IPv6 connections' addresses (one more
    /// 64-byte line per slot: the file is twice the size), so IPv6
    /// connections are carried across a restart too. Off: they are not.
    #[serde(default)]
    pub conn_table_ipv6: bool,
    #[serde(default)]
    pub timeouts: Option<TimeoutConf>,
    /// Allow `dpdk-dumpcap` to capture the ports. DPDK's multi-process
    /// support, which it needs, excludes registering the worker threads as
    /// lcores (`rte_thread_register` disables it), so with this on workers
    /// run without an lcore id and hence without a per-lcore mempool cache
    /// (slower). Needs hugepages, a `--file-prefix` and no `--in-memory`.
    #[serde(default)]
    pub live_capture: bool,
    /// Prometheus endpoint, "ADDRESS:PORT" (`GET /metrics`); none if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Group given access to the control socket: a name from /etc/group or
    /// a numeric gid. The socket is then mode 0660 with that group; without
    /// it, mode 0600 (the daemon's user, root, only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_group: Option<String>,
    /// A control client has this long to send each complete request and to
    /// read each answer; then it is disconnected (answered `timeout`).
    #[serde(default = "d_ctl_idle")]
    pub control_idle_timeout_ms: u64,
    /// Services to load at start (same format as the control socket's).
    #[serde(default)]
    pub services: Vec<ServiceConf>,
    /// The fwmark classifier's rules (first match wins), as the control
    /// socket's `set_fwmark_rules` takes them: `{"mark": 1, "dst":
    /// "10.0.0.100/32", "proto": "tcp", "ports": "80,443"}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fwmark_rules: Vec<FwmarkRule>,
    /// `"always"` (default) or `"kernel"`: see [`VipOwnership`].
    #[serde(default)]
    pub vip_ownership: VipOwnership,
    /// A TCP packet other than a SYN (and not a RST) that has no
    /// connection opens one, as the kernel's `net.ipv4.vs.sloppy_tcp`
    /// allows — but only in services whose scheduler gives every director
    /// the same answer (`mh`, `sh`), not SYN-proxied, to a real server that
    /// is not FULLNAT: directors behind ECMP then carry on each other's
    /// flows when the router moves them. Off by default (as the kernel).
    #[serde(default)]
    pub sloppy_tcp: bool,
    /// The SYN proxy's cookie secret, 32 hex digits; the same on every
    /// director behind ECMP, so any of them accepts the others' cookies.
    /// None: a random one per start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synproxy_secret: Option<String>,
    /// Route announcements for BGP/ECMP (a fleet of directors): see
    /// [`crate::announce`]. None: nothing is announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<crate::announce::AnnounceConf>,
}

impl DaemonConfig {
    /// The director's own addresses, every port's IPv4 and IPv6 one: no
    /// fwmark rule, local address or forwarded real server may be one.
    pub fn own_addrs(&self) -> Vec<std::net::IpAddr> {
        self.ports
            .iter()
            .flat_map(|p| {
                std::iter::once(std::net::IpAddr::V4(p.ipv4.addr))
                    .chain(p.ipv6.map(|c| std::net::IpAddr::V6(c.addr)))
            })
            .collect()
    }
    pub fn from_json(text: &str) -> Result<DaemonConfig, String> {
        let c: DaemonConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// Everything that can be checked before touching DPDK, all problems
    /// listed at once.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.ports.is_empty() {
            errs.push("ports: at least one port is required".to_string());
        }
        if let Some(Err(e)) = self
            .synproxy_secret
            .as_deref()
            .map(crate::synproxy::SynKey::from_hex)
        {
            errs.push(e);
        }
        if self.conn_table_ipv6 && self.conn_table_file.is_none() {
            errs.push(
                "conn_table_ipv6 needs conn_table_file (it puts IPv6 connections' addresses \
                 in that file)"
                    .to_string(),
            );
        }
        for (i, p) in self.ports.iter().enumerate() {
            if self.ports[..i].iter().any(|q| q.device == p.device) {
                errs.push(format!("ports[{i}]: device {:?} listed twice", p.device));
            }
            if let Some(a) = p.ipv6 {
                if self.ports[..i]
                    .iter()
                    .any(|q| q.ipv6.is_some_and(|b| b.addr == a.addr))
                {
                    errs.push(format!("ports[{i}]: ipv6 {} on two ports", a.addr));
                }
            }
            if let Some(t) = &p.kernel_twin {
                if t.name.is_empty()
                    || t.name.len() > 15
                    || t.name.contains(['/', ' ', ',', '=', ':'])
                {
                    errs.push(format!(
                        "ports[{i}]: kernel_twin name {:?} is not an interface name",
                        t.name
                    ));
                }
                if self.ports[..i]
                    .iter()
                    .any(|q| q.kernel_twin.as_ref().is_some_and(|u| u.name == t.name))
                {
                    errs.push(format!("ports[{i}]: kernel_twin {:?} listed twice", t.name));
                }
                if t.rate_pps == 0 || t.burst == 0 {
                    errs.push(format!(
                        "ports[{i}]: kernel_twin rate_pps and burst must be positive"
                    ));
                }
            }
            if let Some(gw) = p.gateway {
                if !p.ipv4.contains(gw) {
                    errs.push(format!("ports[{i}]: gateway {gw} is not on {}", p.ipv4));
                }
            }
        }
        if self.ports.iter().filter(|p| p.gateway.is_some()).count() > 1 {
            errs.push("ports: at most one port may have a gateway (the default route)".into());
        }
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(gw) = p.gateway6 {
                let link_local = gw.segments()[0] & 0xffc0 == 0xfe80;
                if !link_local && !p.ipv6.is_some_and(|c| c.contains(gw) && c.addr != gw) {
                    errs.push(format!(
                        "ports[{i}]: gateway6 {gw} is neither link-local nor on the port's ipv6 prefix"
                    ));
                }
            }
        }
        if self.ports.iter().filter(|p| p.gateway6.is_some()).count() > 1 {
            errs.push(
                "ports: at most one port may have a gateway6 (the IPv6 default route)".into(),
            );
        }
        if self.workers.is_empty() {
            errs.push("workers: at least one worker core is required".into());
        }
        for (i, w) in self.workers.iter().enumerate() {
            if self.workers[..i].contains(w) {
                errs.push(format!("workers: core {w} listed twice"));
            }
        }
        if self.max_connections == 0 {
            errs.push("max_connections: must be at least 1".into());
        }
        if self.rx_descriptors == 0 || self.tx_descriptors == 0 {
            errs.push("rx_descriptors/tx_descriptors: must be positive".into());
        }
        if self.mbufs < 1024 {
            errs.push("mbufs: at least 1024".into());
        }
        if let Some(g) = &self.control_group {
            if g.is_empty() || g.contains([':', '\n']) {
                errs.push(format!("control_group: {g:?} is not a group name or id"));
            }
        }
        if !(100..=86_400_000).contains(&self.control_idle_timeout_ms) {
            errs.push("control_idle_timeout_ms: 100 ms to 1 day".into());
        }
        if self.vip_ownership == VipOwnership::Kernel
            && !self.ports.iter().any(|p| p.kernel_twin.is_some())
        {
            errs.push("vip_ownership \"kernel\": needs a port with a kernel_twin".into());
        }
        if let Some(a) = &self.announce {
            let twins: Vec<&str> = self
                .ports
                .iter()
                .filter_map(|p| p.kernel_twin.as_ref().map(|t| t.name.as_str()))
                .collect();
            errs.extend(a.check(&twins));
        }
        if let Err(e) = Classifier::build(&self.fwmark_rules) {
            errs.extend(e.iter().map(ToString::to_string));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_matches() {
        let c: Ipv4Cidr = "10.0.1.1/24".parse().unwrap();
        assert!(c.contains("10.0.1.200".parse().unwrap()));
        assert!(!c.contains("10.0.2.1".parse().unwrap()));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert!("10.0.1.1".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.1.1/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.1/8".parse::<Ipv4Cidr>().is_err());
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn ipv6_port_addresses() {
        let c: Ipv6Cidr = "2001:db8::1/64".parse().unwrap();
        assert_eq!((c.addr, c.prefix), ("2001:db8::1".parse().unwrap(), 64));
        assert_eq!(c.to_string(), "2001:db8::1/64");
        for bad in [
            "2001:db8::1",
            "2001:db8::1/129",
            "10.0.0.1/24",
            "::/0",
            "::1/128",
            "ff02::1/128",
            "fe80::1/64",
            "::ffff:10.0.0.1/128",
        ] {
            assert!(bad.parse::<Ipv6Cidr>().is_err(), "{bad}");
        }
        let port =
            |d: &str, a: &str| format!(r#"{{"device":"{d}","ipv4":"10.0.0.1/24","ipv6":"{a}"}}"#);
        let c = DaemonConfig::from_json(&format!(
            r#"{{"eal_args":[],"ports":[{}]}}"#,
            port("net_null0", "2001:db8::1/64")
        ))
        .unwrap();
        assert_eq!(c.ports[0].ipv6, Some("2001:db8::1/64".parse().unwrap()));
        let e = DaemonConfig::from_json(&format!(
            r#"{{"eal_args":[],"ports":[{},{}]}}"#,
            port("net_null0", "2001:db8::1/64"),
            port("net_null1", "2001:db8::1/64")
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("ipv6 2001:db8::1 on two ports"),
            "{e}"
        );
        let e = DaemonConfig::from_json(&format!(
            r#"{{"eal_args":[],"ports":[{}]}}"#,
            port("net_null0", "fe80::1/64")
        ))
        .unwrap_err();
        assert!(e.to_string().contains("link-local"), "{e}");
    }

    #[test]
    fn fwmark_rules_in_the_config_file() {
        let base = r#""eal_args":[],"ports":[{"device":"net_null0","ipv4":"10.0.0.1/24"}]"#;
        let c = DaemonConfig::from_json(&format!(
            r#"{{{base},"fwmark_rules":[{{"mark":1,"dst":"10.0.0.100/32","proto":"tcp","ports":"80,443"}}],
                "services":[{{"fwmark":1,"sched":"rr","persistent":300}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.fwmark_rules.len(), 1);
        assert_eq!(c.services[0].fwmark, 1);
        let e = DaemonConfig::from_json(&format!(
            r#"{{{base},"fwmark_rules":[{{"mark":1,"dst":"10.0.0.100/24"}},{{"mark":0,"dst":"10.0.0.7"}}]}}"#
        ))
        .unwrap_err();
        assert!(
            e.contains("fwmark_rules[0]: dst") && e.contains("host bits set"),
            "{e}"
        );
        assert!(e.contains("fwmark_rules[1]: mark"), "{e}");
    }

    #[test]
    fn scale_out_settings_default_off_and_a_bad_secret_is_refused() {
        let base = r#""eal_args":[],"ports":[{"device":"net_null0","ipv4":"10.0.0.1/24"}]"#;
        let c = DaemonConfig::from_json(&format!("{{{base}}}")).unwrap();
        assert!(!c.sloppy_tcp && c.synproxy_secret.is_none());
        let c = DaemonConfig::from_json(&format!(
            r#"{{{base},"sloppy_tcp":true,"synproxy_secret":"00112233445566778899aabbccddeeff"}}"#
        ))
        .unwrap();
        assert!(c.sloppy_tcp);
        let e = DaemonConfig::from_json(&format!(r#"{{{base},"synproxy_secret":"0011"}}"#))
            .unwrap_err();
        assert!(e.contains("synproxy_secret: 32 hex digits"), "{e}");
    }

    #[test]
    fn config_defaults_and_errors_listed_together() {
        let c = DaemonConfig::from_json(
            r#"{"eal_args":["--no-pci"],"ports":[{"device":"net_null0","ipv4":"10.0.0.1/24"}]}"#,
        )
        .unwrap();
        assert_eq!(c.workers, vec![1]);
        assert_eq!(c.max_connections, 1 << 20);
        let e = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24","gateway":"10.9.9.9"},
                {"device":"a","ipv4":"10.0.1.1/24"}],"workers":[]}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("not on 10.0.0.1/24") && e.contains("listed twice") && e.contains("workers"),
            "{e}"
        );
        assert_eq!(c.metrics_listen, None);
        let m = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24"}],
                "metrics_listen":"127.0.0.1:9100"}"#,
        )
        .unwrap();
        assert_eq!(m.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let e = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24"}],
                "metrics_listen":"localhost"}"#,
        )
        .unwrap_err();
        assert!(e.contains("socket address"), "{e}");
        assert_eq!(
            (c.control_group.as_deref(), c.control_idle_timeout_ms),
            (None, 30_000)
        );
        let g = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24"}],
                "control_group":"rvsadm","control_idle_timeout_ms":500}"#,
        )
        .unwrap();
        assert_eq!(g.control_group.as_deref(), Some("rvsadm"));
        assert_eq!(g.control_idle_timeout_ms, 500);
        let e = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24"}],
                "control_group":"a:b","control_idle_timeout_ms":0}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("control_group") && e.contains("control_idle_timeout_ms"),
            "{e}"
        );
        let t = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24",
                "kernel_twin":{"kind":"tap","name":"rvs0"}}],"vip_ownership":"kernel"}"#,
        )
        .unwrap();
        let tw = t.ports[0].kernel_twin.as_ref().unwrap();
        assert_eq!((tw.kind, tw.rate_pps), (TwinKind::Tap, 100_000));
        assert_eq!(t.vip_ownership, VipOwnership::Kernel);
        assert_eq!(c.vip_ownership, VipOwnership::Always);
        let e = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24",
                "kernel_twin":{"kind":"tap","name":"a very long name!"}}],"vip_ownership":"kernel"}"#,
        )
        .unwrap_err();
        assert!(e.contains("not an interface name"), "{e}");
        let e = DaemonConfig::from_json(
            r#"{"eal_args":[],"ports":[{"device":"a","ipv4":"10.0.0.1/24"}],"vip_ownership":"kernel"}"#,
        )
        .unwrap_err();
        assert!(e.contains("needs a port with a kernel_twin"), "{e}");
        let e = DaemonConfig::from_json(r#"{"eal_args":[],"ports":[],"bogus":1}"#).unwrap_err();
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}
