//! [`PgBackend`]: whatsapp-rust's storage `Backend` on PostgreSQL, one device per backend,
//! all devices in the same tables (every row carries the backend's device key).
//!
//! Semantics follow wacore's in-memory backend and whatsapp-rust's SQLite store; where the
//! trait asks for atomicity (taking a sent message, tc-token upserts, batches) it is one
//! statement or one transaction here. Every write goes through [`PgBackend::begin_write`],
//! the single place where the [`Fence`] is checked.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{PgPool, Postgres, Row, Transaction};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::serde_json;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result, StoreError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry,
};

use crate::Fence;

/// This crate's own migrations table: the main PostgreSQL store will run its own sqlx
/// migrations on the same database, and one shared `_sqlx_migrations` table would make
/// each migrator reject the other's entries as unknown.
const MIGRATIONS_TABLE: &str = "_wagate_wa_storage_migrations";

/// whatsapp-rust's `Backend` for one device, on a PostgreSQL pool shared by all devices.
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
    device_key: Arc<str>,
    fence: Option<Fence>,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn ser(e: serde_json::Error) -> StoreError {
    StoreError::Serialization(Box::new(e))
}

fn key32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| StoreError::Validation(format!("{what} has {len} bytes, not 32")))
}

/// Protocol ids are u32; PostgreSQL has no unsigned type, BIGINT holds them all.
fn ids(ids: &[u32]) -> Vec<i64> {
    ids.iter().map(|&id| i64::from(id)).collect()
}

fn id_u32(id: i64) -> Result<u32> {
    u32::try_from(id).map_err(|_| StoreError::Validation(format!("stored id {id} is not a u32")))
}

fn count(rows: u64) -> u32 {
    u32::try_from(rows).unwrap_or(u32::MAX)
}

/// Every table holding a device's protocol state (all but `wa_device_owner`).
const DEVICE_TABLES: &[&str] = &[
    "wa_devices",
    "wa_identities",
    "wa_sessions",
    "wa_prekeys",
    "wa_signed_prekeys",
    "wa_sender_keys",
    "wa_app_state_sync_keys",
    "wa_app_state_versions",
    "wa_app_state_mutation_macs",
    "wa_sender_key_devices",
    "wa_lid_pn_mappings",
    "wa_base_keys",
    "wa_device_lists",
    "wa_group_metadata",
    "wa_tc_tokens",
    "wa_sent_messages",
    "wa_pending_inbound",
    "wa_msg_secrets",
];

impl PgBackend {
    /// The backend of device `device_key` (any stable, unique name: wagate uses the
    /// device's uid). Nothing is written until the protocol crate writes.
    pub fn new(pool: PgPool, device_key: &str) -> Self {
        Self {
            pool,
            device_key: Arc::from(device_key),
            fence: None,
        }
    }

    /// The same backend, refusing every write unless `fence` is still the device's current
    /// epoch in `wa_device_owner` (see [`Fence`]).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    pub fn device_key(&self) -> &str {
        &self.device_key
    }

    /// Deletes everything stored for `device_key` (the device was deleted: its keys must
    /// not outlive it), in one transaction. Its fencing row stays, so a node still
    /// holding an old epoch cannot write the keys back.
    pub async fn delete_device(
        pool: &PgPool,
        device_key: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        let mut tx = pool.begin().await?;
        for table in DEVICE_TABLES {
            // The table names are the constants above, never input.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE device_key = $1"
            )))
            .bind(device_key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Apply the crate's migrations (`migrations/`, embedded). Safe when several nodes
    /// start at once: sqlx's migrator takes `pg_advisory_lock` (keyed by the database
    /// name, sqlx-postgres 0.9 `migrate.rs`) on its connection before reading what is
    /// applied, so the others wait and then find nothing left to do.
    pub async fn migrate(pool: &PgPool) -> std::result::Result<(), sqlx::migrate::MigrateError> {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator.run(pool).await
    }

    /// A transaction for a write: when fenced, it first locks the owner row `FOR SHARE` and
    /// fails unless the epoch is still ours, so a takeover cannot slip in before commit.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(fence) = self.fence {
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT epoch FROM wa_device_owner WHERE device_key = $1 FOR SHARE",
            )
            .bind(&*self.device_key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if current != Some(fence.epoch) {
                return Err(StoreError::Validation(format!(
                    "device {} is fenced: this node's epoch {} is no longer current ({})",
                    self.device_key,
                    fence.epoch,
                    current.map_or_else(|| "no owner".to_owned(), |e| format!("now {e}")),
                )));
            }
        }
        Ok(tx)
    }

    /// One fenced write statement in its own transaction.
    async fn write(
        &self,
        query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = query.execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected())
    }

    /// Upserts (address, record) rows with `sql` (`$1` key, `$2` address, `$3` record) in one
    /// fenced transaction: the batch methods of sessions and sender keys.
    async fn upsert_by_address(&self, sql: &'static str, rows: &[(Arc<str>, Bytes)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (address, record) in rows {
            sqlx::query(sql)
                .bind(self.key())
                .bind(&**address)
                .bind(&record[..])
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    fn key(&self) -> &str {
        &self.device_key
    }
}

const UPSERT_IDENTITY: &str =
    "INSERT INTO wa_identities (device_key, address, key) VALUES ($1, $2, $3)
     ON CONFLICT (device_key, address) DO UPDATE SET key = EXCLUDED.key";
const UPSERT_SESSION: &str =
    "INSERT INTO wa_sessions (device_key, address, record) VALUES ($1, $2, $3)
     ON CONFLICT (device_key, address) DO UPDATE SET record = EXCLUDED.record";
const UPSERT_PREKEY: &str = "INSERT INTO wa_prekeys (device_key, id, record, uploaded) VALUES ($1, $2, $3, $4)
     ON CONFLICT (device_key, id) DO UPDATE SET record = EXCLUDED.record, uploaded = EXCLUDED.uploaded";
const UPSERT_SENDER_KEY: &str =
    "INSERT INTO wa_sender_keys (device_key, address, record) VALUES ($1, $2, $3)
     ON CONFLICT (device_key, address) DO UPDATE SET record = EXCLUDED.record";
const UPSERT_LID: &str = "INSERT INTO wa_lid_pn_mappings
       (device_key, lid, phone_number, created_at, updated_at, learning_source)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (device_key, lid) DO UPDATE SET phone_number = EXCLUDED.phone_number,
       updated_at = EXCLUDED.updated_at, learning_source = EXCLUDED.learning_source";
const UPSERT_DEVICE_LIST: &str =
    "INSERT INTO wa_device_lists (device_key, \"user\", record) VALUES ($1, $2, $3)
     ON CONFLICT (device_key, \"user\") DO UPDATE SET record = EXCLUDED.record";
const UPSERT_PENDING: &str =
    "INSERT INTO wa_pending_inbound (device_key, chat, sender, id, message, inserted_at)
     VALUES ($1, $2, $3, $4, $5, extract(epoch FROM now())::BIGINT)
     ON CONFLICT (device_key, chat, sender, id)
     DO UPDATE SET message = EXCLUDED.message, inserted_at = EXCLUDED.inserted_at";
const DELETE_PENDING: &str = "DELETE FROM wa_pending_inbound WHERE device_key = $1 AND chat = $2 AND sender = $3 AND id = $4";

fn lid_entry(row: &sqlx::postgres::PgRow) -> Result<LidPnMappingEntry> {
    Ok(LidPnMappingEntry {
        lid: row.try_get("lid").map_err(db)?,
        phone_number: row.try_get("phone_number").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
        learning_source: row.try_get("learning_source").map_err(db)?,
    })
}

#[async_trait]
impl SignalStore for PgBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.write(
            sqlx::query(UPSERT_IDENTITY)
                .bind(self.key())
                .bind(address)
                .bind(&key[..]),
        )
        .await?;
        Ok(())
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (address, key) in identities {
            sqlx::query(UPSERT_IDENTITY)
                .bind(self.key())
                .bind(&**address)
                .bind(&key[..])
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let key: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT key FROM wa_identities WHERE device_key = $1 AND address = $2",
        )
        .bind(self.key())
        .bind(address)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        key.map(|k| key32(k, "identity key")).transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_identities WHERE device_key = $1 AND address = $2")
                .bind(self.key())
                .bind(address),
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        let record: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM wa_sessions WHERE device_key = $1 AND address = $2",
        )
        .bind(self.key())
        .bind(address)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(record.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.write(
            sqlx::query(UPSERT_SESSION)
                .bind(self.key())
                .bind(address)
                .bind(session),
        )
        .await?;
        Ok(())
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.upsert_by_address(UPSERT_SESSION, sessions).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_sessions WHERE device_key = $1 AND address = $2")
                .bind(self.key())
                .bind(address),
        )
        .await?;
        Ok(())
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM wa_sessions WHERE device_key = $1 AND address = $2)",
        )
        .bind(self.key())
        .bind(address)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Addresses are `user@server` or `user:device@server`: compare the part before the
        // first ':' or '@' exactly (no LIKE, so '_' or '%' in a user cannot widen it).
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM wa_sessions
                            WHERE device_key = $1 AND split_part(split_part(address, '@', 1), ':', 1) = $2)
                 OR EXISTS (SELECT 1 FROM wa_identities
                            WHERE device_key = $1 AND split_part(split_part(address, '@', 1), ':', 1) = $2)",
        )
        .bind(self.key())
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.write(
            sqlx::query(UPSERT_PREKEY)
                .bind(self.key())
                .bind(i64::from(id))
                .bind(record)
                .bind(uploaded),
        )
        .await?;
        Ok(())
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        // One statement for the batch (a fresh device stores 812 keys): arrays unnested.
        let keys = crate::last_per_id(keys);
        if keys.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = keys.iter().map(|(id, _)| i64::from(*id)).collect();
        let records: Vec<&[u8]> = keys.iter().map(|(_, r)| &r[..]).collect();
        self.write(
            sqlx::query(
                "INSERT INTO wa_prekeys (device_key, id, record, uploaded) \
                 SELECT $1, k.id, k.record, $4 FROM UNNEST($2::BIGINT[], $3::BYTEA[]) AS k(id, record) \
                 ON CONFLICT (device_key, id) DO UPDATE \
                 SET record = excluded.record, uploaded = excluded.uploaded",
            )
            .bind(self.key())
            .bind(ids)
            .bind(records)
            .bind(uploaded),
        )
        .await?;
        Ok(())
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        let record: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT record FROM wa_prekeys WHERE device_key = $1 AND id = $2")
                .bind(self.key())
                .bind(i64::from(id))
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(record.map(Bytes::from))
    }

    async fn load_prekeys_batch(&self, wanted: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, record FROM wa_prekeys WHERE device_key = $1 AND id = ANY($2) ORDER BY id",
        )
        .bind(self.key())
        .bind(ids(wanted))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(id, record)| Ok((id_u32(id)?, Bytes::from(record))))
            .collect()
    }

    async fn mark_prekeys_uploaded(&self, marked: &[u32]) -> Result<()> {
        // UPDATE, never upsert: a key consumed meanwhile must stay deleted.
        self.write(
            sqlx::query(
                "UPDATE wa_prekeys SET uploaded = TRUE WHERE device_key = $1 AND id = ANY($2)",
            )
            .bind(self.key())
            .bind(ids(marked)),
        )
        .await?;
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_prekeys WHERE device_key = $1 AND id = $2")
                .bind(self.key())
                .bind(i64::from(id)),
        )
        .await?;
        Ok(())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM wa_prekeys WHERE device_key = $1")
                .bind(self.key())
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
        id_u32(max.unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_signed_prekeys (device_key, id, record) VALUES ($1, $2, $3)
                 ON CONFLICT (device_key, id) DO UPDATE SET record = EXCLUDED.record",
            )
            .bind(self.key())
            .bind(i64::from(id))
            .bind(record),
        )
        .await?;
        Ok(())
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT record FROM wa_signed_prekeys WHERE device_key = $1 AND id = $2")
            .bind(self.key())
            .bind(i64::from(id))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, record FROM wa_signed_prekeys WHERE device_key = $1 ORDER BY id",
        )
        .bind(self.key())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(id, record)| Ok((id_u32(id)?, record)))
            .collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_signed_prekeys WHERE device_key = $1 AND id = $2")
                .bind(self.key())
                .bind(i64::from(id)),
        )
        .await?;
        Ok(())
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.write(
            sqlx::query(UPSERT_SENDER_KEY)
                .bind(self.key())
                .bind(address)
                .bind(record),
        )
        .await?;
        Ok(())
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        self.upsert_by_address(UPSERT_SENDER_KEY, sender_keys).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT record FROM wa_sender_keys WHERE device_key = $1 AND address = $2",
        )
        .bind(self.key())
        .bind(address)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_sender_keys WHERE device_key = $1 AND address = $2")
                .bind(self.key())
                .bind(address),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AppSyncStore for PgBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        let row: Option<(Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT key_data, fingerprint, timestamp FROM wa_app_state_sync_keys
             WHERE device_key = $1 AND key_id = $2",
        )
        .bind(self.key())
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(
            row.map(|(key_data, fingerprint, timestamp)| AppStateSyncKey {
                key_data,
                fingerprint,
                timestamp,
            }),
        )
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_app_state_sync_keys (device_key, key_id, key_data, fingerprint, timestamp)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_key, key_id) DO UPDATE SET key_data = EXCLUDED.key_data,
                   fingerprint = EXCLUDED.fingerprint, timestamp = EXCLUDED.timestamp,
                   seq = nextval('wa_app_state_sync_keys_seq')",
            )
            .bind(self.key())
            .bind(key_id)
            .bind(key.key_data)
            .bind(key.fingerprint)
            .bind(key.timestamp),
        )
        .await?;
        Ok(())
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        let state: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT state FROM wa_app_state_versions WHERE device_key = $1 AND name = $2",
        )
        .bind(self.key())
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match state {
            Some(state) => serde_json::from_slice(&state).map_err(ser),
            None => Ok(HashState::default()),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let state = serde_json::to_vec(&state).map_err(ser)?;
        self.write(
            sqlx::query(
                "INSERT INTO wa_app_state_versions (device_key, name, state) VALUES ($1, $2, $3)
                 ON CONFLICT (device_key, name) DO UPDATE SET state = EXCLUDED.state",
            )
            .bind(self.key())
            .bind(name)
            .bind(state),
        )
        .await?;
        Ok(())
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let version = i64::try_from(version).map_err(|_| {
            StoreError::Validation(format!("app state version {version} too large"))
        })?;
        let mut tx = self.begin_write().await?;
        for m in mutations {
            sqlx::query(
                "INSERT INTO wa_app_state_mutation_macs (device_key, name, index_mac, version, value_mac)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_key, name, index_mac)
                 DO UPDATE SET version = EXCLUDED.version, value_mac = EXCLUDED.value_mac",
            )
            .bind(self.key())
            .bind(name)
            .bind(&m.index_mac)
            .bind(version)
            .bind(&m.value_mac)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT value_mac FROM wa_app_state_mutation_macs
             WHERE device_key = $1 AND name = $2 AND index_mac = $3",
        )
        .bind(self.key())
        .bind(name)
        .bind(index_mac)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        let wanted: Vec<Vec<u8>> = index_macs.iter().map(|m| m.to_vec()).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT index_mac, value_mac FROM wa_app_state_mutation_macs
             WHERE device_key = $1 AND name = $2 AND index_mac = ANY($3)",
        )
        .bind(self.key())
        .bind(name)
        .bind(wanted)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(index_mac, value_mac)| Ok((key32(index_mac, "index MAC")?, value_mac)))
            .collect()
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        self.write(
            sqlx::query(
                "DELETE FROM wa_app_state_mutation_macs
                 WHERE device_key = $1 AND name = $2 AND index_mac = ANY($3)",
            )
            .bind(self.key())
            .bind(name)
            .bind(index_macs),
        )
        .await?;
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.write(
            sqlx::query(
                "DELETE FROM wa_app_state_mutation_macs WHERE device_key = $1 AND name = $2",
            )
            .bind(self.key())
            .bind(name),
        )
        .await?;
        Ok(())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT key_id FROM wa_app_state_sync_keys WHERE device_key = $1
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(self.key())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }
}

#[async_trait]
impl ProtocolStore for PgBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        sqlx::query_as(
            "SELECT device_jid, has_key FROM wa_sender_key_devices
             WHERE device_key = $1 AND group_jid = $2 ORDER BY device_jid",
        )
        .bind(self.key())
        .bind(group_jid)
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (device_jid, has_key) in entries {
            sqlx::query(
                "INSERT INTO wa_sender_key_devices (device_key, group_jid, device_jid, has_key)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device_key, group_jid, device_jid) DO UPDATE SET has_key = EXCLUDED.has_key",
            )
            .bind(self.key())
            .bind(group_jid)
            .bind(*device_jid)
            .bind(*has_key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.write(
            sqlx::query(
                "DELETE FROM wa_sender_key_devices WHERE device_key = $1 AND group_jid = $2",
            )
            .bind(self.key())
            .bind(group_jid),
        )
        .await?;
        Ok(())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let jids: Vec<String> = device_jids.iter().map(|j| (*j).to_owned()).collect();
        self.write(
            sqlx::query(
                "DELETE FROM wa_sender_key_devices WHERE device_key = $1 AND device_jid = ANY($2)",
            )
            .bind(self.key())
            .bind(jids),
        )
        .await?;
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_sender_key_devices WHERE device_key = $1").bind(self.key()),
        )
        .await?;
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        sqlx::query("SELECT * FROM wa_lid_pn_mappings WHERE device_key = $1 AND lid = $2")
            .bind(self.key())
            .bind(lid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(lid_entry)
            .transpose()
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        sqlx::query(
            "SELECT * FROM wa_lid_pn_mappings WHERE device_key = $1 AND phone_number = $2
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(self.key())
        .bind(phone)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(lid_entry)
        .transpose()
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for e in entries {
            sqlx::query(UPSERT_LID)
                .bind(self.key())
                .bind(&e.lid)
                .bind(&e.phone_number)
                .bind(e.created_at)
                .bind(e.updated_at)
                .bind(&e.learning_source)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        sqlx::query("SELECT * FROM wa_lid_pn_mappings WHERE device_key = $1 ORDER BY lid")
            .bind(self.key())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(lid_entry)
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_base_keys (device_key, address, message_id, base_key) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device_key, address, message_id) DO UPDATE SET base_key = EXCLUDED.base_key",
            )
            .bind(self.key())
            .bind(address)
            .bind(message_id)
            .bind(base_key),
        )
        .await?;
        Ok(())
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM wa_base_keys WHERE device_key = $1 AND address = $2
                            AND message_id = $3 AND base_key = $4)",
        )
        .bind(self.key())
        .bind(address)
        .bind(message_id)
        .bind(current_base_key)
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.write(
            sqlx::query(
                "DELETE FROM wa_base_keys WHERE device_key = $1 AND address = $2 AND message_id = $3",
            )
            .bind(self.key())
            .bind(address)
            .bind(message_id),
        )
        .await?;
        Ok(())
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for record in &records {
            let bytes = serde_json::to_vec(record).map_err(ser)?;
            sqlx::query(UPSERT_DEVICE_LIST)
                .bind(self.key())
                .bind(&record.user)
                .bind(bytes)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let record: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT record FROM wa_device_lists WHERE device_key = $1 AND \"user\" = $2",
        )
        .bind(self.key())
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        record
            .map(|r| serde_json::from_slice(&r).map_err(ser))
            .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_device_lists WHERE device_key = $1 AND \"user\" = $2")
                .bind(self.key())
                .bind(user),
        )
        .await?;
        Ok(())
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT blob FROM wa_group_metadata WHERE device_key = $1 AND group_jid = $2",
        )
        .bind(self.key())
        .bind(group_jid)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_group_metadata (device_key, group_jid, blob) VALUES ($1, $2, $3)
                 ON CONFLICT (device_key, group_jid) DO UPDATE SET blob = EXCLUDED.blob",
            )
            .bind(self.key())
            .bind(group_jid)
            .bind(blob),
        )
        .await?;
        Ok(())
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_group_metadata WHERE device_key = $1 AND group_jid = $2")
                .bind(self.key())
                .bind(group_jid),
        )
        .await?;
        Ok(())
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        let row: Option<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens
             WHERE device_key = $1 AND jid = $2",
        )
        .bind(self.key())
        .bind(jid)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(
            row.map(|(token, token_timestamp, sender_timestamp)| TcTokenEntry {
                token,
                token_timestamp,
                sender_timestamp,
            }),
        )
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_key, jid) DO UPDATE SET token = EXCLUDED.token,
                   token_timestamp = EXCLUDED.token_timestamp, sender_timestamp = EXCLUDED.sender_timestamp",
            )
            .bind(self.key())
            .bind(jid)
            .bind(&entry.token)
            .bind(entry.token_timestamp)
            .bind(entry.sender_timestamp),
        )
        .await?;
        Ok(())
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.write(
            sqlx::query("DELETE FROM wa_tc_tokens WHERE device_key = $1 AND jid = $2")
                .bind(self.key())
                .bind(jid),
        )
        .await?;
        Ok(())
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT jid FROM wa_tc_tokens WHERE device_key = $1 ORDER BY jid")
            .bind(self.key())
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let deleted = self
            .write(
                sqlx::query(
                    "DELETE FROM wa_tc_tokens WHERE device_key = $1
                       AND (length(token) = 0 OR token_timestamp < $2)
                       AND (sender_timestamp IS NULL OR sender_timestamp < $3)",
                )
                .bind(self.key())
                .bind(token_cutoff)
                .bind(sender_cutoff),
            )
            .await?;
        Ok(count(deleted))
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        // One atomic upsert: the sender bucket only moves forward, token bytes are kept.
        self.write(
            sqlx::query(
                "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
                 VALUES ($1, $2, ''::BYTEA, $3, $3)
                 ON CONFLICT (device_key, jid) DO UPDATE SET sender_timestamp =
                   GREATEST(COALESCE(wa_tc_tokens.sender_timestamp, EXCLUDED.sender_timestamp),
                            EXCLUDED.sender_timestamp)",
            )
            .bind(self.key())
            .bind(jid)
            .bind(sender_timestamp),
        )
        .await?;
        Ok(())
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        // One atomic upsert, newer-wins; the sender bucket is left as it is.
        self.write(
            sqlx::query(
                "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
                 VALUES ($1, $2, $3, $4, NULL)
                 ON CONFLICT (device_key, jid) DO UPDATE
                   SET token = EXCLUDED.token, token_timestamp = EXCLUDED.token_timestamp
                   WHERE length(wa_tc_tokens.token) = 0
                      OR EXCLUDED.token_timestamp >= wa_tc_tokens.token_timestamp",
            )
            .bind(self.key())
            .bind(jid)
            .bind(token)
            .bind(token_timestamp),
        )
        .await?;
        Ok(())
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.write(
            sqlx::query(
                "INSERT INTO wa_sent_messages (device_key, chat_jid, message_id, payload, created_at)
                 VALUES ($1, $2, $3, $4, extract(epoch FROM now())::BIGINT)
                 ON CONFLICT (device_key, chat_jid, message_id)
                 DO UPDATE SET payload = EXCLUDED.payload, created_at = EXCLUDED.created_at",
            )
            .bind(self.key())
            .bind(chat_jid)
            .bind(message_id)
            .bind(payload),
        )
        .await?;
        Ok(())
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        // Delete and return in one statement: of two concurrent takes, one gets the row.
        let mut tx = self.begin_write().await?;
        let payload: Option<Vec<u8>> = sqlx::query_scalar(
            "DELETE FROM wa_sent_messages WHERE device_key = $1 AND chat_jid = $2 AND message_id = $3
             RETURNING payload",
        )
        .bind(self.key())
        .bind(chat_jid)
        .bind(message_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(payload)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                sqlx::query(
                    "DELETE FROM wa_sent_messages WHERE device_key = $1 AND created_at < $2",
                )
                .bind(self.key())
                .bind(cutoff_timestamp),
            )
            .await?;
        Ok(count(deleted))
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        self.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT message FROM wa_pending_inbound
             WHERE device_key = $1 AND chat = $2 AND sender = $3 AND id = $4",
        )
        .bind(self.key())
        .bind(chat)
        .bind(sender)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                sqlx::query(
                    "DELETE FROM wa_pending_inbound WHERE device_key = $1 AND inserted_at < $2",
                )
                .bind(self.key())
                .bind(cutoff_timestamp),
            )
            .await?;
        Ok(count(deleted))
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for row in rows {
            sqlx::query(UPSERT_PENDING)
                .bind(self.key())
                .bind(row.chat)
                .bind(row.sender)
                .bind(row.id)
                .bind(row.message)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for key in keys {
            sqlx::query(DELETE_PENDING)
                .bind(self.key())
                .bind(key.chat)
                .bind(key.sender)
                .bind(key.id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl MsgSecretStore for PgBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        // The conflict merge is wacore's merge_msg_secret_expiry / _message_ts in SQL:
        // 0 ("never") wins for the deadline, else the later one; the later parent time wins.
        let mut tx = self.begin_write().await?;
        for e in &entries {
            sqlx::query(
                "INSERT INTO wa_msg_secrets (device_key, chat, sender, msg_id, secret, expires_at, message_ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (device_key, chat, sender, msg_id) DO UPDATE SET
                   secret = EXCLUDED.secret,
                   expires_at = CASE WHEN wa_msg_secrets.expires_at = 0 OR EXCLUDED.expires_at = 0 THEN 0
                                     ELSE GREATEST(wa_msg_secrets.expires_at, EXCLUDED.expires_at) END,
                   message_ts = GREATEST(wa_msg_secrets.message_ts, EXCLUDED.message_ts)",
            )
            .bind(self.key())
            .bind(&*e.chat)
            .bind(&*e.sender)
            .bind(&*e.msg_id)
            .bind(&e.secret[..])
            .bind(e.expires_at)
            .bind(e.message_ts)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(entries.len())
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        sqlx::query_as(
            "SELECT secret, message_ts FROM wa_msg_secrets
             WHERE device_key = $1 AND chat = $2 AND sender = $3 AND msg_id = $4",
        )
        .bind(self.key())
        .bind(chat)
        .bind(sender)
        .bind(msg_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .write(
                sqlx::query(
                    "DELETE FROM wa_msg_secrets WHERE device_key = $1 AND expires_at <> 0 AND expires_at <= $2",
                )
                .bind(self.key())
                .bind(cutoff_timestamp),
            )
            .await?;
        Ok(count(deleted))
    }
}

#[async_trait]
impl DeviceStore for PgBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        let data = serde_json::to_vec(device).map_err(ser)?;
        self.write(
            sqlx::query(
                "INSERT INTO wa_devices (device_key, data) VALUES ($1, $2)
                 ON CONFLICT (device_key) DO UPDATE SET data = EXCLUDED.data",
            )
            .bind(self.key())
            .bind(data),
        )
        .await?;
        Ok(())
    }

    async fn load(&self) -> Result<Option<Device>> {
        let data: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM wa_devices WHERE device_key = $1")
                .bind(self.key())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        data.map(|d| serde_json::from_slice(&d).map_err(ser))
            .transpose()
    }

    async fn exists(&self) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wa_devices WHERE device_key = $1)")
            .bind(self.key())
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    /// One backend is one device: this materialises the device's row (a fresh `Device`,
    /// as wacore's in-memory backend does) if it is missing, and returns its numeric id.
    async fn create(&self) -> Result<i32> {
        let data = serde_json::to_vec(&Device::new()).map_err(ser)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO wa_devices (device_key, data) VALUES ($1, $2) ON CONFLICT (device_key) DO NOTHING",
        )
        .bind(self.key())
        .bind(data)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let id: i32 = sqlx::query_scalar("SELECT id FROM wa_devices WHERE device_key = $1")
            .bind(self.key())
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn resource_report(&self) -> whatsapp_rust::wacore::stats::StorageResourceReport {
        // The data lives in PostgreSQL, not in this process.
        whatsapp_rust::wacore::stats::StorageResourceReport {
            memory_bytes: Some(0),
            ..Default::default()
        }
    }
}
