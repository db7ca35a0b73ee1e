//! A download the test paces instead of the clock: it runs across an
//! event (a failover, a restart) by construction, on any machine.
//!
//! A python client in the client namespace opens a TCP connection with a
//! small receive buffer, sends `GET path HTTP/1.0`, reads the first 8 KB
//! and reports its local port. Then it stops reading: its window closes,
//! the rest of the body waits in the real server's socket, and the
//! connection stays open with data to move. On [`Paused::finish`] it
//! reads to the end; every window update and ACK from then on goes
//! through whichever director holds the VIP. A rate-limited curl did the
//! same by time, and a loaded CI machine once saw it finish before the
//! event it was meant to span. (The topology's nginx waits up to its
//! `send_timeout`, 300 s, for the window to open.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const CLIENT: &str = r#"
import socket,sys
host,path=sys.argv[1],sys.argv[2]
s=socket.socket()
s.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)
s.settimeout(60)
s.connect((host,80))
s.sendall(b'GET '+path.encode()+b' HTTP/1.0\r\nHost: vip\r\n\r\n')
d=b''
while len(d)<8192:
    x=s.recv(4096)
    if not x: break
    d+=x
print(s.getsockname()[1],len(d),flush=True)
sys.stdin.readline()
while True:
    x=s.recv(65536)
    if not x: break
    d+=x
h,_,b=d.partition(b'\r\n\r\n')
st=h.split(b' ')
print(st[1].decode() if len(st)>1 else '0',len(b),flush=True)
"#;

/// A started download, paused after its first 8 KB.
pub struct Paused {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    /// The client's local port (to find the connection in tables).
    pub port: u16,
}

impl Paused {
    /// Starts `GET http://host/path` from `ns`; returns once the first
    /// 8 KB arrived (panics if the connection failed or ended early).
    pub fn start(ns: &str, host: &str, path: &str) -> Paused {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", CLIENT, host, path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 in the client namespace");
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("the download's first line");
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert!(
            f.len() == 2 && f[1] >= 8192,
            "the download did not start: {line:?}"
        );
        Paused {
            child,
            stdin,
            out,
            port: f[0] as u16,
        }
    }

    /// Lets it read to the end; (HTTP status, body bytes).
    pub fn finish(mut self) -> (u16, u64) {
        let _ = writeln!(self.stdin);
        let _ = self.stdin.flush();
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        let mut f = line.split_whitespace().map(|x| x.parse().unwrap_or(0));
        let status = f.next().unwrap_or(0) as u16;
        (status, f.next().unwrap_or(0))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
