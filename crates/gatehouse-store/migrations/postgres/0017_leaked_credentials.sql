-- Leaked credentials (SPEC §13): one row per credential that a report (GitHub's secret scanning,
-- report-a-leak, `gatehouse scan --revoke`) found and revoked. Keyed by the credential's SHA-256,
-- so a second report of the same credential changes nothing; it also remembers where it was found,
-- for the dashboard. Never holds the credential, only its masked form.
CREATE TABLE leaked_credentials (
    credential_hash BYTEA PRIMARY KEY,
    credential_type TEXT NOT NULL,
    workspace       TEXT NOT NULL,
    environment     TEXT,
    target_type     TEXT NOT NULL CHECK (target_type IN ('api_key', 'oauth_grant', 'oauth_client')),
    target_id       TEXT NOT NULL,
    masked          TEXT NOT NULL,
    source_kind     TEXT NOT NULL CHECK (source_kind IN ('github', 'report', 'scan')),
    location        TEXT,                                  -- a URL, or a file path
    source_commit   TEXT,
    source_detail   TEXT,                                  -- GitHub's `source` and `type`
    reported_at     BIGINT NOT NULL
);
CREATE INDEX leaked_credentials_by_target ON leaked_credentials (workspace, target_id);

-- A leaked client secret is found by its hash.
CREATE INDEX oauth_clients_by_secret ON oauth_clients (secret_hash);
CREATE INDEX oauth_clients_by_previous_secret ON oauth_clients (previous_secret_hash);
