//! The engine's knobs, with defaults that suit one process linking hundreds of devices.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use whatsapp_rust::http::HttpClient;
use whatsapp_rust::transport::TransportFactory;

/// The host's SQLite database, where the engine keeps protocol state: read-only
/// connections, and the writer its writes are handed to.
#[derive(Clone)]
pub struct SqliteProtocolDb {
    pub read: sqlx::SqlitePool,
    pub writer: Arc<dyn wagate_wa_storage::ProtocolWriter>,
}

/// How the whatsapp-web engine runs its devices.
#[derive(Clone)]
pub struct WebEngineConfig {
    /// One SQLite store per device lives here (`<device uid>.db` plus its `-wal`/`-shm`),
    /// unless `postgres` or `sqlite` is set; with `sqlite`, such a file left by an earlier
    /// version is imported once and renamed `<device uid>.db.imported`.
    pub data_dir: PathBuf,
    /// Keep every device's protocol state in this PostgreSQL database instead (the
    /// tables of `wagate-wa-storage`, migrated with `PgBackend::migrate`), fenced by the
    /// epoch each device is started with: devices can then move between nodes.
    pub postgres: Option<sqlx::PgPool>,
    /// Keep every device's protocol state in the host's SQLite database instead (the
    /// tables of `wagate-wa-storage`, migrated with `SqliteBackend::migrator`): one file
    /// to back up and no descriptors per device. Writes go through the host's writer,
    /// fenced by the epoch each device is started with.
    pub sqlite: Option<SqliteProtocolDb>,
    /// Where to dial instead of `wss://web.whatsapp.com/ws/chat` (e.g. `ws://127.0.0.1:PORT`
    /// for a simulator). `None` dials WhatsApp.
    pub ws_url: Option<String>,
    /// Pins the WhatsApp Web version `(primary, secondary, tertiary)` sent at login. `None`
    /// fetches the current one from `web.whatsapp.com/sw.js` (at most daily per device);
    /// tests pin it so they never touch the internet.
    pub wa_version: Option<(u32, u32, u32)>,
    /// The OS name WhatsApp shows under *Linked devices* (applied when a device pairs).
    pub device_os: String,
    /// How long a `check_numbers` answer is reused before asking WhatsApp again.
    pub check_cache_ttl: Duration,
    /// Minimum time between two number-check queries of one device: bulk lookups are a
    /// classic ban trigger, so they are paced.
    pub check_min_interval: Duration,
    /// How many devices may be logging in (opening their store, handshaking, syncing) at
    /// once; the rest queue. Starting hundreds of devices at boot otherwise stampedes both
    /// the CPU and WhatsApp.
    pub start_concurrency: usize,
    /// Each device waits a random delay up to this long before its first connection, so a
    /// restart does not reconnect every device in the same second.
    pub start_jitter: Duration,
    /// How long a starting device holds its start slot at most, if it neither connects nor
    /// shows a QR code sooner.
    pub start_settle_timeout: Duration,
    /// SQLite page cache per device store (KiB).
    pub sqlite_cache_kib: u32,
    /// Inbound media larger than this is not downloaded (the message is still delivered,
    /// without its bytes).
    pub max_inbound_media_bytes: u64,
    /// Replaces the WebSocket transport (tests: an in-process simulator). Takes precedence
    /// over `ws_url`.
    pub transport: Option<Arc<dyn TransportFactory>>,
    /// Replaces the HTTP client used for media and the version fetch (tests: a fake CDN).
    pub http_client: Option<Arc<dyn HttpClient>>,
}

impl WebEngineConfig {
    /// Defaults for everything but where the stores live.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            postgres: None,
            sqlite: None,
            ws_url: None,
            wa_version: None,
            device_os: "wagate".to_owned(),
            check_cache_ttl: Duration::from_secs(24 * 60 * 60),
            check_min_interval: Duration::from_secs(3),
            start_concurrency: 8,
            start_jitter: Duration::from_secs(3),
            start_settle_timeout: Duration::from_secs(20),
            sqlite_cache_kib: 512,
            max_inbound_media_bytes: 64 * 1024 * 1024,
            transport: None,
            http_client: None,
        }
    }
}

impl Default for WebEngineConfig {
    fn default() -> Self {
        Self::new("data/whatsapp-web")
    }
}

impl fmt::Debug for WebEngineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebEngineConfig")
            .field("data_dir", &self.data_dir)
            .field("postgres", &self.postgres.is_some())
            .field("sqlite", &self.sqlite.is_some())
            .field("ws_url", &self.ws_url)
            .field("wa_version", &self.wa_version)
            .field("device_os", &self.device_os)
            .field("check_cache_ttl", &self.check_cache_ttl)
            .field("check_min_interval", &self.check_min_interval)
            .field("start_concurrency", &self.start_concurrency)
            .field("start_jitter", &self.start_jitter)
            .field("start_settle_timeout", &self.start_settle_timeout)
            .field("sqlite_cache_kib", &self.sqlite_cache_kib)
            .field("max_inbound_media_bytes", &self.max_inbound_media_bytes)
            .field("transport", &self.transport.as_ref().map(|_| "custom"))
            .field("http_client", &self.http_client.as_ref().map(|_| "custom"))
            .finish()
    }
}
