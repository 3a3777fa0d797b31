//! Messaging: accepting sends into the durable outbox, reading them back, and checking
//! numbers. One pipeline for every dialect: what differs is only how requests are
//! spelled and replies shaped.

use super::media::NotOfKind;
use super::peer::{PeerReply, Reach, Route, SessionCall, SessionRouter, unexpected};
use super::port::Handoff;
use super::port::{DeviceControl, Outbox};
use super::{MediaService, ServiceError, ServiceResult};
use std::sync::Arc;
use std::time::Duration;
use wagate_core::content::{Details, Quote};
use wagate_core::device::DeviceStatus;
use wagate_core::engine::{ChatState, NumberCheck, ReadMark, provider_message_id};
use wagate_core::message::{
    Dialect, InboundMessage, Message, MessageKind, MessageStatus, NewOutboundMessage, StatusChange,
};
use wagate_core::store::{AcceptOutcome, MessageFilter, Page, PageRequest, Store, StoreError};
use wagate_core::time::Timestamp;
use wagate_core::{AccountId, DeviceUid, MediaId, MessageId, Phone, Recipient, Spintax, time};

/// Longest `clientMessageId` accepted.
pub const MAX_CLIENT_MESSAGE_ID: usize = 200;
/// Longest text or caption WhatsApp accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 65_536;
/// Most numbers per availability check.
pub const MAX_CHECK_NUMBERS: usize = 50;

/// A send, validated by the dialect that received it.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub device_uid: DeviceUid,
    /// A phone number, or a group the device is in.
    pub to: Recipient,
    pub kind: SendKind,
    /// Text or caption, as a spintax template.
    pub text: Option<Spintax>,
    pub media_id: Option<MediaId>,
    /// A location, contact cards or a poll (validated), and the people mentioned; the
    /// quote is resolved from `reply_to`.
    pub details: Details,
    /// The message to quote, as the caller named it.
    pub reply_to: Option<ReplyRef>,
    pub client_message_id: Option<String>,
    pub send_at: Option<Timestamp>,
    pub dialect: Dialect,
}

/// The message a send replies to, as the caller named it: one of our `msg_…` ids, or
/// WhatsApp's id of a message the device received. Resolved (and refused) at accept.
#[derive(Debug, Clone)]
pub struct ReplyRef {
    pub reference: String,
    /// The request field it came in (`replyTo`, `reply_to`), for errors.
    pub field: &'static str,
}

/// What a caller does to an existing message ([`MessagingService::action`]).
#[derive(Debug, Clone)]
pub enum MessageAction {
    /// React with an emoji (`""` removes the reaction).
    React(String),
    /// Replace the text of a text message the device sent.
    Edit(Spintax),
    /// Delete a message the device sent, for everyone.
    Delete,
    /// Vote in a poll (sent or received): the options picked, none to take the vote back.
    Vote(Vec<String>),
}

impl MessageAction {
    fn kind(&self) -> MessageKind {
        match self {
            Self::React(_) => MessageKind::Reaction,
            Self::Edit(_) => MessageKind::Edit,
            Self::Delete => MessageKind::Delete,
            Self::Vote(_) => MessageKind::PollVote,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Self::React(_) => "reacted to",
            Self::Edit(_) => "edited",
            Self::Delete => "deleted",
            Self::Vote(_) => "voted in",
        }
    }
}

/// Where a live-session call ran ([`MessagingService::live`]).
pub(super) enum Live {
    Here(Arc<dyn wagate_core::engine::EngineSession>),
    There(PeerReply),
}

/// Inbound messages marked read per round of read receipts.
const MARK_READ_ROUND: u32 = 500;

/// What the caller asked to send; media kinds are refined by the media's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Text,
    /// Whatever the media is (image, video, audio or document), as Msgera's send-media.
    MediaAuto,
    Exactly(MessageKind),
}

impl SendKind {
    /// A stable name, part of what a `clientMessageId` stands for.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::MediaAuto => "media",
            Self::Exactly(k) => k.as_str(),
        }
    }
}

/// How a synchronous send ended ([`MessagingService::send_and_wait`]).
#[derive(Debug)]
pub enum SyncSend {
    /// WhatsApp's server has it.
    Taken(MessageId),
    /// It cannot be sent (refused by WhatsApp, or unsendable).
    Failed { id: MessageId, reason: String },
    /// Not taken within the wait; it stays queued and will be sent.
    StillQueued {
        id: MessageId,
        waited: std::time::Duration,
        last_error: Option<String>,
    },
}

/// Forgets a hand-off waiter when dropped.
struct ForgetHandoff {
    outbox: Arc<dyn Outbox>,
    id: MessageId,
}

impl Drop for ForgetHandoff {
    fn drop(&mut self) {
        self.outbox.forget_handoff(&self.id);
    }
}

/// The result of accepting a send.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    /// True when an earlier message with the same `clientMessageId` was returned.
    pub duplicate: bool,
}

pub fn validate_client_message_id(id: &str, field: &str) -> ServiceResult<()> {
    if id.is_empty() || id.chars().count() > MAX_CLIENT_MESSAGE_ID {
        return Err(ServiceError::Invalid(
            field.into(),
            format!("must be 1 to {MAX_CLIENT_MESSAGE_ID} characters"),
        ));
    }
    Ok(())
}

pub fn parse_text(s: &str, field: &str) -> ServiceResult<Spintax> {
    if s.trim().is_empty() {
        return Err(ServiceError::Invalid(
            field.into(),
            "must be at least 1 character".into(),
        ));
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(ServiceError::Invalid(
            field.into(),
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let t = Spintax::parse(s)
        .map_err(|e| ServiceError::Invalid(field.into(), format!("invalid spintax: {e}")))?;
    if t.can_expand_blank() {
        return Err(ServiceError::Invalid(
            field.into(),
            "must not expand to an empty text (a spintax group such as {} or {Hi|} can pick nothing)".into(),
        ));
    }
    Ok(t)
}

/// The chat a received message is in: its group, or its sender's one-to-one chat.
fn chat_of(m: &InboundMessage) -> Option<Recipient> {
    match (&m.group_id, &m.from) {
        (Some(g), _) if m.is_group => wagate_core::GroupId::parse(g).ok().map(Recipient::Group),
        (_, Some(from)) if !m.is_group => Some(Recipient::Phone(from.clone())),
        _ => None,
    }
}

/// The quote of a received message `m` for a reply in the chat `to`: it must have been
/// received in that chat (a reply quotes the chat it is in).
fn received_quote(m: InboundMessage, to: &Recipient, r: &ReplyRef) -> ServiceResult<Quote> {
    if m.is_group && chat_of(&m).as_ref() != Some(to) {
        return Err(ServiceError::Invalid(
            r.field.into(),
            format!(
                "message {} was received in group {}, not in the chat with {to}",
                r.reference,
                m.group_id.as_deref().unwrap_or("?")
            ),
        ));
    }
    if !m.is_group && m.from.as_ref() != to.phone() {
        return Err(ServiceError::Invalid(
            r.field.into(),
            format!(
                "message {} came from {}, not from {to}",
                r.reference,
                m.from
                    .as_ref()
                    .map(ToString::to_string)
                    .or(m.from_lid)
                    .unwrap_or_else(|| "an unknown sender".into())
            ),
        ));
    }
    Ok(Quote::of_received(&m))
}

/// What of a send's details and reply its `clientMessageId` stands for (the reply as
/// named, not as resolved); `None` when it has neither.
fn details_fingerprint(details: &Details, reply_to: Option<&ReplyRef>) -> Option<String> {
    let d = details.request_fingerprint();
    if d.is_none() && reply_to.is_none() {
        return None;
    }
    Some(serde_json::json!({"d": d, "r": reply_to.map(|r| &r.reference)}).to_string())
}

pub fn parse_send_at(s: &str, field: &str) -> ServiceResult<Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| {
        ServiceError::Invalid(
            field.into(),
            "must be an ISO-8601 date-time with a time zone, e.g. 2026-05-01T09:30:00Z".into(),
        )
    })?;
    let t = time::from_millis(t.timestamp_millis());
    if t > time::now() + chrono::Duration::days(366) {
        return Err(ServiceError::Invalid(
            field.into(),
            "must be within one year".into(),
        ));
    }
    Ok(t)
}

/// Sending (into the outbox, or waiting for WhatsApp to take it), reading messages back,
/// and checking numbers.
#[derive(Clone)]
pub struct MessagingService {
    store: Arc<dyn Store>,
    control: Arc<dyn DeviceControl>,
    outbox: Arc<dyn Outbox>,
    media: MediaService,
    router: SessionRouter,
    /// How long a synchronous send waits for WhatsApp (`sending.sync_wait_ms`).
    sync_wait: Duration,
    /// Groups each device was recently seen to be in ([`Self::require_member`]).
    known_groups: Arc<KnownGroups>,
}

/// Which groups devices were recently found in, so sends to a group do not each ask
/// WhatsApp. Entries expire after [`KNOWN_GROUP_TTL`] (membership changes); the map is
/// bounded (emptied when full: it is a cache, losing it costs one question per group).
#[derive(Default)]
struct KnownGroups(
    std::sync::Mutex<
        std::collections::HashMap<(DeviceUid, wagate_core::GroupId), std::time::Instant>,
    >,
);

const KNOWN_GROUP_TTL: Duration = Duration::from_secs(300);
const KNOWN_GROUPS_MAX: usize = 10_000;

impl KnownGroups {
    fn contains(&self, device: &DeviceUid, group: &wagate_core::GroupId) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(device.clone(), group.clone()))
            .is_some_and(|at| at.elapsed() < KNOWN_GROUP_TTL)
    }

    fn remember(&self, device: &DeviceUid, group: &wagate_core::GroupId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KNOWN_GROUPS_MAX {
            map.clear();
        }
        map.insert((device.clone(), group.clone()), std::time::Instant::now());
    }

    fn forget(&self, device: &DeviceUid, group: &wagate_core::GroupId) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(device.clone(), group.clone()));
    }
}

impl MessagingService {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
        outbox: Arc<dyn Outbox>,
        media: MediaService,
        router: SessionRouter,
        sync_wait_ms: u64,
    ) -> Self {
        Self {
            store,
            control,
            outbox,
            media,
            router,
            sync_wait: Duration::from_millis(sync_wait_ms),
            known_groups: Arc::default(),
        }
    }

    /// How long [`Self::send_and_wait`] waits when the caller has no wait of its own.
    pub fn sync_wait(&self) -> Duration {
        self.sync_wait
    }

    /// Commits a send (message, idempotency key and job in one transaction) and wakes the
    /// device's worker. A `clientMessageId` seen before on the device returns the
    /// original message and sends nothing.
    pub async fn send_message(
        &self,
        account: &AccountId,
        req: SendRequest,
    ) -> ServiceResult<Accepted> {
        self.send_message_with_id(account, MessageId::new(), req)
            .await
    }

    /// [`Self::send_message`] with the id chosen by the caller, so it can watch for the
    /// hand-off to the engine (`DeviceRuntime::watch_handoff`) before the worker can see
    /// the message. A duplicate `clientMessageId` returns the original, whose id differs.
    pub async fn send_message_with_id(
        &self,
        account: &AccountId,
        id: MessageId,
        req: SendRequest,
    ) -> ServiceResult<Accepted> {
        let device = super::device_of(self.store.as_ref(), account, &req.device_uid).await?;
        if matches!(
            device.status,
            DeviceStatus::LoggedOut | DeviceStatus::Banned | DeviceStatus::Replaced
        ) {
            return Err(ServiceError::Conflict(format!(
                "device {} is {}; link it again before sending",
                device.uid,
                device.status.as_str()
            )));
        }
        let kind = self.resolve_kind(account, &req).await?;
        if let Some((field, why)) = device
            .engine
            .refusal(kind, matches!(req.to, Recipient::Group(_)))
        {
            return Err(ServiceError::Invalid(field.into(), why));
        }
        if let Recipient::Group(group) = &req.to {
            self.require_member(account, &device.uid, group).await?;
        }
        let template = req.text.as_ref().map(ToString::to_string);
        let details_fingerprint = details_fingerprint(&req.details, req.reply_to.as_ref());
        let request_hash = wagate_core::message::RequestIdentity {
            endpoint: &format!("{}:{}", req.dialect.as_str(), req.kind.as_str()),
            to: &req.to,
            text: template.as_deref(),
            media: req.media_id.as_ref(),
            send_at: req.send_at,
            details: details_fingerprint.as_deref(),
        }
        .hash();
        let mut details = req.details;
        if let Some(r) = &req.reply_to {
            details.reply_to = Some(self.quote(account, &device.uid, &req.to, r).await?);
        }
        // Chosen once, here, and stored: every attempt sends the same poll, and votes
        // for it can be read. (A vote carries the poll it is cast in, secret included.)
        if kind == MessageKind::Poll {
            details.poll = details.poll.map(|p| p.with_new_secret());
        }
        // Structured content is summarised as the message's text, for lists and readers.
        let text = match details.summary_of(kind) {
            Some(summary) => Some(summary),
            // The expansion is chosen once, here, and stored: retries send the same text.
            None => req.text.map(|t| t.expand()),
        };
        let new = NewOutboundMessage {
            id: id.clone(),
            account_id: account.clone(),
            device_uid: device.uid.clone(),
            to: req.to,
            kind,
            text,
            media_id: req.media_id,
            details,
            client_message_id: req.client_message_id,
            request_hash,
            dialect: req.dialect,
            send_at: req.send_at,
            created_at: time::now(),
        };
        let pid = provider_message_id(&id);
        match self
            .store
            .accept_outbound_message(&new, &pid, device.limits.per_day)
            .await?
        {
            AcceptOutcome::Created(message) => {
                self.outbox.wake(&device.uid);
                Ok(Accepted {
                    message,
                    duplicate: false,
                })
            }
            AcceptOutcome::Duplicate(message) => Ok(Accepted {
                message,
                duplicate: true,
            }),
            AcceptOutcome::KeyReused { original } => {
                Err(ServiceError::IdempotencyKeyReused { original })
            }
            AcceptOutcome::DailyBudgetExhausted { limit } => Err(ServiceError::RateLimited {
                message: format!(
                    "device {} reached its daily limit of {limit} messages; it frees up as messages age past 24 hours (raise safety.dailyLimit to send more)",
                    device.uid
                ),
                retry_after_secs: Some(3600),
            }),
        }
    }

    /// Refuses a send to a group the device is not in (a 422 naming `groupId`), asking
    /// its live session, which knows its groups; a device that cannot be asked now
    /// (offline, starting) gets the message anyway, and WhatsApp's refusal, if any, fails
    /// it later with the reason. A group found is remembered for a while, so a burst of
    /// sends to one group asks once.
    async fn require_member(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        group: &wagate_core::GroupId,
    ) -> ServiceResult<()> {
        if self.known_groups.contains(device, group) {
            return Ok(());
        }
        match self
            .group_info(account, device, group, Reach::Anywhere)
            .await
        {
            Ok(_) => {
                self.known_groups.remember(device, group);
                Ok(())
            }
            Err(ServiceError::NotFound("group")) => Err(ServiceError::Invalid(
                "groupId".into(),
                format!("device {device} is not a member of group {group}, or it does not exist"),
            )),
            Err(e) => {
                tracing::debug!(device.uid = %device, group = %group, error = %e, "group membership not checked at accept");
                Ok(())
            }
        }
    }

    /// The device left `group` (or was found not to be in it): sends to it are asked
    /// about again.
    pub(super) fn forget_group(&self, device: &DeviceUid, group: &wagate_core::GroupId) {
        self.known_groups.forget(device, group);
    }

    /// Sends and answers once WhatsApp has the message (its server ack is committed), or
    /// once `wait` has passed: the use case behind MegaMsg's synchronous send.
    ///
    /// Refused before anything is stored when the device is not connected
    /// ([`ServiceError::Engine`]) or a budget would hold the message past the wait
    /// ([`ServiceError::RateLimited`]); inline media is stored first and checked again for
    /// the connection (a download takes time). A message not taken in time stays queued
    /// and will be sent: the outcome says so, with its id.
    pub async fn send_and_wait(
        &self,
        device: &wagate_core::device::Device,
        mut req: SendRequest,
        media: Option<(super::media::InlineMedia, Option<String>)>,
        wait: std::time::Duration,
    ) -> ServiceResult<SyncSend> {
        let account = &device.account_id;
        if let Some(h) = self.budget_hold(device, wait).await? {
            return Err(ServiceError::RateLimited {
                message: format!(
                    "Device {} reached its {} budget of {} messages; nothing was queued. Retry after {} s, or raise safety.{} to send more.",
                    device.uid,
                    h.budget,
                    h.limit,
                    h.retry_after_secs,
                    if h.budget == "per-minute" {
                        "minuteLimit"
                    } else {
                        "hourlyLimit"
                    }
                ),
                retry_after_secs: Some(h.retry_after_secs),
            });
        }
        // Before fetching media: a disconnected device should not cost a download.
        self.require_connected(device).await?;
        if let Some((source, file_name)) = media {
            let kind = match req.kind {
                SendKind::Exactly(k) => k,
                _ => MessageKind::Document,
            };
            let stored = self
                .media
                .ingest_media(account, source, kind, file_name)
                .await?;
            req.media_id = Some(stored.id);
            self.require_connected(device).await?;
        }
        let id = MessageId::new();
        // Registered before the message exists, so the moment cannot be missed; forgotten
        // however this ends (a caller that hangs up drops the future mid-wait).
        let mut taken = self.outbox.watch_handoff(&id);
        let _forget = ForgetHandoff {
            outbox: Arc::clone(&self.outbox),
            id: id.clone(),
        };
        // A device driven by another node of the cluster reports no hand-off here: its
        // ack arrives as a committed status change, announced by the store.
        let mut elsewhere = self.control.connection(&device.uid).is_none();
        let mut commits = self.store.subscribe_commits();
        commits.borrow_and_update();
        self.send_message_with_id(account, id.clone(), req).await?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut last_error = None;
        loop {
            tokio::select! {
                outcome = tokio::time::timeout_at(deadline, &mut taken) => match outcome {
                    Ok(Ok(Handoff::Taken)) => return Ok(SyncSend::Taken(id)),
                    Ok(Ok(Handoff::Failed(reason))) => {
                        return Ok(SyncSend::Failed { id, reason });
                    }
                    Ok(Ok(Handoff::Deferred(e))) => {
                        // The worker retries it; keep waiting for that attempt.
                        last_error = Some(e.to_string());
                        taken = self.outbox.watch_handoff(&id);
                    }
                    // Timed out, or the waiter was dropped (the runtime is shutting down).
                    Ok(Err(_)) | Err(_) => break,
                },
                changed = commits.changed(), if elsewhere => {
                    if changed.is_err() {
                        // The store is closing: wait out the deadline on the waiter alone.
                        elsewhere = false;
                        continue;
                    }
                    let (message, _) = self.get_message(account, &id).await?;
                    if message.status != MessageStatus::Queued {
                        break;
                    }
                }
            }
        }
        // The moment may have come between two waits: the stored status decides.
        let (message, _) = self.get_message(account, &id).await?;
        Ok(match message.status {
            MessageStatus::Queued => SyncSend::StillQueued {
                id,
                waited: wait,
                last_error,
            },
            MessageStatus::Failed => SyncSend::Failed {
                id,
                reason: message
                    .failure_reason
                    .unwrap_or_else(|| "unknown reason".into()),
            },
            _ => SyncSend::Taken(id),
        })
    }

    /// Whether the device is connected: its live session when it runs on this node; else
    /// its stored status, if another node of the cluster holds its lease (a device no
    /// node drives is not connected, whatever its last status said).
    async fn is_connected(&self, device: &wagate_core::device::Device) -> ServiceResult<bool> {
        if let Some(connected) = self.control.connection(&device.uid) {
            return Ok(connected);
        }
        if device.status != DeviceStatus::Connected {
            return Ok(false);
        }
        // A lease this node holds without a session here is a start under way (the lease
        // is taken before the session runs): not connected yet.
        let here = self.control.node_id();
        let now = time::now();
        Ok(self
            .store
            .get_device_lease(&device.uid)
            .await?
            .is_some_and(|l| l.is_held(now) && l.owner.as_deref() != Some(here.as_str())))
    }

    async fn require_connected(&self, device: &wagate_core::device::Device) -> ServiceResult<()> {
        if self.is_connected(device).await? {
            return Ok(());
        }
        Err(ServiceError::Engine(format!(
            "The WhatsApp session of device {} is not connected ({}); nothing was sent.",
            device.uid,
            device.status.as_str()
        )))
    }

    /// Whether the device's per-minute or per-hour budget would keep a message accepted
    /// now from being handed over for longer than `wait`: the caller that answers only
    /// once WhatsApp has the message refuses up front instead (MegaMsg's send).
    pub async fn budget_hold(
        &self,
        device: &wagate_core::device::Device,
        wait: std::time::Duration,
    ) -> ServiceResult<Option<wagate_core::device::BudgetHold>> {
        let now = time::now();
        let usage = self.store.budget_usage(&device.uid, now).await?;
        // Messages still queued go first (scheduled ones count too: a conservative
        // estimate, as they may come due within the wait).
        let queued = self
            .store
            .list_messages(
                &device.account_id,
                &MessageFilter {
                    device_uid: Some(device.uid.clone()),
                    status: Some(MessageStatus::Queued),
                    ..MessageFilter::default()
                },
                PageRequest { page: 1, limit: 1 },
            )
            .await?
            .total;
        Ok(device.limits.hold(
            usage.handed_last_minute,
            usage.handed_last_hour,
            queued,
            now,
            wait,
        ))
    }

    async fn resolve_kind(
        &self,
        account: &AccountId,
        req: &SendRequest,
    ) -> ServiceResult<MessageKind> {
        let media = match &req.media_id {
            Some(id) => Some(match self.store.get_media(account, id).await {
                Err(StoreError::NotFound) => return Err(ServiceError::NotFound("media")),
                other => other?,
            }),
            None => None,
        };
        let mime = match (req.kind, media) {
            (SendKind::Text, _) => return Ok(MessageKind::Text),
            (SendKind::Exactly(kind), _) if !kind.has_media() => return Ok(kind),
            (_, None) => {
                return Err(ServiceError::Invalid(
                    "mediaId".into(),
                    "is required".into(),
                ));
            }
            (_, Some(m)) => m.mime_type,
        };
        super::media::media_kind(req.kind, &mime).map_err(|NotOfKind { wanted }| {
            let purpose = match req.kind {
                SendKind::Exactly(MessageKind::Voice) => " for a voice note",
                _ => "",
            };
            ServiceError::Invalid(
                "mediaId".into(),
                format!("must be {wanted}{purpose} (this one is {mime})"),
            )
        })
    }

    /// The send that carries `action` on the message `target` (one the account's devices
    /// sent or received), from the device that has the message, into its chat: a message
    /// of its own in the outbox, with its own id, status and budget count. Edits and
    /// deletes apply to the device's own sent messages, within WhatsApp's windows
    /// ([`wagate_core::content::EDIT_WINDOW`], [`wagate_core::content::DELETE_WINDOW`]);
    /// only texts are edited. Refusals are `NotFound` (no such message) or `Conflict`
    /// (why not this one).
    pub async fn action(
        &self,
        account: &AccountId,
        target: &MessageId,
        action: MessageAction,
        client_message_id: Option<String>,
        dialect: Dialect,
    ) -> ServiceResult<SendRequest> {
        let conflict = |why: String| ServiceError::Conflict(why);
        // Reactions and votes go on anyone's messages; edits and deletes on the device's own.
        let on_anyones = matches!(action, MessageAction::React(_) | MessageAction::Vote(_));
        let (device_uid, to, quote, poll) = match self
            .store
            .get_message_with_history(account, target)
            .await
        {
            Ok((m, history)) => {
                if m.kind.is_action() {
                    return Err(conflict(format!(
                        "message {target} is a {} itself; act on the message it is about",
                        m.kind.as_str()
                    )));
                }
                if !on_anyones {
                    let sent_at = history
                        .iter()
                        .find(|h| h.status == MessageStatus::Sent)
                        .map(|h| h.at);
                    let Some(sent_at) = sent_at.filter(|_| m.status != MessageStatus::Failed)
                    else {
                        return Err(conflict(format!(
                            "message {target} is {}: WhatsApp does not have it, so it cannot be {}",
                            m.status.as_str(),
                            action.verb()
                        )));
                    };
                    let window = match action {
                        MessageAction::Edit(_) => wagate_core::content::EDIT_WINDOW,
                        _ => wagate_core::content::DELETE_WINDOW,
                    };
                    let age = (time::now() - sent_at).to_std().unwrap_or_default();
                    if age > window {
                        return Err(conflict(format!(
                            "message {target} was sent {} minutes ago; WhatsApp lets a message be {} for {} minutes only",
                            age.as_secs() / 60,
                            action.verb(),
                            window.as_secs() / 60
                        )));
                    }
                    if matches!(action, MessageAction::Edit(_)) && m.kind != MessageKind::Text {
                        return Err(conflict(format!(
                            "message {target} is a {}; only text messages can be edited",
                            m.kind.as_str()
                        )));
                    }
                }
                let quote = Quote::of_sent(&m);
                (m.device_uid, m.to, quote, m.details.poll)
            }
            Err(StoreError::NotFound) => {
                let m = match self.store.get_inbound(account, target).await {
                    Err(StoreError::NotFound) => return Err(ServiceError::NotFound("message")),
                    other => other?,
                };
                if m.kind == MessageKind::Participants {
                    return Err(conflict(format!(
                        "message {target} reports a change to a group's members; there is nothing to {}",
                        if matches!(action, MessageAction::React(_)) {
                            "react to"
                        } else {
                            "change"
                        }
                    )));
                }
                if !on_anyones {
                    return Err(conflict(format!(
                        "message {target} was received from someone else: only its sender can have it {}",
                        action.verb()
                    )));
                }
                if m.kind.is_action() {
                    return Err(conflict(format!(
                        "message {target} is a {} itself; react to the message it is about",
                        m.kind.as_str()
                    )));
                }
                if m.from.is_none() {
                    return Err(conflict(format!(
                        "the sender of message {target} is known by LID only; their number is needed to react"
                    )));
                }
                let Some(chat) = chat_of(&m) else {
                    return Err(conflict(format!(
                        "message {target} came from a group whose id WhatsApp did not give"
                    )));
                };
                let quote = Quote::of_received(&m);
                (m.device_uid, chat, quote, m.details.poll)
            }
            Err(e) => return Err(e.into()),
        };
        let kind = action.kind();
        let (text, emoji, vote) = match action {
            MessageAction::React(e) => (None, Some(e), None),
            MessageAction::Edit(t) => (Some(t), None, None),
            MessageAction::Delete => (None, None, None),
            MessageAction::Vote(options) => (None, None, Some(options)),
        };
        // A vote names options of the poll, and carries the poll (its secret encrypts
        // the vote on WhatsApp).
        let poll = match (&vote, poll) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(conflict(format!(
                    "message {target} is not a poll; only polls take votes"
                )));
            }
            (Some(options), Some(poll)) => {
                wagate_core::content::check_vote(&poll, options)
                    .map_err(|e| ServiceError::Invalid(e.field, e.reason))?;
                Some(poll)
            }
        };
        Ok(SendRequest {
            device_uid,
            to,
            kind: SendKind::Exactly(kind),
            text,
            media_id: None,
            details: Details {
                target: Some(quote),
                emoji,
                vote,
                poll,
                ..Details::default()
            },
            reply_to: None,
            client_message_id,
            send_at: None,
            dialect,
        })
    }

    /// The quote for a reply to `r`: one of the account's messages sent by the device, or
    /// a message the device received, in the chat with `to` either way (a reply quotes
    /// the chat it is in).
    async fn quote(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        to: &Recipient,
        r: &ReplyRef,
    ) -> ServiceResult<Quote> {
        let invalid = |why: String| ServiceError::Invalid(r.field.into(), why);
        if let Ok(id) = MessageId::parse(&r.reference) {
            let m = match self.store.get_message(account, &id).await {
                // Received messages have `msg_…` ids too (`GET /v1/developer/inbound`).
                Err(StoreError::NotFound) => match self.store.get_inbound(account, &id).await {
                    Ok(m) if &m.device_uid == device => {
                        return received_quote(m, to, r);
                    }
                    Ok(m) => {
                        return Err(invalid(format!(
                            "message {id} was received by device {}, not by this one",
                            m.device_uid
                        )));
                    }
                    Err(StoreError::NotFound) => {
                        return Err(invalid(format!(
                            "no message {id} was sent or received by this account"
                        )));
                    }
                    Err(e) => return Err(e.into()),
                },
                other => other?,
            };
            if &m.device_uid != device {
                return Err(invalid(format!(
                    "message {id} was sent by device {}, not by this one",
                    m.device_uid
                )));
            }
            if &m.to != to {
                return Err(invalid(format!(
                    "message {id} is in the chat with {}, not with {to}",
                    m.to
                )));
            }
            return Ok(Quote::of_sent(&m));
        }
        let Some(m) = self.store.find_inbound(device, &r.reference).await? else {
            return Err(invalid(
                "must be a message id (msg_…) sent or received by this device, or the providerMessageId of a message it received".into(),
            ));
        };
        received_quote(m, to, r)
    }

    pub async fn get_message(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> ServiceResult<(Message, Vec<StatusChange>)> {
        match self.store.get_message_with_history(account, id).await {
            Err(StoreError::NotFound) => Err(ServiceError::NotFound("message")),
            other => Ok(other?),
        }
    }

    /// A poll's results so far (`None` for a message that is not a poll): the votes the
    /// device received for it, each voter's latest counting.
    pub async fn poll_results(
        &self,
        message: &Message,
    ) -> ServiceResult<Option<Vec<wagate_core::content::OptionTally>>> {
        let Some(poll) = message
            .details
            .poll
            .as_ref()
            .filter(|_| message.kind == MessageKind::Poll)
        else {
            return Ok(None);
        };
        let votes: Vec<(String, Vec<String>)> = self
            .store
            .poll_votes(&message.device_uid, &message.provider_message_id)
            .await?
            .into_iter()
            // A vote whose options could not be read says nothing about the tally.
            .filter_map(|v| {
                let voter = v.from.as_ref().map(Phone::e164).or(v.from_lid)?;
                Some((voter, v.details.vote?))
            })
            .collect();
        Ok(Some(wagate_core::content::tally(poll, &votes)))
    }

    pub async fn list_messages(
        &self,
        account: &AccountId,
        filter: &MessageFilter,
        page: PageRequest,
    ) -> ServiceResult<Page<Message>> {
        Ok(self.store.list_messages(account, filter, page).await?)
    }

    pub async fn list_inbound(
        &self,
        account: &AccountId,
        device: Option<&DeviceUid>,
        page: PageRequest,
    ) -> ServiceResult<Page<InboundMessage>> {
        Ok(self.store.list_inbound(account, device, page).await?)
    }

    /// Shows "typing…", "recording…" or nothing (`Paused`) in the device's chat with
    /// `to`: a live-session call, not a message (nothing is stored or retried).
    pub async fn set_chat_state(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        to: &Recipient,
        state: ChatState,
    ) -> ServiceResult<()> {
        self.set_chat_state_at(account, device, to, state, Reach::Anywhere)
            .await
    }

    /// [`Self::set_chat_state`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn set_chat_state_at(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        to: &Recipient,
        state: ChatState,
        reach: Reach,
    ) -> ServiceResult<()> {
        let call = SessionCall::ChatState {
            to: to.to_string(),
            state: state.as_str().to_owned(),
        };
        let session = match self.live(account, device, reach, call).await? {
            Live::Here(session) => session,
            Live::There(PeerReply::Done) => return Ok(()),
            Live::There(other) => return Err(unexpected(&other)),
        };
        session
            .chat_state(to, state)
            .await
            .map_err(|e| ServiceError::Engine(e.to_string()))
    }

    /// Marks the device's chat `chat` (one-to-one or a group) read: read receipts for its
    /// unread inbound messages go to their senders, then the messages are recorded as read. Returns
    /// how many were marked (0 when nothing was unread).
    pub async fn mark_chat_read(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        chat: &Recipient,
    ) -> ServiceResult<u64> {
        self.mark_chat_read_at(account, device, chat, Reach::Anywhere)
            .await
    }

    /// [`Self::mark_chat_read`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn mark_chat_read_at(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        chat: &Recipient,
        reach: Reach,
    ) -> ServiceResult<u64> {
        let call = SessionCall::MarkRead {
            chat: chat.to_string(),
        };
        let session = match self.live(account, device, reach, call).await? {
            Live::Here(session) => session,
            Live::There(PeerReply::Marked { count }) => return Ok(count),
            Live::There(other) => return Err(unexpected(&other)),
        };
        let mut marked = 0;
        // In rounds, so a chat with a long backlog is marked whole without one huge
        // receipt; recorded only once WhatsApp took the receipts.
        loop {
            let unread = self
                .store
                .unread_inbound(device, chat, MARK_READ_ROUND)
                .await?;
            if unread.is_empty() {
                return Ok(marked);
            }
            let marks: Vec<ReadMark> = unread
                .iter()
                .map(|m| ReadMark {
                    provider_message_id: m.provider_message_id.clone(),
                    sender: m.from.clone(),
                })
                .collect();
            session
                .mark_read(chat, &marks)
                .await
                .map_err(|e| ServiceError::Engine(e.to_string()))?;
            let ids: Vec<MessageId> = unread.iter().map(|m| m.id.clone()).collect();
            let newly = self
                .store
                .mark_inbound_read(device, &ids, time::now())
                .await?;
            marked += newly;
            if newly == 0 || unread.len() < MARK_READ_ROUND as usize {
                return Ok(marked);
            }
        }
    }

    /// Where a call needing the device's live session runs: here, on its session, which
    /// must be connected; or, when `reach` allows, on the node driving the device, which
    /// runs `call` and whose reply is returned.
    pub(super) async fn live(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        reach: Reach,
        call: SessionCall,
    ) -> ServiceResult<Live> {
        super::device_of(self.store.as_ref(), account, device).await?;
        match self.router.route(device, reach, "is not running").await? {
            Route::Here(session) => {
                if self.control.connection(device) != Some(true) {
                    return Err(ServiceError::Engine(format!(
                        "device {device} is not connected to WhatsApp"
                    )));
                }
                Ok(Live::Here(session))
            }
            Route::Forward { node, address } => Ok(Live::There(
                self.router
                    .forward((&node, &address), account, device, call)
                    .await?,
            )),
        }
    }

    /// Asks WhatsApp (through the device) which numbers are on it.
    pub async fn check_numbers(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        numbers: &[Phone],
    ) -> ServiceResult<Vec<NumberCheck>> {
        self.check_numbers_at(account, device, numbers, Reach::Anywhere)
            .await
    }

    /// [`Self::check_numbers`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn check_numbers_at(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        numbers: &[Phone],
        reach: Reach,
    ) -> ServiceResult<Vec<NumberCheck>> {
        let call = SessionCall::CheckNumbers {
            numbers: numbers.iter().map(ToString::to_string).collect(),
        };
        let session = match self.live(account, device, reach, call).await? {
            Live::Here(session) => session,
            Live::There(PeerReply::Numbers { results }) => {
                return results.into_iter().map(NumberCheck::try_from).collect();
            }
            Live::There(other) => return Err(unexpected(&other)),
        };
        session.check_numbers(numbers).await.map_err(|e| match e {
            // The Cloud API has no number check: nothing to retry.
            wagate_core::engine::EngineError::Unsupported(why) => ServiceError::Conflict(why),
            other => ServiceError::Engine(other.to_string()),
        })
    }
}
