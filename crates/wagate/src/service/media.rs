//! Media: files uploaded to be sent. The type is taken from the content, never from what
//! a client declared (see `wagate_core::content_type`).

use super::{ServiceError, ServiceResult, Services};
use crate::blob::BlobWriter;
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

/// How much of an upload's start is kept for [`detect_mime`]: magic numbers sit in the
/// first bytes; this leaves room for formats recognised further in.
const SNIFF_BYTES: usize = 64 * 1024;

/// An upload being received: its bytes go to media storage as they arrive, so a 16 MB file
/// never sits whole in memory; its type is decided from its first bytes, and its size and
/// digest are counted on the way.
pub struct MediaUpload {
    id: MediaId,
    writer: BlobWriter,
    size: u64,
    digest: Sha256,
    head: Vec<u8>,
}

impl MediaUpload {
    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the next piece of the file.
    pub async fn write(&mut self, chunk: Bytes) -> ServiceResult<()> {
        let room = SNIFF_BYTES.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.digest.update(&chunk);
        self.size += chunk.len() as u64;
        self.writer
            .write(chunk)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }
}

/// Media a send carries inline, as the edge parsed it.
#[derive(Debug, Clone)]
pub enum InlineMedia {
    /// To fetch; `declared` is the type the caller gave, if any.
    Url {
        url: String,
        declared: Option<String>,
    },
    /// Decoded content (base64 or a `data:` URI) and the type the caller gave, if any.
    Bytes {
        data: Bytes,
        declared: Option<String>,
    },
}

impl Services {
    /// Starts an upload; finish it with [`Services::finish_media_upload`]. Dropped
    /// unfinished (the client went away), it leaves nothing behind.
    pub async fn begin_media_upload(&self) -> ServiceResult<MediaUpload> {
        let id = MediaId::new();
        let writer = self
            .blobs
            .writer(&id)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(MediaUpload {
            id,
            writer,
            size: 0,
            digest: Sha256::new(),
            head: Vec::new(),
        })
    }

    /// Checks and stores a fully received upload, like [`Services::store_media`].
    pub async fn finish_media_upload(
        &self,
        account: &AccountId,
        upload: MediaUpload,
        declared_mime: Option<&str>,
        file_name: Option<String>,
    ) -> ServiceResult<Media> {
        let refused = if upload.size > MAX_MEDIA_BYTES as u64 {
            Some("is larger than 16 MB")
        } else if upload.size == 0 {
            Some("is empty")
        } else {
            None
        };
        if let Some(message) = refused {
            if let Err(e) = upload.writer.abort().await {
                tracing::warn!(error = %e, "could not remove a refused upload");
            }
            return Err(ServiceError::Invalid("file".into(), message.into()));
        }
        let media = Media {
            id: upload.id,
            account_id: account.clone(),
            mime_type: detect_mime(&upload.head, declared_mime),
            size: upload.size,
            file_name: file_name.filter(|n| !n.trim().is_empty()),
            sha256: hex::encode(upload.digest.finalize()),
            created_at: time::now(),
        };
        // Content first, then the row, as in `store_media`.
        upload
            .writer
            .finish()
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.create_media(&media).await?;
        Ok(media)
    }

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

    /// Stores media a send carries inline (MegaMsg's `media`): fetched from a URL (every
    /// hop vetted against internal addresses) or given as bytes. When a kind of media is
    /// `required` (an image must be an image WhatsApp can show), the content must be
    /// recognisably of that class; any file can go as a document. Errors name `media`.
    pub async fn ingest_media(
        &self,
        account: &AccountId,
        source: InlineMedia,
        required: Option<wagate_core::media::MediaClass>,
        file_name: Option<String>,
    ) -> ServiceResult<Media> {
        let invalid = |m: String| ServiceError::Invalid("media".into(), m);
        let (data, declared) = match source {
            InlineMedia::Url { url, declared } => {
                let fetched = super::remote_media::RemoteMedia::from_config(&self.config)
                    .fetch(&url)
                    .await
                    .map_err(|e| invalid(e.to_string()))?;
                // What the caller says beats what a server says; the content beats both.
                (fetched.data, declared.or(fetched.content_type))
            }
            InlineMedia::Bytes { data, declared } => (data, declared),
        };
        if let Some(class) = required {
            let what = match class {
                wagate_core::media::MediaClass::Image => "an image",
                wagate_core::media::MediaClass::Video => "a video",
                _ => "an audio file",
            };
            match infer::get(&data).map(|k| k.mime_type()) {
                Some(sniffed) if class.accepts(sniffed) => {}
                Some(sniffed) => {
                    return Err(invalid(format!(
                        "is not {what} (its content is {sniffed}); send it as type document"
                    )));
                }
                None => {
                    return Err(invalid(format!(
                        "is not {what} in a format that could be recognised; send it as type document"
                    )));
                }
            }
        }
        let mime = detect_mime(&data, declared.as_deref());
        self.store_media(account, data, Some(&mime), file_name)
            .await
            .map_err(|e| match e {
                ServiceError::Invalid(_, m) => invalid(m),
                other => other,
            })
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
