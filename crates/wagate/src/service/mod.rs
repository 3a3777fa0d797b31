//! Use cases shared by every API dialect and the CLI, one service per area: accounts and
//! keys, dashboard sessions, devices and linking, media, messaging, webhooks, the event
//! feed, the sandbox and operations. Handlers parse and shape; services decide.
//!
//! Each service keeps its fields private and reaches what runs devices only through the
//! small traits of [`port`], so it can be unit-tested with a real store and a fake
//! runtime. [`Services`] bundles them as the HTTP state; it holds no store, runtime or
//! sandbox of its own, so a handler cannot go around a use case.

pub mod accounts;
pub mod cloud;
pub mod devices;
pub mod events;
pub mod groups;
pub mod linking;
pub mod media;
pub mod messaging;
pub mod ops;
pub mod peer;
pub mod port;
pub mod remote_media;
pub mod sandbox;
pub mod sessions;
pub mod webhooks;

#[cfg(test)]
mod tests;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::engine::sandbox::SandboxNetwork;
use crate::keys::ServerKeys;
use crate::runtime::DeviceRuntime;
use std::sync::Arc;
use wagate_core::device::Device;
use wagate_core::store::{Store, StoreError};
use wagate_core::{AccountId, DeviceUid};

pub use accounts::AccountService;
pub use cloud::CloudApiService;
pub use devices::DeviceService;
pub use events::EventService;
pub use linking::LinkingService;
pub use media::MediaService;
pub use messaging::MessagingService;
pub use ops::OpsService;
pub use peer::PeerService;
pub use sandbox::SandboxService;
pub use sessions::SessionService;
pub use webhooks::WebhookService;

/// The area services: the HTTP state of every dialect. One `Arc`, because axum clones the
/// state for every request (the profile of issue 18 showed cloning and dropping each
/// service's fields per request on the hot path).
#[derive(Clone)]
pub struct Services(Arc<ServiceSet>);

impl std::ops::Deref for Services {
    type Target = ServiceSet;

    fn deref(&self) -> &ServiceSet {
        &self.0
    }
}

/// The services themselves, reached through [`Services`].
pub struct ServiceSet {
    pub accounts: AccountService,
    pub cloud: CloudApiService,
    pub sessions: SessionService,
    pub devices: DeviceService,
    pub linking: LinkingService,
    pub media: MediaService,
    pub messaging: MessagingService,
    pub webhooks: WebhookService,
    pub events: EventService,
    pub sandbox: SandboxService,
    pub ops: OpsService,
    pub peer: PeerService,
}

impl Services {
    /// Builds every service over the opened store, media and runtime, with the keys
    /// loaded at start.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        runtime: Arc<DeviceRuntime>,
        sandbox: Arc<SandboxNetwork>,
        keys: ServerKeys,
        secrets: crate::secrets::SecretsKey,
    ) -> Self {
        let control: Arc<dyn port::DeviceControl> = Arc::new(Arc::clone(&runtime));
        let peers: Option<Arc<dyn peer::Peers>> = match peer::HttpPeers::new(
            keys.cluster.clone(),
            control.node_id(),
        ) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!(error = %e, "no HTTP client for calls to other nodes; they are not forwarded");
                None
            }
        };
        let router = peer::SessionRouter::new(Arc::clone(&store), Arc::clone(&control), peers);
        let cloud = CloudApiService::new(
            Arc::clone(&store),
            Arc::clone(&control),
            router.clone(),
            secrets.clone(),
        );
        let accounts = AccountService::new(Arc::clone(&store));
        let media = MediaService::new(
            Arc::clone(&config),
            Arc::clone(&store),
            blobs,
            keys.media_link.clone(),
        );
        let linking = LinkingService::new(Arc::clone(&store), Arc::clone(&control), router.clone());
        let messaging = MessagingService::new(
            Arc::clone(&store),
            Arc::clone(&control),
            runtime.clone(),
            media.clone(),
            router,
            config.sending.sync_wait_ms,
        );
        Self(Arc::new(ServiceSet {
            sessions: SessionService::new(
                Arc::clone(&store),
                accounts.clone(),
                keys.dashboard,
                &config.public_url(),
            ),
            peer: PeerService::new(
                keys.cluster,
                linking.clone(),
                messaging.clone(),
                cloud.clone(),
            ),
            cloud,
            devices: DeviceService::new(
                Arc::clone(&store),
                Arc::clone(&control),
                runtime.clone(),
                secrets,
                linking.clone(),
                &config.public_url(),
            ),
            linking,
            messaging,
            webhooks: WebhookService::new(Arc::clone(&config), Arc::clone(&store)),
            events: EventService::new(Arc::clone(&store)),
            sandbox: SandboxService::new(Arc::clone(&store), media.clone(), sandbox),
            ops: OpsService::new(Arc::clone(&config), Arc::clone(&store), control),
            accounts,
            media,
        }))
    }
}

/// The account's device, or `NotFound("device")`: the ownership check every use case
/// about a device starts with.
pub(crate) async fn device_of(
    store: &dyn Store,
    account: &AccountId,
    uid: &DeviceUid,
) -> ServiceResult<Device> {
    match store.get_device(account, uid).await {
        Err(StoreError::NotFound) => Err(ServiceError::NotFound("device")),
        other => Ok(other?),
    }
}

/// A failure of a use case, mapped to HTTP by the dialects.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A field of the request is invalid (field, message).
    #[error("{0}: {1}")]
    Invalid(String, String),
    #[error("{0}")]
    Conflict(String),
    /// A `clientMessageId` was already used on the device for a different request.
    #[error(
        "clientMessageId: was already used on this device for a different request (message {original}); a new message needs a new key"
    )]
    IdempotencyKeyReused { original: wagate_core::MessageId },
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// WhatsApp (the engine) could not do it right now.
    #[error("{0}")]
    Engine(String),
    #[error("{0}")]
    Store(#[from] wagate_core::store::StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;
