//! keepalived.conf's syntax, as keepalived's lib/parser.c reads it: tokens,
//! `include` with globs (and brace expansion), blocks into a tree of
//! [`Node`]s, and the small argument readers the importer uses.

use super::*;

/// One `keyword args... [{ children }]` item of the file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// "line N" or "FILE line N" (for included files).
    pub(super) loc: String,
    pub(super) key: String,
    pub(super) args: Vec<String>,
    pub(super) children: Vec<Node>,
    /// Whether the keyword had a `{ }` block.
    pub(super) block: bool,
}

/// A token and where it came from.
#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) loc: String,
    pub(super) text: String,
}

pub(super) fn loc_of(file: Option<&str>, line: usize) -> String {
    match file {
        Some(f) => format!("{f} line {line}"),
        None => format!("line {line}"),
    }
}

pub(super) struct Reader<'a> {
    pub(super) notes: &'a mut Vec<String>,
    pub(super) depth: usize,
}

impl Reader<'_> {
    /// Tokens of `text`; `include` lines are replaced by the included files'
    /// tokens when `dir` is known (keepalived chdir()s into the directory of
    /// the file it reads, so relative patterns are relative to it:
    /// lib/parser.c read_conf_file).
    pub(super) fn tokenize(
        &mut self,
        text: &str,
        file: Option<&str>,
        dir: Option<&Path>,
        out: &mut Vec<Tok>,
    ) {
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

    pub(super) fn include(
        &mut self,
        args: &[String],
        loc: &str,
        dir: Option<&Path>,
        out: &mut Vec<Tok>,
    ) {
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
pub(super) fn glob(pattern: &str) -> Vec<PathBuf> {
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

pub(super) fn expand_braces(p: &str) -> Vec<String> {
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
pub(super) fn wildmatch(pat: &[u8], s: &[u8]) -> bool {
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

pub(super) fn parse_block(toks: &[Tok], i: &mut usize, depth: usize) -> Result<Vec<Node>, String> {
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
pub(super) fn secs_ms(n: &Node) -> Result<u32, String> {
    n.args
        .first()
        .and_then(|a| a.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= (u32::MAX / 1000) as f64)
        .map(|v| (v * 1000.0).round() as u32)
        .ok_or_else(|| format!("{}: {} needs a number of seconds", n.loc, n.key))
}

pub(super) fn num(n: &Node) -> Result<u32, String> {
    n.args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{}: {} needs a number", n.loc, n.key))
}

/// An address as keepalived reads it: `inet_pton`, IPv6 if it has a `:`
/// (lib/utils.c inet_stosockaddr), so no `[v6]:port` form and no `%zone`.
pub(super) fn ip_arg(n: &Node, i: usize) -> Result<IpAddr, String> {
    match n.args.get(i) {
        Some(a) => a.parse().map_err(|_| {
            if a.starts_with('[') || a.contains('%') {
                format!(
                    "{}: {} {a} (keepalived reads a plain address, no [brackets] or \
                     %zone; an IPv6 address and its port are two words: `{} 2001:db8::1 80`)",
                    n.loc, n.key, n.key
                )
            } else {
                format!("{}: {} {a} is not an IP address", n.loc, n.key)
            }
        }),
        None => Err(format!("{}: {} needs an IP address", n.loc, n.key)),
    }
}

pub(super) fn port_arg(n: &Node, i: usize) -> Result<u16, String> {
    n.args
        .get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{}: {} needs a port", n.loc, n.key))
}
