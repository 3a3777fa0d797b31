//! Inbound messages.

use crate::fixture::{SEC, StoreFactory, account, at, device, events, fence, phone};
use wagate_core::event::{EventData, EventType, ReceivedMessage};
use wagate_core::message::{InboundMessage, MessageKind};
#[allow(unused_imports)]
use wagate_core::store::{
    AccountStore, DeviceStore, EventStore, InboundStore, MediaStore, MessageStore, SendQueue,
};
use wagate_core::store::{InboundOutcome, PageRequest};
use wagate_core::{DeviceUid, MediaId, MessageId, Recipient};

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
        details: Default::default(),
        is_group: false,
        group_id: None,
        group_name: None,
        timestamp: at(secs * SEC - 500),
        received_at: at(secs * SEC),
        read_at: None,
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
        EventData::MessageReceived(Box::new(ReceivedMessage::from_inbound(
            &photo,
            Some("image/jpeg".into())
        )))
    );
    assert_eq!((&evs[0].account_id, &evs[0].device_uid), (&a, &d1.uid));
    assert_eq!(
        evs[1].data,
        EventData::MessageReceived(Box::new(ReceivedMessage::from_inbound(&elsewhere, None)))
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

/// A chat's unread messages, oldest first, and marking them read once: only the device's
/// one-to-one messages from that sender, never another device's or a group's.
pub async fn unread_inbound_per_chat_and_marked_read_once(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    let held = fence(s, &d.uid).await;
    let first = inbound(&a, &d.uid, "R1", 1);
    let second = inbound(&a, &d.uid, "R2", 2);
    let mut someone_else = inbound(&a, &d.uid, "R3", 3);
    someone_else.from = Some(phone(6));
    let mut in_a_group = inbound(&a, &d.uid, "R4", 4);
    in_a_group.is_group = true;
    in_a_group.group_id = Some("120363000000000000@g.us".into());
    for m in [&second, &first, &someone_else, &in_a_group] {
        s.record_inbound(&held, m, None).await.unwrap();
    }
    let theirs = inbound(&a, &other.uid, "R5", 5);
    s.record_inbound(&fence(s, &other.uid).await, &theirs, None)
        .await
        .unwrap();

    let chat5 = Recipient::Phone(phone(5));
    let unread = s.unread_inbound(&d.uid, &chat5, 100).await.unwrap();
    let ids: Vec<&str> = unread
        .iter()
        .map(|m| m.provider_message_id.as_str())
        .collect();
    assert_eq!(ids, ["R1", "R2"], "oldest first, this chat only");
    assert!(unread.iter().all(|m| m.read_at.is_none()));
    assert_eq!(s.unread_inbound(&d.uid, &chat5, 1).await.unwrap().len(), 1);

    // Another device's id is not this device's to mark.
    let mut asked: Vec<MessageId> = unread.iter().map(|m| m.id.clone()).collect();
    asked.push(theirs.id.clone());
    assert_eq!(
        s.mark_inbound_read(&d.uid, &asked, at(10 * SEC)).await,
        Ok(2)
    );
    assert!(
        s.unread_inbound(&d.uid, &chat5, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.mark_inbound_read(&d.uid, &asked, at(20 * SEC)).await,
        Ok(0),
        "read once; the first time stays"
    );
    let listed = s
        .list_inbound(&a, Some(&d.uid), PageRequest { page: 1, limit: 10 })
        .await
        .unwrap();
    for m in &listed.items {
        let expected =
            (m.provider_message_id == "R1" || m.provider_message_id == "R2").then(|| at(10 * SEC));
        assert_eq!(m.read_at, expected, "{}", m.provider_message_id);
    }
    assert_eq!(
        s.unread_inbound(&other.uid, &chat5, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.mark_inbound_read(&d.uid, &[], at(SEC)).await, Ok(0));

    // A group chat is its id: its messages, whoever sent them; not its notices.
    let group = Recipient::parse("120363000000000000@g.us").unwrap();
    let mut notice = inbound(&a, &d.uid, "R6", 6);
    notice.is_group = true;
    notice.group_id = in_a_group.group_id.clone();
    notice.kind = MessageKind::Participants;
    s.record_inbound(&held, &notice, None).await.unwrap();
    let unread = s.unread_inbound(&d.uid, &group, 100).await.unwrap();
    let ids: Vec<&str> = unread
        .iter()
        .map(|m| m.provider_message_id.as_str())
        .collect();
    assert_eq!(ids, ["R4"]);
}

/// A poll's votes: the vote messages naming it, oldest first, on that device only.
pub async fn poll_votes_are_found_by_their_poll(f: impl StoreFactory) {
    let fx = f.make().await;
    let s = &*fx.store;
    let a = account(s).await;
    let d = device(s, &a).await;
    let other = device(s, &a).await;
    let vote = |device: &DeviceUid, pid: &str, secs: i64, poll: &str, picked: &[&str]| {
        let mut m = inbound(&a, device, pid, secs);
        m.kind = MessageKind::PollVote;
        m.details.target = Some(wagate_core::content::Quote {
            provider_message_id: poll.into(),
            from_me: true,
            from: None,
            from_lid: None,
            text: None,
        });
        m.details.vote = Some(picked.iter().map(|p| (*p).to_owned()).collect());
        m
    };
    let held = fence(s, &d.uid).await;
    for m in [
        vote(&d.uid, "V2", 2, "POLL", &["No"]),
        vote(&d.uid, "V1", 1, "POLL", &["Yes"]),
        vote(&d.uid, "V3", 3, "OTHER", &["Yes"]),
    ] {
        s.record_inbound(&held, &m, None).await.unwrap();
    }
    s.record_inbound(
        &fence(s, &other.uid).await,
        &vote(&other.uid, "V4", 4, "POLL", &["Yes"]),
        None,
    )
    .await
    .unwrap();
    let votes = s.poll_votes(&d.uid, "POLL").await.unwrap();
    let got: Vec<(&str, Option<&Vec<String>>)> = votes
        .iter()
        .map(|m| (m.provider_message_id.as_str(), m.details.vote.as_ref()))
        .collect();
    assert_eq!(
        got,
        [
            ("V1", Some(&vec!["Yes".to_owned()])),
            ("V2", Some(&vec!["No".to_owned()]))
        ]
    );
    assert!(s.poll_votes(&d.uid, "NONE").await.unwrap().is_empty());
}
