-- whatsapp-rust's protocol state for every device of every node, in one set of tables.
-- Each row is scoped by `device_key` (the first column of every primary key), so one
-- database holds thousands of devices and a device moves between nodes with nothing to copy.

CREATE TABLE wa_devices (
    device_key TEXT PRIMARY KEY,
    id INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- wacore's Device, serialised with serde_json (its own serde derive).
    data BYTEA NOT NULL
);

-- Fencing: the epoch of the node that currently drives the device. A backend built with
-- a Fence refuses to write unless its epoch is still this one (see src/fence.rs).
CREATE TABLE wa_device_owner (
    device_key TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL
);

CREATE TABLE wa_identities (
    device_key TEXT NOT NULL, address TEXT NOT NULL, key BYTEA NOT NULL,
    PRIMARY KEY (device_key, address)
);

CREATE TABLE wa_sessions (
    device_key TEXT NOT NULL, address TEXT NOT NULL, record BYTEA NOT NULL,
    PRIMARY KEY (device_key, address)
);

CREATE TABLE wa_prekeys (
    device_key TEXT NOT NULL, id BIGINT NOT NULL, record BYTEA NOT NULL,
    uploaded BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (device_key, id)
);

CREATE TABLE wa_signed_prekeys (
    device_key TEXT NOT NULL, id BIGINT NOT NULL, record BYTEA NOT NULL,
    PRIMARY KEY (device_key, id)
);

CREATE TABLE wa_sender_keys (
    device_key TEXT NOT NULL, address TEXT NOT NULL, record BYTEA NOT NULL,
    PRIMARY KEY (device_key, address)
);

CREATE SEQUENCE wa_app_state_sync_keys_seq;
CREATE TABLE wa_app_state_sync_keys (
    device_key TEXT NOT NULL, key_id BYTEA NOT NULL,
    key_data BYTEA NOT NULL, fingerprint BYTEA NOT NULL, timestamp BIGINT NOT NULL,
    -- Raised on every set, so "the most recently stored key" is the highest seq.
    seq BIGINT NOT NULL DEFAULT nextval('wa_app_state_sync_keys_seq'),
    PRIMARY KEY (device_key, key_id)
);

CREATE TABLE wa_app_state_versions (
    device_key TEXT NOT NULL, name TEXT NOT NULL,
    -- wacore's HashState, serialised with serde_json.
    state BYTEA NOT NULL,
    PRIMARY KEY (device_key, name)
);

CREATE TABLE wa_app_state_mutation_macs (
    device_key TEXT NOT NULL, name TEXT NOT NULL, index_mac BYTEA NOT NULL,
    version BIGINT NOT NULL, value_mac BYTEA NOT NULL,
    PRIMARY KEY (device_key, name, index_mac)
);

CREATE TABLE wa_sender_key_devices (
    device_key TEXT NOT NULL, group_jid TEXT NOT NULL, device_jid TEXT NOT NULL,
    has_key BOOLEAN NOT NULL,
    PRIMARY KEY (device_key, group_jid, device_jid)
);
CREATE INDEX wa_sender_key_devices_by_device ON wa_sender_key_devices (device_key, device_jid);

CREATE TABLE wa_lid_pn_mappings (
    device_key TEXT NOT NULL, lid TEXT NOT NULL, phone_number TEXT NOT NULL,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, learning_source TEXT NOT NULL,
    PRIMARY KEY (device_key, lid)
);
CREATE INDEX wa_lid_pn_mappings_by_phone ON wa_lid_pn_mappings (device_key, phone_number, updated_at DESC);

CREATE TABLE wa_base_keys (
    device_key TEXT NOT NULL, address TEXT NOT NULL, message_id TEXT NOT NULL,
    base_key BYTEA NOT NULL,
    PRIMARY KEY (device_key, address, message_id)
);

CREATE TABLE wa_device_lists (
    device_key TEXT NOT NULL, "user" TEXT NOT NULL,
    -- wacore's DeviceListRecord, serialised with serde_json.
    record BYTEA NOT NULL,
    PRIMARY KEY (device_key, "user")
);

CREATE TABLE wa_group_metadata (
    device_key TEXT NOT NULL, group_jid TEXT NOT NULL, blob BYTEA NOT NULL,
    PRIMARY KEY (device_key, group_jid)
);

CREATE TABLE wa_tc_tokens (
    device_key TEXT NOT NULL, jid TEXT NOT NULL, token BYTEA NOT NULL,
    token_timestamp BIGINT NOT NULL, sender_timestamp BIGINT,
    PRIMARY KEY (device_key, jid)
);

CREATE TABLE wa_sent_messages (
    device_key TEXT NOT NULL, chat_jid TEXT NOT NULL, message_id TEXT NOT NULL,
    payload BYTEA NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (device_key, chat_jid, message_id)
);

CREATE TABLE wa_pending_inbound (
    device_key TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, id TEXT NOT NULL,
    message BYTEA NOT NULL, inserted_at BIGINT NOT NULL,
    PRIMARY KEY (device_key, chat, sender, id)
);

CREATE TABLE wa_msg_secrets (
    device_key TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, msg_id TEXT NOT NULL,
    secret BYTEA NOT NULL,
    -- 0 = never expires.
    expires_at BIGINT NOT NULL, message_ts BIGINT NOT NULL,
    PRIMARY KEY (device_key, chat, sender, msg_id)
);
