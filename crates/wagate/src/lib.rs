//! wagate: a self-hosted WhatsApp messaging gateway.
//!
//! Layers, from the edge in: [`http`] (dialects that parse and shape), [`service`] (use
//! cases), the store (in `wagate-store-sqlite`), the [`runtime`] that drives each
//! device's [`engine`] session and send worker. [`app`] wires them together.

pub mod app;
pub mod blob;
pub mod cli;
pub mod config;
pub mod database;
pub mod engine;
pub mod http;
pub mod keys;
pub mod net;
pub mod runtime;
pub mod secrets;
pub mod service;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod telemetry;
pub mod webhook;
