//! End-to-end tests of the simulator with real, unmodified whatsapp-rust 0.7 clients.
//!
//! Every wait has a deadline; nothing sleeps to "let things settle". Run with
//! `RUST_LIB_BACKTRACE=0` (anyhow would capture a backtrace for every logged warning).

// Helpers outside `#[test]` functions panic on purpose too: this whole file is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use wagate_wa_sim::{Account, ReceiptKind, SimClient, Simulator};
use whatsapp_rust::UploadOptions;
use whatsapp_rust::download::MediaType;
use whatsapp_rust::media::{ImageOptions, image_message};
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;

const ONLINE: Duration = Duration::from_secs(15);
/// A freshly paired client waits 10 s for an app-state key share the simulated phone never
/// sends before it syncs and reports `Connected`.
const AFTER_PAIRING: Duration = Duration::from_secs(30);

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,whatsapp_rust=error,wacore=error".into()),
        )
        .with_test_writer()
        .try_init();
}

struct Pair {
    sim: Simulator,
    alice: Account,
    bob: Account,
    a: SimClient,
    b: SimClient,
}

async fn pair() -> Pair {
    init();
    let sim = Simulator::new();
    let alice = sim.create_account("15550000001", "Alice").unwrap();
    let bob = sim.create_account("+1 555-000-0002", "Bob").unwrap();
    let a = sim.connect(&alice).await.unwrap();
    let b = sim.connect(&bob).await.unwrap();
    a.wait_connected(ONLINE).await.unwrap();
    b.wait_connected(ONLINE).await.unwrap();
    Pair {
        sim,
        alice,
        bob,
        a,
        b,
    }
}

fn receipt_of(id: &str, kind: ReceiptType) -> impl FnMut(&Event) -> Option<()> {
    move |e| match e {
        Event::Receipt(r) if r.message_ids.iter().any(|m| m == id) && r.r#type == kind => Some(()),
        _ => None,
    }
}

fn ack_of(id: &str) -> impl FnMut(&Event) -> Option<Option<String>> {
    move |e| match e {
        Event::ServerAck(ack) if ack.id == id => Some(ack.error.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_ack_delivery_and_read_receipts() {
    let Pair { a, b, bob, .. } = pair().await;

    let id = a
        .client()
        .send_text(bob.pn_jid(), "hello from A")
        .await
        .unwrap()
        .message_id;
    assert_eq!(a.wait_for(ONLINE, ack_of(&id)).await.unwrap(), None);

    let (message, info) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hello from A"))
        .await
        .unwrap();
    assert_eq!(message.text_content(), Some("hello from A"));
    assert_eq!(info.id, id);
    assert_eq!(info.push_name, "Alice");

    a.wait_for(ONLINE, receipt_of(&id, ReceiptType::Delivered))
        .await
        .unwrap();
    b.client()
        .mark_as_read(&info.source.chat, None, &[id.as_str()])
        .await
        .unwrap();
    a.wait_for(ONLINE, receipt_of(&id, ReceiptType::Read))
        .await
        .unwrap();

    // And back: B replies to A.
    let reply = b
        .client()
        .send_text(info.source.chat.clone(), "hi A")
        .await
        .unwrap()
        .message_id;
    let (_, info) = a
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hi A"))
        .await
        .unwrap();
    assert_eq!(info.id, reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_phone_sends_read_receipt() {
    let Pair {
        sim, a, bob, alice, ..
    } = pair().await;
    let id = a
        .client()
        .send_text(bob.pn_jid(), "read me on your phone")
        .await
        .unwrap()
        .message_id;
    a.wait_for(ONLINE, ack_of(&id)).await.unwrap();
    // The message was fanned out to Bob's phone (device 0) too.
    sim.wait_until(ONLINE, |s| {
        s.phone_inbox(&bob)
            .iter()
            .any(|n| n.attrs.get("id").is_some_and(|v| v.as_str() == id))
    })
    .await
    .unwrap();
    let from_device = alice.device_jid(1);
    sim.phone_send_receipt(&bob, &from_device, &[&id], ReceiptKind::Read)
        .unwrap();
    a.wait_for(ONLINE, receipt_of(&id, ReceiptType::Read))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_on_whatsapp_tells_registered_from_unregistered() {
    let Pair { a, bob, .. } = pair().await;
    let stranger = Jid::pn("15559999999");
    let results = a
        .client()
        .contacts()
        .is_on_whatsapp(&[bob.pn_jid(), stranger.clone()])
        .await
        .unwrap();
    let by_user = |user: &str| {
        results
            .iter()
            .find(|r| r.jid.user == user)
            .unwrap_or_else(|| panic!("no result for {user}: {results:?}"))
    };
    let registered = by_user(&bob.phone);
    assert!(registered.is_registered);
    assert_eq!(
        registered.lid.as_ref().map(|l| l.user.to_string()),
        Some(bob.lid.clone())
    );
    assert!(!by_user(&stranger.user).is_registered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_is_delivered_on_reconnect() {
    init();
    let sim = Simulator::new();
    let alice = sim.create_account("15550000001", "Alice").unwrap();
    let bob = sim.create_account("15550000002", "Bob").unwrap();
    let a = sim.connect(&alice).await.unwrap();
    // Bob on a real SQLite store, so the restart below reopens the same file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bob.db");
    let open = || async {
        let store = whatsapp_rust::store::SqliteStore::new(path.to_str().unwrap())
            .await
            .unwrap();
        Arc::new(store) as Arc<dyn whatsapp_rust::store::traits::Backend>
    };
    let backend = open().await;
    let b_jid = sim
        .seed_backend(&bob, "Bob", backend.as_ref())
        .await
        .unwrap();
    let b = sim.start_client(backend, None).await.unwrap();
    a.wait_connected(ONLINE).await.unwrap();
    b.wait_connected(ONLINE).await.unwrap();
    b.shutdown().await;
    sim.wait_until(ONLINE, |s| !s.is_online(&b_jid))
        .await
        .unwrap();

    let id = a
        .client()
        .send_text(bob.pn_jid(), "while you were away")
        .await
        .unwrap()
        .message_id;
    assert_eq!(a.wait_for(ONLINE, ack_of(&id)).await.unwrap(), None);
    assert!(
        sim.queued(&b_jid) >= 1,
        "message should wait in B's offline queue"
    );

    // A new client on the same store logs in again and drains its queue.
    let b = sim.start_client(open().await, None).await.unwrap();
    let (_, info) = b
        .wait_message(ONLINE, |m, _| {
            m.text_content() == Some("while you were away")
        })
        .await
        .unwrap();
    assert_eq!(info.id, id);
    assert!(info.is_offline || sim.queued(&b_jid) == 0);
    b.wait_connected(ONLINE).await.unwrap();
    assert_eq!(sim.queued(&b_jid), 0);
    // B's delivery receipt for a message drained offline is `inactive` or delivered.
    a.wait_for(ONLINE, |e| match e {
        Event::Receipt(r)
            if r.message_ids.contains(&id)
                && matches!(r.r#type, ReceiptType::Delivered | ReceiptType::Inactive) =>
        {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();
    // Stop before the temporary directory goes away under the store.
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_by_the_simulated_phone() {
    init();
    let sim = Simulator::new();
    let carol = sim.create_account("15550000003", "Carol").unwrap();
    let dave = sim.create_account("15550000004", "Dave").unwrap();
    let fresh = sim.connect_fresh().await.unwrap();
    let code = fresh
        .wait_for(ONLINE, |e| match e {
            Event::PairingQrCode(qr) => Some(qr.code.clone()),
            _ => None,
        })
        .await
        .unwrap();
    let linked = sim.scan_qr(&carol, &code).unwrap();
    let paired_as = fresh
        .wait_for(ONLINE, |e| match e {
            Event::PairSuccess(p) => Some(p.id.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(paired_as, linked);
    fresh.wait_connected(AFTER_PAIRING).await.unwrap();
    assert!(
        !fresh
            .events
            .snapshot()
            .iter()
            .any(|e| matches!(&**e, Event::AppStateSyncFailed(_)))
    );

    // The new companion is a full device: another account can message it.
    let d = sim.connect(&dave).await.unwrap();
    d.wait_connected(ONLINE).await.unwrap();
    d.client()
        .send_text(carol.pn_jid(), "welcome, new device")
        .await
        .unwrap();
    fresh
        .wait_message(ONLINE, |m, _| {
            m.text_content() == Some("welcome, new device")
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_upload_and_download_through_the_fake_cdn() {
    let Pair { a, b, bob, .. } = pair().await;
    let picture: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let upload = a
        .client()
        .upload(picture.clone(), MediaType::Image, UploadOptions::default())
        .await
        .unwrap();
    let message = image_message(
        upload,
        ImageOptions {
            caption: Some("a picture".into()),
            ..Default::default()
        },
    );
    a.client()
        .send_message(bob.pn_jid(), message)
        .await
        .unwrap();
    let (received, _) = b
        .wait_message(ONLINE, |m, _| m.image_message.is_set())
        .await
        .unwrap();
    let image = received.image_message.as_option().unwrap();
    assert_eq!(image.caption.as_deref(), Some("a picture"));
    let downloaded = b.client().download(image).await.unwrap();
    assert_eq!(downloaded, picture);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_nack_reaches_the_sender() {
    let Pair {
        sim,
        a,
        b,
        alice,
        bob,
    } = pair().await;
    sim.nack_next_message(&alice.device_jid(1), "479");
    let refused = a
        .client()
        .send_text(bob.pn_jid(), "refused")
        .await
        .unwrap()
        .message_id;
    assert_eq!(
        a.wait_for(ONLINE, ack_of(&refused)).await.unwrap(),
        Some("479".to_string())
    );
    // Only the next one: the following message goes through.
    let fine = a
        .client()
        .send_text(bob.pn_jid(), "accepted")
        .await
        .unwrap()
        .message_id;
    assert_eq!(a.wait_for(ONLINE, ack_of(&fine)).await.unwrap(), None);
    b.wait_message(ONLINE, |m, _| m.text_content() == Some("accepted"))
        .await
        .unwrap();
    assert!(!b.events.snapshot().iter().any(|e| matches!(&**e,
            Event::Messages(batch) if batch.messages.iter().any(|m| m.info.id == refused))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_removed_logs_the_client_out() {
    let Pair { sim, a, alice, .. } = pair().await;
    let device = alice.device_jid(1);
    assert!(sim.remove_device(&device));
    a.wait_for(ONLINE, |e| matches!(e, Event::LoggedOut(_)).then_some(()))
        .await
        .unwrap();
    // And it stays unlinked.
    let again = sim.start_client(a.backend.clone(), None).await.unwrap();
    again
        .wait_for(ONLINE, |e| matches!(e, Event::LoggedOut(_)).then_some(()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_reconnects_and_still_relays() {
    let Pair {
        sim,
        a,
        b,
        alice,
        bob,
    } = pair().await;
    let mark = a.events.len();
    assert!(sim.drop_connection(&alice.device_jid(1)));
    a.events
        .wait_for_since(mark, ONLINE, |e| {
            matches!(e, Event::Disconnected(_)).then_some(())
        })
        .await
        .unwrap();
    a.events
        .wait_for_since(mark, ONLINE, |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await
        .unwrap();
    a.client()
        .send_text(bob.pn_jid(), "after reconnect")
        .await
        .unwrap();
    b.wait_message(ONLINE, |m, _| m.text_content() == Some("after reconnect"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_515_reconnects_at_once() {
    let Pair { sim, a, alice, .. } = pair().await;
    let mark = a.events.len();
    assert!(sim.stream_error(&alice.device_jid(1), 515));
    a.events
        .wait_for_since(mark, ONLINE, |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_ban_is_reported() {
    let Pair { sim, a, alice, .. } = pair().await;
    sim.temp_ban(&alice, 101, Duration::from_secs(3600));
    let ban = a
        .wait_for(Duration::from_secs(30), |e| match e {
            Event::TemporaryBan(ban) => Some(ban.expire),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(ban.num_seconds(), 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_but_delivers() {
    let Pair { sim, a, b, bob, .. } = pair().await;
    sim.set_latency(Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    let id = a
        .client()
        .send_text(bob.pn_jid(), "slow")
        .await
        .unwrap()
        .message_id;
    a.wait_for(ONLINE, ack_of(&id)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    sim.set_latency(Duration::ZERO);
    b.wait_message(ONLINE, |m, _| m.text_content() == Some("slow"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_listener_serves_the_stock_transport() {
    init();
    let sim = Simulator::new();
    let url = sim.listen("127.0.0.1:0").await.unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"));
    let erin = sim.create_account("15550000005", "Erin").unwrap();
    let frank = sim.create_account("15550000006", "Frank").unwrap();
    let f = sim.connect(&frank).await.unwrap();

    let backend: Arc<dyn whatsapp_rust::store::traits::Backend> =
        Arc::new(whatsapp_rust::wacore::store::InMemoryBackend::new());
    sim.seed_backend(&erin, "Erin", backend.as_ref())
        .await
        .unwrap();
    let events = wagate_wa_sim::EventLog::default();
    let bot = Bot::builder()
        .with_backend_arc(backend)
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(&url))
        .with_http_client(sim.http_client())
        .with_runtime(TokioRuntime)
        .with_version((2, 3000, 1_042_742_319))
        .with_wanted_pre_key_count(30)
        .skip_history_sync()
        .with_event_handler(events.clone())
        .build()
        .await
        .unwrap();
    let client = bot.client();
    let _handle = bot.spawn();
    events
        .wait_for(ONLINE, |e| matches!(e, Event::Connected(_)).then_some(()))
        .await
        .unwrap();
    f.wait_connected(ONLINE).await.unwrap();
    client
        .send_text(frank.pn_jid(), "over a real socket")
        .await
        .unwrap();
    f.wait_message(ONLINE, |m, _| {
        m.text_content() == Some("over a real socket")
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_in_one_process() {
    init();
    let sim = Simulator::new();
    let mut clients = Vec::new();
    for i in 0..100u32 {
        let account = sim
            .create_account(&format!("1555100{i:04}"), &format!("user{i}"))
            .unwrap();
        clients.push((account.clone(), sim.connect(&account).await.unwrap()));
    }
    for (_, client) in &clients {
        client.wait_connected(ONLINE).await.unwrap();
    }
    for (account, _) in &clients {
        assert!(sim.is_online(&account.device_jid(1)));
    }
    // A message across the crowd still flows.
    let (first, last) = (&clients[0], &clients[99]);
    first
        .1
        .client()
        .send_text(last.0.pn_jid(), "hello, number 99")
        .await
        .unwrap();
    last.1
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hello, number 99"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_phone_sends_messages_to_linked_devices() {
    let Pair {
        sim,
        a,
        b,
        alice,
        bob,
    } = pair().await;
    // Bob's phone (device 0), driven by a real client, writes to Alice's linked device…
    let phone = sim.connect_phone(&bob).await.unwrap();
    phone.wait_connected(ONLINE).await.unwrap();
    let id = phone
        .client()
        .send_text(alice.pn_jid(), "from Bob's phone")
        .await
        .unwrap()
        .message_id;
    assert_eq!(phone.wait_for(ONLINE, ack_of(&id)).await.unwrap(), None);
    let (_, info) = a
        .wait_message(ONLINE, |m, _| m.text_content() == Some("from Bob's phone"))
        .await
        .unwrap();
    assert_eq!(info.source.sender.device, 0);
    // …and Bob's own linked device sees it as sent by Bob himself.
    let (_, own) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("from Bob's phone"))
        .await
        .unwrap();
    assert!(own.source.is_from_me);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_linking_by_the_simulated_phone() {
    init();
    let sim = Simulator::new();
    let gina = sim.create_account("15550000007", "Gina").unwrap();
    let fresh = sim.connect_fresh().await.unwrap();
    let client = fresh.client();
    client.wait_for_socket(ONLINE).await.unwrap();
    let code = client
        .pair_with_code(whatsapp_rust::pair_code::PairCodeOptions {
            phone_number: gina.phone.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    sim.enter_pair_code(&gina, &code).unwrap();
    let paired_as = fresh
        .wait_for(ONLINE, |e| match e {
            Event::PairSuccess(p) => Some(p.id.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(paired_as.user, gina.phone);
    fresh.wait_connected(AFTER_PAIRING).await.unwrap();
}

/// A client creates a group with another account and a number not on WhatsApp: the
/// members read its metadata and find it among their groups; an outsider may not read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_created_and_their_members_read_them() {
    let Pair {
        sim,
        a,
        b,
        alice,
        bob,
        ..
    } = pair().await;
    let carol = sim.create_account("15550000003", "Carol").unwrap();
    let c = sim.connect(&carol).await.unwrap();
    c.wait_connected(ONLINE).await.unwrap();
    let options = whatsapp_rust::GroupCreateOptions::builder()
        .subject("Shop team")
        .participants(vec![
            whatsapp_rust::GroupParticipantOptions::from_phone(bob.pn_jid()),
            whatsapp_rust::GroupParticipantOptions::from_phone(Jid::pn("15559990000")),
        ])
        .build();
    let created = a.client().groups().create_group(options).await.unwrap();
    let group = created.metadata.id.clone();
    assert_eq!(group.server.to_string(), "g.us");
    assert_eq!(created.metadata.subject, "Shop team");
    let members: Vec<String> = created
        .metadata
        .participants
        .iter()
        .map(|p| p.jid.user.to_string())
        .collect();
    assert_eq!(members, [alice.phone.clone(), bob.phone.clone()]);

    let seen = b.client().groups().get_metadata(&group).await.unwrap();
    assert_eq!(seen.subject, "Shop team");
    assert_eq!(seen.participants.len(), 2);
    let creator = seen
        .participants
        .iter()
        .find(|p| p.jid.user == alice.phone)
        .unwrap();
    assert!(creator.is_admin(), "{creator:?}");
    let mine = b.client().groups().get_participating().await.unwrap();
    assert!(mine.contains_key(&group), "{mine:?}");
    assert!(
        c.client()
            .groups()
            .get_participating()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(c.client().groups().get_metadata(&group).await.is_err());
}

/// Admins change the members (each answered on its own), members may not; an admin gets
/// and resets the invite link (members do not see it); a member leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_change_by_admins_and_leave() {
    let Pair { sim, a, b, bob, .. } = pair().await;
    let carol = sim.create_account("15550000003", "Carol").unwrap();
    let c = sim.connect(&carol).await.unwrap();
    c.wait_connected(ONLINE).await.unwrap();
    let options = whatsapp_rust::GroupCreateOptions::builder()
        .subject("Team")
        .participants(vec![whatsapp_rust::GroupParticipantOptions::from_phone(
            bob.pn_jid(),
        )])
        .build();
    let group = a
        .client()
        .groups()
        .create_group(options)
        .await
        .unwrap()
        .metadata
        .id;
    let members = |who: &SimClient| {
        let group = group.clone();
        let client = who.client();
        async move {
            let mut m: Vec<(String, bool)> = client
                .groups()
                .get_metadata(&group)
                .await
                .unwrap()
                .participants
                .iter()
                .map(|p| (p.jid.user.to_string(), p.is_admin()))
                .collect();
            m.sort();
            m
        }
    };

    // Bob is no admin: his add is refused as a whole.
    assert!(
        b.client()
            .groups()
            .add_participants(group.clone(), &[carol.pn_jid()])
            .await
            .is_err()
    );
    let added = a
        .client()
        .groups()
        .add_participants(
            group.clone(),
            &[carol.pn_jid(), bob.pn_jid(), Jid::pn("15559990000")],
        )
        .await
        .unwrap();
    let errors: Vec<Option<String>> = added.iter().map(|r| r.error.clone()).collect();
    assert_eq!(errors, [None, Some("409".into()), Some("404".into())]);
    assert!(
        c.client()
            .groups()
            .get_participating()
            .await
            .unwrap()
            .contains_key(&group)
    );

    a.client()
        .groups()
        .promote_participants(group.clone(), &[bob.pn_jid()])
        .await
        .unwrap();
    assert_eq!(
        members(&c).await,
        [
            ("15550000001".into(), true),
            ("15550000002".into(), true),
            ("15550000003".into(), false)
        ]
    );
    // Now an admin, Bob removes Carol, who can no longer read the group.
    let removed = b
        .client()
        .groups()
        .remove_participants(group.clone(), &[carol.pn_jid()])
        .await
        .unwrap();
    assert!(removed[0].error.is_none(), "{:?}", removed[0].error);
    assert!(c.client().groups().get_metadata(&group).await.is_err());
    a.client()
        .groups()
        .demote_participants(group.clone(), &[bob.pn_jid()])
        .await
        .unwrap();
    assert_eq!(
        members(&a).await,
        [("15550000001".into(), true), ("15550000002".into(), false)]
    );

    let link = a
        .client()
        .groups()
        .get_invite_link(group.clone(), false)
        .await
        .unwrap();
    assert!(link.starts_with("https://chat.whatsapp.com/"), "{link}");
    let again = a
        .client()
        .groups()
        .get_invite_link(group.clone(), false)
        .await
        .unwrap();
    assert_eq!(link, again, "the same link until it is reset");
    // Groups are created with `member_link_mode=admin_link`: only admins see the link.
    for reset in [false, true] {
        assert!(
            b.client()
                .groups()
                .get_invite_link(group.clone(), reset)
                .await
                .is_err(),
            "only admins see or reset it"
        );
    }
    let reset = a
        .client()
        .groups()
        .get_invite_link(group.clone(), true)
        .await
        .unwrap();
    assert_ne!(reset, link);

    b.client().groups().leave(group.clone()).await.unwrap();
    assert!(
        b.client()
            .groups()
            .get_participating()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(members(&a).await, [("15550000001".into(), true)]);
}

/// A group message is fanned out with its sender key to every other member device (the
/// creator's first send distributes it), both ways; a member's delivery receipt reaches
/// the author from the group; members are told of the changes (`w:gp2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_receipts_and_notifications_reach_the_members() {
    let Pair {
        a, b, alice, bob, ..
    } = pair().await;
    let options = whatsapp_rust::GroupCreateOptions::builder()
        .subject("Relay")
        .participants(vec![whatsapp_rust::GroupParticipantOptions::from_phone(
            bob.pn_jid(),
        )])
        .build();
    let group = a
        .client()
        .groups()
        .create_group(options)
        .await
        .unwrap()
        .metadata
        .id;
    b.wait_for(ONLINE, |e| match e {
        Event::GroupUpdate(u) if u.group_jid == group => Some(()),
        _ => None,
    })
    .await
    .unwrap();

    let sent = a
        .client()
        .send_text(group.clone(), "hello team")
        .await
        .unwrap()
        .message_id;
    let (_, info) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hello team"))
        .await
        .unwrap();
    assert_eq!(info.source.chat, group);
    assert!(info.source.is_group);
    assert_eq!(info.source.sender.user, alice.phone);
    a.wait_for(ONLINE, |e| match e {
        Event::Receipt(r) if r.message_ids.contains(&sent) && r.source.chat == group => Some(()),
        _ => None,
    })
    .await
    .unwrap();

    b.client().send_text(group.clone(), "hi all").await.unwrap();
    let (_, info) = a
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hi all"))
        .await
        .unwrap();
    assert_eq!(info.source.chat, group);
    assert_eq!(info.source.sender.user, bob.phone);

    a.client()
        .groups()
        .promote_participants(group.clone(), &[bob.pn_jid()])
        .await
        .unwrap();
    b.wait_for(ONLINE, |e| match e {
        Event::GroupUpdate(u) if u.group_jid == group && u.action.tag_name() == "promote" => {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();
    b.client().groups().leave(group.clone()).await.unwrap();
    a.wait_for(ONLINE, |e| match e {
        Event::GroupUpdate(u) if u.group_jid == group && u.action.tag_name() == "remove" => {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();
}

/// The participants a `w:gp2` change names, as (JID, the number beside it), if `u` is one.
fn changed(u: &whatsapp_rust::types::events::GroupUpdate) -> Option<Vec<(Jid, Option<Jid>)>> {
    use whatsapp_rust::wacore::stanza::groups::GroupNotificationAction as Action;
    let named = match &u.action {
        Action::Add { participants, .. } | Action::Remove { participants, .. } => participants,
        Action::Promote { participants } | Action::Demote { participants } => participants,
        _ => return None,
    };
    Some(
        named
            .iter()
            .map(|p| (p.jid.clone(), p.phone_number.clone()))
            .collect(),
    )
}

/// After `set_lid_groups(true)` a new group is LID-addressed as WhatsApp's are today: its
/// metadata names members and creator by LID with their numbers beside, messages come from
/// the author's LID device with its number (`participant_pn`), receipts and chat states name
/// members by LID, member changes answer and notify by LID with numbers, and the sender
/// keys reach LID devices (a member added later writes to the group too). Groups created
/// before, or after turning it off, stay PN-addressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lid_groups_name_members_by_lid_with_their_numbers() {
    use whatsapp_rust::types::message::AddressingMode;
    let Pair {
        sim,
        a,
        b,
        alice,
        bob,
    } = pair().await;
    let carol = sim.create_account("15550000003", "Carol").unwrap();
    let c = sim.connect(&carol).await.unwrap();
    c.wait_connected(ONLINE).await.unwrap();
    sim.set_lid_groups(true);
    let options = whatsapp_rust::GroupCreateOptions::builder()
        .subject("LID team")
        .participants(vec![whatsapp_rust::GroupParticipantOptions::from_phone(
            bob.pn_jid(),
        )])
        .build();
    let created = a
        .client()
        .groups()
        .create_group(options)
        .await
        .unwrap()
        .metadata;
    let group = created.id.clone();
    let by_lid = |m: &whatsapp_rust::GroupMetadata| -> Vec<(Jid, Option<Jid>, bool)> {
        let mut m: Vec<_> = m
            .participants
            .iter()
            .map(|p| (p.jid.clone(), p.phone_number.clone(), p.is_admin()))
            .collect();
        m.sort_by_key(|(j, _, _)| j.user.to_string());
        m
    };
    let want = {
        let mut w = vec![
            (alice.lid_jid(), Some(alice.pn_jid()), true),
            (bob.lid_jid(), Some(bob.pn_jid()), false),
        ];
        w.sort_by_key(|(j, _, _)| j.user.to_string());
        w
    };
    assert_eq!(created.addressing_mode, AddressingMode::Lid);
    assert_eq!(by_lid(&created), want);
    assert_eq!(created.creator, Some(alice.lid_jid()));
    assert_eq!(created.creator_pn, Some(alice.pn_jid()));
    let seen = b.client().groups().get_metadata(&group).await.unwrap();
    assert_eq!(seen.addressing_mode, AddressingMode::Lid);
    assert_eq!(by_lid(&seen), want);
    let listed = b.client().groups().get_participating().await.unwrap();
    assert_eq!(by_lid(&listed[&group]), want);
    b.wait_for(ONLINE, |e| match e {
        Event::GroupUpdate(u) if u.group_jid == group && u.action.tag_name() == "create" => {
            Some(())
        }
        _ => None,
    })
    .await
    .unwrap();

    // A message: from Alice's LID device, her number beside it.
    let sent = a
        .client()
        .send_text(group.clone(), "hello LID team")
        .await
        .unwrap()
        .message_id;
    let (_, info) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hello LID team"))
        .await
        .unwrap();
    assert_eq!(info.source.chat, group);
    assert_eq!(info.source.sender, Jid::lid_device(alice.lid.clone(), 1));
    assert_eq!(info.source.sender_alt, Some(alice.device_jid(1)));
    assert_eq!(info.source.addressing_mode, Some(AddressingMode::Lid));
    // Bob's delivery receipt names him by his LID device.
    let reader = a
        .wait_for(ONLINE, |e| match e {
            Event::Receipt(r) if r.message_ids.contains(&sent) && r.source.chat == group => {
                Some(r.source.sender.clone())
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(reader, Jid::lid_device(bob.lid.clone(), 1));

    b.client().send_text(group.clone(), "hi LID").await.unwrap();
    let (_, info) = a
        .wait_message(ONLINE, |m, _| m.text_content() == Some("hi LID"))
        .await
        .unwrap();
    assert_eq!(info.source.sender, Jid::lid_device(bob.lid.clone(), 1));
    assert_eq!(info.source.sender_alt, Some(bob.device_jid(1)));

    // "typing…" in the group: the typist by LID device.
    b.client().chatstate().send_composing(&group).await.unwrap();
    sim.wait_until(ONLINE, |s| {
        s.delivered(&alice.device_jid(1)).iter().any(|n| {
            n.tag == "chatstate"
                && n.attrs.get("participant").map(|v| v.as_str().into_owned())
                    == Some(Jid::lid_device(bob.lid.clone(), 1).to_string())
        })
    })
    .await
    .unwrap();

    // Carol is added by number: answered and announced by LID, her number beside.
    let added = a
        .client()
        .groups()
        .add_participants(group.clone(), &[carol.pn_jid()])
        .await
        .unwrap();
    assert_eq!(
        (
            added[0].jid.clone(),
            added[0].phone_number.clone(),
            added[0].error.clone()
        ),
        (carol.lid_jid(), Some(carol.pn_jid()), None)
    );
    let (actor, actor_pn, named) = c
        .wait_for(ONLINE, |e| match e {
            Event::GroupUpdate(u) if u.group_jid == group && u.action.tag_name() == "add" => {
                Some((u.participant.clone(), u.participant_pn.clone(), changed(u)?))
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(actor, Some(alice.lid_jid()));
    assert_eq!(actor_pn, Some(alice.pn_jid()));
    assert_eq!(named, [(carol.lid_jid(), Some(carol.pn_jid()))]);

    // Carol writes: her sender key reaches the others' LID devices.
    c.client()
        .send_text(group.clone(), "carol here")
        .await
        .unwrap();
    let (_, info) = b
        .wait_message(ONLINE, |m, _| m.text_content() == Some("carol here"))
        .await
        .unwrap();
    assert_eq!(info.source.sender, Jid::lid_device(carol.lid.clone(), 1));

    a.client()
        .groups()
        .remove_participants(group.clone(), &[carol.lid_jid()])
        .await
        .unwrap();
    let named = b
        .wait_for(ONLINE, |e| match e {
            Event::GroupUpdate(u) if u.group_jid == group && u.action.tag_name() == "remove" => {
                changed(u)
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(named, [(carol.lid_jid(), Some(carol.pn_jid()))]);

    // Turned off: the next group is PN-addressed again; the LID group stays LID.
    sim.set_lid_groups(false);
    let options = whatsapp_rust::GroupCreateOptions::builder()
        .subject("PN team")
        .participants(vec![whatsapp_rust::GroupParticipantOptions::from_phone(
            bob.pn_jid(),
        )])
        .build();
    let pn_group = a
        .client()
        .groups()
        .create_group(options)
        .await
        .unwrap()
        .metadata;
    assert_eq!(pn_group.addressing_mode, AddressingMode::Pn);
    assert!(
        pn_group
            .participants
            .iter()
            .all(|p| p.jid.server == whatsapp_rust::Server::Pn && p.phone_number.is_none()),
        "{pn_group:?}"
    );
    let again = b.client().groups().get_metadata(&group).await.unwrap();
    assert_eq!(again.addressing_mode, AddressingMode::Lid);
}
