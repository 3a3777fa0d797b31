-- whatsapp-rust's protocol state for every device, in wagate's own SQLite file (beside
-- its messages and events: one file to back up, no descriptor per device). The same
-- tables as the PostgreSQL schema (../migrations), in SQLite's dialect; every row is
-- scoped by `device_key` (the device's uid), the first column of every primary key.
-- Writes go through wagate's single writer, fenced by the device's lease
-- (`device_leases`), so no table for owners is needed here.

CREATE TABLE wa_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_key TEXT NOT NULL UNIQUE,
    -- wacore's Device, serialised with serde_json (its own serde derive).
    data BLOB NOT NULL
);

CREATE TABLE wa_identities (
    device_key TEXT NOT NULL, address TEXT NOT NULL, key BLOB NOT NULL,
    PRIMARY KEY (device_key, address)
) WITHOUT ROWID;

CREATE TABLE wa_sessions (
    device_key TEXT NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (device_key, address)
);

CREATE TABLE wa_prekeys (
    device_key TEXT NOT NULL, id INTEGER NOT NULL, record BLOB NOT NULL,
    uploaded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_key, id)
) WITHOUT ROWID;

CREATE TABLE wa_signed_prekeys (
    device_key TEXT NOT NULL, id INTEGER NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (device_key, id)
);

CREATE TABLE wa_sender_keys (
    device_key TEXT NOT NULL, address TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (device_key, address)
);

CREATE TABLE wa_app_state_sync_keys (
    device_key TEXT NOT NULL, key_id BLOB NOT NULL,
    key_data BLOB NOT NULL, fingerprint BLOB NOT NULL, timestamp INTEGER NOT NULL,
    -- Raised on every set (one past the device's highest), so "the most recently stored
    -- key" is the highest seq. The single writer makes the max-plus-one race-free.
    seq INTEGER NOT NULL,
    PRIMARY KEY (device_key, key_id)
);

CREATE TABLE wa_app_state_versions (
    device_key TEXT NOT NULL, name TEXT NOT NULL,
    -- wacore's HashState, serialised with serde_json.
    state BLOB NOT NULL,
    PRIMARY KEY (device_key, name)
);

CREATE TABLE wa_app_state_mutation_macs (
    device_key TEXT NOT NULL, name TEXT NOT NULL, index_mac BLOB NOT NULL,
    version INTEGER NOT NULL, value_mac BLOB NOT NULL,
    PRIMARY KEY (device_key, name, index_mac)
) WITHOUT ROWID;

CREATE TABLE wa_sender_key_devices (
    device_key TEXT NOT NULL, group_jid TEXT NOT NULL, device_jid TEXT NOT NULL,
    has_key INTEGER NOT NULL,
    PRIMARY KEY (device_key, group_jid, device_jid)
) WITHOUT ROWID;
CREATE INDEX wa_sender_key_devices_by_device ON wa_sender_key_devices (device_key, device_jid);

CREATE TABLE wa_lid_pn_mappings (
    device_key TEXT NOT NULL, lid TEXT NOT NULL, phone_number TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, learning_source TEXT NOT NULL,
    PRIMARY KEY (device_key, lid)
) WITHOUT ROWID;
CREATE INDEX wa_lid_pn_mappings_by_phone ON wa_lid_pn_mappings (device_key, phone_number, updated_at DESC);

CREATE TABLE wa_base_keys (
    device_key TEXT NOT NULL, address TEXT NOT NULL, message_id TEXT NOT NULL,
    base_key BLOB NOT NULL,
    PRIMARY KEY (device_key, address, message_id)
) WITHOUT ROWID;

CREATE TABLE wa_device_lists (
    device_key TEXT NOT NULL, "user" TEXT NOT NULL,
    -- wacore's DeviceListRecord, serialised with serde_json.
    record BLOB NOT NULL,
    PRIMARY KEY (device_key, "user")
);

CREATE TABLE wa_group_metadata (
    device_key TEXT NOT NULL, group_jid TEXT NOT NULL, blob BLOB NOT NULL,
    PRIMARY KEY (device_key, group_jid)
);

CREATE TABLE wa_tc_tokens (
    device_key TEXT NOT NULL, jid TEXT NOT NULL, token BLOB NOT NULL,
    token_timestamp INTEGER NOT NULL, sender_timestamp INTEGER,
    PRIMARY KEY (device_key, jid)
) WITHOUT ROWID;

CREATE TABLE wa_sent_messages (
    device_key TEXT NOT NULL, chat_jid TEXT NOT NULL, message_id TEXT NOT NULL,
    payload BLOB NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (device_key, chat_jid, message_id)
);

CREATE TABLE wa_pending_inbound (
    device_key TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, id TEXT NOT NULL,
    message BLOB NOT NULL, inserted_at INTEGER NOT NULL,
    PRIMARY KEY (device_key, chat, sender, id)
);

CREATE TABLE wa_msg_secrets (
    device_key TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL, msg_id TEXT NOT NULL,
    secret BLOB NOT NULL,
    -- 0 = never expires.
    expires_at INTEGER NOT NULL, message_ts INTEGER NOT NULL,
    PRIMARY KEY (device_key, chat, sender, msg_id)
) WITHOUT ROWID;
