-- A login ticket is bound to the browser that started the sign-in (SPEC §11 "The cross-host ticket"):
-- the SHA-256 of the state cookie the app host set before sending it to the control plane. Tickets
-- issued before this column existed have none and are refused.
ALTER TABLE login_tickets ADD COLUMN browser_hash BLOB;
