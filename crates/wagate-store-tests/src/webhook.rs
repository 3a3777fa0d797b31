//! Webhook delivery: exactly-once fan-out by destination, one delivery in flight per
//! destination in order, the retry schedule, the attempt history and redelivery.

use crate::fixture::{SEC, StoreFactory, account, at, device, fence};
use wagate_core::message::{InboundMessage, MessageKind};
use wagate_core::store::{PageRequest, Store, StoreError};
use wagate_core::webhook::{
    AttemptFilter, AttemptRecord, ClaimedDelivery, DEFAULT_EVENT_TYPES, DeliveryNext, EndpointKind,
    MsgeraWebhooks, WebhookChange, WebhookStore,
};
use wagate_core::{AccountId, DeviceUid, MessageId};

/// The node that claims in the cases below; [`webhook_delivery_leases_belong_to_their_owner`]
/// brings a second.
const NODE: &str = "node-a";

fn msgera(personal: Option<&str>, group: Option<&str>) -> WebhookChange {
    WebhookChange::Msgera(MsgeraWebhooks {
        personal_url: personal.map(str::to_owned),
        group_url: group.map(str::to_owned),
        active: true,
        events: DEFAULT_EVENT_TYPES.to_vec(),
    })
}

async fn inbound(
    s: &impl Store,
    account: &AccountId,
    device: &DeviceUid,
    provider: &str,
    is_group: bool,
    ms: i64,
) {
    s.record_inbound(
        &fence(s, device).await,
        &InboundMessage {
            id: MessageId::new(),
            account_id: account.clone(),
            device_uid: device.clone(),
            provider_message_id: provider.into(),
            from: None,
            from_lid: None,
            from_name: None,
            kind: MessageKind::Text,
            text: Some("hi".into()),
            media_id: None,
            details: Default::default(),
            is_group,
            group_id: is_group.then(|| "g@g.us".into()),
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

fn record(delivery_id: i64, attempt: u32, success: bool, ms: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        owner: NODE.into(),
        attempt,
        url: "https://r.example/".into(),
        success,
        status_code: Some(if success { 200 } else { 500 }),
        latency_ms: 12,
        error: (!success).then(|| "HTTP 500".into()),
        response_snippet: Some("body".into()),
        at: at(ms),
    }
}

pub async fn webhook_fan_out_routes_once_per_event(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    // Before any configuration: consumed, nothing to deliver.
    inbound(s, &a, &d.uid, "EARLY", false, SEC).await;
    assert!(s.get_webhook_config(&a, &d.uid).await.unwrap().is_none());
    s.fan_out_events(100, at(SEC)).await.unwrap();
    assert!(
        s.claim_deliveries(NODE, at(SEC), at(60 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty()
    );

    let c = s
        .change_webhook_config(
            &a,
            &d.uid,
            &msgera(Some("https://p/"), Some("https://g/")),
            "whsec_AAAA",
            at(2 * SEC),
        )
        .await
        .unwrap();
    assert_eq!(c.secret, "whsec_AAAA");
    let other = account(s).await;
    assert_eq!(
        s.get_webhook_config(&other, &d.uid).await.unwrap_err(),
        StoreError::NotFound
    );
    inbound(s, &a, &d.uid, "DIRECT", false, 3 * SEC).await;
    inbound(s, &a, &d.uid, "GROUP", true, 4 * SEC).await;
    assert_eq!(s.fan_out_events(100, at(5 * SEC)).await.unwrap(), 2);
    assert_eq!(
        s.fan_out_events(100, at(5 * SEC)).await.unwrap(),
        0,
        "once only"
    );
    let mut claimed = s
        .claim_deliveries(NODE, at(5 * SEC), at(60 * SEC), 10, 1)
        .await
        .unwrap();
    claimed.sort_by_key(|c| c.delivery_id);
    let kinds: Vec<EndpointKind> = claimed.iter().map(|c| c.endpoint).collect();
    assert_eq!(kinds, vec![EndpointKind::Personal, EndpointKind::Group]);
    assert!(claimed.iter().all(|c| c.attempt == 1 && c.config.is_some()));
}

/// A device with a personal webhook and `n` inbound messages (one a second from 1 s),
/// fanned out at `n + 1` s: `n` deliveries in line for one destination.
async fn one_destination_with_inbound(s: &impl Store, n: i64) {
    let a = account(s).await;
    let d = device(s, &a).await;
    s.change_webhook_config(
        &a,
        &d.uid,
        &msgera(Some("https://p/"), None),
        "whsec_AAAA",
        at(0),
    )
    .await
    .unwrap();
    for i in 1..=n {
        inbound(s, &a, &d.uid, &format!("M{i}"), false, i * SEC).await;
    }
    s.fan_out_events(100, at((n + 1) * SEC)).await.unwrap();
}

pub async fn webhook_one_in_flight_per_destination_in_order(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    one_destination_with_inbound(s, 3).await;
    let first = s
        .claim_deliveries(NODE, at(4 * SEC), at(60 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "one in flight per destination");
    assert!(
        s.claim_deliveries(NODE, at(5 * SEC), at(60 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let head = first[0].delivery_id;
    s.finish_attempt(
        &record(head, 1, false, 6 * SEC),
        DeliveryNext::RetryAt(at(20 * SEC)),
    )
    .await
    .unwrap();
    // The head waits for its retry, and the rest wait behind it.
    assert!(
        s.claim_deliveries(NODE, at(7 * SEC), at(60 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.next_delivery_at(1).await.unwrap(), Some(at(20 * SEC)));
    let retry = s
        .claim_deliveries(NODE, at(20 * SEC), at(80 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].delivery_id, retry[0].attempt), (head, 2));
    assert_eq!(retry[0].event.id, first[0].event.id);
    // A lease released (shutdown) makes it claimable again at once.
    s.release_deliveries(NODE).await.unwrap();
    let again = s
        .claim_deliveries(NODE, at(21 * SEC), at(80 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(again[0].delivery_id, head);
    s.finish_attempt(&record(head, 2, true, 22 * SEC), DeliveryNext::Succeeded)
        .await
        .unwrap();
    let next = s
        .claim_deliveries(NODE, at(23 * SEC), at(80 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].delivery_id > head);
    assert!(next[0].event.seq > first[0].event.seq, "in event order");
}

pub async fn webhook_window_bounds_in_flight_per_destination(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    one_destination_with_inbound(s, 4).await;
    let seq = |c: &ClaimedDelivery| c.event.seq;
    let first = s
        .claim_deliveries(NODE, at(5 * SEC), at(60 * SEC), 10, 2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "a window of two");
    assert!(seq(&first[0]) < seq(&first[1]), "oldest first");
    assert!(
        s.claim_deliveries(NODE, at(5 * SEC), at(60 * SEC), 10, 2)
            .await
            .unwrap()
            .is_empty(),
        "the window is full"
    );
    s.finish_attempt(
        &record(first[0].delivery_id, 1, true, 6 * SEC),
        DeliveryNext::Succeeded,
    )
    .await
    .unwrap();
    let third = s
        .claim_deliveries(NODE, at(6 * SEC), at(60 * SEC), 10, 2)
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    assert!(seq(&third[0]) > seq(&first[1]), "the next in line");
    // A delivery waiting for its retry keeps its place in the window.
    s.finish_attempt(
        &record(first[1].delivery_id, 1, false, 7 * SEC),
        DeliveryNext::RetryAt(at(20 * SEC)),
    )
    .await
    .unwrap();
    s.finish_attempt(
        &record(third[0].delivery_id, 1, true, 7 * SEC),
        DeliveryNext::Succeeded,
    )
    .await
    .unwrap();
    let fourth = s
        .claim_deliveries(NODE, at(8 * SEC), at(60 * SEC), 10, 2)
        .await
        .unwrap();
    assert_eq!(fourth.len(), 1);
    assert!(seq(&fourth[0]) > seq(&third[0]));
    assert_eq!(s.next_delivery_at(2).await.unwrap(), Some(at(20 * SEC)));
    let retry = s
        .claim_deliveries(NODE, at(20 * SEC), at(80 * SEC), 10, 2)
        .await
        .unwrap();
    assert_eq!(
        (retry.len(), retry[0].delivery_id, retry[0].attempt),
        (1, first[1].delivery_id, 2)
    );
}

pub async fn webhook_history_filters_and_redeliver(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    s.change_webhook_config(
        &a,
        &d.uid,
        &msgera(Some("https://p/"), None),
        "whsec_AAAA",
        at(0),
    )
    .await
    .unwrap();
    inbound(s, &a, &d.uid, "M1", false, SEC).await;
    s.fan_out_events(100, at(SEC)).await.unwrap();
    let c = s
        .claim_deliveries(NODE, at(SEC), at(60 * SEC), 10, 1)
        .await
        .unwrap()
        .remove(0);
    s.finish_attempt(
        &record(c.delivery_id, 1, false, 2 * SEC),
        DeliveryNext::RetryAt(at(3 * SEC)),
    )
    .await
    .unwrap();
    let c = s
        .claim_deliveries(NODE, at(3 * SEC), at(60 * SEC), 10, 1)
        .await
        .unwrap()
        .remove(0);
    s.finish_attempt(
        &record(c.delivery_id, 2, false, 4 * SEC),
        DeliveryNext::Failed,
    )
    .await
    .unwrap();
    let page = PageRequest { page: 1, limit: 10 };
    let all = s
        .list_webhook_attempts(&a, &AttemptFilter::default(), page)
        .await
        .unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(all.items[0].attempt, 2, "newest first");
    assert_eq!(all.items[0].status_code, Some(500));
    assert_eq!(all.items[0].event_id, c.event.id);
    let ok = AttemptFilter {
        device_uid: Some(d.uid.clone()),
        success: Some(true),
    };
    assert_eq!(
        s.list_webhook_attempts(&a, &ok, page).await.unwrap().total,
        0
    );
    let other = account(s).await;
    assert_eq!(
        s.list_webhook_attempts(&other, &AttemptFilter::default(), page)
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        s.redeliver(&other, all.items[0].id, at(5 * SEC))
            .await
            .unwrap_err(),
        StoreError::NotFound
    );
    let new = s.redeliver(&a, all.items[0].id, at(5 * SEC)).await.unwrap();
    let again = s
        .claim_deliveries(NODE, at(5 * SEC), at(60 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery_id, new);
    assert_eq!(again[0].attempt, 1);
    assert_eq!(again[0].event.id, c.event.id, "the same event id");
}

/// Several nodes share the deliveries: a lease is skipped by every other node until it
/// expires, a node releases only its own, and a node whose lease was taken over after
/// expiring cannot move the delivery on (its attempt is still history).
pub async fn webhook_delivery_leases_belong_to_their_owner(f: impl StoreFactory) {
    const OTHER: &str = "node-b";
    let fx = f.make().await;
    let s = &*fx.store;
    one_destination_with_inbound(s, 2).await;
    let a = s
        .claim_deliveries(NODE, at(3 * SEC), at(10 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    let head = a[0].delivery_id;
    assert!(
        s.claim_deliveries(OTHER, at(4 * SEC), at(30 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty(),
        "leased by another node"
    );
    s.release_deliveries(OTHER).await.unwrap();
    assert!(
        s.claim_deliveries(OTHER, at(5 * SEC), at(30 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty(),
        "a release by another node leaves the lease"
    );
    // The lease expires (node A stalled); node B takes the delivery over.
    let b = s
        .claim_deliveries(OTHER, at(11 * SEC), at(40 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].delivery_id, b[0].attempt), (head, 1));
    // Node A wakes up and reports its attempt: history, but the delivery stays B's.
    s.finish_attempt(&record(head, 1, true, 12 * SEC), DeliveryNext::Succeeded)
        .await
        .unwrap();
    s.release_deliveries(NODE).await.unwrap();
    assert!(
        s.claim_deliveries(NODE, at(13 * SEC), at(40 * SEC), 10, 1)
            .await
            .unwrap()
            .is_empty(),
        "still leased by node B, and the next waits behind it"
    );
    let mut by_b = record(head, 1, true, 14 * SEC);
    by_b.owner = OTHER.into();
    s.finish_attempt(&by_b, DeliveryNext::Succeeded)
        .await
        .unwrap();
    let next = s
        .claim_deliveries(NODE, at(15 * SEC), at(40 * SEC), 10, 1)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].delivery_id > head, "B's success moved the line on");
    let a_account = s
        .list_webhook_attempts(
            &next[0].event.account_id,
            &AttemptFilter::default(),
            PageRequest { page: 1, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!(a_account.total, 2, "both attempts are history");
    assert_eq!(
        s.finish_attempt(
            &record(i64::MAX, 1, true, 16 * SEC),
            DeliveryNext::Succeeded
        )
        .await
        .unwrap_err(),
        StoreError::NotFound
    );
}
