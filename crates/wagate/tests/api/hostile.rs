//! Input chosen by someone else: a stranger who messages a linked number (the media's
//! declared type and name, their push name) and API callers who reuse keys, send
//! templates that expand to nothing or numbers that are not E.164. Each case is what an
//! attacker or a careless client would actually send.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wagate::http::media_link::MediaLinkKey;

const PAGE: &[u8] = b"<!DOCTYPE html><html><body><script>fetch('/v1/developer/keys',{method:'POST'})</script></body></html>";

async fn inbound_media(app: &TestApp, uid: &str, body: Value) -> Value {
    let mut body = body;
    body["deviceUid"] = json!(uid);
    body["from"] = json!("+201001234567");
    let (status, reply) = app.post("/v1/developer/sandbox/inbound", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let pid = reply["data"]["providerMessageId"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the inbound message", || async {
        let (_, list) = app
            .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
            .await;
        list["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["providerMessageId"] == pid.as_str())
            .cloned()
    })
    .await
}

fn link(app: &TestApp, media_id: &str, expires: i64) -> String {
    MediaLinkKey::load_or_create(&app.config.data_dir)
        .unwrap()
        .link(&app.base, media_id, expires)
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn assert_sandboxed(r: &reqwest::Response) {
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(r, "content-security-policy"),
        "sandbox; default-src 'none'"
    );
}

#[tokio::test]
async fn a_page_a_stranger_sends_as_an_image_is_stored_as_a_page_and_only_downloads() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("shop").await;
    let uid = device["deviceUid"].as_str().unwrap();
    // Uploaded as an image by name and type; the sender then declares it an image too.
    let (status, up) = app.upload(PAGE.to_vec(), "cat.png", "image/png").await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    assert_eq!(up["data"]["mimeType"], "text/html", "typed from its bytes");
    let item = inbound_media(
        &app,
        uid,
        json!({
            "text": "look",
            "mediaId": up["data"]["mediaId"],
            "mimeType": "image/png",
            "fileName": "\"cat\r\nSet-Cookie: x=1\u{202e}gnp.html",
            "fromName": "Ana\u{202e}nimda",
        }),
    )
    .await;
    assert_eq!(item["fromName"], "Ananimda", "bidi override dropped");
    let media_id = item["mediaId"].as_str().unwrap();

    let r = reqwest::get(link(&app, media_id, in_an_hour()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "text/html");
    assert_sandboxed(&r);
    let disposition = header(&r, "content-disposition");
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        !disposition.contains('\r') && !disposition.contains('\n'),
        "{disposition}"
    );
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(r.bytes().await.unwrap().as_ref(), PAGE);

    // A real image renders inline, still sandboxed, whatever the sender declared.
    let (_, up) = app.upload(png(), "p.png", "text/html").await;
    assert_eq!(up["data"]["mimeType"], "image/png");
    let item = inbound_media(
        &app,
        uid,
        json!({ "mediaId": up["data"]["mediaId"], "mimeType": "text/html" }),
    )
    .await;
    let r = reqwest::get(link(&app, item["mediaId"].as_str().unwrap(), in_an_hour()))
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), "image/png");
    assert!(header(&r, "content-disposition").starts_with("inline"));
    assert_sandboxed(&r);

    // SVG can carry script: it is not served as an image.
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let (_, up) = app.upload(svg.to_vec(), "x.svg", "image/svg+xml").await;
    let item = inbound_media(
        &app,
        uid,
        json!({ "mediaId": up["data"]["mediaId"], "mimeType": "image/svg+xml" }),
    )
    .await;
    let r = reqwest::get(link(&app, item["mediaId"].as_str().unwrap(), in_an_hour()))
        .await
        .unwrap();
    assert_ne!(header(&r, "content-type"), "image/svg+xml");
    assert!(header(&r, "content-disposition").starts_with("attachment"));
}

#[tokio::test]
async fn a_correctly_signed_but_expired_link_is_refused_with_the_same_headers() {
    let app = TestApp::spawn().await;
    let (_, up) = app.upload(png(), "p.png", "image/png").await;
    let media_id = up["data"]["mediaId"].as_str().unwrap();
    let expired = link(&app, media_id, chrono::Utc::now().timestamp() - 1);
    let r = reqwest::get(&expired).await.unwrap();
    let status = r.status();
    assert_sandboxed(&r);
    let body: Value = r.json().await.unwrap();
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    // The same link a moment in the future works: only the expiry was wrong.
    let r = reqwest::get(link(&app, media_id, in_an_hour()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A bad query is a JSON error too, naming the parameter.
    let r = reqwest::get(format!(
        "{}/media/{media_id}?expires=soon&signature=x",
        app.base
    ))
    .await
    .unwrap();
    let status = r.status();
    assert_sandboxed(&r);
    let body: Value = r.json().await.unwrap();
    assert_invalid(status, &body, "expires");
}

#[tokio::test]
async fn media_links_use_the_separate_media_origin_when_configured() {
    let app = TestApp::spawn_with(|c| {
        c.media_public_url = Some("https://media.example.test/".into());
    })
    .await;
    let device = app.connected_device("shop").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let mut events = app
        .client
        .get(format!("{}/v1/developer/events?deviceUid={uid}", app.base))
        .header("X-API-Key", &app.key)
        .send()
        .await
        .unwrap();
    let (_, up) = app.upload(png(), "p.png", "image/png").await;
    inbound_media(
        &app,
        uid,
        json!({ "mediaId": up["data"]["mediaId"], "text": "pic" }),
    )
    .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("mediaUrl") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("an event with a media link")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains("\"mediaUrl\":\"https://media.example.test/media/med_"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_client_message_id_reused_for_another_request_is_refused_naming_the_original() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("shop").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let send = |body: Value| {
        let mut body = body;
        body["deviceUid"] = json!(uid);
        body["clientMessageId"] = json!("order-17");
        app.post("/v1/developer/messages/send", body)
    };
    let (status, first) = send(json!({ "to": "+201001234567", "text": "{Hi|Hello} there" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let original = first["data"]["messageId"].as_str().unwrap().to_owned();
    // The same request again (spintax may pick another variant): the original.
    let (status, again) = send(json!({ "to": "+201001234567", "text": "{Hi|Hello} there" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["data"]["messageId"], original.as_str());
    assert_eq!(again["data"]["deduplicated"], true);
    // Another recipient, another text: refused, naming the original.
    for body in [
        json!({ "to": "+201001234568", "text": "{Hi|Hello} there" }),
        json!({ "to": "+201001234567", "text": "Refund approved" }),
    ] {
        let (status, reply) = send(body).await;
        assert_invalid(status, &reply, "clientMessageId");
        assert_eq!(reply["code"], "idempotency_key_reused");
        assert!(
            reply["message"].as_str().unwrap().contains(&original),
            "{reply}"
        );
    }
    // Another endpoint with the same key: refused too.
    let (_, up) = app.upload(png(), "p.png", "image/png").await;
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send-media",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": up["data"]["mediaId"], "clientMessageId": "order-17" }),
        )
        .await;
    assert_invalid(status, &reply, "clientMessageId");
    // Nothing else was queued.
    let (_, list) = app
        .get(&format!("/v1/developer/messages?deviceUid={uid}"))
        .await;
    assert_eq!(list["data"]["total"], 1, "{list}");
}

#[tokio::test]
async fn texts_that_expand_to_nothing_and_numbers_that_are_not_e164_are_422() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("shop").await;
    let uid = device["deviceUid"].as_str().unwrap();
    for text in ["{}", "{|}", "{Hi|}", " { | } "] {
        let (status, reply) = app
            .post(
                "/v1/developer/messages/send",
                json!({ "deviceUid": uid, "to": "+201001234567", "text": text }),
            )
            .await;
        assert_invalid(status, &reply, "text");
    }
    for to in ["+0201001234567", "0201001234567"] {
        let (status, reply) = app
            .post(
                "/v1/developer/messages/send",
                json!({ "deviceUid": uid, "to": to, "text": "hi" }),
            )
            .await;
        assert_invalid(status, &reply, "to");
    }
}

#[tokio::test]
async fn query_errors_name_the_parameter_and_bodiless_endpoints_refuse_fields() {
    let app = TestApp::spawn().await;
    let (status, reply) = app.get("/v1/developer/messages?limit=ten").await;
    assert_invalid(status, &reply, "limit");
    let (status, reply) = app.get("/v1/developer/inbound?page=-1").await;
    assert_invalid(status, &reply, "page");
    let (status, reply) = app
        .post("/v1/developer/keys", json!({ "name": "ci" }))
        .await;
    assert_invalid(status, &reply, "name");
    let (status, reply) = app.post("/v1/developer/keys", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let (status, reply) = app
        .post(
            "/v1/developer/webhooks/history/1/redeliver",
            json!({ "force": true }),
        )
        .await;
    assert_invalid(status, &reply, "force");
}

#[tokio::test]
async fn names_with_control_or_direction_characters_are_refused() {
    let app = TestApp::spawn().await;
    for name in ["Front\u{202e}ksed", "line\nbreak", "nul\u{0}"] {
        let (status, reply) = app
            .post(
                "/v1/developer/devices",
                json!({ "name": name, "engine": "sandbox" }),
            )
            .await;
        assert_invalid(status, &reply, "name");
    }
}
