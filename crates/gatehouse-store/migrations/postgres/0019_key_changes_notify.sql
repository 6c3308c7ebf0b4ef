-- The pushed change feed (SPEC §16): every statement that appends to key_changes notifies
-- `gatehouse_key_changes` when its transaction commits (PostgreSQL delivers notifications at commit
-- and folds identical ones within a transaction), so listening nodes read the feed at once instead
-- of at their next poll. The payload is empty: the feed itself stays the source of truth.
CREATE FUNCTION gatehouse_notify_key_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_key_changes', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER key_changes_notify
    AFTER INSERT ON key_changes
    FOR EACH STATEMENT
    EXECUTE FUNCTION gatehouse_notify_key_changes();
