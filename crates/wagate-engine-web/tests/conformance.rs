//! Runs the engine conformance suite (`wagate-engine-tests`) against the whatsapp-web
//! engine on the in-process WhatsApp simulator (`wagate-wa-sim`, a dev-dependency only).
//!
//! The world: one simulated account per device under test (linked by QR for a new device,
//! or with keys seeded into its store file for a linked one), and Bob, a running
//! whatsapp-rust client, as the peer: he receives (his client sends the delivery receipt),
//! his phone sends read receipts when asked, and he writes, creates groups and leaves them;
//! what his client was told of a group's changes is read from its `GroupUpdate` events. A restart is a new `WebEngine`
//! on the same data directory; the simulator keeps its offline queues. Run with
//! `RUST_LIB_BACKTRACE=0`.

// Test support panics on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wagate_core::chat::MembershipChange;
use wagate_core::content::{ContactCard, Details, Location, Poll, Quote};
use wagate_core::engine::{ChatState, DeviceContext, Engine, EngineEvent};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, GroupId, Phone};
use wagate_engine_tests::{Harness, PeerSaw, Recorder};
use wagate_engine_web::whatsapp_rust::prelude::*;
use wagate_engine_web::whatsapp_rust::store::SqliteStore;
use wagate_engine_web::whatsapp_rust::wacore::stanza::groups::GroupNotificationAction;
use wagate_engine_web::whatsapp_rust::wacore_binary::{JidExt, Node, NodeValue};
use wagate_engine_web::whatsapp_rust::{GroupCreateOptions, GroupParticipantOptions};
use wagate_engine_web::{WebEngine, WebEngineConfig};
use wagate_wa_sim::{Account, ReceiptKind, SimClient, Simulator};

const SIM_VERSION: (u32, u32, u32) = (2, 3000, 1_042_742_319);
/// Never created in the simulator.
const NOT_ON_WHATSAPP: &str = "15559999999";

struct Web {
    sim: Simulator,
    dir: tempfile::TempDir,
    engine: Mutex<Arc<WebEngine>>,
    bob: Account,
    /// Bob's running client: it must stay up to receive and send delivery receipts.
    b: SimClient,
    /// The account behind each device under test, by device uid (for the QR scan).
    by_uid: Mutex<HashMap<DeviceUid, Account>>,
    /// Each linked device's own JID, by phone digits (for Bob's read receipts).
    device_jid: Mutex<HashMap<String, Jid>>,
    devices: AtomicU32,
}

fn init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,whatsapp_rust=error,wacore=error".into()),
        )
        .with_test_writer()
        .try_init();
}

fn engine(sim: &Simulator, dir: &std::path::Path) -> Arc<WebEngine> {
    let mut cfg = WebEngineConfig::new(dir);
    cfg.transport = Some(Arc::new(sim.transport()));
    cfg.http_client = Some(Arc::new(sim.http_client()));
    cfg.wa_version = Some(SIM_VERSION);
    cfg.start_jitter = Duration::ZERO;
    cfg.check_min_interval = Duration::from_millis(100);
    Arc::new(WebEngine::new(cfg))
}

impl Web {
    async fn new() -> Self {
        init();
        let sim = Simulator::new();
        let bob = sim.create_account("15550000002", "Bob").unwrap();
        let b = sim.connect(&bob).await.unwrap();
        b.wait_connected(Duration::from_secs(20)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(&sim, dir.path());
        Self {
            sim,
            dir,
            engine: Mutex::new(engine),
            bob,
            b,
            by_uid: Mutex::new(HashMap::new()),
            device_jid: Mutex::new(HashMap::new()),
            devices: AtomicU32::new(0),
        }
    }

    /// A fresh uid and a fresh simulated account for it.
    fn next(&self) -> (DeviceUid, Account) {
        let n = self.devices.fetch_add(1, Ordering::SeqCst) + 1;
        let uid = DeviceUid::parse(&format!("dev_conformance{n}")).unwrap();
        let account = self
            .sim
            .create_account(&format!("1555030{n:04}"), "Conformance")
            .unwrap();
        self.by_uid
            .lock()
            .unwrap()
            .insert(uid.clone(), account.clone());
        (uid, account)
    }

    fn web(&self) -> Arc<WebEngine> {
        self.engine.lock().unwrap().clone()
    }
}

#[async_trait]
impl Harness for Web {
    fn engine(&self) -> Arc<dyn Engine> {
        self.web()
    }

    async fn new_device(&self) -> DeviceContext {
        let (uid, _) = self.next();
        DeviceContext {
            epoch: 1,
            uid,
            name: "Conformance".into(),
            phone: None,
        }
    }

    /// The account's phone scans the QR code the device shows.
    async fn link(&self, device: &DeviceContext, events: &Recorder) {
        let account = self.by_uid.lock().unwrap()[&device.uid].clone();
        let code = events
            .wait_for("a QR code", self.patience(), |e| match e {
                EngineEvent::Qr { code, .. } => Some(code.clone()),
                _ => None,
            })
            .await;
        let jid = self.sim.scan_qr(&account, &code).unwrap();
        self.device_jid
            .lock()
            .unwrap()
            .insert(account.phone.clone(), jid);
    }

    /// Keys seeded into the device's store file, as after an earlier link.
    async fn linked_device(&self) -> DeviceContext {
        let (uid, account) = self.next();
        let path = self.web().store_path(&uid);
        std::fs::create_dir_all(self.dir.path()).unwrap();
        let store = SqliteStore::new(path.to_str().unwrap()).await.unwrap();
        let jid = self
            .sim
            .seed_backend(&account, "Conformance", &store)
            .await
            .unwrap();
        self.device_jid
            .lock()
            .unwrap()
            .insert(account.phone.clone(), jid);
        DeviceContext {
            epoch: 1,
            uid,
            name: "Conformance".into(),
            phone: Some(Phone::parse(&account.phone).unwrap()),
        }
    }

    fn peer(&self) -> Phone {
        Phone::parse(&self.bob.phone).unwrap()
    }

    fn not_on_whatsapp(&self) -> Phone {
        Phone::parse(NOT_ON_WHATSAPP).unwrap()
    }

    /// Bob's phone sends the read receipt (queued by the server while the device is away).
    async fn peer_reads(&self, device_phone: &Phone, provider_message_id: &str) {
        let to = self.device_jid.lock().unwrap()[device_phone.digits()].clone();
        self.sim
            .phone_send_receipt(&self.bob, &to, &[provider_message_id], ReceiptKind::Read)
            .unwrap();
    }

    async fn peer_sends(&self, device_phone: &Phone, text: &str) {
        self.b
            .client()
            .send_text(Jid::pn(device_phone.digits()), text)
            .await
            .unwrap();
    }

    /// Bob's client decrypted it; its protobuf is read here, independently of the
    /// engine's own inbound conversion.
    async fn peer_received(&self, device_phone: &Phone, provider_message_id: &str) -> PeerSaw {
        let (m, info) = self
            .b
            .wait_message(self.patience(), |_, info| info.id == provider_message_id)
            .await
            .unwrap();
        assert_eq!(
            info.source.sender.user,
            device_phone.digits(),
            "from the device"
        );
        let mut saw = peer_saw(&m, &self.bob.phone);
        saw.group = info
            .source
            .chat
            .is_group()
            .then(|| GroupId::parse(&info.source.chat.to_non_ad().to_string()).unwrap());
        saw
    }

    /// Bob's client sends the reaction (its key names the device's message).
    async fn peer_reacts(&self, device_phone: &Phone, provider_message_id: &str, emoji: &str) {
        let chat = Jid::pn(device_phone.digits());
        let key = wa::MessageKey {
            remote_jid: Some(chat.to_string()),
            from_me: Some(false),
            id: Some(provider_message_id.to_owned()),
            participant: None,
        };
        self.b
            .client()
            .send_reaction(chat, key, emoji)
            .await
            .unwrap();
    }

    /// Bob's client votes as WhatsApp does (`polls().vote`): the options' hashes
    /// encrypted under the secret of the poll as Bob received it.
    async fn peer_votes(
        &self,
        device_phone: &Phone,
        provider_message_id: &str,
        options: &[String],
    ) {
        let poll = self
            .peer_received(device_phone, provider_message_id)
            .await
            .details
            .poll
            .expect("Bob got a poll");
        let secret = poll.secret_bytes().expect("the poll's secret reached Bob");
        let device = Jid::pn(device_phone.digits());
        self.b
            .client()
            .polls()
            .vote(
                device.clone(),
                provider_message_id,
                &device,
                &secret,
                options,
            )
            .await
            .unwrap();
    }

    async fn peer_sees_chat_state(&self, device_phone: &Phone) -> Option<ChatState> {
        chat_state_named(
            self.sim
                .chat_state_between(&self.bob.phone, device_phone.digits())?
                .as_str(),
        )
    }

    /// The simulator keeps a group's chat states by the group's JID.
    async fn peer_sees_chat_state_in_group(
        &self,
        device_phone: &Phone,
        group: &GroupId,
    ) -> Option<ChatState> {
        chat_state_named(
            self.sim
                .chat_state_between(group.as_str(), device_phone.digits())?
                .as_str(),
        )
    }

    async fn peer_got_read(&self, device_phone: &Phone, provider_message_id: &str) -> bool {
        let _ = device_phone;
        self.sim
            .read_receipts_to(&self.bob)
            .iter()
            .any(|id| id == provider_message_id)
    }

    async fn peer_got_read_in_group(
        &self,
        device_phone: &Phone,
        _group: &GroupId,
        provider_message_id: &str,
    ) -> bool {
        self.peer_got_read(device_phone, provider_message_id).await
    }

    async fn peer_sends_to_group(&self, group: &GroupId, text: &str) {
        self.b
            .client()
            .send_text(Jid::group(group.user()), text)
            .await
            .unwrap();
    }

    async fn peer_creates_group(&self, subject: &str, members: &[Phone]) -> GroupId {
        let options = GroupCreateOptions::new(subject).with_participants(
            members
                .iter()
                .map(|p| GroupParticipantOptions::from_phone(Jid::pn(p.digits())))
                .collect(),
        );
        let created = self
            .b
            .client()
            .groups()
            .create_group(options)
            .await
            .unwrap();
        GroupId::parse(&created.metadata.id.to_non_ad().to_string()).unwrap()
    }

    async fn peer_leaves_group(&self, group: &GroupId) {
        self.b
            .client()
            .groups()
            .leave(Jid::group(group.user()))
            .await
            .unwrap();
    }

    /// Bob's client's `GroupUpdate` events for the group, read independently of the
    /// engine's own conversion (being added to a new group is its `create`).
    async fn peer_saw_changes(&self, group: &GroupId) -> Vec<(MembershipChange, Vec<Phone>)> {
        let phones = |jids: &mut dyn Iterator<Item = &Jid>| -> Vec<Phone> {
            jids.filter_map(|j| Phone::parse(&j.user).ok()).collect()
        };
        self.b
            .events
            .snapshot()
            .iter()
            .filter_map(|e| match &**e {
                Event::GroupUpdate(u) if u.group_jid.user == group.user() => Some(u.clone()),
                _ => None,
            })
            .filter_map(|u| {
                Some(match &u.action {
                    GroupNotificationAction::Add { participants, .. } => (
                        MembershipChange::Add,
                        phones(&mut participants.iter().map(|p| &p.jid)),
                    ),
                    GroupNotificationAction::Remove { participants, .. } => (
                        MembershipChange::Remove,
                        phones(&mut participants.iter().map(|p| &p.jid)),
                    ),
                    GroupNotificationAction::Promote { participants } => (
                        MembershipChange::Promote,
                        phones(&mut participants.iter().map(|p| &p.jid)),
                    ),
                    GroupNotificationAction::Demote { participants } => (
                        MembershipChange::Demote,
                        phones(&mut participants.iter().map(|p| &p.jid)),
                    ),
                    GroupNotificationAction::Create { raw } => {
                        (MembershipChange::Add, created_members(raw))
                    }
                    _ => return None,
                })
            })
            .collect()
    }

    /// A new engine on the same data directory; the simulator lives on.
    async fn restart(&self) {
        let restarted = engine(&self.sim, self.dir.path());
        *self.engine.lock().unwrap() = restarted;
    }

    /// A QR-linked client waits 10 s for an app-state key share the simulated phone never
    /// sends before it reports `Connected`.
    fn patience(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// The members a `<create>` notification names but its creator (the super admin).
fn created_members(raw: &Node) -> Vec<Phone> {
    let group = if raw.tag == "group" {
        Some(raw)
    } else {
        raw.get_optional_child("group")
    };
    group
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .filter(|n| {
            n.tag == "participant"
                && n.attrs
                    .get("type")
                    .map(|t| t.as_str().into_owned())
                    .as_deref()
                    != Some("superadmin")
        })
        .filter_map(|n| n.attrs.get("jid").and_then(NodeValue::to_jid))
        .filter_map(|j| Phone::parse(&j.user).ok())
        .collect()
}

/// A person by the user part of a `…@s.whatsapp.net` JID.
fn pn(jid: &str) -> Option<Phone> {
    jid.strip_suffix("@s.whatsapp.net")
        .and_then(|u| Phone::parse(u.split(':').next().unwrap_or(u)).ok())
}

/// What Bob's phone shows of a message, read from its protobuf.
/// A chat state as the simulator names it (the stanza's child).
fn chat_state_named(name: &str) -> Option<ChatState> {
    match name {
        "composing" => Some(ChatState::Typing),
        "recording" => Some(ChatState::Recording),
        "paused" => Some(ChatState::Paused),
        other => panic!("the simulator reports chat state {other:?}"),
    }
}

fn peer_saw(m: &wa::Message, bob: &str) -> PeerSaw {
    let mut details = Details::default();
    let mut text = None;
    // An edit arrives wrapped (`editedMessage` around the protocol message).
    let m = m.get_base_message();
    // A reaction or an edit names its target by key; `from_me` there is the sender's view.
    let target = |k: &wa::MessageKey| Quote {
        provider_message_id: k.id.clone().unwrap(),
        from_me: !k.from_me.unwrap_or(false),
        from: None,
        from_lid: None,
        text: None,
    };
    let kind = if let Some(r) = m.reaction_message.as_option() {
        details.target = r.key.as_option().map(target);
        details.emoji = r.text.clone();
        MessageKind::Reaction
    } else if let Some(p) = m.protocol_message.as_option() {
        details.target = p.key.as_option().map(target);
        match p.r#type {
            Some(wa::message::protocol_message::Type::MESSAGE_EDIT) => {
                text = p.edited_message.as_option().and_then(|e| {
                    e.conversation.clone().or_else(|| {
                        e.extended_text_message
                            .as_option()
                            .and_then(|t| t.text.clone())
                    })
                });
                MessageKind::Edit
            }
            _ => MessageKind::Delete,
        }
    } else if let Some(l) = m.location_message.as_option() {
        details.location = Location::received(
            l.degrees_latitude.unwrap(),
            l.degrees_longitude.unwrap(),
            l.name.as_deref(),
            l.address.as_deref(),
        );
        MessageKind::Location
    } else if let Some(c) = m.contact_message.as_option() {
        details.contacts = vec![
            ContactCard::from_vcard(c.display_name.as_deref(), c.vcard.as_deref().unwrap())
                .unwrap(),
        ];
        MessageKind::Contact
    } else if let Some(a) = m.contacts_array_message.as_option() {
        details.contacts = a
            .contacts
            .iter()
            .map(|c| {
                ContactCard::from_vcard(c.display_name.as_deref(), c.vcard.as_deref().unwrap())
                    .unwrap()
            })
            .collect();
        MessageKind::Contact
    } else if let Some(p) = m
        .poll_creation_message_v3
        .as_option()
        .or(m.poll_creation_message.as_option())
    {
        let secret = m
            .message_context_info
            .as_option()
            .and_then(|c| c.message_secret.as_deref());
        details.poll = Some(Poll::received(
            p.name.as_deref(),
            p.options.iter().filter_map(|o| o.option_name.clone()),
            p.selectable_options_count,
            secret,
        ));
        MessageKind::Poll
    } else if let Some(t) = m.extended_text_message.as_option() {
        text = t.text.clone();
        if let Some(ctx) = t.context_info.as_option() {
            details.mentions = ctx.mentioned_jid.iter().filter_map(|j| pn(j)).collect();
            if let Some(id) = &ctx.stanza_id {
                let author = ctx.participant.as_deref().and_then(pn);
                let from_me = author.as_ref().is_some_and(|a| a.digits() == bob);
                details.reply_to = Some(Quote {
                    provider_message_id: id.clone(),
                    from_me,
                    from: if from_me { None } else { author },
                    from_lid: None,
                    text: ctx
                        .quoted_message
                        .as_option()
                        .and_then(|q| q.conversation.clone()),
                });
            }
        }
        MessageKind::Text
    } else {
        text = m.conversation.clone();
        MessageKind::Text
    };
    PeerSaw {
        kind,
        text,
        details,
        group: None,
    }
}

wagate_engine_tests::engine_conformance_tests!(Web::new);
