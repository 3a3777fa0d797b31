//! Media bytes, kept outside the database.
//!
//! Built on `object_store` so the local directory used by default can later be swapped
//! for S3-compatible storage without touching callers; each media id maps to one object.

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
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
}
