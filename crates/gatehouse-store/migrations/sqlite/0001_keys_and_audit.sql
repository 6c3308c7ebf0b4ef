-- API keys: only the SHA-256 of the key is stored, never the key.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    key_hash       BLOB NOT NULL UNIQUE,
    workspace      TEXT NOT NULL,
    environment    TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    kind           TEXT NOT NULL CHECK (kind IN ('sk', 'rk')),
    name           TEXT NOT NULL,
    scopes         TEXT NOT NULL,            -- JSON array of scope strings
    ip_allowlist   TEXT NOT NULL,            -- JSON array of CIDRs
    expires_at     INTEGER,                  -- Unix milliseconds
    app            TEXT,
    rate_limit     TEXT,                     -- JSON {limit, window_secs} or NULL
    metadata       TEXT NOT NULL,            -- JSON object
    display_prefix TEXT NOT NULL,
    last4          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT NOT NULL,
    last_used_at   INTEGER,
    revoked_at     INTEGER,
    rolled_to      TEXT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace, environment, id);

-- Append-only: the triggers below refuse updates and deletes.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL,
    environment TEXT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    request_id  TEXT,
    ip          TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Change feed for cache invalidation across processes and nodes: every key write appends its hash.
CREATE TABLE key_changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash BLOB NOT NULL,
    at       INTEGER NOT NULL
);
