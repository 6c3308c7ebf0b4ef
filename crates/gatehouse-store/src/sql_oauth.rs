//! The SQL implementation of `OAuthStore`, on both backends (see `sql.rs` for the macros).

use async_trait::async_trait;
use gatehouse_core::{Environment, KeyHash, Timestamp};

use super::{event_of, hash_of, json_list, page_of, Db, SqlStore, FAN_OUT, INSERT_AUDIT, INSERT_CHANGE, INSERT_EVENT};
use crate::oauth::{
    ClientEdit, ClientRecord, CodeOutcome, CodeRecord, ConsentRecord, GrantRecord, NewGrant, OAuthStore,
    RefreshOutcome, RefreshRequest, TokenKind, TokenRecord, UserConsent,
};
use crate::{AuditEntry, Page, PageRequest, StoreError};

/// The change-feed entry of a client (its cached copy on every node is dropped when it changes).
pub fn client_feed_hash(client_id: &str) -> KeyHash {
    KeyHash::of(&format!("oauth-client:{client_id}"))
}

fn strings(json: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|_| StoreError::Corrupt(format!("oauth {what}")))
}

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    id: String,
    workspace: String,
    name: String,
    kind: String,
    secret_hash: Option<Vec<u8>>,
    secret_last4: Option<String>,
    previous_secret_hash: Option<Vec<u8>>,
    previous_secret_expires_at: Option<i64>,
    redirect_uris: String,
    scopes: String,
    token_format: String,
    created_at: i64,
    created_by: String,
    disabled_at: Option<i64>,
    environment: String,
    app: Option<String>,
}

pub(super) const CLIENT_COLUMNS: &str = "id, workspace, name, kind, secret_hash, secret_last4, previous_secret_hash, \
     previous_secret_expires_at, redirect_uris, scopes, token_format, created_at, created_by, disabled_at, environment, app";

impl TryFrom<ClientRow> for ClientRecord {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Self, StoreError> {
        Ok(ClientRecord {
            confidential: r.kind == "confidential",
            secret_hash: r.secret_hash.as_deref().map(hash_of).transpose()?,
            previous_secret_hash: r.previous_secret_hash.as_deref().map(hash_of).transpose()?,
            previous_secret_expires_at: r.previous_secret_expires_at.map(Timestamp),
            redirect_uris: strings(&r.redirect_uris, "redirect_uris")?,
            scopes: strings(&r.scopes, "scopes")?,
            created_at: Timestamp(r.created_at),
            disabled_at: r.disabled_at.map(Timestamp),
            environment: Environment::parse(&r.environment)
                .ok_or_else(|| StoreError::Corrupt("oauth client environment".into()))?,
            app: r.app,
            id: r.id,
            workspace: r.workspace,
            name: r.name,
            secret_last4: r.secret_last4,
            token_format: r.token_format,
            created_by: r.created_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    code_hash: Vec<u8>,
    client_id: String,
    user_id: String,
    redirect_uri: String,
    redirect_given: String,
    scopes: String,
    code_challenge: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    grant_id: Option<String>,
}

impl TryFrom<CodeRow> for CodeRecord {
    type Error = StoreError;
    fn try_from(r: CodeRow) -> Result<Self, StoreError> {
        Ok(CodeRecord {
            code_hash: hash_of(&r.code_hash)?,
            redirect_given: r.redirect_given == "yes",
            scopes: strings(&r.scopes, "code scopes")?,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            used_at: r.used_at.map(Timestamp),
            client_id: r.client_id,
            user_id: r.user_id,
            redirect_uri: r.redirect_uri,
            code_challenge: r.code_challenge,
            grant_id: r.grant_id,
        })
    }
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    workspace: String,
    client_id: String,
    user_id: Option<String>,
    grant_type: String,
    scopes: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

const GRANT_COLUMNS: &str = "id, workspace, client_id, user_id, grant_type, scopes, created_at, revoked_at";

impl TryFrom<GrantRow> for GrantRecord {
    type Error = StoreError;
    fn try_from(r: GrantRow) -> Result<Self, StoreError> {
        Ok(GrantRecord {
            scopes: strings(&r.scopes, "grant scopes")?,
            created_at: Timestamp(r.created_at),
            revoked_at: r.revoked_at.map(Timestamp),
            id: r.id,
            workspace: r.workspace,
            client_id: r.client_id,
            user_id: r.user_id,
            grant_type: r.grant_type,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    token_hash: Vec<u8>,
    kind: String,
    grant_id: String,
    client_id: String,
    user_id: Option<String>,
    scopes: String,
    created_at: i64,
    expires_at: i64,
    parent_hash: Option<Vec<u8>>,
    used_at: Option<i64>,
    retried_at: Option<i64>,
    revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str =
    "token_hash, kind, grant_id, client_id, user_id, scopes, created_at, expires_at, parent_hash, used_at, retried_at, revoked_at";

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            hash: hash_of(&r.token_hash)?,
            kind: if r.kind == "refresh" { TokenKind::Refresh } else { TokenKind::Access },
            scopes: strings(&r.scopes, "token scopes")?,
            created_at: Timestamp(r.created_at),
            expires_at: Timestamp(r.expires_at),
            parent_hash: r.parent_hash.as_deref().map(hash_of).transpose()?,
            used_at: r.used_at.map(Timestamp),
            retried_at: r.retried_at.map(Timestamp),
            revoked_at: r.revoked_at.map(Timestamp),
            grant_id: r.grant_id,
            client_id: r.client_id,
            user_id: r.user_id,
        })
    }
}

const INSERT_GRANT: &str =
    "INSERT INTO oauth_grants (id, workspace, client_id, user_id, grant_type, scopes, created_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)";

/// Inserts many tokens with one statement.
/// Placeholders for every column of `CLIENT_COLUMNS`, in order.
const CLIENT_VALUES: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// Binds a client's fields in `CLIENT_COLUMNS` order.
macro_rules! bind_client {
    ($q:expr, $c:expr) => {{
        let c: &ClientRecord = $c;
        $q.bind(&c.id)
            .bind(&c.workspace)
            .bind(&c.name)
            .bind(if c.confidential { "confidential" } else { "public" })
            .bind(c.secret_hash.map(|h| h.0.to_vec()))
            .bind(&c.secret_last4)
            .bind(c.previous_secret_hash.map(|h| h.0.to_vec()))
            .bind(c.previous_secret_expires_at.map(|t| t.0))
            .bind(json_list(c.redirect_uris.clone()))
            .bind(json_list(c.scopes.clone()))
            .bind(&c.token_format)
            .bind(c.created_at.0)
            .bind(&c.created_by)
            .bind(c.disabled_at.map(|t| t.0))
            .bind(c.environment.as_str())
            .bind(&c.app)
    }};
}

macro_rules! insert_tokens_multi {
    ($tx:ident, $tokens:expr) => {{
        let tokens: Vec<&TokenRecord> = $tokens;
        for chunk in tokens.chunks(500) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO oauth_tokens (token_hash, kind, grant_id, client_id, user_id, scopes, created_at, expires_at, parent_hash) ",
            );
            qb.push_values(chunk, |mut b, t| {
                b.push_bind(t.hash.0.to_vec())
                    .push_bind(t.kind.as_str())
                    .push_bind(t.grant_id.clone())
                    .push_bind(t.client_id.clone())
                    .push_bind(t.user_id.clone())
                    .push_bind(json_list(t.scopes.clone()))
                    .push_bind(t.created_at.0)
                    .push_bind(t.expires_at.0)
                    .push_bind(t.parent_hash.map(|h| h.0.to_vec()));
            });
            qb.build().execute(&mut *$tx).await?;
        }
    }};
}

macro_rules! insert_grant {
    ($tx:ident, $g:expr) => {
        sqlx::query(INSERT_GRANT)
            .bind(&$g.id)
            .bind(&$g.workspace)
            .bind(&$g.client_id)
            .bind(&$g.user_id)
            .bind(&$g.grant_type)
            .bind(json_list($g.scopes.clone()))
            .bind($g.created_at.0)
            .execute(&mut *$tx)
            .await?;
    };
}

/// Revokes the tokens matched by `$where` (with `$1` bound to `$arg`) and puts their hashes on the change feed.
macro_rules! revoke_tokens_where {
    ($tx:ident, $where:expr, $arg:expr, $at:expr) => {{
        let select = format!("SELECT token_hash FROM oauth_tokens WHERE {} AND revoked_at IS NULL", $where);
        let update = format!("UPDATE oauth_tokens SET revoked_at = $2 WHERE {} AND revoked_at IS NULL", $where);
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(&select).bind($arg).fetch_all(&mut *$tx).await?;
        sqlx::query(&update).bind($arg).bind($at.0).execute(&mut *$tx).await?;
        for h in &hashes {
            sqlx::query(INSERT_CHANGE).bind(h).bind($at.0).execute(&mut *$tx).await?;
        }
        hashes.len()
    }};
}

/// Revokes a grant and its tokens inside `$tx`; evaluates to whether the grant was live.
macro_rules! revoke_grant_in {
    ($tx:ident, $grant_id:expr, $at:expr) => {{
        let n = sqlx::query("UPDATE oauth_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind($grant_id)
            .bind($at.0)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        revoke_tokens_where!($tx, "grant_id = $1", $grant_id, $at);
        n > 0
    }};
}

/// Runs an `UPDATE … WHERE id = $1 … RETURNING` of one client (`$binds` adds `$2…`) in a write
/// transaction; when a row changed, records `$audit` and feeds the client's change, so every node
/// drops its cached copy.
macro_rules! update_client_row {
    ($self:ident, $sql:expr, $id:expr, $audit:expr, |$q:ident| $binds:expr) => {{
        let audit: &AuditEntry = $audit;
        let row: Option<ClientRow> = in_tx!($self, tx => {
            let $q = sqlx::query_as::<_, ClientRow>($sql).bind($id);
            let row: Option<ClientRow> = $binds.fetch_optional(&mut *tx).await?;
            if row.is_some() {
                record!(tx, audit);
                sqlx::query(INSERT_CHANGE).bind(&client_feed_hash($id).0[..]).bind(audit.at.0).execute(&mut *tx).await?;
            }
            row
        });
        row.map(ClientRecord::try_from).transpose()
    }};
}

#[async_trait]
impl OAuthStore for SqlStore {
    async fn insert_client(&self, c: &ClientRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES {CLIENT_VALUES}");
        in_tx!(self, tx => {
            bind_client!(sqlx::query(&sql), c).execute(&mut *tx).await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn upsert_client(&self, c: &ClientRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        // An existing row becomes the record, except for its identity and creation facts.
        let sql = format!(
            "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES {CLIENT_VALUES} \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, secret_hash = excluded.secret_hash, \
             secret_last4 = excluded.secret_last4, previous_secret_hash = excluded.previous_secret_hash, \
             previous_secret_expires_at = excluded.previous_secret_expires_at, redirect_uris = excluded.redirect_uris, \
             scopes = excluded.scopes, token_format = excluded.token_format, disabled_at = excluded.disabled_at, \
             environment = excluded.environment, app = excluded.app"
        );
        in_tx!(self, tx => {
            bind_client!(sqlx::query(&sql), c).execute(&mut *tx).await?;
            record!(tx, audit);
            sqlx::query(INSERT_CHANGE).bind(&client_feed_hash(&c.id).0[..]).bind(audit.at.0).execute(&mut *tx).await?;
        });
        Ok(())
    }

    async fn client_by_id(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1");
        let row: Option<ClientRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        row.map(ClientRecord::try_from).transpose()
    }

    async fn list_clients(
        &self,
        workspace: &str,
        environment: Option<Environment>,
        page: &PageRequest,
    ) -> Result<Page<ClientRecord>, StoreError> {
        let limit = i64::from(page.limit.clamp(1, 100)) + 1;
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE workspace = $1 AND ($2 IS NULL OR id < $2) \
             AND ($4 IS NULL OR environment = $4) ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<ClientRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql)
                .bind(workspace)
                .bind(page.starting_after.as_deref())
                .bind(limit)
                .bind(environment.map(Environment::as_str))
                .fetch_all(p)
                .await?
        });
        page_of(rows, limit)
    }

    async fn rotate_client_secret(
        &self,
        id: &str,
        new_hash: &KeyHash,
        new_last4: &str,
        previous_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!(
            "UPDATE oauth_clients SET previous_secret_hash = secret_hash, previous_secret_expires_at = $4, \
             secret_hash = $2, secret_last4 = $3 WHERE id = $1 AND kind = 'confidential' AND disabled_at IS NULL \
             RETURNING {CLIENT_COLUMNS}"
        );
        update_client_row!(self, &sql, id, audit, |q| q
            .bind(&new_hash.0[..])
            .bind(new_last4)
            .bind(previous_expires_at.0))
    }

    async fn update_client(
        &self,
        id: &str,
        edit: &ClientEdit,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!(
            "UPDATE oauth_clients SET name = $2, redirect_uris = $3, scopes = $4 WHERE id = $1 AND disabled_at IS NULL \
             RETURNING {CLIENT_COLUMNS}"
        );
        update_client_row!(self, &sql, id, audit, |q| q
            .bind(&edit.name)
            .bind(json_list(edit.redirect_uris.clone()))
            .bind(json_list(edit.scopes.clone())))
    }

    async fn disable_client(
        &self,
        id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!(
            "UPDATE oauth_clients SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1 RETURNING {CLIENT_COLUMNS}"
        );
        let row: Option<ClientRow> = in_tx!(self, tx => {
            let row: Option<ClientRow> = sqlx::query_as(&sql).bind(id).bind(at.0).fetch_optional(&mut *tx).await?;
            if row.is_some() {
                sqlx::query("UPDATE oauth_grants SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at.0)
                    .execute(&mut *tx)
                    .await?;
                revoke_tokens_where!(tx, "client_id = $1", id, at);
                sqlx::query("DELETE FROM oauth_consents WHERE client_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query(INSERT_CHANGE).bind(&client_feed_hash(id).0[..]).bind(at.0).execute(&mut *tx).await?;
                record!(tx, audit);
            }
            row
        });
        row.map(ClientRecord::try_from).transpose()
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let sql = "SELECT scopes FROM oauth_consents WHERE user_id = $1 AND client_id = $2";
        let row: Option<String> =
            on_db!(self, read, p => sqlx::query_scalar(sql).bind(user_id).bind(client_id).fetch_optional(p).await?);
        row.map(|s| strings(&s, "consent scopes")).transpose()
    }

    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO oauth_consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at";
        on_db!(self, write, p => {
            sqlx::query(sql).bind(user_id).bind(client_id).bind(json_list(scopes.to_vec())).bind(at.0).execute(p).await?;
        });
        Ok(())
    }

    async fn withdraw_consent(
        &self,
        user_id: &str,
        client_id: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let grants_sql = "SELECT id FROM oauth_grants WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL";
        let found = in_tx!(self, tx => {
            let deleted = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let grants: Vec<String> = sqlx::query_scalar(grants_sql).bind(user_id).bind(client_id).fetch_all(&mut *tx).await?;
            for g in &grants {
                let _ = revoke_grant_in!(tx, g, at);
            }
            let found = deleted > 0 || !grants.is_empty();
            if found {
                record!(tx, audit);
            }
            found
        });
        Ok(found)
    }

    async fn consents_of_client(&self, client_id: &str) -> Result<Vec<UserConsent>, StoreError> {
        let sql = "SELECT user_id, scopes, granted_at FROM oauth_consents WHERE client_id = $1 ORDER BY granted_at DESC, user_id LIMIT 500";
        let rows: Vec<(String, String, i64)> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(client_id).fetch_all(p).await?);
        rows.into_iter()
            .map(|(user_id, scopes, at)| {
                Ok(UserConsent { user_id, scopes: strings(&scopes, "consent scopes")?, granted_at: Timestamp(at) })
            })
            .collect()
    }

    async fn consents_of_user(&self, user_id: &str) -> Result<Vec<ConsentRecord>, StoreError> {
        let sql = "SELECT client_id, scopes, granted_at FROM oauth_consents WHERE user_id = $1 ORDER BY granted_at DESC, client_id LIMIT 500";
        let rows: Vec<(String, String, i64)> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(user_id).fetch_all(p).await?);
        rows.into_iter()
            .map(|(client_id, scopes, at)| {
                Ok(ConsentRecord { client_id, scopes: strings(&scopes, "consent scopes")?, granted_at: Timestamp(at) })
            })
            .collect()
    }

    async fn grants_of_user(&self, user_id: &str) -> Result<Vec<GrantRecord>, StoreError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id DESC LIMIT 500");
        let rows: Vec<GrantRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await?);
        rows.into_iter().map(GrantRecord::try_from).collect()
    }

    async fn grant_by_id(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let sql = format!("SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = $1");
        let row: Option<GrantRow> = on_db!(self, read, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        row.map(GrantRecord::try_from).transpose()
    }

    async fn insert_code(&self, c: &CodeRecord) -> Result<(), StoreError> {
        let sql = "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, redirect_given, scopes, code_challenge, \
                   created_at, expires_at, used_at, grant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL)";
        on_db!(self, write, p => {
            sqlx::query(sql)
                .bind(&c.code_hash.0[..])
                .bind(&c.client_id)
                .bind(&c.user_id)
                .bind(&c.redirect_uri)
                .bind(if c.redirect_given { "yes" } else { "no" })
                .bind(json_list(c.scopes.clone()))
                .bind(&c.code_challenge)
                .bind(c.created_at.0)
                .bind(c.expires_at.0)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn code_by_hash(&self, hash: &KeyHash) -> Result<Option<CodeRecord>, StoreError> {
        let sql =
            "SELECT code_hash, client_id, user_id, redirect_uri, redirect_given, scopes, code_challenge, created_at, \
                   expires_at, used_at, grant_id FROM oauth_codes WHERE code_hash = $1";
        let row: Option<CodeRow> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(&hash.0[..]).fetch_optional(p).await?);
        row.map(CodeRecord::try_from).transpose()
    }

    async fn burn_code(&self, hash: &KeyHash, at: Timestamp) -> Result<(), StoreError> {
        let sql = "UPDATE oauth_codes SET used_at = COALESCE(used_at, $2) WHERE code_hash = $1";
        on_db!(self, write, p => { sqlx::query(sql).bind(&hash.0[..]).bind(at.0).execute(p).await?; });
        Ok(())
    }

    async fn redeem_code(
        &self,
        hash: &KeyHash,
        now: Timestamp,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
        audit: &AuditEntry,
        replay_audit: &AuditEntry,
    ) -> Result<CodeOutcome, StoreError> {
        let spend = "UPDATE oauth_codes SET used_at = $2, grant_id = $3 WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let look = "SELECT used_at, grant_id FROM oauth_codes WHERE code_hash = $1";
        let outcome = in_tx!(self, tx => {
            let n = sqlx::query(spend).bind(&hash.0[..]).bind(now.0).bind(&grant.id).execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                insert_grant!(tx, grant);
                insert_tokens_multi!(tx, tokens.iter().collect());
                record!(tx, audit);
                CodeOutcome::Redeemed
            } else {
                let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(look).bind(&hash.0[..]).fetch_optional(&mut *tx).await?;
                match row {
                    Some((Some(_), grant_id)) => {
                        if let Some(g) = &grant_id {
                            if revoke_grant_in!(tx, g, now) {
                                record!(tx, replay_audit);
                            }
                        }
                        CodeOutcome::Replayed { grant_id }
                    }
                    _ => CodeOutcome::Invalid,
                }
            }
        });
        Ok(outcome)
    }

    async fn insert_grants(&self, items: &[NewGrant]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        in_tx!(self, tx => {
            for chunk in items.chunks(500) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO oauth_grants (id, workspace, client_id, user_id, grant_type, scopes, created_at) ",
                );
                qb.push_values(chunk, |mut b, i| {
                    let g = &i.grant;
                    b.push_bind(g.id.clone())
                        .push_bind(g.workspace.clone())
                        .push_bind(g.client_id.clone())
                        .push_bind(g.user_id.clone())
                        .push_bind(g.grant_type.clone())
                        .push_bind(json_list(g.scopes.clone()))
                        .push_bind(g.created_at.0);
                });
                qb.build().execute(&mut *tx).await?;
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_log (id, workspace, environment, at, actor, action, target_type, target_id, request_id, ip, details) ",
                );
                qb.push_values(chunk, |mut b, i| {
                    let a = &i.audit;
                    b.push_bind(a.id.clone())
                        .push_bind(a.workspace.clone())
                        .push_bind(a.environment.map(|e| e.as_str()))
                        .push_bind(a.at.0)
                        .push_bind(a.actor.clone())
                        .push_bind(a.action.clone())
                        .push_bind(a.target_type.clone())
                        .push_bind(a.target_id.clone())
                        .push_bind(a.request_id.clone())
                        .push_bind(a.ip.clone())
                        .push_bind(a.details.to_string());
                });
                qb.build().execute(&mut *tx).await?;
            }
            insert_tokens_multi!(tx, items.iter().flat_map(|i| i.tokens.iter()).collect());
        });
        Ok(())
    }

    async fn token_by_hash(&self, hash: &KeyHash) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE token_hash = $1");
        let row: Option<TokenRow> =
            on_db!(self, read, p => sqlx::query_as(&sql).bind(&hash.0[..]).fetch_optional(p).await?);
        row.map(TokenRecord::try_from).transpose()
    }

    async fn refresh_many(&self, items: &[RefreshRequest]) -> Result<Vec<RefreshOutcome>, StoreError> {
        if items.is_empty() {
            return Ok(vec![]);
        }
        let spend =
            "UPDATE oauth_tokens SET used_at = $2 WHERE token_hash = $1 AND kind = 'refresh' AND client_id = $3 \
                     AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2";
        let look = format!("SELECT {TOKEN_COLUMNS} FROM oauth_tokens WHERE token_hash = $1");
        let successor_unused = "SELECT COUNT(*) FROM oauth_tokens WHERE parent_hash = $1 AND kind = 'refresh' \
                                AND used_at IS NULL AND revoked_at IS NULL";
        let outcomes = in_tx!(self, tx => {
            let mut outcomes = Vec::with_capacity(items.len());
            // New pairs of rotations are inserted together at the end; a later item of the same batch
            // never looks at them (it can only present a token the client already held).
            let mut fresh: Vec<&TokenRecord> = Vec::new();
            for it in items {
                let (hash, now) = (&it.hash, it.now);
                let n = sqlx::query(spend).bind(&hash.0[..]).bind(now.0).bind(&it.client_id).execute(&mut *tx).await?.rows_affected();
                let outcome = if n == 1 {
                    fresh.extend(it.new_pair.iter());
                    RefreshOutcome::Rotated
                } else {
                    let row: Option<TokenRow> = sqlx::query_as(&look).bind(&hash.0[..]).fetch_optional(&mut *tx).await?;
                    match row {
                        Some(r) if r.kind == "refresh" && r.client_id == it.client_id && r.revoked_at.is_none() && r.expires_at > now.0 => {
                            let used_at = r.used_at.unwrap_or(now.0);
                            // Successors still waiting in `fresh` are unused by definition.
                            let pending = fresh.iter().any(|t| t.parent_hash.as_ref() == Some(hash));
                            let unused: i64 = sqlx::query_scalar(successor_unused).bind(&hash.0[..]).fetch_one(&mut *tx).await?;
                            if now.0 - used_at < it.race_window_ms {
                                RefreshOutcome::Concurrent
                            } else if r.retried_at.is_none() && (unused > 0 || pending) {
                                sqlx::query("UPDATE oauth_tokens SET retried_at = $2 WHERE token_hash = $1")
                                    .bind(&hash.0[..])
                                    .bind(now.0)
                                    .execute(&mut *tx)
                                    .await?;
                                revoke_tokens_where!(tx, "parent_hash = $1", &hash.0[..], now);
                                fresh.retain(|t| t.parent_hash.as_ref() != Some(hash));
                                fresh.extend(it.new_pair.iter());
                                RefreshOutcome::Retried
                            } else {
                                let _ = revoke_grant_in!(tx, &r.grant_id, now);
                                fresh.retain(|t| t.grant_id != r.grant_id);
                                record!(tx, &it.reuse_audit);
                                RefreshOutcome::Reused { grant_id: r.grant_id }
                            }
                        }
                        _ => RefreshOutcome::Invalid,
                    }
                };
                outcomes.push(outcome);
            }
            insert_tokens_multi!(tx, fresh);
            outcomes
        });
        Ok(outcomes)
    }

    async fn revoke_token(&self, hash: &KeyHash, at: Timestamp, audit: &AuditEntry) -> Result<bool, StoreError> {
        let n = in_tx!(self, tx => {
            let n = revoke_tokens_where!(tx, "token_hash = $1", &hash.0[..], at);
            if n > 0 {
                record!(tx, audit);
            }
            n
        });
        Ok(n > 0)
    }

    async fn revoke_grant(&self, grant_id: &str, at: Timestamp, audit: &AuditEntry) -> Result<bool, StoreError> {
        let live = in_tx!(self, tx => {
            let live = revoke_grant_in!(tx, grant_id, at);
            if live {
                record!(tx, audit);
            }
            live
        });
        Ok(live)
    }

    async fn delete_expired_oauth(&self, before: Timestamp) -> Result<u64, StoreError> {
        let n = on_db!(self, write, p => {
            let a = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1").bind(before.0).execute(p).await?.rows_affected();
            let b = sqlx::query("DELETE FROM oauth_tokens WHERE expires_at < $1").bind(before.0).execute(p).await?.rows_affected();
            a + b
        });
        Ok(n)
    }
}
