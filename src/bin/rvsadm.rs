//! rvsadm: ipvsadm for rvs. The same commands, options, messages, exit
//! codes and listing formats as ipvsadm 1.31, spoken to rvsd's control
//! socket instead of the kernel.
//!
//! The command line is parsed by `rvs::adm::cli` (ipvsadm's
//! `parse_options`/`process_options`/`generic_opt_check`); this file runs
//! the parsed command, one function per command (the `COMMANDS` table),
//! as ipvsadm's `process_options` switch does.
//!
//! Exit codes follow ipvsadm: 0 success; 2 bad command line or rvsd not
//! reachable ("Can't initialize ipvs"); 255 (-1) an unknown option, no
//! command, or rvsd refused the operation; 1 a listing failed.

#![deny(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

use rvs::adm::cli::{self, Cmd, Entry, Exit, Parsed};
use rvs::adm::{self, Format};
use rvs::control::server::request;
use rvs::control::{
    from_reply, ConnectionsReply, DaemonReply, DumpReply, ListReply, LoadReply, OwnershipView,
    Request, ServiceView, StartSuccessorReply, StatsReply, TimeoutsReply,
};
use rvs::service::SorryServer;

const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// The control socket: `--socket PATH`/`--socket=PATH` anywhere on the
/// line (taken out before ipvsadm's parsing), else $RVS_SOCKET.
fn take_socket(args: &mut Vec<String>) -> Result<PathBuf, Exit> {
    let mut socket = None;
    let mut i = 1;
    while i < args.len() {
        if args[i] == "--socket" {
            if i + 1 >= args.len() {
                return Err(Exit(255, "--socket: missing argument".into()));
            }
            socket = Some(args[i + 1].clone());
            args.drain(i..i + 2);
        } else if let Some(p) = args[i].strip_prefix("--socket=") {
            socket = Some(p.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(PathBuf::from(socket.unwrap_or_else(|| {
        std::env::var("RVS_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.into())
    })))
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let code = match take_socket(&mut args) {
        Ok(socket) => {
            let ctx = Ctx { socket };
            if args.len() == 2 && args[1] == "--vip-ownership" {
                finish(vip_ownership(&ctx))
            } else if args.len() == 2 && args[1] == "--announce" {
                finish(announce(&ctx))
            } else if args.len() == 2 && (args[1] == "--drain" || args[1] == "--undrain") {
                finish(
                    ctx.call(json!({"cmd": "drain", "on": args[1] == "--drain"}))
                        .map(|_| ()),
                )
            } else if args.len() == 1 {
                // "list the table if there is no other argument"
                finish(ctx.list_all(Format::default()))
            } else {
                finish(process(&ctx, &args, false))
            }
        }
        Err(e) => finish(Err(e)),
    };
    std::process::exit(code);
}

/// Print an Exit's message and return its code.
fn finish(r: Result<(), Exit>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(Exit(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            code
        }
    }
}

/// Write listing output. On a closed pipe (`| head`, `| grep -q`) end as
/// ipvsadm does: killed by SIGPIPE, with nothing on stderr.
fn out(text: &str) -> Result<(), Exit> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            // Restore SIGPIPE's default action and raise it (Rust ignores
            // SIGPIPE); exit 141 (128 + SIGPIPE) if that somehow returns.
            let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
            std::process::exit(141);
        }
        Err(e) => Err(Exit(1, format!("write: {e}"))),
    }
}

struct Ctx {
    socket: PathBuf,
}

/// `strerror`'s text for an I/O error, without Rust's " (os error N)".
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl Ctx {
    /// One request. Not reaching rvsd is ipvsadm's `ipvs_init` failure
    /// (exit 2); an error reply is the kernel's refusal, printed as
    /// ipvsadm prints `ipvs_strerror` (exit 255).
    fn call(&self, req: Value) -> Result<Value, Exit> {
        let line = request(&self.socket, &req.to_string()).map_err(|e| {
            Exit(
                2,
                format!(
                    "Can't initialize ipvs: {}\nAre you sure that rvsd is running (control socket {})?",
                    strerror(&e),
                    self.socket.display()
                ),
            )
        })?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| Exit(255, format!("bad response from rvsd: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(Exit(
                255,
                err["message"].as_str().unwrap_or("error").to_string(),
            ));
        }
        Ok(v)
    }

    /// A listing request: a refusal exits 1, as ipvsadm's list functions.
    fn list_call(&self, req: Value) -> Result<Value, Exit> {
        self.call(req)
            .map_err(|Exit(c, m)| Exit(if c == 2 { 2 } else { 1 }, m))
    }

    /// A read request and its typed reply; a refusal exits 1.
    fn get<T: serde::de::DeserializeOwned>(&self, req: &Request) -> Result<T, Exit> {
        let v = serde_json::to_value(req).map_err(|e| Exit(2, e.to_string()))?;
        typed(self.list_call(v)?)
    }

    fn list_all(&self, f: Format) -> Result<(), Exit> {
        let l: ListReply = self.get(&Request::List {})?;
        out(&adm::list(&l, f, true))
    }
}

type CmdFn = fn(&Ctx, &Entry) -> Result<(), Exit>;

/// A typed reply (rvs::control's reply types) from a control answer.
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Exit> {
    from_reply(v).map_err(|e| Exit(255, format!("bad response from rvsd: {}", e.message)))
}

/// One function per command, as ipvsadm's `process_options` switch.
const COMMANDS: &[(Cmd, CmdFn)] = &[
    (Cmd::Add, add_service),
    (Cmd::Edit, edit_service),
    (Cmd::Del, del_service),
    (Cmd::Flush, flush),
    (Cmd::List, list),
    (Cmd::AddDest, add_dest),
    (Cmd::DelDest, del_dest),
    (Cmd::EditDest, edit_dest),
    (Cmd::Timeout, set_timeouts),
    (Cmd::Save, save),
    (Cmd::Zero, zero),
    (Cmd::AddLaddr, add_laddr),
    (Cmd::DelLaddr, del_laddr),
    (Cmd::GetLaddr, get_laddr),
    (Cmd::Load, load),
    (Cmd::Dump, dump),
    (Cmd::ImportKeepalived, import_keepalived),
    (Cmd::Handover, handover),
    (Cmd::StartDaemon, start_daemon),
    (Cmd::StopDaemon, stop_daemon),
];

/// `--start-daemon master|backup` (ipvsadm's `ipvs_start_daemon`).
fn start_daemon(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let d = &e.daemon;
    let mut req = json!({
        "cmd": "start_daemon", "state": d.state,
        "mcast_ifn": d.mcast_ifn.clone().unwrap_or_default(), "syncid": d.syncid,
        "sync_maxlen": d.sync_maxlen, "mcast_port": d.mcast_port, "mcast_ttl": d.mcast_ttl,
    });
    if let Some(g) = d.mcast_group {
        req["mcast_group"] = json!(g);
    }
    ctx.call(req)?;
    Ok(())
}

/// `--stop-daemon master|backup`.
fn stop_daemon(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    ctx.call(json!({"cmd": "stop_daemon", "state": e.daemon.state}))?;
    Ok(())
}

/// ipvsadm's `process_options` for one command line (`reading_stdin`: a
/// line of `-R`).
fn process(ctx: &Ctx, args: &[String], reading_stdin: bool) -> Result<(), Exit> {
    let e = match cli::parse(args)? {
        Parsed::Help => return out(&usage(&args[0])),
        Parsed::Version => return out(&version()),
        Parsed::Run(e) => e,
    };
    e.check_extensions()?;
    if e.cmd == Cmd::Restore {
        // "avoid infinite loop"
        if reading_stdin {
            let p = &args[0];
            return Err(Exit(
                255,
                format!("Try `{p} -h' or '{p} --help' for more information."),
            ));
        }
        return restore(ctx, &args[0]);
    }
    let f = COMMANDS
        .iter()
        .find(|(c, _)| *c == e.cmd)
        .map(|(_, f)| *f)
        .ok_or_else(|| Exit(2, format!("{}: not supported by rvs", e.cmd.name())))?;
    f(ctx, &e)
}

fn svc_key(e: &Entry) -> Value {
    e.svc.as_ref().map(cli::Svc::key).unwrap_or(Value::Null)
}

/// The service `e` names as `list` reports it (None if there is none).
fn current_service(ctx: &Ctx, e: &Entry) -> Result<Option<ServiceView>, Exit> {
    let l: ListReply = typed(ctx.call(json!({"cmd": "list"}))?)?;
    let Some(k) = e.svc.as_ref().and_then(cli::Svc::service_key) else {
        return Ok(None);
    };
    Ok(l.services.into_iter().find(|x| adm::same_service(x, &k)))
}

/// The kernel's refusal of an unknown scheduler (ip_vs_ctl.c
/// `ip_vs_add_service`/`ip_vs_edit_service`: -ENOENT), as ipvsadm prints
/// it (libipvs `ipvs_strerror`). rvsd's schedulers are this build's.
fn known_scheduler(e: &Entry) -> Result<(), Exit> {
    match e.sched.as_deref() {
        Some(s) if !rvs::sched::is_known(s) => Err(Exit(
            255,
            "Scheduler or persistence engine not found".into(),
        )),
        _ => Ok(()),
    }
}

fn add_service(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    known_scheduler(e)?;
    ctx.call(json!({"cmd": "add_service", "service": e.service_conf()}))?;
    Ok(())
}

/// `-E`: the whole service as given (ipvsadm's `ipvs_update_service`);
/// rvs's own settings ipvsadm cannot express (health check, sorry server)
/// stay as they are.
fn edit_service(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    known_scheduler(e)?;
    let mut s = e.service_conf();
    if let Some(cur) = current_service(ctx, e)? {
        if let Some(h) = cur.health_check {
            s["health"] = json!(h);
        }
        if let Some(z) = cur.sorry_server {
            s["sorry_server"] = json!(SorryServer {
                ip: z.ip,
                port: z.port,
                fwd: z.fwd
            });
        }
    }
    ctx.call(json!({"cmd": "edit_service", "service": s}))?;
    Ok(())
}

fn del_service(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    ctx.call(json!({"cmd": "del_service", "service": svc_key(e)}))?;
    Ok(())
}

fn flush(ctx: &Ctx, _: &Entry) -> Result<(), Exit> {
    ctx.call(json!(Request::Clear {}))?;
    Ok(())
}

fn add_dest(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    cli::thresholds_in_range(e)?;
    if let Some(w) = &e.warning {
        eprintln!("{w}");
    }
    ctx.call(json!({"cmd": "add_dest", "service": svc_key(e), "dest": e.dest_conf()}))?;
    Ok(())
}

/// `-e`: the whole real server as given; its own health check (which -e
/// cannot set) stays.
fn edit_dest(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    cli::thresholds_in_range(e)?;
    if let Some(w) = &e.warning {
        eprintln!("{w}");
    }
    let mut dest = e.dest_conf();
    let cur = current_service(ctx, e)?;
    let own = cur.and_then(|c| {
        c.dests.into_iter().find(|d| {
            e.dest
                .is_some_and(|(ip, port)| d.ip == ip && d.port == port)
        })
    });
    if let Some(h) = own.and_then(|d| d.health_check) {
        dest["health"] = json!(h);
    }
    ctx.call(json!({"cmd": "edit_dest", "service": svc_key(e), "dest": dest}))?;
    Ok(())
}

fn del_dest(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    ctx.call(json!({"cmd": "del_dest", "service": svc_key(e), "dest": e.dest_conf()}))?;
    Ok(())
}

fn set_timeouts(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let [tcp, tcpfin, udp] = e.timeouts.unwrap_or_default();
    // The kernel keeps a timeout unchanged when it is 0 (ip_vs_ctl.c
    // `ip_vs_set_timeout`): send only the others.
    let mut t = json!({});
    for (k, v) in [("tcp", tcp), ("tcpfin", tcpfin), ("udp", udp)] {
        if v != 0 {
            t[k] = json!(v);
        }
    }
    let cur: TimeoutsReply = typed(ctx.call(json!(Request::GetTimeouts {}))?)?;
    let cur = cur.timeouts;
    for (k, v) in [("tcp", cur.tcp), ("tcpfin", cur.tcpfin), ("udp", cur.udp)] {
        if t.get(k).is_none() {
            t[k] = json!(v);
        }
    }
    ctx.call(json!({"cmd": "set_timeouts", "timeouts": t}))?;
    Ok(())
}

fn zero(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let req = match &e.svc {
        Some(s) => json!({"cmd": "zero", "service": s.key()}),
        None => json!({"cmd": "zero"}),
    };
    ctx.call(req)?;
    Ok(())
}

fn save(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let l: ListReply = ctx.get(&Request::List {})?;
    out(&adm::save(&l, e.fmt.numeric))
}

/// `-L`/`-l`: connections, one service, timeouts, daemons or everything
/// (ipvsadm's CMD_LIST branch); `--json` and `--health` are rvs's.
fn list(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let f = Format::from(e.fmt);
    let has = |c: usize| e.options & (1 << c) != 0;
    if has(cli::optc::CONNECTION) {
        let c: ConnectionsReply = ctx.get(&Request::Connections { limit: None })?;
        if e.json {
            return out(&format!("{}\n", json!(c.connections)));
        }
        return out(&adm::connections(&c, f));
    }
    if has(cli::optc::TIMEOUT) {
        let t: TimeoutsReply = ctx.get(&Request::GetTimeouts {})?;
        let t = t.timeouts;
        return out(&format!(
            "Timeout (tcp tcpfin udp): {} {} {}\n",
            t.tcp, t.tcpfin, t.udp
        ));
    }
    if has(cli::optc::DAEMON) {
        let d: DaemonReply = ctx.get(&Request::Daemon {})?;
        if e.json {
            return out(&format!("{}\n", json!(d)));
        }
        return out(&adm::daemons(&d));
    }
    let mut l: ListReply = ctx.get(&Request::List {})?;
    let mut header = true;
    if let Some(s) = &e.svc {
        let k = s.service_key();
        l.services
            .retain(|x| k.is_some_and(|k| adm::same_service(x, &k)));
        if l.services.is_empty() {
            return Err(Exit(1, "No such service".into()));
        }
        header = false;
    }
    if e.json {
        return out(&format!("{}\n", json!(l.services)));
    }
    if e.health {
        return out(&adm::health(&l, f));
    }
    out(&adm::list(&l, f, header))
}

/// `--vip-ownership` (rvs): whether this director serves each VIP now
/// (`vip_ownership` "kernel": while the address is on a kernel twin).
fn vip_ownership(ctx: &Ctx) -> Result<(), Exit> {
    let l: ListReply = ctx.get(&Request::List {})?;
    let s: StatsReply = ctx.get(&Request::Stats {})?;
    out(&ownership_table(&l, s.vip_ownership.as_ref()))
}

/// `--announce` (rvs): the routes this director announces for BGP/ECMP.
fn announce(ctx: &Ctx) -> Result<(), Exit> {
    let a: rvs::announce::AnnounceView = ctx.get(&Request::Announce {})?;
    out(&announce_table(&a))
}

fn announce_table(a: &rvs::announce::AnnounceView) -> String {
    let mut t = format!(
        "Announce: table {} dev {}{}\nVIP              State\n",
        a.table,
        a.dev,
        if a.draining { " (draining)" } else { "" }
    );
    for v in &a.vips {
        let mut state = v.state.text().to_string();
        if (v.state == rvs::announce::Reason::Announced) != v.installed {
            state.push_str(if v.installed {
                ", route still installed"
            } else {
                ", route not installed yet"
            });
        }
        t.push_str(&format!("{:<16} {state}\n", v.vip.to_string()));
    }
    if a.route_errors > 0 {
        t.push_str(&format!("ip route failures: {}\n", a.route_errors));
    }
    t
}

fn ownership_table(list: &ListReply, own: Option<&OwnershipView>) -> String {
    let always = OwnershipView {
        mode: rvs::config::VipOwnership::Always,
        on_twins: None,
    };
    let own = own.unwrap_or(&always);
    let mode = match own.mode {
        rvs::config::VipOwnership::Always => "always",
        rvs::config::VipOwnership::Kernel => "kernel",
    };
    let mut vips: Vec<std::net::IpAddr> = list.services.iter().filter_map(|s| s.vip).collect();
    vips.sort();
    vips.dedup();
    let mut t = format!("VIP ownership: {mode}\nVIP              State\n");
    for v in vips {
        let owned = own.owns(v);
        let v = v.to_string();
        t.push_str(&format!(
            "{v:<16} {}\n",
            if owned { "owned" } else { "not owned" }
        ));
    }
    t
}

fn laddr_call(ctx: &Ctx, e: &Entry, cmd: &str) -> Result<(), Exit> {
    ctx.call(json!({"cmd": cmd, "service": svc_key(e), "laddr": e.laddr}))?;
    Ok(())
}

fn add_laddr(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    laddr_call(ctx, e, "add_laddr")
}

fn del_laddr(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    laddr_call(ctx, e, "del_laddr")
}

fn get_laddr(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let l: ListReply = ctx.get(&Request::List {})?;
    let k = e.svc.as_ref().and_then(cli::Svc::service_key);
    out(&adm::laddrs(&l, k.as_ref()))
}

fn read_file(path: &str) -> Result<String, Exit> {
    std::fs::read_to_string(path).map_err(|e| Exit(2, format!("{path}: {}", strerror(&e))))
}

/// `--load FILE`: replace the configuration with FILE's services (rvs
/// JSON: `--dump`'s output or a whole rvsd configuration), atomically.
fn load(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let path = e.file.clone().unwrap_or_default();
    let v: Value =
        serde_json::from_str(&read_file(&path)?).map_err(|x| Exit(2, format!("{path}: {x}")))?;
    let services = v
        .get("services")
        .cloned()
        .ok_or_else(|| Exit(2, format!("{path}: no \"services\"")))?;
    let r: LoadReply = typed(ctx.call(json!({"cmd": "load", "services": services}))?)?;
    eprintln!("loaded {} service(s)", r.services);
    Ok(())
}

fn dump(ctx: &Ctx, _: &Entry) -> Result<(), Exit> {
    let r: DumpReply = ctx.get(&Request::Dump {})?;
    let o = json!({"services": r.services});
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(&o).unwrap_or_default()
    ))
}

/// `--handover`: rvsd starts its successor (the binary now at its path,
/// `--handover`), which takes its place; as SIGUSR2 does. What
/// `systemctl reload rvsd` runs.
fn handover(ctx: &Ctx, _: &Entry) -> Result<(), Exit> {
    let r: StartSuccessorReply = ctx.get(&Request::StartSuccessor {})?;
    out(&format!(
        "rvsd started its successor (pid {}); it takes over once it is ready\n",
        r.pid
    ))
}

fn import_keepalived(ctx: &Ctx, e: &Entry) -> Result<(), Exit> {
    let path = e.file.clone().unwrap_or_default();
    let mut imp = rvs::keepalived::import_file(std::path::Path::new(&path))
        .map_err(|x| Exit(2, format!("{path}: {x}")))?;
    // A sorry server at the director's own address needs the host's stack
    // (IPVS LOCALNODE): without a kernel twin it is reported and dropped,
    // not refused; with one rvsd delivers to the twin ("Local").
    let st: StatsReply = typed(ctx.call(json!(Request::Stats {}))?)?;
    let local: Vec<std::net::IpAddr> = st
        .ports
        .iter()
        .filter_map(|p| p.ipv4.split('/').next()?.parse().ok())
        .collect();
    if !st.local_twin {
        imp.drop_local_sorry(&local);
    }
    for u in &imp.unsupported {
        eprintln!("{path}: {u}: not applied");
    }
    let n = imp.services.len();
    ctx.call(json!({"cmd": "load", "services": imp.services}))?;
    eprintln!(
        "imported {n} virtual server(s), {} keyword(s) not applied",
        imp.unsupported.len()
    );
    Ok(())
}

/// `-R` as ipvsadm's `restore_table` with config_stream.c's reader: each
/// line split on blanks, every "ipvsadm" word dropped, empty lines skipped;
/// a line that does not parse ends the restore with its error and exit
/// code (ipvsadm's `fail` and `tryhelp_exit` exit); a refused command (or
/// an unknown option after the command, which popt reports and ipvsadm
/// returns -1 for) is reported and the restore goes on; the exit code is
/// the last line's.
fn restore(ctx: &Ctx, program: &str) -> Result<(), Exit> {
    let stdin = std::io::stdin();
    let mut result = Ok(());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| Exit(2, strerror(&e)))?;
        let mut argv = vec![program.to_string()];
        argv.extend(
            line.split([' ', '\t', '\r'])
                .filter(|w| !w.is_empty() && *w != "ipvsadm")
                .map(String::from),
        );
        if argv.len() <= 1 {
            continue;
        }
        result = match process(ctx, &argv, true) {
            Ok(()) => Ok(()),
            // The kernel's (rvsd's) refusal, or popt's error after the
            // first option (parse_options returns -1): printed, and the
            // restore goes on.
            Err(Exit(255, msg)) if !msg.starts_with("Try `") => {
                eprintln!("{msg}");
                Err(Exit(255, String::new()))
            }
            // ipvsadm's fail() and tryhelp_exit() end the process, and so
            // does rvsd being unreachable (ipvs_init).
            Err(x) => return Err(x),
        };
    }
    result
}

fn version() -> String {
    format!(
        "rvsadm {} (ipvsadm v1.31 command line, compiled for rvsd)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// ipvsadm's `usage_exit` text, with rvs's additions.
fn usage(p: &str) -> String {
    format!(
        "{v}Usage:
  {p} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {p} -D virtual-service
  {p} -C
  {p} -R
  {p} -S [-n]
  {p} -a|e virtual-service -r server-address [options]
  {p} -d virtual-service -r server-address
  {p} -L|l [virtual-service] [options]
  {p} -Z [virtual-service]
  {p} --set tcp tcpfin udp
  {p} --start-daemon {{master|backup}} [daemon-options]
  {p} --stop-daemon {{master|backup}}
  {p} -P|Q virtual-service -z local-address
  {p} -G [virtual-service]
  {p} --load FILE | --dump | --import-keepalived FILE
  {p} -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --add-laddr       -P        add a FULLNAT local address (-z) to a service
  --del-laddr       -Q        delete a FULLNAT local address from a service
  --get-laddr       -G        list FULLNAT local addresses
  --load FILE                 replace the configuration with FILE (rvs JSON), atomically
  --dump                      print the configuration as rvs JSON
  --import-keepalived FILE    replace the configuration with keepalived.conf's virtual servers
  --handover                  rvsd starts its successor, which takes its place without a gap
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|mh,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --fullnat                           full NAT from a local address pool (rvs)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --laddr        -z local-address     FULLNAT local address (rvs)
  --toa                               FULLNAT: client address in the TOA TCP option (rvs)
  --proxy-protocol                    FULLNAT: client address in a PROXY v2 header (rvs)
  --synproxy     -j                   SYN proxy with SYN cookies (rvs)
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --json                              the control socket's JSON instead of tables (rvs)
  --health                            health check state of each real server (rvs)
  --vip-ownership                     whether this director serves each VIP now (rvs;
                                      alone)
  --announce                          the VIP routes announced for BGP/ECMP (rvs; alone)
  --drain, --undrain                  withdraw every VIP route, forwarding on; and back
                                      (rvs; alone)
  --socket PATH                       rvsd's control socket (default {DEFAULT_SOCKET},
                                      or $RVS_SOCKET)

Daemon Options:
  --syncid sid                        syncid for connection sync (default 0: any)
  --sync-maxlen length                max sync message length (default 1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4 group (default 224.0.0.81)
  --mcast-port port                   UDP port (default 8848)
  --mcast-ttl ttl                     multicast TTL (default 1)
",
        v = version()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ownership_table_lists_each_vip_once() {
        let l: ListReply = typed(json!({"services": [{"vip": "10.0.0.100", "port": 80},
            {"vip": "10.0.0.100", "port": 443}, {"vip": "10.0.0.101", "port": 80},
            {"fwmark": 1}]}))
        .unwrap();
        let own: OwnershipView =
            typed(json!({"mode": "kernel", "on_twins": ["10.0.0.1", "10.0.0.100"]})).unwrap();
        let t = ownership_table(&l, Some(&own));
        assert_eq!(
            t,
            "VIP ownership: kernel\nVIP              State\n\
             10.0.0.100       owned\n10.0.0.101       not owned\n"
        );
        assert!(ownership_table(&l, None).ends_with("10.0.0.101       owned\n"));
    }

    #[test]
    fn socket_is_taken_out_anywhere() {
        let mut a = argv(&["rvsadm", "--socket", "/x.sock", "-Ln"]);
        assert_eq!(take_socket(&mut a).unwrap(), PathBuf::from("/x.sock"));
        assert_eq!(a, argv(&["rvsadm", "-Ln"]));
        let mut a = argv(&["rvsadm", "-L", "--socket=/y.sock", "-n"]);
        assert_eq!(take_socket(&mut a).unwrap(), PathBuf::from("/y.sock"));
        assert_eq!(a, argv(&["rvsadm", "-L", "-n"]));
    }

    #[test]
    fn unreachable_rvsd_is_ipvsadm_without_its_module() {
        let ctx = Ctx {
            socket: PathBuf::from("/nonexistent/rvs.sock"),
        };
        let Err(Exit(code, msg)) = process(&ctx, &argv(&["rvsadm", "-L", "-n"]), false) else {
            panic!("listed without rvsd");
        };
        assert_eq!(code, 2);
        assert!(
            msg.starts_with("Can't initialize ipvs: No such file or directory\n"),
            "{msg}"
        );
        // Parse errors come first, without rvsd.
        assert_eq!(
            process(&ctx, &argv(&["rvsadm", "--bogus"]), false),
            Err(Exit(
                255,
                "Try `rvsadm -h' or 'rvsadm --help' for more information.".into()
            ))
        );
        assert!(COMMANDS.len() >= 16);
    }
}
