//! Files mode: a parallel walk (the `ignore` crate's walker, with every filter off by default: a
//! leak in a git-ignored build output or a dot-file is still a leak), each file read in fixed-size
//! chunks with an overlap so a credential across a chunk boundary is found once.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use gatehouse_core::leak_scan::{LineCounter, Scanner, MAX_LEN};
use ignore::{WalkBuilder, WalkState};

use super::{found_at, Finding, Outcome, Progress};

/// How a walk treats what it meets.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub respect_gitignore: bool,
    pub binary: bool,
    pub threads: usize,
}

/// Bytes read per chunk.
const CHUNK: usize = 1 << 20;
/// Carried from one chunk into the next: a whole credential plus its neighbour on either side.
const OVERLAP: usize = MAX_LEN + 2;
/// A NUL byte in this many leading bytes makes a file binary (as git and ripgrep judge it).
pub const BINARY_PROBE: usize = 8 << 10;

pub fn scan(paths: &[PathBuf], scanner: &Scanner, opts: &Options, progress: &Progress) -> Outcome {
    let mut builder = WalkBuilder::new(&paths[0]);
    for p in &paths[1..] {
        builder.add(p);
    }
    builder
        .standard_filters(false)
        .git_ignore(opts.respect_gitignore)
        .git_exclude(opts.respect_gitignore)
        .ignore(opts.respect_gitignore)
        .parents(opts.respect_gitignore)
        .require_git(false)
        .follow_links(false)
        .threads(opts.threads)
        // A repository's object store is compressed: `--git` reads it; here it would only cost time.
        .filter_entry(|e| e.file_name() != ".git" || e.depth() == 0);
    let outcome = Mutex::new(Outcome::default());
    builder.build_parallel().run(|| {
        let outcome = &outcome;
        let mut buf = vec![0u8; CHUNK + OVERLAP];
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    outcome.lock().expect("not poisoned").errors.push(e.to_string());
                    return WalkState::Continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            let mut found = Vec::new();
            match scan_file(entry.path(), scanner, opts, progress, &mut buf, &mut found) {
                Ok(()) if found.is_empty() => {}
                Ok(()) => {
                    progress.found.fetch_add(found.len() as u64, Ordering::Relaxed);
                    outcome.lock().expect("not poisoned").findings.append(&mut found);
                }
                Err(e) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    outcome.lock().expect("not poisoned").errors.push(format!("{}: {e}", entry.path().display()));
                }
            }
            WalkState::Continue
        })
    });
    outcome.into_inner().expect("not poisoned")
}

/// Scans one file in chunks of `buf`'s size, carrying [`OVERLAP`] bytes between them.
fn scan_file(
    path: &Path,
    scanner: &Scanner,
    opts: &Options,
    progress: &Progress,
    buf: &mut [u8],
    out: &mut Vec<Finding>,
) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let shown = path.display().to_string();
    let mut lines = LineCounter::default();
    let (mut filled, mut base, mut from, mut first) = (0usize, 0u64, 0usize, true);
    progress.files.fetch_add(1, Ordering::Relaxed);
    loop {
        let mut eof = false;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    filled += n;
                    progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let hay = &buf[..filled];
        if first {
            first = false;
            if !opts.binary && is_binary(hay) {
                progress.skipped_binary.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let mut pos = from;
        while let Some(f) = scanner.find(hay, pos) {
            // Its right neighbour must be in this chunk too, unless the file ends here.
            if !eof && f.end() >= hay.len() {
                break;
            }
            out.push(found_at(&f, hay, base, &mut lines, &shown, None));
            pos = f.end();
        }
        if eof {
            return Ok(());
        }
        let cut = filled - OVERLAP;
        lines.advance(hay, base, base + cut as u64);
        // Every start before `cut + 1` was decided in this chunk; the byte at `cut` stays as the left
        // neighbour of the next candidate.
        from = pos.max(cut + 1) - cut;
        buf.copy_within(cut..filled, 0);
        filled = OVERLAP;
        base += cut as u64;
    }
}

/// Whether the first [`BINARY_PROBE`] bytes hold a NUL.
pub fn is_binary(head: &[u8]) -> bool {
    head[..head.len().min(BINARY_PROBE)].contains(&0)
}
