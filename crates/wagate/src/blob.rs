//! Media bytes.
//!
//! On one node they are files in the data directory, through `object_store` (so the local
//! directory can later be swapped for S3-compatible storage without touching callers; each
//! media id maps to one object). In a cluster on PostgreSQL they are rows of
//! `media_blobs`, so that every node reads what any node stored: a file uploaded through
//! one node is sent by the node driving the device, and a received file is served by
//! whichever node a client asks. Media are at most 16 MB, written once and read whole,
//! which a `bytea` row holds well.

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use std::path::Path;
use std::sync::Arc;
use wagate_core::MediaId;

#[derive(Clone)]
pub struct BlobStore {
    inner: Backend,
}

#[derive(Clone)]
enum Backend {
    Objects(Arc<dyn ObjectStore>),
    Postgres(sqlx::PgPool),
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("media content not found")]
    NotFound,
    #[error("media storage failed: {0}")]
    Other(String),
}

impl BlobStore {
    /// Media stored as files under `dir` (created if missing).
    pub fn local(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Other(format!("{}: {e}", dir.display())))?;
        let fs =
            LocalFileSystem::new_with_prefix(dir).map_err(|e| BlobError::Other(e.to_string()))?;
        Ok(Self {
            inner: Backend::Objects(Arc::new(fs)),
        })
    }

    /// Media stored in the `media_blobs` table of the cluster's PostgreSQL database (its
    /// migration belongs to `wagate-store-postgres`).
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self {
            inner: Backend::Postgres(pool),
        }
    }

    fn path(id: &MediaId) -> ObjectPath {
        // Two levels of fan-out by the id's last characters (the random part of the
        // ULID) keep directories small with millions of files.
        let s = id.as_str();
        let tail = &s[s.len().saturating_sub(4)..];
        ObjectPath::from(format!(
            "{}/{}/{}",
            &tail[..2.min(tail.len())],
            &tail[2.min(tail.len())..],
            s
        ))
    }

    /// Writes the content, all at once: the object store writes to a temporary file and
    /// renames it, PostgreSQL inserts one row, so a crash never leaves a half-written
    /// media under the id.
    pub async fn put(&self, id: &MediaId, data: Bytes) -> Result<(), BlobError> {
        match &self.inner {
            Backend::Objects(store) => store
                .put(&Self::path(id), data.into())
                .await
                .map(|_| ())
                .map_err(|e| BlobError::Other(e.to_string())),
            Backend::Postgres(pool) => {
                // Media ids are never reused: a second write of one is a retry of the first.
                sqlx::query(
                    "INSERT INTO media_blobs (media_id, bytes) VALUES ($1, $2) \
                     ON CONFLICT (media_id) DO UPDATE SET bytes = excluded.bytes",
                )
                .bind(id.as_str())
                .bind(data.as_ref())
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| BlobError::Other(e.to_string()))
            }
        }
    }

    /// Starts writing the content of `id` piece by piece, for uploads too large to hold in
    /// memory. Nothing is visible under the id until [`BlobWriter::finish`]; a writer
    /// dropped unfinished removes what it wrote. (On PostgreSQL the pieces are gathered
    /// in memory, at most one media's 16 MB, and written as one row at the end.)
    pub async fn writer(&self, id: &MediaId) -> Result<BlobWriter, BlobError> {
        match &self.inner {
            Backend::Objects(store) => {
                let upload = store
                    .put_multipart(&Self::path(id))
                    .await
                    .map_err(|e| BlobError::Other(e.to_string()))?;
                Ok(BlobWriter::Objects(WriteMultipart::new_with_chunk_size(
                    upload,
                    WRITE_CHUNK_BYTES,
                )))
            }
            Backend::Postgres(_) => Ok(BlobWriter::Gathered {
                store: self.clone(),
                id: id.clone(),
                pieces: bytes::BytesMut::new(),
            }),
        }
    }

    pub async fn get(&self, id: &MediaId) -> Result<Bytes, BlobError> {
        match &self.inner {
            Backend::Objects(store) => {
                let got = store.get(&Self::path(id)).await.map_err(|e| match e {
                    object_store::Error::NotFound { .. } => BlobError::NotFound,
                    other => BlobError::Other(other.to_string()),
                })?;
                got.bytes()
                    .await
                    .map_err(|e| BlobError::Other(e.to_string()))
            }
            Backend::Postgres(pool) => {
                let row: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT bytes FROM media_blobs WHERE media_id = $1")
                        .bind(id.as_str())
                        .fetch_optional(pool)
                        .await
                        .map_err(|e| BlobError::Other(e.to_string()))?;
                row.map(Bytes::from).ok_or(BlobError::NotFound)
            }
        }
    }
}

/// Bytes gathered before each write to storage: large enough for few writes, small enough
/// that many concurrent uploads hold little memory. (S3 would need parts of at least
/// 5 MiB; the local store has no minimum.)
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// An object being written in pieces (see [`BlobStore::writer`]).
pub enum BlobWriter {
    Objects(WriteMultipart),
    Gathered {
        store: BlobStore,
        id: MediaId,
        pieces: bytes::BytesMut,
    },
}

impl BlobWriter {
    /// Appends `data`; waits while earlier pieces are still being written, so a fast
    /// client cannot pile up memory in front of a slow disk.
    pub async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        match self {
            Self::Objects(inner) => {
                inner
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| BlobError::Other(e.to_string()))?;
                inner.put(data);
            }
            Self::Gathered { pieces, .. } => pieces.extend_from_slice(&data),
        }
        Ok(())
    }

    /// Makes the content visible under its id, all at once.
    pub async fn finish(self) -> Result<(), BlobError> {
        match self {
            Self::Objects(inner) => inner
                .finish()
                .await
                .map(|_| ())
                .map_err(|e| BlobError::Other(e.to_string())),
            Self::Gathered { store, id, pieces } => store.put(&id, pieces.freeze()).await,
        }
    }

    /// Removes what was written.
    pub async fn abort(self) -> Result<(), BlobError> {
        match self {
            Self::Objects(inner) => inner
                .abort()
                .await
                .map_err(|e| BlobError::Other(e.to_string())),
            Self::Gathered { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(dir.path()).unwrap();
        let id = MediaId::new();
        blobs.put(&id, Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(blobs.get(&id).await.unwrap(), Bytes::from_static(b"hello"));
        assert!(matches!(
            blobs.get(&MediaId::new()).await,
            Err(BlobError::NotFound)
        ));
    }

    #[tokio::test]
    async fn written_in_pieces_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        pieces_appear_only_when_finished(BlobStore::local(dir.path()).unwrap()).await;
    }

    /// The same promises on PostgreSQL, where two nodes (two pools on one database) see
    /// each other's media.
    #[tokio::test]
    async fn on_postgres_every_node_reads_what_any_node_stored() {
        let Some(db) = wagate_engine_web::wagate_wa_storage::testing::pg_database().await else {
            return;
        };
        // Opening the store migrates the database (media_blobs included).
        wagate_store_postgres::PgStore::from_pool(db.pool.clone())
            .await
            .unwrap();
        let pool = || async { sqlx::PgPool::connect(&db.url).await.unwrap() };
        let (one, other) = (
            BlobStore::postgres(pool().await),
            BlobStore::postgres(pool().await),
        );
        let id = MediaId::new();
        one.put(&id, Bytes::from_static(b"hello")).await.unwrap();
        assert_eq!(other.get(&id).await.unwrap(), Bytes::from_static(b"hello"));
        assert!(matches!(
            other.get(&MediaId::new()).await,
            Err(BlobError::NotFound)
        ));
        pieces_appear_only_when_finished(one).await;
    }

    async fn pieces_appear_only_when_finished(blobs: BlobStore) {
        let id = MediaId::new();
        let mut writer = blobs.writer(&id).await.unwrap();
        let piece = Bytes::from(vec![7u8; 700 * 1024]);
        for _ in 0..3 {
            writer.write(piece.clone()).await.unwrap();
        }
        assert!(matches!(blobs.get(&id).await, Err(BlobError::NotFound)));
        writer.finish().await.unwrap();
        let got = blobs.get(&id).await.unwrap();
        assert_eq!(got.len(), 3 * 700 * 1024);
        assert!(got.iter().all(|b| *b == 7));

        let dropped = MediaId::new();
        let mut writer = blobs.writer(&dropped).await.unwrap();
        writer.write(piece).await.unwrap();
        writer.abort().await.unwrap();
        assert!(matches!(
            blobs.get(&dropped).await,
            Err(BlobError::NotFound)
        ));
    }
}
