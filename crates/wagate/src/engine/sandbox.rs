//! The sandbox engine: a simulated WhatsApp network inside the process, for development,
//! demos and tests.
//!
//! A sandbox device links itself a moment after it starts and gets a phone number.
//! Numbers ending in `0000` are not on WhatsApp (checks say so, sends fail for good);
//! numbers ending in `0500` fail transiently on the first attempt of each message (to see
//! retries); numbers ending in `0700` lose the first hand-off of each message on the way
//! to the server, so no acknowledgement comes (to see a send handed over again). Every other send is
//! acknowledged, then delivered and read after configurable
//! delays (voice notes are also played). Sandbox devices on one server can message each
//! other: a send to another sandbox device's number arrives there as an inbound message.
//!
//! Like WhatsApp's server, the network keeps what it accepted across a crash of the
//! process: opened with [`SandboxNetwork::open`], it journals every accepted message
//! before acknowledging it and replays, at the next start, the deliveries and receipts
//! still owed (see [`super::sandbox_journal`]).
//!
//! For tests, the network counts what "exactly once" means on each side of the wire:
//! at the server, every hand-off the engine made of each WhatsApp message id (a resend
//! under the same id is legitimate only while no server ack for it was committed: a
//! hand-off after that is counted apart and must never happen); at the recipient, every
//! time a message was shown there (WhatsApp shows an id once, so a message that reaches
//! the recipient twice was resent under a new id).

use super::sandbox_groups::{SandboxGroup, new_group_id};
use super::sandbox_journal::{Journal, Owed, OwedInbound};
use super::sandbox_wire::WireLog;
use crate::config::SandboxConfig;
use async_trait::async_trait;
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wagate_core::chat::{GroupChange, GroupInfo, GroupMember, MemberOutcome, MembershipChange};
use wagate_core::content::{Details, Quote};
use wagate_core::device::EngineKind;
use wagate_core::engine::{
    ChatState, DeviceContext, Engine, EngineError, EngineEvent, EngineEvents, EngineSession,
    IncomingMedia, IncomingMessage, NumberCheck, OutgoingContent, OutgoingMessage, PairCode,
    ReadMark, ReceiptKind,
};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, GroupId, Phone, Recipient, time};

/// The simulated network shared by every sandbox device of a server.
pub struct SandboxNetwork {
    config: SandboxConfig,
    state: Mutex<NetworkState>,
    /// Where the server keeps what it accepted; `None`: in memory only (tests that never
    /// restart).
    journal: Option<Journal>,
    /// What crossed the wire, on disk (`sandbox.wire_log`; only with a journal).
    wire: Option<WireLog>,
    /// The runtime the network's own timers run on: the one it was created on, so an
    /// in-memory network outlives a gateway that runs (and dies) on another runtime, as
    /// WhatsApp's server outlives a crashed gateway.
    rt: Option<tokio::runtime::Handle>,
    /// Events being handed to a device right now (see [`Self::drop_connections`]).
    handing: AtomicUsize,
}

#[derive(Default)]
struct NetworkState {
    sessions: HashMap<DeviceUid, Arc<SandboxSession>>,
    /// Which online device answers for a number.
    by_phone: HashMap<String, DeviceUid>,
    /// How many times each provider message id was shown to its recipient (at most once
    /// per id: a resend under the same id is not shown again).
    handed: HashMap<String, u32>,
    /// What each recipient (by number) was shown, in order: (provider id, text).
    shown: HashMap<String, Vec<(String, Option<String>)>>,
    /// Every hand-off the engine made, per provider id: resends and hand-offs that were
    /// lost or refused included.
    handoffs: HashMap<String, u32>,
    /// When each of those hand-offs happened (to see a retry wait its backoff).
    handoff_at: HashMap<String, Vec<std::time::Instant>>,
    /// Provider ids whose server ack the gateway committed.
    acked: HashSet<String>,
    /// Hand-offs of an id whose server ack was already committed: a gateway that resends
    /// what WhatsApp confirmed it has. Must stay empty.
    after_ack: HashMap<String, u32>,
    /// Provider ids already accepted: a resend of the same id is not shown twice (kept
    /// across restarts by the journal).
    delivered: HashSet<String>,
    /// What the network still owes for each accepted message, by provider id.
    owed: HashMap<String, Owed>,
    /// Provider ids that already failed once on a `0500` number.
    transient_failed: HashSet<String>,
    /// Provider ids whose first hand-off was lost on a `0700` number.
    ack_lost: HashSet<String>,
    /// Events for devices that were offline when they happened, delivered when they
    /// connect again (WhatsApp's offline queue).
    pending: HashMap<DeviceUid, Vec<EngineEvent>>,
    /// What each chat shows of its other side, by (recipient number, sender number): the
    /// last chat state a device set there. Ephemeral, as on WhatsApp: never journaled.
    chat_states: HashMap<(String, String), ChatState>,
    /// Read receipts sent, by (reader's number, chat's number or group id): the WhatsApp
    /// ids marked read, in order. (The sandbox's recipients read everything by themselves
    /// anyway.)
    marked_read: HashMap<(String, String), Vec<String>>,
    /// The groups, by id (journaled).
    groups: HashMap<String, SandboxGroup>,
}

impl SandboxNetwork {
    /// A network that lives in memory only: what is in flight dies with the process.
    pub fn new(config: SandboxConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(NetworkState::default()),
            journal: None,
            wire: None,
            rt: tokio::runtime::Handle::try_current().ok(),
            handing: AtomicUsize::new(0),
        })
    }

    /// A network whose server state survives crashes, journaled at `path`: what it owed
    /// when the process died (deliveries, receipts) is handed out again as the devices come
    /// back. With `wire_log` on, what crosses the wire is appended to `wire.log` beside
    /// it. Call from within the tokio runtime.
    pub fn open(config: SandboxConfig, path: &Path) -> std::io::Result<Arc<Self>> {
        let (journal, replayed) = Journal::open(path)?;
        let wire = if config.wire_log {
            let wire_path = path.with_file_name("wire.log");
            let wire = WireLog::open(&wire_path)?;
            wire.complete(&wire_path, &replayed.seen)?;
            Some(wire)
        } else {
            None
        };
        let owed: Vec<Owed> = replayed.owed.values().cloned().collect();
        let network = Arc::new(Self {
            config,
            state: Mutex::new(NetworkState {
                delivered: replayed.seen,
                owed: replayed.owed,
                groups: replayed.groups,
                ..NetworkState::default()
            }),
            journal: Some(journal),
            wire,
            rt: tokio::runtime::Handle::try_current().ok(),
            handing: AtomicUsize::new(0),
        });
        if !owed.is_empty() {
            tracing::info!(
                owed = owed.len(),
                "sandbox: replaying deliveries and receipts owed before the restart"
            );
        }
        for o in &owed {
            network.fulfil(o);
        }
        Ok(network)
    }

    /// How many accepted messages still wait for a delivery or a receipt.
    pub fn owed_count(&self) -> usize {
        self.state().owed.len()
    }

    /// Records an accepted message (on disk first, when journaled).
    async fn accept(&self, owed: Owed) -> std::io::Result<()> {
        if let Some(j) = &self.journal {
            j.accepted(&owed).await?;
        }
        self.state().owed.insert(owed.pid.clone(), owed);
        Ok(())
    }

    /// Hands out what is owed for a message: the message itself to every sandbox
    /// recipient that has not committed it, else the receipts (nothing, for a group
    /// notification).
    fn fulfil(self: &Arc<Self>, owed: &Owed) {
        if owed.undelivered() {
            for inbound in owed.recipients() {
                if let Some(peer) = inbound.peer() {
                    self.deliver_later(
                        peer,
                        Duration::from_millis(5),
                        EngineEvent::Inbound(Box::new(inbound.message(&owed.pid))),
                    );
                }
            }
        } else if owed.notice {
            self.settle(&owed.pid);
        } else if let Ok(sender) = DeviceUid::parse(&owed.sender) {
            self.schedule_receipts(sender, owed.pid.clone(), owed.voice);
        }
    }

    /// Nothing more is owed for `pid`.
    fn settle(&self, pid: &str) {
        if self.state().owed.remove(pid).is_some()
            && let Some(j) = &self.journal
        {
            j.done(pid);
        }
    }

    /// The recipient device `peer` committed a message: once every recipient has, its
    /// receipts are owed.
    fn received(self: &Arc<Self>, pid: &str, peer: &str) {
        let owed = {
            let mut st = self.state();
            match st.owed.get_mut(pid) {
                Some(o) => o.received_by(peer).then(|| o.clone()),
                None => None,
            }
        };
        if let Some(o) = owed {
            if let Some(j) = &self.journal {
                j.received(pid, peer);
            }
            if !o.undelivered() {
                self.fulfil(&o);
            }
        }
    }

    /// The sender committed a receipt: after the last one (read, or played for a voice
    /// note) nothing more is owed.
    fn receipt_committed(&self, pids: &[String], kind: ReceiptKind) {
        for pid in pids {
            let settled = {
                let mut st = self.state();
                let last = st.owed.get(pid).is_some_and(|o| {
                    o.inbound.is_none()
                        && (kind == ReceiptKind::Played || (kind == ReceiptKind::Read && !o.voice))
                });
                last && st.owed.remove(pid).is_some()
            };
            if settled && let Some(j) = &self.journal {
                j.done(pid);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, NetworkState> {
        // A panic while holding this lock cannot leave the maps inconsistent (each
        // update is one insert/remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times a message was shown to its recipient.
    pub fn handed_count(&self, provider_message_id: &str) -> u32 {
        self.state()
            .handed
            .get(provider_message_id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether the first hand-off of a message was lost (numbers ending in `0700`).
    pub fn lost_first_handoff(&self, provider_message_id: &str) -> bool {
        self.state().ack_lost.contains(provider_message_id)
    }

    /// Every provider id shown to a recipient, with how many times.
    pub fn handed(&self) -> HashMap<String, u32> {
        self.state().handed.clone()
    }

    /// What the chat of the number `recipient` (digits) with `sender` (digits) shows of
    /// the sender: typing, recording, or nothing (`Paused`, or never set).
    pub fn chat_state_seen(&self, recipient: &str, sender: &str) -> Option<ChatState> {
        self.state()
            .chat_states
            .get(&(recipient.to_owned(), sender.to_owned()))
            .copied()
    }

    /// The WhatsApp ids the device of number `reader` marked read in its chat with `chat`
    /// (both digits), in order.
    pub fn marked_read(&self, reader: &str, chat: &str) -> Vec<String> {
        self.state()
            .marked_read
            .get(&(reader.to_owned(), chat.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// What the recipient at `phone` (digits) was shown, in order: (provider id, text).
    pub fn shown_to(&self, phone_digits: &str) -> Vec<(String, Option<String>)> {
        self.state()
            .shown
            .get(phone_digits)
            .cloned()
            .unwrap_or_default()
    }

    /// How many times the engine handed a message to the network, resends included.
    pub fn handoff_count(&self, provider_message_id: &str) -> u32 {
        self.state()
            .handoffs
            .get(provider_message_id)
            .copied()
            .unwrap_or(0)
    }

    /// When the engine handed a message to the network, each time, in order.
    pub fn handoff_times(&self, provider_message_id: &str) -> Vec<std::time::Instant> {
        self.state()
            .handoff_at
            .get(provider_message_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the gateway committed the server ack of a message.
    pub fn ack_committed(&self, provider_message_id: &str) -> bool {
        self.state().acked.contains(provider_message_id)
    }

    /// Hand-offs of messages whose server ack had already been committed, by provider id.
    /// Each one is a message sent again after WhatsApp confirmed it: must be empty.
    pub fn handoffs_after_ack(&self) -> HashMap<String, u32> {
        self.state().after_ack.clone()
    }

    /// The gateway's connections drop (its process is about to die): no device of it gets
    /// anything more, and this returns once no event is being handed to one, so nothing is
    /// committed by a gateway after its death. What was owed waits in the offline queue
    /// for the devices' next connection.
    pub async fn drop_connections(&self) {
        let sessions: Vec<Arc<SandboxSession>> = {
            let mut st = self.state();
            st.by_phone.clear();
            st.sessions.drain().map(|(_, s)| s).collect()
        };
        for s in &sessions {
            s.cancel_tasks();
        }
        while self.handing.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// WhatsApp drops one device's connection, as a flaky network does: the session
    /// reports that it is reconnecting and comes back by itself after `offline_for`
    /// (unless it is stopped meanwhile). `false` when the device has no session here.
    pub async fn lose_connection(&self, uid: &DeviceUid, offline_for: Duration) -> bool {
        let Some(session) = self.session(uid) else {
            return false;
        };
        session.cancel_tasks();
        // A fresh token for the way back: stopping the session cancels it.
        let back = CancellationToken::new();
        *session.cancel.lock().unwrap_or_else(|p| p.into_inner()) = back.clone();
        emit_logged(
            &session.events,
            EngineEvent::Reconnecting {
                reason: "the connection to WhatsApp dropped".into(),
                retry_in: Some(offline_for),
            },
        )
        .await;
        tokio::spawn(async move {
            tokio::select! {
                _ = back.cancelled() => {}
                _ = tokio::time::sleep(offline_for) => session.link(),
            }
        });
        true
    }

    fn fresh_phone(&self) -> Phone {
        let mut rng = rand::thread_rng();
        loop {
            let n: u64 = rng.gen_range(1_000_000..10_000_000);
            let digits = format!("1555{n}");
            let taken = self.state().by_phone.contains_key(&digits);
            if !taken
                && !digits.ends_with("0000")
                && !digits.ends_with("0500")
                && let Ok(p) = Phone::parse(&digits)
            {
                return p;
            }
        }
    }

    fn session(&self, uid: &DeviceUid) -> Option<Arc<SandboxSession>> {
        self.state().sessions.get(uid).cloned()
    }

    /// Delivers an event to a device now if it is online, or queues it until it connects.
    async fn deliver(self: &Arc<Self>, uid: &DeviceUid, event: EngineEvent) {
        let online = {
            let mut st = self.state();
            match st.sessions.get(uid).filter(|s| s.is_connected()).cloned() {
                Some(s) => Some(s),
                None => {
                    st.pending
                        .entry(uid.clone())
                        .or_default()
                        .push(event.clone());
                    None
                }
            }
        };
        if let Some(session) = online {
            self.hand_to(&session, event).await;
        }
    }

    /// Hands an event to a running device. A message from another device of this network
    /// is then acknowledged to its sender, delivered and read (and played, for a voice
    /// note), as the recipient's phone would: never before the recipient committed it.
    /// What is not committed stays owed (and is handed out again after a restart).
    async fn hand_to(self: &Arc<Self>, session: &SandboxSession, event: EngineEvent) {
        enum Settles {
            Received(String),
            Receipt(Vec<String>, ReceiptKind),
            Nothing,
        }
        let settles = match &event {
            EngineEvent::Inbound(m) => Settles::Received(m.provider_message_id.clone()),
            EngineEvent::Receipt {
                provider_message_ids,
                kind,
                ..
            } => Settles::Receipt(provider_message_ids.clone(), *kind),
            _ => Settles::Nothing,
        };
        let _handing = Handing::new(&self.handing);
        match session.events.emit(event).await {
            Ok(()) => match settles {
                Settles::Received(pid) => self.received(&pid, session.uid.as_str()),
                Settles::Receipt(pids, kind) => self.receipt_committed(&pids, kind),
                Settles::Nothing => {}
            },
            Err(e) => tracing::warn!(error = %e, "sandbox event not committed"),
        }
    }

    /// The delivered and read receipts (and played, for a voice note) of a message, to
    /// its sender, after the configured delays.
    fn schedule_receipts(self: &Arc<Self>, sender: DeviceUid, pid: String, voice: bool) {
        let receipt = |kind| EngineEvent::Receipt {
            provider_message_ids: vec![pid.clone()],
            kind,
            at: time::now(),
        };
        let delivered = Duration::from_millis(self.config.delivered_delay_ms);
        let read = delivered + Duration::from_millis(self.config.read_delay_ms);
        self.deliver_later(sender.clone(), delivered, receipt(ReceiptKind::Delivered));
        self.deliver_later(sender.clone(), read, receipt(ReceiptKind::Read));
        if voice {
            self.deliver_later(
                sender,
                read + Duration::from_millis(50),
                receipt(ReceiptKind::Played),
            );
        }
    }

    /// Delivers `event` to `uid` after `delay`, whether or not the sending session is
    /// still running: the network, not the session, owns what is in flight.
    fn deliver_later(self: &Arc<Self>, uid: DeviceUid, delay: Duration, event: EngineEvent) {
        let network = Arc::clone(self);
        let task = async move {
            tokio::time::sleep(delay).await;
            network.deliver(&uid, event).await;
        };
        match &self.rt {
            Some(rt) => drop(rt.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Which device answers for a number (digits; online or not).
    fn device_for(&self, digits: &str) -> Option<DeviceUid> {
        self.state().by_phone.get(digits).cloned()
    }

    fn take_pending(&self, uid: &DeviceUid) -> Vec<EngineEvent> {
        self.state().pending.remove(uid).unwrap_or_default()
    }

    /// Delivers a message to a sandbox device as if someone on WhatsApp sent it. Returns
    /// once the device committed it.
    pub async fn inject_inbound(
        &self,
        uid: &DeviceUid,
        message: IncomingMessage,
    ) -> Result<(), EngineError> {
        let session = self
            .session(uid)
            .ok_or_else(|| EngineError::NotConnected("the sandbox device is not running".into()))?;
        session
            .events
            .emit(EngineEvent::Inbound(Box::new(message)))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))
    }
}

/// A group id the network does not know, or one the device is not in: WhatsApp answers
/// both the same way (404), so nobody learns of groups they are not in.
fn no_such_group(id: &GroupId) -> EngineError {
    EngineError::Rejected {
        code: Some("not_found".into()),
        reason: format!("group {id} does not exist or the device is not a member"),
    }
}

fn journal_failed(e: std::io::Error) -> EngineError {
    EngineError::Transient(format!(
        "the sandbox server could not record the change: {e}"
    ))
}

impl SandboxNetwork {
    /// Adds a group, journaled.
    async fn add_group(&self, group: SandboxGroup) -> Result<(), EngineError> {
        let written = {
            let mut st = self.state();
            st.groups.insert(group.id.to_string(), group.clone());
            self.journal.as_ref().map(|j| j.group(&group))
        };
        match written {
            Some(w) => w.await.map_err(journal_failed),
            None => Ok(()),
        }
    }

    /// Changes a group with `f` under the network's lock and journals the result in the
    /// same order; `f`'s answer and the group as it then is. A group left empty is gone.
    async fn change_group<T>(
        &self,
        id: &GroupId,
        f: impl FnOnce(&mut SandboxGroup) -> Result<T, EngineError>,
    ) -> Result<(T, SandboxGroup), EngineError> {
        let (out, after, written) = {
            let mut st = self.state();
            let group = st
                .groups
                .get_mut(id.as_str())
                .ok_or_else(|| no_such_group(id))?;
            let out = f(group)?;
            let after = group.clone();
            if after.members.is_empty() {
                st.groups.remove(id.as_str());
            }
            let written = self.journal.as_ref().map(|j| j.group(&after));
            (out, after, written)
        };
        if let Some(w) = written {
            w.await.map_err(journal_failed)?;
        }
        Ok((out, after))
    }

    fn group(&self, id: &GroupId) -> Option<SandboxGroup> {
        self.state().groups.get(id.as_str()).cloned()
    }

    /// Tells the sandbox devices of `group`'s members (and of `also`, digits: members who
    /// were just removed), except the actor's, that `who` were added, removed, promoted,
    /// demoted or left: a `participants` message from the actor in the group, journaled
    /// like a message so a restart does not lose it.
    async fn notify(
        self: &Arc<Self>,
        actor: &SandboxSession,
        group: &SandboxGroup,
        change: MembershipChange,
        who: Vec<Phone>,
        also: &[String],
    ) {
        if who.is_empty() {
            return;
        }
        let pid = wagate_core::engine::provider_message_id(&wagate_core::MessageId::new());
        let message = IncomingMessage {
            provider_message_id: pid.clone(),
            from: Some(actor.phone.clone()),
            from_lid: None,
            from_name: Some(actor.name.clone()),
            kind: MessageKind::Participants,
            text: None,
            media: None,
            details: Details {
                group_change: Some(GroupChange {
                    action: change,
                    participants: who
                        .into_iter()
                        .map(|p| GroupMember {
                            phone: Some(p.clone()),
                            lid: None,
                            role: group
                                .role_of(p.digits())
                                .unwrap_or(wagate_core::chat::GroupRole::Member),
                        })
                        .collect(),
                }),
                ..Details::default()
            },
            is_group: true,
            group_id: Some(group.id.to_string()),
            group_name: Some(group.subject.clone()),
            timestamp: time::now(),
        };
        let recipients: Vec<DeviceUid> = group
            .numbers()
            .chain(also.iter().map(String::as_str))
            .filter(|n| *n != actor.phone.digits())
            .filter_map(|n| self.device_for(n))
            .collect();
        if recipients.is_empty() {
            return;
        }
        let owed = Owed {
            pid: pid.clone(),
            sender: actor.uid.as_str().to_owned(),
            voice: false,
            inbound: None,
            group: recipients
                .iter()
                .map(|peer| OwedInbound::new(peer, &message))
                .collect(),
            notice: true,
        };
        if let Err(e) = self.accept(owed).await {
            tracing::warn!(error = %e, "sandbox: a group notification could not be recorded");
            return;
        }
        for peer in recipients {
            self.deliver_later(
                peer,
                Duration::from_millis(5),
                EngineEvent::Inbound(Box::new(message.clone())),
            );
        }
    }
}

/// A message on its way to the simulated server.
struct Taken {
    sender: DeviceUid,
    /// The sending device's events (for the server ack).
    events: Arc<dyn EngineEvents>,
    message: OutgoingMessage,
    /// The sandbox devices answering for the recipient's number (or the group's
    /// members), with what each will see.
    to_peers: Vec<(DeviceUid, IncomingMessage)>,
}

impl SandboxNetwork {
    /// The simulated server takes a message: journals it (the first time its id is seen;
    /// a resend carries the same id and is shown once), then acknowledges it to the sender
    /// after `ack_after`, then delivers it (or schedules its receipts).
    async fn take(self: Arc<Self>, t: Taken, ack_after: Duration) -> Result<(), EngineError> {
        let pid = t.message.provider_message_id.clone();
        let to = t.message.to.key().to_owned();
        let first_delivery = {
            let mut st = self.state();
            let first = st.delivered.insert(pid.clone());
            if first {
                *st.handed.entry(pid.clone()).or_insert(0) += 1;
                let text = match &t.message.content {
                    OutgoingContent::Text { text } => Some(text.clone()),
                    OutgoingContent::Media { caption, .. } => caption.clone(),
                    OutgoingContent::Edit { text, .. } => Some(text.clone()),
                    other => content_details(other).summary(),
                };
                st.shown
                    .entry(to.clone())
                    .or_default()
                    .push((pid.clone(), text));
            }
            first
        };
        let is_voice = matches!(
            &t.message.content,
            OutgoingContent::Media {
                kind: MessageKind::Voice,
                ..
            }
        );
        let to_peers = if first_delivery {
            t.to_peers
        } else {
            Vec::new()
        };
        if first_delivery {
            // Like WhatsApp's server, the sandbox keeps what it accepted before it
            // acknowledges it, so a crash of this process cannot lose what it owes.
            let mut inbound: Vec<OwedInbound> = to_peers
                .iter()
                .map(|(peer, m)| OwedInbound::new(peer, m))
                .collect();
            let (one, group) = if t.message.to.is_group() {
                (None, inbound)
            } else {
                (inbound.pop(), Vec::new())
            };
            let owed = Owed {
                pid: pid.clone(),
                sender: t.sender.as_str().to_owned(),
                voice: is_voice,
                inbound: one,
                group,
                notice: false,
            };
            if let Err(e) = self.accept(owed).await {
                let mut st = self.state();
                st.delivered.remove(&pid);
                if let Some(n) = st.handed.get_mut(&pid) {
                    *n = n.saturating_sub(1);
                }
                if let Some(shown) = st.shown.get_mut(&to) {
                    shown.retain(|(p, _)| *p != pid);
                }
                return Err(EngineError::Transient(format!(
                    "the sandbox server could not record the message: {e}"
                )));
            }
            // Shown only once the server has it for good (journaled): a kill before that
            // loses the hand-off, not the recipient's view.
            if let Some(w) = &self.wire {
                w.shown(&pid, &to);
            }
        }
        // The ack arrives on its own, as a socket's would: the sender does not wait for it.
        let (events, uid) = (t.events, t.sender);
        tokio::spawn(async move {
            if !ack_after.is_zero() {
                tokio::time::sleep(ack_after).await;
            }
            let acked = events
                .emit(EngineEvent::ServerAck {
                    provider_message_id: pid.clone(),
                    error: None,
                })
                .await;
            match acked {
                Ok(()) => {
                    self.state().acked.insert(pid.clone());
                    if let Some(w) = &self.wire {
                        w.acked(&pid);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sandbox event not committed"),
            }
            if !first_delivery {
                // The same message again: WhatsApp shows it once.
                return;
            }
            if to_peers.is_empty() {
                self.schedule_receipts(uid, pid, is_voice);
            }
            // The recipients' phones acknowledge once they have the message.
            for (peer, incoming) in to_peers {
                self.deliver_later(
                    peer,
                    Duration::from_millis(5),
                    EngineEvent::Inbound(Box::new(incoming)),
                );
            }
        });
        Ok(())
    }
}

/// Counts an event being handed to a device while it lives (also when its task is dropped).
struct Handing<'a>(&'a AtomicUsize);

impl<'a> Handing<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Handing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The sandbox engine.
pub struct SandboxEngine {
    network: Arc<SandboxNetwork>,
}

impl SandboxEngine {
    pub fn new(network: Arc<SandboxNetwork>) -> Self {
        Self { network }
    }
}

#[async_trait]
impl Engine for SandboxEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sandbox
    }

    async fn start(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<Arc<dyn EngineSession>, EngineError> {
        let linked_before = device.phone.is_some();
        let phone = device
            .phone
            .clone()
            .unwrap_or_else(|| self.network.fresh_phone());
        if linked_before {
            // The account exists on the network while this device is still connecting:
            // messages for it wait in its offline queue, as on WhatsApp.
            self.network
                .state()
                .by_phone
                .insert(phone.digits().to_owned(), device.uid.clone());
        }
        let session = Arc::new(SandboxSession {
            uid: device.uid.clone(),
            name: device.name,
            phone,
            events,
            network: Arc::clone(&self.network),
            connected: AtomicBool::new(false),
            cancel: Mutex::new(CancellationToken::new()),
        });
        if let Some(old) = self
            .network
            .state()
            .sessions
            .insert(device.uid, Arc::clone(&session))
        {
            old.cancel_tasks();
        }
        session.link();
        Ok(session)
    }

    async fn forget(&self, device: &DeviceUid) -> Result<(), EngineError> {
        let (dropped, orphaned) = {
            let mut st = self.network.state();
            if let Some(s) = st.sessions.remove(device) {
                s.cancel_tasks();
                st.by_phone.remove(s.phone.digits());
            }
            st.pending.remove(device);
            // Receipts for a device that is gone are owed to nobody; a message for it was
            // still received by the phone behind it, so its sender gets the receipts.
            let dropped: Vec<String> = st
                .owed
                .values()
                .filter(|o| o.sender == device.as_str())
                .map(|o| o.pid.clone())
                .collect();
            for pid in &dropped {
                st.owed.remove(pid);
            }
            let orphaned: Vec<String> = st
                .owed
                .values()
                .filter(|o| o.recipients().any(|i| i.peer == device.as_str()))
                .map(|o| o.pid.clone())
                .collect();
            (dropped, orphaned)
        };
        if let Some(j) = &self.network.journal {
            for pid in &dropped {
                j.done(pid);
            }
        }
        for pid in &orphaned {
            self.network.received(pid, device.as_str());
        }
        Ok(())
    }
}

struct SandboxSession {
    uid: DeviceUid,
    name: String,
    phone: Phone,
    events: Arc<dyn EngineEvents>,
    network: Arc<SandboxNetwork>,
    connected: AtomicBool,
    /// Cancels the session's timers (linking, receipts); replaced on reconnect.
    cancel: Mutex<CancellationToken>,
}

impl SandboxSession {
    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn token(&self) -> CancellationToken {
        self.cancel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn cancel_tasks(&self) {
        self.token().cancel();
        self.connected.store(false, Ordering::SeqCst);
    }

    fn require_connected(&self) -> Result<(), EngineError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(EngineError::NotConnected(
                "the sandbox device is not connected".into(),
            ))
        }
    }

    /// The group, if the device is in it.
    fn member_of(&self, id: &GroupId) -> Result<SandboxGroup, EngineError> {
        self.network
            .group(id)
            .filter(|g| g.role_of(self.phone.digits()).is_some())
            .ok_or_else(|| no_such_group(id))
    }

    /// Connects after the configured delay, then delivers what queued up meanwhile. One
    /// task, so "connecting" can never be recorded after "connected".
    fn link(self: &Arc<Self>) {
        let delay = Duration::from_millis(self.network.config.link_delay_ms);
        let token = self.token();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            emit_logged(&me.events, EngineEvent::Connecting).await;
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            me.network
                .state()
                .by_phone
                .insert(me.phone.digits().to_owned(), me.uid.clone());
            // Online before it says so: a caller that saw `Connected` may send at once.
            me.connected.store(true, Ordering::SeqCst);
            emit_logged(
                &me.events,
                EngineEvent::Connected {
                    phone: Some(me.phone.clone()),
                    lid: None,
                    push_name: Some(me.name.clone()),
                },
            )
            .await;
            for event in me.network.take_pending(&me.uid) {
                me.network.hand_to(&me, event).await;
            }
        });
    }
}

async fn emit_logged(events: &Arc<dyn EngineEvents>, event: EngineEvent) {
    if let Err(e) = events.emit(event).await {
        tracing::warn!(error = %e, "sandbox event not committed");
    }
}

#[async_trait]
impl EngineSession for SandboxSession {
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        if !self.is_connected() {
            return Err(EngineError::NotConnected(
                "the sandbox device is not connected".into(),
            ));
        }
        let to = message.to.key();
        if to.ends_with("0000") {
            return Err(EngineError::Rejected {
                code: Some("not_on_whatsapp".into()),
                reason: format!("{} is not on WhatsApp", message.to),
            });
        }
        // A group's members, as the server fans the message out to them.
        let group = match &message.to {
            Recipient::Group(g) => Some(self.member_of(g)?),
            Recipient::Phone(_) => None,
        };
        let pid = message.provider_message_id.clone();
        {
            let mut st = self.network.state();
            *st.handoffs.entry(pid.clone()).or_insert(0) += 1;
            st.handoff_at
                .entry(pid.clone())
                .or_default()
                .push(std::time::Instant::now());
            if st.acked.contains(&pid) {
                *st.after_ack.entry(pid.clone()).or_insert(0) += 1;
            }
        }
        if let Some(w) = &self.network.wire {
            w.handoff(&pid, to);
        }
        if to.ends_with("0700") && self.network.state().ack_lost.insert(pid.clone()) {
            // Written to the socket, which then died before the server had it: the engine
            // reported success, no ack will ever come, and the recipient has nothing.
            return Ok(());
        }
        if to.ends_with("0500") && self.network.state().transient_failed.insert(pid.clone()) {
            return Err(EngineError::Transient(
                "simulated network hiccup (number ends in 0500)".into(),
            ));
        }
        let to_peers = match (&message.to, &group) {
            (Recipient::Phone(p), _) => self
                .network
                .device_for(p.digits())
                .map(|peer| (peer, incoming_from(self, &message, p, None)))
                .into_iter()
                .collect(),
            (Recipient::Group(_), Some(g)) => g
                .numbers()
                .filter(|n| *n != self.phone.digits())
                .filter_map(|n| {
                    let member = Phone::parse(n).ok()?;
                    let peer = self.network.device_for(n)?;
                    Some((peer, incoming_from(self, &message, &member, Some(g))))
                })
                .collect(),
            (Recipient::Group(_), None) => Vec::new(),
        };
        let taken = Taken {
            sender: self.uid.clone(),
            events: Arc::clone(&self.events),
            message,
            to_peers,
        };
        let latency = Duration::from_millis(self.network.config.ack_delay_ms / 2);
        if latency.is_zero() {
            // Like WhatsApp's server, the sandbox acknowledges at once (once the message
            // is journaled), duplicates included, before anything else happens.
            return Arc::clone(&self.network).take(taken, latency).await;
        }
        // A slow network: the message is on the wire (the socket write succeeded) and
        // reaches the server half the delay later; the ack takes the other half back. A
        // crash before the server has it loses it: the gateway must send it again.
        let network = Arc::clone(&self.network);
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            if let Err(e) = network.take(taken, latency).await {
                tracing::warn!(error = %e, "sandbox server lost a message on the wire");
            }
        });
        Ok(())
    }

    async fn check_numbers(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        if !self.is_connected() {
            return Err(EngineError::NotConnected(
                "the sandbox device is not connected".into(),
            ));
        }
        Ok(numbers
            .iter()
            .map(|p| {
                let on = !p.digits().ends_with("0000");
                NumberCheck {
                    phone: p.clone(),
                    on_whatsapp: on,
                    jid: on.then(|| format!("{}@s.whatsapp.net", p.digits())),
                    lid: None,
                }
            })
            .collect())
    }

    async fn chat_state(&self, to: &Recipient, state: ChatState) -> Result<(), EngineError> {
        if !self.is_connected() {
            return Err(EngineError::NotConnected(
                "the sandbox device is not connected".into(),
            ));
        }
        self.network
            .state()
            .chat_states
            .insert((to.key().to_owned(), self.phone.digits().to_owned()), state);
        Ok(())
    }

    async fn mark_read(&self, chat: &Recipient, messages: &[ReadMark]) -> Result<(), EngineError> {
        if !self.is_connected() {
            return Err(EngineError::NotConnected(
                "the sandbox device is not connected".into(),
            ));
        }
        self.network
            .state()
            .marked_read
            .entry((self.phone.digits().to_owned(), chat.key().to_owned()))
            .or_default()
            .extend(messages.iter().map(|m| m.provider_message_id.clone()));
        Ok(())
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, EngineError> {
        self.require_connected()?;
        let me = self.phone.digits();
        let mut groups: Vec<GroupInfo> = self
            .network
            .state()
            .groups
            .values()
            .filter(|g| g.role_of(me).is_some())
            .map(|g| g.info(me, false))
            .collect();
        groups.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(groups)
    }

    async fn group_info(&self, group: &GroupId) -> Result<GroupInfo, EngineError> {
        self.require_connected()?;
        Ok(self.member_of(group)?.info(self.phone.digits(), true))
    }

    async fn create_group(
        &self,
        subject: &str,
        members: &[Phone],
    ) -> Result<GroupInfo, EngineError> {
        self.require_connected()?;
        let group = SandboxGroup::create(new_group_id(), subject, &self.phone, members);
        if group.members.len() < 2 {
            return Err(EngineError::Rejected {
                code: Some("no_members".into()),
                reason: "none of the participants is on WhatsApp".into(),
            });
        }
        self.network.add_group(group.clone()).await?;
        let added: Vec<Phone> = group
            .numbers()
            .filter(|n| *n != self.phone.digits())
            .filter_map(|n| Phone::parse(n).ok())
            .collect();
        self.network
            .notify(self, &group, MembershipChange::Add, added, &[])
            .await;
        Ok(group.info(self.phone.digits(), true))
    }

    async fn change_members(
        &self,
        group: &GroupId,
        change: MembershipChange,
        members: &[Phone],
    ) -> Result<Vec<MemberOutcome>, EngineError> {
        self.require_connected()?;
        self.member_of(group)?;
        let actor = self.phone.digits().to_owned();
        let (outcomes, after) = self
            .network
            .change_group(group, |g| {
                g.change(&actor, change, members)
                    .map_err(|reason| EngineError::Rejected {
                        code: Some("forbidden".into()),
                        reason,
                    })
            })
            .await?;
        let done: Vec<Phone> = outcomes
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| o.phone.clone())
            .collect();
        // Removed members hear of it too (it is how their phone learns it is out).
        let removed: Vec<String> = match change {
            MembershipChange::Remove => done.iter().map(|p| p.digits().to_owned()).collect(),
            _ => Vec::new(),
        };
        self.network
            .notify(self, &after, change, done, &removed)
            .await;
        Ok(outcomes)
    }

    async fn leave_group(&self, group: &GroupId) -> Result<(), EngineError> {
        self.require_connected()?;
        self.member_of(group)?;
        let me_digits = self.phone.digits().to_owned();
        let (_, after) = self
            .network
            .change_group(group, |g| Ok(g.leave(&me_digits)))
            .await?;
        self.network
            .notify(
                self,
                &after,
                MembershipChange::Leave,
                vec![self.phone.clone()],
                &[],
            )
            .await;
        Ok(())
    }

    async fn invite_link(&self, group: &GroupId) -> Result<String, EngineError> {
        self.require_connected()?;
        let g = self.member_of(group)?;
        if !g
            .role_of(self.phone.digits())
            .is_some_and(wagate_core::chat::GroupRole::is_admin)
        {
            return Err(EngineError::Rejected {
                code: Some("forbidden".into()),
                reason: format!("only the admins of group {group} can see its invite link"),
            });
        }
        Ok(format!("https://chat.whatsapp.com/{}", g.invite))
    }

    async fn request_pair_code(&self, _phone: &Phone) -> Result<PairCode, EngineError> {
        Err(EngineError::Unsupported(
            "sandbox devices link themselves; no pair code is needed".into(),
        ))
    }

    async fn connect(&self) -> Result<(), EngineError> {
        let Some(me) = self.network.session(&self.uid) else {
            return Err(EngineError::NotConnected(
                "the sandbox device stopped".into(),
            ));
        };
        if !me.is_connected() {
            *me.cancel.lock().unwrap_or_else(|p| p.into_inner()) = CancellationToken::new();
            me.link();
        }
        Ok(())
    }

    async fn logout(&self) -> Result<(), EngineError> {
        self.cancel_tasks();
        self.network.state().by_phone.remove(self.phone.digits());
        self.events
            .emit(EngineEvent::LoggedOut {
                reason: "logged out through the API".into(),
            })
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))
    }

    async fn stop(&self) {
        self.cancel_tasks();
        let mut st = self.network.state();
        if st.by_phone.get(self.phone.digits()) == Some(&self.uid) {
            st.by_phone.remove(self.phone.digits());
        }
    }
}

/// What the recipient sandbox device (of the number `recipient`) sees of a message from
/// another sandbox device, sent to it or to `group`.
fn incoming_from(
    sender: &SandboxSession,
    m: &OutgoingMessage,
    recipient: &Phone,
    group: Option<&SandboxGroup>,
) -> IncomingMessage {
    let mut details = content_details(&m.content);
    // What a reaction, edit or delete acts on, as the recipient knows that message.
    details.target = details
        .target
        .take()
        .map(|q| quote_seen_by(&q, &sender.phone, recipient));
    details.reply_to = m
        .context
        .reply_to
        .as_ref()
        .map(|q| quote_seen_by(q, &sender.phone, recipient));
    details.mentions = m.context.mentions.clone();
    let (kind, text, media) = match &m.content {
        OutgoingContent::Text { text } => (MessageKind::Text, Some(text.clone()), None),
        OutgoingContent::Location(_) => (MessageKind::Location, None, None),
        OutgoingContent::Contacts(_) => (MessageKind::Contact, None, None),
        OutgoingContent::Poll(_) => (MessageKind::Poll, None, None),
        OutgoingContent::Reaction { .. } => (MessageKind::Reaction, None, None),
        OutgoingContent::Edit { text, .. } => (MessageKind::Edit, Some(text.clone()), None),
        OutgoingContent::Delete { .. } => (MessageKind::Delete, None, None),
        OutgoingContent::PollVote { .. } => (MessageKind::PollVote, None, None),
        // The sandbox shows a template as its name and parameters: there is no Meta to
        // render it (try templates before connecting a real Cloud API number).
        OutgoingContent::Template(_) => (MessageKind::Template, None, None),
        OutgoingContent::Media {
            kind,
            data,
            mime_type,
            file_name,
            caption,
        } => (
            *kind,
            caption.clone(),
            Some(IncomingMedia {
                data: data.clone(),
                mime_type: mime_type.clone(),
                file_name: file_name.clone(),
            }),
        ),
    };
    IncomingMessage {
        provider_message_id: m.provider_message_id.clone(),
        from: Some(sender.phone.clone()),
        from_lid: None,
        from_name: Some(sender.name.clone()),
        kind,
        text,
        media,
        details,
        is_group: group.is_some(),
        group_id: group.map(|g| g.id.to_string()),
        group_name: group.map(|g| g.subject.clone()),
        timestamp: time::now(),
    }
}

/// The structured part of a message's content, as its recipient gets it (a poll arrives
/// with its secret, as WhatsApp's does, so votes can be tied to it).
fn content_details(content: &OutgoingContent) -> Details {
    match content {
        OutgoingContent::Location(l) => Details {
            location: Some(l.clone()),
            ..Details::default()
        },
        OutgoingContent::Contacts(c) => Details {
            contacts: c.clone(),
            ..Details::default()
        },
        OutgoingContent::Poll(p) => Details {
            poll: Some(p.clone()),
            ..Details::default()
        },
        OutgoingContent::Reaction { target, emoji } => Details {
            target: Some(target.clone()),
            emoji: Some(emoji.clone()),
            ..Details::default()
        },
        OutgoingContent::PollVote {
            target, options, ..
        } => Details {
            target: Some(target.clone()),
            vote: Some(options.clone()),
            ..Details::default()
        },
        OutgoingContent::Template(t) => Details {
            template: Some(t.clone()),
            ..Details::default()
        },
        OutgoingContent::Edit { target, .. } | OutgoingContent::Delete { target } => Details {
            target: Some(target.clone()),
            ..Details::default()
        },
        OutgoingContent::Text { .. } | OutgoingContent::Media { .. } => Details::default(),
    }
}

/// A quote as the recipient sees it: the sender's own message is, to the recipient, one
/// from the sender; a quoted message of the recipient's is their own.
fn quote_seen_by(q: &Quote, sender: &Phone, recipient: &Phone) -> Quote {
    let author = if q.from_me {
        Some(sender.clone())
    } else {
        q.from.clone()
    };
    let from_me = author.as_ref() == Some(recipient);
    Quote {
        provider_message_id: q.provider_message_id.clone(),
        from_me,
        from: if from_me { None } else { author },
        from_lid: if from_me { None } else { q.from_lid.clone() },
        text: q.text.clone(),
    }
}
