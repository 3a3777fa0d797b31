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

use crate::config::WebEngineConfig;
use crate::inbound::{self, InboundContext};
use crate::mapping::{self, Context, lid_string, nominal_backoff, phone_of_pn};
use crate::numbers::{self, Answer, NumberCache, Pacer};
use crate::outgoing::{self, Plan};
use crate::stats::{Counters, SessionStats};
use crate::transport::{DialObserver, ObservedTransport, SharedHttp};
use async_trait::async_trait;
use rand::Rng;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wagate_core::Phone;
use wagate_core::engine::{
    EngineError, EngineEvent, EngineEvents, EngineSession, NumberCheck, OutgoingMessage, PairCode,
};
use wagate_core::id::DeviceUid;
use whatsapp_rust::download::Downloadable;
use whatsapp_rust::http::HttpClient;
use whatsapp_rust::pair_code::{PairCodeError, PairCodeOptions, PairError};
use whatsapp_rust::prelude::*;
use whatsapp_rust::request::IqError;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};
use whatsapp_rust::transport::{DisconnectReason, TransportFactory};
use whatsapp_rust::types::events::EventInterest;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore::store::DevicePropsOverride;
use whatsapp_rust::{ContactError, InboundDurabilityHook};

/// How long a pair code stays valid (WhatsApp's own window).
const PAIR_CODE_VALIDITY: Duration = Duration::from_secs(180);
/// How long `stop` waits for the protocol client to flush before aborting it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Group subjects are cached this long.
const GROUP_NAME_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a pair-code request waits for a starting round to get its client.
const PAIR_CODE_START_WAIT: Duration = Duration::from_secs(30);
/// Longest typing indicator honoured.
const MAX_TYPING: Duration = Duration::from_secs(60);

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
    store_path: PathBuf,
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

/// A running whatsapp-web device. Implements [`EngineSession`]; [`WebSession::stats`]
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
        store_path: PathBuf,
        shared: Arc<Shared>,
        events: Arc<dyn EngineEvents>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = &shared.config;
        let inner = Arc::new(Inner {
            uid,
            store_path,
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
        let pump = tokio::spawn(pump(Arc::downgrade(&inner), rx, inner.pump_stop.clone()));
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

    /// Starts a new round (the previous one must be gone).
    fn begin_round(&self, jitter: bool) {
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
    async fn end_round(&self) {
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
    let path = inner
        .store_path
        .to_str()
        .ok_or_else(|| "the data directory path is not valid UTF-8".to_owned())?
        .to_owned();
    // The defaults already suit many stores per process (one writer connection, no read
    // pool, a small page cache); only the cache size is the operator's to tune.
    let store_config = SqliteStoreConfig {
        cache_size_kib: cfg.sqlite_cache_kib,
        ..SqliteStoreConfig::default()
    };
    let store = SqliteStore::with_config(&path, store_config)
        .await
        .map_err(|e| format!("cannot open the device store {path}: {e}"))?;

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
    };
    let mut builder = Bot::builder()
        .with_backend(store)
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
        ])
    }
}

/// Emits an event, retrying briefly: the sink commits to a database that may be busy.
async fn emit(inner: &Inner, event: EngineEvent) -> bool {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=3 {
        match inner.events.emit(event.clone()).await {
            Ok(()) => {
                inner.counters.touch();
                return true;
            }
            Err(e) if attempt < 3 => {
                debug!(device.uid = %inner.uid, error = %e, "event not committed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                warn!(device.uid = %inner.uid, error = %e, ?event, "event dropped: the sink did not commit it");
            }
        }
    }
    false
}

/// The per-session pump: maps queued protocol events in order and emits them.
async fn pump(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Work>, stop: CancellationToken) {
    loop {
        let work = tokio::select! {
            biased;
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
            _ = stop.cancelled() => {
                // Deliver what is already queued (the final state events), then end.
                while let Ok(w) = rx.try_recv() {
                    let Some(inner) = inner.upgrade() else { return };
                    handle_work(&inner, w).await;
                }
                return;
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        handle_work(&inner, work).await;
    }
}

async fn handle_work(inner: &Arc<Inner>, work: Work) {
    match work {
        Work::Emit(ev) => {
            emit(inner, *ev).await;
        }
        Work::Dial {
            link,
            reason,
            retry_in,
            only_before_login,
        } => {
            {
                let mut st = inner.state();
                let before_login = matches!(st.phase, Phase::Starting | Phase::Reconnecting);
                if st.round != link.round
                    || st.stopped
                    || st.phase == Phase::Ended
                    || (only_before_login && !before_login)
                {
                    return;
                }
                st.phase = Phase::Reconnecting;
            }
            inner.settled.notify_one();
            emit(
                inner,
                EngineEvent::Reconnecting {
                    reason,
                    retry_in: Some(retry_in),
                },
            )
            .await;
        }
        Work::Protocol { link, event } => {
            let (current, logging_out) = {
                let st = inner.state();
                (st.round == link.round, st.logging_out)
            };
            if current {
                if logging_out && matches!(&*event, Event::LoggedOut(_)) {
                    // logout() reports its own, unambiguous LoggedOut.
                    return;
                }
                note_state(inner, &event);
            } else if !is_message_fact(&event) {
                // A replaced round's connection states no longer describe the device.
                return;
            }
            let ctx = ClientCtx {
                inner: inner.clone(),
                client: link.client(),
            };
            if let Event::Messages(batch) = &*event {
                if batch.hook_committed {
                    return;
                }
                // Messages the durability hook does not gate (recovered placeholders,
                // or a failed durable buffer): already acked, so deliver at most once.
                for im in batch.iter() {
                    if let Some(m) =
                        inbound::convert(im, &ctx, inner.shared.config.max_inbound_media_bytes)
                            .await
                        && emit(inner, EngineEvent::Inbound(m)).await
                    {
                        inner.counters.received(1);
                    }
                }
                return;
            }
            if let Some(ev) = mapping::map_event(&event, &ctx).await {
                emit(inner, ev).await;
            }
        }
    }
}

/// Events about messages stay true after their round was replaced (a stop right after a
/// send must still report its ack).
fn is_message_fact(event: &Event) -> bool {
    matches!(
        event,
        Event::ServerAck(_)
            | Event::Receipt(_)
            | Event::UndecryptableMessage(_)
            | Event::Messages(_)
    )
}

/// Session bookkeeping a protocol event implies, before it is reported.
fn note_state(inner: &Inner, event: &Event) {
    let mut settle = true;
    {
        let mut st = inner.state();
        match event {
            Event::Connected(_) => {
                st.phase = Phase::Online;
                inner.counters.connected();
            }
            Event::PairingQrCode(_) | Event::PairingCode(_) => {
                if st.phase != Phase::Online {
                    st.phase = Phase::Linking;
                }
            }
            Event::PairingQrCodesExhausted(e) => {
                if e.disconnected {
                    st.phase = Phase::Ended;
                }
            }
            Event::PairSuccess(p) => {
                info!(device.uid = %inner.uid, jid = %p.id, "device linked");
                settle = false;
            }
            Event::LoggedOut(_) => {
                st.phase = Phase::Ended;
                st.logged_out = true;
            }
            Event::StreamReplaced(_) | Event::ClientOutdated(_) | Event::TemporaryBan(_) => {
                st.phase = Phase::Ended;
            }
            Event::ConnectFailure(cf) => {
                st.phase = if cf.reason.should_reconnect() {
                    Phase::Reconnecting
                } else {
                    Phase::Ended
                };
            }
            Event::Disconnected(_) => st.phase = Phase::Reconnecting,
            Event::AppStateSyncFailed(f) => {
                warn!(
                    device.uid = %inner.uid,
                    fatal = ?f.fatal,
                    retryable = ?f.retryable,
                    connected = f.connected,
                    "WhatsApp app-state sync failed; the device may stay degraded until it reconnects"
                );
                settle = false;
            }
            _ => settle = false,
        }
    }
    if settle {
        inner.settled.notify_one();
    }
}

/// What the mappings need from the live client.
struct ClientCtx {
    inner: Arc<Inner>,
    /// `None` once the round's client is gone (late events of a replaced round).
    client: Option<Arc<Client>>,
}

impl ClientCtx {
    async fn entry(&self, jid: &Jid) -> Option<whatsapp_rust::types::lid_pn::LidPnEntry> {
        let client = self.client.as_ref()?;
        match client.get_lid_pn_entry(&jid.to_non_ad()).await {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, "LID/PN lookup failed");
                None
            }
        }
    }
}

#[async_trait]
impl Context for ClientCtx {
    fn identity(&self) -> (Option<Phone>, Option<String>, Option<String>) {
        let Some(client) = &self.client else {
            return (None, None, None);
        };
        let phone = client.pn().as_ref().and_then(phone_of_pn);
        let lid = client.lid().as_ref().and_then(lid_string);
        let name = Some(client.push_name()).filter(|n| !n.is_empty());
        (phone, lid, name)
    }

    fn retry_in(&self) -> Option<Duration> {
        let client = self.client.as_ref()?;
        Some(nominal_backoff(client.stats().reconnect_errors))
    }

    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
        if let Some(p) = phone_of_pn(jid).or_else(|| alt.and_then(phone_of_pn)) {
            return Some(p);
        }
        if !jid.is_lid() {
            return None;
        }
        self.entry(jid)
            .await
            .and_then(|e| Phone::parse(&e.phone_number).ok())
    }
}

#[async_trait]
impl InboundContext for ClientCtx {
    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
        Context::phone_of(self, jid, alt).await
    }

    async fn lid_of(&self, pn: &Jid) -> Option<String> {
        self.entry(pn).await.map(|e| format!("{}@lid", e.lid))
    }

    async fn group_name(&self, group: &Jid) -> Option<String> {
        let key = group.to_string();
        {
            let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, name)) = groups.get(&key)
                && at.elapsed() < GROUP_NAME_TTL
            {
                return Some(name.clone());
            }
        }
        let client = self.client.as_ref()?;
        match client.groups().get_metadata(group).await {
            Ok(meta) => {
                let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
                if groups.len() > 10_000 {
                    groups.clear();
                }
                groups.insert(key, (Instant::now(), meta.subject.clone()));
                Some(meta.subject)
            }
            Err(e) => {
                debug!(group = %group, error = %e, "group metadata unavailable");
                None
            }
        }
    }

    async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>> {
        match &self.client {
            Some(c) => c.download(media).await,
            None => anyhow::bail!("the session's connection is gone"),
        }
    }
}

/// At-least-once inbound: WhatsApp's ack waits until the application committed.
struct Hook {
    inner: Weak<Inner>,
    round: u64,
}

#[async_trait]
impl InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let Some(inner) = self.inner.upgrade() else {
            // The session is gone; unacked messages are redelivered to its next run.
            anyhow::bail!("session stopped");
        };
        if inner.state().round != self.round {
            anyhow::bail!("round replaced");
        }
        let ctx = ClientCtx {
            inner: inner.clone(),
            client: Some(client),
        };
        for im in batch {
            let Some(m) =
                inbound::convert(im, &ctx, inner.shared.config.max_inbound_media_bytes).await
            else {
                continue;
            };
            inner
                .events
                .emit(EngineEvent::Inbound(m))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            inner.counters.received(1);
            inner.counters.touch();
        }
        Ok(())
    }
}

fn iq_error(e: &IqError, what: &str) -> EngineError {
    match e {
        IqError::ServerError {
            code: 429, backoff, ..
        } => EngineError::RateLimited {
            retry_after: backoff.map(|s| Duration::from_secs(u64::from(s))),
            reason: format!("WhatsApp is throttling {what}"),
        },
        IqError::ServerError { code, text, .. } if (400..500).contains(code) => {
            EngineError::Rejected {
                code: Some(code.to_string()),
                reason: format!("WhatsApp refused {what}: {code} {text}"),
            }
        }
        IqError::NotConnected => EngineError::NotConnected("the device is not connected".into()),
        other => EngineError::Transient(format!("{what} failed: {other}")),
    }
}

fn send_error(e: SendError) -> EngineError {
    match e {
        SendError::NotLoggedIn => EngineError::NotConnected("the device is not logged in".into()),
        SendError::Client(ClientError::NotConnected | ClientError::NotLoggedIn) => {
            EngineError::NotConnected("the device is not connected".into())
        }
        SendError::Iq(iq) => iq_error(&iq, "sending"),
        SendError::InvalidRequest(m) => EngineError::Rejected {
            code: Some("invalid_request".into()),
            reason: format!("WhatsApp cannot send this: {m}"),
        },
        other => EngineError::Transient(format!("send failed: {other}")),
    }
}

fn pair_error(e: PairError) -> EngineError {
    if let PairError::PairCode(PairCodeError::CodeAlreadyOutstanding { remaining }) = &e {
        return EngineError::RateLimited {
            retry_after: Some(*remaining),
            reason: "a pair code is already outstanding; enter it on the phone or wait until it \
                     expires"
                .into(),
        };
    }
    if let Some(rejection) = e.rejection() {
        let reason = format!(
            "WhatsApp refused the pair code request ({}: {})",
            rejection.code(),
            rejection.text().unwrap_or("unknown")
        );
        return if rejection.is_throttled() {
            EngineError::RateLimited {
                retry_after: e.backoff(),
                reason: format!(
                    "{reason}; WhatsApp throttles pair codes per number, try again later"
                ),
            }
        } else {
            EngineError::Rejected {
                code: Some(rejection.code().to_string()),
                reason,
            }
        };
    }
    match e {
        PairError::PairCode(
            p @ (PairCodeError::PhoneNumberRequired
            | PairCodeError::PhoneNumberTooShort
            | PairCodeError::PhoneNumberNotInternational),
        ) => EngineError::Rejected {
            code: Some("invalid_phone".into()),
            reason: p.to_string(),
        },
        PairError::RequestFailed(iq) => iq_error(&iq, "the pair code request"),
        other => EngineError::Transient(format!("pair code request failed: {other}")),
    }
}

#[async_trait]
impl EngineSession for WebSession {
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let id = message.provider_message_id.clone();
        let result = async {
            let content = message.content;
            let plan = tokio::task::spawn_blocking(move || outgoing::plan(content))
                .await
                .map_err(|e| EngineError::Internal(format!("media preparation panicked: {e}")))??;
            let msg = match plan {
                Plan::Ready(m) => *m,
                Plan::Upload {
                    media_type,
                    data,
                    shape,
                } => {
                    let upload = client
                        .upload(data, media_type, UploadOptions::default())
                        .await
                        .map_err(|e| {
                            EngineError::Transient(format!("media upload failed: {e:#}"))
                        })?;
                    outgoing::build(shape, upload.into())
                }
            };
            client
                .send_message_with_options(
                    Jid::pn(message.to.digits()),
                    msg,
                    SendOptions::default().with_message_id(id.clone()),
                )
                .await
                .map_err(send_error)
        }
        .await;
        match result {
            Ok(_) => {
                self.inner.counters.sent();
                Ok(())
            }
            Err(e) => {
                self.inner.counters.send_failed();
                debug!(device.uid = %self.inner.uid, message.provider_id = %id, error = %e, "send failed");
                Err(e)
            }
        }
    }

    async fn check_numbers(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        if numbers.len() > numbers::MAX_PER_CALL {
            return Err(EngineError::Rejected {
                code: Some("too_many_numbers".into()),
                reason: format!("at most {} numbers per check", numbers::MAX_PER_CALL),
            });
        }
        let mut out: Vec<Option<NumberCheck>> =
            numbers.iter().map(|n| self.inner.numbers.get(n)).collect();
        let mut missing: Vec<Phone> = Vec::new();
        for (n, known) in numbers.iter().zip(&out) {
            if known.is_none() && !missing.contains(n) {
                missing.push(n.clone());
            }
        }
        if !missing.is_empty() {
            let client = self.inner.online_client()?;
            self.inner.pacer.wait().await;
            let jids: Vec<Jid> = missing.iter().map(|p| Jid::pn(p.digits())).collect();
            let results = client
                .contacts()
                .is_on_whatsapp(&jids)
                .await
                .map_err(|e| match e {
                    ContactError::Iq(iq) => iq_error(&iq, "the number check"),
                    other => EngineError::Rejected {
                        code: None,
                        reason: other.to_string(),
                    },
                })?;
            let answers: Vec<Answer> = results.iter().map(Answer::from).collect();
            let checks = numbers::match_answers(&missing, &answers);
            self.inner.numbers.put(&checks);
            for (n, slot) in numbers.iter().zip(out.iter_mut()) {
                if slot.is_none() {
                    *slot = checks.iter().find(|c| &c.phone == n).cloned();
                }
            }
        }
        // Every slot is filled: cached, or answered by match_answers (one per number asked).
        Ok(out.into_iter().flatten().collect())
    }

    async fn typing(&self, to: &Phone, duration: Duration) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = Jid::pn(to.digits());
        // Typing only shows while we are "available"; without a push name yet this fails,
        // and the indicator is best effort anyway.
        if let Err(e) = client.presence().set_available().await {
            debug!(device.uid = %self.inner.uid, error = %e, "could not set presence available");
        }
        client
            .chatstate()
            .send_composing(&jid)
            .await
            .map_err(|e| EngineError::Transient(format!("typing indicator failed: {e}")))?;
        tokio::time::sleep(duration.min(MAX_TYPING)).await;
        if let Err(e) = client.chatstate().send_paused(&jid).await {
            debug!(device.uid = %self.inner.uid, error = %e, "could not clear the typing indicator");
        }
        Ok(())
    }

    async fn request_pair_code(&self, phone: &Phone) -> Result<PairCode, EngineError> {
        // Right after start the round may still wait for its start slot; give it a while
        // rather than failing a request the user just made.
        let deadline = tokio::time::Instant::now() + PAIR_CODE_START_WAIT;
        let client = loop {
            let client = {
                let st = self.inner.state();
                if st.phase == Phase::Online {
                    return Err(EngineError::Rejected {
                        code: Some("already_linked".into()),
                        reason: "the device is already linked".into(),
                    });
                }
                if st.phase == Phase::Ended || st.stopped {
                    return Err(EngineError::NotConnected(
                        "the linking round ended; call connect to start a new one".into(),
                    ));
                }
                st.client.clone()
            };
            match client {
                Some(c) => break c,
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(EngineError::NotConnected(
                        "the device is still starting; try again in a moment".into(),
                    ));
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        if client.is_logged_in() {
            return Err(EngineError::Rejected {
                code: Some("already_linked".into()),
                reason: "the device is already linked".into(),
            });
        }
        client
            .wait_for_socket(Duration::from_secs(20))
            .await
            .map_err(|e| {
                EngineError::NotConnected(format!("not connected to WhatsApp yet: {e}"))
            })?;
        let code = client
            .pair_with_code(PairCodeOptions {
                phone_number: phone.digits().to_owned(),
                ..Default::default()
            })
            .await
            .map_err(pair_error)?;
        Ok(PairCode {
            code,
            expires_in: PAIR_CODE_VALIDITY,
        })
    }

    async fn connect(&self) -> Result<(), EngineError> {
        let _cmd = self.inner.commands.lock().await;
        let (phase, logged_out) = {
            let st = self.inner.state();
            if st.stopped {
                return Err(EngineError::NotConnected("the session was stopped".into()));
            }
            (st.phase, st.logged_out)
        };
        match phase {
            // Already connected, or already showing codes: nothing to restart.
            Phase::Online | Phase::Linking | Phase::Starting => return Ok(()),
            // Reconnecting: start over now instead of waiting out the backoff.
            Phase::Reconnecting | Phase::Ended => {}
        }
        self.end_round().await;
        if logged_out {
            // WhatsApp no longer accepts these keys; a new round must link afresh.
            crate::engine::remove_store_files(&self.inner.store_path)
                .await
                .map_err(|e| {
                    EngineError::Internal(format!("cannot reset the device store: {e}"))
                })?;
            self.inner.state().logged_out = false;
        }
        self.begin_round(false);
        Ok(())
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let _cmd = self.inner.commands.lock().await;
        let client = {
            let mut st = self.inner.state();
            st.logging_out = true;
            st.client.clone()
        };
        let online = client
            .as_ref()
            .is_some_and(|c| c.is_connected() && c.is_logged_in());
        if let Some(c) = client {
            // Deregisters (when online), disables reconnecting, disconnects.
            c.logout().await;
        }
        self.end_round().await;
        {
            let mut st = self.inner.state();
            st.logging_out = false;
            st.logged_out = false;
        }
        self.inner.queue(EngineEvent::LoggedOut {
            reason: if online {
                "logged out on request; the device was unlinked".into()
            } else {
                "logged out on request while offline; the phone may list the device until it \
                 is removed there"
                    .into()
            },
        });
        crate::engine::remove_store_files(&self.inner.store_path)
            .await
            .map_err(|e| EngineError::Internal(format!("cannot delete the device store: {e}")))?;
        Ok(())
    }

    async fn stop(&self) {
        let _cmd = self.inner.commands.lock().await;
        {
            let mut st = self.inner.state();
            if st.stopped {
                return;
            }
            st.stopped = true;
        }
        self.end_round().await;
        self.inner.pump_stop.cancel();
        let pump = self
            .inner
            .pump
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = pump
            && tokio::time::timeout(SHUTDOWN_GRACE, p).await.is_err()
        {
            warn!(device.uid = %self.inner.uid, "event pump did not finish in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iq_errors_are_classified() {
        let throttled = IqError::ServerError {
            code: 429,
            text: "rate-overlimit".into(),
            error_type: None,
            backoff: Some(30),
        };
        assert_eq!(
            iq_error(&throttled, "x"),
            EngineError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                reason: "WhatsApp is throttling x".into()
            }
        );
        let bad = IqError::ServerError {
            code: 400,
            text: "bad-request".into(),
            error_type: None,
            backoff: None,
        };
        assert!(
            matches!(iq_error(&bad, "x"), EngineError::Rejected { code: Some(c), .. } if c == "400")
        );
        assert!(matches!(
            iq_error(&IqError::Timeout, "x"),
            EngineError::Transient(_)
        ));
        assert!(matches!(
            send_error(SendError::NotLoggedIn),
            EngineError::NotConnected(_)
        ));
        assert!(matches!(
            send_error(SendError::InvalidRequest("newsletter".into())),
            EngineError::Rejected { .. }
        ));
    }

    #[test]
    fn pair_code_errors_are_classified() {
        let outstanding = PairError::PairCode(PairCodeError::CodeAlreadyOutstanding {
            remaining: Duration::from_secs(90),
        });
        assert!(matches!(
            pair_error(outstanding),
            EngineError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 90
        ));
        assert!(matches!(
            pair_error(PairError::PairCode(PairCodeError::PhoneNumberNotInternational)),
            EngineError::Rejected { code: Some(c), .. } if c == "invalid_phone"
        ));
        assert!(matches!(
            pair_error(PairError::RequestFailed(IqError::Timeout)),
            EngineError::Transient(_)
        ));
    }
}
