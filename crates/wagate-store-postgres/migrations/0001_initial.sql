-- wagate's schema on PostgreSQL: SQLite's migrations 0001..0006 folded into one, with the
-- same tables, columns and indexes. Timestamps are BIGINT milliseconds since the Unix
-- epoch (UTC) and ids TEXT, as on SQLite, so both stores read and write the same values.
-- Ids are compared and ordered byte-wise (COLLATE "C") whatever the database's locale:
-- listings break ties by id, exactly as SQLite's binary collation does.

CREATE TABLE accounts (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Insertion order, the tie-break of "oldest first" listings (SQLite's rowid).
    ord         BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX accounts_by_age ON accounts (created_at, ord);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    prefix      TEXT NOT NULL,
    hash        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    ord         BIGINT GENERATED ALWAYS AS IDENTITY
);
-- Listing (oldest first) and counting an account's active keys.
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at, ord);
-- Authentication looks up unrevoked keys by prefix only.
CREATE INDEX api_keys_active_by_prefix ON api_keys (prefix) WHERE revoked_at IS NULL;

CREATE TABLE devices (
    uid                  TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    name                 TEXT NOT NULL,
    engine               TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_reason        TEXT,
    phone                TEXT,
    push_name            TEXT,
    per_day              BIGINT NOT NULL,
    per_hour             BIGINT NOT NULL,
    per_minute           BIGINT NOT NULL,
    min_delay_ms         BIGINT NOT NULL,
    max_delay_ms         BIGINT NOT NULL,
    typing_indicator     BOOLEAN NOT NULL,
    instance_token_hash  BYTEA NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    connected_at         BIGINT,
    -- Soft delete: the row stays so the device's messages keep their history.
    deleted_at           BIGINT,
    ord                  BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX devices_live_by_account ON devices (account_id, created_at, ord) WHERE deleted_at IS NULL;
CREATE INDEX devices_live ON devices (created_at, ord) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    device_uid           TEXT COLLATE "C" NOT NULL REFERENCES devices (uid),
    to_phone             TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    text                 TEXT,
    media_id             TEXT COLLATE "C",
    client_message_id    TEXT,
    -- What the clientMessageId stood for (wagate_core::message::RequestIdentity::hash).
    request_hash         TEXT,
    status               TEXT NOT NULL,
    failure_reason       TEXT,
    provider_message_id  TEXT,
    dialect              TEXT NOT NULL,
    send_at              BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
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
    -- Insertion order is the order the steps happened in: a message's steps are written
    -- under its row lock, one transaction after the other.
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT COLLATE "C" NOT NULL REFERENCES messages (id),
    status      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    reason      TEXT
);
CREATE INDEX message_status_history_by_message ON message_status_history (message_id, id);

-- The outbox of sends. A row lives from accept until the send completes or fails for good,
-- so the table stays as small as the backlog. Ids come from an identity sequence, which
-- never hands out a value twice: bookkeeping for a job that already ended cannot touch
-- another's.
CREATE TABLE send_jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES messages (id),
    device_uid   TEXT COLLATE "C" NOT NULL REFERENCES devices (uid),
    run_at       BIGINT NOT NULL,
    lease_until  BIGINT,
    -- Who holds the lease: the claiming process's id. NULL when the job is not leased.
    lease_owner  TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT
);
-- Claiming: a device's due jobs, oldest first.
CREATE INDEX send_jobs_due ON send_jobs (device_uid, run_at, id);
-- When a leased job becomes claimable again.
CREATE INDEX send_jobs_leased ON send_jobs (device_uid, lease_until) WHERE lease_until IS NOT NULL;

-- Budgets: how many messages a device accepted and handed to its engine per minute. Rolling
-- windows sum at most 1440 small rows instead of counting messages.
CREATE TABLE device_counters (
    device_uid  TEXT COLLATE "C" NOT NULL,
    -- Minutes since the Unix epoch.
    minute      BIGINT NOT NULL,
    accepted    BIGINT NOT NULL DEFAULT 0,
    handed      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device_uid, minute)
);

CREATE TABLE inbound_messages (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    device_uid           TEXT COLLATE "C" NOT NULL REFERENCES devices (uid),
    provider_message_id  TEXT NOT NULL,
    from_phone           TEXT,
    from_lid             TEXT,
    from_name            TEXT,
    kind                 TEXT NOT NULL,
    text                 TEXT,
    media_id             TEXT COLLATE "C",
    is_group             BOOLEAN NOT NULL,
    group_id             TEXT,
    group_name           TEXT,
    timestamp            BIGINT NOT NULL,
    received_at          BIGINT NOT NULL
);
-- WhatsApp redelivers messages; each is stored once per device.
CREATE UNIQUE INDEX inbound_messages_provider_id ON inbound_messages (device_uid, provider_message_id);
CREATE INDEX inbound_messages_by_account ON inbound_messages (account_id, received_at, id);
CREATE INDEX inbound_messages_by_device ON inbound_messages (device_uid, received_at, id);

CREATE TABLE media (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    mime_type   TEXT NOT NULL,
    size        BIGINT NOT NULL,
    file_name   TEXT,
    sha256      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The event log webhooks and the live stream read from. `seq` is not a sequence: it is
-- handed out by `event_counter` below, whose row lock makes event-writing transactions
-- commit one after the other, so seq order is commit order (the contract in
-- wagate_core::store). `data` is the JSON payload as TEXT, not JSONB: only the store reads
-- it back, through serde, and never filters on it, so JSONB would cost a parse and a
-- re-encoding on every status step for nothing (`data::jsonb` still works for a person
-- querying by hand).
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    account_id  TEXT COLLATE "C" NOT NULL,
    device_uid  TEXT COLLATE "C" NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_by_account ON events (account_id, seq);

-- The last event seq handed out, and so (being updated in the transaction that writes the
-- events) the newest committed one: it stays put when old events are pruned, and a seq is
-- never reused.
CREATE TABLE event_counter (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  BIGINT NOT NULL
);
INSERT INTO event_counter (id, last_seq) VALUES (1, 0);

-- One row per device that has ever been configured; both dialects' URLs share the secret.
CREATE TABLE webhook_configs (
    device_uid              TEXT COLLATE "C" PRIMARY KEY REFERENCES devices (uid),
    account_id              TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    msgera_active           BOOLEAN NOT NULL,
    personal_url            TEXT,
    group_url               TEXT,
    -- Event type names.
    msgera_events           TEXT[] NOT NULL,
    instance_url            TEXT,
    instance_events         TEXT[] NOT NULL,
    secret                  TEXT NOT NULL,
    previous_secret         TEXT,
    previous_secret_until   BIGINT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

-- How far the events have been fanned out into deliveries. It moves in the same
-- transaction as the deliveries it creates, and fan-outs lock it, so an event is fanned
-- out exactly once however many nodes run the dispatcher.
CREATE TABLE webhook_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq  BIGINT NOT NULL
);
INSERT INTO webhook_cursor (id, last_seq) VALUES (1, 0);

-- The outbox: one row per event and destination (and per manual redelivery).
CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL,
    device_uid       TEXT COLLATE "C" NOT NULL,
    endpoint         TEXT COLLATE "C" NOT NULL,
    event_seq        BIGINT NOT NULL REFERENCES events (seq),
    -- pending, succeeded, failed or cancelled.
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- Claiming: each destination's oldest unfinished deliveries.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (device_uid, endpoint, id)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    account_id        TEXT COLLATE "C" NOT NULL,
    device_uid        TEXT COLLATE "C" NOT NULL,
    attempt           BIGINT NOT NULL,
    url               TEXT NOT NULL,
    success           BOOLEAN NOT NULL,
    status_code       BIGINT,
    latency_ms        BIGINT NOT NULL,
    error             TEXT,
    response_snippet  TEXT,
    created_at        BIGINT NOT NULL
);
-- History: newest first per account, optionally per device.
CREATE INDEX webhook_attempts_by_account ON webhook_attempts (account_id, id);
CREATE INDEX webhook_attempts_by_device ON webhook_attempts (device_uid, id);

-- Dashboard sessions, revocable server-side. The cookie holds a random token; only its
-- SHA-256 is stored.
CREATE TABLE dashboard_sessions (
    token_hash  BYTEA PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    api_key_id  TEXT COLLATE "C" NOT NULL REFERENCES api_keys (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_account ON dashboard_sessions (account_id);
CREATE INDEX dashboard_sessions_by_key ON dashboard_sessions (api_key_id);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);

-- One row that `check_writable` updates: a committed UPDATE proves the server takes
-- writes now (a standby, a read-only or a full server refuses it).
CREATE TABLE store_heartbeat (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    beats  BIGINT NOT NULL
);
INSERT INTO store_heartbeat (id, beats) VALUES (1, 0);
