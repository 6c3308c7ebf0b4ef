//! The three output formats of `gatehouse scan`: text for people, JSON for scripts, SARIF 2.1.0 for
//! code-scanning uploads. None of them contains a credential: only its mask and a fingerprint.

use std::fmt::Write;

use gatehouse_core::leak_scan::CredentialKind;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Finding, Outcome};

/// `path:line[ commit]: masked (kind)[ status]`, one line per finding.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let commit = f.commit.as_deref().map(|c| format!(" {}", &c[..c.len().min(12)])).unwrap_or_default();
        let status = match (f.status, f.revoked_now) {
            (_, true) => " revoked now".to_owned(),
            (Some(s), false) => format!(" {}", s.as_str()),
            (None, false) => String::new(),
        };
        let _ = writeln!(out, "{}:{}{commit}: {} ({}){status}", f.path, f.line, f.masked, f.kind.describe());
    }
    out
}

/// The line on standard error after a text report.
pub fn summary(findings: &[Finding], scanned: u64, skipped_binary: u64) -> String {
    let revoked = findings.iter().filter(|f| f.revoked_now).count();
    let mut s = format!("{} credential(s) found in {scanned} file(s) scanned", findings.len());
    if skipped_binary > 0 {
        let _ = write!(s, "; {skipped_binary} binary file(s) skipped (--binary scans them)");
    }
    if revoked > 0 {
        let _ = write!(s, "; {revoked} revoked");
    }
    s
}

pub fn json(outcome: &Outcome) -> String {
    let findings: Vec<Value> = outcome
        .findings
        .iter()
        .map(|f| {
            json!({
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "commit": f.commit,
                "kind": f.kind,
                "rule_id": f.kind.rule_id(),
                "masked": f.masked,
                "fingerprint": fingerprint(f),
                "status": f.status,
                "revoked": f.revoked_now,
            })
        })
        .collect();
    let doc = json!({"findings": findings, "errors": outcome.errors});
    format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON values serialize"))
}

/// A SARIF 2.1.0 log with one rule per credential kind, as GitHub code scanning takes it.
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<Value> = CredentialKind::ALL
        .iter()
        .map(|k| {
            json!({
                "id": k.rule_id(),
                "name": k.rule_id(),
                "shortDescription": {"text": format!("{} committed", k.describe())},
                "fullDescription": {"text": format!(
                    "A {} was found in the code. Anyone who can read it can use it: revoke it (gatehouse scan --revoke) and issue a new one.",
                    k.describe()
                )},
                "help": {"text": "Revoke the credential, then remove it from the code and its history; load secrets from the environment or a secret store instead."},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", "secret"], "precision": if k.checksummed() { "very-high" } else { "high" }, "security-severity": "9.0"},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = CredentialKind::ALL.iter().position(|k| *k == f.kind).expect("every kind has a rule");
            let mut message = format!("{} {}", f.kind.describe(), f.masked);
            if let Some(s) = f.status {
                let _ = write!(message, " (status: {})", if f.revoked_now { "revoked now" } else { s.as_str() });
            }
            if let Some(c) = &f.commit {
                let _ = write!(message, " introduced in commit {c}");
            }
            json!({
                "ruleId": f.kind.rule_id(),
                "ruleIndex": index,
                "level": "error",
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.path)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }],
                "partialFingerprints": {"gatehouseCredential/v1": fingerprint(f)},
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gatehouse scan",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }]
    });
    format!("{}\n", serde_json::to_string_pretty(&doc).expect("JSON values serialize"))
}

/// Stable across runs and places for one credential, and reveals nothing of it: a hash of its
/// stored hash under a label of its own.
fn fingerprint(f: &Finding) -> String {
    let mut h = Sha256::new();
    h.update(b"gatehouse-scan-fingerprint/v1\0");
    h.update(f.hash.0);
    hex::encode(&h.finalize()[..16])
}

/// A relative URI reference for a path: `./` dropped, `\` as `/`, everything outside the unreserved
/// characters and `/` percent-encoded.
fn uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let path = path.trim_start_matches("./");
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn uris_are_relative_and_encoded() {
        for (path, want) in [
            ("./src/a.rs", "src/a.rs"),
            ("src/a b#c?.rs", "src/a%20b%23c%3F.rs"),
            ("dir\\f.txt", "dir/f.txt"),
            ("caf\u{e9}.txt", "caf%C3%A9.txt"),
            ("100%.txt", "100%25.txt"),
        ] {
            assert_eq!(uri(path), want, "{path}");
        }
    }
}
