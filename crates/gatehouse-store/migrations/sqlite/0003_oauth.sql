-- OAuth 2.0 (SPEC §7). Secrets, codes and tokens are stored as SHA-256 hashes only: they are
-- 256-bit random values, so a fast hash is enough.
CREATE TABLE oauth_clients (
    id                         TEXT PRIMARY KEY,          -- the client_id
    workspace                  TEXT NOT NULL,
    name                       TEXT NOT NULL,
    kind                       TEXT NOT NULL CHECK (kind IN ('confidential', 'public')),
    secret_hash                BLOB,
    secret_last4               TEXT,
    previous_secret_hash       BLOB,                      -- still accepted until previous_secret_expires_at
    previous_secret_expires_at INTEGER,
    redirect_uris              TEXT NOT NULL,             -- JSON array
    scopes                     TEXT NOT NULL,             -- JSON array: what the client may ask for
    token_format               TEXT NOT NULL CHECK (token_format IN ('opaque', 'jwt')),
    created_at                 INTEGER NOT NULL,
    created_by                 TEXT NOT NULL,
    disabled_at                INTEGER
);
CREATE INDEX oauth_clients_by_workspace ON oauth_clients (workspace, id);

-- What a user allowed a client, remembered so the consent screen is not shown again.
CREATE TABLE oauth_consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,                             -- JSON array
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- One authorization: every token descended from one code exchange (or one client_credentials issue).
CREATE TABLE oauth_grants (
    id         TEXT PRIMARY KEY,
    workspace  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    user_id    TEXT,
    grant_type TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX oauth_grants_by_user ON oauth_grants (user_id, client_id);
CREATE INDEX oauth_grants_by_client ON oauth_grants (client_id);

CREATE TABLE oauth_codes (
    code_hash      BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    redirect_given TEXT NOT NULL CHECK (redirect_given IN ('yes', 'no')),
    scopes         TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    grant_id       TEXT                                   -- set when redeemed; a replay revokes it
);
CREATE INDEX oauth_codes_by_expiry ON oauth_codes (expires_at);

CREATE TABLE oauth_tokens (
    token_hash  BLOB PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    grant_id    TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    parent_hash BLOB,                                     -- the refresh token this one was issued from
    used_at     INTEGER,                                     -- refresh tokens: when rotated
    retried_at  INTEGER,                                     -- refresh tokens: when the lost-response retry was spent
    revoked_at  INTEGER
);
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id);
CREATE INDEX oauth_tokens_by_parent ON oauth_tokens (parent_hash);
CREATE INDEX oauth_tokens_by_expiry ON oauth_tokens (expires_at);
