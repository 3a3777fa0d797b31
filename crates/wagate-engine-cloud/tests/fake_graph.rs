//! The cloud-api engine against the fake Graph API the Cloud API's tests share
//! (`wagate_engine_tests::graph`: a real HTTP server on a local port that answers like
//! Meta and records every request), so each test checks what the engine asked of Meta and
//! what it reported to the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::engine::{
    DeviceContext, Engine, EngineError, EngineEvent, EngineSession, MessageContext,
    OutgoingContent, OutgoingMessage, ReceiptKind, provider_message_id,
};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, MessageId, Phone, Recipient};
use wagate_engine_cloud::{CloudApiEngine, CredentialSource, GraphClient, GraphConfig, signature};
use wagate_engine_tests::Recorder;
use wagate_engine_tests::graph::{FakeGraph, VERSION};

const PNID: &str = "106540352242922";
const GOOD: &str = "EAAG-good-token";
/// A good token whose first number check Meta throttles.
const SLOW: &str = "EAAG-throttled-once";
const SECRET: &str = "app-secret-1";
const WAIT: Duration = Duration::from_secs(10);

struct Fixed(CloudApiCredentials);

#[async_trait::async_trait]
impl CredentialSource for Fixed {
    async fn cloud_api(
        &self,
        _device: &DeviceUid,
    ) -> Result<Option<CloudApiCredentials>, EngineError> {
        Ok(Some(self.0.clone()))
    }
}

fn creds(token: &str) -> CloudApiCredentials {
    CloudApiCredentials {
        phone_number_id: PNID.into(),
        access_token: token.into(),
        app_secret: SECRET.into(),
        verify_token: "verify-me".into(),
        business_account_id: None,
    }
}

async fn started(token: &str) -> (Arc<FakeGraph>, Arc<dyn EngineSession>, Arc<Recorder>) {
    let fake = FakeGraph::start().await;
    fake.add_number_signed(PNID, GOOD, "+1 555-000-1111", SECRET);
    if token == SLOW {
        // A good token whose first check Meta throttles.
        fake.add_number_signed(PNID, SLOW, "+1 555-000-1111", SECRET);
        fake.throttle_next_check();
    }
    fake.add_media("MEDIA-IN-1", &[0xFF, 0xD8, 0xFF, 0xE0], "image/jpeg");
    let client = GraphClient::new(GraphConfig::new(fake.base.parse().unwrap(), VERSION)).unwrap();
    let engine = CloudApiEngine::new(client, Arc::new(Fixed(creds(token))));
    let events = Recorder::new();
    let device = DeviceContext {
        uid: DeviceUid::parse("dev_cloud1").unwrap(),
        name: "Cloud".into(),
        phone: None,
        epoch: 1,
    };
    let session = engine.start(device, events.clone()).await.unwrap();
    (fake, session, events)
}

fn message(to: &str, content: OutgoingContent) -> OutgoingMessage {
    let id = MessageId::new();
    OutgoingMessage {
        provider_message_id: provider_message_id(&id),
        id,
        to: Recipient::Phone(Phone::parse(to).unwrap()),
        content,
        context: MessageContext::default(),
    }
}

/// Waits for the session to report the number connected: its phone and Meta's name.
async fn connected(events: &Recorder) -> (Option<Phone>, Option<String>) {
    events
        .wait_for("connected", WAIT, |e| match e {
            EngineEvent::Connected {
                phone, push_name, ..
            } => Some((phone.clone(), push_name.clone())),
            _ => None,
        })
        .await
}

#[tokio::test]
async fn a_proven_token_connects_the_number_and_a_refused_one_fails_it() {
    let (_, _session, events) = started(GOOD).await;
    let (phone, name) = connected(&events).await;
    assert_eq!(phone.unwrap().e164(), "+15550001111");
    assert_eq!(name.as_deref(), Some("Corner Shop"));

    let (_, session, events) = started("EAAG-expired").await;
    let reason = events
        .wait_for("failed", WAIT, |e| match e {
            EngineEvent::Failed { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(
        reason.contains("Session has expired") && reason.contains("190"),
        "{reason}"
    );
    let refused = session
        .send(message(
            "15550002222",
            OutgoingContent::Text { text: "hi".into() },
        ))
        .await
        .unwrap_err();
    assert!(refused.is_retryable(), "waits for a new token: {refused:?}");
}

/// Throttled while checking the token: waited out, never taken for a bad token.
#[tokio::test]
async fn a_throttled_token_check_is_retried_not_failed() {
    let (_, _session, events) = started(SLOW).await;
    let reason = events
        .wait_for("reconnecting", WAIT, |e| match e {
            EngineEvent::Reconnecting { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.contains("request limit"), "{reason}");
    let (phone, _) = connected(&events).await;
    assert_eq!(phone.unwrap().e164(), "+15550001111");
    assert!(
        events
            .snapshot()
            .iter()
            .all(|e| !matches!(e, EngineEvent::Failed { .. }))
    );
}

#[tokio::test]
async fn a_send_is_posted_with_the_token_then_known_by_metas_id() {
    let (fake, session, events) = started(GOOD).await;
    connected(&events).await;
    let m = message(
        "15550002222",
        OutgoingContent::Text {
            text: "Order 42 is ready".into(),
        },
    );
    session.send(m.clone()).await.unwrap();
    let assigned = events
        .wait_for("the id Meta gave", WAIT, |e| match e {
            EngineEvent::ProviderId {
                provider_message_id,
                assigned,
            } if *provider_message_id == m.provider_message_id => Some(assigned.clone()),
            _ => None,
        })
        .await;
    assert!(assigned.starts_with("wamid."), "{assigned}");
    events
        .wait_for("the ack under Meta's id", WAIT, |e| match e {
            EngineEvent::ServerAck {
                provider_message_id,
                error: None,
            } if *provider_message_id == assigned => Some(()),
            _ => None,
        })
        .await;
    let seen = fake.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST" && s.path == format!("/{PNID}/messages"))
        .unwrap();
    assert_eq!(post.auth.as_deref(), Some("Bearer EAAG-good-token"));
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(
        body,
        json!({ "messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550002222",
                "type": "text", "text": { "body": "Order 42 is ready", "preview_url": false } })
    );
}

#[tokio::test]
async fn media_is_uploaded_then_sent_by_its_id() {
    let (fake, session, events) = started(GOOD).await;
    connected(&events).await;
    let m = message(
        "15550002222",
        OutgoingContent::Media {
            kind: MessageKind::Image,
            data: bytes::Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]),
            mime_type: "image/jpeg".into(),
            file_name: Some("photo.jpg".into()),
            caption: Some("Your order".into()),
        },
    );
    session.send(m).await.unwrap();
    let seen = fake.seen();
    let posts: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        posts,
        [format!("/{PNID}/media"), format!("/{PNID}/messages")]
    );
    let upload = String::from_utf8_lossy(
        &seen
            .iter()
            .find(|s| s.path.ends_with("/media"))
            .unwrap()
            .body,
    )
    .into_owned();
    assert!(
        upload.contains("name=\"messaging_product\"") && upload.contains("whatsapp"),
        "{upload}"
    );
    assert!(upload.contains("filename=\"photo.jpg\""), "{upload}");
    let send: Value = serde_json::from_slice(
        &seen
            .iter()
            .find(|s| s.path.ends_with("/messages"))
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(send["type"], "image");
    assert_eq!(
        send["image"],
        json!({ "id": "MEDIA1", "caption": "Your order" }),
        "the id Meta gave the upload"
    );
}

#[tokio::test]
async fn metas_refusals_fail_or_delay_the_message() {
    let (_, session, events) = started(GOOD).await;
    connected(&events).await;
    let text = || OutgoingContent::Text {
        text: "hello again".into(),
    };
    match session.send(message("15550000047", text())).await {
        Err(EngineError::Rejected { code, reason }) => {
            assert_eq!(code.as_deref(), Some("131047"));
            assert!(reason.contains("24 hours"), "{reason}");
        }
        other => panic!("outside the window: {other:?}"),
    }
    match session.send(message("15550000429", text())).await {
        Err(EngineError::RateLimited { retry_after, .. }) => {
            assert_eq!(
                retry_after,
                Some(Duration::from_secs(1)),
                "Meta's Retry-After"
            );
        }
        other => panic!("throttled: {other:?}"),
    }
    // Retried later, it goes.
    session.send(message("15550000429", text())).await.unwrap();
    // What the Cloud API lacks fails the message with a reason.
    let group = Recipient::Group(wagate_core::GroupId::parse("120363012345678901@g.us").unwrap());
    let mut m = message("15550002222", text());
    m.to = group;
    assert!(matches!(
        session.send(m).await,
        Err(EngineError::Unsupported(_))
    ));
    assert!(matches!(
        session
            .check_numbers(&[Phone::parse("15550002222").unwrap()])
            .await,
        Err(EngineError::Unsupported(_))
    ));
}

fn signed_push(body: &Value) -> (bytes::Bytes, String) {
    let raw = body.to_string().into_bytes();
    let sig = signature::sign(SECRET, &raw);
    (raw.into(), sig)
}

#[tokio::test]
async fn webhooks_are_checked_then_read_into_messages_and_statuses() {
    let (fake, session, events) = started(GOOD).await;
    connected(&events).await;

    let delivery = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "WABA", "changes": [{
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550001111", "phone_number_id": PNID },
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "201001234567" }],
            "messages": [{ "from": "201001234567", "id": "wamid.IN1", "timestamp": "1700000000",
                           "type": "image", "image": { "id": "MEDIA-IN-1", "mime_type": "image/jpeg", "caption": "this one" } }],
            "statuses": [
                { "id": "wamid.OUT1", "status": "read", "timestamp": "1700000100", "recipient_id": "201001234567" },
                { "id": "wamid.OUT1", "status": "delivered", "timestamp": "1700000050", "recipient_id": "201001234567" },
                { "id": "wamid.OUT2", "status": "failed", "timestamp": "1700000060", "recipient_id": "201001234567",
                  "errors": [{ "code": 131026, "title": "Message undeliverable" }] }
            ]
        }
    }]}]});
    let (raw, sig) = signed_push(&delivery);

    // Unsigned, or signed with another secret: refused, nothing read.
    match session.push(raw.clone(), None).await {
        Err(EngineError::Rejected { code, .. }) => assert_eq!(code.as_deref(), Some("signature")),
        other => panic!("unsigned: {other:?}"),
    }
    let forged = signature::sign("not-the-secret", &raw);
    assert!(session.push(raw.clone(), Some(&forged)).await.is_err());
    assert!(
        events
            .snapshot()
            .iter()
            .all(|e| !matches!(e, EngineEvent::Inbound(_)))
    );
    match session
        .push(
            bytes::Bytes::from_static(b"not json"),
            Some(&signature::sign(SECRET, b"not json")),
        )
        .await
    {
        Err(EngineError::Rejected { code, .. }) => assert_eq!(code.as_deref(), Some("payload")),
        other => panic!("not a delivery: {other:?}"),
    }

    session.push(raw, Some(&sig)).await.unwrap();
    let snapshot = events.snapshot();
    let inbound = snapshot
        .iter()
        .find_map(|e| match e {
            EngineEvent::Inbound(m) => Some(m.clone()),
            _ => None,
        })
        .expect("the customer's image");
    assert_eq!(inbound.provider_message_id, "wamid.IN1");
    assert_eq!(inbound.kind, MessageKind::Image);
    assert_eq!(inbound.text.as_deref(), Some("this one"));
    assert_eq!(inbound.from.as_ref().unwrap().e164(), "+201001234567");
    assert_eq!(inbound.from_name.as_deref(), Some("Ana"));
    let media = inbound.media.as_ref().expect("downloaded with the token");
    assert_eq!(&media.data[..], &[0xFF, 0xD8, 0xFF, 0xE0]);
    let fetched = fake
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path == "/cdn/MEDIA-IN-1")
        .count();
    assert_eq!(fetched, 1);
    // Statuses in the order Meta sent them (the store keeps steps forward-only).
    let steps: Vec<String> = snapshot
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Receipt {
                provider_message_ids,
                kind,
                ..
            } => Some(format!("{}:{kind:?}", provider_message_ids[0])),
            EngineEvent::Undelivered {
                provider_message_id,
                reason,
            } => Some(format!("{provider_message_id}:failed:{reason}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            format!("wamid.OUT1:{:?}", ReceiptKind::Read),
            format!("wamid.OUT1:{:?}", ReceiptKind::Delivered),
            "wamid.OUT2:failed:Message undeliverable (Meta error 131026)".to_owned(),
        ]
    );

    // Typing is shown in answer to the customer's message; marking read names it.
    session
        .chat_state(
            &Recipient::Phone(Phone::parse("201001234567").unwrap()),
            wagate_core::engine::ChatState::Typing,
        )
        .await
        .unwrap();
    let typing = fake.seen().last().unwrap().json();
    assert_eq!(typing["message_id"], "wamid.IN1");
    assert_eq!(typing["typing_indicator"]["type"], "text");
    assert!(matches!(
        session
            .chat_state(
                &Recipient::Phone(Phone::parse("15550009999").unwrap()),
                wagate_core::engine::ChatState::Typing
            )
            .await,
        Err(EngineError::Rejected { .. })
    ));
}
