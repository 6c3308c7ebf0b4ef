//! The import graph of the server crate's top-level modules has no cycles (ARCHITECTURE.md "Code map").
//! Reads `src/**/*.rs`, takes an edge A → B for every `crate::B` path in module A (and for every
//! `super::B` that climbs out of A, and every `B::` path in the crate root that names a module), and
//! fails naming the first cycle found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate root (`lib.rs`) as a node: its own items (`App`, `serve_router`, …) are used by modules too.
const ROOT: &str = "(crate root)";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, string and char literals, so a path in a doc comment or a message
/// is not taken for an import.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && (i == 0 || !is_ident(b[i - 1])) => {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '\''); a lifetime ('a) is left alone.
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The first identifiers after every occurrence of `prefix` (a path segment start), following
/// `prefix{a, b::c, self}` groups one level deep.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        if start > 0 && (is_ident(b[start - 1]) || b[start - 1] == b':') {
            continue; // `foo_crate::`, `a::crate::`
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(leading_ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            names.push(leading_ident(rest));
        }
    }
    names.retain(|n| !n.is_empty() && n != "self");
    names
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

fn leading_ident(s: &str) -> String {
    s.bytes().take_while(|&c| is_ident(c)).map(char::from).collect()
}

/// The top-level module a file belongs to (`src/api/keys.rs` → `api`), its depth below it, and
/// whether it is the crate root.
fn module_of(src: &Path, file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(src).expect("under src");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts == ["lib.rs"] {
        return (ROOT.to_owned(), 0);
    }
    let top = parts[0].trim_end_matches(".rs").to_owned();
    // Depth: how many `super::` stay inside `top` (`api/mod.rs`: 0, `api/keys.rs`: 1, `api/x/y.rs`: 2).
    let depth = match parts.last().map(String::as_str) {
        Some("mod.rs") => parts.len() - 2,
        _ => parts.len() - 1,
    };
    (top, depth)
}

/// Every top-level module's outgoing edges, read from the sources under `src`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f).0).filter(|m| m != ROOT).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let (me, depth) = module_of(src, file);
        let code = code_only(&std::fs::read_to_string(file).expect("a readable source file"));
        let mut targets = Vec::new();
        for name in names_after(&code, "crate::") {
            targets.push(if modules.contains(&name) { name } else { ROOT.to_owned() });
        }
        // `super::` climbing out of the top-level module lands in the crate root.
        let climb_out = "super::".repeat(depth + 1);
        for name in names_after(&code, &climb_out) {
            targets.push(if modules.contains(&name) { name } else { ROOT.to_owned() });
        }
        if me == ROOT {
            for m in &modules {
                let declared = [format!("mod {m};"), format!("mod {m} {{")];
                let used = names_after(&code.replace(&declared[0], "").replace(&declared[1], ""), &format!("{m}::"));
                if !used.is_empty() {
                    targets.push(m.clone());
                }
            }
        }
        let out = edges.entry(me.clone()).or_default();
        out.extend(targets.into_iter().filter(|t| *t != me));
    }
    edges
}

/// A cycle as `a → b → … → a`, if the graph has one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        OnPath,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::OnPath);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::Unseen) {
                Mark::OnPath => {
                    let from = path.iter().position(|n| n == next).expect("on the path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::Unseen => {
                    if let Some(c) = visit(next, edges, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if marks.get(node).copied().unwrap_or(Mark::Unseen) == Mark::Unseen {
            if let Some(c) = visit(node, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_server_modules_import_graph_has_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges.len() > 5, "the sources were read: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle between the server's modules: {}\nedges: {edges:#?}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_the_reader_sees_grouped_imports() {
    let code =
        code_only("use crate::{api::dto::X, error::{ApiError, E}, self};\n// crate::login\nlet s = \"crate::web\";");
    assert_eq!(names_after(&code, "crate::"), ["api", "error"]);
    let edges: BTreeMap<String, BTreeSet<String>> = [
        ("api".to_owned(), BTreeSet::from(["error".to_owned()])),
        ("error".to_owned(), BTreeSet::from(["web".to_owned()])),
        ("web".to_owned(), BTreeSet::from(["api".to_owned()])),
    ]
    .into();
    assert_eq!(find_cycle(&edges).expect("a cycle").join(" → "), "api → error → web → api");
}
