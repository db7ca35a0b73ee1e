//! Host and port names as ipvsadm 1.31 reads and prints them
//! (ipvsadm.c `parse_service`, `host_to_addr`, `service_to_port`,
//! `addr_to_host`, `port_to_service`): `inet_aton`'s address forms,
//! host names through the resolver, and every `/etc/services` name.
//!
//! Reverse lookups (listings without `-n`) use the `files` source only
//! (`/etc/hosts`, `/etc/services`); rvs has no unsafe code here to call
//! `gethostbyaddr`, so a name known only to DNS prints as its address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// glibc `inet_aton`: `a.b.c.d`, `a.b.c` (c fills 16 bits), `a.b` (b fills
/// 24 bits) and `a` (32 bits), each part decimal, octal (leading 0) or hex
/// (0x); trailing whitespace ends the address, anything else fails.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    // glibc stops at the first whitespace character.
    let s = s.split([' ', '\t', '\n']).next().unwrap_or("");
    let mut parts: Vec<u64> = Vec::new();
    for p in s.split('.') {
        if parts.len() == 4 {
            return None;
        }
        parts.push(aton_part(p)?);
    }
    let max_last = [0u64, 0xffff_ffff, 0xff_ffff, 0xffff, 0xff][parts.len()];
    let (last, head) = parts.split_last()?;
    if *last > max_last || head.iter().any(|&x| x > 0xff) {
        return None;
    }
    let mut v = *last;
    for (i, &x) in head.iter().enumerate() {
        v |= x << (24 - 8 * i);
    }
    Some(Ipv4Addr::from(v as u32))
}

fn aton_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if p.is_empty() {
        return None;
    }
    if digits.is_empty() {
        // "0x" alone is 0 in glibc.
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|&v| v <= 0xffff_ffff)
}

/// `host_to_addr`: `gethostbyname`, IPv4 only, first address.
pub fn host_to_addr(name: &str) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    (name, 0)
        .to_socket_addrs()
        .ok()?
        .find_map(|a| match a.ip() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
}

type Service = (String, u16, String, Vec<String>);

/// `/etc/services`, read once: (official name, port, protocol, aliases).
fn services() -> &'static [Service] {
    static CACHE: std::sync::OnceLock<Vec<Service>> = std::sync::OnceLock::new();
    CACHE.get_or_init(read_services)
}

fn read_services() -> Vec<Service> {
    let text = std::fs::read_to_string("/etc/services").unwrap_or_default();
    let mut v = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut w = line.split_whitespace();
        let (Some(name), Some(pp)) = (w.next(), w.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        v.push((
            name.to_string(),
            port,
            proto.to_string(),
            w.map(String::from).collect(),
        ));
    }
    v
}

/// `service_to_port`: `getservbyname(name, proto)`.
pub fn service_to_port(name: &str, proto: &str) -> Option<u16> {
    services()
        .iter()
        .find(|(n, _, p, aliases)| p == proto && (n == name || aliases.iter().any(|a| a == name)))
        .map(|(_, port, _, _)| *port)
}

/// `port_to_service`: `getservbyport(port, proto)`'s official name.
pub fn port_to_service(port: u16, proto: &str) -> Option<String> {
    services()
        .iter()
        .find(|(_, p, pr, _)| *p == port && pr == proto)
        .map(|(n, _, _, _)| n.clone())
}

/// `addr_to_host`: the first `/etc/hosts` name of `ip`.
pub fn addr_to_host(ip: IpAddr) -> Option<String> {
    static HOSTS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = HOSTS.get_or_init(|| std::fs::read_to_string("/etc/hosts").unwrap_or_default());
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut w = line.split_whitespace();
        let (Some(a), Some(name)) = (w.next(), w.next()) else {
            continue;
        };
        if a.parse::<IpAddr>().ok() == Some(ip) {
            return Some(name.to_string());
        }
    }
    None
}

/// ipvsadm's `str_is_digit`: every character an ASCII digit (true for "").
fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// `string_to_number`: strtol, whole string, within min..=max.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    // strtol accepts leading whitespace and a sign.
    let t = s.trim_start();
    let v: i64 = t.parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

/// What `parse_service` found: the address and, if given, the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// ipvsadm.c `parse_service`: `[v6]:port`, bare IPv6, `host[:port]` with
/// `inet_aton` forms or a host name, port as a number or a service name of
/// `proto` ("tcp"/"udp").
pub fn parse_service(buf: &str, proto: &str) -> Option<Parsed> {
    if str_is_digit(buf) {
        return None;
    }
    let mut b = buf;
    let mut portp: Option<&str> = None;
    if let Some(rest) = b.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        portp = Some(p.strip_prefix(':')?);
        b = a;
    }
    let addr;
    if let Ok(v6) = b.parse::<Ipv6Addr>() {
        addr = IpAddr::V6(v6);
    } else {
        let host = match b.rsplit_once(':') {
            Some((h, p)) => {
                portp = Some(p);
                h
            }
            None => b,
        };
        let v4 = inet_aton(host).or_else(|| host_to_addr(host))?;
        addr = IpAddr::V4(v4);
    }
    let port = match portp {
        None => None,
        Some(p) => Some(
            string_to_number(p, 0, 65535)
                .map(|v| v as u16)
                .or_else(|| service_to_port(p, proto))?,
        ),
    };
    Some(Parsed { addr, port })
}

/// glibc's `inet_ntop` (resolv/inet_ntop.c `inet_ntop6`), which ipvsadm
/// prints addresses with. It compresses an IPv6 address as Rust's
/// `Display` does (the first longest run of two or more zero words, lower
/// case, `::ffff:a.b.c.d` for IPv4-mapped) except for an IPv4-compatible
/// address, the first six words zero and the seventh not, which glibc
/// prints as `::a.b.c.d` (`i == 6 && best.base == 0 && best.len == 6`)
/// and Rust as `::c000:201`.
pub fn inet_ntop(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(a) => {
            let w = a.segments();
            if w[..6].iter().all(|&x| x == 0) && w[6] != 0 {
                let o = a.octets();
                format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15])
            } else {
                a.to_string()
            }
        }
        IpAddr::V4(a) => a.to_string(),
    }
}

/// `addrport_to_anyname`: `addr:port` (`[v6]:port`), numeric with `-n`,
/// else host and service names where known. ipvsadm builds it with
/// `snprintf(buf, 60, ...)`, so a long host name leaves at most 59 bytes;
/// only IPv4 listings cut it further (28 or 33 bytes).
pub fn addrport(ip: IpAddr, port: u16, proto: &str, numeric: bool) -> String {
    let (a, p) = if numeric {
        (inet_ntop(ip), port.to_string())
    } else {
        (
            addr_to_host(ip).unwrap_or_else(|| inet_ntop(ip)),
            port_to_service(port, proto).unwrap_or_else(|| port.to_string()),
        )
    };
    join_addrport(ip.is_ipv6(), &a, &p)
}

/// `snprintf(buf, 60, "%s%s%s:%s", af == AF_INET ? "" : "[", host,
/// af == AF_INET ? "" : "]", port)`.
fn join_addrport(v6: bool, a: &str, p: &str) -> String {
    let mut s = if v6 {
        format!("[{a}]:{p}")
    } else {
        format!("{a}:{p}")
    };
    if s.len() > 59 {
        let mut k = 59;
        while !s.is_char_boundary(k) {
            k -= 1;
        }
        s.truncate(k);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc inet_aton's forms (resolv/inet_addr.c `inet_aton`).
    #[test]
    fn inet_aton_forms() {
        let a = |s: &str| inet_aton(s).map(|x| x.to_string());
        assert_eq!(a("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("10.1.2").as_deref(), Some("10.1.0.2"));
        assert_eq!(a("167772161").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("0x0a.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(a("24").as_deref(), Some("0.0.0.24"));
        assert_eq!(a("255.255.255.0").as_deref(), Some("255.255.255.0"));
        assert_eq!(a("256.1.1.1"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a("1.2.3.x"), None);
        assert_eq!(a("09.1.1.1"), None);
        assert_eq!(a(""), None);
        assert_eq!(a("1..2"), None);
    }

    #[test]
    fn parse_service_forms() {
        let p = |s: &str| parse_service(s, "tcp");
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            p("10.0.0.1:80"),
            Some(Parsed {
                addr: v4("10.0.0.1"),
                port: Some(80)
            })
        );
        assert_eq!(
            p("10.1:http"),
            Some(Parsed {
                addr: v4("10.0.0.1"),
                port: Some(80)
            })
        );
        assert_eq!(
            p("localhost:ssh"),
            Some(Parsed {
                addr: v4("127.0.0.1"),
                port: Some(22)
            })
        );
        assert_eq!(
            p("[2001:db8::1]:443"),
            Some(Parsed {
                addr: v4("2001:db8::1"),
                port: Some(443)
            })
        );
        assert_eq!(
            p("2001:db8::1"),
            Some(Parsed {
                addr: v4("2001:db8::1"),
                port: None
            })
        );
        assert_eq!(p("10.0.0.1").unwrap().port, None);
        // All digits: refused (str_is_digit), though inet_aton would take it.
        assert_eq!(p("167772161"), None);
        assert_eq!(p("10.0.0.1:65536"), None);
        assert_eq!(p("10.0.0.1:no-such-service"), None);
        assert_eq!(p("[2001:db8::1]443"), None);
        // A name only /etc/services knows for udp.
        if service_to_port("domain", "udp").is_some() {
            assert_eq!(
                parse_service("1.2.3.4:domain", "udp").unwrap().port,
                Some(53)
            );
        }
    }

    #[test]
    fn names_from_files() {
        assert_eq!(port_to_service(80, "tcp").as_deref(), Some("http"));
        assert_eq!(service_to_port("www", "tcp"), Some(80));
        assert_eq!(
            addrport("127.0.0.1".parse().unwrap(), 80, "tcp", false),
            "localhost:http"
        );
        assert_eq!(
            addrport("192.0.2.9".parse().unwrap(), 80, "tcp", true),
            "192.0.2.9:80"
        );
        assert_eq!(
            addrport("2001:db8::9".parse().unwrap(), 65001, "tcp", false),
            "[2001:db8::9]:65001"
        );
    }

    /// What glibc 2.36's `inet_ntop(AF_INET6, ...)` printed for each
    /// address (a C program calling it; 20,000 random addresses with many
    /// zero words differed from Rust's `Display` only in the
    /// IPv4-compatible form).
    #[test]
    fn inet_ntop_as_glibc() {
        let vectors = [
            ("::1.2.3.4", "::1.2.3.4"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("::1", "::1"),
            ("::", "::"),
            ("::0.0.1.2", "::102"),
            ("::0.1.0.0", "::0.1.0.0"),
            ("::1.0.0.0", "::1.0.0.0"),
            ("::255.255.255.255", "::255.255.255.255"),
            ("0:0:0:0:0:0:ffff:0", "::255.255.0.0"),
            ("1:0:0:1:0:0:0:1", "1:0:0:1::1"),
            ("1:0:0:1:0:0:1:1", "1::1:0:0:1:1"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"),
            ("0:0:0:0:0:1:0:0", "::1:0:0"),
            ("::1:0:0:0", "::1:0:0:0"),
            ("::ffff:0.0.0.0", "::ffff:0.0.0.0"),
            ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
            ("2001:DB8::1", "2001:db8::1"),
        ];
        for (a, want) in vectors {
            assert_eq!(inet_ntop(a.parse().unwrap()), want, "{a}");
        }
        assert_eq!(
            addrport("::192.0.2.1".parse().unwrap(), 80, "tcp", true),
            "[::192.0.2.1]:80"
        );
    }

    /// addrport_to_anyname's 60-byte buffer: a host name that long is cut
    /// to 59 bytes, port and closing bracket included (checked against
    /// Debian's ipvsadm with such names in /etc/hosts).
    #[test]
    fn anyname_is_cut_at_59_bytes() {
        let host = "a-very-long-host-name-for-the-second-real-server.example.org";
        let got = join_addrport(true, host, "http");
        assert_eq!(
            got,
            "[a-very-long-host-name-for-the-second-real-server.example.o"
        );
        assert_eq!(got.len(), 59);
        assert_eq!(
            join_addrport(false, "short.example", "http"),
            "short.example:http"
        );
        assert_eq!(join_addrport(false, &"x".repeat(60), "80").len(), 59);
    }
}
