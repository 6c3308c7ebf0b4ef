//! The ID-token table: every row a token a provider (or an attacker) could hand us, with the answer.
//! Keys are made here, for this run: an RSA key and two P-256 keys.

use super::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const ISS: &str = "https://idp.example.com";
const CLIENT: &str = "gatehouse";
const NONCE: &str = "n-0S6_WzA2Mj";
const NOW: i64 = 1_800_000_000;

pub(crate) struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: Jwk,
}

pub(crate) fn rsa_key(kid: &str) -> (TestKey, Vec<u8>) {
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    let enc = EncodingKey::from_rsa_der(der.as_bytes());
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    let public_pem = private.to_public_key().to_pkcs1_pem(Default::default()).unwrap().into_bytes();
    (TestKey { kid: kid.into(), alg: Algorithm::RS256, enc, jwk }, public_pem)
}

pub(crate) fn ec_key(kid: &str) -> TestKey {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let enc = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    TestKey { kid: kid.into(), alg: Algorithm::ES256, enc, jwk }
}

pub(crate) fn set_of(keys: &[&TestKey]) -> Jwks {
    let set = JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() };
    Jwks::parse(&serde_json::to_vec(&set).unwrap()).unwrap()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": CLIENT, "sub": "248289761001", "exp": NOW + 300, "iat": NOW - 5, "nonce": NONCE,
           "email": "Jane@Example.com", "email_verified": true, "name": "Jane", "groups": ["eng", "ops", "eng"]})
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut h = Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    encode(&h, claims, &key.enc).unwrap()
}

fn with(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    edit(c.as_object_mut().unwrap());
    c
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!("{}.{}.", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

fn expect(algorithms: &[Algorithm]) -> Expectations<'_> {
    Expectations {
        issuer: ISS,
        client_id: CLIENT,
        nonce: NONCE,
        algorithms,
        now: NOW,
        leeway: 60,
        groups_claim: "groups",
    }
}

/// What a row says: the case, the token, the provider's algorithms, the answer.
type Row<'a> = (&'a str, String, &'a [Algorithm], Result<(), IdTokenError>);

#[test]
fn the_id_token_table() {
    let (rsa, rsa_public_pem) = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    let stranger = ec_key("ec-1"); // same kid, another key: a forgery under a known id
    let unlisted = ec_key("ec-9");
    let keys = set_of(&[&rsa, &ec]);
    let advertised = [Algorithm::RS256, Algorithm::ES256];
    use IdTokenError as E;

    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        encode(&h, &claims(), &EncodingKey::from_secret(&rsa_public_pem)).unwrap()
    };
    let hs256_with_jwk_n = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa-1".into());
        let n = match &rsa.jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => B64.decode(&p.n).unwrap(),
            _ => unreachable!(),
        };
        encode(&h, &claims(), &EncodingKey::from_secret(&n)).unwrap()
    };
    let tampered = {
        let t = sign(&ec, &claims());
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = B64.encode(
            with(|c| {
                c.insert("sub".into(), "admin".into());
            })
            .to_string(),
        );
        parts.join(".")
    };
    let embedded_jwk = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec-9".into());
        h.jwk = Some(unlisted.jwk.clone());
        encode(&h, &claims(), &unlisted.enc).unwrap()
    };
    let crit = {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec-1".into());
        h.crit = Some(vec!["exp".into()]);
        encode(&h, &claims(), &ec.enc).unwrap()
    };
    let no_kid = |key: &TestKey| encode(&Header::new(key.alg), &claims(), &key.enc).unwrap();

    let rows: Vec<Row<'_>> = vec![
        ("RS256, valid", sign(&rsa, &claims()), &advertised, Ok(())),
        ("ES256, valid", sign(&ec, &claims()), &advertised, Ok(())),
        (
            "wrong iss",
            sign(
                &ec,
                &with(|c| {
                    c.insert("iss".into(), "https://evil.example".into());
                }),
            ),
            &advertised,
            Err(E::WrongIssuer),
        ),
        (
            "iss with a trailing slash",
            sign(
                &ec,
                &with(|c| {
                    c.insert("iss".into(), format!("{ISS}/").into());
                }),
            ),
            &advertised,
            Err(E::WrongIssuer),
        ),
        (
            "no iss",
            sign(
                &ec,
                &with(|c| {
                    c.remove("iss");
                }),
            ),
            &advertised,
            Err(E::MissingClaim("iss")),
        ),
        (
            "wrong aud",
            sign(
                &ec,
                &with(|c| {
                    c.insert("aud".into(), "other-client".into());
                }),
            ),
            &advertised,
            Err(E::WrongAudience),
        ),
        (
            "no aud",
            sign(
                &ec,
                &with(|c| {
                    c.remove("aud");
                }),
            ),
            &advertised,
            Err(E::MissingClaim("aud")),
        ),
        (
            "several aud, azp us",
            sign(
                &ec,
                &with(|c| {
                    c.insert("aud".into(), json!([CLIENT, "api"]));
                    c.insert("azp".into(), CLIENT.into());
                }),
            ),
            &advertised,
            Ok(()),
        ),
        (
            "several aud, no azp",
            sign(
                &ec,
                &with(|c| {
                    c.insert("aud".into(), json!([CLIENT, "api"]));
                }),
            ),
            &advertised,
            Err(E::WrongAuthorizedParty),
        ),
        (
            "several aud, azp another",
            sign(
                &ec,
                &with(|c| {
                    c.insert("aud".into(), json!([CLIENT, "api"]));
                    c.insert("azp".into(), "api".into());
                }),
            ),
            &advertised,
            Err(E::WrongAuthorizedParty),
        ),
        (
            "one aud, azp another",
            sign(
                &ec,
                &with(|c| {
                    c.insert("azp".into(), "api".into());
                }),
            ),
            &advertised,
            Err(E::WrongAuthorizedParty),
        ),
        (
            "wrong nonce",
            sign(
                &ec,
                &with(|c| {
                    c.insert("nonce".into(), "replayed".into());
                }),
            ),
            &advertised,
            Err(E::WrongNonce),
        ),
        (
            "no nonce",
            sign(
                &ec,
                &with(|c| {
                    c.remove("nonce");
                }),
            ),
            &advertised,
            Err(E::WrongNonce),
        ),
        (
            "expired",
            sign(
                &ec,
                &with(|c| {
                    c.insert("exp".into(), (NOW - 61).into());
                }),
            ),
            &advertised,
            Err(E::Expired),
        ),
        (
            "expired within the leeway",
            sign(
                &ec,
                &with(|c| {
                    c.insert("exp".into(), (NOW - 30).into());
                }),
            ),
            &advertised,
            Ok(()),
        ),
        (
            "no exp",
            sign(
                &ec,
                &with(|c| {
                    c.remove("exp");
                }),
            ),
            &advertised,
            Err(E::MissingClaim("exp")),
        ),
        (
            "exp a string",
            sign(
                &ec,
                &with(|c| {
                    c.insert("exp".into(), "soon".into());
                }),
            ),
            &advertised,
            Err(E::MissingClaim("exp")),
        ),
        (
            "future iat",
            sign(
                &ec,
                &with(|c| {
                    c.insert("iat".into(), (NOW + 600).into());
                }),
            ),
            &advertised,
            Err(E::IssuedInFuture),
        ),
        (
            "iat within the leeway",
            sign(
                &ec,
                &with(|c| {
                    c.insert("iat".into(), (NOW + 30).into());
                }),
            ),
            &advertised,
            Ok(()),
        ),
        (
            "no iat",
            sign(
                &ec,
                &with(|c| {
                    c.remove("iat");
                }),
            ),
            &advertised,
            Err(E::MissingClaim("iat")),
        ),
        (
            "future nbf",
            sign(
                &ec,
                &with(|c| {
                    c.insert("nbf".into(), (NOW + 600).into());
                }),
            ),
            &advertised,
            Err(E::IssuedInFuture),
        ),
        (
            "no sub",
            sign(
                &ec,
                &with(|c| {
                    c.remove("sub");
                }),
            ),
            &advertised,
            Err(E::MissingClaim("sub")),
        ),
        (
            "empty sub",
            sign(
                &ec,
                &with(|c| {
                    c.insert("sub".into(), "".into());
                }),
            ),
            &advertised,
            Err(E::MissingClaim("sub")),
        ),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "ec-1"}), &claims()),
            &advertised,
            Err(E::AlgorithmNotAllowed("none".into())),
        ),
        (
            "alg None",
            unsigned(json!({"alg": "None"}), &claims()),
            &advertised,
            Err(E::AlgorithmNotAllowed("None".into())),
        ),
        (
            "HS256 with the RSA public key (PEM) as secret",
            hs256_with_public_key.clone(),
            &advertised,
            Err(E::AlgorithmNotAllowed("HS256".into())),
        ),
        (
            "HS256 with the public key, provider lists HS256",
            hs256_with_public_key,
            &[Algorithm::RS256, Algorithm::HS256],
            Err(E::AlgorithmNotAllowed("HS256".into())),
        ),
        (
            "HS256 with the modulus as secret",
            hs256_with_jwk_n,
            &advertised,
            Err(E::AlgorithmNotAllowed("HS256".into())),
        ),
        (
            "an algorithm the provider does not advertise",
            sign(&ec, &claims()),
            &[Algorithm::RS256],
            Err(E::AlgorithmNotAllowed("ES256".into())),
        ),
        (
            "RSA kid claimed for ES256",
            {
                let mut h = Header::new(Algorithm::ES256);
                h.kid = Some("rsa-1".into());
                encode(&h, &claims(), &ec.enc).unwrap()
            },
            &advertised,
            Err(E::UnknownKey),
        ),
        ("unknown kid", sign(&unlisted, &claims()), &advertised, Err(E::UnknownKey)),
        ("a key embedded in the header is not trusted", embedded_jwk, &advertised, Err(E::UnknownKey)),
        ("known kid, another key", sign(&stranger, &claims()), &advertised, Err(E::BadSignature)),
        ("payload changed after signing", tampered, &advertised, Err(E::BadSignature)),
        ("critical header", crit, &advertised, Err(E::CriticalHeader)),
        ("no kid, one key of the family", no_kid(&ec), &advertised, Ok(())),
        ("two parts", "eyJhbGciOiJSUzI1NiJ9.e30".to_owned(), &advertised, Err(E::Malformed)),
        ("four parts", format!("{}.x", sign(&ec, &claims())), &advertised, Err(E::Malformed)),
        ("not base64", "%%%.%%%.%%%".to_owned(), &advertised, Err(E::Malformed)),
        ("header not JSON", format!("{}.e30.", B64.encode("alg=RS256")), &advertised, Err(E::Malformed)),
        ("too long", format!("{}.{}.x", "a".repeat(MAX_TOKEN_BYTES), "b"), &advertised, Err(E::Malformed)),
        ("empty", String::new(), &advertised, Err(E::Malformed)),
    ];
    for (what, token, algs, want) in rows {
        let got = validate_id_token(&token, &keys, &expect(algs)).map(|_| ());
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn claims_kept_from_a_valid_token() {
    let ec = ec_key("ec-1");
    let keys = set_of(&[&ec]);
    let algs = [Algorithm::ES256];
    let c = validate_id_token(&sign(&ec, &claims()), &keys, &expect(&algs)).unwrap();
    assert_eq!(c.subject, "248289761001");
    assert_eq!(c.email.as_deref(), Some("jane@example.com"), "lower case, as users are stored");
    assert!(c.email_verified);
    assert_eq!(c.groups, vec!["eng", "ops"], "sorted, once each");
    // Hostile claim values: never an error past the signature, only less trust.
    let rows: Vec<(Value, Option<&str>, bool, Vec<&str>)> = vec![
        (json!({"email_verified": "true"}), Some("jane@example.com"), false, vec!["eng", "ops"]),
        (json!({"email_verified": 1}), Some("jane@example.com"), false, vec!["eng", "ops"]),
        (json!({"email": "not-an-email"}), None, true, vec!["eng", "ops"]),
        (json!({"email": "a b@example.com"}), None, true, vec!["eng", "ops"]),
        (json!({"email": 5}), None, true, vec!["eng", "ops"]),
        (json!({"groups": "admins"}), Some("jane@example.com"), true, vec!["admins"]),
        (json!({"groups": {"admins": true}}), Some("jane@example.com"), true, vec![]),
        (json!({"groups": ["", "a\u{0}b", 7, null, "ok"]}), Some("jane@example.com"), true, vec!["ok"]),
    ];
    for (edit, email, verified, groups) in rows {
        let mut c = claims();
        for (k, v) in edit.as_object().unwrap() {
            c.as_object_mut().unwrap().insert(k.clone(), v.clone());
        }
        let got = validate_id_token(&sign(&ec, &c), &keys, &expect(&algs)).unwrap();
        assert_eq!(
            (got.email.as_deref(), got.email_verified, got.groups.clone()),
            (email, verified, groups.iter().map(|s| s.to_string()).collect()),
            "{edit}"
        );
    }
    let many: Vec<String> = (0..1000).map(|i| format!("g{i:04}")).collect();
    let got = validate_id_token(
        &sign(
            &ec,
            &with(|c| {
                c.insert("groups".into(), json!(many));
            }),
        ),
        &keys,
        &expect(&algs),
    )
    .unwrap();
    assert_eq!(got.groups.len(), MAX_GROUPS);
    let other_claim = Expectations { groups_claim: "roles", ..expect(&algs) };
    let got = validate_id_token(
        &sign(
            &ec,
            &with(|c| {
                c.insert("roles".into(), json!(["r"]));
            }),
        ),
        &keys,
        &other_claim,
    )
    .unwrap();
    assert_eq!(got.groups, vec!["r"]);
}

#[test]
fn rotated_keys() {
    let old = ec_key("2024");
    let new = ec_key("2025");
    let algs = [Algorithm::ES256];
    let before = set_of(&[&old]);
    let during = set_of(&[&new, &old]);
    let after = set_of(&[&new]);
    let by_old = sign(&old, &claims());
    let by_new = sign(&new, &claims());
    assert_eq!(
        validate_id_token(&by_new, &before, &expect(&algs)).unwrap_err(),
        IdTokenError::UnknownKey,
        "a new key before the set lists it"
    );
    assert!(validate_id_token(&by_old, &during, &expect(&algs)).is_ok());
    assert!(validate_id_token(&by_new, &during, &expect(&algs)).is_ok());
    assert!(validate_id_token(&by_new, &after, &expect(&algs)).is_ok());
    assert_eq!(
        validate_id_token(&by_old, &after, &expect(&algs)).unwrap_err(),
        IdTokenError::UnknownKey,
        "a retired key"
    );
}
