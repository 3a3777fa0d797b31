//! The ports: what the services need from the parts that run devices, as small traits the
//! service layer owns, with the types they speak in (a device's counters, a hand-off's
//! outcome), so the services depend on no runtime type. The device runtime and the sandbox network implement them here; a
//! unit test of a service implements them with a fake, so a use case is tested without
//! HTTP, engines or the runtime.

use crate::engine::sandbox::SandboxNetwork;
use crate::runtime::DeviceRuntime;
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::oneshot;
use wagate_core::device::{Device, EngineKind};
use wagate_core::engine::{EngineError, EngineSession, IncomingMessage};
use wagate_core::{DeviceUid, MessageId};

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

/// What became of a message the worker tried to hand over.
#[derive(Debug, Clone)]
pub enum Handoff {
    /// WhatsApp's server acknowledged it; the `sent` status is committed.
    Taken,
    /// The engine refused it for good; the message failed.
    Failed(String),
    /// A transient error; the message stays queued for a retry.
    Deferred(EngineError),
}

/// Starting, stopping and reaching the running session of a device.
#[async_trait]
pub trait DeviceControl: Send + Sync {
    /// The engines this build can run devices on.
    fn engine_kinds(&self) -> Vec<EngineKind>;
    /// Starts the device's session and worker (a running one is left as it is).
    async fn start(&self, device: &Device);
    async fn stop(&self, uid: &DeviceUid);
    /// Stops the device and has its engine forget its keys.
    async fn remove(&self, uid: &DeviceUid, engine: EngineKind);
    /// The running session, to ask WhatsApp something (pair code, numbers, logout).
    fn session(&self, uid: &DeviceUid) -> Option<Arc<dyn EngineSession>>;
    /// The QR code the device shows now, with when it expires (ms since epoch).
    fn current_qr(&self, uid: &DeviceUid) -> Option<(String, i64)>;
    /// Whether the device's session is connected, if the device runs on this node (in a
    /// cluster it may run on another; then its stored status tells).
    fn connection(&self, uid: &DeviceUid) -> Option<bool>;
    fn counters(&self, uid: &DeviceUid) -> DeviceCounters;
    /// Every running device's numbers, for metrics.
    fn metric_samples(&self) -> Vec<DeviceSample>;
    /// This node's id (its leases' owner).
    fn node_id(&self) -> String;
}

/// The outbox's side of sending: waking a device's worker and hearing when it hands a
/// message to WhatsApp.
pub trait Outbox: Send + Sync {
    /// A message was accepted (or budgets changed): the worker should look again.
    fn wake(&self, uid: &DeviceUid);
    /// Call before the message exists, so the hand-off cannot be missed.
    fn watch_handoff(&self, message: &MessageId) -> oneshot::Receiver<Handoff>;
    fn forget_handoff(&self, message: &MessageId);
}

/// The simulated WhatsApp network of sandbox devices.
#[async_trait]
pub trait SandboxInject: Send + Sync {
    /// Delivers `message` to the sandbox device as if someone on WhatsApp sent it;
    /// returns once the device committed it.
    async fn inject_inbound(
        &self,
        uid: &DeviceUid,
        message: IncomingMessage,
    ) -> Result<(), EngineError>;
}

#[async_trait]
impl DeviceControl for Arc<DeviceRuntime> {
    fn engine_kinds(&self) -> Vec<EngineKind> {
        self.engines().kinds()
    }
    async fn start(&self, device: &Device) {
        self.start_device(device).await;
    }
    async fn stop(&self, uid: &DeviceUid) {
        self.stop_device(uid).await;
    }
    async fn remove(&self, uid: &DeviceUid, engine: EngineKind) {
        self.remove_device(uid, engine).await;
    }
    fn session(&self, uid: &DeviceUid) -> Option<Arc<dyn EngineSession>> {
        DeviceRuntime::session(self, uid)
    }
    fn current_qr(&self, uid: &DeviceUid) -> Option<(String, i64)> {
        self.live(uid).and_then(|l| l.current_qr())
    }
    fn connection(&self, uid: &DeviceUid) -> Option<bool> {
        self.live(uid)
            .map(|l| l.connected.load(std::sync::atomic::Ordering::SeqCst))
    }
    fn counters(&self, uid: &DeviceUid) -> DeviceCounters {
        DeviceRuntime::counters(self, uid)
    }
    fn metric_samples(&self) -> Vec<DeviceSample> {
        DeviceRuntime::metric_samples(self)
    }
    fn node_id(&self) -> String {
        self.owner().to_owned()
    }
}

impl Outbox for DeviceRuntime {
    fn wake(&self, uid: &DeviceUid) {
        DeviceRuntime::wake(self, uid);
    }
    fn watch_handoff(&self, message: &MessageId) -> oneshot::Receiver<Handoff> {
        DeviceRuntime::watch_handoff(self, message)
    }
    fn forget_handoff(&self, message: &MessageId) {
        DeviceRuntime::forget_handoff(self, message);
    }
}

#[async_trait]
impl SandboxInject for SandboxNetwork {
    async fn inject_inbound(
        &self,
        uid: &DeviceUid,
        message: IncomingMessage,
    ) -> Result<(), EngineError> {
        SandboxNetwork::inject_inbound(self, uid, message).await
    }
}
