//! whatsapp-rust's protocol storage (its `Backend` trait: Signal sessions, prekeys, sender
//! keys, app-state keys, LID mappings, …) on PostgreSQL, so a device can move between
//! wagate nodes with nothing to copy (issue 15, point 4).
//!
//! - [`PgBackend`]: the `Backend` on PostgreSQL, every row scoped by a device key so all
//!   devices of all nodes share one set of tables; migrations via [`PgBackend::migrate`].
//! - [`SqliteBackend`]: the same `Backend` in wagate's own SQLite database, its writes
//!   handed to wagate's single writer ([`ProtocolWriter`]), fenced by the device's lease;
//!   migrations via [`SqliteBackend::migrate`].
//! - [`import`]: moving a device's state out of the per-device file whatsapp-rust's own
//!   SQLite store kept, once.
//! - [`Fence`]: the takeover epoch a backend may be built with, so a node that lost a
//!   device can no longer write its protocol state.
//! - [`conformance`]: what the trait promises, as async checks any `Backend` must pass
//!   (run in this crate's tests against wacore's in-memory backend, whatsapp-rust's SQLite
//!   store and `PgBackend`).
//! - [`testing`]: a throwaway PostgreSQL database for tests (skips, or fails when `CI=true`,
//!   without one).

pub mod conformance;
mod fence;
pub mod import;
mod pg;
mod sqlite;
pub mod testing;

pub use fence::Fence;
pub use pg::PgBackend;
pub use sqlite::{ProtocolWork, ProtocolWriter, SqliteBackend, WriteFuture, WriteRefused, Written};

/// The keys of a batch with each id once, its last record winning (as one statement per
/// key in order would leave it): a multi-row upsert may not touch one row twice.
pub(crate) fn last_per_id(
    keys: &[(u32, whatsapp_rust::bytes::Bytes)],
) -> Vec<(u32, whatsapp_rust::bytes::Bytes)> {
    let mut at: std::collections::HashMap<u32, usize> =
        std::collections::HashMap::with_capacity(keys.len());
    let mut out: Vec<(u32, whatsapp_rust::bytes::Bytes)> = Vec::with_capacity(keys.len());
    for (id, record) in keys {
        match at.get(id) {
            Some(&i) => out[i].1 = record.clone(),
            None => {
                at.insert(*id, out.len());
                out.push((*id, record.clone()));
            }
        }
    }
    out
}
