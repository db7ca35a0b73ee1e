//! keepalived's checkers (TCP_CHECK, HTTP_GET, SSL_GET, MISC_CHECK, ...)
//! as rvs health checks, with keepalived's defaults and inheritance.

use super::*;

/// One checker block as an rvs check, or None (skipped, with a message).
pub(super) fn checker(
    c: &Node,
    rs: Inherit,
    vhost: Option<&str>,
    vs_delay_loop: u32,
    notes: &mut Vec<String>,
) -> Option<HealthCheck> {
    // check_api.c queue_checker: default_retry 1, default_delay_before_retry
    // 1 s; check_http.c (HTTP_GET, SSL_GET): 3 s; check_misc.c: retry 0.
    let (kind, default_retry, default_dbr) = match c.key.as_str() {
        "TCP_CHECK" => (CheckKind::Tcp, 1, 1000),
        "HTTP_GET" => (CheckKind::Http, 1, 3000),
        "MISC_CHECK" => (CheckKind::Misc, 0, 1000),
        // check_udp.c sets no defaults of its own.
        "UDP_CHECK" => (CheckKind::Udp, 1, 1000),
        "SSL_GET" => {
            notes.push(format!(
                "{}: SSL_GET (rvs has no TLS checker: checked as a TCP connect to the same \
                 port instead, not a TLS handshake and GET)",
                c.loc
            ));
            (CheckKind::Tcp, 1, 3000)
        }
        "SMTP_CHECK" => {
            notes.push(format!(
                "{}: SMTP_CHECK (checked as a TCP connect to the port instead, default 25; \
                 no SMTP greeting/HELO exchange)",
                c.loc
            ));
            (CheckKind::Tcp, 1, 1000)
        }
        other => {
            notes.push(format!(
                "{}: {other} (rvs has no such checker; the real server is imported without \
                 it, so this check does not take it out of service)",
                c.loc
            ));
            return None;
        }
    };
    let mut own = Inherit::default();
    let mut h = HealthCheck::new(kind);
    let mut misc_timeout: Option<u32> = None;
    let mut urls: Vec<HttpUrl> = Vec::new();
    if c.key == "SMTP_CHECK" {
        h.port = Some(25);
    }
    let http = matches!(c.key.as_str(), "HTTP_GET" | "SSL_GET");
    for k in &c.children {
        if !matches!(k.key.as_str(), "inhibit_on_failure") && own.take(k, notes) {
            continue;
        }
        let r: Result<(), String> = (|| {
            match k.key.as_str() {
                "connect_port" if kind != CheckKind::Misc => {
                    h.port = Some(port_arg(k, 0).and_then(|p| {
                        if p == 0 {
                            Err(format!("{}: connect_port 0", k.loc))
                        } else {
                            Ok(p)
                        }
                    })?)
                }
                "connect_ip" if kind != CheckKind::Misc => {
                    return Err(format!(
                        "{}: connect_ip (not supported: checked at the real server's address)",
                        k.loc
                    ))
                }
                "bindto" | "bind_port" | "bind_if" | "fwmark" | "alpha" | "log_all_failures" => {
                    return Err(format!(
                        "{}: {} {} (not supported; ignored)",
                        k.loc, c.key, k.key
                    ))
                }
                "url" if http => {
                    let mut u = HttpUrl {
                        path: String::new(),
                        status: None,
                    };
                    for x in &k.children {
                        match x.key.as_str() {
                            "path" => u.path = x.args.first().cloned().unwrap_or_default(),
                            "status_code" => {
                                let s = x.args.join(" ");
                                match crate::service::parse_status_ranges(&s) {
                                    Ok(_) => u.status = Some(s),
                                    Err(e) => notes
                                        .push(format!("{}: status_code {s} ({e}; ignored)", x.loc)),
                                }
                            }
                            other => notes.push(format!(
                                "{}: url {other} (not supported: only path and status_code \
                                 are checked)",
                                x.loc
                            )),
                        }
                    }
                    if u.path.is_empty() {
                        // check_http.c url_check: "url has no path - ignoring".
                        notes.push(format!("{}: url without path (ignored)", k.loc));
                    } else {
                        urls.push(u);
                    }
                }
                "virtualhost" if http => h.host = k.args.first().cloned(),
                "http_protocol" | "enable_sni" | "sni_name" | "tls_compliant" | "fast_recovery"
                    if http =>
                {
                    return Err(format!(
                        "{}: {} {} (not supported; ignored)",
                        k.loc, c.key, k.key
                    ))
                }
                "payload" if kind == CheckKind::Udp => {
                    let p = k.args.join("");
                    if crate::service::parse_hex(&p).is_none() {
                        return Err(format!(
                            "{}: UDP_CHECK payload {p:?} (not hex bytes; ignored)",
                            k.loc
                        ));
                    }
                    h.payload = Some(p);
                }
                "require_reply" if kind == CheckKind::Udp => {
                    h.require_reply = true;
                    if !k.args.is_empty() {
                        return Err(format!(
                            "{}: UDP_CHECK require_reply {} (matching the reply's \
                             content is not supported: any reply passes)",
                            k.loc,
                            k.args.join(" ")
                        ));
                    }
                }
                "misc_path" if kind == CheckKind::Misc => h.script = Some(k.args.join(" ")),
                "misc_timeout" if kind == CheckKind::Misc => misc_timeout = Some(secs_ms(k)?),
                "misc_dynamic" if kind == CheckKind::Misc => h.misc_dynamic = true,
                "user" if kind == CheckKind::Misc => {
                    return Err(format!(
                        "{}: MISC_CHECK user (not supported: the script runs as rvsadm's \
                         daemon user)",
                        k.loc
                    ))
                }
                other => return Err(format!("{}: {} {other} (unknown; ignored)", k.loc, c.key)),
            }
            Ok(())
        })();
        if let Err(e) = r {
            notes.push(e);
        }
    }
    let eff = own.under(rs);
    h.interval_ms = eff.delay_loop.unwrap_or(KA_DELAY_LOOP_MS);
    h.timeout_ms = eff.connect_timeout.unwrap_or(KA_CONNECT_TIMEOUT_MS);
    h.retries = eff.retry.unwrap_or(default_retry).saturating_add(1);
    h.retry_delay_ms = eff.delay_before_retry.unwrap_or(default_dbr);
    // check_data.c: warmup from the checker or real server, else the
    // checker's delay_loop (rvs's default when absent).
    h.warmup_ms = eff.warmup;
    if http {
        if urls.is_empty() {
            // keepalived's HTTP_GET needs a url; without one it has
            // nothing to fetch. GET / with any 2xx is the closest check.
            notes.push(format!(
                "{}: {} without url (GET / accepting any 2xx is used)",
                c.loc, c.key
            ));
        } else if urls.len() == 1 {
            // Keep the simple single-path form when it is exact.
            let u = urls.remove(0);
            match u.status.as_deref().map(str::parse::<u16>) {
                Some(Ok(code)) if (100..=599).contains(&code) => {
                    h.path = Some(u.path);
                    h.status = Some(code);
                }
                None => h.path = Some(u.path),
                _ => h.urls = vec![u],
            }
        } else {
            h.urls = urls;
        }
        if h.host.is_none() {
            h.host = vhost.map(str::to_string);
        }
    }
    if kind == CheckKind::Tcp && http {
        // SSL_GET's stand-in: a TCP connect; its URLs are not fetched.
        h.path = None;
        h.status = None;
        h.urls.clear();
        h.host = None;
    }
    if kind == CheckKind::Misc {
        if h.script
            .as_deref()
            .map(split_command)
            .unwrap_or_default()
            .is_empty()
        {
            notes.push(format!(
                "{}: MISC_CHECK without misc_path (skipped, as keepalived does)",
                c.loc
            ));
            return None;
        }
        // check_misc.c: misc_timeout, else the virtual server's delay_loop.
        h.timeout_ms = misc_timeout.unwrap_or(vs_delay_loop).max(1);
    }
    if h.timeout_ms > crate::service::MAX_CHECK_TIMEOUT_MS {
        notes.push(format!(
            "{}: {} timeout {} s (longer than rvs's {} s limit: {} s is used)",
            c.loc,
            c.key,
            h.timeout_ms / 1000,
            crate::service::MAX_CHECK_TIMEOUT_MS / 1000,
            crate::service::MAX_CHECK_TIMEOUT_MS / 1000
        ));
        h.timeout_ms = crate::service::MAX_CHECK_TIMEOUT_MS;
    }
    if let Err(e) = h.validate() {
        notes.push(format!("{}: {} ({e}; checker skipped)", c.loc, c.key));
        return None;
    }
    Some(h)
}
