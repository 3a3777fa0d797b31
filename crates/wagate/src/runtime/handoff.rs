//! Waiting for the moment WhatsApp has a message: its server acknowledged it and the
//! `sent` status is committed (or the worker found it cannot be sent).
//!
//! The MegaMsg dialect answers synchronously ("WhatsApp has taken the message"), while
//! the pipeline is asynchronous; a waiter per message id bridges the two without the
//! handler doing any sending itself.

use super::lock;
use crate::service::port::Handoff;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;
use wagate_core::MessageId;

#[derive(Default)]
pub(super) struct HandoffWaiters {
    waiting: Mutex<HashMap<MessageId, oneshot::Sender<Handoff>>>,
}

impl HandoffWaiters {
    pub(super) fn register(&self, id: &MessageId) -> oneshot::Receiver<Handoff> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id.clone(), tx);
        rx
    }

    pub(super) fn forget(&self, id: &MessageId) {
        lock(&self.waiting).remove(id);
    }

    pub(super) fn resolve(&self, id: &MessageId, outcome: Handoff) {
        if let Some(tx) = lock(&self.waiting).remove(id) {
            // The waiter may have given up (timed out); nothing to do then.
            let _ = tx.send(outcome);
        }
    }
}
