//! End to end against the in-process fake WhatsApp server (`wagate-wa-sim`): the engine
//! links by QR, logs in again from its store after a restart, sends every kind of content,
//! receives, reports acks, nacks and receipts, checks numbers, and notices being unlinked.
//!
//! Every wait has a deadline; nothing sleeps to "let things settle". Run with
//! `RUST_LIB_BACKTRACE=0`.

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use wagate_core::Phone;
use wagate_core::engine::{
    DeviceContext, Engine, EngineError, EngineEvent, EngineEvents, EngineSession,
    EventNotCommitted, IncomingMessage, OutgoingContent, OutgoingMessage, ReceiptKind,
    provider_message_id,
};
use wagate_core::id::{DeviceUid, MessageId};
use wagate_core::message::MessageKind;
use wagate_engine_web::whatsapp_rust::prelude::*;
use wagate_engine_web::{WebEngine, WebEngineConfig, WebSession};
use wagate_wa_sim::{Account, SimClient, Simulator};

const ONLINE: Duration = Duration::from_secs(20);
/// A freshly paired client waits 10 s for an app-state key share the simulated phone
/// never sends before it reports `Connected`.
const AFTER_PAIRING: Duration = Duration::from_secs(40);
const SIM_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,whatsapp_rust=error,wacore=error".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The application's side: records every event, optionally refusing to commit.
#[derive(Default)]
struct Sink {
    events: Mutex<Vec<EngineEvent>>,
    changed: Notify,
    refuse_inbound: Mutex<u32>,
}

#[async_trait::async_trait]
impl EngineEvents for Sink {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        if matches!(event, EngineEvent::Inbound(_)) {
            let mut refuse = self.refuse_inbound.lock().unwrap();
            if *refuse > 0 {
                *refuse -= 1;
                self.changed.notify_waiters();
                return Err(EventNotCommitted("database is busy".into()));
            }
        }
        self.events.lock().unwrap().push(event);
        self.changed.notify_waiters();
        Ok(())
    }
}

impl Sink {
    fn snapshot(&self) -> Vec<EngineEvent> {
        self.events.lock().unwrap().clone()
    }

    async fn wait_for<T>(
        &self,
        timeout: Duration,
        pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        self.wait_for_from(0, timeout, pick).await
    }

    /// Like `wait_for`, ignoring the first `start` events.
    async fn wait_for_from<T>(
        &self,
        start: usize,
        timeout: Duration,
        mut pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = start;
        loop {
            let notified = self.changed.notified();
            {
                let events = self.events.lock().unwrap();
                for e in &events[seen..] {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                seen = events.len();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no matching event within {timeout:?}; got {:#?}",
                    self.snapshot()
                );
            }
        }
    }
}

impl Sink {
    /// Waits until every planned refusal happened.
    async fn wait_refused(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if *self.refuse_inbound.lock().unwrap() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("the inbound message never reached the sink");
            }
        }
    }
}

struct World {
    sim: Simulator,
    alice: Account,
    bob: Account,
    b: SimClient,
    engine: WebEngine,
    _dir: tempfile::TempDir,
}

fn engine(sim: &Simulator, dir: &std::path::Path) -> WebEngine {
    let mut cfg = WebEngineConfig::new(dir);
    cfg.transport = Some(Arc::new(sim.transport()));
    cfg.http_client = Some(Arc::new(sim.http_client()));
    cfg.wa_version = Some(SIM_VERSION);
    cfg.start_jitter = Duration::ZERO;
    cfg.check_min_interval = Duration::from_millis(100);
    WebEngine::new(cfg)
}

async fn world() -> World {
    init();
    let sim = Simulator::new();
    let alice = sim.create_account("15550000001", "Alice").unwrap();
    let bob = sim.create_account("15550000002", "Bob").unwrap();
    let b = sim.connect(&bob).await.unwrap();
    b.wait_connected(ONLINE).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&sim, dir.path());
    World {
        sim,
        alice,
        bob,
        b,
        engine,
        _dir: dir,
    }
}

fn device(uid: &DeviceUid) -> DeviceContext {
    DeviceContext {
        epoch: 1,
        uid: uid.clone(),
        name: "shop".into(),
        phone: None,
    }
}

/// Starts a fresh device and links it to `account` by QR.
async fn link(w: &World, uid: &DeviceUid, account: &Account) -> (WebSession, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let session = w
        .engine
        .start_session(device(uid), sink.clone())
        .await
        .unwrap();
    let code = sink
        .wait_for(ONLINE, |e| match e {
            EngineEvent::Qr { code, expires_in } => {
                assert!(expires_in.as_secs() > 0);
                Some(code.clone())
            }
            _ => None,
        })
        .await;
    w.sim.scan_qr(account, &code).unwrap();
    let phone = sink
        .wait_for(AFTER_PAIRING, |e| match e {
            EngineEvent::Connected { phone, .. } => Some(phone.clone()),
            _ => None,
        })
        .await;
    assert_eq!(phone.unwrap().digits(), account.phone);
    (session, sink)
}

fn outgoing(to: &Account, content: OutgoingContent) -> OutgoingMessage {
    let id = MessageId::new();
    OutgoingMessage {
        provider_message_id: provider_message_id(&id),
        id,
        to: Phone::parse(&to.phone).unwrap().into(),
        content,
        context: Default::default(),
    }
}

async fn acked(sink: &Sink, id: &str) -> Option<String> {
    sink.wait_for(ONLINE, |e| match e {
        EngineEvent::ServerAck {
            provider_message_id,
            error,
        } if provider_message_id == id => Some(error.clone()),
        _ => None,
    })
    .await
}

fn inbound(e: &EngineEvent, pred: impl Fn(&IncomingMessage) -> bool) -> Option<IncomingMessage> {
    match e {
        EngineEvent::Inbound(m) if pred(m) => Some((**m).clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_by_qr_sends_receives_and_resumes_after_restart() {
    let w = world().await;
    let uid = DeviceUid::parse("dev_alice").unwrap();
    let (session, sink) = link(&w, &uid, &w.alice).await;
    let states: Vec<_> = sink.snapshot();
    assert!(matches!(states.first(), Some(EngineEvent::Connecting)));

    // Text out: acked by the server, received by Bob under our id, delivered.
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Text {
            text: "hello bob".into(),
        },
    );
    let id = msg.provider_message_id.clone();
    session.send(msg.clone()).await.unwrap();
    assert_eq!(acked(&sink, &id).await, None);
    let (_, info) =
        w.b.wait_message(ONLINE, |m, _| m.text_content() == Some("hello bob"))
            .await
            .unwrap();
    assert_eq!(info.id, id, "WhatsApp knows the message by our provider id");
    sink.wait_for(ONLINE, |e| match e {
        EngineEvent::Receipt {
            provider_message_ids,
            kind: ReceiptKind::Delivered,
            ..
        } if provider_message_ids.contains(&id) => Some(()),
        _ => None,
    })
    .await;
    // Bob reads it.
    w.b.client()
        .mark_as_read(&info.source.chat, None, &[id.as_str()])
        .await
        .unwrap();
    sink.wait_for(ONLINE, |e| match e {
        EngineEvent::Receipt {
            provider_message_ids,
            kind: ReceiptKind::Read,
            ..
        } if provider_message_ids.contains(&id) => Some(()),
        _ => None,
    })
    .await;

    // Text in: the sender as an E.164 number with its push name, committed before ack.
    w.b.client()
        .send_text(w.alice.pn_jid(), "hi alice")
        .await
        .unwrap();
    let m = sink
        .wait_for(ONLINE, |e| {
            inbound(e, |m| m.text.as_deref() == Some("hi alice"))
        })
        .await;
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.from.as_ref().unwrap().digits(), w.bob.phone);
    assert_eq!(m.from_name.as_deref(), Some("Bob"));
    assert!(!m.is_group);

    // Image out, through the fake CDN, with its caption.
    let picture: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Media {
            kind: MessageKind::Image,
            data: Bytes::from(picture.clone()),
            mime_type: "image/png".into(),
            file_name: None,
            caption: Some("a picture".into()),
        },
    );
    session.send(msg.clone()).await.unwrap();
    assert_eq!(acked(&sink, &msg.provider_message_id).await, None);
    let (received, _) =
        w.b.wait_message(ONLINE, |m, _| m.image_message.is_set())
            .await
            .unwrap();
    let image = received.image_message.as_option().unwrap();
    assert_eq!(image.caption.as_deref(), Some("a picture"));
    assert_eq!(image.mimetype.as_deref(), Some("image/png"));
    assert_eq!(w.b.client().download(image).await.unwrap(), picture);

    // Voice note out: a WAV becomes a ptt Ogg/Opus note with duration and waveform.
    let wav = wav(16_000, 1.5);
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Media {
            kind: MessageKind::Voice,
            data: Bytes::from(wav),
            mime_type: "audio/wav".into(),
            file_name: Some("note.wav".into()),
            caption: None,
        },
    );
    session.send(msg.clone()).await.unwrap();
    let (received, _) =
        w.b.wait_message(ONLINE, |m, _| m.audio_message.is_set())
            .await
            .unwrap();
    let audio = received.audio_message.as_option().unwrap();
    assert_eq!(audio.ptt, Some(true));
    assert_eq!(audio.mimetype.as_deref(), Some("audio/ogg; codecs=opus"));
    assert_eq!(audio.seconds, Some(2));
    assert_eq!(audio.waveform.as_ref().map(Vec::len), Some(64));
    let ogg = w.b.client().download(audio).await.unwrap();
    assert_eq!(&ogg[..4], b"OggS");
    // Bob listens to it: Played.
    let (_, info) =
        w.b.wait_message(ONLINE, |m, _| m.audio_message.is_set())
            .await
            .unwrap();
    w.b.client()
        .mark_as_played(&info.source.chat, None, &[info.id.as_str()])
        .await
        .unwrap();
    let voice_id = msg.provider_message_id.clone();
    sink.wait_for(ONLINE, |e| match e {
        EngineEvent::Receipt {
            provider_message_ids,
            kind: ReceiptKind::Played,
            ..
        } if provider_message_ids.contains(&voice_id) => Some(()),
        _ => None,
    })
    .await;

    // Document out keeps its name.
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Media {
            kind: MessageKind::Document,
            data: Bytes::from_static(b"%PDF-1.4 tiny"),
            mime_type: "application/pdf".into(),
            file_name: Some("invoice.pdf".into()),
            caption: Some("your invoice".into()),
        },
    );
    session.send(msg).await.unwrap();
    let (received, _) =
        w.b.wait_message(ONLINE, |m, _| m.document_message.is_set())
            .await
            .unwrap();
    let doc = received.document_message.as_option().unwrap();
    assert_eq!(doc.file_name.as_deref(), Some("invoice.pdf"));

    // Media in: Bob's image arrives with its bytes.
    let upload =
        w.b.client()
            .upload(
                b"bob's picture".to_vec(),
                wagate_engine_web::whatsapp_rust::download::MediaType::Image,
                Default::default(),
            )
            .await
            .unwrap();
    let image = wagate_engine_web::whatsapp_rust::media::image_message(
        upload,
        wagate_engine_web::whatsapp_rust::media::ImageOptions {
            caption: Some("from bob".into()),
            ..Default::default()
        },
    );
    w.b.client()
        .send_message(w.alice.pn_jid(), image)
        .await
        .unwrap();
    let m = sink
        .wait_for(ONLINE, |e| inbound(e, |m| m.kind == MessageKind::Image))
        .await;
    assert_eq!(m.text.as_deref(), Some("from bob"));
    let media = m.media.unwrap();
    assert_eq!(&media.data[..], b"bob's picture");
    assert_eq!(media.mime_type, "image/jpeg");

    // Numbers: Bob is on WhatsApp (with his LID), a never-created number is not; the
    // second ask is answered from the cache.
    let bob_phone = Phone::parse(&w.bob.phone).unwrap();
    let nobody = Phone::parse("15559999999").unwrap();
    let checks = session
        .check_numbers(&[bob_phone.clone(), nobody.clone()])
        .await
        .unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks[0].on_whatsapp);
    assert_eq!(checks[0].jid.as_deref(), Some("15550000002@s.whatsapp.net"));
    assert_eq!(
        checks[0].lid.as_deref(),
        Some(format!("{}@lid", w.bob.lid).as_str())
    );
    assert!(!checks[1].on_whatsapp);
    assert_eq!(
        session
            .check_numbers(std::slice::from_ref(&bob_phone))
            .await
            .unwrap()[0],
        checks[0]
    );
    let fifty_one: Vec<Phone> = (0..51)
        .map(|i| Phone::parse(&format!("1555100{i:04}")).unwrap())
        .collect();
    assert!(matches!(
        session.check_numbers(&fifty_one).await,
        Err(EngineError::Rejected { .. })
    ));

    // Typing is accepted (best effort).
    session
        .typing(&bob_phone.clone().into(), Duration::from_millis(100))
        .await
        .unwrap();

    // Already linked: no pair code.
    assert!(matches!(
        session.request_pair_code(&bob_phone).await,
        Err(EngineError::Rejected { .. })
    ));

    let stats = session.stats();
    assert!(stats.sent >= 4 && stats.received >= 2, "{stats:?}");

    // Restart: the same store logs in again without any QR code.
    session.stop().await;
    let sink2 = Arc::new(Sink::default());
    let session2 = w
        .engine
        .start_session(device(&uid), sink2.clone())
        .await
        .unwrap();
    sink2
        .wait_for(ONLINE, |e| {
            matches!(e, EngineEvent::Connected { .. }).then_some(())
        })
        .await;
    assert!(
        !sink2
            .snapshot()
            .iter()
            .any(|e| matches!(e, EngineEvent::Qr { .. })),
        "resumed without linking"
    );
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Text {
            text: "back again".into(),
        },
    );
    session2.send(msg.clone()).await.unwrap();
    assert_eq!(acked(&sink2, &msg.provider_message_id).await, None);
    session2.stop().await;
    w.engine.forget(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_uncommitted_inbound_and_unlinking() {
    let w = world().await;
    let uid = DeviceUid::parse("dev_faults").unwrap();
    let (session, sink) = link(&w, &uid, &w.alice).await;
    let me = w.alice.device_jid(1);
    assert!(w.sim.is_online(&me), "the QR-linked companion is device 1");

    // A server nack reaches the engine with its code.
    w.sim.nack_next_message(&me, "479");
    let msg = outgoing(
        &w.bob,
        OutgoingContent::Text {
            text: "refused".into(),
        },
    );
    session.send(msg.clone()).await.unwrap();
    let err = acked(&sink, &msg.provider_message_id).await;
    assert!(err.is_some_and(|e| e.contains("479")));

    // The application failing to commit an inbound message means WhatsApp gets no ack:
    // the message comes again (after a reconnect) and is then committed.
    *sink.refuse_inbound.lock().unwrap() = 1;
    w.b.client()
        .send_text(w.alice.pn_jid(), "must not be lost")
        .await
        .unwrap();
    // Let the refusal happen, then force the redelivery.
    sink.wait_refused(ONLINE).await;
    let before = sink.snapshot().len();
    w.sim.drop_connection(&me);
    // The drop is reported with its reason and the backoff, then the device is back.
    let (reason, retry_in) = sink
        .wait_for_from(before, ONLINE, |e| match e {
            EngineEvent::Reconnecting { reason, retry_in } => Some((reason.clone(), *retry_in)),
            _ => None,
        })
        .await;
    assert!(reason.contains("connection"), "{reason}");
    assert!(retry_in.is_some());
    sink.wait_for_from(before, ONLINE, |e| {
        matches!(e, EngineEvent::Connected { .. }).then_some(())
    })
    .await;
    let m = sink
        .wait_for(AFTER_PAIRING, |e| {
            inbound(e, |m| m.text.as_deref() == Some("must not be lost"))
        })
        .await;
    assert_eq!(m.from.unwrap().digits(), w.bob.phone);

    // Unlinked from the phone: LoggedOut; connect() then starts linking afresh.
    w.sim.remove_device(&me);
    let reason = sink
        .wait_for(ONLINE, |e| match e {
            EngineEvent::LoggedOut { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("unlinked"), "{reason}");
    let before = sink.snapshot().len();
    session.connect().await.unwrap();
    sink.wait_for_from(before, ONLINE, |e| {
        matches!(e, EngineEvent::Qr { .. }).then_some(())
    })
    .await;
    // A new round: Connecting again, then fresh QR codes from an emptied store.
    assert!(matches!(sink.snapshot()[before], EngineEvent::Connecting));

    session.stop().await;
    w.engine.forget(&uid).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_by_pair_code_survives_a_ban_and_logs_out() {
    let w = world().await;
    let uid = DeviceUid::parse("dev_paircode").unwrap();
    let sink = Arc::new(Sink::default());
    let session = w
        .engine
        .start_session(device(&uid), sink.clone())
        .await
        .unwrap();
    // Asked right away: the request waits for the round's connection.
    let alice_phone = Phone::parse(&w.alice.phone).unwrap();
    let code = session.request_pair_code(&alice_phone).await.unwrap();
    assert_eq!(code.code.len(), 8);
    assert!(code.expires_in.as_secs() > 60);
    sink.wait_for(ONLINE, |e| match e {
        EngineEvent::PairCode { code: c, .. } if *c == code.code => Some(()),
        _ => None,
    })
    .await;
    // One live code at a time: asking again is throttled with the time left.
    assert!(matches!(
        session.request_pair_code(&alice_phone).await,
        Err(EngineError::RateLimited {
            retry_after: Some(_),
            ..
        })
    ));
    w.sim.enter_pair_code(&w.alice, &code.code).unwrap();
    sink.wait_for(AFTER_PAIRING, |e| {
        matches!(e, EngineEvent::Connected { .. }).then_some(())
    })
    .await;

    // A temporary ban: reported with its reason and end, and the session stops trying.
    w.sim.temp_ban(&w.alice, 101, Duration::from_secs(3600));
    let (reason, expires_at) = sink
        .wait_for(Duration::from_secs(30), |e| match e {
            EngineEvent::Banned { reason, expires_at } => Some((reason.clone(), *expires_at)),
            _ => None,
        })
        .await;
    assert!(reason.contains("101"), "{reason}");
    let left = expires_at.unwrap() - wagate_core::time::now();
    assert!((3500..=3600).contains(&left.num_seconds()), "{left}");

    // Once lifted, connect() brings the device back without linking again.
    w.sim.lift_ban(&w.alice);
    let before = sink.snapshot().len();
    let events = sink.snapshot();
    let banned_at = events
        .iter()
        .rposition(|e| matches!(e, EngineEvent::Banned { .. }))
        .unwrap();
    assert!(
        !events[banned_at..]
            .iter()
            .any(|e| matches!(e, EngineEvent::Reconnecting { .. })),
        "a banned device is not reconnecting: {events:#?}"
    );
    session.connect().await.unwrap();
    sink.wait_for_from(before, ONLINE, |e| {
        matches!(e, EngineEvent::Connected { .. }).then_some(())
    })
    .await;
    assert!(
        !sink.snapshot()[before..]
            .iter()
            .any(|e| matches!(e, EngineEvent::Qr { .. }))
    );

    // logout() unlinks: LoggedOut, and the keys are gone from disk.
    let before = sink.snapshot().len();
    session.logout().await.unwrap();
    let reason = sink
        .wait_for_from(before, ONLINE, |e| match e {
            EngineEvent::LoggedOut { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "logged out on request; the device was unlinked");
    let logged_out = sink.snapshot()[before..]
        .iter()
        .filter(|e| matches!(e, EngineEvent::LoggedOut { .. }))
        .count();
    assert_eq!(logged_out, 1, "reported once");
    assert!(!w.engine.has_store(&uid));
    session.stop().await;
    w.engine.forget(&uid).await.unwrap();
}

/// Events of many devices on one timeline.
#[derive(Default)]
struct Timeline {
    events: Mutex<Vec<(usize, EngineEvent)>>,
    changed: Notify,
}

struct Tagged(usize, Arc<Timeline>);

#[async_trait::async_trait]
impl EngineEvents for Tagged {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        self.1.events.lock().unwrap().push((self.0, event));
        self.1.changed.notify_waiters();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_devices_log_in_from_their_stores_a_few_at_a_time() {
    init();
    const DEVICES: usize = 12;
    const SLOTS: usize = 3;
    let sim = Simulator::new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WebEngineConfig::new(dir.path());
    cfg.transport = Some(Arc::new(sim.transport()));
    cfg.http_client = Some(Arc::new(sim.http_client()));
    cfg.wa_version = Some(SIM_VERSION);
    cfg.start_concurrency = SLOTS;
    cfg.start_jitter = Duration::from_millis(300);
    let engine = WebEngine::new(cfg);
    let timeline = Arc::new(Timeline::default());

    let mut sessions = Vec::new();
    for i in 0..DEVICES {
        let account = sim
            .create_account(&format!("1555010{i:04}"), &format!("Shop {i}"))
            .unwrap();
        let uid = DeviceUid::parse(&format!("dev_shop{i}")).unwrap();
        // Keys already on disk, as after a restart: the device must log in without linking.
        {
            let path = engine.store_path(&uid);
            std::fs::create_dir_all(dir.path()).unwrap();
            let store =
                wagate_engine_web::whatsapp_rust::store::SqliteStore::new(path.to_str().unwrap())
                    .await
                    .unwrap();
            sim.seed_backend(&account, &format!("Shop {i}"), &store)
                .await
                .unwrap();
        }
        let session = engine
            .start_session(device(&uid), Arc::new(Tagged(i, timeline.clone())))
            .await
            .unwrap();
        sessions.push((uid, session));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let notified = timeline.changed.notified();
        let connected = timeline
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| matches!(e, EngineEvent::Connected { .. }))
            .count();
        if connected == DEVICES {
            break;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            panic!("only {connected} of {DEVICES} devices connected");
        }
    }

    let events = timeline.events.lock().unwrap().clone();
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, EngineEvent::Qr { .. }))
    );
    for (i, e) in &events {
        if let EngineEvent::Connected {
            phone, push_name, ..
        } = e
        {
            assert_eq!(phone.as_ref().unwrap().digits(), format!("1555010{i:04}"));
            assert_eq!(push_name.as_deref(), Some(format!("Shop {i}").as_str()));
        }
    }
    // The start slots held: a device reports Connecting once it has a slot and frees the
    // slot when it connects, so no more than SLOTS were between the two at any time.
    let mut in_flight = 0i32;
    let mut most = 0;
    for (_, e) in &events {
        match e {
            EngineEvent::Connecting => in_flight += 1,
            EngineEvent::Connected { .. } => in_flight -= 1,
            _ => {}
        }
        most = most.max(in_flight);
    }
    assert!(most as usize <= SLOTS, "{most} devices logged in at once");

    for (uid, session) in sessions {
        session.stop().await;
        engine.forget(&uid).await.unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// 16-bit mono WAV of a 440 Hz tone.
fn wav(rate: u32, seconds: f32) -> Vec<u8> {
    let frames = (rate as f32 * seconds) as usize;
    let mut pcm = Vec::with_capacity(frames * 2);
    for i in 0..frames {
        let s = (i as f32 / rate as f32 * 440.0 * std::f32::consts::TAU).sin() * 0.5;
        pcm.extend_from_slice(&((s * i16::MAX as f32) as i16).to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
    out.extend_from_slice(&pcm);
    out
}
