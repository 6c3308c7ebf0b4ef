-- Usage counters (SPEC §12 "Usage"), one table per resolution. A row is one bucket of one credential
-- in one app; the app's own total is the row with cred_kind = '' and cred_id = '' (requests without a
-- valid credential count there only). Writers add to rows (INSERT … ON CONFLICT DO UPDATE SET n = n + …),
-- so nodes add up.
--
-- The primary key leads with the subject and then the bucket, so "one key's last 24 h", "one app's
-- last 30 days" (cred_kind = '', cred_id = '', then app) and "every app's totals" are each one range
-- of the key, whatever the number of keys. WITHOUT ROWID makes that key the table itself.
-- The bucket index serves pruning.
CREATE TABLE usage_minute (
    cred_kind    TEXT NOT NULL,
    cred_id      TEXT NOT NULL,
    bucket       INTEGER NOT NULL,
    app          TEXT NOT NULL,
    allowed      INTEGER NOT NULL,
    unauthorized INTEGER NOT NULL,
    forbidden    INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    PRIMARY KEY (cred_kind, cred_id, bucket, app)
) WITHOUT ROWID;
CREATE INDEX usage_minute_by_bucket ON usage_minute (bucket);

CREATE TABLE usage_hour (
    cred_kind    TEXT NOT NULL,
    cred_id      TEXT NOT NULL,
    bucket       INTEGER NOT NULL,
    app          TEXT NOT NULL,
    allowed      INTEGER NOT NULL,
    unauthorized INTEGER NOT NULL,
    forbidden    INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    PRIMARY KEY (cred_kind, cred_id, bucket, app)
) WITHOUT ROWID;
CREATE INDEX usage_hour_by_bucket ON usage_hour (bucket);
