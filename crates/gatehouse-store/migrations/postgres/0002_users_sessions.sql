-- People who sign in at the gateway. Passwords are Argon2id PHC strings.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    workspace     TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);
CREATE UNIQUE INDEX users_by_email ON users (workspace, email);

-- Server-side sessions. Only the SHA-256 of the cookie value is stored. A login at the control plane
-- is a session with parent_hash NULL; each app host gets a child session bound to it, ended with it.
CREATE TABLE sessions (
    id_hash     BYTEA PRIMARY KEY,
    parent_hash BYTEA,
    user_id     TEXT NOT NULL REFERENCES users (id),
    host        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX sessions_by_parent ON sessions (parent_hash);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One-time tickets carrying a login from the control plane to an app host.
CREATE TABLE login_tickets (
    ticket_hash BYTEA PRIMARY KEY,
    parent_hash BYTEA NOT NULL,
    host        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

-- Deployment-wide secrets generated on first use (CSRF key, assertion signing key, setup token).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
