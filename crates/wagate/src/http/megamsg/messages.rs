//! `POST /api/whatsapp/messages/send`: MegaMsg's one send endpoint (text, image, audio,
//! video, document; media inline by URL or base64).
//!
//! The request is parsed and validated here (inline media decoded from base64); the use
//! case — store the media, accept the message into the one pipeline, wait boundedly until
//! WhatsApp has it — is `MessagingService::send_and_wait`. This module only shapes the replies.

use super::MegaJson;
use super::auth::Instance;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::msgera::messages as msgera_messages;
use crate::http::msgera::structured::{ContactInput, contact_cards};
use crate::service::media::InlineMedia;
use crate::service::messaging::{
    MessageAction, ReplyRef, SendKind, SendRequest, SyncSend, parse_text,
};
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
use wagate_core::content::{Details, Location, Poll, check_emoji};
use wagate_core::media::MAX_MEDIA_BYTES;
use wagate_core::message::{Dialect, MessageKind};
use wagate_core::{GroupId, MessageId, Phone, Recipient, Spintax};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Recipient phone with country code, e.g. `+201234567890` (`^\+?[1-9][0-9]{6,14}$`,
    /// E.164), or a group the instance is in (`120363012345678901@g.us`).
    pub phone_number: String,
    /// `text` (default), `image`, `audio`, `video`, `document`, `location`, `contact`,
    /// `poll` or `reaction`.
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
    /// `location`: −90 to 90.
    pub latitude: Option<f64>,
    /// `location`: −180 to 180.
    pub longitude: Option<f64>,
    /// `location`: the place's name.
    pub name: Option<String>,
    /// `location`: the place's address.
    pub address: Option<String>,
    /// `contact`: 1–20 cards `{name, phone}`, sent as vCards.
    pub contacts: Option<Vec<ContactInput>>,
    /// `poll`: the question, 1–255 characters.
    pub question: Option<String>,
    /// `poll`: 2–12 distinct options of 1–100 characters.
    pub options: Option<Vec<String>>,
    /// `poll`: voters may pick several options (default one).
    pub multiple_answers: Option<bool>,
    /// Quote this message: a `msg_…` id sent by this instance, or the id of a message it
    /// received (`message.id` of the webhook), in the same chat.
    pub reply_to: Option<String>,
    /// Phone numbers mentioned in a text or caption (write `@<digits>` where each shows).
    pub mentions: Option<Vec<String>>,
    /// `reaction`: the message reacted to (a `msg_…` id sent or received by this instance,
    /// in the chat with `phone_number`).
    pub message_id: Option<String>,
    /// `reaction`: one emoji; `""` removes the reaction.
    pub emoji: Option<String>,
}

/// MegaMsg's success reply, plus the message id to follow the message's status with
/// `GET /v1/developer/messages/{messageId}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageReply {
    /// Always `true`.
    pub ok: bool,
    /// The recipient in E.164 (`+201234567890`), or the group's id.
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
    Location,
    Contact,
    Poll,
    Reaction,
}

impl MegaType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => Self::Text,
            "image" => Self::Image,
            "audio" => Self::Audio,
            "video" => Self::Video,
            "document" => Self::Document,
            "location" => Self::Location,
            "contact" => Self::Contact,
            "poll" => Self::Poll,
            "reaction" => Self::Reaction,
            _ => return None,
        })
    }

    /// Whether the type carries a file.
    fn has_media(self) -> bool {
        matches!(
            self,
            Self::Image | Self::Audio | Self::Video | Self::Document
        )
    }

    /// Whether the type is structured content (no text, no file).
    fn is_structured(self) -> bool {
        matches!(
            self,
            Self::Location | Self::Contact | Self::Poll | Self::Reaction
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Document => "document",
            Self::Location => "location",
            Self::Contact => "contact",
            Self::Poll => "poll",
            Self::Reaction => "reaction",
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
            Self::Location => MessageKind::Location,
            Self::Contact => MessageKind::Contact,
            Self::Poll => MessageKind::Poll,
            Self::Reaction => MessageKind::Reaction,
        }
    }
}

/// A send that passed validation.
struct Valid {
    to: Recipient,
    kind: MegaType,
    ptt: bool,
    /// Text, or the media's caption.
    text: Option<Spintax>,
    media: Option<String>,
    mime_type: Option<String>,
    file_name: Option<String>,
    /// A location, contact cards or a poll, and the mentions.
    details: Details,
    reply_to: Option<ReplyRef>,
    /// `reaction`: the message reacted to and the emoji.
    reaction: Option<(MessageId, String)>,
}

const MEDIA_TYPES: &str = "image, audio, video or document";

/// Checks the fields of structured types: each belongs to its type only, and that type
/// needs them. Returns the details they describe.
fn structured(p: &mut FieldErrors, kind: MegaType, req: &SendMessageRequest) -> Details {
    let only_for = |p: &mut FieldErrors, present: bool, field: &str, owner: MegaType| {
        if present && kind != owner {
            p.add(field, format!("is only for type {}", owner.as_str()));
        }
    };
    only_for(p, req.latitude.is_some(), "latitude", MegaType::Location);
    only_for(p, req.longitude.is_some(), "longitude", MegaType::Location);
    only_for(p, req.name.is_some(), "name", MegaType::Location);
    only_for(p, req.address.is_some(), "address", MegaType::Location);
    only_for(p, req.contacts.is_some(), "contacts", MegaType::Contact);
    only_for(p, req.question.is_some(), "question", MegaType::Poll);
    only_for(p, req.options.is_some(), "options", MegaType::Poll);
    only_for(
        p,
        req.multiple_answers.is_some(),
        "multiple_answers",
        MegaType::Poll,
    );
    only_for(
        p,
        req.message_id.is_some(),
        "message_id",
        MegaType::Reaction,
    );
    only_for(p, req.emoji.is_some(), "emoji", MegaType::Reaction);
    let mut details = Details::default();
    match kind {
        MegaType::Location => match (req.latitude, req.longitude) {
            (Some(lat), Some(lon)) => {
                details.location = p.check(Location::new(
                    lat,
                    lon,
                    req.name.as_deref(),
                    req.address.as_deref(),
                ));
            }
            (lat, lon) => {
                for (v, field) in [(lat, "latitude"), (lon, "longitude")] {
                    if v.is_none() {
                        p.add(field, "is required when type is location");
                    }
                }
            }
        },
        MegaType::Contact => match &req.contacts {
            Some(list) => details.contacts = contact_cards(p, "contacts", list),
            None => p.add("contacts", "is required when type is contact"),
        },
        MegaType::Poll => match (&req.question, &req.options) {
            (Some(q), Some(o)) => {
                details.poll = p.check(Poll::new(q, o, req.multiple_answers.unwrap_or(false)));
            }
            (q, o) => {
                if q.is_none() {
                    p.add("question", "is required when type is poll");
                }
                if o.is_none() {
                    p.add("options", "is required when type is poll");
                }
            }
        },
        MegaType::Reaction => {
            match req.message_id.as_deref().map(MessageId::parse) {
                Some(Ok(_)) => {}
                Some(Err(_)) => p.add(
                    "message_id",
                    "must be a message id (msg_…) sent or received by this instance",
                ),
                None => p.add("message_id", "is required when type is reaction"),
            }
            match &req.emoji {
                Some(e) => {
                    p.check(check_emoji(e));
                }
                None => p.add("emoji", "is required when type is reaction (\"\" removes)"),
            }
            if req.reply_to.is_some() {
                p.add("reply_to", "is not used by type reaction");
            }
        }
        _ => {}
    }
    if kind.is_structured() {
        for (present, field) in [
            (req.text.is_some(), "text"),
            (req.media.is_some(), "media"),
            (req.caption.is_some(), "caption"),
            (req.mime_type.is_some(), "mime_type"),
            (req.file_name.is_some(), "file_name"),
        ] {
            if present {
                p.add(field, format!("is not used by type {}", kind.as_str()));
            }
        }
    }
    details
}

fn validate(req: SendMessageRequest) -> Result<Valid, ApiError> {
    let mut p = FieldErrors::default();
    let number = req.phone_number.trim();
    let to = if number.ends_with("@g.us") {
        GroupId::parse(number)
            .map(Recipient::Group)
            .map_err(|e| p.add("phone_number", e.to_string()))
            .ok()
    } else {
        Phone::parse(number)
            .map(Recipient::Phone)
            .map_err(|e| p.add("phone_number", e.to_string()))
            .ok()
    };
    let kind = match req.kind.as_deref() {
        None => Some(MegaType::Text),
        Some(k) => MegaType::parse(k).or_else(|| {
            p.add(
                "type",
                "must be text, image, audio, video, document, location, contact or poll",
            );
            None
        }),
    };
    let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    let mut text = None;
    let mut details = Details::default();
    if let Some(kind) = kind {
        details = structured(&mut p, kind, &req);
        if kind.is_structured() {
            // Checked by `structured`: no text, no file.
        } else if kind == MegaType::Text {
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
        details.mentions = msgera_messages::mentions(&mut p, "mentions", req.mentions.as_deref());
        let has_text = text.is_some() && (kind == MegaType::Text || kind.has_media());
        if !details.mentions.is_empty() && !has_text {
            p.add("mentions", "needs a text or caption to mention people in");
        }
    }
    let reply_to = match req.reply_to.as_deref().map(str::trim) {
        None => None,
        Some(r) if r.is_empty() || r.len() > 200 => {
            p.add(
                "reply_to",
                "must be a message id (msg_…) or a received message's id, 1 to 200 characters",
            );
            None
        }
        Some(r) => Some(ReplyRef {
            reference: r.to_owned(),
            field: "reply_to",
        }),
    };
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
        details,
        reply_to,
        reaction: match (kind, req.message_id, req.emoji) {
            (MegaType::Reaction, Some(id), Some(emoji)) => {
                MessageId::parse(&id).ok().map(|id| (id, emoji))
            }
            _ => None,
        },
    })
}

/// A service error as this dialect reports it: fields by their MegaMsg names, and a
/// session that cannot send as the seed's 502.
fn mega_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(field, message) => {
            let field = match field.as_str() {
                "mediaId" | "file" => "media".to_owned(),
                "groupId" => "phone_number".to_owned(),
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
    let request = match v.reaction {
        Some((target, emoji)) => {
            let r = s
                .messaging
                .action(
                    &instance.0.account_id,
                    &target,
                    MessageAction::React(emoji),
                    None,
                    Dialect::Megamsg,
                )
                .await
                .map_err(|e| match e {
                    ServiceError::NotFound(_) => ApiError::invalid(
                        "message_id",
                        "no message with this id was sent or received by this instance",
                    ),
                    other => mega_error(other),
                })?;
            if r.device_uid != instance.0.uid {
                return Err(ApiError::invalid(
                    "message_id",
                    "no message with this id was sent or received by this instance",
                ));
            }
            if r.to != v.to {
                return Err(ApiError::invalid(
                    "phone_number",
                    format!("is not the chat of message_id (that is {})", r.to),
                ));
            }
            r
        }
        None => SendRequest {
            device_uid: instance.0.uid.clone(),
            to: v.to.clone(),
            kind: match message_kind {
                MessageKind::Text => SendKind::Text,
                media => SendKind::Exactly(media),
            },
            text: v.text,
            media_id: None,
            details: v.details,
            reply_to: v.reply_to,
            client_message_id: None,
            send_at: None,
            dialect: Dialect::Megamsg,
        },
    };
    let outcome = s
        .messaging
        .send_and_wait(&instance.0, request, media, wait)
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

fn success(to: &Recipient, kind: MegaType, id: &MessageId) -> Response {
    (
        StatusCode::OK,
        Json(SendMessageReply {
            ok: true,
            to: to.to_string(),
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
        assert_eq!(ok.to.to_string(), "+201234567890");
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
    fn structured_types_take_their_own_fields_only() {
        let to = "+201234567890";
        let loc = req(serde_json::json!({"phone_number": to, "type": "location", "latitude": 30.04, "longitude": 31.23, "name": "Cairo"})).unwrap();
        assert_eq!(loc.details.location.unwrap().name.as_deref(), Some("Cairo"));
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "type": "location", "latitude": 91})
            )),
            ["longitude"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "type": "location", "latitude": 91, "longitude": 0, "text": "x"})
            )),
            ["latitude", "text"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "text": "hi", "question": "q"})
            )),
            ["question"]
        );
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "type": "poll", "question": "q", "options": ["only"]})
            )),
            ["options"]
        );
        let poll = req(serde_json::json!({"phone_number": to, "type": "poll", "question": "q", "options": ["a", "b"], "multiple_answers": true})).unwrap();
        assert!(poll.details.poll.unwrap().multiple_answers);
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "type": "contact", "contacts": [{"name": "", "phone": "12"}]})
            )),
            ["contacts[0].phone"]
        );
        let c = req(serde_json::json!({"phone_number": to, "type": "contact", "contacts": [{"name": "Ana", "phone": "+201001234567"}], "reply_to": "3EB0X"})).unwrap();
        assert_eq!(c.details.contacts.len(), 1);
        assert_eq!(c.reply_to.unwrap().field, "reply_to");
        assert_eq!(
            fields(req(
                serde_json::json!({"phone_number": to, "type": "location", "latitude": 1, "longitude": 1, "mentions": ["+201001234567"]})
            )),
            ["mentions"]
        );
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
