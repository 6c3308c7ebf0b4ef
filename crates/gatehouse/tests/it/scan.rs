//! `gatehouse scan` as a user runs it: planted credentials in text, binary and large files; a real git
//! repository built with `git` (adds, moves, deletes, a binary file, a branch, a tag); `--revoke`
//! against a real store on SQLite and PostgreSQL, after which verification refuses the key; the three
//! output formats; exit codes; and the shipped gitleaks/TruffleHog rules and pre-commit hook.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine;
use gatehouse_core::apikey::generate;
use gatehouse_core::{Environment, KeyHash, KeyKind, Namespace};
use gatehouse_store::leaks::LeakStore;
use gatehouse_store::testing::{Backend, TestDb};
use gatehouse_store::{AuditFilter, AuditStore, KeyStore, PageRequest};
use rand::RngCore;

use crate::{gatehouse, json, stderr, stdout};

fn api_key(kind: KeyKind, env: Environment) -> String {
    generate(&Namespace::default(), kind, env, &mut rand::rngs::OsRng).expose().to_owned()
}

fn token(tag: &str) -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("gth_{tag}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn whsec() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b))
}

/// One credential of every kind Gatehouse issues, with its kind's rule id.
fn one_of_each() -> Vec<(String, &'static str)> {
    vec![
        (api_key(KeyKind::Secret, Environment::Live), "gatehouse-secret-key-live"),
        (api_key(KeyKind::Secret, Environment::Test), "gatehouse-secret-key-test"),
        (api_key(KeyKind::Restricted, Environment::Live), "gatehouse-restricted-key-live"),
        (api_key(KeyKind::Restricted, Environment::Test), "gatehouse-restricted-key-test"),
        (token("at"), "gatehouse-oauth-access-token"),
        (token("rt"), "gatehouse-oauth-refresh-token"),
        (token("cs"), "gatehouse-oauth-client-secret"),
        (whsec(), "gatehouse-webhook-secret"),
    ]
}

/// The same key with its last checksum character changed: right shape, wrong checksum.
fn bad_checksum(key: &str) -> String {
    let mut b = key.as_bytes().to_vec();
    let last = b.len() - 1;
    b[last] = if b[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

fn scan_json(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value, Output) {
    let mut all = vec!["scan", "--format", "json"];
    all.extend_from_slice(args);
    let out = gatehouse(dir, &all, env);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), v, out)
}

/// `(path, line, rule_id)` of every finding.
fn found(v: &serde_json::Value) -> Vec<(String, u64, String)> {
    let mut out: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["rule_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn assert_no_secret(out: &Output, secrets: &[String]) {
    let all = format!("{}{}", stdout(out), stderr(out));
    for s in secrets {
        assert!(!all.contains(s.as_str()), "output holds a whole credential");
    }
}

#[test]
fn files_text_binary_and_large_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let creds = one_of_each();
    let mut text = String::from("# settings\n");
    for (i, (c, _)) in creds.iter().enumerate() {
        text.push_str(&format!("secret_{i} = \"{c}\"\n"));
    }
    // Look-alikes: a wrong checksum, a key one character short, a token glued into a longer run.
    let sk = &creds[0].0;
    text.push_str(&format!("{}\n{}\n{}x\n", bad_checksum(sk), &sk[..sk.len() - 1], creds[4].0));
    std::fs::create_dir_all(d.join("src/.hidden")).unwrap();
    std::fs::write(d.join("src/config.toml"), &text).unwrap();
    // A dot-directory and a git-ignored build output are scanned too.
    let hidden = api_key(KeyKind::Secret, Environment::Live);
    std::fs::write(d.join("src/.hidden/env"), format!("KEY={hidden}\n")).unwrap();
    std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
    std::fs::create_dir_all(d.join("target")).unwrap();
    let built = api_key(KeyKind::Restricted, Environment::Live);
    std::fs::write(d.join("target/app.js"), format!("const k='{built}';")).unwrap();
    // A binary file: skipped (and counted) unless --binary.
    let in_binary = api_key(KeyKind::Secret, Environment::Test);
    let mut bin = vec![0u8, 1, 2, 3, 0xff];
    bin.extend_from_slice(in_binary.as_bytes());
    bin.extend_from_slice(&[0, 0]);
    std::fs::write(d.join("app.bin"), &bin).unwrap();
    // A large file with keys straddling the reader's chunk boundaries (1 MiB reads carrying 63 bytes
    // over, so boundaries fall at n MiB and n MiB + 63): across, ending at, and just after each.
    let mut large = Vec::new();
    let mut planted = Vec::new();
    let line = b"lorem ipsum dolor sit amet, consectetur adipiscing elit gth_ whsec_ gth_sk_live_\n";
    let mut lines = 0u64;
    for (mib, off) in [(1usize, -30i64), (2, 15), (3, 40), (4, 60), (5, 14), (6, 16), (7, 63)] {
        let at = (mib << 20) as i64 + off;
        while (large.len() + line.len()) as i64 + 1 < at {
            large.extend_from_slice(line);
            lines += 1;
        }
        large.resize(at as usize, b'-');
        let k = api_key(KeyKind::Secret, Environment::Live);
        large.extend_from_slice(k.as_bytes());
        planted.push(lines + 1);
        large.push(b'\n');
        lines += 1;
    }
    let tail = api_key(KeyKind::Restricted, Environment::Test);
    large.extend_from_slice(tail.as_bytes());
    planted.push(lines + 1);
    std::fs::write(d.join("large.log"), &large).unwrap();

    let (code, v, out) = scan_json(d, &["."], &[]);
    assert_eq!(code, 1, "{}", stderr(&out));
    let got = found(&v);
    let mut want: Vec<(String, u64, String)> = creds
        .iter()
        .enumerate()
        .map(|(i, (_, rule))| ("./src/config.toml".into(), i as u64 + 2, rule.to_string()))
        .collect();
    want.push(("./src/.hidden/env".into(), 1, "gatehouse-secret-key-live".into()));
    want.push(("./target/app.js".into(), 1, "gatehouse-restricted-key-live".into()));
    for (i, l) in planted.iter().enumerate() {
        let rule = if i == planted.len() - 1 { "gatehouse-restricted-key-test" } else { "gatehouse-secret-key-live" };
        want.push(("./large.log".into(), *l, rule.into()));
    }
    want.sort();
    assert_eq!(got, want);
    let mut all_secrets: Vec<String> = creds.iter().map(|c| c.0.clone()).collect();
    all_secrets.extend([hidden.clone(), built.clone(), tail.clone()]);
    assert_no_secret(&out, &all_secrets);
    // Without a store, no status is claimed.
    assert!(v["findings"][0]["status"].is_null());

    // --binary finds the key in the binary file as well.
    let (_, v, _) = scan_json(d, &["--binary", "app.bin"], &[]);
    assert_eq!(found(&v), [("app.bin".to_owned(), 1, "gatehouse-secret-key-test".to_owned())]);
    let text_out = gatehouse(d, &["scan", "app.bin"], &[]);
    assert_eq!(text_out.status.code(), Some(0), "a skipped binary alone is clean");
    assert!(stderr(&text_out).contains("1 binary file(s) skipped"), "{}", stderr(&text_out));

    // --respect-gitignore leaves the ignored build output out.
    let (_, v, _) = scan_json(d, &["--respect-gitignore", "."], &[]);
    assert!(!found(&v).iter().any(|f| f.0.contains("target/")), "{:?}", found(&v));

    // Text: `path:line: masked (kind)`, never the key itself.
    let out = gatehouse(d, &["scan", "src/.hidden"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let first = stdout(&out);
    let masked = format!("{}…{}", &hidden[..16], &hidden[hidden.len() - 4..]);
    assert_eq!(first, format!("src/.hidden/env:1: {masked} (Gatehouse secret API key (live))\n"));

    // Exit 0 on a clean tree, 2 on an error.
    std::fs::create_dir_all(d.join("clean")).unwrap();
    std::fs::write(d.join("clean/readme.md"), format!("look-alike {}\n", bad_checksum(sk))).unwrap();
    let out = gatehouse(d, &["scan", "clean"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = gatehouse(d, &["scan", "no-such-dir"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = gatehouse(d, &["scan", "--git", "clean"], &[]);
    assert_eq!(out.status.code(), Some(2), "not a repository: {}", stderr(&out));
    assert!(stderr(&out).contains("not a git repository"), "{}", stderr(&out));
    let out = gatehouse(d, &["scan", "--revoke", "clean"], &[]);
    assert_eq!(out.status.code(), Some(2), "--revoke without a store");
    assert!(stderr(&out).contains("--revoke needs the store"), "{}", stderr(&out));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn git_history_every_ref_every_blob_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    let k_added = api_key(KeyKind::Secret, Environment::Live);
    let k_binary = api_key(KeyKind::Restricted, Environment::Live);
    let k_branch = api_key(KeyKind::Secret, Environment::Test);
    let k_tag = token("rt");
    let k_deleted = whsec();

    // 1: a key in a text file.
    std::fs::write(d.join("settings.py"), format!("DEBUG = True\nKEY = '{k_added}'\n")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "add settings"]);
    let c1 = git(d, &["rev-parse", "HEAD"]);
    // 2: moved (same blob, new path) and a binary file with a key.
    std::fs::create_dir_all(d.join("conf")).unwrap();
    git(d, &["mv", "settings.py", "conf/settings.py"]);
    let mut bin = vec![0u8; 16];
    bin.extend_from_slice(k_binary.as_bytes());
    std::fs::write(d.join("logo.png"), &bin).unwrap();
    std::fs::write(d.join("old.env"), format!("WEBHOOK_SECRET={k_deleted}\n")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "move settings, add logo"]);
    let c2 = git(d, &["rev-parse", "HEAD"]);
    // 3: both key-bearing files deleted: only history holds them now.
    git(d, &["rm", "-q", "conf/settings.py", "old.env"]);
    git(d, &["commit", "-q", "-m", "remove secrets"]);
    // A branch with its own key.
    git(d, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(d.join("feature.rs"), format!("// {k_branch}\n")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "feature"]);
    let c_branch = git(d, &["rev-parse", "HEAD"]);
    // A commit that only a tag names (its branch deleted), with a key four lines down.
    git(d, &["checkout", "-q", "-b", "tmp", "main"]);
    std::fs::write(d.join("release.txt"), format!("a\nb\nc\ntoken: {k_tag}\n")).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "release"]);
    let c_tag = git(d, &["rev-parse", "HEAD"]);
    git(d, &["tag", "-a", "v1", "-m", "v1"]);
    git(d, &["checkout", "-q", "main"]);
    git(d, &["branch", "-q", "-D", "tmp"]);
    // A look-alike in history is not reported.
    std::fs::write(d.join("notes.md"), format!("{}\n", bad_checksum(&k_added))).unwrap();
    git(d, &["add", "."]);
    git(d, &["commit", "-q", "-m", "notes"]);

    let (code, v, out) = scan_json(d, &["--git", "."], &[]);
    assert_eq!(code, 1, "{}", stderr(&out));
    let mut got: Vec<(String, u64, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["rule_id"].as_str().unwrap().to_owned(),
                f["commit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        // The moved file is one blob: reported once, where it was added.
        ("settings.py".to_owned(), 2, "gatehouse-secret-key-live".to_owned(), c1.clone()),
        ("old.env".to_owned(), 1, "gatehouse-webhook-secret".to_owned(), c2.clone()),
        ("feature.rs".to_owned(), 1, "gatehouse-secret-key-test".to_owned(), c_branch),
        ("release.txt".to_owned(), 4, "gatehouse-oauth-refresh-token".to_owned(), c_tag),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_no_secret(&out, &[k_added.clone(), k_binary.clone(), k_branch, k_tag, k_deleted]);

    // With --binary, the key in the (deleted-nowhere) binary file too.
    let (_, v, _) = scan_json(d, &["--git", "--binary", "."], &[]);
    let bin_hits: Vec<_> = v["findings"].as_array().unwrap().iter().filter(|f| f["path"] == "logo.png").collect();
    assert_eq!(bin_hits.len(), 1);
    assert_eq!(bin_hits[0]["commit"], c2.as_str());

    // Text output names the commit.
    let out = gatehouse(d, &["scan", "--git", "."], &[]);
    assert!(stdout(&out).contains(&format!("settings.py:2 {}: ", &c1[..12])), "{}", stdout(&out));
}

async fn revoke_story(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data_dir = db.dir().map(|p| p.display().to_string());
    let mut env: Vec<(&str, &str)> = match backend {
        Backend::Sqlite => vec![("GATEHOUSE_DATA_DIR", data_dir.as_deref().unwrap())],
        Backend::Postgres => vec![("GATEHOUSE_DATABASE_URL", db.url.as_str())],
    };
    env.push(("GATEHOUSE_LOG_LEVEL", "warn"));
    let live = json(d, &["keys", "create", "--name", "leaky"], &env);
    let old = json(d, &["keys", "create", "--name", "old"], &env);
    json(d, &["keys", "revoke", old["id"].as_str().unwrap()], &env);
    let live_secret = live["secret"].as_str().unwrap().to_owned();
    let old_secret = old["secret"].as_str().unwrap().to_owned();
    let stranger = api_key(KeyKind::Secret, Environment::Live);
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("a.env"), format!("A={live_secret}\nB={old_secret}\nC={stranger}\n")).unwrap();
    std::fs::write(repo.join("b.env"), format!("again={live_secret}\n")).unwrap();

    // Status from the store, nothing changed.
    let (code, v, _) = scan_json(&repo, &["."], &env);
    assert_eq!(code, 1);
    let statuses: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (f["path"].as_str().unwrap().into(), f["line"].as_u64().unwrap(), f["status"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("./a.env".into(), 1, "active".into()),
            ("./a.env".into(), 2, "revoked".into()),
            ("./a.env".into(), 3, "unknown".into()),
            ("./b.env".into(), 1, "active".into())
        ]
    );
    let verify = json(d, &["keys", "verify", &live_secret], &env);
    assert_eq!(verify["valid"], true, "a scan without --revoke changes nothing");

    // --revoke: the active key is revoked once as leaked, audited with where it was found.
    let out = gatehouse(&repo, &["scan", "--revoke", "."], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("revoked now").count(), 1, "{text}");
    assert!(text.contains("./a.env:1: ") && text.contains("./b.env:1: "), "{text}");
    assert!(stderr(&out).contains("1 revoked"), "{}", stderr(&out));
    let out = gatehouse(d, &["keys", "verify", &live_secret, "--json"], &env);
    assert_eq!(out.status.code(), Some(1));
    let verify: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verify["code"], "api_key_revoked");

    let store = db.store().await;
    let id = live["id"].as_str().unwrap();
    let filter = AuditFilter {
        action: Some("key.leaked".into()),
        target: Some(id.into()),
        environment: None,
        actor: None,
        since: None,
        until: None,
    };
    let page = store.search_audit("default", &filter, &PageRequest { limit: 10, starting_after: None }).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let details = &page.items[0].details;
    assert_eq!(details["reason"], "leaked");
    assert_eq!(details["source"], serde_json::json!({"kind": "scan", "path": "./a.env:1"}));
    assert_eq!(details["masked"], gatehouse_core::apikey::mask(&live_secret));
    assert_eq!(page.items[0].actor, "cli");
    assert!(!format!("{:?}", page.items[0]).contains(&live_secret));
    let record = store.key_by_id("default", id).await.unwrap().unwrap();
    assert!(record.revoked_at.is_some());
    let leak = store.leak_by_hash(&KeyHash::of(&live_secret)).await.unwrap().expect("a leak record");
    assert_eq!((leak.source_kind.as_str(), leak.location.as_deref()), ("scan", Some("./a.env:1")));
    store.close().await;

    // A second run finds it revoked and revokes nothing.
    let (_, v, _) = scan_json(&repo, &["--revoke", "."], &env);
    assert!(v["findings"].as_array().unwrap().iter().all(|f| f["revoked"] == false));
    assert_eq!(v["findings"][0]["status"], "revoked");
}

#[tokio::test]
async fn revoke_on_sqlite() {
    revoke_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn revoke_on_postgres() {
    revoke_story(Backend::Postgres).await;
}

/// The structure GitHub code scanning requires of an upload (its "SARIF support" page): version and
/// $schema, runs[].tool.driver.name and rules, and per result a ruleId (among the rules), a message,
/// locations with physicalLocation.artifactLocation.uri (relative) and region.startLine ≥ 1, and
/// partialFingerprints.
fn check_github_sarif(log: &serde_json::Value) -> usize {
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let runs = log["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert!(!driver["name"].as_str().unwrap().is_empty());
    let rules = driver["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string() && r["fullDescription"]["text"].is_string());
        let sev: f64 = r["properties"]["security-severity"].as_str().unwrap().parse().unwrap();
        assert!((0.0..=10.0).contains(&sev));
    }
    let results = runs[0]["results"].as_array().expect("results");
    for res in results {
        let rule = res["ruleId"].as_str().unwrap();
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[index], rule);
        assert!(!res["message"]["text"].as_str().unwrap().is_empty());
        let locs = res["locations"].as_array().unwrap();
        assert!(!locs.is_empty() && locs.len() <= 10);
        let phys = &locs[0]["physicalLocation"];
        let uri = phys["artifactLocation"]["uri"].as_str().unwrap();
        assert!(!uri.starts_with('/') && !uri.starts_with("./") && !uri.contains(' '), "{uri}");
        assert!(phys["region"]["startLine"].as_u64().unwrap() >= 1);
        let fp = res["partialFingerprints"].as_object().unwrap();
        assert!(!fp.is_empty() && fp.values().all(|v| v.is_string()));
    }
    results.len()
}

#[test]
fn sarif_is_what_code_scanning_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let creds = one_of_each();
    std::fs::create_dir_all(d.join("my dir")).unwrap();
    let body: String = creds.iter().map(|(c, _)| format!("{c}\n")).collect();
    std::fs::write(d.join("my dir/leak.txt"), &body).unwrap();
    std::fs::write(d.join("copy.txt"), &body).unwrap();
    let out = gatehouse(d, &["scan", "--format", "sarif", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(check_github_sarif(&log), 16);
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert!(results
        .iter()
        .any(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "my%20dir/leak.txt"));
    // One credential has one fingerprint wherever it is; different credentials differ.
    let fps: std::collections::BTreeSet<String> =
        results.iter().map(|r| r["partialFingerprints"]["gatehouseCredential/v1"].as_str().unwrap().into()).collect();
    assert_eq!(fps.len(), 8);
    assert_no_secret(&out, &creds.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
    // A clean scan is still a valid log, with no results.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let out = gatehouse(d, &["scan", "--format", "sarif", "empty"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(check_github_sarif(&serde_json::from_slice(&out.stdout).unwrap()), 0);
}

fn contrib(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Near-misses of each kind: a wrong prefix, a wrong length, a character outside the alphabet.
fn near_misses(cred: &str) -> Vec<String> {
    let prefix_len = match &cred[..6] {
        "whsec_" => 6,
        "gth_sk" | "gth_rk" => 12,
        _ => 7,
    };
    let (prefix, body) = cred.split_at(prefix_len);
    let mut out = vec![
        format!("x{}", cred.replacen("_", "X_", 1)),
        format!("{}{body}", prefix.to_uppercase()),
        format!("{}{body}", prefix.replacen('_', "__", 1)),
    ];
    if cred.starts_with("whsec_") {
        out.push(format!("{prefix}{}=", &body[..body.len() - 2]));
        out.push(format!("{prefix}A{body}"));
        out.push(format!("{prefix}{}.=", &body[..body.len() - 2]));
    } else {
        out.push(format!("{prefix}{}", &body[..body.len() - 1]));
        out.push(format!("{prefix}{body}A"));
        out.push(format!("{prefix}{}.{}", &body[..5], &body[6..]));
        out.push(format!("{prefix}{}é{}", &body[..5], &body[6..]));
    }
    out
}

#[test]
fn shipped_gitleaks_and_trufflehog_rules_match_every_kind_and_no_near_miss() {
    let gitleaks: toml::Value = toml::from_str(&contrib("gitleaks.toml")).unwrap();
    // (tool and rule, regex, the keywords the tool prefilters on)
    let mut patterns: Vec<(String, regex::Regex, Vec<String>)> = Vec::new();
    for r in gitleaks["rules"].as_array().unwrap() {
        let re = regex::Regex::new(r["regex"].as_str().unwrap()).unwrap();
        let keywords = r["keywords"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect();
        patterns.push((format!("gitleaks {}", r["id"].as_str().unwrap()), re, keywords));
    }
    let trufflehog: serde_json::Value = yaml_serde::from_str(&contrib("trufflehog.yaml")).unwrap();
    for det in trufflehog["detectors"].as_array().unwrap() {
        let keywords: Vec<String> =
            det["keywords"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_owned()).collect();
        for (_, re) in det["regex"].as_object().unwrap() {
            let re = regex::Regex::new(re.as_str().unwrap()).unwrap();
            patterns.push((format!("trufflehog {}", det["name"].as_str().unwrap()), re, keywords.clone()));
        }
    }
    assert_eq!(patterns.len(), 6);
    for tool in ["gitleaks", "trufflehog"] {
        for _ in 0..20 {
            for (cred, kind) in one_of_each() {
                let text = format!("KEY=\"{cred}\"\n");
                let hits: Vec<&(String, regex::Regex, Vec<String>)> = patterns
                    .iter()
                    .filter(|(name, re, _)| {
                        name.starts_with(tool) && re.find(&text).map(|m| m.as_str()) == Some(cred.as_str())
                    })
                    .collect();
                assert_eq!(hits.len(), 1, "{tool}: {kind} matched by {} rules", hits.len());
                // The tool only runs the regex where a keyword occurs: one must be in the credential.
                assert!(hits[0].2.iter().any(|k| cred.contains(k.as_str())), "{tool}: no keyword of {}", hits[0].0);
                for miss in near_misses(&cred) {
                    let text = format!("KEY=\"{miss}\"\n");
                    let hit = patterns.iter().find(|(name, re, _)| name.starts_with(tool) && re.is_match(&text));
                    assert!(hit.is_none(), "{tool}: near-miss of {kind} {miss:?} matched by {:?}", hit.map(|h| &h.0));
                }
            }
        }
    }
}

#[test]
fn pre_commit_hook_refuses_a_staged_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/pre-commit");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gatehouse")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let run_hook = || Command::new("sh").arg(&hook).current_dir(d).env("PATH", &path).output().unwrap();
    std::fs::write(d.join("readme.md"), "hello\n").unwrap();
    git(d, &["add", "."]);
    let out = run_hook();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = api_key(KeyKind::Secret, Environment::Live);
    std::fs::write(d.join("config.yml"), format!("key: {key}\n")).unwrap();
    // Unstaged, it is not the commit's business.
    assert_eq!(run_hook().status.code(), Some(0));
    git(d, &["add", "config.yml"]);
    let out = run_hook();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("config.yml:1: "), "{}", stdout(&out));
    assert_no_secret(&out, &[key]);
}
