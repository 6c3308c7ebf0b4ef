//! The SQL implementation of `WebhookStore`, on both backends (see `sql.rs` for the macros and the outbox).

use async_trait::async_trait;
use gatehouse_core::{Environment, Timestamp};

use super::{event_body, event_of, json_list, page_of, Db, SqlStore, FAN_OUT, INSERT_AUDIT, INSERT_EVENT};
use crate::webhooks::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, DeliveryRecord, EndpointDelivery, EndpointRecord, EventRecord,
    FinishedAttempt, SignatureLast, WebhookStore,
};
use crate::{AuditEntry, Page, PageRequest, StoreError};

#[derive(Clone, sqlx::FromRow)]
struct EndpointRow {
    id: String,
    workspace: String,
    environment: String,
    url: String,
    event_types: String,
    description: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    standard_headers: String,
    created_at: i64,
    created_by: String,
    disabled_at: Option<i64>,
    disabled_reason: Option<String>,
    failing_since: Option<i64>,
    signature_last: String,
}

const ENDPOINT_COLUMNS: &str = "id, workspace, environment, url, event_types, description, secret, previous_secret, \
     previous_secret_expires_at, standard_headers, created_at, created_by, disabled_at, disabled_reason, failing_since, \
     signature_last";

impl TryFrom<EndpointRow> for EndpointRecord {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Self, StoreError> {
        let corrupt = |w: &str| StoreError::Corrupt(format!("webhook endpoint {}: {w}", r.id));
        Ok(EndpointRecord {
            environment: Environment::parse(&r.environment).ok_or_else(|| corrupt("environment"))?,
            event_types: serde_json::from_str(&r.event_types).map_err(|_| corrupt("event_types"))?,
            previous_secret_expires_at: r.previous_secret_expires_at.map(Timestamp),
            standard_headers: r.standard_headers == "yes",
            created_at: Timestamp(r.created_at),
            disabled_at: r.disabled_at.map(Timestamp),
            failing_since: r.failing_since.map(Timestamp),
            signature_last: SignatureLast::parse(&r.signature_last).ok_or_else(|| corrupt("signature_last"))?,
            id: r.id,
            workspace: r.workspace,
            url: r.url,
            description: r.description,
            secret: r.secret,
            previous_secret: r.previous_secret,
            created_by: r.created_by,
            disabled_reason: r.disabled_reason,
        })
    }
}

#[derive(Clone, sqlx::FromRow)]
struct EventRow {
    id: String,
    workspace: String,
    environment: String,
    #[sqlx(rename = "type")]
    event_type: String,
    created_at: i64,
    body: String,
}

impl From<EventRow> for EventRecord {
    fn from(r: EventRow) -> Self {
        EventRecord {
            id: r.id,
            workspace: r.workspace,
            environment: r.environment,
            event_type: r.event_type,
            created_at: Timestamp(r.created_at),
            body: r.body,
        }
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn insert_endpoint(&self, e: &EndpointRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)");
        in_tx!(self, tx => {
            sqlx::query(&sql)
                .bind(&e.id)
                .bind(&e.workspace)
                .bind(e.environment.as_str())
                .bind(&e.url)
                .bind(json_list(e.event_types.clone()))
                .bind(&e.description)
                .bind(&e.secret)
                .bind(&e.previous_secret)
                .bind(e.previous_secret_expires_at.map(|t| t.0))
                .bind(if e.standard_headers { "yes" } else { "no" })
                .bind(e.created_at.0)
                .bind(&e.created_by)
                .bind(e.disabled_at.map(|t| t.0))
                .bind(&e.disabled_reason)
                .bind(e.failing_since.map(|t| t.0))
                .bind(e.signature_last.as_str())
                .execute(&mut *tx)
                .await?;
            record!(tx, audit);
        });
        Ok(())
    }

    async fn endpoint_by_id(&self, workspace: &str, id: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace = $1 AND id = $2");
        let row: Option<EndpointRow> =
            on_db!(self, read, p => sqlx::query_as(&sql).bind(workspace).bind(id).fetch_optional(p).await?);
        row.map(EndpointRecord::try_from).transpose()
    }

    async fn list_endpoints(
        &self,
        workspace: &str,
        environment: Environment,
        page: &PageRequest,
    ) -> Result<Page<EndpointRecord>, StoreError> {
        let limit = i64::from(page.limit.clamp(1, 100)) + 1;
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace = $1 AND environment = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows: Vec<EndpointRow> = on_db!(self, read, p => {
            sqlx::query_as(&sql).bind(workspace).bind(environment.as_str()).bind(page.starting_after.as_deref()).bind(limit).fetch_all(p).await?
        });
        page_of(rows, limit)
    }

    async fn roll_endpoint_secret(
        &self,
        workspace: &str,
        id: &str,
        secret: &str,
        previous_expires_at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $4, secret = $3, \
             signature_last = 'previous' WHERE workspace = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
        );
        let row: Option<EndpointRow> = in_tx!(self, tx => {
            let row: Option<EndpointRow> = sqlx::query_as(&sql).bind(workspace).bind(id).bind(secret).bind(previous_expires_at.0).fetch_optional(&mut *tx).await?;
            if row.is_some() {
                record!(tx, audit);
            }
            row
        });
        row.map(EndpointRecord::try_from).transpose()
    }

    async fn set_endpoint_disabled(
        &self,
        workspace: &str,
        id: &str,
        at: Timestamp,
        reason: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        let sql = format!(
            "UPDATE webhook_endpoints SET disabled_at = $3, disabled_reason = $4, failing_since = NULL \
             WHERE workspace = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
        );
        let row: Option<EndpointRow> = in_tx!(self, tx => {
            let row: Option<EndpointRow> = sqlx::query_as(&sql)
                .bind(workspace)
                .bind(id)
                .bind(reason.map(|_| at.0))
                .bind(reason)
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_some() {
                record!(tx, audit);
            }
            row
        });
        row.map(EndpointRecord::try_from).transpose()
    }

    async fn list_events(
        &self,
        workspace: &str,
        environment: Environment,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>, StoreError> {
        let limit = i64::from(page.limit.clamp(1, 100)) + 1;
        let sql = "SELECT id, workspace, environment, type, created_at, body FROM webhook_events \
                   WHERE workspace = $1 AND environment = $2 AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4";
        let rows: Vec<EventRow> = on_db!(self, read, p => {
            sqlx::query_as(sql).bind(workspace).bind(environment.as_str()).bind(page.starting_after.as_deref()).bind(limit).fetch_all(p).await?
        });
        page_of(rows, limit)
    }

    async fn event_by_id(&self, workspace: &str, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let sql = "SELECT id, workspace, environment, type, created_at, body FROM webhook_events WHERE workspace = $1 AND id = $2";
        let row: Option<EventRow> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(workspace).bind(id).fetch_optional(p).await?);
        Ok(row.map(Into::into))
    }

    async fn deliveries_of(&self, event_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = "SELECT event_id, endpoint_id, status, attempts, next_attempt_at, delivered_at FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint_id";
        let rows: Vec<(String, String, String, i64, i64, Option<i64>)> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(event_id).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(event_id, endpoint_id, status, attempts, next, delivered)| DeliveryRecord {
                event_id,
                endpoint_id,
                status,
                attempts,
                next_attempt_at: Timestamp(next),
                delivered_at: delivered.map(Timestamp),
            })
            .collect())
    }

    async fn attempts_of(&self, event_id: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let sql = "SELECT id, event_id, endpoint_id, at, status_code, latency_ms, error, response_excerpt FROM webhook_attempts WHERE event_id = $1 ORDER BY at, id";
        let rows: Vec<(String, String, String, i64, Option<i64>, i64, Option<String>, Option<String>)> =
            on_db!(self, read, p => sqlx::query_as(sql).bind(event_id).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(id, event_id, endpoint_id, at, status_code, latency_ms, error, response_excerpt)| AttemptRecord {
                id,
                event_id,
                endpoint_id,
                at: Timestamp(at),
                status_code,
                latency_ms,
                error,
                response_excerpt,
            })
            .collect())
    }

    async fn insert_test_event(
        &self,
        workspace: &str,
        endpoint_id: &str,
        test_type: &str,
        audit: &AuditEntry,
    ) -> Result<Option<String>, StoreError> {
        let (event_id, env, _) = event_of(audit);
        let mut event = audit.clone();
        event.action = test_type.to_owned();
        let body = event_body(&event, &event_id, &env);
        let found = "SELECT id FROM webhook_endpoints WHERE workspace = $1 AND id = $2 AND disabled_at IS NULL";
        let deliver = "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at) \
                       VALUES ($1, $2, 'pending', 0, $3)";
        let written: Option<String> = in_tx!(self, tx => {
            let row: Option<(String,)> =
                sqlx::query_as(found).bind(workspace).bind(endpoint_id).fetch_optional(&mut *tx).await?;
            if row.is_some() {
                record!(tx, audit);
                sqlx::query(INSERT_EVENT)
                    .bind(&event_id)
                    .bind(workspace)
                    .bind(&env)
                    .bind(test_type)
                    .bind(audit.at.0)
                    .bind(&body)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(deliver).bind(&event_id).bind(endpoint_id).bind(audit.at.0).execute(&mut *tx).await?;
                Some(event_id.clone())
            } else {
                None
            }
        });
        Ok(written)
    }

    async fn deliveries_to(
        &self,
        endpoint_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<EndpointDelivery>, StoreError> {
        let limit = i64::from(limit.clamp(1, 100));
        let sql = format!(
            "SELECT d.event_id, d.status, d.attempts, d.next_attempt_at, d.delivered_at, ev.type, ev.created_at \
             FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id \
             WHERE d.endpoint_id = $1{} ORDER BY d.event_id DESC LIMIT $2",
            if before.is_some() { " AND d.event_id < $3" } else { "" }
        );
        type Row = (String, String, i64, i64, Option<i64>, String, i64);
        let rows: Vec<Row> = on_db!(self, read, p => {
            let q = sqlx::query_as(&sql).bind(endpoint_id).bind(limit);
            match before {
                Some(b) => q.bind(b).fetch_all(p).await?,
                None => q.fetch_all(p).await?,
            }
        });
        let (Some(oldest), Some(newest)) = (rows.last().map(|r| r.0.clone()), rows.first().map(|r| r.0.clone())) else {
            return Ok(vec![]);
        };
        let sql = "SELECT id, event_id, endpoint_id, at, status_code, latency_ms, error, response_excerpt \
                   FROM webhook_attempts WHERE endpoint_id = $1 AND event_id >= $2 AND event_id <= $3 ORDER BY at, id";
        let attempts: Vec<(String, String, String, i64, Option<i64>, i64, Option<String>, Option<String>)> = on_db!(self, read, p => sqlx::query_as(sql).bind(endpoint_id).bind(&oldest).bind(&newest).fetch_all(p).await?);
        let mut out: Vec<EndpointDelivery> = rows
            .into_iter()
            .map(|(event_id, status, n, next, delivered, event_type, created)| EndpointDelivery {
                delivery: DeliveryRecord {
                    event_id,
                    endpoint_id: endpoint_id.to_owned(),
                    status,
                    attempts: n,
                    next_attempt_at: Timestamp(next),
                    delivered_at: delivered.map(Timestamp),
                },
                event_type,
                event_created_at: Timestamp(created),
                attempts: vec![],
            })
            .collect();
        for (id, event_id, endpoint_id, at, status_code, latency_ms, error, response_excerpt) in attempts {
            if let Some(d) = out.iter_mut().find(|d| d.delivery.event_id == event_id) {
                d.attempts.push(AttemptRecord {
                    id,
                    event_id,
                    endpoint_id,
                    at: Timestamp(at),
                    status_code,
                    latency_ms,
                    error,
                    response_excerpt,
                });
            }
        }
        Ok(out)
    }

    async fn resend_event(&self, workspace: &str, id: &str, now: Timestamp) -> Result<u64, StoreError> {
        let sql = "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at) \
                   SELECT ev.id, ep.id, 'pending', 0, $3 FROM webhook_events ev JOIN webhook_endpoints ep \
                   ON ep.workspace = ev.workspace AND ep.environment = ev.environment AND ep.disabled_at IS NULL \
                   AND (ep.event_types LIKE '%\"' || ev.type || '\"%' OR ep.event_types LIKE '%\"*\"%') \
                   WHERE ev.workspace = $1 AND ev.id = $2 \
                   ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending', attempts = 0, \
                   next_attempt_at = excluded.next_attempt_at, claimed_until = NULL";
        let n = on_db!(self, write, p => sqlx::query(sql).bind(workspace).bind(id).bind(now.0).execute(p).await?.rows_affected());
        Ok(n)
    }

    async fn resend_delivery(
        &self,
        workspace: &str,
        endpoint_id: &str,
        event_id: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $3, claimed_until = NULL \
                   WHERE event_id = $1 AND endpoint_id = $2 AND EXISTS (SELECT 1 FROM webhook_endpoints ep \
                   WHERE ep.id = $2 AND ep.workspace = $4 AND ep.disabled_at IS NULL)";
        let found = in_tx!(self, tx => {
            let n = sqlx::query(sql)
                .bind(event_id)
                .bind(endpoint_id)
                .bind(audit.at.0)
                .bind(workspace)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                record!(tx, audit);
            }
            n > 0
        });
        Ok(found)
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let due = "SELECT d.event_id, d.endpoint_id, d.attempts FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                   WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until < $1) \
                   AND e.disabled_at IS NULL ORDER BY d.next_attempt_at LIMIT $2";
        // Inside the write transaction (SQLite's single writer; PostgreSQL's advisory lock), the rows just
        // selected cannot be claimed by anyone else before the UPDATE below: no attempt is sent twice.
        let claimed: Vec<(EventRow, EndpointRow, i64)> = in_tx!(self, tx => {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(due).bind(now.0).bind(limit).fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                vec![]
            } else {
                let mut qb = sqlx::QueryBuilder::new("UPDATE webhook_deliveries SET claimed_until = ");
                qb.push_bind(now.0 + lease_ms).push(" WHERE (event_id, endpoint_id) IN (");
                let mut sep = qb.separated(", ");
                for (ev, ep, _) in &rows {
                    sep.push("(").push_bind_unseparated(ev.clone()).push_unseparated(", ").push_bind_unseparated(ep.clone()).push_unseparated(")");
                }
                qb.push(")");
                qb.build().execute(&mut *tx).await?;
                let mut qb = sqlx::QueryBuilder::new("SELECT id, workspace, environment, type, created_at, body FROM webhook_events WHERE id IN (");
                let mut sep = qb.separated(", ");
                for (ev, _, _) in &rows {
                    sep.push_bind(ev.clone());
                }
                qb.push(")");
                let events: Vec<EventRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
                let mut qb = sqlx::QueryBuilder::new(format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id IN ("));
                let mut sep = qb.separated(", ");
                let mut ids: Vec<&String> = rows.iter().map(|r| &r.1).collect();
                ids.sort();
                ids.dedup();
                for ep in ids {
                    sep.push_bind(ep.clone());
                }
                qb.push(")");
                let endpoints: Vec<EndpointRow> = qb.build_query_as().fetch_all(&mut *tx).await?;
                let events: std::collections::HashMap<String, EventRow> = events.into_iter().map(|e| (e.id.clone(), e)).collect();
                let mut out = Vec::with_capacity(rows.len());
                for (ev, ep, attempts) in rows {
                    let Some(e) = events.get(&ev).cloned() else { continue };
                    let Some(endpoint) = endpoints.iter().find(|x| x.id == ep) else { continue };
                    out.push((e, endpoint.clone(), attempts));
                }
                out
            }
        });
        claimed
            .into_iter()
            .map(|(ev, ep, attempts)| Ok(ClaimedDelivery { event: ev.into(), endpoint: ep.try_into()?, attempts }))
            .collect()
    }

    async fn finish_attempts(&self, items: &[FinishedAttempt], disable_after_ms: i64) -> Result<(), StoreError> {
        let log = "INSERT INTO webhook_attempts (id, event_id, endpoint_id, at, status_code, latency_ms, error, response_excerpt) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        in_tx!(self, tx => {
          for FinishedAttempt { refused_order, attempt: a, outcome, accepted_order, disabled_audit } in items {
            for a in refused_order.iter().chain(std::iter::once(a)) {
                sqlx::query(log)
                    .bind(&a.id)
                    .bind(&a.event_id)
                    .bind(&a.endpoint_id)
                    .bind(a.at.0)
                    .bind(a.status_code)
                    .bind(a.latency_ms)
                    .bind(&a.error)
                    .bind(&a.response_excerpt)
                    .execute(&mut *tx)
                    .await?;
            }
            if let (AttemptOutcome::Delivered, Some((last, window_end))) = (outcome, accepted_order) {
                // Only for the window it was learnt in: a roll since then opened another window.
                sqlx::query("UPDATE webhook_endpoints SET signature_last = $2 WHERE id = $1 AND previous_secret_expires_at = $3 AND signature_last <> $2")
                    .bind(&a.endpoint_id).bind(last.as_str()).bind(window_end.0).execute(&mut *tx).await?;
            }
            match outcome {
                AttemptOutcome::Delivered => {
                    sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $3, claimed_until = NULL WHERE event_id = $1 AND endpoint_id = $2")
                        .bind(&a.event_id).bind(&a.endpoint_id).bind(a.at.0).execute(&mut *tx).await?;
                    sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1").bind(&a.endpoint_id).execute(&mut *tx).await?;
                }
                AttemptOutcome::RetryAt(_) | AttemptOutcome::Failed => {
                    let (status, next) = match outcome {
                        AttemptOutcome::RetryAt(t) => ("pending", t.0),
                        _ => ("failed", a.at.0),
                    };
                    sqlx::query("UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, next_attempt_at = $4, claimed_until = NULL WHERE event_id = $1 AND endpoint_id = $2")
                        .bind(&a.event_id).bind(&a.endpoint_id).bind(status).bind(next).execute(&mut *tx).await?;
                    sqlx::query("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) WHERE id = $1")
                        .bind(&a.endpoint_id).bind(a.at.0).execute(&mut *tx).await?;
                    let disabled = sqlx::query(
                        "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = 'failing for too long', failing_since = NULL \
                         WHERE id = $1 AND disabled_at IS NULL AND failing_since <= $3",
                    )
                    .bind(&a.endpoint_id)
                    .bind(a.at.0)
                    .bind(a.at.0 - disable_after_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if disabled > 0 {
                        record!(tx, disabled_audit);
                    }
                }
            }
          }
        });
        Ok(())
    }

    async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        let n: i64 = on_db!(self, read, p => sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'").fetch_one(p).await?);
        Ok(n)
    }
}
