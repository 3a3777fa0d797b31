//! wagate's integration tests: the real application over HTTP on port 0, each test with
//! its own SQLite database. One binary, so the application is compiled once.

// Tests fail loudly on purpose, helper functions included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod cloud_api;
mod cluster;
mod connections;
mod devices;
mod groups;
mod hostile;
mod megamsg;
mod messages;
mod metrics;
mod ops;
mod reliability;
mod simulated;
mod structured;
mod support;
mod wakers;
mod webhooks;
mod whatsapp_web;
