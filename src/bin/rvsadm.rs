//! rvsadm: ipvsadm for rvs. The same commands, options and listing formats,
//! spoken to rvsd's control socket instead of the kernel.
//!
//! Exit codes follow ipvsadm: 0 success, 2 bad command line, 1 listing
//! failure, 255 (-1) when rvsd rejected the operation.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{ArgAction, Parser};
use serde_json::{json, Value};

use rvs::adm::{self, Format};
use rvs::control::server::request;

/// ipvsadm-compatible administration of rvsd.
#[derive(Parser, Debug, Default)]
#[command(name = "rvsadm", version, disable_version_flag = true, about, after_help = EXAMPLES)]
struct Cli {
    #[arg(
        short = 'A',
        long = "add-service",
        help = "add virtual service with options"
    )]
    add_service: bool,
    #[arg(
        short = 'E',
        long = "edit-service",
        help = "edit virtual service with options"
    )]
    edit_service: bool,
    #[arg(short = 'D', long = "delete-service", help = "delete virtual service")]
    delete_service: bool,
    #[arg(short = 'C', long = "clear", help = "clear the whole table")]
    clear: bool,
    #[arg(short = 'R', long = "restore", help = "restore rules from stdin")]
    restore: bool,
    #[arg(short = 'S', long = "save", help = "save rules to stdout")]
    save: bool,
    #[arg(
        short = 'a',
        long = "add-server",
        help = "add real server with options"
    )]
    add_server: bool,
    #[arg(
        short = 'e',
        long = "edit-server",
        help = "edit real server with options"
    )]
    edit_server: bool,
    #[arg(short = 'd', long = "delete-server", help = "delete real server")]
    delete_server: bool,
    #[arg(
        short = 'L',
        long = "list",
        visible_short_alias = 'l',
        help = "list the table"
    )]
    list: bool,
    #[arg(
        short = 'Z',
        long = "zero",
        help = "zero counters in a service or all services"
    )]
    zero: bool,
    #[arg(long = "set", num_args = 3, value_names = ["TCP", "TCPFIN", "UDP"], help = "set connection timeout values")]
    set: Option<Vec<u32>>,
    #[arg(
        long = "load",
        value_name = "FILE",
        help = "replace the configuration with FILE's services (rvs JSON), atomically"
    )]
    load: Option<PathBuf>,
    #[arg(
        long = "dump",
        help = "print the configuration as rvs JSON (what --load takes)"
    )]
    dump: bool,
    #[arg(
        long = "import-keepalived",
        value_name = "FILE",
        help = "replace the configuration with keepalived.conf's virtual_server blocks"
    )]
    import_keepalived: Option<PathBuf>,
    #[arg(
        short = 'P',
        long = "add-laddr",
        help = "add a FULLNAT local address (-z) to a service (rvs extension, as DPVS)"
    )]
    add_laddr: bool,
    #[arg(
        short = 'Q',
        long = "del-laddr",
        help = "delete a FULLNAT local address (-z) from a service"
    )]
    del_laddr: bool,
    #[arg(short = 'G', long = "get-laddr", help = "list FULLNAT local addresses")]
    get_laddr: bool,
    #[arg(
        short = 'z',
        long = "laddr",
        value_name = "local-address",
        help = "FULLNAT local address"
    )]
    laddr: Option<String>,
    #[arg(
        long = "toa",
        help = "FULLNAT: deliver the client address in the TOA TCP option"
    )]
    toa: bool,
    #[arg(
        long = "proxy-protocol",
        help = "FULLNAT: deliver the client address with a PROXY protocol v2 header"
    )]
    proxy_protocol: bool,
    #[arg(
        short = 'j',
        long = "synproxy",
        help = "answer SYNs with SYN cookies; connect to a real server after the client's ACK (NAT/FULLNAT)"
    )]
    synproxy: bool,

    #[arg(
        short = 't',
        long = "tcp-service",
        value_name = "service-address",
        help = "service-address is host[:port]"
    )]
    tcp_service: Option<String>,
    #[arg(
        short = 'u',
        long = "udp-service",
        value_name = "service-address",
        help = "service-address is host[:port]"
    )]
    udp_service: Option<String>,
    #[arg(
        short = 'f',
        long = "fwmark-service",
        value_name = "fwmark",
        help = "fwmark services (not supported by rvs)"
    )]
    fwmark_service: Option<String>,
    #[arg(
        short = 's',
        long = "scheduler",
        help = "one of rr|wrr|lc|wlc|sh|dh|sed|nq|lblc|lblcr|mh, the default scheduler is wlc"
    )]
    scheduler: Option<String>,
    #[arg(short = 'p', long = "persistent", num_args = 0..=1, default_missing_value = "360", value_name = "timeout",
          help = "persistent service (default timeout 360 s)")]
    persistent: Option<String>,
    #[arg(short = 'M', long = "netmask", help = "persistent granularity mask")]
    netmask: Option<String>,
    #[arg(
        short = 'b',
        long = "sched-flags",
        value_name = "sched-flags",
        help = "scheduler flags: sh-fallback,sh-port (sh), mh-fallback,mh-port (mh), flag-1,flag-2"
    )]
    sched_flags: Option<String>,
    #[arg(
        short = 'r',
        long = "real-server",
        value_name = "server-address",
        help = "server-address is host (and port)"
    )]
    real_server: Option<String>,
    #[arg(
        short = 'g',
        long = "gatewaying",
        help = "gatewaying (direct routing) (default)"
    )]
    gatewaying: bool,
    #[arg(short = 'i', long = "ipip", help = "ipip encapsulation (tunneling)")]
    ipip: bool,
    #[arg(short = 'm', long = "masquerading", help = "masquerading (NAT)")]
    masquerading: bool,
    #[arg(
        long = "fullnat",
        help = "full NAT from a local address pool (rvs extension)"
    )]
    fullnat: bool,
    #[arg(
        short = 'w',
        long = "weight",
        help = "capacity of real server (0..65535)"
    )]
    weight: Option<String>,
    #[arg(
        short = 'x',
        long = "u-threshold",
        help = "upper threshold of connections"
    )]
    u_threshold: Option<String>,
    #[arg(
        short = 'y',
        long = "l-threshold",
        help = "lower threshold of connections"
    )]
    l_threshold: Option<String>,

    #[arg(
        short = 'n',
        long = "numeric",
        help = "numeric output of addresses and ports (always on in rvs)"
    )]
    numeric: bool,
    #[arg(
        short = 'c',
        long = "connection",
        help = "output of current IPVS connections"
    )]
    connection: bool,
    #[arg(long, help = "output of timeout (tcp tcpfin udp)")]
    timeout: bool,
    #[arg(long, help = "output of statistics information")]
    stats: bool,
    #[arg(long, help = "output of rate information")]
    rate: bool,
    #[arg(long, help = "output of thresholds information")]
    thresholds: bool,
    #[arg(
        long = "persistent-conn",
        help = "output of persistent connection info"
    )]
    persistent_conn: bool,
    #[arg(long, help = "disable sorting output of service/server entries")]
    nosort: bool,
    #[arg(long, help = "sort output (the default)")]
    sort: bool,
    #[arg(short = 'X', long, help = "expand numbers (display exact values)")]
    exact: bool,
    #[arg(
        long,
        help = "print the control socket's JSON instead of tables (rvs extension)"
    )]
    json: bool,
    #[arg(
        long,
        help = "with -L: health check state of each real server (rvs extension)"
    )]
    health: bool,
    #[arg(
        long,
        env = "RVS_SOCKET",
        default_value = "/run/rvs/rvsd.sock",
        help = "rvsd control socket"
    )]
    socket: PathBuf,
    #[arg(short = 'v', long = "version", action = ArgAction::Version, help = "show version")]
    version: Option<bool>,
}

const EXAMPLES: &str = "Examples:\n  rvsadm -A -t 10.0.0.100:80 -s rr\n  rvsadm -a -t 10.0.0.100:80 -r 10.0.1.11:80 -m -w 1\n  rvsadm -L -n --stats";

/// A failure with ipvsadm's exit code.
struct Fail(i32, String);

fn fail<T>(code: i32, msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(code, msg.into()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match run_args(&args) {
        Ok(()) => 0,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            code
        }
    };
    std::process::exit(code);
}

fn run_args(args: &[String]) -> Result<(), Fail> {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(e.kind(), DisplayHelp | DisplayVersion) {
                print!("{e}");
                return Ok(());
            }
            return fail(2, e.to_string().trim_end().to_string());
        }
    };
    run(cli)
}

fn parse_num(s: &str, min: u64, max: u64, what: &str) -> Result<u64, Fail> {
    match s.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => fail(2, format!("illegal {what} specified")),
    }
}

fn well_known_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp" => 21,
        "ssh" => 22,
        "smtp" => 25,
        "domain" => 53,
        "http" | "www" => 80,
        "pop3" => 110,
        "imap" => 143,
        "https" => 443,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        _ => return None,
    })
}

/// host[:port] -> (address, port or 0). Only numeric addresses: rvs does
/// no name resolution on the control path.
fn parse_addr_port(s: &str) -> Option<(IpAddr, u16)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        let ip: IpAddr = a.parse().ok()?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok().or_else(|| well_known_port(p))?,
            None if p.is_empty() => 0,
            None => return None,
        };
        return Some((ip, port));
    }
    match s.rsplit_once(':') {
        Some((a, p)) if !a.contains(':') => {
            let ip: Ipv4Addr = a.parse().ok()?;
            let port = p.parse().ok().or_else(|| well_known_port(p))?;
            Some((IpAddr::V4(ip), port))
        }
        _ => s.parse::<IpAddr>().ok().map(|ip| (ip, 0)),
    }
}

fn call(cli: &Cli, req: Value) -> Result<Value, Fail> {
    let line = request(&cli.socket, &req.to_string()).map_err(|e| {
        Fail(
            2,
            format!(
                "Can't connect to rvsd at {}: {e}\nIs rvsd running?",
                cli.socket.display()
            ),
        )
    })?;
    let v: Value =
        serde_json::from_str(&line).map_err(|e| Fail(1, format!("bad response from rvsd: {e}")))?;
    if let Some(err) = v.get("error") {
        return fail(255, err["message"].as_str().unwrap_or("error").to_string());
    }
    Ok(v)
}

fn run(cli: Cli) -> Result<(), Fail> {
    let commands = [
        (cli.add_service, "add-service"),
        (cli.edit_service, "edit-service"),
        (cli.delete_service, "delete-service"),
        (cli.clear, "flush"),
        (cli.restore, "restore"),
        (cli.save, "save"),
        (cli.add_server, "add-server"),
        (cli.edit_server, "edit-server"),
        (cli.delete_server, "delete-server"),
        (cli.list, "list"),
        (cli.zero, "zero"),
        (cli.set.is_some(), "set"),
        (cli.add_laddr, "add-laddr"),
        (cli.load.is_some(), "load"),
        (cli.dump, "dump"),
        (cli.import_keepalived.is_some(), "import-keepalived"),
        (cli.del_laddr, "del-laddr"),
        (cli.get_laddr, "get-laddr"),
    ];
    let given: Vec<&str> = commands.iter().filter(|c| c.0).map(|c| c.1).collect();
    if given.len() > 1 {
        return fail(2, "multiple commands specified");
    }
    if cli.fwmark_service.is_some() {
        return fail(2, "fwmark services (-f) are not supported by rvs");
    }
    if cli.tcp_service.is_some() && cli.udp_service.is_some() {
        return fail(2, "multiple 'service-address' options specified");
    }
    let fwd_count = [cli.gatewaying, cli.ipip, cli.masquerading, cli.fullnat]
        .iter()
        .filter(|x| **x)
        .count();
    if fwd_count > 1 {
        return fail(2, "multiple 'forwarding-method' options specified");
    }
    let cmd = given.first().copied().unwrap_or("list");
    let svc = svc_of(&cli)?;
    let need_svc = |name: &str| -> Result<Value, Fail> {
        svc.clone().ok_or_else(|| {
            Fail(
                2,
                format!("You need to supply the 'service-address' option for the '{name}' command"),
            )
        })
    };
    match cmd {
        "add-service" | "edit-service" => {
            let mut s = need_svc(cmd)?;
            s["sched"] = json!(cli.scheduler.clone().unwrap_or_else(|| "wlc".into()));
            if let Some(p) = &cli.persistent {
                s["persistent"] = json!(parse_num(p, 1, 86400 * 31, "timeout value")
                    .map_err(|_| { Fail(2, format!("invalid timeout value `{p}' specified")) })?);
            }
            if let Some(m) = &cli.netmask {
                let m: Ipv4Addr = m.parse().map_err(|_| {
                    Fail(2, "illegal virtual server persistent mask specified".into())
                })?;
                s["netmask"] = json!(m);
            }
            if cli.toa && cli.proxy_protocol {
                return fail(2, "--toa and --proxy-protocol are exclusive");
            }
            if cli.toa {
                s["client_addr"] = json!("toa");
            } else if cli.proxy_protocol {
                s["client_addr"] = json!("proxy_v2");
            }
            if cli.synproxy {
                s["synproxy"] = json!(true);
            }
            if let Some(b) = &cli.sched_flags {
                s["sched_flags"] =
                    json!(b.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>());
            }
            if s["port"] == 0 && cli.persistent.is_none() {
                return fail(2, "Zero port specified for non-persistent service");
            }
            let c = if cmd == "add-service" {
                "add_service"
            } else {
                // ipvsadm's -E knows nothing of health checks: keep the
                // service's check and sorry server as they are.
                if let Some(cur) = current_service(&cli, &s)? {
                    if let Some(h) = cur.get("health_check") {
                        s["health"] = h.clone();
                    }
                    if let Some(z) = cur.get("sorry_server") {
                        s["sorry_server"] =
                            json!({"ip": z["ip"], "port": z["port"], "fwd": z["fwd"]});
                    }
                }
                "edit_service"
            };
            call(&cli, json!({"cmd": c, "service": s}))?;
        }
        "delete-service" => {
            let s = need_svc(cmd)?;
            call(&cli, json!({"cmd": "del_service", "service": key_only(&s)}))?;
        }
        "add-server" | "edit-server" | "delete-server" => {
            let s = need_svc(cmd)?;
            let Some(r) = &cli.real_server else {
                return fail(
                    2,
                    format!("You need to supply the 'real-server' option for the '{cmd}' command"),
                );
            };
            let Some((ip, mut port)) = parse_addr_port(r) else {
                return fail(2, "illegal real server address[:port] specified");
            };
            if port == 0 {
                port = s["port"].as_u64().unwrap_or(0) as u16;
            }
            if cmd == "delete-server" {
                call(
                    &cli,
                    json!({"cmd": "del_dest", "service": key_only(&s), "dest": {"ip": ip, "port": port}}),
                )?;
                return Ok(());
            }
            let fwd = if cli.masquerading {
                "nat"
            } else if cli.ipip {
                "tun"
            } else if cli.fullnat {
                "fullnat"
            } else {
                "dr"
            };
            let weight = cli
                .weight
                .as_deref()
                .map(|w| parse_num(w, 0, 65535, "weight"))
                .transpose()?
                .unwrap_or(1);
            let x = cli
                .u_threshold
                .as_deref()
                .map(|w| parse_num(w, 0, i32::MAX as u64, "u_threshold"))
                .transpose()?;
            let y = cli
                .l_threshold
                .as_deref()
                .map(|w| parse_num(w, 0, i32::MAX as u64, "l_threshold"))
                .transpose()?;
            let mut dest = json!({"ip": ip, "port": port, "weight": weight, "fwd": fwd,
                              "u_threshold": x.unwrap_or(0), "l_threshold": y.unwrap_or(0)});
            if cmd == "edit-server" {
                // Keep the real server's own health check (-e cannot set one).
                let cur = current_service(&cli, &s)?;
                let own = cur.as_ref().and_then(|c| {
                    c["dests"]
                        .as_array()?
                        .iter()
                        .find(|d| d["ip"] == json!(ip) && d["port"].as_u64() == Some(port as u64))
                });
                if let Some(h) = own.and_then(|d| d.get("health_check")) {
                    dest["health"] = h.clone();
                }
            }
            let c = if cmd == "add-server" {
                "add_dest"
            } else {
                "edit_dest"
            };
            call(
                &cli,
                json!({"cmd": c, "service": key_only(&s), "dest": dest}),
            )?;
        }
        "flush" => {
            call(&cli, json!({"cmd": "clear"}))?;
        }
        "add-laddr" | "del-laddr" => {
            let s = need_svc(cmd)?;
            let Some(z) = &cli.laddr else {
                return fail(
                    2,
                    format!("You need to supply the 'laddr' option for the '{cmd}' command"),
                );
            };
            let ip: IpAddr = z
                .parse()
                .map_err(|_| Fail(2, "illegal local address specified".into()))?;
            let c = if cmd == "add-laddr" {
                "add_laddr"
            } else {
                "del_laddr"
            };
            call(
                &cli,
                json!({"cmd": c, "service": key_only(&s), "laddr": ip}),
            )?;
        }
        "load" => {
            let path = cli.load.clone().unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Fail(2, format!("{}: {e}", path.display())))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| Fail(2, format!("{}: {e}", path.display())))?;
            // Either --dump's output or a whole rvsd configuration file.
            let services = v
                .get("services")
                .cloned()
                .ok_or_else(|| Fail(2, format!("{}: no \"services\"", path.display())))?;
            let r = call(&cli, json!({"cmd": "load", "services": services}))?;
            eprintln!("loaded {} service(s)", r["services"]);
        }
        "dump" => {
            let r = call(&cli, json!({"cmd": "dump"})).map_err(|Fail(_, m)| Fail(1, m))?;
            let out = json!({"services": r["services"]});
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        "import-keepalived" => {
            let path = cli.import_keepalived.clone().unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Fail(2, format!("{}: {e}", path.display())))?;
            let imp = rvs::keepalived::import(&text)
                .map_err(|e| Fail(2, format!("{}: {e}", path.display())))?;
            for u in &imp.unsupported {
                eprintln!("{}: {u}: not applied", path.display());
            }
            let n = imp.services.len();
            call(&cli, json!({"cmd": "load", "services": imp.services}))?;
            eprintln!(
                "imported {n} virtual server(s), {} keyword(s) not applied",
                imp.unsupported.len()
            );
        }
        "get-laddr" => {
            let l = call(&cli, json!({"cmd": "list"})).map_err(|Fail(_, m)| Fail(1, m))?;
            print!("{}", adm::laddrs(&l, svc.as_ref().map(key_only).as_ref()));
        }
        "zero" => {
            let req = match &svc {
                Some(s) => json!({"cmd": "zero", "service": key_only(s)}),
                None => json!({"cmd": "zero"}),
            };
            call(&cli, req)?;
        }
        "set" => {
            let v = cli.set.clone().unwrap_or_default();
            call(
                &cli,
                json!({"cmd": "set_timeouts", "timeouts": {"tcp": v[0], "tcpfin": v[1], "udp": v[2]}}),
            )?;
        }
        "save" => {
            let l = call(&cli, json!({"cmd": "list"}))?;
            print!("{}", adm::save(&l));
        }
        "restore" => restore(&cli)?,
        _ => list(&cli, svc)?,
    }
    Ok(())
}

/// The service `s` names as `list` reports it (None if there is none).
fn current_service(cli: &Cli, s: &Value) -> Result<Option<Value>, Fail> {
    let l = call(cli, json!({"cmd": "list"}))?;
    let k = key_only(s);
    Ok(l["services"].as_array().and_then(|a| {
        a.iter()
            .find(|x| x["proto"] == k["proto"] && x["vip"] == k["vip"] && x["port"] == k["port"])
            .cloned()
    }))
}

fn key_only(s: &Value) -> Value {
    json!({"proto": s["proto"], "vip": s["vip"], "port": s["port"]})
}

fn svc_of(cli: &Cli) -> Result<Option<Value>, Fail> {
    let (proto, addr) = match (&cli.tcp_service, &cli.udp_service) {
        (Some(a), _) => ("tcp", a),
        (_, Some(a)) => ("udp", a),
        _ => return Ok(None),
    };
    let Some((ip, port)) = parse_addr_port(addr) else {
        return fail(2, "illegal virtual server address[:port] specified");
    };
    Ok(Some(json!({"proto": proto, "vip": ip, "port": port})))
}

fn list(cli: &Cli, svc: Option<Value>) -> Result<(), Fail> {
    if cli.timeout {
        let t = call(cli, json!({"cmd": "get_timeouts"}))?;
        let t = &t["timeouts"];
        println!(
            "Timeout (tcp tcpfin udp): {} {} {}",
            t["tcp"], t["tcpfin"], t["udp"]
        );
        return Ok(());
    }
    if cli.connection {
        let c = call(cli, json!({"cmd": "connections"})).map_err(|Fail(_, m)| Fail(1, m))?;
        if cli.json {
            println!("{}", c["connections"]);
        } else {
            print!("{}", adm::connections(&c));
        }
        return Ok(());
    }
    let mut l = call(cli, json!({"cmd": "list"})).map_err(|Fail(_, m)| Fail(1, m))?;
    let mut header = true;
    if let Some(s) = svc {
        let k = key_only(&s);
        let mut services = l["services"].as_array().cloned().unwrap_or_default();
        services
            .retain(|x| x["proto"] == k["proto"] && x["vip"] == k["vip"] && x["port"] == k["port"]);
        if services.is_empty() {
            return fail(1, "No such service");
        }
        l["services"] = json!(services);
        header = false;
    }
    if cli.json {
        println!("{}", l["services"]);
        return Ok(());
    }
    if cli.health {
        print!("{}", adm::health(&l, cli.nosort));
        return Ok(());
    }
    let f = Format {
        stats: cli.stats,
        rate: cli.rate,
        thresholds: cli.thresholds,
        persistent_conn: cli.persistent_conn,
        exact: cli.exact,
        nosort: cli.nosort,
    };
    print!("{}", adm::list(&l, f, header));
    Ok(())
}

/// -R: replay rules (as -S prints them) from stdin, one command per line.
fn restore(cli: &Cli) -> Result<(), Fail> {
    let stdin = std::io::stdin();
    let mut result = Ok(());
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| Fail(2, e.to_string()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut args = vec![
            "rvsadm".to_string(),
            "--socket".to_string(),
            cli.socket.display().to_string(),
        ];
        args.extend(line.split_whitespace().map(String::from));
        if let Err(Fail(code, msg)) = run_args(&args) {
            eprintln!("line {}: {msg}", n + 1);
            result = Err(Fail(code, String::new()));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_parse_like_ipvsadm() {
        assert_eq!(
            parse_addr_port("10.0.0.1:80"),
            Some(("10.0.0.1".parse().unwrap(), 80))
        );
        assert_eq!(
            parse_addr_port("10.0.0.1"),
            Some(("10.0.0.1".parse().unwrap(), 0))
        );
        assert_eq!(
            parse_addr_port("10.0.0.1:http"),
            Some(("10.0.0.1".parse().unwrap(), 80))
        );
        assert_eq!(
            parse_addr_port("[2001:db8::1]:443"),
            Some(("2001:db8::1".parse().unwrap(), 443))
        );
        assert_eq!(parse_addr_port("10.0.0.1:99999"), None);
        assert_eq!(parse_addr_port("web1:80"), None);
    }

    #[test]
    fn command_line_errors_exit_2() {
        let run = |a: &[&str]| {
            let mut v = vec![
                "rvsadm".to_string(),
                "--socket".into(),
                "/nonexistent/rvs.sock".into(),
            ];
            v.extend(a.iter().map(|s| s.to_string()));
            run_args(&v).err().map(|Fail(c, m)| (c, m))
        };
        assert_eq!(
            run(&["-A", "-a", "-t", "1.2.3.4:80"]).unwrap().1,
            "multiple commands specified"
        );
        assert_eq!(
            run(&["-A"]).unwrap().1,
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            run(&["-A", "-t", "1.2.3.4"]).unwrap().1,
            "Zero port specified for non-persistent service"
        );
        assert_eq!(
            run(&["-a", "-t", "1.2.3.4:80", "-r", "1.2.3.5", "-w", "70000"])
                .unwrap()
                .1,
            "illegal weight specified"
        );
        assert_eq!(
            run(&["-a", "-t", "1.2.3.4:80", "-r", "x:y"]).unwrap().1,
            "illegal real server address[:port] specified"
        );
        assert_eq!(
            run(&["-a", "-t", "1.2.3.4:80", "-r", "1.2.3.5", "-m", "-g"])
                .unwrap()
                .0,
            2
        );
        assert_eq!(run(&["--bogus"]).unwrap().0, 2);
        let (code, msg) = run(&["-L", "-n"]).unwrap();
        assert_eq!(code, 1);
        assert!(msg.contains("Can't connect to rvsd"), "{msg}");
    }
}
