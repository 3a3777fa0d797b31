//! A minimal W3C WebDriver client over reqwest, driving Debian's chromium through a
//! chromedriver this harness starts on a free port.
//!
//! Hand-written rather than a client crate: it is the dozen commands these tests use,
//! and adding a crate would change the shared Cargo.lock under other engineers' feet.

use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([
        PathBuf::from("/usr/bin"),
        PathBuf::from("/usr/lib/chromium"),
    ]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium. Fails loudly when they are missing:
    /// these tests must not pass by not running.
    pub async fn start() -> Self {
        let chromium = find_binary(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| {
                panic!(
                    "chromium is not installed: the dashboard tests drive a real browser. \
                 Install it with `apt-get update && apt-get install -y chromium chromium-driver`."
                )
            });
        let chromedriver = find_binary(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the dashboard tests drive a real browser. \
                 Install it with `apt-get update && apt-get install -y chromium chromium-driver`."
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut browser = Self {
            http,
            base,
            session: String::new(),
            driver,
            _profile: profile,
        };
        let v = browser.raw("POST", "/session", Some(caps)).await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        browser
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(
            status.is_success(),
            "webdriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{}", self.session, path), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Runs JavaScript in the page and returns its result.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/elements", self.base, self.session);
        let v: Value = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["value"].as_array()?.first()?[ELEMENT]
            .as_str()
            .map(str::to_owned)
    }

    /// The first element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no element {css} in {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element; if the page re-rendered it between finding and clicking
    /// (a stale element), finds it again.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            let e = self.find(css).await;
            let url = format!("{}/session/{}/element/{e}/click", self.base, self.session);
            let resp = self.http.post(url).json(&json!({})).send().await.unwrap();
            if resp.status().is_success() {
                return;
            }
            let v: Value = resp.json().await.unwrap_or_default();
            assert!(
                v["value"]["error"] == "stale element reference",
                "click {css}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} kept going stale");
    }

    /// Clears a field and types into it, as a user would.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), None).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The rendered text of `css`, finding it again if polling re-rendered it meanwhile.
    pub async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let e = self.find(css).await;
            let url = format!("{}/session/{}/element/{e}/text", self.base, self.session);
            let v: Value = self
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(t) = v["value"].as_str() {
                return t.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} kept going stale");
    }

    /// Waits up to `secs` for the text of `css` to satisfy `want`; returns it.
    pub async fn wait_text(&self, css: &str, secs: u64, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        loop {
            if self.try_find(css).await.is_some() {
                last = self.text(css).await;
                if want(&last) {
                    return last;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} never matched; last text: {last:?} at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a cookie of the current page (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> String {
        let c = self.cmd("GET", &format!("/cookie/{name}"), None).await;
        c["value"].as_str().unwrap().to_owned()
    }

    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.cmd(
            "POST",
            "/cookie",
            Some(json!({"cookie": {"name": name, "value": value, "path": "/", "httpOnly": true}})),
        )
        .await;
    }

    /// Scrolls `css` into view, then saves a screenshot.
    pub async fn screenshot_at(&self, css: &str, name: &str) -> PathBuf {
        self.js(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
            json!([css]),
        )
        .await;
        self.screenshot(name).await
    }

    /// Saves a PNG of the viewport as a test artifact; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self
            .http
            .delete(format!("{}{}", self.base, path))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test must not leave chromedriver (and its chromium) running.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `<workspace>/test-artifacts/dashboard` (git-ignored).
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/dashboard")
}
