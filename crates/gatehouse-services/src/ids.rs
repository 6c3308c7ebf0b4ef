//! The one place that reads the OS clock and the OS's randomness for ids and keys: core's
//! `id::new_id` and `apikey::generate` take both as parameters, and every service calls these.

use gatehouse_core::{Environment, KeyKind, Namespace, SecretString, Timestamp};

/// A fresh id `{prefix}_…` stamped `now` (the caller's clock reading, so a test clock stamps ids too).
pub fn new_id(prefix: &str, now: Timestamp) -> String {
    gatehouse_core::id::new_id(prefix, now, &mut rand::thread_rng())
}

/// A fresh id stamped with the wall clock.
pub fn new_id_now(prefix: &str) -> String {
    new_id(prefix, Timestamp::now())
}

/// A fresh API key from the operating system's CSPRNG.
pub fn new_key(namespace: &Namespace, kind: KeyKind, environment: Environment) -> SecretString {
    gatehouse_core::apikey::generate(namespace, kind, environment, &mut rand::rngs::OsRng)
}
