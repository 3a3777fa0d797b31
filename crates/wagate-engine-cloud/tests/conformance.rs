//! Runs the engine conformance suite (`wagate-engine-tests`) against the cloud-api engine.
//!
//! The world: the fake Graph API the Cloud API's tests share, a business number per device
//! (each with its own token and app secret), and a customer as the peer. Meta's side of it:
//! what a device sends is taken by the fake, then reported `sent` and `delivered` by signed
//! webhooks; what the peer does (writes, reads, reacts) arrives the same way. Webhooks go
//! straight to the device's running session (`EngineSession::push`, what the gateway's
//! callback URL calls) and, like Meta's, are delivered again until one is taken — so an
//! inbound message not committed comes back, even to the next session after a restart.
//!
//! Meta names a message only in its answer to the send: the engine reports that name
//! (`ProviderId`) and from then on acks and receipts carry it. The gateway's runtime
//! renames the stored message, so it finds the message under either name, and a reaction
//! or a quote it sends later names it as Meta does. This harness stands where the runtime
//! stands: it files events under the id the suite sent with, and names quoted messages
//! to the engine by Meta's id ([`Runtime`]). What the Cloud API has not (number checks,
//! chat states at will, polls, edits, mentions, groups) is declared with
//! [`Harness::offers`]; the suite then checks the refusal where there is one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wagate_core::DeviceUid;
use wagate_core::chat::{GroupInfo, MemberOutcome, MembershipChange};
use wagate_core::content::{ContactCard, Details, Location, Quote, TemplateInfo};
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::engine::{
    ChatState, DeviceContext, Engine, EngineError, EngineEvent, EngineEvents, EngineSession,
    EventNotCommitted, NumberCheck, OutgoingContent, OutgoingMessage, PairCode, ReadMark,
};
use wagate_core::message::MessageKind;
use wagate_core::{GroupId, Phone, Recipient};
use wagate_engine_cloud::{CloudApiEngine, CredentialSource, GraphClient, GraphConfig};
use wagate_engine_tests::graph::{self, FakeGraph, NOT_ON_WHATSAPP, WebhookTarget};
use wagate_engine_tests::{Feature, Harness, PeerSaw, Recorder};

/// The customer every device talks to.
const PEER: &str = "+201001234567";

/// What the harness keeps across restarts of the "gateway": the numbers' credentials, the
/// running sessions by number, and the names Meta gave messages.
#[derive(Default)]
struct World {
    creds: Mutex<HashMap<DeviceUid, CloudApiCredentials>>,
    /// Phone number id → the session Meta's webhooks reach now.
    sessions: Mutex<HashMap<String, Arc<dyn EngineSession>>>,
    /// Our provider id ↔ Meta's id.
    to_meta: Mutex<HashMap<String, String>>,
    from_meta: Mutex<HashMap<String, String>>,
    /// The device's phone (digits) → its phone number id.
    numbers: Mutex<HashMap<String, String>>,
}

impl World {
    fn meta_id(&self, ours: &str) -> Option<String> {
        self.to_meta.lock().unwrap().get(ours).cloned()
    }

    fn our_id(&self, meta: &str) -> String {
        self.from_meta
            .lock()
            .unwrap()
            .get(meta)
            .cloned()
            .unwrap_or_else(|| meta.to_owned())
    }

    fn pnid_of(&self, phone: &Phone) -> String {
        self.numbers
            .lock()
            .unwrap()
            .get(phone.digits())
            .cloned()
            .unwrap_or_else(|| panic!("no number {phone}"))
    }
}

#[async_trait]
impl CredentialSource for World {
    async fn cloud_api(
        &self,
        device: &DeviceUid,
    ) -> Result<Option<CloudApiCredentials>, EngineError> {
        Ok(self.creds.lock().unwrap().get(device).cloned())
    }
}

#[async_trait]
impl WebhookTarget for World {
    async fn deliver(&self, phone_number_id: &str, body: Bytes, signature: String) -> bool {
        let session = self.sessions.lock().unwrap().get(phone_number_id).cloned();
        match session {
            Some(s) => s.push(body, Some(&signature)).await.is_ok(),
            None => false,
        }
    }
}

/// The events of a session as the runtime files them: under the id the message was sent
/// with, whatever Meta later calls it.
struct Filed {
    world: Arc<World>,
    inner: Arc<dyn EngineEvents>,
}

impl Filed {
    fn ours(&self, q: &mut Quote) {
        q.provider_message_id = self.world.our_id(&q.provider_message_id);
    }
}

#[async_trait]
impl EngineEvents for Filed {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        let event = match event {
            EngineEvent::ProviderId {
                provider_message_id,
                assigned,
            } => {
                self.world
                    .to_meta
                    .lock()
                    .unwrap()
                    .insert(provider_message_id.clone(), assigned.clone());
                self.world
                    .from_meta
                    .lock()
                    .unwrap()
                    .insert(assigned.clone(), provider_message_id.clone());
                EngineEvent::ProviderId {
                    provider_message_id,
                    assigned,
                }
            }
            EngineEvent::ServerAck {
                provider_message_id,
                error,
            } => EngineEvent::ServerAck {
                provider_message_id: self.world.our_id(&provider_message_id),
                error,
            },
            EngineEvent::Receipt {
                provider_message_ids,
                kind,
                at,
            } => EngineEvent::Receipt {
                provider_message_ids: provider_message_ids
                    .iter()
                    .map(|id| self.world.our_id(id))
                    .collect(),
                kind,
                at,
            },
            EngineEvent::Inbound(mut m) => {
                if let Some(q) = m.details.target.as_mut() {
                    self.ours(q);
                }
                if let Some(q) = m.details.reply_to.as_mut() {
                    self.ours(q);
                }
                EngineEvent::Inbound(m)
            }
            other => other,
        };
        self.inner.emit(event).await
    }

    async fn find_poll(
        &self,
        id: &str,
    ) -> Result<Option<(wagate_core::content::Poll, Quote)>, EventNotCommitted> {
        self.inner.find_poll(id).await
    }
}

/// A session as the runtime drives it: the messages it quotes named as Meta knows them.
struct Runtime {
    world: Arc<World>,
    inner: Arc<dyn EngineSession>,
}

impl Runtime {
    fn meta(&self, q: &mut Quote) {
        if let Some(id) = self.world.meta_id(&q.provider_message_id) {
            q.provider_message_id = id;
        }
    }
}

#[async_trait]
impl EngineSession for Runtime {
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        let mut message = message;
        if let Some(q) = message.context.reply_to.as_mut() {
            self.meta(q);
        }
        match &mut message.content {
            OutgoingContent::Reaction { target, .. }
            | OutgoingContent::Edit { target, .. }
            | OutgoingContent::Delete { target } => self.meta(target),
            _ => {}
        }
        self.inner.send(message).await
    }
    async fn check_numbers(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        self.inner.check_numbers(numbers).await
    }
    async fn chat_state(&self, to: &Recipient, state: ChatState) -> Result<(), EngineError> {
        self.inner.chat_state(to, state).await
    }
    async fn mark_read(&self, chat: &Recipient, messages: &[ReadMark]) -> Result<(), EngineError> {
        self.inner.mark_read(chat, messages).await
    }
    async fn groups(&self) -> Result<Vec<GroupInfo>, EngineError> {
        self.inner.groups().await
    }
    async fn group_info(&self, group: &GroupId) -> Result<GroupInfo, EngineError> {
        self.inner.group_info(group).await
    }
    async fn create_group(
        &self,
        subject: &str,
        members: &[Phone],
    ) -> Result<GroupInfo, EngineError> {
        self.inner.create_group(subject, members).await
    }
    async fn change_members(
        &self,
        group: &GroupId,
        change: MembershipChange,
        members: &[Phone],
    ) -> Result<Vec<MemberOutcome>, EngineError> {
        self.inner.change_members(group, change, members).await
    }
    async fn request_pair_code(&self, phone: &Phone) -> Result<PairCode, EngineError> {
        self.inner.request_pair_code(phone).await
    }
    async fn templates(&self) -> Result<Vec<TemplateInfo>, EngineError> {
        self.inner.templates().await
    }
    async fn connect(&self) -> Result<(), EngineError> {
        self.inner.connect().await
    }
    async fn logout(&self) -> Result<(), EngineError> {
        self.inner.logout().await
    }
    async fn stop(&self) {
        self.inner.stop().await;
    }
}

/// The engine as the gateway runs it: each session reachable by Meta's webhooks.
struct Gateway {
    world: Arc<World>,
    engine: CloudApiEngine,
}

#[async_trait]
impl Engine for Gateway {
    fn kind(&self) -> wagate_core::device::EngineKind {
        self.engine.kind()
    }

    async fn start(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<Arc<dyn EngineSession>, EngineError> {
        let pnid = self
            .world
            .creds
            .lock()
            .unwrap()
            .get(&device.uid)
            .map(|c| c.phone_number_id.clone());
        let filed = Arc::new(Filed {
            world: Arc::clone(&self.world),
            inner: events,
        });
        let session = self.engine.start(device, filed).await?;
        if let Some(pnid) = pnid {
            self.world
                .sessions
                .lock()
                .unwrap()
                .insert(pnid, Arc::clone(&session));
        }
        Ok(Arc::new(Runtime {
            world: Arc::clone(&self.world),
            inner: session,
        }))
    }

    async fn forget(&self, device: &DeviceUid) -> Result<(), EngineError> {
        self.engine.forget(device).await
    }
}

struct Cloud {
    fake: Arc<FakeGraph>,
    world: Arc<World>,
    engine: Mutex<Arc<Gateway>>,
    devices: AtomicU32,
    inbound: AtomicU32,
}

impl Cloud {
    async fn new() -> Self {
        let fake = FakeGraph::start().await;
        let world = Arc::new(World::default());
        fake.set_target(world.clone());
        let engine = Mutex::new(Self::gateway(&fake, &world));
        Self {
            fake,
            world,
            engine,
            devices: AtomicU32::new(0),
            inbound: AtomicU32::new(0),
        }
    }

    fn gateway(fake: &FakeGraph, world: &Arc<World>) -> Arc<Gateway> {
        let client =
            GraphClient::new(GraphConfig::new(fake.base.parse().unwrap(), graph::VERSION)).unwrap();
        Arc::new(Gateway {
            world: Arc::clone(world),
            engine: CloudApiEngine::new(client, world.clone()),
        })
    }

    /// A business number of the app, with its own credentials; the device that uses it.
    fn number(&self) -> (DeviceContext, Phone) {
        let n = self.devices.fetch_add(1, Ordering::SeqCst) + 1;
        let pnid = format!("10654035224{n:04}");
        let phone = Phone::parse(&format!("+1555020{n:04}")).unwrap();
        let (token, secret) = (format!("EAAG-token-{n}"), format!("app-secret-{n}"));
        self.fake
            .add_number_signed(&pnid, &token, &phone.e164(), &secret);
        let uid = DeviceUid::parse(&format!("dev_cloud{n}")).unwrap();
        self.world.creds.lock().unwrap().insert(
            uid.clone(),
            CloudApiCredentials {
                phone_number_id: pnid.clone(),
                access_token: token,
                app_secret: secret,
                verify_token: format!("verify-{n}"),
                business_account_id: None,
            },
        );
        self.world
            .numbers
            .lock()
            .unwrap()
            .insert(phone.digits().to_owned(), pnid);
        let device = DeviceContext {
            uid,
            name: format!("Cloud {n}"),
            phone: None,
            epoch: 1,
        };
        (device, phone)
    }

    /// Something the peer does, delivered by Meta in the background (as its webhooks come).
    fn peer_does(&self, device_phone: &Phone, message: Value) -> String {
        let n = self.inbound.fetch_add(1, Ordering::SeqCst) + 1;
        let wamid = format!("wamid.PEER{n}");
        let pnid = self.world.pnid_of(device_phone);
        let peer = Phone::parse(PEER).unwrap();
        let body = graph::inbound(&pnid, peer.digits(), "Peer", &wamid, message);
        self.fake.push_in_background(&pnid, body);
        wamid
    }

    /// Meta's id of a message the device sent, once Meta took it.
    async fn meta_id(&self, ours: &str) -> String {
        let deadline = tokio::time::Instant::now() + self.patience();
        loop {
            if let Some(id) = self.world.meta_id(ours) {
                return id;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Meta never took {ours}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A quote as the peer's phone shows it: the device's message, from its number.
    fn quoted(&self, meta_id: &str, device_phone: &Phone) -> Quote {
        Quote {
            provider_message_id: self.world.our_id(meta_id),
            from_me: false,
            from: Some(device_phone.clone()),
            from_lid: None,
            text: None,
        }
    }
}

#[async_trait]
impl Harness for Cloud {
    fn engine(&self) -> Arc<dyn Engine> {
        self.engine.lock().unwrap().clone()
    }

    async fn new_device(&self) -> DeviceContext {
        self.number().0
    }

    /// A Cloud API number is set up in Meta's app, not linked: nothing to do.
    async fn link(&self, _device: &DeviceContext, _events: &Recorder) {}

    async fn linked_device(&self) -> DeviceContext {
        let (device, phone) = self.number();
        DeviceContext {
            phone: Some(phone),
            ..device
        }
    }

    fn peer(&self) -> Phone {
        Phone::parse(PEER).unwrap()
    }

    fn not_on_whatsapp(&self) -> Phone {
        Phone::parse(NOT_ON_WHATSAPP).unwrap()
    }

    async fn peer_reads(&self, device_phone: &Phone, provider_message_id: &str) {
        let wamid = self.meta_id(provider_message_id).await;
        let pnid = self.world.pnid_of(device_phone);
        let peer = self.peer();
        self.fake
            .push_in_background(&pnid, graph::status(&pnid, &wamid, "read", peer.digits()));
    }

    async fn peer_sends(&self, device_phone: &Phone, text: &str) {
        self.peer_does(
            device_phone,
            json!({ "type": "text", "text": { "body": text } }),
        );
    }

    async fn peer_reacts(&self, device_phone: &Phone, provider_message_id: &str, emoji: &str) {
        let wamid = self.meta_id(provider_message_id).await;
        self.peer_does(
            device_phone,
            json!({ "type": "reaction", "reaction": { "message_id": wamid, "emoji": emoji } }),
        );
    }

    async fn peer_votes(&self, _: &Phone, _: &str, _: &[String]) {
        unreachable!("the Cloud API has no polls (Feature::Polls)")
    }

    async fn peer_sees_chat_state(&self, _: &Phone) -> Option<ChatState> {
        unreachable!("chat states at will are not the Cloud API's (Feature::ChatStates)")
    }

    async fn peer_sees_chat_state_in_group(&self, _: &Phone, _: &GroupId) -> Option<ChatState> {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    async fn peer_received(&self, device_phone: &Phone, provider_message_id: &str) -> PeerSaw {
        let wamid = self.meta_id(provider_message_id).await;
        let body = self.fake.send_named(&wamid).expect("Meta took it");
        let kind = body["type"].as_str().unwrap_or_default();
        let mut details = Details::default();
        if let Some(q) = body["context"]["message_id"].as_str() {
            details.reply_to = Some(self.quoted(q, device_phone));
        }
        let (kind, text) = match kind {
            "text" => (
                MessageKind::Text,
                body["text"]["body"].as_str().map(str::to_owned),
            ),
            "location" => {
                let l = &body["location"];
                details.location = Some(
                    Location::new(
                        l["latitude"].as_f64().unwrap(),
                        l["longitude"].as_f64().unwrap(),
                        l["name"].as_str(),
                        l["address"].as_str(),
                    )
                    .unwrap(),
                );
                (MessageKind::Location, None)
            }
            "contacts" => {
                details.contacts = body["contacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        ContactCard::new(
                            c["name"]["formatted_name"].as_str().unwrap(),
                            Phone::parse(c["phones"][0]["phone"].as_str().unwrap()).unwrap(),
                            "contact",
                        )
                        .unwrap()
                    })
                    .collect();
                (MessageKind::Contact, None)
            }
            "reaction" => {
                let r = &body["reaction"];
                details.emoji = r["emoji"].as_str().map(str::to_owned);
                details.target = Some(self.quoted(r["message_id"].as_str().unwrap(), device_phone));
                (MessageKind::Reaction, None)
            }
            other => panic!("the peer's phone cannot show a {other} message: {body}"),
        };
        PeerSaw {
            kind,
            text,
            details,
            group: None,
        }
    }

    async fn peer_got_read(&self, device_phone: &Phone, provider_message_id: &str) -> bool {
        let pnid = self.world.pnid_of(device_phone);
        self.fake.marked_read(&pnid, provider_message_id)
    }

    async fn peer_got_read_in_group(&self, _: &Phone, _: &GroupId, _: &str) -> bool {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    async fn peer_sends_to_group(&self, _: &GroupId, _: &str) {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    async fn peer_creates_group(&self, _: &str, _: &[Phone]) -> GroupId {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    async fn peer_leaves_group(&self, _: &GroupId) {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    async fn peer_saw_changes(&self, _: &GroupId) -> Vec<(MembershipChange, Vec<Phone>)> {
        unreachable!("the Cloud API has no groups (Feature::Groups)")
    }

    /// A new gateway: new engine, no sessions; Meta keeps delivering what it still owes.
    async fn restart(&self) {
        self.world.sessions.lock().unwrap().clear();
        *self.engine.lock().unwrap() = Self::gateway(&self.fake, &self.world);
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }

    fn offers(&self, feature: Feature) -> bool {
        !matches!(
            feature,
            Feature::NumberChecks
                | Feature::ChatStates
                | Feature::Polls
                | Feature::Edits
                | Feature::Mentions
                | Feature::Groups
        )
    }
}

wagate_engine_tests::engine_conformance_tests!(|| async { Cloud::new().await });
