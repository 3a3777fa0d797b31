//! Device leases and fencing: one node drives a device at a time, a takeover bumps the
//! epoch, and every device write of a node that lost the device is refused, changing
//! nothing.

use crate::fixture::{
    HOUR, MIN, SEC, StoreFactory, account, at, device, events, fence, fence_as, outbound, send, t0,
};
use wagate_core::MessageId;
use wagate_core::device::{DeviceStateChange, DeviceStatus};
use wagate_core::lease::NodeInfo;
use wagate_core::message::{InboundMessage, MessageKind, MessageStatus};
use wagate_core::store::{
    DeviceLeaseStore, DeviceStore, InboundStore, MessageRef, MessageStore, PageRequest, SendQueue,
    ServerKeyStore, StoreError,
};

pub async fn device_lease_acquire_renew_release(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    assert_eq!(s.get_device_lease(&d.uid).await.unwrap(), None);

    let first = s
        .acquire_device_lease(&d.uid, "node-a", at(0), at(15 * SEC))
        .await
        .unwrap()
        .expect("a device never leased is free");
    assert_eq!(first.owner.as_deref(), Some("node-a"));
    assert_eq!((first.epoch, first.expires_at), (1, at(15 * SEC)));
    assert_eq!(
        s.acquire_device_lease(&d.uid, "node-b", at(SEC), at(16 * SEC))
            .await
            .unwrap(),
        None,
        "held by node A"
    );
    // Renewal extends only the renewing node's unexpired leases.
    let renewed = s
        .renew_device_leases("node-a", at(5 * SEC), at(20 * SEC))
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1);
    assert_eq!((renewed[0].epoch, renewed[0].expires_at), (1, at(20 * SEC)));
    assert!(
        s.renew_device_leases("node-b", at(5 * SEC), at(20 * SEC))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.acquire_device_lease(&d.uid, "node-b", at(19 * SEC), at(30 * SEC))
            .await
            .unwrap(),
        None,
        "renewed past 15 s"
    );
    // Expired: renewal no longer finds it, and another node takes it with a new epoch.
    assert!(
        s.renew_device_leases("node-a", at(20 * SEC), at(40 * SEC))
            .await
            .unwrap()
            .is_empty(),
        "a lease that expired is not renewed"
    );
    let b = s
        .acquire_device_lease(&d.uid, "node-b", at(20 * SEC), at(35 * SEC))
        .await
        .unwrap()
        .expect("expired");
    assert_eq!((b.owner.as_deref(), b.epoch), (Some("node-b"), 2));
    // A release by the old holder does nothing; by the holder, it frees the device at once.
    assert!(
        !s.release_device_lease(&first.fence().unwrap())
            .await
            .unwrap()
    );
    let mut releases = s.subscribe_lease_releases();
    releases.borrow_and_update();
    assert!(s.release_device_lease(&b.fence().unwrap()).await.unwrap());
    assert!(releases.has_changed().unwrap(), "a release is announced");
    let released = s.get_device_lease(&d.uid).await.unwrap().unwrap();
    assert_eq!((released.owner, released.epoch), (None, 2));
    let c = s
        .acquire_device_lease(&d.uid, "node-c", at(21 * SEC), at(36 * SEC))
        .await
        .unwrap()
        .expect("released");
    assert_eq!(c.epoch, 3);
    // The holder itself may acquire again (a restarted node): a new epoch.
    let again = s
        .acquire_device_lease(&d.uid, "node-c", at(22 * SEC), at(37 * SEC))
        .await
        .unwrap()
        .expect("own lease");
    assert_eq!(again.epoch, 4);
    let all = s.list_device_leases().await.unwrap();
    assert_eq!(all, vec![again]);
}

fn node(id: &str, heartbeat_at: wagate_core::time::Timestamp, draining: bool) -> NodeInfo {
    NodeInfo {
        node_id: id.to_owned(),
        heartbeat_at,
        draining,
        address: Some(format!("http://{id}.internal:8080")),
    }
}

pub async fn nodes_heartbeat_and_leave(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    s.heartbeat_node(&node("node-a", at(0), false))
        .await
        .unwrap();
    s.heartbeat_node(&node("node-b", at(10 * SEC), false))
        .await
        .unwrap();
    // A restarted node may come back with another address, or none.
    let b = NodeInfo {
        address: None,
        ..node("node-b", at(20 * SEC), true)
    };
    s.heartbeat_node(&b).await.unwrap();
    let live = s.list_nodes(at(5 * SEC)).await.unwrap();
    assert_eq!(live, vec![b], "node A's heartbeat is too old");
    let all = s.list_nodes(at(0)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].address.as_deref(),
        Some("http://node-a.internal:8080"),
        "the address is kept"
    );
    s.remove_node("node-b").await.unwrap();
    let left = s.list_nodes(at(0)).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].node_id, "node-a");
}

/// Every node gets the same key under a name: the first stored wins, later candidates
/// (another node's, a restart's) are ignored, and names are independent.
pub async fn server_keys_first_stored_wins(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let (one, two) = ([1u8; 32], [2u8; 32]);
    assert_eq!(s.server_key("media-link", &one).await.unwrap(), one);
    assert_eq!(s.server_key("media-link", &two).await.unwrap(), one);
    assert_eq!(s.server_key("cluster", &two).await.unwrap(), two);
    // Racing first calls agree on one key.
    let racing = futures::future::join_all(
        (0u8..8).map(|i| async move { s.server_key("raced", &[i + 10; 32]).await.unwrap() }),
    )
    .await;
    assert!(racing.iter().all(|k| *k == racing[0]), "{racing:?}");
}

/// The point of fencing: a node that lost a device (paused past its lease, then taken
/// over) has every device write refused and changes nothing, while the new holder's
/// writes go through.
pub async fn fenced_writes_are_refused_after_a_takeover(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;
    let old = fence_as(s, &d.uid, "node-a").await;
    let jobs = s.claim_send_jobs(&old, at(SEC), at(MIN), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].job_id;
    // Node B takes the device over; node A wakes up and tries every kind of write.
    let new = fence_as(s, &d.uid, "node-b").await;
    let events_before = events(s, &[]).await.len();
    let fenced = |r: Result<(), StoreError>, what: &str| {
        assert_eq!(r, Err(StoreError::Fenced), "{what}");
    };
    fenced(
        s.claim_send_jobs(&old, at(2 * MIN), at(3 * MIN), 10)
            .await
            .map(drop),
        "claim",
    );
    fenced(
        s.record_handoff(&old, &[job], at(2 * SEC), at(HOUR)).await,
        "hand-off",
    );
    fenced(
        s.retry_send_job(&old, job, at(2 * SEC), "offline").await,
        "retry",
    );
    fenced(
        s.fail_send_job(&old, job, "refused", at(2 * SEC)).await,
        "fail",
    );
    fenced(
        s.advance_message_status(
            &old,
            &MessageRef::Id(m.id.clone()),
            MessageStatus::Sent,
            at(2 * SEC),
            None,
        )
        .await
        .map(drop),
        "receipt",
    );
    let state = DeviceStateChange {
        status: DeviceStatus::Connected,
        reason: None,
        phone: None,
        push_name: None,
        at: at(2 * SEC),
    };
    fenced(
        s.record_device_state(&old, &state, None).await.map(drop),
        "device state",
    );
    let inbound = InboundMessage {
        id: MessageId::new(),
        account_id: a.clone(),
        device_uid: d.uid.clone(),
        provider_message_id: "IN-FENCED".into(),
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
        timestamp: at(2 * SEC),
        received_at: at(2 * SEC),
        read_at: None,
    };
    fenced(
        s.record_inbound(&old, &inbound, None).await.map(drop),
        "inbound",
    );
    // A fence is for one device: it does not cover another's writes.
    let other = device(s, &a).await;
    let mut elsewhere = inbound.clone();
    elsewhere.device_uid = other.uid.clone();
    fenced(
        s.record_inbound(&new, &elsewhere, None).await.map(drop),
        "inbound for another device",
    );
    assert_eq!(
        events(s, &[]).await.len(),
        events_before,
        "nothing was written"
    );
    let (message, _) = s.get_message_with_history(&a, &m.id).await.unwrap();
    assert_eq!(message.status, MessageStatus::Queued);
    assert_eq!(
        s.list_inbound(&a, None, PageRequest { page: 1, limit: 10 })
            .await
            .unwrap()
            .total,
        0
    );

    // The new holder writes as usual, and takes the job node A had claimed at once.
    s.record_inbound(&new, &inbound, None).await.unwrap();
    s.record_device_state(&new, &state, None).await.unwrap();
    let taken = s
        .claim_send_jobs(&new, at(2 * SEC), at(2 * MIN), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    s.record_handoff(&new, &[taken[0].job_id], at(MIN), at(HOUR))
        .await
        .unwrap();
    let sent = s
        .advance_message_status(
            &new,
            &MessageRef::Id(m.id.clone()),
            MessageStatus::Sent,
            at(MIN + SEC),
            None,
        )
        .await
        .unwrap();
    assert_eq!(sent.map(|m| m.status), Some(MessageStatus::Sent));
    // A receipt under one device's fence cannot move another device's message.
    let theirs = send(s, &outbound(&other, None, t0())).await;
    assert_eq!(
        s.advance_message_status(
            &fence(s, &d.uid).await,
            &MessageRef::Id(theirs.id.clone()),
            MessageStatus::Sent,
            at(MIN + SEC),
            None,
        )
        .await
        .unwrap_err(),
        StoreError::NotFound
    );
}

/// Receipts are facts WhatsApp reports: the node that heard one commits it even after it
/// lost the device's lease (its protocol client acknowledged it already), forward only,
/// and only for the device's own messages.
pub async fn receipts_are_committed_without_the_lease(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, None, t0())).await;
    let old = fence_as(s, &d.uid, "node-a").await;
    let r = MessageRef::Id(m.id.clone());
    s.advance_message_status(&old, &r, MessageStatus::Sent, at(SEC), None)
        .await
        .unwrap();
    // Node B takes the device over; node A, resumed, hears the recipient read it.
    let _new = fence_as(s, &d.uid, "node-b").await;
    let by_provider = MessageRef::Provider {
        device: d.uid.clone(),
        provider_message_id: m.provider_message_id.clone(),
    };
    let read = s
        .record_receipt(&by_provider, MessageStatus::Read, at(2 * SEC))
        .await
        .unwrap();
    assert_eq!(read.map(|m| m.status), Some(MessageStatus::Read));
    // A late delivery receipt changes nothing; the history shows each step once.
    assert_eq!(
        s.record_receipt(&by_provider, MessageStatus::Delivered, at(3 * SEC))
            .await,
        Ok(None)
    );
    let (message, history) = s.get_message_with_history(&a, &m.id).await.unwrap();
    assert_eq!(message.status, MessageStatus::Read);
    let steps: Vec<MessageStatus> = history.iter().map(|h| h.status).collect();
    assert_eq!(
        steps,
        [
            MessageStatus::Queued,
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Read
        ]
    );
    // Another device's provider id names nothing of this device.
    let other = device(s, &a).await;
    let theirs = MessageRef::Provider {
        device: other.uid.clone(),
        provider_message_id: m.provider_message_id.clone(),
    };
    assert_eq!(
        s.record_receipt(&theirs, MessageStatus::Played, at(4 * SEC))
            .await,
        Err(StoreError::NotFound)
    );
}

/// The safety net behind the queued announcements: a node asks which of its devices have
/// a job it could claim now.
pub async fn due_devices_are_the_owners_with_claimable_jobs(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let mine = device(s, &a).await;
    let idle = device(s, &a).await;
    let theirs = device(s, &a).await;
    send(s, &outbound(&mine, None, t0())).await;
    send(s, &outbound(&theirs, None, t0())).await;
    let fence = fence_as(s, &mine.uid, "node-a").await;
    fence_as(s, &idle.uid, "node-a").await;
    fence_as(s, &theirs.uid, "node-b").await;
    assert_eq!(
        s.due_devices("node-a", at(SEC)).await.unwrap(),
        vec![mine.uid.clone()]
    );
    // Claimed: not due until the job lease runs out.
    s.claim_send_jobs(&fence, at(SEC), at(MIN), 10)
        .await
        .unwrap();
    assert!(
        s.due_devices("node-a", at(2 * SEC))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.due_devices("node-a", at(MIN)).await.unwrap(),
        vec![mine.uid.clone()]
    );
    assert_eq!(
        s.due_devices("node-b", at(SEC)).await.unwrap(),
        vec![theirs.uid.clone()]
    );
}
