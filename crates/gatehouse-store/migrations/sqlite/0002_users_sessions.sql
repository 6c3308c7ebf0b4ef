-- People who sign in at the gateway. Passwords are Argon2id PHC strings.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    workspace     TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
CREATE UNIQUE INDEX users_by_email ON users (workspace, email);

-- Server-side sessions. Only the SHA-256 of the cookie value is stored. A login at the control plane
-- is a session with parent_hash NULL; each app host gets a child session bound to it, ended with it.
CREATE TABLE sessions (
    id_hash     BLOB PRIMARY KEY,
    parent_hash BLOB,
    user_id     TEXT NOT NULL REFERENCES users (id),
    host        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX sessions_by_parent ON sessions (parent_hash);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One-time tickets carrying a login from the control plane to an app host.
CREATE TABLE login_tickets (
    ticket_hash BLOB PRIMARY KEY,
    parent_hash BLOB NOT NULL,
    host        TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

-- Deployment-wide secrets generated on first use (CSRF key, assertion signing key, setup token).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
