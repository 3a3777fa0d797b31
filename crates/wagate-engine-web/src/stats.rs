//! Per-session counters, cheap enough to bump on every event and readable at any time
//! (for `/metrics` and the dashboard) without asking the protocol client.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use wagate_core::time::{Timestamp, from_millis, now};

/// A snapshot of one session's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Messages handed to WhatsApp (written to the socket).
    pub sent: u64,
    /// Sends that failed before reaching WhatsApp.
    pub send_failures: u64,
    /// Inbound messages delivered to the event sink.
    pub received: u64,
    /// Connection attempts after the first (failed dials and reconnects after drops).
    pub reconnects: u64,
    /// Times the session came online.
    pub connects: u64,
    /// When the session last reported anything, if ever.
    pub last_event_at: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    send_failures: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    connects: AtomicU64,
    /// Millis since the epoch; 0 = never.
    last_event_ms: AtomicI64,
}

impl Counters {
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn send_failed(&self) {
        self.send_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn touch(&self) {
        self.last_event_ms
            .store(wagate_core::time::millis(now()), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        let last = self.last_event_ms.load(Ordering::Relaxed);
        SessionStats {
            sent: self.sent.load(Ordering::Relaxed),
            send_failures: self.send_failures.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            last_event_at: (last != 0).then(|| from_millis(last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_stamps() {
        let c = Counters::default();
        assert_eq!(c.snapshot(), SessionStats::default());
        c.sent();
        c.sent();
        c.received(3);
        c.reconnect();
        c.touch();
        let s = c.snapshot();
        assert_eq!((s.sent, s.received, s.reconnects), (2, 3, 1));
        assert!(s.last_event_at.is_some());
    }
}
