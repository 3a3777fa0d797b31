//! Devices: create, read with budgets, change, delete, validation.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_sandbox_device_links_itself_and_shows_its_budgets() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "Front desk", "engine": "sandbox" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["ok"], true);
    let data = &body["data"];
    let uid = data["deviceUid"].as_str().unwrap();
    assert!(uid.starts_with("dev_"));
    let token = data["instanceToken"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));

    let device = app.wait_device_status(uid, "connected").await;
    assert!(
        device.get("instanceToken").is_none(),
        "the token is shown once"
    );
    let phone = device["phoneNumber"].as_str().unwrap();
    assert!(phone.starts_with('+') && phone.len() >= 8, "{phone}");
    assert_eq!(device["engine"], "sandbox");
    let safety = &device["safety"];
    for f in [
        "dailyLimit",
        "hourlyLimit",
        "minuteLimit",
        "dailyRemaining",
        "hourlyRemaining",
        "minuteRemaining",
    ] {
        assert!(safety[f].is_u64(), "{f} in {safety}");
    }
    assert_eq!(safety["dailyRemaining"], safety["dailyLimit"]);

    let (_, list) = app.get("/v1/developer/devices").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["deviceUid"], uid);
}

#[tokio::test]
async fn devices_can_be_renamed_limited_and_deleted() {
    let app = TestApp::spawn().await;
    let d = app.connected_device("old").await;
    let uid = d["deviceUid"].as_str().unwrap();
    let path = format!("/v1/developer/devices/{uid}");
    let (status, body) = app
        .call(Method::PATCH, &path, Some(json!({ "name": "new", "safety": { "dailyLimit": 5, "hourlyLimit": 4, "minuteLimit": 3 } })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["name"], "new");
    assert_eq!(body["data"]["safety"]["dailyLimit"], 5);
    assert_eq!(body["data"]["safety"]["minuteRemaining"], 3);

    app.send_text(uid, "+201001234567", "one").await;
    let (_, body) = app.get(&path).await;
    assert_eq!(body["data"]["safety"]["dailyRemaining"], 4);

    let (status, body) = app.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get(&path).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/v1/developer/devices").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "to": "+201001234567", "text": "x" }),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_device_requests_name_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({ "engine": "sandbox" }), "name"),
        (json!({ "name": "", "engine": "sandbox" }), "name"),
        (
            json!({ "name": "x".repeat(101), "engine": "sandbox" }),
            "name",
        ),
        (json!({ "name": "a" }), "engine"),
        (json!({ "name": "a", "engine": "telegram" }), "engine"),
        (
            json!({ "name": "a", "engine": "sandbox", "color": "red" }),
            "color",
        ),
        (json!({ "name": 5, "engine": "sandbox" }), "name"),
        (
            json!({ "name": "a", "engine": "sandbox", "safety": { "dailyLimit": 0, "hourlyLimit": 1, "minuteLimit": 1 } }),
            "safety.dailyLimit",
        ),
        (
            json!({ "name": "a", "engine": "sandbox", "safety": { "dailyLimit": 1 } }),
            "safety.hourlyLimit",
        ),
        (
            json!({ "name": "a", "engine": "sandbox", "safety": { "dailyLimit": -1, "hourlyLimit": 1, "minuteLimit": 1 } }),
            "safety.dailyLimit",
        ),
        (
            json!({ "name": "a", "engine": "sandbox", "pacing": { "minDelayMs": 5, "maxDelayMs": 1, "typingIndicator": false } }),
            "pacing.minDelayMs",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = app.post("/v1/developer/devices", body.clone()).await;
        assert_invalid(status, &reply, field);
    }
    let (status, reply) = app.get("/v1/developer/devices/dev_doesnotexist").await;
    assert_error(status, &reply, StatusCode::NOT_FOUND);
    let (status, reply) = app.get("/v1/developer/devices/not-an-id").await;
    assert_error(status, &reply, StatusCode::NOT_FOUND);
    let (_, list) = app.get("/v1/developer/devices").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "no invalid request created a device"
    );
}

#[tokio::test]
async fn the_instance_token_can_be_rotated() {
    let app = TestApp::spawn().await;
    let (_, created) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "a", "engine": "sandbox" }),
        )
        .await;
    let uid = created["data"]["deviceUid"].as_str().unwrap();
    let first = created["data"]["instanceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{uid}/token"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["data"]["instanceToken"].as_str().unwrap();
    assert_eq!(second.len(), 64);
    assert_ne!(second, first);
}

/// The device list pages like the other lists (`page`, `limit` 1–100, default 20; reply
/// `{items, page, limit, total}`), oldest first; without paging parameters it keeps its
/// original shape, an array of every device, for clients written against it.
#[tokio::test]
async fn the_device_list_pages_like_the_other_lists() {
    let app = TestApp::spawn().await;
    let mut uids = Vec::new();
    for i in 0..25 {
        let (status, body) = app
            .post(
                "/v1/developer/devices",
                json!({ "name": format!("d{i}"), "engine": "sandbox" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        uids.push(body["data"]["deviceUid"].as_str().unwrap().to_owned());
    }
    let uids_of = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["deviceUid"].as_str().unwrap().to_owned())
            .collect()
    };

    // The default page: 20 devices, with the total.
    let (status, body) = app.get("/v1/developer/devices?page=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = &body["data"];
    assert_eq!(
        (page["page"].as_u64(), page["limit"].as_u64()),
        (Some(1), Some(20))
    );
    assert_eq!(page["total"], 25);
    assert_eq!(uids_of(&page["items"]), uids[..20]);
    assert!(
        page["items"][0]["safety"]["dailyRemaining"].is_number(),
        "{page}"
    );

    // Pages of 10 walk every device once, in order.
    let mut walked = Vec::new();
    for p in 1..=3 {
        let (_, body) = app
            .get(&format!("/v1/developer/devices?page={p}&limit=10"))
            .await;
        walked.extend(uids_of(&body["data"]["items"]));
    }
    assert_eq!(walked, uids);
    let (_, body) = app.get("/v1/developer/devices?page=4&limit=10").await;
    assert_eq!(body["data"]["items"], json!([]));
    assert_eq!(body["data"]["total"], 25);

    // Bounds, named like the other lists'.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=0", "page"),
    ] {
        let (status, body) = app.get(&format!("/v1/developer/devices?{query}")).await;
        let message = assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(message.contains(field), "{query}: {message}");
    }
    let (status, body) = app.get("/v1/developer/devices?cursor=x").await;
    assert_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);

    // Without paging parameters: the original array of every device.
    let (status, body) = app.get("/v1/developer/devices").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(uids_of(&body["data"]), uids);
}

/// An idle device costs nothing: once its send worker has found nothing to do, it waits
/// for an event with no timer armed at all (`worker_idle` is set only then), instead of
/// polling its queue every 30 s. An accept still wakes it at once.
#[tokio::test]
async fn an_idle_device_waits_without_a_timer_until_something_happens() {
    use std::sync::atomic::Ordering;
    let app = TestApp::spawn().await;
    let d = app.connected_device("idle").await;
    let uid: wagate_core::DeviceUid = d["deviceUid"].as_str().unwrap().parse().unwrap();
    let live = app.running().services.runtime.live(&uid).unwrap();
    eventually("the worker to wait without a timer", || async {
        live.worker_idle.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let before = live.worker_rounds.load(Ordering::SeqCst);

    let m = app
        .send_text(uid.as_str(), "+201001234567", "wakes it")
        .await;
    app.wait_message_status(m["messageId"].as_str().unwrap(), "sent")
        .await;
    assert!(live.worker_rounds.load(Ordering::SeqCst) > before);
    // Once the hand-off is acknowledged the queue is empty again: back to no timer.
    eventually("the worker to wait without a timer again", || async {
        live.worker_idle.load(Ordering::SeqCst).then_some(())
    })
    .await;
}
