//! Loads the key-format vectors (`tests/vectors/api-keys.json`, a copy of the shared ones) and checks every one.

use gatehouse_core::apikey::{checksum_of, ApiKey, Namespace};

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
fn api_key_vectors() {
    let text = vectors_text("api-keys.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    let ns = Namespace::default();
    for v in vectors {
        let key = v["key"].as_str().unwrap();
        let valid = v["valid"].as_bool().unwrap();
        assert_eq!(ApiKey::parse(&ns, key).is_ok(), valid, "{key}: {}", v["why"]);
        if valid {
            let random = v["random"].as_str().unwrap();
            assert_eq!(crc32fast::hash(random.as_bytes()), v["crc32"].as_u64().unwrap() as u32);
            assert_eq!(&checksum_of(random.as_bytes()), v["checksum"].as_str().unwrap().as_bytes());
        }
    }
}
