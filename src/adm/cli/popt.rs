//! A popt-compatible command-line tokenizer: ipvsadm parses its arguments
//! with libpopt, whose rules (bundled short options, `--opt=value`,
//! abbreviations refused) rvsadm keeps.

use super::*;

/// One option as popt hands it over.
pub(super) enum Tok {
    Opt(Tag, Option<String>),
    /// popt's error: the text `poptBadOption` names and `poptStrerror`.
    Bad(String, &'static str),
}

/// popt's scanner: long options (`--name`, `--name=value`), clusters of
/// short options (`-Ln`, `-w3`, `-w=3`), optional arguments taken only when
/// the next word does not start with '-', `--` ending options, and every
/// other word a leftover argument.
pub(super) struct Popt<'a> {
    pub(super) args: &'a [String],
    pub(super) i: usize,
    /// Remaining characters of a short-option cluster and its word.
    pub(super) cluster: Option<(String, usize)>,
    pub(super) leftover: Vec<String>,
    pub(super) only_args: bool,
}

impl<'a> Popt<'a> {
    pub(super) fn new(args: &'a [String]) -> Self {
        Popt {
            args,
            i: 1,
            cluster: None,
            leftover: Vec::new(),
            only_args: false,
        }
    }

    pub(super) fn next_word_arg(&mut self, optional: bool) -> Option<String> {
        let w = self.args.get(self.i)?;
        if optional && w.starts_with('-') {
            return None;
        }
        self.i += 1;
        Some(w.clone())
    }

    pub(super) fn next(&mut self) -> Option<Tok> {
        if let Some((rest, word)) = self.cluster.take() {
            return Some(self.short(rest, word));
        }
        loop {
            let w = self.args.get(self.i)?.clone();
            self.i += 1;
            if self.only_args || w == "-" || !w.starts_with('-') {
                self.leftover.push(w);
                continue;
            }
            if w == "--" {
                self.only_args = true;
                continue;
            }
            if let Some(long) = w.strip_prefix("--") {
                let (name, val) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let Some(&(_, _, arg, tag)) = OPTIONS.iter().find(|o| o.0 == name) else {
                    return Some(Tok::Bad(w, "unknown option"));
                };
                let val = match arg {
                    Arg::None => {
                        if val.is_some() {
                            return Some(Tok::Bad(w, "option does not take an argument"));
                        }
                        None
                    }
                    Arg::Required => match val.or_else(|| self.next_word_arg(false)) {
                        Some(v) => Some(v),
                        None => return Some(Tok::Bad(w, "missing argument")),
                    },
                    Arg::Optional => val.or_else(|| self.next_word_arg(true)),
                };
                return Some(Tok::Opt(tag, val));
            }
            let word = self.i - 1;
            return Some(self.short(w[1..].to_string(), word));
        }
    }

    pub(super) fn short(&mut self, rest: String, word: usize) -> Tok {
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or('-');
        let tail: String = chars.collect();
        let Some(&(_, _, arg, tag)) = OPTIONS.iter().find(|o| o.1 == Some(c)) else {
            // popt names the whole word of a cluster.
            return Tok::Bad(self.args[word].clone(), "unknown option");
        };
        match arg {
            Arg::None => {
                if !tail.is_empty() {
                    self.cluster = Some((tail, word));
                }
                Tok::Opt(tag, None)
            }
            Arg::Required | Arg::Optional => {
                if !tail.is_empty() {
                    let v = tail.strip_prefix('=').unwrap_or(&tail).to_string();
                    return Tok::Opt(tag, Some(v));
                }
                match self.next_word_arg(arg == Arg::Optional) {
                    Some(v) => Tok::Opt(tag, Some(v)),
                    None if arg == Arg::Optional => Tok::Opt(tag, None),
                    None => Tok::Bad(format!("-{c}"), "missing argument"),
                }
            }
        }
    }
}
