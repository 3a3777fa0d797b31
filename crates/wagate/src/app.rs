//! Wiring: opens the store and media, builds the engines and the device runtime, starts
//! every device and serves HTTP until told to stop, then shuts down in order (stop
//! accepting, let in-flight sends finish, release the rest).

use crate::blob::BlobStore;
use crate::config::Config;
use crate::engine::Engines;
use crate::engine::sandbox::{SandboxEngine, SandboxNetwork};
use crate::http;
use crate::keys::ServerKeys;
use crate::runtime::DeviceRuntime;
use crate::service::Services;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wagate_core::engine::Engine;
use wagate_core::store::Store;
use wagate_engine_web::{WebEngine, WebEngineConfig};

/// How long shutdown waits for sends already handed to an engine.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Parts a caller may supply instead of the defaults (tests share a sandbox network
/// across restarts; builds with more engines add them).
#[derive(Default)]
pub struct AppParts {
    pub sandbox: Option<Arc<SandboxNetwork>>,
    pub engines: Vec<Arc<dyn Engine>>,
    /// Changes to the whatsapp-web engine's configuration, applied after it is built from
    /// the server's (the simulator's transport and CDN): the engine still keeps its
    /// protocol state where the database says.
    pub web: Option<WebTweak>,
}

/// See [`AppParts::web`].
pub type WebTweak = Box<dyn FnOnce(&mut WebEngineConfig) + Send>;

/// What the server is built from: the opened store and media, the device runtime, the
/// sandbox network and the keys read at start. The area [`Services`] are made from it;
/// the webhook dispatcher, the simulator and tests use the parts directly. Handlers never
/// see it.
#[derive(Clone)]
pub struct Resources {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub runtime: Arc<DeviceRuntime>,
    pub sandbox: Arc<SandboxNetwork>,
    pub keys: ServerKeys,
    /// The key device secrets (Cloud API credentials) are sealed with.
    pub secrets: crate::secrets::SecretsKey,
    /// This node's id: the owner on every lease it takes (send jobs, webhook deliveries).
    pub node_id: String,
}

impl Resources {
    /// The area services over these parts (the HTTP state).
    pub fn services(&self) -> Services {
        Services::new(
            Arc::clone(&self.config),
            Arc::clone(&self.store),
            self.blobs.clone(),
            Arc::clone(&self.runtime),
            Arc::clone(&self.sandbox),
            self.keys.clone(),
            self.secrets.clone(),
        )
    }
}

/// A running server.
pub struct RunningApp {
    pub addr: SocketAddr,
    /// Where `metrics.listen` serves `/metrics`, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The parts it runs on (named `services` for the tests and tools that reach into
    /// the store or runtime of a running server).
    pub services: Resources,
    /// The area services the HTTP edge calls.
    pub api: Services,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    webhooks: crate::webhook::Dispatcher,
}

/// The configured store alone (the CLI, tests): see [`crate::database::open`].
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(crate::database::open(config).await?.store)
}

fn web_engine_config(
    config: &Config,
    database: &crate::database::Database,
    node_id: &str,
) -> anyhow::Result<WebEngineConfig> {
    let web = &config.whatsapp_web;
    let mut c = WebEngineConfig::new(config.devices_dir());
    // On PostgreSQL the devices' protocol state is shared by the nodes, fenced by epoch;
    // on SQLite it lives in wagate's file, written by its writer, fenced by the lease.
    c.postgres = database.postgres.clone();
    c.sqlite = database
        .sqlite
        .as_ref()
        .map(|store| crate::database::sqlite_protocol_db(store, node_id));
    c.ws_url = web.ws_url.clone();
    c.wa_version = web.parsed_version().map_err(anyhow::Error::msg)?;
    c.start_concurrency = web.start_concurrency.max(1);
    c.start_jitter = Duration::from_millis(web.start_jitter_ms);
    c.check_cache_ttl = Duration::from_secs(web.check_cache_secs);
    Ok(c)
}

/// This node's id: configured, else the one kept in the data directory.
fn node_id(config: &Config) -> anyhow::Result<String> {
    let id = match &config.node_id {
        Some(id) => id.clone(),
        None => crate::runtime::node_owner_id(&config.data_dir)
            .with_context(|| format!("reading the node id in {}", config.data_dir.display()))?,
    };
    crate::config::check_node_id(&id).map_err(anyhow::Error::msg)?;
    Ok(id)
}

/// Starts wagate: every device, the workers and the HTTP server.
pub async fn start(config: Config, parts: AppParts) -> anyhow::Result<RunningApp> {
    for (name, value) in [
        ("public_url", &config.public_url),
        ("media_public_url", &config.media_public_url),
        ("cluster.advertise_url", &config.cluster.advertise_url),
    ] {
        if let Some(v) = value
            && !url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            anyhow::bail!("{name} `{v}` must be an http:// or https:// URL");
        }
    }
    config.metrics.validate().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let node_id = node_id(&config)?;
    let database = crate::database::open(&config).await?;
    let store = Arc::clone(&database.store);
    // Read once here, never per request.
    let keys = ServerKeys::load(&config.data_dir, store.as_ref())
        .await
        .with_context(|| {
            format!(
                "reading the server keys (data directory {})",
                config.data_dir.display()
            )
        })?;
    // In a cluster every node must read every media: on PostgreSQL they live there too.
    let blobs = match &database.postgres {
        Some(pool) => BlobStore::postgres(pool.clone()),
        None => BlobStore::local(&config.media_dir())?,
    };
    let sandbox = match parts.sandbox {
        Some(s) => s,
        None => {
            let path = config.sandbox_journal_path();
            SandboxNetwork::open(config.sandbox.clone(), &path)
                .with_context(|| format!("opening the sandbox journal {}", path.display()))?
        }
    };
    // Read once here: the key device secrets are sealed with.
    let secrets = crate::secrets::SecretsKey::load(
        config.secrets_key.as_ref().map(|s| s.expose()),
        &config.data_dir,
    )?;
    let cloud =
        crate::engine::cloud::engine(&config.cloud_api, Arc::clone(&store), secrets.clone())
            .map_err(anyhow::Error::msg)?;
    let mut engines = Engines::default()
        .with(Arc::new(SandboxEngine::new(Arc::clone(&sandbox))))
        .with(Arc::new(cloud))
        .with(Arc::new(WebEngine::new({
            let mut web = web_engine_config(&config, &database, &node_id)?;
            if let Some(tweak) = parts.web {
                tweak(&mut web);
            }
            web
        })));
    for e in parts.engines {
        engines = engines.with(e);
    }
    // Bound before the devices start, so the address the other nodes forward to is known
    // (a listen port of 0 resolved).
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut cluster = config.cluster.clone();
    cluster.advertise_url = config.node_address(addr);
    if cluster.advertise_url.is_none()
        && matches!(
            config.database(),
            Ok(crate::config::DatabaseKind::Postgres(_))
        )
    {
        tracing::warn!(
            "cluster.advertise_url (WAGATE_CLUSTER__ADVERTISE_URL) is unset and the listen address is a wildcard: \
             calls needing a device's live session made on another node will not be forwarded here"
        );
    }
    let runtime = DeviceRuntime::new(
        Arc::clone(&store),
        blobs.clone(),
        engines,
        config.sending.clone(),
        node_id.clone(),
        cluster,
    );
    runtime.start_all().await.context("starting devices")?;
    let services = Resources {
        config: Arc::new(Config {
            // Without a configured public URL, links this server hands out (a Cloud API
            // device's callback URL) name the address it is listening on, port 0 resolved.
            public_url: config
                .public_url
                .clone()
                .or_else(|| Some(format!("http://{addr}"))),
            ..config
        }),
        store,
        blobs,
        runtime,
        sandbox,
        keys,
        secrets,
        node_id,
    };
    let api = services.services();
    let shutdown = CancellationToken::new();
    let base_url = services.config.media_base_url(|| format!("http://{addr}"));
    let webhooks = crate::webhook::Dispatcher::start(&services, base_url).await?;
    let router = http::router(api.clone());
    let limits = http::server::Limits::from(&services.config.http);
    let server = tokio::spawn(http::server::serve(
        listener,
        router,
        limits,
        shutdown.clone(),
    ));
    tracing::info!(%addr, "wagate is listening");

    // Metrics on their own address, apart from the main listener; stopped by the same
    // shutdown signal.
    let metrics_addr = start_metrics_listener(&services.config, &api, &shutdown).await?;

    Ok(RunningApp {
        addr,
        metrics_addr,
        services,
        api,
        shutdown,
        server,
        webhooks,
    })
}

/// Serves `/metrics` alone on `metrics.listen`, if configured.
async fn start_metrics_listener(
    config: &Config,
    services: &Services,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(listen) = config.metrics.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening for metrics on {listen} (metrics.listen)"))?;
    let addr = listener.local_addr()?;
    let (services, stop) = (services.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = http::metrics::serve_listener(services, listener, stop).await {
            tracing::warn!(error = %e, "the metrics listener stopped with an error");
        }
    });
    tracing::info!(%addr, "metrics are served on a separate listener");
    Ok(Some(addr))
}

impl RunningApp {
    /// Stops accepting requests, finishes in-flight HTTP requests and sends, releases
    /// queued work for the next start, and stops every device.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!("HTTP requests did not finish within the grace period"),
        }
        self.webhooks.stop().await;
        self.services.runtime.shutdown(SHUTDOWN_GRACE).await;
        tracing::info!("wagate stopped");
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
