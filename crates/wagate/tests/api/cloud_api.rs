//! Cloud API devices end to end, against a fake Graph API (a real HTTP server answering
//! like Meta): credentials sealed and never shown, the webhook handshake and signature,
//! every send kind in Meta's shape, statuses in any order, inbound messages with media,
//! Meta's refusals and throttling, an expired token replaced with PATCH, templates, and
//! idempotency across a restart.

use crate::structured::accepted;
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use wagate_engine_tests::graph::{self as fake_graph, FakeGraph, OUTSIDE_24H, THROTTLED_ONCE};

const PNID: &str = "106540352242922";
const TOKEN: &str = "EAAG-live-token-1";
const SECRET: &str = "app-secret-1";
const VERIFY: &str = "verify-me-please";
const WABA: &str = "102290129340398";
const CUSTOMER: &str = "+201001234567";

async fn app_and_meta() -> (TestApp, Arc<FakeGraph>) {
    let fake = FakeGraph::start().await;
    fake.add_number(PNID, TOKEN, "+1 555-000-1111");
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|c| c.cloud_api.graph_url = base).await;
    (app, fake)
}

fn credentials() -> Value {
    json!({ "phoneNumberId": PNID, "accessToken": TOKEN, "appSecret": SECRET,
            "verifyToken": VERIFY, "businessAccountId": WABA })
}

/// Creates a Cloud API device and waits until Meta took its token: its uid and data.
async fn cloud_device(app: &TestApp) -> (String, Value) {
    let (uid, device, _) = cloud_instance(app).await;
    (uid, device)
}

/// [`cloud_device`], with its MegaMsg instance token.
async fn cloud_instance(app: &TestApp) -> (String, Value, String) {
    let (status, body) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "Official", "engine": "cloud-api", "cloudApi": credentials() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
    let token = body["data"]["instanceToken"].as_str().unwrap().to_owned();
    let device = app.wait_device_status(&uid, "connected").await;
    (uid, device, token)
}

fn webhook_url(app: &TestApp, uid: &str) -> String {
    format!("{}/webhooks/cloud-api/{uid}", app.base)
}

#[tokio::test]
async fn a_cloud_device_keeps_its_secrets_sealed_and_shows_where_meta_must_call() {
    let (app, fake) = app_and_meta().await;
    let (uid, device) = cloud_device(&app).await;
    assert_eq!(device["engine"], "cloud-api");
    assert_eq!(device["phoneNumber"], "+15550001111", "Meta's number");
    assert_eq!(device["pushName"], "Corner Shop");
    assert_eq!(device["cloudApi"]["phoneNumberId"], PNID);
    assert_eq!(device["cloudApi"]["businessAccountId"], WABA);
    assert_eq!(device["cloudApi"]["webhookUrl"], webhook_url(&app, &uid));
    // The token was proven with Meta, with the bearer header.
    let seen = fake.seen();
    assert!(
        seen.iter().any(|s| s.path == format!("/{PNID}")
            && s.auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "{seen:?}"
    );
    // The verify token is shown, to paste into Meta's app; the token and the app secret
    // never are, and nothing is in the database file in the clear.
    assert_eq!(device["cloudApi"]["verifyToken"], VERIFY);
    let (_, list) = app.get("/v1/developer/devices").await;
    for shown in [device.to_string(), list.to_string()] {
        for secret in [TOKEN, SECRET] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
    let db = std::fs::read(app.config.data_dir.join("wagate.db")).unwrap();
    let wal = std::fs::read(app.config.data_dir.join("wagate.db-wal")).unwrap_or_default();
    for secret in [TOKEN, SECRET, VERIFY] {
        for file in [&db, &wal] {
            assert!(
                !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} stored in the clear"
            );
        }
    }

    // What a create needs, refused field by field.
    let (s, b) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "x", "engine": "cloud-api" }),
        )
        .await;
    assert_invalid(s, &b, "cloudApi");
    let (s, b) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "x", "engine": "sandbox", "cloudApi": credentials() }),
        )
        .await;
    assert_invalid(s, &b, "cloudApi");
    let mut bad = credentials();
    bad["phoneNumberId"] = json!("+1 555 000 1111");
    let (s, b) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "x", "engine": "cloud-api", "cloudApi": bad }),
        )
        .await;
    assert_invalid(s, &b, "cloudApi.phoneNumberId");
    let mut bad = credentials();
    bad["accessToken"] = json!("two words");
    let (s, b) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "x", "engine": "cloud-api", "cloudApi": bad }),
        )
        .await;
    assert_invalid(s, &b, "cloudApi.accessToken");
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/v1/developer/devices/{uid}"),
            Some(json!({ "cloudApi": {} })),
        )
        .await;
    assert_invalid(s, &b, "cloudApi");
}

#[tokio::test]
async fn the_webhook_handshake_and_signatures_guard_the_device() {
    let (app, fake) = app_and_meta().await;
    let (uid, _) = cloud_device(&app).await;
    let url = webhook_url(&app, &uid);
    let client = reqwest::Client::new();
    let handshake = |token: &str, mode: &str| {
        client
            .get(&url)
            .query(&[
                ("hub.mode", mode),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
    };
    let ok = handshake(VERIFY, "subscribe").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = handshake("guess", "subscribe").await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(
        handshake(VERIFY, "unsubscribe").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let unknown = client
        .get(format!("{}/webhooks/cloud-api/dev_nosuchdevice", app.base))
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY),
            ("hub.challenge", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // A delivery signed with another secret, unsigned, or not JSON: refused, nothing kept.
    let text = fake_graph::delivery(
        PNID,
        json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "201001234567" }],
                "messages": [{ "from": "201001234567", "id": "wamid.IN-forged", "timestamp": "1700000000",
                               "type": "text", "text": { "body": "forged" } }] }),
    );
    let (s, b) = fake.deliver(&url, "not-the-secret", &text).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, _) = fake.post_raw(&url, text.to_string(), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = fake
        .post_raw(&url, "{\"object\":".into(), Some("sha256=00"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
        .await;
    assert_eq!(inbox["data"]["total"], 0, "{inbox}");
    // Another engine's device has no webhook here.
    let sandbox = app.connected_device("sandbox").await;
    let other = webhook_url(&app, sandbox["deviceUid"].as_str().unwrap());
    let (s, _) = fake.deliver(&other, SECRET, &text).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_send_kind_reaches_meta_in_its_shape_and_statuses_arrive_in_any_order() {
    let (app, fake) = app_and_meta().await;
    let (uid, _) = cloud_device(&app).await;
    let url = webhook_url(&app, &uid);

    let text = app.send_text(&uid, CUSTOMER, "Order 42 is ready").await;
    let sent = app
        .wait_message_status(text["messageId"].as_str().unwrap(), "sent")
        .await;
    let wamid = sent["providerMessageId"].as_str().unwrap().to_owned();
    assert!(wamid.starts_with("wamid.FAKE"), "Meta's id: {sent}");
    assert_eq!(
        fake.sends()[0],
        json!({ "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "201001234567", "type": "text",
                "text": { "body": "Order 42 is ready", "preview_url": false } })
    );
    // Read overtakes delivered; the message ends read and stays read.
    for step in ["read", "delivered", "sent"] {
        let (s, b) = fake
            .deliver(
                &url,
                SECRET,
                &fake_graph::status(PNID, &wamid, step, "201001234567"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let read = app
        .wait_message_status(text["messageId"].as_str().unwrap(), "read")
        .await;
    let steps: Vec<&str> = read["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    // A read implies the delivery (recorded with it); the late `delivered` and `sent`
    // change nothing.
    assert_eq!(steps, ["queued", "sent", "delivered", "read"], "{read}");

    // A picture: uploaded to Meta first, then sent by the id Meta gave it.
    let (s, up) = app.upload(png(), "menu.png", "image/png").await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    let image = accepted(
        &app,
        "/v1/developer/messages/send-media",
        json!({ "deviceUid": uid, "to": CUSTOMER, "mediaId": up["data"]["mediaId"], "caption": "Menu" }),
    )
    .await;
    app.wait_message_status(image["messageId"].as_str().unwrap(), "sent")
        .await;
    let upload = fake
        .seen()
        .into_iter()
        .find(|s| s.path == format!("/{PNID}/media"))
        .expect("uploaded");
    assert!(
        upload.body.windows(8).any(|w| w == &png()[..8]),
        "the file's bytes"
    );
    let body = fake.sends().last().cloned().unwrap();
    assert_eq!(body["type"], "image");
    assert!(
        body["image"]["id"].as_str().unwrap().starts_with("MEDIA"),
        "{body}"
    );
    assert_eq!(body["image"]["caption"], "Menu");

    // A voice note: a WAV uploaded, Ogg/Opus at Meta's, sent as audio.
    let wav = wagate_audio::testing::wav(16_000, 1, 1.5);
    let (s, up) = app.upload(wav, "note.wav", "audio/wav").await;
    assert_eq!(s, StatusCode::CREATED, "{up}");
    let voice = accepted(
        &app,
        "/v1/developer/messages/send-voice",
        json!({ "deviceUid": uid, "to": CUSTOMER, "mediaId": up["data"]["mediaId"] }),
    )
    .await;
    app.wait_message_status(voice["messageId"].as_str().unwrap(), "sent")
        .await;
    let upload = fake
        .seen()
        .into_iter()
        .filter(|s| s.path == format!("/{PNID}/media"))
        .last()
        .unwrap();
    let raw = String::from_utf8_lossy(&upload.body);
    assert!(
        raw.contains("audio/ogg; codecs=opus"),
        "transcoded for Meta"
    );
    assert!(
        upload.body.windows(4).any(|w| w == b"OggS"),
        "an Ogg stream"
    );
    assert_eq!(fake.sends().last().unwrap()["type"], "audio");

    let loc = accepted(
        &app,
        "/v1/developer/messages/send-location",
        json!({ "deviceUid": uid, "to": CUSTOMER, "latitude": 30.0444, "longitude": 31.2357,
                "name": "Our shop", "address": "12 Tahrir Sq" }),
    )
    .await;
    app.wait_message_status(loc["messageId"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(
        fake.sends().last().unwrap()["location"],
        json!({ "latitude": 30.0444, "longitude": 31.2357, "name": "Our shop", "address": "12 Tahrir Sq" })
    );
    let card = accepted(
        &app,
        "/v1/developer/messages/send-contact",
        json!({ "deviceUid": uid, "to": CUSTOMER, "contacts": [{ "name": "Front desk", "phone": "+201009998877" }] }),
    )
    .await;
    app.wait_message_status(card["messageId"].as_str().unwrap(), "sent")
        .await;
    let sends = fake.sends();
    let contacts = &sends.last().unwrap()["contacts"];
    assert_eq!(contacts[0]["name"]["formatted_name"], "Front desk");
    assert_eq!(contacts[0]["phones"][0]["wa_id"], "201009998877");

    let template = accepted(
        &app,
        "/v1/developer/messages/send-template",
        json!({ "deviceUid": uid, "to": CUSTOMER, "name": "order_ready", "language": "en_US",
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] }),
    )
    .await;
    assert_eq!(template["type"], "template");
    assert_eq!(template["template"]["name"], "order_ready");
    app.wait_message_status(template["messageId"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(
        fake.sends().last().unwrap()["template"],
        json!({ "name": "order_ready", "language": { "code": "en_US" },
                "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] })
    );

    let (s, reaction) = app
        .post(
            &format!(
                "/v1/developer/messages/{}/reaction",
                text["messageId"].as_str().unwrap()
            ),
            json!({ "emoji": "👍" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{reaction}");
    app.wait_message_status(reaction["data"]["messageId"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(
        fake.sends().last().unwrap()["reaction"],
        json!({ "message_id": wamid, "emoji": "👍" })
    );

    // What the Cloud API cannot do is refused before anything is stored.
    let (s, b) = app
        .post(
            "/v1/developer/messages/send-poll",
            json!({ "deviceUid": uid, "to": CUSTOMER, "question": "Tea?", "options": ["Yes", "No"] }),
        )
        .await;
    assert_invalid(s, &b, "deviceUid");
    assert!(b["message"].as_str().unwrap().contains("Cloud API"), "{b}");
    let (s, b) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "groupId": "120363025246125888@g.us", "text": "hi" }),
        )
        .await;
    assert_invalid(s, &b, "groupId");
    let (s, b) = app
        .post(
            "/v1/developer/messages/check-whatsapp",
            json!({ "deviceUid": uid, "numbers": [CUSTOMER] }),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT);
    // And templates are refused on a linked device.
    let (s, b) = app
        .call(
            Method::POST,
            "/v1/developer/devices",
            Some(json!({ "name": "web", "engine": "whatsapp-web" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            "/v1/developer/messages/send-template",
            json!({ "deviceUid": b["data"]["deviceUid"], "to": CUSTOMER, "name": "order_ready", "language": "en_US" }),
        )
        .await;
    assert_invalid(s, &b, "deviceUid");
    assert_eq!(fake.sends().len(), 7, "nothing refused reached Meta");
}

#[tokio::test]
async fn inbound_messages_are_committed_once_with_their_media() {
    let (app, fake) = app_and_meta().await;
    let (uid, _) = cloud_device(&app).await;
    let url = webhook_url(&app, &uid);
    fake.add_media("MEDIA-IN-7", &png(), "image/png");
    let body = fake_graph::delivery(
        PNID,
        json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "201001234567" }],
                "messages": [
                    { "from": "201001234567", "id": "wamid.IN1", "timestamp": "1700000000",
                      "type": "text", "text": { "body": "Is my order ready?" } },
                    { "from": "201001234567", "id": "wamid.IN2", "timestamp": "1700000001",
                      "type": "image", "image": { "id": "MEDIA-IN-7", "mime_type": "image/png",
                                                  "caption": "this one" } } ] }),
    );
    let (s, b) = fake.deliver(&url, SECRET, &body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Meta delivers again (it does not promise once): still one of each.
    let (s, _) = fake.deliver(&url, SECRET, &body).await;
    assert_eq!(s, StatusCode::OK);
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
        .await;
    assert_eq!(inbox["data"]["total"], 2, "{inbox}");
    let items = inbox["data"]["items"].as_array().unwrap();
    let text = items
        .iter()
        .find(|m| m["providerMessageId"] == "wamid.IN1")
        .unwrap();
    assert_eq!(text["from"], CUSTOMER);
    assert_eq!(text["fromName"], "Ana");
    assert_eq!(text["text"], "Is my order ready?");
    let image = items
        .iter()
        .find(|m| m["providerMessageId"] == "wamid.IN2")
        .unwrap();
    assert_eq!(image["type"], "image");
    assert_eq!(image["text"], "this one");
    let media = image["mediaId"].as_str().expect("downloaded");
    let media = wagate_core::MediaId::parse(media).unwrap();
    let stored = app.running().services.blobs.get(&media).await.unwrap();
    assert_eq!(stored.to_vec(), png(), "Meta's file, kept");
    assert!(
        fake.seen().iter().any(|s| s.path == "/cdn/MEDIA-IN-7"
            && s.auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "fetched from Meta with the token"
    );
}

#[tokio::test]
async fn metas_refusals_fail_throttling_waits_and_an_expired_token_is_replaced() {
    let (app, fake) = app_and_meta().await;
    let (uid, _) = cloud_device(&app).await;
    let url = webhook_url(&app, &uid);

    let late = app
        .send_text(&uid, OUTSIDE_24H, "Your order is ready")
        .await;
    let failed = app
        .wait_message_status(late["messageId"].as_str().unwrap(), "failed")
        .await;
    let reason = failed["failureReason"].as_str().unwrap();
    assert!(reason.contains("131047"), "{reason}");

    let throttled = app.send_text(&uid, THROTTLED_ONCE, "One moment").await;
    app.wait_message_status(throttled["messageId"].as_str().unwrap(), "sent")
        .await;

    // Accepted by Meta, then reported undeliverable by a status webhook.
    let doomed = app.send_text(&uid, CUSTOMER, "Hello again").await;
    let sent = app
        .wait_message_status(doomed["messageId"].as_str().unwrap(), "sent")
        .await;
    let wamid = sent["providerMessageId"].as_str().unwrap();
    let mut failure = fake_graph::status(PNID, wamid, "failed", "201001234567");
    failure["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"] = json!([{
        "code": 131026, "title": "Message undeliverable" }]);
    let (s, b) = fake.deliver(&url, SECRET, &failure).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let failed = app
        .wait_message_status(doomed["messageId"].as_str().unwrap(), "failed")
        .await;
    assert!(
        failed["failureReason"].as_str().unwrap().contains("131026"),
        "{failed}"
    );

    // The token expires: the device fails with Meta's words, and sends wait.
    fake.expire(TOKEN);
    let waiting = app.send_text(&uid, CUSTOMER, "Are you there?").await;
    let device = app.wait_device_status(&uid, "failed").await;
    assert!(
        device["statusReason"].as_str().unwrap().contains("190"),
        "{device}"
    );
    let (_, m) = app
        .get(&format!(
            "/v1/developer/messages/{}",
            waiting["messageId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(m["data"]["status"], "queued", "{m}");

    // A new token: the device reconnects with it and the message goes.
    fake.add_number(PNID, "EAAG-live-token-2", "+1 555-000-1111");
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/v1/developer/devices/{uid}"),
            Some(json!({ "cloudApi": { "accessToken": "EAAG-live-token-2" } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!b.to_string().contains("EAAG-live-token-2"));
    app.wait_device_status(&uid, "connected").await;
    app.wait_message_status(waiting["messageId"].as_str().unwrap(), "sent")
        .await;
    let last = fake
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.path.ends_with("/messages"))
        .unwrap();
    assert_eq!(last.auth.as_deref(), Some("Bearer EAAG-live-token-2"));
    // The webhook still checks with the unchanged app secret.
    let (s, _) = fake
        .deliver(
            &url,
            SECRET,
            &fake_graph::status(PNID, "wamid.unknown", "delivered", "1"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn templates_are_listed_from_meta_and_sends_stay_idempotent_across_a_restart() {
    let (mut app, fake) = app_and_meta().await;
    let (uid, _, instance_token) = cloud_instance(&app).await;

    // The MegaMsg dialect sends through the same device.
    let mega = app
        .client
        .post(format!("{}/api/whatsapp/messages/send", app.base))
        .header("Authorization", format!("Bearer {instance_token}"))
        .header("X-Instance-Id", &uid)
        .json(&json!({ "phone_number": CUSTOMER, "type": "text", "text": "From MegaMsg" }))
        .send()
        .await
        .unwrap();
    assert_eq!(mega.status(), StatusCode::OK);
    let mega: Value = mega.json().await.unwrap();
    assert_eq!(mega["ok"], true, "{mega}");
    app.wait_message_status(mega["messageId"].as_str().unwrap(), "sent")
        .await;
    assert_eq!(fake.sends().last().unwrap()["text"]["body"], "From MegaMsg");
    let template = |name: &str| {
        json!({ "name": name, "language": "en_US", "status": "APPROVED", "category": "UTILITY",
                "components": [{ "type": "BODY", "text": "Order {{1}} is ready" }], "id": "1" })
    };
    fake.set_templates(
        WABA,
        vec![
            template("order_ready"),
            template("order_late"),
            template("welcome"),
        ],
    );
    let (s, list) = app
        .get(&format!("/v1/developer/devices/{uid}/templates"))
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["order_ready", "order_late", "welcome"],
        "every page"
    );
    assert_eq!(list["data"][0]["category"], "UTILITY");
    assert_eq!(list["data"][0]["components"][0]["type"], "BODY");
    let sandbox = app.connected_device("sandbox").await;
    let (s, b) = app
        .get(&format!(
            "/v1/developer/devices/{}/templates",
            sandbox["deviceUid"].as_str().unwrap()
        ))
        .await;
    assert_invalid(s, &b, "deviceUid");

    let send = json!({ "deviceUid": uid, "to": CUSTOMER, "text": "Once only",
                       "clientMessageId": "order-42-ready" });
    let (s, first) = app.post("/v1/developer/messages/send", send.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    app.wait_message_status(first["data"]["messageId"].as_str().unwrap(), "sent")
        .await;
    app.restart().await;
    app.wait_device_status(&uid, "connected").await;
    let (s, again) = app.post("/v1/developer/messages/send", send).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["data"]["deduplicated"], true);
    assert_eq!(again["data"]["messageId"], first["data"]["messageId"]);
    let once = fake
        .sends()
        .iter()
        .filter(|b| b["text"]["body"] == "Once only")
        .count();
    assert_eq!(once, 1);
    // The credentials were opened again after the restart (the key is in the data
    // directory), and a business account id can be taken away only by replacing it.
    let (s, b) = app
        .call(
            Method::PATCH,
            &format!("/v1/developer/devices/{uid}"),
            Some(json!({ "cloudApi": { "businessAccountId": "12345" } })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["cloudApi"]["businessAccountId"], "12345");
    app.wait_device_status(&uid, "connected").await;
    let (s, b) = app
        .get(&format!("/v1/developer/devices/{uid}/templates"))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT);
}

/// Meta posts to whichever node its load balancer picks: a delivery reaching a node that
/// does not drive the device is forwarded to the one that does, and the handshake is
/// answered anywhere.
#[tokio::test]
async fn a_webhook_reaching_the_other_node_is_forwarded_to_the_device() {
    let fake = FakeGraph::start().await;
    fake.add_number(PNID, TOKEN, "+1 555-000-1111");
    let base = fake.base.clone();
    let a = TestApp::spawn_with(|c| {
        c.node_id = Some("node-a".into());
        c.cluster.lease_ms = 900;
        c.cloud_api.graph_url = base;
    })
    .await;
    let (uid, _) = cloud_device(&a).await;
    let b = a.join_as("node-b").await;
    // Wherever the device settles, the other node gets Meta's calls.
    let driver = eventually("the device driven and connected", || async {
        let (_, d) = a.get(&format!("/v1/developer/devices/{uid}")).await;
        let node = d["data"]["node"].as_str()?.to_owned();
        (d["data"]["status"] == "connected").then_some(node)
    })
    .await;
    let other = if driver == "node-a" { &b } else { &a };
    let url = webhook_url(other, &uid);
    let challenge = reqwest::Client::new()
        .get(&url)
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY),
            ("hub.challenge", "77"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::OK);
    assert_eq!(challenge.text().await.unwrap(), "77");

    let body = fake_graph::delivery(
        PNID,
        json!({ "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "201001234567" }],
                "messages": [{ "from": "201001234567", "id": "wamid.IN-other-node", "timestamp": "1700000000",
                               "type": "text", "text": { "body": "via the other node" } }] }),
    );
    // A 503 while the device is being handed over is Meta's cue to deliver again.
    eventually("the delivery taken", || async {
        let (s, _) = fake.deliver(&url, SECRET, &body).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let (_, inbox) = a
        .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
        .await;
    assert_eq!(inbox["data"]["total"], 1, "{inbox}");
    assert_eq!(inbox["data"]["items"][0]["text"], "via the other node");
    let (s, b_sig) = fake.deliver(&url, "forged", &body).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the driving node's refusal: {b_sig}"
    );
}
