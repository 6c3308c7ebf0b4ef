//! A provider's signing keys (RFC 7517 JWK Set), read from untrusted bytes. Each key is parsed on its
//! own and one Gatehouse cannot use is skipped, not fatal: providers publish encryption keys and new key
//! types beside their signing keys. Symmetric (`oct`) keys are never used, RSA keys are at least 2048
//! bits, and a key states what it may verify (its type and curve, and its `alg` when it names one).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The largest JWK Set read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The most keys kept from one set.
pub const MAX_KEYS: usize = 64;

/// What a key can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kind {
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Kind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Kind::P256 => alg == ES256,
            Kind::P384 => alg == ES384,
            Kind::Ed25519 => alg == EdDSA,
        }
    }
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: Kind,
    key: DecodingKey,
}

/// The usable signing keys of one provider.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|k| (k.kid.as_deref(), k.kind)).collect();
        f.debug_struct("Jwks").field("keys", &ids).finish()
    }
}

/// Why a key set was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the key set is not a JSON object with a `keys` list")]
    NotJson,
    #[error("the key set has no key Gatehouse can verify signatures with")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The key `value` describes, if it is a public signing key we can use.
fn usable(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return None;
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = B64.decode(&p.n).ok()?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if !(2048..=8192).contains(&bits) || p.e.len() > 16 {
                return None;
            }
            Kind::Rsa
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Kind::Ed25519,
        // Symmetric keys never verify an ID token; other curves are not supported.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => {
            let alg = super::asymmetric_algorithm(&a.to_string())?;
            if !kind.verifies(alg) {
                return None;
            }
            Some(alg)
        }
    };
    let kid = jwk.common.key_id.clone().filter(|k| k.len() <= 256);
    if jwk.common.key_id.is_some() && kid.is_none() {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key { kid, alg, kind, key })
}

impl Jwks {
    /// Parses the document at a provider's `jwks_uri`.
    pub fn parse(bytes: &[u8]) -> Result<Self, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let raw: RawSet = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJson)?;
        let keys: Vec<Key> = raw.keys.into_iter().filter_map(usable).take(MAX_KEYS).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks { keys })
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key that verifies a token with header `kid` and `alg`: the key with that id (which must
    /// suit `alg`), or without a `kid` the one key of the set that suits `alg`. `None` when there is no
    /// such key (or, without a `kid`, several): the caller may load the set again once.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let suits = |k: &&Key| k.kind.verifies(alg) && k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(id) => self.keys.iter().filter(|k| k.kid.as_deref() == Some(id)).find(suits).map(|k| &k.key),
            None => {
                let mut matching = self.keys.iter().filter(suits);
                match (matching.next(), matching.next()) {
                    (Some(k), None) => Some(&k.key),
                    _ => None,
                }
            }
        }
    }

    /// Whether the set has a key with this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_n(bits: usize) -> String {
        let mut n = vec![0xC5u8; bits / 8];
        n[bits / 8 - 1] |= 1;
        B64.encode(n)
    }

    fn ec_point() -> (String, String) {
        // Any 32-byte coordinates parse as a JWK; whether they form a point is the verifier's business.
        (B64.encode([7u8; 32]), B64.encode([9u8; 32]))
    }

    #[test]
    fn usable_keys_and_hostile_sets() {
        let (x, y) = ec_point();
        let set = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "weak", "n": rsa_n(1024), "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "mislabelled", "alg": "ES256", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "hmac-alg", "alg": "HS256", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": x, "y": y},
            {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": x, "y": y},
            {"kty": "OKP", "kid": "x1", "crv": "X25519", "x": x},
            {"kty": "WHAT", "kid": "future"},
            {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
            "a string", 7, null,
        ]});
        let jwks = Jwks::parse(&serde_json::to_vec(&set).unwrap()).unwrap();
        assert_eq!(jwks.len(), 2, "{jwks:?}");
        assert!(jwks.find(Some("r1"), Algorithm::RS256).is_some());
        assert!(jwks.find(Some("r1"), Algorithm::RS512).is_none(), "the key names its algorithm");
        assert!(jwks.find(Some("r1"), Algorithm::ES256).is_none());
        assert!(jwks.find(Some("e1"), Algorithm::ES256).is_some());
        assert!(jwks.find(Some("e1"), Algorithm::ES384).is_none());
        for kid in ["weak", "enc", "ops", "mislabelled", "hmac-alg", "secret", "k1", "x1", "future", "no-n", "nope"] {
            assert!(!jwks.has_kid(kid), "{kid} is not usable");
            assert!(jwks.find(Some(kid), Algorithm::RS256).is_none(), "{kid}");
            assert!(jwks.find(Some(kid), Algorithm::HS256).is_none(), "{kid}");
        }
        // Without a kid: the one key that suits the algorithm.
        assert!(jwks.find(None, Algorithm::ES256).is_some());
        assert!(jwks.find(None, Algorithm::HS256).is_none());
        let two = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": rsa_n(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": rsa_n(4096), "e": "AQAB"},
        ]});
        let jwks = Jwks::parse(&serde_json::to_vec(&two).unwrap()).unwrap();
        assert!(jwks.find(None, Algorithm::RS256).is_none(), "ambiguous without a kid");

        let rows: [(&[u8], JwksError); 8] = [
            (b"", JwksError::NotJson),
            (b"[]", JwksError::NotJson),
            (b"{}", JwksError::NotJson),
            (b"{\"keys\": {}}", JwksError::NotJson),
            (b"{\"keys\": []}", JwksError::NoUsableKey),
            (b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}", JwksError::NoUsableKey),
            (b"{\"keys\": [], \"keys\": []}", JwksError::NotJson),
            (&[0xff, 0xfe], JwksError::NotJson),
        ];
        for (bytes, want) in rows {
            assert_eq!(Jwks::parse(bytes).unwrap_err(), want, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert_eq!(Jwks::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).unwrap_err(), JwksError::TooLarge);
        let many: Vec<_> = (0..200)
            .map(|i| serde_json::json!({"kty": "EC", "kid": format!("k{i}"), "crv": "P-256", "x": x, "y": y}))
            .collect();
        let jwks = Jwks::parse(&serde_json::to_vec(&serde_json::json!({ "keys": many })).unwrap()).unwrap();
        assert_eq!(jwks.len(), MAX_KEYS);
    }
}
