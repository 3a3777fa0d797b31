//! `/metrics` is not public: without a configured token it does not exist on the main
//! listener, with one it needs that bearer token, and `metrics.listen` serves it on a
//! separate address. By default it has no per-device series.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "metrics-token-0123456789";

async fn scrape(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    assert_eq!(v["ok"], false, "{v}");
    v["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn without_a_token_metrics_do_not_exist_on_the_main_listener() {
    let app = TestApp::spawn().await;
    app.connected_device("phone").await;
    let url = format!("{}/metrics", app.base);
    for token in [None, Some(TOKEN)] {
        let (status, body) = scrape(&url, token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(error_code(&body), "not_found");
    }
}

#[tokio::test]
async fn the_token_is_required_and_series_are_totals_by_default() {
    let app = TestApp::spawn_with(|c| c.metrics.token = Some(TOKEN.into())).await;
    let device = app.connected_device("phone").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    let url = format!("{}/metrics", app.base);

    let (status, body) = scrape(&url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous: {body}");
    assert_eq!(error_code(&body), "unauthorized");
    let (status, body) = scrape(&url, Some("metrics-token-0123456780")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong token: {body}");
    // The API key of an account is not a metrics token.
    let (status, _) = scrape(&url, Some(&app.key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let (status, body) = scrape(&url, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("wagate_devices{engine=\"sandbox\",state=\"connected\"} 1"),
        "{body}"
    );
    assert!(body.contains("wagate_devices_running 1"), "{body}");
    let node = std::fs::read_to_string(app.config.data_dir.join("node-id")).unwrap();
    assert!(
        body.contains(&format!("wagate_node_info{{node=\"{}\"}} 1", node.trim())),
        "which node serves them: {body}"
    );
    assert!(
        body.contains("wagate_messages_sent_total{engine=\"sandbox\"} 0"),
        "{body}"
    );
    assert!(!body.contains(&uid), "no device labels by default: {body}");
}

#[tokio::test]
async fn per_device_series_are_an_opt_in() {
    let app = TestApp::spawn_with(|c| {
        c.metrics.token = Some(TOKEN.into());
        c.metrics.per_device = true;
    })
    .await;
    let device = app.connected_device("phone").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    let (status, body) = scrape(&format!("{}/metrics", app.base), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&format!("wagate_device_connected{{device=\"{uid}\"}} 1")),
        "{body}"
    );
}

#[tokio::test]
async fn a_separate_loopback_listener_serves_metrics_alone() {
    let app =
        TestApp::spawn_with(|c| c.metrics.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    app.connected_device("phone").await;
    let metrics = app.running().metrics_addr.expect("metrics listener");
    assert_ne!(metrics, app.running().addr);

    let (status, body) = scrape(&format!("http://{metrics}/metrics"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("wagate_devices_running 1"), "{body}");
    // Nothing else is served there…
    let (status, body) = scrape(&format!("http://{metrics}/v1/developer/devices"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // …and the main listener still has no anonymous metrics.
    let (status, _) = scrape(&format!("{}/metrics", app.base), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_guards_the_separate_listener_too() {
    let app = TestApp::spawn_with(|c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics.token = Some(TOKEN.into());
    })
    .await;
    let url = format!("http://{}/metrics", app.running().metrics_addr.unwrap());
    assert_eq!(scrape(&url, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(scrape(&url, Some(TOKEN)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn settings_that_would_expose_metrics_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir);
    config.metrics.listen = Some("0.0.0.0:0".parse().unwrap());
    let err = match wagate::app::start(config, wagate::app::AppParts::default()).await {
        Ok(_) => panic!("a public metrics listener without a token started"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("metrics.token"), "{err}");
}
