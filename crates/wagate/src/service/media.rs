//! Media: files uploaded to be sent. The type is taken from the content, never from what
//! a client declared (see `wagate_core::content_type`).

use super::{ServiceError, ServiceResult, Services};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use wagate_core::media::{MAX_MEDIA_BYTES, Media};
use wagate_core::store::StoreError;
use wagate_core::{AccountId, MediaId, time};

/// The MIME type of `data`, decided from its bytes ([`wagate_core::content_type::detect`]):
/// a declared type only refines what the content shows.
pub fn detect_mime(data: &[u8], declared: Option<&str>) -> String {
    wagate_core::content_type::detect(data, declared)
}

impl Services {
    pub async fn store_media(
        &self,
        account: &AccountId,
        data: Bytes,
        declared_mime: Option<&str>,
        file_name: Option<String>,
    ) -> ServiceResult<Media> {
        if data.len() > MAX_MEDIA_BYTES {
            return Err(ServiceError::Invalid(
                "file".into(),
                "is larger than 16 MB".into(),
            ));
        }
        if data.is_empty() {
            return Err(ServiceError::Invalid("file".into(), "is empty".into()));
        }
        let media = Media {
            id: MediaId::new(),
            account_id: account.clone(),
            mime_type: detect_mime(&data, declared_mime),
            size: data.len() as u64,
            file_name: file_name
                .as_deref()
                .map(wagate_core::text::neutralise_file_name)
                .filter(|n| !n.is_empty()),
            sha256: hex::encode(Sha256::digest(&data)),
            created_at: time::now(),
        };
        // Content first, then the row: a crash in between leaves an orphan file, never a
        // row pointing at nothing.
        self.blobs
            .put(&media.id, data)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.create_media(&media).await?;
        Ok(media)
    }

    pub async fn get_media(&self, account: &AccountId, id: &MediaId) -> ServiceResult<Media> {
        match self.store.get_media(account, id).await {
            Err(StoreError::NotFound) => Err(ServiceError::NotFound("media")),
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R',
    ];

    #[test]
    fn content_wins_over_a_wrong_declaration() {
        assert_eq!(detect_mime(PNG, Some("application/pdf")), "image/png");
        assert_eq!(detect_mime(PNG, None), "image/png");
        assert_eq!(detect_mime(b"just text", Some("text/plain")), "text/plain");
        assert_eq!(detect_mime(b"just text", None), "text/plain");
        assert_eq!(
            detect_mime(b"<html><script>", Some("image/png")),
            "text/html"
        );
        assert_eq!(
            detect_mime(
                b"OggS\0\x02\0\0\0\0\0\0\0\0",
                Some("audio/ogg; codecs=opus")
            ),
            "audio/ogg; codecs=opus"
        );
    }
}
