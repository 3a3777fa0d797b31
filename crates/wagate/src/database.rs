//! Opening the database the configuration names: SQLite in the data directory (the
//! default, nothing else to run) or PostgreSQL (`database_url`), shared by the nodes of a
//! cluster. On PostgreSQL the whatsapp-web engine keeps its devices' protocol state in the
//! same database, so a device moves between nodes with nothing to copy; on SQLite it keeps
//! it in wagate's file too, its writes handed to the store's single writer
//! ([`ProtocolWrites`]).

use crate::config::{Config, DatabaseKind, Synchronous};
use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;
use wagate_core::DeviceUid;
use wagate_core::lease::Fence;
use wagate_core::store::Store;
use wagate_core::store::StoreError;
use wagate_engine_web::SqliteProtocolDb;
use wagate_engine_web::wagate_wa_storage::{self, SqliteBackend};
use wagate_store_postgres::PgStore;
use wagate_store_sqlite::{Durability, SqliteOptions, SqliteStore};

/// An opened database.
pub struct Database {
    pub store: Arc<dyn Store>,
    /// The PostgreSQL pool, when the database is PostgreSQL: protocol state lives there too.
    pub postgres: Option<sqlx::PgPool>,
    /// The SQLite store, when the database is SQLite: protocol state lives there too.
    pub sqlite: Option<SqliteStore>,
}

/// The whatsapp-web engine's protocol-state writes, run by the SQLite store's writer in
/// its shared commits (no second connection contending for SQLite's lock), each fenced by
/// the device's lease as held by this node.
pub struct ProtocolWrites {
    pub store: SqliteStore,
    /// This node's id: the owner its device leases are held under.
    pub owner: String,
}

#[async_trait::async_trait]
impl wagate_wa_storage::ProtocolWriter for ProtocolWrites {
    async fn write(
        &self,
        device_key: &str,
        epoch: Option<i64>,
        work: wagate_wa_storage::ProtocolWork,
    ) -> Result<wagate_wa_storage::Written, wagate_wa_storage::WriteRefused> {
        use wagate_wa_storage::WriteRefused;
        let fence = match epoch {
            None => None,
            Some(epoch) => Some(Fence {
                device_uid: DeviceUid::parse(device_key)
                    .map_err(|e| WriteRefused::Failed(format!("device key {device_key}: {e}")))?,
                owner: self.owner.clone(),
                epoch,
            }),
        };
        self.store
            .write_unit(fence, move |conn| work(conn))
            .await
            .map_err(|e| match e {
                StoreError::Fenced => WriteRefused::Fenced,
                other => WriteRefused::Failed(other.to_string()),
            })
    }
}

/// The engine's view of the SQLite database: its readers, and this node's fenced writes.
pub fn sqlite_protocol_db(store: &SqliteStore, owner: &str) -> SqliteProtocolDb {
    SqliteProtocolDb {
        read: store.read_pool().clone(),
        writer: Arc::new(ProtocolWrites {
            store: store.clone(),
            owner: owner.to_owned(),
        }),
    }
}

/// Connections a node keeps to PostgreSQL (the store's listener takes one more).
const PG_CONNECTIONS: u32 = 16;

/// Opens (and migrates) the configured database.
pub async fn open(config: &Config) -> anyhow::Result<Database> {
    match config.database().map_err(anyhow::Error::msg)? {
        DatabaseKind::Sqlite(path) => {
            let options = SqliteOptions {
                durability: match config.synchronous {
                    Synchronous::Full => Durability::Full,
                    Synchronous::Normal => Durability::Normal,
                },
                // The whatsapp-web engine's protocol state lives in the same file.
                extra_migrations: vec![Arc::new(SqliteBackend::migrator())],
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open_with(&path, options)
                .await
                .with_context(|| format!("opening the database {}", path.display()))?;
            Ok(Database {
                store: Arc::new(store.clone()),
                postgres: None,
                sqlite: Some(store),
            })
        }
        DatabaseKind::Postgres(url) => {
            let shown = url.redacted();
            let pool = PgPoolOptions::new()
                .max_connections(PG_CONNECTIONS)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url.as_str())
                .await
                .with_context(|| format!("connecting to PostgreSQL at {shown}"))?;
            let store = PgStore::from_pool(pool.clone())
                .await
                .with_context(|| format!("opening the wagate schema at {shown}"))?;
            wagate_engine_web::wagate_wa_storage::PgBackend::migrate(&pool)
                .await
                .with_context(|| format!("migrating the protocol-state tables at {shown}"))?;
            Ok(Database {
                store: Arc::new(store),
                postgres: Some(pool),
                sqlite: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_core::store::DeviceLeaseStore;
    use wagate_engine_web::whatsapp_rust::wacore::store::traits::SignalStore;
    use wagate_wa_storage::conformance::CASES;

    async fn sqlite(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open_with(
            dir.path().join("wagate.db"),
            SqliteOptions {
                // Each case commits many times; durability is not what is tested here.
                durability: Durability::Normal,
                extra_migrations: vec![Arc::new(SqliteBackend::migrator())],
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap()
    }

    /// The suite every `Backend` passes (the crate's in-memory one, whatsapp-rust's SQLite
    /// store, PostgreSQL), here through the store's own writer, as the server runs it.
    #[tokio::test]
    async fn protocol_state_in_the_database_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let db = sqlite_protocol_db(&store, "node-a");
        // One file, one device key per case: the key scoping gives each case a fresh store.
        for (name, case) in CASES {
            eprintln!("conformance: {name}");
            let key = DeviceUid::new();
            case(Arc::new(SqliteBackend::new(
                db.read.clone(),
                Arc::clone(&db.writer),
                key.as_str(),
                None,
            )))
            .await;
        }
    }

    #[tokio::test]
    async fn protocol_writes_are_refused_once_the_device_lease_moved_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let uid = DeviceUid::new();
        let now = wagate_core::time::now();
        let until = wagate_core::time::from_millis(now.timestamp_millis() + 15_000);
        let lease = store
            .acquire_device_lease(&uid, "node-a", now, until)
            .await
            .unwrap()
            .unwrap();
        let a = sqlite_protocol_db(&store, "node-a");
        let mine = SqliteBackend::new(
            a.read.clone(),
            Arc::clone(&a.writer),
            uid.as_str(),
            Some(lease.epoch),
        );
        mine.put_session("peer@s.whatsapp.net", b"first")
            .await
            .unwrap();

        // Another node's writer cannot write under this node's epoch.
        let b = sqlite_protocol_db(&store, "node-b");
        let impostor = SqliteBackend::new(
            b.read.clone(),
            Arc::clone(&b.writer),
            uid.as_str(),
            Some(lease.epoch),
        );
        assert!(
            impostor
                .put_session("peer@s.whatsapp.net", b"x")
                .await
                .is_err()
        );

        // The lease is released and taken again (a hand-over): the old epoch is void.
        let fence = Fence {
            device_uid: uid.clone(),
            owner: "node-a".into(),
            epoch: lease.epoch,
        };
        assert!(store.release_device_lease(&fence).await.unwrap());
        let next = store
            .acquire_device_lease(&uid, "node-b", now, until)
            .await
            .unwrap()
            .unwrap();
        assert!(next.epoch > lease.epoch);
        let refused = mine.put_session("peer@s.whatsapp.net", b"stale").await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("fenced")),
            "{refused:?}"
        );
        assert_eq!(
            mine.get_session("peer@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"first"[..]),
            "the refused write left nothing"
        );
        let theirs = SqliteBackend::new(b.read, b.writer, uid.as_str(), Some(next.epoch));
        theirs
            .put_session("peer@s.whatsapp.net", b"new")
            .await
            .unwrap();
        assert_eq!(
            theirs
                .get_session("peer@s.whatsapp.net")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"new"[..])
        );
    }
}
