//! Health, readiness, the OpenAPI document and its reference page.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let spec: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/developer/messages/send",
        "/v1/developer/messages/send-media",
        "/v1/developer/messages/send-voice",
        "/v1/developer/messages/check-whatsapp",
        "/v1/developer/media/upload",
        "/v1/developer/devices",
        "/v1/developer/devices/{deviceUid}",
        "/v1/developer/messages/{messageId}",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let send = &spec["components"]["schemas"]["SendTextRequest"];
    let required: Vec<&str> = send["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["deviceUid", "to", "text"]);
    let page = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/openapi.json"));
}

#[tokio::test]
async fn unknown_paths_get_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/v1/developer/nothing-here").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
}
