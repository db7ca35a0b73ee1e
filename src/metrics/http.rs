//! The metrics' minimal HTTP/1.0 server: `GET /metrics` (or `HEAD`) on
//! one thread, one client at a time, with bounded reads and a lingering
//! close.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{scrape, CLIENT_TIMEOUT, CONTENT_TYPE, MAX_REQUEST_HEAD};
use crate::control::Control;

fn response(status: &str, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

/// The response to a request head (everything up to the blank line, or what
/// arrived of it). `body` is called only for `GET /metrics`.
pub fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .map(|l| l.trim_end_matches('\r'))
        .unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let valid = matches!((method, target, version), (Some(m), Some(t), Some(v))
        if !m.is_empty() && t.starts_with('/') && v.starts_with("HTTP/1.") && parts.next().is_none());
    if !valid {
        return response("400 Bad Request", TEXT, "bad request\n", false);
    }
    let (method, target) = (method.unwrap_or(""), target.unwrap_or(""));
    let path = target.split(['?', '#']).next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return response("405 Method Not Allowed", TEXT, "only GET\n", false);
    }
    if path != "/metrics" {
        return response(
            "404 Not Found",
            TEXT,
            "not found: try /metrics\n",
            head_only,
        );
    }
    response("200 OK", CONTENT_TYPE, &body(), head_only)
}

/// Read a request head: up to the blank line, [`MAX_REQUEST_HEAD`] bytes,
/// EOF or the timeout. `None` when it is too large.
fn read_head(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Some(buf);
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) => return Some(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(buf),
        }
    }
}

fn serve_client(mut s: TcpStream, ctl: &Control) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
    let resp = match read_head(&mut s) {
        Some(head) => respond(&head, || scrape(ctl)),
        None => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request too large\n",
            false,
        ),
    };
    let _ = s.write_all(&resp);
    let _ = s.flush();
    // Lingering close: end our side, then drain (bounded) what the client
    // still sends, so unread input does not turn the close into a reset that
    // could destroy the response before the client read it.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Serve `GET /metrics` on `listener` from one thread, one client at a time,
/// until `stop` is set (checked every 50 ms).
pub fn spawn_server(
    listener: TcpListener,
    ctl: Arc<Control>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("rvs-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => serve_client(s, &ctl),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        log::warn!("metrics: accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
}
