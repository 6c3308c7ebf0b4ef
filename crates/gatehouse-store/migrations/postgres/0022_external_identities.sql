-- Sign-in with an identity provider (SPEC §15).

-- An account at a provider (its issuer and subject) that signs in as a Gatehouse user. Linked once,
-- by a verified email or when the user was created for it; never moved to another user.
CREATE TABLE external_identities (
    workspace       TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    provider_id     TEXT NOT NULL,
    email           TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (workspace, issuer, subject)
);
CREATE INDEX external_identities_by_user ON external_identities (user_id);

-- A sign-in sent to a provider and not back yet: keyed by the SHA-256 of its `state`, spent once
-- (deleted as it is read). It holds what the callback needs: the nonce, the PKCE verifier, where to
-- return, and the SHA-256 of the browser's binding cookie.
CREATE TABLE oidc_pending_logins (
    state_hash      BYTEA PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    code_verifier   TEXT NOT NULL,
    return_to       TEXT NOT NULL,
    app_browser     BYTEA,
    browser_hash    BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX oidc_pending_logins_by_expiry ON oidc_pending_logins (expires_at);

-- The ID token a control-plane login came from, for RP-initiated logout (`id_token_hint`); only
-- kept for providers with `end_session` on, and removed at sign-out or when the login would have ended.
CREATE TABLE oidc_provider_logins (
    session_hash    BYTEA PRIMARY KEY,
    provider_id     TEXT NOT NULL,
    id_token        TEXT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX oidc_provider_logins_by_expiry ON oidc_provider_logins (expires_at);
