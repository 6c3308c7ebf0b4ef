//! The identity assertion for upstreams (SPEC §3): a short-lived EdDSA (Ed25519) JWT with the same
//! facts as the `X-Gatehouse-*` headers, audience = the app, verifiable with the control plane's JWKS.
//! Signing costs tens of microseconds, so the gateway reuses an assertion for the same credential and
//! app while it has more than half of its life left (`identity.rs`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Serialize;

/// Lifetime of an assertion (SPEC: at most 5 minutes).
pub const LIFETIME: Duration = Duration::from_secs(120);

/// The facts an assertion states.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Hash)]
pub struct Claims {
    /// `session`, `api_key` or `oauth`.
    pub auth: String,
    /// The subject: a user id, or a key id for API keys.
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    pub environment: String,
}

#[derive(Serialize)]
struct Payload<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(flatten)]
    claims: &'a Claims,
}

/// Signs assertions with the deployment's Ed25519 key.
pub struct AssertionSigner {
    key: SigningKey,
    kid: String,
    issuer: String,
}


impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// `seed` is the 32-byte private key kept in storage; `issuer` the control plane's URL.
    pub fn new(seed: &[u8], issuer: String) -> Self {
        let mut s = [0u8; 32];
        s.copy_from_slice(&seed[..32]);
        let key = SigningKey::from_bytes(&s);
        let public = key.verifying_key().to_bytes();
        let kid = gatehouse_core::apikey::KeyHash::of(&B64.encode(public)).to_hex()[..16].to_owned();
        Self { key, kid, issuer }
    }

    /// A fresh 32-byte seed for `new`.
    pub fn fresh_seed() -> Vec<u8> {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        seed.to_vec()
    }

    /// The issuer named in every token: the control plane's URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs any JSON payload as a compact JWT with header `typ` (e.g. `at+jwt`, RFC 9068).
    pub fn sign_jwt(&self, typ: &str, payload: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": self.kid});
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload.to_string()));
        let sig = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }

    /// The JWKS document (RFC 7517) with the public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid,
            "x": B64.encode(self.key.verifying_key().to_bytes()),
        }]})
    }

    /// An assertion for `claims` at `audience`, issued at unix time `now`.
    pub fn assertion(&self, audience: &str, claims: &Claims, now: i64) -> String {
        let exp = now + LIFETIME.as_secs() as i64;
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let payload = Payload { iss: &self.issuer, aud: audience, iat: now, nbf: now - 5, exp, claims };
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&payload).expect("claims serialize"))
        );
        let sig = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    #[test]
    fn assertions_verify_with_the_jwks_key_and_carry_the_facts() {
        let signer = AssertionSigner::new(&AssertionSigner::fresh_seed(), "http://cp".into());
        let claims = Claims {
            auth: "api_key".into(),
            sub: "key_1".into(),
            email: None,
            key_id: Some("key_1".into()),
            client_id: None,
            scopes: vec!["orders:read".into()],
            environment: "live".into(),
        };
        let jwt = signer.assertion("shop", &claims, gatehouse_core::Timestamp::now().unix_seconds());
        let parts: Vec<&str> = jwt.split('.').collect();
        let jwks = signer.jwks();
        let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let vk = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let sig = Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(payload["aud"], "shop");
        assert_eq!(payload["key_id"], "key_1");
        assert!(payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap() <= 300);
    }
}
