//! Where a device's protocol state (whatsapp-rust's `Backend`: Signal sessions, prekeys,
//! app-state keys, LID mappings…) lives: in the host's SQLite database (wagate's own file:
//! one file to back up, no descriptors or page cache per device), PostgreSQL shared by
//! every node of a cluster, so a device moves between nodes with nothing to copy, or one
//! SQLite file per device beside the process (the engine alone, without a host database).
//!
//! A per-device file left by an earlier version is imported into the host's database the
//! first time the device opens its store there, then renamed `<uid>.db.imported`: an
//! import cut short is run again at the next start, since the file stays until it is done.
//!
//! On PostgreSQL every write is fenced by the epoch of the device lease the node drives
//! the device under ([`wagate_wa_storage::Fence`]): the epoch is recorded before any state
//! is loaded, so a node that was paused past its lease and taken over cannot write stale
//! ratchets over the new holder's when it wakes up (the crate's write-behind cache would
//! otherwise flush them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use wagate_core::id::DeviceUid;
use wagate_wa_storage::{Fence, PgBackend, SqliteBackend};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};

/// One device's protocol state, under the epoch it is driven with.
#[derive(Clone)]
pub(crate) enum DeviceStore {
    File(PathBuf),
    Sqlite {
        db: crate::config::SqliteProtocolDb,
        key: String,
        epoch: i64,
        /// The per-device file an earlier version kept, imported on open if present.
        legacy: PathBuf,
    },
    Postgres {
        pool: sqlx::PgPool,
        key: String,
        epoch: i64,
    },
}

impl DeviceStore {
    /// Where the engine configured by `config` keeps `uid`'s state.
    pub(crate) fn of(config: &crate::WebEngineConfig, uid: &DeviceUid, epoch: i64) -> Self {
        match (&config.postgres, &config.sqlite) {
            (None, None) => Self::File(file_of(&config.data_dir, uid)),
            (None, Some(db)) => Self::Sqlite {
                db: db.clone(),
                key: uid.as_str().to_owned(),
                epoch,
                legacy: file_of(&config.data_dir, uid),
            },
            (Some(pool), _) => Self::Postgres {
                pool: pool.clone(),
                key: uid.as_str().to_owned(),
                epoch,
            },
        }
    }
}

/// The store file of a device in `dir`.
pub(crate) fn file_of(dir: &Path, uid: &DeviceUid) -> PathBuf {
    dir.join(format!("{}.db", uid.as_str()))
}

impl DeviceStore {
    /// Opens the device's backend for a new client. On PostgreSQL this first records the
    /// epoch, refusing if a newer one is recorded (another node took the device over).
    pub(crate) async fn open(&self, cache_kib: u32) -> Result<Arc<dyn Backend>, String> {
        match self {
            Self::File(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| "the data directory path is not valid UTF-8".to_owned())?;
                // The defaults already suit many stores per process (one writer
                // connection, no read pool, a small page cache); only the cache size is
                // the operator's to tune.
                let config = SqliteStoreConfig {
                    cache_size_kib: cache_kib,
                    ..SqliteStoreConfig::default()
                };
                let store = SqliteStore::with_config(path, config)
                    .await
                    .map_err(|e| format!("cannot open the device store {path}: {e}"))?;
                Ok(Arc::new(store))
            }
            Self::Sqlite {
                db,
                key,
                epoch,
                legacy,
            } => {
                let backend =
                    SqliteBackend::new(db.read.clone(), Arc::clone(&db.writer), key, Some(*epoch));
                if tokio::fs::try_exists(legacy).await.unwrap_or(false) {
                    import_legacy(legacy, &backend).await?;
                }
                Ok(Arc::new(backend))
            }
            Self::Postgres { pool, key, epoch } => {
                let fence = Fence::claim(pool, key, *epoch)
                    .await
                    .map_err(|e| format!("cannot record the device's epoch: {e}"))?
                    .ok_or_else(|| {
                        format!(
                            "another node took the device over (epoch {epoch} is no longer current)"
                        )
                    })?;
                Ok(Arc::new(
                    PgBackend::new(pool.clone(), key).with_fence(fence),
                ))
            }
        }
    }

    /// `Err` when this node may no longer connect the device to WhatsApp: on PostgreSQL,
    /// another node recorded a newer epoch (it took the device over while this one was
    /// paused), and logging in now would replace the new holder's connection. A file is
    /// one node's alone.
    pub(crate) async fn may_connect(&self) -> Result<(), String> {
        match self {
            // The host's writer fences every write by the lease, and one node drives
            // a SQLite database's devices.
            Self::File(_) | Self::Sqlite { .. } => Ok(()),
            Self::Postgres { pool, key, epoch } => {
                match Fence::is_current(pool, key, *epoch).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "another node took the device over (epoch {epoch} is no longer current); not connecting"
                    )),
                    Err(e) => Err(format!("cannot check the device's epoch: {e}")),
                }
            }
        }
    }

    /// Deletes the device's keys (logged out, or deleted): a new round links afresh.
    pub(crate) async fn remove(&self) -> Result<(), String> {
        match self {
            Self::File(path) => crate::engine::remove_store_files(path)
                .await
                .map_err(|e| e.to_string()),
            Self::Sqlite {
                db, key, legacy, ..
            } => {
                crate::engine::remove_store_files(legacy)
                    .await
                    .map_err(|e| e.to_string())?;
                SqliteBackend::delete_device(db.writer.as_ref(), key)
                    .await
                    .map_err(|e| format!("{e:?}"))
            }
            Self::Postgres { pool, key, .. } => PgBackend::delete_device(pool, key)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Imports the per-device file `path` into `backend` and retires it (renamed
/// `<uid>.db.imported`, its WAL folded in), so the next start finds nothing to import.
async fn import_legacy(path: &Path, backend: &SqliteBackend) -> Result<(), String> {
    let imported = wagate_wa_storage::import::import_file(path, backend)
        .await
        .map_err(|e| format!("cannot import the device store {}: {e}", path.display()))?;
    let mut retired = path.as_os_str().to_owned();
    retired.push(".imported");
    tokio::fs::rename(path, &retired)
        .await
        .map_err(|e| format!("cannot retire the imported store {}: {e}", path.display()))?;
    // The WAL was checkpointed into the file; what is left of it is empty.
    crate::engine::remove_store_files(path)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(
        file = %path.display(),
        device = imported.device,
        sessions = imported.sessions,
        prekeys = imported.prekeys,
        "imported a device's protocol state into the database"
    );
    Ok(())
}

#[async_trait::async_trait]
impl crate::transport::DialGate for DeviceStore {
    async fn may_dial(&self) -> Result<(), String> {
        self.may_connect().await
    }
}
