//! The cloud-api engine against a fake Graph API: a real HTTP server on a local port that
//! answers like Meta (its paths, its JSON, its error codes) and records every request, so
//! each test checks what the engine asked of Meta and what it reported to the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
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

const PNID: &str = "106540352242922";
const GOOD: &str = "EAAG-good-token";
/// A good token whose first number check Meta throttles.
const SLOW: &str = "EAAG-throttled-once";
const SECRET: &str = "app-secret-1";
const WAIT: Duration = Duration::from_secs(10);

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: Bytes,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    /// The server's own address, for the media links it hands out.
    base: Mutex<String>,
    throttled_once: Mutex<bool>,
    number_throttled: Mutex<bool>,
}

type Shared = Arc<Fake>;

fn meta_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Afake" } });
    (status, axum::Json(body)).into_response()
}

fn record(fake: &Fake, path: String, headers: &HeaderMap, body: Bytes) -> bool {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let good = auth.as_deref() == Some(&format!("Bearer {GOOD}"))
        || auth.as_deref() == Some(&format!("Bearer {SLOW}"));
    fake.seen.lock().unwrap().push(Seen { path, auth, body });
    good
}

async fn number(State(f): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let slow = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {SLOW}"));
    if slow && !std::mem::replace(&mut *f.number_throttled.lock().unwrap(), true) {
        record(&f, format!("GET /{id}"), &headers, Bytes::new());
        return meta_error(
            StatusCode::TOO_MANY_REQUESTS,
            4,
            "Application request limit reached",
        );
    }
    if !record(&f, format!("GET /{id}"), &headers, Bytes::new()) {
        return meta_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Error validating access token: Session has expired",
        );
    }
    if id == PNID {
        return axum::Json(json!({ "display_phone_number": "+1 555-000-1111", "verified_name": "Corner Shop", "id": PNID })).into_response();
    }
    // A media record.
    let base = f.base.lock().unwrap().clone();
    axum::Json(json!({ "url": format!("{base}/cdn/{id}"), "mime_type": "image/jpeg", "file_size": 4, "id": id })).into_response()
}

async fn messages(
    State(f): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&f, format!("POST /{id}/messages"), &headers, body.clone()) {
        return meta_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Error validating access token",
        );
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    if v.get("status").is_some() {
        return axum::Json(json!({ "success": true })).into_response();
    }
    match v["to"].as_str().unwrap_or("") {
        "15550000047" => meta_error(StatusCode::BAD_REQUEST, 131047, "Re-engagement message"),
        "15550000429" => {
            let mut once = f.throttled_once.lock().unwrap();
            if !*once {
                *once = true;
                let mut r = meta_error(StatusCode::BAD_REQUEST, 130429, "Rate limit hit");
                r.headers_mut().insert("retry-after", "2".parse().unwrap());
                return r;
            }
            axum::Json(json!({ "messages": [{ "id": "wamid.after-throttle" }] })).into_response()
        }
        to => {
            let n = f.seen.lock().unwrap().len();
            axum::Json(json!({ "messaging_product": "whatsapp",
                               "contacts": [{ "input": to, "wa_id": to }],
                               "messages": [{ "id": format!("wamid.{n}") }] }))
            .into_response()
        }
    }
}

async fn media(
    State(f): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&f, format!("POST /{id}/media"), &headers, body);
    axum::Json(json!({ "id": "MEDIA-UP-1" })).into_response()
}

async fn cdn(State(f): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !record(&f, format!("GET /cdn/{id}"), &headers, Bytes::new()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    (
        [("content-type", "image/jpeg")],
        vec![0xFF, 0xD8, 0xFF, 0xE0],
    )
        .into_response()
}

async fn fake_graph() -> (Shared, String) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/v21.0/{id}", get(number))
        .route("/v21.0/{id}/messages", post(messages))
        .route("/v21.0/{id}/media", post(media))
        .route("/cdn/{id}", get(cdn))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *fake.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base)
}

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

async fn started(token: &str) -> (Shared, Arc<dyn EngineSession>, Arc<Recorder>) {
    let (fake, base) = fake_graph().await;
    let client = GraphClient::new(GraphConfig::new(base.parse().unwrap(), "v21.0")).unwrap();
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
    let seen = fake.seen.lock().unwrap().clone();
    let post = seen
        .iter()
        .find(|s| s.path == format!("POST /{PNID}/messages"))
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
    let seen = fake.seen.lock().unwrap().clone();
    let paths: Vec<&str> = seen
        .iter()
        .map(|s| s.path.as_str())
        .filter(|p| p.starts_with("POST"))
        .collect();
    assert_eq!(
        paths,
        [
            format!("POST /{PNID}/media"),
            format!("POST /{PNID}/messages")
        ]
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
        json!({ "id": "MEDIA-UP-1", "caption": "Your order" })
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
            assert_eq!(retry_after, Some(Duration::from_secs(2)));
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
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "GET /cdn/MEDIA-IN-1")
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
    let typing: Value = {
        let seen = fake.seen.lock().unwrap();
        serde_json::from_slice(&seen.last().unwrap().body).unwrap()
    };
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
