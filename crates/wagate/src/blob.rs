//! Media bytes, kept outside the database.
//!
//! Built on `object_store` so the local directory used by default can later be swapped
//! for S3-compatible storage without touching callers; each media id maps to one object.

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use std::path::Path;
use std::sync::Arc;
use wagate_core::MediaId;

#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
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
            inner: Arc::new(fs),
        })
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

    /// Writes the content; the object store writes to a temporary file and renames it,
    /// so a crash never leaves a half-written media file under the id.
    pub async fn put(&self, id: &MediaId, data: Bytes) -> Result<(), BlobError> {
        self.inner
            .put(&Self::path(id), data.into())
            .await
            .map(|_| ())
            .map_err(|e| BlobError::Other(e.to_string()))
    }

    /// Starts writing the content of `id` piece by piece, for uploads too large to hold in
    /// memory. Nothing is visible under the id until [`BlobWriter::finish`]; a writer
    /// dropped unfinished removes what it wrote.
    pub async fn writer(&self, id: &MediaId) -> Result<BlobWriter, BlobError> {
        let upload = self
            .inner
            .put_multipart(&Self::path(id))
            .await
            .map_err(|e| BlobError::Other(e.to_string()))?;
        Ok(BlobWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, WRITE_CHUNK_BYTES),
        })
    }

    pub async fn get(&self, id: &MediaId) -> Result<Bytes, BlobError> {
        let got = self.inner.get(&Self::path(id)).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound,
            other => BlobError::Other(other.to_string()),
        })?;
        got.bytes()
            .await
            .map_err(|e| BlobError::Other(e.to_string()))
    }
}

/// Bytes gathered before each write to storage: large enough for few writes, small enough
/// that many concurrent uploads hold little memory. (S3 would need parts of at least
/// 5 MiB; the local store has no minimum.)
const WRITE_CHUNK_BYTES: usize = 1024 * 1024;

/// An object being written in pieces (see [`BlobStore::writer`]).
pub struct BlobWriter {
    inner: WriteMultipart,
}

impl BlobWriter {
    /// Appends `data`; waits while earlier pieces are still being written, so a fast
    /// client cannot pile up memory in front of a slow disk.
    pub async fn write(&mut self, data: Bytes) -> Result<(), BlobError> {
        self.inner
            .wait_for_capacity(2)
            .await
            .map_err(|e| BlobError::Other(e.to_string()))?;
        self.inner.put(data);
        Ok(())
    }

    /// Makes the content visible under its id, all at once.
    pub async fn finish(self) -> Result<(), BlobError> {
        self.inner
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| BlobError::Other(e.to_string()))
    }

    /// Removes what was written.
    pub async fn abort(self) -> Result<(), BlobError> {
        self.inner
            .abort()
            .await
            .map_err(|e| BlobError::Other(e.to_string()))
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
        let blobs = BlobStore::local(dir.path()).unwrap();
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
