//! The SQL implementation of `UsageStore`, on both backends.
//!
//! A batch is folded in Rust into one row per (subject, bucket, app) for each table — the app's own
//! total row included — then written as multi-row additive upserts in one transaction. Folding first
//! is required (PostgreSQL refuses an `ON CONFLICT DO UPDATE` that touches a row twice in one
//! statement) and the rows go out in key order, so two nodes flushing overlapping rows on PostgreSQL
//! lock them in the same order and cannot deadlock.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gatehouse_core::Timestamp;

use super::{Db, SqlStore};
use crate::usage::{Resolution, UsageCounts, UsageDelta, UsagePoint, UsageStore, UsageSubject};
use crate::StoreError;

/// (cred_kind, cred_id, bucket, app): the primary key of both tables. The app's total has kind and id ''.
type RowKey = (&'static str, String, i64, String);

/// Rows per INSERT: 8 parameters each, well under SQLite's 32,766 and PostgreSQL's 65,535.
const CHUNK: usize = 500;

fn table(r: Resolution) -> &'static str {
    match r {
        Resolution::Minute => "usage_minute",
        Resolution::Hour => "usage_hour",
    }
}

fn fold(batch: &[UsageDelta], r: Resolution) -> BTreeMap<RowKey, UsageCounts> {
    let mut rows: BTreeMap<RowKey, UsageCounts> = BTreeMap::new();
    for d in batch {
        let bucket = r.floor(d.minute).0;
        rows.entry(("", String::new(), bucket, d.app.clone())).or_default().add(&d.counts);
        if let Some(c) = &d.credential {
            rows.entry((c.kind.as_str(), c.id.clone(), bucket, d.app.clone())).or_default().add(&d.counts);
        }
    }
    rows
}

fn upsert_sql(table: &str, rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO {table} (cred_kind, cred_id, bucket, app, allowed, unauthorized, forbidden, rate_limited) VALUES "
    );
    for n in 0..rows {
        let b = n * 8;
        if n > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8
        ));
    }
    sql.push_str(&format!(
        " ON CONFLICT (cred_kind, cred_id, bucket, app) DO UPDATE SET \
         allowed = {table}.allowed + excluded.allowed, unauthorized = {table}.unauthorized + excluded.unauthorized, \
         forbidden = {table}.forbidden + excluded.forbidden, rate_limited = {table}.rate_limited + excluded.rate_limited"
    ));
    sql
}

fn as_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counts_of(row: (i64, i64, i64, i64)) -> UsageCounts {
    let c = |n: i64| u64::try_from(n).unwrap_or(0);
    UsageCounts { allowed: c(row.0), unauthorized: c(row.1), forbidden: c(row.2), rate_limited: c(row.3) }
}

/// PostgreSQL's SUM of BIGINT is NUMERIC; both dialects read the cast back as a 64-bit integer.
const SUMS: &str = "CAST(SUM(allowed) AS BIGINT), CAST(SUM(unauthorized) AS BIGINT), \
                    CAST(SUM(forbidden) AS BIGINT), CAST(SUM(rate_limited) AS BIGINT)";

#[async_trait]
impl UsageStore for SqlStore {
    async fn add_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tables: Vec<(&'static str, Vec<(RowKey, UsageCounts)>)> = [Resolution::Minute, Resolution::Hour]
            .into_iter()
            .map(|r| (table(r), fold(batch, r).into_iter().collect()))
            .collect();
        on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            for (table, rows) in &tables {
                for chunk in rows.chunks(CHUNK) {
                    let sql = upsert_sql(table, chunk.len());
                    let mut q = sqlx::query(&sql);
                    for ((kind, id, bucket, app), c) in chunk {
                        q = q
                            .bind(*kind)
                            .bind(id)
                            .bind(*bucket)
                            .bind(app)
                            .bind(as_db(c.allowed))
                            .bind(as_db(c.unauthorized))
                            .bind(as_db(c.forbidden))
                            .bind(as_db(c.rate_limited));
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn usage_series(
        &self,
        subject: UsageSubject<'_>,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        let start = resolution.floor(from).0;
        let (kind, id, app) = match subject {
            UsageSubject::App(app) => ("", "", Some(app)),
            UsageSubject::Credential(c) => (c.kind.as_str(), c.id.as_str(), None),
        };
        let t = table(resolution);
        let app_filter = if app.is_some() { " AND app = $5" } else { "" };
        let sql = format!(
            "SELECT bucket, {SUMS} FROM {t} WHERE cred_kind = $1 AND cred_id = $2 AND bucket >= $3 AND bucket < $4\
             {app_filter} GROUP BY bucket ORDER BY bucket"
        );
        let rows: Vec<(i64, i64, i64, i64, i64)> = on_db!(self, read, p => {
            let mut q = sqlx::query_as(&sql).bind(kind).bind(id).bind(start).bind(to.0);
            if let Some(app) = app {
                q = q.bind(app);
            }
            q.fetch_all(p).await?
        });
        // Every bucket of the window, the empty ones with zeros, so a chart needs no gap logic.
        let mut out = Vec::new();
        let mut rows = rows.into_iter().peekable();
        let mut at = start;
        while at < to.0 {
            let counts = match rows.peek() {
                Some(r) if r.0 == at => {
                    let r = rows.next().expect("peeked");
                    counts_of((r.1, r.2, r.3, r.4))
                }
                _ => UsageCounts::default(),
            };
            out.push(UsagePoint { at: Timestamp(at), counts });
            at += resolution.millis();
        }
        Ok(out)
    }

    async fn usage_by_app(
        &self,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(String, UsageCounts)>, StoreError> {
        let t = table(resolution);
        let sql = format!(
            "SELECT app, {SUMS} FROM {t} WHERE cred_kind = '' AND cred_id = '' AND bucket >= $1 AND bucket < $2 \
             GROUP BY app ORDER BY app"
        );
        let start = resolution.floor(from).0;
        let rows: Vec<(String, i64, i64, i64, i64)> =
            on_db!(self, read, p => sqlx::query_as(&sql).bind(start).bind(to.0).fetch_all(p).await?);
        Ok(rows.into_iter().map(|r| (r.0, counts_of((r.1, r.2, r.3, r.4)))).collect())
    }

    async fn prune_usage(&self, minutes_before: Timestamp, hours_before: Timestamp) -> Result<u64, StoreError> {
        let n = on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            let a = sqlx::query("DELETE FROM usage_minute WHERE bucket < $1").bind(minutes_before.0).execute(&mut *tx).await?;
            let b = sqlx::query("DELETE FROM usage_hour WHERE bucket < $1").bind(hours_before.0).execute(&mut *tx).await?;
            tx.commit().await?;
            a.rows_affected() + b.rows_affected()
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{CredentialKind, UsageCredential};

    #[test]
    fn a_batch_folds_into_one_row_per_bucket_with_the_app_total_beside_each_credential() {
        let key = UsageCredential { kind: CredentialKind::ApiKey, id: "key_1".into() };
        let d = |minute: i64, credential: Option<UsageCredential>, allowed: u64| UsageDelta {
            minute: Timestamp(minute),
            app: "shop".into(),
            credential,
            counts: UsageCounts { allowed, ..Default::default() },
        };
        let batch = [d(60_000, Some(key.clone()), 2), d(119_999, None, 3), d(120_000, Some(key), 5)];
        let minutes: Vec<_> = fold(&batch, Resolution::Minute).into_iter().map(|(k, c)| (k, c.allowed)).collect();
        assert_eq!(
            minutes,
            [
                (("", String::new(), 60_000, "shop".into()), 5),
                (("", String::new(), 120_000, "shop".into()), 5),
                (("api_key", "key_1".into(), 60_000, "shop".into()), 2),
                (("api_key", "key_1".into(), 120_000, "shop".into()), 5),
            ]
        );
        let hours: Vec<_> = fold(&batch, Resolution::Hour).into_iter().map(|(k, c)| (k, c.allowed)).collect();
        assert_eq!(
            hours,
            [(("", String::new(), 0, "shop".into()), 10), (("api_key", "key_1".into(), 0, "shop".into()), 7)]
        );
    }
}
