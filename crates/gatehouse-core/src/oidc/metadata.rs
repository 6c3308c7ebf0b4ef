//! A provider's discovery document (OpenID Connect Discovery 1.0 §3), read from untrusted bytes.
//! Only what Gatehouse uses is kept; every endpoint is an absolute `https` URL (or `http` for an
//! issuer on loopback), and the `issuer` must be exactly the configured one (§4.3: a document that
//! names another issuer is refused, or one provider could speak for another).

use serde::Deserialize;

use super::{asymmetric_algorithm, endpoint_ok, loopback_http};

/// The largest discovery document read (real ones are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAuth {
    /// HTTP Basic with the client id and secret (the default of RFC 8414 and OpenID Discovery).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// What Gatehouse needs of a provider, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), when the provider offers it.
    pub end_session_endpoint: Option<String>,
    /// The provider's ID-token algorithms that we accept (asymmetric only), in its order; never empty.
    pub id_token_algorithms: Vec<jsonwebtoken::Algorithm>,
    pub token_auth: TokenAuth,
}

/// Why a discovery document was refused. Messages name fields, never echo long values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the discovery document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the discovery document is not a JSON object of the expected shape: {0}")]
    NotJson(String),
    #[error("the discovery document names issuer `{found}`, not the configured `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("the discovery document has no `{0}`")]
    Missing(&'static str),
    #[error("`{0}` in the discovery document is not an absolute https URL")]
    BadEndpoint(&'static str),
    #[error(
        "the provider signs ID tokens with none of the algorithms Gatehouse accepts (RS*, PS*, ES256, ES384, EdDSA)"
    )]
    NoAcceptedAlgorithm,
    #[error("the provider supports neither client_secret_basic nor client_secret_post at its token endpoint")]
    NoClientAuth,
    #[error("the provider does not support PKCE with S256")]
    NoPkceS256,
    #[error("the provider does not support the authorization code flow (response type `code`)")]
    NoCodeFlow,
}

#[derive(Deserialize)]
struct Raw {
    issuer: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    jwks_uri: Option<String>,
    end_session_endpoint: Option<String>,
    id_token_signing_alg_values_supported: Option<Vec<serde_json::Value>>,
    token_endpoint_auth_methods_supported: Option<Vec<serde_json::Value>>,
    code_challenge_methods_supported: Option<Vec<serde_json::Value>>,
    response_types_supported: Option<Vec<serde_json::Value>>,
}

fn strings(values: &[serde_json::Value]) -> impl Iterator<Item = &str> {
    values.iter().filter_map(serde_json::Value::as_str)
}

impl ProviderMetadata {
    /// Parses the document served at `<issuer>/.well-known/openid-configuration`, for the provider
    /// configured with `expected_issuer` (compared exactly, as the specification requires).
    pub fn parse(bytes: &[u8], expected_issuer: &str) -> Result<Self, MetadataError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(MetadataError::TooLarge);
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| {
            let mut m = e.to_string();
            m.truncate(200);
            MetadataError::NotJson(m)
        })?;
        let issuer = raw.issuer.ok_or(MetadataError::Missing("issuer"))?;
        if issuer != expected_issuer {
            return Err(MetadataError::WrongIssuer {
                expected: expected_issuer.to_owned(),
                found: issuer.chars().take(200).collect(),
            });
        }
        let allow_http = loopback_http(expected_issuer);
        let endpoint = |value: Option<String>, name: &'static str| -> Result<String, MetadataError> {
            let v = value.ok_or(MetadataError::Missing(name))?;
            if endpoint_ok(&v, allow_http) {
                Ok(v)
            } else {
                Err(MetadataError::BadEndpoint(name))
            }
        };
        let authorization_endpoint = endpoint(raw.authorization_endpoint, "authorization_endpoint")?;
        let token_endpoint = endpoint(raw.token_endpoint, "token_endpoint")?;
        let jwks_uri = endpoint(raw.jwks_uri, "jwks_uri")?;
        let end_session_endpoint = match raw.end_session_endpoint {
            None => None,
            Some(v) => Some(endpoint(Some(v), "end_session_endpoint")?),
        };
        let algs = raw
            .id_token_signing_alg_values_supported
            .ok_or(MetadataError::Missing("id_token_signing_alg_values_supported"))?;
        let mut id_token_algorithms = vec![];
        for alg in strings(&algs).filter_map(asymmetric_algorithm) {
            if !id_token_algorithms.contains(&alg) {
                id_token_algorithms.push(alg);
            }
        }
        if id_token_algorithms.is_empty() {
            return Err(MetadataError::NoAcceptedAlgorithm);
        }
        // Absent means client_secret_basic (OpenID Connect Discovery 1.0 §3).
        let token_auth = match &raw.token_endpoint_auth_methods_supported {
            None => TokenAuth::ClientSecretBasic,
            Some(methods) if strings(methods).any(|m| m == "client_secret_basic") => TokenAuth::ClientSecretBasic,
            Some(methods) if strings(methods).any(|m| m == "client_secret_post") => TokenAuth::ClientSecretPost,
            Some(_) => return Err(MetadataError::NoClientAuth),
        };
        // PKCE is always sent; a provider that lists its methods must list S256.
        if let Some(methods) = &raw.code_challenge_methods_supported {
            if !strings(methods).any(|m| m == "S256") {
                return Err(MetadataError::NoPkceS256);
            }
        }
        let types = raw.response_types_supported.ok_or(MetadataError::Missing("response_types_supported"))?;
        if !strings(&types).any(|t| t == "code") {
            return Err(MetadataError::NoCodeFlow);
        }
        Ok(ProviderMetadata {
            issuer,
            authorization_endpoint,
            token_endpoint,
            jwks_uri,
            end_session_endpoint,
            id_token_algorithms,
            token_auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    const ISS: &str = "https://idp.example.com";

    fn doc(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
        let mut v = serde_json::json!({
            "issuer": ISS,
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "response_types_supported": ["code", "id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        edit(v.as_object_mut().unwrap());
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_complete_document() {
        let m = ProviderMetadata::parse(
            &doc(|d| {
                d.insert("end_session_endpoint".into(), "https://idp.example.com/logout".into());
                d.insert(
                    "id_token_signing_alg_values_supported".into(),
                    serde_json::json!(["none", "HS256", "ES256", "RS256", "ES256", 7]),
                );
                d.insert(
                    "token_endpoint_auth_methods_supported".into(),
                    serde_json::json!(["private_key_jwt", "client_secret_post"]),
                );
                d.insert("code_challenge_methods_supported".into(), serde_json::json!(["plain", "S256"]));
                d.insert("claims_supported".into(), serde_json::json!(["sub"]));
            }),
            ISS,
        )
        .unwrap();
        assert_eq!(m.id_token_algorithms, vec![Algorithm::ES256, Algorithm::RS256], "none and HS256 dropped");
        assert_eq!(m.token_auth, TokenAuth::ClientSecretPost);
        assert_eq!(m.end_session_endpoint.as_deref(), Some("https://idp.example.com/logout"));
        let m = ProviderMetadata::parse(&doc(|_| {}), ISS).unwrap();
        assert_eq!((m.token_auth, m.end_session_endpoint), (TokenAuth::ClientSecretBasic, None));
    }

    #[test]
    fn hostile_documents() {
        use MetadataError as E;
        type Edit = Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>)>;
        let set = |k: &'static str, v: serde_json::Value| -> Edit {
            Box::new(move |d| {
                d.insert(k.into(), v);
            })
        };
        let drop = |k: &'static str| -> Edit {
            Box::new(move |d| {
                d.remove(k);
            })
        };
        let rows: Vec<(&str, Edit, E)> = vec![
            (
                "issuer with a trailing slash",
                set("issuer", "https://idp.example.com/".into()),
                E::WrongIssuer { expected: ISS.into(), found: "https://idp.example.com/".into() },
            ),
            (
                "issuer of another provider",
                set("issuer", "https://evil.example".into()),
                E::WrongIssuer { expected: ISS.into(), found: "https://evil.example".into() },
            ),
            (
                "issuer differing in case",
                set("issuer", "https://IDP.example.com".into()),
                E::WrongIssuer { expected: ISS.into(), found: "https://IDP.example.com".into() },
            ),
            ("no issuer", drop("issuer"), E::Missing("issuer")),
            ("issuer not a string", set("issuer", 5.into()), E::NotJson(String::new())),
            ("no token endpoint", drop("token_endpoint"), E::Missing("token_endpoint")),
            (
                "plain http endpoint",
                set("token_endpoint", "http://idp.example.com/token".into()),
                E::BadEndpoint("token_endpoint"),
            ),
            (
                "javascript endpoint",
                set("authorization_endpoint", "javascript:alert(1)".into()),
                E::BadEndpoint("authorization_endpoint"),
            ),
            ("relative jwks", set("jwks_uri", "/jwks".into()), E::BadEndpoint("jwks_uri")),
            (
                "credentials in a url",
                set("jwks_uri", "https://a:b@idp.example.com/jwks".into()),
                E::BadEndpoint("jwks_uri"),
            ),
            (
                "bad logout endpoint",
                set("end_session_endpoint", "ftp://x".into()),
                E::BadEndpoint("end_session_endpoint"),
            ),
            (
                "only none",
                set("id_token_signing_alg_values_supported", serde_json::json!(["none"])),
                E::NoAcceptedAlgorithm,
            ),
            (
                "only HMAC",
                set("id_token_signing_alg_values_supported", serde_json::json!(["HS256", "HS512"])),
                E::NoAcceptedAlgorithm,
            ),
            (
                "algorithms missing",
                drop("id_token_signing_alg_values_supported"),
                E::Missing("id_token_signing_alg_values_supported"),
            ),
            (
                "algorithms not a list",
                set("id_token_signing_alg_values_supported", "RS256".into()),
                E::NotJson(String::new()),
            ),
            (
                "no secret auth",
                set("token_endpoint_auth_methods_supported", serde_json::json!(["private_key_jwt"])),
                E::NoClientAuth,
            ),
            ("PKCE plain only", set("code_challenge_methods_supported", serde_json::json!(["plain"])), E::NoPkceS256),
            ("implicit only", set("response_types_supported", serde_json::json!(["id_token"])), E::NoCodeFlow),
        ];
        for (what, edit, want) in rows {
            let got = ProviderMetadata::parse(&doc(edit), ISS).unwrap_err();
            match (&got, &want) {
                (E::NotJson(_), E::NotJson(_)) => {}
                _ => assert_eq!(got, want, "{what}"),
            }
        }
        let bytes_rows: [(&[u8], &str); 6] = [
            (b"", "empty"),
            (b"null", "null"),
            (b"[]", "array"),
            (b"{\"issuer\": \"https://idp.example.com\", \"issuer\": \"https://evil.example\"}", "duplicate issuer"),
            (&[0xff, 0xfe, b'{'], "not UTF-8"),
            (b"<html>login</html>", "an HTML page"),
        ];
        for (bytes, what) in bytes_rows {
            assert!(matches!(ProviderMetadata::parse(bytes, ISS), Err(E::NotJson(_))), "{what}");
        }
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert_eq!(ProviderMetadata::parse(&huge, ISS), Err(E::TooLarge));
        // An http issuer is fine on loopback, and then its endpoints may be http too.
        let local = "http://127.0.0.1:9000";
        let d = serde_json::json!({"issuer": local, "authorization_endpoint": "http://127.0.0.1:9000/auth",
            "token_endpoint": "http://127.0.0.1:9000/token", "jwks_uri": "http://127.0.0.1:9000/jwks",
            "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"]});
        assert!(ProviderMetadata::parse(&serde_json::to_vec(&d).unwrap(), local).is_ok());
    }
}
