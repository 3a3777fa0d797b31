//! Durability: idempotency (also concurrent and across restarts), retries, permanent
//! failures, budgets, scheduling, and restarts with queued messages.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_repeated_client_message_id_returns_the_original_and_sends_once() {
    let mut app = TestApp::spawn().await;
    let device = app.connected_device("i").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    let body = json!({ "deviceUid": uid, "to": "+201001234567", "text": "{a|b|c|d|e|f}", "clientMessageId": "order-42" });
    let (s1, first) = app.post("/v1/developer/messages/send", body.clone()).await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    assert!(first["data"].get("deduplicated").is_none());
    let (s2, second) = app.post("/v1/developer/messages/send", body.clone()).await;
    assert_eq!(s2, StatusCode::ACCEPTED);
    assert_eq!(second["data"]["messageId"], first["data"]["messageId"]);
    assert_eq!(second["data"]["text"], first["data"]["text"]);
    assert_eq!(second["data"]["deduplicated"], true);

    // Concurrent duplicates of a new key: one message.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = format!("{}/v1/developer/messages/send", app.base);
        let key = app.key.clone();
        let body = json!({ "deviceUid": uid, "to": "+201001234567", "text": "burst", "clientMessageId": "burst-1" });
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("X-API-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            r.json::<serde_json::Value>().await.unwrap()["data"]["messageId"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let id = first["data"]["messageId"].as_str().unwrap().to_owned();
    let read = app.wait_message_status(&id, "read").await;
    app.wait_message_status(&ids[0], "read").await;

    // After a restart the key still dedupes.
    app.restart().await;
    let (s3, third) = app.post("/v1/developer/messages/send", body).await;
    assert_eq!(s3, StatusCode::ACCEPTED);
    assert_eq!(third["data"]["messageId"], id.as_str());
    assert_eq!(third["data"]["status"], "read");

    // The same key on another device is another message.
    let other = app.connected_device("j").await;
    let (_, fourth) = app
        .post("/v1/developer/messages/send", json!({ "deviceUid": other["deviceUid"], "to": "+201001234567", "text": "x", "clientMessageId": "order-42" }))
        .await;
    assert_ne!(fourth["data"]["messageId"], id.as_str());

    let (_, list) = app
        .get(&format!("/v1/developer/messages?deviceUid={uid}"))
        .await;
    assert_eq!(list["data"]["total"], 2);
    assert_eq!(
        app.sandbox
            .handed_count(read["providerMessageId"].as_str().unwrap()),
        1
    );
}

#[tokio::test]
async fn transient_errors_are_retried_and_permanent_ones_fail_with_a_reason() {
    // A base long enough to see: the retry must wait at least its lower jitter bound.
    let app = TestApp::spawn_with(|c| c.sending.retry_base_ms = 400).await;
    let device = app.connected_device("r").await;
    let uid = device["deviceUid"].as_str().unwrap();
    // The sandbox fails numbers ending in 0500 once per message.
    let flaky = app.send_text(uid, "+201001230500", "retry me").await;
    let read = app
        .wait_message_status(flaky["messageId"].as_str().unwrap(), "read")
        .await;
    let pid = read["providerMessageId"].as_str().unwrap();
    assert_eq!(app.sandbox.handed_count(pid), 1);
    // Retried after the backoff (400 ms − 20% jitter at least), not at once: a lower
    // bound, which a slow machine only makes easier to meet.
    let times = app.sandbox.handoff_times(pid);
    assert_eq!(times.len(), 2, "one failed hand-off, one retry");
    let gap = times[1] - times[0];
    assert!(
        gap >= std::time::Duration::from_millis(320),
        "retried after {gap:?}, before the backoff"
    );

    let nobody = app.send_text(uid, "+201001230000", "hello?").await;
    let failed = app
        .wait_message_status(nobody["messageId"].as_str().unwrap(), "failed")
        .await;
    assert!(
        failed["failureReason"]
            .as_str()
            .unwrap()
            .contains("not on WhatsApp"),
        "{failed}"
    );
    let steps: Vec<&str> = failed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "failed"]);
}

#[tokio::test]
async fn sends_past_the_daily_budget_are_429() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("b").await;
    let uid = device["deviceUid"].as_str().unwrap();
    app.set_limits(uid, 2, 10, 10).await;
    app.send_text(uid, "+201001234567", "1").await;
    app.send_text(uid, "+201001234567", "2").await;
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "to": "+201001234567", "text": "3" }),
        )
        .await;
    let message = assert_error(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(message.contains("daily limit of 2"), "{message}");
    let (_, d) = app.get(&format!("/v1/developer/devices/{uid}")).await;
    assert_eq!(d["data"]["safety"]["dailyRemaining"], 0);
    let (_, list) = app.get("/v1/developer/messages").await;
    assert_eq!(list["data"]["total"], 2);
}

#[tokio::test]
async fn the_hourly_budget_holds_sends_back_instead_of_dropping_them() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("h").await;
    let uid = device["deviceUid"].as_str().unwrap();
    app.set_limits(uid, 100, 1, 10).await;
    let first = app.send_text(uid, "+201001234567", "first").await;
    app.wait_message_status(first["messageId"].as_str().unwrap(), "read")
        .await;
    let live = app
        .running()
        .services
        .runtime
        .live(&uid.parse().unwrap())
        .unwrap();
    let round = live.worker_rounds.load(std::sync::atomic::Ordering::SeqCst);
    let second = app.send_text(uid, "+201001234567", "second").await;
    let (_, d) = app.get(&format!("/v1/developer/devices/{uid}")).await;
    assert_eq!(d["data"]["safety"]["hourlyRemaining"], 0);
    // Held: a worker round that began after the send found the budget spent and went to
    // sleep without claiming; every later round of this hour does the same.
    held_after(&live, round).await;
    let (_, m) = app
        .get(&format!(
            "/v1/developer/messages/{}",
            second["messageId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(m["data"]["status"], "queued");
    // Raising the budget releases it.
    app.set_limits(uid, 100, 10, 10).await;
    app.wait_message_status(second["messageId"].as_str().unwrap(), "read")
        .await;
}

/// Waits until a send-worker round that began after `round` (a `worker_rounds` value read
/// before the send) found the device's budgets spent and went to sleep until the window
/// frees: the worker's own signal, no sleep. Returns when (ms since epoch) it looked.
async fn held_after(live: &wagate::runtime::DeviceLive, round: u64) -> i64 {
    use std::sync::atomic::Ordering;
    eventually(
        "the send worker to hold the queue for the budget",
        || async {
            (live.budget_held_round.load(Ordering::SeqCst) > round)
                .then(|| live.budget_held_at.load(Ordering::SeqCst))
        },
    )
    .await
}

/// The per-minute budget: with `minuteLimit` 1 the second message of a clock minute is not
/// handed over in that minute. The budget's own per-minute hand-off counts are read from
/// the database: a send that follows one made in the same minute must be held by the
/// worker while that minute lasts, and no minute may ever count two hand-offs. A minute may
/// turn between two sends (then the next one goes at once, legitimately), so the test sends
/// up to three; minutes do not turn three times in a few seconds.
#[tokio::test]
async fn the_per_minute_budget_holds_the_next_send_until_the_minute_turns() {
    use std::sync::atomic::Ordering;
    let app = TestApp::spawn().await;
    let device = app.connected_device("pm").await;
    let uid = device["deviceUid"].as_str().unwrap();
    app.set_limits(uid, 100, 100, 1).await;
    let live = app
        .running()
        .services
        .runtime
        .live(&uid.parse().unwrap())
        .unwrap();
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        app.config.database_path().display()
    ))
    .await
    .unwrap();
    // (minute, hand-offs) as the budget counts them.
    let minutes = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT minute, handed FROM device_counters WHERE device_uid = ? AND handed > 0",
        )
        .bind(uid)
        .fetch_all(&db)
        .await
        .unwrap()
    };
    let handed = || async { minutes().await.iter().map(|(_, n)| n).sum::<i64>() };
    let mut held = false;
    for attempt in 0..3i64 {
        let round = live.worker_rounds.load(Ordering::SeqCst);
        app.send_text(uid, "+201001234567", &format!("m{attempt}"))
            .await;
        // Either it is handed over (allowed when its minute has none yet), or the worker
        // holds it: a round after the send found the budget spent and it is not handed.
        let went = eventually("the send to be handed over or held", || async {
            if handed().await > attempt {
                return Some(true);
            }
            let held_at = live.budget_held_round.load(Ordering::SeqCst) > round;
            (held_at && handed().await == attempt).then_some(false)
        })
        .await;
        if !went {
            assert!(attempt > 0, "the first send of a minute is never held");
            held = true;
            break;
        }
    }
    let minutes = minutes().await;
    assert!(
        minutes.iter().all(|(_, n)| *n <= 1),
        "a minute counted more hand-offs than its limit: {minutes:?}"
    );
    assert!(held, "three sends in a row went at once: {minutes:?}");
    db.close().await;
}

#[tokio::test]
async fn scheduled_sends_wait_for_their_time() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("t").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let (status, body) = app
        .post("/v1/developer/messages/send", json!({ "deviceUid": uid, "to": "+201001234567", "text": "later", "sendAt": at.to_rfc3339() }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["data"]["sendAt"].is_string());
    let id = body["data"]["messageId"].as_str().unwrap();
    let (_, m) = app.get(&format!("/v1/developer/messages/{id}")).await;
    assert_eq!(m["data"]["status"], "queued");
    let read = app.wait_message_status(id, "read").await;
    let sent_at = read["history"][1]["at"].as_str().unwrap();
    let sent_at = chrono::DateTime::parse_from_rfc3339(sent_at).unwrap();
    assert!(
        sent_at >= at - chrono::Duration::milliseconds(1),
        "sent at {sent_at}, scheduled {at}"
    );
}

#[tokio::test]
async fn a_restart_with_queued_messages_sends_each_exactly_once() {
    let mut app = TestApp::spawn().await;
    let device = app.connected_device("q").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(800)).to_rfc3339();
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, body) = app
            .post("/v1/developer/messages/send", json!({ "deviceUid": uid, "to": "+201001234567", "text": format!("m{i}"), "sendAt": at }))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.push(body["data"]["messageId"].as_str().unwrap().to_owned());
    }
    // A few immediate sends may be in flight as the server stops.
    for i in 0..10 {
        ids.push(
            app.send_text(&uid, "+201001234567", &format!("now{i}"))
                .await["messageId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.restart().await;
    for id in &ids {
        let m = app.wait_message_status(id, "read").await;
        assert_eq!(
            app.sandbox
                .handed_count(m["providerMessageId"].as_str().unwrap()),
            1,
            "{m}"
        );
    }
    let handed: u32 = app.sandbox.handed().values().sum();
    assert_eq!(handed, 20);
}

#[tokio::test]
async fn a_hand_off_without_a_server_ack_is_sent_again_under_the_same_id() {
    let app = TestApp::spawn_with(|c| c.sending.ack_timeout_ms = 300).await;
    let device = app.connected_device("ack").await;
    let uid = device["deviceUid"].as_str().unwrap();
    // The sandbox loses the first hand-off to numbers ending in 0700: the engine said
    // "written", but no ack will come. The message must not stay queued for ever.
    let m = app.send_text(uid, "+201001230700", "are you there?").await;
    let read = app
        .wait_message_status(m["messageId"].as_str().unwrap(), "read")
        .await;
    let pid = read["providerMessageId"].as_str().unwrap();
    assert!(
        app.sandbox.lost_first_handoff(pid),
        "the first hand-off was lost"
    );
    assert_eq!(app.sandbox.handed_count(pid), 1, "delivered once");
    let steps: Vec<&str> = read["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["queued", "sent", "delivered", "read"]);
}

/// The sandbox's simulated server keeps what it owes across a restart of the process, as
/// WhatsApp's server would: receipts due after the server went down still come (to a
/// sandbox peer, the message too, exactly once), so accepted messages reach `read`.
#[tokio::test]
async fn receipts_the_sandbox_owed_arrive_after_a_restart() {
    let mut app = TestApp::spawn_journaled(|c| {
        // Nothing owed comes before the restart.
        c.sandbox.delivered_delay_ms = 3_600_000;
    })
    .await;
    let a = app.connected_device("a").await;
    let b = app.connected_device("b").await;
    let a_uid = a["deviceUid"].as_str().unwrap().to_owned();
    let b_uid = b["deviceUid"].as_str().unwrap().to_owned();
    let to_outside = app.send_text(&a_uid, "+201001234567", "outside").await;
    let to_peer = app
        .send_text(&a_uid, b["phoneNumber"].as_str().unwrap(), "to b")
        .await;
    let ids = [
        to_outside["messageId"].as_str().unwrap().to_owned(),
        to_peer["messageId"].as_str().unwrap().to_owned(),
    ];
    for id in &ids {
        app.wait_message_status(id, "sent").await;
    }
    assert_eq!(app.sandbox.owed_count(), 2);

    app.stop().await;
    app.config.sandbox.delivered_delay_ms = 20;
    app.config.sandbox.read_delay_ms = 20;
    app.restart().await;
    for id in &ids {
        app.wait_message_status(id, "read").await;
    }
    let (_, inbound) = app
        .get(&format!("/v1/developer/inbound?deviceUid={b_uid}"))
        .await;
    let texts: Vec<_> = inbound["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("to b")], "{inbound}");
    eventually("nothing owed", || async {
        (app.sandbox.owed_count() == 0).then_some(())
    })
    .await;
}
