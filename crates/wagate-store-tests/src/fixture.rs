//! How cases get a fresh store, and the small builders they share.

use chrono::{TimeZone, Utc};
use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use wagate_core::account::Account;
use wagate_core::device::{Device, EngineKind, NewDevice, Pacing, SafetyLimits};
use wagate_core::engine::provider_message_id;
use wagate_core::event::{Event, EventType};
use wagate_core::lease::Fence;
use wagate_core::message::{Dialect, Message, MessageKind, NewOutboundMessage};
use wagate_core::store::{AcceptOutcome, Store};
use wagate_core::time::Timestamp;
use wagate_core::{AccountId, DeviceUid, MessageId, Phone};

/// The lease owner the cases claim send jobs as (one process); cases about several
/// processes name the others themselves.
pub(crate) const OWNER: &str = "process-a";

/// A fresh, empty store and whatever must outlive it (a temporary directory, a throwaway
/// database). The store is dropped before the guard.
pub struct Fixture<S> {
    pub store: Arc<S>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl<S> Fixture<S> {
    pub fn new(store: S) -> Self {
        Self::with_guard(store, ())
    }

    pub fn with_guard(store: S, guard: impl Any + Send + Sync) -> Self {
        Self {
            store: Arc::new(store),
            _guard: Box::new(guard),
        }
    }
}

/// Makes a fresh, empty store per case; implemented for closures returning a future of
/// [`Fixture`].
pub trait StoreFactory: Send + Sync {
    type Store: Store + 'static;
    fn make(&self) -> impl Future<Output = Fixture<Self::Store>> + Send;
}

impl<F, Fut, S> StoreFactory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Fixture<S>> + Send,
    S: Store + 'static,
{
    type Store = S;
    fn make(&self) -> impl Future<Output = Fixture<S>> + Send {
        self()
    }
}

/// The cases' epoch: ten seconds past a minute boundary, so offsets of a few seconds stay
/// within one minute bucket.
pub(crate) fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 10).single().unwrap()
}

/// `t0` plus `ms` milliseconds.
pub(crate) fn at(ms: i64) -> Timestamp {
    t0() + chrono::Duration::milliseconds(ms)
}

/// The fencing token of `owner`'s writes for the device: the lease it holds, or else the
/// lease taken over from whoever holds it. The lease is taken at a fixed instant past
/// every case's times and expires at once, so another owner can take it over at any
/// time; the token stays valid until then: fencing follows the epoch, not the expiry.
pub(crate) async fn fence_as(store: &impl Store, device: &DeviceUid, owner: &str) -> Fence {
    if let Some(held) = store.get_device_lease(device).await.unwrap()
        && held.owner.as_deref() == Some(owner)
    {
        return held.fence().unwrap();
    }
    let now = at(1_000 * HOUR);
    store
        .acquire_device_lease(device, owner, now, now)
        .await
        .unwrap()
        .expect("an expired lease can be taken")
        .fence()
        .unwrap()
}

/// [`fence_as`] for [`OWNER`].
pub(crate) async fn fence(store: &impl Store, device: &DeviceUid) -> Fence {
    fence_as(store, device, OWNER).await
}

pub(crate) const SEC: i64 = 1_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;

pub(crate) fn phone(n: u32) -> Phone {
    Phone::parse(&format!("+4915{:08}", n)).unwrap()
}

pub(crate) async fn account(store: &impl Store) -> AccountId {
    let id = AccountId::new();
    store
        .create_account(&Account {
            id: id.clone(),
            name: format!("account {id}"),
            created_at: t0(),
        })
        .await
        .unwrap();
    id
}

pub(crate) fn new_device(account: &AccountId, created_at: Timestamp) -> NewDevice {
    NewDevice {
        uid: DeviceUid::new(),
        account_id: account.clone(),
        name: "phone".into(),
        engine: EngineKind::Sandbox,
        limits: SafetyLimits::default(),
        pacing: Pacing::NONE,
        instance_token_hash: [7; 32],
        created_at,
        sealed_secret: None,
    }
}

pub(crate) async fn device(store: &impl Store, account: &AccountId) -> Device {
    store
        .create_device(&new_device(account, t0()))
        .await
        .unwrap()
}

pub(crate) fn outbound(
    device: &Device,
    client_message_id: Option<&str>,
    created_at: Timestamp,
) -> NewOutboundMessage {
    NewOutboundMessage {
        id: MessageId::new(),
        account_id: device.account_id.clone(),
        device_uid: device.uid.clone(),
        to: phone(1).into(),
        kind: MessageKind::Text,
        text: Some("hello".into()),
        media_id: None,
        details: Default::default(),
        client_message_id: client_message_id.map(str::to_owned),
        // The same request each time unless a case says otherwise (the stored text may
        // still differ: spintax picks a variant per accept).
        request_hash: "request-1".into(),
        dialect: Dialect::Msgera,
        send_at: None,
        created_at,
    }
}

pub(crate) async fn accept(
    store: &impl Store,
    message: &NewOutboundMessage,
    daily_limit: u32,
) -> AcceptOutcome {
    store
        .accept_outbound_message(message, &provider_message_id(&message.id), daily_limit)
        .await
        .unwrap()
}

/// Accepts a message that must be created, and returns it.
pub(crate) async fn send(store: &impl Store, message: &NewOutboundMessage) -> Message {
    match accept(store, message, 1_000_000).await {
        AcceptOutcome::Created(m) => m,
        other => panic!("expected Created, got {other:?}"),
    }
}

pub(crate) async fn events(store: &impl Store, types: &[EventType]) -> Vec<Event> {
    store.list_events(0, 10_000, None, types).await.unwrap()
}
