//! House rule: no non-test `.rs` file under `crates/` builds HTML from string literals. Pages come
//! from the templates in `crates/gatehouse-server/templates/` (escaping by default, checked at compile
//! time); tests may still hold HTML in their assertions.

use std::path::{Path, PathBuf};

/// Tags that mark a string literal as a piece of a page.
const TAGS: &[&str] = &[
    "!doctype", "html", "head", "body", "main", "title", "style", "script", "meta", "link", "h1", "h2", "h3", "p",
    "div", "span", "a", "strong", "em", "code", "pre", "ul", "ol", "li", "form", "input", "button", "label", "select",
    "option", "textarea", "table", "tr", "td", "th", "img", "br", "section", "nav", "header", "footer", "small",
];

/// Whether a line of code (not a comment) opens or closes one of `TAGS`: in a string literal
/// (`"…<p>…"`, `r#"<form …`) or on a later line of a multi-line one. Tags are matched in lower case
/// (as pages write them), so generics such as `Vec<A>` or `Page<T>` are not taken for HTML.
fn html_in_literal(line: &str) -> bool {
    let code = line.trim_start();
    if code.starts_with("//") {
        return false;
    }
    code.match_indices('<').any(|(i, _)| {
        let rest = code[i + 1..].trim_start_matches('/');
        if rest.get(..8).is_some_and(|d| d.eq_ignore_ascii_case("!doctype")) {
            return true;
        }
        TAGS.iter().any(|t| {
            rest.strip_prefix(t).and_then(|after| after.chars().next()).is_some_and(|c| matches!(c, '>' | ' ' | '/'))
        })
    })
}

/// The lines of `src` that are not test code: a file's `#[cfg(test)]` module comes last by convention.
fn non_test_lines(src: &str) -> impl Iterator<Item = (usize, &str)> {
    src.lines().enumerate().take_while(|(_, l)| l.trim() != "#[cfg(test)]").map(|(i, l)| (i + 1, l))
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_name().is_some_and(|n| n != "tests.rs") {
            out.push(path);
        }
    }
}

/// Every crate's `src/` (not `tests/` or `benches/`, which may hold HTML in assertions).
fn offenders(crates: &Path) -> Vec<String> {
    let mut files = vec![];
    for krate in std::fs::read_dir(crates).unwrap().map(Result::unwrap) {
        let src = krate.path().join("src");
        if src.is_dir() {
            rust_sources(&src, &mut files);
        }
    }
    let mut found = vec![];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in non_test_lines(&text).filter(|(_, l)| html_in_literal(l)) {
            found.push(format!("{}:{n}: {}", f.strip_prefix(crates).unwrap().display(), line.trim()));
        }
    }
    found
}

#[test]
fn no_rs_file_builds_html_from_string_literals() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let found = offenders(crates);
    assert!(found.is_empty(), "HTML belongs in a template (crates/gatehouse-server/templates/):\n{}", found.join("\n"));
}

#[test]
fn the_rule_sees_html_and_nothing_else() {
    let table = [
        (r#"    page(s, "Sign in", "<p>This sign-in link is malformed.</p>")"#, true),
        (r##"        r#"<form method="post" action="/login">"##, true),
        (r#"let e = format!(r"<p class=x>{}</p>", m);"#, true),
        ("<p>You will be sent back to <code>{host}</code>.</p>", true),
        (r#"    "</main></body></html>""#, true),
        (r#"    "<!DOCTYPE html>""#, true),
        (r#"    "<input type=\"hidden\">""#, true),
        (r#"/// A `<p>` with the message."#, false),
        (r#"    // "<p>" in a comment"#, false),
        (r#"bail!("{}: 1 to 40 letters (the header is `<prefix>-Signature`)", at("x"));"#, false),
        (r#"fn page<T>(x: Vec<Option<u8>>) -> Result<Page<T>, E> {"#, false),
        (r#"    "a <= b and b < c""#, false),
        (r#"    "<pre-flight>""#, false),
        ("impl<A> From<A> for Wrapper<A> {", false),
        ("let v: Vec<Option<PathBuf>> = vec![];", false),
    ];
    for (line, want) in table {
        assert_eq!(html_in_literal(line), want, "{line}");
    }
    let src = "fn a() {}\nconst X: &str = \"<p>x</p>\";\n#[cfg(test)]\nmod tests { const Y: &str = \"<p>y</p>\"; }\n";
    assert_eq!(non_test_lines(src).filter(|(_, l)| html_in_literal(l)).map(|(n, _)| n).collect::<Vec<_>>(), [2]);
}
