//! Media: files uploaded to be sent. The type is taken from the content, never from what
//! a client declared (see `wagate_core::content_type`).

use super::messaging::SendKind;
use super::{ServiceError, ServiceResult};
use crate::blob::{BlobError, BlobStore, BlobWriter};
use crate::config::Config;
use crate::keys::MediaLinkKey;
use crate::webhook::payload::MediaLinker;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wagate_core::media::{MAX_MEDIA_BYTES, Media, MediaClass};
use wagate_core::message::MessageKind;
use wagate_core::store::{Store, StoreError};
use wagate_core::{AccountId, MediaId, time};

/// The MIME type of `data`, decided from its bytes ([`wagate_core::content_type::detect`]):
/// a declared type only refines what the content shows.
pub fn detect_mime(data: &[u8], declared: Option<&str>) -> String {
    wagate_core::content_type::detect(data, declared)
}

/// What a send asked its media to go as, and the content was not: `wanted` reads after
/// "is not" ("an image").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOfKind {
    pub wanted: &'static str,
}

/// The kind of message media goes as, from its content type (decided from its bytes,
/// [`detect_mime`]): the one classification of every dialect.
///
/// A caller that names a kind gets that kind when the content fits it (an image must be
/// an image WhatsApp can show; a document takes anything); a caller that lets the content
/// decide ([`SendKind::MediaAuto`]) gets its class, where WebP is a sticker. So the two
/// dialects differ only in what they ask: MegaMsg's `type: image` names a kind (a WebP
/// goes as an image: MegaMsg has no stickers), Msgera's send-media asks for the content's
/// class (a WebP goes as a sticker, one of Msgera's documented `mediaType`s).
pub fn media_kind(requested: SendKind, content: &str) -> Result<MessageKind, NotOfKind> {
    let required = match requested {
        SendKind::Text => return Ok(MessageKind::Text),
        SendKind::MediaAuto => return Ok(MessageKind::from(MediaClass::of_mime(content))),
        SendKind::Exactly(kind) => kind,
    };
    let (class, wanted) = match required {
        MessageKind::Image => (MediaClass::Image, "an image"),
        MessageKind::Video => (MediaClass::Video, "a video"),
        MessageKind::Audio | MessageKind::Voice => (MediaClass::Audio, "an audio file"),
        // Anything can go as a document (or as what else a caller named).
        _ => return Ok(required),
    };
    if class.accepts(content) {
        Ok(required)
    } else {
        Err(NotOfKind { wanted })
    }
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

/// Media files: uploads, media carried inline by a send, and signed links to them.
#[derive(Clone)]
pub struct MediaService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    link_key: MediaLinkKey,
}

impl MediaService {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        link_key: MediaLinkKey,
    ) -> Self {
        Self {
            config,
            store,
            blobs,
            link_key,
        }
    }

    /// Where media links point: `media_public_url`, else the configured public URL, else
    /// the host the client called (`host`, from its request).
    pub fn link_base(&self, host: Option<&str>) -> String {
        self.config.media_base_url(|| {
            host.map(|h| format!("http://{h}"))
                .unwrap_or_else(|| self.config.public_url())
        })
    }

    /// A signed link to `media` under `base`, valid until `expires` (unix seconds).
    pub fn link(&self, base: &str, media: &MediaId, expires: i64) -> String {
        self.link_key.link(base, media.as_str(), expires)
    }

    /// What renders the links of events (webhooks and the SSE feed): valid for
    /// `webhooks.media_link_ttl_secs` after each event.
    pub fn linker(&self, base: String) -> MediaLinker {
        MediaLinker {
            base_url: base,
            key: self.link_key.clone(),
            ttl_secs: i64::try_from(self.config.webhooks.media_link_ttl_secs).unwrap_or(i64::MAX),
        }
    }

    /// The file a signed link names, with its content; `None` when the link is forged,
    /// tampered with or expired (the caller says 401 without saying which).
    pub async fn open_link(
        &self,
        media: &str,
        expires: i64,
        signature: &str,
    ) -> ServiceResult<Option<(Media, Bytes)>> {
        if !self.link_key.verify(media, expires, signature) || expires < time::now().timestamp() {
            return Ok(None);
        }
        let id = MediaId::parse(media).map_err(|_| ServiceError::NotFound("media"))?;
        let found = match self.store.get_media_by_id(&id).await {
            Ok(m) => m,
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("media")),
            Err(e) => return Err(e.into()),
        };
        let data = match self.blobs.get(&id).await {
            Ok(d) => d,
            Err(BlobError::NotFound) => return Err(ServiceError::NotFound("media")),
            Err(e) => return Err(ServiceError::Internal(e.to_string())),
        };
        Ok(Some((found, data)))
    }

    /// The content of one of the account's files.
    pub(crate) async fn content(&self, id: &MediaId) -> ServiceResult<Bytes> {
        self.blobs
            .get(id)
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Starts an upload; finish it with [`Self::finish_media_upload`]. Dropped
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

    /// Checks and stores a fully received upload, like [`Self::store_media`].
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
    /// hop vetted against internal addresses) or given as bytes. The content must fit the
    /// kind it is to go as ([`media_kind`]), checked before anything is stored. Errors
    /// name `media`.
    pub async fn ingest_media(
        &self,
        account: &AccountId,
        source: InlineMedia,
        kind: MessageKind,
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
        let mime = detect_mime(&data, declared.as_deref());
        if let Err(NotOfKind { wanted }) = media_kind(SendKind::Exactly(kind), &mime) {
            // Say what the content is when its bytes say it; a declared type proves nothing.
            return Err(invalid(match infer::get(&data).map(|k| k.mime_type()) {
                Some(sniffed) => {
                    format!("is not {wanted} (its content is {sniffed}); send it as type document")
                }
                None => format!(
                    "is not {wanted} in a format that could be recognised; send it as type document"
                ),
            }));
        }
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
    fn one_classification_for_every_dialect() {
        let auto = SendKind::MediaAuto;
        let image = SendKind::Exactly(MessageKind::Image);
        // WebP: a sticker when the content decides (Msgera), an image when asked for one
        // (MegaMsg, which has no stickers).
        assert_eq!(media_kind(auto, "image/webp"), Ok(MessageKind::Sticker));
        assert_eq!(media_kind(image, "image/webp"), Ok(MessageKind::Image));
        assert_eq!(media_kind(auto, "image/png"), Ok(MessageKind::Image));
        assert_eq!(
            media_kind(auto, "application/pdf"),
            Ok(MessageKind::Document)
        );
        assert_eq!(
            media_kind(image, "application/pdf"),
            Err(NotOfKind { wanted: "an image" })
        );
        let voice = SendKind::Exactly(MessageKind::Voice);
        assert_eq!(
            media_kind(voice, "audio/ogg; codecs=opus"),
            Ok(MessageKind::Voice)
        );
        assert_eq!(
            media_kind(voice, "image/png"),
            Err(NotOfKind {
                wanted: "an audio file"
            })
        );
        let document = SendKind::Exactly(MessageKind::Document);
        assert_eq!(
            media_kind(document, "image/webp"),
            Ok(MessageKind::Document)
        );
        assert_eq!(
            media_kind(SendKind::Text, "image/png"),
            Ok(MessageKind::Text)
        );
    }

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
