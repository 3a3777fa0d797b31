//! The device runtime: one engine session and one send worker per live device.
//!
//! It starts every device at boot, starts and stops devices as the API creates and
//! deletes them, wakes workers when messages are accepted, and on shutdown lets in-flight
//! sends finish before releasing what is left.
//!
//! It does not assume it is the only process on the database: its send leases carry the
//! owner id of its node ([`node_owner_id`], kept in the data directory), it releases only
//! those, and leases of other owners are claimed only once they expire. A node that comes
//! back after a crash takes back its own leases at start (the process that held them is
//! gone: a data directory serves one process), so what it had in flight is sent again at
//! once instead of after the lease time.

mod handoff;
mod sink;
mod worker;

pub use handoff::Handoff;

use crate::blob::BlobStore;
use crate::config::SendingConfig;
use crate::engine::Engines;
use handoff::HandoffWaiters;
use sink::DeviceEventSink;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wagate_core::device::{Device, DeviceStateChange, DeviceStatus, EngineKind};
use wagate_core::engine::{DeviceContext, EngineSession};
use wagate_core::store::Store;
use wagate_core::{DeviceUid, MessageId, time};

/// Live, in-memory facts about a running device that the database does not keep.
#[derive(Default)]
pub struct DeviceLive {
    /// The QR code to scan right now, with when it expires (ms since epoch).
    pub qr: Mutex<Option<(String, i64)>>,
    pub connected: AtomicBool,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub reconnects: AtomicU64,
    /// Messages that arrived but could not be decrypted (Signal session out of sync).
    pub undecryptable: AtomicU64,
    /// When the engine last reported anything (ms since epoch; 0 = never).
    pub last_event_at: AtomicI64,
    /// Wakes the worker when the connection state changes.
    pub connection_changed: Notify,
    /// How many times the send worker looked at its queue. An idle device must not add to
    /// it: the worker sleeps until an event or a due time, never on a poll timer.
    pub worker_rounds: AtomicU64,
    /// The worker waits for an event with no timer set, having seen the device online:
    /// the state every idle device of a large server sits in.
    pub worker_idle: AtomicBool,
    /// The latest worker round (a `worker_rounds` value) that found the hourly or per-minute
    /// budget spent and went to sleep until the window frees, without claiming a job; 0 =
    /// never. With `budget_held_at` it tells a test, without sleeping, that a queued message
    /// was held back on purpose.
    pub budget_held_round: AtomicU64,
    /// The time (ms since epoch) the budgets were evaluated in that round.
    pub budget_held_at: AtomicI64,
}

impl DeviceLive {
    pub fn current_qr(&self) -> Option<(String, i64)> {
        lock(&self.qr).clone()
    }
}

/// Counters of a running device, as shown on the device and in metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    pub sent: u64,
    pub received: u64,
    pub reconnects: u64,
    pub undecryptable: u64,
    pub last_event_at: Option<i64>,
}

/// One running device as metrics see it.
#[derive(Debug, Clone)]
pub struct DeviceSample {
    pub uid: DeviceUid,
    pub engine: EngineKind,
    pub connected: bool,
    pub counters: DeviceCounters,
}

struct RunningDevice {
    /// For metrics grouped by engine without a database read per scrape.
    engine: EngineKind,
    session: Arc<dyn EngineSession>,
    live: Arc<DeviceLive>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps are updated by single inserts/removes; a panic elsewhere while
    // holding the lock cannot leave them half-changed, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct DeviceRuntime {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    engines: Engines,
    sending: SendingConfig,
    devices: Mutex<HashMap<DeviceUid, RunningDevice>>,
    handoffs: HandoffWaiters,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// This process's id on the send leases it takes.
    owner: String,
}

/// This node's lease owner id, kept in `<data_dir>/node-id`: made once (host and a random
/// part), the same after every restart of the node, so a restarted node recognises the
/// leases its crashed predecessor held.
pub fn node_owner_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = owner_id();
    // Written aside and renamed: a crash mid-write never leaves a torn id.
    let tmp = data_dir.join("node-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// A fresh lease owner id: the host, the process id and a random part (a restarted
/// process may reuse its predecessor's pid).
pub fn owner_id() -> String {
    use rand::Rng;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let random: u32 = rand::thread_rng().r#gen();
    format!("{host}-{}-{random:08x}", std::process::id())
}

impl DeviceRuntime {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: BlobStore,
        engines: Engines,
        sending: SendingConfig,
        owner: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            blobs,
            engines,
            sending,
            devices: Mutex::new(HashMap::new()),
            handoffs: HandoffWaiters::default(),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            owner,
        })
    }

    /// The owner id this runtime's send leases carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// Starts every device at boot. Leases this node still holds were taken by its
    /// previous process, which is gone: they are released first. Other owners' leases are
    /// left to expire, never released from here.
    pub async fn start_all(self: &Arc<Self>) -> anyhow::Result<()> {
        let devices = self.store.list_all_devices().await?;
        for device in &devices {
            self.store
                .release_send_jobs(&device.uid, &self.owner)
                .await?;
        }
        for device in devices {
            self.start_device(&device).await;
        }
        Ok(())
    }

    /// Starts the device's engine session and send worker (no-op if running).
    pub async fn start_device(self: &Arc<Self>, device: &Device) {
        if lock(&self.devices).contains_key(&device.uid) || self.shutdown.is_cancelled() {
            return;
        }
        let Some(engine) = self.engines.get(device.engine).cloned() else {
            let reason = format!(
                "the {} engine is not available in this build",
                device.engine.as_str()
            );
            self.record_state(&device.uid, DeviceStatus::Failed, Some(reason))
                .await;
            return;
        };
        let live = Arc::new(DeviceLive::default());
        let sink = Arc::new(DeviceEventSink::new(
            device.uid.clone(),
            device.account_id.clone(),
            Arc::clone(&self.store),
            self.blobs.clone(),
            Arc::clone(&live),
            Arc::downgrade(self),
        ));
        let ctx = DeviceContext {
            uid: device.uid.clone(),
            name: device.name.clone(),
            phone: device.phone.clone(),
        };
        let session = match engine.start(ctx, sink).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(device.uid = %device.uid, error = %e, "engine failed to start");
                self.record_state(&device.uid, DeviceStatus::Failed, Some(e.to_string()))
                    .await;
                return;
            }
        };
        let running = RunningDevice {
            engine: device.engine,
            session: Arc::clone(&session),
            live: Arc::clone(&live),
            wake: Arc::new(Notify::new()),
            cancel: self.shutdown.child_token(),
        };
        let worker = worker::SendWorker {
            uid: device.uid.clone(),
            store: Arc::clone(&self.store),
            blobs: self.blobs.clone(),
            session,
            live,
            wake: Arc::clone(&running.wake),
            cancel: running.cancel.clone(),
            sending: self.sending.clone(),
            owner: self.owner.clone(),
            runtime: Arc::downgrade(self),
        };
        lock(&self.devices).insert(device.uid.clone(), running);
        self.tracker.spawn(worker.run());
    }

    async fn record_state(&self, uid: &DeviceUid, status: DeviceStatus, reason: Option<String>) {
        let change = DeviceStateChange {
            status,
            reason,
            phone: None,
            push_name: None,
            at: time::now(),
        };
        if let Err(e) = self.store.record_device_state(uid, &change, None).await {
            tracing::warn!(device.uid = %uid, error = %e, "could not record device state");
        }
    }

    /// Stops the device's worker and session; its pending sends stay queued.
    pub async fn stop_device(&self, uid: &DeviceUid) {
        let running = lock(&self.devices).remove(uid);
        if let Some(r) = running {
            r.cancel.cancel();
            r.session.stop().await;
            if let Err(e) = self.store.release_send_jobs(uid, &self.owner).await {
                tracing::warn!(device.uid = %uid, error = %e, "could not release send jobs");
            }
        }
    }

    /// Stops the device and deletes what its engine keeps (keys on disk).
    pub async fn remove_device(&self, uid: &DeviceUid, engine: wagate_core::device::EngineKind) {
        self.stop_device(uid).await;
        if let Some(engine) = self.engines.get(engine)
            && let Err(e) = engine.forget(uid).await
        {
            tracing::warn!(device.uid = %uid, error = %e, "engine could not forget device");
        }
    }

    pub fn session(&self, uid: &DeviceUid) -> Option<Arc<dyn EngineSession>> {
        lock(&self.devices).get(uid).map(|r| Arc::clone(&r.session))
    }

    pub fn live(&self, uid: &DeviceUid) -> Option<Arc<DeviceLive>> {
        lock(&self.devices).get(uid).map(|r| Arc::clone(&r.live))
    }

    pub fn counters(&self, uid: &DeviceUid) -> DeviceCounters {
        self.live(uid)
            .map(|l| {
                let last = l.last_event_at.load(Ordering::Relaxed);
                DeviceCounters {
                    sent: l.sent.load(Ordering::Relaxed),
                    received: l.received.load(Ordering::Relaxed),
                    reconnects: l.reconnects.load(Ordering::Relaxed),
                    undecryptable: l.undecryptable.load(Ordering::Relaxed),
                    last_event_at: (last > 0).then_some(last),
                }
            })
            .unwrap_or_default()
    }

    /// Counters of every running device, for metrics.
    pub fn all_counters(&self) -> Vec<(DeviceUid, DeviceCounters)> {
        let uids: Vec<DeviceUid> = lock(&self.devices).keys().cloned().collect();
        uids.into_iter()
            .map(|u| {
                let c = self.counters(&u);
                (u, c)
            })
            .collect()
    }

    /// Engine, connection state and counters of every running device, for metrics.
    pub fn metric_samples(&self) -> Vec<DeviceSample> {
        let running: Vec<(DeviceUid, EngineKind, Arc<DeviceLive>)> = lock(&self.devices)
            .iter()
            .map(|(uid, r)| (uid.clone(), r.engine, Arc::clone(&r.live)))
            .collect();
        running
            .into_iter()
            .map(|(uid, engine, live)| DeviceSample {
                engine,
                connected: live.connected.load(Ordering::SeqCst),
                counters: self.counters(&uid),
                uid,
            })
            .collect()
    }

    /// Whether the device's session is connected right now.
    pub fn is_connected(&self, uid: &DeviceUid) -> bool {
        self.live(uid)
            .is_some_and(|l| l.connected.load(Ordering::SeqCst))
    }

    /// Tells the device's worker that a message was accepted.
    pub fn wake(&self, uid: &DeviceUid) {
        if let Some(r) = lock(&self.devices).get(uid) {
            r.wake.notify_one();
        }
    }

    /// Registers interest in the moment the worker hands `message` to the engine; call
    /// before accepting the message so the hand-off cannot be missed.
    pub fn watch_handoff(&self, message: &MessageId) -> tokio::sync::oneshot::Receiver<Handoff> {
        self.handoffs.register(message)
    }

    pub fn forget_handoff(&self, message: &MessageId) {
        self.handoffs.forget(message);
    }

    pub(crate) fn report_handoff(&self, message: &MessageId, outcome: Handoff) {
        self.handoffs.resolve(message, outcome);
    }

    /// Lets running sends finish (up to `grace`), then stops every session and releases
    /// the leases of jobs not sent, so they are sent after the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("send workers did not stop within the grace period");
        }
        let uids: Vec<DeviceUid> = lock(&self.devices).keys().cloned().collect();
        for uid in uids {
            self.stop_device(&uid).await;
        }
    }
}
