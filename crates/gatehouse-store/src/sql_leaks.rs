//! The SQL implementation of `LeakStore`, on both backends (see `sql.rs` for the macros).

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, Timestamp};

use super::oauth_sql::{ClientRow, CLIENT_COLUMNS};
use super::{client_feed_hash, event_of, hash_of, Db, SqlStore, FAN_OUT, INSERT_AUDIT, INSERT_CHANGE, INSERT_EVENT};
use crate::leaks::{LeakRecord, LeakStore, LeakTarget};
use crate::oauth::ClientRecord;
use crate::{AuditEntry, StoreError};

#[derive(sqlx::FromRow)]
struct LeakRow {
    credential_hash: Vec<u8>,
    credential_type: String,
    workspace: String,
    environment: Option<String>,
    target_type: String,
    target_id: String,
    masked: String,
    source_kind: String,
    location: Option<String>,
    source_commit: Option<String>,
    source_detail: Option<String>,
    reported_at: i64,
}

const LEAK_COLUMNS: &str = "credential_hash, credential_type, workspace, environment, target_type, target_id, masked, \
     source_kind, location, source_commit, source_detail, reported_at";

impl TryFrom<LeakRow> for LeakRecord {
    type Error = StoreError;
    fn try_from(r: LeakRow) -> Result<Self, StoreError> {
        let target = match r.target_type.as_str() {
            "api_key" => LeakTarget::ApiKey(r.target_id),
            "oauth_grant" => LeakTarget::Grant(r.target_id),
            "oauth_client" => LeakTarget::ClientSecret(r.target_id),
            _ => return Err(StoreError::Corrupt("leaked credential target type".into())),
        };
        Ok(LeakRecord {
            credential_hash: hash_of(&r.credential_hash)?,
            credential_type: r.credential_type,
            workspace: r.workspace,
            environment: r.environment.as_deref().and_then(Environment::parse),
            target,
            masked: r.masked,
            source_kind: r.source_kind,
            location: r.location,
            commit: r.source_commit,
            detail: r.source_detail,
            reported_at: Timestamp(r.reported_at),
        })
    }
}

#[async_trait]
impl LeakStore for SqlStore {
    async fn revoke_leaked(&self, leak: &LeakRecord, audit: &AuditEntry) -> Result<bool, StoreError> {
        let at = leak.reported_at;
        let (ws, hash) = (&leak.workspace, &leak.credential_hash.0[..]);
        let insert = format!(
            "INSERT INTO leaked_credentials ({LEAK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (credential_hash) DO NOTHING"
        );
        let changed = in_tx!(self, tx => {
            let changed = match &leak.target {
                LeakTarget::ApiKey(id) => {
                    let sql = "UPDATE api_keys SET revoked_at = $3 WHERE workspace = $1 AND id = $2 \
                               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3) RETURNING key_hash";
                    let key_hash: Option<Vec<u8>> =
                        sqlx::query_scalar(sql).bind(ws).bind(id).bind(at.0).fetch_optional(&mut *tx).await?;
                    if let Some(h) = &key_hash {
                        sqlx::query(INSERT_CHANGE).bind(h).bind(at.0).execute(&mut *tx).await?;
                    }
                    key_hash.is_some()
                }
                LeakTarget::Grant(id) => {
                    let live: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM oauth_grants WHERE id = $1 AND workspace = $2 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(ws)
                    .fetch_optional(&mut *tx)
                    .await?;
                    live.is_some() && revoke_grant_in!(tx, id, at)
                }
                LeakTarget::ClientSecret(id) => {
                    let current = sqlx::query(
                        "UPDATE oauth_clients SET secret_hash = NULL WHERE id = $1 AND workspace = $2 \
                         AND secret_hash = $3 AND disabled_at IS NULL",
                    )
                    .bind(id)
                    .bind(ws)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    let previous = sqlx::query(
                        "UPDATE oauth_clients SET previous_secret_hash = NULL, previous_secret_expires_at = NULL \
                         WHERE id = $1 AND workspace = $2 AND previous_secret_hash = $3 \
                         AND previous_secret_expires_at > $4 AND disabled_at IS NULL",
                    )
                    .bind(id)
                    .bind(ws)
                    .bind(hash)
                    .bind(at.0)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if current + previous > 0 {
                        sqlx::query(
                            "UPDATE oauth_grants SET revoked_at = $2 WHERE client_id = $1 \
                             AND grant_type = 'client_credentials' AND revoked_at IS NULL",
                        )
                        .bind(id)
                        .bind(at.0)
                        .execute(&mut *tx)
                        .await?;
                        revoke_tokens_where!(
                            tx,
                            "client_id = $1 AND grant_id IN (SELECT id FROM oauth_grants WHERE client_id = $1 AND grant_type = 'client_credentials')",
                            id,
                            at
                        );
                        sqlx::query(INSERT_CHANGE).bind(&client_feed_hash(id).0[..]).bind(at.0).execute(&mut *tx).await?;
                    }
                    current + previous > 0
                }
            };
            if changed {
                sqlx::query(&insert)
                    .bind(hash)
                    .bind(&leak.credential_type)
                    .bind(ws)
                    .bind(leak.environment.map(Environment::as_str))
                    .bind(leak.target.kind())
                    .bind(leak.target.id())
                    .bind(&leak.masked)
                    .bind(&leak.source_kind)
                    .bind(&leak.location)
                    .bind(&leak.commit)
                    .bind(&leak.detail)
                    .bind(at.0)
                    .execute(&mut *tx)
                    .await?;
                record!(tx, audit);
            }
            changed
        });
        Ok(changed)
    }

    async fn leak_by_hash(&self, hash: &KeyHash) -> Result<Option<LeakRecord>, StoreError> {
        let sql = format!("SELECT {LEAK_COLUMNS} FROM leaked_credentials WHERE credential_hash = $1");
        let row: Option<LeakRow> =
            on_db!(self, read, p => sqlx::query_as(&sql).bind(&hash.0[..]).fetch_optional(p).await?);
        row.map(LeakRecord::try_from).transpose()
    }

    async fn leaks_of(&self, workspace: &str, target_ids: &[String]) -> Result<Vec<LeakRecord>, StoreError> {
        if target_ids.is_empty() {
            return Ok(vec![]);
        }
        let mut rows: Vec<LeakRow> = Vec::new();
        // Bounded statements: a page of ids at a time.
        for chunk in target_ids.chunks(200) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {LEAK_COLUMNS} FROM leaked_credentials WHERE workspace = $1 AND target_id IN ({}) \
                 ORDER BY reported_at DESC",
                marks.join(", ")
            );
            let mut part: Vec<LeakRow> = on_db!(self, read, p => {
                let mut q = sqlx::query_as(&sql).bind(workspace);
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(p).await?
            });
            rows.append(&mut part);
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.reported_at));
        rows.into_iter().map(LeakRecord::try_from).collect()
    }

    async fn client_by_secret_hash(&self, hash: &KeyHash) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE secret_hash = $1 UNION ALL \
             SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE previous_secret_hash = $1"
        );
        let row: Option<ClientRow> =
            on_db!(self, read, p => sqlx::query_as(&sql).bind(&hash.0[..]).fetch_optional(p).await?);
        row.map(ClientRecord::try_from).transpose()
    }
}
