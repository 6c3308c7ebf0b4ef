//! What a Spacefile's text must be before the YAML parser sees it, and what YAML features it may not
//! use after. The parser is only handed bounded input: a size cap, no control characters, no tabs in
//! indentation and a nesting cap (libyaml's scanner slows down quadratically with nesting, so a
//! megabyte of `[` would otherwise take minutes). Each refusal names the line it found.

use yaml_serde::Value;

/// Spacefiles are a few hundred bytes; a megabyte is far beyond any real one.
pub(super) const MAX_BYTES: usize = 1 << 20;
/// Flow (`[`, `{`) and block (`- - -`) nesting deeper than this is refused before parsing; the
/// deserializer's own recursion limit (128) is what usually answers, with a line.
const MAX_NESTING: usize = 64;
/// An indentation deeper than this cannot be a Spacefile written by a person.
const MAX_INDENT: usize = 256;
/// Values echoed in messages are cut to this many characters.
const MAX_SHOWN: usize = 80;

/// A problem found in the raw text: 1-based line, field, message.
pub(super) type TextProblem = (usize, &'static str, String);

/// The text of a Spacefile read as bytes: UTF-8 is required, and the line of the first invalid byte is
/// reported. A leading byte order mark is allowed (YAML permits one).
pub(super) fn decode(bytes: &[u8]) -> Result<&str, TextProblem> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let line = line_at(&bytes[..e.valid_up_to()]);
        (line, "(document)", "is not UTF-8 text; save the Spacefile as UTF-8".to_owned())
    })
}

fn line_at(prefix: &[u8]) -> usize {
    prefix.iter().filter(|b| **b == b'\n').count() + 1
}

/// Refuses text the YAML parser should not be handed (see the module comment).
pub(super) fn check_text(text: &str) -> Result<(), TextProblem> {
    if text.len() > MAX_BYTES {
        let line = line_at(&text.as_bytes()[..MAX_BYTES]);
        return Err((
            line,
            "(document)",
            format!("the file is {} bytes; a Spacefile may be at most 1 MiB", text.len()),
        ));
    }
    for (i, l) in text.lines().enumerate() {
        if let Some(c) = l.chars().find(|c| c.is_control() && *c != '\t' && *c != '\r') {
            let code = u32::from(c);
            return Err((i + 1, "(document)", format!("contains the control character U+{code:04X}")));
        }
        // YAML forbids tabs in indentation, also after a sequence's `-`; say so plainly instead of a scanner error.
        let lead = l.trim_start_matches([' ', '\t', '-']);
        let lead = &l[..l.len() - lead.len()];
        if lead.contains('\t') && !lead.starts_with("---") {
            return Err((i + 1, "indentation", "a tab is used for indentation; YAML needs spaces".into()));
        }
        if lead.len() > MAX_INDENT {
            return Err((i + 1, "indentation", format!("is deeper than {MAX_INDENT} columns")));
        }
        if lead.matches('-').count() > MAX_NESTING {
            return Err((i + 1, "(document)", format!("nests sequences more than {MAX_NESTING} levels deep")));
        }
    }
    check_flow_nesting(text)
}

/// The YAML core tags (`!!str` …), which only restate a scalar's type; any other `!!` tag (`!!binary`,
/// `!!python/…`) is refused, as the library would silently read such a node as plain text.
const CORE_TAGS: [&str; 7] = ["!!str", "!!int", "!!bool", "!!float", "!!null", "!!seq", "!!map"];

/// Counts `[` / `{` nesting outside quotes and comments, and refuses `!!` tags other than the core ones.
fn check_flow_nesting(text: &str) -> Result<(), TextProblem> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    let mut prev = '\n';
    // The last character on this line that is not a space: a tag can only open a node.
    let mut last_sig = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            last_sig = '\n';
        }
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' if prev.is_whitespace() || "[{,:-".contains(prev) => quote = Some(c),
                '#' if prev.is_whitespace() => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            line += 1;
                            break;
                        }
                    }
                }
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err((line, "(document)", format!("nests more than {MAX_NESTING} levels deep")));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                '!' if (prev.is_whitespace() || prev == '[' || prev == ',') && "\n:-[{,?".contains(last_sig) => {
                    let rest = chars.as_str();
                    let token: String =
                        std::iter::once('!').chain(rest.chars().take_while(|c| !c.is_whitespace())).collect();
                    if token.starts_with("!!") && token.len() > 2 && !CORE_TAGS.contains(&token.as_str()) {
                        let message = format!("has the tag `{}`; Spacefiles do not use YAML tags", shown(&token));
                        return Err((line, "(document)", message));
                    }
                }
                _ => {}
            },
        }
        if !c.is_whitespace() {
            last_sig = c;
        }
        prev = c;
    }
    Ok(())
}

/// The line of the first alias (`*name`), for the deserializer's alias-expansion error, which has no position.
pub(super) fn first_alias_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let b = l.as_bytes();
            b.windows(2).enumerate().any(|(i, w)| {
                w[0] == b'*'
                    && (w[1].is_ascii_alphanumeric() || w[1] == b'_' || w[1] == b'-')
                    && (i == 0 || matches!(b[i - 1], b' ' | b'[' | b',' | b'{'))
            })
        })
        .map(|i| i + 1)
}

/// Every node with an application tag (`!name` or `!!binary` …), by field path, in document order.
/// Gatehouse gives tags no meaning, so a tagged value would silently lose its tag; it is refused instead.
pub(super) fn tagged_paths(doc: &Value) -> Vec<(String, String)> {
    let mut found = vec![];
    walk(doc, String::new(), &mut found);
    found
}

fn walk(v: &Value, path: String, found: &mut Vec<(String, String)>) {
    match v {
        Value::Tagged(t) => {
            found.push((path.clone(), t.tag.to_string()));
            walk(&t.value, path, found);
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), found);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                let sub = if path.is_empty() { key } else { format!("{path}.{key}") };
                if let Value::Tagged(t) = k {
                    found.push((sub.clone(), t.tag.to_string()));
                }
                walk(item, sub, found);
            }
        }
        _ => {}
    }
}

/// A value as echoed in a message: cut to a readable length.
pub(super) fn shown(s: &str) -> String {
    if s.chars().count() <= MAX_SHOWN {
        return s.to_owned();
    }
    let cut: String = s.chars().take(MAX_SHOWN).collect();
    format!("{cut}… ({} characters)", s.chars().count())
}
