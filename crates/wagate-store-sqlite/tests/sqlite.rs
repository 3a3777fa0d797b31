//! What only the SQLite store promises: the file survives a restart, migrations run once,
//! the writer's batches isolate failing units, and lock contention maps to `Unavailable`.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use wagate_core::account::Account;
use wagate_core::device::{
    DeviceStateChange, DeviceStatus, EngineKind, NewDevice, Pacing, SafetyLimits,
};
use wagate_core::engine::provider_message_id;
use wagate_core::message::{Dialect, MessageKind, MessageStatus, NewOutboundMessage};
use wagate_core::store::{
    AcceptOutcome, AccountStore, DeviceLeaseStore, DeviceStore, EventStore, MessageRef,
    MessageStore, SendQueue, StoreError,
};
use wagate_core::time::{Timestamp, from_millis};
use wagate_core::{AccountId, DeviceUid, MessageId, Phone};
use wagate_store_sqlite::{SqliteOptions, SqliteStore};

fn at(ms: i64) -> Timestamp {
    // 2030-01-01T00:00:10Z
    from_millis(1_893_456_010_000 + ms)
}

/// This test's lease on the device: its fence, for the device writes.
async fn lease(store: &SqliteStore, device: &DeviceUid) -> wagate_core::lease::Fence {
    store
        .acquire_device_lease(device, "test", at(0), at(3_600_000))
        .await
        .unwrap()
        .and_then(|l| l.fence())
        .unwrap()
}

async fn seed(store: &SqliteStore) -> (AccountId, DeviceUid) {
    let account = AccountId::new();
    store
        .create_account(&Account {
            id: account.clone(),
            name: "acme".into(),
            created_at: at(0),
        })
        .await
        .unwrap();
    let uid = DeviceUid::new();
    store
        .create_device(&NewDevice {
            uid: uid.clone(),
            account_id: account.clone(),
            name: "phone".into(),
            engine: EngineKind::Sandbox,
            limits: SafetyLimits::default(),
            pacing: Pacing::NONE,
            instance_token_hash: [1; 32],
            created_at: at(0),
            sealed_secret: None,
        })
        .await
        .unwrap();
    (account, uid)
}

fn message(account: &AccountId, device: &DeviceUid, id: MessageId, ms: i64) -> NewOutboundMessage {
    NewOutboundMessage {
        id,
        account_id: account.clone(),
        device_uid: device.clone(),
        to: Phone::parse("+4915112345678").unwrap().into(),
        kind: MessageKind::Text,
        text: Some("hi".into()),
        media_id: None,
        details: Default::default(),
        client_message_id: None,
        request_hash: String::new(),
        dialect: Dialect::Megamsg,
        send_at: None,
        created_at: at(ms),
    }
}

async fn accept(store: &SqliteStore, m: &NewOutboundMessage) -> Result<AcceptOutcome, StoreError> {
    store
        .accept_outbound_message(m, &provider_message_id(&m.id), 1000)
        .await
}

#[tokio::test]
async fn reopening_the_file_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: `open` creates it.
    let path = dir.path().join("data").join("nested").join("wagate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (account, device) = seed(&store).await;
    let fence = lease(&store, &device).await;
    let m = match accept(&store, &message(&account, &device, MessageId::new(), 1)).await {
        Ok(AcceptOutcome::Created(m)) => m,
        other => panic!("{other:?}"),
    };
    store
        .advance_message_status(
            &fence,
            &MessageRef::Id(m.id.clone()),
            MessageStatus::Sent,
            at(2),
            None,
        )
        .await
        .unwrap();
    let pending = message(&account, &device, MessageId::new(), 3);
    accept(&store, &pending).await.unwrap();
    store
        .record_device_state(
            &fence,
            &DeviceStateChange {
                status: DeviceStatus::Connected,
                reason: None,
                phone: Some(Phone::parse("+4915100000000").unwrap()),
                push_name: None,
                at: at(4),
            },
            None,
        )
        .await
        .unwrap();
    let events = store.list_events(0, 100, None, &[]).await.unwrap();
    let last = store.last_event_seq().await.unwrap();
    let dev = store.get_device(&account, &device).await.unwrap();
    let history = store
        .get_message_with_history(&account, &m.id)
        .await
        .map(|(_, h)| h)
        .unwrap();
    let next_job = store.next_send_job_at(&device).await.unwrap();
    assert!(next_job.is_some());
    store.close().await;
    assert!(matches!(
        store.get_account(&account).await,
        Err(StoreError::Unavailable(_))
    ));

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get_account(&account).await.unwrap().name, "acme");
    assert_eq!(store.get_device(&account, &device).await.unwrap(), dev);
    assert_eq!(
        store
            .get_message_with_history(&account, &m.id)
            .await
            .map(|(_, h)| h)
            .unwrap(),
        history
    );
    assert_eq!(store.list_events(0, 100, None, &[]).await.unwrap(), events);
    assert_eq!(store.last_event_seq().await.unwrap(), last);
    // The queue survived: the same next run time, and the pending send is claimable.
    assert_eq!(store.next_send_job_at(&device).await.unwrap(), next_job);
    let jobs = store
        .claim_send_jobs(&fence, at(10), at(60_000), 10)
        .await
        .unwrap();
    assert!(
        jobs.iter().any(|j| j.message.id == pending.id),
        "{jobs:?} {next_job:?}"
    );
    // New events continue the sequence.
    store
        .advance_message_status(
            &fence,
            &MessageRef::Id(m.id.clone()),
            MessageStatus::Delivered,
            at(5),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.last_event_seq().await.unwrap(), last + 1);

    // Dropping without `close` loses nothing either.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.get_message(&account, &m.id).await.unwrap().status,
        MessageStatus::Delivered
    );
}

#[tokio::test]
async fn migrations_run_once_and_reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wagate.db");
    for _ in 0..3 {
        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;
    }
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied, i64::try_from(files).unwrap());
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    conn.close().await.unwrap();
}

/// Units of work committed together stay independent: one failing (a duplicate message id
/// here) rolls back alone while the others in its batch commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_unit_does_not_take_its_batch_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(dir.path().join("wagate.db"))
            .await
            .unwrap(),
    );
    let (account, device) = seed(&store).await;
    let taken = MessageId::new();
    accept(&store, &message(&account, &device, taken.clone(), 0))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = Arc::clone(&store);
        let id = if i % 3 == 0 {
            taken.clone()
        } else {
            MessageId::new()
        };
        let m = message(&account, &device, id, i);
        tasks.push(tokio::spawn(async move { (i, accept(&store, &m).await) }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            (i, Err(StoreError::Conflict(_))) => assert_eq!(i % 3, 0),
            (i, Ok(AcceptOutcome::Created(m))) => {
                assert_ne!(i % 3, 0);
                assert_eq!(store.get_message(&account, &m.id).await.unwrap(), m);
                created += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 40);
    let jobs = store
        .claim_send_jobs(&lease(&store, &device).await, at(60_000), at(120_000), 100)
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        41,
        "a job for every committed message, none for the refused"
    );
}

/// Another process holding the write lock makes writes wait `busy_timeout`, then fail
/// with `Unavailable`; reads carry on.
#[tokio::test]
async fn a_locked_database_is_unavailable_not_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wagate.db");
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(200),
            ..SqliteOptions::default()
        },
    )
    .await
    .unwrap();
    let (account, _) = seed(&store).await;

    use sqlx::{ConnectOptions, Connection};
    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let blocked = store
        .create_account(&Account {
            id: AccountId::new(),
            name: "late".into(),
            created_at: at(0),
        })
        .await;
    assert!(
        matches!(blocked, Err(StoreError::Unavailable(_))),
        "{blocked:?}"
    );
    assert_eq!(store.get_account(&account).await.unwrap().name, "acme");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();

    // Once the lock is gone the store writes again.
    store
        .create_account(&Account {
            id: AccountId::new(),
            name: "later".into(),
            created_at: at(0),
        })
        .await
        .unwrap();
}

/// Two stores on one file (two processes) interleave their writes through SQLite's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_both_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wagate.db");
    let a = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (account, device) = seed(&a).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let m = message(&account, &device, MessageId::new(), i);
        tasks.push(tokio::spawn(async move { accept(&store, &m).await }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(AcceptOutcome::Created(_))));
    }
    assert_eq!(
        b.budget_usage(&device, at(1000))
            .await
            .unwrap()
            .accepted_last_day,
        40
    );
}
