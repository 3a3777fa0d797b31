//! The test harness: the real application on port 0 over a fresh SQLite file, an account
//! with a key, and helpers to call it and wait for state with deadlines.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use wagate::app::{self, AppParts, RunningApp};
use wagate::config::{Config, SandboxConfig, SendingConfig};
use wagate::engine::sandbox::SandboxNetwork;
use wagate::service::AccountService;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub key: String,
    pub config: Config,
    pub sandbox: Arc<SandboxNetwork>,
    /// The app opens its sandbox network from its journal (as `wagate serve` does), anew
    /// at each restart, instead of sharing one in-memory network across restarts.
    journaled: bool,
    running: Option<RunningApp>,
    /// Held so the data directory lives as long as the app.
    #[allow(dead_code)]
    dir: Arc<TempDir>,
}

pub fn test_config(dir: &TempDir) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        sandbox: SandboxConfig {
            link_delay_ms: 30,
            delivered_delay_ms: 60,
            read_delay_ms: 80,
            ..SandboxConfig::default()
        },
        sending: SendingConfig {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..SendingConfig::default()
        },
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(tweak, false).await
    }

    /// Like `spawn_with`, with the sandbox network journaled under the data directory, as
    /// in production: a restart loses its in-memory state but not what its server owes.
    pub async fn spawn_journaled(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(tweak, true).await
    }

    async fn spawn_inner(tweak: impl FnOnce(&mut Config), journaled: bool) -> Self {
        // Logs go to the test's captured output, shown when a test fails.
        wagate::telemetry::init(wagate::config::LogFormat::Pretty);
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(&dir);
        tweak(&mut config);
        let sandbox = SandboxNetwork::new(config.sandbox.clone());
        let accounts = AccountService::new(app::open_store(&config).await.unwrap());
        let (_account, key) = accounts.create_account("test account").await.unwrap();
        drop(accounts);
        let running = app::start(
            config.clone(),
            AppParts {
                sandbox: (!journaled).then(|| Arc::clone(&sandbox)),
                ..AppParts::default()
            },
        )
        .await
        .unwrap();
        let sandbox = Arc::clone(&running.services.sandbox);
        Self {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::new(),
            key: key.secret,
            config,
            sandbox,
            journaled,
            running: Some(running),
            dir,
        }
    }

    /// Another account on the same server: (key, account id).
    pub async fn other_account(&self) -> (String, String) {
        let (account, key) = self
            .running()
            .api
            .accounts
            .create_account("other")
            .await
            .unwrap();
        (key.secret, account.id.to_string())
    }

    pub fn running(&self) -> &RunningApp {
        self.running.as_ref().unwrap()
    }

    /// Graceful stop, then a new server on the same data directory (and the same
    /// simulated network, so hand-offs are counted across the restart).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = app::start(
            self.config.clone(),
            AppParts {
                sandbox: (!self.journaled).then(|| Arc::clone(&self.sandbox)),
                ..AppParts::default()
            },
        )
        .await
        .unwrap();
        self.sandbox = Arc::clone(&running.services.sandbox);
        self.base = format!("http://{}", running.addr);
        self.running = Some(running);
    }

    /// Another node of the same cluster: a second server in this process on the same
    /// data directory (so the same SQLite file) and the same simulated network, named
    /// `node_id`. Nodes on one SQLite file hear each other's commits only through the
    /// stores' slow polls and the lease rounds, as separate processes would.
    pub async fn join_as(&self, node_id: &str) -> TestApp {
        let mut config = self.config.clone();
        config.node_id = Some(node_id.to_owned());
        let running = app::start(
            config.clone(),
            AppParts {
                sandbox: Some(Arc::clone(&self.sandbox)),
                ..AppParts::default()
            },
        )
        .await
        .unwrap();
        TestApp {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::new(),
            key: self.key.clone(),
            config,
            sandbox: Arc::clone(&self.sandbox),
            journaled: false,
            running: Some(running),
            dir: Arc::clone(&self.dir),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.key, method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates a sandbox device and waits until it is connected; returns its data.
    pub async fn connected_device(&self, name: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/developer/devices",
                json!({ "name": name, "engine": "sandbox" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
        self.wait_device_status(&uid, "connected").await
    }

    pub async fn wait_device_status(&self, uid: &str, status: &str) -> Value {
        let path = format!("/v1/developer/devices/{uid}");
        eventually(&format!("device {uid} {status}"), || async {
            let (_, body) = self.get(&path).await;
            (body["data"]["status"] == status).then(|| body["data"].clone())
        })
        .await
    }

    /// Sets the device's daily, hourly and per-minute budgets.
    pub async fn set_limits(&self, device: &str, per_day: u32, per_hour: u32, per_minute: u32) {
        let (status, body) = self
            .call(
                Method::PATCH,
                &format!("/v1/developer/devices/{device}"),
                Some(json!({ "safety": {
                    "dailyLimit": per_day, "hourlyLimit": per_hour, "minuteLimit": per_minute
                } })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn send_text(&self, device: &str, to: &str, text: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/developer/messages/send",
                json!({ "deviceUid": device, "to": to, "text": text }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["data"].clone()
    }

    pub async fn wait_message_status(&self, id: &str, status: &str) -> Value {
        let path = format!("/v1/developer/messages/{id}");
        let last = std::sync::Mutex::new(Value::Null);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = self.get(&path).await;
            if body["data"]["status"] == status {
                return body["data"].clone();
            }
            *last.lock().unwrap() = body;
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for message {id} {status}; last seen: {}",
                    last.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn upload(&self, bytes: Vec<u8>, file_name: &str, mime: &str) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_owned())
            .mime_str(mime)
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .client
            .post(format!("{}/v1/developer/media/upload", self.base))
            .header("X-API-Key", &self.key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }
}

/// Polls `check` until it yields a value, failing after 10 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts the error shape and returns the message.
pub fn assert_error(status: StatusCode, body: &Value, want: StatusCode) -> String {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(body["code"].is_string(), "{body}");
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
        .to_owned()
}

/// Asserts a 422 that names `field`.
pub fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    let message = assert_error(status, body, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&field),
        "expected {field} in {fields:?}: {message}"
    );
    assert!(
        message.contains(field),
        "message should name {field}: {message}"
    );
}

/// A tiny valid PNG.
pub fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
        0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ]
}

/// The start of an Ogg stream (enough for type detection).
pub fn ogg() -> Vec<u8> {
    let mut v = b"OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
    v.extend_from_slice(&[0u8; 64]);
    v
}

/// Takes SQLite's write lock on the database from outside, as another process holding a
/// transaction would: every commit of the server blocks until the connection rolls back.
pub async fn lock_database(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}
