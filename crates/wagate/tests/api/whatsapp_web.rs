//! The whatsapp-web engine through the API, without WhatsApp: a device pointed at a closed
//! local port keeps retrying with growing backoff (no busy loop), and DELETE removes its
//! keys from disk.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_device_that_cannot_reach_whatsapp_backs_off_and_delete_cleans_up() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = TestApp::spawn_with(|c| {
        c.whatsapp_web.ws_url = Some(format!("ws://127.0.0.1:{closed}/ws/chat"));
        c.whatsapp_web.version = Some("2.3000.1023456789".into());
        c.whatsapp_web.start_jitter_ms = 0;
        c.metrics.token = Some("whatsapp-web-metrics".into());
        c.metrics.per_device = true;
    })
    .await;
    let (status, body) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "phone", "engine": "whatsapp-web" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
    // whatsapp-web devices pace sends like a human by default.
    assert!(body["data"]["pacing"]["maxDelayMs"].as_u64().unwrap() > 0);

    let device = app.wait_device_status(&uid, "reconnecting").await;
    assert!(
        device["statusReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{device}"
    );
    // Retries happen, but with backoff (1 s, 1 s, 2 s, …), not in a loop: two more
    // reconnects take at least two seconds. A lower bound cannot fail on a slow machine;
    // a busy loop makes them in milliseconds.
    let reconnects = |d: &serde_json::Value| d["counters"]["reconnects"].as_u64().unwrap();
    let first = eventually("a first reconnect", || async {
        let (_, d) = app.get(&format!("/v1/developer/devices/{uid}")).await;
        (reconnects(&d["data"]) >= 1).then(|| reconnects(&d["data"]))
    })
    .await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let (_, d) = app.get(&format!("/v1/developer/devices/{uid}")).await;
        if reconnects(&d["data"]) >= first + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "it keeps trying: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_500),
        "two reconnects in {took:?} is a busy loop"
    );

    // No QR while it cannot reach WhatsApp, and no number checks either.
    let (status, body) = app.get(&format!("/v1/developer/devices/{uid}/qr")).await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = app
        .post(
            "/v1/developer/messages/check-whatsapp",
            json!({ "deviceUid": uid, "numbers": ["+201001234567"] }),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_GATEWAY);
    // A send is accepted and waits for the connection.
    let m = app.send_text(&uid, "+201001234567", "waits").await;
    assert_eq!(m["status"], "queued");

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth("whatsapp-web-metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "wagate_device_reconnects_total{{device=\"{uid}\"}}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("wagate_device_connected{{device=\"{uid}\"}} 0")),
        "{metrics}"
    );

    // The device's protocol state lives in wagate's database (no file per device).
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        app.config.database_path().display()
    ))
    .await
    .unwrap();
    let rows = || {
        let db = db.clone();
        let uid = uid.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT count(*) FROM wa_devices WHERE device_key = ?1)
                      + (SELECT count(*) FROM wa_prekeys WHERE device_key = ?1)",
            )
            .bind(uid)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let files = || {
        std::fs::read_dir(app.config.devices_dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&uid))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(files(), 0, "no store file per device");
    assert!(rows().await > 0, "the device has keys in the database");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/developer/devices/{uid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows().await, 0, "DELETE removes the device's keys");
    let (_, m) = app
        .get(&format!(
            "/v1/developer/messages/{}",
            m["messageId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        m["data"]["status"], "failed",
        "queued sends of a deleted device fail with a reason"
    );
}

#[tokio::test]
async fn linking_endpoints_explain_what_a_sandbox_device_cannot_do() {
    let app = TestApp::spawn().await;
    let d = app.connected_device("s").await;
    let uid = d["deviceUid"].as_str().unwrap();
    let (status, body) = app.get(&format!("/v1/developer/devices/{uid}/qr")).await;
    let message = assert_error(status, &body, StatusCode::CONFLICT);
    assert!(message.contains("already linked"), "{message}");
    let (status, body) = app
        .post(
            &format!("/v1/developer/devices/{uid}/pair-code"),
            json!({ "phone": "+201001234567" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = app
        .post(
            &format!("/v1/developer/devices/{uid}/pair-code"),
            json!({ "phone": "x" }),
        )
        .await;
    assert_invalid(status, &body, "phone");
    let (status, body) = app
        .get(&format!("/v1/developer/devices/{uid}/qr?format=gif"))
        .await;
    assert_invalid(status, &body, "format");

    // Logout unlinks; connect links again.
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{uid}/logout"), json!(null))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.wait_device_status(uid, "logged_out").await;
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "to": "+201001234567", "text": "x" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT);
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{uid}/connect"), json!(null))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_device_status(uid, "connected").await;
    app.send_text(uid, "+201001234567", "back").await;
}

/// This test binary links the simulator, so its whatsapp-rust skips WhatsApp's
/// certificate check (`danger-skip-cert-chain-verify`, unified into every crate of the
/// build): the engine's canary notices, and a whatsapp-web device that would dial
/// WhatsApp (no `ws_url`, or a `wss://` relay that may lead to it) fails with the cause
/// instead of connecting. A plaintext loopback `ws_url` is a simulator and stays allowed
/// (the test above runs against one).
#[tokio::test]
async fn a_build_without_certificate_checks_refuses_to_dial_whatsapp() {
    for ws_url in [None, Some("wss://127.0.0.1:9/ws/chat")] {
        let app = TestApp::spawn_with(|c| {
            c.whatsapp_web.ws_url = ws_url.map(str::to_owned);
            c.whatsapp_web.version = Some("2.3000.1023456789".into());
            c.whatsapp_web.start_jitter_ms = 0;
        })
        .await;
        let (status, body) = app
            .post(
                "/v1/developer/devices",
                json!({ "name": "phone", "engine": "whatsapp-web" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
        let device = app.wait_device_status(&uid, "failed").await;
        let reason = device["statusReason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("danger-skip-cert-chain-verify") && reason.contains("refusing"),
            "{ws_url:?}: {device}"
        );
        assert_eq!(device["counters"]["reconnects"], 0, "{device}");
    }
}
