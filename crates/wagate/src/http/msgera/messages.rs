//! Sending (text, media, voice), checking numbers, and reading messages back.

use super::details::DetailsBody;
use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::http::query::ApiQuery;
use crate::service::messaging::{
    Accepted, MAX_CHECK_NUMBERS, ReplyRef, SendKind, SendRequest, parse_send_at, parse_text,
    validate_client_message_id,
};
use crate::service::{ServiceError, Services};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::content::{Details, check_mentions};
use wagate_core::message::{Dialect, Message, MessageKind, MessageStatus, StatusChange};
use wagate_core::store::{MessageFilter, PageRequest};
use wagate_core::time::Timestamp;
use wagate_core::{GroupId, MediaId, MessageId, Phone, Recipient, Spintax};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendTextRequest {
    /// UID of the WhatsApp device sending the message.
    pub device_uid: String,
    /// Recipient phone number, matching `^\+?[1-9][0-9]{6,14}$` (E.164: no leading 0).
    /// Give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in (`120363012345678901@g.us`), instead of `to`.
    pub group_id: Option<String>,
    /// Message body (min 1 character). Supports spintax: `{Hi|Hello} there`.
    pub text: String,
    /// Quote this message: the `msg_…` id of a message this device sent or received, or
    /// the `providerMessageId` of a message it received, in the same chat.
    pub reply_to: Option<String>,
    /// Phone numbers to mention (write `@<digits>` in the text where each should show).
    pub mentions: Option<Vec<String>>,
    /// Your own idempotency key: a repeat on the same device returns the original message.
    pub client_message_id: Option<String>,
    /// ISO-8601 date-time to send at instead of now.
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMediaRequest {
    pub device_uid: String,
    /// Recipient phone number (E.164); give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in, instead of `to`.
    pub group_id: Option<String>,
    /// Id returned by `/v1/developer/media/upload`.
    pub media_id: String,
    /// Optional caption shown below the media (spintax allowed).
    pub caption: Option<String>,
    /// Quote this message (as in `/send`).
    pub reply_to: Option<String>,
    /// Phone numbers mentioned in the caption.
    pub mentions: Option<Vec<String>>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendVoiceRequest {
    pub device_uid: String,
    /// Recipient phone number (E.164); give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in, instead of `to`.
    pub group_id: Option<String>,
    /// Id of the uploaded audio asset.
    pub media_id: String,
    /// Quote this message (as in `/send`).
    pub reply_to: Option<String>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckWhatsappRequest {
    pub device_uid: String,
    /// 1–50 phone numbers to check.
    pub numbers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberResult {
    /// The number as given.
    pub number: String,
    #[serde(rename = "onWhatsApp")]
    pub on_whatsapp: bool,
    /// The WhatsApp JID when the number is on WhatsApp.
    pub jid: Option<String>,
    /// The LID when WhatsApp returned one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckWhatsappBody {
    pub results: Vec<NumberResult>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeBody {
    pub status: String,
    pub at: DateTime<Utc>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageBody {
    pub message_id: String,
    pub device_uid: String,
    /// The recipient: a phone number in E.164, or the group's id for a group message.
    pub to: String,
    /// The group, for a message sent to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// text, image, video, audio, voice, document, sticker, location, contact, poll,
    /// template (Cloud API devices), or an action on another message: reaction, edit,
    /// delete, poll_vote.
    #[serde(rename = "type")]
    pub kind: String,
    /// queued, sent, delivered, read, played or failed.
    pub status: String,
    pub failure_reason: Option<String>,
    /// The text or caption sent (spintax expanded).
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub client_message_id: Option<String>,
    pub provider_message_id: Option<String>,
    /// msgera, megamsg or dashboard: which API accepted it.
    pub source: String,
    pub send_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// True when this reply returns an earlier message with the same `clientMessageId`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deduplicated: bool,
    /// Every status the message went through (on single-message reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<StatusChangeBody>>,
    /// What the message's media is, with a download link (on single-message reads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaInfoBody>,
    /// A poll's votes so far, each voter's latest vote counting (on single-message reads
    /// of polls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_results: Option<PollResultsBody>,
    /// Location, contacts, poll, quote and mentions, when it has them.
    #[serde(flatten)]
    pub details: DetailsBody,
}

/// A poll's tally.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollResultsBody {
    /// In the poll's order.
    pub options: Vec<PollOptionBody>,
    /// How many people have a vote in now.
    pub voters: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollOptionBody {
    pub option: String,
    pub votes: usize,
    /// Who picked it (E.164; a LID when the number is unknown).
    pub voters: Vec<String>,
}

impl PollResultsBody {
    fn from_tally(t: &[wagate_core::content::OptionTally]) -> Self {
        let mut everyone: Vec<&str> = t
            .iter()
            .flat_map(|o| o.voters.iter().map(String::as_str))
            .collect();
        everyone.sort_unstable();
        everyone.dedup();
        Self {
            options: t
                .iter()
                .map(|o| PollOptionBody {
                    option: o.option.clone(),
                    votes: o.votes,
                    voters: o.voters.clone(),
                })
                .collect(),
            voters: everyone.len(),
        }
    }
}

/// A message's media file as a reader sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaInfoBody {
    pub media_id: String,
    /// The type decided from the file's content.
    pub mime_type: String,
    pub file_name: Option<String>,
    /// Bytes.
    pub size: u64,
    /// A signed link to the file, valid for an hour, that needs no API key.
    pub url: String,
}

/// How long the media link of a message read stays valid: long enough to click, short
/// enough that a copied reply is not a lasting way in.
const MEDIA_LINK_TTL_SECS: i64 = 3600;

impl MessageBody {
    pub fn from_message(m: &Message) -> Self {
        Self {
            message_id: m.id.to_string(),
            device_uid: m.device_uid.to_string(),
            to: m.to.to_string(),
            group_id: m.to.group().map(ToString::to_string),
            kind: m.kind.as_str().to_owned(),
            status: m.status.as_str().to_owned(),
            failure_reason: m.failure_reason.clone(),
            text: m.text.clone(),
            media_id: m.media_id.as_ref().map(|i| i.to_string()),
            client_message_id: m.client_message_id.clone(),
            provider_message_id: Some(m.provider_message_id.clone()),
            source: m.dialect.as_str().to_owned(),
            send_at: m.send_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            deduplicated: false,
            history: None,
            media: None,
            poll_results: None,
            details: DetailsBody::from_details(&m.details),
        }
    }

    fn with_history(mut self, history: &[StatusChange]) -> Self {
        self.history = Some(
            history
                .iter()
                .map(|h| StatusChangeBody {
                    status: h.status.as_str().to_owned(),
                    at: h.at,
                    reason: h.reason.clone(),
                })
                .collect(),
        );
        self
    }
}

pub(super) fn accepted(a: Accepted) -> Response {
    let mut body = MessageBody::from_message(&a.message);
    body.deduplicated = a.duplicate;
    ok(StatusCode::ACCEPTED, body)
}

pub(super) fn phone(s: &str, field: &str) -> Result<Phone, ApiError> {
    Phone::parse(s).map_err(|e| ApiError::invalid(field, e.to_string()))
}

fn media_id(s: &str) -> Result<MediaId, ApiError> {
    MediaId::parse(s).map_err(|_| {
        ApiError::invalid(
            "mediaId",
            "must be a media id (med_…) from /v1/developer/media/upload",
        )
    })
}

/// What every send endpoint takes besides its content.
pub(super) struct Common {
    pub(super) device_uid: wagate_core::DeviceUid,
    pub(super) to: Recipient,
    pub(super) reply_to: Option<ReplyRef>,
    pub(super) client_message_id: Option<String>,
    pub(super) send_at: Option<Timestamp>,
}

impl Common {
    /// The send request for `kind` with this common part.
    pub(super) fn request(
        self,
        kind: SendKind,
        text: Option<Spintax>,
        media_id: Option<MediaId>,
        details: Details,
    ) -> SendRequest {
        SendRequest {
            device_uid: self.device_uid,
            to: self.to,
            kind,
            text,
            media_id,
            details,
            reply_to: self.reply_to,
            client_message_id: self.client_message_id,
            send_at: self.send_at,
            dialect: Dialect::Msgera,
        }
    }
}

/// A `replyTo`: any non-empty reference (what it names is checked at accept).
fn reply_ref(p: &mut FieldErrors, reply_to: Option<String>) -> Option<ReplyRef> {
    let r = reply_to?;
    if r.trim().is_empty() || r.len() > 200 {
        p.add(
            "replyTo",
            "must be a message id (msg_…) or a providerMessageId, 1 to 200 characters",
        );
        return None;
    }
    Some(ReplyRef {
        reference: r,
        field: "replyTo",
    })
}

/// `mentions`: phone numbers, each once.
pub(crate) fn mentions(p: &mut FieldErrors, field: &str, list: Option<&[String]>) -> Vec<Phone> {
    let Some(list) = list else {
        return Vec::new();
    };
    let phones: Vec<Phone> = list
        .iter()
        .enumerate()
        .filter_map(|(i, n)| p.check(phone(n, &format!("{field}[{i}]"))))
        .collect();
    if phones.len() == list.len() {
        p.check(
            check_mentions(&phones)
                .map_err(|e| ApiError::invalid(e.field.replacen("mentions", field, 1), e.reason)),
        );
    }
    phones
}

/// The chat a request names: `to` (a phone number) or `groupId`, exactly one.
pub(super) fn recipient(
    p: &mut FieldErrors,
    to: Option<&str>,
    group_id: Option<&str>,
) -> Option<Recipient> {
    match (to, group_id) {
        (Some(_), Some(_)) => {
            p.add(
                "groupId",
                "give either to (a phone number) or groupId, not both",
            );
            None
        }
        (Some(to), None) => p.check(phone(to, "to")).map(Recipient::Phone),
        (None, Some(g)) => p.check(group_id_of(g, "groupId")).map(Recipient::Group),
        (None, None) => {
            p.add(
                "to",
                "is required (a phone number), unless groupId names a group",
            );
            None
        }
    }
}

pub(crate) fn group_id_of(s: &str, field: &str) -> Result<GroupId, ApiError> {
    GroupId::parse(s).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// Who a request is for: the chat (`to` or `groupId`).
pub(super) struct Target<'a> {
    pub(super) to: Option<&'a str>,
    pub(super) group_id: Option<&'a str>,
}

pub(super) fn common(
    p: &mut FieldErrors,
    device_uid: &str,
    target: Target<'_>,
    reply_to: Option<String>,
    cmid: Option<String>,
    send_at: Option<&str>,
) -> Option<Common> {
    let reply_to = reply_ref(p, reply_to);
    let device_uid = p.check(parse_device_uid(device_uid, "deviceUid"));
    let to = recipient(p, target.to, target.group_id);
    let cmid_ok = match &cmid {
        Some(c) => p
            .check(validate_client_message_id(c, "clientMessageId"))
            .is_some(),
        None => true,
    };
    let send_at = match send_at {
        Some(s) => p.check(parse_send_at(s, "sendAt")).map(Some),
        None => Some(None),
    };
    match (device_uid, to, cmid_ok, send_at) {
        (Some(device_uid), Some(to), true, Some(send_at)) => Some(Common {
            device_uid,
            to,
            reply_to,
            client_message_id: cmid,
            send_at,
        }),
        _ => None,
    }
}

/// Sends a text message (spintax supported).
#[utoipa::path(post, path = "/v1/developer/messages/send", tag = "messages", security(("apiKey" = [])),
    request_body = SendTextRequest,
    responses(
        (status = 202, description = "Accepted and committed: it will be sent", body = MessageBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_text(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendTextRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let text = p.check(parse_text(&req.text, "text"));
    let mentions = mentions(&mut p, "mentions", req.mentions.as_deref());
    p.finish()?;
    let (Some(c), Some(text)) = (c, text) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        mentions,
        ..Details::default()
    };
    let a = s
        .messaging
        .send_message(
            &account,
            c.request(SendKind::Text, Some(text), None, details),
        )
        .await?;
    Ok(accepted(a))
}

/// Sends an uploaded image, video, audio file or document, with an optional caption.
#[utoipa::path(post, path = "/v1/developer/messages/send-media", tag = "messages", security(("apiKey" = [])),
    request_body = SendMediaRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_media(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendMediaRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let media = p.check(media_id(&req.media_id));
    let caption = match &req.caption {
        Some(t) => p
            .check(parse_text(t, "caption").map_err(ApiError::from))
            .map(Some),
        None => Some(None),
    };
    let mentions = mentions(&mut p, "mentions", req.mentions.as_deref());
    if !mentions.is_empty() && req.caption.is_none() {
        p.add("mentions", "needs a caption to mention people in");
    }
    p.finish()?;
    let (Some(c), Some(media), Some(caption)) = (c, media, caption) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        mentions,
        ..Details::default()
    };
    let a = s
        .messaging
        .send_message(
            &account,
            c.request(SendKind::MediaAuto, caption, Some(media), details),
        )
        .await?;
    Ok(accepted(a))
}

/// Sends an uploaded audio file as a voice note.
#[utoipa::path(post, path = "/v1/developer/messages/send-voice", tag = "messages", security(("apiKey" = [])),
    request_body = SendVoiceRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_voice(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendVoiceRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let media = p.check(media_id(&req.media_id));
    p.finish()?;
    let (Some(c), Some(media)) = (c, media) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let a = s
        .messaging
        .send_message(
            &account,
            c.request(
                SendKind::Exactly(MessageKind::Voice),
                None,
                Some(media),
                Details::default(),
            ),
        )
        .await?;
    Ok(accepted(a))
}

/// Checks which numbers are on WhatsApp.
#[utoipa::path(post, path = "/v1/developer/messages/check-whatsapp", tag = "messages", security(("apiKey" = [])),
    request_body = CheckWhatsappRequest,
    responses((status = 200, body = CheckWhatsappBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn check_whatsapp(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<CheckWhatsappRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let device = p.check(parse_device_uid(&req.device_uid, "deviceUid"));
    if req.numbers.is_empty() || req.numbers.len() > MAX_CHECK_NUMBERS {
        p.add(
            "numbers",
            format!("must hold 1 to {MAX_CHECK_NUMBERS} phone numbers"),
        );
    }
    let phones: Vec<Option<Phone>> = req
        .numbers
        .iter()
        .enumerate()
        .map(|(i, n)| p.check(phone(n, &format!("numbers[{i}]"))))
        .collect();
    p.finish()?;
    let Some(device) = device else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let phones: Vec<Phone> = phones.into_iter().flatten().collect();
    let checks = s
        .messaging
        .check_numbers(&account, &device, &phones)
        .await?;
    let results = req
        .numbers
        .iter()
        .zip(&phones)
        .map(|(given, phone)| {
            let found = checks.iter().find(|c| &c.phone == phone);
            NumberResult {
                number: given.clone(),
                on_whatsapp: found.is_some_and(|c| c.on_whatsapp),
                jid: found.and_then(|c| c.jid.clone()),
                lid: found.and_then(|c| c.lid.clone()),
            }
        })
        .collect();
    Ok(ok(StatusCode::OK, CheckWhatsappBody { results }))
}

/// One message with its full status history.
#[utoipa::path(get, path = "/v1/developer/messages/{messageId}", tag = "messages", security(("apiKey" = [])),
    params(("messageId" = String, Path)),
    responses((status = 200, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_message(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = MessageId::parse(&id).map_err(|_| ApiError::not_found("message"))?;
    let (m, history) = s.messaging.get_message(&account, &id).await?;
    let mut body = MessageBody::from_message(&m).with_history(&history);
    if let Some(media_id) = &m.media_id {
        match s.media.get_media(&account, media_id).await {
            Ok(media) => {
                let expires = wagate_core::time::now().timestamp() + MEDIA_LINK_TTL_SECS;
                body.media = Some(MediaInfoBody {
                    url: s
                        .media
                        .link(&s.media.link_base(host(&headers)), &media.id, expires),
                    media_id: media.id.to_string(),
                    mime_type: media.mime_type,
                    file_name: media.file_name,
                    size: media.size,
                });
            }
            // The message outlived its file: it is still worth showing.
            Err(ServiceError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(results) = s.messaging.poll_results(&m).await? {
        body.poll_results = Some(PollResultsBody::from_tally(&results));
    }
    Ok(ok(StatusCode::OK, body))
}

/// The host the client called, for media links when no public URL is configured.
pub(crate) fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMessagesQuery {
    pub device_uid: Option<String>,
    /// queued, sent, delivered, read, played or failed.
    pub status: Option<String>,
    /// Recipient phone number, or a group's id.
    pub recipient: Option<String>,
    /// Created at or after (ISO-8601).
    pub since: Option<String>,
    /// Created before (ISO-8601).
    pub until: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 20).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<MessageBody>,
    pub page: u32,
    pub limit: u32,
    pub total: u64,
}

fn parse_time(s: &str, field: &str) -> Result<Timestamp, ApiError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| wagate_core::time::from_millis(t.timestamp_millis()))
        .map_err(|_| ApiError::invalid(field, "must be an ISO-8601 date-time with a time zone"))
}

pub fn page_request(page: Option<u32>, limit: Option<u32>) -> Result<PageRequest, ApiError> {
    let page = page.unwrap_or(1);
    let limit = limit.unwrap_or(20);
    if page == 0 {
        return Err(ApiError::invalid("page", "must be at least 1"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 100"));
    }
    Ok(PageRequest { page, limit })
}

/// Lists messages to reconcile delivery states, newest first.
#[utoipa::path(get, path = "/v1/developer/messages", tag = "messages", security(("apiKey" = [])),
    params(ListMessagesQuery),
    responses((status = 200, body = MessagePage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_messages(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiQuery(q): ApiQuery<ListMessagesQuery>,
) -> ApiResult<Response> {
    let mut filter = MessageFilter::default();
    if let Some(d) = &q.device_uid {
        filter.device_uid = Some(parse_device_uid(d, "deviceUid")?);
    }
    if let Some(st) = &q.status {
        filter.status = Some(MessageStatus::parse(st).ok_or_else(|| {
            ApiError::invalid(
                "status",
                "must be queued, sent, delivered, read, played or failed",
            )
        })?);
    }
    if let Some(r) = &q.recipient {
        filter.to = Some(Recipient::parse(r).map_err(|_| {
            ApiError::invalid(
                "recipient",
                "must be a phone number in international format or a WhatsApp group id",
            )
        })?);
    }
    if let Some(t) = &q.since {
        filter.since = Some(parse_time(t, "since")?);
    }
    if let Some(t) = &q.until {
        filter.until = Some(parse_time(t, "until")?);
    }
    let page = page_request(q.page, q.limit)?;
    let result = s.messaging.list_messages(&account, &filter, page).await?;
    Ok(ok(
        StatusCode::OK,
        MessagePage {
            items: result.items.iter().map(MessageBody::from_message).collect(),
            page: result.page,
            limit: result.limit,
            total: result.total,
        },
    ))
}
