//! Services tested alone: a real SQLite store in a temporary directory, and a fake in
//! place of the device runtime (the ports of [`super::port`]), so a use case is checked
//! without HTTP, engines or workers.

use super::devices::NewDeviceRequest;
use super::messaging::{SendKind, SendRequest, SyncSend};
use super::peer::{
    PeerReply, PeerRequest, Peers, Reach, SessionCall, SessionRouter, WireCheck, WireError,
};
use super::port::{DeviceControl, Outbox};
use super::port::{DeviceCounters, DeviceSample, Handoff};
use super::{
    AccountService, DeviceService, LinkingService, MediaService, MessagingService, ServiceError,
};
use crate::blob::BlobStore;
use crate::config::Config;
use crate::keys::MediaLinkKey;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use wagate_core::device::{Device, EngineKind};
use wagate_core::engine::EngineSession;
use wagate_core::message::{Dialect, MessageStatus};
use wagate_core::store::{MessageFilter, PageRequest, Store};
use wagate_core::{AccountId, DeviceUid, MessageId, Phone, Spintax};

/// Stands in for the device runtime: records what services ask of it.
#[derive(Default)]
struct FakeRuntime {
    engines: Vec<EngineKind>,
    connected: AtomicBool,
    /// A wake-up hands every waiting message over at once (as a fast worker would).
    take_on_wake: bool,
    started: Mutex<Vec<DeviceUid>>,
    woken: Mutex<Vec<DeviceUid>>,
    waiting: Mutex<HashMap<MessageId, oneshot::Sender<Handoff>>>,
}

#[async_trait]
impl DeviceControl for FakeRuntime {
    fn engine_kinds(&self) -> Vec<EngineKind> {
        self.engines.clone()
    }
    async fn start(&self, device: &Device) {
        self.started.lock().unwrap().push(device.uid.clone());
    }
    async fn stop(&self, _uid: &DeviceUid) {}
    async fn remove(&self, _uid: &DeviceUid, _engine: EngineKind) {}
    fn session(&self, _uid: &DeviceUid) -> Option<Arc<dyn EngineSession>> {
        None
    }
    fn current_qr(&self, _uid: &DeviceUid) -> Option<(String, i64)> {
        None
    }
    fn connection(&self, _uid: &DeviceUid) -> Option<bool> {
        Some(self.connected.load(Ordering::SeqCst))
    }
    fn counters(&self, _uid: &DeviceUid) -> DeviceCounters {
        DeviceCounters::default()
    }
    fn metric_samples(&self) -> Vec<DeviceSample> {
        Vec::new()
    }
    fn node_id(&self) -> String {
        "node-test".into()
    }
}

impl Outbox for FakeRuntime {
    fn wake(&self, uid: &DeviceUid) {
        self.woken.lock().unwrap().push(uid.clone());
        if self.take_on_wake {
            for (_, waiter) in self.waiting.lock().unwrap().drain() {
                let _ = waiter.send(Handoff::Taken);
            }
        }
    }
    fn watch_handoff(&self, message: &MessageId) -> oneshot::Receiver<Handoff> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(message.clone(), tx);
        rx
    }
    fn forget_handoff(&self, message: &MessageId) {
        self.waiting.lock().unwrap().remove(message);
    }
}

/// Stands in for the other nodes: records the calls forwarded to them and answers each
/// with the next of `replies` (an `Err` is a node that cannot be reached).
#[derive(Default)]
struct FakePeers {
    calls: Mutex<Vec<(String, PeerRequest)>>,
    replies: Mutex<Vec<Result<PeerReply, String>>>,
}

#[async_trait]
impl Peers for FakePeers {
    async fn forward(&self, address: &str, request: &PeerRequest) -> Result<PeerReply, String> {
        self.calls
            .lock()
            .unwrap()
            .push((address.to_owned(), request.clone()));
        self.replies.lock().unwrap().remove(0)
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    peers: Arc<FakePeers>,
    fake: Arc<FakeRuntime>,
    account: AccountId,
    devices: DeviceService,
    messaging: MessagingService,
}

async fn fixture(fake: FakeRuntime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    });
    let store: Arc<dyn Store> = crate::app::open_store(&config).await.unwrap();
    let fake = Arc::new(fake);
    let peers = Arc::new(FakePeers::default());
    let router = SessionRouter::new(Arc::clone(&store), fake.clone(), Some(peers.clone()));
    let media = MediaService::new(
        Arc::clone(&config),
        Arc::clone(&store),
        BlobStore::local(&config.media_dir()).unwrap(),
        MediaLinkKey::load_or_create(dir.path()).unwrap(),
    );
    let (account, _key) = AccountService::new(Arc::clone(&store))
        .create_account("service test")
        .await
        .unwrap();
    let linking = LinkingService::new(Arc::clone(&store), fake.clone(), router.clone());
    Fixture {
        devices: DeviceService::new(
            Arc::clone(&store),
            fake.clone(),
            fake.clone(),
            crate::secrets::SecretsKey::load(None, dir.path()).unwrap(),
            linking,
            "http://gateway.test",
        ),
        messaging: MessagingService::new(
            Arc::clone(&store),
            fake.clone(),
            fake.clone(),
            media,
            router,
            0,
        ),
        _dir: dir,
        peers,
        store,
        fake,
        account: account.id,
    }
}

fn sandbox_device() -> NewDeviceRequest {
    NewDeviceRequest {
        name: "phone".into(),
        engine: EngineKind::Sandbox,
        limits: None,
        pacing: None,
        cloud_api: None,
    }
}

fn text_to(device: &DeviceUid) -> SendRequest {
    SendRequest {
        device_uid: device.clone(),
        to: Phone::parse("+201001234567").unwrap().into(),
        kind: SendKind::Text,
        text: Some(Spintax::parse("hello").unwrap()),
        media_id: None,
        details: Default::default(),
        reply_to: None,
        client_message_id: None,
        send_at: None,
        dialect: Dialect::Megamsg,
    }
}

async fn stored_messages(f: &Fixture) -> u64 {
    f.store
        .list_messages(
            &f.account,
            &MessageFilter::default(),
            PageRequest { page: 1, limit: 1 },
        )
        .await
        .unwrap()
        .total
}

#[tokio::test]
async fn devices_start_only_on_engines_this_build_has() {
    let f = fixture(FakeRuntime {
        engines: vec![EngineKind::Sandbox],
        ..FakeRuntime::default()
    })
    .await;
    let refused = f
        .devices
        .create_device(
            &f.account,
            NewDeviceRequest {
                engine: EngineKind::WhatsappWeb,
                ..sandbox_device()
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(ServiceError::Invalid(field, m)) if field == "engine" && m.contains("available: sandbox")),
        "{refused:?}"
    );
    assert!(f.fake.started.lock().unwrap().is_empty());
    let (view, token) = f
        .devices
        .create_device(&f.account, sandbox_device())
        .await
        .unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(*f.fake.started.lock().unwrap(), vec![view.device.uid]);
}

#[tokio::test]
async fn a_disconnected_device_is_refused_before_anything_is_stored() {
    let f = fixture(FakeRuntime {
        engines: vec![EngineKind::Sandbox],
        ..FakeRuntime::default()
    })
    .await;
    let (view, _) = f
        .devices
        .create_device(&f.account, sandbox_device())
        .await
        .unwrap();
    let outcome = f
        .messaging
        .send_and_wait(
            &view.device,
            text_to(&view.device.uid),
            None,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(&outcome, Err(ServiceError::Engine(m)) if m.contains("not connected")),
        "{outcome:?}"
    );
    assert_eq!(stored_messages(&f).await, 0);
    assert!(f.fake.woken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_synchronous_send_hears_a_handoff_that_follows_the_commit_at_once() {
    // The fake hands the message over the instant the worker is woken, before the
    // service gets to wait: the waiter must already be registered then.
    let f = fixture(FakeRuntime {
        engines: vec![EngineKind::Sandbox],
        connected: AtomicBool::new(true),
        take_on_wake: true,
        ..FakeRuntime::default()
    })
    .await;
    let (view, _) = f
        .devices
        .create_device(&f.account, sandbox_device())
        .await
        .unwrap();
    let outcome = f
        .messaging
        .send_and_wait(
            &view.device,
            text_to(&view.device.uid),
            None,
            Duration::from_millis(500),
        )
        .await
        .unwrap();
    let SyncSend::Taken(id) = outcome else {
        panic!("the hand-off was missed: {outcome:?}");
    };
    let (message, _) = f.messaging.get_message(&f.account, &id).await.unwrap();
    // Only the fake said "taken": the store still has it queued, so the answer came from
    // the waiter, not from the fallback read.
    assert_eq!(message.status, MessageStatus::Queued);
    assert_eq!(*f.fake.woken.lock().unwrap(), vec![view.device.uid]);
    assert!(
        f.fake.waiting.lock().unwrap().is_empty(),
        "the waiter is forgotten"
    );
}

/// A call that needs the device's session, made on a node that does not drive the device,
/// goes to the node holding its lease, at the address it advertised, once: a call that was
/// already forwarded is not sent on again, and a node without an address is named.
#[tokio::test]
async fn a_session_call_for_a_device_driven_elsewhere_goes_to_its_node() {
    let f = fixture(FakeRuntime {
        engines: vec![EngineKind::Sandbox],
        ..FakeRuntime::default()
    })
    .await;
    let (view, _) = f
        .devices
        .create_device(&f.account, sandbox_device())
        .await
        .unwrap();
    let uid = view.device.uid;
    let now = wagate_core::time::now();
    let later = now + chrono::Duration::seconds(60);
    f.store
        .acquire_device_lease(&uid, "node-b", now, later)
        .await
        .unwrap()
        .unwrap();
    f.store
        .heartbeat_node(&wagate_core::lease::NodeInfo {
            node_id: "node-b".into(),
            heartbeat_at: now,
            draining: false,
            address: Some("http://10.0.0.2:8080".into()),
        })
        .await
        .unwrap();
    let phone = Phone::parse("+201001234567").unwrap();
    f.peers.replies.lock().unwrap().extend([
        Ok(PeerReply::Numbers {
            results: vec![WireCheck {
                phone: "+201001234567".into(),
                on_whatsapp: true,
                jid: Some("201001234567@s.whatsapp.net".into()),
                lid: None,
            }],
        }),
        Ok(PeerReply::Failed(WireError {
            kind: "engine".into(),
            message: format!("device {uid} is not connected to WhatsApp"),
            field: None,
            retry_after_secs: None,
        })),
        Err("connection refused".into()),
    ]);

    let checks = f
        .messaging
        .check_numbers(&f.account, &uid, std::slice::from_ref(&phone))
        .await
        .unwrap();
    assert!(checks[0].on_whatsapp);
    assert_eq!(checks[0].phone, phone);
    {
        let calls = f.peers.calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "http://10.0.0.2:8080");
        assert_eq!(calls[0].1.device, uid.as_str());
        assert_eq!(calls[0].1.account, f.account.as_str());
        assert_eq!(
            calls[0].1.call,
            SessionCall::CheckNumbers {
                numbers: vec!["+201001234567".into()]
            }
        );
    }
    // The driving node's refusal is this node's answer.
    let refused = f
        .messaging
        .check_numbers(&f.account, &uid, std::slice::from_ref(&phone))
        .await;
    assert!(
        matches!(&refused, Err(ServiceError::Engine(m)) if m.contains("not connected")),
        "{refused:?}"
    );
    let unreachable = f
        .messaging
        .check_numbers(&f.account, &uid, std::slice::from_ref(&phone))
        .await;
    assert!(
        matches!(&unreachable, Err(ServiceError::Engine(m)) if m.contains("node-b") && m.contains("could not be reached")),
        "{unreachable:?}"
    );
    // Already forwarded once: answered here, naming the node, and not sent on.
    let here_only = f
        .messaging
        .check_numbers_at(
            &f.account,
            &uid,
            std::slice::from_ref(&phone),
            Reach::HereOnly,
        )
        .await;
    assert!(
        matches!(&here_only, Err(ServiceError::Engine(m)) if m.contains("runs on node node-b")),
        "{here_only:?}"
    );
    assert_eq!(f.peers.calls.lock().unwrap().len(), 3);
    // Another account's caller learns nothing of the device, and nothing is forwarded.
    let (other, _) = AccountService::new(Arc::clone(&f.store))
        .create_account("other")
        .await
        .unwrap();
    let foreign = f
        .messaging
        .check_numbers(&other.id, &uid, std::slice::from_ref(&phone))
        .await;
    assert!(
        matches!(foreign, Err(ServiceError::NotFound("device"))),
        "{foreign:?}"
    );
    // A node that did not say where it can be reached is named instead.
    f.store
        .heartbeat_node(&wagate_core::lease::NodeInfo {
            node_id: "node-b".into(),
            heartbeat_at: now,
            draining: false,
            address: None,
        })
        .await
        .unwrap();
    let unnamed = f.messaging.check_numbers(&f.account, &uid, &[phone]).await;
    assert!(
        matches!(&unnamed, Err(ServiceError::Engine(m)) if m.contains("send this request to that node")),
        "{unnamed:?}"
    );
    assert_eq!(f.peers.calls.lock().unwrap().len(), 3);
}
