-- Dashboard sessions, so signing out (or revoking the key, or "end all my sessions") ends
-- a session on the server instead of waiting for the cookie to expire. The cookie holds a
-- random token; only its SHA-256 is stored.
CREATE TABLE dashboard_sessions (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    api_key_id  TEXT NOT NULL REFERENCES api_keys (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- "End all my sessions" and key revocation delete by account and by key.
CREATE INDEX dashboard_sessions_by_account ON dashboard_sessions (account_id);
CREATE INDEX dashboard_sessions_by_key ON dashboard_sessions (api_key_id);
-- Purging expired sessions.
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
