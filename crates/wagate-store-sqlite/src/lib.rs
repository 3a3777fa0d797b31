//! wagate's store traits on SQLite: one file, WAL, durable commits, embedded migrations.
//!
//! Writes go through a single connection owned by a writer task that batches concurrent
//! units of work into one transaction ([`writer`]); reads use a separate pool of read-only
//! connections, which WAL lets run alongside the writer. Timestamps are stored as INTEGER
//! milliseconds and ids as TEXT, so the file is easy to inspect with the `sqlite3` shell.

mod accept;
mod account;
mod advance;
mod cache;
mod device;
mod error;
mod event;
mod fence;
mod inbound;
mod lease;
mod media;
mod message;
mod queue;
mod row;
mod session;
mod webhook;
mod writer;

use cache::RowCache;
use error::map_sqlx;
use sqlx::SqliteConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wagate_core::DeviceUid;
use wagate_core::account::ApiKeyCredential;
use wagate_core::device::Device;
use wagate_core::lease::Fence;
use wagate_core::store::{StoreError, StoreResult};
use writer::Writer;

/// What a unit of work given to [`SqliteStore::write_unit`] returns.
pub type UnitFuture<'c, R> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<R, sqlx::Error>> + Send + 'c>>;

/// How long a running server may still accept an API key revoked by another process
/// (the CLI); revocations through this store take effect at once.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Accepts announced to a receiver that has not read them yet, before it lags.
const QUEUED_CAPACITY: usize = 4_096;

/// The schema, compiled into the binary so a fresh file needs nothing else.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How durable a commit is before the store reports success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is fsynced before it is acknowledged: a success survives a power cut.
    #[default]
    Full,
    /// Commits are fsynced at checkpoints only: a power cut may lose the last commits (never
    /// corrupt the file). For benchmarks and throwaway instances.
    Normal,
}

/// Tuning for [`SqliteStore::open_with`]; the defaults suit a production instance.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Read-only connections serving lookups and listings alongside the writer.
    pub read_connections: u32,
    /// How long a statement waits for a lock held by another process before failing
    /// with `Unavailable`.
    pub busy_timeout: Duration,
    /// Most units of work the writer commits in one transaction.
    pub max_batch: usize,
    /// Schemas of other components that keep their tables in this file (the whatsapp-web
    /// engine's protocol state), each with its own migrations table, applied after the
    /// store's own before the writer starts.
    pub extra_migrations: Vec<Arc<sqlx::migrate::Migrator>>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            extra_migrations: Vec::new(),
        }
    }
}

/// Every wagate store trait on one SQLite file. Clones share the same connections.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    read: SqlitePool,
    /// Live devices by uid (see [`cache`]).
    devices: Arc<RowCache<DeviceUid, Device>>,
    /// Unrevoked API keys by public prefix (see [`cache`]).
    api_keys: Arc<RowCache<String, Vec<ApiKeyCredential>>>,
    /// Bumped after each lease release through this store (see [`lease`]).
    lease_releases: Arc<tokio::sync::watch::Sender<u64>>,
    /// Devices with newly accepted messages (see `SendQueue::subscribe_queued`).
    queued: tokio::sync::broadcast::Sender<DeviceUid>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at `path` with the
    /// default, durable options, and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    pub async fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> StoreResult<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .synchronous(match options.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            // Temporary b-trees (sorts, IN lists) stay in memory.
            .pragma("temp_store", "MEMORY");

        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // After a checkpoint, shrink a WAL a burst of writes grew back to 64 MiB.
            .pragma("journal_size_limit", "67108864");
        // Migrations run through a one-connection pool (`Migrator::run` on a bare
        // connection trips a higher-ranked lifetime error that makes `open` not `Send`);
        // that connection is then detached and handed to the writer task for good.
        let setup = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.busy_timeout)
            .connect_with(write_options)
            .await
            .map_err(map_sqlx)?;
        MIGRATOR
            .run(&setup)
            .await
            .map_err(|e| StoreError::Other(format!("migrating the database: {e}")))?;
        for extra in &options.extra_migrations {
            extra
                .run(&setup)
                .await
                .map_err(|e| StoreError::Other(format!("migrating the database: {e}")))?;
        }
        let mut conn: SqliteConnection = setup.acquire().await.map_err(map_sqlx)?.detach();
        setup.close().await;
        let last_seq: Option<i64> = sqlx::query_scalar(writer::last_seq_sql!())
            .fetch_one(&mut conn)
            .await
            .map_err(map_sqlx)?;
        let writer = Writer::spawn(conn, options.max_batch, last_seq.unwrap_or(0))?;

        // Opened after the writer so the file exists and is already in WAL mode (readers
        // must not try to change the journal mode). `query_only` makes a stray write from
        // a read path fail loudly instead of bypassing the writer.
        let read = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.busy_timeout)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(map_sqlx)?;
        Ok(Self {
            writer,
            read,
            devices: Arc::new(RowCache::new(None)),
            api_keys: Arc::new(RowCache::new(Some(API_KEY_CACHE_TTL))),
            lease_releases: Arc::new(tokio::sync::watch::Sender::new(0)),
            queued: tokio::sync::broadcast::Sender::new(QUEUED_CAPACITY),
        })
    }

    /// Runs `work` on the writer's connection, inside the transaction of a commit it shares
    /// with other units, and returns its result once that commit is durable: the way
    /// another component keeping tables in this file (the whatsapp-web engine's protocol
    /// state) writes without contending with the writer for SQLite's lock. With a
    /// `fence`, the unit first checks that the device's lease is still held with its owner
    /// and epoch, and fails with `Fenced` (writing nothing) otherwise. An `Err` from
    /// `work` rolls back what it did and nothing else.
    pub async fn write_unit<R, F>(&self, fence: Option<Fence>, work: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> UnitFuture<'c, R> + Send + 'static,
    {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    if let Some(fence) = &fence {
                        fence::check(conn, fence).await?;
                    }
                    work(conn).await.map_err(map_sqlx)
                })
            })
            .await
    }

    /// The read-only connections, for another component keeping tables in this file.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }

    /// Waits for queued writes, then closes every connection. Later calls on this store
    /// or its clones fail with `Unavailable`.
    pub async fn close(&self) {
        self.writer.close().await;
        self.read.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's connection settings, read back from SQLite itself.
    async fn writer_pragmas(store: &SqliteStore) -> (i64, i64, String) {
        store
            .writer
            .write(|conn| {
                Box::pin(async move {
                    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok((sync, fk, journal))
                })
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn durable_by_default_and_configurable() {
        let dir = tempfile::tempdir().unwrap();
        let full = SqliteStore::open(dir.path().join("full.db")).await.unwrap();
        // synchronous: 2 = FULL, 1 = NORMAL.
        assert_eq!(writer_pragmas(&full).await, (2, 1, "wal".to_owned()));
        let normal = SqliteStore::open_with(
            dir.path().join("normal.db"),
            SqliteOptions {
                durability: Durability::Normal,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(writer_pragmas(&normal).await, (1, 1, "wal".to_owned()));
    }

    #[tokio::test]
    async fn readers_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wagate.db"))
            .await
            .unwrap();
        let refused =
            sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ('acc_x', 'x', 0)")
                .execute(&store.read)
                .await;
        assert!(refused.is_err());
    }
}
