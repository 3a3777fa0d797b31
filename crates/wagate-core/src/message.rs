//! Messages: outbound sends with their status lifecycle, and inbound messages received.

use crate::chat::Recipient;
use crate::content::Details;
use crate::id::{AccountId, DeviceUid, MediaId, MessageId};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an outbound message is in its life.
///
/// Statuses only move forward (`queued → sent → delivered → read → played`); `failed` is
/// reachable from `queued`, and from `sent` when WhatsApp reports a message it had taken
/// undeliverable after all (the Cloud API does, by webhook: outside the 24-hour window,
/// say) — never once the recipient had it. A late or duplicate receipt never moves a
/// status backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    /// A voice note was listened to.
    Played,
    Failed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 6] = [
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Played,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Played => 4,
            Self::Failed => 1,
        }
    }

    /// Whether a message in `self` may move to `next`.
    pub fn can_advance_to(self, next: MessageStatus) -> bool {
        match (self, next) {
            (Self::Failed, _) => false,
            (Self::Queued | Self::Sent, Self::Failed) => true,
            (_, Self::Failed) => false,
            _ => next.rank() > self.rank(),
        }
    }

    /// Whether the recipient reports this status (a receipt), rather than the gateway or
    /// WhatsApp's server.
    pub fn is_receipt(self) -> bool {
        matches!(self, Self::Delivered | Self::Read | Self::Played)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Played)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of WhatsApp message a send produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    Video,
    /// An audio file, shown with a player.
    Audio,
    /// A push-to-talk voice note.
    Voice,
    Document,
    Sticker,
    /// A point on the map ([`crate::content::Location`]).
    Location,
    /// One or more contact cards ([`crate::content::ContactCard`]).
    Contact,
    /// A poll ([`crate::content::Poll`]).
    Poll,
    /// An emoji reaction to another message (`""` removes it).
    Reaction,
    /// A new text for a message the device sent.
    Edit,
    /// A message the device sent, deleted for everyone.
    Delete,
    /// Members added to, removed from, promoted or demoted in a group, or leaving it
    /// (received only; [`crate::chat::GroupChange`] in the details).
    Participants,
    /// A vote in a poll (`details.target` is the poll, `details.vote` the options
    /// picked; none picked takes the vote back).
    PollVote,
    /// A message template approved by Meta ([`crate::content::Template`]; Cloud API
    /// devices only).
    Template,
}

impl MessageKind {
    pub const ALL: [MessageKind; 16] = [
        Self::Text,
        Self::Image,
        Self::Video,
        Self::Audio,
        Self::Voice,
        Self::Document,
        Self::Sticker,
        Self::Location,
        Self::Contact,
        Self::Poll,
        Self::Reaction,
        Self::Edit,
        Self::Delete,
        Self::Participants,
        Self::PollVote,
        Self::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contact => "contact",
            Self::Poll => "poll",
            Self::Reaction => "reaction",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::Participants => "participants",
            Self::PollVote => "poll_vote",
            Self::Template => "template",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn has_media(self) -> bool {
        !matches!(
            self,
            Self::Text
                | Self::Location
                | Self::Contact
                | Self::Poll
                | Self::Reaction
                | Self::Edit
                | Self::Delete
                | Self::Participants
                | Self::PollVote
                | Self::Template
        )
    }

    /// Whether the message acts on another one or on the chat rather than being read on
    /// its own: reactions, edits and deletes (on their `details.target`) and group
    /// membership changes. Received ones are announced by their own event types, not as
    /// `message.received`, and never count as unread.
    pub fn is_action(self) -> bool {
        matches!(
            self,
            Self::Reaction | Self::Edit | Self::Delete | Self::Participants | Self::PollVote
        )
    }
}

/// Which API dialect accepted a message (for support and statistics; the pipeline is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Msgera,
    Megamsg,
    Dashboard,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Msgera => "msgera",
            Self::Megamsg => "megamsg",
            Self::Dashboard => "dashboard",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Msgera, Self::Megamsg, Self::Dashboard]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An outbound message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    pub to: Recipient,
    pub kind: MessageKind,
    /// The text or caption actually sent (spintax already expanded).
    pub text: Option<String>,
    pub media_id: Option<MediaId>,
    /// A location, contact cards or a poll, and the quote and mentions it carries.
    pub details: Details,
    pub client_message_id: Option<String>,
    pub status: MessageStatus,
    pub failure_reason: Option<String>,
    /// WhatsApp's id for the message, set at accept ([`crate::engine::provider_message_id`]):
    /// every attempt sends under it, so WhatsApp shows a resent message once.
    pub provider_message_id: String,
    pub dialect: Dialect,
    /// When the send was scheduled for, if it was.
    pub send_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Message {
    /// Moves the message to `status` at `at`, if that is forward
    /// ([`MessageStatus::can_advance_to`]): the message as it then is, the history step and
    /// the `message.status` event a store commits together. `None` when it does not move
    /// (a duplicate or late receipt). `reason` is kept as the failure reason only by a
    /// step to `failed`; `updated_at` never goes back, even when receipts arrive out of
    /// order.
    pub fn step(
        &self,
        status: MessageStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Option<StatusStep> {
        if !self.status.can_advance_to(status) {
            return None;
        }
        let mut message = self.clone();
        if status == MessageStatus::Failed {
            message.failure_reason = reason.map(str::to_owned);
        }
        message.status = status;
        message.updated_at = message.updated_at.max(at);
        let event = crate::event::NewEvent::message_status(&message, at, reason);
        Some(StatusStep {
            change: StatusChange {
                status,
                at,
                reason: reason.map(str::to_owned),
            },
            event,
            message,
        })
    }
}

impl Message {
    /// The steps that move the message to `status` at `at`: [`Self::step`], preceded by
    /// one for each status of the delivery chain (sent, delivered, read) it skips, at the
    /// same time and in order. A later status implies the earlier ones, and receipts do
    /// arrive out of order (whatsapp-rust hands them to the application concurrently; a
    /// device that moved to another node gets what WhatsApp kept for it after newer
    /// receipts; a delivery receipt can beat the worker's commit of the server's ack), so
    /// this way every message's history and webhooks have every step it went through,
    /// once. Empty when it does not move.
    pub fn steps(
        &self,
        status: MessageStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> Vec<StatusStep> {
        if !self.status.can_advance_to(status) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut current = self.clone();
        if status != MessageStatus::Failed {
            for implied in [
                MessageStatus::Sent,
                MessageStatus::Delivered,
                MessageStatus::Read,
            ] {
                if implied.rank() > current.status.rank()
                    && implied.rank() < status.rank()
                    && let Some(step) = current.step(implied, at, None)
                {
                    current = step.message.clone();
                    out.push(step);
                }
            }
        }
        out.extend(current.step(status, at, reason));
        out
    }
}

/// What one status step writes, decided by [`Message::step`].
#[derive(Debug, Clone)]
pub struct StatusStep {
    /// The message after the step.
    pub message: Message,
    /// Its history row.
    pub change: StatusChange,
    /// Its `message.status` event.
    pub event: crate::event::NewEvent,
}

/// What a `clientMessageId` stands for: the request as the caller wrote it (the spintax
/// template, not the variant picked), on one endpoint. Following Stripe and the IETF
/// Idempotency-Key draft, the same key with the same request replays the original; the
/// same key with a different request is a caller's mistake and is refused, never
/// answered with the wrong message.
#[derive(Debug, Clone, Copy)]
pub struct RequestIdentity<'a> {
    /// The dialect and kind of send (`msgera:text`, `megamsg:image`, …).
    pub endpoint: &'a str,
    pub to: &'a Recipient,
    /// Text or caption as written (a spintax template).
    pub text: Option<&'a str>,
    pub media: Option<&'a MediaId>,
    pub send_at: Option<Timestamp>,
    /// [`Details::request_fingerprint`]: absent for requests without details, so keys
    /// of messages accepted before details existed still replay.
    pub details: Option<&'a str>,
}

impl RequestIdentity<'_> {
    /// A hex SHA-256 over a length-prefixed encoding of every part (no two different
    /// requests encode alike, whatever their texts contain).
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |tag: &[u8], v: Option<&[u8]>| {
            h.update(tag);
            match v {
                Some(v) => {
                    h.update((v.len() as u64).to_be_bytes());
                    h.update(v);
                }
                None => h.update(u64::MAX.to_be_bytes()),
            }
        };
        part(b"e", Some(self.endpoint.as_bytes()));
        part(b"t", Some(self.to.key().as_bytes()));
        part(b"x", self.text.map(str::as_bytes));
        part(b"m", self.media.map(|m| m.as_str().as_bytes()));
        let at = self.send_at.map(|t| crate::time::millis(t).to_be_bytes());
        part(b"s", at.as_ref().map(|a| a.as_slice()));
        if let Some(d) = self.details {
            part(b"d", Some(d.as_bytes()));
        }
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether a send that reuses a `clientMessageId` is a replay of the original request
/// (answer with the original) or a different request (refuse). Messages accepted before
/// requests were fingerprinted (`None`) are taken as replays: nothing else can be known.
pub fn is_replay(original_request_hash: Option<&str>, request_hash: &str) -> bool {
    original_request_hash.is_none_or(|h| h == request_hash)
}

/// A message to accept for sending.
#[derive(Debug, Clone)]
pub struct NewOutboundMessage {
    pub id: MessageId,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    pub to: Recipient,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media_id: Option<MediaId>,
    pub details: Details,
    pub client_message_id: Option<String>,
    /// [`RequestIdentity::hash`] of the request, kept with the message so a reused
    /// `clientMessageId` can be told from a replay.
    pub request_hash: String,
    pub dialect: Dialect,
    pub send_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// One step of a message's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: MessageStatus,
    pub at: Timestamp,
    pub reason: Option<String>,
}

/// A message received from WhatsApp on a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundMessage {
    pub id: MessageId,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    /// WhatsApp's message id; receiving the same one twice stores it once.
    pub provider_message_id: String,
    /// The sender's number, when it could be resolved.
    pub from: Option<Phone>,
    /// The sender's LID (`…@lid`), when WhatsApp identified them by one.
    pub from_lid: Option<String>,
    pub from_name: Option<String>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media_id: Option<MediaId>,
    /// A location, contact cards or a poll, and the message it replies to.
    pub details: Details,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    /// When WhatsApp says the message was sent.
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    /// When the device marked it read (`POST /v1/developer/chats/read`), if it did.
    pub read_at: Option<Timestamp>,
}

impl From<crate::media::MediaClass> for MessageKind {
    /// The message a media file of this class is sent as by default.
    fn from(class: crate::media::MediaClass) -> Self {
        use crate::media::MediaClass;
        match class {
            MediaClass::Image => Self::Image,
            MediaClass::Video => Self::Video,
            MediaClass::Audio => Self::Audio,
            MediaClass::Sticker => Self::Sticker,
            MediaClass::Document => Self::Document,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_skipped_status_is_implied_by_a_later_one() {
        let at = crate::time::now();
        let queued = queued_message();
        let statuses = |steps: &[StatusStep]| -> Vec<MessageStatus> {
            steps.iter().map(|s| s.change.status).collect()
        };
        // A read receipt before the delivery receipt (or before the ack's commit).
        let steps = queued.steps(MessageStatus::Read, at, None);
        assert_eq!(
            statuses(&steps),
            [
                MessageStatus::Sent,
                MessageStatus::Delivered,
                MessageStatus::Read
            ]
        );
        assert!(
            steps
                .iter()
                .all(|s| s.change.at == at && s.change.reason.is_none())
        );
        let read = &steps.last().unwrap().message;
        assert_eq!(read.status, MessageStatus::Read);
        // Each step's event shows the message as it was after that step.
        let event_statuses: Vec<MessageStatus> = steps
            .iter()
            .map(|s| match &s.event.data {
                crate::event::EventData::MessageStatus(m) => m.status,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            event_statuses,
            [
                MessageStatus::Sent,
                MessageStatus::Delivered,
                MessageStatus::Read
            ]
        );
        // The late delivery receipt then moves nothing.
        assert!(read.steps(MessageStatus::Delivered, at, None).is_empty());
        assert_eq!(
            statuses(&read.steps(MessageStatus::Played, at, None)),
            [MessageStatus::Played]
        );
        // The next step alone is only itself, and failing implies nothing.
        assert_eq!(
            statuses(&queued.steps(MessageStatus::Sent, at, Some("x"))),
            [MessageStatus::Sent]
        );
        let failed = queued.steps(MessageStatus::Failed, at, Some("refused"));
        assert_eq!(statuses(&failed), [MessageStatus::Failed]);
        assert_eq!(failed[0].change.reason.as_deref(), Some("refused"));
    }
    use super::*;

    #[test]
    fn request_hashes_tell_requests_apart() {
        let to = Recipient::Phone(Phone::parse("+201001234567").unwrap());
        let other = Recipient::Phone(Phone::parse("+201001234568").unwrap());
        let group = Recipient::Group(crate::GroupId::parse("120363012345678901@g.us").unwrap());
        let media = MediaId::new();
        let base = RequestIdentity {
            endpoint: "msgera:text",
            to: &to,
            text: Some("{Hi|Hello}"),
            media: None,
            send_at: None,
            details: None,
        };
        let h = base.hash();
        assert_eq!(h, base.hash(), "stable");
        assert_eq!(h.len(), 64);
        let variants = [
            RequestIdentity {
                endpoint: "msgera:media",
                ..base
            },
            RequestIdentity { to: &other, ..base },
            RequestIdentity { to: &group, ..base },
            RequestIdentity {
                text: Some("{Hi|Hello} "),
                ..base
            },
            RequestIdentity { text: None, ..base },
            RequestIdentity {
                media: Some(&media),
                ..base
            },
            RequestIdentity {
                send_at: Some(crate::time::from_millis(1)),
                ..base
            },
            RequestIdentity {
                details: Some("{}"),
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
        // Length prefixes: moving bytes from one part to the next changes the hash.
        let a = RequestIdentity {
            endpoint: "ab",
            text: Some("c"),
            ..base
        };
        let b = RequestIdentity {
            endpoint: "a",
            text: Some("bc"),
            ..base
        };
        assert_ne!(a.hash(), b.hash());
    }

    /// The README's "statuses only move forward": every pair of statuses, checked against
    /// the one order `queued → sent → delivered → read → played`, or `queued|sent → failed`.
    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        let order = [Queued, Sent, Delivered, Read, Played];
        for from in MessageStatus::ALL {
            for to in MessageStatus::ALL {
                let expected = match (from, to) {
                    (Queued | Sent, Failed) => true,
                    (Failed, _) | (_, Failed) => false,
                    _ => {
                        let at = |s| order.iter().position(|o| *o == s);
                        at(to) > at(from)
                    }
                };
                assert_eq!(from.can_advance_to(to), expected, "{from} → {to}");
            }
        }
        let finals: Vec<_> = MessageStatus::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [Played, Failed]);
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
        }
        assert_eq!(MessageStatus::parse("sending"), None);
    }

    fn queued_message() -> Message {
        let m = NewOutboundMessage {
            id: MessageId::new(),
            account_id: AccountId::new(),
            device_uid: DeviceUid::new(),
            to: Phone::parse("+201001234567").unwrap().into(),
            kind: MessageKind::Text,
            text: Some("hi".into()),
            media_id: None,
            details: Details::default(),
            client_message_id: Some("k".into()),
            request_hash: "h".into(),
            dialect: Dialect::Msgera,
            send_at: None,
            created_at: crate::time::from_millis(10_000),
        };
        crate::accept::queued(&m, "3EB0")
    }

    #[test]
    fn a_step_moves_forward_with_its_history_and_event() {
        use crate::event::EventData;
        let m = queued_message();
        let at = crate::time::from_millis(12_000);
        let sent = m
            .step(MessageStatus::Sent, at, None)
            .expect("queued → sent");
        assert_eq!(sent.message.status, MessageStatus::Sent);
        assert_eq!(sent.message.updated_at, at);
        assert_eq!(sent.change.status, MessageStatus::Sent);
        assert_eq!(sent.change.at, at);
        assert_eq!(sent.event.account_id, m.account_id);
        assert_eq!(sent.event.device_uid, m.device_uid);
        assert_eq!(sent.event.created_at, at);
        let EventData::MessageStatus(data) = &sent.event.data else {
            panic!("a message.status event");
        };
        assert_eq!(data.message_id, m.id);
        assert_eq!(data.client_message_id.as_deref(), Some("k"));
        assert_eq!(data.recipient, m.to);
        assert_eq!(data.status, MessageStatus::Sent);
        assert_eq!(data.timestamp, at);
        // Backwards, sideways or again: nothing.
        assert!(sent.message.step(MessageStatus::Sent, at, None).is_none());
        assert!(sent.message.step(MessageStatus::Queued, at, None).is_none());
        // Undeliverable after WhatsApp took it (the Cloud API says so by webhook): failed,
        // with the reason; but never once the recipient had it.
        let undelivered = sent
            .message
            .step(MessageStatus::Failed, at, Some("re-engagement"))
            .expect("sent → failed");
        assert_eq!(undelivered.message.status, MessageStatus::Failed);
        let delivered = sent
            .message
            .step(MessageStatus::Delivered, at, None)
            .unwrap();
        assert!(
            delivered
                .message
                .step(MessageStatus::Failed, at, Some("late"))
                .is_none()
        );
        // A receipt stamped earlier than the last change does not move `updated_at` back.
        let early = crate::time::from_millis(11_000);
        let read = sent.message.step(MessageStatus::Read, early, None).unwrap();
        assert_eq!(read.message.updated_at, at);
        assert_eq!(read.change.at, early);
    }

    #[test]
    fn only_a_failure_keeps_its_reason_on_the_message() {
        use crate::event::EventData;
        let m = queued_message();
        let at = crate::time::from_millis(12_000);
        let failed = m.step(MessageStatus::Failed, at, Some("refused")).unwrap();
        assert_eq!(failed.message.failure_reason.as_deref(), Some("refused"));
        assert_eq!(failed.change.reason.as_deref(), Some("refused"));
        let EventData::MessageStatus(data) = &failed.event.data else {
            panic!("a message.status event");
        };
        assert_eq!(data.reason.as_deref(), Some("refused"));
        let sent = m.step(MessageStatus::Sent, at, Some("why")).unwrap();
        assert_eq!(sent.message.failure_reason, None);
        assert_eq!(sent.change.reason.as_deref(), Some("why"));
    }

    #[test]
    fn a_reused_key_replays_only_the_same_request() {
        let h = "a".repeat(64);
        assert!(is_replay(Some(&h), &h));
        assert!(is_replay(None, &h), "messages from before fingerprints");
        assert!(!is_replay(Some(&"b".repeat(64)), &h));
    }
}
