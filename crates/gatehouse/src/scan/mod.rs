//! `gatehouse scan`: finds this deployment's credentials in files or in a git repository's whole
//! history (SPEC §13), tells each one's status from the store when there is one, and with `--revoke`
//! revokes the live ones among them as leaked. The matching itself is `gatehouse_core::leak`.

mod files;
mod git;
mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gatehouse_core::apikey::mask;
use gatehouse_core::leak::Recognised;
use gatehouse_core::leak_scan::{CredentialKind, Found};
use gatehouse_core::{KeyHash, Timestamp};
use gatehouse_services::audit::RequestMeta;
use gatehouse_services::leaks::{LeakOutcome, LeakService, LeakSource};
use gatehouse_store::Store;
use serde::Serialize;

use crate::config::Config;

/// The flags of `gatehouse scan` (the command's doc comment in `cli.rs` is its help).
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories to scan (default: the current directory); with --git, the repository.
    pub paths: Vec<PathBuf>,
    /// Scan every blob of every ref of the repository's history (branches, tags, deleted files).
    #[arg(long)]
    pub git: bool,
    /// Revoke every live credential found as leaked (audited as `key.leaked` with where it was found). Needs the store.
    #[arg(long)]
    pub revoke: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Skip files that .gitignore/.ignore files exclude (default: scan them; build outputs leak too).
    #[arg(long)]
    pub respect_gitignore: bool,
    /// Also scan files that look binary (a NUL byte in their first 8 KiB); skipped and counted by default.
    #[arg(long)]
    pub binary: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

/// A credential's standing in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Revoked,
    Expired,
    /// Not in this store (another deployment's, already deleted, or never issued).
    Unknown,
    /// A format the store cannot be asked about by the credential alone (client and webhook secrets).
    Unchecked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
            Status::Unknown => "unknown",
            Status::Unchecked => "unchecked",
        }
    }
}

/// One credential found at one place. Holds no secret: only its mask and its SHA-256.
#[derive(Clone, Debug)]
pub struct Finding {
    pub kind: CredentialKind,
    pub path: String,
    pub line: u64,
    pub column: u64,
    /// The commit that introduced the blob (with --git).
    pub commit: Option<String>,
    pub masked: String,
    /// SHA-256 of the credential: how the store knows it.
    pub hash: KeyHash,
    pub status: Option<Status>,
    /// Set when `--revoke` revoked it in this run.
    pub revoked_now: bool,
}

impl Finding {
    pub fn new(kind: CredentialKind, text: &str, path: String, line: u64, column: u64, commit: Option<String>) -> Self {
        Self {
            kind,
            path,
            line,
            column,
            commit,
            masked: masked(kind, text),
            hash: KeyHash::of(text),
            status: None,
            revoked_now: false,
        }
    }

    /// `path:line` and the commit, as `--revoke` writes it into the audit entry.
    pub fn source(&self) -> String {
        match &self.commit {
            Some(c) => format!("{}:{} {c}", self.path, self.line),
            None => format!("{}:{}", self.path, self.line),
        }
    }
}

/// API keys as everywhere else (`gth_sk_live_4eC3…ab12`); tokens and secrets as their prefix and last
/// four characters.
fn masked(kind: CredentialKind, text: &str) -> String {
    if kind.is_api_key() {
        return mask(text);
    }
    let prefix_end = text.rfind('_').map_or(0, |i| i + 1);
    format!("{}…{}", &text[..prefix_end], &text[text.len() - 4..])
}

/// Counters shared by the workers, read by the progress line and the summary.
#[derive(Debug, Default)]
pub struct Progress {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub found: AtomicU64,
    pub skipped_binary: AtomicU64,
    pub errors: AtomicU64,
}

/// Where a scan reads from and what it found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Files or objects that could not be read; the scan went on without them.
    pub errors: Vec<String>,
}

/// Runs the command; every failure is exit code 2, so a CI gate never mistakes one for "clean".
pub async fn run(args: ScanArgs, cfg: Result<Config>, json_flag: bool) -> ExitCode {
    match scan(args, cfg, json_flag).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn scan(mut args: ScanArgs, cfg: Result<Config>, json_flag: bool) -> Result<ExitCode> {
    let cfg = cfg?;
    if json_flag && args.format == Format::Text {
        args.format = Format::Json;
    }
    if args.paths.is_empty() {
        args.paths.push(PathBuf::from("."));
    }
    if args.git && args.paths.len() > 1 {
        bail!("--git scans one repository; give one path");
    }
    let store = open_store_if_any(&cfg).await?;
    if args.revoke && store.is_none() {
        bail!(
            "--revoke needs the store: give --data-dir (holding gatehouse.db) or --database-url ({} has none)",
            cfg.data_dir.display()
        );
    }
    let scanner = Arc::new(gatehouse_core::leak_scan::Scanner::new(&cfg.server.namespace));
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let progress = Arc::new(Progress::default());
    let ticker = ProgressLine::start(progress.clone());
    let job = {
        let (progress, paths) = (progress.clone(), args.paths.clone());
        let opts = files::Options { respect_gitignore: args.respect_gitignore, binary: args.binary, threads };
        let git = args.git;
        tokio::task::spawn_blocking(move || {
            if git {
                git::scan(&paths[0], &scanner, &opts, &progress)
            } else {
                Ok(files::scan(&paths, &scanner, &opts, &progress))
            }
        })
    };
    let outcome = job.await.context("the scan stopped unexpectedly");
    ticker.stop();
    let mut outcome = outcome??;
    outcome.findings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    if let Some(store) = &store {
        lookup_status(store.as_ref(), &mut outcome.findings).await?;
        if args.revoke {
            revoke_active(store.clone(), &cfg, &mut outcome.findings).await?;
        }
    }
    if let Some(s) = store_handle(&store) {
        s.close().await;
    }
    let out = match args.format {
        Format::Text => report::text(&outcome.findings),
        Format::Json => report::json(&outcome),
        Format::Sarif => report::sarif(&outcome.findings),
    };
    print!("{out}");
    for e in &outcome.errors {
        eprintln!("warning: {e}");
    }
    let skipped = progress.skipped_binary.load(Ordering::Relaxed);
    if args.format == Format::Text {
        eprintln!("{}", report::summary(&outcome.findings, progress.files.load(Ordering::Relaxed), skipped));
    }
    Ok(if !outcome.errors.is_empty() {
        ExitCode::from(2)
    } else if outcome.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The open store, when the configuration names one that exists: a database URL, or a data dir
/// that already holds `gatehouse.db` (a scan never creates one).
async fn open_store_if_any(cfg: &Config) -> Result<Option<Arc<gatehouse_store::SqlStore>>> {
    if cfg.database_url.is_none() && !cfg.data_dir.join("gatehouse.db").is_file() {
        return Ok(None);
    }
    Ok(Some(Arc::new(crate::cli::open_store(cfg).await?)))
}

fn store_handle(store: &Option<Arc<gatehouse_store::SqlStore>>) -> Option<&gatehouse_store::SqlStore> {
    store.as_deref()
}

/// Each finding's status from the store; a storage failure is an error (never "unknown").
async fn lookup_status(store: &dyn Store, findings: &mut [Finding]) -> Result<()> {
    let now = Timestamp::now();
    let judge = |revoked: Option<Timestamp>, expires: Option<Timestamp>| match (revoked, expires) {
        (Some(_), _) => Status::Revoked,
        (None, Some(e)) if e <= now => Status::Expired,
        _ => Status::Active,
    };
    for f in findings.iter_mut() {
        f.status = Some(match f.kind {
            k if k.is_api_key() => match store.key_by_hash(&f.hash).await.context("storage: looking up a key")? {
                Some(r) => judge(r.revoked_at, r.expires_at),
                None => Status::Unknown,
            },
            CredentialKind::OAuthAccessToken | CredentialKind::OAuthRefreshToken => {
                match store.token_by_hash(&f.hash).await.context("storage: looking up a token")? {
                    Some(t) => judge(t.revoked_at, Some(t.expires_at)),
                    None => Status::Unknown,
                }
            }
            _ => Status::Unchecked,
        });
    }
    Ok(())
}

/// Revokes each live credential found (API keys, OAuth tokens and client secrets) once, wherever it
/// was found first, through the leak service: the same `key.leaked` audit entry, leak record and
/// event as a report from GitHub, with the file (and commit) as the source.
async fn revoke_active(store: Arc<gatehouse_store::SqlStore>, cfg: &Config, findings: &mut [Finding]) -> Result<()> {
    let store: Arc<dyn Store> = store;
    let service = LeakService::new(store, cfg.server.namespace.clone(), cfg.server.workspace.clone());
    let mut done: std::collections::HashMap<KeyHash, Status> = std::collections::HashMap::new();
    for f in findings.iter_mut() {
        let Some(kind) = f.kind.reported_kind() else { continue };
        if !matches!(f.status, Some(Status::Active | Status::Unchecked)) {
            continue;
        }
        if let Some(s) = done.get(&f.hash) {
            f.status = Some(*s);
            continue;
        }
        let recognised = Recognised { kind, hash: f.hash, masked: f.masked.clone() };
        let source = LeakSource::Scan { path: format!("{}:{}", f.path, f.line), commit: f.commit.clone() };
        let report = service
            .revoke_recognised(&recognised, &source, &RequestMeta::default())
            .await
            .map_err(crate::keys_cmd::service_error)
            .with_context(|| format!("revoking {} found at {}", f.masked, f.source()))?;
        let status = match report.outcome {
            LeakOutcome::Revoked => {
                f.revoked_now = true;
                Status::Revoked
            }
            LeakOutcome::AlreadyInactive if f.status == Some(Status::Unchecked) => Status::Revoked,
            _ => f.status.unwrap_or(Status::Unknown),
        };
        f.status = Some(status);
        done.insert(f.hash, status);
    }
    Ok(())
}

/// A line on standard error, redrawn while the scan runs, when standard error is a terminal.
struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    fn start(progress: Arc<Progress>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    eprint!(
                        "\r\x1b[Kscanning: {} files, {} MiB, {} found",
                        progress.files.load(Ordering::Relaxed),
                        progress.bytes.load(Ordering::Relaxed) >> 20,
                        progress.found.load(Ordering::Relaxed)
                    );
                }
                eprint!("\r\x1b[K");
            })
        });
        Self { stop, thread }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Scans one in-memory input (a git blob) whole; `at` names it in findings.
pub fn scan_bytes(
    scanner: &gatehouse_core::leak_scan::Scanner,
    hay: &[u8],
    path: &str,
    commit: Option<&str>,
    out: &mut Vec<Finding>,
) {
    let mut lines = gatehouse_core::leak_scan::LineCounter::default();
    let mut from = 0;
    while let Some(f) = scanner.find(hay, from) {
        out.push(found_at(&f, hay, 0, &mut lines, path, commit));
        from = f.end();
    }
}

/// A finding for `f` in `chunk` (which starts at absolute offset `base`).
pub fn found_at(
    f: &Found,
    chunk: &[u8],
    base: u64,
    lines: &mut gatehouse_core::leak_scan::LineCounter,
    path: &str,
    commit: Option<&str>,
) -> Finding {
    let (line, column) = lines.locate(chunk, base, base + f.start as u64);
    Finding::new(f.kind, f.text(chunk), path.to_owned(), line, column, commit.map(str::to_owned))
}
