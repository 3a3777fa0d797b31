//! What only a store shared by several nodes must do, with two `PgStore`s (two nodes) on
//! one throwaway database: migrate once when started together, wake each other's commit
//! subscribers, keep waking them after the listening connection drops, and never claim
//! one send job or webhook delivery twice.

// Helpers report failures by panicking, like the tests calling them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use std::collections::HashSet;
use std::time::Duration;
use wagate_core::account::Account;
use wagate_core::device::{
    Device, DeviceStateChange, DeviceStatus, EngineKind, NewDevice, Pacing, SafetyLimits,
};
use wagate_core::engine::provider_message_id;
use wagate_core::lease::Fence;
use wagate_core::message::{Dialect, InboundMessage, MessageKind, NewOutboundMessage};
use wagate_core::store::{
    AcceptOutcome, AccountStore, DeviceLeaseStore, DeviceStore, EventStore, InboundStore,
    MessageStore, SendQueue, StoreError,
};
use wagate_core::time::Timestamp;
use wagate_core::webhook::{MsgeraWebhooks, WebhookChange, WebhookStore};
use wagate_core::{AccountId, DeviceUid, MessageId, Phone};
use wagate_store_postgres::{PgOptions, PgStore};
use wagate_wa_storage::testing::{TestDatabase, pg_database};

fn at(ms: i64) -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 10).single().unwrap()
        + chrono::Duration::milliseconds(ms)
}

async fn database() -> Option<TestDatabase> {
    pg_database().await
}

async fn node(db: &TestDatabase) -> PgStore {
    PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap()
}

async fn device(s: &PgStore) -> Device {
    let account = AccountId::new();
    s.create_account(&Account {
        id: account.clone(),
        name: "acme".into(),
        created_at: at(0),
    })
    .await
    .unwrap();
    s.create_device(&NewDevice {
        uid: DeviceUid::new(),
        account_id: account,
        name: "phone".into(),
        engine: EngineKind::Sandbox,
        limits: SafetyLimits::default(),
        pacing: Pacing::NONE,
        instance_token_hash: [7; 32],
        created_at: at(0),
        sealed_secret: None,
    })
    .await
    .unwrap()
}

/// The fence of a lease on the device taken by "node-a" for an hour.
async fn lease(s: &PgStore, device: &DeviceUid) -> Fence {
    s.acquire_device_lease(device, "node-a", at(0), at(3_600_000))
        .await
        .unwrap()
        .and_then(|l| l.fence())
        .unwrap()
}

fn state(status: DeviceStatus, ms: i64) -> DeviceStateChange {
    DeviceStateChange {
        status,
        reason: None,
        phone: None,
        push_name: None,
        at: at(ms),
    }
}

/// Waits until `rx` announces `seq` or later.
async fn announced(rx: &mut tokio::sync::watch::Receiver<i64>, seq: i64, what: &str) {
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| *s >= seq))
        .await
        .unwrap_or_else(|_| panic!("seq {seq} not announced after {what}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(db) = database().await else { return };
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::connect(&url, PgOptions::default()).await })
        })
        .collect();
    let mut nodes = Vec::new();
    for start in starts {
        nodes.push(start.await.unwrap().expect("every node starts"));
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied, i64::try_from(files).unwrap());
    // Every node works on the one schema.
    let d = device(&nodes[0]).await;
    assert_eq!(nodes[5].get_device_by_uid(&d.uid).await.unwrap(), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_on_one_node_wakes_the_other() {
    let Some(db) = database().await else { return };
    let (a, b) = (node(&db).await, node(&db).await);
    let d = device(&a).await;
    let fence = lease(&a, &d.uid).await;
    let mut woken = b.subscribe_commits();
    assert_eq!(*woken.borrow_and_update(), 0);

    a.record_device_state(&fence, &state(DeviceStatus::Connecting, 1_000), None)
        .await
        .unwrap();
    let seq = a.last_event_seq().await.unwrap();
    assert!(seq > 0);
    announced(&mut woken, seq, "a device state on the other node").await;
    assert_eq!(
        b.list_events(seq - 1, 10, None, &[]).await.unwrap().len(),
        1
    );

    // The listening connection dies (a restarted server, a proxy cutting idle
    // connections): the node listens again and hears the next commit.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    // Commits made before the listener is back are caught up by its resync, later ones
    // by their notification: either way the seq arrives.
    loop {
        i += 1;
        let status = if i % 2 == 0 {
            DeviceStatus::Connecting
        } else {
            DeviceStatus::Connected
        };
        match a
            .record_device_state(&fence, &state(status, 2_000 + i), None)
            .await
        {
            Ok(_) => break,
            // The other node's pool may hand out a connection killed a moment ago.
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("retrying after {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let seq = a.last_event_seq().await.unwrap();
    announced(&mut woken, seq, "a commit after the connection dropped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_one_send_job() {
    let Some(db) = database().await else { return };
    let (a, b) = (node(&db).await, node(&db).await);
    let d = device(&a).await;
    const JOBS: usize = 60;
    for i in 0..JOBS {
        let m = NewOutboundMessage {
            id: MessageId::new(),
            account_id: d.account_id.clone(),
            device_uid: d.uid.clone(),
            to: Phone::parse("+491500000001").unwrap().into(),
            kind: MessageKind::Text,
            text: Some("hello".into()),
            media_id: None,
            details: Default::default(),
            client_message_id: None,
            request_hash: "r".into(),
            dialect: Dialect::Msgera,
            send_at: None,
            created_at: at(i64::try_from(i).unwrap()),
        };
        let outcome = a
            .accept_outbound_message(&m, &provider_message_id(&m.id), 1_000_000)
            .await
            .unwrap();
        assert!(matches!(outcome, AcceptOutcome::Created(_)));
    }
    // One node holds the device; its claimers race through two pools.
    let fence = lease(&a, &d.uid).await;
    let claimers: Vec<_> = (0..8)
        .map(|w| {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            let fence = fence.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store
                        .claim_send_jobs(&fence, at(60_000), at(3_600_000), 3)
                        .await
                        .unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs.into_iter().map(|j| (j.job_id, j.attempt)));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in claimers {
        for (job, attempt) in c.await.unwrap() {
            assert!(seen.insert(job), "job {job} claimed twice");
            assert_eq!(attempt, 1);
        }
    }
    assert_eq!(seen.len(), JOBS, "every job claimed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_one_webhook_delivery() {
    let Some(db) = database().await else { return };
    let (a, b) = (node(&db).await, node(&db).await);
    // Several destinations, each with a line of deliveries; a wide window lets the two
    // nodes compete for the same rows.
    const DEVICES: usize = 4;
    const PER_DEVICE: usize = 15;
    for _ in 0..DEVICES {
        let d = device(&a).await;
        a.change_webhook_config(
            &d.account_id,
            &d.uid,
            &WebhookChange::Msgera(MsgeraWebhooks {
                personal_url: Some("https://p.example/".into()),
                group_url: None,
                active: true,
                events: wagate_core::webhook::DEFAULT_EVENT_TYPES.to_vec(),
            }),
            "whsec_AAAA",
            at(0),
        )
        .await
        .unwrap();
        let fence = lease(&a, &d.uid).await;
        for i in 0..PER_DEVICE {
            let ms = i64::try_from(i).unwrap();
            a.record_inbound(
                &fence,
                &InboundMessage {
                    id: MessageId::new(),
                    account_id: d.account_id.clone(),
                    device_uid: d.uid.clone(),
                    provider_message_id: format!("M{i}"),
                    from: None,
                    from_lid: None,
                    from_name: None,
                    kind: MessageKind::Text,
                    text: Some("hi".into()),
                    media_id: None,
                    details: Default::default(),
                    is_group: false,
                    group_id: None,
                    group_name: None,
                    timestamp: at(ms),
                    received_at: at(ms),
                    read_at: None,
                },
                None,
            )
            .await
            .unwrap();
        }
    }
    // Both nodes fan out at once: each event still becomes one delivery.
    let (fa, fb) = tokio::join!(
        a.fan_out_events(7, at(1_000)),
        b.fan_out_events(7, at(1_000))
    );
    fa.unwrap();
    fb.unwrap();
    while a.fan_out_events(100, at(1_000)).await.unwrap() > 0 {}
    let claimers: Vec<_> = (0..6)
        .map(|w| {
            let (store, owner) = if w % 2 == 0 {
                (a.clone(), "node-a")
            } else {
                (b.clone(), "node-b")
            };
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = store
                        .claim_deliveries(owner, at(2_000), at(3_600_000), 4, 100)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(claimed.into_iter().map(|c| c.delivery_id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in claimers {
        for id in c.await.unwrap() {
            assert!(seen.insert(id), "delivery {id} claimed twice");
        }
    }
    assert_eq!(
        seen.len(),
        DEVICES * PER_DEVICE,
        "one delivery per event, each claimed once"
    );
}

#[tokio::test]
async fn the_write_check_fails_once_the_server_refuses_writes() {
    let Some(db) = database().await else { return };
    let s = node(&db).await;
    s.check_writable().await.unwrap();
    // As a standby or a demoted primary would: reads still work, writes are refused.
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    // The setting applies to new sessions: end the store's.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(s.list_accounts().await.unwrap().is_empty());
    assert!(
        matches!(s.check_writable().await, Err(StoreError::Unavailable(_))),
        "a read-only server is not writable"
    );
}
