//! The identity assertion for upstreams (SPEC §3): a short-lived EdDSA (Ed25519) JWT with the same
//! facts as the `X-Gatehouse-*` headers, audience = the app, verifiable with the control plane's JWKS.
//! Signing costs tens of microseconds, so the gateway reuses an assertion for the same credential and
//! app while it has more than half of its life left (`identity.rs`).
//!
//! The signing key rotates (`gatehouse signing-key rotate`): the key set lives in storage, its first
//! key signs, and a retired key stays in the JWKS until its `published_until`, so assertions and JWT
//! access tokens it signed keep verifying. Every process reloads the set every `RELOAD_INTERVAL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use gatehouse_store::{AuditEntry, Store, StoreError};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

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

/// How often a running process reloads the key set from storage, so a rotation reaches it.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest overlap a rotation may give the previous key: longer than an assertion lives, plus a
/// reload interval for the nodes that still sign with it, rounded up to the SPEC's 5-minute ceiling.
pub const MIN_OVERLAP: Duration = Duration::from_secs(300);

/// The default overlap: a day, which outlives the longest JWT access token (`access_token_ttl_secs`
/// ≤ 86400) signed with the previous key.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(86_400);

/// The longest overlap a rotation may ask for.
pub const MAX_OVERLAP: Duration = Duration::from_secs(30 * 86_400);

/// The storage names: the first key ever (kept for deployments that never rotated) and the key set.
const SEED_SECRET: &str = "assertion_ed25519_seed";
const KEYS_SECRET: &str = "assertion_ed25519_keys";

/// One key of the stored set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct StoredKey {
    /// The 32-byte Ed25519 seed, base64url.
    seed: String,
    /// Unix milliseconds when it became the signing key (0: the deployment's first key).
    activated_at: i64,
    /// Retired keys only: published in the JWKS until this unix millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    published_until: Option<i64>,
}

/// The deployment's signing keys as stored: the first signs, the others are retired.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<StoredKey>,
}

/// A key of the set as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub activated_at: i64,
    /// `None` for the signing key.
    pub published_until: Option<i64>,
}

impl KeySet {
    /// The set of a deployment that never rotated: its first seed alone.
    pub fn initial(seed: &[u8]) -> Self {
        Self { keys: vec![StoredKey { seed: B64.encode(&seed[..32]), activated_at: 0, published_until: None }] }
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let set: KeySet =
            serde_json::from_slice(bytes).map_err(|e| format!("the stored signing keys are unreadable: {e}"))?;
        if set.keys.is_empty() || set.keys.iter().any(|k| B64.decode(&k.seed).map_or(true, |s| s.len() != 32)) {
            return Err("the stored signing keys are malformed".into());
        }
        Ok(set)
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key set serializes")
    }

    /// A new signing key `seed` from `now_ms`; the previous one stays published for `overlap`.
    /// Retired keys whose time is up are dropped.
    pub fn rotated(&self, seed: &[u8], now_ms: i64, overlap: Duration) -> Self {
        let mut keys = vec![StoredKey { seed: B64.encode(&seed[..32]), activated_at: now_ms, published_until: None }];
        let mut previous = self.keys[0].clone();
        previous.published_until = Some(now_ms + overlap.as_millis() as i64);
        keys.push(previous);
        keys.extend(self.keys[1..].iter().filter(|k| k.published_until.is_some_and(|u| u > now_ms)).cloned());
        Self { keys }
    }

    /// Every key with its kid: the signing key first.
    pub fn info(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .map(|k| KeyInfo {
                kid: kid_of(&signing_key(&k.seed)),
                activated_at: k.activated_at,
                published_until: k.published_until,
            })
            .collect()
    }
}

fn signing_key(seed_b64: &str) -> SigningKey {
    let seed = B64.decode(seed_b64).expect("checked when parsed");
    let mut s = [0u8; 32];
    s.copy_from_slice(&seed[..32]);
    SigningKey::from_bytes(&s)
}

fn kid_of(key: &SigningKey) -> String {
    gatehouse_core::apikey::KeyHash::of(&B64.encode(key.verifying_key().to_bytes())).to_hex()[..16].to_owned()
}

/// The deployment's key set from storage (the first key is created on first use).
pub async fn load_keys(store: &dyn Store) -> Result<KeySet, StoreError> {
    let seed = store.secret(SEED_SECRET, AssertionSigner::fresh_seed()).await?;
    match store.read_secret(KEYS_SECRET).await? {
        None => Ok(KeySet::initial(&seed)),
        Some(bytes) => KeySet::parse(&bytes).map_err(StoreError::Other),
    }
}

/// Makes a fresh key the signing key; the previous one stays in the JWKS for `overlap`. Audited as
/// `signing_key.rotated`. Answers the new set.
pub async fn rotate_keys(
    store: &dyn Store,
    workspace: &str,
    actor: &str,
    overlap: Duration,
) -> Result<KeySet, StoreError> {
    loop {
        let seed = store.secret(SEED_SECRET, AssertionSigner::fresh_seed()).await?;
        let stored = store.read_secret(KEYS_SECRET).await?;
        let current = match &stored {
            None => KeySet::initial(&seed),
            Some(bytes) => KeySet::parse(bytes).map_err(StoreError::Other)?,
        };
        let now = gatehouse_core::Timestamp::now();
        let next = current.rotated(&AssertionSigner::fresh_seed(), now.0, overlap);
        let info = next.info();
        let details =
            serde_json::json!({"kid": info[0].kid, "previous_kid": info[1].kid, "overlap_secs": overlap.as_secs()});
        let target = crate::audit::AuditTarget { kind: "signing_key", id: &info[0].kid, environment: None };
        let audit: AuditEntry =
            crate::audit::audit_entry(workspace, actor, &Default::default(), "signing_key.rotated", target, details);
        // Compare-and-swap: two rotations at once cannot both drop the other's key.
        if store.swap_secret(KEYS_SECRET, stored.as_deref(), &next.to_bytes(), &audit).await? {
            return Ok(next);
        }
    }
}

/// The keys in use: the signing key and every key the JWKS publishes.
struct Keys {
    signing: SigningKey,
    kid: String,
    /// (kid, public key, published until unix ms; `None` for the signing key).
    published: Vec<(String, [u8; 32], Option<i64>)>,
}

impl Keys {
    fn of(set: &KeySet) -> Self {
        let signing = signing_key(&set.keys[0].seed);
        let kid = kid_of(&signing);
        let published = set
            .keys
            .iter()
            .map(|k| {
                let key = signing_key(&k.seed);
                (kid_of(&key), key.verifying_key().to_bytes(), k.published_until)
            })
            .collect();
        Self { signing, kid, published }
    }
}

/// Signs assertions with the deployment's Ed25519 key.
pub struct AssertionSigner {
    keys: RwLock<Arc<Keys>>,
    /// Bumped whenever the signing key changes, so cached assertions are re-signed.
    generation: AtomicU64,
    issuer: String,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner").field("kid", &self.keys.read().kid).finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// `seed` is the 32-byte private key kept in storage; `issuer` the control plane's URL.
    pub fn new(seed: &[u8], issuer: String) -> Self {
        Self::with_keys(&KeySet::initial(seed), issuer)
    }

    /// A signer for a stored key set.
    pub fn with_keys(set: &KeySet, issuer: String) -> Self {
        Self { keys: RwLock::new(Arc::new(Keys::of(set))), generation: AtomicU64::new(0), issuer }
    }

    /// Takes a (re)loaded key set; a no-op when it is the one in use.
    pub fn reload(&self, set: &KeySet) {
        let next = Keys::of(set);
        let mut keys = self.keys.write();
        let same = keys.kid == next.kid
            && keys.published.iter().map(|p| (&p.0, p.2)).eq(next.published.iter().map(|p| (&p.0, p.2)));
        if !same {
            if keys.kid != next.kid {
                tracing::info!(kid = %next.kid, previous = %keys.kid, "the assertion signing key changed");
                self.generation.fetch_add(1, Ordering::Release);
            }
            *keys = Arc::new(next);
        }
    }

    /// Reloads the key set from storage every `RELOAD_INTERVAL` until aborted.
    pub fn spawn_reload(self: Arc<Self>, store: Arc<dyn Store>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match load_keys(store.as_ref()).await {
                    Ok(set) => self.reload(&set),
                    Err(e) => tracing::debug!(error = %e, "cannot reload the signing keys; keeping the current ones"),
                }
            }
        })
    }

    /// Changes whenever the signing key does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The kid of the signing key.
    pub fn kid(&self) -> String {
        self.keys.read().kid.clone()
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

    fn sign_compact(&self, header: impl FnOnce(&str) -> serde_json::Value, payload: &[u8]) -> String {
        let keys = self.keys.read().clone();
        let signing_input = format!("{}.{}", B64.encode(header(&keys.kid).to_string()), B64.encode(payload));
        let sig = keys.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }

    /// Signs any JSON payload as a compact JWT with header `typ` (e.g. `at+jwt`, RFC 9068).
    pub fn sign_jwt(&self, typ: &str, payload: &serde_json::Value) -> String {
        self.sign_compact(
            |kid| serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": kid}),
            payload.to_string().as_bytes(),
        )
    }

    /// The JWKS document (RFC 7517): the signing key, and every retired key still within its overlap.
    pub fn jwks(&self) -> serde_json::Value {
        let now = gatehouse_core::Timestamp::now().0;
        let keys = self.keys.read().clone();
        let published: Vec<serde_json::Value> = keys
            .published
            .iter()
            .filter(|(_, _, until)| until.is_none_or(|u| u > now))
            .map(|(kid, x, _)| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": B64.encode(x)}))
            .collect();
        serde_json::json!({ "keys": published })
    }

    /// An assertion for `claims` at `audience`, issued at unix time `now`.
    pub fn assertion(&self, audience: &str, claims: &Claims, now: i64) -> String {
        let exp = now + LIFETIME.as_secs() as i64;
        let payload = Payload { iss: &self.issuer, aud: audience, iat: now, nbf: now - 5, exp, claims };
        let payload = serde_json::to_vec(&payload).expect("claims serialize");
        self.sign_compact(|kid| serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}), &payload)
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

    #[test]
    fn rotation_keeps_the_previous_key_published_for_the_overlap_only() {
        let first = KeySet::initial(&AssertionSigner::fresh_seed());
        let first_kid = first.info()[0].kid.clone();
        let t0 = 1_800_000_000_000;
        let second = first.rotated(&AssertionSigner::fresh_seed(), t0, MIN_OVERLAP);
        let info = second.info();
        assert_eq!(info.len(), 2);
        assert_ne!(info[0].kid, first_kid, "a new key signs");
        assert_eq!((info[0].published_until, info[0].activated_at), (None, t0));
        assert_eq!((info[1].kid.as_str(), info[1].published_until), (first_kid.as_str(), Some(t0 + 300_000)));
        // A rotation within the overlap keeps both retired keys; one after it drops the expired one.
        let third = second.rotated(&AssertionSigner::fresh_seed(), t0 + 1_000, MIN_OVERLAP);
        assert_eq!(third.info().len(), 3);
        let fourth = third.rotated(&AssertionSigner::fresh_seed(), t0 + 300_001, MIN_OVERLAP);
        let kids: Vec<String> = fourth.info().into_iter().map(|k| k.kid).collect();
        assert_eq!(kids.len(), 3, "{kids:?}");
        assert!(!kids.contains(&first_kid), "past its overlap the first key is gone");
        assert_eq!(KeySet::parse(&fourth.to_bytes()).unwrap(), fourth);
        for bad in
            [&b"{}"[..], b"{\"keys\": []}", b"{\"keys\": [{\"seed\": \"AAAA\", \"activated_at\": 0}]}", b"not json"]
        {
            assert!(KeySet::parse(bad).is_err());
        }
    }

    #[test]
    fn a_reloaded_signer_signs_with_the_new_key_and_publishes_both() {
        let set = KeySet::initial(&AssertionSigner::fresh_seed());
        let signer = AssertionSigner::with_keys(&set, "http://cp".into());
        let old_kid = signer.kid();
        let rotated = set.rotated(&AssertionSigner::fresh_seed(), gatehouse_core::Timestamp::now().0, MIN_OVERLAP);
        signer.reload(&set);
        assert_eq!(signer.generation(), 0, "the same set changes nothing");
        signer.reload(&rotated);
        assert_eq!(signer.generation(), 1);
        assert_ne!(signer.kid(), old_kid);
        let kids: Vec<String> =
            signer.jwks()["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kids, vec![signer.kid(), old_kid]);
        let jwt = signer.sign_jwt("at+jwt", &serde_json::json!({"sub": "x"}));
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["kid"], signer.kid());
        // Past the overlap the retired key leaves the JWKS even before the next rotation.
        let expired =
            set.rotated(&AssertionSigner::fresh_seed(), gatehouse_core::Timestamp::now().0 - 301_000, MIN_OVERLAP);
        signer.reload(&expired);
        assert_eq!(signer.jwks()["keys"].as_array().unwrap().len(), 1);
    }
}
