//! The API key format of SPEC §4.1: `{namespace}_{sk|rk}_{live|test}_{30 base62}{6 base62 CRC32}`.
//!
//! Parsing is allocation-free and rejects a wrong checksum before anything touches storage.
//! Only the SHA-256 of the whole key is ever stored.

use std::fmt;

use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::base62;
use crate::secret::SecretString;

/// Length of the random part.
pub const RANDOM_LEN: usize = 30;
/// Length of the checksum part.
pub const CHECKSUM_LEN: usize = 6;
const TAIL_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;

/// The deployment's key prefix (`gth` by default): lowercase letters and digits, 2 to 16 of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (2..=16).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.as_bytes()[0].is_ascii_lowercase();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("key namespace `{s}` must be 2-16 lowercase letters or digits, starting with a letter"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self("gth".to_owned())
    }
}

/// `sk` (secret: every scope of its workspace and environment) or `rk` (restricted: exactly its scopes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    #[serde(rename = "sk")]
    Secret,
    #[serde(rename = "rk")]
    Restricted,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Secret => "sk",
            KeyKind::Restricted => "rk",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sk" => Some(KeyKind::Secret),
            "rk" => Some(KeyKind::Restricted),
            _ => None,
        }
    }
}

/// The environment a key (and everything it touches) lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a key. None of these messages contains the string itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("the key does not have the shape {{namespace}}_{{sk|rk}}_{{live|test}}_{{36 characters}}")]
    Shape,
    #[error("the key's namespace is not this deployment's")]
    Namespace,
    #[error("the key's kind must be sk or rk")]
    Kind,
    #[error("the key's environment must be live or test")]
    Environment,
    #[error("the key contains characters outside 0-9A-Za-z")]
    Alphabet,
    #[error("the key's checksum does not match; it was probably mistyped or truncated")]
    Checksum,
}

/// The SHA-256 of a whole key string: the only form in which a key is stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Constant-time equality, for confirming a lookup against the stored hash.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// A key string that passed the format and checksum checks. Borrowed: parsing does not allocate.
#[derive(Clone, Copy)]
pub struct ApiKey<'a> {
    full: &'a str,
    pub kind: KeyKind,
    pub environment: Environment,
}

impl fmt::Debug for ApiKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", mask(self.full))
    }
}

impl<'a> ApiKey<'a> {
    /// Parses from the right, so a namespace may itself contain underscores in the future.
    pub fn parse(namespace: &Namespace, s: &'a str) -> Result<Self, KeyParseError> {
        let b = s.as_bytes();
        // "_xx_yyyy_" + tail
        if b.len() < TAIL_LEN + 9 + 1 || !s.is_ascii() {
            return Err(KeyParseError::Shape);
        }
        let tail_start = b.len() - TAIL_LEN;
        let tail = &b[tail_start..];
        if b[tail_start - 1] != b'_' {
            return Err(KeyParseError::Shape);
        }
        let head = &s[..tail_start - 1];
        let (rest, env) = head.rsplit_once('_').ok_or(KeyParseError::Shape)?;
        let (ns, kind) = rest.rsplit_once('_').ok_or(KeyParseError::Shape)?;
        if ns != namespace.as_str() {
            return Err(KeyParseError::Namespace);
        }
        let kind = KeyKind::parse(kind).ok_or(KeyParseError::Kind)?;
        let environment = Environment::parse(env).ok_or(KeyParseError::Environment)?;
        if !tail.iter().all(|c| base62::digit_value(*c).is_some()) {
            return Err(KeyParseError::Alphabet);
        }
        let (random, checksum) = tail.split_at(RANDOM_LEN);
        if checksum_of(random) != *checksum {
            return Err(KeyParseError::Checksum);
        }
        Ok(Self { full: s, kind, environment })
    }

    pub fn as_str(&self) -> &'a str {
        self.full
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.full)
    }

    /// `gth_sk_live_4eC3` — the prefix shown in lists (kind, environment and 4 random characters).
    pub fn display_prefix(&self) -> String {
        display_prefix(self.full)
    }

    pub fn last4(&self) -> &'a str {
        &self.full[self.full.len() - 4..]
    }
}

/// Makes a key from `rng`, which must be a CSPRNG (the services pass the operating system's; core
/// reads no randomness of its own, so tests can pass a seeded one).
pub fn generate(
    namespace: &Namespace,
    kind: KeyKind,
    environment: Environment,
    rng: &mut (impl CryptoRng + RngCore),
) -> SecretString {
    let mut random = [0u8; RANDOM_LEN];
    for c in random.iter_mut() {
        *c = base62::ALPHABET[rng.gen_range(0..62)];
    }
    let checksum = checksum_of(&random);
    let mut key = String::with_capacity(namespace.as_str().len() + 9 + TAIL_LEN + 1);
    key.push_str(namespace.as_str());
    key.push('_');
    key.push_str(kind.as_str());
    key.push('_');
    key.push_str(environment.as_str());
    key.push('_');
    key.push_str(std::str::from_utf8(&random).expect("base62 is ASCII"));
    key.push_str(std::str::from_utf8(&checksum).expect("base62 is ASCII"));
    SecretString::new(key)
}

/// CRC32 (IEEE) of the random part, base62, zero-padded to six characters.
pub fn checksum_of(random: &[u8]) -> [u8; CHECKSUM_LEN] {
    let crc = crc32fast::hash(random);
    base62::encode_fixed::<CHECKSUM_LEN>(u64::from(crc)).expect("u32 fits in 6 base62 digits")
}

fn display_prefix(full: &str) -> String {
    let cut = full.len() - TAIL_LEN + 4;
    format!("{}…", &full[..cut])
}

/// Masks a presented key for use in a message: `gth_sk_live_4eC3…ab12`. Only a string of exactly
/// the key's shape (`{ns}_{sk|rk}_{live|test}_` and 36 base62 characters) shows its first and last
/// four characters; anything longer, shorter or otherwise malformed shows its prefix alone
/// (`gth_sk_live_…`), and a string without a key prefix becomes `…`, so nothing glued to a key is
/// ever echoed.
pub fn mask(s: &str) -> String {
    let Some(prefix_len) = key_prefix_len(s) else { return "…".to_owned() };
    let (prefix, body) = s.split_at(prefix_len);
    if body.len() == TAIL_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format!("{prefix}{}…{}", &body[..4], &body[TAIL_LEN - 4..])
    } else {
        format!("{prefix}…")
    }
}

/// The length of a leading `{ns}_{sk|rk}_{live|test}_`, for any well-formed namespace.
fn key_prefix_len(s: &str) -> Option<usize> {
    let (ns, rest) = s.split_once('_')?;
    Namespace::parse(ns).ok()?;
    let (kind, rest) = rest.split_once('_')?;
    let (env, _) = rest.split_once('_')?;
    KeyKind::parse(kind)?;
    Environment::parse(env)?;
    Some(ns.len() + kind.len() + env.len() + 3)
}

/// Replaces every credential of this deployment in `text` with its masked form, so that no message
/// built from user input can echo a secret back: API keys (`{ns}_sk_…`, `{ns}_rk_…`, masked as by
/// [`mask`]), OAuth access and refresh tokens and client secrets (`{ns}_at_`, `{ns}_rt_`, `{ns}_cs_`)
/// and webhook signing secrets (`whsec_`), which become their prefix and `…`. The whole run of
/// token characters around the prefix is replaced, so junk pasted before or after a credential is
/// not echoed either. Already-masked text (`gth_sk_live_4eC3…ab12`) is left as it is.
pub fn mask_keys_in(text: &str, namespace: &Namespace) -> String {
    let ns = namespace.as_str();
    let markers = [
        format!("{ns}_sk_"),
        format!("{ns}_rk_"),
        format!("{ns}_at_"),
        format!("{ns}_rt_"),
        format!("{ns}_cs_"),
        "whsec_".to_owned(),
    ];
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i < b.len() {
        let Some(marker) = markers.iter().find(|m| b[i..].starts_with(m.as_bytes())) else {
            i += 1;
            continue;
        };
        let mut end = i + marker.len();
        while end < b.len() && is_token_byte(b[end]) {
            end += 1;
        }
        if end == i + marker.len() {
            // A bare prefix (`gth_sk_`) carries no secret.
            i = end;
            continue;
        }
        if text[end..].starts_with('…') && key_prefix_len(&text[i..end]).is_some_and(|p| end - i - p <= 4) {
            // `gth_sk_live_4eC3…ab12`: already masked.
            i = end;
            continue;
        }
        let mut start = i;
        while start > copied && is_token_byte(b[start - 1]) {
            start -= 1;
        }
        out.push_str(&text[copied..start]);
        let run = &text[i..end];
        match key_prefix_len(run) {
            Some(_) => out.push_str(&mask(run)),
            None => {
                out.push_str(marker);
                out.push('…');
            }
        }
        copied = end;
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Characters that can continue a credential in any of our encodings (base62, base64, base64url).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'=' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ns() -> Namespace {
        Namespace::default()
    }

    #[test]
    fn generated_keys_parse_and_match_the_scanner_regex_shape() {
        for (kind, env) in [(KeyKind::Secret, Environment::Live), (KeyKind::Restricted, Environment::Test)] {
            let key = generate(&ns(), kind, env, &mut StdRng::seed_from_u64(1));
            let parsed = ApiKey::parse(&ns(), key.expose()).unwrap();
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.environment, env);
            assert_eq!(key.expose().len(), 3 + 1 + 2 + 1 + 4 + 1 + 36);
        }
    }

    #[test]
    fn a_seeded_rng_gives_the_same_key_and_another_seed_another() {
        let key = |seed| generate(&ns(), KeyKind::Secret, Environment::Live, &mut StdRng::seed_from_u64(seed));
        assert_eq!(key(42).expose(), "gth_sk_live_WXdP2Pjq80vVO8WD0W3eqUV3LRnCOe4Zun2p");
        assert_eq!(key(42).expose(), key(42).expose());
        assert_ne!(key(42).expose(), key(43).expose());
    }

    #[test]
    fn hostile_strings_are_rejected_without_panicking() {
        let good = "gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt";
        let cases: &[(&str, KeyParseError)] = &[
            ("", KeyParseError::Shape),
            ("gth_sk_test_", KeyParseError::Shape),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDN", KeyParseError::Shape),
            ("gth_sk_test-4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Shape),
            ("gthsktest_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Shape),
            ("xyz_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Namespace),
            ("gth_gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Namespace),
            ("gth_pk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Kind),
            ("gth_SK_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Kind),
            ("gth_sk_prod_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Environment),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDN!", KeyParseError::Alphabet),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCD_1RiDNt", KeyParseError::Alphabet),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDF1RiDNt", KeyParseError::Checksum),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNu", KeyParseError::Checksum),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNté", KeyParseError::Shape),
            (" gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt", KeyParseError::Namespace),
            ("gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt ", KeyParseError::Shape),
        ];
        assert!(ApiKey::parse(&ns(), good).is_ok());
        for (input, want) in cases {
            assert_eq!(ApiKey::parse(&ns(), input).err(), Some(*want), "input {input:?}");
        }
    }

    #[test]
    fn error_messages_never_contain_the_key() {
        let bad = "gth_sk_test_4eC39HqLyjWDarjtT1zdp7dc0ABCDF1RiDNt";
        let err = ApiKey::parse(&ns(), bad).unwrap_err().to_string();
        assert!(!err.contains("4eC39"), "{err}");
    }

    #[test]
    fn masking_and_display_prefix() {
        let k = "gth_sk_live_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt";
        assert_eq!(mask(k), "gth_sk_live_4eC3…iDNt");
        assert_eq!(display_prefix(k), "gth_sk_live_4eC3…");
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("abcdefghijklmnopqrstuvwxyz0123"), "…");
    }

    #[test]
    fn masking_never_echoes_more_than_the_masked_form() {
        let key = "gth_sk_live_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt";
        let rows = [
            (key.to_owned(), "gth_sk_live_4eC3…iDNt"),
            (format!("{key}EXTRA"), "gth_sk_live_…"),
            (format!("{key}_hunter2password"), "gth_sk_live_…"),
            (key[..40].to_owned(), "gth_sk_live_…"),
            ("gth_rk_test_hunter2hunter2hunter2hunter2hunter2".to_owned(), "gth_rk_test_…"),
            ("gth_rk_test_hunter2hunter2hunter2hunter2hunter22".to_owned(), "gth_rk_test_hunt…er22"),
            ("gth_sk_live_hunter2-password-that-is-long-enough".to_owned(), "gth_sk_live_…"),
            ("gth_sk_prod_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt".to_owned(), "…"),
            ("password-that-is-long-enough-to-mask".to_owned(), "…"),
            ("gth_sk_live_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiD\u{e9}".to_owned(), "gth_sk_live_…"),
        ];
        for (presented, want) in rows {
            assert_eq!(mask(&presented), want, "{presented}");
        }
    }

    #[test]
    fn mask_keys_in_table() {
        let ns = Namespace::default();
        let key = "gth_sk_live_4eC39HqLyjWDarjtT1zdp7dc0ABCDE1RiDNt";
        let at = "gth_at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_x";
        let whsec = "whsec_c29tZXRoaW5nIGVsc2UgZW50aXJlbHkgMTIzNDU2Nzg5MA==";
        let rows = [
            (format!("No API key with id `{key}`."), "No API key with id `gth_sk_live_4eC3…iDNt`.".to_owned()),
            (format!("No API key with id `{key}EXTRA`."), "No API key with id `gth_sk_live_…`.".to_owned()),
            (format!("id `junk{key}_more-junk`"), "id `gth_sk_live_…`".to_owned()),
            (format!("id `hunter2{key}`"), "id `gth_sk_live_4eC3…iDNt`".to_owned()),
            (
                format!("invalid type: string \"{at}\", expected a sequence"),
                "invalid type: string \"gth_at_…\", expected a sequence".to_owned(),
            ),
            (format!("scope `x{at}y`"), "scope `gth_at_…`".to_owned()),
            ("client gth_cs_s3cr3t-with+junk/==".to_owned(), "client gth_cs_…".to_owned()),
            ("refresh gth_rt_abc".to_owned(), "refresh gth_rt_…".to_owned()),
            (format!("secret {whsec}!"), "secret whsec_…!".to_owned()),
            ("gth_sk_hunter2hunter2".to_owned(), "gth_sk_…".to_owned()),
            (format!("{key} and {key}"), "gth_sk_live_4eC3…iDNt and gth_sk_live_4eC3…iDNt".to_owned()),
            // Already masked, bare prefixes and other namespaces are left alone.
            ("(key gth_sk_live_4eC3…iDNt)".to_owned(), "(key gth_sk_live_4eC3…iDNt)".to_owned()),
            ("(key gth_sk_live_…)".to_owned(), "(key gth_sk_live_…)".to_owned()),
            ("keys look like gth_sk_ or gth_rk_".to_owned(), "keys look like gth_sk_ or gth_rk_".to_owned()),
            ("über gth_sk_live_x ü".to_owned(), "über gth_sk_live_… ü".to_owned()),
            ("nothing here".to_owned(), "nothing here".to_owned()),
        ];
        for (text, want) in rows {
            assert_eq!(mask_keys_in(&text, &ns), want, "{text}");
        }
        let acme = Namespace::parse("acme").unwrap();
        assert_eq!(mask_keys_in("acme_cs_secret and gth_cs_other", &acme), "acme_cs_… and gth_cs_other");
    }

    #[test]
    fn custom_namespace() {
        let ns = Namespace::parse("acme").unwrap();
        let key = generate(&ns, KeyKind::Secret, Environment::Live, &mut StdRng::seed_from_u64(1));
        assert!(key.expose().starts_with("acme_sk_live_"));
        assert_eq!(ApiKey::parse(&Namespace::default(), key.expose()).err(), Some(KeyParseError::Namespace));
        assert!(Namespace::parse("Bad").is_err());
        assert!(Namespace::parse("a").is_err());
    }
}
