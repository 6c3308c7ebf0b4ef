-- Indexes for the dashboard's lists at 100,000 keys (SPEC §12): every filter of the key list and of
-- the audit log is read in id order (newest first, keyset paging on id) from an index that starts
-- with that filter, so a page reads about as many rows as it shows instead of the whole table.

-- Keys of every environment, and of one app.
CREATE INDEX api_keys_by_workspace_id ON api_keys (workspace, id);
CREATE INDEX api_keys_by_app ON api_keys (workspace, app, id);
-- Revoked and expired keys are few among many; partial indexes hold only them.
CREATE INDEX api_keys_revoked ON api_keys (workspace, id) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_expiring ON api_keys (workspace, id) WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

-- The audit log by target (a key's page shows its own trail), by actor, by action, by environment.
CREATE INDEX audit_log_by_target ON audit_log (workspace, target_id, id);
CREATE INDEX audit_log_by_actor ON audit_log (workspace, actor, id);
CREATE INDEX audit_log_by_action ON audit_log (workspace, action, id);
CREATE INDEX audit_log_by_environment ON audit_log (workspace, environment, id);
