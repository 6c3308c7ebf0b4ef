-- The groups the identity provider's claim gave at sign-in (SPEC §15), which app access policies may
-- name: a JSON array of strings. A password sign-in has none. An app-host session copies its login's.
ALTER TABLE sessions ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
