-- API keys: only the SHA-256 of the key is stored, never the key.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    key_hash       BYTEA NOT NULL UNIQUE,
    workspace      TEXT NOT NULL,
    environment    TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    kind           TEXT NOT NULL CHECK (kind IN ('sk', 'rk')),
    name           TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    ip_allowlist   TEXT NOT NULL,
    expires_at     BIGINT,
    app            TEXT,
    rate_limit     TEXT,
    metadata       TEXT NOT NULL,
    display_prefix TEXT NOT NULL,
    last4          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    rolled_to      TEXT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace, environment, id);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL,
    environment TEXT,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    request_id  TEXT,
    ip          TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- Change feed for cache invalidation. Writers take an advisory lock first so that sequence order is commit order.
CREATE TABLE key_changes (
    seq      BIGSERIAL PRIMARY KEY,
    key_hash BYTEA NOT NULL,
    at       BIGINT NOT NULL
);
