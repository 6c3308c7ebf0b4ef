//! Server secrets: read without creating, and compare-and-swap with the audit entry in the same
//! transaction (how the signing key set rotates without two rotations losing each other's key).

use gatehouse_store::testing::Backend;
use gatehouse_store::{AuditStore, PageRequest, SecretStore};

use crate::{audit, fresh, story};

story!(secrets_swap_only_from_the_value_the_writer_saw);
async fn secrets_swap_only_from_the_value_the_writer_saw(b: Backend) {
    let (_db, store) = fresh(b).await;
    assert_eq!(store.read_secret("keys").await.unwrap(), None, "reading never creates");
    assert_eq!(store.read_secret("keys").await.unwrap(), None);
    let page = PageRequest { limit: 100, starting_after: None };
    let audited = || async { store.list_audit("default", None, &page).await.unwrap().items.len() };
    assert!(
        store.swap_secret("keys", None, b"one", &audit("signing_key.rotated", "k1", 1)).await.unwrap(),
        "created when absent"
    );
    assert!(
        !store.swap_secret("keys", None, b"other", &audit("signing_key.rotated", "k2", 2)).await.unwrap(),
        "a second creator loses"
    );
    assert!(
        !store.swap_secret("keys", Some(b"stale"), b"other", &audit("signing_key.rotated", "k3", 3)).await.unwrap(),
        "a stale writer loses"
    );
    assert_eq!(store.read_secret("keys").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert!(store.swap_secret("keys", Some(b"one"), b"two", &audit("signing_key.rotated", "k4", 4)).await.unwrap());
    assert_eq!(store.read_secret("keys").await.unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(store.secret("keys", b"fresh".to_vec()).await.unwrap(), b"two", "secret() keeps the swapped value");
    assert_eq!(audited().await, 2, "only the swaps that happened are audited");
}
