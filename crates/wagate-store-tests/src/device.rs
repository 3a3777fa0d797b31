//! Devices: creation, isolation, patches, soft deletion and connection state.

use crate::fixture::{
    HOUR, MIN, SEC, StoreFactory, account, at, device, events, fence, new_device, outbound, phone,
    send, t0,
};
use wagate_core::DeviceUid;
use wagate_core::device::{
    DevicePatch, DeviceStateChange, DeviceStatus, EngineKind, NewDevice, Pacing, SafetyLimits,
};
use wagate_core::engine::provider_message_id;
use wagate_core::event::{DeviceStatusChanged, EventData, EventType};
use wagate_core::message::MessageStatus;
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::store::{MessageFilter, MessageRef, PageRequest, StoreError};

pub async fn device_create_get_and_list(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let mut new = new_device(&a, at(5 * SEC));
    new.name = "sales".into();
    new.engine = EngineKind::WhatsappWeb;
    new.limits = SafetyLimits {
        per_day: 11,
        per_hour: 7,
        per_minute: 3,
    };
    new.pacing = Pacing {
        min_delay_ms: 100,
        max_delay_ms: 900,
        typing_indicator: true,
    };
    let d1 = s.create_device(&new).await.unwrap();
    assert_eq!(d1.uid, new.uid);
    assert_eq!(d1.account_id, a);
    assert_eq!(d1.name, "sales");
    assert_eq!(d1.engine, EngineKind::WhatsappWeb);
    assert_eq!(d1.status, DeviceStatus::Created);
    assert_eq!(d1.status_reason, None);
    assert_eq!(d1.phone, None);
    assert_eq!(d1.push_name, None);
    assert_eq!(d1.limits, new.limits);
    assert_eq!(d1.pacing, new.pacing);
    assert_eq!(d1.created_at, at(5 * SEC));
    assert_eq!(d1.updated_at, at(5 * SEC));
    assert_eq!(d1.connected_at, None);

    assert_eq!(s.get_device(&a, &d1.uid).await.unwrap(), d1);
    assert_eq!(s.get_device_by_uid(&d1.uid).await.unwrap(), d1);
    assert_eq!(
        s.get_device_by_uid(&DeviceUid::new()).await,
        Err(StoreError::NotFound)
    );

    let d2 = s.create_device(&new_device(&a, at(6 * SEC))).await.unwrap();
    let d3 = s.create_device(&new_device(&b, at(4 * SEC))).await.unwrap();
    let listed: Vec<_> = s
        .list_devices(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.uid)
        .collect();
    assert_eq!(listed, vec![d1.uid.clone(), d2.uid.clone()], "oldest first");
    let all: Vec<_> = s
        .list_all_devices()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.uid)
        .collect();
    assert_eq!(all, vec![d3.uid.clone(), d1.uid.clone(), d2.uid.clone()]);

    // The uid is unique; a device needs an existing account.
    assert!(matches!(
        s.create_device(&new).await,
        Err(StoreError::Conflict(_))
    ));
    let orphan = new_device(&wagate_core::AccountId::new(), t0());
    assert!(s.create_device(&orphan).await.is_err());
    assert_eq!(s.list_all_devices().await.unwrap().len(), 3);
}

/// Pages of the account's live devices, oldest first like `list_devices`, with the
/// total; deleted devices and other accounts' are neither listed nor counted.
pub async fn device_list_pages(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let mut uids = Vec::new();
    for i in 0..5 {
        uids.push(
            s.create_device(&new_device(&a, at(i * SEC)))
                .await
                .unwrap()
                .uid,
        );
    }
    s.create_device(&new_device(&b, at(SEC))).await.unwrap();
    s.delete_device(&a, &uids.remove(1), at(10 * SEC))
        .await
        .unwrap();
    let page = |page, limit| s.list_devices_page(&a, PageRequest { page, limit });
    let first = page(1, 3).await.unwrap();
    assert_eq!((first.total, first.page, first.limit), (4, 1, 3));
    let second = page(2, 3).await.unwrap();
    let listed: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|d| d.uid.clone())
        .collect();
    assert_eq!(listed, uids, "every live device once, oldest first");
    assert!(page(3, 3).await.unwrap().items.is_empty());
    assert_eq!(page(1, 100).await.unwrap().items.len(), 4);
}

pub async fn device_isolation_between_accounts(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let d = device(s, &a).await;
    let m = send(s, &outbound(&d, Some("c1"), t0())).await;

    assert_eq!(s.get_device(&b, &d.uid).await, Err(StoreError::NotFound));
    assert!(s.list_devices(&b).await.unwrap().is_empty());
    let patch = DevicePatch {
        name: Some("stolen".into()),
        ..DevicePatch::default()
    };
    assert_eq!(
        s.update_device(&b, &d.uid, &patch).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.delete_device(&b, &d.uid, at(SEC)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.set_instance_token_hash(&b, &d.uid, &[1; 32]).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_message(&b, &m.id).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_message_with_history(&b, &m.id).await.map(|(_, h)| h),
        Err(StoreError::NotFound)
    );
    let page = s
        .list_messages(
            &b,
            &MessageFilter::default(),
            PageRequest { page: 1, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (0, 0));
    let page = s
        .list_messages(
            &b,
            &MessageFilter {
                device_uid: Some(d.uid.clone()),
                ..MessageFilter::default()
            },
            PageRequest { page: 1, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    // Accepting onto another account's device is refused.
    let mut foreign = outbound(&d, Some("c2"), t0());
    foreign.account_id = b.clone();
    assert_eq!(
        s.accept_outbound_message(&foreign, &provider_message_id(&foreign.id), 100)
            .await,
        Err(StoreError::NotFound)
    );

    // Nothing changed for the owner.
    let still = s.get_device(&a, &d.uid).await.unwrap();
    assert_eq!(still.name, d.name);
    let (_, hash) = s.get_instance_credential(&d.uid).await.unwrap();
    assert_eq!(hash, [7; 32]);
    assert_eq!(s.get_message(&a, &m.id).await.unwrap(), m);
}

pub async fn device_patch_changes_only_given_fields(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;

    let renamed = s
        .update_device(
            &a,
            &d.uid,
            &DevicePatch {
                name: Some("support".into()),
                ..DevicePatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "support");
    assert_eq!(renamed.limits, d.limits);
    assert_eq!(renamed.pacing, d.pacing);
    assert!(renamed.updated_at >= d.updated_at);

    let limits = SafetyLimits {
        per_day: 5,
        per_hour: 4,
        per_minute: 3,
    };
    let pacing = Pacing {
        min_delay_ms: 1,
        max_delay_ms: 2,
        typing_indicator: true,
    };
    let tuned = s
        .update_device(
            &a,
            &d.uid,
            &DevicePatch {
                name: None,
                limits: Some(limits),
                pacing: Some(pacing),
                sealed_secret: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(tuned.name, "support");
    assert_eq!(tuned.limits, limits);
    assert_eq!(tuned.pacing, pacing);
    assert_eq!(s.get_device(&a, &d.uid).await.unwrap(), tuned);
    assert_eq!(
        s.update_device(&a, &DeviceUid::new(), &DevicePatch::default())
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn device_soft_delete_hides_it_and_fails_pending_sends(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;

    let waiting = send(s, &outbound(&d, Some("waiting"), t0())).await;
    let leased = send(s, &outbound(&d, Some("leased"), at(SEC))).await;
    let handed = send(s, &outbound(&d, Some("handed"), at(2 * SEC))).await;
    let elsewhere = send(s, &outbound(&other, Some("elsewhere"), t0())).await;
    // `handed` was given to the engine and acknowledged: it is no longer pending.
    let jobs = s
        .claim_send_jobs(&fence(s, &d.uid).await, at(3 * SEC), at(MIN), 3)
        .await
        .unwrap();
    let handed_job = jobs.iter().find(|j| j.message.id == handed.id).unwrap();
    s.record_handoff(
        &fence(s, &d.uid).await,
        &[handed_job.job_id],
        at(4 * SEC),
        at(HOUR),
    )
    .await
    .unwrap();
    s.advance_message_status(
        &fence(s, &d.uid).await,
        &MessageRef::Id(handed.id.clone()),
        MessageStatus::Sent,
        at(4 * SEC),
        None,
    )
    .await
    .unwrap()
    .unwrap();
    // `waiting` goes back to the queue; `leased` stays leased.
    let waiting_job = jobs.iter().find(|j| j.message.id == waiting.id).unwrap();
    s.retry_send_job(
        &fence(s, &d.uid).await,
        waiting_job.job_id,
        at(5 * SEC),
        "offline",
    )
    .await
    .unwrap();
    let before = s.last_event_seq().await.unwrap();

    s.delete_device(&a, &d.uid, at(10 * SEC)).await.unwrap();

    assert_eq!(s.get_device(&a, &d.uid).await, Err(StoreError::NotFound));
    assert_eq!(s.get_device_by_uid(&d.uid).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_instance_credential(&d.uid).await,
        Err(StoreError::NotFound)
    );
    let live: Vec<_> = s
        .list_devices(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.uid)
        .collect();
    assert_eq!(live, vec![other.uid.clone()]);
    assert!(
        s.list_all_devices()
            .await
            .unwrap()
            .iter()
            .all(|x| x.uid != d.uid)
    );
    assert_eq!(
        s.delete_device(&a, &d.uid, at(11 * SEC)).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.update_device(&a, &d.uid, &DevicePatch::default()).await,
        Err(StoreError::NotFound)
    );
    let change = DeviceStateChange {
        status: DeviceStatus::Connected,
        reason: None,
        phone: None,
        push_name: None,
        at: at(12 * SEC),
    };
    assert_eq!(
        s.record_device_state(&fence(s, &d.uid).await, &change, None)
            .await,
        Err(StoreError::NotFound)
    );
    // Not in the trait's words, but the application relies on it: a deleted device
    // accepts nothing.
    assert_eq!(
        s.accept_outbound_message(&outbound(&d, Some("late"), at(12 * SEC)), "3EB0LATE", 100)
            .await,
        Err(StoreError::NotFound)
    );

    // Pending sends failed with a reason, each with its history step and event; the
    // messages stay readable.
    for id in [&waiting.id, &leased.id] {
        let m = s.get_message(&a, id).await.unwrap();
        assert_eq!(m.status, MessageStatus::Failed);
        assert!(m.failure_reason.as_deref().is_some_and(|r| !r.is_empty()));
        let history = s
            .get_message_with_history(&a, id)
            .await
            .map(|(_, h)| h)
            .unwrap();
        let last = history.last().unwrap();
        assert_eq!(last.status, MessageStatus::Failed);
        assert_eq!(last.at, at(10 * SEC));
        assert_eq!(last.reason, m.failure_reason);
    }
    assert_eq!(
        s.get_message(&a, &handed.id).await.unwrap().status,
        MessageStatus::Sent
    );
    let failed_events: Vec<_> = s
        .list_events(before, 100, None, &[EventType::MessageStatus])
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.data {
            EventData::MessageStatus(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(failed_events.len(), 2);
    assert!(
        failed_events
            .iter()
            .all(|c| c.status == MessageStatus::Failed && c.reason.is_some())
    );

    // Nothing of the device is left to send, even once the lease ends.
    assert!(
        s.claim_send_jobs(&fence(s, &d.uid).await, at(HOUR), at(HOUR + MIN), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.next_send_job_at(&d.uid).await.unwrap(), None);
    // The other device is untouched.
    assert_eq!(
        s.get_message(&a, &elsewhere.id).await.unwrap().status,
        MessageStatus::Queued
    );
    assert_eq!(
        s.claim_send_jobs(&fence(s, &other.uid).await, at(MIN), at(2 * MIN), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // The history of a deleted device's messages is still listed.
    let page = s
        .list_messages(
            &a,
            &MessageFilter {
                device_uid: Some(d.uid.clone()),
                ..MessageFilter::default()
            },
            PageRequest { page: 1, limit: 10 },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 3);
}

pub async fn device_state_changes_append_events(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;

    let qr = s
        .record_device_state(
            &fence(s, &d.uid).await,
            &DeviceStateChange {
                status: DeviceStatus::Qr,
                reason: None,
                phone: None,
                push_name: None,
                at: at(SEC),
            },
            Some("2@qr-code-text"),
        )
        .await
        .unwrap();
    assert_eq!(qr.status, DeviceStatus::Qr);
    assert_eq!(qr.updated_at, at(SEC));
    assert_eq!(qr.connected_at, None);

    let connected = s
        .record_device_state(
            &fence(s, &d.uid).await,
            &DeviceStateChange {
                status: DeviceStatus::Connected,
                reason: None,
                phone: Some(phone(42)),
                push_name: Some("Shop".into()),
                at: at(2 * SEC),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(connected.status, DeviceStatus::Connected);
    assert_eq!(connected.phone, Some(phone(42)));
    assert_eq!(connected.push_name.as_deref(), Some("Shop"));
    assert_eq!(connected.connected_at, Some(at(2 * SEC)));

    // `None` keeps the known number and name.
    let dropped = s
        .record_device_state(
            &fence(s, &d.uid).await,
            &DeviceStateChange {
                status: DeviceStatus::Reconnecting,
                reason: Some("stream error".into()),
                phone: None,
                push_name: None,
                at: at(3 * SEC),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(dropped.status, DeviceStatus::Reconnecting);
    assert_eq!(dropped.status_reason.as_deref(), Some("stream error"));
    assert_eq!(dropped.phone, Some(phone(42)));
    assert_eq!(dropped.push_name.as_deref(), Some("Shop"));
    assert_eq!(dropped.connected_at, Some(at(2 * SEC)));
    assert_eq!(s.get_device(&a, &d.uid).await.unwrap(), dropped);

    let evs = events(s, &[EventType::DeviceStatus]).await;
    assert_eq!(evs.len(), 3);
    assert!(
        evs.iter()
            .all(|e| e.account_id == a && e.device_uid == d.uid)
    );
    let data: Vec<_> = evs.into_iter().map(|e| e.data).collect();
    assert_eq!(
        data,
        vec![
            EventData::DeviceStatus(DeviceStatusChanged {
                status: DeviceStatus::Qr,
                reason: None,
                phone: None,
                qr: Some("2@qr-code-text".into()),
                timestamp: at(SEC),
            }),
            EventData::DeviceStatus(DeviceStatusChanged {
                status: DeviceStatus::Connected,
                reason: None,
                phone: Some(phone(42)),
                qr: None,
                timestamp: at(2 * SEC),
            }),
            EventData::DeviceStatus(DeviceStatusChanged {
                status: DeviceStatus::Reconnecting,
                reason: Some("stream error".into()),
                phone: Some(phone(42)),
                qr: None,
                timestamp: at(3 * SEC),
            }),
        ]
    );
    let change = DeviceStateChange {
        status: DeviceStatus::Connected,
        reason: None,
        phone: None,
        push_name: None,
        at: at(4 * SEC),
    };
    assert_eq!(
        s.record_device_state(&fence(s, &DeviceUid::new()).await, &change, None)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(events(s, &[]).await.len(), 3);
}

pub async fn device_instance_credential(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let (dev, hash) = s.get_instance_credential(&d.uid).await.unwrap();
    assert_eq!(dev, d);
    assert_eq!(hash, [7; 32]);
    s.set_instance_token_hash(&a, &d.uid, &[9; 32])
        .await
        .unwrap();
    assert_eq!(s.get_instance_credential(&d.uid).await.unwrap().1, [9; 32]);
    assert_eq!(
        s.get_instance_credential(&DeviceUid::new()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.set_instance_token_hash(&a, &DeviceUid::new(), &[9; 32])
            .await,
        Err(StoreError::NotFound)
    );
}

/// A device's sealed secret is kept as given, written with the device, replaced by a
/// patch (and only by one that names it), and erased when the device is deleted.
pub async fn device_secrets_are_kept_replaced_and_erased(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let plain = device(s, &a).await;
    assert_eq!(s.get_device_secret(&plain.uid).await, Ok(None));

    // Every byte value, as sealed bytes are.
    let sealed: Vec<u8> = (0..=255u8).rev().collect();
    let d = s
        .create_device(&NewDevice {
            sealed_secret: Some(sealed.clone()),
            ..new_device(&a, t0())
        })
        .await
        .unwrap();
    assert_eq!(s.get_device_secret(&d.uid).await, Ok(Some(sealed.clone())));
    assert_eq!(s.get_device_secret(&plain.uid).await, Ok(None));

    let renamed = DevicePatch {
        name: Some("renamed".into()),
        ..DevicePatch::default()
    };
    s.update_device(&a, &d.uid, &renamed).await.unwrap();
    assert_eq!(s.get_device_secret(&d.uid).await, Ok(Some(sealed)));

    let replaced = DevicePatch {
        sealed_secret: Some(vec![1, 2, 3]),
        ..DevicePatch::default()
    };
    let after = s.update_device(&a, &d.uid, &replaced).await.unwrap();
    assert_eq!(after.name, "renamed");
    assert_eq!(s.get_device_secret(&d.uid).await, Ok(Some(vec![1, 2, 3])));
    // A first secret for a device that had none.
    s.update_device(&a, &plain.uid, &replaced).await.unwrap();
    assert_eq!(
        s.get_device_secret(&plain.uid).await,
        Ok(Some(vec![1, 2, 3]))
    );

    // Another account cannot replace it.
    let b = account(s).await;
    let stolen = DevicePatch {
        sealed_secret: Some(vec![6, 6, 6]),
        ..DevicePatch::default()
    };
    assert_eq!(
        s.update_device(&b, &d.uid, &stolen).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_device_secret(&d.uid).await, Ok(Some(vec![1, 2, 3])));

    s.delete_device(&a, &d.uid, at(SEC)).await.unwrap();
    assert_eq!(s.get_device_secret(&d.uid).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_device_secret(&DeviceUid::new()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.get_device_secret(&plain.uid).await,
        Ok(Some(vec![1, 2, 3]))
    );
}

/// Reads right after writes see them, even with the device read just before (a store may
/// keep rows in memory, but never past a write).
pub async fn device_reads_see_every_write(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    assert_eq!(
        s.get_device(&a, &d.uid).await.unwrap().status,
        DeviceStatus::Created
    );
    s.record_device_state(
        &fence(s, &d.uid).await,
        &DeviceStateChange {
            status: DeviceStatus::LoggedOut,
            reason: Some("unlinked from the phone".into()),
            phone: None,
            push_name: None,
            at: at(SEC),
        },
        None,
    )
    .await
    .unwrap();
    let out = s.get_device_by_uid(&d.uid).await.unwrap();
    assert_eq!(out.status, DeviceStatus::LoggedOut);
    assert_eq!(s.get_device(&a, &d.uid).await.unwrap(), out);
    let patch = DevicePatch {
        name: Some("renamed".into()),
        ..DevicePatch::default()
    };
    s.update_device(&a, &d.uid, &patch).await.unwrap();
    assert_eq!(s.get_device(&a, &d.uid).await.unwrap().name, "renamed");
    s.delete_device(&a, &d.uid, at(2 * SEC)).await.unwrap();
    assert_eq!(s.get_device(&a, &d.uid).await, Err(StoreError::NotFound));
    assert_eq!(s.get_device_by_uid(&d.uid).await, Err(StoreError::NotFound));
}
