//! Configuration: defaults in code, then an optional TOML file, then `WAGATE_*`
//! environment variables, then command-line flags (each overriding the one before).
//!
//! Every option is documented here and in the README with its default; secrets never
//! appear in logs (the config is not logged as a whole).

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on (`WAGATE_LISTEN`).
    pub listen: SocketAddr,
    /// Where the database, media and device keys live (`WAGATE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Base URL under which clients reach this server, for links such as webhook
    /// `mediaUrl`s (`WAGATE_PUBLIC_URL`); defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Log format: `pretty` or `json` (`WAGATE_LOG_FORMAT`); the level comes from `RUST_LOG`.
    pub log_format: LogFormat,
    /// Let media and webhook URLs point at loopback, private or link-local addresses
    /// (`WAGATE_ALLOW_PRIVATE_URLS`). Off: such URLs are refused (SSRF protection).
    pub allow_private_urls: bool,
    /// Commit durability: `full` (default; a 2xx survives power loss) or `normal`
    /// (survives a process crash, not an OS crash; faster) (`WAGATE_SYNCHRONOUS`).
    pub synchronous: Synchronous,
    pub sandbox: SandboxConfig,
    pub sending: SendingConfig,
    pub media_fetch: MediaFetchConfig,
    pub whatsapp_web: WhatsappWebConfig,
    pub webhooks: WebhooksConfig,
}

/// The whatsapp-web engine (real linked devices).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsappWebConfig {
    /// Where to connect instead of WhatsApp's own servers, e.g. a simulator's
    /// `ws://127.0.0.1:PORT/ws/chat` (`WAGATE_WHATSAPP_WEB__WS_URL`). Unset: WhatsApp.
    pub ws_url: Option<String>,
    /// Pin the WhatsApp Web version as `2.3000.1023456789` (`WAGATE_WHATSAPP_WEB__VERSION`).
    /// Unset: fetched from web.whatsapp.com at most daily.
    pub version: Option<String>,
    /// Devices logging in at the same time at startup (`WAGATE_WHATSAPP_WEB__START_CONCURRENCY`).
    pub start_concurrency: usize,
    /// Longest random delay before a device's first connection, so a restart does not
    /// reconnect every device at once (`WAGATE_WHATSAPP_WEB__START_JITTER_MS`).
    pub start_jitter_ms: u64,
    /// How long a number check is remembered (`WAGATE_WHATSAPP_WEB__CHECK_CACHE_SECS`).
    pub check_cache_secs: u64,
}

impl Default for WhatsappWebConfig {
    fn default() -> Self {
        Self {
            ws_url: None,
            version: None,
            start_concurrency: 8,
            start_jitter_ms: 3_000,
            check_cache_secs: 24 * 60 * 60,
        }
    }
}

impl WhatsappWebConfig {
    /// The pinned version as three numbers, if one is configured.
    pub fn parsed_version(&self) -> Result<Option<(u32, u32, u32)>, String> {
        let Some(v) = &self.version else {
            return Ok(None);
        };
        let bad =
            || format!("whatsapp_web.version `{v}` must be three numbers like 2.3000.1023456789");
        let parts: Vec<&str> = v.split('.').collect();
        match parts.as_slice() {
            [a, b, c] => match (a.parse(), b.parse(), c.parse()) {
                (Ok(a), Ok(b), Ok(c)) => Ok(Some((a, b, c))),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

/// The simulated network of the `sandbox` engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// How long a new sandbox device takes to link (`WAGATE_SANDBOX__LINK_DELAY_MS`).
    pub link_delay_ms: u64,
    /// Delay from the server ack to the "delivered" receipt (`WAGATE_SANDBOX__DELIVERED_DELAY_MS`).
    pub delivered_delay_ms: u64,
    /// Delay from "delivered" to "read" (and "played" for voice notes) (`WAGATE_SANDBOX__READ_DELAY_MS`).
    pub read_delay_ms: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            link_delay_ms: 200,
            delivered_delay_ms: 300,
            read_delay_ms: 700,
        }
    }
}

/// The per-device send workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendingConfig {
    /// First retry delay after a transient engine error; doubles per attempt
    /// (`WAGATE_SENDING__RETRY_BASE_MS`).
    pub retry_base_ms: u64,
    /// Longest retry delay (`WAGATE_SENDING__RETRY_MAX_MS`).
    pub retry_max_ms: u64,
    /// Attempts before a message fails for good (`WAGATE_SENDING__MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// How long a worker holds a claimed job before another may take it
    /// (`WAGATE_SENDING__LEASE_SECS`).
    pub lease_secs: u64,
    /// How long a handed-over message waits for WhatsApp's server acknowledgement before
    /// it is handed over again under the same id (`WAGATE_SENDING__ACK_TIMEOUT_MS`): a
    /// connection lost right after writing must not leave a message queued for ever.
    pub ack_timeout_ms: u64,
    /// How long the MegaMsg send endpoint waits for the engine to take a message before
    /// answering 502 (`WAGATE_SENDING__SYNC_WAIT_MS`).
    pub sync_wait_ms: u64,
}

impl Default for SendingConfig {
    fn default() -> Self {
        Self {
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            max_attempts: 10,
            lease_secs: 120,
            ack_timeout_ms: 60_000,
            sync_wait_ms: 15_000,
        }
    }
}

/// Fetching media that a send names by URL (the MegaMsg dialect's `media`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaFetchConfig {
    /// Largest file fetched, in bytes; at most 16 MB, the most any send accepts
    /// (`WAGATE_MEDIA_FETCH__MAX_BYTES`).
    pub max_bytes: u64,
    /// Time to connect to the media host (`WAGATE_MEDIA_FETCH__CONNECT_TIMEOUT_MS`).
    pub connect_timeout_ms: u64,
    /// Time for the whole fetch, redirects included (`WAGATE_MEDIA_FETCH__TIMEOUT_MS`).
    pub timeout_ms: u64,
}

impl Default for MediaFetchConfig {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
        }
    }
}

/// Webhook delivery (`WAGATE_WEBHOOKS__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Attempts per delivery, the first included (`WAGATE_WEBHOOKS__ATTEMPTS`).
    pub attempts: u32,
    /// Delay before the first retry; doubles per attempt, ±20% jitter
    /// (`WAGATE_WEBHOOKS__BACKOFF_BASE_MS`).
    pub backoff_base_ms: u64,
    /// Longest computed retry delay (`WAGATE_WEBHOOKS__BACKOFF_MAX_MS`).
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` honoured (`WAGATE_WEBHOOKS__RETRY_AFTER_MAX_SECS`).
    pub retry_after_max_secs: u64,
    /// Time for a receiver to answer (`WAGATE_WEBHOOKS__TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// Most requests in flight at once, over all destinations (`WAGATE_WEBHOOKS__CONCURRENCY`).
    pub concurrency: usize,
    /// Most requests in flight at once to one destination, started in event order
    /// (`WAGATE_WEBHOOKS__PER_DESTINATION`). 1 delivers strictly one after another, each
    /// waiting for the previous one's success or last failure; more lets a receiver that
    /// answers in a few milliseconds take thousands of events per second.
    pub per_destination: u32,
    /// How long a rotated-away secret keeps signing (`WAGATE_WEBHOOKS__SECRET_GRACE_SECS`).
    pub secret_grace_secs: u64,
    /// How long a webhook's `mediaUrl` stays valid after the event
    /// (`WAGATE_WEBHOOKS__MEDIA_LINK_TTL_SECS`).
    pub media_link_ttl_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 3_600_000,
            retry_after_max_secs: 3_600,
            timeout_ms: 10_000,
            concurrency: 32,
            per_destination: 8,
            secret_grace_secs: 86_400,
            media_link_ttl_secs: 7 * 86_400,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("wagate-data"),
            public_url: None,
            log_format: LogFormat::Pretty,
            allow_private_urls: false,
            synchronous: Synchronous::Full,
            sandbox: SandboxConfig::default(),
            sending: SendingConfig::default(),
            media_fetch: MediaFetchConfig::default(),
            whatsapp_web: WhatsappWebConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (when given), then `WAGATE_*` variables (nested
    /// options with `__`, e.g. `WAGATE_SANDBOX__READ_DELAY_MS`).
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed("WAGATE_").split("__").ignore(&["CONFIG"]))
            .extract()
            .map_err(Box::new)
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("wagate.db")
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    pub fn devices_dir(&self) -> PathBuf {
        self.data_dir.join("devices")
    }

    /// The sandbox network's journal: what its simulated server accepted and still owes.
    pub fn sandbox_journal_path(&self) -> PathBuf {
        self.data_dir.join("sandbox").join("network.journal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // figment's Jail API fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wagate.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:9000\"\n[sandbox]\nread_delay_ms = 5\n",
        )
        .unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("WAGATE_DATA_DIR", "/tmp/elsewhere");
            let c = Config::load(Some(&file)).map_err(|e| *e)?;
            assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(c.sandbox.read_delay_ms, 5);
            assert_eq!(c.sandbox.delivered_delay_ms, 300);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
            Ok(())
        });
    }

    #[test]
    fn unknown_options_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wagate.toml");
        std::fs::write(&file, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }
}
