//! IPv6 services, real servers and connections printed as ipvsadm 1.31
//! prints them. Every expected line is written out from ipvsadm.c's
//! printf formats (ipvsadm 1.31, the "Release: Version 1.31" commit
//! a0e3834 of ipvsadm.c and libipvs/libipvs.c; the format is quoted above
//! each block), not from rvsadm's output. The same state, configured in
//! rvsd and listed by Debian 12's ipvsadm through librvs_ipvs.so, printed
//! the same bytes (but for rvs's own FULLNAT, which ipvsadm's `fwd_name`
//! does not know):
//!
//! * `addrport_to_anyname`: `"%s%s%s:%u"` with `"["`/`"]"` around any
//!   address that is not AF_INET, the address from `inet_ntop` (`-n`) or
//!   `gethostbyaddr`, the port from `getservbyport` unless `-n`.
//! * `print_service_entry`: `svc_name` is `"%-4s %s"`, cut at 33 bytes
//!   only `if (se->af != AF_INET6)`; a real server's `dname` is cut at 28
//!   only `if (!(format & FMT_RULE) && (e->af != AF_INET6))`; the columns
//!   (`"  -> %-28s ..."`, `"%-33s"`) are the same for both families, so a
//!   long IPv6 address pushes the columns right instead of being cut.
//! * `print_conn`: `"%-3s %-6s %-11s %-18s %-18s %s\n"`; the kernel's
//!   `%pI6` addresses of /proc/net/ip_vs_conn are read back with
//!   `inet_pton` and printed through `addrport_to_anyname`.
//! * libipvs.c `ipvs_cmp_services`: fwmark, then af (AF_INET 2 before
//!   AF_INET6 10), protocol, then `ntohl(s1->addr.in6.s6_addr32[i]) -
//!   ntohl(s2->...)` as an `int` for each of the 4 words.

use super::*;
use crate::control::from_reply;
use serde_json::{json, Value};

fn listed(v: Value) -> ListReply {
    let mut v = v;
    for svc in v["services"].as_array_mut().into_iter().flatten() {
        let dests = svc.get_mut("dests").and_then(Value::as_array_mut);
        for d in dests.into_iter().flatten() {
            if d.get("in_service").is_none() {
                d["in_service"] = json!(true);
            }
            if d.get("effective_weight").is_none() {
                d["effective_weight"] = d.get("weight").cloned().unwrap_or(json!(1));
            }
        }
    }
    from_reply(v).unwrap()
}

/// Listed oldest first, as rvsd reports: an IPv6 TCP service with a NAT,
/// a DR and a FULLNAT real server (in no particular order), an IPv6 UDP
/// service on the same VIP, an IPv4 service and a persistent IPv6
/// service. 2001:db8:ffff::1 sorts before 2001:db8::100: their second
/// words differ by 0xffff0000, which as a C int is -65536.
fn sample() -> ListReply {
    listed(
        json!({"ok": true, "conn_table": {"count": 0, "capacity": 4096}, "services": [
            {"proto": "tcp", "vip": "2001:db8::100", "port": 80, "sched": "rr",
             "netmask": "255.255.255.255", "laddrs": ["2001:db8::200"],
             "stats": {"conns": 5, "inpkts": 100, "outpkts": 90, "inbytes": 123_456_789, "outbytes": 7000},
             "rates": {"cps": 2, "inpps": 40, "outpps": 35, "inbps": 123_456_789_012u64, "outbps": 3000},
             "dests": [
                {"ip": "2001:db8:1::13", "port": 80, "fwd": "fullnat", "weight": 1},
                {"ip": "2001:db8:1::11", "port": 8080, "fwd": "nat", "weight": 1, "active": 0,
                 "inactive": 2, "u_threshold": 100, "l_threshold": 50, "persist": 1,
                 "stats": {"conns": 3, "inpkts": 60, "outpkts": 50, "inbytes": 6000, "outbytes": 4000},
                 "rates": {"cps": 1, "inpps": 20, "outpps": 18, "inbps": 1600, "outbps": 1500}},
                {"ip": "2001:db8:1::12", "port": 80, "fwd": "dr", "weight": 2, "active": 3,
                 "inactive": 0,
                 "stats": {"conns": 2, "inpkts": 40, "outpkts": 0, "inbytes": 4000, "outbytes": 0},
                 "rates": {"cps": 1, "inpps": 20, "outpps": 0, "inbps": 123_456_789, "outbps": 0}}]},
            {"proto": "udp", "vip": "2001:db8::100", "port": 53, "sched": "wlc",
             "netmask": "255.255.255.255", "dests": []},
            {"proto": "tcp", "vip": "10.0.0.100", "port": 80, "sched": "wlc",
             "netmask": "255.255.255.255", "dests": []},
            {"proto": "tcp", "vip": "2001:db8:ffff::1", "port": 443, "sched": "rr",
             "persistent": 300, "netmask": "255.255.255.255", "dests": []}
        ]}),
    )
}

fn numeric() -> Format {
    Format {
        numeric: true,
        ..Default::default()
    }
}

/// `ipvsadm -L -n`: the title of `print_title`, then per service
/// `printf("%s %s", svc_name, se->sched_name)` (+ `" persistent %u"`,
/// and `" mask %i"` only for a prefix other than 128), per real server
/// `"  -> %-28s %-7s %-6d %-10u %-10u\n"`.
#[test]
fn list_numeric_ipv6_as_ipvsadm() {
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.100:80 wlc\n\
TCP  [2001:db8:ffff::1]:443 rr persistent 300\n\
TCP  [2001:db8::100]:80 rr\n\
\x20 -> [2001:db8:1::11]:8080        Masq    1      0          2         \n\
\x20 -> [2001:db8:1::12]:80          Route   2      3          0         \n\
\x20 -> [2001:db8:1::13]:80          FullNat 1      0          0         \n\
UDP  [2001:db8::100]:53 wlc\n";
    assert_eq!(list(&sample(), numeric(), true), want);
}

/// `ipvsadm -L` (no `-n`): ports by `getservbyport` (Debian's
/// /etc/services: 80/tcp http, 443/tcp https, 8080/tcp http-alt, 53/udp
/// domain); the 2001:db8:: addresses are in no hosts file, so they stay
/// numeric, still in brackets.
#[test]
fn list_names_ipv6_as_ipvsadm() {
    let want = "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.100:http wlc\n\
TCP  [2001:db8:ffff::1]:https rr persistent 300\n\
TCP  [2001:db8::100]:http rr\n\
\x20 -> [2001:db8:1::11]:http-alt    Masq    1      0          2         \n\
\x20 -> [2001:db8:1::12]:http        Route   2      3          0         \n\
\x20 -> [2001:db8:1::13]:http        FullNat 1      0          0         \n\
UDP  [2001:db8::100]:domain wlc\n";
    assert_eq!(list(&sample(), Format::default(), false), want);
}

/// `ipvsadm -S -n` (FMT_RULE): `"-A %s -s %s"` (+ `" -p %u"`), per real
/// server `"-a %s -r %s %s -w %d\n"` with `svc_name` `"%s %s"` of the
/// protocol switch and the bracketed address. rvs's additions: the
/// FULLNAT local address (`-P ... -z`), `--fullnat`, thresholds.
#[test]
fn save_ipv6_as_ipvsadm() {
    let want = "-A -t 10.0.0.100:80 -s wlc\n\
-A -t [2001:db8:ffff::1]:443 -s rr -p 300\n\
-A -t [2001:db8::100]:80 -s rr\n\
-P -t [2001:db8::100]:80 -z 2001:db8::200\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::11]:8080 -m -w 1 -x 100 -y 50\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::12]:80 -g -w 2\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::13]:80 --fullnat -w 1\n\
-A -u [2001:db8::100]:53 -s wlc\n";
    assert_eq!(save(&sample(), true), want);
    // Without -n the rules name ports as the listing does.
    let named = save(&sample(), false);
    assert!(
        named.contains("-a -t [2001:db8::100]:http -r [2001:db8:1::11]:http-alt -m -w 1"),
        "{named}"
    );
    assert!(
        named.contains("\n-A -u [2001:db8::100]:domain -s wlc\n"),
        "{named}"
    );
}

/// `--stats`: `"%-33s"` then five `print_largenum` (`"%9llu"`, or
/// `"%8lluK"` from 100 million); a real server `"  -> %-28s"` then five.
/// `--rate`: the same for the service; a real server `"  -> %-28s %8llu
/// %8llu %8llu"` then two `print_largenum`.
#[test]
fn stats_and_rate_ipv6_as_ipvsadm() {
    let stats = list(
        &sample(),
        Format {
            stats: true,
            ..numeric()
        },
        false,
    );
    let want = "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
\x20 -> RemoteAddress:Port\n\
TCP  10.0.0.100:80                       0        0        0        0        0\n\
TCP  [2001:db8:ffff::1]:443              0        0        0        0        0\n\
TCP  [2001:db8::100]:80                  5      100       90  123456K     7000\n\
\x20 -> [2001:db8:1::11]:8080               3       60       50     6000     4000\n\
\x20 -> [2001:db8:1::12]:80                 2       40        0     4000        0\n\
\x20 -> [2001:db8:1::13]:80                 0        0        0        0        0\n\
UDP  [2001:db8::100]:53                  0        0        0        0        0\n";
    assert_eq!(stats, want);
    let rate = list(
        &sample(),
        Format {
            rate: true,
            ..numeric()
        },
        false,
    );
    let want = "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n\
\x20 -> RemoteAddress:Port\n\
TCP  10.0.0.100:80                       0        0        0        0        0\n\
TCP  [2001:db8:ffff::1]:443              0        0        0        0        0\n\
TCP  [2001:db8::100]:80                  2       40       35     123G     3000\n\
\x20 -> [2001:db8:1::11]:8080               1       20       18     1600     1500\n\
\x20 -> [2001:db8:1::12]:80                 1       20        0  123456K        0\n\
\x20 -> [2001:db8:1::13]:80                 0        0        0        0        0\n\
UDP  [2001:db8::100]:53                  0        0        0        0        0\n";
    assert_eq!(rate, want);
}

/// `--thresholds` (`"  -> %-28s %-10u %-10u %-10u %-10u\n"`),
/// `--persistent-conn` (`"  -> %-28s %-9u %-11u %-10u %-10u\n"`) and
/// `--tun-info` (`"  -> %-28s %-7s %-13s %-6d %-10u %-10u\n"`, "n/a" for
/// what is not tunnelled).
#[test]
fn thresholds_persistent_conn_and_tun_info_ipv6() {
    let row = |f: Format| {
        let out = list(&sample(), f, false);
        out.lines()
            .find(|l| l.contains("[2001:db8:1::11]"))
            .map(String::from)
            .unwrap_or_default()
    };
    assert_eq!(
        row(Format {
            thresholds: true,
            ..numeric()
        }),
        "  -> [2001:db8:1::11]:8080        100        50         0          2         "
    );
    assert_eq!(
        row(Format {
            persistent_conn: true,
            ..numeric()
        }),
        "  -> [2001:db8:1::11]:8080        1         1           0          2         "
    );
    assert_eq!(
        row(Format {
            tun_info: true,
            ..numeric()
        }),
        "  -> [2001:db8:1::11]:8080        Masq    n/a           1      0          2         "
    );
}

/// What is never cut for IPv6: a service name longer than 33 bytes and a
/// real server longer than 28 push the columns right (`%-33s`, `%-28s`
/// are minimum widths). An IPv4-compatible address prints as glibc's
/// `inet_ntop` prints it, `::a.b.c.d`.
#[test]
fn long_ipv6_names_are_not_cut() {
    let l = listed(json!({"conn_table": {"capacity": 16}, "services": [
        {"proto": "tcp", "vip": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", "port": 65535,
         "sched": "rr", "netmask": "255.255.255.255", "dests": [
            {"ip": "2001:db8:1:2:3:4:5:16", "port": 65535, "fwd": "nat", "weight": 1},
            {"ip": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", "port": 65535, "fwd": "nat", "weight": 1},
            {"ip": "::192.0.2.1", "port": 80, "fwd": "nat", "weight": 1}]}]}));
    // ipvs_cmp_dests: ::192.0.2.1 (first word 0) first; then the second
    // words: 0x0001_0002 - 0xaaaa_bbbb wraps to 0x5556_4447, positive as
    // an int, so 2001:db8:aaaa:... comes before 2001:db8:1:....
    assert_eq!(
        list(&l, numeric(), false),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 rr\n\
\x20 -> [::192.0.2.1]:80             Masq    1      0          0         \n\
\x20 -> [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:65535 Masq    1      0          0         \n\
\x20 -> [2001:db8:1:2:3:4:5:16]:65535 Masq    1      0          0         \n"
    );
    let stats = list(
        &l,
        Format {
            stats: true,
            ..numeric()
        },
        false,
    );
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(
        lines[2],
        "TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535        0        0        0        0        0"
    );
    assert_eq!(
        lines[5],
        "  -> [2001:db8:1:2:3:4:5:16]:65535        0        0        0        0        0"
    );
    assert_eq!(
        save(&l, true).lines().nth(1),
        Some("-a -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 -r [::192.0.2.1]:80 -m -w 1")
    );
}

fn conns() -> ConnectionsReply {
    from_reply(json!({"connections": [
        {"proto": "tcp", "state": "ESTABLISHED", "expires_ms": 899_500,
         "cip": "2001:db8::2", "cport": 41234, "vip": "2001:db8::100", "vport": 80,
         "dip": "2001:db8:1::11", "dport": 8080},
        {"proto": "udp", "state": "UDP", "expires_ms": 299_000,
         "cip": "fd00::2", "cport": 5353, "vip": "fd00::53", "vport": 53,
         "dip": "fd00:1::5", "dport": 53},
        {"proto": "tcp", "state": "SYN_RECV", "expires_ms": 59_999,
         "cip": "::192.0.2.7", "cport": 1024, "vip": "2001:db8::100", "vport": 80,
         "dip": "2001:db8:1::12", "dport": 80}]}))
    .unwrap()
}

/// `ipvsadm -L -c -n`: `list_conn`'s header `"pro expire %-11s %-18s %-18s
/// %s\n"`, each row `"%-3s %-6s %-11s %-18s %-18s %s\n"` with the expiry
/// `"%02d:%02d"`; an address 18 or more wide leaves one space.
#[test]
fn connections_ipv6_as_ipvsadm() {
    assert_eq!(
        connections(&conns(), numeric()),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED [2001:db8::2]:41234 [2001:db8::100]:80 [2001:db8:1::11]:8080\n\
UDP 04:59  UDP         [fd00::2]:5353     [fd00::53]:53      [fd00:1::5]:53\n\
TCP 00:59  SYN_RECV    [::192.0.2.7]:1024 [2001:db8::100]:80 [2001:db8:1::12]:80\n"
    );
    // Without -n: ports by name for the row's protocol (5353/udp mdns).
    assert_eq!(
        connections(&conns(), Format::default()),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED [2001:db8::2]:41234 [2001:db8::100]:http [2001:db8:1::11]:http-alt\n\
UDP 04:59  UDP         [fd00::2]:mdns     [fd00::53]:domain  [fd00:1::5]:domain\n\
TCP 00:59  SYN_RECV    [::192.0.2.7]:1024 [2001:db8::100]:http [2001:db8:1::12]:http\n"
    );
}

/// libipvs `ipvs_cmp_services`: af before protocol, so every IPv4
/// service (AF_INET, 2) comes before every IPv6 one (AF_INET6, 10), UDP
/// ones included; within a family TCP (6) before UDP (17).
#[test]
fn ipv4_services_sort_before_ipv6_ones() {
    let l = listed(json!({"conn_table": {"capacity": 16}, "services": [
        {"proto": "tcp", "vip": "2001:db8::2", "port": 1, "sched": "rr", "netmask": "255.255.255.255"},
        {"proto": "udp", "vip": "10.0.0.1", "port": 1, "sched": "rr", "netmask": "255.255.255.255"},
        {"proto": "udp", "vip": "2001:db8::1", "port": 1, "sched": "rr", "netmask": "255.255.255.255"},
        {"proto": "tcp", "vip": "200.0.0.1", "port": 1, "sched": "rr", "netmask": "255.255.255.255"}]}));
    let got: Vec<String> = save(&l, true).lines().map(String::from).collect();
    assert_eq!(
        got,
        [
            "-A -t 200.0.0.1:1 -s rr",
            "-A -u 10.0.0.1:1 -s rr",
            "-A -t [2001:db8::2]:1 -s rr",
            "-A -u [2001:db8::1]:1 -s rr"
        ]
    );
}

/// `ipvsadm -L -n -t [v6]:port` is `list_service`: the title, then that
/// service only, no version line.
#[test]
fn one_ipv6_service() {
    let mut l = sample();
    let key = ServiceKey::new(Proto::Udp, "2001:db8::100".parse().unwrap(), 53);
    l.services.retain(|s| same_service(s, &key));
    assert_eq!(
        list(&l, numeric(), false),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
UDP  [2001:db8::100]:53 wlc\n"
    );
}

/// An IPv6 persistent service with a granularity: `" persistent %u"` then
/// `" mask %i"` (listing) and `" -p %u"` then `" -M %i"` (rules) of the
/// prefix length the kernel keeps in the service's 32-bit `netmask`
/// (ipvsadm.c reads `-M` for AF_INET6 with `atoi`). A /128 prints none.
#[test]
fn ipv6_persistence_prefix() {
    let l = listed(json!({"conn_table": {"capacity": 16}, "services": [
        {"proto": "tcp", "vip": "2001:db8::100", "port": 443, "sched": "wlc",
         "persistent": 360, "netmask": "0.0.0.64"},
        {"proto": "udp", "vip": "2001:db8::100", "port": 53, "sched": "rr",
         "persistent": 60, "netmask": "0.0.0.128"},
        {"proto": "udp", "vip": "2001:db8::101", "port": 53, "sched": "rr",
         "persistent": 60, "netmask": "255.255.255.255"}]}));
    let got = list(&l, numeric(), false);
    let rows: Vec<&str> = got.lines().skip(2).collect();
    assert_eq!(
        rows,
        [
            "TCP  [2001:db8::100]:443 wlc persistent 360 mask 64",
            "UDP  [2001:db8::100]:53 rr persistent 60",
            "UDP  [2001:db8::101]:53 rr persistent 60"
        ]
    );
    assert_eq!(
        save(&l, true),
        "-A -t [2001:db8::100]:443 -s wlc -p 360 -M 64\n\
-A -u [2001:db8::100]:53 -s rr -p 60\n\
-A -u [2001:db8::101]:53 -s rr -p 60\n"
    );
}

/// `ipvs_cmp_dests` takes the first real server's family: an IPv6 one
/// compares all four words (an IPv4 address being the first word of a
/// zeroed `union nf_inet_addr`), an IPv4 one the first word only.
#[test]
fn mixed_family_comparison_reads_the_first_family() {
    let v6: IpAddr = "a00:1::1".parse().unwrap(); // first word 0x0a000001
    let v4: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(cmp_addrs(v6, v4), 1);
    assert_eq!(cmp_addrs(v4, v6), 0);
}
