//! Inbound messages.

use crate::fixture::{SEC, StoreFactory, account, at, device, events, fence, phone};
use wagate_core::event::{EventData, EventType, ReceivedMessage};
use wagate_core::message::{InboundMessage, MessageKind};
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::store::{InboundOutcome, PageRequest};
use wagate_core::{DeviceUid, MediaId, MessageId};

fn inbound(
    account: &wagate_core::AccountId,
    device: &DeviceUid,
    pid: &str,
    secs: i64,
) -> InboundMessage {
    InboundMessage {
        id: MessageId::new(),
        account_id: account.clone(),
        device_uid: device.clone(),
        provider_message_id: pid.into(),
        from: Some(phone(5)),
        from_lid: Some("123456789@lid".into()),
        from_name: Some("Ana".into()),
        kind: MessageKind::Text,
        text: Some("hi".into()),
        media_id: None,
        is_group: false,
        group_id: None,
        group_name: None,
        timestamp: at(secs * SEC - 500),
        received_at: at(secs * SEC),
    }
}

pub async fn inbound_dedupes_per_device_and_appends_events(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let b = account(s).await;
    let d1 = device(s, &a).await;
    let d2 = device(s, &a).await;

    let mut photo = inbound(&a, &d1.uid, "ABCDEF", 1);
    photo.kind = MessageKind::Image;
    photo.media_id = Some(MediaId::new());
    photo.is_group = true;
    photo.group_id = Some("120363000000000000@g.us".into());
    photo.group_name = Some("Team".into());
    photo.from = None;
    assert_eq!(
        s.record_inbound(
            &fence(s, &photo.device_uid).await,
            &photo,
            Some("image/jpeg")
        )
        .await
        .unwrap(),
        InboundOutcome::Created(photo.clone())
    );
    // WhatsApp redelivers: the same provider id on the device is the stored message.
    let again = inbound(&a, &d1.uid, "ABCDEF", 2);
    assert_eq!(
        s.record_inbound(&fence(s, &again.device_uid).await, &again, None)
            .await
            .unwrap(),
        InboundOutcome::Duplicate(photo.clone())
    );
    // The same id on another device is another message.
    let elsewhere = inbound(&a, &d2.uid, "ABCDEF", 3);
    assert_eq!(
        s.record_inbound(&fence(s, &elsewhere.device_uid).await, &elsewhere, None)
            .await
            .unwrap(),
        InboundOutcome::Created(elsewhere.clone())
    );
    let text = inbound(&a, &d1.uid, "XYZ", 4);
    s.record_inbound(&fence(s, &text.device_uid).await, &text, None)
        .await
        .unwrap();

    let evs = events(s, &[EventType::MessageReceived]).await;
    assert_eq!(
        evs.len(),
        3,
        "one event per stored message, none for the duplicate"
    );
    assert_eq!(
        evs[0].data,
        EventData::MessageReceived(ReceivedMessage::from_inbound(
            &photo,
            Some("image/jpeg".into())
        ))
    );
    assert_eq!((&evs[0].account_id, &evs[0].device_uid), (&a, &d1.uid));
    assert_eq!(
        evs[1].data,
        EventData::MessageReceived(ReceivedMessage::from_inbound(&elsewhere, None))
    );
    assert_eq!(evs[1].device_uid, d2.uid);

    let page = |device: Option<DeviceUid>, page: u32, limit: u32| {
        let a = a.clone();
        async move {
            s.list_inbound(&a, device.as_ref(), PageRequest { page, limit })
                .await
                .unwrap()
        }
    };
    let all = page(None, 1, 10).await;
    assert_eq!((all.total, all.page, all.limit), (3, 1, 10));
    assert_eq!(
        all.items,
        vec![text.clone(), elsewhere.clone(), photo.clone()],
        "newest first"
    );
    let second = page(None, 2, 2).await;
    assert_eq!(
        (second.total, second.items.clone()),
        (3, vec![photo.clone()])
    );
    let d1_only = page(Some(d1.uid.clone()), 1, 10).await;
    assert_eq!((d1_only.total, d1_only.items), (2, vec![text, photo]));
    let other = s
        .list_inbound(&b, None, PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!((other.total, other.items.len()), (0, 0));
    let foreign = s
        .list_inbound(&b, Some(&d1.uid), PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    assert_eq!(foreign.total, 0);
}
