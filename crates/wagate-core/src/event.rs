//! Domain events: what happened, committed in the same transaction as the state they
//! report, then delivered to webhooks and the live stream.
//!
//! Every event has a stable id (receivers dedupe on it) and a store-assigned sequence
//! number (the live stream resumes from it).

use crate::chat::Recipient;
use crate::content::Details;
use crate::device::{Device, DeviceStatus};
use crate::id::{AccountId, DeviceUid, EventId, MessageId};
use crate::message::{InboundMessage, Message, MessageStatus};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The type of an event, as subscribers filter on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "message.received")]
    MessageReceived,
    #[serde(rename = "message.status")]
    MessageStatus,
    #[serde(rename = "device.status")]
    DeviceStatus,
    #[serde(rename = "message.reaction")]
    MessageReaction,
    #[serde(rename = "message.edited")]
    MessageEdited,
    #[serde(rename = "message.deleted")]
    MessageDeleted,
    #[serde(rename = "group.participants")]
    GroupParticipants,
    #[serde(rename = "poll.vote")]
    PollVote,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::MessageReceived,
        Self::MessageStatus,
        Self::DeviceStatus,
        Self::MessageReaction,
        Self::MessageEdited,
        Self::MessageDeleted,
        Self::GroupParticipants,
        Self::PollVote,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageReceived => "message.received",
            Self::MessageStatus => "message.status",
            Self::DeviceStatus => "device.status",
            Self::MessageReaction => "message.reaction",
            Self::MessageEdited => "message.edited",
            Self::MessageDeleted => "message.deleted",
            Self::GroupParticipants => "group.participants",
            Self::PollVote => "poll.vote",
        }
    }

    /// The names of every type, for error messages (`a, b or c`).
    pub fn names() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    /// Boxed: a message with its details is many times the size of the other events.
    #[serde(rename = "message.received")]
    MessageReceived(Box<ReceivedMessage>),
    #[serde(rename = "message.status")]
    MessageStatus(MessageStatusChanged),
    #[serde(rename = "device.status")]
    DeviceStatus(DeviceStatusChanged),
    /// Someone reacted to a message in a chat of the device (or removed their reaction).
    #[serde(rename = "message.reaction")]
    MessageReaction(Box<ReceivedMessage>),
    /// Someone edited a message they had sent.
    #[serde(rename = "message.edited")]
    MessageEdited(Box<ReceivedMessage>),
    /// Someone deleted a message they had sent, for everyone.
    #[serde(rename = "message.deleted")]
    MessageDeleted(Box<ReceivedMessage>),
    /// Members were added to, removed from, promoted or demoted in a group of the device,
    /// or left it (`details.groupChange`; the actor is the message's sender).
    #[serde(rename = "group.participants")]
    GroupParticipants(Box<ReceivedMessage>),
    /// Someone voted in a poll in a chat of the device (`details.target` is the poll,
    /// `details.vote` what they picked now; an empty vote takes theirs back).
    #[serde(rename = "poll.vote")]
    PollVote(Box<ReceivedMessage>),
}

impl EventData {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::MessageReceived(_) => EventType::MessageReceived,
            Self::MessageStatus(_) => EventType::MessageStatus,
            Self::DeviceStatus(_) => EventType::DeviceStatus,
            Self::MessageReaction(_) => EventType::MessageReaction,
            Self::MessageEdited(_) => EventType::MessageEdited,
            Self::MessageDeleted(_) => EventType::MessageDeleted,
            Self::GroupParticipants(_) => EventType::GroupParticipants,
            Self::PollVote(_) => EventType::PollVote,
        }
    }

    /// The event a received message is announced by: `message.received`, or for a
    /// reaction, edit or delete its own type (so receivers of the seed's format never get
    /// a shape they do not know unless they opt in).
    pub fn received(m: &InboundMessage, mime_type: Option<String>) -> Self {
        let r = Box::new(ReceivedMessage::from_inbound(m, mime_type));
        match m.kind {
            crate::message::MessageKind::Reaction => Self::MessageReaction(r),
            crate::message::MessageKind::Edit => Self::MessageEdited(r),
            crate::message::MessageKind::Delete => Self::MessageDeleted(r),
            crate::message::MessageKind::Participants => Self::GroupParticipants(r),
            crate::message::MessageKind::PollVote => Self::PollVote(r),
            _ => Self::MessageReceived(r),
        }
    }

    /// The received message an event is about (the chat events), if any.
    pub fn chat_message(&self) -> Option<&ReceivedMessage> {
        match self {
            Self::MessageReceived(m)
            | Self::MessageReaction(m)
            | Self::MessageEdited(m)
            | Self::MessageDeleted(m)
            | Self::GroupParticipants(m)
            | Self::PollVote(m) => Some(m),
            Self::MessageStatus(_) | Self::DeviceStatus(_) => None,
        }
    }
}

/// An inbound message, as events carry it (media by id; links are made when delivered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedMessage {
    pub message_id: MessageId,
    pub provider_message_id: String,
    pub from: Option<Phone>,
    pub from_lid: Option<String>,
    pub from_name: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub mime_type: Option<String>,
    /// A location, contact cards or a poll, and the quote (absent from events committed
    /// before details existed).
    #[serde(default, skip_serializing_if = "Details::is_empty")]
    pub details: Details,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub timestamp: Timestamp,
}

impl ReceivedMessage {
    pub fn from_inbound(m: &InboundMessage, mime_type: Option<String>) -> Self {
        Self {
            message_id: m.id.clone(),
            provider_message_id: m.provider_message_id.clone(),
            from: m.from.clone(),
            from_lid: m.from_lid.clone(),
            from_name: m.from_name.clone(),
            kind: m.kind.as_str().to_owned(),
            text: m.text.clone(),
            media_id: m.media_id.as_ref().map(|id| id.to_string()),
            mime_type,
            details: m.details.clone(),
            is_group: m.is_group,
            group_id: m.group_id.clone(),
            group_name: m.group_name.clone(),
            timestamp: m.timestamp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusChanged {
    pub message_id: MessageId,
    pub client_message_id: Option<String>,
    pub recipient: Recipient,
    pub status: MessageStatus,
    pub reason: Option<String>,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatusChanged {
    pub status: DeviceStatus,
    pub reason: Option<String>,
    pub phone: Option<Phone>,
    /// The QR code to scan, on `qr` events.
    pub qr: Option<String>,
    pub timestamp: Timestamp,
}

/// An event to commit.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    pub data: EventData,
    pub created_at: Timestamp,
}

impl NewEvent {
    pub fn new(
        account_id: AccountId,
        device_uid: DeviceUid,
        data: EventData,
        at: Timestamp,
    ) -> Self {
        Self {
            id: EventId::new(),
            account_id,
            device_uid,
            data,
            created_at: at,
        }
    }
}

impl NewEvent {
    /// The `message.status` event reporting a step: `message` as it is after the step,
    /// which happened at `at` (for `reason`, see [`crate::message::Message::step`]).
    pub fn message_status(message: &Message, at: Timestamp, reason: Option<&str>) -> Self {
        Self::new(
            message.account_id.clone(),
            message.device_uid.clone(),
            EventData::MessageStatus(MessageStatusChanged {
                message_id: message.id.clone(),
                client_message_id: message.client_message_id.clone(),
                recipient: message.to.clone(),
                status: message.status,
                reason: reason.map(str::to_owned),
                timestamp: at,
            }),
            at,
        )
    }

    /// The `device.status` event reporting `device` as a state change left it at `at`;
    /// `qr` travels in the event only (QR codes are not stored).
    pub fn device_status(device: &Device, qr: Option<&str>, at: Timestamp) -> Self {
        Self::new(
            device.account_id.clone(),
            device.uid.clone(),
            EventData::DeviceStatus(DeviceStatusChanged {
                status: device.status,
                reason: device.status_reason.clone(),
                phone: device.phone.clone(),
                qr: qr.map(str::to_owned),
                timestamp: at,
            }),
            at,
        )
    }
}

/// A committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Store-assigned, strictly increasing in commit order (the contract is in
    /// [`crate::store`]).
    pub seq: i64,
    pub id: EventId,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    pub data: EventData,
    pub created_at: Timestamp,
}
