//! `--git`: every blob reachable from any ref (branches, tags, remotes, stash, notes, a detached
//! HEAD), read in-process with gitoxide. Commits are visited parents first and each tree and blob
//! once, so every blob is scanned once and reported with the first commit and path it appeared at.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use gix::hash::ObjectId;

use super::files::{is_binary, Options};
use super::{scan_bytes, Outcome, Progress};
use gatehouse_core::leak_scan::Scanner;

/// A blob to scan, named by where it first appeared.
struct Blob {
    id: ObjectId,
    path: String,
    commit: Option<ObjectId>,
}

pub fn scan(repo_path: &Path, scanner: &Scanner, opts: &Options, progress: &Progress) -> Result<Outcome> {
    let mut repo = gix::open(repo_path).map_err(|e| anyhow!("{}: not a git repository: {e}", repo_path.display()))?;
    repo.object_cache_size_if_unset(64 << 20);
    let blobs = blobs_of_history(&repo).with_context(|| format!("reading the history of {}", repo_path.display()))?;
    let shared = repo.into_sync();
    let next = AtomicUsize::new(0);
    let outcome = Mutex::new(Outcome::default());
    std::thread::scope(|s| {
        for _ in 0..opts.threads {
            s.spawn(|| {
                let repo = shared.to_thread_local();
                let mut found = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(blob) = blobs.get(i) else { break };
                    match repo.find_object(blob.id) {
                        Ok(object) => {
                            progress.files.fetch_add(1, Ordering::Relaxed);
                            progress.bytes.fetch_add(object.data.len() as u64, Ordering::Relaxed);
                            if !opts.binary && is_binary(&object.data) {
                                progress.skipped_binary.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let before = found.len();
                            let commit = blob.commit.map(|c| c.to_string());
                            scan_bytes(scanner, &object.data, &blob.path, commit.as_deref(), &mut found);
                            progress.found.fetch_add((found.len() - before) as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            let msg = format!("blob {} ({}): {e}", blob.id, blob.path);
                            outcome.lock().expect("not poisoned").errors.push(msg);
                        }
                    }
                }
                outcome.lock().expect("not poisoned").findings.append(&mut found);
            });
        }
    });
    Ok(outcome.into_inner().expect("not poisoned"))
}

/// Every distinct blob of the history, with the oldest commit (by commit time) and path it is in.
fn blobs_of_history(repo: &gix::Repository) -> Result<Vec<Blob>> {
    let mut tips: Vec<ObjectId> = Vec::new();
    let mut loose_trees: Vec<ObjectId> = Vec::new();
    let mut loose_blobs: Vec<ObjectId> = Vec::new();
    let mut starts: Vec<ObjectId> = Vec::new();
    if let Ok(head) = repo.head_id() {
        starts.push(head.detach());
    }
    for r in repo.references().map_err(|e| anyhow!("{e}"))?.all().map_err(|e| anyhow!("{e}"))? {
        let mut r = r.map_err(|e| anyhow!("reading a ref: {e}"))?;
        let id = r.peel_to_id().map_err(|e| anyhow!("peeling {}: {e}", r.name().as_bstr()))?;
        starts.push(id.detach());
    }
    for id in starts {
        let header = repo.find_header(id).map_err(|e| anyhow!("object {id}: {e}"))?;
        match header.kind() {
            gix::object::Kind::Commit => tips.push(id),
            gix::object::Kind::Tree => loose_trees.push(id),
            gix::object::Kind::Blob => loose_blobs.push(id),
            gix::object::Kind::Tag => {}
        }
    }
    tips.sort();
    tips.dedup();
    let commits = parents_first(repo, &tips)?;
    let mut seen_trees: HashSet<ObjectId> = HashSet::new();
    let mut seen_blobs: HashSet<ObjectId> = HashSet::new();
    let mut blobs = Vec::new();
    for commit_id in commits {
        let commit = repo.find_commit(commit_id).map_err(|e| anyhow!("commit {commit_id}: {e}"))?;
        let tree = commit.tree_id().map_err(|e| anyhow!("commit {commit_id}: {e}"))?.detach();
        walk_tree(repo, tree, Some(commit_id), &mut seen_trees, &mut seen_blobs, &mut blobs)?;
    }
    // Refs that name a tree or a blob directly (`git tag t <tree>`): no commit introduced them.
    for tree in loose_trees {
        walk_tree(repo, tree, None, &mut seen_trees, &mut seen_blobs, &mut blobs)?;
    }
    for id in loose_blobs {
        if seen_blobs.insert(id) {
            blobs.push(Blob { id, path: format!("(blob {id})"), commit: None });
        }
    }
    Ok(blobs)
}

/// Every commit reachable from `tips`, each after all of its parents, so the first commit a blob
/// is met in is one that introduced it (commit times are no guide: they tie and they lie).
fn parents_first(repo: &gix::Repository, tips: &[ObjectId]) -> Result<Vec<ObjectId>> {
    let mut parents: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    if tips.is_empty() {
        return Ok(Vec::new());
    }
    let walk = repo.rev_walk(tips.iter().copied()).all().map_err(|e| anyhow!("walking the history: {e}"))?;
    for info in walk {
        let info = info.map_err(|e| anyhow!("walking the history: {e}"))?;
        parents.insert(info.id, info.parent_ids.iter().copied().collect());
    }
    let mut order = Vec::with_capacity(parents.len());
    let mut visited: HashSet<ObjectId> = HashSet::with_capacity(parents.len());
    for tip in tips {
        let mut stack = vec![(*tip, false)];
        while let Some((id, parents_done)) = stack.pop() {
            if parents_done {
                order.push(id);
                continue;
            }
            if !visited.insert(id) {
                continue;
            }
            stack.push((id, true));
            for p in parents.get(&id).into_iter().flatten().rev() {
                if !visited.contains(p) {
                    stack.push((*p, false));
                }
            }
        }
    }
    Ok(order)
}

/// Adds the blobs of `root` not seen before; trees seen before are skipped whole (all their blobs
/// are already in).
fn walk_tree(
    repo: &gix::Repository,
    root: ObjectId,
    commit: Option<ObjectId>,
    seen_trees: &mut HashSet<ObjectId>,
    seen_blobs: &mut HashSet<ObjectId>,
    out: &mut Vec<Blob>,
) -> Result<()> {
    let mut stack: Vec<(ObjectId, String)> = vec![(root, String::new())];
    while let Some((id, prefix)) = stack.pop() {
        if !seen_trees.insert(id) {
            continue;
        }
        let tree = repo.find_tree(id).map_err(|e| anyhow!("tree {id}: {e}"))?;
        let decoded = tree.decode().map_err(|e| anyhow!("tree {id}: {e}"))?;
        for entry in &decoded.entries {
            let path = format!("{prefix}{}", entry.filename);
            if entry.mode.is_tree() {
                stack.push((entry.oid.to_owned(), path + "/"));
            } else if entry.mode.is_blob_or_symlink() {
                let blob = entry.oid.to_owned();
                if seen_blobs.insert(blob) {
                    out.push(Blob { id: blob, path, commit });
                }
            }
            // Submodule entries name a commit of another repository: nothing of ours to read.
        }
    }
    Ok(())
}
