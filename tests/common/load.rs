//! Client load through the VIP for the fault and soak tests:
//! `tests/lib/load.py` run in the client namespace (see its header for the
//! kinds of work), driven over its stdin/stdout, and small UDP echo servers
//! on the real servers. Everything is bounded and killed on drop.
//!
//! ```ignore
//! let mut load = Load::start(&topo, &LoadSpec { new: 2, held: 4, ..LoadSpec::default() });
//! // ... break something ...
//! let p = load.mark();            // operations starting from now count in phase p
//! let report = load.finish();
//! assert_eq!(report.err("new", p), 0, "{}", report.errors("new", p));
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::topo::Topology;

pub fn load_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lib/load.py")
}

/// What `load.py` runs (its options of the same names).
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub new: usize,
    pub big: usize,
    pub held: usize,
    pub held_interval_ms: u64,
    /// 0: held connections must live for the whole run.
    pub held_renew: usize,
    pub udp: usize,
    pub udp_port: u16,
    /// Malformed frames to the director's client-side port (needs LB0_MAC).
    pub junk: bool,
    /// New connections never reuse a source port (see load.py).
    pub fresh_ports: bool,
    pub pace_ms: u64,
    pub timeout_s: f64,
    /// Hard bound of the run; `finish` normally ends it earlier.
    pub duration_s: f64,
    /// The VIP and the client's address (the NAT topology's by default).
    pub vip: &'static str,
    pub client_ip: &'static str,
    /// The namespace to run in; the topology's client namespace if None.
    pub ns: Option<String>,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            new: 0,
            big: 0,
            held: 0,
            held_interval_ms: 100,
            held_renew: 0,
            udp: 0,
            udp_port: 5353,
            junk: false,
            fresh_ports: false,
            pace_ms: 0,
            timeout_s: 3.0,
            duration_s: 120.0,
            vip: "10.0.0.100",
            client_ip: "10.0.0.2",
            ns: None,
        }
    }
}

/// A running `load.py`.
pub struct Load {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr_path: std::path::PathBuf,
    bound: Duration,
}

impl Load {
    /// Starts the load in the client namespace and waits until it is
    /// "ready" (its held connections open).
    pub fn start(topo: &Topology, spec: &LoadSpec) -> Load {
        let stderr_path = topo.state_dir.join(format!(
            "load-{}.err",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = Command::new("ip");
        let ns = spec.ns.clone().unwrap_or_else(|| topo.client_ns());
        cmd.args(["netns", "exec", &ns, "python3"])
            .arg(load_script())
            .args(["--new", &spec.new.to_string()])
            .args(["--big", &spec.big.to_string()])
            .args(["--held", &spec.held.to_string()])
            .args(["--held-interval", &spec.held_interval_ms.to_string()])
            .args(["--held-renew", &spec.held_renew.to_string()])
            .args(["--udp", &spec.udp.to_string()])
            .args(["--udp-port", &spec.udp_port.to_string()])
            .args(["--pace", &spec.pace_ms.to_string()])
            .args(["--timeout", &spec.timeout_s.to_string()])
            .args(["--duration", &spec.duration_s.to_string()])
            .args(["--vip", spec.vip])
            .args(["--client-ip", spec.client_ip]);
        if spec.fresh_ports {
            cmd.arg("--fresh-ports");
        }
        if spec.junk {
            cmd.args(["--junk", "--junk-dst-mac", topo.fact("LB0_MAC")]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("load stderr file"))
            .spawn()
            .expect("spawn load.py");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut load = Load {
            child,
            stdin,
            lines,
            stderr_path,
            bound: Duration::from_secs_f64(spec.duration_s + 2.0 * spec.timeout_s + 30.0),
        };
        let l = load.line(Duration::from_secs(30));
        assert_eq!(l, "ready", "load.py did not start: {}", load.stderr());
        load
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The next stdout line, waiting at most `within`.
    fn line(&mut self, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(l) => l,
            Err(e) => panic!(
                "load.py said nothing for {within:?} ({e}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// Starts the next phase; returns its number. Operations that start
    /// after this returns count in it.
    pub fn mark(&mut self) -> usize {
        writeln!(self.stdin.as_mut().expect("load running"), "mark").expect("write to load.py");
        let l = self.line(Duration::from_secs(10));
        l.strip_prefix("phase ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected answer to mark: {l:?}"))
    }

    /// Stops the load and returns its report.
    pub fn finish(mut self) -> Report {
        if let Some(mut i) = self.stdin.take() {
            let _ = writeln!(i, "stop");
        }
        let bound = self.bound;
        let l = self.line(bound);
        let v: Value = serde_json::from_str(&l)
            .unwrap_or_else(|e| panic!("load.py report {l:?}: {e}; stderr:\n{}", self.stderr()));
        Report(v)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // Normally it has exited after its report; kill is then a no-op.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `load.py`'s report: per kind ("new", "big", "udp") and phase, counts of
/// successes and failures, who answered, and the first errors; per held
/// connection its server and per-phase counts.
#[derive(Debug)]
pub struct Report(pub Value);

impl Report {
    pub fn phases(&self) -> usize {
        self.0["phases"].as_u64().unwrap_or(0) as usize
    }
    fn slot(&self, kind: &str, phase: usize) -> &Value {
        &self.0[kind][phase]
    }
    pub fn ok(&self, kind: &str, phase: usize) -> u64 {
        self.slot(kind, phase)["ok"].as_u64().unwrap_or(0)
    }
    /// Failures of operations that started in `phase` and failed before
    /// the next phase began.
    pub fn err(&self, kind: &str, phase: usize) -> u64 {
        self.slot(kind, phase)["err"].as_u64().unwrap_or(0)
    }
    /// Every failure of an operation that started in `phase`, including
    /// those that failed after the next phase had begun (in flight across
    /// the event that started it).
    pub fn failures(&self, kind: &str, phase: usize) -> u64 {
        self.err(kind, phase) + self.slot(kind, phase)["err_late"].as_u64().unwrap_or(0)
    }
    /// Successes and failures over every phase.
    pub fn total(&self, kind: &str) -> (u64, u64) {
        (0..self.phases()).fold((0, 0), |(o, e), p| {
            (o + self.ok(kind, p), e + self.failures(kind, p))
        })
    }
    /// Answers per server ("rs1", "rs2", ...) in a phase.
    pub fn servers(&self, kind: &str, phase: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.slot(kind, phase)["servers"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    /// The first error messages of a phase, for assertion messages.
    pub fn errors(&self, kind: &str, phase: usize) -> String {
        self.slot(kind, phase)["errors"].to_string()
    }
    /// The held connections.
    pub fn held(&self) -> &[Value] {
        self.0["held"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }
    /// Failed requests of one held connection (an entry of [`Report::held`]),
    /// over every phase.
    pub fn held_errors(h: &Value) -> u64 {
        h["err"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .sum()
    }
    /// One line per kind: ok/err per phase, and the held connections'.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for kind in ["new", "big", "udp"] {
            let per: Vec<String> = (0..self.phases())
                .map(|p| {
                    let late = self.failures(kind, p) - self.err(kind, p);
                    format!("{}/{}+{late}", self.ok(kind, p), self.err(kind, p))
                })
                .collect();
            out += &format!(
                "{kind} ok/failed(+failed in a later phase) by phase: {}\n",
                per.join(" ")
            );
        }
        for (i, h) in self.held().iter().enumerate() {
            out += &format!(
                "held {i} on {}: ok {} err {}\n",
                h["server"], h["ok"], h["err"]
            );
        }
        out
    }

    pub fn junk_sent(&self) -> u64 {
        self.0["junk_sent"].as_u64().unwrap_or(0)
    }
}

/// A UDP server answering every datagram with "NAME:" and the datagram,
/// on `ip:port` in namespace `ns`; killed on drop.
pub struct UdpEcho(Child);

impl UdpEcho {
    pub fn start(ns: &str, name: &str, ip: &str, port: u16) -> UdpEcho {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('{ip}',{port}))\nprint('ready',flush=True)\n\
             while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'{name}:'+d,a)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("udp echo server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let echo = UdpEcho(child);
        assert_eq!(
            line.trim(),
            "ready",
            "udp echo server in {ns} did not start"
        );
        echo
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
