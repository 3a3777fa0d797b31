-- Where each node's HTTP server can be reached by the others, to forward the calls that
-- need a device's live session (QR code, pair code, number checks, logout, reconnect).
ALTER TABLE nodes ADD COLUMN address TEXT;

-- The server's signing keys (media links, dashboard CSRF tokens, calls between nodes),
-- 32 random bytes each, the first stored under a name winning: every node signs and
-- verifies with the same keys.
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    key  BYTEA NOT NULL
);
