//! The crate's modules import one another in one direction only (#14): a
//! circle between two top-level modules (`service` -> `sched` -> `service`)
//! means neither can be read, tested or changed without the other.
//!
//! This reads `src/` the way a reviewer would: every `crate::name` path in a
//! module's files (comments and `#[cfg(test)] mod tests` blocks left out)
//! is an arrow from that module to `name`; the test fails on any circle,
//! and names it. Run it alone with `cargo test --test module_graph`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module name -> source text of its files (tests left out).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let first = first.to_str().unwrap();
            let name = p.file_name().unwrap().to_str().unwrap();
            if p.extension().is_none_or(|x| x != "rs")
                || first == "bin"
                || first == "lib.rs"
                || ["tests.rs", "stress.rs", "daemon_tests.rs"].contains(&name)
            {
                continue;
            }
            let module = first.trim_end_matches(".rs").to_string();
            let text = fs::read_to_string(&p).unwrap();
            let text = text.split("\n#[cfg(test)]\nmod tests {").next().unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            out.entry(module).or_default().push_str(&code);
        }
    }
    out
}

/// Names a module's text refers to as `crate::name` or in
/// `crate::{a, b::c}`.
fn refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                out.insert(ident(part.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

#[test]
fn top_level_modules_import_one_another_in_one_direction_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods = modules(&src);
    assert!(
        mods.len() > 20 && mods.contains_key("conn"),
        "{:?}",
        mods.keys()
    );
    let edges: BTreeMap<&str, BTreeSet<String>> = mods
        .iter()
        .map(|(m, text)| {
            let to = refs(text)
                .into_iter()
                .filter(|t| t != m && mods.contains_key(t))
                .collect();
            (m.as_str(), to)
        })
        .collect();
    // Depth-first search; a grey node met again closes a circle.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<&'a str, BTreeSet<String>>,
        colour: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        circles: &mut Vec<String>,
    ) {
        colour.insert(m, 1);
        path.push(m);
        for t in &edges[m] {
            match colour.get(t.as_str()).copied().unwrap_or(0) {
                0 => visit(t, edges, colour, path, circles),
                1 => {
                    let at = path.iter().position(|p| p == t).unwrap();
                    circles.push(format!("{} -> {t}", path[at..].join(" -> ")));
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(m, 2);
    }
    let (mut colour, mut circles) = (BTreeMap::new(), Vec::new());
    for m in edges.keys() {
        if !colour.contains_key(m) {
            visit(m, &edges, &mut colour, &mut Vec::new(), &mut circles);
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    let r = refs("use crate::{flow::FlowKey, sched};\nlet x = crate::conn::Dir::In;");
    assert_eq!(
        r,
        ["conn", "flow", "sched"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}
