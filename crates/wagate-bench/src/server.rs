//! The wagate under test: a `wagate serve` child process on a temporary data directory,
//! its memory read from `/proc`, and a small JSON client for the Msgera API.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `wagate serve` process.
pub struct Server {
    child: Child,
    pub base: String,
    bin: PathBuf,
    data_dir: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `wagate account create` on the data directory; returns the API key.
pub fn create_account(bin: &Path, data_dir: &Path) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(data_dir)
        // `--init`: the data directory is fresh; the server starts on it afterwards.
        .args(["account", "create", "--init", "--name", "bench"]);
    account_create(bin, cmd)
}

/// `wagate account create` against PostgreSQL; returns the API key.
pub fn create_account_on(bin: &Path, database_url: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--database-url",
        database_url,
        "account",
        "create",
        "--name",
        "bench",
    ]);
    account_create(bin, cmd)
}

fn account_create(bin: &Path, mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!("account create failed: {}", out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("account create output")?;
    v["apiKey"]
        .as_str()
        .map(str::to_owned)
        .context("no apiKey in account create output")
}

impl Server {
    /// Starts `wagate serve` and waits until `/readyz` answers.
    pub async fn start(
        bin: &Path,
        data_dir: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut s = Self {
            child: spawn(bin, data_dir, port, &env)?,
            base: format!("http://127.0.0.1:{port}"),
            bin: bin.to_owned(),
            data_dir: data_dir.to_owned(),
            port,
            env,
        };
        s.wait_ready().await?;
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "wagate exited during start ({status}); see {}",
                    self.log_path().display()
                );
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("wagate did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        // std's Child::kill sends SIGKILL on Unix.
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// A new process on the same data directory and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.bin, &self.data_dir, self.port, &self.env)?;
        self.wait_ready().await
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size over the process's life, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    bin: &Path,
    data_dir: &Path,
    port: u16,
    env: &[(String, String)],
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("RUST_LIB_BACKTRACE", "0")
        .env("WAGATE_ALLOW_PRIVATE_URLS", "true")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().with_context(|| {
        format!(
            "spawning {} (build it with cargo build --release -p wagate)",
            bin.display()
        )
    })
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The Msgera API with one key.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base: base.to_owned(),
            key: key.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", &self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {v}");
        }
        Ok(v["data"].clone())
    }

    /// A sandbox device with budgets lifted and no pacing; returns its uid.
    pub async fn create_device(&self, name: &str) -> anyhow::Result<String> {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/v1/developer/devices",
                Some(&json!({"name": name, "engine": "sandbox"})),
            )
            .await?;
        let uid = v["deviceUid"].as_str().context("no deviceUid")?.to_owned();
        let big = 1_000_000_000u32;
        self.ok(
            reqwest::Method::PATCH,
            &format!("/v1/developer/devices/{uid}"),
            Some(&json!({
                "safety": {"dailyLimit": big, "hourlyLimit": big, "minuteLimit": big},
                "pacing": {"minDelayMs": 0, "maxDelayMs": 0, "typingIndicator": false}
            })),
        )
        .await?;
        Ok(uid)
    }

    /// Waits until a device is connected; returns its phone number.
    pub async fn wait_connected(&self, uid: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self
                .ok(
                    reqwest::Method::GET,
                    &format!("/v1/developer/devices/{uid}"),
                    None,
                )
                .await?;
            if v["status"] == "connected"
                && let Some(p) = v["phoneNumber"].as_str()
            {
                return Ok(p.to_owned());
            }
            if Instant::now() > deadline {
                bail!("device {uid} did not connect: {v}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Points a device's personal webhook at `url` with the given events.
    pub async fn set_webhook(&self, uid: &str, url: &str, events: &[&str]) -> anyhow::Result<()> {
        self.ok(
            reqwest::Method::PUT,
            "/v1/developer/webhooks",
            Some(&json!({
                "deviceUid": uid,
                "personalWebhookUrl": url,
                "isActive": true,
                "events": events,
            })),
        )
        .await?;
        Ok(())
    }

    /// Every item of a paged Msgera list (`path` already carries its filters).
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        for page in 1.. {
            let v = self
                .ok(
                    reqwest::Method::GET,
                    &format!("{path}{sep}limit=100&page={page}"),
                    None,
                )
                .await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}

/// A random recipient the sandbox acknowledges, delivers and reads (never ending in
/// 0000 or 0500).
pub fn random_recipient() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    loop {
        let n: u32 = rng.gen_range(0..100_000_000);
        // Not the sandbox's simulated faults: 0000 not on WhatsApp, 0500 a transient
        // failure, 0700 a lost hand-off (sent again after `sending.ack_timeout_ms`).
        if !matches!(n % 10_000, 0 | 500 | 700) {
            return format!("+2010{n:08}");
        }
    }
}
