//! The persistence ports: one trait per aggregate, every method a unit of work.
//!
//! A method either commits everything it describes or nothing; no transaction escapes
//! into callers and none is held across network I/O. Methods that change reported state
//! (message status, device status, inbound messages) append the matching domain event in
//! the same transaction, which is what makes webhooks lossless. Every implementation
//! (SQLite now, PostgreSQL later) must pass the conformance suite in `wagate-store-tests`.
//!
//! Stores load and persist; the decisions in between are the core's pure functions,
//! called inside the transaction with what the store loaded: [`crate::accept::decide`]
//! (accepting a send), [`crate::message::Message::step`] (a status step and its event),
//! [`crate::device::DeviceStateChange::apply_to`] and
//! [`crate::event::NewEvent::device_status`] (a device's state and its event).
//!
//! # The `Event.seq` contract
//!
//! Webhook fan-out and the live stream read events with `seq > last seen` and never look
//! back, so a store must assign `seq` such that:
//!
//! 1. seqs are unique and strictly increase in commit order: an event committed after
//!    another has a larger seq;
//! 2. no gap is ever filled: once a reader has seen seq `n`, no event with a seq below
//!    `n` commits later (seqs may be skipped, by rolled-back transactions or pruning, but
//!    never appear late);
//! 3. [`EventStore::subscribe_commits`] announces a commit's last seq only once that
//!    commit is visible to readers.
//!
//! SQLite meets this by construction: one writer connection commits one transaction at
//! a time and `events.seq` is an AUTOINCREMENT key assigned inside it, so assignment
//! order is commit order. A PostgreSQL store must not hand out seqs from a bare sequence
//! under concurrent writers (a transaction holding seq 7 can commit after one holding
//! seq 8, and a reader at 8 would skip 7): it must serialise event-writing commits (e.g.
//! a transaction-scoped advisory lock taken before the first event insert) or assign
//! seqs at commit from a single counter row, so that rules 1 and 2 hold.

use crate::account::{Account, ApiKey, ApiKeyCredential, DashboardSession, NewApiKey};
use crate::chat::Recipient;
use crate::device::{Device, DevicePatch, DeviceStateChange, NewDevice};
use crate::event::{Event, EventType};
use crate::id::{AccountId, ApiKeyId, DeviceUid, MediaId, MessageId};
use crate::lease::{DeviceLease, Fence, NodeInfo};
use crate::media::Media;
use crate::message::{InboundMessage, Message, MessageStatus, NewOutboundMessage, StatusChange};
use crate::time::Timestamp;
use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or belongs to another account.
    #[error("not found")]
    NotFound,
    /// A uniqueness or state rule refused the change; the text says which.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The write was for a device this node no longer drives: another node took its lease
    /// over (a newer epoch). The node must stop the device; retrying cannot succeed.
    #[error("fenced: another node took the device over")]
    Fenced,
    /// The database cannot be reached or is overloaded; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A 1-based page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub limit: u32,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        u64::from(self.page.saturating_sub(1)) * u64::from(self.limit)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub page: u32,
    pub limit: u32,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, account: &Account) -> StoreResult<()>;
    async fn get_account(&self, id: &AccountId) -> StoreResult<Account>;
    /// Every account, oldest first (administration).
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Adds a key unless the account already has `max_active` unrevoked keys (`Conflict`).
    async fn create_api_key(&self, key: &NewApiKey, max_active: usize) -> StoreResult<ApiKey>;
    /// All keys of the account, revoked ones included, oldest first.
    async fn list_api_keys(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>>;
    /// Revokes a key of the account and ends every dashboard session opened with it, in
    /// one transaction; revoking twice is `NotFound` the second time.
    async fn revoke_api_key(
        &self,
        account: &AccountId,
        key: &ApiKeyId,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Unrevoked keys with this public prefix (normally one), for authentication.
    async fn find_api_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<ApiKeyCredential>>;
}

/// Dashboard sessions, revocable server-side (see [`DashboardSession`]).
#[async_trait]
pub trait DashboardSessionStore: Send + Sync {
    /// Records a new session, unless its key is not an active key of its account
    /// (`NotFound`): checked in the same transaction, so a key revoked while the user
    /// signs in cannot leave a session behind. Sessions that expired by `created_at` are
    /// purged on the way, so the table does not grow with abandoned sessions.
    async fn create_dashboard_session(&self, session: &DashboardSession) -> StoreResult<()>;
    /// The session with this token hash if it exists, has not expired by `now` and its
    /// key is still active; `NotFound` otherwise.
    async fn get_dashboard_session(
        &self,
        token_hash: &[u8; 32],
        now: Timestamp,
    ) -> StoreResult<DashboardSession>;
    /// Ends one session (sign-out); whether it existed.
    async fn delete_dashboard_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool>;
    /// Ends every session of the account; how many there were.
    async fn delete_account_dashboard_sessions(&self, account: &AccountId) -> StoreResult<u64>;
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn create_device(&self, device: &NewDevice) -> StoreResult<Device>;
    /// A device of the account (`NotFound` for another account's).
    async fn get_device(&self, account: &AccountId, uid: &DeviceUid) -> StoreResult<Device>;
    /// Any live device, for the runtime.
    async fn get_device_by_uid(&self, uid: &DeviceUid) -> StoreResult<Device>;
    async fn list_devices(&self, account: &AccountId) -> StoreResult<Vec<Device>>;
    /// One page of the account's live devices, oldest first (the order of `list_devices`),
    /// with their total: an account may hold thousands.
    async fn list_devices_page(
        &self,
        account: &AccountId,
        page: PageRequest,
    ) -> StoreResult<Page<Device>>;
    /// Every live device of every account, oldest first (startup).
    async fn list_all_devices(&self) -> StoreResult<Vec<Device>>;
    async fn update_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        patch: &DevicePatch,
    ) -> StoreResult<Device>;
    /// Removes the device from listings; its messages stay for history. Pending sends
    /// are failed with a reason.
    async fn delete_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Records a state reported by the engine of the fenced device and appends a
    /// `device.status` event; `qr` is carried in the event only (QR codes are not stored).
    async fn record_device_state(
        &self,
        fence: &Fence,
        change: &DeviceStateChange,
        qr: Option<&str>,
    ) -> StoreResult<Device>;
    async fn set_instance_token_hash(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        hash: &[u8; 32],
    ) -> StoreResult<()>;
    /// A live device and its instance token hash, for MegaMsg authentication.
    async fn get_instance_credential(&self, uid: &DeviceUid) -> StoreResult<(Device, [u8; 32])>;
    /// The live device's sealed secret, `None` if it has none (`NotFound` for no live
    /// device: a deleted device's secret is erased with it).
    async fn get_device_secret(&self, uid: &DeviceUid) -> StoreResult<Option<Vec<u8>>>;
}

/// What accepting an outbound message did.
#[derive(Debug, Clone, PartialEq)]
pub enum AcceptOutcome {
    /// The message, its idempotency key and its send job were committed.
    Created(Message),
    /// The device already had a message with this `clientMessageId`, for the same
    /// request: nothing new, the original is the answer.
    Duplicate(Message),
    /// The device already had a message with this `clientMessageId`, for a different
    /// request (another recipient, text, media or endpoint): nothing was committed.
    KeyReused { original: MessageId },
    /// The device's daily budget is used up: nothing was committed.
    DailyBudgetExhausted { limit: u32 },
}

/// How much of a device's budgets recent traffic used, in rolling windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetUsage {
    /// Messages accepted in the last 24 hours.
    pub accepted_last_day: u64,
    /// Messages handed to the engine in the last hour.
    pub handed_last_hour: u64,
    /// Messages handed to the engine in the last minute.
    pub handed_last_minute: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub device_uid: Option<DeviceUid>,
    pub status: Option<MessageStatus>,
    pub to: Option<Recipient>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// How a status change finds its message: by our id, or by WhatsApp's on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageRef {
    Id(MessageId),
    Provider {
        device: DeviceUid,
        provider_message_id: String,
    },
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Commits the message (status `queued` at `created_at`), its idempotency key and its
    /// send job in one transaction, unless a message with the same `client_message_id`
    /// exists on the device or `daily_limit` messages were accepted in the last 24 hours.
    /// The message's `provider_message_id` is set by the caller before sending; here it
    /// is stored as given by [`crate::engine::provider_message_id`].
    async fn accept_outbound_message(
        &self,
        message: &NewOutboundMessage,
        provider_message_id: &str,
        daily_limit: u32,
    ) -> StoreResult<AcceptOutcome>;
    async fn get_message(&self, account: &AccountId, id: &MessageId) -> StoreResult<Message>;
    /// The device's outbound message WhatsApp knows as `provider_message_id`, if any (an
    /// engine reading a vote on one of the device's polls asks for it).
    async fn find_sent(
        &self,
        device: &DeviceUid,
        provider_message_id: &str,
    ) -> StoreResult<Option<Message>>;
    async fn list_messages(
        &self,
        account: &AccountId,
        filter: &MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Message>>;
    /// WhatsApp named the fenced device's message `provider_message_id` as `assigned` when
    /// it took it (the Cloud API's `wamid`): from now on the message is known by
    /// `assigned` (its receipts, replies and reactions name it so). `Ok(false)` when no
    /// message of the device has `provider_message_id` (renamed already: a repeat).
    async fn assign_provider_id(
        &self,
        fence: &Fence,
        provider_message_id: &str,
        assigned: &str,
    ) -> StoreResult<bool>;
    /// The message and every status it went through, oldest first, as of one moment (the
    /// last step is the message's status even while receipts keep arriving).
    async fn get_message_with_history(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> StoreResult<(Message, Vec<StatusChange>)>;
    /// Moves the message to `status` if that is forward ([`MessageStatus::can_advance_to`]),
    /// recording the step and a `message.status` event. A message that leaves `queued`
    /// loses its send job: it is sent, or it failed. `Ok(None)` when it did not move
    /// (duplicate or late receipt); `NotFound` when no such message on the fenced device.
    async fn advance_message_status(
        &self,
        fence: &Fence,
        message: &MessageRef,
        status: MessageStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> StoreResult<Option<Message>>;
    /// A recipient's receipt (`delivered`, `read`, `played`) for one of the device's
    /// messages: [`Self::advance_message_status`] without a fence. A receipt is a fact
    /// WhatsApp reports, true whichever node hears it, and steps only go forward, so the
    /// node that took it commits it even after losing the device's lease (a node resumed
    /// from a pause, whose protocol client acknowledged the receipt to WhatsApp already:
    /// refusing it there would lose it for good).
    async fn record_receipt(
        &self,
        message: &MessageRef,
        status: MessageStatus,
        at: Timestamp,
    ) -> StoreResult<Option<Message>>;
    async fn budget_usage(&self, device: &DeviceUid, now: Timestamp) -> StoreResult<BudgetUsage>;
}

/// A claimed send job: the lease keeps other workers off it until `lease_until`. Job ids
/// are never reused, so bookkeeping for a job that already ended cannot touch another.
///
/// Leases carry their owner, the claiming process's id (unique per process start), so
/// several processes can share a store: a job is claimed only when unleased or when its
/// lease expired, and an owner releases only its own leases; a crashed process's leases
/// simply run out.
#[derive(Debug, Clone, PartialEq)]
pub struct SendJob {
    pub job_id: i64,
    pub message: Message,
    /// How many times the job was claimed, this claim included.
    pub attempt: u32,
}

#[async_trait]
pub trait SendQueue: Send + Sync {
    /// Claims up to `limit` due jobs of the fenced device (run time reached, unleased or
    /// its lease expired by `now`, whoever held it), oldest first, leasing them to the
    /// fence's owner until `lease_until`.
    async fn claim_send_jobs(
        &self,
        fence: &Fence,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>>;
    /// When the device's next job becomes claimable, if it has any.
    async fn next_send_job_at(&self, device: &DeviceUid) -> StoreResult<Option<Timestamp>>;
    /// Records a hand-off: the engine took the messages of these jobs (of the fenced
    /// device, handed over together) and WhatsApp's server acknowledgements are awaited: each
    /// hand-off counts against the device's budgets, and each job stays, released, until
    /// `recheck_at`. An ack moves its
    /// message out of `queued`, which ends the job
    /// ([`MessageStore::advance_message_status`]); if none came by then, the job is
    /// claimable again and the message is handed over once more under the same provider
    /// id. A job already ended by an early ack is not an error.
    async fn record_handoff(
        &self,
        fence: &Fence,
        job_ids: &[i64],
        at: Timestamp,
        recheck_at: Timestamp,
    ) -> StoreResult<()>;
    /// The send failed for good: the job is done and the message `failed` with `reason`.
    async fn fail_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// A transient failure: the job is released to run again at `run_at`.
    async fn retry_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        run_at: Timestamp,
        error: &str,
    ) -> StoreResult<()>;
    /// Releases the leases `owner` holds on the device's jobs (graceful shutdown); leases
    /// of other owners stay until they expire.
    async fn release_send_jobs(&self, device: &DeviceUid, owner: &str) -> StoreResult<()>;
    /// Devices that got a new send job (an accepted message), each announced once its
    /// commit is readable, so whichever node drives the device wakes its worker: commits
    /// through this store, and, where the database can say so, through other nodes. A
    /// receiver that lags has missed some and should wake every worker it runs.
    fn subscribe_queued(&self) -> broadcast::Receiver<DeviceUid>;
    /// The devices whose lease `owner` holds that have a job claimable at `now`: the
    /// slow safety net behind [`SendQueue::subscribe_queued`], for an announcement that
    /// could not reach this node (another process on the same SQLite file, a lost
    /// connection to PostgreSQL).
    async fn due_devices(&self, owner: &str, now: Timestamp) -> StoreResult<Vec<DeviceUid>>;
}

/// What recording an inbound message did.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundOutcome {
    Created(InboundMessage),
    /// The same provider message id was already stored on the device.
    Duplicate(InboundMessage),
}

#[async_trait]
pub trait InboundStore: Send + Sync {
    /// Stores the message and a `message.received` event, once per provider message id and
    /// device; `mime_type` describes its media for the event.
    async fn record_inbound(
        &self,
        fence: &Fence,
        message: &InboundMessage,
        mime_type: Option<&str>,
    ) -> StoreResult<InboundOutcome>;
    async fn list_inbound(
        &self,
        account: &AccountId,
        device: Option<&DeviceUid>,
        page: PageRequest,
    ) -> StoreResult<Page<InboundMessage>>;
    /// The account's inbound message `id` (`NotFound` for another account's).
    async fn get_inbound(&self, account: &AccountId, id: &MessageId)
    -> StoreResult<InboundMessage>;
    /// The device's inbound message with WhatsApp's id `provider_message_id`, if any.
    async fn find_inbound(
        &self,
        device: &DeviceUid,
        provider_message_id: &str,
    ) -> StoreResult<Option<InboundMessage>>;
    /// The device's messages in `chat` (a one-to-one chat: the sender's number; or a
    /// group) not yet marked read, oldest first, at most `limit`; notices and actions
    /// (reactions, edits, deletes, votes, membership changes) are never unread.
    async fn unread_inbound(
        &self,
        device: &DeviceUid,
        chat: &Recipient,
        limit: u32,
    ) -> StoreResult<Vec<InboundMessage>>;
    /// The votes the device received for its poll (or a poll it received) with WhatsApp's
    /// id `poll_provider_message_id`, oldest first.
    async fn poll_votes(
        &self,
        device: &DeviceUid,
        poll_provider_message_id: &str,
    ) -> StoreResult<Vec<InboundMessage>>;
    /// Marks the device's inbound messages `ids` read at `at`; one already read keeps its
    /// time. Returns how many were newly marked.
    async fn mark_inbound_read(
        &self,
        device: &DeviceUid,
        ids: &[MessageId],
        at: Timestamp,
    ) -> StoreResult<u64>;
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn create_media(&self, media: &Media) -> StoreResult<()>;
    /// A media file of the account (`NotFound` for another account's).
    async fn get_media(&self, account: &AccountId, id: &MediaId) -> StoreResult<Media>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Committed events with `seq > after`, in order, optionally of one account only.
    async fn list_events(
        &self,
        after: i64,
        limit: u32,
        account: Option<&AccountId>,
        types: &[EventType],
    ) -> StoreResult<Vec<Event>>;
    /// The newest committed event's seq (0 when none).
    async fn last_event_seq(&self) -> StoreResult<i64>;
    /// A receiver of the last committed event seq, updated after every commit of this
    /// store (its clones included) that wrote events, and after changes that make
    /// webhook deliveries due (a redelivery): webhook delivery and the live stream wake on
    /// it instead of polling. Only commits through this store are announced; another
    /// process writing the same database is seen by the readers' own polls.
    fn subscribe_commits(&self) -> watch::Receiver<i64>;
    /// Takes the database's write lock and commits an empty transaction: an error (or no
    /// answer) means writes cannot be committed now, even when reads still work (an outside
    /// lock on a WAL database, a full or read-only disk, a file removed underneath).
    async fn check_writable(&self) -> StoreResult<()>;
}

/// Device leases and the nodes that hold them ([`crate::lease`]). Times are the callers'
/// clocks, which must agree within a fraction of a lease (NTP): a lease is 15 s.
#[async_trait]
pub trait DeviceLeaseStore: Send + Sync {
    /// Takes the device's lease for `owner` until `until`, bumping its epoch, if nobody
    /// holds it at `now` (never leased, released, expired) or `owner` itself does (a
    /// restarted node). `None` while another node holds it. Taking it also frees the
    /// device's send-job leases: their holder is fenced from now on and can record
    /// nothing, so the new holder sends them again (under the same WhatsApp ids) at once.
    async fn acquire_device_lease(
        &self,
        device: &DeviceUid,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<DeviceLease>>;
    /// Extends to `until`, in one statement, every lease `owner` holds unexpired at `now`,
    /// and returns them: a device missing from the answer is no longer this node's.
    async fn renew_device_leases(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<DeviceLease>>;
    /// Gives the lease up if `fence` still holds it (hand-over): the owner is cleared and
    /// the epoch kept, so the next holder's is higher. `false` if it was not held so.
    async fn release_device_lease(&self, fence: &Fence) -> StoreResult<bool>;
    /// Every lease row (devices never leased have none).
    async fn list_device_leases(&self) -> StoreResult<Vec<DeviceLease>>;
    async fn get_device_lease(&self, device: &DeviceUid) -> StoreResult<Option<DeviceLease>>;
    /// Records that `node.node_id` is alive at `node.heartbeat_at`, whether it is shutting
    /// down, and where it can be reached.
    async fn heartbeat_node(&self, node: &NodeInfo) -> StoreResult<()>;
    /// Nodes whose last heartbeat is at or after `since`.
    async fn list_nodes(&self, since: Timestamp) -> StoreResult<Vec<NodeInfo>>;
    /// Forgets a node (it shut down cleanly and holds nothing).
    async fn remove_node(&self, node: &str) -> StoreResult<()>;
    /// A receiver that changes when a lease is released (through this store, or, where the
    /// database can say so, through another node), so waiting nodes take it over at once
    /// instead of at their next round.
    fn subscribe_lease_releases(&self) -> watch::Receiver<u64>;
}

/// The server's signing keys, kept in the database so that every node of a cluster signs
/// and verifies with the same ones (a media link from one node opens on another).
#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// The key stored under `name`; if there is none yet, `candidate` is stored and
    /// returned. Nodes racing to store different candidates all get the one that won.
    async fn server_key(&self, name: &str, candidate: &[u8; 32]) -> StoreResult<[u8; 32]>;
}

/// Everything wagate persists.
pub trait Store:
    AccountStore
    + DashboardSessionStore
    + DeviceStore
    + MessageStore
    + SendQueue
    + InboundStore
    + MediaStore
    + EventStore
    + DeviceLeaseStore
    + ServerKeyStore
    + crate::webhook::WebhookStore
{
}

impl<T> Store for T where
    T: AccountStore
        + DashboardSessionStore
        + DeviceStore
        + MessageStore
        + SendQueue
        + InboundStore
        + MediaStore
        + EventStore
        + DeviceLeaseStore
        + ServerKeyStore
        + crate::webhook::WebhookStore
{
}
