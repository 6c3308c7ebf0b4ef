//! The Spacefile (Deta Space `v: 0`, SPEC §2): parsing, Deta's validation rules, and Gatehouse's
//! marked extensions (`upstream`, method-qualified `public_routes`, `route_scopes`). Every problem
//! is reported with file, line and field, all of them at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Deserialize;

use crate::gateway::MicroPolicy;
use crate::route::RoutePattern;
use crate::scope::Scope;

mod input;

/// One problem in a Spacefile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpacefileError {
    pub file: String,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpacefileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}: {}", self.file, self.field, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpacefile {
    v: Option<yaml_serde::Value>,
    app_name: Option<String>,
    icon: Option<String>,
    auto_pwa: Option<bool>,
    micros: Option<Vec<RawMicro>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMicro {
    name: Option<String>,
    src: Option<String>,
    engine: Option<String>,
    primary: Option<bool>,
    path: Option<String>,
    run: Option<String>,
    dev: Option<String>,
    serve: Option<String>,
    commands: Option<Vec<String>>,
    include: Option<Vec<String>>,
    presets: Option<RawPresets>,
    public: Option<bool>,
    public_routes: Option<Vec<String>>,
    actions: Option<Vec<yaml_serde::Value>>,
    /// Extension: an already-running app instead of `run`.
    upstream: Option<String>,
    /// Extension: route pattern → scope required of restricted keys and OAuth tokens.
    route_scopes: Option<yaml_serde::Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresets {
    env: Option<Vec<RawEnv>>,
    api_keys: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    name: Option<String>,
    description: Option<String>,
    default: Option<yaml_serde::Value>,
}

/// An environment variable a micro declares, with its default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub description: Option<String>,
    pub default: Option<String>,
}

/// How a micro is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `run`: a process `gatehouse up` starts in `src`.
    Run { command: String, src: String },
    /// Extension `upstream`: an app that is already running.
    Upstream(String),
    /// A static engine with `serve` (or `src`) as its directory: Gatehouse serves the files.
    Static { dir: String },
}

/// A validated micro.
#[derive(Clone, Debug)]
pub struct Micro {
    pub name: String,
    pub engine: Option<String>,
    pub primary: bool,
    /// `/` for the primary micro, else `/<path>` (default `/<name>`).
    pub mount: String,
    pub backend: Backend,
    pub commands: Vec<String>,
    pub env: Vec<EnvVar>,
    pub policy: MicroPolicy,
    /// 1-based line of the micro's entry, for messages.
    pub line: Option<usize>,
}

/// A validated Spacefile.
#[derive(Clone, Debug)]
pub struct Spacefile {
    pub app_name: Option<String>,
    pub micros: Vec<Micro>,
    /// Things accepted but not acted on (e.g. scheduled `actions`), for the startup screen.
    pub warnings: Vec<String>,
}

impl Spacefile {
    /// Picks the micro serving `path` (normalized) and the micro-relative path:
    /// the longest mount matched on whole segments, else the primary micro.
    pub fn route<'a>(&'a self, path: &crate::path::NormalizedPath) -> (&'a Micro, crate::path::NormalizedPath) {
        let mut best: Option<(&Micro, crate::path::NormalizedPath)> = None;
        for m in self.micros.iter().filter(|m| !m.primary) {
            if let Some(rest) = path.strip_mount(&m.mount) {
                if best.as_ref().is_none_or(|(b, _)| m.mount.len() > b.mount.len()) {
                    best = Some((m, rest));
                }
            }
        }
        best.unwrap_or_else(|| (self.primary(), path.clone()))
    }

    pub fn primary(&self) -> &Micro {
        self.micros.iter().find(|m| m.primary).expect("a validated Spacefile has a primary micro")
    }
}

/// Line lookup for semantic errors: the YAML library reports positions only for what it rejects itself.
struct Lines<'a> {
    lines: Vec<&'a str>,
    /// Start line (0-based) of each micro's list item.
    micro_starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut micro_starts = vec![];
        let mut in_micros = false;
        let mut item_indent: Option<usize> = None;
        for (i, l) in lines.iter().enumerate() {
            let trimmed = l.trim_start();
            let indent = l.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if indent == 0 {
                in_micros = trimmed.starts_with("micros:");
                item_indent = None;
                continue;
            }
            if in_micros && trimmed.starts_with('-') && item_indent.is_none_or(|ii| ii == indent) {
                item_indent = Some(indent);
                micro_starts.push(i);
            }
        }
        Self { lines, micro_starts }
    }

    fn top(&self, key: &str) -> Option<usize> {
        self.lines.iter().position(|l| l.starts_with(&format!("{key}:"))).map(|i| i + 1)
    }

    fn micro(&self, idx: usize, key: Option<&str>) -> Option<usize> {
        let start = *self.micro_starts.get(idx)?;
        let end = self.micro_starts.get(idx + 1).copied().unwrap_or(self.lines.len());
        let Some(key) = key else { return Some(start + 1) };
        (start..end)
            .find(|&i| {
                let t = self.lines[i].trim_start().trim_start_matches("- ").trim_start();
                t.starts_with(&format!("{key}:"))
            })
            .map(|i| i + 1)
            .or(Some(start + 1))
    }

    /// The line of a field path such as `micros[1].presets.env[0]` (the micro's key) or `app_name`.
    fn path(&self, path: &str) -> Option<usize> {
        if let Some(rest) = path.strip_prefix("micros[") {
            let (idx, rest) = rest.split_once(']')?;
            let idx: usize = idx.parse().ok()?;
            // The innermost key names the line best (`default` of `presets.env[0].default`).
            let keys: Vec<&str> =
                rest.split(['.', '[', ']']).filter(|k| !k.is_empty() && k.parse::<usize>().is_err()).collect();
            return match keys.last() {
                Some(key) => self.micro(idx, Some(key)),
                None => self.micro(idx, None),
            };
        }
        let top = path.split(['.', '[']).next().unwrap_or("");
        self.top(top).or(Some(1))
    }
}

fn name_ok(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

fn env_name_ok(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn yaml_scalar(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A parser or type error from the YAML library, as file:line:field.
fn yaml_error(
    text: &str,
    e: &yaml_serde::Error,
    err: impl Fn(Option<usize>, &str, String) -> SpacefileError,
) -> SpacefileError {
    let msg = e.to_string();
    // The library prefixes the field path (`micros[0]: unknown field …`); keep it as the field.
    let (field, message) = match msg.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (f.to_owned(), m.to_owned()),
        _ => ("(document)".to_owned(), msg.clone()),
    };
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    match e.location().map(|l| l.line()) {
        Some(line) => err(Some(line), &field, message),
        // Alias expansion past the library's limit has no position: point at the first alias.
        None if message.contains("repetition limit") => err(
            input::first_alias_line(text),
            &field,
            "anchors and aliases expand to too much data (repetition limit exceeded)".into(),
        ),
        None => err(None, &field, message),
    }
}

/// Reads a Spacefile from bytes: like [`parse`], and a file that is not UTF-8 is an error with its line.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Spacefile, Vec<SpacefileError>> {
    match input::decode(bytes) {
        Ok(text) => parse(file, text),
        Err((line, field, message)) => {
            Err(vec![SpacefileError { file: file.to_owned(), line: Some(line), field: field.to_owned(), message }])
        }
    }
}

/// Parses and validates `text`, naming `file` in every error.
pub fn parse(file: &str, text: &str) -> Result<Spacefile, Vec<SpacefileError>> {
    let err = |line: Option<usize>, field: &str, message: String| SpacefileError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Err((line, field, message)) = input::check_text(text) {
        return Err(vec![err(Some(line), field, message)]);
    }
    let raw: RawSpacefile = match yaml_serde::from_str(text) {
        Ok(r) => r,
        Err(e) => return Err(vec![yaml_error(text, &e, err)]),
    };
    let lines = Lines::new(text);
    if let Ok(doc) = yaml_serde::from_str::<yaml_serde::Value>(text) {
        let tagged = input::tagged_paths(&doc);
        if !tagged.is_empty() {
            return Err(tagged
                .into_iter()
                .map(|(path, tag)| {
                    let message = format!("has the tag `{}`; Spacefiles do not use YAML tags", input::shown(&tag));
                    err(lines.path(&path), &path, message)
                })
                .collect());
        }
    }
    let mut check = Check { file, lines, errors: vec![], warnings: vec![] };
    let spacefile = Spacefile::from_raw(raw, &mut check);
    if check.errors.is_empty() {
        Ok(spacefile)
    } else {
        Err(check.errors)
    }
}

/// What validation collects: every error (all of them, not the first) and the startup warnings.
struct Check<'a> {
    file: &'a str,
    lines: Lines<'a>,
    errors: Vec<SpacefileError>,
    warnings: Vec<String>,
}

impl Check<'_> {
    fn error(&mut self, line: Option<usize>, field: &str, message: String) {
        self.errors.push(SpacefileError { file: self.file.to_owned(), line, field: field.to_owned(), message });
    }

    /// An error on key `key` of micro `i`, with the field `micros[i].{field}`.
    fn micro_error(&mut self, i: usize, key: &str, field: &str, message: String) {
        let line = self.lines.micro(i, Some(key));
        self.error(line, &format!("micros[{i}].{field}"), message);
    }
}

impl Spacefile {
    fn from_raw(raw: RawSpacefile, check: &mut Check<'_>) -> Self {
        match &raw.v {
            Some(yaml_serde::Value::Number(n)) if n.as_u64() == Some(0) => {}
            Some(_) => check.error(check.lines.top("v"), "v", "must be 0 (the only Spacefile version)".into()),
            None => check.error(None, "v", "is required; add `v: 0` at the top".into()),
        }
        if let Some(name) = &raw.app_name {
            if name.chars().count() > 12 || name.trim().is_empty() {
                let message = format!("`{}` must be 1 to 12 characters", input::shown(name));
                check.error(check.lines.top("app_name"), "app_name", message);
            }
        }
        let _ = (&raw.icon, raw.auto_pwa);
        let raw_micros = raw.micros.unwrap_or_default();
        check_micro_count(&raw_micros, check);
        let several = raw_micros.len() > 1;
        let mut seen_names = HashSet::new();
        let mut seen_mounts: BTreeMap<String, String> = BTreeMap::new();
        let mut micros = vec![];
        for (i, m) in raw_micros.into_iter().enumerate() {
            let primary = if several { m.primary == Some(true) } else { true };
            if let Some(micro) = Micro::from_raw(i, m, primary, (&mut seen_names, &mut seen_mounts), check) {
                micros.push(micro);
            }
        }
        Spacefile { app_name: raw.app_name, micros, warnings: std::mem::take(&mut check.warnings) }
    }
}

fn check_micro_count(raw_micros: &[RawMicro], check: &mut Check<'_>) {
    if raw_micros.is_empty() || raw_micros.len() > 5 {
        let message = format!("must list 1 to 5 micros, found {}", raw_micros.len());
        check.error(check.lines.top("micros"), "micros", message);
    }
    let primaries = raw_micros.iter().filter(|m| m.primary == Some(true)).count();
    if raw_micros.len() > 1 && primaries != 1 {
        let message = format!("with several micros exactly one needs `primary: true`; found {primaries}");
        check.error(check.lines.top("micros"), "micros", message);
    }
}

/// Names and mounts already taken by earlier micros.
type Seen<'s> = (&'s mut HashSet<String>, &'s mut BTreeMap<String, String>);

impl Micro {
    fn from_raw(i: usize, m: RawMicro, primary: bool, seen: Seen<'_>, check: &mut Check<'_>) -> Option<Micro> {
        let (seen_names, seen_mounts) = seen;
        let name = micro_name(i, &m, seen_names, check);
        if m.public == Some(true) && m.public_routes.is_some() {
            let message = "cannot be used together with `public`".into();
            check.micro_error(i, "public_routes", "public_routes", message);
        }
        let public_routes = m.public_routes.as_deref().map(|r| public_routes(i, r, check)).unwrap_or_default();
        let route_scopes = m.route_scopes.as_ref().map(|r| route_scopes(i, r, check)).unwrap_or_default();
        let (env, api_keys) = match &m.presets {
            Some(p) => (EnvVar::from_presets(i, p, check), p.api_keys.unwrap_or(false)),
            None => (vec![], false),
        };
        let backend = Backend::from_raw(i, &m, check);
        if m.actions.as_ref().is_some_and(|a| !a.is_empty()) {
            check.warnings.push(format!("micro `{name}`: scheduled `actions` are accepted but not run by Gatehouse"));
        }
        let _ = (&m.dev, &m.include);
        let mount = micro_mount(i, &m, &name, primary, seen_mounts, check);
        Some(Micro {
            name,
            engine: m.engine.clone(),
            primary,
            mount,
            backend: backend?,
            commands: m.commands.clone().unwrap_or_default(),
            env,
            policy: MicroPolicy { public: m.public == Some(true), public_routes, api_keys, route_scopes },
            line: check.lines.micro(i, None),
        })
    }
}

fn micro_name(i: usize, m: &RawMicro, seen_names: &mut HashSet<String>, check: &mut Check<'_>) -> String {
    let name = match &m.name {
        Some(n) if name_ok(n) => n.clone(),
        Some(n) => {
            check.micro_error(i, "name", "name", format!("`{n}` must match ^[A-Za-z0-9][A-Za-z0-9_-]*$"));
            n.clone()
        }
        None => {
            check.error(check.lines.micro(i, None), &format!("micros[{i}].name"), "is required".into());
            format!("micro{i}")
        }
    };
    if !seen_names.insert(name.clone()) {
        check.micro_error(i, "name", "name", format!("`{name}` is used by another micro; names must be unique"));
    }
    name
}

/// `public_routes`: a non-empty list of distinct route patterns.
fn public_routes(i: usize, routes: &[String], check: &mut Check<'_>) -> Vec<RoutePattern> {
    let error =
        |check: &mut Check<'_>, message: String| check.micro_error(i, "public_routes", "public_routes", message);
    if routes.is_empty() {
        error(check, "must not be empty; remove it or list routes".into());
    }
    let mut seen = HashSet::new();
    let mut out = vec![];
    for r in routes {
        if r.is_empty() {
            error(check, "contains an empty route".into());
            continue;
        }
        if !seen.insert(r) {
            error(check, format!("`{r}` is listed twice"));
        }
        match RoutePattern::parse(r) {
            Ok(p) => out.push(p),
            Err(e) => error(check, e),
        }
    }
    out
}

/// `route_scopes` (extension): route pattern → scope string.
fn route_scopes(i: usize, map: &yaml_serde::Mapping, check: &mut Check<'_>) -> Vec<(RoutePattern, Scope)> {
    let mut out = vec![];
    for (k, v) in map {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            check.micro_error(i, "route_scopes", "route_scopes", "maps route patterns to scope strings".into());
            continue;
        };
        match (RoutePattern::parse(k), Scope::parse(v)) {
            (Ok(p), Ok(s)) => out.push((p, s)),
            (Err(e), _) | (_, Err(e)) => check.micro_error(i, "route_scopes", "route_scopes", e),
        }
    }
    out
}

impl EnvVar {
    /// `presets.env`: named, valid, distinct variables with scalar defaults.
    fn from_presets(i: usize, p: &RawPresets, check: &mut Check<'_>) -> Vec<EnvVar> {
        let error = |check: &mut Check<'_>, message: String| check.micro_error(i, "env", "presets.env", message);
        let mut seen = HashSet::new();
        let mut env = vec![];
        for e in p.env.iter().flatten() {
            let Some(n) = &e.name else {
                error(check, "every entry needs a `name`".into());
                continue;
            };
            if !env_name_ok(n) {
                error(check, format!("`{n}` is not a valid environment variable name"));
            }
            if !seen.insert(n.clone()) {
                error(check, format!("`{n}` is declared twice"));
            }
            let default = match &e.default {
                None | Some(yaml_serde::Value::Null) => None,
                Some(v) => yaml_scalar(v).or_else(|| {
                    error(check, format!("the default of `{n}` must be a string, number or boolean"));
                    None
                }),
            };
            env.push(EnvVar { name: n.clone(), description: e.description.clone(), default });
        }
        env
    }
}

impl Backend {
    /// `run`, `upstream` (extension) or a static engine's directory; `None` after an error.
    fn from_raw(i: usize, m: &RawMicro, check: &mut Check<'_>) -> Option<Backend> {
        match (&m.run, &m.upstream) {
            (Some(_), Some(_)) => {
                let message = "use either `run` or `upstream` (extension), not both".into();
                check.micro_error(i, "upstream", "upstream", message);
                None
            }
            (None, Some(u)) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    check.micro_error(i, "upstream", "upstream", format!("`{u}` must be an http:// or https:// URL"));
                }
                Some(Backend::Upstream(u.trim_end_matches('/').to_owned()))
            }
            (Some(run), None) => {
                if m.src.is_none() {
                    check.micro_error(i, "run", "src", "is required with `run`".into());
                }
                Some(Backend::Run { command: run.clone(), src: m.src.clone().unwrap_or_else(|| ".".into()) })
            }
            (None, None) => Backend::static_dir(m).or_else(|| {
                let message = "is required for this engine (or `upstream`, an extension)".into();
                check.error(check.lines.micro(i, None), &format!("micros[{i}].run"), message);
                None
            }),
        }
    }

    /// A static engine (not Node, Python or custom) with `serve` (under `src`) or `src` as its directory.
    fn static_dir(m: &RawMicro) -> Option<Backend> {
        let dir = m.serve.clone().or_else(|| m.src.clone())?;
        let is_static =
            m.engine.as_deref().is_some_and(|e| !e.starts_with("nodejs") && !e.starts_with("python") && e != "custom");
        if !is_static {
            return None;
        }
        let base = m.src.clone().unwrap_or_else(|| ".".into());
        let dir = match &m.serve {
            Some(s) => format!("{}/{}", base.trim_end_matches('/'), s.trim_start_matches("./")),
            None => dir,
        };
        Some(Backend::Static { dir })
    }
}

/// The mount: `/` for the primary micro, else `/<path>` (default `/<name>`), valid, unreserved and unique.
fn micro_mount(
    i: usize,
    m: &RawMicro,
    name: &str,
    primary: bool,
    seen_mounts: &mut BTreeMap<String, String>,
    check: &mut Check<'_>,
) -> String {
    if primary {
        if m.path.is_some() {
            check.warnings.push(format!("micro `{name}`: `path` is ignored on the primary micro, which serves `/`"));
        }
        return "/".to_owned();
    }
    let p = m.path.clone().unwrap_or_else(|| name.to_owned());
    let p = format!("/{}", p.trim_matches('/'));
    if p == "/" || p.contains("//") || !p[1..].split('/').all(name_ok) {
        let message = format!("`{p}` must be one or more segments of letters, digits, `_` or `-`");
        check.micro_error(i, "path", "path", message);
    }
    if p == "/__gatehouse" || p.starts_with("/__gatehouse/") {
        check.micro_error(i, "path", "path", "`/__gatehouse` is reserved for Gatehouse's own pages".into());
    }
    if let Some(other) = seen_mounts.insert(p.clone(), name.to_owned()) {
        check.micro_error(i, "path", "path", format!("`{p}` is already the path of micro `{other}`"));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETA_GUIDE: &str = r#"# Spacefile Docs: https://go.deta.dev/docs/spacefile/v0
v: 0
app_name: "SpaceAuth"
micros:
  - name: express
    src: ./src/express
    engine: nodejs16
    run: node index.js
    primary: true
    public_routes:
      - "/ping"
    presets:
      api_keys: true
"#;

    #[test]
    fn the_deta_guide_spacefile_parses() {
        let s = parse("Spacefile", DETA_GUIDE).unwrap();
        assert_eq!(s.app_name.as_deref(), Some("SpaceAuth"));
        let m = &s.micros[0];
        assert!(m.primary && m.policy.api_keys);
        assert_eq!(m.mount, "/");
        assert!(m.policy.is_public("GET", "/ping"));
        assert!(!m.policy.is_public("GET", "/"));
        assert_eq!(m.backend, Backend::Run { command: "node index.js".into(), src: "./src/express".into() });
    }

    fn errors(text: &str) -> Vec<String> {
        parse("Spacefile", text).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn hostile_and_invalid_spacefiles_name_file_line_and_field() {
        let rows: &[(&str, &str)] = &[
            ("v: 1\nmicros:\n  - name: a\n    src: .\n    engine: custom\n    run: x\n", "Spacefile:1: v: must be 0"),
            ("micros:\n  - name: a\n    src: .\n    engine: custom\n    run: x\n", "Spacefile: v: is required"),
            ("v: 0\napp_name: waytoolongname\nmicros:\n  - name: a\n    src: .\n    run: x\n", "Spacefile:2: app_name:"),
            ("v: 0\nmicros: []\n", "Spacefile:2: micros: must list 1 to 5 micros, found 0"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    colour: red\n", "Spacefile:6: micros[0]: unknown field `colour`"),
            ("v: 0\nmicros:\n  - name: -a\n    src: .\n    run: x\n", "Spacefile:3: micros[0].name: `-a` must match"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    primary: true\n  - name: a\n    src: .\n    run: y\n", "Spacefile:7: micros[1].name: `a` is used by another micro"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n  - name: b\n    src: .\n    run: y\n", "exactly one needs `primary: true`; found 0"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    public: true\n    public_routes: [\"/x\"]\n", "Spacefile:7: micros[0].public_routes: cannot be used together with `public`"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    public_routes: []\n", "micros[0].public_routes: must not be empty"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    public_routes: [\"/x\", \"/x\"]\n", "`/x` is listed twice"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    public_routes: [\"\"]\n", "contains an empty route"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    public_routes: [\"ping\"]\n", "must start with `/`"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    upstream: http://127.0.0.1:1\n", "use either `run` or `upstream`"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    engine: nodejs16\n", "micros[0].run: is required"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    primary: true\n  - name: b\n    src: .\n    run: y\n    path: __gatehouse\n", "is reserved"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    presets:\n      env:\n        - description: no name\n", "every entry needs a `name`"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    presets:\n      env:\n        - name: 1BAD\n", "not a valid environment variable name"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n    route_scopes:\n      \"POST /o/*\": \"orders write\"\n", "micros[0].route_scopes"),
            ("v: 0\nmicros:\n\t- name: a\n", "Spacefile:3: indentation: a tab is used for indentation"),
            ("v: 0\nmicros: {name: [}\n", "Spacefile:2:"),
            ("v: 0\nmicros:\n  - name: a\n    src: .\n    run: [1, 2]\n", "micros[0].run: invalid type"),
        ];
        for (text, want) in rows {
            let errs = errors(text);
            assert!(errs.iter().any(|e| e.contains(want)), "{text:?}\n wanted {want:?}\n got {errs:#?}");
        }
    }

    const MICRO: &str = "v: 0\nmicros:\n  - name: a\n    src: .\n    run: x\n";

    /// Nine levels of nine aliases each: 9^9 nodes if expanded.
    fn billion_laughs() -> String {
        let mut t = format!("{MICRO}    actions:\n      - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = format!("*a{}", i - 1);
            t.push_str(&format!("      - &a{i} [{}]\n", [p.as_str(); 9].join(", ")));
        }
        t
    }

    #[test]
    fn hostile_yaml_is_refused_with_a_line_quickly() {
        let deep_flow = format!("v: 0\nmicros: {}{}\n", "[".repeat(400_000), "]".repeat(400_000));
        let deep_map = format!("{MICRO}    actions:\n      - {}x{}\n", "{a: ".repeat(100), "}".repeat(100));
        let deep_dashes = format!("{MICRO}    actions:\n      {}x\n", "- ".repeat(100));
        let deep_indent: String = (0..300).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        let huge_name =
            format!("v: 0\napp_name: {}\nmicros:\n  - name: a\n    src: .\n    run: x\n", "x".repeat(500_000));
        let huge_file = format!("{MICRO}    run: {}\n", "y".repeat(2 << 20));
        let rows: Vec<(&str, String, &str)> = vec![
            (
                "billion laughs",
                billion_laughs(),
                "Spacefile:8: (document): anchors and aliases expand to too much data",
            ),
            ("undefined alias", format!("{MICRO}    engine: *nope\n"), "Spacefile:6: (document): unknown anchor"),
            ("flow nesting", deep_flow, "Spacefile:2: (document): nests more than 64 levels deep"),
            ("mapping nesting", deep_map, "Spacefile:7: (document): nests more than 64 levels deep"),
            ("sequence nesting", deep_dashes, "Spacefile:7: (document): nests sequences more than 64 levels deep"),
            ("indentation", deep_indent, "indentation: is deeper than 256 columns"),
            ("duplicate field", format!("{MICRO}    run: y\n"), "Spacefile:3: micros[0]: duplicate field `run`"),
            ("duplicate top key", format!("v: 0\n{MICRO}"), "Spacefile:1: (document): duplicate field `v`"),
            (
                "duplicate map key",
                format!("{MICRO}    route_scopes:\n      \"GET /a\": a:read\n      \"GET /a\": b:read\n"),
                "Spacefile:7: micros[0].route_scopes: duplicate entry with key \"GET /a\"",
            ),
            (
                "local tag",
                format!("{MICRO}    engine: !custom x\n"),
                "Spacefile:6: micros[0].engine: has the tag `!custom`",
            ),
            (
                "tag on v",
                "v: !x 0\nmicros:\n  - name: a\n    src: .\n    run: x\n".into(),
                "Spacefile:1: v: has the tag `!x`; Spacefiles do not use YAML tags",
            ),
            (
                "binary tag",
                format!("{MICRO}    engine: !!binary aGVsbG8=\n"),
                "Spacefile:6: (document): has the tag `!!binary`",
            ),
            (
                "foreign tag",
                format!("{MICRO}    commands: [!!python/object/apply:os.system [ls]]\n"),
                "Spacefile:6: (document): has the tag `!!python/object/apply:os.system`",
            ),
            (
                "tag in env default",
                format!("{MICRO}    presets:\n      env:\n        - name: A\n          default: !x 5\n"),
                "Spacefile:9: micros[0].presets.env[0].default: has the tag `!x`",
            ),
            ("huge scalar", huge_name, "Spacefile:2: app_name: `xxxxxxxxxx"),
            (
                "huge file",
                huge_file,
                "Spacefile:6: (document): the file is 2097209 bytes; a Spacefile may be at most 1 MiB",
            ),
            (
                "control character",
                format!("{MICRO}    engine: a\u{1}b\n"),
                "Spacefile:6: (document): contains the control character U+0001",
            ),
            (
                "NUL",
                format!("{MICRO}    engine: \"a\u{0}b\"\n"),
                "Spacefile:6: (document): contains the control character U+0000",
            ),
            (
                "tab indentation",
                "v: 0\nmicros:\n\t- name: a\n".into(),
                "Spacefile:3: indentation: a tab is used for indentation",
            ),
            (
                "tab after dash",
                "v: 0\nmicros:\n  -\tname: a\n".into(),
                "Spacefile:3: indentation: a tab is used for indentation",
            ),
            (
                "two documents",
                format!("{MICRO}---\n{MICRO}"),
                "Spacefile: (document): deserializing from YAML containing more than one document",
            ),
            ("not a mapping", "hello".into(), "Spacefile:1: (document): invalid type: string \"hello\""),
            (
                "merge key",
                "v: 0\nmicros:\n  - &m\n    name: a\n    run: x\n  - <<: *m\n".into(),
                "Spacefile:6: micros[1]: unknown field `<<`",
            ),
        ];
        let mut failed = 0;
        for (name, text, want) in &rows {
            let started = std::time::Instant::now();
            let errs = errors(text);
            let took = started.elapsed();
            assert!(took < std::time::Duration::from_secs(5), "{name}: took {took:?}");
            if !errs.iter().any(|e| e.contains(want)) {
                eprintln!("{name}: wanted {want:?}\n got {errs:#?}");
                failed += 1;
            }
            assert!(errs.iter().all(|e| e.len() < 400), "{name}: an overlong message {errs:#?}");
        }
        assert_eq!(failed, 0, "rows above did not give the expected error");
    }

    #[test]
    fn bytes_must_be_utf8_and_may_start_with_a_bom() {
        let mut bad = MICRO.as_bytes().to_vec();
        bad.extend_from_slice(b"    engine: caf\xe9\n");
        let errs: Vec<String> = parse_bytes("Spacefile", &bad).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(errs, ["Spacefile:6: (document): is not UTF-8 text; save the Spacefile as UTF-8"]);
        let bom = [b"\xEF\xBB\xBF".as_slice(), DETA_GUIDE.as_bytes()].concat();
        assert_eq!(parse_bytes("Spacefile", &bom).unwrap().app_name.as_deref(), Some("SpaceAuth"));
        assert!(parse("Spacefile", &format!("\u{feff}{DETA_GUIDE}")).is_ok());
    }

    #[test]
    fn aliases_within_limits_and_core_tags_still_work() {
        let text = format!("{MICRO}    commands: &c [a, b]\n  - name: b\n    src: .\n    run: y\n    commands: *c\n    primary: !!bool true\n");
        let s = parse("Spacefile", &text).unwrap();
        assert_eq!(s.micros[1].commands, ["a", "b"]);
        assert!(s.micros[1].primary);
    }

    #[test]
    fn routing_by_mount_and_extensions() {
        let text = "v: 0\nmicros:\n  - name: web\n    src: web\n    run: node a.js\n    primary: true\n  - name: api\n    src: api\n    engine: python3.9\n    run: uvicorn main:app\n    public_routes: [\"GET /feed/*\"]\n    presets:\n      api_keys: true\n      env:\n        - name: GREETING\n          default: 5\n    route_scopes:\n      \"POST /orders/*\": orders:write\n  - name: docs\n    upstream: http://127.0.0.1:9000/\n    path: help/docs\n";
        let s = parse("Spacefile", text).unwrap();
        let p = |x| crate::path::NormalizedPath::parse(x).unwrap();
        let (m, rest) = s.route(&p("/api/feed/1"));
        assert_eq!((m.name.as_str(), rest.as_str()), ("api", "/feed/1"));
        assert_eq!(s.route(&p("/apix")).0.name, "web");
        assert_eq!(s.route(&p("/api")).1.as_str(), "/");
        assert_eq!(s.route(&p("/help/docs/x")).0.name, "docs");
        assert_eq!(s.micros[2].backend, Backend::Upstream("http://127.0.0.1:9000".into()));
        assert_eq!(s.micros[1].env[0].default.as_deref(), Some("5"));
        assert_eq!(
            s.micros[1].policy.required_scope("POST", "/orders/1").map(ToString::to_string).as_deref(),
            Some("orders:write")
        );
    }
}
