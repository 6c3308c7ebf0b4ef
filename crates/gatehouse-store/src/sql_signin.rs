//! The SQL implementation of `SignInStore` (SPEC §11 "Sign-in"), on both backends.
//!
//! A reservation is one `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING` per subject, in one
//! transaction: the row lock (PostgreSQL) or the single writer (SQLite) serialises concurrent attempts,
//! and the `WHERE` refuses an attempt while the subject must wait. The wait ladder is computed from the
//! policy in Rust and written into the statement as integer literals, so both dialects read the same SQL.

use async_trait::async_trait;
use gatehouse_core::Timestamp;

use super::{event_of, Db, SqlStore, FAN_OUT, INSERT_AUDIT, INSERT_EVENT};
use crate::{AuditEntry, Reservation, SignInStore, StoreError, ThrottlePolicy};

/// `CASE` expression: the wait (ms) after the `n`-th counted attempt, `n` being an SQL expression.
fn wait_sql(n: &str, policy: &ThrottlePolicy) -> String {
    let free = i64::from(policy.free_attempts);
    let mut sql = format!("(CASE WHEN {n} < {free} THEN 0");
    let mut failures = free;
    loop {
        let wait = policy.wait_after(failures);
        if wait >= policy.max_wait_ms {
            break;
        }
        sql.push_str(&format!(" WHEN {n} = {failures} THEN {wait}"));
        failures += 1;
    }
    sql.push_str(&format!(" ELSE {} END)", policy.max_wait_ms));
    sql
}

fn reserve_sql(policy: &ThrottlePolicy) -> String {
    let forget = policy.forget_after_ms;
    // The count after this attempt: a subject quiet for `forget` starts over.
    let n =
        format!("(CASE WHEN sign_in_throttle.last_at <= $3 - {forget} THEN 1 ELSE sign_in_throttle.failures + 1 END)");
    format!(
        "INSERT INTO sign_in_throttle (workspace, subject, failures, last_at, next_at) VALUES ($1, $2, 1, $3, $3 + {first}) \
         ON CONFLICT (workspace, subject) DO UPDATE SET failures = {n}, last_at = $3, next_at = $3 + {wait} \
         WHERE sign_in_throttle.next_at <= $3 OR sign_in_throttle.last_at <= $3 - {forget} \
         RETURNING failures",
        first = policy.wait_after(1),
        wait = wait_sql(&n, policy),
    )
}

fn give_back_sql(policy: &ThrottlePolicy) -> String {
    format!(
        "UPDATE sign_in_throttle SET failures = failures - 1, next_at = last_at + {wait} \
         WHERE workspace = $1 AND subject = $2 AND failures > 0",
        wait = wait_sql("(sign_in_throttle.failures - 1)", policy),
    )
}

#[async_trait]
impl SignInStore for SqlStore {
    async fn reserve_sign_in(
        &self,
        workspace: &str,
        subjects: &[&str],
        now: Timestamp,
        policy: &ThrottlePolicy,
    ) -> Result<Reservation, StoreError> {
        let sql = reserve_sql(policy);
        let granted: Result<Vec<i64>, String> = on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            let mut counts = Vec::with_capacity(subjects.len());
            let mut refused = None;
            for s in subjects {
                let n: Option<i64> = sqlx::query_scalar(&sql).bind(workspace).bind(*s).bind(now.0).fetch_optional(&mut *tx).await?;
                match n {
                    Some(n) => counts.push(n),
                    None => {
                        refused = Some((*s).to_owned());
                        break;
                    }
                }
            }
            match refused {
                None => {
                    tx.commit().await?;
                    Ok(counts)
                }
                Some(s) => {
                    tx.rollback().await?;
                    Err(s)
                }
            }
        });
        match granted {
            Ok(counts) => Ok(Reservation::Granted(counts)),
            Err(subject) => {
                let sql = "SELECT next_at FROM sign_in_throttle WHERE workspace = $1 AND subject = $2";
                let next: Option<i64> = on_db!(self, read, p => sqlx::query_scalar(sql).bind(workspace).bind(&subject).fetch_optional(p).await?);
                Ok(Reservation::Throttled { retry_at: Timestamp(next.unwrap_or(now.0 + 1000).max(now.0 + 1)) })
            }
        }
    }

    async fn release_sign_in(
        &self,
        workspace: &str,
        forget: &[&str],
        give_back: &[&str],
        policy: &ThrottlePolicy,
    ) -> Result<(), StoreError> {
        let delete = "DELETE FROM sign_in_throttle WHERE workspace = $1 AND subject = $2";
        let update = give_back_sql(policy);
        on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            for s in forget {
                sqlx::query(delete).bind(workspace).bind(*s).execute(&mut *tx).await?;
            }
            for s in give_back {
                sqlx::query(&update).bind(workspace).bind(*s).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn audit_sign_in(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        on_db!(self, write, p => {
            let mut tx = crate::tx::Begin::begin_tx(p, "BEGIN").await?;
            record!(tx, entry);
            tx.commit().await?;
        });
        Ok(())
    }

    async fn prune_sign_in(&self, before: Timestamp) -> Result<u64, StoreError> {
        let sql = "DELETE FROM sign_in_throttle WHERE last_at < $1";
        let n = on_db!(self, write, p => sqlx::query(sql).bind(before.0).execute(p).await?.rows_affected());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ladder_matches_the_policy() {
        let p = ThrottlePolicy { free_attempts: 5, max_wait_ms: 900_000, forget_after_ms: 900_000 };
        let ladder: Vec<i64> = (1..=17).map(|n| p.wait_after(n)).collect();
        assert_eq!(
            ladder,
            [
                0, 0, 0, 0, 1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 512_000, 900_000,
                900_000, 900_000
            ]
        );
        let sql = wait_sql("n", &p);
        assert!(sql.starts_with("(CASE WHEN n < 5 THEN 0 WHEN n = 5 THEN 1000 WHEN n = 6 THEN 2000"), "{sql}");
        assert!(sql.ends_with("WHEN n = 14 THEN 512000 ELSE 900000 END)"), "{sql}");
    }
}
