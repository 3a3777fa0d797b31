//! Runs the engine conformance suite (`wagate-engine-tests`) against the sandbox engine.
//!
//! The world: a sandbox network journaled in a temporary directory (so a "restart" is what
//! it is for the application: the connections drop and the network reopens from its
//! journal, handing out what it still owes), and a second sandbox device as the peer, which
//! receives, reads (by itself, after the configured delays), writes, and creates, writes in
//! and leaves groups; what it was told of a group's changes are its `participants` messages.

// Test support panics on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wagate::config::SandboxConfig;
use wagate::engine::sandbox::{SandboxEngine, SandboxNetwork};
use wagate_core::chat::MembershipChange;
use wagate_core::content::Quote;
use wagate_core::engine::{
    ChatState, DeviceContext, Engine, EngineEvent, EngineSession, OutgoingContent, OutgoingMessage,
    provider_message_id,
};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, GroupId, MessageId, Phone, Recipient};
use wagate_engine_tests::{Harness, PeerSaw, Recorder};

/// The peer's number (another sandbox device).
const PEER: &str = "15551110001";
/// Sandbox numbers ending in 0000 are not on WhatsApp.
const NOT_ON_WHATSAPP: &str = "15551230000";

fn config() -> SandboxConfig {
    SandboxConfig {
        link_delay_ms: 20,
        // Long enough that a session stopped right after a server ack is stopped before
        // the receipts come (they then wait for the next session).
        delivered_delay_ms: 200,
        read_delay_ms: 200,
        ..SandboxConfig::default()
    }
}

struct Sandbox {
    _dir: tempfile::TempDir,
    journal: PathBuf,
    network: Mutex<Arc<SandboxNetwork>>,
    peer: Mutex<Option<Arc<dyn EngineSession>>>,
    /// What the peer's session reported (what its phone shows).
    peer_events: Mutex<Option<Arc<Recorder>>>,
    devices: AtomicU32,
}

impl Sandbox {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("network.journal");
        let network = SandboxNetwork::open(config(), &journal).unwrap();
        let sandbox = Self {
            _dir: dir,
            journal,
            network: Mutex::new(network),
            peer: Mutex::new(None),
            peer_events: Mutex::new(None),
            devices: AtomicU32::new(0),
        };
        sandbox.start_peer().await;
        sandbox
    }

    fn network(&self) -> Arc<SandboxNetwork> {
        self.network.lock().unwrap().clone()
    }

    async fn start_peer(&self) {
        let events = Recorder::new();
        let peer = DeviceContext {
            epoch: 1,
            uid: DeviceUid::parse("dev_peer").unwrap(),
            name: "Peer".into(),
            phone: Some(Phone::parse(PEER).unwrap()),
        };
        let session = self.engine().start(peer, events.clone()).await.unwrap();
        events
            .wait_for("the peer connected", self.patience(), |e| {
                matches!(e, EngineEvent::Connected { .. }).then_some(())
            })
            .await;
        *self.peer.lock().unwrap() = Some(session);
        *self.peer_events.lock().unwrap() = Some(events);
    }

    fn peer_session(&self) -> Arc<dyn EngineSession> {
        self.peer.lock().unwrap().clone().expect("the peer runs")
    }

    fn peer_recorder(&self) -> Arc<Recorder> {
        self.peer_events
            .lock()
            .unwrap()
            .clone()
            .expect("the peer runs")
    }

    /// The peer's session sends `content` to `to` (the device linked to a number, or a
    /// group).
    async fn peer_send(&self, to: impl Into<Recipient>, content: OutgoingContent) {
        let id = MessageId::new();
        self.peer_session()
            .send(OutgoingMessage {
                provider_message_id: provider_message_id(&id),
                id,
                to: to.into(),
                content,
                context: Default::default(),
            })
            .await
            .unwrap();
    }

    fn next_uid(&self) -> (DeviceUid, u32) {
        let n = self.devices.fetch_add(1, Ordering::SeqCst) + 1;
        (DeviceUid::parse(&format!("dev_conformance{n}")).unwrap(), n)
    }
}

#[async_trait]
impl Harness for Sandbox {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(SandboxEngine::new(self.network()))
    }

    async fn new_device(&self) -> DeviceContext {
        let (uid, _) = self.next_uid();
        DeviceContext {
            epoch: 1,
            uid,
            name: "Conformance".into(),
            phone: None,
        }
    }

    /// Sandbox devices link themselves.
    async fn link(&self, _device: &DeviceContext, _events: &Recorder) {}

    async fn linked_device(&self) -> DeviceContext {
        let (uid, n) = self.next_uid();
        DeviceContext {
            epoch: 1,
            uid,
            name: "Conformance".into(),
            // Ends in neither 0000, 0500 nor 0700 (n stays small).
            phone: Some(Phone::parse(&format!("1555200{n:04}")).unwrap()),
        }
    }

    fn peer(&self) -> Phone {
        Phone::parse(PEER).unwrap()
    }

    fn not_on_whatsapp(&self) -> Phone {
        Phone::parse(NOT_ON_WHATSAPP).unwrap()
    }

    /// The peer device reads by itself once it committed the message.
    async fn peer_reads(&self, _device_phone: &Phone, _provider_message_id: &str) {}

    async fn peer_received(&self, device_phone: &Phone, provider_message_id: &str) -> PeerSaw {
        let events = self.peer_recorder();
        let m = events
            .wait_for("the message at the peer", self.patience(), |e| match e {
                EngineEvent::Inbound(m) if m.provider_message_id == provider_message_id => {
                    Some(m.clone())
                }
                _ => None,
            })
            .await;
        assert_eq!(m.from.as_ref(), Some(device_phone), "from the device");
        PeerSaw {
            kind: m.kind,
            text: m.text,
            details: m.details,
            group: m.group_id.as_deref().map(|g| GroupId::parse(g).unwrap()),
        }
    }

    async fn peer_reacts(&self, device_phone: &Phone, target: &str, emoji: &str) {
        let target = Quote {
            provider_message_id: target.to_owned(),
            from_me: false,
            from: Some(device_phone.clone()),
            from_lid: None,
            text: None,
        };
        self.peer_send(
            device_phone.clone(),
            OutgoingContent::Reaction {
                target,
                emoji: emoji.to_owned(),
            },
        )
        .await;
    }

    /// The peer's sandbox device votes in the poll as it received it.
    async fn peer_votes(&self, device_phone: &Phone, target: &str, options: &[String]) {
        let poll = self
            .peer_received(device_phone, target)
            .await
            .details
            .poll
            .expect("the peer got a poll");
        let target = Quote {
            provider_message_id: target.to_owned(),
            from_me: false,
            from: Some(device_phone.clone()),
            from_lid: None,
            text: None,
        };
        self.peer_send(
            device_phone.clone(),
            OutgoingContent::PollVote {
                target,
                poll,
                options: options.to_vec(),
            },
        )
        .await;
    }

    async fn peer_sends(&self, device_phone: &Phone, text: &str) {
        self.peer_send(
            device_phone.clone(),
            OutgoingContent::Text { text: text.into() },
        )
        .await;
    }

    async fn peer_sees_chat_state(&self, device_phone: &Phone) -> Option<ChatState> {
        self.network()
            .chat_state_seen(self.peer().digits(), device_phone.digits())
    }

    async fn peer_sees_chat_state_in_group(
        &self,
        device_phone: &Phone,
        group: &GroupId,
    ) -> Option<ChatState> {
        self.network()
            .chat_state_seen(group.as_str(), device_phone.digits())
    }

    async fn peer_got_read(&self, device_phone: &Phone, provider_message_id: &str) -> bool {
        self.network()
            .marked_read(device_phone.digits(), self.peer().digits())
            .iter()
            .any(|id| id == provider_message_id)
    }

    async fn peer_got_read_in_group(
        &self,
        device_phone: &Phone,
        group: &GroupId,
        provider_message_id: &str,
    ) -> bool {
        self.network()
            .marked_read(device_phone.digits(), group.as_str())
            .iter()
            .any(|id| id == provider_message_id)
    }

    async fn peer_sends_to_group(&self, group: &GroupId, text: &str) {
        self.peer_send(group.clone(), OutgoingContent::Text { text: text.into() })
            .await;
    }

    async fn peer_creates_group(&self, subject: &str, members: &[Phone]) -> GroupId {
        self.peer_session()
            .create_group(subject, members)
            .await
            .unwrap()
            .id
    }

    async fn peer_leaves_group(&self, group: &GroupId) {
        self.peer_session().leave_group(group).await.unwrap();
    }

    async fn peer_saw_changes(&self, group: &GroupId) -> Vec<(MembershipChange, Vec<Phone>)> {
        self.peer_recorder()
            .snapshot()
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Inbound(m)
                    if m.kind == MessageKind::Participants
                        && m.group_id.as_deref() == Some(group.as_str()) =>
                {
                    let c = m.details.group_change.as_ref()?;
                    Some((
                        c.action,
                        c.participants
                            .iter()
                            .filter_map(|p| p.phone.clone())
                            .collect(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    async fn restart(&self) {
        let peer = self.peer.lock().unwrap().take();
        if let Some(peer) = peer {
            peer.stop().await;
        }
        self.network().drop_connections().await;
        let reopened = SandboxNetwork::open(config(), &self.journal).unwrap();
        *self.network.lock().unwrap() = reopened;
        self.start_peer().await;
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(20)
    }
}

wagate_engine_tests::engine_conformance_tests!(Sandbox::new);
