//! The engine's caller in the suite: a real, in-memory [`EngineEvents`] that keeps every
//! event it committed, in order, and can refuse to commit inbound messages (a busy
//! database) to check what an engine does with an event that was not committed. Like the
//! gateway's store it knows the polls the device sent (told by the case) and received.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use wagate_core::content::{Poll, Quote};
use wagate_core::engine::{EngineEvent, EngineEvents, EventNotCommitted, IncomingMessage};
use wagate_core::message::MessageKind;

/// Records what a session emits; one per session.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<EngineEvent>>,
    /// Inbound messages still to refuse before committing again.
    refuse_inbound: AtomicU32,
    /// The inbound messages refused so far.
    refused: Mutex<Vec<IncomingMessage>>,
    /// Polls the device sent, by WhatsApp id ([`Recorder::sent_poll`]).
    sent_polls: Mutex<HashMap<String, Poll>>,
    changed: Notify,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.lock().len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EngineEvents for Recorder {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        if let EngineEvent::Inbound(m) = &event {
            let refuse = self
                .refuse_inbound
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                self.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((**m).clone());
                self.changed.notify_waiters();
                return Err(EventNotCommitted(
                    "the conformance recorder refused it (a busy database)".into(),
                ));
            }
        }
        self.lock().push(event);
        self.changed.notify_waiters();
        Ok(())
    }

    /// As the gateway's store answers: a poll the device sent, else one it received.
    async fn find_poll(&self, id: &str) -> Result<Option<(Poll, Quote)>, EventNotCommitted> {
        let sent = self
            .sent_polls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        if let Some(poll) = sent {
            let quote = Quote {
                provider_message_id: id.to_owned(),
                from_me: true,
                from: None,
                from_lid: None,
                text: None,
            };
            return Ok(Some((poll, quote)));
        }
        Ok(self.lock().iter().find_map(|e| match e {
            EngineEvent::Inbound(m)
                if m.provider_message_id == id && m.kind == MessageKind::Poll =>
            {
                let quote = Quote {
                    provider_message_id: id.to_owned(),
                    from_me: false,
                    from: m.from.clone(),
                    from_lid: m.from_lid.clone(),
                    text: None,
                };
                m.details.poll.clone().map(|p| (p, quote))
            }
            _ => None,
        }))
    }
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A recorder that refuses to commit the next `n` inbound messages.
    pub fn refusing_inbound(n: u32) -> Arc<Self> {
        let r = Self::default();
        r.refuse_inbound.store(n, Ordering::SeqCst);
        Arc::new(r)
    }

    /// The device sent `poll` as `provider_message_id` (the gateway's store keeps it).
    pub fn sent_poll(&self, provider_message_id: &str, poll: Poll) {
        self.sent_polls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(provider_message_id.to_owned(), poll);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<EngineEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every committed event so far, in commit order.
    pub fn snapshot(&self) -> Vec<EngineEvent> {
        self.lock().clone()
    }

    /// How many events were committed so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inbound messages refused so far.
    pub fn refused(&self) -> Vec<IncomingMessage> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first committed event `pick` accepts, waiting up to `timeout`; panics naming
    /// `what` and listing the events seen when none comes.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        self.wait_for_from(0, what, timeout, pick).await
    }

    /// Like [`Self::wait_for`], ignoring the first `start` events.
    pub async fn wait_for_from<T>(
        &self,
        start: usize,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = start;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before scanning, so an event pushed in between still wakes us.
            notified.as_mut().enable();
            {
                let events = self.lock();
                for e in events.iter().skip(seen) {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                seen = events.len().max(seen);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited {timeout:?} for {what}; events committed: {:#?}",
                    self.snapshot()
                );
            }
        }
    }

    /// Waits until `n` inbound messages were refused.
    pub async fn wait_refused(&self, n: usize, timeout: Duration) -> Vec<IncomingMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let refused = self.refused();
            if refused.len() >= n {
                return refused;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited {timeout:?} for {n} inbound message(s) to be offered (and refused); \
                     events committed: {:#?}",
                    self.snapshot()
                );
            }
        }
    }
}
