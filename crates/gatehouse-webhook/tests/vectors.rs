//! The signature vectors (`tests/vectors/webhook-signatures.json`, a copy of the shared ones), each checked by a
//! third-party verifier when they were made: our signer must produce them and our verifier accept them.

use gatehouse_webhook::{sign_header, standard, verify};

/// The repository's copy of the vectors (`tests/vectors/`), or `GATEHOUSE_VECTORS_DIR`. When the shared
/// originals exist beside the repository (`../shared/vectors`), the copy must be identical to them.
fn vectors_text(name: &str) -> String {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("GATEHOUSE_VECTORS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join("tests/vectors"));
    let path = dir.join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("vectors must be present at {}: {e}", path.display()));
    let shared = repo.join("../shared/vectors").join(name);
    if let Ok(original) = std::fs::read_to_string(&shared) {
        assert!(
            original == text,
            "{} differs from {}: copy the shared vectors again",
            path.display(),
            shared.display()
        );
    }
    text
}

#[test]
fn shared_vectors() {
    let text = vectors_text("webhook-signatures.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for v in doc["stripe_compatible"].as_array().unwrap() {
        let t = v["t"].as_i64().unwrap();
        let body = v["body"].as_str().unwrap().as_bytes();
        let (secrets, header): (Vec<&str>, &str) = match v.get("secret") {
            Some(s) => (vec![s.as_str().unwrap()], v["header"].as_str().unwrap()),
            None => (
                v["secrets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect(),
                v["header_during_rotation"].as_str().unwrap(),
            ),
        };
        assert_eq!(sign_header(&secrets, t, body), header);
        for s in &secrets {
            assert!(verify(header, body, &[s], t, 300).is_ok(), "each secret alone verifies");
        }
        checked += 1;
    }
    for v in doc["standard_webhooks"].as_array().unwrap() {
        let secret = v["secret"].as_str().unwrap();
        let id = v["webhook-id"].as_str().unwrap();
        let ts = v["webhook-timestamp"].as_str().unwrap();
        let body = v["body"].as_str().unwrap().as_bytes();
        let sig = v["webhook-signature"].as_str().unwrap();
        assert_eq!(standard::sign(secret, id, ts.parse().unwrap(), body).unwrap(), sig);
        assert!(standard::verify(id, ts, sig, body, &[secret], ts.parse().unwrap(), 300).is_ok());
        assert!(standard::verify(id, ts, sig, b"tampered", &[secret], ts.parse().unwrap(), 300).is_err());
        checked += 1;
    }
    assert!(checked >= 7);
}
