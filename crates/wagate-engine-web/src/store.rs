//! Where a device's protocol state (whatsapp-rust's `Backend`: Signal sessions, prekeys,
//! app-state keys, LID mappings…) lives: one SQLite file per device beside the process,
//! or PostgreSQL shared by every node of a cluster, so a device moves between nodes with
//! nothing to copy.
//!
//! On PostgreSQL every write is fenced by the epoch of the device lease the node drives
//! the device under ([`wagate_wa_storage::Fence`]): the epoch is recorded before any state
//! is loaded, so a node that was paused past its lease and taken over cannot write stale
//! ratchets over the new holder's when it wakes up (the crate's write-behind cache would
//! otherwise flush them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use wagate_core::id::DeviceUid;
use wagate_wa_storage::{Fence, PgBackend};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};

/// One device's protocol state, under the epoch it is driven with.
#[derive(Clone)]
pub(crate) enum DeviceStore {
    File(PathBuf),
    Postgres {
        pool: sqlx::PgPool,
        key: String,
        epoch: i64,
    },
}

impl DeviceStore {
    /// Where the engine configured by `config` keeps `uid`'s state.
    pub(crate) fn of(config: &crate::WebEngineConfig, uid: &DeviceUid, epoch: i64) -> Self {
        match &config.postgres {
            None => Self::File(file_of(&config.data_dir, uid)),
            Some(pool) => Self::Postgres {
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
            Self::File(_) => Ok(()),
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
            Self::Postgres { pool, key, .. } => PgBackend::delete_device(pool, key)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl crate::transport::DialGate for DeviceStore {
    async fn may_dial(&self) -> Result<(), String> {
        self.may_connect().await
    }
}
