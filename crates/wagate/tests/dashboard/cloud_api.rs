//! A Cloud API device through the dashboard, in a real browser, against the fake Graph
//! API the Cloud API's tests share (`wagate_engine_tests::graph`): created with its credentials, shown with the callback URL Meta
//! needs (never its secrets), its token replaced, and a template sent from the API
//! sandbox.

use crate::support::TestApp;
use crate::webdriver::Browser;
use crate::{BROWSER, go, sign_in};
use reqwest::Method;
use serde_json::json;

use wagate_engine_tests::graph as fake_graph;

const PNID: &str = "106540352242922";

/// Picks an option of a `<select>` as a user would, so its change handler runs.
async fn choose(b: &Browser, css: &str, value: &str) {
    b.js(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
         s.dispatchEvent(new Event('change'));",
        json!([css, value]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_api_device_is_set_up_rekeyed_and_sends_a_template_from_the_browser() {
    let _one = BROWSER.lock().await;
    let fake = fake_graph::FakeGraph::start().await;
    fake.add_number(PNID, "EAAG-first", "+1 555-000-1111");
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|c| c.cloud_api.graph_url = base).await;
    let b = Browser::start().await;
    sign_in(&b, &app).await;

    b.fill("#new-device-name", "Official line").await;
    choose(&b, "#new-device-engine", "cloud-api").await;
    b.fill("#new-cloud-pnid", PNID).await;
    b.fill("#new-cloud-token", "EAAG-first").await;
    b.fill("#new-cloud-secret", "app-secret").await;
    b.fill("#new-cloud-verify", "my-verify-token").await;
    b.click("#create-device-submit").await;
    b.wait_text("#devices-body", 10, |t| t.contains("Official line"))
        .await;
    b.click("#new-device-link").await;
    b.wait_text("#device-status", 10, |t| t == "connected")
        .await;
    let hook = b
        .wait_text("#cloud-webhook-url", 10, |t| !t.is_empty())
        .await;
    let uid = b.url().await.rsplit('/').next().unwrap().to_owned();
    assert!(
        hook.ends_with(&format!("/webhooks/cloud-api/{uid}")),
        "{hook}"
    );
    assert_eq!(b.text("#cloud-verify-token").await, "my-verify-token");
    b.screenshot("cloud-api-device").await;
    let page = b.js("return document.body.innerText;", json!([])).await;
    assert!(
        !page.to_string().contains("EAAG-first"),
        "the token is not shown"
    );

    // A new token: only that field is sent, and the device reconnects with it.
    fake.add_number(PNID, "EAAG-second", "+1 555-000-1111");
    b.fill("#edit-cloud-token", "EAAG-second").await;
    b.fill("#edit-cloud-waba", "102290129340398").await;
    b.click("#save-cloud").await;
    b.wait_text("#cloud-result", 10, |t| t.starts_with("Saved"))
        .await;
    b.wait_text("#cloud-ids", 10, |t| t.contains("102290129340398"))
        .await;
    let (_, d) = app
        .api(Method::GET, &format!("/v1/developer/devices/{uid}"), None)
        .await;
    assert_eq!(
        d["data"]["cloudApi"]["businessAccountId"],
        "102290129340398"
    );

    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    choose(&b, "#sb-kind", "template").await;
    b.fill("#sb-template", "order_ready").await;
    b.fill(
        "#sb-template-components",
        r#"[{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]"#,
    )
    .await;
    b.click("#sb-send").await;
    let curl = b.wait_text("#sb-curl", 10, |t| t.contains("curl")).await;
    assert!(
        curl.contains("/v1/developer/messages/send-template"),
        "{curl}"
    );
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    b.wait_text("#sb-status", 10, |t| t == "sent").await;
    let sent = fake.sends();
    let template = &sent.last().expect("a send reached Meta")["template"];
    assert_eq!(template["name"], "order_ready");
    assert_eq!(template["components"][0]["parameters"][0]["text"], "42");
    let last = fake
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.path.ends_with("/messages"))
        .unwrap();
    assert_eq!(last.auth.as_deref(), Some("Bearer EAAG-second"));
    b.quit().await;
    app.stop().await;
}
