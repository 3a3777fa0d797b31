//! The MegaMsg dialect: instance auth, the send endpoint's validation, synchronous replies
//! (200 / 502 / 500), inline media by base64 and by URL (with SSRF refusals), one pipeline
//! with the Msgera API, and the seed's own curl, JavaScript and Python examples.

// Helpers outside `#[test]` functions panic on purpose too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use axum::Router;
use axum::http::{StatusCode as AxumStatus, header};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SEND: &str = "/api/whatsapp/messages/send";

/// A device as a MegaMsg instance: its id and token.
struct Instance {
    uid: String,
    token: String,
}

/// Creates a sandbox device (with `extra` fields in the create body) and returns its
/// instance credentials from the create reply, without waiting for it to connect.
async fn create_instance(app: &TestApp, extra: Value) -> Instance {
    let mut body = json!({ "name": "mega", "engine": "sandbox" });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, body) = app.post("/v1/developer/devices", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Instance {
        uid: body["data"]["deviceUid"].as_str().unwrap().to_owned(),
        token: body["data"]["instanceToken"].as_str().unwrap().to_owned(),
    }
}

async fn connected_instance(app: &TestApp) -> Instance {
    let i = create_instance(app, json!({})).await;
    app.wait_device_status(&i.uid, "connected").await;
    i
}

/// A request to the MegaMsg API with exactly the given headers.
async fn raw(app: &TestApp, headers: &[(&str, &str)], body: &str) -> (StatusCode, Value) {
    let mut req = app.client.post(format!("{}{SEND}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

async fn send(app: &TestApp, i: &Instance, body: Value) -> (StatusCode, Value) {
    let auth = format!("Bearer {}", i.token);
    raw(
        app,
        &[
            ("Authorization", &auth),
            ("X-Instance-Id", &i.uid),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
}

/// Messages of the device in the Msgera listing.
async fn listed(app: &TestApp, uid: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/v1/developer/messages?deviceUid={uid}&limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["items"].as_array().unwrap().clone()
}

fn assert_unauthorized(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["message"], "Unauthorized.", "{body}");
}

/// Asserts the seed's success reply for a send to `to` of `kind`; returns the message id.
fn assert_sent(status: StatusCode, body: &Value, to: &str, kind: &str) -> String {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["to"], to, "{body}");
    assert_eq!(body["type"], kind, "{body}");
    let id = body["messageId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("msg_"), "{id}");
    id
}

fn text_body() -> Value {
    json!({ "phone_number": "+201234567890", "type": "text", "text": "Hello" })
}

#[tokio::test]
async fn megamsg_auth_refuses_missing_wrong_mismatched_and_rotated_credentials() {
    let app = TestApp::spawn().await;
    let a = connected_instance(&app).await;
    let b = connected_instance(&app).await;
    let body = text_body().to_string();
    let bearer_a = format!("Bearer {}", a.token);
    let bearer_b = format!("Bearer {}", b.token);
    let wrong = format!("Bearer {}", "0".repeat(64));
    let basic = format!("Basic {}", a.token);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no headers", vec![]),
        ("no instance id", vec![("Authorization", &bearer_a)]),
        ("no token", vec![("X-Instance-Id", &a.uid)]),
        (
            "wrong token",
            vec![("Authorization", &wrong), ("X-Instance-Id", &a.uid)],
        ),
        (
            "another instance's token",
            vec![("Authorization", &bearer_b), ("X-Instance-Id", &a.uid)],
        ),
        (
            "not a bearer token",
            vec![("Authorization", &basic), ("X-Instance-Id", &a.uid)],
        ),
        (
            "malformed instance id",
            vec![
                ("Authorization", &bearer_a),
                ("X-Instance-Id", "instance-1"),
            ],
        ),
        (
            "unknown instance id",
            vec![
                ("Authorization", &bearer_a),
                ("X-Instance-Id", "dev_01J00000000000000000000000"),
            ],
        ),
        (
            "an API key instead",
            vec![("X-API-Key", &app.key), ("X-Instance-Id", &a.uid)],
        ),
    ];
    for (what, mut headers) in cases {
        headers.push(("Content-Type", "application/json"));
        let (status, reply) = raw(&app, &headers, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {reply}");
        assert_unauthorized(status, &reply);
        // Authentication comes first: an invalid body does not reveal anything either.
        let (status, reply) = raw(&app, &headers, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {reply}");
        assert_unauthorized(status, &reply);
    }
    assert!(listed(&app, &a.uid).await.is_empty(), "nothing was queued");

    // The right pair works (the scheme is case-insensitive, as HTTP says).
    let lower = format!("bearer {}", a.token);
    let (status, reply) = raw(
        &app,
        &[
            ("authorization", &lower),
            ("x-instance-id", &a.uid),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
    .await;
    assert_sent(status, &reply, "+201234567890", "text");

    // Rotating the token retires the old one at once.
    let (status, rotated) = app
        .post(&format!("/v1/developer/devices/{}/token", a.uid), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_token = rotated["data"]["instanceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_token, a.token);
    let (status, reply) = send(&app, &a, text_body()).await;
    assert_unauthorized(status, &reply);
    let rotated = Instance {
        uid: a.uid.clone(),
        token: new_token,
    };
    let (status, reply) = send(&app, &rotated, text_body()).await;
    assert_sent(status, &reply, "+201234567890", "text");

    // A deleted device is no instance any more.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/developer/devices/{}", a.uid),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = send(&app, &rotated, text_body()).await;
    assert_unauthorized(status, &reply);
}

#[tokio::test]
async fn megamsg_text_is_answered_once_taken_and_lands_in_the_one_pipeline() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let device = format!("/v1/developer/devices/{}", i.uid);
    let (_, before) = app.get(&device).await;
    let daily = before["data"]["safety"]["dailyRemaining"].as_u64().unwrap();

    // A number without `+` is the same number; spintax works as in the Msgera API.
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "201234567890", "text": "{Hi|Hello} from wagate" }),
    )
    .await;
    let id = assert_sent(status, &reply, "+201234567890", "text");

    // Synchronous: by the time of the reply the engine has the message.
    let (_, m) = app.get(&format!("/v1/developer/messages/{id}")).await;
    assert_ne!(m["data"]["status"], "queued", "{m}");
    let read = app.wait_message_status(&id, "read").await;
    assert_eq!(read["source"], "megamsg");
    assert_eq!(read["type"], "text");
    assert_eq!(read["to"], "+201234567890");
    let text = read["text"].as_str().unwrap();
    assert!(
        text == "Hi from wagate" || text == "Hello from wagate",
        "{text}"
    );
    let steps: Vec<&str> = read["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "sent", "delivered", "read"]);

    // Same listing and budgets as the Msgera API.
    let items = listed(&app, &i.uid).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["messageId"], id.as_str());
    assert_eq!(items[0]["source"], "megamsg");
    let (_, after) = app.get(&device).await;
    assert_eq!(
        after["data"]["safety"]["dailyRemaining"].as_u64().unwrap(),
        daily - 1
    );

    // The endpoint is in the OpenAPI document.
    let (_, doc) = app.get("/openapi.json").await;
    assert!(doc["paths"][SEND]["post"].is_object(), "{}", doc["paths"]);
}

#[tokio::test]
async fn megamsg_every_validation_failure_is_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let png = B64.encode(png());
    let phone = "+201234567890";
    let cases = [
        (json!({}), "phone_number"),
        (json!({ "type": "text", "text": "x" }), "phone_number"),
        (
            json!({ "phone_number": "+20 123", "text": "x" }),
            "phone_number",
        ),
        (
            json!({ "phone_number": 201234567890u64, "text": "x" }),
            "phone_number",
        ),
        (
            json!({ "phone_number": phone, "type": "sticker", "text": "x" }),
            "type",
        ),
        (
            json!({ "phone_number": phone, "type": "Text", "text": "x" }),
            "type",
        ),
        (json!({ "phone_number": phone, "type": "text" }), "text"),
        (json!({ "phone_number": phone }), "text"),
        (json!({ "phone_number": phone, "text": "   " }), "text"),
        (
            json!({ "phone_number": phone, "text": "{Hi|Hello" }),
            "text",
        ),
        (json!({ "phone_number": phone, "text": 5 }), "text"),
        (
            json!({ "phone_number": phone, "text": "x", "media": png }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "text": "x", "caption": "c" }),
            "caption",
        ),
        (json!({ "phone_number": phone, "type": "image" }), "media"),
        (
            json!({ "phone_number": phone, "type": "video", "media": "" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": "not base64!" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": "ftp://example.com/a.png" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": "file:///etc/passwd" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": "data:image/png,%89PNG" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": "https://" }),
            "media",
        ),
        // The content decides: text is not an image, whatever is declared.
        (
            json!({ "phone_number": phone, "type": "image", "media": B64.encode("just text"), "mime_type": "image/png" }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "audio", "media": png }),
            "media",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": png, "caption": "{a|" }),
            "caption",
        ),
        (
            json!({ "phone_number": phone, "type": "document", "media": png, "file_name": "a.pdf" }),
            "mime_type",
        ),
        (
            json!({ "phone_number": phone, "type": "document", "media": png, "mime_type": "pdf", "file_name": "a.pdf" }),
            "mime_type",
        ),
        (
            json!({ "phone_number": phone, "type": "document", "media": png, "mime_type": "application/pdf" }),
            "file_name",
        ),
        (
            json!({ "phone_number": phone, "type": "document", "media": png, "mime_type": "application/pdf", "file_name": " " }),
            "file_name",
        ),
        (
            json!({ "phone_number": phone, "type": "image", "media": png, "ptt": true }),
            "ptt",
        ),
        // E.164: no country code starts with 0.
        (
            json!({ "phone_number": "+0201234567890", "text": "x" }),
            "phone_number",
        ),
        // A template that can expand to nothing.
        (json!({ "phone_number": phone, "text": "{|}" }), "text"),
        (
            json!({ "phone_number": phone, "type": "audio", "media": png, "ptt": "yes" }),
            "ptt",
        ),
        (
            json!({ "phone_number": phone, "text": "x", "instance_id": "abc" }),
            "instance_id",
        ),
        (
            json!({ "phone_number": phone, "text": "x", "phoneNumber": phone }),
            "phoneNumber",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = send(&app, &i, body.clone()).await;
        assert_invalid(status, &reply, field);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    // Several problems at once are all named.
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "12", "type": "document", "media": png }),
    )
    .await;
    for field in ["phone_number", "mime_type", "file_name"] {
        assert_invalid(status, &reply, field);
    }
    // A body that is not JSON.
    let auth = format!("Bearer {}", i.token);
    let (status, reply) = raw(
        &app,
        &[("Authorization", &auth), ("X-Instance-Id", &i.uid)],
        "phone_number=%2B201234567890&text=hi",
    )
    .await;
    assert_invalid(status, &reply, "body");
    assert!(listed(&app, &i.uid).await.is_empty(), "nothing was queued");
}

#[tokio::test]
async fn megamsg_document_without_file_name_is_refused() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let pdf = B64.encode(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "+201234567890", "type": "document", "media": pdf, "mime_type": "application/pdf" }),
    )
    .await;
    assert_invalid(status, &reply, "file_name");
    assert!(listed(&app, &i.uid).await.is_empty());

    // With it, the document goes, under that name.
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "+201234567890", "type": "document", "media": pdf,
                "mime_type": "application/pdf", "file_name": "invoice.pdf", "caption": "Your invoice" }),
    )
    .await;
    let id = assert_sent(status, &reply, "+201234567890", "document");
    let m = app.wait_message_status(&id, "read").await;
    assert_eq!(m["type"], "document");
    assert_eq!(m["text"], "Your invoice");
    assert!(m["mediaId"].as_str().unwrap().starts_with("med_"));
}

#[tokio::test]
async fn megamsg_base64_media_bare_and_as_data_uri() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let to = "+201234567890";
    let bare = B64.encode(png());
    // Line-wrapped and unpadded base64 is common (PHP's chunk_split, MIME encoders).
    let wrapped: String = bare
        .trim_end_matches('=')
        .as_bytes()
        .chunks(16)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let data_uri = format!("data:image/png;base64,{bare}");
    // A data: URI that lies about the type: the content decides.
    let lying = format!("data:application/pdf;base64,{bare}");
    for (media, caption) in [
        (bare.as_str(), Some("bare")),
        (wrapped.as_str(), None),
        (data_uri.as_str(), Some("data uri")),
        (lying.as_str(), None),
    ] {
        let mut body = json!({ "phone_number": to, "type": "image", "media": media });
        if let Some(c) = caption {
            body["caption"] = json!(c);
        }
        let (status, reply) = send(&app, &i, body).await;
        let id = assert_sent(status, &reply, to, "image");
        let m = app.wait_message_status(&id, "read").await;
        assert_eq!(m["type"], "image");
        assert_eq!(m["source"], "megamsg");
        assert_eq!(m["text"].as_str(), caption);
        assert!(m["mediaId"].as_str().unwrap().starts_with("med_"));
    }

    // Audio, and audio with ptt: a voice note (which the sandbox also "plays").
    let ogg = B64.encode(ogg());
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "audio", "media": ogg }),
    )
    .await;
    let id = assert_sent(status, &reply, to, "audio");
    assert_eq!(app.wait_message_status(&id, "read").await["type"], "audio");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "audio", "media": format!("data:audio/ogg; codecs=opus;base64,{ogg}"), "ptt": true }),
    )
    .await;
    let id = assert_sent(status, &reply, to, "audio");
    assert_eq!(
        app.wait_message_status(&id, "played").await["type"],
        "voice"
    );

    // Up to 16 MB inline (more than the server-wide body limit for multipart uploads)…
    let mut big = png();
    big.resize(12 * 1024 * 1024, 0);
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "image", "media": B64.encode(&big) }),
    )
    .await;
    assert_sent(status, &reply, to, "image");
    // …and no more.
    big.resize(16 * 1024 * 1024 + 1, 0);
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "image", "media": B64.encode(&big) }),
    )
    .await;
    assert_invalid(status, &reply, "media");
    assert!(
        reply["message"].as_str().unwrap().contains("16 MB"),
        "{reply}"
    );
}

/// A media server on 127.0.0.1 that counts the requests it gets.
async fn media_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new()
        // Served as text/plain: the header lies, the content is a PNG.
        .route(
            "/cat.png",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], png()) }),
        )
        .route(
            "/go-to-cat",
            get(|| async { (AxumStatus::FOUND, [(header::LOCATION, "/cat.png")]) }),
        )
        .route(
            "/voice.ogg",
            get(|| async { ([(header::CONTENT_TYPE, "audio/ogg")], ogg()) }),
        )
        .route("/big.png", get(|| async { vec![0u8; 5_000] }))
        .route("/missing.png", get(|| async { AxumStatus::NOT_FOUND }))
        .route(
            "/slow.png",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                png()
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

#[tokio::test]
async fn megamsg_media_by_url_is_fetched_from_a_local_server_when_private_urls_are_allowed() {
    let app = TestApp::spawn_with(|c| {
        c.allow_private_urls = true;
        c.media_fetch.max_bytes = 1_000;
        c.media_fetch.timeout_ms = 500;
    })
    .await;
    let i = connected_instance(&app).await;
    let (server, hits) = media_server().await;
    let base = format!("http://{server}");
    let to = "+201234567890";

    for path in ["/cat.png", "/go-to-cat"] {
        let (status, reply) = send(
            &app,
            &i,
            json!({ "phone_number": to, "type": "image", "media": format!("{base}{path}"), "caption": "A cat" }),
        )
        .await;
        let id = assert_sent(status, &reply, to, "image");
        let m = app.wait_message_status(&id, "read").await;
        assert_eq!(m["type"], "image");
        assert_eq!(m["text"], "A cat");
    }
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "audio", "media": format!("{base}/voice.ogg"), "ptt": true }),
    )
    .await;
    let id = assert_sent(status, &reply, to, "audio");
    assert_eq!(
        app.wait_message_status(&id, "played").await["type"],
        "voice"
    );

    // Failures are 422s on `media` that say what went wrong.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (url, says) in [
        (format!("{base}/big.png"), "larger than the 1000-byte limit"),
        (format!("{base}/missing.png"), "HTTP 404"),
        (format!("{base}/slow.png"), "within 500 ms"),
        (format!("http://{closed}/cat.png"), "could not connect"),
        (
            "http://no-such-host.invalid/cat.png".to_owned(),
            "could not be resolved",
        ),
    ] {
        let (status, reply) = send(
            &app,
            &i,
            json!({ "phone_number": to, "type": "image", "media": url }),
        )
        .await;
        assert_invalid(status, &reply, "media");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(says), "{url}: {message}");
    }
    assert!(hits.load(Ordering::SeqCst) >= 6);
    let sent = listed(&app, &i.uid).await;
    assert_eq!(sent.len(), 3, "failed fetches queue nothing");
}

#[tokio::test]
async fn megamsg_refuses_media_urls_to_internal_addresses_by_default() {
    let app = TestApp::spawn().await;
    assert!(!app.config.allow_private_urls);
    let i = connected_instance(&app).await;
    let (server, hits) = media_server().await;
    let port = server.port();
    for url in [
        format!("http://127.0.0.1:{port}/cat.png"),
        format!("http://localhost:{port}/cat.png"),
        format!("http://127.0.0.1:{port}/go-to-cat"),
        format!("http://[::1]:{port}/cat.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/cat.png"),
        // 127.0.0.1 spelled as one decimal number.
        format!("http://2130706433:{port}/cat.png"),
        format!("http://0.0.0.0:{port}/cat.png"),
        "http://10.0.0.1/cat.png".to_owned(),
        "http://192.168.1.1/cat.png".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "https://[fd00::1]/cat.png".to_owned(),
    ] {
        let (status, reply) = send(
            &app,
            &i,
            json!({ "phone_number": "+201234567890", "type": "image", "media": url }),
        )
        .await;
        assert_invalid(status, &reply, "media");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains("does not fetch from"), "{url}: {message}");
        // What a name resolves to inside the server's network is not echoed back.
        for address in ["127.0.0.1", "::1", "10.0.0.1", "192.168", "169.254", "fd00"] {
            assert!(!message.contains(address), "{url}: {message}");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request reached the internal server"
    );
    assert!(listed(&app, &i.uid).await.is_empty());
}

#[tokio::test]
async fn megamsg_instance_not_connected_is_502_and_nothing_is_queued() {
    // Devices that take a minute to link stay "connecting" for this test.
    let app = TestApp::spawn_with(|c| c.sandbox.link_delay_ms = 60_000).await;
    let linking = create_instance(&app, json!({})).await;
    let (status, reply) = send(&app, &linking, text_body()).await;
    let message = assert_error(status, &reply, StatusCode::BAD_GATEWAY);
    assert!(message.contains("not connected"), "{message}");
    // Media is not even fetched or stored for an instance that cannot send.
    let (status, reply) = send(
        &app,
        &linking,
        json!({ "phone_number": "+201234567890", "type": "image", "media": B64.encode(png()) }),
    )
    .await;
    assert_error(status, &reply, StatusCode::BAD_GATEWAY);
    assert!(listed(&app, &linking.uid).await.is_empty());
    let (_, device) = app
        .get(&format!("/v1/developer/devices/{}", linking.uid))
        .await;
    let safety = &device["data"]["safety"];
    assert_eq!(safety["dailyRemaining"], safety["dailyLimit"]);
}

#[tokio::test]
async fn megamsg_instance_whose_session_stopped_is_502_and_nothing_is_queued() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let (status, reply) = send(&app, &i, text_body()).await;
    assert_sent(status, &reply, "+201234567890", "text");
    // WhatsApp drops the session while the instance still exists; it comes back later.
    let uid = wagate_core::DeviceUid::parse(&i.uid).unwrap();
    assert!(
        app.sandbox
            .lose_connection(&uid, std::time::Duration::from_secs(60))
            .await
    );
    app.wait_device_status(&i.uid, "reconnecting").await;
    let (status, reply) = send(&app, &i, text_body()).await;
    let message = assert_error(status, &reply, StatusCode::BAD_GATEWAY);
    assert!(message.contains("not connected"), "{message}");
    assert_eq!(listed(&app, &i.uid).await.len(), 1, "only the first send");
}

#[tokio::test]
async fn megamsg_whatsapp_refusal_is_502_with_the_reason_and_a_hiccup_is_retried() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    // Sandbox numbers ending in 0000 are not on WhatsApp: refused for good.
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "+201230000", "text": "hello?" }),
    )
    .await;
    let message = assert_error(status, &reply, StatusCode::BAD_GATEWAY);
    assert!(message.contains("not on WhatsApp"), "{message}");
    let items = listed(&app, &i.uid).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "failed");

    // Numbers ending in 0500 fail transiently once: the worker retries within the wait.
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "+201230500", "text": "try again" }),
    )
    .await;
    let id = assert_sent(status, &reply, "+201230500", "text");
    let m = app.wait_message_status(&id, "read").await;
    assert_eq!(m["source"], "megamsg");
}

#[tokio::test]
async fn megamsg_not_taken_within_the_wait_is_502_still_queued_and_sent_later() {
    let app = TestApp::spawn_with(|c| c.sending.sync_wait_ms = 300).await;
    // A device that pauses 1.5 s before each send cannot hand over within 300 ms.
    let i = create_instance(
        &app,
        json!({ "pacing": { "minDelayMs": 1500, "maxDelayMs": 1500, "typingIndicator": false } }),
    )
    .await;
    app.wait_device_status(&i.uid, "connected").await;
    let (status, reply) = send(&app, &i, text_body()).await;
    let message = assert_error(status, &reply, StatusCode::BAD_GATEWAY);
    assert_eq!(reply["code"], "still_queued", "{reply}");
    assert!(message.contains("do not resend"), "{message}");
    let id = reply["messageId"].as_str().unwrap();
    assert!(message.contains(id), "{message}");
    // It was not dropped: it goes out on its own.
    let m = app.wait_message_status(id, "read").await;
    assert_eq!(m["source"], "megamsg");
    assert_eq!(listed(&app, &i.uid).await.len(), 1);
}

#[tokio::test]
async fn megamsg_a_budget_that_would_hold_the_message_past_the_wait_is_429_and_queues_nothing() {
    let app = TestApp::spawn().await;
    // One hand-off an hour: the second message would wait far past the 15 s window.
    let i = create_instance(
        &app,
        json!({ "safety": { "dailyLimit": 100, "hourlyLimit": 1, "minuteLimit": 1 } }),
    )
    .await;
    app.wait_device_status(&i.uid, "connected").await;
    let (status, reply) = send(&app, &i, text_body()).await;
    assert_sent(status, &reply, "+201234567890", "text");
    // (Without the check it would wait out the window and answer 502 still_queued.)
    let auth = format!("Bearer {}", i.token);
    let resp = app
        .client
        .post(format!("{}{SEND}", app.base))
        .header("Authorization", &auth)
        .header("X-Instance-Id", &i.uid)
        .json(&text_body())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let reply: Value = resp.json().await.unwrap();
    let message = assert_error(status, &reply, StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("per-hour budget of 1"), "{message}");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(listed(&app, &i.uid).await.len(), 1, "nothing was queued");
}

#[tokio::test]
async fn megamsg_internal_error_is_500_without_internals() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    // The media directory becomes a plain file: storing media fails inside the server
    // (root ignores permissions, so an unwritable directory would not).
    let media_dir = app.config.data_dir.join("media");
    std::fs::remove_dir_all(&media_dir).unwrap();
    std::fs::write(&media_dir, b"not a directory").unwrap();
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": "+201234567890", "type": "image", "media": B64.encode(png()) }),
    )
    .await;
    let message = assert_error(status, &reply, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(message, "Internal server error.");
    let text = reply.to_string();
    assert!(
        !text.contains(media_dir.to_str().unwrap()) && !text.contains("media/"),
        "{text}"
    );
    assert!(listed(&app, &i.uid).await.is_empty());
    // Text still goes: the failure was the media store only.
    let (status, reply) = send(&app, &i, text_body()).await;
    assert_sent(status, &reply, "+201234567890", "text");
}

/// Runs one of the seed's examples, with only the base URL and credentials substituted
/// (and `epilogue` appended to print what the example holds), returning its stdout.
async fn run_example(
    app: &TestApp,
    i: &Instance,
    file: &str,
    program: &str,
    args: &[&str],
    epilogue: &str,
) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let source = std::fs::read_to_string(dir.join(file)).unwrap();
    assert!(source.contains("https://megamsg.app/api") && source.contains("YOUR_TOKEN"));
    let script = source
        .replace("https://megamsg.app/api", &format!("{}/api", app.base))
        .replace("YOUR_TOKEN", &i.token)
        .replace("YOUR_INSTANCE_ID", &i.uid)
        + epilogue;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(file);
    std::fs::write(&path, script).unwrap();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .arg(&path)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy");
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{file} timed out"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{file}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn megamsg_the_seed_examples_run_unchanged() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let hello = "Hello from MegaMsg! 🚀";
    let runs = [
        ("megamsg_send.sh", "sh", vec![], ""),
        (
            "megamsg_send.mjs",
            "node",
            vec![],
            "\nconsole.log(JSON.stringify({ status: res.status, data }));\n",
        ),
        (
            "megamsg_send.py",
            "python3",
            vec![],
            "\nimport json\nprint(json.dumps({'status': resp.status_code, 'data': data}))\n",
        ),
    ];
    for (file, program, args, epilogue) in runs {
        let out = run_example(&app, &i, file, program, &args, epilogue).await;
        let printed: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{file} printed {out}"));
        // curl prints the reply itself; the others print {status, data}.
        let (status, data) = match printed.get("data") {
            Some(d) => (printed["status"].as_u64(), d.clone()),
            None => (None, printed.clone()),
        };
        if let Some(s) = status {
            assert_eq!(s, 200, "{file}: {printed}");
        }
        // The seed's success reply (plus the message id).
        assert_eq!(data["ok"], true, "{file}: {data}");
        assert_eq!(data["to"], "+201234567890", "{file}: {data}");
        assert_eq!(data["type"], "text", "{file}: {data}");
        let id = data["messageId"].as_str().unwrap();
        let m = app.wait_message_status(id, "read").await;
        assert_eq!(m["text"], hello, "{file}");
        assert_eq!(m["source"], "megamsg");
    }
    assert_eq!(listed(&app, &i.uid).await.len(), 3);
}

#[tokio::test]
async fn megamsg_sends_locations_contacts_polls_and_replies() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let to = "+201234567890";
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "location", "latitude": 30.0444, "longitude": 31.2357,
                "name": "Shop", "address": "Tahrir" }),
    )
    .await;
    let loc = assert_sent(status, &reply, to, "location");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "contact", "contacts": [{ "name": "Ana", "phone": "+201001234567" }],
                "reply_to": loc }),
    )
    .await;
    let card = assert_sent(status, &reply, to, "contact");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "poll", "question": "Lunch?", "options": ["a", "b", "c"],
                "multiple_answers": true }),
    )
    .await;
    let poll = assert_sent(status, &reply, to, "poll");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "text": "hi @201234567890", "mentions": [to] }),
    )
    .await;
    let text = assert_sent(status, &reply, to, "text");

    let read = app.wait_message_status(&loc, "read").await;
    assert_eq!(read["source"], "megamsg");
    assert_eq!(read["location"]["name"], "Shop");
    let read = app.wait_message_status(&card, "read").await;
    assert_eq!(read["contacts"][0]["phone"], "+201001234567");
    assert_eq!(read["replyTo"]["fromMe"], true);
    let read = app.wait_message_status(&poll, "read").await;
    assert_eq!(read["poll"]["multipleAnswers"], true);
    assert_eq!(read["poll"]["options"], json!(["a", "b", "c"]));
    let read = app.wait_message_status(&text, "read").await;
    assert_eq!(read["mentions"], json!([to]));

    for (body, field) in [
        (
            json!({ "phone_number": to, "type": "poll", "question": "q", "options": ["one"] }),
            "options",
        ),
        (
            json!({ "phone_number": to, "type": "location", "latitude": 0 }),
            "longitude",
        ),
        (
            json!({ "phone_number": to, "type": "location", "latitude": 0, "longitude": 0, "media": "aGk=" }),
            "media",
        ),
        (
            json!({ "phone_number": to, "text": "hi", "latitude": 1 }),
            "latitude",
        ),
        (json!({ "phone_number": to, "type": "contact" }), "contacts"),
        (
            json!({ "phone_number": to, "text": "hi", "reply_to": "3EB0UNKNOWN" }),
            "reply_to",
        ),
    ] {
        let (status, reply) = send(&app, &i, body).await;
        assert_invalid(status, &reply, field);
    }
}

#[tokio::test]
async fn megamsg_reacts_to_a_message_of_the_instance() {
    let app = TestApp::spawn().await;
    let i = connected_instance(&app).await;
    let to = "+201234567890";
    let (status, reply) = send(&app, &i, json!({ "phone_number": to, "text": "hi" })).await;
    let id = assert_sent(status, &reply, to, "text");
    let (status, reply) = send(
        &app,
        &i,
        json!({ "phone_number": to, "type": "reaction", "message_id": id, "emoji": "❤️" }),
    )
    .await;
    let reaction = assert_sent(status, &reply, to, "reaction");
    let read = app.wait_message_status(&reaction, "delivered").await;
    assert_eq!(read["emoji"], "❤️");
    assert_eq!(read["target"]["fromMe"], true);
    let other = connected_instance(&app).await;
    for (instance, body, field) in [
        (
            &i,
            json!({ "phone_number": to, "type": "reaction", "message_id": id }),
            "emoji",
        ),
        (
            &i,
            json!({ "phone_number": to, "type": "reaction", "emoji": "👍" }),
            "message_id",
        ),
        (
            &i,
            json!({ "phone_number": to, "type": "reaction", "message_id": "nope", "emoji": "👍" }),
            "message_id",
        ),
        (
            &i,
            json!({ "phone_number": to, "type": "reaction", "message_id": id, "emoji": "yes" }),
            "emoji",
        ),
        (
            &i,
            json!({ "phone_number": "+201234567891", "type": "reaction", "message_id": id, "emoji": "👍" }),
            "phone_number",
        ),
        // Another instance's message is not this one's to react to.
        (
            &other,
            json!({ "phone_number": to, "type": "reaction", "message_id": id, "emoji": "👍" }),
            "message_id",
        ),
    ] {
        let (status, reply) = send(&app, instance, body).await;
        assert_invalid(status, &reply, field);
    }
}
