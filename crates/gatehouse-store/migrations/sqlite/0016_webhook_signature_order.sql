-- During a secret rotation window every delivery carries two `v1=` signatures. Receivers that read only
-- the last `v1` (the common `Object.fromEntries` snippet) verify only that one, so the sender remembers,
-- per endpoint, which live secret's signature goes last: the one the endpoint last accepted
-- (ARCHITECTURE.md, "Webhook secret rotation"). A roll resets it to 'previous', the secret the endpoint
-- was verifying with before the roll; 'previous' is also what every earlier release sent last.
ALTER TABLE webhook_endpoints
    ADD COLUMN signature_last TEXT NOT NULL DEFAULT 'previous' CHECK (signature_last IN ('current', 'previous'));
