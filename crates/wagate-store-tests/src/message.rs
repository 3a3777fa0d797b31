//! Outbound messages: accepting, idempotency, the daily budget, status lifecycle, listings.

use crate::fixture::{
    HOUR, MIN, SEC, StoreFactory, accept, account, at, device, events, fence, outbound, phone,
    send, t0,
};
use std::collections::HashSet;
use std::sync::Arc;
use wagate_core::engine::provider_message_id;
use wagate_core::event::{EventData, EventType, MessageStatusChanged};
use wagate_core::message::{MessageKind, MessageStatus, StatusChange};
use wagate_core::store::{AcceptOutcome, MessageFilter, MessageRef, PageRequest, StoreError};
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::{DeviceUid, MediaId, MessageId};

pub async fn accept_commits_queued_message_job_and_history(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let mut new = outbound(&d, Some("client-1"), at(SEC));
    new.kind = MessageKind::Image;
    new.media_id = Some(MediaId::new());
    new.text = Some("caption".into());
    let m = send(s, &new).await;
    assert_eq!(m.id, new.id);
    assert_eq!(m.account_id, a);
    assert_eq!(m.device_uid, d.uid);
    assert_eq!(m.to, new.to);
    assert_eq!(m.kind, MessageKind::Image);
    assert_eq!(m.text.as_deref(), Some("caption"));
    assert_eq!(m.media_id, new.media_id);
    assert_eq!(m.client_message_id.as_deref(), Some("client-1"));
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(m.failure_reason, None);
    assert_eq!(m.provider_message_id, provider_message_id(&new.id));
    assert_eq!(m.dialect, new.dialect);
    assert_eq!(m.send_at, None);
    assert_eq!(m.created_at, at(SEC));
    assert_eq!(m.updated_at, at(SEC));

    assert_eq!(s.get_message(&a, &m.id).await.unwrap(), m);
    assert_eq!(
        s.get_message(&a, &MessageId::new()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.get_message_with_history(&a, &m.id)
            .await
            .map(|(_, h)| h)
            .unwrap(),
        vec![StatusChange {
            status: MessageStatus::Queued,
            at: at(SEC),
            reason: None,
        }]
    );
    assert_eq!(
        s.get_message_with_history(&a, &MessageId::new()).await,
        Err(StoreError::NotFound)
    );
    let (read_back, _) = s.get_message_with_history(&a, &m.id).await.unwrap();
    assert_eq!(read_back, m);
    let other = account(s).await;
    assert_eq!(
        s.get_message_with_history(&other, &m.id).await,
        Err(StoreError::NotFound),
        "another account's message"
    );
    // The send job was committed with it.
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(2 * SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].message, m);
    assert_eq!(jobs[0].attempt, 1);
    assert_eq!(
        s.budget_usage(&d.uid, at(2 * SEC))
            .await
            .unwrap()
            .accepted_last_day,
        1
    );
    // Accepting onto an unknown device is refused.
    let mut stray = outbound(&d, None, t0());
    stray.device_uid = DeviceUid::new();
    assert_eq!(
        s.accept_outbound_message(&stray, "3EB0STRAY", 100).await,
        Err(StoreError::NotFound)
    );
}

pub async fn accept_dedupes_client_message_id_per_device(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d1 = device(s, &a).await;
    let d2 = device(s, &a).await;
    let first = send(s, &outbound(&d1, Some("order-17"), t0())).await;

    let mut retry = outbound(&d1, Some("order-17"), at(SEC));
    retry.text = Some("different text".into());
    assert_eq!(
        accept(s, &retry, 100).await,
        AcceptOutcome::Duplicate(first.clone())
    );
    assert_eq!(
        s.get_message(&a, &retry.id).await,
        Err(StoreError::NotFound)
    );

    // The same key for a different request is refused, naming the original, and
    // commits nothing.
    let mut reused = outbound(&d1, Some("order-17"), at(SEC));
    reused.request_hash = "request-2".into();
    assert_eq!(
        accept(s, &reused, 100).await,
        AcceptOutcome::KeyReused {
            original: first.id.clone()
        }
    );
    assert_eq!(
        s.get_message(&a, &reused.id).await,
        Err(StoreError::NotFound)
    );

    // The same clientMessageId on another device is another message.
    let other = outbound(&d2, Some("order-17"), at(SEC));
    assert!(matches!(
        accept(s, &other, 100).await,
        AcceptOutcome::Created(_)
    ));
    // Messages without a clientMessageId are never duplicates.
    send(s, &outbound(&d1, None, at(2 * SEC))).await;
    send(s, &outbound(&d1, None, at(3 * SEC))).await;
    // A retry reports the original even when the budget is used up since.
    assert_eq!(
        accept(s, &outbound(&d1, Some("order-17"), at(4 * SEC)), 1).await,
        AcceptOutcome::Duplicate(first.clone())
    );
    // A duplicate reports the message as it is now.
    let sent = s
        .advance_message_status(
            &fence(s, &d1.uid).await,
            &MessageRef::Id(first.id.clone()),
            MessageStatus::Sent,
            at(5 * SEC),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    match accept(s, &outbound(&d1, Some("order-17"), at(6 * SEC)), 100).await {
        AcceptOutcome::Duplicate(m) => assert_eq!(m, sent),
        other => panic!("expected Duplicate, got {other:?}"),
    }

    let all = s
        .list_messages(
            &a,
            &MessageFilter::default(),
            PageRequest {
                page: 1,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total, 4);
    let jobs = s
        .claim_send_jobs(&fence(s, &d1.uid).await, at(MIN), at(2 * MIN), 100)
        .await
        .unwrap();
    assert_eq!(
        jobs.len(),
        2,
        "a duplicate adds no send job, and the message that left `queued` has none left"
    );
}

pub async fn accept_refuses_when_daily_budget_is_used(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    for i in 0..3 {
        let m = outbound(&d, Some(&format!("c{i}")), at(i * MIN));
        assert!(matches!(accept(s, &m, 3).await, AcceptOutcome::Created(_)));
    }
    let refused = outbound(&d, Some("c3"), at(HOUR));
    assert_eq!(
        accept(s, &refused, 3).await,
        AcceptOutcome::DailyBudgetExhausted { limit: 3 }
    );
    // Nothing of the refused message was committed: no row, no key, no job, no count.
    assert_eq!(
        s.get_message(&a, &refused.id).await,
        Err(StoreError::NotFound)
    );
    let usage = s.budget_usage(&d.uid, at(HOUR)).await.unwrap();
    assert_eq!(usage.accepted_last_day, 3);
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(HOUR), at(2 * HOUR), 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    // The key was not taken: the same clientMessageId is accepted once there is room.
    assert!(matches!(
        accept(s, &outbound(&d, Some("c3"), at(HOUR)), 4).await,
        AcceptOutcome::Created(_)
    ));
    // The budget is per device.
    assert!(matches!(
        accept(s, &outbound(&other, Some("c9"), at(HOUR)), 3).await,
        AcceptOutcome::Created(_)
    ));
    // A zero budget refuses everything.
    assert_eq!(
        accept(s, &outbound(&other, Some("c10"), at(HOUR)), 0).await,
        AcceptOutcome::DailyBudgetExhausted { limit: 0 }
    );
    // The window rolls: the first three (at 0, 1 and 2 minutes) stop counting a day later,
    // while the one accepted at one hour still counts.
    let late = at(24 * HOUR + 30 * MIN);
    assert_eq!(
        accept(s, &outbound(&d, Some("c4"), late), 1).await,
        AcceptOutcome::DailyBudgetExhausted { limit: 1 }
    );
    assert!(matches!(
        accept(s, &outbound(&d, Some("c5"), late), 2).await,
        AcceptOutcome::Created(_)
    ));
    assert_eq!(
        s.budget_usage(&d.uid, at(24 * HOUR + 31 * MIN))
            .await
            .unwrap()
            .accepted_last_day,
        2
    );
    assert_eq!(
        s.budget_usage(&d.uid, at(25 * HOUR + 31 * MIN))
            .await
            .unwrap()
            .accepted_last_day,
        1
    );
}

pub async fn accept_concurrent_duplicates_create_one_message(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = fx.store.clone();
    let a = account(&*s).await;
    let d = device(&*s, &a).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = Arc::clone(&s);
        let m = outbound(&d, Some("same"), t0());
        tasks.push(tokio::spawn(async move {
            s.accept_outbound_message(&m, &provider_message_id(&m.id), 1000)
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            AcceptOutcome::Created(m) => created.push(m),
            AcceptOutcome::Duplicate(m) => duplicates.push(m),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    assert_eq!(duplicates.len(), 19);
    assert!(duplicates.iter().all(|m| m.id == created[0].id));
    let all = s
        .list_messages(
            &a,
            &MessageFilter::default(),
            PageRequest {
                page: 1,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total, 1);
    assert_eq!(
        s.budget_usage(&d.uid, t0())
            .await
            .unwrap()
            .accepted_last_day,
        1
    );
    // The one message created has exactly one send job: nothing accepted is stranded.
    let jobs = s
        .claim_send_jobs(&fence(&*s, &d.uid).await, at(MIN), at(2 * MIN), 100)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "the created message must have its send job");
    assert_eq!(jobs[0].message.id, created[0].id);
}

pub async fn accept_concurrent_sends_respect_the_budget(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = fx.store.clone();
    let a = account(&*s).await;
    let d = device(&*s, &a).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = Arc::clone(&s);
        let m = outbound(&d, Some(&format!("c{i}")), at(i));
        tasks.push(tokio::spawn(async move {
            s.accept_outbound_message(&m, &provider_message_id(&m.id), 10)
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            AcceptOutcome::Created(_) => created += 1,
            AcceptOutcome::DailyBudgetExhausted { limit: 10 } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 10);
    let all = s
        .list_messages(
            &a,
            &MessageFilter::default(),
            PageRequest {
                page: 1,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.total, 10);
}

/// WhatsApp took a message (`sent`) and reported it undeliverable later (the Cloud API
/// does, by webhook: outside the 24-hour window): it fails with the reason, as a step of
/// its history with a `message.status` event.
pub async fn a_sent_message_reported_undeliverable_fails(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;
    let r = MessageRef::Id(m.id.clone());
    let f = fence(s, &d.uid).await;
    s.advance_message_status(&f, &r, MessageStatus::Sent, at(SEC), None)
        .await
        .unwrap()
        .unwrap();
    let failed = s
        .advance_message_status(
            &f,
            &r,
            MessageStatus::Failed,
            at(2 * SEC),
            Some("Re-engagement message (Meta error 131047)"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("Re-engagement message (Meta error 131047)")
    );
    let (_, history) = s.get_message_with_history(&a, &m.id).await.unwrap();
    let steps: Vec<MessageStatus> = history.iter().map(|h| h.status).collect();
    assert_eq!(
        steps,
        [
            MessageStatus::Queued,
            MessageStatus::Sent,
            MessageStatus::Failed
        ]
    );
    // A late receipt does not bring it back.
    assert_eq!(
        s.record_receipt(&r, MessageStatus::Delivered, at(3 * SEC))
            .await,
        Ok(None)
    );
}

pub async fn advance_moves_forward_only_with_history_and_events(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, Some("c1"), t0())).await;
    let r = MessageRef::Id(m.id.clone());

    let sent = s
        .advance_message_status(
            &fence(s, &d.uid).await,
            &r,
            MessageStatus::Sent,
            at(SEC),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.status, MessageStatus::Sent);
    assert_eq!(sent.updated_at, at(SEC));
    assert_eq!(s.get_message(&a, &m.id).await.unwrap(), sent);
    // Duplicates and moves backwards are ignored.
    for (status, t) in [(MessageStatus::Sent, 2), (MessageStatus::Queued, 3)] {
        assert_eq!(
            s.advance_message_status(
                &fence(s, &d.uid).await,
                &r,
                status,
                at(t * SEC),
                Some("late")
            )
            .await,
            Ok(None)
        );
    }
    // Skipping a step is forward too (a read receipt can arrive before, or without, the
    // delivery one): the skipped step is implied, recorded at the same time with its own
    // event, so every step a message went through is in its history and its webhooks.
    let read = s
        .advance_message_status(
            &fence(s, &d.uid).await,
            &r,
            MessageStatus::Read,
            at(5 * SEC),
            Some("receipt"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, MessageStatus::Read);
    // Once the recipient had it, a message can no longer fail (a `sent` one can: see
    // `a_sent_message_reported_undeliverable_fails`).
    for status in [MessageStatus::Delivered, MessageStatus::Failed] {
        assert_eq!(
            s.advance_message_status(
                &fence(s, &d.uid).await,
                &r,
                status,
                at(6 * SEC),
                Some("late")
            )
            .await,
            Ok(None)
        );
    }
    let played = s
        .advance_message_status(
            &fence(s, &d.uid).await,
            &r,
            MessageStatus::Played,
            at(7 * SEC),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(played.status, MessageStatus::Played);
    assert_eq!(s.get_message(&a, &m.id).await.unwrap(), played);
    assert_eq!(
        s.advance_message_status(
            &fence(s, &d.uid).await,
            &MessageRef::Id(MessageId::new()),
            MessageStatus::Sent,
            at(8 * SEC),
            None
        )
        .await,
        Err(StoreError::NotFound)
    );

    let steps = |status, secs, reason: Option<&str>| StatusChange {
        status,
        at: at(secs * SEC),
        reason: reason.map(str::to_owned),
    };
    assert_eq!(
        s.get_message_with_history(&a, &m.id)
            .await
            .map(|(_, h)| h)
            .unwrap(),
        vec![
            steps(MessageStatus::Queued, 0, None),
            steps(MessageStatus::Sent, 1, None),
            steps(MessageStatus::Delivered, 5, None),
            steps(MessageStatus::Read, 5, Some("receipt")),
            steps(MessageStatus::Played, 7, None),
        ]
    );

    let evs = events(s, &[EventType::MessageStatus]).await;
    assert!(
        evs.iter()
            .all(|e| e.account_id == a && e.device_uid == d.uid)
    );
    let changes: Vec<_> = evs.into_iter().map(|e| e.data).collect();
    let change = |status, secs, reason: Option<&str>| {
        EventData::MessageStatus(MessageStatusChanged {
            message_id: m.id.clone(),
            client_message_id: Some("c1".into()),
            recipient: phone(1).into(),
            status,
            reason: reason.map(str::to_owned),
            timestamp: at(secs * SEC),
        })
    };
    assert_eq!(
        changes,
        vec![
            change(MessageStatus::Sent, 1, None),
            change(MessageStatus::Delivered, 5, None),
            change(MessageStatus::Read, 5, Some("receipt")),
            change(MessageStatus::Played, 7, None),
        ]
    );
}

/// Steps that reach the store together (a store may run them as one unit) behave as if
/// run one after the other, in the order they were made: later steps see earlier ones,
/// whether they name the message by id or by WhatsApp id, and one unknown message fails
/// alone.
pub async fn advance_concurrent_steps_apply_in_order(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = fx.store.clone();
    let a = account(&*s).await;
    let d = device(&*s, &a).await;
    let m = send(&*s, &outbound(&d, Some("c1"), t0())).await;
    let other = send(&*s, &outbound(&d, Some("c2"), t0())).await;
    let by_provider = MessageRef::Provider {
        device: d.uid.clone(),
        provider_message_id: m.provider_message_id.clone(),
    };
    let by_id = MessageRef::Id(m.id.clone());
    let unknown = MessageRef::Provider {
        device: d.uid.clone(),
        provider_message_id: "3EB0NOSUCHMESSAGE".into(),
    };
    let steps = vec![
        (by_provider.clone(), MessageStatus::Sent, 1),
        (unknown, MessageStatus::Sent, 1),
        (by_id.clone(), MessageStatus::Sent, 2),
        (by_provider.clone(), MessageStatus::Delivered, 3),
        (MessageRef::Id(other.id.clone()), MessageStatus::Failed, 3),
        (by_id.clone(), MessageStatus::Read, 4),
        (by_provider, MessageStatus::Delivered, 5),
    ];
    // Polled together from the start, so the requests reach the store together.
    let fence = fence(&*s, &d.uid).await;
    let results = futures::future::join_all(steps.into_iter().map(|(r, status, t)| {
        let s = Arc::clone(&s);
        let fence = fence.clone();
        async move {
            s.advance_message_status(&fence, &r, status, at(t * SEC), Some("why"))
                .await
                .map(|m| m.map(|m| m.status))
        }
    }))
    .await;
    assert_eq!(
        results,
        vec![
            Ok(Some(MessageStatus::Sent)),
            Err(StoreError::NotFound),
            Ok(None),
            Ok(Some(MessageStatus::Delivered)),
            Ok(Some(MessageStatus::Failed)),
            Ok(Some(MessageStatus::Read)),
            Ok(None),
        ]
    );
    let stored = s.get_message(&a, &m.id).await.unwrap();
    assert_eq!(stored.status, MessageStatus::Read);
    assert_eq!(stored.updated_at, at(4 * SEC));
    let history: Vec<MessageStatus> = s
        .get_message_with_history(&a, &m.id)
        .await
        .map(|(_, h)| h)
        .unwrap()
        .iter()
        .map(|h| h.status)
        .collect();
    assert_eq!(
        history,
        vec![
            MessageStatus::Queued,
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ]
    );
    let failed = s.get_message(&a, &other.id).await.unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("why"));
    let statuses: Vec<MessageStatus> = events(&*s, &[EventType::MessageStatus])
        .await
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::MessageStatus(MessageStatusChanged {
                message_id, status, ..
            }) if message_id == m.id => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ],
        "one event per step, in order"
    );
    // Leaving `queued` ended both send jobs.
    assert!(
        s.claim_send_jobs(&fence, at(MIN), at(2 * MIN), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn advance_to_failed_only_from_queued_and_cancels_the_send(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;
    let r = MessageRef::Id(m.id.clone());
    let failed = s
        .advance_message_status(
            &fence(s, &d.uid).await,
            &r,
            MessageStatus::Failed,
            at(SEC),
            Some("number not on WhatsApp"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("number not on WhatsApp")
    );
    assert_eq!(s.get_message(&a, &m.id).await.unwrap(), failed);
    for status in MessageStatus::ALL {
        assert_eq!(
            s.advance_message_status(&fence(s, &d.uid).await, &r, status, at(2 * SEC), None)
                .await,
            Ok(None),
            "failed is final, {status} too"
        );
    }
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(MIN), at(2 * MIN), 10)
            .await
            .unwrap()
            .is_empty(),
        "a failed message is never sent"
    );
    let evs = events(s, &[EventType::MessageStatus]).await;
    assert_eq!(evs.len(), 1);
    match &evs[0].data {
        EventData::MessageStatus(c) => {
            assert_eq!(c.status, MessageStatus::Failed);
            assert_eq!(c.reason.as_deref(), Some("number not on WhatsApp"));
            assert_eq!(c.client_message_id, None);
        }
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn advance_by_provider_id_is_scoped_to_the_device(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d1 = device(s, &a).await;
    let d2 = device(s, &a).await;
    let m = send(s, &outbound(&d1, None, t0())).await;
    let pid = m.provider_message_id.clone();
    assert_eq!(
        s.advance_message_status(
            &fence(s, &d2.uid).await,
            &MessageRef::Provider {
                device: d2.uid.clone(),
                provider_message_id: pid.clone(),
            },
            MessageStatus::Sent,
            at(SEC),
            None
        )
        .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.advance_message_status(
            &fence(s, &d1.uid).await,
            &MessageRef::Provider {
                device: d1.uid.clone(),
                provider_message_id: "3EB0000000000000000000".into(),
            },
            MessageStatus::Sent,
            at(SEC),
            None
        )
        .await,
        Err(StoreError::NotFound)
    );
    let delivered = s
        .advance_message_status(
            &fence(s, &d1.uid).await,
            &MessageRef::Provider {
                device: d1.uid.clone(),
                provider_message_id: pid,
            },
            MessageStatus::Delivered,
            at(2 * SEC),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered.id, m.id);
    assert_eq!(delivered.status, MessageStatus::Delivered);
}

pub async fn list_messages_filters_and_pages(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let d1 = device(s, &a).await;
    let d2 = device(s, &a).await;
    let foreign = device(s, &b).await;
    // Seven messages a minute apart: d1 gets 0,2,4,6 (to phone 1), d2 gets 1,3,5 (to phone 2).
    let mut ids = Vec::new();
    for i in 0..7 {
        let (dev, to) = if i % 2 == 0 { (&d1, 1) } else { (&d2, 2) };
        let mut new = outbound(dev, None, at(i * MIN));
        new.to = phone(to).into();
        ids.push(send(s, &new).await.id);
    }
    send(s, &outbound(&foreign, None, t0())).await;
    // 1 and 4 are sent.
    for i in [1, 4] {
        s.advance_message_status(
            &fence(s, if i % 2 == 0 { &d1.uid } else { &d2.uid }).await,
            &MessageRef::Id(ids[i].clone()),
            MessageStatus::Sent,
            at(10 * MIN),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    }
    let list = |filter: MessageFilter, page: u32, limit: u32| {
        let a = a.clone();
        async move {
            s.list_messages(&a, &filter, PageRequest { page, limit })
                .await
                .unwrap()
        }
    };
    let idx = |page: &wagate_core::store::Page<wagate_core::message::Message>| -> Vec<usize> {
        page.items
            .iter()
            .map(|m| ids.iter().position(|id| *id == m.id).unwrap())
            .collect()
    };

    // Everything, newest first, paged.
    let p1 = list(MessageFilter::default(), 1, 3).await;
    assert_eq!((p1.total, p1.page, p1.limit), (7, 1, 3));
    assert_eq!(idx(&p1), vec![6, 5, 4]);
    let p3 = list(MessageFilter::default(), 3, 3).await;
    assert_eq!(idx(&p3), vec![0]);
    let p4 = list(MessageFilter::default(), 4, 3).await;
    assert_eq!((p4.total, p4.items.len()), (7, 0));
    let mut seen = HashSet::new();
    for page in 1..=3 {
        for i in idx(&list(MessageFilter::default(), page, 3).await) {
            assert!(seen.insert(i), "pages do not overlap");
        }
    }
    assert_eq!(seen.len(), 7);

    let by_device = MessageFilter {
        device_uid: Some(d2.uid.clone()),
        ..MessageFilter::default()
    };
    let p = list(by_device.clone(), 1, 10).await;
    assert_eq!((p.total, idx(&p)), (3, vec![5, 3, 1]));
    let p = list(by_device, 2, 2).await;
    assert_eq!((p.total, idx(&p)), (3, vec![1]));

    let by_status = MessageFilter {
        status: Some(MessageStatus::Sent),
        ..MessageFilter::default()
    };
    let p = list(by_status, 1, 10).await;
    assert_eq!((p.total, idx(&p)), (2, vec![4, 1]));
    let queued = MessageFilter {
        status: Some(MessageStatus::Queued),
        ..MessageFilter::default()
    };
    assert_eq!(list(queued, 1, 10).await.total, 5);

    let by_recipient = MessageFilter {
        to: Some(phone(1).into()),
        ..MessageFilter::default()
    };
    let p = list(by_recipient, 1, 10).await;
    assert_eq!((p.total, idx(&p)), (4, vec![6, 4, 2, 0]));

    // `since` is inclusive and `until` exclusive, as a half-open range of creation times.
    let window = MessageFilter {
        since: Some(at(2 * MIN)),
        until: Some(at(5 * MIN)),
        ..MessageFilter::default()
    };
    let p = list(window, 1, 10).await;
    assert_eq!((p.total, idx(&p)), (3, vec![4, 3, 2]));
    let since = MessageFilter {
        since: Some(at(5 * MIN + SEC)),
        ..MessageFilter::default()
    };
    assert_eq!(idx(&list(since, 1, 10).await), vec![6]);
    let until = MessageFilter {
        until: Some(at(MIN - SEC)),
        ..MessageFilter::default()
    };
    assert_eq!(idx(&list(until, 1, 10).await), vec![0]);

    let combined = MessageFilter {
        device_uid: Some(d1.uid.clone()),
        status: Some(MessageStatus::Queued),
        to: Some(phone(1).into()),
        since: Some(at(MIN)),
        until: Some(at(7 * MIN)),
    };
    let p = list(combined, 1, 10).await;
    assert_eq!((p.total, idx(&p)), (2, vec![6, 2]));
    let nobody = MessageFilter {
        to: Some(phone(3).into()),
        ..MessageFilter::default()
    };
    assert_eq!(list(nobody, 1, 10).await.total, 0);
}

/// A message's details (location, cards, poll with its secret, quote, mentions) are
/// stored whole with it and read back equal, in every read and in the claimed job; an
/// inbound message's too; `find_sent` and `find_inbound` find them by WhatsApp's id on
/// their device only.
pub async fn details_are_kept_with_outbound_and_inbound_messages(f: impl StoreFactory) {
    use wagate_core::content::{ContactCard, Details, Location, Poll, Quote};
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let details = Details {
        location: Some(Location::new(30.0444, -31.5, Some("Shop \"1\""), None).unwrap()),
        contacts: vec![ContactCard::new("Ana; B", phone(7), "c").unwrap()],
        poll: Some(
            Poll::new("q?", &["a".into(), "b".into()], true)
                .unwrap()
                .with_new_secret(),
        ),
        reply_to: Some(Quote {
            provider_message_id: "3EB0QUOTED".into(),
            from_me: false,
            from: Some(phone(8)),
            from_lid: Some("123@lid".into()),
            text: Some("the question ✓".into()),
        }),
        mentions: vec![phone(8), phone(9)],
        target: Some(Quote {
            provider_message_id: "3EB0TARGET".into(),
            from_me: true,
            from: None,
            from_lid: None,
            text: None,
        }),
        emoji: Some("👍🏽".into()),
        group_change: Some(wagate_core::chat::GroupChange {
            action: wagate_core::chat::MembershipChange::Promote,
            participants: vec![wagate_core::chat::GroupMember {
                phone: Some(phone(9)),
                lid: Some("456@lid".into()),
                role: wagate_core::chat::GroupRole::Admin,
            }],
        }),
        vote: Some(vec!["a".into(), "b".into()]),
        template: Some(
            wagate_core::content::Template::new(
                "order_ready",
                "en_US",
                vec![serde_json::json!({ "type": "body", "parameters": [{ "type": "text", "text": "Ana \"42\"" }] })],
            )
            .unwrap(),
        ),
    };
    let mut new = outbound(&d, None, at(SEC));
    new.kind = MessageKind::Location;
    new.details = details.clone();
    let m = send(s, &new).await;
    assert_eq!(m.details, details);
    assert_eq!(s.get_message(&a, &m.id).await.unwrap().details, details);
    let sent = s.find_sent(&d.uid, &m.provider_message_id).await.unwrap();
    assert_eq!(
        sent.map(|f| (f.id, f.details)),
        Some((m.id.clone(), details.clone()))
    );
    assert_eq!(s.find_sent(&d.uid, "3EB0NOSUCH").await.unwrap(), None);
    // WhatsApp names it otherwise when it takes it (the Cloud API's wamid): found by that
    // name from then on, once.
    let f = fence(s, &d.uid).await;
    assert!(
        s.assign_provider_id(&f, &m.provider_message_id, "wamid.HBgL")
            .await
            .unwrap()
    );
    assert!(
        !s.assign_provider_id(&f, &m.provider_message_id, "wamid.HBgL")
            .await
            .unwrap(),
        "a repeat renames nothing"
    );
    assert_eq!(
        s.find_sent(&d.uid, &m.provider_message_id).await.unwrap(),
        None
    );
    let renamed = s.find_sent(&d.uid, "wamid.HBgL").await.unwrap().unwrap();
    assert_eq!(renamed.id, m.id);
    let m = renamed;
    let listed = s
        .list_messages(&a, &Default::default(), PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!(listed.items[0].details, details);
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(2 * SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(jobs[0].message.details, details);
    // A message without details reads back with none.
    let plain = send(s, &outbound(&d, None, at(SEC))).await;
    assert!(
        s.get_message(&a, &plain.id)
            .await
            .unwrap()
            .details
            .is_empty()
    );

    let inbound = wagate_core::message::InboundMessage {
        id: MessageId::new(),
        account_id: a.clone(),
        device_uid: d.uid.clone(),
        provider_message_id: "WAINBOUND1".into(),
        from: Some(phone(8)),
        from_lid: None,
        from_name: None,
        kind: MessageKind::Poll,
        text: Some("Poll: q?".into()),
        media_id: None,
        details: details.clone(),
        is_group: false,
        group_id: None,
        group_name: None,
        timestamp: at(SEC),
        received_at: at(SEC),
        read_at: None,
    };
    s.record_inbound(&fence(s, &d.uid).await, &inbound, None)
        .await
        .unwrap();
    let found = s.find_inbound(&d.uid, "WAINBOUND1").await.unwrap().unwrap();
    assert_eq!(found.details, details);
    assert_eq!(found.id, inbound.id);
    assert_eq!(s.find_inbound(&d.uid, "WAOTHER").await.unwrap(), None);
    let other = device(s, &a).await;
    assert_eq!(
        s.find_inbound(&other.uid, "WAINBOUND1").await.unwrap(),
        None
    );
    assert_eq!(
        s.find_sent(&other.uid, &m.provider_message_id)
            .await
            .unwrap(),
        None
    );
    let page = s
        .list_inbound(&a, Some(&d.uid), PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!(page.items[0].details, details);
}
