//! One device's session: owns the protocol client ("bot") of the current connection round,
//! turns its events into wagate events, and carries out the session commands.
//!
//! A protocol client that has disconnected for good (QR codes ran out, logged out,
//! replaced) cannot be restarted, so the session runs *rounds*: each round builds a fresh
//! bot on the same store file. Events are tagged with their round: a replaced round's
//! connection-state events are dropped, while its facts about messages (acks, receipts)
//! are still delivered.
//!
//! Protocol events are handled off the protocol's dispatch path: the inline handler only
//! queues them, and a per-session pump maps and emits them in order. Inbound messages take
//! a different road — the protocol's durability hook — so WhatsApp gets its ack only after
//! the application committed the message.
//!
//! The modules, by concern: `round` (building and running a round's protocol client: start
//! slots, dials, reconnect reports), `pump` (protocol events → wagate events, in order),
//! `client_ctx` (what the mappings ask the live client), `durability` (the inbound hook),
//! `commands` (the `EngineSession` commands and the session's life: connect, logout,
//! stop), `sending` (send, number checks, typing, chat states, read receipts), `groups`
//! (the group calls), `pairing` (pair codes) and `errors` (protocol errors →
//! [`EngineError`]).

mod client_ctx;
mod commands;
mod durability;
mod errors;
mod groups;
mod pairing;
mod pump;
mod round;
mod sending;

use crate::config::WebEngineConfig;
use crate::numbers::{NumberCache, Pacer};
use crate::stats::{Counters, SessionStats};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use wagate_core::engine::{EngineError, EngineEvent, EngineEvents};
use wagate_core::id::DeviceUid;
use whatsapp_rust::http::HttpClient;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TransportFactory;

/// How long `stop` waits for the protocol client to flush before aborting it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Engine-wide state shared by all sessions.
pub(crate) struct Shared {
    pub(crate) config: WebEngineConfig,
    pub(crate) transport: Arc<dyn TransportFactory>,
    pub(crate) http: Arc<dyn HttpClient>,
    pub(crate) start_slots: Semaphore,
}

/// Where a round is in its life, as far as commands care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a start slot, opening the store, dialling.
    Starting,
    /// Showing QR codes / waiting for a pair code to be entered.
    Linking,
    Online,
    /// Dropped; the protocol client is reconnecting by itself.
    Reconnecting,
    /// The protocol client stopped for good; `connect()` starts a new round.
    Ended,
}

struct State {
    round: u64,
    phase: Phase,
    client: Option<Arc<Client>>,
    handle: Option<BotHandle>,
    /// Cancels the round's start (jitter, slot wait) when the round is replaced.
    round_cancel: CancellationToken,
    stopped: bool,
    /// WhatsApp no longer accepts this store's keys: the next round links afresh.
    logged_out: bool,
    /// `logout()` is running and reports `LoggedOut` itself.
    logging_out: bool,
}

/// What a round's handlers share: which round they belong to, and its client once built.
struct RoundLink {
    round: u64,
    client: OnceLock<Weak<Client>>,
}

impl RoundLink {
    fn client(&self) -> Option<Arc<Client>> {
        self.client.get().and_then(Weak::upgrade)
    }
}

enum Work {
    Protocol {
        link: Arc<RoundLink>,
        event: Arc<Event>,
    },
    Emit(Box<EngineEvent>),
    /// A dial failed or a connection ended unseen by the client's own events.
    Dial {
        link: Arc<RoundLink>,
        reason: String,
        retry_in: Duration,
        only_before_login: bool,
    },
}

pub(crate) struct Inner {
    uid: DeviceUid,
    /// Where the device's protocol state lives (a file, or PostgreSQL fenced by epoch).
    store: crate::store::DeviceStore,
    shared: Arc<Shared>,
    events: Arc<dyn EngineEvents>,
    counters: Counters,
    tx: mpsc::UnboundedSender<Work>,
    state: Mutex<State>,
    /// Serialises the commands that replace rounds (connect, logout, stop).
    commands: tokio::sync::Mutex<()>,
    numbers: NumberCache,
    pacer: Pacer,
    groups: Mutex<HashMap<String, (Instant, String)>>,
    /// Rung when a round shows a QR code, connects or ends: its start slot is free then.
    settled: Notify,
    pump_stop: CancellationToken,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A running whatsapp-web device. Implements
/// [`EngineSession`](wagate_core::engine::EngineSession); [`WebSession::stats`]
/// reads its counters.
#[derive(Clone)]
pub struct WebSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSession")
            .field("uid", &self.inner.uid)
            .finish()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent field by field; a panic elsewhere must not wedge stop().
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self, event: EngineEvent) {
        let _ = self.tx.send(Work::Emit(Box::new(event)));
    }

    /// The client of the current round when it is online.
    fn online_client(&self) -> Result<Arc<Client>, EngineError> {
        let st = self.state();
        match (&st.client, st.phase) {
            (Some(c), _) if c.is_connected() && c.is_logged_in() => Ok(c.clone()),
            (_, Phase::Ended) => Err(EngineError::NotConnected(
                "the device is not connected (the session ended; call connect)".into(),
            )),
            (_, Phase::Linking) => Err(EngineError::NotConnected(
                "the device is not linked yet".into(),
            )),
            _ => Err(EngineError::NotConnected(
                "the device is not online right now (connecting or reconnecting)".into(),
            )),
        }
    }
}

impl WebSession {
    /// Creates the session and starts its first round (after the start jitter).
    pub(crate) fn start(
        uid: DeviceUid,
        store: crate::store::DeviceStore,
        shared: Arc<Shared>,
        events: Arc<dyn EngineEvents>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = &shared.config;
        let inner = Arc::new(Inner {
            uid,
            store,
            numbers: NumberCache::new(config.check_cache_ttl),
            pacer: Pacer::new(config.check_min_interval),
            shared: shared.clone(),
            events,
            counters: Counters::default(),
            tx,
            state: Mutex::new(State {
                round: 0,
                phase: Phase::Starting,
                client: None,
                handle: None,
                round_cancel: CancellationToken::new(),
                stopped: false,
                logged_out: false,
                logging_out: false,
            }),
            commands: tokio::sync::Mutex::new(()),
            groups: Mutex::new(HashMap::new()),
            settled: Notify::new(),
            pump_stop: CancellationToken::new(),
            pump: Mutex::new(None),
        });
        let pump = tokio::spawn(pump::pump(
            Arc::downgrade(&inner),
            rx,
            inner.pump_stop.clone(),
        ));
        *inner.pump.lock().unwrap_or_else(|p| p.into_inner()) = Some(pump);
        let session = Self { inner };
        session.begin_round(true);
        session
    }

    /// Counters of this session.
    pub fn stats(&self) -> SessionStats {
        self.inner.counters.snapshot()
    }

    pub(crate) fn weak(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.inner.state().stopped
    }
}
