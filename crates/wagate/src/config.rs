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
    /// The database (`WAGATE_DATABASE_URL`, `--database-url`): `postgres://user@host/db`
    /// for PostgreSQL, shared by every node of a cluster. Unset: SQLite in the data
    /// directory (`wagate.db`), nothing else to run. May hold a password: never logged.
    pub database_url: Option<DatabaseUrl>,
    /// This node's name in a cluster (`WAGATE_NODE_ID`, `--node-id`): on the leases it
    /// holds and in `GET /v1/developer/devices/{uid}`. Unset: an id made once from the host
    /// and kept in the data directory (`node-id`), so a restarted node is the same node.
    /// Letters, digits, `.`, `_`, `-` and `:`, at most 64.
    pub node_id: Option<String>,
    /// Base URL under which clients reach this server, for links such as webhook
    /// `mediaUrl`s (`WAGATE_PUBLIC_URL`); defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Base URL of the signed media links in webhooks and the event stream
    /// (`WAGATE_MEDIA_PUBLIC_URL`), e.g. `https://media.example.net` routed to this same
    /// server. Files are chosen by strangers who message a linked number; serving them from
    /// a separate origin (as GitHub does with its user-content domain) keeps them away from
    /// the dashboard's cookies even if a browser mishandled one. Defaults to the public URL.
    pub media_public_url: Option<String>,
    /// Log format: `pretty` or `json` (`WAGATE_LOG_FORMAT`); the level comes from `RUST_LOG`.
    pub log_format: LogFormat,
    /// Let media and webhook URLs point at loopback, private or link-local addresses
    /// (`WAGATE_ALLOW_PRIVATE_URLS`). Off: such URLs are refused (SSRF protection).
    pub allow_private_urls: bool,
    /// Commit durability: `full` (default; a 2xx survives power loss) or `normal`
    /// (survives a process crash, not an OS crash; faster) (`WAGATE_SYNCHRONOUS`).
    pub synchronous: Synchronous,
    /// The key device secrets (Cloud API tokens) are sealed with in the database: 32 bytes
    /// in base64, e.g. from `openssl rand -base64 32` (`WAGATE_SECRETS_KEY`). Unset: a key
    /// made once in the data directory (`secrets.key`). Every node of a cluster must be
    /// given the same one. Never logged.
    pub secrets_key: Option<Secret>,
    pub sandbox: SandboxConfig,
    pub sending: SendingConfig,
    pub cluster: ClusterConfig,
    pub media_fetch: MediaFetchConfig,
    pub whatsapp_web: WhatsappWebConfig,
    pub cloud_api: CloudApiConfig,
    pub webhooks: WebhooksConfig,
    pub metrics: MetricsConfig,
    pub http: HttpConfig,
}

/// The `cloud-api` engine: where Meta's Graph API is (`WAGATE_CLOUD_API__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudApiConfig {
    /// The Graph API's base URL (`WAGATE_CLOUD_API__GRAPH_URL`); another one only for a
    /// proxy or a test double of it.
    pub graph_url: String,
    /// The Graph API version every call names (`WAGATE_CLOUD_API__GRAPH_VERSION`), like
    /// `v21.0`.
    pub graph_version: String,
}

impl Default for CloudApiConfig {
    fn default() -> Self {
        Self {
            graph_url: "https://graph.facebook.com".into(),
            graph_version: "v21.0".into(),
        }
    }
}

impl CloudApiConfig {
    /// The base URL, checked.
    pub fn parsed_graph_url(&self) -> Result<url::Url, String> {
        url::Url::parse(&self.graph_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                format!(
                    "cloud_api.graph_url `{}` must be an http:// or https:// URL",
                    self.graph_url
                )
            })
    }

    /// The version, checked: `v` and a number like `21.0`.
    pub fn checked_version(&self) -> Result<&str, String> {
        let v = self.graph_version.as_str();
        let ok = v.strip_prefix('v').is_some_and(|n| {
            let mut parts = n.split('.');
            parts
                .next()
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        if ok {
            Ok(v)
        } else {
            Err(format!(
                "cloud_api.graph_version `{v}` must look like v21.0"
            ))
        }
    }
}

/// A configured secret; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Limits of the HTTP server itself (`WAGATE_HTTP__*`): how long a client may take and
/// how much it may hold, so slow or idle clients cannot exhaust connections or memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Time for a request's headers to arrive, counted from the connection's opening or
    /// from the first byte of a later request on a kept-alive connection
    /// (`WAGATE_HTTP__HEADER_TIMEOUT_MS`). Past it the connection is closed.
    pub header_timeout_ms: u64,
    /// Time for a whole request body to arrive, counted from its headers
    /// (`WAGATE_HTTP__BODY_TIMEOUT_MS`). Past it the request is answered 408 and the
    /// connection closed. 120 s lets a 16 MB upload through at about 1.1 Mbit/s.
    pub body_timeout_ms: u64,
    /// How long a kept-alive connection may wait, with no request in flight, for its next
    /// request (`WAGATE_HTTP__IDLE_TIMEOUT_MS`).
    pub idle_timeout_ms: u64,
    /// Most connections open at once (`WAGATE_HTTP__MAX_CONNECTIONS`); keep it below the
    /// process's file-descriptor limit. When all are taken, a new connection closes the
    /// one that has been idle longest (no request in flight); if every connection is busy
    /// it waits until one finishes.
    pub max_connections: usize,
    /// Most bytes of request bodies in flight over the whole server
    /// (`WAGATE_HTTP__MAX_BODY_BYTES_IN_FLIGHT`): a body counts from its headers until its
    /// reply, by its `Content-Length` (or as it arrives, when chunked). A request that
    /// would pass the bound is answered 503 with `Retry-After`.
    pub max_body_bytes_in_flight: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 120_000,
            idle_timeout_ms: 60_000,
            max_connections: 1_024,
            max_body_bytes_in_flight: 128 * 1024 * 1024,
        }
    }
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
    /// Round trip of the simulated network (`WAGATE_SANDBOX__ACK_DELAY_MS`): a message
    /// handed over reaches the server half of it later, and its ack reaches the gateway the
    /// other half after that, so messages are in flight (a crash loses those still on the
    /// wire). 0: the server takes it during the hand-off and acks at once.
    pub ack_delay_ms: u64,
    /// Append what crosses the simulated wire (every hand-off, every message shown to a
    /// recipient, every committed server ack) to `sandbox/wire.log` in the data directory
    /// (`WAGATE_SANDBOX__WIRE_LOG`), so a test can count "exactly once" across `kill -9`.
    pub wire_log: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            link_delay_ms: 200,
            delivered_delay_ms: 300,
            read_delay_ms: 700,
            ack_delay_ms: 0,
            wire_log: false,
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

/// Device leases (`WAGATE_CLUSTER__*`): each device is driven by the one node holding its
/// lease, renewed every third of the lease. On one node they only matter at restarts; in
/// a cluster they are how devices spread over nodes and move off a dead one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a device lease lasts without renewal (`WAGATE_CLUSTER__LEASE_MS`): a node
    /// killed outright has its devices taken over after at most this, plus a renewal
    /// round. At least 300.
    pub lease_ms: u64,
    /// Base URL at which the other nodes reach this node's HTTP server
    /// (`WAGATE_CLUSTER__ADVERTISE_URL`), e.g. `http://10.0.0.5:8080`: a call that needs a
    /// device's live session (QR code, pair code, number checks, logout, reconnect) made
    /// on another node is forwarded here when this node drives the device. Unset: `http://`
    /// and the listen address, unless that is a wildcard (`0.0.0.0`, `::`), in which case
    /// such calls made elsewhere are answered with an error naming this node.
    pub advertise_url: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            advertise_url: None,
        }
    }
}

impl ClusterConfig {
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms.max(300))
    }

    /// How often a node renews its leases and looks for devices to take.
    pub fn round(&self) -> std::time::Duration {
        self.lease() / 3
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

/// Prometheus metrics (`WAGATE_METRICS__*`). They say how many devices each engine runs
/// and how busy they are, so they are not public: `/metrics` on the main listener needs
/// `Authorization: Bearer <token>` and is a 404 while no token is configured; a separate
/// listener can serve them instead, to loopback only unless a token guards it too.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token a scraper must present (`WAGATE_METRICS__TOKEN`), at least 16
    /// characters. Unset: `/metrics` on the main listener does not exist.
    pub token: Option<String>,
    /// A second address that serves only `/metrics` (`WAGATE_METRICS__LISTEN`), e.g.
    /// `127.0.0.1:9464`. Without a token it must be a loopback address (the scraper runs
    /// on the same host); with one, any address, and the token is required there too.
    pub listen: Option<SocketAddr>,
    /// One series per device and metric (`WAGATE_METRICS__PER_DEVICE`). Off by default:
    /// totals by engine and connection state only, a fixed dozen of series however many
    /// devices run (10,000 devices would otherwise be 60,000 series per scrape).
    pub per_device: bool,
}

/// The token is a secret: never printed with the rest of the configuration.
impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("listen", &self.listen)
            .field("per_device", &self.per_device)
            .finish()
    }
}

/// Shortest metrics token accepted: long enough not to be guessed over the network.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

impl MetricsConfig {
    /// Refuses settings that would expose metrics by mistake.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.token
            && t.trim().chars().count() < MIN_METRICS_TOKEN_LEN
        {
            return Err(format!(
                "metrics.token (WAGATE_METRICS__TOKEN) must be at least {MIN_METRICS_TOKEN_LEN} characters"
            ));
        }
        if let Some(addr) = self.listen
            && self.token.is_none()
            && !addr.ip().is_loopback()
        {
            return Err(format!(
                "metrics.listen (WAGATE_METRICS__LISTEN) is {addr}, which is not a loopback address: \
                 set metrics.token (WAGATE_METRICS__TOKEN) too, or listen on 127.0.0.1"
            ));
        }
        Ok(())
    }
}

/// A database URL; its password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced, for messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "(not a URL)".to_owned(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Which database a configuration points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseKind {
    /// SQLite in this file.
    Sqlite(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(DatabaseUrl),
}

/// Longest node id accepted.
pub const MAX_NODE_ID_LEN: usize = 64;

/// Refuses a node id that could not be shown and compared safely.
pub fn check_node_id(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if id.is_empty() || id.len() > MAX_NODE_ID_LEN || !id.chars().all(ok_char) {
        return Err(format!(
            "node_id (WAGATE_NODE_ID) `{}` must be 1 to {MAX_NODE_ID_LEN} letters, digits, `.`, `_`, `-` or `:`",
            id.escape_default()
        ));
    }
    Ok(())
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("wagate-data"),
            database_url: None,
            node_id: None,
            public_url: None,
            media_public_url: None,
            log_format: LogFormat::Pretty,
            allow_private_urls: false,
            synchronous: Synchronous::Full,
            secrets_key: None,
            sandbox: SandboxConfig::default(),
            sending: SendingConfig::default(),
            cluster: ClusterConfig::default(),
            media_fetch: MediaFetchConfig::default(),
            whatsapp_web: WhatsappWebConfig::default(),
            cloud_api: CloudApiConfig::default(),
            webhooks: WebhooksConfig::default(),
            metrics: MetricsConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (when given), then `WAGATE_*` variables (nested
    /// options with `__`, e.g. `WAGATE_SANDBOX__READ_DELAY_MS`). `WAGATE_TEST_*` variables
    /// belong to the test suite (`WAGATE_TEST_DATABASE_URL`), not to the configuration: a
    /// server started under them must not refuse them as unknown options.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(
                Env::prefixed("WAGATE_")
                    .split("__")
                    .ignore(&["CONFIG"])
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_")),
            )
            .extract()
            .map_err(Box::new)
    }

    /// Where the other nodes reach this one (see [`ClusterConfig::advertise_url`]), given
    /// the address the server is bound to (the listen address with its port resolved).
    pub fn node_address(&self, bound: SocketAddr) -> Option<String> {
        match &self.cluster.advertise_url {
            Some(url) => Some(url.trim_end_matches('/').to_owned()),
            None if bound.ip().is_unspecified() => None,
            None => Some(format!("http://{bound}")),
        }
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Base of media links: `media_public_url`, else the public URL, else `fallback`
    /// (what the server knows of its own address).
    pub fn media_base_url(&self, fallback: impl FnOnce() -> String) -> String {
        match (&self.media_public_url, &self.public_url) {
            (Some(m), _) => m.trim_end_matches('/').to_owned(),
            (None, Some(_)) => self.public_url(),
            (None, None) => fallback(),
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("wagate.db")
    }

    /// The database to open: PostgreSQL when `database_url` says so, else SQLite in the
    /// data directory. A URL of another kind is refused, naming the option.
    pub fn database(&self) -> Result<DatabaseKind, String> {
        match &self.database_url {
            None => Ok(DatabaseKind::Sqlite(self.database_path())),
            Some(u) if u.as_str().trim().is_empty() => {
                Ok(DatabaseKind::Sqlite(self.database_path()))
            }
            Some(u) => match url::Url::parse(u.as_str()) {
                Ok(parsed) if matches!(parsed.scheme(), "postgres" | "postgresql") => {
                    Ok(DatabaseKind::Postgres(u.clone()))
                }
                Ok(parsed) => Err(format!(
                    "database_url (WAGATE_DATABASE_URL) must be a postgres:// URL, not {}://; \
                     leave it unset for SQLite in the data directory",
                    parsed.scheme()
                )),
                Err(e) => Err(format!(
                    "database_url (WAGATE_DATABASE_URL) is not a URL: {e}"
                )),
            },
        }
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
            // The test suite's own variable is not an option.
            jail.set_env("WAGATE_TEST_DATABASE_URL", "postgres://127.0.0.1/test");
            let c = Config::load(Some(&file)).map_err(|e| *e)?;
            assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
            assert_eq!(c.sandbox.read_delay_ms, 5);
            assert_eq!(c.sandbox.delivered_delay_ms, 300);
            assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
            Ok(())
        });
    }

    #[test]
    fn metrics_settings_that_would_expose_them_are_refused() {
        let ok = MetricsConfig {
            listen: Some("127.0.0.1:9464".parse().unwrap()),
            ..MetricsConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let open = MetricsConfig {
            listen: Some("0.0.0.0:9464".parse().unwrap()),
            ..MetricsConfig::default()
        };
        assert!(open.validate().unwrap_err().contains("metrics.token"));
        let guarded = MetricsConfig {
            token: Some("0123456789abcdef".into()),
            ..open
        };
        assert_eq!(guarded.validate(), Ok(()));
        let short = MetricsConfig {
            token: Some("secret".into()),
            ..MetricsConfig::default()
        };
        assert!(short.validate().unwrap_err().contains("at least 16"));
        assert!(!format!("{guarded:?}").contains("0123456789abcdef"));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn http_limits_come_from_their_section_and_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WAGATE_HTTP__MAX_CONNECTIONS", "64");
            jail.set_env("WAGATE_HTTP__BODY_TIMEOUT_MS", "5000");
            let c = Config::load(None).map_err(|e| *e)?;
            assert_eq!(c.http.max_connections, 64);
            assert_eq!(c.http.body_timeout_ms, 5_000);
            assert_eq!(c.http.header_timeout_ms, 10_000);
            assert_eq!(c.http.max_body_bytes_in_flight, 128 * 1024 * 1024);
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

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_database_url_picks_postgres_and_never_shows_its_password() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "WAGATE_DATABASE_URL",
                "postgres://wagate:s3cret@db:5432/wagate",
            );
            let c = Config::load(None).map_err(|e| *e)?;
            let url = match c.database() {
                Ok(DatabaseKind::Postgres(url)) => url,
                other => panic!("{other:?}"),
            };
            assert_eq!(url.as_str(), "postgres://wagate:s3cret@db:5432/wagate");
            let shown = format!("{c:?} {}", url.redacted());
            assert!(!shown.contains("s3cret"), "{shown}");
            Ok(())
        });
        let sqlite = Config::default();
        assert_eq!(
            sqlite.database(),
            Ok(DatabaseKind::Sqlite(sqlite.database_path()))
        );
        let mysql = Config {
            database_url: Some(DatabaseUrl("mysql://root@localhost/wagate".into())),
            ..Config::default()
        };
        let err = mysql.database().unwrap_err();
        assert!(
            err.contains("database_url") && err.contains("mysql"),
            "{err}"
        );
        let garbage = Config {
            database_url: Some(DatabaseUrl("not a url".into())),
            ..Config::default()
        };
        assert!(garbage.database().unwrap_err().contains("database_url"));
    }

    #[test]
    fn node_ids_are_short_and_plain() {
        for ok in ["node-a", "wagate-1.eu_west:2", "a"] {
            assert_eq!(check_node_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "node a", "node\n", "ü", &"x".repeat(65)] {
            let err = check_node_id(bad).unwrap_err();
            assert!(err.contains("node_id"), "{err}");
        }
    }
}
