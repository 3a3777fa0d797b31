//! The `cloud-api` engine: official WhatsApp Business numbers on Meta's Cloud API behind
//! wagate's [`wagate_core::engine::Engine`] trait, so they are served by the same
//! endpoints, outbox, idempotency, budgets, statuses and webhooks as linked devices.
//!
//! Sending is one Graph API call per message (`graph`: request bodies; `client`: the
//! calls); what Meta refuses is mapped to the pipeline by `errors` (fail with Meta's code,
//! retry after throttling, or turn the device `failed` when its token stops working).
//! Receiving is Meta's webhooks, pushed to the device's session by the gateway's HTTP
//! edge: `signature` checks them, `webhook` reads them. The engine holds no state of its
//! own beyond the session; the credentials come from the gateway ([`CredentialSource`]).

mod client;
mod engine;
mod errors;
mod graph;
mod session;
pub mod signature;
mod webhook;

pub use client::{GraphClient, GraphConfig};
pub use engine::{CloudApiEngine, CredentialSource};
pub use errors::GraphError;
