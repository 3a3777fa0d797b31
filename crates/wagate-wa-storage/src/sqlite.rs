//! [`SqliteBackend`]: whatsapp-rust's storage `Backend` in wagate's own SQLite database,
//! one device per backend, every device in the same tables (issue 15, point 4: one file
//! to back up, and no file descriptors or page cache per device).
//!
//! SQLite has one writer at a time, and wagate's store already runs one writer that
//! batches every unit of work into a shared commit. A second connection writing protocol
//! state would contend with it for the file lock (SQLite's busy handler sleeps, stalling
//! the message pipeline behind every Signal-session save), so this backend does not write
//! itself: each write is a unit of work handed to a [`ProtocolWriter`] (wagate's writer),
//! which runs it in a transaction fenced by the device's lease and answers once it is
//! durable. Reads use a read-only pool on the same file, which WAL lets run beside the
//! writer; since a write returns only after its commit, a read that follows it sees it.
//!
//! Semantics and SQL follow [`PgBackend`](crate::PgBackend) (the same tables, the same
//! atomicity: `take_sent_message` deletes and returns in one statement, batches are one
//! transaction), in SQLite's dialect.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
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

/// This crate's own migrations table, beside wagate's `_sqlx_migrations` in the same file
/// (one shared table would make each migrator reject the other's entries as unknown).
const MIGRATIONS_TABLE: &str = "_wagate_wa_storage_migrations";

/// A future a unit of work returns, borrowing the writer's connection.
pub type WriteFuture<'c> =
    Pin<Box<dyn Future<Output = std::result::Result<Written, sqlx::Error>> + Send + 'c>>;

/// A unit of work: statements run on the writer's connection, inside a transaction the
/// writer opened (never `BEGIN`/`COMMIT` of its own).
pub type ProtocolWork = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c> + Send>;

/// What a unit of work reports back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// Rows changed by its statements.
    pub rows: u64,
    /// A value it read in the transaction (a deleted-and-returned payload, a row id).
    pub value: Option<Vec<u8>>,
    pub id: Option<i64>,
}

/// Why a unit of work was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefused {
    /// The device's lease is no longer held with this epoch: another holder drives it.
    Fenced,
    /// The database failed; the message says how.
    Failed(String),
}

/// Runs protocol-state writes: wagate's single SQLite writer, which knows the leases.
#[async_trait]
pub trait ProtocolWriter: Send + Sync {
    /// Runs `work` in a write transaction and answers once it is durably committed. With
    /// `epoch`, the transaction first checks that this node still holds `device_key`'s
    /// lease with that epoch and refuses (`Fenced`) otherwise; `None` writes unfenced
    /// (deleting a device's state).
    async fn write(
        &self,
        device_key: &str,
        epoch: Option<i64>,
        work: ProtocolWork,
    ) -> std::result::Result<Written, WriteRefused>;
}

/// whatsapp-rust's `Backend` for one device, in the SQLite database shared by all devices.
#[derive(Clone)]
pub struct SqliteBackend {
    read: SqlitePool,
    writer: Arc<dyn ProtocolWriter>,
    device_key: Arc<str>,
    epoch: Option<i64>,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("device_key", &self.device_key)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
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

fn id_u32(id: i64) -> Result<u32> {
    u32::try_from(id).map_err(|_| StoreError::Validation(format!("stored id {id} is not a u32")))
}

fn count(rows: u64) -> u32 {
    u32::try_from(rows).unwrap_or(u32::MAX)
}

/// A value bound to a statement a unit of work runs later (the work outlives the call,
/// so it owns its arguments).
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Blob(Vec<u8>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// One statement of a unit of work; the device key is always its first argument (`?1`).
struct Stmt {
    sql: &'static str,
    args: Vec<Arg>,
}

fn stmt(sql: &'static str, args: Vec<Arg>) -> Stmt {
    Stmt { sql, args }
}

fn bind(
    mut q: sqlx::query::Query<'_, Sqlite, SqliteArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'_, Sqlite, SqliteArguments> {
    for a in args {
        q = match a {
            Arg::Text(v) => q.bind(v),
            Arg::Blob(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
        };
    }
    q
}

/// Rows per multi-row statement: 4 parameters each stays far below SQLite's limit on
/// bound parameters (32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// Every table holding a device's protocol state.
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

/// The user part of a Signal address (`user@server` or `user:device@server`), as SQL over
/// the column `address`: the part before the first '@', then before the first ':'.
macro_rules! user_of_address {
    () => {
        "substr(substr(address, 1, instr(address || '@', '@') - 1), 1, \
         instr(substr(address, 1, instr(address || '@', '@') - 1) || ':', ':') - 1)"
    };
}

impl SqliteBackend {
    /// The backend of device `device_key` (wagate uses the device's uid): reads on `read`,
    /// writes through `writer`, each fenced by `epoch` when given.
    pub fn new(
        read: SqlitePool,
        writer: Arc<dyn ProtocolWriter>,
        device_key: &str,
        epoch: Option<i64>,
    ) -> Self {
        Self {
            read,
            writer,
            device_key: Arc::from(device_key),
            epoch,
        }
    }

    pub fn device_key(&self) -> &str {
        &self.device_key
    }

    /// This crate's SQLite migrations (`migrations-sqlite/`, embedded), with their own
    /// migrations table, for wagate's store to apply to its file before its writer starts.
    pub fn migrator() -> sqlx::migrate::Migrator {
        let mut migrator = sqlx::migrate!("./migrations-sqlite");
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        migrator
    }

    /// Deletes everything stored for the device (logged out, or deleted: its keys must not
    /// outlive it), in one unfenced transaction.
    pub async fn delete_device(
        writer: &dyn ProtocolWriter,
        device_key: &str,
    ) -> std::result::Result<(), WriteRefused> {
        let key = device_key.to_owned();
        writer
            .write(
                device_key,
                None,
                Box::new(move |conn| {
                    Box::pin(async move {
                        let mut rows = 0;
                        for table in DEVICE_TABLES {
                            // The table names are the constants above, never input.
                            rows += sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DELETE FROM {table} WHERE device_key = ?1"
                            )))
                            .bind(&key)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        }
                        Ok(Written {
                            rows,
                            ..Written::default()
                        })
                    })
                }),
            )
            .await
            .map(|_| ())
    }

    fn key(&self) -> &str {
        &self.device_key
    }

    /// One blob of this device's, found by `sql` with the device key as `?1` and `arg` as
    /// `?2`: the shape of most single-key reads.
    async fn blob(&self, sql: &'static str, arg: impl Into<Arg>) -> Result<Option<Vec<u8>>> {
        let row = bind(
            sqlx::query(sql).bind(self.key().to_owned()),
            vec![arg.into()],
        )
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.map(|r| r.try_get::<Vec<u8>, _>(0))
            .transpose()
            .map_err(db)
    }

    /// Runs `work` through the writer under this backend's fence.
    async fn run(&self, work: ProtocolWork) -> Result<Written> {
        self.writer
            .write(&self.device_key, self.epoch, work)
            .await
            .map_err(|refused| match refused {
                WriteRefused::Fenced => StoreError::Validation(format!(
                    "device {} is fenced: this node's epoch {} is no longer current",
                    self.device_key,
                    self.epoch.unwrap_or_default()
                )),
                WriteRefused::Failed(why) => StoreError::Database(why.into()),
            })
    }

    /// Runs `stmts` in order in one fenced transaction; the device key is bound first to
    /// each. Returns the rows they changed.
    async fn exec(&self, stmts: Vec<Stmt>) -> Result<u64> {
        if stmts.is_empty() {
            return Ok(0);
        }
        let key = self.key().to_owned();
        let written = self
            .run(Box::new(move |conn| {
                Box::pin(async move {
                    let mut rows = 0;
                    for Stmt { sql, args } in stmts {
                        let q = bind(sqlx::query(sql).bind(key.clone()), args);
                        rows += q.execute(&mut *conn).await?.rows_affected();
                    }
                    Ok(Written {
                        rows,
                        ..Written::default()
                    })
                })
            }))
            .await?;
        Ok(written.rows)
    }

    /// One statement in its own fenced transaction.
    async fn exec1(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64> {
        self.exec(vec![stmt(sql, args)]).await
    }

    /// `<head> ?device_key AND <column> IN (<values>) <tail>`: a read of several keys in
    /// one query (SQLite has no array parameters).
    fn in_list<T>(
        &self,
        head: &'static str,
        column: &'static str,
        values: impl IntoIterator<Item = T>,
        tail: &'static str,
    ) -> QueryBuilder<Sqlite>
    where
        T: 'static + for<'e> sqlx::Encode<'e, Sqlite> + sqlx::Type<Sqlite> + Send,
    {
        let mut qb = QueryBuilder::new(head);
        qb.push_bind(self.key().to_owned());
        qb.push(" AND ");
        qb.push(column);
        qb.push(" IN (");
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v);
        }
        qb.push(") ");
        qb.push(tail);
        qb
    }
}

const UPSERT_IDENTITY: &str =
    "INSERT INTO wa_identities (device_key, address, key) VALUES (?1, ?2, ?3)
     ON CONFLICT (device_key, address) DO UPDATE SET key = excluded.key";
const UPSERT_SESSION: &str =
    "INSERT INTO wa_sessions (device_key, address, record) VALUES (?1, ?2, ?3)
     ON CONFLICT (device_key, address) DO UPDATE SET record = excluded.record";
const UPSERT_PREKEY: &str = "INSERT INTO wa_prekeys (device_key, id, record, uploaded) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (device_key, id) DO UPDATE SET record = excluded.record, uploaded = excluded.uploaded";
const UPSERT_SENDER_KEY: &str =
    "INSERT INTO wa_sender_keys (device_key, address, record) VALUES (?1, ?2, ?3)
     ON CONFLICT (device_key, address) DO UPDATE SET record = excluded.record";
const UPSERT_LID: &str = "INSERT INTO wa_lid_pn_mappings
       (device_key, lid, phone_number, created_at, updated_at, learning_source)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (device_key, lid) DO UPDATE SET phone_number = excluded.phone_number,
       updated_at = excluded.updated_at, learning_source = excluded.learning_source";
const UPSERT_DEVICE_LIST: &str =
    "INSERT INTO wa_device_lists (device_key, \"user\", record) VALUES (?1, ?2, ?3)
     ON CONFLICT (device_key, \"user\") DO UPDATE SET record = excluded.record";
const UPSERT_PENDING: &str =
    "INSERT INTO wa_pending_inbound (device_key, chat, sender, id, message, inserted_at)
     VALUES (?1, ?2, ?3, ?4, ?5, CAST(strftime('%s', 'now') AS INTEGER))
     ON CONFLICT (device_key, chat, sender, id)
     DO UPDATE SET message = excluded.message, inserted_at = excluded.inserted_at";
const DELETE_PENDING: &str = "DELETE FROM wa_pending_inbound WHERE device_key = ?1 AND chat = ?2 AND sender = ?3 AND id = ?4";

fn lid_entry(row: &SqliteRow) -> Result<LidPnMappingEntry> {
    Ok(LidPnMappingEntry {
        lid: row.try_get("lid").map_err(db)?,
        phone_number: row.try_get("phone_number").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
        learning_source: row.try_get("learning_source").map_err(db)?,
    })
}

#[async_trait]
impl SignalStore for SqliteBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.exec1(UPSERT_IDENTITY, vec![address.into(), key[..].into()])
            .await?;
        Ok(())
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let stmts = identities
            .iter()
            .map(|(address, key)| stmt(UPSERT_IDENTITY, vec![(**address).into(), key[..].into()]))
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        let key = self
            .blob(
                "SELECT key FROM wa_identities WHERE device_key = ?1 AND address = ?2",
                address,
            )
            .await?;
        key.map(|k| key32(k, "identity key")).transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_identities WHERE device_key = ?1 AND address = ?2",
            vec![address.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        let record = self
            .blob(
                "SELECT record FROM wa_sessions WHERE device_key = ?1 AND address = ?2",
                address,
            )
            .await?;
        Ok(record.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.exec1(UPSERT_SESSION, vec![address.into(), session.into()])
            .await?;
        Ok(())
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let stmts = sessions
            .iter()
            .map(|(address, record)| {
                stmt(UPSERT_SESSION, vec![(**address).into(), record[..].into()])
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_sessions WHERE device_key = ?1 AND address = ?2",
            vec![address.into()],
        )
        .await?;
        Ok(())
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM wa_sessions WHERE device_key = ?1 AND address = ?2)",
        )
        .bind(self.key())
        .bind(address)
        .fetch_one(&self.read)
        .await
        .map_err(db)
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        // Compares the user part exactly (no LIKE, so '_' or '%' in a user cannot widen it).
        sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM wa_sessions WHERE device_key = ?1 AND ",
            user_of_address!(),
            " = ?2) OR EXISTS (SELECT 1 FROM wa_identities WHERE device_key = ?1 AND ",
            user_of_address!(),
            " = ?2)"
        ))
        .bind(self.key())
        .bind(user)
        .fetch_one(&self.read)
        .await
        .map_err(db)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.exec1(
            UPSERT_PREKEY,
            vec![id.into(), record.into(), uploaded.into()],
        )
        .await?;
        Ok(())
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        // Multi-row statements: a fresh device stores 812 keys, and one statement per key
        // through the single writer made first connects of many devices crawl.
        let rows: Vec<(i64, Vec<u8>)> = crate::last_per_id(keys)
            .into_iter()
            .map(|(id, record)| (i64::from(id), record.to_vec()))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let key = self.key().to_owned();
        self.run(Box::new(move |conn| {
            Box::pin(async move {
                let mut written = 0;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO wa_prekeys (device_key, id, record, uploaded) ",
                    );
                    qb.push_values(chunk, |mut row, (id, record)| {
                        row.push_bind(key.clone())
                            .push_bind(*id)
                            .push_bind(record.clone())
                            .push_bind(uploaded);
                    });
                    qb.push(
                        " ON CONFLICT (device_key, id) DO UPDATE \
                         SET record = excluded.record, uploaded = excluded.uploaded",
                    );
                    written += qb.build().execute(&mut *conn).await?.rows_affected();
                }
                Ok(Written {
                    rows: written,
                    ..Written::default()
                })
            })
        }))
        .await?;
        Ok(())
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        let record = self
            .blob(
                "SELECT record FROM wa_prekeys WHERE device_key = ?1 AND id = ?2",
                i64::from(id),
            )
            .await?;
        Ok(record.map(Bytes::from))
    }

    async fn load_prekeys_batch(&self, wanted: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = self.in_list(
            "SELECT id, record FROM wa_prekeys WHERE device_key = ",
            "id",
            wanted.iter().map(|&id| i64::from(id)),
            "ORDER BY id",
        );
        let rows: Vec<(i64, Vec<u8>)> = qb
            .build_query_as()
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(id, record)| Ok((id_u32(id)?, Bytes::from(record))))
            .collect()
    }

    async fn mark_prekeys_uploaded(&self, marked: &[u32]) -> Result<()> {
        // UPDATE, never upsert: a key consumed meanwhile must stay deleted.
        if marked.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = marked.iter().map(|&id| i64::from(id)).collect();
        let key = self.key().to_owned();
        self.run(Box::new(move |conn| {
            Box::pin(async move {
                let mut written = 0;
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut qb = QueryBuilder::<Sqlite>::new(
                        "UPDATE wa_prekeys SET uploaded = 1 WHERE device_key = ",
                    );
                    qb.push_bind(key.clone());
                    qb.push(" AND id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    written += qb.build().execute(&mut *conn).await?.rows_affected();
                }
                Ok(Written {
                    rows: written,
                    ..Written::default()
                })
            })
        }))
        .await?;
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_prekeys WHERE device_key = ?1 AND id = ?2",
            vec![id.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM wa_prekeys WHERE device_key = ?1")
                .bind(self.key())
                .fetch_one(&self.read)
                .await
                .map_err(db)?;
        id_u32(max.unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.exec1(
            "INSERT INTO wa_signed_prekeys (device_key, id, record) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_key, id) DO UPDATE SET record = excluded.record",
            vec![id.into(), record.into()],
        )
        .await?;
        Ok(())
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT record FROM wa_signed_prekeys WHERE device_key = ?1 AND id = ?2")
            .bind(self.key())
            .bind(i64::from(id))
            .fetch_optional(&self.read)
            .await
            .map_err(db)
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, record FROM wa_signed_prekeys WHERE device_key = ?1 ORDER BY id",
        )
        .bind(self.key())
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(id, record)| Ok((id_u32(id)?, record)))
            .collect()
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_signed_prekeys WHERE device_key = ?1 AND id = ?2",
            vec![id.into()],
        )
        .await?;
        Ok(())
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.exec1(UPSERT_SENDER_KEY, vec![address.into(), record.into()])
            .await?;
        Ok(())
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let stmts = sender_keys
            .iter()
            .map(|(address, record)| {
                stmt(
                    UPSERT_SENDER_KEY,
                    vec![(**address).into(), record[..].into()],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT record FROM wa_sender_keys WHERE device_key = ?1 AND address = ?2",
        )
        .bind(self.key())
        .bind(address)
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_sender_keys WHERE device_key = ?1 AND address = ?2",
            vec![address.into()],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl AppSyncStore for SqliteBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        let row: Option<(Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT key_data, fingerprint, timestamp FROM wa_app_state_sync_keys
             WHERE device_key = ?1 AND key_id = ?2",
        )
        .bind(self.key())
        .bind(key_id)
        .fetch_optional(&self.read)
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
        self.exec1(
            "INSERT INTO wa_app_state_sync_keys (device_key, key_id, key_data, fingerprint, timestamp, seq)
             VALUES (?1, ?2, ?3, ?4, ?5,
                     (SELECT coalesce(max(seq), 0) + 1 FROM wa_app_state_sync_keys WHERE device_key = ?1))
             ON CONFLICT (device_key, key_id) DO UPDATE SET key_data = excluded.key_data,
               fingerprint = excluded.fingerprint, timestamp = excluded.timestamp,
               seq = excluded.seq",
            vec![
                key_id.into(),
                key.key_data.into(),
                key.fingerprint.into(),
                key.timestamp.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        let state = self
            .blob(
                "SELECT state FROM wa_app_state_versions WHERE device_key = ?1 AND name = ?2",
                name,
            )
            .await?;
        match state {
            Some(state) => serde_json::from_slice(&state).map_err(ser),
            None => Ok(HashState::default()),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let state = serde_json::to_vec(&state).map_err(ser)?;
        self.exec1(
            "INSERT INTO wa_app_state_versions (device_key, name, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_key, name) DO UPDATE SET state = excluded.state",
            vec![name.into(), state.into()],
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
        let stmts = mutations
            .iter()
            .map(|m| {
                stmt(
                    "INSERT INTO wa_app_state_mutation_macs (device_key, name, index_mac, version, value_mac)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (device_key, name, index_mac)
                     DO UPDATE SET version = excluded.version, value_mac = excluded.value_mac",
                    vec![
                        name.into(),
                        m.index_mac[..].into(),
                        version.into(),
                        m.value_mac[..].into(),
                    ],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT value_mac FROM wa_app_state_mutation_macs
             WHERE device_key = ?1 AND name = ?2 AND index_mac = ?3",
        )
        .bind(self.key())
        .bind(name)
        .bind(index_mac)
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        if index_macs.is_empty() {
            return Ok(HashMap::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT index_mac, value_mac FROM wa_app_state_mutation_macs WHERE device_key = ",
        );
        qb.push_bind(self.key().to_owned());
        qb.push(" AND name = ");
        qb.push_bind(name.to_owned());
        qb.push(" AND index_mac IN (");
        let mut list = qb.separated(", ");
        for m in index_macs {
            list.push_bind(m.to_vec());
        }
        qb.push(")");
        let rows: Vec<(Vec<u8>, Vec<u8>)> = qb
            .build_query_as()
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|(index_mac, value_mac)| Ok((key32(index_mac, "index MAC")?, value_mac)))
            .collect()
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let stmts = index_macs
            .iter()
            .map(|m| {
                stmt(
                    "DELETE FROM wa_app_state_mutation_macs
                     WHERE device_key = ?1 AND name = ?2 AND index_mac = ?3",
                    vec![name.into(), m[..].into()],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_app_state_mutation_macs WHERE device_key = ?1 AND name = ?2",
            vec![name.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT key_id FROM wa_app_state_sync_keys WHERE device_key = ?1
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(self.key())
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }
}

#[async_trait]
impl ProtocolStore for SqliteBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        sqlx::query_as(
            "SELECT device_jid, has_key FROM wa_sender_key_devices
             WHERE device_key = ?1 AND group_jid = ?2 ORDER BY device_jid",
        )
        .bind(self.key())
        .bind(group_jid)
        .fetch_all(&self.read)
        .await
        .map_err(db)
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let stmts = entries
            .iter()
            .map(|(device_jid, has_key)| {
                stmt(
                    "INSERT INTO wa_sender_key_devices (device_key, group_jid, device_jid, has_key)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (device_key, group_jid, device_jid) DO UPDATE SET has_key = excluded.has_key",
                    vec![group_jid.into(), (*device_jid).into(), (*has_key).into()],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_sender_key_devices WHERE device_key = ?1 AND group_jid = ?2",
            vec![group_jid.into()],
        )
        .await?;
        Ok(())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        let stmts = device_jids
            .iter()
            .map(|jid| {
                stmt(
                    "DELETE FROM wa_sender_key_devices WHERE device_key = ?1 AND device_jid = ?2",
                    vec![(*jid).into()],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_sender_key_devices WHERE device_key = ?1",
            vec![],
        )
        .await?;
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        sqlx::query("SELECT * FROM wa_lid_pn_mappings WHERE device_key = ?1 AND lid = ?2")
            .bind(self.key())
            .bind(lid)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?
            .as_ref()
            .map(lid_entry)
            .transpose()
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        sqlx::query(
            "SELECT * FROM wa_lid_pn_mappings WHERE device_key = ?1 AND phone_number = ?2
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(self.key())
        .bind(phone)
        .fetch_optional(&self.read)
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
        let stmts = entries
            .iter()
            .map(|e| {
                stmt(
                    UPSERT_LID,
                    vec![
                        e.lid.as_str().into(),
                        e.phone_number.as_str().into(),
                        e.created_at.into(),
                        e.updated_at.into(),
                        e.learning_source.as_str().into(),
                    ],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        sqlx::query("SELECT * FROM wa_lid_pn_mappings WHERE device_key = ?1 ORDER BY lid")
            .bind(self.key())
            .fetch_all(&self.read)
            .await
            .map_err(db)?
            .iter()
            .map(lid_entry)
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.exec1(
            "INSERT INTO wa_base_keys (device_key, address, message_id, base_key) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_key, address, message_id) DO UPDATE SET base_key = excluded.base_key",
            vec![address.into(), message_id.into(), base_key.into()],
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
            "SELECT EXISTS (SELECT 1 FROM wa_base_keys WHERE device_key = ?1 AND address = ?2
                            AND message_id = ?3 AND base_key = ?4)",
        )
        .bind(self.key())
        .bind(address)
        .bind(message_id)
        .bind(current_base_key)
        .fetch_one(&self.read)
        .await
        .map_err(db)
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_base_keys WHERE device_key = ?1 AND address = ?2 AND message_id = ?3",
            vec![address.into(), message_id.into()],
        )
        .await?;
        Ok(())
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let mut stmts = Vec::with_capacity(records.len());
        for record in &records {
            let bytes = serde_json::to_vec(record).map_err(ser)?;
            stmts.push(stmt(
                UPSERT_DEVICE_LIST,
                vec![record.user.as_str().into(), bytes.into()],
            ));
        }
        self.exec(stmts).await?;
        Ok(())
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        let record = self
            .blob(
                "SELECT record FROM wa_device_lists WHERE device_key = ?1 AND \"user\" = ?2",
                user,
            )
            .await?;
        record
            .map(|r| serde_json::from_slice(&r).map_err(ser))
            .transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_device_lists WHERE device_key = ?1 AND \"user\" = ?2",
            vec![user.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT blob FROM wa_group_metadata WHERE device_key = ?1 AND group_jid = ?2",
        )
        .bind(self.key())
        .bind(group_jid)
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.exec1(
            "INSERT INTO wa_group_metadata (device_key, group_jid, blob) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_key, group_jid) DO UPDATE SET blob = excluded.blob",
            vec![group_jid.into(), blob.into()],
        )
        .await?;
        Ok(())
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_group_metadata WHERE device_key = ?1 AND group_jid = ?2",
            vec![group_jid.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        let row: Option<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
            "SELECT token, token_timestamp, sender_timestamp FROM wa_tc_tokens
             WHERE device_key = ?1 AND jid = ?2",
        )
        .bind(self.key())
        .bind(jid)
        .fetch_optional(&self.read)
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
        self.exec1(
            "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (device_key, jid) DO UPDATE SET token = excluded.token,
               token_timestamp = excluded.token_timestamp, sender_timestamp = excluded.sender_timestamp",
            vec![
                jid.into(),
                entry.token[..].into(),
                entry.token_timestamp.into(),
                entry.sender_timestamp.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.exec1(
            "DELETE FROM wa_tc_tokens WHERE device_key = ?1 AND jid = ?2",
            vec![jid.into()],
        )
        .await?;
        Ok(())
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT jid FROM wa_tc_tokens WHERE device_key = ?1 ORDER BY jid")
            .bind(self.key())
            .fetch_all(&self.read)
            .await
            .map_err(db)
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let deleted = self
            .exec1(
                "DELETE FROM wa_tc_tokens WHERE device_key = ?1
                   AND (length(token) = 0 OR token_timestamp < ?2)
                   AND (sender_timestamp IS NULL OR sender_timestamp < ?3)",
                vec![token_cutoff.into(), sender_cutoff.into()],
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
        self.exec1(
            "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
             VALUES (?1, ?2, X'', ?3, ?3)
             ON CONFLICT (device_key, jid) DO UPDATE SET sender_timestamp =
               max(coalesce(wa_tc_tokens.sender_timestamp, excluded.sender_timestamp),
                   excluded.sender_timestamp)",
            vec![jid.into(), sender_timestamp.into()],
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
        self.exec1(
            "INSERT INTO wa_tc_tokens (device_key, jid, token, token_timestamp, sender_timestamp)
             VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (device_key, jid) DO UPDATE
               SET token = excluded.token, token_timestamp = excluded.token_timestamp
               WHERE length(wa_tc_tokens.token) = 0
                  OR excluded.token_timestamp >= wa_tc_tokens.token_timestamp",
            vec![jid.into(), token.into(), token_timestamp.into()],
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
        self.exec1(
            "INSERT INTO wa_sent_messages (device_key, chat_jid, message_id, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, CAST(strftime('%s', 'now') AS INTEGER))
             ON CONFLICT (device_key, chat_jid, message_id)
             DO UPDATE SET payload = excluded.payload, created_at = excluded.created_at",
            vec![chat_jid.into(), message_id.into(), payload.into()],
        )
        .await?;
        Ok(())
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        // Delete and return in one statement: of two takes, one gets the row.
        let (key, chat, id) = (
            self.key().to_owned(),
            chat_jid.to_owned(),
            message_id.to_owned(),
        );
        let written = self
            .run(Box::new(move |conn| {
                Box::pin(async move {
                    let payload: Option<Vec<u8>> = sqlx::query_scalar(
                        "DELETE FROM wa_sent_messages
                         WHERE device_key = ?1 AND chat_jid = ?2 AND message_id = ?3
                         RETURNING payload",
                    )
                    .bind(key)
                    .bind(chat)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(Written {
                        rows: u64::from(payload.is_some()),
                        value: payload,
                        id: None,
                    })
                })
            }))
            .await?;
        Ok(written.value)
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .exec1(
                "DELETE FROM wa_sent_messages WHERE device_key = ?1 AND created_at < ?2",
                vec![cutoff_timestamp.into()],
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
             WHERE device_key = ?1 AND chat = ?2 AND sender = ?3 AND id = ?4",
        )
        .bind(self.key())
        .bind(chat)
        .bind(sender)
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .exec1(
                "DELETE FROM wa_pending_inbound WHERE device_key = ?1 AND inserted_at < ?2",
                vec![cutoff_timestamp.into()],
            )
            .await?;
        Ok(count(deleted))
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let stmts = rows
            .iter()
            .map(|r| {
                stmt(
                    UPSERT_PENDING,
                    vec![
                        r.chat.into(),
                        r.sender.into(),
                        r.id.into(),
                        r.message.into(),
                    ],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let stmts = keys
            .iter()
            .map(|k| {
                stmt(
                    DELETE_PENDING,
                    vec![k.chat.into(), k.sender.into(), k.id.into()],
                )
            })
            .collect();
        self.exec(stmts).await?;
        Ok(())
    }
}

#[async_trait]
impl MsgSecretStore for SqliteBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        // The conflict merge is wacore's merge_msg_secret_expiry / _message_ts in SQL:
        // 0 ("never") wins for the deadline, else the later one; the later parent time wins.
        let stmts = entries
            .iter()
            .map(|e| {
                stmt(
                    "INSERT INTO wa_msg_secrets (device_key, chat, sender, msg_id, secret, expires_at, message_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (device_key, chat, sender, msg_id) DO UPDATE SET
                       secret = excluded.secret,
                       expires_at = CASE WHEN wa_msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0
                                         ELSE max(wa_msg_secrets.expires_at, excluded.expires_at) END,
                       message_ts = max(wa_msg_secrets.message_ts, excluded.message_ts)",
                    vec![
                        (*e.chat).into(),
                        (*e.sender).into(),
                        (*e.msg_id).into(),
                        e.secret[..].into(),
                        e.expires_at.into(),
                        e.message_ts.into(),
                    ],
                )
            })
            .collect();
        self.exec(stmts).await?;
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
             WHERE device_key = ?1 AND chat = ?2 AND sender = ?3 AND msg_id = ?4",
        )
        .bind(self.key())
        .bind(chat)
        .bind(sender)
        .bind(msg_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let deleted = self
            .exec1(
                "DELETE FROM wa_msg_secrets WHERE device_key = ?1 AND expires_at <> 0 AND expires_at <= ?2",
                vec![cutoff_timestamp.into()],
            )
            .await?;
        Ok(count(deleted))
    }
}

#[async_trait]
impl DeviceStore for SqliteBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        let data = serde_json::to_vec(device).map_err(ser)?;
        self.exec1(
            "INSERT INTO wa_devices (device_key, data) VALUES (?1, ?2)
             ON CONFLICT (device_key) DO UPDATE SET data = excluded.data",
            vec![data.into()],
        )
        .await?;
        Ok(())
    }

    async fn load(&self) -> Result<Option<Device>> {
        let data: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM wa_devices WHERE device_key = ?1")
                .bind(self.key())
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
        data.map(|d| serde_json::from_slice(&d).map_err(ser))
            .transpose()
    }

    async fn exists(&self) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wa_devices WHERE device_key = ?1)")
            .bind(self.key())
            .fetch_one(&self.read)
            .await
            .map_err(db)
    }

    /// One backend is one device: this materialises the device's row (a fresh `Device`,
    /// as wacore's in-memory backend does) if it is missing, and returns its numeric id.
    async fn create(&self) -> Result<i32> {
        let data = serde_json::to_vec(&Device::new()).map_err(ser)?;
        let key = self.key().to_owned();
        let written = self
            .run(Box::new(move |conn| {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "INSERT INTO wa_devices (device_key, data) VALUES (?1, ?2)
                         ON CONFLICT (device_key) DO NOTHING",
                    )
                    .bind(&key)
                    .bind(data)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    let id: i64 =
                        sqlx::query_scalar("SELECT id FROM wa_devices WHERE device_key = ?1")
                            .bind(&key)
                            .fetch_one(&mut *conn)
                            .await?;
                    Ok(Written {
                        rows,
                        value: None,
                        id: Some(id),
                    })
                })
            }))
            .await?;
        let id = written.id.unwrap_or_default();
        i32::try_from(id)
            .map_err(|_| StoreError::Validation(format!("device row id {id} is not an i32")))
    }

    async fn resource_report(&self) -> whatsapp_rust::wacore::stats::StorageResourceReport {
        // The data lives in wagate's database, not in a per-device cache of this backend.
        whatsapp_rust::wacore::stats::StorageResourceReport {
            memory_bytes: Some(0),
            ..Default::default()
        }
    }
}
