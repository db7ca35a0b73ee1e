//! End-to-end test helpers: the network-namespace NAT topology built by
//! `tests/lib/topo.sh`, rvsd run inside it as a subprocess, rvsadm and curl.
//!
//! Owns the namespaces, processes and state files a test creates, and removes
//! them on drop, also when the test panics. Declare an [`Rvsd`] after the
//! [`Topology`] it runs in, so it is dropped (stopped) first.
//!
//! ```ignore
//! mod common;
//! use common::topo::{self, Rvsd, Topology};
//!
//! let t = Topology::up_unique();
//! let rvsd = Rvsd::start(&t, &t.default_config());
//! rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", "rr"]);
//! let body = topo::curl_from(&t.client_ns(), "http://10.0.0.100/").unwrap();
//! ```
//!
//! Everything here needs root. The binaries come from `CARGO_BIN_EXE_*`, which
//! cargo sets only when compiling integration tests (and benches): this module
//! is meant for `tests/*.rs` only.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const VIP: &str = "10.0.0.100";
pub const CLIENT_IP: &str = "10.0.0.2";
pub const LB0_IP: &str = "10.0.0.1";
pub const LB1_IP: &str = "10.0.1.1";
pub const RS1_IP: &str = "10.0.1.11";
pub const RS2_IP: &str = "10.0.1.12";

/// The daemon and CLI under test.
pub const RVSD_BIN: &str = env!("CARGO_BIN_EXE_rvsd");
pub const RVSADM_BIN: &str = env!("CARGO_BIN_EXE_rvsadm");

/// Default bound for helper commands; every wait in this module is bounded.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long rvsd may take to create its control socket.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long rvsd may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn topo_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lib/topo.sh")
}

/// A topology name unique on this machine while this process runs: "rv" and
/// the pid (mod 100000), plus a counter after the first one in a process, so
/// tests in parallel processes and threads never share namespaces.
pub fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = format!("rv{}", std::process::id() % 100_000);
    if n == 0 {
        base
    } else {
        format!("{base}_{n}")
    }
}

/// The EAL memory arguments: `RVS_EAL_MEM` (as exported by tests/lib/setup.sh)
/// if set, else `--in-memory` when at least 256 free 2 MB hugepages sit on a
/// mounted hugetlbfs, else `--no-huge -m 512` (DPDK rejects the two together).
pub fn eal_mem_args() -> Vec<String> {
    if let Ok(v) = std::env::var("RVS_EAL_MEM") {
        if !v.trim().is_empty() {
            return v.split_whitespace().map(str::to_owned).collect();
        }
    }
    let free: u64 =
        std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false);
    if free >= 256 && mounted {
        vec!["--in-memory".into()]
    } else {
        ["--no-huge", "-m", "512"].map(String::from).to_vec()
    }
}

/// Runs `cmd` with stdin closed, collecting its output, and kills it after
/// `timeout` (the returned status then shows the kill; stderr says so).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {desc}: {e}"));
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_t = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("wait for {desc}: {e}"),
        }
    };
    let stdout = out_t.join().unwrap_or_default();
    let mut stderr = err_t.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[killed after {timeout:?}: {desc}]\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Runs `args` inside network namespace `ns` (bounded by [`CMD_TIMEOUT`]).
pub fn ns_exec<S: AsRef<str>>(ns: &str, args: &[S]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    cmd.args(args.iter().map(AsRef::as_ref));
    run_with_timeout(&mut cmd, CMD_TIMEOUT)
}

/// Like [`ns_exec`], but panics with the command's output unless it succeeds;
/// returns its stdout.
pub fn ns_exec_ok<S: AsRef<str>>(ns: &str, args: &[S]) -> String {
    let out = ns_exec(ns, args);
    if !out.status.success() {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        panic!("in {ns}: {args:?} failed: {}", describe(&out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `rvsadm --socket SOCKET ARGS...` from the root namespace (the control
/// socket is a filesystem path, reachable from any network namespace).
pub fn rvsadm<S: AsRef<str>>(socket: &Path, args: &[S]) -> Output {
    let mut cmd = Command::new(RVSADM_BIN);
    cmd.arg("--socket").arg(socket);
    cmd.args(args.iter().map(AsRef::as_ref));
    run_with_timeout(&mut cmd, Duration::from_secs(10))
}

/// `curl -sS --max-time 5 URL` from namespace `ns`: the body, or an error that
/// says what curl said.
pub fn curl_from(ns: &str, url: &str) -> Result<String, String> {
    let out = ns_exec(ns, &["curl", "-sS", "--max-time", "5", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("curl {url} from {ns}: {}", describe(&out)))
    }
}

/// One line for a failed command: status, stderr and stdout.
pub fn describe(out: &Output) -> String {
    format!(
        "{}; stderr: {}; stdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

/// Namespace names in `ip netns list` that belong to topology `name`.
pub fn namespaces_of(name: &str) -> Vec<String> {
    let out = run_with_timeout(Command::new("ip").args(["netns", "list"]), CMD_TIMEOUT);
    let prefix = format!("{name}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The NAT topology of tests/lib/topo.sh; torn down on drop.
///
/// Namespaces: `NAME-c` (client 10.0.0.2), `NAME-lb` (director: lb0, lb1 without
/// addresses, for rvsd), `NAME-sw` (bridge), `NAME-rs1`/`NAME-rs2` (nginx on
/// 10.0.1.11/12:80 answering "rs1\n"/"rs2\n" at `/`, and `/big`, 100 KB).
pub struct Topology {
    pub name: String,
    pub state_dir: PathBuf,
    /// The facts topo.sh wrote to STATE_DIR/env (VIP, CLIENT_NS, RS1_MAC, ...).
    pub env: HashMap<String, String>,
    rvsd_count: AtomicUsize,
}

impl Topology {
    /// Builds topology `name` (replacing a leftover one of that name). Panics
    /// with topo.sh's output if that fails; topo.sh then removes what it built.
    pub fn up(name: &str) -> Topology {
        Topology::up_mode(name, "nat")
    }

    /// [`Topology::up`] in `mode` "nat", "dr" or "tun" (see topo.sh).
    pub fn up_mode(name: &str, mode: &str) -> Topology {
        let out = run_with_timeout(
            Command::new("bash")
                .arg(topo_script())
                .args(["up", name, mode]),
            Duration::from_secs(120),
        );
        if !out.status.success() {
            panic!("topo.sh up {name} failed: {}", describe(&out));
        }
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<HashMap<_, _>>();
        let state_dir = PathBuf::from(env.get("STATE_DIR").expect("topo.sh printed STATE_DIR"));
        Topology {
            name: name.to_owned(),
            state_dir,
            env,
            rvsd_count: AtomicUsize::new(0),
        }
    }

    /// [`Topology::up`] with a [`unique_name`].
    pub fn up_unique() -> Topology {
        Topology::up(&unique_name())
    }

    /// [`Topology::up_mode`] with a [`unique_name`].
    pub fn up_unique_mode(mode: &str) -> Topology {
        Topology::up_mode(&unique_name(), mode)
    }

    /// "nat", "dr" or "tun".
    pub fn mode(&self) -> &str {
        self.env.get("MODE").map(String::as_str).unwrap_or("nat")
    }

    /// The namespace of `role`: "c", "lb", "sw", "rs1" or "rs2".
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }
    pub fn client_ns(&self) -> String {
        self.ns("c")
    }
    pub fn lb_ns(&self) -> String {
        self.ns("lb")
    }
    pub fn sw_ns(&self) -> String {
        self.ns("sw")
    }
    /// Real server `n` (1 or 2).
    pub fn rs_ns(&self, n: usize) -> String {
        self.ns(&format!("rs{n}"))
    }

    /// A fact from the env file, e.g. `t.fact("LB0_MAC")`.
    pub fn fact(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {}/env", self.state_dir.display()))
    }

    /// EAL arguments for rvsd in this topology: both af_packet ports, main
    /// lcore 0, memory per [`eal_mem_args`] (with a per-topology file prefix
    /// when not `--in-memory`, so daemons side by side do not collide).
    pub fn eal_args(&self) -> Vec<String> {
        let mem = eal_mem_args();
        let mut args = vec!["--no-pci".to_owned()];
        let in_memory = mem.iter().any(|a| a == "--in-memory");
        args.extend(mem);
        if !in_memory {
            args.extend(["--file-prefix".to_owned(), self.name.clone()]);
        }
        args.extend(["-l", "0"].map(String::from));
        if matches!(self.mode(), "nat" | "fullnat") {
            args.extend(
                [
                    "--vdev",
                    "net_af_packet0,iface=lb0",
                    "--vdev",
                    "net_af_packet1,iface=lb1",
                ]
                .map(String::from),
            );
        } else {
            args.extend(["--vdev", "net_af_packet0,iface=lb1"].map(String::from));
        }
        args
    }

    /// The rvsd config of this topology with no services: port 0 faces the
    /// client (10.0.0.1/24), port 1 the real servers (10.0.1.1/24), one worker
    /// on lcore 1. Tests edit the returned value as they need.
    pub fn default_config(&self) -> Value {
        let ports = if matches!(self.mode(), "nat" | "fullnat") {
            json!([
                {"device": "net_af_packet0", "ipv4": format!("{LB0_IP}/24")},
                {"device": "net_af_packet1", "ipv4": format!("{LB1_IP}/24")}
            ])
        } else {
            json!([{"device": "net_af_packet0", "ipv4": format!("{LB1_IP}/24")}])
        };
        json!({
            "eal_args": self.eal_args(),
            "ports": ports,
            "workers": [1],
            "idle_sleep_us": 50,
            "services": []
        })
    }

    /// [`Topology::default_config`] with a kernel twin `rvs0` on port 0,
    /// and the director namespace's kernel kept from answering on the
    /// af_packet end lb0 (see e2e_exception: with the port address on the
    /// twin, strict reverse-path filtering on lb0).
    pub fn twin_config(&self) -> Value {
        ns_exec_ok(
            &self.lb_ns(),
            &["sysctl", "-qw", "net.ipv4.conf.lb0.rp_filter=1"],
        );
        let mut c = self.default_config();
        c["ports"][0]["kernel_twin"] = json!({"kind": "tap", "name": "rvs0"});
        c
    }

    /// nginx's default keep-alive timeout (75 s) instead of the topology's
    /// 5 s, on both real servers (restarted). For a test that holds a
    /// keep-alive connection idle across an event: a failover (a request
    /// caught in its window reaches the server after TCP's backoff,
    /// retries at 0.2, 0.6, 1.4, 3, 6.2 s) or rvsd's restart, slow on a
    /// loaded machine. A 5 s idle timeout could close the connection first,
    /// which would be the server's doing, not the director's.
    pub fn nginx_default_keepalive(&self) {
        for rs in ["rs1", "rs2"] {
            let conf = self.state_dir.join(rs).join("nginx.conf");
            let text = std::fs::read_to_string(&conf).unwrap();
            assert!(text.contains("keepalive_timeout 5s;"), "{text}");
            std::fs::write(
                &conf,
                text.replace("keepalive_timeout 5s;", "keepalive_timeout 75s;"),
            )
            .unwrap();
            self.nginx_stop(rs);
            self.nginx_start(rs);
        }
    }

    /// Stops nginx on "rs1" or "rs2" and waits until it no longer listens.
    pub fn nginx_stop(&self, rs: &str) {
        self.topo_cmd(&["nginx-stop", &self.name, rs]);
    }

    /// Starts nginx on "rs1" or "rs2" and waits until it listens.
    pub fn nginx_start(&self, rs: &str) {
        self.topo_cmd(&["nginx-start", &self.name, rs]);
    }

    fn topo_cmd(&self, args: &[&str]) {
        let out = run_with_timeout(
            Command::new("bash").arg(topo_script()).args(args),
            CMD_TIMEOUT,
        );
        if !out.status.success() {
            panic!("topo.sh {args:?} failed: {}", describe(&out));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let out = run_with_timeout(
            Command::new("bash")
                .arg(topo_script())
                .args(["down", &self.name]),
            Duration::from_secs(60),
        );
        if !out.status.success() {
            eprintln!("topo.sh down {} failed: {}", self.name, describe(&out));
        }
    }
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", describe(&out));
}

/// Checksum and segmentation offloads off on `ifc` in `ns` (af_packet
/// would otherwise see frames bigger than the MTU, without checksums).
pub fn offloads_off(ns: &str, ifc: &str) {
    let out = ns_exec(
        ns,
        &[
            "ethtool", "-K", ifc, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ],
    );
    if !out.status.success() {
        ns_exec_ok(
            ns,
            &[
                "ethtool", "-K", ifc, "tx", "off", "gso", "off", "gro", "off",
            ],
        );
    }
}

/// A second director namespace beside a topology, NAME-lb2: loopback up,
/// no IPv6, no forwarding, and its kernel's management interface mgmt0
/// 10.0.1.251/24 on the topology's bridge (peer p-mgmt2). Deleting the
/// namespace on drop removes every veth with an end in it.
pub struct SecondNs {
    pub ns: String,
}

impl SecondNs {
    pub fn up(topo: &Topology) -> SecondNs {
        let ns = topo.ns("lb2");
        let sw = topo.sw_ns();
        ip(&["netns", "add", &ns]);
        let d = SecondNs { ns: ns.clone() };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns_exec_ok(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                "net.ipv4.ip_forward=0",
            ],
        );
        d.veth("mgmt0", "p-mgmt2", &sw);
        ip(&["-n", &sw, "link", "set", "p-mgmt2", "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", "10.0.1.251/24", "dev", "mgmt0"]);
        d
    }

    /// A veth pair: `ifc` here, `peer` in namespace `peer_ns` (this one
    /// too if it is `self.ns`), offloads off on both; `ifc` up, `peer`
    /// left for the caller (enslave it, bring it up).
    pub fn veth(&self, ifc: &str, peer: &str, peer_ns: &str) {
        let ns = &self.ns;
        ip(&[
            "-n", ns, "link", "add", ifc, "type", "veth", "peer", "name", peer, "netns", peer_ns,
        ]);
        offloads_off(ns, ifc);
        offloads_off(peer_ns, peer);
        ip(&["-n", ns, "link", "set", ifc, "up"]);
    }
}

impl Drop for SecondNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

impl Topology {
    /// A second rvsd's configuration: this topology's, its af_packet ports
    /// on other interfaces (`ifaces`: this topology's name, the other) and
    /// its own EAL file prefix.
    pub fn second_config(&self, ifaces: &[(&str, &str)]) -> Value {
        let mut c = self.default_config();
        let args: Vec<Value> = c["eal_args"]
            .as_array()
            .expect("eal_args")
            .iter()
            .map(|v| {
                let mut s = v.as_str().unwrap_or_default().to_owned();
                for (a, b) in ifaces {
                    s = s.replace(&format!("iface={a}"), &format!("iface={b}"));
                }
                json!(if s == self.name {
                    format!("{}b", self.name)
                } else {
                    s
                })
            })
            .collect();
        c["eal_args"] = json!(args);
        c
    }
}

/// Starts `bin` in namespace `ns` (`ip netns exec` execs it, so the child's
/// pid is rvsd's), stdout and stderr to `log`.
fn spawn_rvsd(
    bin: &Path,
    ns: &str,
    config: &Path,
    socket: &Path,
    args: &[String],
    log: File,
) -> Child {
    let log_err = log.try_clone().expect("clone log handle");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(bin)
        .arg("--config")
        .arg(config)
        .arg("--socket")
        .arg(socket)
        .args(["--log-level", "info"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()))
}

/// Is process `pid` there (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.iter()
            .rposition(|&b| b == b')')
            .and_then(|i| st[i + 1..].iter().find(|b| !b.is_ascii_whitespace()))
            .is_some_and(|&state| state != b'Z' && state != b'X')
    })
}

/// SIGTERM to `pid` (an rvsd that is no child of the test, e.g. one a
/// SIGUSR2 started), then SIGKILL after [`STOP_TIMEOUT`]; true if it
/// exited on SIGTERM.
pub fn stop_pid(pid: u32) -> bool {
    let alive = || alive(pid);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    if alive() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        return false;
    }
    true
}

/// rvsd running in a topology's `NAME-lb` namespace; stopped on drop (SIGTERM,
/// then SIGKILL after [`STOP_TIMEOUT`]). Its log is printed if the test panics.
pub struct Rvsd {
    child: Child,
    pub socket: PathBuf,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    bin: PathBuf,
    ns: String,
    /// Extra command-line arguments, kept for restarts.
    args: Vec<String>,
}

impl Rvsd {
    /// Starts the rvsd built for this test crate with `config` and waits until
    /// `rvsadm -L -n` answers; panics with the log if it exits or times out.
    pub fn start(topo: &Topology, config: &Value) -> Rvsd {
        Rvsd::start_bin(Path::new(RVSD_BIN), topo, config)
    }

    /// [`Rvsd::start`] in namespace `ns` (a second director a test built).
    pub fn start_in(topo: &Topology, ns: &str, config: &Value) -> Rvsd {
        Rvsd::start_bin_in(Path::new(RVSD_BIN), topo, ns, config)
    }

    /// [`Rvsd::start`] with an explicit binary.
    pub fn start_bin(bin: &Path, topo: &Topology, config: &Value) -> Rvsd {
        Rvsd::start_bin_args(bin, topo, &topo.lb_ns(), config, &[])
    }

    /// [`Rvsd::start`] with extra rvsd arguments (kept for restarts).
    pub fn start_args(topo: &Topology, config: &Value, args: &[&str]) -> Rvsd {
        Rvsd::start_bin_args(Path::new(RVSD_BIN), topo, &topo.lb_ns(), config, args)
    }

    /// [`Rvsd::start_in`] with an explicit binary.
    pub fn start_bin_in(bin: &Path, topo: &Topology, ns: &str, config: &Value) -> Rvsd {
        Rvsd::start_bin_args(bin, topo, ns, config, &[])
    }

    fn start_bin_args(
        bin: &Path,
        topo: &Topology,
        ns: &str,
        config: &Value,
        args: &[&str],
    ) -> Rvsd {
        let n = topo.rvsd_count.fetch_add(1, Ordering::Relaxed);
        let dir = &topo.state_dir;
        let config_path = dir.join(format!("rvsd{n}.json"));
        let socket = dir.join(format!("rvsd{n}.sock"));
        let log_path = dir.join(format!("rvsd{n}.log"));
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(config).expect("config serialises"),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let log = File::create(&log_path).expect("create rvsd log");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn_rvsd(bin, ns, &config_path, &socket, &args, log);
        // Constructed before waiting: a panic below drops it, which stops rvsd.
        let mut rvsd = Rvsd {
            child,
            socket,
            log_path,
            config_path,
            bin: bin.to_owned(),
            ns: ns.to_owned(),
            args,
        };
        rvsd.wait_ready();
        rvsd
    }

    /// SIGKILL and reap: a crash, no clean-up (the socket file stays).
    /// [`Rvsd::start_again`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// After [`Rvsd::terminate`] or [`Rvsd::kill`]: start the same binary
    /// again with the same config file and socket, its log appended to the
    /// same file, and wait until it is ready.
    pub fn start_again(&mut self) {
        assert!(!self.is_running(), "start_again while rvsd runs");
        self.respawn();
    }

    /// [`Rvsd::start_again`] with another binary (an upgrade).
    pub fn start_again_bin(&mut self, bin: &Path) {
        assert!(!self.is_running(), "start_again_bin while rvsd runs");
        self.bin = bin.to_owned();
        self.respawn();
    }

    /// An upgrade without a stop: start `bin` with `--handover` beside the
    /// running rvsd, wait until the running one has exited and the new one
    /// answers. Returns the old one's exit status.
    pub fn hand_over_to(&mut self, bin: &Path) -> ExitStatus {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("reopen rvsd log");
        self.bin = bin.to_owned();
        let mut args = self.args.clone();
        args.push("--handover".into());
        let new = spawn_rvsd(
            &self.bin,
            &self.ns,
            &self.config_path,
            &self.socket,
            &args,
            log,
        );
        let mut old = std::mem::replace(&mut self.child, new);
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            if let Some(st) = old.try_wait().expect("try_wait old rvsd") {
                break st;
            }
            if let Some(st) = self.child.try_wait().expect("try_wait new rvsd") {
                let _ = old.kill();
                panic!("the successor exited ({st}); log:\n{}", self.log());
            }
            if Instant::now() >= deadline {
                let _ = old.kill();
                panic!("no handover in {READY_TIMEOUT:?}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.wait_ready();
        status
    }

    /// The upgrade as systemd's `reload` does it (`rvsadm --handover`), or
    /// with SIGUSR2 (`by_signal`): the running rvsd — this handle's child,
    /// or `current`, a successor started earlier — starts its successor
    /// (its own program, `--handover`). Waits until the running one has
    /// gone and the successor answers; returns the old one's exit status
    /// (None for a `current`: no child of the test) and the successor's
    /// pid. Stop the last successor with [`stop_pid`].
    pub fn hand_over_to_successor(
        &mut self,
        by_signal: bool,
        current: Option<u32>,
    ) -> (Option<ExitStatus>, u32) {
        let running = current.unwrap_or_else(|| self.child.id());
        if by_signal {
            let _ = Command::new("kill")
                .args(["-USR2", &running.to_string()])
                .status();
        } else {
            let out = rvsadm(&self.socket, &["--handover"]);
            assert!(
                out.status.success(),
                "rvsadm --handover: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            let gone = match current {
                Some(pid) => (!alive(pid)).then_some(None),
                None => self.child.try_wait().expect("try_wait rvsd").map(Some),
            };
            if let Some(st) = gone {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "no handover by the successor; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        };
        let log = self.log();
        let pid: u32 = log
            .lines()
            .rfind(|l| l.contains("to take over"))
            .and_then(|l| l.split("(pid ").nth(1)?.split(')').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no successor logged:\n{log}"));
        assert_ne!(pid, running, "a new successor");
        while !rvsadm(&self.socket, &["-L", "-n"]).status.success() {
            assert!(
                Instant::now() < deadline && alive(pid),
                "the successor {pid} does not answer; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        (status, pid)
    }

    fn respawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("reopen rvsd log");
        self.child = spawn_rvsd(
            &self.bin,
            &self.ns,
            &self.config_path,
            &self.socket,
            &self.args,
            log,
        );
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait rvsd") {
                panic!(
                    "rvsd exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            if self.socket.exists() && rvsadm(&self.socket, &["-L", "-n"]).status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "rvsd not ready after {READY_TIMEOUT:?} (no answer to rvsadm -L -n on {}); log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// rvsd's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// `rvsadm` against this daemon.
    pub fn rvsadm<S: AsRef<str>>(&self, args: &[S]) -> Output {
        rvsadm(&self.socket, args)
    }

    /// The tests' usual service: TCP 10.0.0.100:80 with `sched`, NAT to rs1
    /// and rs2 (port 80) with weights `w1` and `w2`, added with rvsadm.
    pub fn nat_service(&self, sched: &str, w1: u32, w2: u32) {
        self.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", sched]);
        for (rip, w) in [("10.0.1.11:80", w1), ("10.0.1.12:80", w2)] {
            self.rvsadm_ok(&[
                "-a",
                "-t",
                "10.0.0.100:80",
                "-r",
                rip,
                "-m",
                "-w",
                &w.to_string(),
            ]);
        }
    }

    /// `rvsadm` that must succeed; returns its stdout.
    /// One control-socket request; panics unless it answers `"ok": true`.
    pub fn ctl(&self, req: &str) -> Value {
        use std::io::{BufRead, BufReader, Write};
        let mut s = BufReader::new(
            std::os::unix::net::UnixStream::connect(&self.socket).expect("control socket"),
        );
        s.get_mut().write_all(req.as_bytes()).unwrap();
        s.get_mut().write_all(b"\n").unwrap();
        let mut l = String::new();
        s.read_line(&mut l).unwrap();
        let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
        assert_eq!(v["ok"], true, "{req} -> {l}");
        v
    }

    /// A worker counter or drop reason (`stats`), summed over workers.
    pub fn counter(&self, key: &str) -> u64 {
        let v = self.ctl(r#"{"cmd":"stats"}"#);
        v["workers"]
            .as_array()
            .expect("workers")
            .iter()
            .map(|w| {
                w.get(key)
                    .or_else(|| w["drops"].get(key))
                    .and_then(Value::as_u64)
                    .unwrap_or_else(|| panic!("no counter {key} in {w}"))
            })
            .sum()
    }

    pub fn rvsadm_ok<S: AsRef<str>>(&self, args: &[S]) -> String {
        let out = self.rvsadm(args);
        if !out.status.success() {
            let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
            panic!("rvsadm {args:?} failed: {}", describe(&out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether rvsd is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait up to [`STOP_TIMEOUT`]; `Ok` with the exit status if
    /// it stopped by itself, `Err` (after SIGKILL) if it had to be killed.
    pub fn stop(mut self) -> Result<ExitStatus, String> {
        self.terminate()
    }

    /// [`Rvsd::stop`] without giving up the handle (see [`Rvsd::start_again`]).
    pub fn terminate(&mut self) -> Result<ExitStatus, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let status = self.child.wait();
        Err(format!(
            "rvsd ignored SIGTERM for {STOP_TIMEOUT:?}; killed ({status:?})"
        ))
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        let result = self.terminate();
        if thread::panicking() {
            eprintln!(
                "---- rvsd log ({}) ----\n{}\n---- end of rvsd log ----",
                self.log_path.display(),
                self.log()
            );
        }
        if let Err(e) = result {
            eprintln!("{e}");
        }
    }
}
