//! wagate's store traits on PostgreSQL, for several wagate nodes sharing one database.
//!
//! Every method is one transaction on a connection of the pool (or one statement where
//! that is the whole unit of work). The decisions inside are the core's, as on SQLite
//! ([`wagate_core::accept::decide`], [`wagate_core::message::Message::steps`],
//! [`wagate_core::device::DeviceStateChange::apply_to`], the `NewEvent` builders,
//! [`wagate_core::webhook::WebhookConfig::targets`]): the store locks and loads the facts,
//! asks the core, and persists. What SQLite gets from its single writer is made explicit
//! here with row locks:
//!
//! - accepts of one device serialise on the device's row (budget and idempotency key);
//! - status steps of one message on the message's row, and this process's steps run in
//!   the order they were made ([`stepper`]);
//! - event-writing transactions on the one-row `event_counter`, which hands out `seq`s,
//!   so seq order is commit order ([`event`]; the contract in [`wagate_core::store`]);
//! - claims skip rows another node holds (`FOR UPDATE SKIP LOCKED`), so no job or
//!   delivery is claimed twice;
//! - webhook fan-out on its cursor row, so each event fans out once.
//!
//! To avoid deadlocks, the event counter is always the last lock a transaction takes.
//! Commits are announced across nodes with `LISTEN`/`NOTIFY` ([`commits`]). Timestamps are
//! BIGINT milliseconds and ids TEXT, as on SQLite.

mod accept;
mod account;
mod advance;
mod cache;
mod commits;
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
mod stepper;
mod webhook;

use cache::TtlCache;
use commits::Commits;
use error::map_sqlx;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use std::time::Duration;
use stepper::Stepper;
use wagate_core::account::ApiKeyCredential;
use wagate_core::store::{StoreError, StoreResult};

/// How long a node may still accept an API key revoked by another node (or the CLI);
/// revocations through this store take effect at once.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The schema, compiled into the binary. sqlx holds a PostgreSQL advisory lock while it
/// migrates, so nodes starting together migrate once and the others wait for it.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tuning for [`PgStore::connect`]; the defaults suit one node of a small cluster.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections this node keeps at most (a listening connection comes on top).
    pub max_connections: u32,
    /// How long a unit of work waits for a free connection before failing with
    /// `Unavailable`.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Every wagate store trait on one PostgreSQL database. Clones share the pool, the
/// listener and the caches.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    commits: Arc<Commits>,
    /// This process's status steps, in call order (see [`stepper`]).
    steps: Arc<Stepper>,
    /// Unrevoked API keys by public prefix (see [`cache`]).
    api_keys: Arc<TtlCache<Vec<ApiKeyCredential>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`), brings its schema up to date
    /// and starts listening for other nodes' commits.
    pub async fn connect(url: &str, options: PgOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await
            .map_err(map_sqlx)?;
        Self::from_pool(pool).await
    }

    /// The store on an existing pool: migrates, then starts listening for commits (on a
    /// connection of its own, made with the pool's options).
    pub async fn from_pool(pool: PgPool) -> StoreResult<Self> {
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => map_sqlx(e),
            other => StoreError::Other(format!("migrating the database: {other}")),
        })?;
        let commits = Arc::new(Commits::start(&pool).await?);
        let steps = Arc::new(Stepper::start(pool.clone(), Arc::clone(&commits)));
        Ok(Self {
            pool,
            commits,
            steps,
            api_keys: Arc::new(TtlCache::new(API_KEY_CACHE_TTL)),
        })
    }

    /// Stops listening and closes every connection; later calls on this store or its
    /// clones fail with `Unavailable`.
    pub async fn close(&self) {
        self.commits.stop();
        self.pool.close().await;
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map_sqlx)
    }

    /// Commits, then announces `seq` (the last event seq the transaction wrote, if it
    /// wrote any) to this process's subscribers; other nodes hear of it through the
    /// `pg_notify` the transaction sent.
    async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
        seq: Option<i64>,
    ) -> StoreResult<()> {
        tx.commit().await.map_err(map_sqlx)?;
        if let Some(seq) = seq {
            self.commits.publish(seq);
        }
        Ok(())
    }
}
