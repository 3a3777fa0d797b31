//! Opening the database the configuration names: SQLite in the data directory (the
//! default, nothing else to run) or PostgreSQL (`database_url`), shared by the nodes of a
//! cluster. On PostgreSQL the whatsapp-web engine keeps its devices' protocol state in the
//! same database, so a device moves between nodes with nothing to copy.

use crate::config::{Config, DatabaseKind, Synchronous};
use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;
use wagate_core::store::Store;
use wagate_store_postgres::PgStore;
use wagate_store_sqlite::{Durability, SqliteOptions, SqliteStore};

/// An opened database.
pub struct Database {
    pub store: Arc<dyn Store>,
    /// The PostgreSQL pool, when the database is PostgreSQL: protocol state lives there too.
    pub postgres: Option<sqlx::PgPool>,
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
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open_with(&path, options)
                .await
                .with_context(|| format!("opening the database {}", path.display()))?;
            Ok(Database {
                store: Arc::new(store),
                postgres: None,
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
            })
        }
    }
}
