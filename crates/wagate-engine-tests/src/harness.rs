//! What each engine's test file provides: the engine, and the world around it — the other
//! side of WhatsApp (a peer that receives, reads and writes, alone or in groups), numbers on
//! and off WhatsApp, devices fresh or already linked, and what a restart of the gateway
//! means there.

use crate::recorder::Recorder;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use wagate_core::chat::MembershipChange;
use wagate_core::content::Details;
use wagate_core::engine::{ChatState, DeviceContext, Engine};
use wagate_core::message::MessageKind;
use wagate_core::{GroupId, Phone};

/// A message as the peer's phone shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSaw {
    pub kind: MessageKind,
    /// The text or caption (none for locations, contacts and polls).
    pub text: Option<String>,
    /// Location, contacts, poll (without its secret unless the peer's side reads it),
    /// the quote as the peer sees it, and the people mentioned.
    pub details: Details,
    /// The group it was sent in; `None` in the one-to-one chat.
    pub group: Option<GroupId>,
}

/// What not every engine's WhatsApp has. A case that needs one of these checks that an
/// engine without it refuses it (`Unsupported`) where it can, and otherwise skips that part
/// — never a weaker check of what the engine does have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Asking which numbers are on WhatsApp.
    NumberChecks,
    /// "typing…", "recording…" and clearing them, in any chat at any time.
    ChatStates,
    /// Polls, and votes in them.
    Polls,
    /// Editing a sent message.
    Edits,
    /// Mentioning people in a text.
    Mentions,
    /// Groups.
    Groups,
}

/// One engine under test and the WhatsApp it talks to. Methods panic when the world cannot
/// do what is asked (they are test support).
#[async_trait]
pub trait Harness: Send + Sync {
    /// The engine under test; after [`Self::restart`], the one of the restarted gateway.
    fn engine(&self) -> Arc<dyn Engine>;

    /// A device the engine has never seen: no phone, no keys. Started, it links.
    async fn new_device(&self) -> DeviceContext;

    /// What the user does to link `device` once it was started and emits to `events`
    /// (scanning its QR code, say; nothing for an engine whose devices link themselves).
    /// Returns once done, without waiting for the device to connect.
    async fn link(&self, device: &DeviceContext, events: &Recorder);

    /// A device already linked (its keys where the engine keeps them); `phone` is set.
    async fn linked_device(&self) -> DeviceContext;

    /// A number on WhatsApp: a peer whose phone gets messages and sends delivery receipts
    /// by itself.
    fn peer(&self) -> Phone;

    /// A number that is not on WhatsApp.
    fn not_on_whatsapp(&self) -> Phone;

    /// The peer reads the message `provider_message_id` it got from the device linked to
    /// `device_phone` (nothing to do where peers read by themselves).
    async fn peer_reads(&self, device_phone: &Phone, provider_message_id: &str);

    /// The peer writes `text` to the device linked to `device_phone`.
    async fn peer_sends(&self, device_phone: &Phone, text: &str);

    /// The peer reacts with `emoji` to the message `provider_message_id` that the device
    /// linked to `device_phone` sent it.
    async fn peer_reacts(&self, device_phone: &Phone, provider_message_id: &str, emoji: &str);

    /// The peer votes `options` (by name) in the poll `provider_message_id` that the
    /// device linked to `device_phone` sent it, as its phone would: encrypted under the
    /// poll's secret where the engine's WhatsApp does that.
    async fn peer_votes(&self, device_phone: &Phone, provider_message_id: &str, options: &[String]);

    /// What the peer's chat with the device linked to `device_phone` shows of it right
    /// now: the last chat state the device set there, if any.
    async fn peer_sees_chat_state(&self, device_phone: &Phone) -> Option<ChatState>;

    /// What the peer's chat of `group` shows of the device linked to `device_phone` right
    /// now: the last chat state the device set there, if any.
    async fn peer_sees_chat_state_in_group(
        &self,
        device_phone: &Phone,
        group: &GroupId,
    ) -> Option<ChatState>;

    /// What the peer's phone shows of the message `provider_message_id` the device linked
    /// to `device_phone` sent it (waiting for it to arrive): its kind, text and
    /// structured content as WhatsApp carried them, read by the peer's side.
    async fn peer_received(&self, device_phone: &Phone, provider_message_id: &str) -> PeerSaw;

    /// Whether the peer was told that the device linked to `device_phone` read the
    /// peer's message `provider_message_id` (a read receipt reached it).
    async fn peer_got_read(&self, device_phone: &Phone, provider_message_id: &str) -> bool;

    /// Whether the peer was told that the device linked to `device_phone` read the
    /// peer's message `provider_message_id` in `group`.
    async fn peer_got_read_in_group(
        &self,
        device_phone: &Phone,
        group: &GroupId,
        provider_message_id: &str,
    ) -> bool;

    /// The peer writes `text` in `group` (a group it is in).
    async fn peer_sends_to_group(&self, group: &GroupId, text: &str);

    /// The peer creates a group named `subject` with `members` (the peer owns it).
    async fn peer_creates_group(&self, subject: &str, members: &[Phone]) -> GroupId;

    /// The peer leaves `group`.
    async fn peer_leaves_group(&self, group: &GroupId);

    /// The membership changes in `group` the peer's phone was told of so far, in order:
    /// what changed and whose numbers (right now, without waiting).
    async fn peer_saw_changes(&self, group: &GroupId) -> Vec<(MembershipChange, Vec<Phone>)>;

    /// The gateway's process restarts, every session stopped before; WhatsApp's side keeps
    /// what it holds (its offline queues, what it still owes).
    async fn restart(&self);

    /// The longest any one expected event may take (linking a device may take seconds).
    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }

    /// Whether the engine's WhatsApp has `feature` (all of them, unless said otherwise).
    fn offers(&self, _feature: Feature) -> bool {
        true
    }
}
