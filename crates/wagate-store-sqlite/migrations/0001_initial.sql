-- wagate's initial schema. Timestamps are INTEGER milliseconds since the Unix epoch (UTC),
-- ids are TEXT; every query the store runs has an index below.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    prefix      TEXT NOT NULL,
    hash        BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
-- Listing (oldest first) and counting an account's active keys.
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);
-- Authentication looks up unrevoked keys by prefix only.
CREATE INDEX api_keys_active_by_prefix ON api_keys (prefix) WHERE revoked_at IS NULL;

CREATE TABLE devices (
    uid                  TEXT PRIMARY KEY NOT NULL,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    name                 TEXT NOT NULL,
    engine               TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_reason        TEXT,
    phone                TEXT,
    push_name            TEXT,
    per_day              INTEGER NOT NULL,
    per_hour             INTEGER NOT NULL,
    per_minute           INTEGER NOT NULL,
    min_delay_ms         INTEGER NOT NULL,
    max_delay_ms         INTEGER NOT NULL,
    typing_indicator     INTEGER NOT NULL,
    instance_token_hash  BLOB NOT NULL,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    connected_at         INTEGER,
    -- Soft delete: the row stays so the device's messages keep their history.
    deleted_at           INTEGER
);
CREATE INDEX devices_live_by_account ON devices (account_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX devices_live ON devices (created_at) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id                   TEXT PRIMARY KEY NOT NULL,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    device_uid           TEXT NOT NULL REFERENCES devices (uid),
    to_phone             TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    text                 TEXT,
    media_id             TEXT,
    client_message_id    TEXT,
    status               TEXT NOT NULL,
    failure_reason       TEXT,
    provider_message_id  TEXT,
    dialect              TEXT NOT NULL,
    send_at              INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
-- The idempotency key: one message per clientMessageId and device.
CREATE UNIQUE INDEX messages_client_id ON messages (device_uid, client_message_id)
    WHERE client_message_id IS NOT NULL;
-- Receipts find their message by WhatsApp's id on the device.
CREATE UNIQUE INDEX messages_provider_id ON messages (device_uid, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Listings, newest first, with each filter.
CREATE INDEX messages_by_account ON messages (account_id, created_at, id);
CREATE INDEX messages_by_device ON messages (device_uid, created_at, id);
CREATE INDEX messages_by_status ON messages (account_id, status, created_at, id);
CREATE INDEX messages_by_recipient ON messages (account_id, to_phone, created_at, id);

CREATE TABLE message_status_history (
    -- rowid order is insertion order, which is the order the steps happened in.
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL REFERENCES messages (id),
    status      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    reason      TEXT
);
CREATE INDEX message_status_history_by_message ON message_status_history (message_id, id);

-- The outbox of sends. A row lives from accept until the send completes or fails for good,
-- so the table stays as small as the backlog.
CREATE TABLE send_jobs (
    id           INTEGER PRIMARY KEY,
    message_id   TEXT NOT NULL UNIQUE REFERENCES messages (id),
    device_uid   TEXT NOT NULL REFERENCES devices (uid),
    run_at       INTEGER NOT NULL,
    lease_until  INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
-- Claiming: a device's due jobs, oldest first.
CREATE INDEX send_jobs_due ON send_jobs (device_uid, run_at, id);
-- When a leased job becomes claimable again.
CREATE INDEX send_jobs_leased ON send_jobs (device_uid, lease_until) WHERE lease_until IS NOT NULL;

-- Budgets: how many messages a device accepted and handed to its engine per minute. Rolling
-- windows sum at most 1440 small rows instead of counting messages, so an accept costs the
-- same with ten rows in `messages` or ten million.
CREATE TABLE device_counters (
    device_uid  TEXT NOT NULL,
    -- Minutes since the Unix epoch.
    minute      INTEGER NOT NULL,
    accepted    INTEGER NOT NULL DEFAULT 0,
    handed      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_uid, minute)
) WITHOUT ROWID;

CREATE TABLE inbound_messages (
    id                   TEXT PRIMARY KEY NOT NULL,
    account_id           TEXT NOT NULL REFERENCES accounts (id),
    device_uid           TEXT NOT NULL REFERENCES devices (uid),
    provider_message_id  TEXT NOT NULL,
    from_phone           TEXT,
    from_lid             TEXT,
    from_name            TEXT,
    kind                 TEXT NOT NULL,
    text                 TEXT,
    media_id             TEXT,
    is_group             INTEGER NOT NULL,
    group_id             TEXT,
    group_name           TEXT,
    timestamp            INTEGER NOT NULL,
    received_at          INTEGER NOT NULL
);
-- WhatsApp redelivers messages; each is stored once per device.
CREATE UNIQUE INDEX inbound_messages_provider_id ON inbound_messages (device_uid, provider_message_id);
CREATE INDEX inbound_messages_by_account ON inbound_messages (account_id, received_at, id);
CREATE INDEX inbound_messages_by_device ON inbound_messages (device_uid, received_at, id);

CREATE TABLE media (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    mime_type   TEXT NOT NULL,
    size        INTEGER NOT NULL,
    file_name   TEXT,
    sha256      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- The event log webhooks and the live stream read from. AUTOINCREMENT so a seq is never
-- reused, even once old events are pruned: consumers resume from the last seq they saw.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    account_id  TEXT NOT NULL,
    device_uid  TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_by_account ON events (account_id, seq);
