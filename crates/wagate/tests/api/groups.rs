//! Groups through the API, the way a user meets them: three sandbox devices in one group,
//! every kind of message sent to it through both dialects and received by the others;
//! members managed by admins only, with every member told; and bad requests refused with
//! a 422 or 404 naming what is wrong.

use crate::structured::{accepted, inbound_at};
use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A connected sandbox device: uid, phone, MegaMsg token.
struct Dev {
    uid: String,
    phone: String,
    token: String,
}

async fn device(app: &TestApp, name: &str) -> Dev {
    let (status, body) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": name, "engine": "sandbox" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
    let token = body["data"]["instanceToken"].as_str().unwrap().to_owned();
    let d = app.wait_device_status(&uid, "connected").await;
    Dev {
        uid,
        phone: d["phoneNumber"].as_str().unwrap().to_owned(),
        token,
    }
}

/// The inbound message of `device` matching `pred`, once it arrived.
async fn inbound_where(
    app: &TestApp,
    device: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("{what} at {device}"), || async {
        let (_, inbox) = app
            .get(&format!(
                "/v1/developer/inbound?deviceUid={device}&limit=100"
            ))
            .await;
        inbox["data"]["items"]
            .as_array()?
            .iter()
            .find(|m| pred(m))
            .cloned()
    })
    .await
}

async fn create_group(app: &TestApp, owner: &Dev, subject: &str, members: &[&str]) -> Value {
    let (status, g) = app
        .post(
            "/v1/developer/groups",
            json!({ "deviceUid": owner.uid, "subject": subject, "participants": members }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{g}");
    g["data"].clone()
}

#[tokio::test]
async fn a_group_of_three_devices_exchanges_every_kind_through_both_dialects() {
    let app = TestApp::spawn().await;
    let a = device(&app, "shop").await;
    let b = device(&app, "ana").await;
    let c = device(&app, "bo").await;

    let g = create_group(&app, &a, "  Team  ", &[&b.phone, &c.phone, "+15550100000"]).await;
    assert_eq!(
        g["notAdded"],
        json!(["+15550100000"]),
        "not on WhatsApp: {g}"
    );
    let gid = g["groupId"].as_str().unwrap().to_owned();
    assert!(gid.ends_with("@g.us"), "{g}");
    assert_eq!(g["subject"], "Team");
    assert_eq!(g["participantCount"], 3);
    assert_eq!(g["role"], "owner");
    let roles: Vec<(String, String)> = g["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phone"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(a.phone.clone(), "owner".into())),
        "{roles:?}"
    );
    assert!(
        roles.contains(&(b.phone.clone(), "member".into())),
        "{roles:?}"
    );

    // Every member's device lists it, and reads it with its members.
    let (status, list) = app
        .get(&format!("/v1/developer/groups?deviceUid={}", b.uid))
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = &list["data"]["items"][0];
    assert_eq!(
        (listed["groupId"].as_str(), listed["role"].as_str()),
        (Some(gid.as_str()), Some("member"))
    );
    assert!(
        listed.get("participants").is_none(),
        "lists carry counts only"
    );
    let (status, read) = app
        .get(&format!("/v1/developer/groups/{gid}?deviceUid={}", c.uid))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["data"]["participants"].as_array().unwrap().len(), 3);

    // The members were told they were added, by whom.
    let added = inbound_where(&app, &b.uid, "the add notice", |m| {
        m["type"] == "participants"
    })
    .await;
    assert_eq!(added["groupId"], gid.as_str());
    assert_eq!(added["from"], a.phone.as_str());
    assert_eq!(added["groupChange"]["action"], "add");

    // A text to the group reaches both other members, from the sender's number.
    let hello = accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": a.uid, "groupId": gid, "text": "Hello team" }),
    )
    .await;
    assert_eq!(hello["to"], gid.as_str());
    assert_eq!(hello["groupId"], gid.as_str());
    let pid = hello["providerMessageId"].as_str().unwrap();
    for member in [&b, &c] {
        let got = inbound_at(&app, &member.uid, pid).await;
        assert_eq!(got["text"], "Hello team");
        assert_eq!(got["isGroup"], true);
        assert_eq!(got["groupId"], gid.as_str());
        assert_eq!(got["groupName"], "Team");
        assert_eq!(got["from"], a.phone.as_str(), "a phone, never a bare LID");
    }
    app.wait_message_status(hello["messageId"].as_str().unwrap(), "read")
        .await;

    // B replies to it in the group (quoting it by WhatsApp's id); everyone sees the quote.
    let reply = accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": b.uid, "groupId": gid, "text": "Hi!", "replyTo": pid }),
    )
    .await;
    let reply_pid = reply["providerMessageId"].as_str().unwrap();
    let at_c = inbound_at(&app, &c.uid, reply_pid).await;
    assert_eq!(at_c["replyTo"]["providerMessageId"], pid);
    assert_eq!(at_c["replyTo"]["from"], a.phone.as_str());
    let at_a = inbound_at(&app, &a.uid, reply_pid).await;
    assert_eq!(at_a["replyTo"]["fromMe"], true);

    // C shares a location and a poll with the group.
    let loc = accepted(
        &app,
        "/v1/developer/messages/send-location",
        json!({ "deviceUid": c.uid, "groupId": gid, "latitude": 30.0444, "longitude": 31.2357 }),
    )
    .await;
    let poll = accepted(
        &app,
        "/v1/developer/messages/send-poll",
        json!({ "deviceUid": c.uid, "groupId": gid, "question": "Lunch?", "options": ["Yes", "No"] }),
    )
    .await;
    for (sent, kind) in [(&loc, "location"), (&poll, "poll")] {
        let got = inbound_at(&app, &a.uid, sent["providerMessageId"].as_str().unwrap()).await;
        assert_eq!(
            (got["type"].as_str(), got["groupId"].as_str()),
            (Some(kind), Some(gid.as_str()))
        );
    }

    // A reacts to B's reply (received in the group): B and C see whose message it was.
    let (status, reacted) = app
        .post(
            &format!(
                "/v1/developer/messages/{}/reaction",
                at_a["messageId"].as_str().unwrap()
            ),
            json!({ "emoji": "🎉" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reacted}");
    assert_eq!(reacted["data"]["to"], gid.as_str());
    let reaction_pid = reacted["data"]["providerMessageId"].as_str().unwrap();
    let at_b = inbound_at(&app, &b.uid, reaction_pid).await;
    assert_eq!(at_b["type"], "reaction");
    assert_eq!(at_b["target"]["providerMessageId"], reply_pid);
    assert_eq!(at_b["target"]["fromMe"], true);
    let at_c = inbound_at(&app, &c.uid, reaction_pid).await;
    assert_eq!(at_c["target"]["from"], b.phone.as_str());

    // A edits its own group message; the members get the new text.
    let (status, edit) = app
        .call(
            Method::PATCH,
            &format!(
                "/v1/developer/messages/{}",
                hello["messageId"].as_str().unwrap()
            ),
            Some(json!({ "text": "Hello, team" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let edited = inbound_at(
        &app,
        &c.uid,
        edit["data"]["providerMessageId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (edited["type"].as_str(), edited["text"].as_str()),
        (Some("edit"), Some("Hello, team"))
    );

    // MegaMsg: phone_number takes the group id.
    let resp = app
        .client
        .post(format!("{}/api/whatsapp/messages/send", app.base))
        .header("Authorization", format!("Bearer {}", b.token))
        .header("X-Instance-Id", &b.uid)
        .json(&json!({ "phone_number": gid, "type": "contact",
                       "contacts": [{ "name": "Support", "phone": "+201001234567" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mega: Value = resp.json().await.unwrap();
    assert_eq!(mega["to"], gid.as_str(), "{mega}");
    let (_, sent) = app
        .get(&format!(
            "/v1/developer/messages/{}",
            mega["messageId"].as_str().unwrap()
        ))
        .await;
    let card = inbound_at(
        &app,
        &a.uid,
        sent["data"]["providerMessageId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(card["contacts"][0]["phone"], "+201001234567");

    // Typing in the group, and marking it read: A had unread group messages.
    let (status, presence) = app
        .post(
            "/v1/developer/presence",
            json!({ "deviceUid": a.uid, "groupId": gid, "state": "typing" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{presence}");
    assert_eq!(presence["data"]["groupId"], gid.as_str());
    let (status, read) = app
        .post(
            "/v1/developer/chats/read",
            json!({ "deviceUid": a.uid, "chat": gid }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read["data"]["marked"].as_u64().unwrap() >= 3, "{read}");
    let (_, again) = app
        .post(
            "/v1/developer/chats/read",
            json!({ "deviceUid": a.uid, "chat": gid }),
        )
        .await;
    assert_eq!(again["data"]["marked"], 0, "nothing is marked twice");

    // The message list filters by the group.
    let (_, listed) = app
        .get(&format!(
            "/v1/developer/messages?recipient={gid}&deviceUid={}",
            a.uid
        ))
        .await;
    assert!(listed["data"]["total"].as_u64().unwrap() >= 2, "{listed}");
}

#[tokio::test]
async fn only_admins_change_members_and_every_member_is_told() {
    let app = TestApp::spawn().await;
    let a = device(&app, "owner").await;
    let b = device(&app, "b").await;
    let c = device(&app, "c").await;
    let g = create_group(&app, &a, "Club", &[&b.phone]).await;
    assert!(g.get("notAdded").is_none(), "everyone was added: {g}");
    let gid = g["groupId"].as_str().unwrap().to_owned();
    let members = format!("/v1/developer/groups/{gid}/participants");

    // A plain member cannot add anyone.
    let (status, body) = app
        .post(&members, json!({ "deviceUid": b.uid, "add": [c.phone] }))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    // Nor see the invite link.
    let (status, body) = app
        .get(&format!(
            "/v1/developer/groups/{gid}/invite-link?deviceUid={}",
            b.uid
        ))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);

    // The owner promotes B; B adds C and a number not on WhatsApp.
    let (status, body) = app
        .post(
            &members,
            json!({ "deviceUid": a.uid, "promote": [b.phone] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["results"][0]["ok"], true, "{body}");
    let (status, body) = app
        .post(
            &members,
            json!({ "deviceUid": b.uid, "add": [c.phone, "+15550100000"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["data"]["results"].as_array().unwrap();
    assert_eq!(
        (results[0]["ok"].as_bool(), results[0]["action"].as_str()),
        (Some(true), Some("add"))
    );
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["error"], "not on WhatsApp");
    let added = inbound_where(&app, &c.uid, "the add notice", |m| {
        m["type"] == "participants"
    })
    .await;
    assert_eq!(added["from"], b.phone.as_str());
    assert_eq!(
        added["groupChange"]["participants"][0]["phone"],
        c.phone.as_str()
    );
    let promoted = inbound_where(&app, &b.uid, "the promote notice", |m| {
        m["groupChange"]["action"] == "promote"
    })
    .await;
    assert_eq!(promoted["groupChange"]["participants"][0]["isAdmin"], true);

    // The owner's invite link.
    let (status, link) = app
        .get(&format!(
            "/v1/developer/groups/{gid}/invite-link?deviceUid={}",
            a.uid
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{link}");
    assert!(
        link["data"]["inviteLink"]
            .as_str()
            .unwrap()
            .starts_with("https://chat.whatsapp.com/"),
        "{link}"
    );

    // Removing C: C is told, and no longer sees the group.
    let (status, body) = app
        .post(&members, json!({ "deviceUid": a.uid, "remove": [c.phone] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    inbound_where(&app, &c.uid, "the remove notice", |m| {
        m["groupChange"]["action"] == "remove"
    })
    .await;
    let (status, body) = app
        .get(&format!("/v1/developer/groups/{gid}?deviceUid={}", c.uid))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    // A send from C to the group it left is refused before it is queued.
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": c.uid, "groupId": gid, "text": "still here?" }),
        )
        .await;
    assert_invalid(status, &body, "groupId");

    // B leaves: A is told, B's list no longer has it.
    let (status, body) = app
        .post(
            &format!("/v1/developer/groups/{gid}/leave"),
            json!({ "deviceUid": b.uid }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let left = inbound_where(&app, &a.uid, "the leave notice", |m| {
        m["groupChange"]["action"] == "leave"
    })
    .await;
    assert_eq!(left["from"], b.phone.as_str());
    let (_, list) = app
        .get(&format!("/v1/developer/groups?deviceUid={}", b.uid))
        .await;
    assert_eq!(list["data"]["items"], json!([]));
}

#[tokio::test]
async fn group_requests_are_checked() {
    let app = TestApp::spawn().await;
    let a = device(&app, "a").await;
    let b = device(&app, "b").await;
    let g = create_group(&app, &a, "G", &[&b.phone]).await;
    let gid = g["groupId"].as_str().unwrap().to_owned();
    let send = "/v1/developer/messages/send";

    let (status, body) = app
        .post(
            send,
            json!({ "deviceUid": a.uid, "to": b.phone, "groupId": gid, "text": "x" }),
        )
        .await;
    assert_invalid(status, &body, "groupId");
    let (status, body) = app
        .post(send, json!({ "deviceUid": a.uid, "text": "x" }))
        .await;
    assert_invalid(status, &body, "to");
    for bad in [
        "120363",
        "+201001234567@g.us",
        "abc@g.us",
        "1203630123@s.whatsapp.net",
    ] {
        let (status, body) = app
            .post(
                send,
                json!({ "deviceUid": a.uid, "groupId": bad, "text": "x" }),
            )
            .await;
        assert_invalid(status, &body, "groupId");
    }
    // A well-formed id of a group the device is not in.
    let (status, body) = app
        .post(
            "/v1/developer/messages/send-poll",
            json!({ "deviceUid": a.uid, "groupId": "120363000000000001@g.us",
                    "question": "q", "options": ["a", "b"] }),
        )
        .await;
    assert_invalid(status, &body, "groupId");
    let (status, body) = app
        .get(&format!(
            "/v1/developer/groups/120363000000000001@g.us?deviceUid={}",
            a.uid
        ))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .get(&format!(
            "/v1/developer/groups/not-a-group?deviceUid={}",
            a.uid
        ))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);

    // Creating: subject and participants are checked, each number named.
    let (status, body) = app
        .post(
            "/v1/developer/groups",
            json!({ "deviceUid": a.uid, "subject": " ", "participants": ["12", b.phone, b.phone] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    for field in ["subject", "participants[0]", "participants[2]"] {
        assert!(message.contains(field), "{field} in {message}");
    }
    let (status, body) = app
        .post(
            "/v1/developer/groups",
            json!({ "deviceUid": a.uid, "subject": "x", "participants": [] }),
        )
        .await;
    assert_invalid(status, &body, "participants");
    let (status, body) = app
        .post(
            &format!("/v1/developer/groups/{gid}/participants"),
            json!({ "deviceUid": a.uid }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .post(
            &format!("/v1/developer/groups/{gid}/participants"),
            json!({ "deviceUid": a.uid, "kick": [b.phone] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Another account's device is not found; a group id in chats/read must be one.
    let (other_key, _) = app.other_account().await;
    let (status, body) = app
        .call_as(
            &other_key,
            Method::GET,
            &format!("/v1/developer/groups?deviceUid={}", a.uid),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(
            "/v1/developer/chats/read",
            json!({ "deviceUid": a.uid, "chat": "x@g.us" }),
        )
        .await;
    assert_invalid(status, &body, "chat");

    // MegaMsg: a malformed group id names phone_number.
    let resp = app
        .client
        .post(format!("{}/api/whatsapp/messages/send", app.base))
        .header("Authorization", format!("Bearer {}", a.token))
        .header("X-Instance-Id", &a.uid)
        .json(&json!({ "phone_number": "12@g.us", "text": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("phone_number"),
        "{body}"
    );
}

#[tokio::test]
async fn group_sends_keep_idempotency_and_budgets() {
    let app = TestApp::spawn().await;
    let a = device(&app, "a").await;
    let b = device(&app, "b").await;
    let g = create_group(&app, &a, "G", &[&b.phone]).await;
    let gid = g["groupId"].as_str().unwrap().to_owned();
    let body =
        json!({ "deviceUid": a.uid, "groupId": gid, "text": "once", "clientMessageId": "k1" });
    let first = accepted(&app, "/v1/developer/messages/send", body.clone()).await;
    let again = accepted(&app, "/v1/developer/messages/send", body).await;
    assert_eq!(first["messageId"], again["messageId"]);
    assert_eq!(again["deduplicated"], true);
    // The same key for the same text to a phone is another request.
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": a.uid, "to": b.phone, "text": "once", "clientMessageId": "k1" }),
        )
        .await;
    assert_invalid(status, &reply, "clientMessageId");

    app.set_limits(&a.uid, 2, 100, 100).await;
    accepted(
        &app,
        "/v1/developer/messages/send",
        json!({ "deviceUid": a.uid, "groupId": gid, "text": "two" }),
    )
    .await;
    let (status, reply) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": a.uid, "groupId": gid, "text": "three" }),
        )
        .await;
    assert_error(status, &reply, StatusCode::TOO_MANY_REQUESTS);
}
