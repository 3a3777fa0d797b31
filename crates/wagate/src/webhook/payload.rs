//! What a receiver gets: each event rendered in the dialect of its destination.
//!
//! Msgera destinations get Msgera's inbound payload (keys in the documented order, which
//! some receivers compare) and, when they opt in, `message.status` and `device.status` in
//! the same style; the MegaMsg instance webhook gets MegaMsg's "Message Received" shape and
//! the same style for the rest. Rendering is a pure function of the event, so every retry
//! of a delivery carries the same bytes (media links expire a fixed time after the event).

use crate::http::msgera::details::{DetailsBody, GroupChangeBody, QuoteBody};
use crate::keys::MediaLinkKey;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use wagate_core::content::{Details, Quote};
use wagate_core::event::{
    DeviceStatusChanged, Event, EventData, MessageStatusChanged, ReceivedMessage,
};
use wagate_core::webhook::EndpointKind;

/// Makes the `mediaUrl` of received media: a signed link to this server.
#[derive(Debug, Clone)]
pub struct MediaLinker {
    pub base_url: String,
    pub key: MediaLinkKey,
    /// How long after the event a link stays valid.
    pub ttl_secs: i64,
}

impl MediaLinker {
    fn link(&self, event: &Event, media_id: &str) -> String {
        let expires = event.created_at.timestamp().saturating_add(self.ttl_secs);
        self.key.link(&self.base_url, media_id, expires)
    }
}

/// `2026-04-12T10:11:23.000Z`, Msgera's timestamp format.
pub fn iso_millis(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `2026-05-02T12:00:00+00:00`, MegaMsg's.
pub fn iso_offset(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Msgera's `mediaType` for a message kind (voice notes are audio).
fn media_type(kind: &str) -> Option<String> {
    match kind {
        "image" | "video" | "audio" | "document" | "sticker" => Some(kind.to_owned()),
        "voice" => Some("audio".to_owned()),
        _ => None,
    }
}

/// An inbound message, to a Msgera personal or group URL (and on the live stream).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MsgeraMessageReceived {
    /// Stable across retries and redeliveries: receivers dedupe on it.
    #[schema(example = "evt_01hx…")]
    pub event_id: String,
    /// The device uid.
    pub session_id: String,
    /// The account id.
    pub tenant_id: String,
    /// The sender in E.164 (`null` when WhatsApp hid the number behind a LID).
    #[schema(example = "+201001234567")]
    pub from: Option<String>,
    pub from_name: Option<String>,
    /// The text, or a media caption.
    pub text: Option<String>,
    /// image, video, audio, document, sticker or null.
    pub media_type: Option<String>,
    /// A signed link to download the media from this server; expires (default 7 days
    /// after the event).
    pub media_url: Option<String>,
    /// When the message was sent, e.g. `2026-04-12T10:11:23.000Z`.
    pub timestamp: String,
    pub provider_message_id: String,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    /// Only on messages that have them, after the documented keys (so the payload of a
    /// plain text or media message is unchanged): `location`, `contacts`, `poll`,
    /// `replyTo` (the quoted message) and `mentions`.
    #[serde(flatten)]
    pub details: DetailsBody,
}

/// `message.reaction`, `message.edited` and `message.deleted` (opt-in), to a Msgera
/// URL: someone acted on a message in a chat of the device.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MsgeraChatAction {
    pub event_id: String,
    /// `message.reaction`, `message.edited` or `message.deleted`.
    pub event: String,
    pub session_id: String,
    pub tenant_id: String,
    /// Who reacted, edited or deleted (E.164; `null` when hidden behind a LID).
    pub from: Option<String>,
    pub from_lid: Option<String>,
    pub from_name: Option<String>,
    /// The message acted on: `providerMessageId`, `fromMe` (the device's own), `from`,
    /// `text` when known.
    pub target: Option<QuoteBody>,
    /// `message.reaction`: the emoji, `""` when the reaction was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// `message.edited`: the new text; otherwise a summary.
    pub text: Option<String>,
    /// `group.participants`: what changed (`action`: add, remove, promote, demote or
    /// leave) and for whom; `from` made the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_change: Option<GroupChangeBody>,
    /// `poll.vote`: the options picked (`[]`: the vote was taken back); `target` is the
    /// poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vec<String>>,
    /// WhatsApp's id of the reaction, edit or delete itself.
    pub provider_message_id: String,
    pub timestamp: String,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
}

/// `message.status` (opt-in), to a Msgera URL.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MsgeraMessageStatus {
    pub event_id: String,
    /// Always `message.status`.
    pub event: String,
    pub session_id: String,
    pub tenant_id: String,
    pub message_id: String,
    pub client_message_id: Option<String>,
    /// E.164, or the group's id for a group message.
    pub recipient: String,
    /// sent, delivered, read, played or failed.
    pub status: String,
    /// Why it failed, on `failed`.
    pub reason: Option<String>,
    pub timestamp: String,
}

/// `device.status` (opt-in), to a Msgera URL.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MsgeraDeviceStatus {
    pub event_id: String,
    /// Always `device.status`.
    pub event: String,
    pub session_id: String,
    pub tenant_id: String,
    /// connecting, qr, pair_code, qr_expired, connected, reconnecting, logged_out, banned,
    /// replaced or failed.
    pub status: String,
    /// Why (a disconnect reason, a ban message).
    pub reason: Option<String>,
    /// The linked number in E.164, once known.
    pub phone: Option<String>,
    /// The QR code to scan, on `qr`.
    pub qr: Option<String>,
    pub timestamp: String,
}

/// MegaMsg's "Message Received" `message` object.
#[derive(Debug, Serialize, ToSchema)]
pub struct MegaMessage {
    pub id: String,
    /// Digits only, no `+`.
    pub from: String,
    pub push_name: Option<String>,
    pub text: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
    pub is_group: bool,
    /// text, image, video, audio, voice, document, sticker, location, contact or poll.
    #[serde(rename = "type")]
    pub kind: String,
    /// Group messages only: the group's id and name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Media messages only: a signed download link and the MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// `location` messages: `{latitude, longitude, name, address}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<MegaLocation>,
    /// `contact` messages: the cards, `{name, phone}` (digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<MegaContact>>,
    /// `poll` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<MegaPoll>,
    /// Replies: the quoted message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MegaQuote>,
    /// Numbers (digits) the message mentions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// Reactions, edits and deletes: the message acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<MegaQuote>,
    /// Reactions: the emoji (`""`: removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// `group.participants`: what changed, for whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_change: Option<MegaGroupChange>,
    /// `poll.vote`: the options picked; `target` is the poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaGroupChange {
    /// add, remove, promote, demote or leave.
    pub action: String,
    pub participants: Vec<MegaMember>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaMember {
    /// Digits (a LID's user part when the number is unknown).
    pub phone: String,
    pub is_admin: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaLocation {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaContact {
    pub name: String,
    /// Digits only.
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaPoll {
    pub question: String,
    pub options: Vec<String>,
    pub multiple_answers: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaQuote {
    /// WhatsApp's id of the quoted message.
    pub id: String,
    /// The quoted message was the instance's own.
    pub from_me: bool,
    /// Its author (digits), when someone else.
    pub from: Option<String>,
    pub text: Option<String>,
}

fn mega_quote(q: &Quote) -> MegaQuote {
    MegaQuote {
        id: q.provider_message_id.clone(),
        from_me: q.from_me,
        from: q.from.as_ref().map(|p| p.digits().to_owned()).or_else(|| {
            q.from_lid
                .as_ref()
                .map(|l| l.split('@').next().unwrap_or(l).to_owned())
        }),
        text: q.text.clone(),
    }
}

impl MegaMessage {
    fn with_details(mut self, d: &Details) -> Self {
        self.location = d.location.as_ref().map(|l| MegaLocation {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name.clone(),
            address: l.address.clone(),
        });
        self.contacts = (!d.contacts.is_empty()).then(|| {
            d.contacts
                .iter()
                .map(|c| MegaContact {
                    name: c.name.clone(),
                    phone: c.phone.digits().to_owned(),
                })
                .collect()
        });
        self.poll = d.poll.as_ref().map(|p| MegaPoll {
            question: p.question.clone(),
            options: p.options.clone(),
            multiple_answers: p.multiple_answers,
        });
        self.reply_to = d.reply_to.as_ref().map(mega_quote);
        self.mentions = (!d.mentions.is_empty())
            .then(|| d.mentions.iter().map(|p| p.digits().to_owned()).collect());
        self.target = d.target.as_ref().map(mega_quote);
        self.emoji = d.emoji.clone();
        self.vote = d.vote.clone();
        self.group_change = d.group_change.as_ref().map(|c| MegaGroupChange {
            action: c.action.as_str().to_owned(),
            participants: c
                .participants
                .iter()
                .map(|p| MegaMember {
                    phone: p
                        .phone
                        .as_ref()
                        .map(|p| p.digits().to_owned())
                        .or_else(|| {
                            p.lid
                                .as_ref()
                                .map(|l| l.split('@').next().unwrap_or(l).to_owned())
                        })
                        .unwrap_or_default(),
                    is_admin: p.role.is_admin(),
                })
                .collect(),
        });
        self
    }
}

/// MegaMsg's "Message Received" webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct MegaMessageReceived {
    /// `message`; for the opt-in chat events their type (`message.reaction`,
    /// `message.edited`, `message.deleted`, `group.participants`, `poll.vote`).
    #[serde(rename = "type")]
    pub kind: String,
    pub message: MegaMessage,
    /// ISO 8601, e.g. `2026-05-02T12:00:00+00:00`.
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaStatus {
    pub id: String,
    pub client_message_id: Option<String>,
    /// Digits only, or the group's id for a group message.
    pub recipient: String,
    pub status: String,
    pub reason: Option<String>,
    /// Unix seconds.
    pub timestamp: i64,
}

/// `message.status` (opt-in), to a MegaMsg instance webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct MegaMessageStatus {
    /// Always `message.status`.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: MegaStatus,
    pub timestamp: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MegaDevice {
    pub status: String,
    pub reason: Option<String>,
    /// Digits only.
    pub phone: Option<String>,
    pub qr: Option<String>,
}

/// `device.status` (opt-in), to a MegaMsg instance webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct MegaDeviceStatus {
    /// Always `device.status`.
    #[serde(rename = "type")]
    pub kind: String,
    pub device: MegaDevice,
    pub timestamp: String,
}

fn msgera_received(e: &Event, m: &ReceivedMessage, links: &MediaLinker) -> MsgeraMessageReceived {
    MsgeraMessageReceived {
        event_id: e.id.to_string(),
        session_id: e.device_uid.to_string(),
        tenant_id: e.account_id.to_string(),
        from: m.from.as_ref().map(|p| p.e164()),
        from_name: m.from_name.clone(),
        text: m.text.clone(),
        media_type: media_type(&m.kind),
        media_url: m.media_id.as_deref().map(|id| links.link(e, id)),
        timestamp: iso_millis(m.timestamp),
        provider_message_id: m.provider_message_id.clone(),
        is_group: m.is_group,
        group_id: m.group_id.clone(),
        group_name: m.group_name.clone(),
        details: DetailsBody::from_details(&m.details),
    }
}

fn msgera_status(e: &Event, s: &MessageStatusChanged) -> MsgeraMessageStatus {
    MsgeraMessageStatus {
        event_id: e.id.to_string(),
        event: "message.status".into(),
        session_id: e.device_uid.to_string(),
        tenant_id: e.account_id.to_string(),
        message_id: s.message_id.to_string(),
        client_message_id: s.client_message_id.clone(),
        recipient: s.recipient.to_string(),
        status: s.status.as_str().to_owned(),
        reason: s.reason.clone(),
        timestamp: iso_millis(s.timestamp),
    }
}

fn msgera_device(e: &Event, d: &DeviceStatusChanged) -> MsgeraDeviceStatus {
    MsgeraDeviceStatus {
        event_id: e.id.to_string(),
        event: "device.status".into(),
        session_id: e.device_uid.to_string(),
        tenant_id: e.account_id.to_string(),
        status: d.status.as_str().to_owned(),
        reason: d.reason.clone(),
        phone: d.phone.as_ref().map(|p| p.e164()),
        qr: d.qr.clone(),
        timestamp: iso_millis(d.timestamp),
    }
}

fn msgera_action(e: &Event, m: &ReceivedMessage) -> MsgeraChatAction {
    let details = DetailsBody::from_details(&m.details);
    MsgeraChatAction {
        event_id: e.id.to_string(),
        event: e.data.event_type().as_str().to_owned(),
        session_id: e.device_uid.to_string(),
        tenant_id: e.account_id.to_string(),
        from: m.from.as_ref().map(|p| p.e164()),
        from_lid: m.from_lid.clone(),
        from_name: m.from_name.clone(),
        target: details.target,
        emoji: m.details.emoji.clone(),
        text: m.text.clone(),
        group_change: details.group_change,
        vote: details.vote,
        provider_message_id: m.provider_message_id.clone(),
        timestamp: iso_millis(m.timestamp),
        is_group: m.is_group,
        group_id: m.group_id.clone(),
        group_name: m.group_name.clone(),
    }
}

/// The Msgera rendering of any event (webhooks and the live stream).
pub fn msgera(event: &Event, links: &MediaLinker) -> serde_json::Result<Vec<u8>> {
    match &event.data {
        EventData::MessageReceived(m) => serde_json::to_vec(&msgera_received(event, m, links)),
        EventData::MessageStatus(s) => serde_json::to_vec(&msgera_status(event, s)),
        EventData::DeviceStatus(d) => serde_json::to_vec(&msgera_device(event, d)),
        EventData::MessageReaction(m)
        | EventData::MessageEdited(m)
        | EventData::MessageDeleted(m)
        | EventData::GroupParticipants(m)
        | EventData::PollVote(m) => serde_json::to_vec(&msgera_action(event, m)),
    }
}

/// The MegaMsg rendering of any event.
pub fn megamsg(event: &Event, links: &MediaLinker) -> serde_json::Result<Vec<u8>> {
    let timestamp = iso_offset(event.created_at);
    match &event.data {
        EventData::MessageReceived(m)
        | EventData::MessageReaction(m)
        | EventData::MessageEdited(m)
        | EventData::MessageDeleted(m)
        | EventData::GroupParticipants(m)
        | EventData::PollVote(m) => {
            // `message` for the seed's inbound event; the event's own type otherwise.
            let kind = match &event.data {
                EventData::MessageReceived(_) => "message",
                other => other.event_type().as_str(),
            };
            let from = match (&m.from, &m.from_lid) {
                (Some(p), _) => p.digits().to_owned(),
                (None, Some(lid)) => lid.split('@').next().unwrap_or(lid).to_owned(),
                (None, None) => String::new(),
            };
            serde_json::to_vec(&MegaMessageReceived {
                kind: kind.into(),
                message: MegaMessage {
                    id: m.provider_message_id.clone(),
                    from,
                    push_name: m.from_name.clone(),
                    text: m.text.clone(),
                    timestamp: m.timestamp.timestamp(),
                    is_group: m.is_group,
                    kind: m.kind.clone(),
                    group_id: if m.is_group { m.group_id.clone() } else { None },
                    group_name: if m.is_group {
                        m.group_name.clone()
                    } else {
                        None
                    },
                    media_url: m.media_id.as_deref().map(|id| links.link(event, id)),
                    mime_type: m.media_id.as_ref().and(m.mime_type.clone()),
                    location: None,
                    contacts: None,
                    poll: None,
                    reply_to: None,
                    mentions: None,
                    target: None,
                    emoji: None,
                    group_change: None,
                    vote: None,
                }
                .with_details(&m.details),
                timestamp,
            })
        }
        EventData::MessageStatus(s) => serde_json::to_vec(&MegaMessageStatus {
            kind: "message.status".into(),
            status: MegaStatus {
                id: s.message_id.to_string(),
                client_message_id: s.client_message_id.clone(),
                recipient: s.recipient.key().to_owned(),
                status: s.status.as_str().to_owned(),
                reason: s.reason.clone(),
                timestamp: s.timestamp.timestamp(),
            },
            timestamp,
        }),
        EventData::DeviceStatus(d) => serde_json::to_vec(&MegaDeviceStatus {
            kind: "device.status".into(),
            device: MegaDevice {
                status: d.status.as_str().to_owned(),
                reason: d.reason.clone(),
                phone: d.phone.as_ref().map(|p| p.digits().to_owned()),
                qr: d.qr.clone(),
            },
            timestamp,
        }),
    }
}

/// The body for a destination.
pub fn render(
    event: &Event,
    endpoint: EndpointKind,
    links: &MediaLinker,
) -> serde_json::Result<Vec<u8>> {
    match endpoint {
        EndpointKind::Personal | EndpointKind::Group => msgera(event, links),
        EndpointKind::Instance => megamsg(event, links),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_in_each_dialects_format() {
        let t = Utc
            .with_ymd_and_hms(2026, 4, 12, 10, 11, 23)
            .single()
            .unwrap();
        assert_eq!(iso_millis(t), "2026-04-12T10:11:23.000Z");
        assert_eq!(iso_offset(t), "2026-04-12T10:11:23+00:00");
    }
}
