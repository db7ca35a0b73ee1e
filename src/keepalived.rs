//! keepalived.conf import: `virtual_server` blocks (and DPVS-style
//! `local_address_group`s) become rvs services with health checks.
//!
//! The import follows keepalived's own parser (keepalived/check/
//! check_parser.c, check_api.c, check_data.c, check_http.c, check_misc.c;
//! lib/parser.c for `include`), and like keepalived it never refuses a whole
//! file for one block it cannot use: such a block or keyword is skipped and
//! reported with its line ("line 12: ..." or "conf.d/a.conf line 3: ..."),
//! and the rest imports. Only a file whose braces do not balance, or one
//! that yields no virtual server at all, is an error (the running
//! configuration is then left alone).
//!
//! Health-check semantics, as keepalived (check_data.c, the "Take default
//! values" loops; check_api.c queue_checker):
//! - `retry N` is N retries after the first failed attempt, so N+1 attempts
//!   (rvs's `retries` counts the first attempt). Default 1 for TCP_CHECK,
//!   HTTP_GET and SSL_GET (check_api.c default_retry), 0 for MISC_CHECK
//!   (check_misc.c).
//! - `delay_before_retry` defaults to 1 s (check_api.c), 3 s for HTTP_GET and
//!   SSL_GET (check_http.c `default_delay_before_retry = 3 * TIMER_HZ`).
//! - `connect_timeout` 5 s and `delay_loop` 60 s by default
//!   (check_data.c alloc_vs); checker, then real_server, then
//!   virtual_server values win in that order, for `retry`,
//!   `delay_before_retry`, `connect_timeout`, `delay_loop`.
//! - HTTP_GET without `status_code` accepts any 2xx (check_http.c url_check,
//!   HTTP_DEFAULT_STATUS_CODE_MIN..MAX = 200..299); every `url` must pass.
//! - Several checkers on one real server: it is up only while all pass.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::service::{split_command, CheckKind, HealthCheck, HttpUrl, OnFailure, ServiceConf};

/// How deep `include`s may nest (keepalived has no limit but detects
/// nothing either; a loop must not hang the import).
const MAX_INCLUDE_DEPTH: usize = 16;
/// keepalived's defaults (check_data.c alloc_vs): delay_loop 60 s
/// (KEEPALIVED_DEFAULT_DELAY), connect_timeout 5 s.
const KA_DELAY_LOOP_MS: u32 = 60_000;
const KA_CONNECT_TIMEOUT_MS: u32 = 5_000;

/// One `keyword args... [{ children }]` item of the file.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    /// "line N" or "FILE line N" (for included files).
    loc: String,
    key: String,
    args: Vec<String>,
    children: Vec<Node>,
    /// Whether the keyword had a `{ }` block.
    block: bool,
}

/// What an import produced.
#[derive(Debug, Default)]
pub struct Import {
    pub services: Vec<ServiceConf>,
    /// Blocks and keywords that were not applied, as "line N: keyword (why)".
    pub unsupported: Vec<String>,
}

impl Import {
    /// Drop sorry servers at one of the director's own addresses (`local`)
    /// or a loopback address, with a message each, for a director without
    /// a kernel twin. keepalived hands such a sorry server to IPVS, which
    /// delivers to the host itself (LOCALNODE); rvs does that through a
    /// twin, and has no path to the host's stack without one.
    pub fn drop_local_sorry(&mut self, local: &[IpAddr]) {
        for s in &mut self.services {
            let Some(sorry) = &s.sorry_server else {
                continue;
            };
            if sorry.ip.is_loopback() || local.contains(&sorry.ip) {
                self.unsupported.push(format!(
                    "{}: sorry_server {}:{} is {} address: IPVS would deliver it to the \
                     director's own stack, which rvs reaches only through a kernel_twin \
                     (none configured); the service is imported without a sorry server",
                    s.key(),
                    sorry.ip,
                    sorry.port,
                    if sorry.ip.is_loopback() {
                        "a loopback"
                    } else {
                        "the director's own"
                    }
                ));
                s.sorry_server = None;
            }
        }
    }
}

/// A token and where it came from.
#[derive(Debug, Clone)]
struct Tok {
    loc: String,
    text: String,
}

fn loc_of(file: Option<&str>, line: usize) -> String {
    match file {
        Some(f) => format!("{f} line {line}"),
        None => format!("line {line}"),
    }
}

struct Reader<'a> {
    notes: &'a mut Vec<String>,
    depth: usize,
}

impl Reader<'_> {
    /// Tokens of `text`; `include` lines are replaced by the included files'
    /// tokens when `dir` is known (keepalived chdir()s into the directory of
    /// the file it reads, so relative patterns are relative to it:
    /// lib/parser.c read_conf_file).
    fn tokenize(&mut self, text: &str, file: Option<&str>, dir: Option<&Path>, out: &mut Vec<Tok>) {
        for (n, line) in text.lines().enumerate() {
            let loc = loc_of(file, n + 1);
            // `include` takes glob patterns, braces included (GLOB_BRACE).
            let mut ws = line.split_whitespace();
            if ws.next() == Some("include") {
                let pats: Vec<String> = ws
                    .take_while(|w| !w.starts_with('#') && !w.starts_with('!'))
                    .map(|w| w.trim_matches('"').to_string())
                    .collect();
                self.include(&pats, &loc, dir, out);
                continue;
            }
            let mut words: Vec<String> = Vec::new();
            let mut cur = String::new();
            let mut any = false;
            let mut in_quote = false;
            let flush = |cur: &mut String, any: &mut bool, words: &mut Vec<String>| {
                if *any {
                    words.push(std::mem::take(cur));
                    *any = false;
                }
            };
            for ch in line.chars() {
                match ch {
                    '"' => {
                        in_quote = !in_quote;
                        any = true;
                    }
                    '#' | '!' if !in_quote => break,
                    '{' | '}' if !in_quote => {
                        flush(&mut cur, &mut any, &mut words);
                        words.push(ch.to_string());
                    }
                    c if c.is_whitespace() && !in_quote => flush(&mut cur, &mut any, &mut words),
                    c => {
                        cur.push(c);
                        any = true;
                    }
                }
            }
            flush(&mut cur, &mut any, &mut words);
            if let Some(w) = words.first() {
                if w.starts_with('$') || w.starts_with('@') || w.starts_with('~') {
                    self.notes.push(format!(
                        "{loc}: {w} (keepalived parameter substitution / conditional \
                         configuration is not supported; line skipped)"
                    ));
                    continue;
                }
            }
            for w in words {
                out.push(Tok {
                    loc: loc.clone(),
                    text: w,
                });
            }
            // A line ends a statement (keepalived is line oriented).
            out.push(Tok {
                loc,
                text: "\n".into(),
            });
        }
    }

    fn include(&mut self, args: &[String], loc: &str, dir: Option<&Path>, out: &mut Vec<Tok>) {
        let Some(dir) = dir else {
            self.notes.push(format!(
                "{loc}: include (not followed: the configuration was not read from a file)"
            ));
            return;
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            self.notes.push(format!(
                "{loc}: include (nested more than {MAX_INCLUDE_DEPTH} deep: not followed)"
            ));
            return;
        }
        for pat in args {
            let full = if Path::new(pat).is_absolute() {
                PathBuf::from(pat)
            } else {
                dir.join(pat)
            };
            let files = glob(&full.to_string_lossy());
            if files.is_empty() {
                // keepalived: "No config files matched" and goes on.
                self.notes
                    .push(format!("{loc}: include {pat} (no file matches; skipped)"));
            }
            for f in files {
                match std::fs::read_to_string(&f) {
                    Ok(text) => {
                        self.depth += 1;
                        let name = f.display().to_string();
                        let sub = f.parent().map(Path::to_path_buf);
                        self.tokenize(&text, Some(&name), sub.as_deref(), out);
                        self.depth -= 1;
                    }
                    Err(e) => self
                        .notes
                        .push(format!("{loc}: include {} ({e}; skipped)", f.display())),
                }
            }
        }
    }
}

/// Expand `{a,b}` braces (GLOB_BRACE), then match `*`, `?` and `[...]` per
/// path component (glob(3) with GLOB_MARK; results sorted, directories
/// skipped).
fn glob(pattern: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in expand_braces(pattern) {
        let path = Path::new(&p);
        let mut cur: Vec<PathBuf> = vec![if path.is_absolute() {
            PathBuf::from("/")
        } else {
            PathBuf::from(".")
        }];
        for comp in path.components() {
            let c = comp.as_os_str().to_string_lossy();
            if c == "/" {
                continue;
            }
            let wild = c.contains(['*', '?', '[']);
            let mut next = Vec::new();
            for base in &cur {
                if !wild {
                    let q = base.join(&*c);
                    if q.exists() {
                        next.push(q);
                    }
                    continue;
                }
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') || c.starts_with('.'))
                    .filter(|n| wildmatch(c.as_bytes(), n.as_bytes()))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            }
            cur = next;
        }
        out.extend(cur.into_iter().filter(|p| p.is_file()));
    }
    out
}

fn expand_braces(p: &str) -> Vec<String> {
    let Some(open) = p.find('{') else {
        return vec![p.to_string()];
    };
    let Some(close) = p[open..].find('}').map(|c| c + open) else {
        return vec![p.to_string()];
    };
    let (pre, body, post) = (&p[..open], &p[open + 1..close], &p[close + 1..]);
    body.split(',')
        .flat_map(|alt| expand_braces(&format!("{pre}{alt}{post}")))
        .collect()
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn wildmatch(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildmatch(&pat[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && wildmatch(&pat[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = pat.iter().skip(2).position(|&b| b == b']').map(|e| e + 2) else {
                return !s.is_empty() && s[0] == b'[' && wildmatch(&pat[1..], &s[1..]);
            };
            let Some(&c) = s.first() else {
                return false;
            };
            let mut set = &pat[1..end];
            let neg = matches!(set.first(), Some(b'!') | Some(b'^'));
            if neg {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == b'-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != neg && wildmatch(&pat[end + 1..], &s[1..])
        }
        Some(&b) => !s.is_empty() && s[0] == b && wildmatch(&pat[1..], &s[1..]),
    }
}

fn parse_block(toks: &[Tok], i: &mut usize, depth: usize) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        let t = &toks[*i];
        match t.text.as_str() {
            "\n" => *i += 1,
            "}" => {
                if depth == 0 {
                    return Err(format!("{}: unmatched '}}'", t.loc));
                }
                *i += 1;
                return Ok(nodes);
            }
            "{" => {
                // keepalived allows a bare block (e.g. "{ }" after a
                // keyword on the previous line handled below); a block
                // without keyword is skipped whole.
                return Err(format!("{}: '{{' without a keyword", t.loc));
            }
            _ => {
                let mut node = Node {
                    loc: t.loc.clone(),
                    key: t.text.clone(),
                    args: Vec::new(),
                    children: Vec::new(),
                    block: false,
                };
                *i += 1;
                // Arguments up to the end of the line or an opening brace
                // (which may sit on the next line).
                while *i < toks.len() {
                    match toks[*i].text.as_str() {
                        "\n" => {
                            let mut j = *i;
                            while j < toks.len() && toks[j].text == "\n" {
                                j += 1;
                            }
                            if j < toks.len() && toks[j].text == "{" {
                                *i = j;
                                continue;
                            }
                            break;
                        }
                        "{" => {
                            *i += 1;
                            node.children = parse_block(toks, i, depth + 1)?;
                            node.block = true;
                            break;
                        }
                        "}" => break,
                        a => {
                            node.args.push(a.to_string());
                            *i += 1;
                        }
                    }
                }
                nodes.push(node);
            }
        }
    }
    if depth > 0 {
        return Err("unexpected end of file: a '{' is not closed".into());
    }
    Ok(nodes)
}

/// keepalived's read_timer: seconds, fractions allowed (micro-second
/// resolution), here milliseconds.
fn secs_ms(n: &Node) -> Result<u32, String> {
    n.args
        .first()
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= (u32::MAX / 1000) as f64)
        .map(|v| (v * 1000.0).round() as u32)
        .ok_or_else(|| format!("{}: {} needs a number of seconds", n.loc, n.key))
}

fn num(n: &Node) -> Result<u32, String> {
    n.args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{}: {} needs a number", n.loc, n.key))
}

fn ip_arg(n: &Node, i: usize) -> Result<IpAddr, String> {
    n.args
        .get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{}: {} needs an IP address", n.loc, n.key))
}

fn port_arg(n: &Node, i: usize) -> Result<u16, String> {
    n.args
        .get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{}: {} needs a port", n.loc, n.key))
}

/// Parse a keepalived configuration given as text (an `include` in it is
/// reported, not followed: see [`import_file`]).
pub fn import(text: &str) -> Result<Import, String> {
    import_from(text, None, None)
}

/// Parse the keepalived configuration in `path`, following its `include`s.
pub fn import_file(path: &Path) -> Result<Import, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path
        .parent()
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    import_from(&text, None, Some(&dir))
}

fn import_from(text: &str, file: Option<&str>, dir: Option<&Path>) -> Result<Import, String> {
    let mut imp = Import::default();
    let mut toks = Vec::new();
    Reader {
        notes: &mut imp.unsupported,
        depth: 0,
    }
    .tokenize(text, file, dir, &mut toks);
    let mut i = 0;
    let nodes = parse_block(&toks, &mut i, 0)?;
    let mut laddr_groups: HashMap<String, Vec<IpAddr>> = HashMap::new();
    let mut vs_groups: HashMap<String, &Node> = HashMap::new();
    for n in &nodes {
        match n.key.as_str() {
            "local_address_group" => {
                let name = n.args.first().cloned().unwrap_or_default();
                let mut addrs = Vec::new();
                for c in &n.children {
                    match c.key.parse::<Ipv4Addr>() {
                        Ok(a) => addrs.push(IpAddr::V4(a)),
                        Err(_) => imp.unsupported.push(format!(
                            "{}: {} (not an IPv4 local address; skipped)",
                            c.loc, c.key
                        )),
                    }
                }
                laddr_groups.insert(name, addrs);
            }
            "virtual_server_group" => {
                if let Some(name) = n.args.first() {
                    vs_groups.insert(name.clone(), n);
                }
            }
            _ => {}
        }
    }
    let mut seen_vs = 0usize;
    for n in &nodes {
        match n.key.as_str() {
            "virtual_server" => {
                seen_vs += 1;
                let ctx = Ctx {
                    laddr_groups: &laddr_groups,
                    vs_groups: &vs_groups,
                };
                virtual_server(n, &ctx, &mut imp);
            }
            "local_address_group" | "virtual_server_group" => {}
            "global_defs"
            | "vrrp_instance"
            | "vrrp_sync_group"
            | "vrrp_script"
            | "vrrp_track_file"
            | "track_file"
            | "vrrp_track_process"
            | "track_process"
            | "static_ipaddress"
            | "static_routes"
            | "static_rules"
            | "static_track_group"
            | "linkbeat_use_polling"
            | "net_namespace"
            | "net_namespace_ipvs"
            | "instance"
            | "use_pid_dir"
            | "bfd_instance"
            | "SSL"
            | "garp_group" => imp.unsupported.push(format!(
                "{}: {} (not rvs's: keep running keepalived for it)",
                n.loc, n.key
            )),
            other => imp.unsupported.push(format!(
                "{}: {other} (unknown at top level; skipped)",
                n.loc
            )),
        }
    }
    if imp.services.is_empty() {
        let why = if seen_vs == 0 {
            "no virtual_server block".to_string()
        } else {
            format!(
                "none of its {seen_vs} virtual_server block(s) could be imported:\n  {}",
                imp.unsupported.join("\n  ")
            )
        };
        return Err(format!(
            "nothing to import ({why}); the running configuration is left as it is"
        ));
    }
    Ok(imp)
}

struct Ctx<'a> {
    laddr_groups: &'a HashMap<String, Vec<IpAddr>>,
    vs_groups: &'a HashMap<String, &'a Node>,
}

/// Health-check values that real servers inherit from their virtual
/// server and checkers from their real server (keepalived's
/// UINT_MAX/ULONG_MAX "unset" markers: None here).
#[derive(Clone, Copy, Default, Debug)]
struct Inherit {
    retry: Option<u32>,
    delay_before_retry: Option<u32>,
    connect_timeout: Option<u32>,
    delay_loop: Option<u32>,
    warmup: Option<u32>,
    inhibit: Option<bool>,
}

impl Inherit {
    /// Take the keyword if it is one of the inherited ones; false if not.
    fn take(&mut self, c: &Node, notes: &mut Vec<String>) -> bool {
        let r = match c.key.as_str() {
            "retry" | "nb_get_retry" => num(c).map(|v| self.retry = Some(v)),
            "delay_before_retry" => secs_ms(c).map(|v| self.delay_before_retry = Some(v)),
            "connect_timeout" => secs_ms(c).map(|v| self.connect_timeout = Some(v.max(1))),
            "delay_loop" => secs_ms(c).map(|v| self.delay_loop = Some(v.max(1))),
            "warmup" => secs_ms(c).map(|v| self.warmup = Some(v)),
            "inhibit_on_failure" => {
                self.inhibit = Some(!matches!(c.args.first().map(String::as_str), Some("false")));
                Ok(())
            }
            _ => return false,
        };
        if let Err(e) = r {
            notes.push(format!("{e} (ignored)"));
        }
        true
    }
    fn under(self, parent: Inherit) -> Inherit {
        Inherit {
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            delay_loop: self.delay_loop.or(parent.delay_loop),
            warmup: self.warmup.or(parent.warmup),
            inhibit: self.inhibit.or(parent.inhibit),
        }
    }
}

/// A forwarding method as JSON fields of a DestConf: `fwd`, and the tunnel
/// fields of CONTRACT.md (`tun_type`, `tun_port`, `tun_csum`).
#[derive(Clone, Debug, PartialEq)]
struct Method {
    fwd: &'static str,
    tun: Map<String, Value>,
}

/// keepalived's svr_forwarding_handler: NAT | DR | TUN [type ipip|gue|gre]
/// [port N] [nocsum|csum|remcsum]; DPVS adds FNAT/FULLNAT.
fn method(c: &Node) -> Result<Method, String> {
    let fwd = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
        Some("NAT") => "nat",
        Some("DR") => "dr",
        Some("TUN") => "tun",
        Some("FNAT") | Some("FULLNAT") => "fullnat",
        _ => {
            return Err(format!(
                "{}: {} {} (must be NAT, DR, TUN or FNAT; ignored)",
                c.loc,
                c.key,
                c.args.join(" ")
            ))
        }
    };
    let mut tun = Map::new();
    let mut it = c.args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "type" if fwd == "tun" => {
                let t = it.next().cloned().unwrap_or_default();
                if !matches!(t.as_str(), "ipip" | "gue" | "gre") {
                    return Err(format!("{}: unknown tunnel type {t:?} (ignored)", c.loc));
                }
                tun.insert("tun_type".into(), json!(t));
            }
            "port" if fwd == "tun" => {
                let p: u16 = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{}: bad gue tunnel port (ignored)", c.loc))?;
                tun.insert("tun_port".into(), json!(p));
            }
            "nocsum" | "csum" | "remcsum" if fwd == "tun" => {
                tun.insert("tun_csum".into(), json!(a));
            }
            other => {
                return Err(format!(
                    "{}: {} option {other:?} (unknown; ignored)",
                    c.loc, c.key
                ))
            }
        }
    }
    Ok(Method { fwd, tun })
}

/// The service addresses a `virtual_server` line names: `IP PORT`,
/// `group NAME` (expanded: keepalived's virtual_server_group entries
/// `IP PORT`, `IP-LAST PORT` ranges within the last octet) or `fwmark N`.
enum Addrs {
    Ip(Vec<(IpAddr, u16)>),
    Fwmark(Vec<u32>),
}

fn vs_addrs(n: &Node, ctx: &Ctx, notes: &mut Vec<String>) -> Result<(Addrs, String), String> {
    match n.args.first().map(String::as_str) {
        Some("fwmark") => {
            let m: u32 = n
                .args
                .get(1)
                .and_then(|a| a.parse().ok())
                .filter(|m| *m > 0)
                .ok_or_else(|| format!("{}: virtual_server fwmark needs a mark 1..", n.loc))?;
            Ok((Addrs::Fwmark(vec![m]), format!("fwmark {m}")))
        }
        Some("group") => {
            let name = n.args.get(1).cloned().unwrap_or_default();
            let g = ctx.vs_groups.get(&name).ok_or_else(|| {
                format!(
                    "{}: virtual_server group {name}: no such virtual_server_group",
                    n.loc
                )
            })?;
            let mut ips = Vec::new();
            let mut marks = Vec::new();
            for e in &g.children {
                if e.key == "fwmark" {
                    match e.args.first().and_then(|a| a.parse::<u32>().ok()) {
                        Some(m) if m > 0 => marks.push(m),
                        _ => notes.push(format!("{}: fwmark needs a mark (skipped)", e.loc)),
                    }
                    continue;
                }
                let port = e.args.first().and_then(|p| p.parse::<u16>().ok());
                let Some(port) = port else {
                    notes.push(format!(
                        "{}: virtual_server_group {name} entry {} needs a port (skipped)",
                        e.loc, e.key
                    ));
                    continue;
                };
                match group_range(&e.key) {
                    Some(r) => ips.extend(r.into_iter().map(|a| (a, port))),
                    None => notes.push(format!(
                        "{}: virtual_server_group {name} entry {} (not an IPv4 address or \
                         IPv4 range a.b.c.d-e; skipped)",
                        e.loc, e.key
                    )),
                }
            }
            if !marks.is_empty() {
                if !ips.is_empty() {
                    notes.push(format!(
                        "{}: virtual_server_group {name} mixes addresses and fwmarks: \
                         only the addresses are imported",
                        g.loc
                    ));
                } else {
                    return Ok((Addrs::Fwmark(marks), format!("group {name}")));
                }
            }
            if ips.is_empty() {
                return Err(format!(
                    "{}: virtual_server group {name} has no usable entry",
                    n.loc
                ));
            }
            Ok((Addrs::Ip(ips), format!("group {name}")))
        }
        _ => {
            let ip = ip_arg(n, 0)?;
            let port = match n.args.get(1) {
                Some(_) => port_arg(n, 1)?,
                None => 0,
            };
            Ok((
                Addrs::Ip(vec![(ip, port)]),
                format!("{} {}", n.args[0], port),
            ))
        }
    }
}

/// `a.b.c.d` or `a.b.c.d-e` (keepalived: the range is in the last octet).
fn group_range(s: &str) -> Option<Vec<IpAddr>> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(vec![a]);
    }
    let (base, last) = s.split_once('-')?;
    let a: Ipv4Addr = base.parse().ok()?;
    let end: u8 = last.parse().ok()?;
    let o = a.octets();
    if end < o[3] {
        return None;
    }
    Some(
        (o[3]..=end)
            .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
            .collect(),
    )
}

/// Import one `virtual_server` block into `imp` (several services for a
/// group), or skip it with a message.
fn virtual_server(n: &Node, ctx: &Ctx, imp: &mut Import) {
    let notes = &mut imp.unsupported;
    let (addrs, what) = match vs_addrs(n, ctx, notes) {
        Ok(a) => a,
        Err(e) => {
            notes.push(format!("{e}; virtual_server skipped"));
            return;
        }
    };
    let mut svc = Map::new();
    let mut proto = "tcp";
    let mut method_vs = Method {
        fwd: "nat", // keepalived's default when none is set (check_data.c)
        tun: Map::new(),
    };
    let mut inherit = Inherit::default();
    let mut vs_weight: Option<u32> = None;
    let mut vhost: Option<String> = None;
    let mut reals = Vec::new();
    let mut sorry: Option<(IpAddr, u16)> = None;
    let mut sorry_method: Option<Method> = None;
    let mut sched_flags: Vec<String> = Vec::new();
    let mut ops = false;
    let mut inet6 = false;
    let mut bad_proto: Option<String> = None;
    let loc = &n.loc;
    for c in &n.children {
        if inherit.take(c, notes) {
            continue;
        }
        let r: Result<(), String> = (|| {
            match c.key.as_str() {
                "lb_algo" | "lvs_sched" => {
                    let s = c.args.first().cloned().unwrap_or_default();
                    if crate::sched::is_known(&s) {
                        svc.insert("sched".into(), json!(s));
                    } else {
                        // keepalived: "Invalid lvs_scheduler - ignoring".
                        return Err(format!(
                            "{}: {} {s:?} (scheduler unknown to rvs; the default wlc is used)",
                            c.loc, c.key
                        ));
                    }
                }
                "lb_kind" | "lvs_method" => method_vs = method(c)?,
                "protocol" => {
                    proto = match c.args.first().map(|s| s.to_ascii_uppercase()).as_deref() {
                        Some("TCP") => "tcp",
                        Some("UDP") => "udp",
                        other => {
                            bad_proto = Some(other.unwrap_or("").to_string());
                            return Ok(());
                        }
                    }
                }
                "ip_family" => inet6 = c.args.first().map(String::as_str) == Some("inet6"),
                "persistence_timeout" => {
                    let t = if c.args.is_empty() {
                        crate::service::DEFAULT_PERSISTENT_TIMEOUT
                    } else {
                        num(c)?
                    };
                    svc.insert("persistent".into(), json!(t));
                }
                "persistence_granularity" => {
                    let m: Ipv4Addr =
                        c.args.first().and_then(|a| a.parse().ok()).ok_or_else(|| {
                            format!("{}: persistence_granularity needs a netmask", c.loc)
                        })?;
                    svc.insert("netmask".into(), json!(m));
                }
                "sorry_server" => sorry = Some((ip_arg(c, 0)?, port_arg(c, 1).unwrap_or(0))),
                "sorry_server_lvs_method" => sorry_method = Some(method(c)?),
                "weight" => vs_weight = Some(num(c)?),
                "virtualhost" => vhost = c.args.first().cloned(),
                "ops" => ops = true,
                "sh-port" | "sh-fallback" | "mh-port" | "mh-fallback" => {
                    sched_flags.push(c.key.clone())
                }
                "hashed" | "flag-1" | "flag-2" | "flag-3" => {
                    return Err(format!("{}: {} (scheduler flag rvs lacks)", c.loc, c.key))
                }
                // DPVS's keepalived keywords.
                "syn_proxy" => {
                    svc.insert("synproxy".into(), json!(true));
                }
                "laddr_group_name" => {
                    let name = c.args.first().cloned().unwrap_or_default();
                    let g = ctx
                        .laddr_groups
                        .get(&name)
                        .ok_or_else(|| format!("{}: no local_address_group {name:?}", c.loc))?;
                    svc.insert("laddrs".into(), json!(g));
                }
                "real_server" => reals.push(c),
                "alpha"
                | "omega"
                | "quorum"
                | "quorum_up"
                | "quorum_down"
                | "hysteresis"
                | "ha_suspend"
                | "smtp_alert"
                | "snmp_name"
                | "persistence_engine"
                | "sorry_server_inhibit" => {
                    return Err(format!("{}: {} (not supported; ignored)", c.loc, c.key))
                }
                other => {
                    return Err(format!(
                        "{}: {other} (unknown in virtual_server; ignored)",
                        c.loc
                    ))
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            notes.push(e);
        }
    }
    if let Some(p) = bad_proto {
        notes.push(format!(
            "{loc}: virtual_server {what} (protocol {p}: rvs has TCP and UDP services only; \
             skipped)"
        ));
        return;
    }
    if inet6 || matches!(&addrs, Addrs::Ip(v) if v.iter().any(|(a, _)| a.is_ipv6())) {
        notes.push(format!(
            "{loc}: virtual_server {what} (IPv6: rvs has no IPv6 services yet; skipped)"
        ));
        return;
    }
    let vs_inherit = Inherit {
        retry: inherit.retry,
        delay_before_retry: inherit.delay_before_retry,
        connect_timeout: inherit.connect_timeout.or(Some(KA_CONNECT_TIMEOUT_MS)),
        delay_loop: inherit.delay_loop.or(Some(KA_DELAY_LOOP_MS)),
        warmup: inherit.warmup,
        inhibit: inherit.inhibit,
    };
    let vs_delay_loop = vs_inherit.delay_loop.unwrap_or(KA_DELAY_LOOP_MS);
    let mut dests = Vec::new();
    for r in reals {
        if let Some(d) = real_server(
            r,
            &method_vs,
            vs_inherit,
            vs_weight,
            vhost.as_deref(),
            vs_delay_loop,
            notes,
        ) {
            dests.push(d);
        }
    }
    svc.insert("dests".into(), Value::Array(dests));
    if !sched_flags.is_empty() {
        svc.insert("sched_flags".into(), json!(sched_flags));
    }
    if let Some((ip, port)) = sorry {
        let m = sorry_method.unwrap_or_else(|| method_vs.clone());
        svc.insert(
            "sorry_server".into(),
            json!({"ip": ip, "port": port, "fwd": m.fwd}),
        );
    }
    let targets: Vec<Map<String, Value>> = match &addrs {
        Addrs::Ip(v) => v
            .iter()
            .map(|(ip, port)| {
                let mut m = svc.clone();
                m.insert("proto".into(), json!(proto));
                m.insert("vip".into(), json!(ip));
                m.insert("port".into(), json!(port));
                m
            })
            .collect(),
        Addrs::Fwmark(marks) => marks
            .iter()
            .map(|mark| {
                let mut m = svc.clone();
                m.insert("fwmark".into(), json!(mark));
                m
            })
            .collect(),
    };
    for mut t in targets {
        if ops {
            t.insert("ops".into(), json!(true));
        }
        match build_service(t, notes, loc) {
            Ok(s) => {
                if s.fwmark != 0 {
                    notes.push(format!(
                        "{loc}: virtual_server fwmark {}: imported; packets reach it once rvs's \
                         fwmark rules mark them (keepalived relies on iptables/nftables MARK, \
                         which rvs's data path does not see: give rvsd `fwmark_rules`, docs/modes.md)",
                        s.fwmark
                    ));
                }
                imp.services.push(s)
            }
            Err(e) => {
                let why = match &addrs {
                    Addrs::Fwmark(_) => {
                        format!("fwmark services are not in this build of rvs yet ({e})")
                    }
                    Addrs::Ip(_) => e,
                };
                notes.push(format!("{loc}: virtual_server {what}: {why}; skipped"));
                return;
            }
        }
    }
}

/// Build the service through its JSON form (so fields added to ServiceConf
/// and DestConf by other features keep their serde defaults here). Options
/// another build may lack (`ops`, tunnel types) are dropped with a message
/// if this build refuses them.
fn build_service(
    mut v: Map<String, Value>,
    notes: &mut Vec<String>,
    loc: &str,
) -> Result<ServiceConf, String> {
    match serde_json::from_value::<ServiceConf>(Value::Object(v.clone())) {
        Ok(s) => return Ok(s),
        Err(e) if v.contains_key("fwmark") => return Err(e.to_string()),
        Err(_) => {}
    }
    if v.remove("ops").is_some() {
        notes.push(format!(
            "{loc}: ops (one-packet scheduling is not in this build; ignored)"
        ));
    }
    if let Some(Value::Array(ds)) = v.get_mut("dests") {
        let mut dropped = false;
        for d in ds.iter_mut().filter_map(Value::as_object_mut) {
            for k in ["tun_type", "tun_port", "tun_csum"] {
                dropped |= d.remove(k).is_some();
            }
        }
        if dropped {
            notes.push(format!(
                "{loc}: lvs_method TUN type/port/csum (tunnel types are not in this build; \
                 plain IPIP is used)"
            ));
        }
    }
    serde_json::from_value::<ServiceConf>(Value::Object(v)).map_err(|e| e.to_string())
}

fn real_server(
    r: &Node,
    vs_method: &Method,
    vs_inherit: Inherit,
    vs_weight: Option<u32>,
    vhost: Option<&str>,
    vs_delay_loop: u32,
    notes: &mut Vec<String>,
) -> Option<Value> {
    let rip = match ip_arg(r, 0) {
        Ok(ip) => ip,
        Err(e) => {
            notes.push(format!("{e}; real_server skipped"));
            return None;
        }
    };
    if rip.is_ipv6() {
        notes.push(format!(
            "{}: real_server {rip} (IPv6: not supported yet; skipped)",
            r.loc
        ));
        return None;
    }
    let rport = match r.args.get(1) {
        Some(_) => match port_arg(r, 1) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{e}; real_server skipped"));
                return None;
            }
        },
        None => 0,
    };
    let mut d = Map::new();
    d.insert("ip".into(), json!(rip));
    d.insert("port".into(), json!(rport));
    // keepalived: a real server without weight takes the virtual server's
    // `weight` (default 1).
    d.insert("weight".into(), json!(vs_weight.unwrap_or(1)));
    let mut m = vs_method.clone();
    let mut inherit = Inherit::default();
    let mut checks = Vec::new();
    let mut rs_vhost = vhost.map(str::to_string);
    for c in &r.children {
        if inherit.take(c, notes) {
            continue;
        }
        let res: Result<(), String> = (|| {
            match c.key.as_str() {
                "weight" => {
                    d.insert("weight".into(), json!(num(c)?));
                }
                "lvs_method" => m = method(c)?,
                "uthreshold" => {
                    d.insert("u_threshold".into(), json!(num(c)?));
                }
                "lthreshold" => {
                    d.insert("l_threshold".into(), json!(num(c)?));
                }
                "virtualhost" => rs_vhost = c.args.first().cloned(),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "MISC_CHECK"
                | "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                    checks.push(c)
                }
                "notify_up" | "notify_down" | "alpha" | "smtp_alert" | "snmp_name" => {
                    return Err(format!("{}: {} (not supported; ignored)", c.loc, c.key))
                }
                other => {
                    return Err(format!(
                        "{}: {other} (unknown in real_server; ignored)",
                        c.loc
                    ))
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            notes.push(e);
        }
    }
    d.insert("fwd".into(), json!(m.fwd));
    d.extend(m.tun);
    let rs = inherit.under(vs_inherit);
    let mut built: Vec<HealthCheck> = Vec::new();
    for c in checks {
        if let Some(h) = checker(c, rs, rs_vhost.as_deref(), vs_delay_loop, notes) {
            built.push(h);
        }
    }
    if !built.is_empty() {
        let mut first = built.remove(0);
        first.also = built;
        first.on_failure = if rs.inhibit == Some(true) {
            OnFailure::Quiesce
        } else {
            OnFailure::Remove
        };
        d.insert("health".into(), json!(first));
    }
    Some(Value::Object(d))
}

/// One checker block as an rvs check, or None (skipped, with a message).
fn checker(
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

#[cfg(test)]
mod tests;
