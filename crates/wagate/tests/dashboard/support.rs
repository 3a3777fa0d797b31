//! The application under test (real server on port 0, fresh data directory, one
//! account) and plain-HTTP helpers for what a browser cannot show: headers, forged
//! requests.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use wagate::app::{self, AppParts, RunningApp};
use wagate::config::{Config, SandboxConfig, SendingConfig};
use wagate::engine::sandbox::SandboxNetwork;
use wagate::http::dashboard::session;
use wagate::service::AccountService;
use wagate_core::{AccountId, ApiKeyId};

pub struct TestApp {
    pub base: String,
    pub key: String,
    pub account: AccountId,
    pub key_id: ApiKeyId,
    pub config: Config,
    pub running: RunningApp,
    pub http: reqwest::Client,
    /// The simulated network the server's sandbox devices are on.
    pub sandbox: Arc<SandboxNetwork>,
    _dir: Arc<TempDir>,
}

impl TestApp {
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            sandbox: SandboxConfig {
                link_delay_ms: 100,
                delivered_delay_ms: 400,
                read_delay_ms: 600,
                ..SandboxConfig::default()
            },
            sending: SendingConfig {
                retry_base_ms: 100,
                retry_max_ms: 1_000,
                ..SendingConfig::default()
            },
            ..Config::default()
        };
        tweak(&mut config);
        let sandbox = SandboxNetwork::new(config.sandbox.clone());
        let accounts = AccountService::new(app::open_store(&config).await.unwrap());
        let (account, key) = accounts.create_account("dashboard test").await.unwrap();
        drop(accounts);
        let running = app::start(
            config.clone(),
            AppParts {
                sandbox: Some(Arc::clone(&sandbox)),
                ..AppParts::default()
            },
        )
        .await
        .unwrap();
        Self {
            base: format!("http://{}", running.addr),
            key: key.secret,
            account: account.id,
            key_id: key.key.id,
            config,
            running,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            sandbox,
            _dir: dir,
        }
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Calls the public API with the account's key.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A sandbox device, created over the API and waited for until connected.
    pub async fn connected_device(&self, name: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/v1/developer/devices",
                Some(json!({"name": name, "engine": "sandbox"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, d) = self
                .api(
                    reqwest::Method::GET,
                    &format!("/v1/developer/devices/{uid}"),
                    None,
                )
                .await;
            if d["data"]["status"] == "connected" {
                return uid;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "device never connected: {d}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.running.shutdown().await;
    }
}

/// Value of `name` among a response's Set-Cookie headers, with the whole header line.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|line| {
            let value = line[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned();
            (value, line.to_owned())
        })
}

/// The `value="…"` of the hidden `csrf` input of a page.
pub fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("no csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The CSRF token of the dashboard page (its `csrf-token` meta tag).
pub fn csrf_meta(html: &str) -> String {
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .expect("no csrf meta")
        + 27;
    html[at..].split('"').next().unwrap().to_owned()
}

/// Signs in over plain HTTP like a browser would: (session cookie, CSRF token of the
/// page, the whole Set-Cookie line).
pub async fn http_sign_in(app: &TestApp, headers: &[(&str, &str)]) -> (String, String, String) {
    http_sign_in_as(app, &app.key, headers).await
}

/// [`http_sign_in`] with another API key.
pub async fn http_sign_in_as(
    app: &TestApp,
    key: &str,
    headers: &[(&str, &str)],
) -> (String, String, String) {
    let mut req = app.http.get(format!("{}/signin", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let page = req.send().await.unwrap();
    let (pre, _) = set_cookie(&page, session::SIGNIN_COOKIE).unwrap();
    let csrf = csrf_field(&page.text().await.unwrap());
    let mut req = app
        .http
        .post(format!("{}/signin", app.base))
        .header("cookie", format!("{}={pre}", session::SIGNIN_COOKIE))
        .form(&[("csrf", csrf.as_str()), ("api_key", key)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (value, line) = set_cookie(&resp, session::SESSION_COOKIE).unwrap();
    let page = app
        .http
        .get(format!("{}/", app.base))
        .header("cookie", format!("{}={value}", session::SESSION_COOKIE))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let token = csrf_meta(&page.text().await.unwrap());
    (value, token, line)
}
