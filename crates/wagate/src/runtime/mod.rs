//! The device runtime: one engine session and one send worker per device this node
//! drives.
//!
//! It does not assume it is the only node on the database. A device runs here only while
//! this node holds its lease ([`lease`]: taken at boot and by the lease loop, spread over
//! the live nodes, renewed every round, handed back on shutdown), and every write for the
//! device carries the lease's fence, so a node that lost a device stops it instead of
//! writing over the new holder. Its leases carry the node's id ([`node_owner_id`], kept in
//! the data directory, or configured): a node that comes back after a crash takes its own
//! leases back at once instead of after they expire. It starts and stops devices as the
//! API creates and deletes them, wakes workers when messages are accepted, and on
//! shutdown lets in-flight sends finish before handing everything over.

mod handoff;
mod lease;
mod sink;
mod worker;

use crate::blob::BlobStore;
use crate::config::{ClusterConfig, SendingConfig};
use crate::engine::Engines;
use crate::service::port::{DeviceCounters, DeviceSample, Handoff};
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
use wagate_core::lease::{Fence, NodeInfo};
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

struct RunningDevice {
    /// The lease this node holds on the device, carried by every write.
    fence: Fence,
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
    /// This node's id on the leases it takes.
    owner: String,
    cluster: ClusterConfig,
    /// Until when this node may drive its devices without another renewal (its own clock).
    deadline: Mutex<Option<tokio::time::Instant>>,
    /// Devices whose lease this node holds but whose engine could not start: left alone by
    /// the lease rounds (their failure is recorded) until the API starts them again.
    parked: Mutex<HashMap<DeviceUid, Fence>>,
    /// Rounds, and starts through the API, one at a time.
    round_lock: tokio::sync::Mutex<()>,
    /// Orders the free devices this node tries first (see `plan_leases`).
    seed: u64,
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
        cluster: ClusterConfig,
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
            cluster,
            deadline: Mutex::new(None),
            parked: Mutex::new(HashMap::new()),
            round_lock: tokio::sync::Mutex::new(()),
            seed: rand::random(),
        })
    }

    /// The node id this runtime's leases carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// Takes this node's share of the devices at boot (leases its previous process held
    /// included), then keeps the leases in the background until shutdown.
    pub async fn start_all(self: &Arc<Self>) -> anyhow::Result<()> {
        self.tracker.spawn(Arc::clone(self).wake_loop());
        self.lease_round().await?;
        self.tracker.spawn(Arc::clone(self).lease_loop());
        Ok(())
    }

    /// Wakes the worker of every device of this node that got a message accepted,
    /// through whichever node took the API call.
    async fn wake_loop(self: Arc<Self>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut queued = self.store.subscribe_queued();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                next = queued.recv() => match next {
                    Ok(uid) => self.wake(&uid),
                    Err(RecvError::Lagged(_)) => {
                        for r in lock(&self.devices).values() {
                            r.wake.notify_one();
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Starts the device here (a device just created or linked again through the API),
    /// if no other node drives it; a running one is left as it is.
    pub async fn start_device(self: &Arc<Self>, device: &Device) {
        let _one_at_a_time = self.round_lock.lock().await;
        if lock(&self.devices).contains_key(&device.uid) || self.shutdown.is_cancelled() {
            return;
        }
        lock(&self.parked).remove(&device.uid);
        let now = time::now();
        let until = now
            + chrono::Duration::milliseconds(
                i64::try_from(self.cluster.lease().as_millis()).unwrap_or(i64::MAX / 2),
            );
        match self
            .store
            .acquire_device_lease(&device.uid, &self.owner, now, until)
            .await
        {
            Ok(Some(lease)) => {
                if let Some(fence) = lease.fence() {
                    self.run_device(device, fence).await;
                }
            }
            Ok(None) => {
                tracing::debug!(device.uid = %device.uid, "another node drives the device");
            }
            Err(e) => {
                tracing::warn!(device.uid = %device.uid, error = %e, "could not take the device's lease; the lease loop tries again");
            }
        }
    }

    /// Starts the engine session and send worker of a device whose lease `fence` holds.
    async fn run_device(self: &Arc<Self>, device: &Device, fence: Fence) {
        if lock(&self.devices).contains_key(&device.uid) || self.shutdown.is_cancelled() {
            return;
        }
        let Some(engine) = self.engines.get(device.engine).cloned() else {
            let reason = format!(
                "the {} engine is not available in this build",
                device.engine.as_str()
            );
            self.record_state(&fence, DeviceStatus::Failed, Some(reason))
                .await;
            lock(&self.parked).insert(device.uid.clone(), fence);
            return;
        };
        let live = Arc::new(DeviceLive::default());
        let sink = Arc::new(DeviceEventSink::new(
            fence.clone(),
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
            epoch: fence.epoch,
        };
        let session = match engine.start(ctx, sink).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(device.uid = %device.uid, error = %e, "engine failed to start");
                self.record_state(&fence, DeviceStatus::Failed, Some(e.to_string()))
                    .await;
                lock(&self.parked).insert(device.uid.clone(), fence);
                return;
            }
        };
        let running = RunningDevice {
            fence: fence.clone(),
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
            fence,
            runtime: Arc::downgrade(self),
        };
        lock(&self.devices).insert(device.uid.clone(), running);
        self.tracker.spawn(worker.run());
    }

    async fn record_state(&self, fence: &Fence, status: DeviceStatus, reason: Option<String>) {
        let change = DeviceStateChange {
            status,
            reason,
            phone: None,
            push_name: None,
            at: time::now(),
        };
        if let Err(e) = self.store.record_device_state(fence, &change, None).await {
            tracing::warn!(device.uid = %fence.device_uid, error = %e, "could not record device state");
        }
    }

    /// Stops the device here and hands it over: its worker and session stop (the engine
    /// flushes what it keeps), its pending sends stay queued with their leases released,
    /// and its lease is given up, so another node (or this one, later) takes it at once.
    /// Waits for a lease round under way, which could otherwise start it again.
    pub async fn stop_device(&self, uid: &DeviceUid) {
        let _one_at_a_time = self.round_lock.lock().await;
        self.stop_here(uid).await;
    }

    /// [`Self::stop_device`] for callers that hold the round lock already.
    async fn stop_here(&self, uid: &DeviceUid) {
        let running = lock(&self.devices).remove(uid);
        let fence = match running {
            Some(r) => {
                r.cancel.cancel();
                r.session.stop().await;
                if let Err(e) = self.store.release_send_jobs(uid, &self.owner).await {
                    tracing::warn!(device.uid = %uid, error = %e, "could not release send jobs");
                }
                Some(r.fence)
            }
            None => lock(&self.parked).remove(uid),
        };
        if let Some(fence) = fence
            && let Err(e) = self.store.release_device_lease(&fence).await
        {
            tracing::warn!(device.uid = %uid, error = %e, "could not release the device lease; it expires");
        }
    }

    /// Stops the device here without writing anything for it: this node lost its lease
    /// (at `epoch`) to another node, or can no longer renew it. A device started again
    /// since (another epoch) is left running.
    async fn drop_device(&self, uid: &DeviceUid, epoch: i64) {
        let running = {
            let mut devices = lock(&self.devices);
            match devices.get(uid) {
                Some(r) if r.fence.epoch == epoch => devices.remove(uid),
                _ => None,
            }
        };
        if let Some(r) = running {
            r.cancel.cancel();
            r.session.stop().await;
            // Frees nothing the new holder needs (its acquisition freed the device's job
            // leases); lets this node's own go if no one took the device yet.
            let _ = self.store.release_send_jobs(uid, &self.owner).await;
        }
        lock(&self.parked).retain(|u, f| u != uid || f.epoch != epoch);
    }

    /// A write for the device was refused by its fence (called from its worker or event
    /// sink, which must not wait for their own session to stop): stops it in the
    /// background.
    pub(crate) fn lost_device(self: &Arc<Self>, fence: &Fence) {
        let (rt, uid, epoch) = (Arc::clone(self), fence.device_uid.clone(), fence.epoch);
        tokio::spawn(async move { rt.drop_device(&uid, epoch).await });
    }

    /// Stops the device and deletes what its engine keeps (keys on disk).
    pub async fn remove_device(&self, uid: &DeviceUid, engine: wagate_core::device::EngineKind) {
        let _one_at_a_time = self.round_lock.lock().await;
        self.stop_here(uid).await;
        self.forget(uid, engine).await;
    }

    /// [`Self::remove_device`] of a device running here, for callers holding the round
    /// lock (a lease round finding it deleted).
    async fn remove_here(&self, uid: &DeviceUid) {
        let engine = lock(&self.devices).get(uid).map(|r| r.engine);
        self.stop_here(uid).await;
        if let Some(engine) = engine {
            self.forget(uid, engine).await;
        }
    }

    async fn forget(&self, uid: &DeviceUid, engine: wagate_core::device::EngineKind) {
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

    /// This node as the others see it at `now`.
    pub(crate) fn node_info(&self, now: time::Timestamp, draining: bool) -> NodeInfo {
        NodeInfo {
            node_id: self.owner.clone(),
            heartbeat_at: now,
            draining,
            address: self.cluster.advertise_url.clone(),
        }
    }

    pub(crate) fn report_handoff(&self, message: &MessageId, outcome: Handoff) {
        self.handoffs.resolve(message, outcome);
    }

    /// Lets running sends finish (up to `grace`), then stops every session and hands every
    /// device over (job and device leases released), so another node, or this one after
    /// its restart, takes them at once.
    pub async fn shutdown(&self, grace: Duration) {
        // Other nodes stop counting this one at once: its devices are theirs to take.
        if let Err(e) = self
            .store
            .heartbeat_node(&self.node_info(time::now(), true))
            .await
        {
            tracing::debug!(error = %e, "could not mark this node as leaving");
        }
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("send workers did not stop within the grace period");
        }
        // After any round under way: none starts anything once shutdown began.
        let _one_at_a_time = self.round_lock.lock().await;
        let mut uids: Vec<DeviceUid> = lock(&self.devices).keys().cloned().collect();
        uids.extend(lock(&self.parked).keys().cloned());
        for uid in uids {
            self.stop_here(&uid).await;
        }
        if let Err(e) = self.store.remove_node(&self.owner).await {
            tracing::debug!(error = %e, "could not remove this node from the node list");
        }
    }
}
