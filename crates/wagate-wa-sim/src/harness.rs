//! Test helpers: build real whatsapp-rust `Bot`s wired to the simulator, and wait on their
//! events with deadlines (never bare sleeps).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::Notify;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::types::events::{Event, EventHandler};
use whatsapp_rust::types::message::MessageInfo;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::wacore::store::traits::Backend;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::{Client, Jid, TokioRuntime};

use crate::{Account, Simulator};

/// A fixed WhatsApp Web version, so clients never try to fetch it over HTTP.
const VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);
/// Fewer one-time prekeys than the default 812: same protocol, a fraction of the memory and
/// upload size, which matters with hundreds of clients in one test process.
const PREKEYS: usize = 30;

/// Records every event of one client, in order, and wakes waiters.
#[derive(Clone, Default)]
pub struct EventLog {
    inner: Arc<(Mutex<Vec<Arc<Event>>>, Notify)>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventLog({} events)", self.len())
    }
}

impl EventHandler for EventLog {
    fn handle_event(&self, event: Arc<Event>) {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
        self.inner.1.notify_waiters();
    }
}

impl EventLog {
    /// Number of events so far; pass it to [`Self::wait_for_since`] to ignore older ones.
    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of all events so far.
    pub fn snapshot(&self) -> Vec<Arc<Event>> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first event (from the start of the log) for which `pick` returns `Some`, waiting up
    /// to `timeout` for it to arrive.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        self.wait_for_since(0, timeout, pick).await
    }

    /// Like [`Self::wait_for`], ignoring the first `since` events.
    pub async fn wait_for_since<T>(
        &self,
        since: usize,
        timeout: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut next = since;
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            // Registered before scanning, so an event pushed in between still wakes us.
            notified.as_mut().enable();
            {
                let events = self.inner.0.lock().unwrap_or_else(|p| p.into_inner());
                for event in events.iter().skip(next) {
                    if let Some(found) = pick(event) {
                        return Ok(found);
                    }
                }
                next = events.len().max(next);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let kinds: Vec<String> = self.snapshot().iter().map(|e| format!("{e:?}")).collect();
                return Err(anyhow!(
                    "no matching event within {timeout:?}; events seen: {}",
                    kinds.join(", ")
                ));
            }
        }
    }
}

/// A running whatsapp-rust `Bot` connected to the simulator.
pub struct SimClient {
    handle: Option<BotHandle>,
    client: Arc<Client>,
    /// Every event the client emitted.
    pub events: EventLog,
    /// The store, so a test can restart the client on the same keys.
    pub backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for SimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClient")
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl SimClient {
    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// The device's own PN JID (set once paired).
    pub fn jid(&self) -> Option<Jid> {
        self.client.pn()
    }

    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        pick: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        self.events.wait_for(timeout, pick).await
    }

    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, |e| matches!(e, Event::Connected(_)).then_some(()))
            .await
    }

    /// The first received message (live or offline) matching `pred`.
    pub async fn wait_message(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&wa::Message, &MessageInfo) -> bool,
    ) -> Result<(wa::Message, MessageInfo)> {
        self.wait_for(timeout, |e| match e {
            Event::Messages(batch) => batch.messages.iter().find_map(|m| {
                pred(&m.message, &m.info)
                    .then(|| (wa::Message::clone(&m.message), MessageInfo::clone(&m.info)))
            }),
            _ => None,
        })
        .await
    }

    /// Stops the client gracefully (flushes, closes its connection).
    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

impl Drop for SimClient {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl Simulator {
    /// Starts a whatsapp-rust `Bot` on `backend`, wired to this simulator.
    pub async fn start_client(
        &self,
        backend: Arc<dyn Backend>,
        push_name: Option<&str>,
    ) -> Result<SimClient> {
        let events = EventLog::default();
        let mut builder = Bot::builder()
            .with_backend_arc(backend.clone())
            .with_transport_factory(self.transport())
            .with_http_client(self.http_client())
            .with_runtime(TokioRuntime)
            .with_version(VERSION)
            .with_wanted_pre_key_count(PREKEYS)
            .skip_history_sync()
            .with_event_handler(events.clone());
        if let Some(name) = push_name {
            builder = builder.with_push_name(name);
        }
        let bot = builder.build().await?;
        let client = bot.client();
        let handle = bot.spawn();
        Ok(SimClient {
            handle: Some(handle),
            client,
            events,
            backend,
        })
    }

    /// A new companion of `account`, pre-seeded (no pairing), in an in-memory store, running.
    pub async fn connect(&self, account: &Account) -> Result<SimClient> {
        let backend: Arc<dyn Backend> = Arc::new(InMemoryBackend::new());
        let push_name = self.push_name(account)?;
        self.seed_backend(account, &push_name, backend.as_ref())
            .await?;
        self.start_client(backend, None).await
    }

    /// A fresh, unpaired client (in-memory store): it shows QR codes
    /// (`Event::PairingQrCode`) for [`Simulator::scan_qr`].
    pub async fn connect_fresh(&self) -> Result<SimClient> {
        self.start_client(Arc::new(InMemoryBackend::new()), Some("sim fresh"))
            .await
    }

    /// Runs a real client *as the simulated phone* (device 0) of `account`, so the phone can
    /// send end-to-end encrypted messages to its own companions and to other accounts.
    pub async fn connect_phone(&self, account: &Account) -> Result<SimClient> {
        let backend: Arc<dyn Backend> = Arc::new(InMemoryBackend::new());
        backend.save(&self.phone_device(account)?).await?;
        self.start_client(backend, None).await
    }
}
