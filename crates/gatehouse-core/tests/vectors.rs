//! Loads the shared key-format vectors (`shared/vectors/api-keys.json`, beside the repository) and checks every one.

use gatehouse_core::apikey::{checksum_of, ApiKey, Namespace};

fn vectors_dir() -> std::path::PathBuf {
    match std::env::var_os("GATEHOUSE_VECTORS_DIR") {
        Some(dir) => dir.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    }
}

#[test]
fn api_key_vectors() {
    let path = vectors_dir().join("api-keys.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test vectors must be present at {}: {e}", path.display()));
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
