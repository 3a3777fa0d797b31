//! The Msgera send endpoints, status lifecycle, spintax, check-whatsapp, listings.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use wagate_core::engine::ChatState;

#[tokio::test]
async fn the_seed_curl_example_works_verbatim() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("seed").await;
    let uid = device["deviceUid"].as_str().unwrap();
    // The seed's example, with only host, key and deviceUid substituted.
    let script = format!(
        r#"curl -sS -X POST {base}/v1/developer/messages/send \
-H "X-API-Key: $MSGERA_KEY" \
-H "Content-Type: application/json" \
-d '{{
"deviceUid": "{uid}",
"to": "+201001234567",
"text": "Hello from Msgera"
}}'"#,
        base = app.base
    );
    // tokio's Command: a blocking wait would stall the server sharing this runtime.
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("MSGERA_KEY", &app.key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["data"]["status"], "queued");
    let id = body["data"]["messageId"].as_str().unwrap();
    assert!(id.starts_with("msg_"));
    let read = app.wait_message_status(id, "read").await;
    assert_eq!(read["text"], "Hello from Msgera");
    assert_eq!(read["to"], "+201001234567");
}

#[tokio::test]
async fn a_text_goes_queued_sent_delivered_read_with_timestamps() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("a").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let sent = app.send_text(uid, "201001234567", "hi").await;
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["source"], "msgera");
    let id = sent["messageId"].as_str().unwrap();
    let read = app.wait_message_status(id, "read").await;
    let steps: Vec<&str> = read["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "sent", "delivered", "read"]);
    let times: Vec<&str> = read["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "timestamps in order");
    assert!(
        read["providerMessageId"]
            .as_str()
            .unwrap()
            .starts_with("3EB0")
    );
}

#[tokio::test]
async fn every_bad_field_of_the_send_endpoints_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("v").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let ok = json!({ "deviceUid": uid, "to": "+201001234567", "text": "x" });
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = [
        (without("deviceUid"), "deviceUid"),
        (without("to"), "to"),
        (without("text"), "text"),
        (with("deviceUid", json!("4f8c2a1e")), "deviceUid"),
        (with("deviceUid", json!(42)), "deviceUid"),
        (with("to", json!("+20 100 123")), "to"),
        (with("to", json!("123456")), "to"),
        (with("to", json!("1234567890123456")), "to"),
        (with("to", json!(201001234567u64)), "to"),
        (with("text", json!("")), "text"),
        (with("text", json!("{Hi|Hello")), "text"),
        (with("text", json!("unmatched }")), "text"),
        (with("text", json!(null)), "text"),
        (with("clientMessageId", json!("")), "clientMessageId"),
        (
            with("clientMessageId", json!("x".repeat(201))),
            "clientMessageId",
        ),
        (with("sendAt", json!("tomorrow")), "sendAt"),
        (with("sendAt", json!("2026-05-01T09:30:00")), "sendAt"),
        (with("priority", json!("high")), "priority"),
    ];
    for (body, field) in cases {
        let (status, reply) = app.post("/v1/developer/messages/send", body.clone()).await;
        assert_invalid(status, &reply, field);
    }
    // Several problems at once are all named.
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": "x", "to": "y", "text": "" }),
        )
        .await;
    for f in ["deviceUid", "to", "text"] {
        assert_invalid(status, &reply, f);
    }
    // Not JSON at all.
    let resp = app
        .client
        .post(format!("{}/v1/developer/messages/send", app.base))
        .header("X-API-Key", &app.key)
        .header("Content-Type", "application/json")
        .body("{\"deviceUid\": ")
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_invalid(status, &resp.json().await.unwrap(), "body");

    let media_cases = [
        (
            json!({ "deviceUid": uid, "to": "+201001234567" }),
            "mediaId",
        ),
        (
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": "abc" }),
            "mediaId",
        ),
        (
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": "med_x", "caption": "" }),
            "caption",
        ),
        (
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": "med_x", "text": "hi" }),
            "text",
        ),
    ];
    for (body, field) in media_cases {
        let (status, reply) = app.post("/v1/developer/messages/send-media", body).await;
        assert_invalid(status, &reply, field);
    }
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send-voice",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": "med_x", "caption": "c" }),
        )
        .await;
    assert_invalid(status, &reply, "caption");
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send-media",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": "med_unknown" }),
        )
        .await;
    assert_error(status, &reply, StatusCode::NOT_FOUND);

    let (_, list) = app.get("/v1/developer/messages").await;
    assert_eq!(list["data"]["total"], 0, "nothing invalid was accepted");
}

#[tokio::test]
async fn media_and_voice_notes_are_uploaded_then_sent() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("m").await;
    let uid = device["deviceUid"].as_str().unwrap();

    // The declared type is wrong; the content decides.
    let (status, up) = app.upload(png(), "photo.png", "application/pdf").await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    assert_eq!(up["data"]["mimeType"], "image/png");
    assert_eq!(up["data"]["size"], png().len());
    let image = up["data"]["mediaId"].as_str().unwrap().to_owned();
    assert!(image.starts_with("med_"));

    let (status, sent) = app
        .post("/v1/developer/messages/send-media", json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": image, "caption": "{Look|See}" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["data"]["type"], "image");
    assert!(["Look", "See"].contains(&sent["data"]["text"].as_str().unwrap()));
    app.wait_message_status(sent["data"]["messageId"].as_str().unwrap(), "read")
        .await;

    let (_, doc) = app
        .upload(
            b"%PDF-1.4\n%test\n".to_vec(),
            "invoice.pdf",
            "application/pdf",
        )
        .await;
    let (status, sent) = app
        .post(
            "/v1/developer/messages/send-media",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": doc["data"]["mediaId"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(sent["data"]["type"], "document");

    // A voice note must be audio.
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send-voice",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": image }),
        )
        .await;
    assert_invalid(status, &reply, "mediaId");
    let (_, voice) = app
        .upload(ogg(), "note.ogg", "audio/ogg; codecs=opus")
        .await;
    assert_eq!(voice["data"]["mimeType"], "audio/ogg; codecs=opus");
    let (status, sent) = app
        .post(
            "/v1/developer/messages/send-voice",
            json!({ "deviceUid": uid, "to": "+201001234567", "mediaId": voice["data"]["mediaId"] }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    assert_eq!(sent["data"]["type"], "voice");
    let played = app
        .wait_message_status(sent["data"]["messageId"].as_str().unwrap(), "played")
        .await;
    assert_eq!(played["history"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn uploads_over_16_mb_are_413_and_malformed_uploads_422() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .upload(
            vec![7u8; 16 * 1024 * 1024 + 1],
            "big.bin",
            "application/octet-stream",
        )
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = app
        .upload(
            vec![7u8; 16 * 1024 * 1024],
            "exact.bin",
            "application/octet-stream",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "exactly 16 MB is allowed: {body}"
    );

    let form = reqwest::multipart::Form::new().text("notfile", "x");
    let resp = app
        .client
        .post(format!("{}/v1/developer/media/upload", app.base))
        .header("X-API-Key", &app.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_invalid(status, &resp.json().await.unwrap(), "file");
    let resp = app
        .client
        .post(format!("{}/v1/developer/media/upload", app.base))
        .header("X-API-Key", &app.key)
        .json(&json!({ "file": "x" }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_invalid(status, &resp.json().await.unwrap(), "file");
}

#[tokio::test]
async fn spintax_is_expanded_once_per_message_and_stored() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("s").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let mut seen = HashSet::new();
    for _ in 0..24 {
        let m = app
            .send_text(
                uid,
                "+201001234567",
                "{Hi|Hello} {there|friend}, use \\{code\\}",
            )
            .await;
        let text = m["text"].as_str().unwrap().to_owned();
        let (_, stored) = app
            .get(&format!(
                "/v1/developer/messages/{}",
                m["messageId"].as_str().unwrap()
            ))
            .await;
        assert_eq!(
            stored["data"]["text"],
            text.as_str(),
            "the stored text is the chosen one"
        );
        seen.insert(text);
    }
    let all: HashSet<String> = ["Hi there", "Hi friend", "Hello there", "Hello friend"]
        .iter()
        .map(|s| format!("{s}, use {{code}}"))
        .collect();
    assert!(seen.is_subset(&all), "{seen:?}");
    assert!(
        seen.len() >= 2,
        "24 sends should pick more than one variant: {seen:?}"
    );
}

#[tokio::test]
async fn check_whatsapp_reports_each_number() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("c").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let (status, body) = app
        .post(
            "/v1/developer/messages/check-whatsapp",
            json!({ "deviceUid": uid, "numbers": ["+201001234567", "201001230000"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["data"]["results"].as_array().unwrap();
    assert_eq!(results[0]["number"], "+201001234567");
    assert_eq!(results[0]["onWhatsApp"], true);
    assert_eq!(results[0]["jid"], "201001234567@s.whatsapp.net");
    assert_eq!(results[1]["number"], "201001230000");
    assert_eq!(results[1]["onWhatsApp"], false);
    assert_eq!(results[1]["jid"], Value::Null);

    let fifty_one: Vec<String> = (0..51).map(|i| format!("+2010012345{i:02}")).collect();
    for (numbers, field) in [
        (json!([]), "numbers"),
        (json!(fifty_one), "numbers"),
        (json!(["+201001234567", "bad"]), "numbers[1]"),
        (json!("+201001234567"), "numbers"),
    ] {
        let (status, body) = app
            .post(
                "/v1/developer/messages/check-whatsapp",
                json!({ "deviceUid": uid, "numbers": numbers }),
            )
            .await;
        assert_invalid(status, &body, field);
    }
}

#[tokio::test]
async fn presence_shows_typing_and_recording_in_the_chat_then_clears() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let uid = a["deviceUid"].as_str().unwrap();
    let a_phone = a["phoneNumber"].as_str().unwrap().trim_start_matches('+');
    let b_phone = b["phoneNumber"].as_str().unwrap();
    let seen = || {
        app.sandbox
            .chat_state_seen(b_phone.trim_start_matches('+'), a_phone)
    };
    assert_eq!(seen(), None);
    for (state, shown) in [
        ("typing", ChatState::Typing),
        ("recording", ChatState::Recording),
        ("paused", ChatState::Paused),
    ] {
        let (status, body) = app
            .post(
                "/v1/developer/presence",
                json!({ "deviceUid": uid, "to": b_phone, "state": state }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"],
            json!({ "deviceUid": uid, "to": b_phone, "state": state })
        );
        assert_eq!(seen(), Some(shown), "after {state}");
    }
    // Nothing was stored or queued: a chat state is not a message.
    let (_, listed) = app.get("/v1/developer/messages").await;
    assert_eq!(listed["data"]["total"], 0, "{listed}");

    for (body, field) in [
        (
            json!({ "deviceUid": uid, "to": b_phone, "state": "dancing" }),
            "state",
        ),
        (
            json!({ "deviceUid": uid, "to": "not a number", "state": "typing" }),
            "to",
        ),
        (
            json!({ "deviceUid": "nope", "to": b_phone, "state": "typing" }),
            "deviceUid",
        ),
        (json!({ "deviceUid": uid, "state": "typing" }), "to"),
        (
            json!({ "deviceUid": uid, "to": b_phone, "state": "typing", "mood": 1 }),
            "mood",
        ),
    ] {
        let (status, reply) = app.post("/v1/developer/presence", body).await;
        assert_invalid(status, &reply, field);
    }
    let (status, reply) = app
        .post(
            "/v1/developer/presence",
            json!({ "deviceUid": "dev_01m8qjb7xsxzzr24q4jhzsqhaw", "to": b_phone, "state": "typing" }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["ok"], false);

    // Offline, WhatsApp shows nothing: a clear 502.
    let device = wagate_core::DeviceUid::parse(uid).unwrap();
    assert!(
        app.sandbox
            .lose_connection(&device, std::time::Duration::from_secs(60))
            .await
    );
    app.wait_device_status(uid, "reconnecting").await;
    let (status, reply) = app
        .post(
            "/v1/developer/presence",
            json!({ "deviceUid": uid, "to": b_phone, "state": "typing" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("not connected"),
        "{reply}"
    );
    assert_eq!(seen(), Some(ChatState::Paused));
}

#[tokio::test]
async fn reading_a_chat_sends_read_receipts_for_its_unread_messages_once() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let uid = a["deviceUid"].as_str().unwrap();
    let me = a["phoneNumber"].as_str().unwrap().trim_start_matches('+');
    let customer = "+201009876543";
    for body in [
        json!({ "deviceUid": uid, "from": customer, "text": "first" }),
        json!({ "deviceUid": uid, "from": customer, "text": "second" }),
        json!({ "deviceUid": uid, "from": "+201001112223", "text": "another chat" }),
        json!({ "deviceUid": uid, "from": customer, "text": "in a group", "isGroup": true, "groupId": "120363@g.us" }),
    ] {
        let (status, reply) = app.post("/v1/developer/sandbox/inbound", body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
    }
    let read = |chat: &'static str| {
        app.post(
            "/v1/developer/chats/read",
            json!({ "deviceUid": uid, "chat": chat }),
        )
    };
    let (status, reply) = read(customer).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["data"],
        json!({ "deviceUid": uid, "chat": customer, "marked": 2 })
    );
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
        .await;
    let items = inbox["data"]["items"].as_array().unwrap();
    let by_text = |t: &str| items.iter().find(|m| m["text"] == t).unwrap().clone();
    let (first, second) = (by_text("first"), by_text("second"));
    assert!(first["readAt"].is_string(), "{first}");
    assert!(second["readAt"].is_string(), "{second}");
    assert!(by_text("another chat")["readAt"].is_null());
    assert!(by_text("in a group")["readAt"].is_null());
    assert_eq!(
        app.sandbox.marked_read(me, "201009876543"),
        [
            first["providerMessageId"].as_str().unwrap(),
            second["providerMessageId"].as_str().unwrap()
        ]
    );
    // Read already: nothing is sent again.
    let (status, reply) = read(customer).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["marked"], 0);
    assert_eq!(app.sandbox.marked_read(me, "201009876543").len(), 2);

    for (body, field) in [
        (json!({ "deviceUid": uid, "chat": "nope" }), "chat"),
        (json!({ "deviceUid": "x", "chat": customer }), "deviceUid"),
        (json!({ "deviceUid": uid }), "chat"),
        (
            json!({ "deviceUid": uid, "chat": customer, "all": true }),
            "all",
        ),
    ] {
        let (status, reply) = app.post("/v1/developer/chats/read", body).await;
        assert_invalid(status, &reply, field);
    }
    let (status, reply) = app
        .post(
            "/v1/developer/chats/read",
            json!({ "deviceUid": "dev_01m8qjb7xsxzzr24q4jhzsqhaw", "chat": customer }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");

    // Offline: a 502, and the chat's new message stays unread for the next call.
    let (status, _) = app
        .post(
            "/v1/developer/sandbox/inbound",
            json!({ "deviceUid": uid, "from": customer, "text": "third" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let device = wagate_core::DeviceUid::parse(uid).unwrap();
    assert!(
        app.sandbox
            .lose_connection(&device, std::time::Duration::from_secs(60))
            .await
    );
    app.wait_device_status(uid, "reconnecting").await;
    let (status, reply) = read(customer).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={uid}"))
        .await;
    let third = inbox["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "third")
        .unwrap()
        .clone();
    assert!(third["readAt"].is_null(), "{third}");
}

#[tokio::test]
async fn messages_are_listed_with_filters_and_pages() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let (ua, ub) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.send_text(ua, &format!("+20100123456{i}"), "x").await["messageId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let failed = app.send_text(ub, "+201001230000", "to nobody").await;
    app.wait_message_status(failed["messageId"].as_str().unwrap(), "failed")
        .await;

    let (_, all) = app.get("/v1/developer/messages?limit=2").await;
    assert_eq!(all["data"]["total"], 6);
    assert_eq!(all["data"]["items"].as_array().unwrap().len(), 2);
    let (_, p3) = app.get("/v1/developer/messages?limit=2&page=3").await;
    assert_eq!(p3["data"]["items"].as_array().unwrap().len(), 2);
    let (_, p4) = app.get("/v1/developer/messages?limit=2&page=4").await;
    assert_eq!(p4["data"]["items"].as_array().unwrap().len(), 0);

    let (_, by_device) = app
        .get(&format!("/v1/developer/messages?deviceUid={ua}"))
        .await;
    assert_eq!(by_device["data"]["total"], 5);
    let (_, by_status) = app.get("/v1/developer/messages?status=failed").await;
    assert_eq!(by_status["data"]["total"], 1);
    assert!(
        by_status["data"]["items"][0]["failureReason"]
            .as_str()
            .unwrap()
            .contains("not on WhatsApp")
    );
    let (_, by_recipient) = app
        .get("/v1/developer/messages?recipient=%2B201001234562")
        .await;
    assert_eq!(by_recipient["data"]["total"], 1);
    assert_eq!(
        by_recipient["data"]["items"][0]["messageId"],
        ids[2].as_str()
    );
    let (_, future) = app
        .get("/v1/developer/messages?since=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(future["data"]["total"], 0);
    let (_, past) = app
        .get("/v1/developer/messages?until=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(past["data"]["total"], 0);
    let (_, window) = app
        .get("/v1/developer/messages?since=2000-01-01T00:00:00Z&until=2099-01-01T00:00:00Z")
        .await;
    assert_eq!(window["data"]["total"], 6);

    for (q, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=0", "page"),
        ("since=yesterday", "since"),
        ("recipient=abc", "recipient"),
        ("deviceUid=xyz", "deviceUid"),
    ] {
        let (status, body) = app.get(&format!("/v1/developer/messages?{q}")).await;
        assert_invalid(status, &body, field);
    }
}

#[tokio::test]
async fn inbound_messages_are_stored_and_sandbox_devices_talk_to_each_other() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let (ua, ub) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );

    let (status, body) = app
        .post("/v1/developer/sandbox/inbound", json!({ "deviceUid": ua, "from": "+201009876543", "fromName": "Zeyad", "text": "When will my order arrive?" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post("/v1/developer/sandbox/inbound", json!({ "deviceUid": ua, "from": "+201009876543", "text": "hi all", "isGroup": true, "groupId": "120363@g.us", "groupName": "Team" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, inbox) = app
        .get(&format!("/v1/developer/inbound?deviceUid={ua}"))
        .await;
    assert_eq!(inbox["data"]["total"], 2, "{inbox}");
    let direct = &inbox["data"]["items"][1];
    assert_eq!(direct["from"], "+201009876543");
    assert_eq!(direct["fromName"], "Zeyad");
    assert_eq!(direct["text"], "When will my order arrive?");
    assert_eq!(direct["isGroup"], false);
    let group = &inbox["data"]["items"][0];
    assert_eq!(group["isGroup"], true);
    assert_eq!(group["groupId"], "120363@g.us");
    assert_eq!(group["groupName"], "Team");

    for (body, field) in [
        (json!({ "deviceUid": ua, "from": "x", "text": "t" }), "from"),
        (json!({ "deviceUid": ua, "from": "+201009876543" }), "text"),
        (
            json!({ "deviceUid": ua, "from": "+201009876543", "text": "t", "isGroup": true }),
            "groupId",
        ),
        (
            json!({ "deviceUid": ua, "from": "+201009876543", "text": "t", "extra": 1 }),
            "extra",
        ),
    ] {
        let (status, reply) = app.post("/v1/developer/sandbox/inbound", body).await;
        assert_invalid(status, &reply, field);
    }

    // A writes to B's number: B receives it.
    let b_phone = b["phoneNumber"].as_str().unwrap();
    let m = app.send_text(ua, b_phone, "hello B").await;
    app.wait_message_status(m["messageId"].as_str().unwrap(), "read")
        .await;
    let inbox = eventually("B's inbox", || async {
        let (_, inbox) = app
            .get(&format!("/v1/developer/inbound?deviceUid={ub}"))
            .await;
        (inbox["data"]["total"] == 1).then_some(inbox)
    })
    .await;
    let got = &inbox["data"]["items"][0];
    assert_eq!(got["text"], "hello B");
    assert_eq!(got["from"], a["phoneNumber"]);
    assert_eq!(got["fromName"], "a");
}
