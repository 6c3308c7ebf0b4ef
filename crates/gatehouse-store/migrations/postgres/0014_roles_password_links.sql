-- The five roles of SPEC §12.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('owner', 'admin', 'developer', 'viewer', 'member'));

-- One-time set-password links (SPEC §12 Users): only the SHA-256 of the token is stored; a link is
-- spent by one conditional UPDATE and expires.
CREATE TABLE password_links (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX password_links_by_user ON password_links (user_id);
