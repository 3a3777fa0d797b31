//! Media files: uploaded by API users to send, or received from WhatsApp.
//!
//! The bytes live in the media blob store (files under the data directory); the database
//! keeps what is needed to find, authorise and describe them.

use crate::id::{AccountId, MediaId};
use crate::time::Timestamp;
use serde::Serialize;

/// Largest file accepted, as the hosted services document: 16 MB.
pub const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    pub id: MediaId,
    pub account_id: AccountId,
    pub mime_type: String,
    pub size: u64,
    /// The name the file was uploaded or received with, when there was one.
    pub file_name: Option<String>,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: Timestamp,
}

/// The broad class of a media file, which decides how WhatsApp shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaClass {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaClass {
    /// The class WhatsApp would use for a MIME type; unknown types are documents.
    pub fn of_mime(mime: &str) -> Self {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "image/webp" {
            Self::Sticker
        } else if essence.starts_with("image/") {
            Self::Image
        } else if essence.starts_with("video/") {
            Self::Video
        } else if essence.starts_with("audio/") || essence == "application/ogg" {
            Self::Audio
        } else {
            Self::Document
        }
    }

    /// Whether content of this (sniffed) MIME type belongs to the class: images for
    /// `Image`, and so on; `Document` takes anything.
    pub fn accepts(self, mime: &str) -> bool {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match self {
            Self::Image | Self::Sticker => essence.starts_with("image/"),
            Self::Video => essence.starts_with("video/"),
            Self::Audio => essence.starts_with("audio/") || essence == "application/ogg",
            Self::Document => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_mime_types() {
        assert_eq!(MediaClass::of_mime("image/png"), MediaClass::Image);
        assert_eq!(MediaClass::of_mime("image/webp"), MediaClass::Sticker);
        assert_eq!(
            MediaClass::of_mime("audio/ogg; codecs=opus"),
            MediaClass::Audio
        );
        assert_eq!(MediaClass::of_mime("VIDEO/MP4"), MediaClass::Video);
        assert_eq!(MediaClass::of_mime("application/pdf"), MediaClass::Document);
    }
}
