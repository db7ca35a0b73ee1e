//! docs/control-protocol.md's examples are this test: every `session`
//! block's `>` lines are sent, in page order, to one control plane, and
//! each answer must match the `<` line after it (fields shown must be there
//! with that value, `"…"` matches anything, arrays have the length shown).
//! An example that drifts from what rvsd answers fails here.

use std::sync::Arc;

use crossbeam_utils::CachePadded;
use rvs::conn::ConnTable;
use rvs::control::Control;
use rvs::stats::WorkerStats;
use serde_json::Value;

const DOC: &str = include_str!("../docs/control-protocol.md");

/// `(line number, request, expected reply)` of every exchange on the page.
fn exchanges(doc: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut in_session = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        let n = i + 1;
        if line.starts_with("```") {
            assert!(pending.is_none(), "line {n}: a request without a reply");
            in_session = !in_session && line == "```session";
            continue;
        }
        if !in_session {
            continue;
        }
        if let Some(req) = line.strip_prefix("> ") {
            assert!(pending.is_none(), "line {n}: two requests in a row");
            pending = Some((n, req.to_string()));
        } else if let Some(reply) = line.strip_prefix("< ") {
            let (at, req) = pending
                .take()
                .unwrap_or_else(|| panic!("line {n}: a reply without a request"));
            out.push((at, req, reply.to_string()));
        } else {
            panic!("line {n}: session lines start with \"> \" or \"< \": {line:?}");
        }
    }
    out
}

/// Whether `got` has everything `want` shows; the path of the first
/// difference otherwise.
fn matches(want: &Value, got: &Value, path: &str) -> Result<(), String> {
    match (want, got) {
        (Value::String(w), _) if w == "…" => Ok(()),
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let gv = g.get(k).ok_or_else(|| format!("{path}.{k}: missing"))?;
                matches(wv, gv, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                return Err(format!("{path}: {} items, not {}", g.len(), w.len()));
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                matches(wv, gv, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if want == got => Ok(()),
        _ => Err(format!("{path}: {got}, not {want}")),
    }
}

#[test]
fn every_example_in_the_protocol_document_is_what_rvsd_answers() {
    let workers: Arc<[CachePadded<WorkerStats>]> =
        Arc::from(vec![CachePadded::new(WorkerStats::default())]);
    let ctl = Control::new(
        Arc::new(ConnTable::new(1000, 1)),
        workers,
        vec!["10.0.1.1".parse().unwrap()],
    );
    let all = exchanges(DOC);
    assert!(all.len() >= 25, "only {} examples found", all.len());
    for (line, req, want) in all {
        let want: Value = serde_json::from_str(&want)
            .unwrap_or_else(|e| panic!("docs/control-protocol.md:{line}: reply: {e}"));
        let got: Value = serde_json::from_str(&ctl.handle_line(&req)).unwrap();
        if let Err(diff) = matches(&want, &got, "reply") {
            panic!("docs/control-protocol.md:{line}: {req}\n  {diff}\n  got {got}");
        }
    }
}

#[test]
fn the_matcher_finds_differences() {
    let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    let got = v(r#"{"ok":true,"a":[1,2],"b":{"c":"x","d":3}}"#);
    assert!(matches(&v(r#"{"ok":true,"b":{"c":"…"}}"#), &got, "r").is_ok());
    assert!(matches(&v(r#"{"ok":false}"#), &got, "r").is_err());
    assert!(matches(&v(r#"{"a":[1]}"#), &got, "r").is_err());
    assert!(matches(&v(r#"{"b":{"e":1}}"#), &got, "r").is_err());
    assert!(matches(&v(r#"{"a":[1,3]}"#), &got, "r").is_err());
}
