-- SPEC §11: an OAuth client belongs to one environment (the environment of the key that registered
-- it; live for clients made by the CLI or configuration unless they say otherwise) and, optionally,
-- to one app. Its tokens act only there, like an API key of that environment and app.
ALTER TABLE oauth_clients ADD COLUMN environment TEXT NOT NULL DEFAULT 'live' CHECK (environment IN ('live', 'test'));
ALTER TABLE oauth_clients ADD COLUMN app TEXT;
