-- Webhooks (SPEC §6). Signing secrets are stored as given: they are HMAC keys and must be usable.
CREATE TABLE webhook_endpoints (
    id                         TEXT PRIMARY KEY,
    workspace                  TEXT NOT NULL,
    environment                TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    url                        TEXT NOT NULL,
    event_types                TEXT NOT NULL,   -- JSON array; ["*"] for every type
    description                TEXT NOT NULL,
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    standard_headers           TEXT NOT NULL CHECK (standard_headers IN ('yes', 'no')),
    created_at                 BIGINT NOT NULL,
    created_by                 TEXT NOT NULL,
    disabled_at                BIGINT,
    disabled_reason            TEXT,
    failing_since              BIGINT              -- first failed attempt since the last success
);
CREATE INDEX webhook_endpoints_by_workspace ON webhook_endpoints (workspace, environment, id);

-- The outbox: written in the same transaction as the change that caused the event.
CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL,
    environment TEXT NOT NULL,
    type        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    body        TEXT NOT NULL                  -- the exact JSON that is signed and sent
);
CREATE INDEX webhook_events_by_workspace ON webhook_events (workspace, environment, id);

-- One row per (event, endpoint): its state and when to try next. Workers claim rows with a lease.
CREATE TABLE webhook_deliveries (
    event_id        TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    delivered_at    BIGINT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    at               BIGINT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    error            TEXT,
    response_excerpt TEXT                      -- the first KiB of the response body
);
CREATE INDEX webhook_attempts_by_event ON webhook_attempts (event_id, at);
