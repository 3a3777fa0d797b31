//! A round: one protocol client ("bot") built on the device's store file and run until it
//! stops for good. Holds the start slot until the round settles (so only a few devices
//! handshake at once), and reports dials that fail or die before login, which the
//! protocol client itself does not.

use super::durability::Hook;
use super::{Inner, Phase, RoundLink, SHUTDOWN_GRACE, WebSession, Work};
use crate::mapping::nominal_backoff;
use crate::transport::{DialObserver, ObservedTransport, SharedHttp};
use rand::Rng;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use wagate_core::engine::EngineEvent;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::DisconnectReason;
use whatsapp_rust::types::events::EventInterest;
use whatsapp_rust::wacore::store::DevicePropsOverride;

impl WebSession {
    /// Starts a new round (the previous one must be gone).
    pub(super) fn begin_round(&self, jitter: bool) {
        let (round, cancel) = {
            let mut st = self.inner.state();
            st.round += 1;
            st.phase = Phase::Starting;
            st.round_cancel = CancellationToken::new();
            (st.round, st.round_cancel.clone())
        };
        tokio::spawn(run_round(self.inner.clone(), round, jitter, cancel));
    }

    /// Ends the current round's protocol client (graceful, bounded).
    pub(super) async fn end_round(&self) {
        let (handle, client) = {
            let mut st = self.inner.state();
            st.round_cancel.cancel();
            // Bumping the round makes late events of the old client stale.
            st.round += 1;
            st.phase = Phase::Ended;
            (st.handle.take(), st.client.take())
        };
        match handle {
            Some(h) => {
                if tokio::time::timeout(SHUTDOWN_GRACE, h.shutdown())
                    .await
                    .is_err()
                {
                    // Dropping the timed-out shutdown future dropped the handle, which
                    // aborts the bot task.
                    warn!(device.uid = %self.inner.uid, "protocol client did not shut down in time; aborted");
                }
            }
            None => {
                if let Some(c) = client {
                    c.disconnect().await;
                }
            }
        }
    }
}

/// The body of one round: wait for a start slot, open the store, build and run the bot.
async fn run_round(inner: Arc<Inner>, round: u64, jitter: bool, cancel: CancellationToken) {
    let cfg = &inner.shared.config;
    if jitter && !cfg.start_jitter.is_zero() {
        let wait = rand::thread_rng().gen_range(Duration::ZERO..=cfg.start_jitter);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return,
        }
    }
    let permit = tokio::select! {
        p = inner.shared.start_slots.acquire() => match p {
            Ok(p) => p,
            Err(_) => return,
        },
        _ = cancel.cancelled() => return,
    };
    inner.queue(EngineEvent::Connecting);

    let bot = match build_bot(&inner, round).await {
        Ok(bot) => bot,
        Err(reason) => {
            warn!(device.uid = %inner.uid, %reason, "could not start the protocol client");
            {
                let mut st = inner.state();
                if st.round == round {
                    st.phase = Phase::Ended;
                }
            }
            inner.queue(EngineEvent::Failed { reason });
            return;
        }
    };
    let client = bot.client();
    {
        let mut st = inner.state();
        if st.round != round || st.stopped {
            // Replaced or stopped while building: never run it.
            return;
        }
        st.client = Some(client.clone());
    }
    let handle = bot.spawn();
    let leftover = {
        let mut st = inner.state();
        if st.round == round && !st.stopped {
            st.handle = Some(handle);
            None
        } else {
            Some(handle)
        }
    };
    if let Some(h) = leftover {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, h.shutdown()).await;
        return;
    }
    // Hold the start slot until the round shows a QR code, connects or fails, so only
    // `start_concurrency` devices handshake and sync at once.
    tokio::select! {
        _ = tokio::time::timeout(cfg.start_settle_timeout, inner.settled.notified()) => {}
        _ = cancel.cancelled() => {}
    }
    drop(permit);
}

async fn build_bot(inner: &Arc<Inner>, round: u64) -> Result<Bot, String> {
    let cfg = &inner.shared.config;
    let store = inner.store.open(cfg.sqlite_cache_kib).await?;

    let link = Arc::new(RoundLink {
        round,
        client: OnceLock::new(),
    });
    let observer = Arc::new(Dials {
        inner: Arc::downgrade(inner),
        link: link.clone(),
    });
    let transport = ObservedTransport {
        inner: inner.shared.transport.clone(),
        observer: observer.clone(),
        gate: Arc::new(inner.store.clone()),
    };
    let mut builder = Bot::builder()
        .with_backend_arc(store)
        .with_transport_factory(transport)
        .with_http_client(SharedHttp(inner.shared.http.clone()))
        .with_runtime(TokioRuntime)
        .with_event_handler(Forwarder {
            tx: inner.tx.clone(),
            link: link.clone(),
        })
        .with_inbound_durability_hook(Hook {
            inner: Arc::downgrade(inner),
            round,
        })
        .with_device_props(DevicePropsOverride::new().with_os(cfg.device_os.clone()))
        // A gateway has no use for the chat history; acked and dropped.
        .skip_history_sync();
    if let Some(v) = cfg.wa_version {
        builder = builder.with_version(v);
    }
    let bot = builder
        .build()
        .await
        .map_err(|e| format!("cannot start the WhatsApp client: {e}"))?;
    let _ = link.client.set(Arc::downgrade(&bot.client()));
    Ok(bot)
}

/// Sees every dial of a round's client.
struct Dials {
    inner: Weak<Inner>,
    link: Arc<RoundLink>,
}

impl DialObserver for Dials {
    fn dialing(&self) {
        if let Some(inner) = self.inner.upgrade() {
            let first = {
                let st = inner.state();
                st.round == self.link.round && st.phase == Phase::Starting
            };
            if !first {
                inner.counters.reconnect();
            }
        }
    }

    fn dial_failed(&self, error: &anyhow::Error) {
        self.report(format!("cannot reach WhatsApp: {error:#}"), false);
    }

    fn closed(&self, reason: &DisconnectReason) {
        // Online and linking connections that drop are reported by the client itself
        // (`Disconnected`); only connections that die before login are silent.
        self.report(
            format!("the connection closed before login ({reason})"),
            true,
        );
    }
}

impl Dials {
    fn report(&self, reason: String, only_before_login: bool) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        // Read now, before the client's run loop counts this failure: the count now is
        // the step its backoff will use.
        let errors = self
            .link
            .client()
            .map(|c| c.stats().reconnect_errors)
            .unwrap_or(0);
        // Through the pump, so it is judged after the events that came before it (a ban
        // or logout that closed this connection must not be followed by "reconnecting").
        let _ = inner.tx.send(Work::Dial {
            link: self.link.clone(),
            reason,
            retry_in: nominal_backoff(errors),
            only_before_login,
        });
    }
}

/// The protocol's inline event handler: queues and returns (never blocks dispatch).
struct Forwarder {
    tx: mpsc::UnboundedSender<Work>,
    link: Arc<RoundLink>,
}

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.tx.send(Work::Protocol {
            link: self.link.clone(),
            event,
        });
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(&[
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::PairSuccess,
            EventKind::PairError,
            EventKind::LoggedOut,
            EventKind::PairingQrCode,
            EventKind::PairingCode,
            EventKind::PairingQrCodesExhausted,
            EventKind::ClientOutdated,
            EventKind::Messages,
            EventKind::Receipt,
            EventKind::ServerAck,
            EventKind::UndecryptableMessage,
            EventKind::StreamReplaced,
            EventKind::TemporaryBan,
            EventKind::ConnectFailure,
            EventKind::AppStateSyncFailed,
            // Membership changes, reported as `participants` messages.
            EventKind::GroupUpdate,
        ])
    }
}
