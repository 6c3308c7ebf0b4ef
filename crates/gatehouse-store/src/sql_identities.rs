//! The SQL implementation of `IdentityStore`, on both backends (see `sql.rs` for the macros).

use async_trait::async_trait;
use gatehouse_core::{KeyHash, Timestamp};

use super::{event_of, hash_of, Db, SqlStore, UserRow, FAN_OUT, INSERT_AUDIT, INSERT_EVENT, INSERT_USER, USER_COLUMNS};
use crate::identities::{ExternalIdentity, IdentityStore, PendingLogin};
use crate::{AuditEntry, StoreError, UserRecord};

#[derive(sqlx::FromRow)]
struct IdentityRow {
    workspace: String,
    issuer: String,
    subject: String,
    user_id: String,
    provider_id: String,
    email: Option<String>,
    created_at: i64,
}

impl From<IdentityRow> for ExternalIdentity {
    fn from(r: IdentityRow) -> Self {
        ExternalIdentity {
            workspace: r.workspace,
            issuer: r.issuer,
            subject: r.subject,
            user_id: r.user_id,
            provider_id: r.provider_id,
            email: r.email,
            created_at: Timestamp(r.created_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    state_hash: Vec<u8>,
    provider_id: String,
    nonce: String,
    code_verifier: String,
    return_to: String,
    app_browser: Option<Vec<u8>>,
    browser_hash: Vec<u8>,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<PendingRow> for PendingLogin {
    type Error = StoreError;
    fn try_from(r: PendingRow) -> Result<Self, StoreError> {
        Ok(PendingLogin {
            state_hash: hash_of(&r.state_hash)?,
            provider_id: r.provider_id,
            nonce: r.nonce,
            code_verifier: r.code_verifier,
            return_to: r.return_to,
            app_browser: r.app_browser.as_deref().map(hash_of).transpose()?,
            browser_hash: hash_of(&r.browser_hash)?,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
        })
    }
}

const IDENTITY_COLUMNS: &str = "workspace, issuer, subject, user_id, provider_id, email, created_at";
const INSERT_IDENTITY: &str = "INSERT INTO external_identities (workspace, issuer, subject, user_id, provider_id, \
     email, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const PENDING_COLUMNS: &str = "state_hash, provider_id, nonce, code_verifier, return_to, app_browser, browser_hash, \
     created_at, expires_at";

macro_rules! bind_identity {
    ($q:expr, $l:expr) => {
        $q.bind(&$l.workspace)
            .bind(&$l.issuer)
            .bind(&$l.subject)
            .bind(&$l.user_id)
            .bind(&$l.provider_id)
            .bind(&$l.email)
            .bind($l.created_at.0)
    };
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn user_of_identity(
        &self,
        workspace: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let cols: Vec<String> = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect();
        let sql = format!(
            "SELECT {} FROM external_identities i JOIN users u ON u.id = i.user_id \
             WHERE i.workspace = $1 AND i.issuer = $2 AND i.subject = $3",
            cols.join(", ")
        );
        let row: Option<UserRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql).bind(workspace).bind(issuer).bind(subject).fetch_optional(p).await?
        });
        Ok(row.map(Into::into))
    }

    async fn link_identity(&self, link: &ExternalIdentity, audit: &AuditEntry) -> Result<(), StoreError> {
        in_tx!(self, tx => {
            bind_identity!(sqlx::query(INSERT_IDENTITY), link).execute(&mut *tx).await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn insert_user_with_identity(
        &self,
        user: &UserRecord,
        link: &ExternalIdentity,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        in_tx!(self, tx => {
            bind_user!(sqlx::query(INSERT_USER), user).execute(&mut *tx).await?;
            bind_identity!(sqlx::query(INSERT_IDENTITY), link).execute(&mut *tx).await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn identities_of(&self, user_id: &str) -> Result<Vec<ExternalIdentity>, StoreError> {
        let sql = format!("SELECT {IDENTITY_COLUMNS} FROM external_identities WHERE user_id = $1 ORDER BY created_at");
        let rows: Vec<IdentityRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_pending_login(&self, l: &PendingLogin) -> Result<(), StoreError> {
        let sql =
            format!("INSERT INTO oidc_pending_logins ({PENDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        on_db!(self, write, p => {
            sqlx::query(&sql)
                .bind(&l.state_hash.0[..])
                .bind(&l.provider_id)
                .bind(&l.nonce)
                .bind(&l.code_verifier)
                .bind(&l.return_to)
                .bind(l.app_browser.as_ref().map(|h| h.0.to_vec()))
                .bind(&l.browser_hash.0[..])
                .bind(l.created_at.0)
                .bind(l.expires_at.0)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn take_pending_login(&self, state_hash: &KeyHash) -> Result<Option<PendingLogin>, StoreError> {
        let sql = format!("DELETE FROM oidc_pending_logins WHERE state_hash = $1 RETURNING {PENDING_COLUMNS}");
        let row: Option<PendingRow> =
            on_db!(self, write, p => sqlx::query_as(&sql).bind(&state_hash.0[..]).fetch_optional(p).await?);
        row.map(PendingLogin::try_from).transpose()
    }

    async fn insert_provider_login(
        &self,
        session_hash: &KeyHash,
        provider_id: &str,
        id_token: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO oidc_provider_logins (session_hash, provider_id, id_token, expires_at) \
                   VALUES ($1, $2, $3, $4)";
        on_db!(self, write, p => {
            sqlx::query(sql).bind(&session_hash.0[..]).bind(provider_id).bind(id_token).bind(expires_at.0).execute(p).await?;
        });
        Ok(())
    }

    async fn take_provider_login(&self, session_hash: &KeyHash) -> Result<Option<(String, String)>, StoreError> {
        let sql = "DELETE FROM oidc_provider_logins WHERE session_hash = $1 RETURNING provider_id, id_token";
        let row: Option<(String, String)> =
            on_db!(self, write, p => sqlx::query_as(sql).bind(&session_hash.0[..]).fetch_optional(p).await?);
        Ok(row)
    }

    async fn prune_provider_logins(&self, now: Timestamp) -> Result<u64, StoreError> {
        let n = on_db!(self, write, p => {
            let a = sqlx::query("DELETE FROM oidc_pending_logins WHERE expires_at < $1").bind(now.0).execute(p).await?;
            let b = sqlx::query("DELETE FROM oidc_provider_logins WHERE expires_at < $1").bind(now.0).execute(p).await?;
            a.rows_affected() + b.rows_affected()
        });
        Ok(n)
    }
}
