//! The send queue: claiming with leases, outcomes, scheduling and budget windows.

use crate::fixture::{
    HOUR, MIN, OWNER, SEC, StoreFactory, account, at, device, events, fence, fence_as, outbound,
    send, t0,
};
use std::collections::HashSet;
use std::sync::Arc;
use wagate_core::event::{EventData, EventType};
use wagate_core::message::{Message, MessageStatus};
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::store::{BudgetUsage, MessageRef, StoreError};

fn ids(jobs: &[wagate_core::store::SendJob]) -> Vec<wagate_core::MessageId> {
    jobs.iter().map(|j| j.message.id.clone()).collect()
}

pub async fn claim_honours_run_at_order_and_limit(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    let m1 = send(s, &outbound(&d, None, t0())).await;
    let mut later = outbound(&d, None, at(SEC));
    later.send_at = Some(at(10 * MIN));
    let m2 = send(s, &later).await;
    assert_eq!(m2.send_at, Some(at(10 * MIN)));
    let m3 = send(s, &outbound(&d, None, at(2 * SEC))).await;
    let m4 = send(s, &outbound(&d, None, at(3 * SEC))).await;
    send(s, &outbound(&other, None, t0())).await;

    // Nothing is due before it was created.
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(-SEC), at(HOUR), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let first = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(5 * SEC), at(HOUR), 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&first),
        vec![m1.id.clone(), m3.id.clone()],
        "oldest first, up to the limit"
    );
    assert!(first.iter().all(|j| j.attempt == 1));
    assert_ne!(first[0].job_id, first[1].job_id);
    assert_eq!(first[0].message, m1);
    let rest = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(5 * SEC), at(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&rest),
        vec![m4.id.clone()],
        "scheduled ones wait for send_at"
    );
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(10 * MIN - SEC), at(HOUR), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let scheduled = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(10 * MIN), at(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(ids(&scheduled), vec![m2.id.clone()]);
    assert_eq!(scheduled[0].message, m2);
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(20 * MIN), at(HOUR), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn claim_leases_exclude_other_claimers_until_expiry(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;

    let first = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(ids(&first), vec![m.id.clone()]);
    assert_eq!(first[0].attempt, 1);
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(30 * SEC), at(2 * MIN), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The worker holding it died: once the lease ran out the job is claimed again.
    let second = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(2 * MIN), at(3 * MIN), 10)
        .await
        .unwrap();
    assert_eq!(ids(&second), vec![m.id.clone()]);
    assert_eq!(second[0].job_id, first[0].job_id);
    assert_eq!(second[0].attempt, 2);
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(2 * MIN + SEC), at(4 * MIN), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let third = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(4 * MIN), at(5 * MIN), 10)
        .await
        .unwrap();
    assert_eq!(third[0].attempt, 3);

    // Releasing is per device: another device's lease holds.
    let other = device(s, &a).await;
    send(s, &outbound(&other, None, t0())).await;
    assert_eq!(
        s.claim_send_jobs(&fence(s, &other.uid).await, at(4 * MIN), at(HOUR), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    s.release_send_jobs(&d.uid, OWNER).await.unwrap();
    assert!(
        s.claim_send_jobs(&fence(s, &other.uid).await, at(5 * MIN), at(HOUR), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(4 * MIN + SEC), at(HOUR), 10)
            .await
            .unwrap()
            .len(),
        1,
        "the released job is claimable at once"
    );
}

pub async fn claim_concurrent_claimers_never_share_a_job(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = fx.store.clone();
    let a = account(&*s).await;
    let d = device(&*s, &a).await;
    for i in 0..10 {
        send(&*s, &outbound(&d, None, at(i))).await;
    }
    let fence = fence(&*s, &d.uid).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = Arc::clone(&s);
        let fence = fence.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_send_jobs(&fence, at(SEC), at(MIN), 3)
                .await
                .unwrap()
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for job in t.await.unwrap() {
            assert!(seen.insert(job.job_id), "job {} claimed twice", job.job_id);
            assert_eq!(job.attempt, 1);
        }
    }
    assert_eq!(seen.len(), 10);
}

pub async fn handoff_fail_retry_and_release(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let mut ms: Vec<Message> = Vec::new();
    for i in 0..5 {
        ms.push(send(s, &outbound(&d, Some(&format!("c{i}")), at(i))).await);
    }
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&jobs),
        ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    );
    let job = |i: usize| jobs[i].job_id;
    let unknown = jobs.iter().map(|j| j.job_id).max().unwrap() + 1000;

    // Handed over: counted as handed, status untouched (the server ack moves it to
    // sent), the job set aside until the ack is due.
    s.record_handoff(&fence(s, &d.uid).await, &[job(0)], at(2 * SEC), at(HOUR))
        .await
        .unwrap();
    assert_eq!(
        s.get_message(&a, &ms[0].id).await.unwrap().status,
        MessageStatus::Queued
    );
    assert_eq!(
        s.budget_usage(&d.uid, at(3 * SEC))
            .await
            .unwrap()
            .handed_last_minute,
        1
    );

    // Failed for good: the message fails with the reason, in history and as an event.
    s.fail_send_job(
        &fence(s, &d.uid).await,
        job(1),
        "not on WhatsApp",
        at(3 * SEC),
    )
    .await
    .unwrap();
    assert_eq!(
        s.fail_send_job(&fence(s, &d.uid).await, job(1), "again", at(3 * SEC))
            .await,
        Err(StoreError::NotFound)
    );
    let failed = s.get_message(&a, &ms[1].id).await.unwrap();
    assert_eq!(failed.status, MessageStatus::Failed);
    assert_eq!(failed.failure_reason.as_deref(), Some("not on WhatsApp"));
    let last = s
        .get_message_with_history(&a, &ms[1].id)
        .await
        .map(|(_, h)| h)
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.status, last.at, last.reason.as_deref()),
        (MessageStatus::Failed, at(3 * SEC), Some("not on WhatsApp"))
    );
    let evs = events(s, &[EventType::MessageStatus]).await;
    assert_eq!(evs.len(), 1);
    assert!(matches!(
        &evs[0].data,
        EventData::MessageStatus(c) if c.message_id == ms[1].id
            && c.status == MessageStatus::Failed
            && c.client_message_id.as_deref() == Some("c1")
    ));
    // A failure is not handed.
    assert_eq!(
        s.budget_usage(&d.uid, at(4 * SEC))
            .await
            .unwrap()
            .handed_last_minute,
        1
    );

    // Retried: released until its new run time, then claimed with its attempt counted.
    s.retry_send_job(
        &fence(s, &d.uid).await,
        job(2),
        at(10 * MIN),
        "not connected",
    )
    .await
    .unwrap();
    // Released: claimable at once by anyone.
    s.release_send_jobs(&d.uid, OWNER).await.unwrap();
    let now = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(5 * SEC), at(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(ids(&now), vec![ms[3].id.clone(), ms[4].id.clone()]);
    assert!(now.iter().all(|j| j.attempt == 2));
    let retried = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(10 * MIN), at(11 * MIN), 10)
        .await
        .unwrap();
    assert_eq!(ids(&retried), vec![ms[2].id.clone()]);
    assert_eq!(retried[0].attempt, 2);
    assert_eq!(
        s.get_message(&a, &ms[2].id).await.unwrap().status,
        MessageStatus::Queued
    );

    // A send WhatsApp already took cannot fail: its ack ended the job, the message stays
    // sent.
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(ms[3].id.clone()),
        MessageStatus::Sent,
        at(6 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s.fail_send_job(
            &fence(s, &d.uid).await,
            now[0].job_id,
            "late error",
            at(7 * SEC)
        )
        .await,
        Err(StoreError::NotFound)
    );
    let sent = s.get_message(&a, &ms[3].id).await.unwrap();
    assert_eq!(
        (sent.status, sent.failure_reason),
        (MessageStatus::Sent, None)
    );

    assert_eq!(
        s.retry_send_job(&fence(s, &d.uid).await, unknown, at(SEC), "offline")
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.fail_send_job(&fence(s, &d.uid).await, unknown, "x", at(SEC))
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.retry_send_job(&fence(s, &d.uid).await, unknown, at(SEC), "x")
            .await,
        Err(StoreError::NotFound)
    );
    // Releasing a device with nothing leased is fine.
    s.release_send_jobs(&wagate_core::DeviceUid::new(), OWNER)
        .await
        .unwrap();
}

pub async fn next_send_job_at_follows_run_at_and_leases(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), None);
    let mut later = outbound(&d, None, t0());
    later.send_at = Some(at(10 * MIN));
    send(s, &later).await;
    assert_eq!(
        s.next_send_job_at(&d.uid).await.unwrap(),
        Some(at(10 * MIN))
    );
    send(s, &outbound(&d, None, at(SEC))).await;
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), Some(at(SEC)));
    // A leased job becomes claimable when its lease ends.
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(2 * SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), Some(at(MIN)));
    s.release_send_jobs(&d.uid, OWNER).await.unwrap();
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), Some(at(SEC)));
    s.retry_send_job(
        &fence(s, &d.uid).await,
        jobs[0].job_id,
        at(20 * MIN),
        "offline",
    )
    .await
    .unwrap();
    assert_eq!(
        s.next_send_job_at(&d.uid).await.unwrap(),
        Some(at(10 * MIN))
    );
    assert_eq!(s.next_send_job_at(&other.uid).await.unwrap(), None);
    let all = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(HOUR), at(2 * HOUR), 10)
        .await
        .unwrap();
    for j in &all {
        // The server's ack ends the job.
        s.advance_message_status(
            &fence(s, &d.uid).await,
            &MessageRef::Id(j.message.id.clone()),
            MessageStatus::Sent,
            at(HOUR),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    }
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), None);
}

pub async fn budget_usage_counts_rolling_windows(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    for i in 0..3 {
        send(s, &outbound(&d, None, at(i))).await;
    }
    send(s, &outbound(&other, None, t0())).await;
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(SEC), at(2 * HOUR), 10)
        .await
        .unwrap();
    for (job, t) in jobs.iter().zip([SEC, 30 * SEC, 5 * MIN]) {
        s.record_handoff(&fence(s, &d.uid).await, &[job.job_id], at(t), at(2 * HOUR))
            .await
            .unwrap();
    }

    let uid = &d.uid;
    let usage = |t| async move { s.budget_usage(uid, at(t)).await.unwrap() };
    let expect = |day, hour, minute| BudgetUsage {
        accepted_last_day: day,
        handed_last_hour: hour,
        handed_last_minute: minute,
    };
    assert_eq!(usage(40 * SEC).await, expect(3, 2, 2));
    assert_eq!(usage(5 * MIN + 10 * SEC).await, expect(3, 3, 1));
    assert_eq!(usage(7 * MIN).await, expect(3, 3, 0));
    assert_eq!(usage(2 * HOUR).await, expect(3, 0, 0));
    assert_eq!(usage(23 * HOUR).await, expect(3, 0, 0));
    assert_eq!(usage(25 * HOUR).await, expect(0, 0, 0));
    assert_eq!(
        s.budget_usage(&other.uid, at(40 * SEC)).await.unwrap(),
        expect(1, 0, 0)
    );
    assert_eq!(
        s.budget_usage(&wagate_core::DeviceUid::new(), at(40 * SEC))
            .await
            .unwrap(),
        BudgetUsage::default()
    );
}

pub async fn a_handed_job_waits_for_the_ack_then_is_claimable_again(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let acked = outbound(&d, None, t0());
    let lost = outbound(&d, None, t0());
    send(s, &acked).await;
    send(s, &lost).await;
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    // Handed over together, recorded together.
    let ids: Vec<i64> = jobs.iter().map(|j| j.job_id).collect();
    s.record_handoff(&fence(s, &d.uid).await, &ids, at(2 * SEC), at(30 * SEC))
        .await
        .unwrap();
    // Both hand-offs count against the budgets at once.
    assert_eq!(
        s.budget_usage(&d.uid, at(3 * SEC))
            .await
            .unwrap()
            .handed_last_minute,
        2
    );
    // Nothing is claimable while the acks are awaited.
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(3 * SEC), at(MIN), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.next_send_job_at(&d.uid).await.unwrap(),
        Some(at(30 * SEC))
    );
    // The ack of one ends its job; the other is handed over again after the deadline.
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(acked.id.clone()),
        MessageStatus::Sent,
        at(4 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    let again = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(31 * SEC), at(2 * MIN), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.id, lost.id);
    assert_eq!(again[0].attempt, 2);
    // An ack that ended the job before the hand-off was recorded still counts the hand-off.
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(lost.id.clone()),
        MessageStatus::Sent,
        at(32 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    s.record_handoff(
        &fence(s, &d.uid).await,
        &[again[0].job_id],
        at(32 * SEC),
        at(62 * SEC),
    )
    .await
    .unwrap();
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(HOUR), at(2 * HOUR), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.budget_usage(&d.uid, at(33 * SEC))
            .await
            .unwrap()
            .handed_last_minute,
        3,
        "the two first hand-offs and the second one of the lost message"
    );
}

pub async fn job_ids_are_never_reused(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let first = outbound(&d, None, t0());
    send(s, &first).await;
    let old = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(SEC), at(MIN), 10)
        .await
        .unwrap();
    // The ack ends the job before the worker records the hand-off.
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(first.id.clone()),
        MessageStatus::Sent,
        at(2 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    let next = outbound(&d, None, at(2 * SEC));
    send(s, &next).await;
    // The late bookkeeping for the old job must not touch the new message's job.
    s.record_handoff(
        &fence(s, &d.uid).await,
        &[old[0].job_id],
        at(3 * SEC),
        at(HOUR),
    )
    .await
    .unwrap();
    assert_eq!(
        s.retry_send_job(&fence(s, &d.uid).await, old[0].job_id, at(HOUR), "late")
            .await,
        Err(StoreError::NotFound)
    );
    let claimed = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(4 * SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the new job is still due");
    assert_eq!(claimed[0].message.id, next.id);
    assert_ne!(claimed[0].job_id, old[0].job_id);
}

/// When a device moves to another node, the new holder takes the device's jobs at once:
/// the previous holder is fenced (it can record nothing more), so its job leases mean
/// nothing, and waiting them out would only delay the messages. A message it may already
/// have handed over goes again under the same WhatsApp id, which recipients show once.
pub async fn a_takeover_frees_the_previous_holders_job_leases(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;

    let b = fence_as(s, &d.uid, "process-b").await;
    let held = s.claim_send_jobs(&b, at(SEC), at(MIN), 10).await.unwrap();
    assert_eq!(ids(&held), vec![m.id.clone()]);
    // The device moves to this node (`OWNER`) while node B's job lease still runs.
    let mine = fence(s, &d.uid).await;
    let taken = s
        .claim_send_jobs(&mine, at(2 * SEC), at(MIN), 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), vec![m.id.clone()], "taken over at once");
    assert_eq!(taken[0].job_id, held[0].job_id);
    assert_eq!(taken[0].attempt, 2);
    assert_eq!(
        taken[0].message.provider_message_id, held[0].message.provider_message_id,
        "sent again under the same WhatsApp id"
    );
    // Node B lost the device: it cannot claim, even once the job lease expires.
    assert_eq!(
        s.claim_send_jobs(&b, at(3 * MIN), at(4 * MIN), 10)
            .await
            .unwrap_err(),
        StoreError::Fenced
    );
}

/// Releasing (a graceful shutdown) frees only the releasing owner's leases: a node
/// starting or stopping never frees a job another node is sending.
pub async fn release_by_another_owner_leaves_the_lease(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;
    let mine = fence(s, &d.uid).await;
    let claimed = s
        .claim_send_jobs(&mine, at(SEC), at(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), vec![m.id.clone()]);

    // A node that does not hold the lease releases: nothing changes.
    s.release_send_jobs(&d.uid, "process-c").await.unwrap();
    assert!(
        s.claim_send_jobs(&mine, at(2 * SEC), at(HOUR), 10)
            .await
            .unwrap()
            .is_empty(),
        "a release by a non-owner freed a lease"
    );
    // The owner's release frees its job at once.
    s.release_send_jobs(&d.uid, OWNER).await.unwrap();
    let freed = s
        .claim_send_jobs(&mine, at(3 * SEC), at(HOUR), 10)
        .await
        .unwrap();
    assert_eq!(ids(&freed), vec![m.id.clone()]);
}
