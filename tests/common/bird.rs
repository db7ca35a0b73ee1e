//! BIRD 2 (Debian `bird2`) in a test namespace: a director's BIRD that
//! announces what rvsd puts in its `announce` table, and a router's BIRD
//! that peers with directors and installs their routes (ECMP when several
//! announce the same VIP) into its kernel.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// BGP timers of the tests: the smallest hold time BIRD takes (3 s), so a
/// dead peer is noticed within 3 s; reconnects every second.
const TIMERS: &str = "hold time 3; keepalive time 1; connect retry time 1; \
                      error wait time 1, 2; error forget time 10;";

/// A BIRD process, killed on drop.
pub struct Bird {
    child: Child,
    pub ns: String,
    pub ctl: PathBuf,
    pub log: PathBuf,
}

impl Bird {
    /// Start `bird -f` in `ns` with `config` (written to `dir/name.conf`).
    pub fn start(ns: &str, dir: &Path, name: &str, config: &str) -> Bird {
        let conf = dir.join(format!("{name}.conf"));
        let ctl = dir.join(format!("{name}.ctl"));
        let log = dir.join(format!("{name}.log"));
        std::fs::write(&conf, config).expect("write bird config");
        let check = Command::new("bird")
            .args(["-p", "-c"])
            .arg(&conf)
            .output()
            .expect("bird is installed (tests/lib/setup.sh: bird2)");
        assert!(
            check.status.success(),
            "{name}: bird -p: {}\n{config}",
            String::from_utf8_lossy(&check.stderr)
        );
        let out = std::fs::File::create(&log).expect("bird log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&ctl)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn bird");
        let b = Bird {
            child,
            ns: ns.into(),
            ctl,
            log,
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !b.ctl.exists() {
            assert!(
                Instant::now() < end,
                "{name}: no control socket\n{}",
                b.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `birdc show protocols` (empty if BIRD does not answer).
    pub fn protocols(&self) -> String {
        let o = Command::new("birdc")
            .arg("-s")
            .arg(&self.ctl)
            .args(["show", "protocols"])
            .output()
            .expect("birdc");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Whether BGP session `name` is Established.
    pub fn established(&self, name: &str) -> bool {
        self.protocols()
            .lines()
            .any(|l| l.starts_with(name) && l.contains("Established"))
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// A director's BIRD: learns the /32 routes rvsd keeps in kernel table
/// `table` (`announce` in rvsd's configuration) and announces them, next
/// hop itself, to the router `peer` (AS 65000) from `addr` (AS 65001).
pub fn director_conf(addr: &str, peer: &str, table: u32) -> String {
    format!(
        "router id {addr};
protocol device {{ scan time 1; }}
ipv4 table vips;
protocol kernel rvs_vips {{
    kernel table {table};
    learn;
    scan time 1;
    ipv4 {{ table vips; import all; export none; }};
}}
protocol bgp uplink {{
    local {addr} as 65001;
    neighbor {peer} as 65000;
    {TIMERS}
    ipv4 {{ table vips; import none; export all; next hop self; }};
}}
"
    )
}

/// A router's BIRD at `addr` (AS 65000) peering with each of `directors`
/// (AS 65001), installing what they announce into its kernel's main
/// table, several equal paths merged into one ECMP route.
pub fn router_conf(addr: &str, directors: &[&str]) -> String {
    let mut c = format!(
        "router id {addr};
protocol device {{ scan time 1; }}
protocol kernel {{
    scan time 1;
    merge paths on;
    ipv4 {{ import none; export all; }};
}}
"
    );
    for (i, d) in directors.iter().enumerate() {
        let _ = write!(
            c,
            "protocol bgp d{i} {{
    local {addr} as 65000;
    neighbor {d} as 65001;
    {TIMERS}
    ipv4 {{ import all; export none; }};
}}
"
        );
    }
    c
}

/// `ip -4 route show VIP` in `ns`: the router's route (or "").
pub fn route(ns: &str, vip: &str) -> String {
    let o = Command::new("ip")
        .args(["-n", ns, "-4", "route", "show", vip])
        .output()
        .expect("ip route");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Wait up to `limit` until `f` holds; the time it took.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}
