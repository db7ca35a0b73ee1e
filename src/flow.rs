//! The vocabulary every layer shares: what a flow is ([`FlowKey`]), which
//! protocol it speaks ([`Proto`]), how a virtual service is named
//! ([`ServiceKey`]) and how a real server is reached ([`Forward`],
//! [`Tunnel`], [`ClientAddr`]).
//!
//! This module is a leaf: it imports nothing from the crate, so the
//! connection table, the schedulers, the service table and the data path
//! can all depend on it without depending on each other.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

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
    /// The control protocol's spelling ("tcp"/"udp").
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
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
    pub(crate) fn pack(self) -> u32 {
        (self.kind as u32) << 24 | (self.csum as u32) << 16 | self.port as u32
    }
    pub(crate) fn unpack(v: u32) -> Tunnel {
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
pub(crate) fn unspecified(inet6: bool) -> IpAddr {
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

/// A real server of a service: service key, address, real-server port.
pub type DestKey = (ServiceKey, IpAddr, u16);

/// A flow as seen on the wire: protocol and both endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Proto,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl FlowKey {
    pub fn v4(proto: Proto, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowKey {
        FlowKey {
            proto,
            src: IpAddr::V4(src),
            dst: IpAddr::V4(dst),
            sport,
            dport,
        }
    }
}
