//! rvsd as systemd runs it, without systemd (it is not PID 1 on the test
//! machine): the test plays systemd's side of sd_notify(3). rvsd is started
//! with `$NOTIFY_SOCKET` naming a datagram socket the test binds,
//! `$WATCHDOG_USEC` and `$JOURNAL_STREAM` set (a wrapper script sets them
//! and execs rvsd, so the pid is rvsd's): it must send `READY=1` once it
//! answers on its control socket, `WATCHDOG=1` again and again while its
//! worker polls, `STOPPING=1` on SIGTERM (then, with `announce`,
//! `EXTEND_TIMEOUT_USEC` through its drain grace period), and log
//! journald-style lines.
//! And `--log-format json` writes one JSON object per line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::topo::{Rvsd, Topology, RVSD_BIN};

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification before the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn rvsd_notifies_ready_pings_the_watchdog_and_logs_for_journald() {
    let topo = Topology::up_unique();
    let dir = topo.state_dir.join("systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let wrapper = dir.join("rvsd-under-systemd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport NOTIFY_SOCKET={} WATCHDOG_USEC=1000000 JOURNAL_STREAM=8:12345\nexec {RVSD_BIN} \"$@\"\n",
            notify_path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    // With route announcements and a drain grace period: after SIGTERM
    // rvsd forwards on for 2 s, extending systemd's stop timeout.
    let mut c = topo.twin_config();
    c["announce"] = serde_json::json!({"table": 4243, "drain_grace_s": 2});
    let mut rvsd = Rvsd::start_bin(&wrapper, &topo, &c);
    // Rvsd::start_bin returned: the control socket answers. READY=1 came
    // before that (it is sent after the socket is bound).
    let first = recv(&notify);
    assert!(first.starts_with("READY=1\nSTATUS="), "{first:?}");
    assert!(first.contains("1 worker(s)"), "{first:?}");
    // WATCHDOG_USEC 1 s: a ping every 0.5 s while the worker polls.
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(recv(&notify), "WATCHDOG=1");
    }
    eprintln!("3 watchdog pings in {:?}", t0.elapsed());

    let status = rvsd.terminate().expect("rvsd stops on SIGTERM");
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    while let Ok(m) = {
        notify
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        notify.recv(&mut buf).map(|n| buf[..n].to_vec())
    } {
        rest.push(String::from_utf8_lossy(&m).into_owned());
    }
    let stopping = rest
        .iter()
        .position(|m| m.starts_with("STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1: {rest:?}"));
    // Each step of the drain extends systemd's stop timeout (and pings the
    // watchdog): a drain longer than TimeoutStopSec is not cut short.
    let extends = rest[stopping..]
        .iter()
        .filter(|m| m.starts_with("EXTEND_TIMEOUT_USEC=") && m.ends_with("\nWATCHDOG=1"))
        .count();
    assert!(
        extends >= 3,
        "{extends} extensions in the 2 s drain: {rest:?}"
    );

    // journald adds the time itself and reads the <N> priority prefix.
    let log = rvsd.log();
    let ready = log
        .lines()
        .find(|l| l.contains("ready:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(ready.starts_with("<6>INFO rvsd: ready: "), "{ready}");
    assert!(
        !log.lines().any(|l| l.starts_with('[')),
        "timestamped lines under journald: {log}"
    );
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let dir = std::env::temp_dir().join(format!("rvs-logjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("rvsd.json");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/nat.json"),
        &cfg,
    )
    .unwrap();
    let state = dir.join("state.json");
    std::fs::write(&state, "{\"services\": [").unwrap();
    let out = Command::new(RVSD_BIN)
        .args(["--check", "--log-format", "json", "--config"])
        .arg(&cfg)
        .arg("--state-file")
        .arg(&state)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    // The damaged state file, reported by --check at error level.
    let e = lines
        .iter()
        .find(|v| v["level"] == "ERROR")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(e["target"], "rvsd");
    assert!(e["msg"].as_str().unwrap().contains("state.json"), "{e}");
    let ts: f64 = e["ts"].as_str().unwrap().parse().unwrap();
    assert!(ts > 1.6e9, "{e}");
}
