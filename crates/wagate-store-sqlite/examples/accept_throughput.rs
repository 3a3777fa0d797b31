//! Measures how many outbound messages per second the SQLite store accepts with many
//! concurrent callers (group commit at work). Not a test: run it by hand,
//! `cargo run --release -p wagate-store-sqlite --example accept_throughput -- [total] [tasks] [full|normal]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;
use wagate_core::account::Account;
use wagate_core::device::{EngineKind, NewDevice, Pacing, SafetyLimits};
use wagate_core::engine::provider_message_id;
use wagate_core::message::{Dialect, MessageKind, NewOutboundMessage};
use wagate_core::store::{AccountStore, DeviceLeaseStore, DeviceStore, MessageStore, SendQueue};
use wagate_core::{AccountId, DeviceUid, MessageId, Phone, time};
use wagate_store_sqlite::{Durability, SqliteOptions, SqliteStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50_000);
    let tasks: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let durability = match args.get(3).map(String::as_str) {
        Some("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(
        dir.path().join("bench.db"),
        SqliteOptions {
            durability,
            ..SqliteOptions::default()
        },
    )
    .await
    .unwrap();
    let account = AccountId::new();
    store
        .create_account(&Account {
            id: account.clone(),
            name: "bench".into(),
            created_at: time::now(),
        })
        .await
        .unwrap();
    let mut devices = Vec::new();
    for _ in 0..4 {
        let uid = DeviceUid::new();
        store
            .create_device(&NewDevice {
                uid: uid.clone(),
                account_id: account.clone(),
                name: "bench".into(),
                engine: EngineKind::Sandbox,
                limits: SafetyLimits::default(),
                pacing: Pacing::NONE,
                instance_token_hash: [0; 32],
                created_at: time::now(),
                sealed_secret: None,
            })
            .await
            .unwrap();
        devices.push(uid);
    }
    let store = Arc::new(store);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        let account = account.clone();
        let device = devices[t % devices.len()].clone();
        let n = total / tasks;
        handles.push(tokio::spawn(async move {
            for i in 0..n {
                let m = NewOutboundMessage {
                    id: MessageId::new(),
                    account_id: account.clone(),
                    device_uid: device.clone(),
                    to: Phone::parse("+491511234567").unwrap().into(),
                    kind: MessageKind::Text,
                    text: Some("hello there".into()),
                    media_id: None,
                    details: Default::default(),
                    client_message_id: Some(format!("t{t}-{i}")),
                    request_hash: String::new(),
                    dialect: Dialect::Msgera,
                    send_at: None,
                    created_at: time::now(),
                };
                store
                    .accept_outbound_message(&m, &provider_message_id(&m.id), u32::MAX)
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    let accepted = total / tasks * tasks;
    println!(
        "{accepted} accepts by {tasks} tasks in {:.2}s: {:.0}/s ({durability:?})",
        elapsed.as_secs_f64(),
        accepted as f64 / elapsed.as_secs_f64()
    );
    let started = Instant::now();
    let mut claimed = 0;
    for d in &devices {
        let fence = store
            .acquire_device_lease(
                d,
                "bench",
                time::now(),
                time::now() + chrono::Duration::hours(1),
            )
            .await
            .unwrap()
            .and_then(|l| l.fence())
            .unwrap();
        loop {
            let jobs = store
                .claim_send_jobs(
                    &fence,
                    time::now(),
                    time::now() + chrono::Duration::minutes(5),
                    100,
                )
                .await
                .unwrap();
            if jobs.is_empty() {
                break;
            }
            claimed += jobs.len();
            // Handed over as the worker records it; an ack an hour away keeps the jobs
            // out of the next claim.
            let ids: Vec<i64> = jobs.iter().map(|j| j.job_id).collect();
            store
                .record_handoff(
                    &fence,
                    &ids,
                    time::now(),
                    time::now() + chrono::Duration::hours(1),
                )
                .await
                .unwrap();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{claimed} claimed and completed one at a time in {:.2}s: {:.0}/s",
        elapsed.as_secs_f64(),
        claimed as f64 / elapsed.as_secs_f64()
    );
    store.close().await;
}
