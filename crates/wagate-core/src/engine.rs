//! The port to WhatsApp: an [`Engine`] starts one [`EngineSession`] per device; sessions
//! take commands and report what happens as [`EngineEvent`]s.
//!
//! Engines know nothing of HTTP or the store. The device runtime owns the sessions and
//! persists what their events mean; an engine waits for [`EngineEvents::emit`] to return
//! before acknowledging an inbound message to WhatsApp, which is what makes receiving
//! crash-safe.
//!
//! The promises below are checked for every engine by the conformance suite in
//! `crates/wagate-engine-tests`.

use crate::chat::{GroupId, GroupInfo, MemberOutcome, MembershipChange, Recipient};
use crate::content::{ContactCard, Details, Location, Poll, Quote, Template};
use crate::device::EngineKind;
use crate::id::{DeviceUid, MessageId};
use crate::message::MessageKind;
use crate::phone::Phone;
use crate::time::Timestamp;
use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// WhatsApp's message id for one of our messages, derived from our id so that a resend
/// after a crash carries the same id and the recipient's phone shows it once. Shaped like
/// WhatsApp Web's own ids (`3EB0` + 18 uppercase hex).
pub fn provider_message_id(id: &MessageId) -> String {
    let digest = Sha256::digest(id.as_str().as_bytes());
    let mut out = String::with_capacity(22);
    out.push_str("3EB0");
    for b in &digest[..9] {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// What a device's session needs to know about the device when it starts.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    pub uid: DeviceUid,
    pub name: String,
    /// The number the device was linked to, when it was.
    pub phone: Option<Phone>,
    /// The epoch of the device lease this node drives it under
    /// ([`crate::lease::Fence`]): an engine that keeps protocol state in a database other
    /// nodes share fences its writes with it, so a node that lost the device cannot write
    /// over the new holder's keys.
    pub epoch: i64,
}

/// A message to hand to WhatsApp.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: MessageId,
    /// The id WhatsApp will know the message by ([`provider_message_id`]).
    pub provider_message_id: String,
    pub to: Recipient,
    pub content: OutgoingContent,
    /// The message it replies to, and whom it mentions (texts and captions).
    pub context: MessageContext,
}

/// What a message says about other messages and people: the quote shown above a reply,
/// the people whose names are highlighted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    pub reply_to: Option<Quote>,
    pub mentions: Vec<Phone>,
}

#[derive(Debug, Clone)]
pub enum OutgoingContent {
    Text {
        text: String,
    },
    Media {
        kind: MessageKind,
        data: Bytes,
        mime_type: String,
        file_name: Option<String>,
        caption: Option<String>,
    },
    Location(Location),
    /// One or more contact cards (WhatsApp's contacts-array message when several).
    Contacts(Vec<ContactCard>),
    /// A poll; its `secret` is set (chosen at accept).
    Poll(Poll),
    /// An emoji reaction to `target` (`""` removes the device's reaction).
    Reaction {
        target: Quote,
        emoji: String,
    },
    /// A new text for `target`, a message the device sent.
    Edit {
        target: Quote,
        text: String,
    },
    /// `target`, a message the device sent, deleted for everyone.
    Delete {
        target: Quote,
    },
    /// A vote in the poll `target` (whose question, options and secret are `poll`):
    /// `options` picked, none to take the vote back.
    PollVote {
        target: Quote,
        poll: Poll,
        options: Vec<String>,
    },
    /// A message template Meta approved (engines other than the Cloud API's refuse it).
    Template(Template),
}

/// Whether a number is on WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheck {
    pub phone: Phone,
    pub on_whatsapp: bool,
    /// The phone JID (`<digits>@s.whatsapp.net`) when registered.
    pub jid: Option<String>,
    /// The LID (`…@lid`) when WhatsApp returned one.
    pub lid: Option<String>,
}

/// A code to type on the phone under *Linked devices → Link with phone number*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode {
    pub code: String,
    pub expires_in: Duration,
}

/// Why an engine could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The device is not connected to WhatsApp; the caller may retry later.
    #[error("device not connected: {0}")]
    NotConnected(String),
    /// A temporary failure (timeout, connection lost); retrying may succeed.
    #[error("temporary engine failure: {0}")]
    Transient(String),
    /// WhatsApp refused for good (number not on WhatsApp, media rejected); retrying will not help.
    #[error("{reason}")]
    Rejected {
        code: Option<String>,
        reason: String,
    },
    /// Throttled by WhatsApp; `retry_after` says how long to wait when known.
    #[error("rate limited: {reason}")]
    RateLimited {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The engine cannot do this at all.
    #[error("not supported by this engine: {0}")]
    Unsupported(String),
    /// The engine itself failed (store, bug); logged, never shown in detail.
    #[error("engine failure: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotConnected(_)
                | Self::Transient(_)
                | Self::RateLimited { .. }
                | Self::Internal(_)
        )
    }
}

/// What the chat shows of the device's user to the other side: typing, recording a voice
/// note, or neither (`Paused` clears the other two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    Typing,
    Recording,
    Paused,
}

impl ChatState {
    pub const ALL: [ChatState; 3] = [Self::Typing, Self::Recording, Self::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Typing => "typing",
            Self::Recording => "recording",
            Self::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A received message to mark read: its WhatsApp id and, in a group, who sent it
/// (WhatsApp addresses a group's read receipt to the sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMark {
    pub provider_message_id: String,
    pub sender: Option<Phone>,
}

fn no_groups() -> EngineError {
    EngineError::Unsupported("groups are not available on this engine".into())
}

/// Which receipt WhatsApp sent for an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
    Played,
}

/// Media received with an inbound message.
#[derive(Debug, Clone)]
pub struct IncomingMedia {
    pub data: Bytes,
    pub mime_type: String,
    pub file_name: Option<String>,
}

/// A message received from WhatsApp.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    pub provider_message_id: String,
    /// The sender's number, when it can be resolved (also when WhatsApp used a LID).
    pub from: Option<Phone>,
    pub from_lid: Option<String>,
    pub from_name: Option<String>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media: Option<IncomingMedia>,
    /// A location, contact cards or a poll, and the message it replies to.
    pub details: Details,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub timestamp: Timestamp,
}

/// What a session reports.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    Connecting,
    /// A QR code to scan; replaces any earlier one.
    Qr {
        code: String,
        expires_in: Duration,
    },
    /// A pair code was issued.
    PairCode {
        code: String,
        expires_in: Duration,
    },
    /// The QR codes ran out before one was scanned.
    QrExpired,
    /// Linked (when first paired) and online.
    Connected {
        phone: Option<Phone>,
        lid: Option<String>,
        push_name: Option<String>,
    },
    /// The connection dropped; the engine is reconnecting by itself.
    Reconnecting {
        reason: String,
        retry_in: Option<Duration>,
    },
    LoggedOut {
        reason: String,
    },
    Banned {
        reason: String,
        expires_at: Option<Timestamp>,
    },
    /// Another session with the same credentials took over.
    Replaced,
    Failed {
        reason: String,
    },
    /// WhatsApp's server took (or, with `error`, refused) an outbound message.
    ServerAck {
        provider_message_id: String,
        error: Option<String>,
    },
    /// WhatsApp named a message by `assigned` when it took it, not by the id chosen at
    /// accept (`provider_message_id`): the Cloud API's `wamid`s. Emitted before the
    /// message's [`EngineEvent::ServerAck`], which then names it by `assigned`, as every
    /// later receipt does.
    ProviderId {
        provider_message_id: String,
        assigned: String,
    },
    /// A message WhatsApp had taken (`sent`) could not be delivered after all: it fails
    /// with `reason` (the Cloud API reports this by webhook, e.g. outside the 24-hour
    /// window). Ignored for a message already delivered or read.
    Undelivered {
        provider_message_id: String,
        reason: String,
    },
    Receipt {
        provider_message_ids: Vec<String>,
        kind: ReceiptKind,
        at: Timestamp,
    },
    /// Boxed: a message with its details is many times the size of the other events.
    Inbound(Box<IncomingMessage>),
    /// A message arrived that could not be decrypted; recorded, not dropped silently.
    Undecryptable {
        provider_message_id: String,
        from: Option<Phone>,
        reason: String,
    },
}

/// The event sink could not commit an event; the engine must not acknowledge it upstream.
#[derive(Debug, Clone, thiserror::Error)]
#[error("event not committed: {0}")]
pub struct EventNotCommitted(pub String);

/// Where a session reports to; one per device.
#[async_trait]
pub trait EngineEvents: Send + Sync {
    /// Returns once the event's meaning is durably committed. An `Err` means it was not:
    /// an inbound message is then not acknowledged to WhatsApp and is offered again under
    /// the same `provider_message_id` (at the latest to the device's next session after a
    /// restart), so the sink must be idempotent on that id.
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted>;

    /// The poll the device knows as `provider_message_id` (one it sent or received), with
    /// its secret, and who wrote it: an engine needs both to read the encrypted votes cast
    /// in it. `Ok(None)` when the device has no such poll; an `Err` when that could not be
    /// found out, so the engine must not acknowledge the vote upstream (it comes again).
    async fn find_poll(
        &self,
        _provider_message_id: &str,
    ) -> Result<Option<(Poll, Quote)>, EventNotCommitted> {
        Ok(None)
    }
}

/// One kind of WhatsApp connection (sandbox, whatsapp-web, …), shared by its devices.
#[async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Starts a session for a device: resumes it when the engine has its keys, otherwise
    /// begins linking (QR events). Returns once the session exists, not once connected.
    /// The session reports `Connecting` first, then (after any linking) `Connected` with
    /// the number the device is linked to.
    async fn start(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<Arc<dyn EngineSession>, EngineError>;

    /// Deletes everything the engine keeps for a device (keys on disk). The device's
    /// session has been stopped before this is called.
    async fn forget(&self, device: &DeviceUid) -> Result<(), EngineError>;
}

/// A running device.
#[async_trait]
pub trait EngineSession: Send + Sync {
    /// Hands a message to WhatsApp and returns once the engine has taken it; "sent" is
    /// reported later by [`EngineEvent::ServerAck`]. Idempotent on
    /// `message.provider_message_id`: handing the same message twice (after a crash)
    /// must not show it twice on the recipient's phone.
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError>;

    /// Whether each number is on WhatsApp (at most 50 per call).
    async fn check_numbers(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError>;

    /// Shows "typing…" in the chat for about `duration` (best effort).
    async fn typing(&self, _to: &Recipient, _duration: Duration) -> Result<(), EngineError> {
        Ok(())
    }

    /// Shows `state` in the chat with `to` until another state replaces it (WhatsApp
    /// clears typing by itself after a while). Refused with `NotConnected` offline.
    async fn chat_state(&self, to: &Recipient, state: ChatState) -> Result<(), EngineError>;

    /// Tells the sender of each of `messages` (received in the chat `chat`) that they were
    /// read: blue ticks on their side.
    async fn mark_read(&self, chat: &Recipient, messages: &[ReadMark]) -> Result<(), EngineError>;

    /// The groups the device is a member of (members not filled in; `size` is).
    async fn groups(&self) -> Result<Vec<GroupInfo>, EngineError> {
        Err(no_groups())
    }

    /// One group the device is in, with its members. `Rejected` with code `not_found`
    /// when the group does not exist or the device is not in it.
    async fn group_info(&self, _group: &GroupId) -> Result<GroupInfo, EngineError> {
        Err(no_groups())
    }

    /// Creates a group with the device as its owner and `members` (at least one).
    async fn create_group(
        &self,
        _subject: &str,
        _members: &[Phone],
    ) -> Result<GroupInfo, EngineError> {
        Err(no_groups())
    }

    /// Adds, removes, promotes or demotes members (the device must be an admin); what
    /// became of each. `Leave` is not asked for this way.
    async fn change_members(
        &self,
        _group: &GroupId,
        _change: MembershipChange,
        _members: &[Phone],
    ) -> Result<Vec<MemberOutcome>, EngineError> {
        Err(no_groups())
    }

    /// Leaves the group.
    async fn leave_group(&self, _group: &GroupId) -> Result<(), EngineError> {
        Err(no_groups())
    }

    /// The group's invite link (`https://chat.whatsapp.com/…`); admins only.
    async fn invite_link(&self, _group: &GroupId) -> Result<String, EngineError> {
        Err(no_groups())
    }

    /// Requests a pair code to link by phone number instead of QR.
    async fn request_pair_code(&self, phone: &Phone) -> Result<PairCode, EngineError>;

    /// A delivery WhatsApp pushed to the gateway over HTTP for this device (the Cloud
    /// API's webhooks): `body` as received and its `signature` header. Returns once every
    /// message and status in it is committed; `Rejected` with code `signature` when the
    /// signature does not check (nothing read), `payload` when it is not a delivery at all;
    /// any other error means not committed, so the sender should deliver it again.
    async fn push(&self, _body: Bytes, _signature: Option<&str>) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(
            "this engine's devices are not sent webhooks".into(),
        ))
    }

    /// The message templates the device may send, as its provider approved them (the
    /// Cloud API's business account templates).
    async fn templates(&self) -> Result<Vec<crate::content::TemplateInfo>, EngineError> {
        Err(EngineError::Unsupported(
            "message templates belong to cloud-api devices".into(),
        ))
    }

    /// Starts a new connection or linking round after the session stopped trying
    /// (QR codes ran out, logged out, failed).
    async fn connect(&self) -> Result<(), EngineError>;

    /// Unlinks the device from its WhatsApp account; reports `LoggedOut` once, and the
    /// session sends no more (`NotConnected`).
    async fn logout(&self) -> Result<(), EngineError>;

    /// Stops the session, flushing whatever the engine must persist. Idempotent. Once it
    /// returns the session emits nothing more and refuses sends with a retryable error;
    /// receipts that come meanwhile wait for the device's next session.
    async fn stop(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's "transient engine errors are retried …; permanent ones fail": which
    /// errors the send worker tries again and which fail the message for good.
    #[test]
    fn transient_errors_are_retried_and_permanent_ones_are_not() {
        let s = || "x".to_owned();
        for e in [
            EngineError::NotConnected(s()),
            EngineError::Transient(s()),
            EngineError::RateLimited {
                retry_after: None,
                reason: s(),
            },
            EngineError::Internal(s()),
        ] {
            assert!(e.is_retryable(), "{e:?}");
        }
        for e in [
            EngineError::Rejected {
                code: None,
                reason: s(),
            },
            EngineError::Unsupported(s()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn provider_ids_are_stable_and_whatsapp_shaped() {
        let id = MessageId::parse("msg_01jabc").unwrap();
        let a = provider_message_id(&id);
        assert_eq!(a, provider_message_id(&id));
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(a, provider_message_id(&MessageId::new()));
    }
}
