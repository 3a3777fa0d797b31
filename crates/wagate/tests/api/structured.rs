//! Locations, contact cards, polls, replies and mentions through both dialects: sent by
//! one sandbox device to another and read back on both sides, refused with a 422 naming
//! the field when malformed, and held to the same idempotency and budgets as a text.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Sends through a Msgera endpoint and returns the accepted message.
pub(crate) async fn accepted(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, reply) = app.post(path, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    reply["data"].clone()
}

/// The inbound message of `device` with WhatsApp's id `pid`, once it arrived.
pub(crate) async fn inbound_at(app: &TestApp, device: &str, pid: &str) -> Value {
    eventually(&format!("{pid} at {device}"), || async {
        let (_, inbox) = app
            .get(&format!(
                "/v1/developer/inbound?deviceUid={device}&limit=100"
            ))
            .await;
        inbox["data"]["items"]
            .as_array()?
            .iter()
            .find(|m| m["providerMessageId"] == pid)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn locations_contacts_polls_and_replies_round_trip_between_two_devices() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("shop").await;
    let b = app.connected_device("customer").await;
    let (a_uid, b_uid) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );
    let (a_phone, b_phone) = (
        a["phoneNumber"].as_str().unwrap(),
        b["phoneNumber"].as_str().unwrap(),
    );

    let loc = accepted(
        &app,
        "/v1/developer/messages/send-location",
        json!({ "deviceUid": a_uid, "to": b_phone, "latitude": 30.0444, "longitude": 31.2357,
                "name": "Our shop", "address": "12 Tahrir Sq, Cairo" }),
    )
    .await;
    assert_eq!(loc["type"], "location");
    assert_eq!(
        loc["location"],
        json!({ "latitude": 30.0444, "longitude": 31.2357, "name": "Our shop", "address": "12 Tahrir Sq, Cairo" })
    );
    assert_eq!(
        loc["text"],
        "Location: 30.0444, 31.2357 — Our shop — 12 Tahrir Sq, Cairo"
    );
    let contact = accepted(
        &app,
        "/v1/developer/messages/send-contact",
        json!({ "deviceUid": a_uid, "to": b_phone,
                "contacts": [{ "name": "Support; 24/7", "phone": "+201001234567" }, { "name": "Sales", "phone": "447700900123" }] }),
    )
    .await;
    assert_eq!(contact["type"], "contact");
    assert_eq!(
        contact["contacts"],
        json!([{ "name": "Support; 24/7", "phone": "+201001234567" }, { "name": "Sales", "phone": "+447700900123" }])
    );
    let poll = accepted(
        &app,
        "/v1/developer/messages/send-poll",
        json!({ "deviceUid": a_uid, "to": b_phone, "question": "Delivery time?",
                "options": ["Morning", "Evening"], "multipleAnswers": false }),
    )
    .await;
    assert_eq!(poll["type"], "poll");
    assert_eq!(
        poll["poll"],
        json!({ "question": "Delivery time?", "options": ["Morning", "Evening"], "multipleAnswers": false })
    );
    let mention = b_phone.trim_start_matches('+');
    let reply = accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": a_uid, "to": b_phone, "text": format!("Here it is @{mention}"),
                "replyTo": loc["messageId"], "mentions": [b_phone] }),
    )
    .await;
    assert_eq!(
        reply["replyTo"]["providerMessageId"],
        loc["providerMessageId"]
    );
    assert_eq!(reply["replyTo"]["fromMe"], true);
    assert_eq!(reply["mentions"], json!([b_phone]));

    // Every kind goes the whole way, and the poll's secret never shows.
    for m in [&loc, &contact, &poll, &reply] {
        let read = app
            .wait_message_status(m["messageId"].as_str().unwrap(), "read")
            .await;
        assert_eq!(read["type"], m["type"], "{read}");
        assert!(!read.to_string().contains("secret"), "{read}");
    }
    let (_, listed) = app
        .get(&format!("/v1/developer/messages?deviceUid={a_uid}"))
        .await;
    assert!(!listed.to_string().contains("secret"), "{listed}");

    // What the customer's device received.
    let got = inbound_at(&app, b_uid, loc["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["type"], "location");
    assert_eq!(got["from"], a_phone);
    assert_eq!(got["location"], loc["location"]);
    assert_eq!(got["text"], loc["text"]);
    let got = inbound_at(&app, b_uid, contact["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["type"], "contact");
    assert_eq!(got["contacts"], contact["contacts"]);
    assert_eq!(
        got["text"],
        "Contacts: Support; 24/7 (+201001234567); Sales (+447700900123)"
    );
    let got = inbound_at(&app, b_uid, poll["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["type"], "poll");
    assert_eq!(got["poll"], poll["poll"]);
    assert!(!got.to_string().contains("secret"), "{got}");
    let got = inbound_at(&app, b_uid, reply["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["text"], format!("Here it is @{mention}"));
    assert_eq!(
        got["replyTo"],
        json!({ "providerMessageId": loc["providerMessageId"], "fromMe": false, "from": a_phone,
                "fromLid": null, "text": loc["text"] })
    );
    assert_eq!(got["mentions"], json!([b_phone]));

    // The customer quotes the shop's message back by its WhatsApp id; the shop sees its
    // own message quoted.
    let answer = accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": b_uid, "to": a_phone, "text": "Evening, please",
                "replyTo": poll["providerMessageId"] }),
    )
    .await;
    assert_eq!(answer["replyTo"]["fromMe"], false);
    assert_eq!(answer["replyTo"]["from"], a_phone);
    let got = inbound_at(&app, a_uid, answer["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(
        got["replyTo"]["providerMessageId"],
        poll["providerMessageId"]
    );
    assert_eq!(got["replyTo"]["fromMe"], true);
    assert_eq!(got["replyTo"]["text"], poll["text"]);

    // A received message can be quoted by its own `msg_…` id too, by its device only.
    let poll_at_b = inbound_at(&app, b_uid, poll["providerMessageId"].as_str().unwrap()).await;
    let again = accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": b_uid, "to": a_phone, "text": "Morning after all",
                "replyTo": poll_at_b["messageId"] }),
    )
    .await;
    assert_eq!(
        again["replyTo"]["providerMessageId"],
        poll["providerMessageId"]
    );
    let (status, refused) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": a_uid, "to": b_phone, "text": "x", "replyTo": poll_at_b["messageId"] }),
        )
        .await;
    assert_invalid(status, &refused, "replyTo");

    // A plain text keeps its shape: no empty structured keys.
    let plain = app.send_text(a_uid, b_phone, "plain").await;
    for key in ["location", "contacts", "poll", "replyTo", "mentions"] {
        assert!(plain.get(key).is_none(), "{key} in {plain}");
    }
}

#[tokio::test]
async fn malformed_structured_sends_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let uid = a["deviceUid"].as_str().unwrap();
    let to = b["phoneNumber"].as_str().unwrap();
    let other = "+201009998887";
    let options = |n: usize| (0..n).map(|i| format!("o{i}")).collect::<Vec<_>>();
    let ours = app.send_text(uid, other, "to someone else").await;
    let b_uid = b["deviceUid"].as_str().unwrap();
    let theirs = app
        .send_text(b_uid, a["phoneNumber"].as_str().unwrap(), "from b")
        .await;
    let cases = [
        (
            "send-poll",
            json!({ "question": "q", "options": ["only"] }),
            "options",
        ),
        (
            "send-poll",
            json!({ "question": "q", "options": options(13) }),
            "options",
        ),
        (
            "send-poll",
            json!({ "question": "q", "options": ["a", " a"] }),
            "options[1]",
        ),
        (
            "send-poll",
            json!({ "question": " ", "options": ["a", "b"] }),
            "question",
        ),
        (
            "send-poll",
            json!({ "question": "q", "options": ["a", "b"], "multipleAnswers": "yes" }),
            "multipleAnswers",
        ),
        (
            "send-location",
            json!({ "latitude": 91, "longitude": 0 }),
            "latitude",
        ),
        (
            "send-location",
            json!({ "latitude": 0, "longitude": -180.5 }),
            "longitude",
        ),
        ("send-location", json!({ "latitude": 0 }), "longitude"),
        (
            "send-location",
            json!({ "latitude": 0, "longitude": 0, "name": "a\u{7}b" }),
            "name",
        ),
        ("send-contact", json!({ "contacts": [] }), "contacts"),
        (
            "send-contact",
            json!({ "contacts": [{ "name": "x", "phone": "0123" }] }),
            "contacts[0].phone",
        ),
        (
            "send-contact",
            json!({ "contacts": [{ "name": "x\u{202E}y", "phone": "+201001234567" }] }),
            "contacts[0].name",
        ),
        (
            "send-contact",
            json!({ "contacts": [{ "name": "x", "phone": "+201001234567", "org": "y" }] }),
            "contacts[0].org",
        ),
        (
            "send",
            json!({ "text": "hi", "replyTo": "3EB0NOSUCHMESSAGE" }),
            "replyTo",
        ),
        (
            "send",
            json!({ "text": "hi", "replyTo": "msg_01m8qjb7xsxzzr24q4jhzsqhaw" }),
            "replyTo",
        ),
        // Our message to another chat, and a message another device sent.
        (
            "send",
            json!({ "text": "hi", "replyTo": ours["messageId"] }),
            "replyTo",
        ),
        (
            "send",
            json!({ "text": "hi", "replyTo": theirs["messageId"] }),
            "replyTo",
        ),
        ("send", json!({ "text": "hi", "replyTo": "" }), "replyTo"),
        (
            "send",
            json!({ "text": "hi", "mentions": ["12"] }),
            "mentions[0]",
        ),
        (
            "send",
            json!({ "text": "hi", "mentions": [to, to] }),
            "mentions[1]",
        ),
    ];
    for (endpoint, extra, field) in cases {
        let mut body = json!({ "deviceUid": uid, "to": to });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, reply) = app
            .post(&format!("/v1/developer/messages/{endpoint}"), body.clone())
            .await;
        assert_invalid(status, &reply, field);
    }
    // A caption is what mentions live in.
    let (_, media) = app.upload(png(), "p.png", "image/png").await;
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send-media",
            json!({ "deviceUid": uid, "to": to, "mediaId": media["data"]["mediaId"], "mentions": [to] }),
        )
        .await;
    assert_invalid(status, &reply, "mentions");
}

#[tokio::test]
async fn structured_sends_keep_idempotency_and_budgets() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("a").await;
    let uid = a["deviceUid"].as_str().unwrap();
    let to = "+201001234567";
    let poll = |options: Value| {
        json!({ "deviceUid": uid, "to": to, "question": "Lunch?", "options": options,
                "clientMessageId": "poll-1" })
    };
    let first = accepted(
        &app,
        "/v1/developer/messages/send-poll",
        poll(json!(["a", "b"])),
    )
    .await;
    let (status, again) = app
        .post("/v1/developer/messages/send-poll", poll(json!(["a", "b"])))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["data"]["messageId"], first["messageId"]);
    assert_eq!(again["data"]["deduplicated"], true);
    let (status, reused) = app
        .post("/v1/developer/messages/send-poll", poll(json!(["a", "c"])))
        .await;
    assert_invalid(status, &reused, "clientMessageId");
    assert_eq!(reused["code"], "idempotency_key_reused");
    // Same key, another endpoint: another request.
    let (status, reused) = app
        .post(
            "/v1/developer/messages/send-location",
            json!({ "deviceUid": uid, "to": to, "latitude": 1, "longitude": 2, "clientMessageId": "poll-1" }),
        )
        .await;
    assert_invalid(status, &reused, "clientMessageId");

    // The daily budget counts every kind.
    app.set_limits(uid, 2, 100, 100).await;
    accepted(
        &app,
        "/v1/developer/messages/send-location",
        json!({ "deviceUid": uid, "to": to, "latitude": 1, "longitude": 2 }),
    )
    .await;
    let (status, refused) = app
        .post(
            "/v1/developer/messages/send-contact",
            json!({ "deviceUid": uid, "to": to, "contacts": [{ "name": "x", "phone": to }] }),
        )
        .await;
    assert_error(status, &refused, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn reactions_edits_and_deletes_reach_the_other_side_and_refuse_what_cannot_be() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("shop").await;
    let b = app.connected_device("customer").await;
    let (a_uid, b_uid) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );
    let (a_phone, b_phone) = (
        a["phoneNumber"].as_str().unwrap(),
        b["phoneNumber"].as_str().unwrap(),
    );
    let original = app
        .send_text(a_uid, b_phone, "Your order ships tomorow")
        .await;
    let original_id = original["messageId"].as_str().unwrap();
    app.wait_message_status(original_id, "read").await;
    let at_b = inbound_at(&app, b_uid, original["providerMessageId"].as_str().unwrap()).await;

    // The customer reacts to what they received.
    let reaction = accepted(
        &app,
        &format!(
            "/v1/developer/messages/{}/reaction",
            at_b["messageId"].as_str().unwrap()
        ),
        json!({ "emoji": "👍" }),
    )
    .await;
    assert_eq!(reaction["type"], "reaction");
    assert_eq!(reaction["deviceUid"], b_uid);
    assert_eq!(reaction["to"], a_phone);
    assert_eq!(reaction["emoji"], "👍");
    assert_eq!(
        reaction["target"]["providerMessageId"],
        original["providerMessageId"]
    );
    assert_eq!(reaction["target"]["fromMe"], false);
    app.wait_message_status(reaction["messageId"].as_str().unwrap(), "delivered")
        .await;
    let got = inbound_at(&app, a_uid, reaction["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["type"], "reaction");
    assert_eq!(got["emoji"], "👍");
    assert_eq!(got["text"], "Reacted 👍");
    assert_eq!(
        got["target"]["providerMessageId"],
        original["providerMessageId"]
    );
    assert_eq!(got["target"]["fromMe"], true);

    // The shop fixes its text, then deletes it.
    let (status, edit) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/developer/messages/{original_id}"),
            Some(json!({ "text": "Your order ships tomorrow" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let edit = edit["data"].clone();
    assert_eq!(edit["type"], "edit");
    assert_eq!(edit["text"], "Your order ships tomorrow");
    assert_eq!(edit["target"]["fromMe"], true);
    let got = inbound_at(&app, b_uid, edit["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["type"], "edit");
    assert_eq!(got["text"], "Your order ships tomorrow");
    assert_eq!(
        got["target"]["providerMessageId"],
        original["providerMessageId"]
    );
    assert_eq!(got["target"]["fromMe"], false);
    assert_eq!(got["target"]["from"], a_phone);
    let (status, deleted) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/developer/messages/{original_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");
    assert_eq!(deleted["data"]["type"], "delete");
    let got = inbound_at(
        &app,
        b_uid,
        deleted["data"]["providerMessageId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(got["type"], "delete");
    assert_eq!(got["text"], "Deleted a message");

    // What cannot be done says why.
    let app = &app;
    let patch = |id: String, body: Value| async move {
        app.call(
            reqwest::Method::PATCH,
            &format!("/v1/developer/messages/{id}"),
            Some(body),
        )
        .await
    };
    let someone_elses = at_b["messageId"].as_str().unwrap().to_owned();
    let (status, reply) = patch(someone_elses.clone(), json!({ "text": "mine now" })).await;
    let why = assert_error(status, &reply, StatusCode::CONFLICT);
    assert!(why.contains("only its sender"), "{why}");
    let (status, reply) = patch(
        reaction["messageId"].as_str().unwrap().to_owned(),
        json!({ "text": "x" }),
    )
    .await;
    assert_error(status, &reply, StatusCode::CONFLICT);
    let loc = accepted(
        app,
        "/v1/developer/messages/send-location",
        json!({ "deviceUid": a_uid, "to": b_phone, "latitude": 1, "longitude": 2 }),
    )
    .await;
    app.wait_message_status(loc["messageId"].as_str().unwrap(), "sent")
        .await;
    let (status, reply) = patch(
        loc["messageId"].as_str().unwrap().to_owned(),
        json!({ "text": "x" }),
    )
    .await;
    let why = assert_error(status, &reply, StatusCode::CONFLICT);
    assert!(why.contains("only text messages"), "{why}");
    let when = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let later = accepted(
        app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": a_uid, "to": b_phone, "text": "later", "sendAt": when }),
    )
    .await;
    let (status, reply) = app
        .call(
            reqwest::Method::DELETE,
            &format!(
                "/v1/developer/messages/{}",
                later["messageId"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let why = assert_error(status, &reply, StatusCode::CONFLICT);
    assert!(why.contains("queued"), "{why}");
    let (status, reply) = patch(
        "msg_01m8qjb7xsxzzr24q4jhzsqhaw".into(),
        json!({ "text": "x" }),
    )
    .await;
    assert_error(status, &reply, StatusCode::NOT_FOUND);
    let (status, reply) = patch(original_id.to_owned(), json!({ "text": " " })).await;
    assert_invalid(status, &reply, "text");
    for emoji in ["ok", "👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍👍"] {
        let (status, reply) = app
            .post(
                &format!("/v1/developer/messages/{original_id}/reaction"),
                json!({ "emoji": emoji }),
            )
            .await;
        assert_invalid(status, &reply, "emoji");
    }
    // Removing a reaction is a reaction with no emoji.
    let removed = accepted(
        app,
        &format!("/v1/developer/messages/{someone_elses}/reaction"),
        json!({ "emoji": "" }),
    )
    .await;
    let got = inbound_at(app, a_uid, removed["providerMessageId"].as_str().unwrap()).await;
    assert_eq!(got["emoji"], "");
    assert_eq!(got["text"], "Removed a reaction");
}

#[tokio::test]
async fn poll_votes_reach_the_poller_and_are_tallied() {
    let app = TestApp::spawn().await;
    let a = app.connected_device("poller").await;
    let b = app.connected_device("voter").await;
    let (a_uid, b_uid) = (
        a["deviceUid"].as_str().unwrap(),
        b["deviceUid"].as_str().unwrap(),
    );
    let b_phone = b["phoneNumber"].as_str().unwrap();
    let poll = accepted(
        &app,
        "/v1/developer/messages/send-poll",
        json!({ "deviceUid": a_uid, "to": b_phone, "question": "When?", "options": ["Morning", "Evening"] }),
    )
    .await;
    let poll_id = poll["messageId"].as_str().unwrap();
    let poll_pid = poll["providerMessageId"].as_str().unwrap();
    let at_b = inbound_at(&app, b_uid, poll_pid).await;
    let vote_path = format!(
        "/v1/developer/messages/{}/vote",
        at_b["messageId"].as_str().unwrap()
    );

    // Options are the poll's, one unless it allows several.
    let (status, body) = app.post(&vote_path, json!({ "options": ["Noon"] })).await;
    assert_invalid(status, &body, "options[0]");
    let (status, body) = app
        .post(&vote_path, json!({ "options": ["Morning", "Evening"] }))
        .await;
    assert_invalid(status, &body, "options");
    // Only polls take votes.
    let text = app.send_text(a_uid, b_phone, "not a poll").await;
    let text_at_b = inbound_at(&app, b_uid, text["providerMessageId"].as_str().unwrap()).await;
    let (status, body) = app
        .post(
            &format!(
                "/v1/developer/messages/{}/vote",
                text_at_b["messageId"].as_str().unwrap()
            ),
            json!({ "options": ["Morning"] }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);

    // B votes Morning, then changes to Evening: the poller sees both votes arrive and a
    // tally where only the latest counts.
    for choice in ["Morning", "Evening"] {
        let (status, vote) = app.post(&vote_path, json!({ "options": [choice] })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{vote}");
        assert_eq!(vote["data"]["type"], "poll_vote");
        let got = inbound_at(
            &app,
            a_uid,
            vote["data"]["providerMessageId"].as_str().unwrap(),
        )
        .await;
        assert_eq!(got["type"], "poll_vote");
        assert_eq!(got["vote"], json!([choice]));
        assert_eq!(got["target"]["providerMessageId"], poll_pid);
        assert_eq!(got["target"]["fromMe"], true);
        assert_eq!(got["text"], format!("Voted: {choice}"));
    }
    let (_, read) = app.get(&format!("/v1/developer/messages/{poll_id}")).await;
    let results = &read["data"]["pollResults"];
    assert_eq!(
        results,
        &json!({ "options": [
            { "option": "Morning", "votes": 0, "voters": [] },
            { "option": "Evening", "votes": 1, "voters": [b_phone] }
        ], "voters": 1 }),
        "{read}"
    );
    // Taking the vote back empties the tally.
    let (status, _) = app.post(&vote_path, json!({ "options": [] })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("the vote taken back", || async {
        let (_, read) = app.get(&format!("/v1/developer/messages/{poll_id}")).await;
        (read["data"]["pollResults"]["voters"] == 0).then_some(())
    })
    .await;
    // A text has no tally.
    let (_, read) = app
        .get(&format!(
            "/v1/developer/messages/{}",
            text["messageId"].as_str().unwrap()
        ))
        .await;
    assert!(read["data"].get("pollResults").is_none(), "{read}");
}
