//! `POST /api/whatsapp/messages/send`: MegaMsg's one send endpoint (text, image, audio,
//! video, document; media inline by URL or base64).
//!
//! The request is parsed and validated here (inline media decoded from base64); the use
//! case — store the media, accept the message into the one pipeline, wait boundedly until
//! WhatsApp has it — is `MessagingService::send_and_wait`. This module only shapes the replies.

use super::MegaJson;
use super::auth::Instance;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::service::media::InlineMedia;
use crate::service::messaging::{SendKind, SendRequest, SyncSend, parse_text};
use crate::service::{ServiceError, Services};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;
use wagate_core::media::MAX_MEDIA_BYTES;
use wagate_core::message::{Dialect, MessageKind};
use wagate_core::{MessageId, Phone, Spintax};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Recipient phone with country code, e.g. `+201234567890` (`^\+?[1-9][0-9]{6,14}$`, E.164).
    pub phone_number: String,
    /// `text` (default), `image`, `audio`, `video` or `document`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The message; required for `text`. Spintax such as `{Hi|Hello}` is expanded. With a
    /// media type and no `caption`, it is used as the caption.
    pub text: Option<String>,
    /// An http(s) URL or base64 content (bare or a `data:` URI), at most 16 MB; required for
    /// every media type.
    pub media: Option<String>,
    /// Caption for image, video, audio or document messages.
    pub caption: Option<String>,
    /// MIME type of the media; required for `document`. The content decides when it is
    /// recognisable.
    pub mime_type: Option<String>,
    /// File name shown to the recipient; required for `document`.
    pub file_name: Option<String>,
    /// Send an `audio` message as a voice note (push-to-talk).
    pub ptt: Option<bool>,
}

/// MegaMsg's success reply, plus the message id to follow the message's status with
/// `GET /v1/developer/messages/{messageId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageReply {
    /// Always `true`.
    pub ok: bool,
    /// The recipient in E.164 (`+201234567890`).
    pub to: String,
    /// The `type` sent.
    #[serde(rename = "type")]
    pub kind: String,
    pub message_id: String,
}

/// The 502 for a message that was accepted but not taken by WhatsApp within the wait: it
/// stays queued and will be sent, so it carries the id to follow instead of resending.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedErrorBody {
    /// Always `false`.
    pub ok: bool,
    pub message: String,
    /// `still_queued`.
    pub code: String,
    pub message_id: String,
}

/// The MegaMsg message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MegaType {
    Text,
    Image,
    Audio,
    Video,
    Document,
}

impl MegaType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "audio" => Self::Audio,
            "video" => Self::Video,
            "document" => Self::Document,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
        }
    }

    fn kind(self, ptt: bool) -> MessageKind {
        match self {
            Self::Text => MessageKind::Text,
            Self::Image => MessageKind::Image,
            Self::Audio if ptt => MessageKind::Voice,
            Self::Audio => MessageKind::Audio,
            Self::Video => MessageKind::Video,
            Self::Document => MessageKind::Document,
        }
    }
}

/// A send that passed validation.
struct Valid {
    to: Phone,
    kind: MegaType,
    ptt: bool,
    /// Text, or the media's caption.
    text: Option<Spintax>,
    media: Option<String>,
    mime_type: Option<String>,
    file_name: Option<String>,
}

const MEDIA_TYPES: &str = "image, audio, video or document";

fn validate(req: SendMessageRequest) -> Result<Valid, ApiError> {
    let mut p = FieldErrors::default();
    let to = Phone::parse(req.phone_number.trim())
        .map_err(|e| p.add("phone_number", e.to_string()))
        .ok();
    let kind = match req.kind.as_deref() {
        None => Some(MegaType::Text),
        Some(k) => MegaType::parse(k).or_else(|| {
            p.add("type", "must be text, image, audio, video or document");
            None
        }),
    };
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    let mut text = None;
    if let Some(kind) = kind {
        if kind == MegaType::Text {
            match &req.text {
                Some(t) => text = p.check(parse_text(t, "text").map_err(mega_error)),
                None => p.add("text", "is required when type is text"),
            }
            if req.media.is_some() {
                p.add(
                    "media",
                    format!("is only for media messages; set type to {MEDIA_TYPES}"),
                );
            }
            if req.caption.is_some() {
                p.add(
                    "caption",
                    format!("is only for media messages; set type to {MEDIA_TYPES}; a text message's content is text"),
                );
            }
        } else {
            // A caption, or else `text` (what a client may have meant by it); blank ones
            // are absent, as clients often send `""` for "no caption".
            let blank = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
            text = match (blank(&req.caption), blank(&req.text)) {
                (Some(c), _) => p.check(parse_text(&c, "caption").map_err(mega_error)),
                (None, Some(t)) => p.check(parse_text(&t, "text").map_err(mega_error)),
                (None, None) => None,
            };
            if !present(&req.media) {
                p.add(
                    "media",
                    format!(
                        "is required when type is {}: an http(s) URL or base64 content",
                        kind.as_str()
                    ),
                );
            }
        }
        if kind == MegaType::Document {
            if !present(&req.mime_type) {
                p.add("mime_type", "is required when type is document");
            }
            if !present(&req.file_name) {
                p.add("file_name", "is required when type is document");
            }
        }
        if req.ptt == Some(true) && kind != MegaType::Audio {
            p.add("ptt", "is only for type audio (a voice note)");
        }
    }
    if let Some(m) = req
        .mime_type
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        let (ty, sub) = m.split_once('/').unwrap_or(("", ""));
        if ty.trim().is_empty() || sub.trim().is_empty() || m.len() > 255 {
            p.add("mime_type", "must be a MIME type such as application/pdf");
        }
    }
    if let Some(n) = &req.file_name
        && n.chars().count() > 255
    {
        p.add("file_name", "must be at most 255 characters");
    }
    p.finish()?;
    let (Some(to), Some(kind)) = (to, kind) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    if kind == MegaType::Text && text.is_none() {
        return Err(ApiError::internal("validation passed without text"));
    }
    let non_empty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(Valid {
        to,
        kind,
        ptt: req.ptt == Some(true),
        text,
        media: non_empty(req.media),
        mime_type: non_empty(req.mime_type),
        file_name: non_empty(req.file_name),
    })
}

/// A service error as this dialect reports it: fields by their MegaMsg names, and a
/// session that cannot send as the seed's 502.
fn mega_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(field, message) => {
            let field = match field.as_str() {
                "mediaId" | "file" => "media".to_owned(),
                _ => field,
            };
            ApiError::invalid(field, message)
        }
        ServiceError::Conflict(m) => ApiError::bad_gateway(m),
        other => other.into(),
    }
}

/// Where inline media comes from.
enum MediaSource<'a> {
    Url(&'a str),
    Base64 {
        data: &'a str,
        declared: Option<&'a str>,
    },
}

fn media_source(media: &str) -> Result<MediaSource<'_>, ApiError> {
    if let Some(scheme_end) = media.find(':') {
        let scheme = &media[..scheme_end];
        let is_scheme = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        // Base64 has no `:`, so anything with one is a URL of some scheme.
        if !is_scheme {
            return Err(not_media());
        }
        return match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Ok(MediaSource::Url(media)),
            "data" => data_uri(&media[scheme_end + 1..]),
            other => Err(ApiError::invalid(
                "media",
                format!("must be an http(s) URL or base64 content; {other}: URLs are not fetched"),
            )),
        };
    }
    Ok(MediaSource::Base64 {
        data: media,
        declared: None,
    })
}

/// `data:[<mime>][;params];base64,<data>`.
fn data_uri(rest: &str) -> Result<MediaSource<'_>, ApiError> {
    let (header, data) = rest.split_once(',').ok_or_else(not_media)?;
    let mut params = header.split(';').map(str::trim);
    let mime = params.next().filter(|m| m.contains('/'));
    if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(ApiError::invalid(
            "media",
            "is a data: URI that is not base64-encoded; use data:<type>;base64,<content>",
        ));
    }
    Ok(MediaSource::Base64 {
        data,
        declared: mime,
    })
}

fn not_media() -> ApiError {
    ApiError::invalid(
        "media",
        "must be an http(s) URL or base64 content (bare or a data: URI)",
    )
}

fn too_large() -> ApiError {
    ApiError::invalid("media", "is larger than 16 MB")
}

fn decode_base64(data: &str) -> Result<Bytes, ApiError> {
    // Encoders often wrap lines (PHP's chunk_split, MIME); padding is often dropped.
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(ApiError::invalid("media", "is empty"));
    }
    if compact.len() / 4 * 3 > MAX_MEDIA_BYTES + 3 {
        return Err(too_large());
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engine = if compact.contains(['-', '_']) {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    } else {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    };
    let bytes = engine.decode(compact.as_bytes()).map_err(|_| not_media())?;
    if bytes.len() > MAX_MEDIA_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(bytes))
}

/// The edge's reading of `media`: a URL to fetch, or base64 content decoded here.
fn inline_media(media: &str, declared: Option<String>) -> Result<InlineMedia, ApiError> {
    Ok(match media_source(media)? {
        MediaSource::Url(url) => InlineMedia::Url {
            url: url.to_owned(),
            declared,
        },
        // What the caller says beats what the data: URI says.
        MediaSource::Base64 {
            data,
            declared: uri,
        } => InlineMedia::Bytes {
            data: decode_base64(data)?,
            declared: declared.or(uri.map(str::to_owned)),
        },
    })
}

/// Sends a text, image, audio, video or document message and answers once WhatsApp has it.
///
/// Validation failures are 422s naming the field. 502 when the instance is not connected
/// (nothing is sent), when WhatsApp refuses the message, or when it has not taken it
/// within `sending.sync_wait_ms`; in that last case the message stays queued and will be
/// sent, so the reply carries its `messageId` and code `still_queued`: do not resend it.
#[utoipa::path(post, path = "/api/whatsapp/messages/send", tag = "megamsg",
    security(("instanceToken" = [], "instanceId" = [])),
    request_body = SendMessageRequest,
    responses(
        (status = 200, description = "WhatsApp has taken the message", body = SendMessageReply),
        (status = 401, description = "Missing or invalid Bearer token or X-Instance-Id", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `message` names it", body = ErrorBody),
        (status = 429, description = "The instance's daily budget is used up, or its per-minute or per-hour budget would hold the message past the wait (nothing is queued; `Retry-After` says when to try again)", body = ErrorBody),
        (status = 502, description = "The session is not connected, WhatsApp refused the message, or did not take it in time (then code `still_queued`: it will still be sent)", body = QueuedErrorBody),
        (status = 500, description = "Internal error", body = ErrorBody)))]
#[tracing::instrument(name = "megamsg.send", skip_all, fields(device.uid = %instance.0.uid))]
pub async fn send_message(
    State(s): State<Services>,
    instance: Instance,
    MegaJson(req): MegaJson<SendMessageRequest>,
) -> ApiResult<Response> {
    let v = validate(req)?;
    let media = match &v.media {
        Some(m) => Some((inline_media(m, v.mime_type.clone())?, v.file_name.clone())),
        None => None,
    };
    let message_kind = v.kind.kind(v.ptt);
    let wait = s.messaging.sync_wait();
    let outcome = s
        .messaging
        .send_and_wait(
            &instance.0,
            SendRequest {
                device_uid: instance.0.uid.clone(),
                to: v.to.clone(),
                kind: match message_kind {
                    MessageKind::Text => SendKind::Text,
                    media => SendKind::Exactly(media),
                },
                text: v.text,
                media_id: None,
                client_message_id: None,
                send_at: None,
                dialect: Dialect::Megamsg,
            },
            media,
            wait,
        )
        .await
        .map_err(mega_error)?;
    match outcome {
        SyncSend::Taken(id) => Ok(success(&v.to, v.kind, &id)),
        SyncSend::Failed { reason, .. } => Err(ApiError::bad_gateway(format!(
            "WhatsApp did not accept the message: {reason}"
        ))),
        SyncSend::StillQueued {
            id,
            waited,
            last_error,
        } => Ok(still_queued(&id, waited, last_error)),
    }
}

fn success(to: &Phone, kind: MegaType, id: &MessageId) -> Response {
    (
        StatusCode::OK,
        Json(SendMessageReply {
            ok: true,
            to: to.e164(),
            kind: kind.as_str().to_owned(),
            message_id: id.to_string(),
        }),
    )
        .into_response()
}

fn still_queued(id: &MessageId, wait: Duration, last_error: Option<String>) -> Response {
    let why = last_error
        .map(|e| format!(" (last attempt: {e})"))
        .unwrap_or_default();
    tracing::info!(message.id = %id, "megamsg send not taken within the wait; left queued");
    (
        StatusCode::BAD_GATEWAY,
        Json(QueuedErrorBody {
            ok: false,
            message: format!(
                "WhatsApp did not take the message within {} ms{why}. It stays queued and will be sent when the session can: do not resend it; follow it with GET /v1/developer/messages/{id}.",
                wait.as_millis()
            ),
            code: "still_queued".into(),
            message_id: id.to_string(),
        }),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> Result<Valid, ApiError> {
        validate(serde_json::from_value(json).unwrap())
    }

    fn fields(r: Result<Valid, ApiError>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(e) => e.details.into_iter().map(|d| d.field).collect(),
        }
    }

    #[test]
    fn types_and_their_required_fields() {
        let ok = req(serde_json::json!({"phone_number": "+201234567890", "text": "hi"})).unwrap();
        assert_eq!(ok.kind, MegaType::Text);
        assert_eq!(ok.to.e164(), "+201234567890");
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": "12", "type": "gif"})
            )),
            ["phone_number", "type"]
        );
        assert_eq!(
            fields(req(serde_json::json!({"phone_number": "+201234567890"}))),
            ["text"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": "+201234567890", "type": "document", "media": "aGk="})
            )),
            ["mime_type", "file_name"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": "+201234567890", "type": "image", "ptt": true})
            )),
            ["media", "ptt"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": "+201234567890", "text": "x", "media": "aGk=", "caption": "c"})
            )),
            ["media", "caption"]
        );
        let voice = req(serde_json::json!({"phone_number": "+201234567890", "type": "audio", "media": "aGk=", "ptt": true})).unwrap();
        assert_eq!(voice.kind.kind(voice.ptt), MessageKind::Voice);
        let captioned = req(serde_json::json!({"phone_number": "201234567890", "type": "image", "media": "aGk=", "text": "see"})).unwrap();
        assert!(captioned.text.is_some(), "text is the caption of media");
    }

    #[test]
    fn media_is_a_url_or_base64() {
        assert!(matches!(
            media_source("https://x.example/a.png"),
            Ok(MediaSource::Url(_))
        ));
        assert!(matches!(
            media_source("data:image/png;base64,iVBORw0KGgo="),
            Ok(MediaSource::Base64 {
                declared: Some("image/png"),
                ..
            })
        ));
        assert!(matches!(
            media_source("iVBORw0KGgo="),
            Ok(MediaSource::Base64 { declared: None, .. })
        ));
        assert!(media_source("file:///etc/passwd").is_err());
        assert!(media_source("data:text/plain,hello").is_err());
        assert_eq!(&decode_base64("aGVs\nbG8").unwrap()[..], b"hello");
        assert_eq!(&decode_base64("aGVsbG8=").unwrap()[..], b"hello");
        assert_eq!(&decode_base64("_-8").unwrap()[..], [0xff, 0xef]);
        assert!(decode_base64("not base64!").is_err());
    }
}
