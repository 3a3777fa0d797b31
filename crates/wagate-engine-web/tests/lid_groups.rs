//! The engine in LID-addressed groups, as WhatsApp's groups are today, on the in-process
//! fake WhatsApp server (`wagate-wa-sim` with `Simulator::set_lid_groups`): WhatsApp names
//! the members there by LID with their numbers beside, and wagate must still show numbers:
//! in a group's members, as a group message's sender, and in membership changes. The peer
//! is Bob, a running whatsapp-rust client; the device under test logs in from keys seeded
//! into its store (no linking).
//!
//! Every wait has a deadline; nothing sleeps to "let things settle". Run with
//! `RUST_LIB_BACKTRACE=0`.

// Helpers outside #[test] functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use wagate_core::chat::{GroupInfo, GroupRole, MembershipChange};
use wagate_core::engine::{
    ChatState, DeviceContext, Engine, EngineEvent, EngineSession, IncomingMessage, OutgoingContent,
    OutgoingMessage, ReadMark, provider_message_id,
};
use wagate_core::id::{DeviceUid, MessageId};
use wagate_core::message::MessageKind;
use wagate_core::{GroupId, Phone};
use wagate_engine_tests::Recorder;
use wagate_engine_web::whatsapp_rust::prelude::*;
use wagate_engine_web::whatsapp_rust::store::SqliteStore;
use wagate_engine_web::whatsapp_rust::types::events::GroupUpdate;
use wagate_engine_web::whatsapp_rust::types::message::AddressingMode;
use wagate_engine_web::whatsapp_rust::types::presence::ReceiptType;
use wagate_engine_web::whatsapp_rust::wacore::stanza::groups::GroupNotificationAction;
use wagate_engine_web::whatsapp_rust::{GroupCreateOptions, GroupParticipantOptions};
use wagate_engine_web::{WebEngine, WebEngineConfig, WebSession};
use wagate_wa_sim::{Account, SimClient, Simulator};

const ONLINE: Duration = Duration::from_secs(20);
const SIM_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,whatsapp_rust=error,wacore=error".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Alice's device under test, Bob's running client, and Carol (an account with only her
/// simulated phone), on a simulator whose new groups are LID-addressed.
struct World {
    sim: Simulator,
    alice: Account,
    bob: Account,
    carol: Account,
    b: SimClient,
    session: WebSession,
    sink: Arc<Recorder>,
    engine: WebEngine,
    uid: DeviceUid,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        init();
        let sim = Simulator::new();
        sim.set_lid_groups(true);
        let alice = sim.create_account("15550000001", "Alice").unwrap();
        let bob = sim.create_account("15550000002", "Bob").unwrap();
        let carol = sim.create_account("15550000003", "Carol").unwrap();
        let b = sim.connect(&bob).await.unwrap();
        b.wait_connected(ONLINE).await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut cfg = WebEngineConfig::new(dir.path());
        cfg.transport = Some(Arc::new(sim.transport()));
        cfg.http_client = Some(Arc::new(sim.http_client()));
        cfg.wa_version = Some(SIM_VERSION);
        cfg.start_jitter = Duration::ZERO;
        let engine = WebEngine::new(cfg);
        let uid = DeviceUid::parse("dev_lid_groups").unwrap();
        // Keys already in the store, as after linking: the device logs in straight away.
        let store = SqliteStore::new(engine.store_path(&uid).to_str().unwrap())
            .await
            .unwrap();
        sim.seed_backend(&alice, "Alice", &store).await.unwrap();
        let sink = Recorder::new();
        let device = DeviceContext {
            epoch: 1,
            uid: uid.clone(),
            name: "shop".into(),
            phone: Some(Phone::parse(&alice.phone).unwrap()),
        };
        let session = engine.start_session(device, sink.clone()).await.unwrap();
        sink.wait_for("the event", ONLINE, |e| {
            matches!(e, EngineEvent::Connected { .. }).then_some(())
        })
        .await;
        Self {
            sim,
            alice,
            bob,
            carol,
            b,
            session,
            sink,
            engine,
            uid,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.session.stop().await;
        self.engine.forget(&self.uid).await.unwrap();
    }

    /// The device's inbound message matching `pred`.
    async fn inbound(&self, pred: impl Fn(&IncomingMessage) -> bool) -> IncomingMessage {
        self.sink
            .wait_for("the inbound message", ONLINE, |e| match e {
                EngineEvent::Inbound(m) if pred(m) => Some((**m).clone()),
                _ => None,
            })
            .await
    }

    /// The `participants` message (a membership change) the device got in `group`.
    async fn change_seen(&self, group: &GroupId, action: MembershipChange) -> IncomingMessage {
        self.inbound(|m| {
            m.kind == MessageKind::Participants
                && m.group_id.as_deref() == Some(group.as_str())
                && m.details
                    .group_change
                    .as_ref()
                    .is_some_and(|c| c.action == action)
        })
        .await
    }

    /// Bob's client's first `GroupUpdate` in `group` with the action `tag`.
    async fn bob_told(&self, group: &GroupId, tag: &str) -> GroupUpdate {
        self.b
            .wait_for(ONLINE, |e| match e {
                Event::GroupUpdate(u)
                    if u.group_jid.user == group.user() && u.action.tag_name() == tag =>
                {
                    Some(u.clone())
                }
                _ => None,
            })
            .await
            .unwrap()
    }
}

fn phone(a: &Account) -> Phone {
    Phone::parse(&a.phone).unwrap()
}

/// `lid@lid`, as wagate shows a LID.
fn lid(a: &Account) -> String {
    format!("{}@lid", a.lid)
}

/// A group's members as (number, LID, role), by number.
fn members(info: &GroupInfo) -> Vec<(Option<String>, Option<String>, GroupRole)> {
    let mut m: Vec<_> = info
        .members
        .iter()
        .map(|m| {
            (
                m.phone.as_ref().map(|p| p.digits().to_owned()),
                m.lid.clone(),
                m.role,
            )
        })
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

fn member(a: &Account, role: GroupRole) -> (Option<String>, Option<String>, GroupRole) {
    (Some(a.phone.clone()), Some(lid(a)), role)
}

/// The members a `participants` message names, as (number, LID).
fn changed(m: &IncomingMessage) -> Vec<(Option<String>, Option<String>)> {
    m.details
        .group_change
        .as_ref()
        .unwrap()
        .participants
        .iter()
        .map(|p| {
            (
                p.phone.as_ref().map(|p| p.digits().to_owned()),
                p.lid.clone(),
            )
        })
        .collect()
}

fn in_group(group: &GroupId, content: OutgoingContent) -> OutgoingMessage {
    let id = MessageId::new();
    OutgoingMessage {
        provider_message_id: provider_message_id(&id),
        id,
        to: group.clone().into(),
        content,
        context: Default::default(),
    }
}

async fn acked(sink: &Recorder, id: &str) -> Option<String> {
    sink.wait_for("the event", ONLINE, |e| match e {
        EngineEvent::ServerAck {
            provider_message_id,
            error,
        } if provider_message_id == id => Some(error.clone()),
        _ => None,
    })
    .await
}

/// The members a `w:gp2` change names, as (JID, the number beside it).
fn named(u: &GroupUpdate) -> Vec<(Jid, Option<Jid>)> {
    match &u.action {
        GroupNotificationAction::Add { participants, .. }
        | GroupNotificationAction::Remove { participants, .. }
        | GroupNotificationAction::Promote { participants }
        | GroupNotificationAction::Demote { participants } => participants
            .iter()
            .map(|p| (p.jid.clone(), p.phone_number.clone()))
            .collect(),
        other => panic!("not a member change: {other:?}"),
    }
}

/// A LID group the device creates with Bob: the device reads its members by number with
/// their LIDs and roles; its message reaches Bob from its LID device; Bob's message reaches
/// it from Bob's number (his LID beside), and its read receipt and "typing…" reach him;
/// its member changes reach Bob by LID with numbers; Bob leaving reaches it by number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_lid_group_shows_members_and_senders_by_phone() {
    let w = World::new().await;
    let (alice, bob, carol) = (&w.alice, &w.bob, &w.carol);
    let created = w
        .session
        .create_group("LID team", &[phone(bob)])
        .await
        .unwrap();
    let group = created.id.clone();
    let want = vec![
        member(alice, GroupRole::Owner),
        member(bob, GroupRole::Member),
    ];
    assert_eq!(members(&created), want, "as created: {created:#?}");
    assert_eq!(created.own_role, Some(GroupRole::Owner));
    let info = w.session.group_info(&group).await.unwrap();
    assert_eq!(members(&info), want, "as read: {info:#?}");
    assert_eq!(info.own_role, Some(GroupRole::Owner));
    let listed = w.session.groups().await.unwrap();
    let mine = listed.iter().find(|g| g.id == group).unwrap();
    assert_eq!((mine.size, mine.own_role), (2, Some(GroupRole::Owner)));
    // WhatsApp (the simulator) really names them by LID: Bob's client reads it so.
    let seen =
        w.b.client()
            .groups()
            .get_metadata(&Jid::group(group.user()))
            .await
            .unwrap();
    assert_eq!(seen.addressing_mode, AddressingMode::Lid);
    assert!(seen.participants.iter().all(|p| p.jid.is_lid()), "{seen:?}");

    // The device writes: Bob gets it from Alice's LID device, her number beside.
    let hello = in_group(
        &group,
        OutgoingContent::Text {
            text: "hello, LID team".into(),
        },
    );
    w.session.send(hello.clone()).await.unwrap();
    assert_eq!(acked(&w.sink, &hello.provider_message_id).await, None);
    let (_, info) =
        w.b.wait_message(ONLINE, |_, i| i.id == hello.provider_message_id)
            .await
            .unwrap();
    assert_eq!(info.source.chat.user, group.user());
    assert_eq!(info.source.sender, Jid::lid_device(alice.lid.clone(), 1));
    assert_eq!(info.source.sender_alt, Some(alice.device_jid(1)));

    // Bob writes: the device reports him by number, with his LID, in the group.
    let reply =
        w.b.client()
            .send_text(Jid::group(group.user()), "hi from Bob, by LID")
            .await
            .unwrap()
            .message_id;
    let m = w.inbound(|m| m.provider_message_id == reply).await;
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.text.as_deref(), Some("hi from Bob, by LID"));
    assert_eq!(m.from, Some(phone(bob)), "from Bob's number: {m:#?}");
    assert_eq!(m.from_lid, Some(lid(bob)));
    assert_eq!(m.from_name.as_deref(), Some("Bob"));
    assert!(m.is_group);
    assert_eq!(m.group_id.as_deref(), Some(group.as_str()));

    // Read by the device: Bob's client gets the receipt, the reader named by LID.
    w.session
        .mark_read(
            &group.clone().into(),
            &[ReadMark {
                provider_message_id: reply.clone(),
                sender: Some(phone(bob)),
            }],
        )
        .await
        .unwrap();
    let reader =
        w.b.wait_for(ONLINE, |e| match e {
            Event::Receipt(r)
                if r.message_ids.contains(&reply) && r.r#type == ReceiptType::Read =>
            {
                Some(r.source.sender.clone())
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(reader, Jid::lid_device(alice.lid.clone(), 1));
    w.session
        .chat_state(&group.clone().into(), ChatState::Typing)
        .await
        .unwrap();
    w.sim
        .wait_until(ONLINE, |s| {
            s.chat_state_between(group.as_str(), &alice.phone)
                .as_deref()
                == Some("composing")
        })
        .await
        .unwrap();

    // The device adds Carol and promotes Bob: Bob is told by LID, numbers beside.
    let added = w
        .session
        .change_members(&group, MembershipChange::Add, &[phone(carol)])
        .await
        .unwrap();
    assert_eq!(added[0].error, None, "{added:#?}");
    let told = w.bob_told(&group, "add").await;
    assert_eq!(named(&told), [(carol.lid_jid(), Some(carol.pn_jid()))]);
    assert_eq!(told.participant, Some(alice.lid_jid()));
    assert_eq!(told.participant_pn, Some(alice.pn_jid()));
    let promoted = w
        .session
        .change_members(&group, MembershipChange::Promote, &[phone(bob)])
        .await
        .unwrap();
    assert_eq!(promoted[0].error, None, "{promoted:#?}");
    assert_eq!(
        named(&w.bob_told(&group, "promote").await),
        [(bob.lid_jid(), Some(bob.pn_jid()))]
    );
    let info = w.session.group_info(&group).await.unwrap();
    assert_eq!(
        members(&info),
        [
            member(alice, GroupRole::Owner),
            member(bob, GroupRole::Admin),
            member(carol, GroupRole::Member),
        ],
        "{info:#?}"
    );
    let removed = w
        .session
        .change_members(&group, MembershipChange::Remove, &[phone(carol)])
        .await
        .unwrap();
    assert_eq!(removed[0].error, None, "{removed:#?}");
    assert_eq!(
        named(&w.bob_told(&group, "remove").await),
        [(carol.lid_jid(), Some(carol.pn_jid()))]
    );

    // Bob leaves: the device reports it by his number.
    w.b.client()
        .groups()
        .leave(Jid::group(group.user()))
        .await
        .unwrap();
    let left = w.change_seen(&group, MembershipChange::Leave).await;
    assert_eq!(left.from, Some(phone(bob)), "{left:#?}");
    assert_eq!(left.from_lid, Some(lid(bob)));
    assert_eq!(changed(&left), [(Some(bob.phone.clone()), Some(lid(bob)))]);
    let info = w.session.group_info(&group).await.unwrap();
    assert_eq!(members(&info), [member(alice, GroupRole::Owner)]);
    w.stop().await;
}

/// A LID group Bob creates with the device and Carol: the device is told it was added (by
/// Bob's number, the members by theirs), reads the members by number, gets Bob's changes by
/// number, and its first message there reaches Bob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_lid_group_reaches_the_device_by_phone() {
    let w = World::new().await;
    let (alice, bob, carol) = (&w.alice, &w.bob, &w.carol);
    let options = GroupCreateOptions::new("Bob's LID group").with_participants(vec![
        GroupParticipantOptions::from_phone(alice.pn_jid()),
        GroupParticipantOptions::from_phone(carol.pn_jid()),
    ]);
    let created = w.b.client().groups().create_group(options).await.unwrap();
    assert_eq!(created.metadata.addressing_mode, AddressingMode::Lid);
    let group = GroupId::parse(&created.metadata.id.to_string()).unwrap();

    let joined = w.change_seen(&group, MembershipChange::Add).await;
    assert_eq!(joined.from, Some(phone(bob)), "added by Bob: {joined:#?}");
    assert_eq!(joined.from_lid, Some(lid(bob)));
    let mut added = changed(&joined);
    added.sort();
    assert_eq!(
        added,
        [
            (Some(alice.phone.clone()), Some(lid(alice))),
            (Some(carol.phone.clone()), Some(lid(carol))),
        ]
    );
    let info = w.session.group_info(&group).await.unwrap();
    assert_eq!(info.own_role, Some(GroupRole::Member));
    assert_eq!(
        members(&info),
        [
            member(alice, GroupRole::Member),
            member(bob, GroupRole::Owner),
            member(carol, GroupRole::Member),
        ],
        "{info:#?}"
    );

    w.b.client()
        .groups()
        .remove_participants(Jid::group(group.user()), &[carol.lid_jid()])
        .await
        .unwrap();
    let removed = w.change_seen(&group, MembershipChange::Remove).await;
    assert_eq!(removed.from, Some(phone(bob)));
    assert_eq!(
        changed(&removed),
        [(Some(carol.phone.clone()), Some(lid(carol)))]
    );
    w.b.client()
        .groups()
        .promote_participants(Jid::group(group.user()), &[alice.lid_jid()])
        .await
        .unwrap();
    let promoted = w.change_seen(&group, MembershipChange::Promote).await;
    assert_eq!(
        changed(&promoted),
        [(Some(alice.phone.clone()), Some(lid(alice)))]
    );
    let info = w.session.group_info(&group).await.unwrap();
    assert_eq!(info.own_role, Some(GroupRole::Admin), "{info:#?}");

    // The device's first message in someone else's LID group distributes its sender key
    // to Bob's LID devices.
    let hello = in_group(
        &group,
        OutgoingContent::Text {
            text: "thanks for adding me".into(),
        },
    );
    w.session.send(hello.clone()).await.unwrap();
    assert_eq!(acked(&w.sink, &hello.provider_message_id).await, None);
    let (m, info) =
        w.b.wait_message(ONLINE, |_, i| i.id == hello.provider_message_id)
            .await
            .unwrap();
    assert_eq!(m.text_content(), Some("thanks for adding me"));
    assert_eq!(info.source.sender, Jid::lid_device(alice.lid.clone(), 1));
    w.stop().await;
}
