//! wagate's domain: the types every layer speaks, free of HTTP, SQL and protocol crates.
//!
//! Values are parsed once at the edge ([`Phone`], [`Spintax`], ids) and are valid by
//! construction afterwards; the [`engine`] and [`store`] traits are the ports the
//! application wires real implementations into.

pub mod accept;
pub mod account;
pub mod backoff;
pub mod chat;
pub mod content;
pub mod content_type;
pub mod credentials;
pub mod device;
pub mod engine;
pub mod event;
pub mod id;
pub mod lease;
pub mod media;
pub mod message;
pub mod phone;
pub mod spintax;
pub mod store;
pub mod text;
pub mod time;
pub mod webhook;

pub use chat::{GroupId, Recipient};
pub use id::{AccountId, ApiKeyId, DeviceUid, EventId, MediaId, MessageId};
pub use phone::Phone;
pub use spintax::Spintax;
