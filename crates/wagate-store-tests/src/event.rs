//! The event log: order, filters and the commit-order guarantee consumers resume on.

use crate::fixture::{SEC, StoreFactory, account, at, device, fence, outbound, send};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use wagate_core::device::{DeviceStateChange, DeviceStatus};
use wagate_core::event::EventType;
use wagate_core::message::{InboundMessage, MessageKind, MessageStatus};
use wagate_core::store::MessageRef;
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::{EventId, MessageId};

fn state(status: DeviceStatus, ms: i64) -> DeviceStateChange {
    DeviceStateChange {
        status,
        reason: None,
        phone: None,
        push_name: None,
        at: at(ms),
    }
}

pub async fn events_filter_by_account_type_and_position(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    assert_eq!(s.last_event_seq().await.unwrap(), 0);
    assert!(s.list_events(0, 100, None, &[]).await.unwrap().is_empty());

    let a = account(s).await;
    let b = account(s).await;
    let da = device(s, &a).await;
    let db = device(s, &b).await;
    s.record_device_state(
        &fence(s, &da.uid).await,
        &state(DeviceStatus::Connecting, SEC),
        None,
    )
    .await
    .unwrap();
    s.record_device_state(
        &fence(s, &db.uid).await,
        &state(DeviceStatus::Connecting, 2 * SEC),
        None,
    )
    .await
    .unwrap();
    let m = send(s, &outbound(&da, None, at(3 * SEC))).await;
    s.advance_message_status(
        &fence(s, &da.uid).await,
        &MessageRef::Id(m.id.clone()),
        MessageStatus::Sent,
        at(4 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    s.record_inbound(
        &fence(s, &da.uid).await,
        &InboundMessage {
            id: MessageId::new(),
            account_id: a.clone(),
            device_uid: da.uid.clone(),
            provider_message_id: "IN1".into(),
            from: None,
            from_lid: None,
            from_name: None,
            kind: MessageKind::Text,
            text: Some("yo".into()),
            media_id: None,
            details: Default::default(),
            is_group: false,
            group_id: None,
            group_name: None,
            timestamp: at(5 * SEC),
            received_at: at(5 * SEC),
            read_at: None,
        },
        None,
    )
    .await
    .unwrap();
    s.record_device_state(
        &fence(s, &db.uid).await,
        &state(DeviceStatus::Connected, 6 * SEC),
        None,
    )
    .await
    .unwrap();

    let all = s.list_events(0, 100, None, &[]).await.unwrap();
    let types: Vec<_> = all.iter().map(|e| e.data.event_type()).collect();
    assert_eq!(
        types,
        vec![
            EventType::DeviceStatus,
            EventType::DeviceStatus,
            EventType::MessageStatus,
            EventType::MessageReceived,
            EventType::DeviceStatus,
        ]
    );
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq strictly increases"
    );
    assert!(all[0].seq > 0);
    let created: Vec<_> = all.iter().map(|e| e.created_at).collect();
    assert_eq!(
        created,
        (1..=6)
            .filter(|i| *i != 3)
            .map(|i| at(i * SEC))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter()
            .map(|e| &e.id)
            .collect::<HashSet<&EventId>>()
            .len(),
        5
    );
    assert_eq!(s.last_event_seq().await.unwrap(), all[4].seq);

    let of_a = s.list_events(0, 100, Some(&a), &[]).await.unwrap();
    assert_eq!(
        of_a.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[0].seq, all[2].seq, all[3].seq]
    );
    assert!(of_a.iter().all(|e| e.account_id == a));
    let of_b = s.list_events(0, 100, Some(&b), &[]).await.unwrap();
    assert_eq!(
        of_b.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[1].seq, all[4].seq]
    );

    let devices = s
        .list_events(0, 100, None, &[EventType::DeviceStatus])
        .await
        .unwrap();
    assert_eq!(devices.len(), 3);
    let two = s
        .list_events(
            0,
            100,
            Some(&a),
            &[EventType::MessageReceived, EventType::MessageStatus],
        )
        .await
        .unwrap();
    assert_eq!(
        two.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[2].seq, all[3].seq]
    );

    // Paging by position.
    let after = s.list_events(all[1].seq, 2, None, &[]).await.unwrap();
    assert_eq!(after, all[2..4].to_vec());
    assert!(
        s.list_events(all[4].seq, 10, None, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let next_b = s.list_events(all[1].seq, 10, Some(&b), &[]).await.unwrap();
    assert_eq!(next_b, vec![all[4].clone()]);
}

/// A consumer that resumes from the last seq it saw must never skip an event, even while
/// other transactions are writing: seqs must become visible in order.
/// (Rules 1 and 2 of the `Event.seq` contract in [`wagate_core::store`].)
pub async fn events_seq_follows_commit_order_under_concurrency(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = fx.store.clone();
    let a = account(&*s).await;
    let mut writers = Vec::new();
    for w in 0..4 {
        let d = device(&*s, &a).await;
        let s = Arc::clone(&s);
        let fence = fence(&*s, &d.uid).await;
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                let status = if i % 2 == 0 {
                    DeviceStatus::Connecting
                } else {
                    DeviceStatus::Connected
                };
                s.record_device_state(&fence, &state(status, w * 100 + i), None)
                    .await
                    .unwrap();
            }
        }));
    }
    let tailer = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while seen.len() < 100 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "tailer saw only {} events",
                    seen.len()
                );
                let batch = s.list_events(cursor, 7, None, &[]).await.unwrap();
                if batch.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                for e in batch {
                    assert!(e.seq > cursor);
                    cursor = e.seq;
                    seen.push(e.id);
                }
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = tailer.await.unwrap();
    let all: Vec<_> = s
        .list_events(0, 1000, None, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all.len(), 100);
    assert_eq!(seen, all, "the tailer saw every event, in seq order");
}

/// Webhook delivery and the live stream sleep until the store announces a commit: every
/// write path that commits events must wake them (device deletion's failures included),
/// with a seq whose events are already readable.
pub async fn a_commit_with_events_wakes_commit_subscribers(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let mut commits = s.subscribe_commits();
    assert_eq!(*commits.borrow(), s.last_event_seq().await.unwrap());

    async fn woken(commits: &mut tokio::sync::watch::Receiver<i64>, what: &str) -> i64 {
        tokio::time::timeout(Duration::from_secs(5), commits.changed())
            .await
            .unwrap_or_else(|_| panic!("no commit announced after {what}"))
            .unwrap();
        *commits.borrow_and_update()
    }

    s.record_device_state(
        &fence(s, &d.uid).await,
        &state(DeviceStatus::Connecting, SEC),
        None,
    )
    .await
    .unwrap();
    let seq = woken(&mut commits, "a device state").await;
    assert_eq!(seq, s.last_event_seq().await.unwrap());
    let seen = s.list_events(seq - 1, 10, None, &[]).await.unwrap();
    assert_eq!(seen.len(), 1, "the announced event is readable");
    assert_eq!(seen[0].seq, seq);

    let m = send(s, &outbound(&d, None, at(2 * SEC))).await;
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(m.id.clone()),
        MessageStatus::Failed,
        at(3 * SEC),
        Some("refused"),
    )
    .await
    .unwrap()
    .unwrap();
    let after_step = woken(&mut commits, "a status step").await;
    assert!(after_step > seq);

    // Deleting a device fails its pending sends, with events: they wake subscribers too.
    let pending = send(s, &outbound(&d, None, at(4 * SEC))).await;
    s.delete_device(&a, &d.uid, at(5 * SEC)).await.unwrap();
    let after_delete = woken(&mut commits, "a device deletion").await;
    assert!(after_delete > after_step);
    let failed = s
        .list_events(after_step, 10, None, &[EventType::MessageStatus])
        .await
        .unwrap();
    assert!(
        failed.iter().any(|e| matches!(&e.data,
            wagate_core::event::EventData::MessageStatus(c)
                if c.message_id == pending.id && c.status == MessageStatus::Failed)),
        "{failed:?}"
    );
}
