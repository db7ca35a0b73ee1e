//! rvsd: the rvs daemon. Brings up DPDK ports from the configuration file,
//! starts one pinned polling worker per configured core, and serves the
//! control socket on the main thread until SIGINT/SIGTERM (or until a
//! successor has taken its place: `--handover`, SIGUSR2).

#![deny(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use rvs::config::{DaemonConfig, PortConf, TwinKind, VipOwnership};
use rvs::control::server::{Server, ServerOptions};
use rvs::control::Control;
use rvs::dpdk::{self, DpdkIo, Eal, Mempool, Port};
use rvs::neigh::PortAddr;
use rvs::stats::WorkerStats;
use rvs::wire::MacAddr;
use rvs::worker::Worker;

#[path = "rvsd/handover.rs"]
mod handover;
#[path = "rvsd/ports.rs"]
mod ports;
use ports::Ports;

/// Rust Virtual Server daemon: a DPDK layer-4 load balancer.
#[derive(Parser, Debug)]
#[command(name = "rvsd", version, about)]
struct Cli {
    /// Configuration file (JSON): EAL arguments, ports, workers, services.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Control socket path.
    #[arg(long, env = "RVS_SOCKET", default_value = "/run/rvs/rvsd.sock")]
    socket: PathBuf,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format: `text` (timestamped lines; under journald, detected by
    /// $JOURNAL_STREAM, no timestamp and a `<N>` priority prefix instead) or
    /// `json` (one object per line: ts, level, target, msg).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Runtime state file: the last applied table (services, fwmark rules),
    /// saved atomically after every change and loaded at start over the
    /// config file's services. None by default (changes live in memory).
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Validate the configuration file and exit.
    #[arg(long)]
    check: bool,
    /// Take the place of the rvsd serving `--socket` (same configuration,
    /// possibly a newer binary): it stops forwarding only once this one is
    /// ready to start, hands over its ports and connection table file, and
    /// exits. Data ports must be virtual devices. SIGUSR2 to a running
    /// rvsd starts its successor this way.
    #[arg(long)]
    handover: bool,
    /// Replace a `conn_table_file` that is not a connection table of this
    /// rvsd's layout (its connections are lost) instead of refusing to
    /// start.
    #[arg(long)]
    discard_conn_table: bool,
    /// Serve Prometheus metrics at http://ADDRESS:PORT/metrics (overrides
    /// the file's `metrics_listen`).
    #[arg(long, value_name = "ADDRESS:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the kernel's IPVS generic-netlink protocol here, for ipvsadm
    /// and keepalived through librvs_ipvs.so ("none": off). Same access
    /// rule as the control socket (control_group). Default: `ipvs.sock`
    /// beside the control socket (/run/rvs/ipvs.sock), so rvsd instances
    /// with their own control sockets never compete for one path.
    #[arg(long, env = "RVS_IPVS_SOCKET")]
    ipvs_socket: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(cli: &Cli) {
    use std::io::Write;
    let mut b = env_logger::Builder::new();
    b.parse_filters(&cli.log_level);
    match cli.log_format {
        LogFormat::Json => {
            b.format(|f, r| {
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let line = serde_json::json!({
                    "ts": format!("{}.{:03}", ts.as_secs(), ts.subsec_millis()),
                    "level": r.level().as_str(),
                    "target": r.target(),
                    "msg": r.args().to_string(),
                });
                writeln!(f, "{line}")
            });
        }
        // journald stamps each line itself and reads sd-daemon(3) `<N>`
        // priority prefixes.
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            b.format(|f, r| {
                let prio = match r.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                writeln!(f, "<{prio}>{} {}: {}", r.level(), r.target(), r.args())
            });
        }
        LogFormat::Text => {
            b.format_timestamp_millis();
        }
    }
    b.init();
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    if let Err(e) = run(cli) {
        eprintln!("rvsd: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let text = std::fs::read_to_string(&cli.config)
        .with_context(|| format!("reading {}", cli.config.display()))?;
    let cfg = DaemonConfig::from_json(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;

    // --handover: the slow part of a start (EAL, packet pool) first; then
    // the running rvsd stops forwarding and lets go of what we take next.
    let mut early = match cli.handover && !cli.check {
        true => Some(handover::prepare(&cfg, &cli)?),
        false => None,
    };
    let local_ips: Vec<IpAddr> = cfg.own_addrs();
    let mut director = rvs::director::Builder::new()
        .max_connections(cfg.max_connections)
        .workers(cfg.workers.len())
        .local_ips(local_ips);
    // The table on its file, and what a previous rvsd left there (taken
    // over below, once the services are known).
    let mut takeover = None;
    if let (Some(path), false) = (&cfg.conn_table_file, cli.check) {
        let prepared = match early.as_mut().and_then(|e| e.table.take()) {
            Some(p) => p,
            None => rvs::conn::Prepared::new(
                path,
                cfg.max_connections,
                cfg.workers.len(),
                Default::default(),
                cfg.conn_table_ipv6,
            )
            .map_err(|e| anyhow::anyhow!("conn_table_file: {e}"))?,
        };
        let (table, t) = prepared
            .take_over(cli.discard_conn_table)
            .map_err(|e| anyhow::anyhow!("conn_table_file: {e}"))?;
        director = director.conn_table(std::sync::Arc::new(table));
        takeover = Some(t);
    }
    if let Some(t) = &cfg.timeouts {
        director = director.timeouts(rvs::control::timeouts_from(t));
    }
    let mut ctl = director.control();
    let workers = ctl.workers.clone();
    ctl.local_twin = cfg.ports.iter().any(|p| p.kernel_twin.is_some());
    // Services are validated before DPDK is touched: a bad file fails fast.
    ctl.load_with_rules(cfg.services.clone(), Some(cfg.fwmark_rules.clone()))
        .map_err(|e| anyhow::anyhow!("services: {}", e.message))?;
    let state_file = cli.state_file.as_ref().map(rvs::statefile::StateFile::new);
    if let Some(sf) = &state_file {
        load_state(&ctl, sf, cli.check, early.is_some());
    }
    let ctl_opts = ServerOptions {
        group: match &cfg.control_group {
            Some(g) => Some(
                rvs::control::server::resolve_group(g)
                    .map_err(|e| anyhow::anyhow!("control_group: {e}"))?,
            ),
            None => None,
        },
        idle_timeout: Duration::from_millis(cfg.control_idle_timeout_ms),
        ..ServerOptions::default()
    };
    if cli.check {
        // The table file as the start would find it (read, not changed).
        if let Some(path) = &cfg.conn_table_file {
            match rvs::conn::check_file(path) {
                Ok(None) => println!("conn_table_file {}: none yet", path.display()),
                Ok(Some(n)) => println!(
                    "conn_table_file {}: {n} connection(s) to take over",
                    path.display()
                ),
                Err(e) if cli.discard_conn_table => {
                    println!("conn_table_file: {e} (to be discarded)")
                }
                Err(e) => bail!("conn_table_file: {e}"),
            }
        }
        println!("{}: OK", cli.config.display());
        return Ok(());
    }
    if let Some(sf) = state_file {
        // From now on every applied change is saved; saved once here so
        // the file exists (and is writable) from the start.
        sf.write(&ctl.services(), &ctl.fwmark_rules(), &ctl.saved_daemons())
            .with_context(|| format!("state file {}", sf.path().display()))?;
        ctl.state_file = Some(sf);
    }
    // `takeover` lives as long as `run`: it holds the table file's lock.
    if let (Some(t), Some(path)) = (takeover.as_mut(), &cfg.conn_table_file) {
        take_over(&ctl, t, path)?;
    }
    let notify = rvs::sdnotify::Notifier::from_env();

    // Bound before DPDK starts, so a taken port fails fast; after a
    // handover, once the predecessor has gone.
    let metrics_addr = cli.metrics_listen.or(cfg.metrics_listen);
    let metrics = match metrics_addr.filter(|_| early.is_none()) {
        Some(a) => {
            Some(std::net::TcpListener::bind(a).with_context(|| format!("metrics_listen {a}"))?)
        }
        None => None,
    };

    // A device driver that lacks a permission does not fail the EAL, only
    // its own probe: name the missing permission now, not "no such port" later.
    // Kernel twins are virtual devices rvsd adds itself.
    let mut eal_args = cfg.eal_args.clone();
    let mut twin_devs = Vec::new();
    let mut twin_args = Vec::new();
    for (i, pc) in cfg.ports.iter().enumerate() {
        let Some(t) = &pc.kernel_twin else { continue };
        let (dev, arg) = match t.kind {
            TwinKind::Tap => {
                let dev = format!("net_tap_rvs{i}");
                let arg = format!("{dev},iface={}", t.name);
                (dev, arg)
            }
            TwinKind::VirtioUser => {
                if !std::path::Path::new("/dev/vhost-net").exists() {
                    bail!(
                        "ports[{i}]: kernel_twin kind virtio_user needs /dev/vhost-net \
                         (modprobe vhost-net), which this host lacks; use kind \"tap\""
                    );
                }
                let dev = format!("virtio_user_rvs{i}");
                let arg = format!(
                    "{dev},path=/dev/vhost-net,iface={},queues={}",
                    t.name,
                    cfg.workers.len()
                );
                (dev, arg)
            }
        };
        eal_args.push(format!("--vdev={arg}"));
        twin_args.push(arg);
        twin_devs.push((i, dev, t.clone()));
    }
    let (eal, early_pool, predecessor, mut pre_opened) = match early {
        Some(e) => {
            // The predecessor has closed what cannot be shared: ports that
            // are not af_packet, and the twins.
            for d in e.hotplug.iter().chain(&twin_args) {
                dpdk::hotplug(d).with_context(|| format!("--handover: probing {d}"))?;
            }
            (e.eal, Some(e.pool), Some(e.predecessor), e.ports)
        }
        None => {
            handover::preflight(&eal_args)?;
            let eal = Eal::init(&eal_args).context("EAL initialisation")?;
            (eal, None, None, Vec::new())
        }
    };
    // Live capture (dpdk-dumpcap) needs multi-process support, which
    // registering worker threads as lcores would switch off.
    if cfg.live_capture {
        dpdk::enable_pdump().context("live_capture: registering DPDK pdump")?;
        log::info!("live capture on: dpdk-dumpcap --file-prefix=PREFIX -i PORT can attach");
    }
    let nq = cfg.workers.len() as u16;
    let pool = match early_pool {
        Some(p) => p,
        None => handover::packet_pool(&cfg)?,
    };
    let mut ports = Vec::new();
    let mut addrs = Vec::new();
    let mut info = Vec::new();
    for (i, pc) in cfg.ports.iter().enumerate() {
        let (port, addr) = match pre_opened.iter().position(|(j, ..)| *j == i) {
            Some(k) => {
                let (_, p, a) = pre_opened.remove(k);
                (p, a)
            }
            None => open_port(pc, &cfg, &pool)?,
        };
        info.push((pc.device.clone(), addr.mac, pc.ipv4.to_string()));
        addrs.push(addr);
        ports.push(port);
    }

    // The twins: as many queues as the data ports, the port's MAC and
    // address on the kernel side (set with iproute2, as an operator would).
    let mut twin_ports = Vec::new();
    let mut twin_of: Vec<Option<rvs::worker::TwinQueue>> = vec![None; cfg.ports.len()];
    let mut twin_names = Vec::new();
    for (i, dev, t) in &twin_devs {
        let id = Port::by_name(dev).with_context(|| format!("kernel twin {dev} ({})", t.name))?;
        let mut port = Port::configure(id, nq, nq, cfg.rx_descriptors, cfg.tx_descriptors, &pool)
            .with_context(|| format!("configuring kernel twin {}", t.name))?;
        port.start()
            .with_context(|| format!("starting kernel twin {}", t.name))?;
        let mac = addrs[*i].mac.to_string();
        let cidr = cfg.ports[*i].ipv4.to_string();
        // The port's IPv6 address too: the kernel answers Neighbor
        // Discovery for it (and for the VIPs keepalived puts there).
        let cidr6 = cfg.ports[*i].ipv6.map(|c| c.to_string());
        let mut steps = vec![
            vec!["link", "set", "dev", &t.name, "down"],
            vec!["link", "set", "dev", &t.name, "address", &mac],
            vec!["addr", "replace", &cidr, "dev", &t.name],
        ];
        if let Some(c6) = &cidr6 {
            // A namespace or host may default to IPv6 off for new devices.
            let knob = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", t.name);
            if let Err(e) = std::fs::write(&knob, "0") {
                bail!("kernel twin {}: turning IPv6 on ({knob}): {e}", t.name);
            }
            steps.push(vec!["-6", "addr", "replace", c6, "dev", &t.name, "nodad"]);
        }
        steps.push(vec!["link", "set", "dev", &t.name, "up"]);
        for args in steps {
            let st = std::process::Command::new("ip")
                .args(&args)
                .status()
                .with_context(|| format!("running ip {}", args.join(" ")))?;
            if !st.success() {
                bail!("kernel twin {}: ip {} failed", t.name, args.join(" "));
            }
        }
        log::info!(
            "kernel twin {} ({dev}) for {}: mac {mac} address {cidr}",
            t.name,
            cfg.ports[*i].device
        );
        twin_of[*i] = Some(rvs::worker::TwinQueue {
            dev_port: (cfg.ports.len() + twin_ports.len()) as u16,
            rate_pps: t.rate_pps,
            burst: t.burst,
        });
        twin_names.push((t.name.clone(), *i as u16));
        twin_ports.push(port);
    }
    let owned = match cfg.vip_ownership {
        VipOwnership::Always => None,
        VipOwnership::Kernel => Some(Arc::new(rvs::ownership::OwnedSet::default())),
    };
    let exc = rvs::ownership::Exception {
        twin: twin_of.iter().map(Option::is_some).collect(),
        owned: owned.clone(),
    };

    let dp = Arc::new(
        director
            .ports(addrs)
            .exception(exc)
            .syn_key(match &cfg.synproxy_secret {
                Some(s) => rvs::synproxy::SynKey::from_hex(s).map_err(anyhow::Error::msg)?,
                None => rvs::synproxy::SynKey::random().context("reading a SYN-cookie secret")?,
            })
            .sloppy_tcp(cfg.sloppy_tcp)
            .dataplane(&ctl),
    );

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let successors = Arc::new(handover::Successors::default());
    handover::spawn_on_sigusr2(successors.clone())?;
    let workers_stop = Arc::new(AtomicBool::new(false));
    let worker_handles = Arc::new(Mutex::new(Vec::new()));

    let mut handles = Vec::new();
    if let Some(o) = &owned {
        handles.push(
            rvs::ownership::watch(twin_names.clone(), o.clone(), stop.clone())
                .context("vip_ownership kernel: following the twins' addresses")?,
        );
    }
    for (i, &core) in cfg.workers.iter().enumerate() {
        let queues: Vec<(&Port, u16, u16)> = ports
            .iter()
            .chain(twin_ports.iter())
            .map(|p| (p, i as u16, i as u16))
            .collect();
        let io = DpdkIo::new(&pool, &queues).with_context(|| format!("worker {i} queues"))?;
        let mut w = Worker::new(
            i,
            cfg.workers.len(),
            io,
            dp.clone(),
            workers.clone(),
            Duration::from_micros(cfg.idle_sleep_us as u64),
        );
        if !twin_ports.is_empty() {
            w = w.with_twins(twin_of.clone());
        }
        let stop = workers_stop.clone();
        let live_capture = cfg.live_capture;
        let h = std::thread::Builder::new()
            .name(format!("rvs-worker{i}"))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("worker {i}: could not pin to core {core}");
                }
                if live_capture {
                    log::info!("worker {i} on core {core} (not an lcore: live capture)");
                } else {
                    match dpdk::register_thread() {
                        Ok(l) => log::info!("worker {i} on core {core} (lcore {l})"),
                        Err(e) => {
                            log::warn!("worker {i}: no lcore id ({e}); mempool cache unused")
                        }
                    }
                }
                w.run(&stop);
            })?;
        worker_handles.lock().push(h);
    }
    if let Some(p) = &predecessor {
        log::info!(
            "handover: forwarding again {} ms after pid {} stopped",
            rvs::sys::boottime_ms().saturating_sub(p.reply.stopped_ms),
            p.reply.pid
        );
    }

    let announcer = cfg.announce.as_ref().map(|a| {
        let dev = (a.dev.clone()).or_else(|| twin_names.first().map(|t| t.0.clone()));
        let dev = dev.unwrap_or_default();
        Arc::new(rvs::announce::Announcer::new(a.table, &dev))
    });
    let handover_failed = Arc::new(AtomicBool::new(false));
    let handed_over = Arc::new(AtomicBool::new(false));
    ctl.ports = Some(Box::new(Ports {
        ports: Mutex::new(ports),
        info,
        pool: pool.clone(),
        owned: owned.clone(),
        twins: Mutex::new(twin_ports),
        workers: worker_handles.clone(),
        workers_stop: workers_stop.clone(),
        stop: stop.clone(),
        takeover: Mutex::new(takeover),
        handover_failed: handover_failed.clone(),
        handed_over: handed_over.clone(),
        successors,
        announcer: announcer.clone(),
    }));
    let ctl = Arc::new(ctl);
    if let Some(a) = &announcer {
        let (c, o) = (ctl.clone(), owned.clone());
        handles.push(
            rvs::announce::spawn(
                a.clone(),
                move || c.serving_vips(),
                move |vip| {
                    o.as_ref()
                        .is_none_or(|o| o.set.load().contains_key(&IpAddr::V4(vip)))
                },
                stop.clone(),
            )
            .context("announce: starting")?,
        );
    }
    let bound = match predecessor {
        Some(_) => Server::bind_replacing(&cli.socket, ctl_opts.clone()),
        None => Server::bind_with(&cli.socket, ctl_opts.clone()),
    };
    let server = match bound {
        Ok(s) => s,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            workers_stop.store(true, Ordering::Relaxed);
            for h in handles.into_iter().chain(worker_handles.lock().drain(..)) {
                let _ = h.join();
            }
            bail!("control socket {}: {e}", cli.socket.display());
        }
    };
    // The predecessor exits now; its IPVS socket and metrics port are ours
    // once it has gone.
    let mut metrics = metrics;
    let handed_to_us = predecessor.is_some();
    if let Some(p) = predecessor {
        // systemd follows the successor (NotifyAccess=all in the unit)
        // before the process it knows exits.
        // One datagram: the watchdog's clock restarts with the new pid.
        notify.notify(&format!("MAINPID={}\nWATCHDOG=1", std::process::id()));
        let old = p.pid();
        p.done();
        if !handover::wait_gone(old, Duration::from_secs(10)) {
            log::warn!("handover: pid {old} still runs after 10 s");
        }
        // Not fatal: forwarding and the control socket are ours already.
        if let Some(a) = metrics_addr {
            metrics = handover::bind_metrics(a);
        }
    }
    handles.push(rvs::service::spawn_estimator(
        ctl.table.clone(),
        stop.clone(),
    )?);
    // Not fatal: the JSON socket is the daemon's own interface. Stopped
    // (bounded) when dropped, before the control plane is taken apart.
    let ipvs_socket = cli.ipvs_socket.clone().unwrap_or_else(|| {
        cli.socket
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("ipvs.sock")
    });
    let ipvs = match ipvs_socket.as_os_str() != "none" {
        true => match match handed_to_us {
            // The old rvsd leaves the path alone if it is still there.
            true => {
                rvs::ipvs_nl::server::IpvsServer::bind_replacing(&ipvs_socket, ctl_opts.clone())
            }
            false => rvs::ipvs_nl::server::IpvsServer::bind(&ipvs_socket, ctl_opts.clone()),
        } {
            Ok(s) => Some(s.start(ctl.clone(), stop.clone())?),
            Err(e) => {
                log::warn!("ipvs netlink socket {}: {e}", ipvs_socket.display());
                None
            }
        },
        false => None,
    };
    if let Some(l) = metrics {
        log::info!("metrics at http://{}/metrics", l.local_addr()?);
        handles.push(rvs::metrics::spawn_server(l, ctl.clone(), stop.clone())?);
    }
    // Health checks probe from this host's kernel stack (see README, "Health
    // checks"); they feed the control plane, which rebuilds the snapshot.
    let health =
        rvs::health::HealthChecker::start(ctl.clone()).context("starting the health checker")?;
    let ready = format!(
        "{} port(s), {} worker(s), {} service(s), control socket {}",
        cfg.ports.len(),
        cfg.workers.len(),
        ctl.services().len(),
        cli.socket.display()
    );
    log::info!("ready: {ready}");
    notify.ready(&ready);
    if let Some(period) = rvs::sdnotify::watchdog_interval() {
        if notify.enabled() {
            handles.push(spawn_watchdog(
                notify,
                period,
                workers.clone(),
                workers_stop.clone(),
                stop.clone(),
            )?);
        }
    }
    server.run(ctl.clone(), &stop);
    log::info!("stopping");
    // After a handover systemd's service goes on in the successor; a
    // failed one ends with an error exit, which is what restarts rvsd
    // (STOPPING=1 from this process could stop a successor that runs).
    if !handed_over.load(Ordering::Relaxed) && !ctl.is_handing_over() {
        rvs::sdnotify::Notifier::from_env().stopping();
    }
    // A fleet director withdraws its routes first and forwards on for the
    // grace period: the router moves new flows away, established ones
    // finish here or move (sloppy_tcp on the others).
    if let (Some(a), Some(conf)) = (&announcer, &cfg.announce) {
        if !handed_over.load(Ordering::Relaxed) && !ctl.is_handing_over() {
            a.withdraw_all();
            if conf.drain_grace_s > 0 {
                log::info!("draining: forwarding {} s more", conf.drain_grace_s);
                // STOPPING=1 is sent: systemd now allows the unit's
                // TimeoutStopSec (30 s in rvsd.service) for the exit. Each
                // step asks for two steps more (EXTEND_TIMEOUT_USEC), so a
                // longer grace is not cut short by SIGKILL; the watchdog
                // is pinged too, for a supervisor that still counts it.
                let n = rvs::sdnotify::Notifier::from_env();
                let step = rvs::sdnotify::watchdog_interval().map_or(Duration::from_secs(1), |p| {
                    (p / 2).min(Duration::from_secs(1))
                });
                let end =
                    std::time::Instant::now() + Duration::from_secs(conf.drain_grace_s.into());
                loop {
                    let left = end.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    n.notify(&format!(
                        "EXTEND_TIMEOUT_USEC={}\nWATCHDOG=1",
                        2 * step.as_micros()
                    ));
                    std::thread::sleep(left.min(step));
                }
            }
        }
    }
    health.stop();
    drop(ipvs);
    workers_stop.store(true, Ordering::Relaxed);
    let workers_left: Vec<_> = worker_handles.lock().drain(..).collect();
    for h in handles.into_iter().chain(workers_left) {
        let _ = h.join();
    }
    drop(server);
    // Workers are gone: their DpdkIo handles are dropped, so the ports can
    // stop and close, then the pool, then the EAL.
    if let Ok(ctl) = Arc::try_unwrap(ctl) {
        drop(ctl);
    }
    drop(dp);
    drop(pool);
    drop(eal);
    log::info!("stopped");
    if handover_failed.load(Ordering::Relaxed) {
        bail!("handover: the successor did not confirm; stopped (restart to take the table over)");
    }
    Ok(())
}

/// Replace the config file's table with the state file's, if there is one.
/// A state file that cannot be used (damaged, or no longer valid with this
/// config file) is logged loudly and set aside; rvsd then runs with the
/// config file's services rather than not at all (`--check` only reports).
/// Sync daemons were running before the restart: start a backup daemon
/// with the backup's configuration if one ran, else the master's. A
/// director that has just started has no connections to offer; as backup
/// it learns the peer's, and keepalived makes it master again (stopping
/// the backup) when VRRP says so.
fn restart_sync(ctl: &Control, saved: &[rvs::statefile::SavedDaemon], handover: bool) {
    use rvs::sync::Role;
    if handover {
        // A handover is no restart: the director keeps its VRRP state, so
        // its daemons run on as they ran (a master goes on sending).
        for d in saved {
            match ctl.start_daemon(d.state, d.conf.clone()) {
                Ok(c) => log::info!(
                    "handover: sync daemon {} restarted on {}",
                    d.state.name(),
                    c.mcast_ifn
                ),
                Err(e) => log::error!(
                    "handover: sync daemon {} not restarted: {}",
                    d.state.name(),
                    e.message
                ),
            }
        }
        return;
    }
    let Some(d) = saved
        .iter()
        .find(|d| d.state == Role::Backup)
        .or_else(|| saved.first())
    else {
        return;
    };
    let mut conf = d.conf.clone();
    // The backup's maxlen follows its interface (start_sync_thread).
    conf.sync_maxlen = 0;
    match ctl.start_daemon(Role::Backup, conf) {
        Ok(c) => log::info!(
            "state file: the sync daemon that ran before ({}) restarted as backup on {}",
            d.state.name(),
            c.mcast_ifn
        ),
        Err(e) => log::error!("state file: sync daemon not restarted: {}", e.message),
    }
}

/// Take over the connections a previous rvsd left in the table file, then
/// give the new table the file's name.
fn take_over(ctl: &Control, t: &mut rvs::conn::Takeover, path: &std::path::Path) -> Result<()> {
    if let Some(prev) = &t.previous {
        let started = std::time::Instant::now();
        let r = ctl.adopt(prev);
        log::info!(
            "conn_table_file {}: {} connection(s) taken over in {} ms ({} expired, {} without \
             their service or real server, {} SYN-proxy handshakes unfinished, {} without room)",
            path.display(),
            r.adopted,
            started.elapsed().as_millis(),
            r.expired,
            r.no_dest,
            r.unfinished,
            r.full
        );
    }
    t.commit()
        .with_context(|| format!("conn_table_file {}", path.display()))
}

fn load_state(ctl: &Control, sf: &rvs::statefile::StateFile, check: bool, handover: bool) {
    let problem = match sf.read() {
        Ok(None) => {
            log::info!(
                "state file {}: none yet; the config file's services",
                sf.path().display()
            );
            return;
        }
        Ok(Some(st)) => {
            let n = st.services.len();
            match ctl.load_with_rules(st.services, Some(st.fwmark_rules)) {
                Ok(()) => {
                    log::info!(
                        "state file {}: {n} service(s) restored (they replace the config file's)",
                        sf.path().display()
                    );
                    if !check {
                        restart_sync(ctl, &st.sync, handover);
                    }
                    return;
                }
                Err(e) => format!("{}: not valid here: {}", sf.path().display(), e.message),
            }
        }
        Err(e) => e,
    };
    if check {
        log::error!(
            "state file {problem}; rvsd would set it aside and use the config file's services"
        );
        return;
    }
    match sf.set_aside() {
        Ok(to) => log::error!(
            "state file {problem}; IGNORED and moved to {}: running with the config file's services",
            to.display()
        ),
        Err(e) => log::error!(
            "state file {problem}; IGNORED (could not move it aside: {e}): running with the config file's services"
        ),
    }
}

/// Ping systemd's watchdog at half its interval, but only while every
/// worker's loop counter advances: a stuck worker stops the pings and
/// systemd restarts rvsd (`WatchdogSec=`, `Restart=on-failure`).
fn spawn_watchdog(
    notify: rvs::sdnotify::Notifier,
    period: Duration,
    workers: Arc<[CachePadded<WorkerStats>]>,
    workers_stopped: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let half = period / 2;
    log::info!("systemd watchdog: {period:?}, pinged every {half:?} while the workers poll");
    let loops = move || workers.iter().map(|w| w.loops.get()).collect::<Vec<u64>>();
    Ok(std::thread::Builder::new()
        .name("rvs-watchdog".into())
        .spawn(move || {
            let mut wd = rvs::sdnotify::Watchdog::new(&loops());
            // At once: after a handover the previous process's last ping
            // may be most of a period old.
            notify.notify("WATCHDOG=1");
            let mut next = std::time::Instant::now() + half;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(half));
                if std::time::Instant::now() < next {
                    continue;
                }
                next += half;
                // Workers stopped on purpose (a handover under way): the
                // process is alive and guarded by the handover's own limit
                // (not once it stops: a hung exit must not be hidden).
                if workers_stopped.load(Ordering::Relaxed) {
                    notify.notify("WATCHDOG=1");
                    continue;
                }
                match wd.check(&loops()) {
                    Ok(()) => notify.notify("WATCHDOG=1"),
                    Err(stuck) => log::error!(
                        "worker(s) {stuck:?} made no progress in {half:?}: no watchdog ping"
                    ),
                }
            }
        })?)
}

/// Probe-time port `pc`: configured with a queue pair per worker, started,
/// promiscuous; its address as the data path sees it.
fn open_port(pc: &PortConf, cfg: &DaemonConfig, pool: &Mempool) -> Result<(Port, PortAddr)> {
    let nq = cfg.workers.len() as u16;
    let id = Port::by_name(&pc.device).with_context(|| {
        format!(
            "port {}: its driver did not create it (see the EAL log above; \
             permissions a container must grant: docs/containers.md)",
            pc.device
        )
    })?;
    let mut port = Port::configure(id, nq, nq, cfg.rx_descriptors, cfg.tx_descriptors, pool)
        .with_context(|| format!("configuring {} with {nq} queue(s)", pc.device))?;
    port.start()
        .with_context(|| format!("starting {}", pc.device))?;
    if let Err(e) = port.set_promiscuous(true) {
        log::warn!("{}: promiscuous mode: {e}", pc.device);
    }
    let mac = MacAddr(port.mac()?);
    let pi = port.info()?;
    log::info!(
        "port {} ({}, driver {}) mac {mac} address {} rss={}",
        pc.device,
        id,
        pi.driver,
        pc.ipv4,
        port.rss_enabled()
    );
    if nq > 1 && !port.rss_enabled() {
        log::warn!(
            "{}: {nq} queues without RSS; flows are spread only if the device does it itself",
            pc.device
        );
    }
    let addr = PortAddr {
        mac,
        cidr: pc.ipv4,
        gateway: pc.gateway,
        mtu: port.mtu().unwrap_or(1500),
        ipv6: pc.ipv6,
        gateway6: pc.gateway6,
    };
    Ok((port, addr))
}
