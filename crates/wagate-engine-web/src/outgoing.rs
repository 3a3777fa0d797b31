//! wagate's [`OutgoingContent`] → the `wa::Message` protobuf WhatsApp expects, in two
//! halves around the media upload: [`plan`] decides what to upload (transcoding voice notes)
//! and [`build`] turns the upload's CDN fields into the message. Both are pure, so every
//! message shape is unit-tested without a connection.

use crate::structured;
use wagate_audio::{self as audio, AudioError};
use wagate_core::engine::{EngineError, OutgoingContent};
use wagate_core::message::MessageKind;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::prelude::{MessageBuilderExt, MessageField, wa};
use whatsapp_rust::upload::UploadResponse;

/// How an outgoing message reaches WhatsApp.
#[derive(Debug)]
pub(crate) enum Plan {
    /// No upload: send this message.
    Ready(Box<wa::Message>),
    /// Upload `data` as `media_type`, then [`build`] the message around it.
    Upload {
        media_type: MediaType,
        data: Vec<u8>,
        shape: Shape,
    },
}

/// What the message around an upload looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    Image {
        mime: String,
        caption: Option<String>,
    },
    Video {
        mime: String,
        caption: Option<String>,
    },
    Document {
        mime: String,
        file_name: Option<String>,
        caption: Option<String>,
    },
    Audio {
        mime: String,
        seconds: Option<u32>,
    },
    Voice {
        seconds: u32,
        waveform: Vec<u8>,
    },
    Sticker {
        mime: String,
    },
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Decides what to send. CPU-heavy for voice notes (transcoding): run on a blocking thread.
pub(crate) fn plan(content: OutgoingContent) -> Result<Plan, EngineError> {
    match content {
        OutgoingContent::Text { text } => Ok(Plan::Ready(Box::new(wa::Message::text(text)))),
        OutgoingContent::Location(l) => Ok(Plan::Ready(Box::new(structured::location_message(&l)))),
        OutgoingContent::Contacts(cards) if !cards.is_empty() => {
            Ok(Plan::Ready(Box::new(structured::contacts_message(&cards))))
        }
        OutgoingContent::Contacts(_) => Err(EngineError::Rejected {
            code: Some("invalid_contact".into()),
            reason: "a contact message needs at least one card".into(),
        }),
        // Sent by the session itself (`send_action`): each has its own call.
        OutgoingContent::Reaction { .. }
        | OutgoingContent::Edit { .. }
        | OutgoingContent::Delete { .. } => Err(EngineError::Internal(
            "reactions, edits and deletes are sent by the session, not planned".into(),
        )),
        OutgoingContent::PollVote { .. } => Err(EngineError::Internal(
            "poll votes are sent by the session, not planned".into(),
        )),
        OutgoingContent::Template(_) => Err(EngineError::Unsupported(
            "message templates exist on Cloud API numbers only".into(),
        )),
        OutgoingContent::Poll(p) => structured::poll_message(&p)
            .map(|m| Plan::Ready(Box::new(m)))
            .ok_or_else(|| EngineError::Rejected {
                code: Some("invalid_poll".into()),
                reason: "the poll has no secret to tie votes to".into(),
            }),
        OutgoingContent::Media {
            kind,
            data,
            mime_type,
            file_name,
            caption,
        } => {
            let caption = non_empty(caption);
            let mime = mime_type.trim().to_owned();
            let (media_type, data, shape) = match kind {
                MessageKind::Image => (
                    MediaType::Image,
                    data.to_vec(),
                    Shape::Image { mime, caption },
                ),
                MessageKind::Video => (
                    MediaType::Video,
                    data.to_vec(),
                    Shape::Video { mime, caption },
                ),
                MessageKind::Document => (
                    MediaType::Document,
                    data.to_vec(),
                    Shape::Document {
                        mime,
                        file_name: non_empty(file_name),
                        caption,
                    },
                ),
                // WhatsApp audio messages have no caption field; the caption is dropped
                // rather than failing the send (see the crate report).
                MessageKind::Audio => {
                    let seconds = audio::duration_seconds(&data, &mime);
                    (
                        MediaType::Audio,
                        data.to_vec(),
                        Shape::Audio { mime, seconds },
                    )
                }
                MessageKind::Voice => {
                    let note = audio::prepare_voice_note(&data, &mime).map_err(|e| match e {
                        AudioError::Encode(m) => {
                            EngineError::Internal(format!("voice note encoding failed: {m}"))
                        }
                        other => EngineError::Rejected {
                            code: Some("unsupported_audio".into()),
                            reason: format!("cannot send as a voice note: {other}"),
                        },
                    })?;
                    (
                        MediaType::Audio,
                        note.data,
                        Shape::Voice {
                            seconds: note.seconds,
                            waveform: note.waveform,
                        },
                    )
                }
                MessageKind::Sticker => {
                    (MediaType::Sticker, data.to_vec(), Shape::Sticker { mime })
                }
                MessageKind::Text
                | MessageKind::Location
                | MessageKind::Contact
                | MessageKind::Poll
                | MessageKind::Reaction
                | MessageKind::Edit
                | MessageKind::Delete
                | MessageKind::Participants
                | MessageKind::PollVote
                | MessageKind::Template => {
                    return Err(EngineError::Rejected {
                        code: Some("invalid_kind".into()),
                        reason: format!("a {} message cannot carry a file", kind.as_str()),
                    });
                }
            };
            if data.is_empty() {
                return Err(EngineError::Rejected {
                    code: Some("empty_media".into()),
                    reason: "the media file is empty".into(),
                });
            }
            Ok(Plan::Upload {
                media_type,
                data,
                shape,
            })
        }
    }
}

/// The CDN fields of an upload. The protocol crate's `UploadResponse` cannot be built
/// outside it (non-exhaustive), so the messages are built from this copy — which keeps
/// [`build`] testable — mirroring the crate's own `media::*_message` builders.
#[derive(Debug, Clone)]
pub(crate) struct Uploaded {
    pub(crate) url: String,
    pub(crate) direct_path: String,
    pub(crate) media_key: [u8; 32],
    pub(crate) file_enc_sha256: [u8; 32],
    pub(crate) file_sha256: [u8; 32],
    pub(crate) file_length: u64,
    pub(crate) media_key_timestamp: i64,
    pub(crate) streaming_sidecar: Option<Vec<u8>>,
}

impl From<UploadResponse> for Uploaded {
    fn from(u: UploadResponse) -> Self {
        Self {
            url: u.url,
            direct_path: u.direct_path,
            media_key: u.media_key,
            file_enc_sha256: u.file_enc_sha256,
            file_sha256: u.file_sha256,
            file_length: u.file_length,
            media_key_timestamp: u.media_key_timestamp,
            streaming_sidecar: u.streaming_sidecar,
        }
    }
}

/// The message around an uploaded file.
pub(crate) fn build(shape: Shape, u: Uploaded) -> wa::Message {
    let key = Some(u.media_key.to_vec());
    let sha = Some(u.file_sha256.to_vec());
    let enc_sha = Some(u.file_enc_sha256.to_vec());
    match shape {
        Shape::Image { mime, caption } => wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: key,
                file_sha256: sha,
                file_enc_sha256: enc_sha,
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: Some(mime),
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        Shape::Video { mime, caption } => wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: key,
                file_sha256: sha,
                file_enc_sha256: enc_sha,
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                streaming_sidecar: u.streaming_sidecar,
                mimetype: Some(mime),
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        Shape::Document {
            mime,
            file_name,
            caption,
        } => wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: key,
                file_sha256: sha,
                file_enc_sha256: enc_sha,
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: Some(mime),
                title: file_name.clone(),
                file_name,
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        Shape::Audio { mime, seconds } => audio_message(u, mime, false, seconds, None),
        Shape::Voice { seconds, waveform } => audio_message(
            u,
            audio::VOICE_MIME.to_owned(),
            true,
            Some(seconds),
            Some(waveform),
        ),
        Shape::Sticker { mime } => wa::Message {
            sticker_message: MessageField::some(wa::message::StickerMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: key,
                file_sha256: sha,
                file_enc_sha256: enc_sha,
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype: Some(mime),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn audio_message(
    u: Uploaded,
    mime: String,
    ptt: bool,
    seconds: Option<u32>,
    waveform: Option<Vec<u8>>,
) -> wa::Message {
    wa::Message {
        audio_message: MessageField::some(wa::message::AudioMessage {
            media_key: Some(u.media_key.to_vec()),
            file_sha256: Some(u.file_sha256.to_vec()),
            file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
            url: Some(u.url),
            direct_path: Some(u.direct_path),
            file_length: Some(u.file_length),
            media_key_timestamp: Some(u.media_key_timestamp),
            streaming_sidecar: u.streaming_sidecar,
            mimetype: Some(mime),
            seconds,
            ptt: Some(ptt),
            waveform,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn upload() -> Uploaded {
        Uploaded {
            url: "https://mmg.whatsapp.net/x".into(),
            direct_path: "/v/x".into(),
            media_key: [1; 32],
            file_enc_sha256: [2; 32],
            file_sha256: [3; 32],
            file_length: 1234,
            media_key_timestamp: 1_700_000_000,
            streaming_sidecar: None,
        }
    }

    fn media(kind: MessageKind, mime: &str, data: &[u8]) -> OutgoingContent {
        OutgoingContent::Media {
            kind,
            data: Bytes::copy_from_slice(data),
            mime_type: mime.into(),
            file_name: Some("report.pdf".into()),
            caption: Some("look".into()),
        }
    }

    fn planned(content: OutgoingContent) -> (MediaType, Vec<u8>, wa::Message) {
        match plan(content).unwrap() {
            Plan::Upload {
                media_type,
                data,
                shape,
            } => (media_type, data, build(shape, upload())),
            Plan::Ready(m) => panic!("expected an upload, got {m:?}"),
        }
    }

    #[test]
    fn text_is_a_conversation() {
        match plan(OutgoingContent::Text { text: "hi".into() }).unwrap() {
            Plan::Ready(m) => assert_eq!(m.conversation.as_deref(), Some("hi")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn image_video_document() {
        let (t, data, m) = planned(media(MessageKind::Image, "image/png", b"png"));
        assert_eq!((t, data.as_slice()), (MediaType::Image, &b"png"[..]));
        let img = m.image_message.as_option().unwrap();
        assert_eq!(img.mimetype.as_deref(), Some("image/png"));
        assert_eq!(img.caption.as_deref(), Some("look"));
        assert_eq!(img.direct_path.as_deref(), Some("/v/x"));
        assert_eq!(img.file_length, Some(1234));
        assert_eq!(img.media_key.as_deref(), Some(&[1u8; 32][..]));

        let (t, _, m) = planned(media(MessageKind::Video, "video/mp4", b"mp4"));
        assert_eq!(t, MediaType::Video);
        let v = m.video_message.as_option().unwrap();
        assert_eq!(v.mimetype.as_deref(), Some("video/mp4"));
        assert_eq!(v.caption.as_deref(), Some("look"));

        let (t, _, m) = planned(media(MessageKind::Document, "application/pdf", b"%PDF"));
        assert_eq!(t, MediaType::Document);
        let d = m.document_message.as_option().unwrap();
        assert_eq!(d.mimetype.as_deref(), Some("application/pdf"));
        assert_eq!(d.file_name.as_deref(), Some("report.pdf"));
        assert_eq!(d.title.as_deref(), Some("report.pdf"));
        assert_eq!(d.caption.as_deref(), Some("look"));
    }

    #[test]
    fn audio_file_keeps_its_format() {
        let (t, data, m) = planned(media(MessageKind::Audio, "audio/mpeg", b"ID3mp3"));
        assert_eq!((t, data.as_slice()), (MediaType::Audio, &b"ID3mp3"[..]));
        let a = m.audio_message.as_option().unwrap();
        assert_eq!(a.mimetype.as_deref(), Some("audio/mpeg"));
        assert_eq!(a.ptt, Some(false));
        assert!(a.waveform.is_none());
        assert_eq!(a.seconds, None, "not a readable header");

        let wav = wagate_audio::testing::wav(8_000, 1, 4.5);
        let (_, _, m) = planned(media(MessageKind::Audio, "audio/wav", &wav));
        let a = m.audio_message.as_option().unwrap();
        assert_eq!(a.mimetype.as_deref(), Some("audio/wav"));
        assert_eq!(a.seconds, Some(5));
    }

    #[test]
    fn voice_note_is_transcoded_ptt_with_duration_and_waveform() {
        let wav = wagate_audio::testing::wav(22_050, 1, 3.2);
        let (t, data, m) = planned(media(MessageKind::Voice, "audio/wav", &wav));
        assert_eq!(t, MediaType::Audio);
        assert_eq!(&data[..4], b"OggS");
        let a = m.audio_message.as_option().unwrap();
        assert_eq!(a.mimetype.as_deref(), Some("audio/ogg; codecs=opus"));
        assert_eq!(a.ptt, Some(true));
        assert_eq!(a.seconds, Some(4));
        assert_eq!(a.waveform.as_ref().map(Vec::len), Some(64));
    }

    #[test]
    fn sticker_is_built_by_hand() {
        let (t, _, m) = planned(media(MessageKind::Sticker, "image/webp", b"RIFFwebp"));
        assert_eq!(t, MediaType::Sticker);
        let s = m.sticker_message.as_option().unwrap();
        assert_eq!(s.mimetype.as_deref(), Some("image/webp"));
        assert_eq!(s.direct_path.as_deref(), Some("/v/x"));
        assert_eq!(s.file_sha256.as_deref(), Some(&[3u8; 32][..]));
    }

    #[test]
    fn refusals_are_clear() {
        assert!(matches!(
            plan(media(MessageKind::Voice, "audio/mpeg", b"not audio")),
            Err(EngineError::Rejected { reason, .. }) if reason.contains("voice note")
        ));
        assert!(matches!(
            plan(media(MessageKind::Image, "image/png", b"")),
            Err(EngineError::Rejected { .. })
        ));
        assert!(matches!(
            plan(media(MessageKind::Text, "text/plain", b"x")),
            Err(EngineError::Rejected { .. })
        ));
    }
}
