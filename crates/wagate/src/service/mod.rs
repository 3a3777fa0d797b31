//! Use cases shared by every API dialect and the CLI: accounts and keys, devices,
//! media, and messaging. Handlers parse and shape; services decide.

pub mod accounts;
pub mod devices;
pub mod events;
pub mod linking;
pub mod media;
pub mod messaging;
pub mod remote_media;
pub mod sandbox;
pub mod sessions;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::engine::sandbox::SandboxNetwork;
use crate::runtime::DeviceRuntime;
use std::sync::Arc;
use wagate_core::store::Store;

/// Everything a use case may need, cheap to clone (it is the HTTP state too).
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub runtime: Arc<DeviceRuntime>,
    pub sandbox: Arc<SandboxNetwork>,
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
