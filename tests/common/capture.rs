//! tcpdump in a test namespace: started with a readiness check ("listening
//! on"), stopped with SIGINT, and failing the test if it dropped packets.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Capture {
    child: Child,
    file: PathBuf,
    ns: String,
}

impl Capture {
    /// Capture `filter` on `ifc` in namespace `ns` into `file`.
    pub fn start(ns: &str, ifc: &str, file: PathBuf, filter: &str) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-i",
                ifc,
                "-nn",
                "-U",
                "--immediate-mode",
                "-B",
                "8192",
                "-w",
            ])
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let mut err = child.stderr.take().unwrap();
        let mut buf = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&buf).contains("listening on") {
            assert!(Instant::now() < end, "tcpdump did not start");
            let mut b = [0u8; 256];
            let n = std::io::Read::read(&mut err, &mut b).unwrap();
            assert!(n > 0, "tcpdump exited: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&b[..n]);
        }
        child.stderr = Some(err);
        Capture {
            child,
            file,
            ns: ns.to_string(),
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        self.child.wait().unwrap();
        assert!(
            err.lines()
                .any(|l| l.trim() == "0 packets dropped by kernel"),
            "tcpdump dropped packets: {err}"
        );
    }

    /// Stop; the captured frames.
    pub fn frames(mut self) -> Vec<Vec<u8>> {
        self.stop();
        super::pcap::read(&self.file).unwrap()
    }

    /// Stop; tcpdump's one-line decoding of each packet.
    pub fn lines(mut self) -> Vec<String> {
        self.stop();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "tcpdump", "-nn", "-r"])
            .arg(&self.file)
            .output()
            .unwrap();
        assert!(out.status.success(), "tcpdump -r failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
}
