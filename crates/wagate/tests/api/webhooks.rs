//! Webhooks over real HTTP: a local receiver records what wagate POSTs and answers as
//! scripted (500, slow, 200), so payloads, signatures, retries, restarts, routing,
//! history, redelivery, SSRF refusals, media links and the live stream are all checked
//! end to end.

use crate::support::*;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxStatus, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wagate::config::Config;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// How the receiver answers the next request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Answer 200 after this long.
    Sleep(Duration),
    /// Answer with this status and `Retry-After: <secs>`.
    RetryAfter(u16, u64),
    /// Answer 302 to this path of the same receiver.
    Redirect(&'static str),
}

#[derive(Clone, Default)]
struct Receiver {
    addr: Option<SocketAddr>,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    async fn start() -> Self {
        let mut r = Receiver::default();
        let state = r.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                state.got.lock().unwrap().push(Received {
                    path: uri.path().to_owned(),
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                    at: Instant::now(),
                });
                let reply = state.script.lock().unwrap().pop_front();
                match reply {
                    Some(Reply::Status(s)) => {
                        (AxStatus::from_u16(s).unwrap(), "scripted failure").into_response()
                    }
                    Some(Reply::Sleep(d)) => {
                        tokio::time::sleep(d).await;
                        (AxStatus::OK, "late").into_response()
                    }
                    Some(Reply::RetryAfter(s, secs)) => (
                        AxStatus::from_u16(s).unwrap(),
                        [("retry-after", secs.to_string())],
                        "come back later",
                    )
                        .into_response(),
                    Some(Reply::Redirect(to)) => {
                        (AxStatus::FOUND, [("location", to)], "moved").into_response()
                    }
                    None => (AxStatus::OK, "ok").into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    fn script(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().copied());
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (10 s deadline) and returns them.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} webhook requests"), || async {
            let got = self.got();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

/// Private URLs allowed (the receiver is on loopback) and quick retries.
fn webhook_config(c: &mut Config) {
    c.allow_private_urls = true;
    c.webhooks.backoff_base_ms = 100;
    c.webhooks.backoff_max_ms = 1_000;
}

/// An independent Standard Webhooks verifier: the receiver's side of the contract.
fn verify(secret: &str, r: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!(
        "{}.{}.{}",
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.body
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

async fn set_webhooks(app: &TestApp, uid: &str, body: Value) -> Value {
    let mut body = body;
    body["deviceUid"] = json!(uid);
    let (status, reply) = app
        .call(Method::PUT, "/v1/developer/webhooks", Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"].clone()
}

async fn inbound(app: &TestApp, body: Value) -> String {
    let (status, reply) = app.post("/v1/developer/sandbox/inbound", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply["data"]["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Configures `url` for the device, then rotates its secret: the old secret, the new one,
/// and the rotation's reply data.
async fn rotated_secrets(app: &TestApp, uid: &str, url: &str) -> (String, String, Value) {
    let old = set_webhooks(app, uid, json!({ "personalWebhookUrl": url })).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, rotated) = app
        .post(
            "/v1/developer/webhooks/secret/rotate",
            json!({ "deviceUid": uid }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["data"]["secret"].as_str().unwrap().to_owned();
    (old, new, rotated["data"].clone())
}

async fn history(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .get(&format!("/v1/developer/webhooks/history?{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

#[test]
fn signature_matches_the_standard_webhooks_test_vector() {
    let sig = wagate::webhook::signature::sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(
        sig.as_deref(),
        Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    );
    // And the test's own verifier agrees with the vector.
    let r = Received {
        path: "/".into(),
        headers: {
            let mut h = HeaderMap::new();
            h.insert(
                "webhook-id",
                "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
            );
            h.insert("webhook-timestamp", "1614265330".parse().unwrap());
            h.insert(
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                    .parse()
                    .unwrap(),
            );
            h
        },
        body: r#"{"test": 2432232314}"#.into(),
        at: Instant::now(),
    };
    assert!(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &r));
}

#[tokio::test]
async fn msgera_inbound_is_routed_byte_for_byte_and_signed() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("hooks").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let cfg = set_webhooks(
        &app,
        uid,
        json!({ "personalWebhookUrl": rx.url("/personal"), "groupWebhookUrl": rx.url("/group"), "isActive": true }),
    )
    .await;
    let secret = cfg["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{cfg}");
    let (_, got) = app
        .get(&format!("/v1/developer/webhooks?deviceUid={uid}"))
        .await;
    assert_eq!(got["data"]["personalWebhookUrl"], rx.url("/personal"));
    assert_eq!(got["data"]["events"], json!(["message.received"]));

    let pid = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "fromName": "Zeyad", "text": "When will my order arrive?" }),
    )
    .await;
    let got = rx.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/personal");
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let event_id = r.header("webhook-id");
    assert!(event_id.starts_with("evt_"), "{event_id}");
    let tenant = body["tenantId"].as_str().unwrap();
    assert!(tenant.starts_with("acc_"), "{body}");
    let ts = body["timestamp"].as_str().unwrap();
    // ISO-8601 with milliseconds and Z, like 2026-04-12T10:11:23.000Z.
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    let expected = format!(
        r#"{{"eventId":"{event_id}","sessionId":"{uid}","tenantId":"{tenant}","from":"+201001234567","fromName":"Zeyad","text":"When will my order arrive?","mediaType":null,"mediaUrl":null,"timestamp":"{ts}","providerMessageId":"{pid}","isGroup":false,"groupId":null,"groupName":null}}"#
    );
    assert_eq!(r.body, expected);
    assert!(verify(&secret, r), "signature must verify with the secret");
    let wts: i64 = r.header("webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - wts).abs() < 60);

    // A group message goes to the group URL.
    let gpid = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234568", "fromName": "Mona", "text": "hi all",
                "isGroup": true, "groupId": "120363025@g.us", "groupName": "Orders" }),
    )
    .await;
    let got = rx.wait_for(2).await;
    let g = &got[1];
    assert_eq!(g.path, "/group");
    let gb = g.json();
    assert_eq!(gb["isGroup"], true);
    assert_eq!(gb["groupId"], "120363025@g.us");
    assert_eq!(gb["groupName"], "Orders");
    assert_eq!(gb["providerMessageId"], gpid.as_str());
    assert_ne!(g.header("webhook-id"), event_id);

    // Switched off: nothing more is sent.
    set_webhooks(
        &app,
        uid,
        json!({ "personalWebhookUrl": rx.url("/personal"), "isActive": false }),
    )
    .await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "ignored" }),
    )
    .await;
    // Switched on again, the next message is the next request: events are dispatched in
    // order, so had the one above been sent, it would have come first.
    set_webhooks(
        &app,
        uid,
        json!({ "personalWebhookUrl": rx.url("/personal"), "isActive": true }),
    )
    .await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "after" }),
    )
    .await;
    let got = rx.wait_for(3).await;
    assert_eq!(
        got[2].json()["text"],
        "after",
        "the inactive one was not sent"
    );
    assert_eq!(got.len(), 3);

    let h = eventually("3 attempts recorded", || async {
        let h = history(&app, &format!("deviceUid={uid}&status=SUCCESS")).await;
        (h["total"] == 3).then_some(h)
    })
    .await;
    assert_eq!(h["items"][0]["statusCode"], 200);
    assert_eq!(h["items"][0]["attempt"], 1);
}

#[tokio::test]
async fn retries_on_500_with_the_same_event_id_and_records_every_attempt() {
    let rx = Receiver::start().await;
    rx.script(&[Reply::Status(500), Reply::Status(503)]);
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("retry").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/h") })).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "retry me" }),
    )
    .await;
    let got = rx.wait_for(3).await;
    let id = got[0].header("webhook-id");
    assert!(got.iter().all(|r| r.header("webhook-id") == id));
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "same bytes on every retry"
    );
    // Exponential backoff from 100 ms with ±20% jitter: ~100 ms, then ~200 ms.
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(75), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(155), "{gap2:?}");

    let h = eventually("3 attempts in the history", || async {
        let h = history(&app, &format!("deviceUid={uid}")).await;
        (h["total"] == 3).then_some(h)
    })
    .await;
    let items = h["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "SUCCESS");
    assert_eq!(items[0]["attempt"], 3);
    assert_eq!(items[1]["status"], "FAILED");
    assert_eq!(items[1]["statusCode"], 503);
    assert_eq!(items[1]["responseSnippet"], "scripted failure");
    assert_eq!(items[2]["statusCode"], 500);
    assert!(items.iter().all(|i| i["eventId"] == id.as_str()));
    let failed = history(&app, "status=FAILED").await;
    assert_eq!(failed["total"], 2);
}

#[tokio::test]
async fn retries_after_a_timeout() {
    let rx = Receiver::start().await;
    rx.script(&[Reply::Sleep(Duration::from_millis(1_500))]);
    let app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.timeout_ms = 300;
    })
    .await;
    let device = app.connected_device("slow").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/slow") })).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "slow" }),
    )
    .await;
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    let h = eventually("2 attempts", || async {
        let h = history(&app, &format!("deviceUid={uid}")).await;
        (h["total"] == 2).then_some(h)
    })
    .await;
    assert_eq!(h["items"][0]["status"], "SUCCESS");
    assert_eq!(h["items"][1]["status"], "FAILED");
    let error = h["items"][1]["error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
    assert!(h["items"][1]["statusCode"].is_null());
}

#[tokio::test]
async fn connection_refused_fails_after_the_configured_attempts_and_redeliver_sends_again() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("dead").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(
        &app,
        uid,
        json!({ "personalWebhookUrl": format!("http://{dead}/gone") }),
    )
    .await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "anyone?" }),
    )
    .await;
    let h = eventually("3 failed attempts", || async {
        let h = history(&app, &format!("deviceUid={uid}&status=FAILED")).await;
        (h["total"] == 3).then_some(h)
    })
    .await;
    for item in h["items"].as_array().unwrap() {
        let e = item["error"].as_str().unwrap();
        assert!(e.contains("connect"), "{e}");
    }
    // No fourth attempt: the outbox row itself is closed as failed (the dispatcher only
    // claims pending rows), with its three attempts; waited on, not slept for.
    let outbox = {
        let db = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}?mode=ro",
            app.config.database_path().display()
        ))
        .await
        .unwrap();
        let row = eventually("the delivery to be closed", || async {
            let row: (String, i64) = sqlx::query_as(
                "SELECT status, attempts FROM webhook_deliveries WHERE device_uid = ?",
            )
            .bind(uid)
            .fetch_one(&db)
            .await
            .unwrap();
            (row.0 != "pending").then_some(row)
        })
        .await;
        db.close().await;
        row
    };
    assert_eq!(outbox, ("failed".to_owned(), 3));
    assert_eq!(history(&app, &format!("deviceUid={uid}")).await["total"], 3);

    // The receiver is fixed: redeliver sends the same event (same id) again.
    let rx = Receiver::start().await;
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/fixed") })).await;
    let attempt_id = h["items"][0]["id"].as_i64().unwrap();
    let event_id = h["items"][0]["eventId"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("/v1/developer/webhooks/history/{attempt_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].header("webhook-id"), event_id);
    assert_eq!(got[0].json()["eventId"], event_id.as_str());
    let ok = eventually("redelivery recorded", || async {
        let h = history(&app, &format!("deviceUid={uid}&status=SUCCESS")).await;
        (h["total"] == 1).then_some(h)
    })
    .await;
    assert_eq!(ok["items"][0]["eventId"], event_id.as_str());
    let (status, _) = app
        .post("/v1/developer/webhooks/history/999999/redeliver", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_restart_in_the_middle_of_the_retry_schedule_continues_it() {
    let rx = Receiver::start().await;
    rx.script(&[Reply::Status(500)]);
    let mut app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.backoff_base_ms = 2_000;
        c.webhooks.backoff_max_ms = 2_000;
    })
    .await;
    let device = app.connected_device("restart").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    set_webhooks(&app, &uid, json!({ "personalWebhookUrl": rx.url("/r") })).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "survive" }),
    )
    .await;
    let first = rx.wait_for(1).await;
    eventually("the failed attempt recorded", || async {
        (history(&app, &format!("deviceUid={uid}")).await["total"] == 1).then_some(())
    })
    .await;
    app.restart().await;
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2, "delivered once more, not twice");
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(got[1].body, first[0].body);
    // The stored schedule (~2 s ±20%) was kept across the restart.
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1_550), "{gap:?}");
    let h = eventually("2 attempts", || async {
        let h = history(&app, &format!("deviceUid={uid}")).await;
        (h["total"] == 2).then_some(h)
    })
    .await;
    assert_eq!(h["items"][0]["attempt"], 2);
    assert_eq!(h["items"][0]["status"], "SUCCESS");
}

#[tokio::test]
async fn megamsg_instance_webhook_gets_the_seed_format() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let (status, created) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "mega", "engine": "sandbox" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let uid = created["data"]["deviceUid"].as_str().unwrap().to_owned();
    let token = created["data"]["instanceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_device_status(&uid, "connected").await;
    let put = |body: Value| {
        app.client
            .put(format!("{}/api/whatsapp/webhook", app.base))
            .bearer_auth(&token)
            .header("X-Instance-Id", &uid)
            .json(&body)
            .send()
    };
    let r = put(json!({ "url": rx.url("/mega") })).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["url"], rx.url("/mega"));
    let secret = reply["secret"].as_str().unwrap().to_owned();
    let r = app
        .client
        .get(format!("{}/api/whatsapp/webhook", app.base))
        .bearer_auth(&token)
        .header("X-Instance-Id", &uid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["url"], rx.url("/mega"));
    let r = app
        .client
        .get(format!("{}/api/whatsapp/webhook", app.base))
        .bearer_auth("wrong")
        .header("X-Instance-Id", &uid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let pid = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201234567890", "fromName": "John Doe", "text": "Hello!" }),
    )
    .await;
    let got = rx.wait_for(1).await;
    let r = &got[0];
    assert_eq!(r.path, "/mega");
    let body = r.json();
    let ts = body["message"]["timestamp"].as_i64().unwrap();
    let outer = body["timestamp"].as_str().unwrap();
    assert!(outer.ends_with("+00:00") && outer.len() == 25, "{outer}");
    let expected = format!(
        r#"{{"type":"message","message":{{"id":"{pid}","from":"201234567890","push_name":"John Doe","text":"Hello!","timestamp":{ts},"is_group":false,"type":"text"}},"timestamp":"{outer}"}}"#
    );
    assert_eq!(r.body, expected);
    assert!(verify(&secret, r));

    // Through the developer API too.
    let rx2 = Receiver::start().await;
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/v1/developer/devices/{uid}/instance-webhook"),
            Some(json!({ "url": rx2.url("/dev") })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["instanceWebhookUrl"], rx2.url("/dev"));
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201234567890", "text": "again" }),
    )
    .await;
    assert_eq!(rx2.wait_for(1).await[0].json()["message"]["text"], "again");
}

#[tokio::test]
async fn status_events_are_opt_in() {
    let rx = Receiver::start().await;
    let quiet = Receiver::start().await;
    let app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.per_destination = 1;
    })
    .await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let (ua, ub) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );
    let cfg = set_webhooks(
        &app,
        ua,
        json!({ "personalWebhookUrl": rx.url("/a"), "events": ["message.received", "message.status", "device.status"] }),
    )
    .await;
    assert_eq!(
        cfg["events"],
        json!(["message.received", "message.status", "device.status"])
    );
    set_webhooks(&app, ub, json!({ "personalWebhookUrl": quiet.url("/b") })).await;
    let (status, body) = app
        .call(
            Method::PUT,
            "/v1/developer/webhooks",
            Some(json!({ "deviceUid": ua, "events": ["message.sent"] })),
        )
        .await;
    assert_invalid(status, &body, "events[0]");

    let (status, sent) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": ua, "to": "+201001234567", "text": "hi", "clientMessageId": "c-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let mid = sent["data"]["messageId"].as_str().unwrap();
    let mb = app.send_text(ub, "+201001234567", "hi").await;
    let got = eventually("sent, delivered and read", || async {
        let got = rx.got();
        let statuses: Vec<String> = got
            .iter()
            .map(|r| r.json()["status"].as_str().unwrap_or("").to_owned())
            .collect();
        (statuses == ["sent", "delivered", "read"]).then_some(got)
    })
    .await;
    let read = got[2].json();
    assert_eq!(read["event"], "message.status");
    assert_eq!(read["messageId"], mid);
    assert_eq!(read["clientMessageId"], "c-1");
    assert_eq!(read["recipient"], "+201001234567");
    assert_eq!(read["sessionId"], ua);
    assert!(read["reason"].is_null());
    // Keys in the documented order (serde_json's map would sort them: read the raw body).
    let raw = &got[2].body;
    let order = [
        "eventId",
        "event",
        "sessionId",
        "tenantId",
        "messageId",
        "clientMessageId",
        "recipient",
        "status",
        "reason",
        "timestamp",
    ]
    .map(|k| {
        raw.find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} in {raw}"))
    });
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{raw}");
    app.wait_message_status(mb["messageId"].as_str().unwrap(), "read")
        .await;
    // One request at a time to a destination, in event order: once an inbound message
    // after the read has arrived, any status event before it would have too.
    inbound(
        &app,
        json!({ "deviceUid": ub, "from": "+201001234567", "text": "to b" }),
    )
    .await;
    let quiet_got = quiet.wait_for(1).await;
    let texts: Vec<Value> = quiet_got.iter().map(|r| r.json()["text"].clone()).collect();
    assert_eq!(
        texts,
        [json!("to b")],
        "the default is inbound messages only"
    );

    // device.status: logging out is reported.
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{ua}/logout"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dev = eventually("device.status logged_out", || async {
        rx.got()
            .iter()
            .map(|r| r.json())
            .find(|j| j["event"] == "device.status" && j["status"] == "logged_out")
    })
    .await;
    assert_eq!(dev["sessionId"], ua);
}

#[tokio::test]
async fn private_destinations_are_refused_by_default() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("ssrf").await;
    let uid = device["deviceUid"].as_str().unwrap();
    for (field, url) in [
        ("personalWebhookUrl", "http://127.0.0.1:8080/hook"),
        ("personalWebhookUrl", "http://localhost/hook"),
        ("groupWebhookUrl", "http://169.254.169.254/latest/meta-data"),
        ("groupWebhookUrl", "http://10.0.0.5/x"),
        ("personalWebhookUrl", "http://[::1]/x"),
        ("personalWebhookUrl", "ftp://example.com/x"),
    ] {
        let (status, body) = app
            .call(
                Method::PUT,
                "/v1/developer/webhooks",
                Some(json!({ "deviceUid": uid, field: url })),
            )
            .await;
        assert_invalid(status, &body, field);
    }
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/v1/developer/devices/{uid}/instance-webhook"),
            Some(json!({ "url": "http://192.168.1.1/" })),
        )
        .await;
    assert_invalid(status, &body, "url");
    // Another account cannot configure this device.
    let (other, _) = app.other_account().await;
    let (status, _) = app
        .call_as(
            &other,
            Method::PUT,
            "/v1/developer/webhooks",
            Some(json!({ "deviceUid": uid, "personalWebhookUrl": "https://example.com/" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn media_url_downloads_the_media_and_tampered_links_are_refused() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("media").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/m") })).await;
    let (status, up) = app.upload(png(), "pic.png", "image/png").await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let media_id = up["data"]["mediaId"].as_str().unwrap();
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "look", "mediaId": media_id }),
    )
    .await;
    let body = rx.wait_for(1).await[0].json();
    assert_eq!(body["mediaType"], "image");
    let link = body["mediaUrl"].as_str().unwrap().to_owned();
    assert!(link.starts_with(&app.base), "{link}");
    let r = reqwest::get(&link).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png());

    // A changed signature, a pushed-back expiry or no signature: 401 with the error shape.
    let sig_at = link.find("signature=").unwrap() + "signature=".len();
    let mut forged = link.clone();
    let c = if &link[sig_at..sig_at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(sig_at..sig_at + 1, c);
    let expires: i64 = link
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let extended = link.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 1),
    );
    let bare = link.split('?').next().unwrap().to_owned();
    for bad in [forged, extended, bare] {
        let r = reqwest::get(&bad).await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn secret_rotation_signs_with_both_secrets_during_the_grace_period() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("rotate").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let (old, new, rotated) = rotated_secrets(&app, uid, &rx.url("/s")).await;
    assert_ne!(new, old);
    assert!(rotated["previousSecretValidUntil"].is_string());
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "rotated" }),
    )
    .await;
    let r = &rx.wait_for(1).await[0];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    assert!(verify(&new, r) && verify(&old, r));
}

/// Reads SSE frames from a streaming response until `n` events (id + event + data).
async fn read_sse(resp: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("timed out reading the event stream")
            .unwrap()
            .expect("stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !event.is_empty() {
                out.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

async fn open_stream(app: &TestApp, query: &str, last: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/v1/developer/events{query}", app.base))
        .header("X-API-Key", &app.key);
    if let Some(l) = last {
        req = req.header("Last-Event-ID", l);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    resp
}

#[tokio::test]
async fn the_event_stream_is_live_and_resumes_from_last_event_id() {
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("sse").await;
    let other = app.connected_device("other").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let query = format!("?deviceUid={uid}&types=message.received");
    let mut live = open_stream(&app, &query, None).await;
    inbound(
        &app,
        json!({ "deviceUid": other["deviceUid"], "from": "+201001234567", "text": "not mine" }),
    )
    .await;
    let pid1 = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "one" }),
    )
    .await;
    let first = read_sse(&mut live, 1).await;
    assert_eq!(first[0].1, "message.received");
    assert_eq!(first[0].2["providerMessageId"], pid1.as_str());
    assert_eq!(first[0].2["text"], "one");
    let last_id = first[0].0.clone();
    drop(live);

    // Missed while disconnected (with a status event in between that the filter drops).
    app.send_text(uid, "+201001234567", "status noise").await;
    let pid2 = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "two" }),
    )
    .await;
    let pid3 = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "three" }),
    )
    .await;
    let mut resumed = open_stream(&app, &query, Some(&last_id)).await;
    let got = read_sse(&mut resumed, 2).await;
    assert_eq!(got[0].2["providerMessageId"], pid2.as_str());
    assert_eq!(got[1].2["providerMessageId"], pid3.as_str());
    assert!(got[0].0.parse::<i64>().unwrap() > last_id.parse::<i64>().unwrap());
    assert!(got[1].0.parse::<i64>().unwrap() > got[0].0.parse::<i64>().unwrap());
    // Still live after the replay.
    let pid4 = inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "four" }),
    )
    .await;
    let live = read_sse(&mut resumed, 1).await;
    assert_eq!(live[0].2["providerMessageId"], pid4.as_str());

    let (status, body) = app.get("/v1/developer/events?types=bogus").await;
    assert_invalid(status, &body, "types");
}

#[tokio::test]
async fn a_receivers_retry_after_is_honoured() {
    let rx = Receiver::start().await;
    rx.script(&[Reply::RetryAfter(503, 2)]);
    let app = TestApp::spawn_with(webhook_config).await;
    let device = app.connected_device("later").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/later") })).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "later" }),
    )
    .await;
    let got = rx.wait_for(2).await;
    // The computed backoff is ~100 ms; the receiver asked for 2 s.
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1_950), "{gap:?}");
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failed_attempt() {
    let rx = Receiver::start().await;
    rx.script(&[Reply::Redirect("/elsewhere")]);
    let app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.attempts = 1;
    })
    .await;
    let device = app.connected_device("moved").await;
    let uid = device["deviceUid"].as_str().unwrap();
    set_webhooks(&app, uid, json!({ "personalWebhookUrl": rx.url("/moved") })).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "moved" }),
    )
    .await;
    let h = eventually("the failed attempt", || async {
        let h = history(&app, &format!("deviceUid={uid}&status=FAILED")).await;
        (h["total"] == 1).then_some(h)
    })
    .await;
    assert_eq!(h["items"][0]["statusCode"], 302, "{h}");
    // The attempt is recorded after its request finished: had the redirect been
    // followed, the receiver would have seen /elsewhere by now.
    let paths: Vec<String> = rx.got().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/moved"]);
}

#[tokio::test]
async fn a_destination_that_became_internal_is_refused_at_the_attempt() {
    let rx = Receiver::start().await;
    // Configured while internal destinations were allowed (as a name re-pointed at an
    // internal address after it was configured would be)...
    let mut app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.attempts = 1;
    })
    .await;
    let device = app.connected_device("ssrf").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    set_webhooks(&app, &uid, json!({ "personalWebhookUrl": rx.url("/in") })).await;
    // ...then the server runs with them refused: every attempt is vetted again.
    app.config.allow_private_urls = false;
    app.restart().await;
    app.wait_device_status(&uid, "connected").await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "ssrf" }),
    )
    .await;
    let h = eventually("the refused attempt", || async {
        let h = history(&app, &format!("deviceUid={uid}&status=FAILED")).await;
        (h["total"] == 1).then_some(h)
    })
    .await;
    let error = h["items"][0]["error"].as_str().unwrap();
    assert!(error.contains("not sent to"), "{error}");
    assert!(h["items"][0]["statusCode"].is_null());
    assert!(rx.got().is_empty(), "nothing reached the internal receiver");
}

#[tokio::test]
async fn a_rotated_away_secret_stops_signing_after_its_grace_period() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(|c| {
        webhook_config(c);
        c.webhooks.secret_grace_secs = 1;
    })
    .await;
    let device = app.connected_device("rotate").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let (old, new, _) = rotated_secrets(&app, uid, &rx.url("/g")).await;
    // Past the grace period (the wait is before the event, not before an assertion).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    inbound(
        &app,
        json!({ "deviceUid": uid, "from": "+201001234567", "text": "after grace" }),
    )
    .await;
    let r = &rx.wait_for(1).await[0];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 1);
    assert!(verify(&new, r));
    assert!(!verify(&old, r), "the old secret no longer signs");
}

/// A location, contact or poll arrives as `message.received` in both formats: the seed's
/// keys first and unchanged (a summary as text, no media), the structured parts after.
#[tokio::test]
async fn structured_messages_arrive_with_their_details_in_both_formats() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let shop = app.connected_device("shop").await;
    let (status, created) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "customer", "engine": "sandbox" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let uid = created["data"]["deviceUid"].as_str().unwrap().to_owned();
    let customer = app.wait_device_status(&uid, "connected").await;
    set_webhooks(
        &app,
        &uid,
        json!({ "personalWebhookUrl": rx.url("/personal"), "isActive": true }),
    )
    .await;
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/v1/developer/devices/{uid}/instance-webhook"),
            Some(json!({ "url": rx.url("/mega") })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, sent) = app
        .post(
            "/v1/developer/messages/send-location",
            json!({ "deviceUid": shop["deviceUid"], "to": customer["phoneNumber"],
                    "latitude": 30.0444, "longitude": 31.2357, "name": "Shop" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let (status, poll) = app
        .post(
            "/v1/developer/messages/send-poll",
            json!({ "deviceUid": shop["deviceUid"], "to": customer["phoneNumber"],
                    "question": "Rate us", "options": ["Good", "Bad"], "multipleAnswers": true,
                    "replyTo": sent["data"]["messageId"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{poll}");
    let got = rx.wait_for(4).await;
    let at = |path: &str, pid: &Value| {
        got.iter()
            .find(|r| r.path == path && r.body.contains(pid.as_str().unwrap()))
            .unwrap_or_else(|| panic!("{path} {pid}: {got:?}"))
            .json()
    };
    let shop_phone = shop["phoneNumber"].as_str().unwrap();
    let m = at("/personal", &sent["data"]["providerMessageId"]);
    assert_eq!(m["from"], shop_phone);
    assert_eq!(m["text"], "Location: 30.0444, 31.2357 — Shop");
    assert_eq!(m["mediaType"], Value::Null);
    assert_eq!(
        m["location"],
        json!({ "latitude": 30.0444, "longitude": 31.2357, "name": "Shop", "address": null })
    );
    // The seed's keys in their order, then the location.
    let raw = got
        .iter()
        .find(|r| {
            r.path == "/personal"
                && r.body
                    .contains(sent["data"]["providerMessageId"].as_str().unwrap())
        })
        .unwrap();
    assert!(
        raw.body
            .contains(r#""isGroup":false,"groupId":null,"groupName":null,"location":{"#),
        "{}",
        raw.body
    );
    let p = at("/personal", &poll["data"]["providerMessageId"]);
    assert_eq!(
        p["poll"],
        json!({ "question": "Rate us", "options": ["Good", "Bad"], "multipleAnswers": true })
    );
    assert_eq!(
        p["replyTo"]["providerMessageId"],
        sent["data"]["providerMessageId"]
    );
    assert!(!p.to_string().contains("secret"), "{p}");

    let mega = at("/mega", &sent["data"]["providerMessageId"]);
    assert_eq!(mega["message"]["type"], "location");
    assert_eq!(
        mega["message"]["location"],
        json!({ "latitude": 30.0444, "longitude": 31.2357, "name": "Shop", "address": null })
    );
    let mega = at("/mega", &poll["data"]["providerMessageId"]);
    assert_eq!(mega["message"]["type"], "poll");
    assert_eq!(mega["message"]["poll"]["multiple_answers"], true);
    assert_eq!(
        mega["message"]["reply_to"],
        json!({ "id": sent["data"]["providerMessageId"], "from_me": false,
                "from": shop_phone.trim_start_matches('+'), "text": m["text"] })
    );
}

/// Reactions, edits and deletes are opt-in event types: a receiver on the defaults never
/// sees them; one that opted in gets them in its format, to the chat's URL.
#[tokio::test]
async fn reactions_edits_and_deletes_are_opt_in_events_in_both_formats() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let shop = app.connected_device("shop").await;
    let customer = app.connected_device("customer").await;
    let (shop_uid, customer_uid) = (
        shop["deviceUid"].as_str().unwrap(),
        customer["deviceUid"].as_str().unwrap(),
    );
    // The shop's personal URL takes the defaults; its instance URL opts in.
    set_webhooks(
        &app,
        shop_uid,
        json!({ "personalWebhookUrl": rx.url("/personal"), "isActive": true }),
    )
    .await;
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/v1/developer/devices/{shop_uid}/instance-webhook"),
            Some(json!({ "url": rx.url("/mega"), "events": ["message.reaction", "message.edited", "message.deleted"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The customer's personal URL opts in too.
    set_webhooks(
        &app,
        customer_uid,
        json!({ "personalWebhookUrl": rx.url("/customer"), "isActive": true,
                "events": ["message.received", "message.edited", "message.deleted"] }),
    )
    .await;

    let sent = app
        .send_text(shop_uid, customer["phoneNumber"].as_str().unwrap(), "hello")
        .await;
    let received = rx.wait_for(1).await;
    assert_eq!(received[0].path, "/customer");
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={customer_uid}"))
        .await;
    let at_customer = inbox["data"]["items"][0]["messageId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, reaction) = app
        .post(
            &format!("/v1/developer/messages/{at_customer}/reaction"),
            json!({ "emoji": "🎉" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reaction}");
    let (status, edit) = app
        .call(
            Method::PATCH,
            &format!(
                "/v1/developer/messages/{}",
                sent["messageId"].as_str().unwrap()
            ),
            Some(json!({ "text": "hello again" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let got = rx.wait_for(3).await;
    let mega = got
        .iter()
        .find(|r| r.path == "/mega")
        .expect("the reaction")
        .json();
    assert_eq!(mega["type"], "message.reaction");
    assert_eq!(mega["message"]["type"], "reaction");
    assert_eq!(mega["message"]["emoji"], "🎉");
    assert_eq!(mega["message"]["target"]["id"], sent["providerMessageId"]);
    assert_eq!(mega["message"]["target"]["from_me"], true);
    let edited = got
        .iter()
        .find(|r| r.path == "/customer" && r.body.contains("message.edited"))
        .expect("the edit")
        .json();
    assert_eq!(edited["event"], "message.edited");
    assert_eq!(edited["text"], "hello again");
    assert_eq!(edited["from"], shop["phoneNumber"]);
    assert_eq!(
        edited["target"]["providerMessageId"],
        sent["providerMessageId"]
    );
    assert_eq!(edited["target"]["fromMe"], false);
    assert_eq!(
        edited["providerMessageId"],
        edit["data"]["providerMessageId"]
    );
    assert!(edited["eventId"].as_str().unwrap().starts_with("evt_"));
    // Nothing of the reaction at the shop's default-events URL, nor of the edit's echo.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        rx.got().iter().all(|r| r.path != "/personal"),
        "{:?}",
        rx.got()
    );
}

/// Group membership changes and poll votes are opt-in event types too: a group URL that
/// opted in gets the membership change in Msgera format, an instance URL the vote in
/// MegaMsg format; a receiver on the defaults gets neither.
#[tokio::test]
async fn group_changes_and_poll_votes_are_opt_in_events_in_both_formats() {
    let rx = Receiver::start().await;
    let app = TestApp::spawn_with(webhook_config).await;
    let owner = app.connected_device("owner").await;
    let member = app.connected_device("member").await;
    let (owner_uid, member_uid) = (
        owner["deviceUid"].as_str().unwrap(),
        member["deviceUid"].as_str().unwrap(),
    );
    let member_phone = member["phoneNumber"].as_str().unwrap();
    // The member's group URL opts in to membership changes; its personal URL keeps the
    // defaults. The owner's instance URL opts in to votes.
    set_webhooks(
        &app,
        member_uid,
        json!({ "personalWebhookUrl": rx.url("/member"), "groupWebhookUrl": rx.url("/member-groups"),
                "isActive": true, "events": ["message.received", "group.participants"] }),
    )
    .await;
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/v1/developer/devices/{owner_uid}/instance-webhook"),
            Some(json!({ "url": rx.url("/mega"), "events": ["poll.vote"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, group) = app
        .post(
            "/v1/developer/groups",
            json!({ "deviceUid": owner_uid, "subject": "Lunch club", "participants": [member_phone] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["data"]["groupId"].as_str().unwrap();
    let added = rx.wait_for(1).await;
    assert_eq!(
        added[0].path, "/member-groups",
        "group events go to the group URL"
    );
    let added = added[0].json();
    assert_eq!(added["event"], "group.participants");
    assert_eq!(added["from"], owner["phoneNumber"]);
    assert_eq!(added["groupId"], gid);
    assert_eq!(added["groupName"], "Lunch club");
    assert_eq!(added["isGroup"], true);
    assert_eq!(
        added["groupChange"],
        json!({ "action": "add", "participants": [
            { "phone": member_phone, "lid": null, "role": "member", "isAdmin": false }
        ] })
    );

    // A poll in the group; the member votes; the owner's instance URL gets the vote.
    let (status, poll) = app
        .post(
            "/v1/developer/messages/send-poll",
            json!({ "deviceUid": owner_uid, "groupId": gid, "question": "Where?", "options": ["Pizza", "Sushi"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{poll}");
    let poll_pid = poll["data"]["providerMessageId"].as_str().unwrap();
    let at_member = eventually("the poll at the member", || async {
        let (_, inbox) = app
            .get(&format!("/v1/developer/inbound?deviceUid={member_uid}"))
            .await;
        inbox["data"]["items"]
            .as_array()?
            .iter()
            .find(|m| m["providerMessageId"] == poll_pid)
            .cloned()
    })
    .await;
    let (status, vote) = app
        .post(
            &format!(
                "/v1/developer/messages/{}/vote",
                at_member["messageId"].as_str().unwrap()
            ),
            json!({ "options": ["Sushi"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{vote}");
    let got = rx.wait_for(3).await;
    let mega = got
        .iter()
        .find(|r| r.path == "/mega")
        .expect("the vote")
        .json();
    assert_eq!(mega["type"], "poll.vote");
    assert_eq!(mega["message"]["type"], "poll_vote");
    assert_eq!(mega["message"]["vote"], json!(["Sushi"]));
    assert_eq!(mega["message"]["target"]["id"], poll_pid);
    assert_eq!(mega["message"]["target"]["from_me"], true);
    assert_eq!(mega["message"]["group_id"], gid);
    assert_eq!(
        mega["message"]["from"],
        member_phone.trim_start_matches('+')
    );
    // The member's own URLs got the poll (message.received), not the vote; nothing of
    // the vote reached a default-events receiver.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let bodies: Vec<String> = rx.got().iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies.iter().filter(|b| b.contains("poll.vote")).count(),
        1,
        "{bodies:?}"
    );
}
