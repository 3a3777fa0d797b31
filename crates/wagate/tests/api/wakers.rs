//! Wakers: the live event stream and webhook delivery wake on the store's commit
//! announcements, so every write path reaches them at once, including the ones that
//! used to wait for the one-second poll because nobody bumped a counter for them (device
//! deletion failing its pending sends).

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Reads server-sent events until one matches `want`; its data and when it arrived.
async fn read_until(
    stream: &mut reqwest::Response,
    buf: &mut String,
    what: &str,
    want: impl Fn(&str, &Value) -> bool,
) -> (Value, Instant) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&data).unwrap();
            if want(&event, &data) {
                return (data, Instant::now());
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting on the event stream for {what}"))
            .unwrap()
            .expect("the event stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_deleted_devices_failed_sends_reach_the_event_stream_without_waiting_for_the_poll() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("doomed").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    // Scheduled an hour ahead: still queued when the device is deleted.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "to": "+201001234567", "text": "never", "sendAt": later }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let message = body["data"]["messageId"].as_str().unwrap().to_owned();

    let mut stream = app
        .client
        .get(format!("{}/v1/developer/events", app.base))
        .header("X-API-Key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buf = String::new();
    // An inbound message wakes the stream, which reads it and goes back to sleep: from
    // here, only a wake-up (or its one-second poll) makes it look again.
    let (status, reply) = app
        .post(
            "/v1/developer/sandbox/inbound",
            json!({ "deviceUid": uid, "from": "+201001234567", "text": "hi" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    read_until(&mut stream, &mut buf, "the inbound message", |event, _| {
        event == "message.received"
    })
    .await;

    let deleting = Instant::now();
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/v1/developer/devices/{uid}"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (failed, arrived) = read_until(&mut stream, &mut buf, "the failed send", |event, d| {
        event == "message.status" && d["messageId"] == message.as_str()
    })
    .await;
    assert_eq!(failed["status"], "failed");
    let took = arrived - deleting;
    // Waiting for the poll would take about a second from the last wake-up, which came
    // before the deletion started.
    assert!(
        took < Duration::from_millis(700),
        "the deletion's event took {took:?} to reach the stream"
    );
}
