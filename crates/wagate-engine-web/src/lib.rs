//! wagate's whatsapp-web engine: each device is a WhatsApp *linked device* (like WhatsApp
//! Web) driven by the `whatsapp-rust` protocol crate, behind [`wagate_core::engine`]'s
//! `Engine` / `EngineSession` traits.
//!
//! This crate is the only place that knows the protocol crate: upgrades of `whatsapp-rust`
//! (which break its API on every minor release) touch nothing else. The application builds a
//! [`WebEngine`] from a [`WebEngineConfig`] and uses it through the `Engine` trait; every
//! device gets one SQLite store file under `data_dir`, so sessions survive restarts.

mod canary;
mod config;
mod engine;
mod group_update;
mod inbound;
mod mapping;
mod numbers;
mod outgoing;
mod session;
mod stats;
mod store;
mod structured;
mod transport;

pub use canary::{CertCheck, cert_check};
pub use config::{SqliteProtocolDb, WebEngineConfig};
pub use engine::WebEngine;
pub use session::WebSession;
pub use stats::SessionStats;
pub use wagate_audio::{VoiceNote, WAVEFORM_SAMPLES, prepare_voice_note};
pub use wagate_wa_storage;

/// The protocol crate, re-exported so tests and the simulator wiring can name its types
/// (transport factories, HTTP clients) at exactly the version this engine was built with.
pub use whatsapp_rust;
