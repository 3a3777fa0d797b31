//! The engine against the real network stack, without WhatsApp: a device pointed at a
//! closed local port must back off (not spin), report why, and clean up after itself.

// Test helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wagate_core::Phone;
use wagate_core::device::EngineKind;
use wagate_core::engine::{
    DeviceContext, Engine, EngineError, EngineEvent, EngineEvents, EngineSession, EventNotCommitted,
};
use wagate_core::id::DeviceUid;
use wagate_engine_web::{WebEngine, WebEngineConfig};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(Instant, EngineEvent)>>,
    /// Set once the session is stopped: whatever arrives later is a broken promise, kept
    /// for the end of the test instead of watched for during a sleep.
    closed: std::sync::atomic::AtomicBool,
    after_close: Mutex<Vec<EngineEvent>>,
    /// Wakes waiters on every event.
    arrived: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl EngineEvents for Recorder {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            self.after_close.lock().unwrap().push(event.clone());
        }
        self.events.lock().unwrap().push((Instant::now(), event));
        self.arrived.notify_waiters();
        Ok(())
    }
}

impl Recorder {
    fn snapshot(&self) -> Vec<(Instant, EngineEvent)> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (with a deadline far above any backoff involved) until `n` events match.
    async fn wait_for(&self, n: usize, what: &str, pick: impl Fn(&EngineEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.snapshot().iter().filter(|(_, e)| pick(e)).count() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("timed out waiting for {n} {what}: {:?}", self.snapshot());
            }
        }
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
    // dropped here: nothing listens on the port any more
}

fn config(dir: &std::path::Path, port: u16) -> WebEngineConfig {
    let mut cfg = WebEngineConfig::new(dir);
    cfg.ws_url = Some(format!("ws://127.0.0.1:{port}/ws/chat"));
    // Pinned so no test ever fetches the version from web.whatsapp.com.
    cfg.wa_version = Some((2, 3000, 1_023_000_000));
    cfg.start_jitter = Duration::ZERO;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_backs_off_then_stop_and_forget_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = WebEngine::new(config(dir.path(), closed_port()));
    assert_eq!(engine.kind(), EngineKind::WhatsappWeb);
    let uid = DeviceUid::parse("dev_unreachable").unwrap();
    let rec = Arc::new(Recorder::default());
    let session = engine
        .start_session(
            DeviceContext {
                epoch: 1,
                uid: uid.clone(),
                name: "test".into(),
                phone: None,
            },
            rec.clone(),
        )
        .await
        .unwrap();

    // Wait for four failed dials (the client's Fibonacci backoff: 1 s, 1 s, 2 s, 3 s, …);
    // a busy loop is caught below by the spacing between them, a lower bound that a slow
    // machine can only widen, instead of a count within a wall-clock window.
    rec.wait_for(4, "reconnects", |e| {
        matches!(e, EngineEvent::Reconnecting { .. })
    })
    .await;
    let events = rec.snapshot();
    assert!(
        matches!(events.first(), Some((_, EngineEvent::Connecting))),
        "{events:?}"
    );
    let retries: Vec<(String, Duration)> = events
        .iter()
        .filter_map(|(_, e)| match e {
            EngineEvent::Reconnecting { reason, retry_in } => {
                Some((reason.clone(), retry_in.expect("retry_in is known")))
            }
            _ => None,
        })
        .collect();
    assert!(retries.len() >= 4, "{retries:?}");
    assert!(
        retries[0].0.contains("cannot reach WhatsApp"),
        "{:?}",
        retries[0]
    );
    // The announced backoff grows and never shrinks while the server stays away.
    assert!(retries.windows(2).all(|w| w[0].1 <= w[1].1), "{retries:?}");
    assert!(retries.last().unwrap().1 > retries[0].1, "{retries:?}");
    // …and the dials really are spaced: no two Reconnecting within 0.8 s of each other.
    let times: Vec<Instant> = events
        .iter()
        .filter(|(_, e)| matches!(e, EngineEvent::Reconnecting { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] >= Duration::from_millis(800)),
        "dials too close together"
    );

    let stats = session.stats();
    assert_eq!(stats.sent, 0);
    assert!(stats.reconnects >= 2, "{stats:?}");
    assert!(stats.last_event_at.is_some());
    assert_eq!(engine.stats(&uid), Some(session.stats()));

    // Not connected: commands refuse clearly instead of hanging.
    let phone = Phone::parse("15550001111").unwrap();
    assert!(matches!(
        session.check_numbers(std::slice::from_ref(&phone)).await,
        Err(EngineError::NotConnected(_))
    ));
    assert!(matches!(
        session
            .typing(&phone.clone().into(), Duration::from_secs(1))
            .await,
        Err(EngineError::NotConnected(_))
    ));

    // The store file exists while the device is known …
    let db = dir.path().join("dev_unreachable.db");
    assert!(db.exists());
    assert!(engine.has_store(&uid));

    // … stop is graceful, bounded and idempotent, and nothing is reported afterwards …
    let t = Instant::now();
    session.stop().await;
    session.stop().await;
    assert!(t.elapsed() < Duration::from_secs(15));
    // `stop` joins the event pump, so nothing may report from here on: anything that
    // does is collected and fails the test at its end (no sleep watching for it).
    rec.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        session.connect().await,
        Err(EngineError::NotConnected(_))
    ));

    // … and forget deletes the database with its WAL and shared-memory files.
    engine.forget(&uid).await.unwrap();
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!engine.has_store(&uid));
    assert!(
        rec.after_close.lock().unwrap().is_empty(),
        "events after stop: {:?}",
        rec.after_close.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_running_session_per_device_and_start_slots_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), closed_port());
    cfg.start_concurrency = 1;
    let engine = WebEngine::new(cfg);
    let uid = DeviceUid::parse("dev_twice").unwrap();
    let ctx = |uid: &DeviceUid| DeviceContext {
        epoch: 1,
        uid: uid.clone(),
        name: "t".into(),
        phone: None,
    };
    let rec = Arc::new(Recorder::default());
    let first = engine.start(ctx(&uid), rec.clone()).await.unwrap();
    // A second client on the same store would fight the first ("replaced").
    assert!(engine.start(ctx(&uid), rec.clone()).await.is_err());

    // Many devices share the start slots and all still get going.
    let mut others = Vec::new();
    for i in 0..4 {
        let uid = DeviceUid::parse(&format!("dev_many{i}")).unwrap();
        others.push(
            engine
                .start(ctx(&uid), Arc::new(Recorder::default()))
                .await
                .unwrap(),
        );
    }
    first.stop().await;
    // Once stopped, the device can be started again.
    let again = engine.start(ctx(&uid), rec.clone()).await.unwrap();
    again.stop().await;
    for s in others {
        s.stop().await;
    }
    engine.forget(&uid).await.unwrap();
}
