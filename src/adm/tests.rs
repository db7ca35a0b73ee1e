use super::*;
use crate::control::from_reply;
use serde_json::{json, Value};

/// A `list` reply from a fixture that, as an older rvsd's would, leaves
/// out what a plain serving server has: `in_service` (true) and
/// `effective_weight` (its weight).
fn listed(mut v: Value) -> ListReply {
    for svc in v["services"].as_array_mut().into_iter().flatten() {
        let sorry = svc.get_mut("sorry_server").cloned();
        let dests = svc["dests"].as_array_mut().cloned().unwrap_or_default();
        let fill = |mut d: Value| {
            if d.get("in_service").is_none() {
                d["in_service"] = json!(true);
            }
            if d.get("effective_weight").is_none() {
                d["effective_weight"] = d.get("weight").cloned().unwrap_or(json!(1));
            }
            d
        };
        svc["dests"] = json!(dests.into_iter().map(fill).collect::<Vec<_>>());
        if let Some(z) = sorry {
            svc["sorry_server"] = fill(z);
        }
    }
    from_reply(v).unwrap()
}

fn sample() -> ListReply {
    listed(sample_json())
}

fn sample_json() -> Value {
    json!({"ok": true, "conn_table": {"count": 0, "capacity": 4096}, "services": [
        {"proto":"udp","vip":"10.0.0.100","port":53,"sched":"wlc","persistent":null,"netmask":"255.255.255.255",
         "stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"dests":[]},
        {"proto":"tcp","vip":"192.168.1.100","port":80,"sched":"rr","persistent":360,"netmask":"255.255.255.0",
         "stats":{"conns":123456789,"inpkts":5,"outpkts":6,"inbytes":1000,"outbytes":123456789012u64},
         "dests":[
            {"ip":"192.168.1.12","port":80,"fwd":"nat","weight":1,"active":0,"inactive":2,"u_threshold":0,"l_threshold":0,"persist":0,
             "stats":{"conns":1,"inpkts":2,"outpkts":3,"inbytes":4,"outbytes":5}},
            {"ip":"192.168.1.11","port":8080,"fwd":"nat","weight":3,"active":10,"inactive":0,"u_threshold":100,"l_threshold":50,"persist":1,
             "stats":{"conns":1,"inpkts":2,"outpkts":3,"inbytes":4,"outbytes":5}}]},
        {"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"wlc","persistent":null,"netmask":"255.255.255.255",
         "stats":{"conns":0,"inpkts":0,"outpkts":0,"inbytes":0,"outbytes":0},"dests":[]}
    ]})
}

/// Health: a removed server is not listed, a quiesced one shows weight
/// 0, a serving sorry server is listed like a real server; `-S` keeps
/// the configured weights; `--health` shows every server.
#[test]
fn health_shapes_the_listing_not_the_saved_rules() {
    let l = listed(json!({"conn_table": {"capacity": 16}, "services": [
            {"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr","netmask":"255.255.255.255",
             "dests":[
                {"ip":"10.0.1.11","port":80,"fwd":"nat","weight":2,"effective_weight":0,"in_service":false,
                 "health":"down","check":"http","last_error":"connect: refused",
                 "health_counters":{"checks":5,"failures":3,"transitions":1}},
                {"ip":"10.0.1.12","port":80,"fwd":"nat","weight":1,"effective_weight":0,"in_service":true,
                 "active":1,"health":"down","check":"tcp",
                 "health_counters":{"checks":4,"failures":2,"transitions":1}}],
             "sorry_server":{"ip":"10.0.1.13","port":8081,"fwd":"nat","in_service":true,
                 "weight":1,"effective_weight":1,"active":0,"inactive":3}}]}));
    assert_eq!(
        list(
            &l,
            Format {
                numeric: true,
                ..Default::default()
            },
            false
        ),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.100:80 rr\n\
\x20 -> 10.0.1.12:80                 Masq    0      1          0         \n\
\x20 -> 10.0.1.13:8081               Masq    1      0          3         \n"
    );
    assert_eq!(
        save(&l, true),
        "-A -t 10.0.0.100:80 -s rr\n\
-a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 2\n\
-a -t 10.0.0.100:80 -r 10.0.1.12:80 -m -w 1\n"
    );
    let h = health(
        &l,
        Format {
            numeric: true,
            ..Default::default()
        },
    );
    let rows: Vec<Vec<&str>> = h.lines().map(|x| x.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "{h}");
    assert_eq!(
        rows[1],
        [
            "TCP",
            "10.0.0.100:80",
            "10.0.1.11:80",
            "http",
            "down",
            "5",
            "3",
            "1",
            "connect:",
            "refused"
        ]
    );
    assert_eq!(rows[2][3..6], ["tcp", "down", "4"]);
    assert_eq!(rows[3][2..5], ["10.0.1.13:8081", "sorry", "serving"]);
}

/// Golden layout of `ipvsadm -L -n` (sort quirk: 192.168.x before 10.x
/// within TCP; TCP before UDP).
#[test]
fn list_numeric_matches_ipvsadm() {
    let got = list(
        &sample(),
        Format {
            numeric: true,
            ..Default::default()
        },
        true,
    );
    let want = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  192.168.1.100:80 rr persistent 360 mask 255.255.255.0\n\
\x20 -> 192.168.1.11:8080            Masq    3      10         0         \n\
\x20 -> 192.168.1.12:80              Masq    1      0          2         \n\
TCP  10.0.0.100:80 wlc\n\
UDP  10.0.0.100:53 wlc\n";
    assert_eq!(got, want);
}

#[test]
fn stats_layout_and_large_numbers() {
    let got = list(
        &sample(),
        Format {
            stats: true,
            numeric: true,
            ..Default::default()
        },
        false,
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines[0],
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
    );
    assert_eq!(lines[1], "  -> RemoteAddress:Port");
    assert_eq!(
        lines[2],
        "TCP  192.168.1.100:80              123456K        5        6     1000     123G"
    );
    assert_eq!(
        lines[3],
        "  -> 192.168.1.11:8080                   1        2        3        4        5"
    );
    let exact = list(
        &sample(),
        Format {
            stats: true,
            exact: true,
            numeric: true,
            ..Default::default()
        },
        false,
    );
    assert!(
        exact.contains(
            "TCP  192.168.1.100:80             123456789        5        6     1000 123456789012\n"
        ),
        "{exact}"
    );
}

#[test]
fn thresholds_and_persistent_conn_layouts() {
    let t = list(
        &sample(),
        Format {
            thresholds: true,
            numeric: true,
            ..Default::default()
        },
        false,
    );
    assert!(
        t.starts_with(
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
        ),
        "{t:?}"
    );
    assert!(
        t.contains(
            "  -> 192.168.1.11:8080            100        50         10         0         \n"
        ),
        "{t:?}"
    );
    let p = list(
        &sample(),
        Format {
            persistent_conn: true,
            numeric: true,
            ..Default::default()
        },
        false,
    );
    assert!(
        p.contains(
            "  -> 192.168.1.11:8080            3         1           10         0         \n"
        ),
        "{p:?}"
    );
}

#[test]
fn save_format() {
    let got = save(&sample(), true);
    let want = "-A -t 192.168.1.100:80 -s rr -p 360 -M 255.255.255.0\n\
-a -t 192.168.1.100:80 -r 192.168.1.11:8080 -m -w 3 -x 100 -y 50\n\
-a -t 192.168.1.100:80 -r 192.168.1.12:80 -m -w 1\n\
-A -t 10.0.0.100:80 -s wlc\n\
-A -u 10.0.0.100:53 -s wlc\n";
    assert_eq!(got, want);
}

#[test]
fn connection_listing() {
    let r = from_reply(json!({"connections":[{"proto":"tcp","state":"ESTABLISHED","expires_ms":899_500,
            "cip":"10.0.0.2","cport":41234,"vip":"10.0.0.100","vport":80,"dip":"10.0.1.11","dport":80}]}))
    .unwrap();
    let got = connections(
        &r,
        Format {
            numeric: true,
            ..Default::default()
        },
    );
    assert_eq!(
        got,
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED 10.0.0.2:41234     10.0.0.100:80      10.0.1.11:80\n"
    );
    // A fwmark service's template (IPPROTO_IP) prints as the kernel's
    // ip_vs_proto_name() names it.
    let r = from_reply(
        json!({"connections":[{"proto":"ip","state":"NONE","expires_ms":300_000,
            "cip":"10.0.0.2","cport":0,"vip":"0.0.0.1","vport":0,"dip":"10.0.1.11","dport":0}]}),
    )
    .unwrap();
    let f = Format {
        numeric: true,
        ..Default::default()
    };
    assert!(connections(&r, f)
        .ends_with("IP  05:00  NONE        10.0.0.2:0         0.0.0.1:0          10.0.1.11:0\n"));
}

#[test]
fn largenum_thresholds() {
    let f = |i| {
        let mut s = String::new();
        largenum(&mut s, i, false);
        s
    };
    assert_eq!(f(99_999_999), " 99999999");
    assert_eq!(f(100_000_000), "  100000K");
    assert_eq!(f(1_000_000_000), "    1000M");
    assert_eq!(f(100_000_000_000_000), "     100T");
}

/// The real-server order of ipvsadm -L: libipvs `ipvs_cmp_dests` (a C
/// int difference of host-order addresses, so not transitive across
/// 2^31) through glibc 2.36's qsort. Each vector was printed by a C
/// program calling that glibc's qsort with that comparator on random
/// addresses (input => sorted).
#[test]
fn sort_matches_glibc_qsort_with_libipvs_comparator() {
    let vectors = [
        "149.233.195.189:1 67.123.167.193:2 => 67.123.167.193:2 149.233.195.189:1",
        "157.21.164.153:2 119.56.56.49:0 247.105.18.234:1 => 157.21.164.153:2 247.105.18.234:1 119.56.56.49:0",
        "193.111.193.132:2 38.9.250.122:2 37.110.163.86:1 198.240.178.33:2 => 193.111.193.132:2 198.240.178.33:2 37.110.163.86:1 38.9.250.122:2",
        "253.134.132.222:2 197.98.154.211:0 => 197.98.154.211:0 253.134.132.222:2",
        "138.123.33.150:1 255.14.118.149:0 => 138.123.33.150:1 255.14.118.149:0",
        "133.162.141.186:1 232.212.13.52:1 81.90.17.40:1 208.246.68.37:0 => 81.90.17.40:1 133.162.141.186:1 208.246.68.37:0 232.212.13.52:1",
        "74.204.63.183:2 230.102.203.119:2 10.224.249.255:0 138.200.165.161:2 123.219.104.215:1 57.71.187.31:0 119.189.97.90:2 159.73.62.210:0 62.243.27.246:2 209.237.193.44:1 => 230.102.203.119:2 10.224.249.255:0 57.71.187.31:0 74.204.63.183:2 119.189.97.90:2 123.219.104.215:1 138.200.165.161:2 159.73.62.210:0 209.237.193.44:1 62.243.27.246:2",
        "96.151.164.117:0 205.158.160.192:1 92.11.182.200:2 => 92.11.182.200:2 96.151.164.117:0 205.158.160.192:1",
        "242.91.163.101:1 164.242.23.234:2 57.34.49.143:0 195.75.237.106:1 226.201.64.253:1 179.1.115.164:0 137.194.110.230:2 106.50.154.107:0 => 106.50.154.107:0 137.194.110.230:2 164.242.23.234:2 179.1.115.164:0 195.75.237.106:1 226.201.64.253:1 242.91.163.101:1 57.34.49.143:0",
        "73.232.161.212:2 144.196.219.28:0 46.154.39.163:1 6.28.15.73:2 160.234.37.216:0 32.95.155.142:0 133.145.118.174:2 252.144.13.6:0 => 6.28.15.73:2 46.154.39.163:1 73.232.161.212:2 133.145.118.174:2 144.196.219.28:0 160.234.37.216:0 252.144.13.6:0 32.95.155.142:0",
        "79.135.177.169:0 124.166.143.235:1 4.79.253.179:1 237.20.221.149:2 89.122.5.236:1 66.146.6.93:1 45.141.226.60:1 67.225.156.114:1 74.112.85.196:1 73.0.118.222:2 => 237.20.221.149:2 4.79.253.179:1 45.141.226.60:1 66.146.6.93:1 67.225.156.114:1 73.0.118.222:2 74.112.85.196:1 79.135.177.169:0 89.122.5.236:1 124.166.143.235:1",
        "199.134.131.92:2 130.124.2.148:1 30.239.237.29:0 239.17.2.171:0 50.153.2.187:2 12.123.4.221:0 152.133.37.89:2 166.230.241.213:1 32.121.14.58:0 => 130.124.2.148:1 152.133.37.89:2 166.230.241.213:1 199.134.131.92:2 239.17.2.171:0 12.123.4.221:0 30.239.237.29:0 32.121.14.58:0 50.153.2.187:2",
        ];
    for v in vectors {
        let (input, want) = v.split_once(" => ").unwrap();
        let dests: Vec<DestView> = input
            .split(' ')
            .map(|x| {
                let (ip, port) = x.rsplit_once(':').unwrap();
                DestView {
                    ip: ip.parse().unwrap(),
                    port: port.parse().unwrap(),
                    ..Default::default()
                }
            })
            .collect();
        let got: Vec<String> = sorted(&dests, cmp_dests, false)
            .iter()
            .map(|d| format!("{}:{}", d.ip, d.port))
            .collect();
        assert_eq!(got.join(" "), want, "{input}");
    }
}

/// Contract-shaped replies (CONTRACT.md: fwmark services carry
/// "fwmark" (+ "af"), "ops", DestConf tun_type/tun_port/tun_csum)
/// printed as ipvsadm 1.31's print_service_entry, print_tunnel_rule and
/// fwd_tun_info print them.
#[test]
fn fwmark_ops_and_tunnels_as_ipvsadm_prints_them() {
    // (An IPv6 fwmark service's persistence mask is a prefix length, which
    // ipvsadm prints as "mask 64"; rvsd takes IPv4 masks only until IPv6
    // services land.)
    let l = listed(json!({"conn_table": {"capacity": 4096}, "services": [
        {"fwmark": 1, "sched": "rr", "persistent": 300, "netmask": "255.255.255.255",
         "dests": [{"ip": "10.0.1.11", "port": 80, "fwd": "dr", "weight": 1},
                   {"ip": "10.0.1.12", "port": 0, "fwd": "tun", "weight": 2}]},
        {"fwmark": 2, "af": "inet6", "sched": "wlc", "persistent": 60, "dests": []},
        {"proto": "udp", "vip": "10.0.0.100", "port": 53, "sched": "rr", "ops": true,
         "netmask": "255.255.255.255", "dests": [
            {"ip": "10.0.1.13", "port": 53, "fwd": "tun", "weight": 1, "tun_type": "gue",
             "tun_port": 6080, "tun_csum": "remcsum"},
            {"ip": "10.0.1.14", "port": 53, "fwd": "tun", "weight": 1, "tun_type": "gre",
             "tun_csum": "csum"},
            {"ip": "10.0.1.15", "port": 53, "fwd": "tun", "weight": 1},
            {"ip": "10.0.1.16", "port": 53, "fwd": "nat", "weight": 1}]}
    ]}));
    let n = Format {
        numeric: true,
        ..Default::default()
    };
    assert_eq!(
        list(&l, n, false),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
UDP  10.0.0.100:53 rr ops\n\
\x20 -> 10.0.1.13:53                 Tunnel  1      0          0         \n\
\x20 -> 10.0.1.14:53                 Tunnel  1      0          0         \n\
\x20 -> 10.0.1.15:53                 Tunnel  1      0          0         \n\
\x20 -> 10.0.1.16:53                 Masq    1      0          0         \n\
FWM  1 rr persistent 300\n\
\x20 -> 10.0.1.11:80                 Route   1      0          0         \n\
\x20 -> 10.0.1.12:0                  Tunnel  2      0          0         \n\
FWM  2 IPv6 wlc persistent 60\n"
    );
    assert_eq!(
        save(&l, true),
        "-A -u 10.0.0.100:53 -s rr -o\n\
-a -u 10.0.0.100:53 -r 10.0.1.13:53 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum\n\
-a -u 10.0.0.100:53 -r 10.0.1.14:53 -i -w 1 --tun-type gre --tun-csum\n\
-a -u 10.0.0.100:53 -r 10.0.1.15:53 -i -w 1 --tun-type ipip\n\
-a -u 10.0.0.100:53 -r 10.0.1.16:53 -m -w 1\n\
-A -f 1 -s rr -p 300\n\
-a -f 1 -r 10.0.1.11:80 -g -w 1\n\
-a -f 1 -r 10.0.1.12:0 -i -w 2 --tun-type ipip\n\
-A -f 2 -6 -s wlc -p 60\n"
    );
    let t = list(
        &l,
        Format {
            tun_info: true,
            ..n
        },
        false,
    );
    let rows: Vec<&str> = t.lines().collect();
    assert_eq!(
        rows[1],
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn"
    );
    // "  -> %-28s %-7s %-13s %-6d %-10u %-10u"
    let row = |ip: &str, f: &str, ti: &str| {
        format!("  -> {ip:<28} {f:<7} {ti:<13} {:<6} {:<10} {:<10}", 1, 0, 0)
    };
    assert_eq!(rows[3], row("10.0.1.13:53", "Tunnel", "gue:6080:r+c"));
    assert_eq!(rows[4], row("10.0.1.14:53", "Tunnel", "gre:+c"));
    assert_eq!(rows[5], row("10.0.1.15:53", "Tunnel", "ipip"));
    assert_eq!(rows[6], row("10.0.1.16:53", "Masq", "n/a"));
}

/// `--nosort`: the kernel's order (newest first); `-c
/// --persistent-conn`: list_conn's header with pe name and pe_data.
#[test]
fn nosort_and_persistent_conn_header() {
    let l = sample();
    let f = Format {
        numeric: true,
        nosort: true,
        ..Default::default()
    };
    let names: Vec<String> = list(&l, f, false)
        .lines()
        .skip(2)
        .map(|x| x.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names,
        [
            "10.0.0.100:80",
            "192.168.1.100:80",
            "192.168.1.11:8080",
            "192.168.1.12:80",
            "10.0.0.100:53"
        ]
    );
    let c = connections(
        &ConnectionsReply::default(),
        Format {
            persistent_conn: true,
            ..f
        },
    );
    assert_eq!(
        c,
        format!(
            "IPVS connection entries\npro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}\n",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        )
    );
}
