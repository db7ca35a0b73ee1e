//! `rvsd --handover`: take the place of the rvsd running on the same
//! control socket with (nearly) no gap in forwarding, and the SIGUSR2
//! that makes a running rvsd start such a successor (an upgrade: the
//! binary at its path is the new one).
//!
//! The order, so that the gap holds only what cannot be done earlier:
//! 1. the new process checks its configuration, connects to the old one's
//!    control socket, starts its EAL (a file prefix of its own) and packet
//!    pool, builds its connection table file (`conn::Prepared`) and opens
//!    its af_packet ports: af_packet sockets on the same interface each
//!    get every frame, so both processes may hold them. Other ports (taps,
//!    which the old process must close first) are left out of the EAL;
//! 2. it sends `handover`: the old process refuses configuration changes
//!    from then on, stops its sync daemons and packet workers (the gap
//!    starts), closes the ports that cannot be shared and lets go of the
//!    table file's lock; the new process throws away what its af_packet
//!    queues hold (the old one forwarded it);
//! 3. the new process takes the table file over (as after a restart),
//!    loads the state file, probes the other ports (hot-plug), starts its
//!    workers (the gap ends) and binds the control socket over the old
//!    one's path;
//! 4. it sends `handover_done`; the old process exits, and the new one
//!    binds the IPVS netlink socket and the metrics port it leaves.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use rvs::config::DaemonConfig;
use rvs::control::{from_reply, HandoverReply, Request};
use rvs::dpdk::{self, DpdkIo, Eal, Mempool, Port};
use rvs::io::PortIo;
use rvs::neigh::PortAddr;

fn name(spec: &str) -> String {
    spec.split(',').next().unwrap_or("").to_owned()
}

/// A `--vdev` of the af_packet driver (`net_af_packet0,iface=...`).
fn is_af_packet(spec: &str) -> bool {
    let n = name(spec);
    n.starts_with("net_af_packet") || n.starts_with("eth_af_packet")
}

/// The EAL arguments of a successor: the data ports' `--vdev`s that are
/// not af_packet taken out (returned, to be hot-plugged once the old
/// process let go of them) and, unless `--in-memory`, a file prefix of its
/// own (two primary processes cannot share one). Ports that are not
/// virtual devices are refused: a PCI device would need the old process to
/// detach it first, which this version does not do (restart instead).
pub fn split_eal_args(args: &[String], devices: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut init = Vec::new();
    let mut ports = Vec::new();
    let mut it = args.iter();
    let mut prefixed = false;
    while let Some(a) = it.next() {
        let vdev = if a == "--vdev" {
            it.next().cloned()
        } else {
            a.strip_prefix("--vdev=").map(str::to_owned)
        };
        if let Some(v) = vdev {
            if devices.contains(&name(&v)) {
                ports.push(v.clone());
            }
            if !devices.contains(&name(&v)) || is_af_packet(&v) {
                init.push(format!("--vdev={v}"));
            }
            continue;
        }
        let prefix = if a == "--file-prefix" {
            it.next().cloned()
        } else {
            a.strip_prefix("--file-prefix=").map(str::to_owned)
        };
        if let Some(p) = prefix {
            init.push(format!("--file-prefix={p}-{}", std::process::id()));
            prefixed = true;
            continue;
        }
        init.push(a.clone());
    }
    if !prefixed && !init.iter().any(|a| a == "--in-memory") {
        init.push(format!("--file-prefix=rvs-{}", std::process::id()));
    }
    for d in devices {
        if !ports.iter().any(|v| name(v) == *d) {
            bail!(
                "--handover: port {d} is not a virtual device (--vdev) of eal_args; a PCI \
                 device cannot be handed over by this version: restart rvsd instead \
                 (connections in conn_table_file are kept)"
            );
        }
    }
    ports.retain(|v| !is_af_packet(v));
    Ok((init, ports))
}

/// The running rvsd, once it has stopped forwarding for us.
pub struct Predecessor {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    pub reply: HandoverReply,
}

fn send(
    stream: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    req: &Request,
) -> Result<serde_json::Value> {
    let line = serde_json::to_string(req)?;
    writeln!(stream, "{line}")?;
    let mut answer = String::new();
    if reader.read_line(&mut answer)? == 0 {
        bail!("the running rvsd closed the connection");
    }
    let v: serde_json::Value =
        serde_json::from_str(&answer).with_context(|| format!("reply {answer:?}"))?;
    if let Some(e) = v.get("error") {
        bail!("{}", e.as_str().unwrap_or("refused"));
    }
    Ok(v)
}

impl Predecessor {
    /// Connect to the rvsd at `socket` (early: its control server looks for
    /// new clients every 50 ms) and check that it answers.
    pub fn connect(socket: &Path) -> Result<Predecessor> {
        let mut stream = UnixStream::connect(socket)
            .with_context(|| format!("--handover: no rvsd answers at {}", socket.display()))?;
        // Stopping workers and closing ports takes well under a second;
        // the bound only keeps a wedged predecessor from hanging us.
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let ping = send(&mut stream, &mut reader, &Request::Ping {})
            .context("--handover: the running rvsd does not answer")?;
        let pid = ping.get("pid").and_then(|p| p.as_u64()).unwrap_or(0) as u32;
        Ok(Predecessor {
            stream,
            reader,
            reply: HandoverReply {
                pid,
                ..HandoverReply::default()
            },
        })
    }

    /// Ask it to stop forwarding and let go of its ports and table file.
    pub fn ask(&mut self) -> Result<()> {
        let req = Request::Handover {
            pid: std::process::id(),
        };
        let v = send(&mut self.stream, &mut self.reader, &req)
            .context("--handover: the running rvsd refused")?;
        self.reply = from_reply(v).map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(())
    }

    /// We forward and serve the control socket: the predecessor may go.
    /// Its answer may be lost (it stops as it answers): we run either way.
    pub fn done(mut self) {
        if let Err(e) = send(
            &mut self.stream,
            &mut self.reader,
            &Request::HandoverDone {},
        ) {
            log::warn!(
                "handover: handover_done not answered ({e:#}); the old rvsd exits on its \
                 own (its guard: the successor's pid, 60 s)"
            );
        }
    }

    pub fn pid(&self) -> u32 {
        self.reply.pid
    }
}

/// Is process `pid` there (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')' (comm may hold
        // any bytes, even ')').
        Ok(st) => st
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| st[i + 1..].iter().find(|b| !b.is_ascii_whitespace()))
            .is_some_and(|&state| state != b'Z' && state != b'X'),
        Err(_) => false,
    }
}

/// Wait (at most `limit`) until process `pid` has gone.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The metrics port the old rvsd held: retried for a few seconds (its
/// listener may close a little after it answered), then given up with an
/// error in the log rather than stopping a director that forwards.
pub fn bind_metrics(a: std::net::SocketAddr) -> Option<std::net::TcpListener> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(a) {
            Ok(l) => return Some(l),
            Err(e) if Instant::now() >= until => {
                log::error!("metrics_listen {a}: {e}; no metrics until restarted");
                return None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Under systemd (NOTIFY_SOCKET set) only a process of the same service
/// (cgroup) may take over: systemd follows it as the main process once it
/// says MAINPID=. One started by hand, outside the unit, would be left
/// running when the unit stops, and /run/rvs (its sockets and table file)
/// removed under it.
pub fn check_successor(pid: u32) -> Result<(), String> {
    // The first process of a PID namespace (a container's entrypoint):
    // when it exits, the kernel kills every other process there.
    if std::process::id() == 1 {
        return Err(
            "rvsd is process 1 of its PID namespace (a container without an \
                    init): its successor would die with it; run the container with an \
                    init (docker/podman --init) to hand over"
                .into(),
        );
    }
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    if pid == 0 {
        return Err("under systemd the successor must say its pid".into());
    }
    let cgroup = |p: &str| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok();
    match (cgroup("self"), cgroup(&pid.to_string())) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err(format!(
            "rvsd runs under systemd and process {pid} is not part of its service: \
             upgrade with `systemctl reload rvsd` (SIGUSR2), which starts the successor \
             inside the unit"
        )),
    }
}

/// Services (the config file's or the state file's) as `run` would load
/// them: the same local addresses and kernel twins.
fn check_services(
    cfg: &DaemonConfig,
    services: Vec<rvs::service::ServiceConf>,
    rules: Vec<rvs::fwmark::FwmarkRule>,
) -> std::result::Result<(), rvs::control::CtlError> {
    let local_ips = cfg.own_addrs();
    let mut c = rvs::director::Builder::new()
        .max_connections(16)
        .local_ips(local_ips)
        .control();
    c.local_twin = cfg.ports.iter().any(|p| p.kernel_twin.is_some());
    c.load_with_rules(services, Some(rules))
}

/// What `--handover` prepared before the predecessor stopped forwarding.
pub struct Early {
    pub eal: Eal,
    pub pool: Mempool,
    /// `--vdev` specifications to hot-plug once the predecessor closed them.
    pub hotplug: Vec<String>,
    pub predecessor: Predecessor,
    pub table: Option<rvs::conn::Prepared>,
    /// The af_packet ports, open and started (by index in the config).
    pub ports: Vec<(usize, Port, PortAddr)>,
}

/// Everything that could still make this start fail is checked or done
/// before the running rvsd is asked to stop: the services, the EAL
/// arguments, the EAL itself, the packet pool, the table file, the
/// af_packet ports.
pub fn prepare(cfg: &DaemonConfig, cli: &super::Cli) -> Result<Early> {
    check_services(cfg, cfg.services.clone(), cfg.fwmark_rules.clone())
        .map_err(|e| anyhow::anyhow!("services: {}", e.message))?;
    let devices: Vec<String> = cfg.ports.iter().map(|p| p.device.clone()).collect();
    let (init, hotplug) = split_eal_args(&cfg.eal_args, &devices)?;
    preflight(&cfg.eal_args)?;
    if let Some(g) = &cfg.control_group {
        rvs::control::server::resolve_group(g)
            .map_err(|e| anyhow::anyhow!("control_group: {e}"))?;
    }
    // A table file this build cannot read would be found only after the
    // running rvsd stopped (an upgrade that changed the layout): refuse now.
    if let (Some(path), false) = (&cfg.conn_table_file, cli.discard_conn_table) {
        rvs::conn::check_file(path).map_err(|e| {
            anyhow::anyhow!("--handover: conn_table_file: {e} (restart with --discard-conn-table)")
        })?;
    }
    // So would a state file it refuses (its services set aside).
    if let Some(path) = &cli.state_file {
        if let Ok(Some(saved)) = rvs::statefile::StateFile::new(path).read() {
            check_services(cfg, saved.services, saved.fwmark_rules).map_err(|e| {
                anyhow::anyhow!("--handover: state file {}: {}", path.display(), e.message)
            })?;
        }
    }
    // Is there an rvsd to take over from? (A connection of its own for
    // the handover, later: this one could idle out meanwhile.)
    let old = Predecessor::connect(&cli.socket)?.pid();
    // DPDK's af_packet sockets join the fanout group (pid ^ ifindex) &
    // 0xffff: with the same low 16 bits of the pid, ours would join the old
    // process's group and take half its frames until the handover.
    let own = std::process::id();
    if old != 0 && old & 0xffff == own & 0xffff && hotplug.len() < cfg.ports.len() {
        bail!(
            "--handover: this process (pid {own}) would share its af_packet fanout group \
             with the running rvsd (pid {old}); start it again (another pid)"
        );
    }
    let eal = Eal::init(&init).context("EAL initialisation")?;
    let pool = packet_pool(cfg)?;
    let table = match &cfg.conn_table_file {
        Some(path) => Some(
            rvs::conn::Prepared::new(
                path,
                cfg.max_connections,
                cfg.workers.len(),
                Default::default(),
                cfg.conn_table_ipv6,
            )
            .map_err(|e| anyhow::anyhow!("conn_table_file: {e}"))?,
        ),
        None => None,
    };
    let mut ports = Vec::new();
    for (i, pc) in cfg.ports.iter().enumerate() {
        if !hotplug.iter().any(|v| name(v) == pc.device) {
            let (p, a) = super::open_port(pc, cfg, &pool)?;
            ports.push((i, p, a));
        }
    }
    let started = Instant::now();
    let mut predecessor = Predecessor::connect(&cli.socket)?;
    predecessor.ask()?;
    let stale = discard_rx(&pool, &ports, cfg.workers.len() as u16)?;
    log::info!(
        "handover: pid {} stopped forwarding and let go in {} ms; {stale} frame(s) it had \
         forwarded dropped from our af_packet queues",
        predecessor.reply.pid,
        started.elapsed().as_millis()
    );
    Ok(Early {
        eal,
        pool,
        hotplug,
        predecessor,
        table,
        ports,
    })
}

/// Throw away what the ports' receive queues hold: frames that arrived
/// while the predecessor still forwarded (it forwarded its own copies).
/// Bounded (64 bursts a queue): frames arriving meanwhile are new ones.
fn discard_rx(pool: &Mempool, ports: &[(usize, Port, PortAddr)], nq: u16) -> Result<u64> {
    let mut n = 0;
    for q in 0..nq {
        let queues: Vec<(&Port, u16, u16)> = ports.iter().map(|(_, p, _)| (p, q, q)).collect();
        let mut io = DpdkIo::new(pool, &queues).context("draining the receive queues")?;
        let mut frames = Vec::new();
        for port in 0..ports.len() as u16 {
            for _ in 0..64 {
                frames.clear();
                let k = io.rx_burst(port, &mut frames);
                n += k as u64;
                if k == 0 {
                    break;
                }
            }
        }
    }
    Ok(n)
}

pub fn preflight(eal_args: &[String]) -> Result<()> {
    let problems = dpdk::preflight::check(eal_args, &dpdk::preflight::Host::probe());
    if !problems.is_empty() {
        bail!("{}", dpdk::preflight::report(&problems));
    }
    Ok(())
}

pub fn packet_pool(cfg: &DaemonConfig) -> Result<Mempool> {
    Mempool::new("rvs_pkts", cfg.mbufs, 256, dpdk::MBUF_DEFAULT_DATA_ROOM).context("mbuf pool")
}

/// Starts this rvsd's successor: the program at the path it was started
/// from (after an upgrade, the new binary) with the same arguments plus
/// `--handover`, on SIGUSR2 or `rvsadm --handover`. It inherits stdout
/// and stderr (the journal, under systemd) but no other descriptor. One
/// at a time (each takes hugepages and a table file before it asks); a
/// waiter thread reaps each and logs how it ended.
#[derive(Default)]
pub struct Successors {
    starting: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Successors {
    pub fn start(&self) -> std::result::Result<u32, String> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.starting.swap(true, Relaxed) {
            return Err("a successor is already starting".into());
        }
        let mut args = std::env::args_os();
        let prog = args.next().unwrap_or_default();
        let mut rest: Vec<_> = args.collect();
        if !rest.iter().any(|a| a == "--handover") {
            rest.push("--handover".into());
        }
        let mut cmd = std::process::Command::new(&prog);
        // The watchdog is the successor's once it is the main process
        // (sd_watchdog_enabled refuses another pid's).
        cmd.args(&rest).env_remove("WATCHDOG_PID");
        let mut c = match rvs::sys::spawn_without_inherited_fds(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                self.starting.store(false, Relaxed);
                return Err(format!("starting {}: {e}", prog.to_string_lossy()));
            }
        };
        let pid = c.id();
        log::info!(
            "started {} (pid {pid}) to take over",
            prog.to_string_lossy()
        );
        let starting = self.starting.clone();
        let waiter = std::thread::Builder::new()
            .name("rvs-successor".into())
            .spawn(move || {
                let st = c.wait();
                starting.store(false, Relaxed);
                log::info!("successor pid {pid} ended: {st:?}");
            });
        if let Err(e) = waiter {
            log::warn!("successor pid {pid}: no waiter ({e}); it is reaped when rvsd exits");
        }
        Ok(pid)
    }
}

/// SIGUSR2: start the successor (errors are logged; the running rvsd goes
/// on).
pub fn spawn_on_sigusr2(successors: std::sync::Arc<Successors>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])
        .context("installing the SIGUSR2 handler")?;
    std::thread::Builder::new()
        .name("rvs-sigusr2".into())
        .spawn(move || {
            for _ in signals.forever() {
                if let Err(e) = successors.start() {
                    log::warn!("SIGUSR2: {e}");
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ports_are_taken_out_and_the_prefix_made_our_own() {
        let args = s(&[
            "--no-pci",
            "--vdev",
            "net_af_packet0,iface=lb0",
            "--vdev=net_af_packet1,iface=lb1",
            "--vdev=net_null0",
            "--file-prefix",
            "rvs",
        ]);
        let devs = s(&["net_af_packet0", "net_af_packet1"]);
        let (init, hotplug) = split_eal_args(&args, &devs).unwrap();
        assert!(
            hotplug.is_empty(),
            "af_packet ports are opened beside the old ones"
        );
        let pid = std::process::id();
        assert_eq!(
            init,
            s(&[
                "--no-pci",
                "--vdev=net_af_packet0,iface=lb0",
                "--vdev=net_af_packet1,iface=lb1",
                "--vdev=net_null0",
                &format!("--file-prefix=rvs-{pid}")
            ])
        );
        let (init, hotplug) = split_eal_args(
            &s(&["--in-memory", "--vdev=net_tap0,iface=t0"]),
            &s(&["net_tap0"]),
        )
        .unwrap();
        assert_eq!(init, s(&["--in-memory"]), "in memory: no prefix needed");
        assert_eq!(
            hotplug,
            s(&["net_tap0,iface=t0"]),
            "a tap waits for the old one to go"
        );
        let e = split_eal_args(&s(&["-a", "0000:01:00.0"]), &s(&["0000:01:00.0"])).unwrap_err();
        assert!(e.to_string().contains("not a virtual device"), "{e}");
    }
}
