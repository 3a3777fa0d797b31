-- Webhooks: per-device destinations, the fan-out cursor, the delivery outbox and every
-- attempt. Times are INTEGER milliseconds, like the rest of the schema.

-- One row per device that has ever been configured; both dialects' URLs share the secret.
CREATE TABLE webhook_configs (
    device_uid              TEXT PRIMARY KEY NOT NULL REFERENCES devices (uid),
    account_id              TEXT NOT NULL REFERENCES accounts (id),
    msgera_active           INTEGER NOT NULL,
    personal_url            TEXT,
    group_url               TEXT,
    -- JSON arrays of event type names.
    msgera_events           TEXT NOT NULL,
    instance_url            TEXT,
    instance_events         TEXT NOT NULL,
    secret                  TEXT NOT NULL,
    previous_secret         TEXT,
    previous_secret_until   INTEGER,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);

-- How far the events table has been fanned out into deliveries. It moves in the same
-- transaction as the deliveries it creates, so an event is fanned out exactly once. It
-- starts at the newest event so that upgrading does not replay history.
CREATE TABLE webhook_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, last_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;

-- The outbox: one row per event and destination (and per manual redelivery).
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY,
    account_id       TEXT NOT NULL,
    device_uid       TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    event_seq        INTEGER NOT NULL REFERENCES events (seq),
    -- pending, succeeded, failed or cancelled.
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- Claiming: each destination's oldest unfinished delivery.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (device_uid, endpoint, id)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id                INTEGER PRIMARY KEY,
    delivery_id       INTEGER NOT NULL REFERENCES webhook_deliveries (id),
    account_id        TEXT NOT NULL,
    device_uid        TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    url               TEXT NOT NULL,
    success           INTEGER NOT NULL,
    status_code       INTEGER,
    latency_ms        INTEGER NOT NULL,
    error             TEXT,
    response_snippet  TEXT,
    created_at        INTEGER NOT NULL
);
-- History: newest first per account, optionally per device.
CREATE INDEX webhook_attempts_by_account ON webhook_attempts (account_id, id);
CREATE INDEX webhook_attempts_by_device ON webhook_attempts (device_uid, id);
