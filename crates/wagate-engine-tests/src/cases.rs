//! The cases: each one a promise of `wagate_core::engine` (its trait docs) that the device
//! runtime relies on, checked through a [`Recorder`] standing where the runtime stands.

use crate::{Feature, Harness, Recorder};
use std::sync::Arc;
use wagate_core::chat::{GroupRole, MembershipChange};
use wagate_core::content::{ContactCard, Location, Poll, Quote};
use wagate_core::engine::{
    ChatState, DeviceContext, EngineError, EngineEvent, EngineSession, IncomingMessage,
    MessageContext, OutgoingContent, OutgoingMessage, ReadMark, ReceiptKind, provider_message_id,
};
use wagate_core::message::MessageKind;
use wagate_core::{GroupId, MessageId, Phone, Recipient};

/// Starting a linked device resumes it: `Connecting` first, then `Connected` with the
/// number it was linked to, and no linking (QR or pair code) on the way.
pub async fn start_resumes_a_linked_device_with_its_phone<H: Harness + ?Sized>(h: &H) {
    let device = h.linked_device().await;
    let phone = device.phone.clone().expect("a linked device has a phone");
    let events = Recorder::new();
    let session = start(h, &device, &events).await;
    let got = events.wait_for("Connected", h.patience(), connected).await;
    assert_eq!(got.as_ref(), Some(&phone), "connected as the linked number");
    let seen = events.snapshot();
    assert!(
        matches!(seen.first(), Some(EngineEvent::Connecting)),
        "Connecting comes first: {seen:#?}"
    );
    assert!(
        !seen.iter().any(is_linking),
        "a linked device does not link again: {seen:#?}"
    );
    stop_and_forget(h, session, &device).await;
}

/// A device the engine never saw links (`Connecting` first, then whatever the user must do,
/// then `Connected` with its phone); started again with that phone, it resumes without
/// linking.
pub async fn a_new_device_links_then_resumes_without_linking<H: Harness + ?Sized>(h: &H) {
    let device = h.new_device().await;
    assert!(device.phone.is_none(), "a new device has no phone yet");
    let events = Recorder::new();
    let session = start(h, &device, &events).await;
    h.link(&device, &events).await;
    let phone = events
        .wait_for("Connected after linking", h.patience(), connected)
        .await
        .expect("a linked device reports its phone");
    let seen = events.snapshot();
    assert!(
        matches!(seen.first(), Some(EngineEvent::Connecting)),
        "Connecting comes first: {seen:#?}"
    );
    session.stop().await;

    let resumed = DeviceContext {
        phone: Some(phone.clone()),
        ..device.clone()
    };
    let events = Recorder::new();
    let session = start(h, &resumed, &events).await;
    let again = events
        .wait_for("Connected after the restart", h.patience(), connected)
        .await;
    assert_eq!(again, Some(phone), "resumed as the same number");
    let seen = events.snapshot();
    assert!(
        !seen.iter().any(is_linking),
        "resumed without linking again: {seen:#?}"
    );
    stop_and_forget(h, session, &device).await;
}

/// A send is taken, then reported by WhatsApp's server (`ServerAck` without error, under
/// the provider id it was sent with), then delivered, then read: in that order.
pub async fn send_is_acked_then_delivered_then_read<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let message = text_to(&h.peer(), "conformance: acked, delivered, read");
    let pid = message.provider_message_id.clone();
    session
        .send(message)
        .await
        .expect("an online device takes a send");
    let error = events
        .wait_for("the server ack", h.patience(), |e| ack_of(e, &pid))
        .await;
    assert_eq!(error, None, "the server took the message");
    events
        .wait_for("the delivered receipt", h.patience(), |e| {
            receipt_of(e, &pid, ReceiptKind::Delivered)
        })
        .await;
    h.peer_reads(&phone, &pid).await;
    events
        .wait_for("the read receipt", h.patience(), |e| {
            receipt_of(e, &pid, ReceiptKind::Read)
        })
        .await;
    let seen = events.snapshot();
    let at = |pick: &dyn Fn(&EngineEvent) -> bool| seen.iter().position(pick);
    let ack = at(&|e| ack_of(e, &pid).is_some());
    let delivered = at(&|e| receipt_of(e, &pid, ReceiptKind::Delivered).is_some());
    let read = at(&|e| receipt_of(e, &pid, ReceiptKind::Read).is_some());
    assert!(
        ack < delivered && delivered < read,
        "ack, then delivered, then read: {seen:#?}"
    );
    stop_and_forget(h, session, &device).await;
}

/// Checking numbers answers each number asked, in order: on WhatsApp with its phone JID, or
/// not on WhatsApp without one.
pub async fn check_numbers_tells_who_is_on_whatsapp<H: Harness + ?Sized>(h: &H) {
    let (device, session, _events, _phone) = online(h).await;
    let (on, off) = (h.peer(), h.not_on_whatsapp());
    if !h.offers(Feature::NumberChecks) {
        let refused = session.check_numbers(&[on, off]).await;
        assert!(
            matches!(refused, Err(EngineError::Unsupported(_))),
            "an engine without number checks says so: {refused:?}"
        );
        stop_and_forget(h, session, &device).await;
        return;
    }
    let checks = session
        .check_numbers(&[on.clone(), off.clone()])
        .await
        .expect("an online device checks numbers");
    assert_eq!(checks.len(), 2, "one answer per number: {checks:#?}");
    assert_eq!(checks[0].phone, on);
    assert!(checks[0].on_whatsapp, "{checks:#?}");
    let jid = format!("{}@s.whatsapp.net", on.digits());
    assert_eq!(checks[0].jid.as_deref(), Some(jid.as_str()));
    assert_eq!(checks[1].phone, off);
    assert!(!checks[1].on_whatsapp, "{checks:#?}");
    assert_eq!(checks[1].jid, None);
    stop_and_forget(h, session, &device).await;
}

/// A message someone writes to the device is emitted as `Inbound`: a text from the
/// sender's number, not a group message.
pub async fn inbound_is_emitted_with_its_sender<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let text = "conformance: hello from the peer";
    h.peer_sends(&phone, text).await;
    let m = events
        .wait_for("the inbound message", h.patience(), |e| {
            inbound_text(e, text)
        })
        .await;
    assert_eq!(m.from.as_ref(), Some(&h.peer()), "from the peer's number");
    assert_eq!(m.kind, wagate_core::message::MessageKind::Text);
    assert!(!m.is_group);
    assert!(!m.provider_message_id.is_empty());
    stop_and_forget(h, session, &device).await;
}

/// Receiving is at least once: an inbound message whose `emit` returned an error was not
/// acknowledged to WhatsApp, so it is offered again — under the same provider id — by the
/// next session after a restart, instead of being lost.
pub async fn an_inbound_message_not_committed_is_offered_again<H: Harness + ?Sized>(h: &H) {
    let device = h.linked_device().await;
    let phone = device.phone.clone().expect("a linked device has a phone");
    let events = Recorder::refusing_inbound(1);
    let session = start(h, &device, &events).await;
    events.wait_for("Connected", h.patience(), connected).await;
    let text = "conformance: must not be lost";
    h.peer_sends(&phone, text).await;
    let refused = events.wait_refused(1, h.patience()).await;
    assert_eq!(refused[0].text.as_deref(), Some(text));
    session.stop().await;
    assert!(
        !events
            .snapshot()
            .iter()
            .any(|e| inbound_text(e, text).is_some()),
        "the refusal was the only offer to this session"
    );

    h.restart().await;
    let events = Recorder::new();
    let session = start(h, &device, &events).await;
    let again = events
        .wait_for("the refused message, offered again", h.patience(), |e| {
            inbound_text(e, text)
        })
        .await;
    assert_eq!(
        again.provider_message_id, refused[0].provider_message_id,
        "offered again under the same id (the caller dedupes on it)"
    );
    stop_and_forget(h, session, &device).await;
}

/// After `stop` returns the session emits nothing more, even for messages it sent; what
/// happens meanwhile (a receipt) waits for the device's next session. A stopped session
/// takes no send (a retryable error: the message waits too), and stopping twice is fine.
pub async fn stop_ends_the_events_and_what_follows_waits<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let message = text_to(&h.peer(), "conformance: sent before the stop");
    let pid = message.provider_message_id.clone();
    session
        .send(message)
        .await
        .expect("an online device takes a send");
    events
        .wait_for("the server ack", h.patience(), |e| ack_of(e, &pid))
        .await;
    session.stop().await;
    let at_stop = events.len();
    session.stop().await;
    match session
        .send(text_to(&h.peer(), "conformance: after the stop"))
        .await
    {
        Err(e) if e.is_retryable() => {}
        other => panic!("a stopped session refuses sends, retryably: {other:?}"),
    }
    h.peer_reads(&phone, &pid).await;

    let later = Recorder::new();
    let next = start(h, &device, &later).await;
    let read_before_stop = events.snapshot()[..at_stop]
        .iter()
        .any(|e| receipt_of(e, &pid, ReceiptKind::Read).is_some());
    if !read_before_stop {
        later
            .wait_for(
                "the read receipt, held for the next session",
                h.patience(),
                |e| receipt_of(e, &pid, ReceiptKind::Read),
            )
            .await;
    } else {
        later.wait_for("Connected", h.patience(), connected).await;
    }
    let after = events.snapshot();
    assert_eq!(
        after.len(),
        at_stop,
        "nothing is emitted after stop returned: {:#?}",
        &after[at_stop..]
    );
    stop_and_forget(h, next, &device).await;
}

/// `logout` unlinks: `LoggedOut` is reported once, and the session no longer sends.
pub async fn logout_reports_logged_out_once<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, _phone) = online(h).await;
    let before = events.len();
    session.logout().await.expect("logout");
    let reason = events
        .wait_for_from(before, "LoggedOut", h.patience(), |e| match e {
            EngineEvent::LoggedOut { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(!reason.is_empty(), "LoggedOut says why");
    match session
        .send(text_to(&h.peer(), "conformance: after logout"))
        .await
    {
        Err(EngineError::NotConnected(_)) => {}
        other => panic!("a logged-out session does not send: {other:?}"),
    }
    // Stopping flushes whatever the engine still had to report.
    session.stop().await;
    let seen = events.snapshot();
    let logged_out = seen[before..]
        .iter()
        .filter(|e| matches!(e, EngineEvent::LoggedOut { .. }))
        .count();
    assert_eq!(logged_out, 1, "reported once: {seen:#?}");
    h.engine()
        .forget(&device.uid)
        .await
        .expect("forget a device");
}

/// Chat states reach the peer's chat, each replacing the one before; a stopped session
/// refuses one instead of pretending.
pub async fn chat_states_reach_the_peer_and_a_stopped_session_refuses_them<H: Harness + ?Sized>(
    h: &H,
) {
    if skipped(h, Feature::ChatStates) {
        return;
    }
    let (device, session, _events, phone) = online(h).await;
    for state in ChatState::ALL {
        session
            .chat_state(&h.peer().into(), state)
            .await
            .expect("an online device sets a chat state");
        until(h, &format!("the peer's chat to show {state:?}"), || async {
            h.peer_sees_chat_state(&phone).await == Some(state)
        })
        .await;
    }
    session.stop().await;
    assert!(
        session
            .chat_state(&h.peer().into(), ChatState::Typing)
            .await
            .is_err(),
        "a stopped session refuses"
    );
    h.engine()
        .forget(&device.uid)
        .await
        .expect("forget a device");
}

/// Marking a received message read tells its sender: a read receipt reaches the peer.
pub async fn marking_read_tells_the_sender<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let text = "conformance: please read me";
    h.peer_sends(&phone, text).await;
    let m = events
        .wait_for("the inbound message", h.patience(), |e| {
            inbound_text(e, text)
        })
        .await;
    let mark = ReadMark {
        provider_message_id: m.provider_message_id.clone(),
        sender: None,
    };
    session
        .mark_read(&h.peer().into(), &[mark])
        .await
        .expect("an online device marks a message read");
    until(h, "the read receipt at the peer", || async {
        h.peer_got_read(&phone, &m.provider_message_id).await
    })
    .await;
    stop_and_forget(h, session, &device).await;
}

/// A location, contact cards and a poll reach the peer as what they are; a reply shows
/// its quote (our message, seen by the peer as ours: from the device's number) and a
/// text its mentions.
pub async fn locations_contacts_polls_and_replies_reach_the_peer<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let card = |name: &str, digits: &str| {
        ContactCard::new(name, Phone::parse(digits).unwrap(), "contact").unwrap()
    };
    let location = Location::new(30.0444, 31.2357, Some("Tahrir Square"), Some("Cairo")).unwrap();
    let cards = vec![
        card("Ana; the \"boss\"", "+201001234567"),
        card("Bo", "+447700900123"),
    ];
    let poll = Poll::new(
        "Lunch?",
        &["Pizza".into(), "Sushi".into(), "Koshary".into()],
        true,
    )
    .unwrap()
    .with_new_secret();
    let first = message_to(
        &peer,
        OutgoingContent::Location(location.clone()),
        Default::default(),
    );
    let quote = Quote {
        provider_message_id: first.provider_message_id.clone(),
        from_me: true,
        from: None,
        from_lid: None,
        text: Some("Location".into()),
    };
    let polls = h.offers(Feature::Polls);
    let mentions = if h.offers(Feature::Mentions) {
        vec![peer.clone()]
    } else {
        Vec::new()
    };
    let poll_message = message_to(
        &peer,
        OutgoingContent::Poll(poll.clone()),
        Default::default(),
    );
    if !polls {
        let refused = session.send(poll_message.clone()).await;
        assert!(
            matches!(refused, Err(EngineError::Unsupported(_))),
            "an engine without polls refuses one: {refused:?}"
        );
    }
    let sends = [
        first,
        message_to(
            &peer,
            OutgoingContent::Contacts(cards.clone()),
            Default::default(),
        ),
        poll_message,
        message_to(
            &peer,
            OutgoingContent::Text {
                text: format!("see above @{}", peer.digits()),
            },
            MessageContext {
                reply_to: Some(quote.clone()),
                mentions: mentions.clone(),
            },
        ),
    ];
    for (i, m) in sends.iter().enumerate() {
        if i != 2 || polls {
            sent_and_acked(h, &session, &events, m).await;
        }
    }
    let saw = |i: usize| h.peer_received(&phone, &sends[i].provider_message_id);
    let got = saw(0).await;
    assert_eq!(got.kind, MessageKind::Location);
    assert_eq!(got.details.location, Some(location));
    let got = saw(1).await;
    assert_eq!(got.kind, MessageKind::Contact);
    assert_eq!(got.details.contacts, cards);
    if polls {
        let got = saw(2).await;
        assert_eq!(got.kind, MessageKind::Poll);
        let seen = got.details.poll.expect("a poll");
        assert_eq!(
            (
                seen.question.as_str(),
                seen.options.as_slice(),
                seen.multiple_answers
            ),
            ("Lunch?", poll.options.as_slice(), true)
        );
        assert_eq!(
            seen.secret, poll.secret,
            "the peer can tie votes to the poll"
        );
    }
    let got = saw(3).await;
    assert_eq!(got.kind, MessageKind::Text);
    assert_eq!(
        got.text.as_deref(),
        Some(format!("see above @{}", peer.digits()).as_str())
    );
    let seen = got.details.reply_to.expect("a quote");
    assert_eq!(seen.provider_message_id, quote.provider_message_id);
    assert!(
        !seen.from_me,
        "to the peer the quoted message is the device's"
    );
    assert_eq!(seen.from, Some(phone.clone()));
    assert_eq!(got.details.mentions, mentions);
    stop_and_forget(h, session, &device).await;
}

/// A reaction to a message the device sent reaches the peer naming that message (the
/// device's, to the peer), and so does an edit with its new text.
pub async fn reactions_and_edits_reach_the_peer<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let original = text_to(&peer, "conformance: ships tomorow");
    let target = Quote {
        provider_message_id: original.provider_message_id.clone(),
        from_me: true,
        from: None,
        from_lid: None,
        text: Some("conformance: ships tomorow".into()),
    };
    let sends = [
        original.clone(),
        message_to(
            &peer,
            OutgoingContent::Reaction {
                target: target.clone(),
                emoji: "👍".into(),
            },
            Default::default(),
        ),
        message_to(
            &peer,
            OutgoingContent::Edit {
                target: target.clone(),
                text: "conformance: ships tomorrow".into(),
            },
            Default::default(),
        ),
    ];
    let edits = h.offers(Feature::Edits);
    for (i, m) in sends.iter().enumerate() {
        if i < 2 || edits {
            sent_and_acked(h, &session, &events, m).await;
        } else {
            let refused = session.send(m.clone()).await;
            assert!(
                matches!(refused, Err(EngineError::Unsupported(_))),
                "an engine without edits refuses one: {refused:?}"
            );
        }
    }
    let got = h.peer_received(&phone, &sends[1].provider_message_id).await;
    assert_eq!(got.kind, MessageKind::Reaction);
    assert_eq!(got.details.emoji.as_deref(), Some("👍"));
    let seen = got.details.target.expect("the message reacted to");
    assert_eq!(seen.provider_message_id, original.provider_message_id);
    assert!(!seen.from_me, "to the peer it is the device's message");
    if !edits {
        stop_and_forget(h, session, &device).await;
        return;
    }
    let got = h.peer_received(&phone, &sends[2].provider_message_id).await;
    assert_eq!(got.kind, MessageKind::Edit);
    assert_eq!(got.text.as_deref(), Some("conformance: ships tomorrow"));
    let seen = got.details.target.expect("the message edited");
    assert_eq!(seen.provider_message_id, original.provider_message_id);
    assert!(!seen.from_me);
    stop_and_forget(h, session, &device).await;
}

/// The peer's reaction to a message of the device arrives as an inbound reaction naming
/// that message as the device's own.
pub async fn a_reaction_from_the_peer_names_the_device_message<H: Harness + ?Sized>(h: &H) {
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let m = text_to(&peer, "conformance: react to me");
    let pid = m.provider_message_id.clone();
    sent_and_acked(h, &session, &events, &m).await;
    h.peer_reacts(&phone, &pid, "🙏").await;
    let got = events
        .wait_for("the reaction", h.patience(), |e| match e {
            EngineEvent::Inbound(m) if m.kind == MessageKind::Reaction => Some((**m).clone()),
            _ => None,
        })
        .await;
    assert_eq!(got.from.as_ref(), Some(&peer));
    assert_eq!(got.details.emoji.as_deref(), Some("🙏"));
    let target = got.details.target.expect("the message reacted to");
    assert_eq!(target.provider_message_id, pid);
    assert!(target.from_me, "the device's own message");
    stop_and_forget(h, session, &device).await;
}

/// The peer's vote in the device's poll arrives as a vote naming the options picked and
/// the poll as the device's own (an engine whose WhatsApp encrypts votes opens them with
/// the poll its caller knows, [`wagate_core::engine::EngineEvents::find_poll`]); a vote
/// taken back arrives with no options.
pub async fn the_peers_vote_in_the_devices_poll_is_read_by_option<H: Harness + ?Sized>(h: &H) {
    if skipped(h, Feature::Polls) {
        return;
    }
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let poll = Poll::new(
        "conformance: which days?",
        &["Mon".into(), "Tue".into(), "Wed".into()],
        true,
    )
    .unwrap()
    .with_new_secret();
    let m = message_to(
        &peer,
        OutgoingContent::Poll(poll.clone()),
        Default::default(),
    );
    events.sent_poll(&m.provider_message_id, poll);
    sent_and_acked(h, &session, &events, &m).await;
    let votes_so_far = || -> Vec<IncomingMessage> {
        events
            .snapshot()
            .into_iter()
            .filter_map(|e| match e {
                EngineEvent::Inbound(v) if v.kind == MessageKind::PollVote => Some(*v),
                _ => None,
            })
            .collect()
    };
    let votes = [vec!["Mon".to_owned(), "Wed".to_owned()], vec![]];
    for (i, picked) in votes.iter().enumerate() {
        h.peer_votes(&phone, &m.provider_message_id, picked).await;
        until(h, "the peer's vote", || async { votes_so_far().len() > i }).await;
        let got = votes_so_far().swap_remove(i);
        assert_eq!(got.from.as_ref(), Some(&peer));
        assert_eq!(got.details.vote.as_ref(), Some(picked), "vote {i}");
        let target = got.details.target.expect("the poll voted in");
        assert_eq!(target.provider_message_id, m.provider_message_id);
        assert!(target.from_me, "the device's own poll");
    }
    stop_and_forget(h, session, &device).await;
}

/// A group the device creates with the peer: listed, read with its members and their roles;
/// a text the device sends there reaches the peer in the group, and so does "typing…", a reaction to the peer's
/// message names it; the peer's message there reaches the device as a group message from
/// the peer's number, and marking it read tells the peer.
pub async fn a_group_with_the_peer_gets_messages_both_ways<H: Harness + ?Sized>(h: &H) {
    if !h.offers(Feature::Groups) {
        // An engine without groups refuses them rather than pretending.
        let (device, session, _events, _phone) = online(h).await;
        let refused = session.create_group("Conformance team", &[h.peer()]).await;
        assert!(
            matches!(refused, Err(EngineError::Unsupported(_))),
            "an engine without groups says so: {refused:?}"
        );
        stop_and_forget(h, session, &device).await;
        return;
    }
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let created = session
        .create_group("Conformance team", std::slice::from_ref(&peer))
        .await
        .expect("an online device creates a group");
    let group = created.id.clone();
    assert_eq!(created.subject, "Conformance team");
    assert_eq!(created.own_role, Some(GroupRole::Owner), "{created:#?}");

    let listed = session.groups().await.expect("the device lists its groups");
    let mine = listed
        .iter()
        .find(|g| g.id == group)
        .unwrap_or_else(|| panic!("the new group is listed: {listed:#?}"));
    assert_eq!((mine.size, mine.own_role), (2, Some(GroupRole::Owner)));

    let info = session
        .group_info(&group)
        .await
        .expect("the device reads it");
    assert_eq!(info.subject, "Conformance team");
    let mut roles: Vec<(Option<Phone>, GroupRole)> = info
        .members
        .iter()
        .map(|m| (m.phone.clone(), m.role))
        .collect();
    roles.sort_by_key(|(p, _)| p.as_ref().map(|p| p.digits().to_owned()));
    let mut want = vec![
        (Some(phone.clone()), GroupRole::Owner),
        (Some(peer.clone()), GroupRole::Member),
    ];
    want.sort_by_key(|(p, _)| p.as_ref().map(|p| p.digits().to_owned()));
    assert_eq!(roles, want, "members by number, with their roles");

    let text = "conformance: hello, team";
    let hello = message_in(
        group.clone().into(),
        OutgoingContent::Text { text: text.into() },
        Default::default(),
    );
    sent_and_acked(h, &session, &events, &hello).await;
    let got = h.peer_received(&phone, &hello.provider_message_id).await;
    assert_eq!(
        (got.kind, got.text.as_deref(), got.group.as_ref()),
        (MessageKind::Text, Some(text), Some(&group))
    );

    // "typing…" in the group shows in the peer's group chat, as the device's.
    for state in [ChatState::Typing, ChatState::Paused] {
        session
            .chat_state(&group.clone().into(), state)
            .await
            .expect("an online device sets a chat state in a group");
        until(h, &format!("the group chat to show {state:?}"), || async {
            h.peer_sees_chat_state_in_group(&phone, &group).await == Some(state)
        })
        .await;
    }

    let reply = "conformance: hello from the peer, team";
    h.peer_sends_to_group(&group, reply).await;
    let m = events
        .wait_for("the peer's group message", h.patience(), |e| {
            inbound_text(e, reply)
        })
        .await;
    assert!(m.is_group, "a group message: {m:#?}");
    assert_eq!(m.group_id.as_deref(), Some(group.as_str()));
    assert_eq!(m.from.as_ref(), Some(&peer), "from the peer's number");

    let reaction = message_in(
        group.clone().into(),
        OutgoingContent::Reaction {
            target: Quote {
                provider_message_id: m.provider_message_id.clone(),
                from_me: false,
                from: Some(peer.clone()),
                from_lid: m.from_lid.clone(),
                text: None,
            },
            emoji: "🎉".into(),
        },
        Default::default(),
    );
    sent_and_acked(h, &session, &events, &reaction).await;
    let got = h.peer_received(&phone, &reaction.provider_message_id).await;
    assert_eq!(got.kind, MessageKind::Reaction);
    assert_eq!(got.group.as_ref(), Some(&group));
    let target = got.details.target.expect("the message reacted to");
    assert_eq!(target.provider_message_id, m.provider_message_id);
    assert!(target.from_me, "to the peer it is the peer's own message");

    let mark = ReadMark {
        provider_message_id: m.provider_message_id.clone(),
        sender: Some(peer.clone()),
    };
    session
        .mark_read(&group.clone().into(), &[mark])
        .await
        .expect("an online device marks a group message read");
    until(h, "the group read receipt at the peer", || async {
        h.peer_got_read_in_group(&phone, &group, &m.provider_message_id)
            .await
    })
    .await;
    stop_and_forget(h, session, &device).await;
}

/// Member changes by the device reach the peer (added at creation, promoted, removed, added
/// again), each done per member; the peer leaving reaches the device as a `participants`
/// message from the peer; in the peer's group the device is a member, not an admin, and is
/// refused; a group the device is not in is not found.
pub async fn membership_changes_reach_the_members<H: Harness + ?Sized>(h: &H) {
    if skipped(h, Feature::Groups) {
        return;
    }
    let (device, session, events, phone) = online(h).await;
    let peer = h.peer();
    let group = session
        .create_group("Conformance members", std::slice::from_ref(&peer))
        .await
        .expect("an online device creates a group")
        .id;
    let saw = |change: MembershipChange, n: usize| {
        let group = group.clone();
        let peer = peer.clone();
        async move {
            let seen = h.peer_saw_changes(&group).await;
            seen.iter()
                .filter(|(c, who)| *c == change && who.as_slice() == std::slice::from_ref(&peer))
                .count()
                >= n
        }
    };
    until(h, "the peer told it was added", || {
        saw(MembershipChange::Add, 1)
    })
    .await;

    let done = |out: &[wagate_core::chat::MemberOutcome], change| {
        assert_eq!(out.len(), 1, "one outcome per member: {out:#?}");
        assert_eq!((&out[0].phone, out[0].change), (&peer, change));
    };
    let promote = session
        .change_members(
            &group,
            MembershipChange::Promote,
            std::slice::from_ref(&peer),
        )
        .await
        .expect("the owner promotes");
    done(&promote, MembershipChange::Promote);
    assert_eq!(promote[0].error, None, "{promote:#?}");
    until(h, "the peer told it was promoted", || {
        saw(MembershipChange::Promote, 1)
    })
    .await;
    let info = session.group_info(&group).await.expect("read the group");
    let role_of_peer = info
        .members
        .iter()
        .find(|m| m.phone.as_ref() == Some(&peer))
        .map(|m| m.role);
    assert_eq!(role_of_peer, Some(GroupRole::Admin), "{info:#?}");

    let again = session
        .change_members(&group, MembershipChange::Add, std::slice::from_ref(&peer))
        .await
        .expect("a refusal for one member is not a failed call");
    done(&again, MembershipChange::Add);
    assert!(again[0].error.is_some(), "already a member: {again:#?}");

    let removed = session
        .change_members(
            &group,
            MembershipChange::Remove,
            std::slice::from_ref(&peer),
        )
        .await
        .expect("the owner removes");
    assert_eq!(removed[0].error, None, "{removed:#?}");
    until(h, "the removed peer told", || {
        saw(MembershipChange::Remove, 1)
    })
    .await;
    let info = session.group_info(&group).await.expect("read the group");
    assert!(
        info.members.iter().all(|m| m.phone.as_ref() != Some(&peer)),
        "the peer is out: {info:#?}"
    );
    assert_eq!(info.size, 1);

    let added = session
        .change_members(&group, MembershipChange::Add, std::slice::from_ref(&peer))
        .await
        .expect("the owner adds");
    assert_eq!(added[0].error, None, "{added:#?}");
    until(h, "the peer told it was added again", || {
        saw(MembershipChange::Add, 2)
    })
    .await;

    h.peer_leaves_group(&group).await;
    let left = events
        .wait_for("the peer leaving, at the device", h.patience(), |e| {
            participants_in(e, &group, MembershipChange::Leave)
        })
        .await;
    assert!(left.is_group);
    assert_eq!(left.from.as_ref(), Some(&peer), "the peer left by themself");
    assert_eq!(phones_of(&left), vec![Some(peer.clone())]);
    assert!(!left.provider_message_id.is_empty());

    let theirs = h
        .peer_creates_group("Conformance peer's group", std::slice::from_ref(&phone))
        .await;
    let joined = events
        .wait_for("the device told it was added", h.patience(), |e| {
            participants_in(e, &theirs, MembershipChange::Add)
        })
        .await;
    assert_eq!(joined.from.as_ref(), Some(&peer), "added by the peer");
    assert_eq!(phones_of(&joined), vec![Some(phone.clone())]);
    let info = session
        .group_info(&theirs)
        .await
        .expect("a member reads the group");
    assert_eq!(info.own_role, Some(GroupRole::Member));
    let refused = session
        .change_members(
            &theirs,
            MembershipChange::Remove,
            std::slice::from_ref(&peer),
        )
        .await;
    assert_eq!(rejected_code(refused).as_deref(), Some("forbidden"));

    let unknown = GroupId::parse("120363999999999999@g.us").unwrap();
    assert_eq!(
        rejected_code(session.group_info(&unknown).await).as_deref(),
        Some("not_found")
    );
    assert_eq!(
        rejected_code(
            session
                .change_members(&unknown, MembershipChange::Add, std::slice::from_ref(&peer))
                .await
        )
        .as_deref(),
        Some("not_found")
    );
    stop_and_forget(h, session, &device).await;
}

/// Hands `m` to the session and waits for WhatsApp's server to take it without error.
async fn sent_and_acked<H: Harness + ?Sized>(
    h: &H,
    session: &Arc<dyn EngineSession>,
    events: &Recorder,
    m: &OutgoingMessage,
) {
    let pid = m.provider_message_id.clone();
    session.send(m.clone()).await.expect("the engine takes it");
    let error = events
        .wait_for("the server ack", h.patience(), |e| ack_of(e, &pid))
        .await;
    assert_eq!(error, None, "WhatsApp's server took {:?}", m.content);
}

/// Polls `check` until it holds, for at most the harness's patience.
async fn until<H, F, Fut>(h: &H, what: &str, mut check: F)
where
    H: Harness + ?Sized,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + h.patience();
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a case needing `feature` is skipped because the engine's WhatsApp lacks it
/// (said on the test's output, so a skip is seen).
fn skipped<H: Harness + ?Sized>(h: &H, feature: Feature) -> bool {
    let lacks = !h.offers(feature);
    if lacks {
        eprintln!("skipped: this engine's WhatsApp has no {feature:?}");
    }
    lacks
}

/// A linked device, started and connected.
async fn online<H: Harness + ?Sized>(
    h: &H,
) -> (DeviceContext, Arc<dyn EngineSession>, Arc<Recorder>, Phone) {
    let device = h.linked_device().await;
    let phone = device.phone.clone().expect("a linked device has a phone");
    let events = Recorder::new();
    let session = start(h, &device, &events).await;
    events.wait_for("Connected", h.patience(), connected).await;
    (device, session, events, phone)
}

async fn start<H: Harness + ?Sized>(
    h: &H,
    device: &DeviceContext,
    events: &Arc<Recorder>,
) -> Arc<dyn EngineSession> {
    h.engine()
        .start(device.clone(), events.clone())
        .await
        .expect("start a session")
}

async fn stop_and_forget<H: Harness + ?Sized>(
    h: &H,
    session: Arc<dyn EngineSession>,
    device: &DeviceContext,
) {
    session.stop().await;
    h.engine()
        .forget(&device.uid)
        .await
        .expect("forget a device");
}

fn text_to(to: &Phone, text: &str) -> OutgoingMessage {
    message_to(
        to,
        OutgoingContent::Text { text: text.into() },
        Default::default(),
    )
}

fn message_to(to: &Phone, content: OutgoingContent, context: MessageContext) -> OutgoingMessage {
    message_in(Recipient::Phone(to.clone()), content, context)
}

fn message_in(to: Recipient, content: OutgoingContent, context: MessageContext) -> OutgoingMessage {
    let id = MessageId::new();
    OutgoingMessage {
        provider_message_id: provider_message_id(&id),
        id,
        to,
        content,
        context,
    }
}

/// The `participants` message (a membership change) in `group` with `action`.
fn participants_in(
    e: &EngineEvent,
    group: &GroupId,
    action: MembershipChange,
) -> Option<IncomingMessage> {
    match e {
        EngineEvent::Inbound(m)
            if m.kind == MessageKind::Participants
                && m.group_id.as_deref() == Some(group.as_str())
                && m.details
                    .group_change
                    .as_ref()
                    .is_some_and(|c| c.action == action) =>
        {
            Some((**m).clone())
        }
        _ => None,
    }
}

fn phones_of(m: &IncomingMessage) -> Vec<Option<Phone>> {
    m.details
        .group_change
        .as_ref()
        .map(|c| c.participants.iter().map(|p| p.phone.clone()).collect())
        .unwrap_or_default()
}

fn rejected_code(r: Result<impl std::fmt::Debug, EngineError>) -> Option<String> {
    match r {
        Err(EngineError::Rejected { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn connected(e: &EngineEvent) -> Option<Option<Phone>> {
    match e {
        EngineEvent::Connected { phone, .. } => Some(phone.clone()),
        _ => None,
    }
}

fn is_linking(e: &EngineEvent) -> bool {
    matches!(
        e,
        EngineEvent::Qr { .. } | EngineEvent::PairCode { .. } | EngineEvent::QrExpired
    )
}

/// The server ack of `pid`: `Some(error)`.
fn ack_of(e: &EngineEvent, pid: &str) -> Option<Option<String>> {
    match e {
        EngineEvent::ServerAck {
            provider_message_id,
            error,
        } if provider_message_id == pid => Some(error.clone()),
        _ => None,
    }
}

fn receipt_of(e: &EngineEvent, pid: &str, kind: ReceiptKind) -> Option<()> {
    match e {
        EngineEvent::Receipt {
            provider_message_ids,
            kind: k,
            ..
        } if *k == kind && provider_message_ids.iter().any(|p| p == pid) => Some(()),
        _ => None,
    }
}

fn inbound_text(e: &EngineEvent, text: &str) -> Option<IncomingMessage> {
    match e {
        EngineEvent::Inbound(m) if m.text.as_deref() == Some(text) => Some((**m).clone()),
        _ => None,
    }
}
