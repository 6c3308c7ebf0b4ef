-- The five roles of SPEC §12. SQLite cannot change a CHECK constraint, so `users` is rebuilt; `sessions`
-- references it and is rebuilt beside it, so the old table can be dropped with foreign keys on.
CREATE TABLE users_new (
    id            TEXT PRIMARY KEY,
    workspace     TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer', 'member')),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
INSERT INTO users_new SELECT id, workspace, email, password_hash, role, created_at, disabled_at FROM users;

CREATE TABLE sessions_new (
    id_hash     BLOB PRIMARY KEY,
    parent_hash BLOB,
    user_id     TEXT NOT NULL REFERENCES users_new (id),
    host        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at  INTEGER
);
INSERT INTO sessions_new SELECT id_hash, parent_hash, user_id, host, created_at, expires_at, last_seen_at, revoked_at
    FROM sessions;

DROP TABLE sessions;
DROP TABLE users;
-- Renaming rewrites the reference in sessions_new to `users`.
ALTER TABLE users_new RENAME TO users;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE UNIQUE INDEX users_by_email ON users (workspace, email);
CREATE INDEX sessions_by_parent ON sessions (parent_hash);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- One-time set-password links (SPEC §12 Users): only the SHA-256 of the token is stored; a link is
-- spent by one conditional UPDATE and expires.
CREATE TABLE password_links (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_links_by_user ON password_links (user_id);
