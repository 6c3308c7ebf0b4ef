-- Failed sign-ins per account and per client address (SPEC §11 "Sign-in"). Kept here, not in memory,
-- so a restart keeps a lock and every node on this database counts together. `subject` is
-- `account:<sha256 of the normalized email>` or `ip:<address>`; an attempt is reserved (counted) before
-- its password is checked and given back when it succeeds.
CREATE TABLE sign_in_throttle (
    workspace TEXT NOT NULL,
    subject   TEXT NOT NULL,
    failures  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL,
    next_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace, subject)
);
CREATE INDEX sign_in_throttle_by_last ON sign_in_throttle (last_at);
