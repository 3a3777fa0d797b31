//! The whatsapp-web [`Engine`]: starts one [`WebSession`] per device, each on its own
//! SQLite store file under the data directory, and deletes those files when a device is
//! forgotten.

use crate::canary::{CertCheck, cert_check};
use crate::config::WebEngineConfig;
use crate::session::{Inner, Shared, WebSession};
use crate::stats::SessionStats;
use async_trait::async_trait;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, Weak};
use tokio::sync::Semaphore;
use wagate_core::device::EngineKind;
use wagate_core::engine::{DeviceContext, Engine, EngineError, EngineEvents, EngineSession};
use wagate_core::id::DeviceUid;
use whatsapp_rust::http::HttpClient;
use whatsapp_rust::transport::{TokioWebSocketTransportFactory, TransportFactory};

/// Runs whatsapp-web devices. Cheap to share (`Arc`); one per process.
pub struct WebEngine {
    shared: Arc<Shared>,
    sessions: Mutex<HashMap<DeviceUid, Weak<Inner>>>,
    /// Why devices may not start (the certificate canary failed while the engine would
    /// dial WhatsApp); `None` when they may.
    refusal: Option<String>,
    /// The refusal is logged at ERROR once, at the first device it stops.
    refusal_logged: Once,
}

impl std::fmt::Debug for WebEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebEngine")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl WebEngine {
    pub fn new(config: WebEngineConfig) -> Self {
        let transport: Arc<dyn TransportFactory> = match (&config.transport, &config.ws_url) {
            (Some(t), _) => t.clone(),
            (None, Some(url)) => Arc::new(TokioWebSocketTransportFactory::new().with_url(url)),
            (None, None) => Arc::new(TokioWebSocketTransportFactory::new()),
        };
        let http: Arc<dyn HttpClient> = match &config.http_client {
            Some(h) => h.clone(),
            // One agent (connection pool) for every device's media and version fetches.
            None => Arc::new(whatsapp_rust::http::UreqHttpClient::new()),
        };
        let slots = config.start_concurrency.max(1);
        let refusal = connect_refusal(&config, cert_check());
        Self {
            shared: Arc::new(Shared {
                config,
                transport,
                http,
                start_slots: Semaphore::new(slots),
            }),
            sessions: Mutex::new(HashMap::new()),
            refusal,
            refusal_logged: Once::new(),
        }
    }

    /// Why this engine refuses to start devices, if it does (see [`crate::canary`]).
    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    pub fn config(&self) -> &WebEngineConfig {
        &self.shared.config
    }

    /// The device's store file (`<data_dir>/<uid>.db`), when state is kept in files.
    pub fn store_path(&self, device: &DeviceUid) -> PathBuf {
        crate::store::file_of(&self.shared.config.data_dir, device)
    }

    /// Whether the engine holds keys for a device (it was linked and not forgotten).
    pub fn has_store(&self, device: &DeviceUid) -> bool {
        self.store_path(device).exists()
    }

    /// The counters of a device's running session.
    pub fn stats(&self, device: &DeviceUid) -> Option<SessionStats> {
        let inner = self.lock().get(device)?.upgrade()?;
        Some(WebSession::from_inner(inner).stats())
    }

    /// Like [`Engine::start`], returning the concrete session (for [`WebSession::stats`]).
    pub async fn start_session(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<WebSession, EngineError> {
        if let Some(why) = &self.refusal {
            self.refusal_logged.call_once(
                || tracing::error!(reason = %why, "whatsapp-web devices will not start"),
            );
            return Err(EngineError::Internal(why.clone()));
        }
        tokio::fs::create_dir_all(&self.shared.config.data_dir)
            .await
            .map_err(|e| {
                EngineError::Internal(format!(
                    "cannot create the data directory {}: {e}",
                    self.shared.config.data_dir.display()
                ))
            })?;
        let mut sessions = self.lock();
        if let Some(existing) = sessions.get(&device.uid).and_then(Weak::upgrade)
            && !WebSession::from_inner(existing).is_stopped()
        {
            // Two clients on one store fight ("replaced") and corrupt its Signal state.
            return Err(EngineError::Internal(format!(
                "device {} already has a running session",
                device.uid
            )));
        }
        sessions.retain(|_, w| w.strong_count() > 0);
        let store = crate::store::DeviceStore::of(&self.shared.config, &device.uid, device.epoch);
        let session = WebSession::start(device.uid.clone(), store, self.shared.clone(), events);
        sessions.insert(device.uid, session.weak());
        Ok(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceUid, Weak<Inner>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether devices may connect where this configuration dials, given the canary's verdict.
///
/// The certificate check only matters against WhatsApp: an in-process transport (tests,
/// `--simulator`) or a plaintext `ws://` URL on a loopback address is a simulator, which
/// cannot present WhatsApp's chain anyway (WhatsApp only speaks `wss://`). Any other
/// `ws_url` may be WhatsApp behind a relay or proxy, which is exactly where the
/// certificate check is the only defence, so it needs the check like the default URL.
pub(crate) fn connect_refusal(config: &WebEngineConfig, check: &CertCheck) -> Option<String> {
    let reason = check.refusal()?;
    let simulator =
        config.transport.is_some() || config.ws_url.as_deref().is_some_and(is_loopback_plain_ws);
    if simulator {
        tracing::warn!(
            "the whatsapp-web engine skips WhatsApp's certificate check; allowed only because \
             it talks to a simulator (a custom transport or a ws:// loopback URL)"
        );
        return None;
    }
    Some(reason)
}

/// `ws://` (never `wss://`) to `localhost` or a loopback IP address.
fn is_loopback_plain_ws(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        // [v6]:port
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Deletes a store and its WAL/shared-memory companions; missing files are fine.
pub(crate) async fn remove_store_files(path: &Path) -> io::Result<()> {
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        names.push(PathBuf::from(p));
    }
    for p in names {
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait]
impl Engine for WebEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::WhatsappWeb
    }

    async fn start(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<Arc<dyn EngineSession>, EngineError> {
        let session = self.start_session(device, events).await?;
        Ok(Arc::new(session))
    }

    async fn forget(&self, device: &DeviceUid) -> Result<(), EngineError> {
        let running = self
            .lock()
            .get(device)
            .and_then(Weak::upgrade)
            .map(WebSession::from_inner);
        if let Some(s) = running {
            // The contract says it was stopped; stopping again is a no-op if so, and
            // deleting a store under a live client would corrupt it.
            s.stop().await;
        }
        self.lock().remove(device);
        crate::store::DeviceStore::of(&self.shared.config, device, 0)
            .remove()
            .await
            .map_err(|e| EngineError::Internal(format!("cannot delete the device store: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removes_all_store_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dev_x.db");
        for suffix in ["", "-wal", "-shm"] {
            std::fs::write(format!("{}{suffix}", db.display()), b"x").unwrap();
        }
        std::fs::write(dir.path().join("dev_other.db"), b"x").unwrap();
        remove_store_files(&db).await.unwrap();
        remove_store_files(&db).await.unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["dev_other.db".to_owned()]);
    }

    #[test]
    fn only_a_simulator_may_be_dialled_without_the_certificate_check() {
        let with_url = |url: Option<&str>| {
            let mut c = WebEngineConfig::new("/nonexistent");
            c.ws_url = url.map(str::to_owned);
            c
        };
        let skipped = CertCheck::Skipped;
        for url in [
            None,
            Some("wss://web.whatsapp.com/ws/chat"),
            Some("wss://127.0.0.1:443/ws/chat"),
            Some("ws://relay.example.com/ws/chat"),
            Some("ws://127.0.0.1.example.com/ws/chat"),
            Some("ws://user@127.0.0.1:80/ws/chat"),
            Some("ws://10.0.0.1:80/ws/chat"),
        ] {
            let why = connect_refusal(&with_url(url), &skipped);
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains("danger-skip-cert-chain-verify")),
                "{url:?}"
            );
        }
        for url in [
            "ws://127.0.0.1:4000/ws/chat",
            "ws://localhost:4000",
            "ws://[::1]:4000/ws/chat",
        ] {
            assert_eq!(
                connect_refusal(&with_url(Some(url)), &skipped),
                None,
                "{url}"
            );
        }
        // A build that checks certificates may dial anything.
        assert_eq!(connect_refusal(&with_url(None), &CertCheck::Enforced), None);
        assert!(connect_refusal(&with_url(None), &CertCheck::Inconclusive("x".into())).is_some());
    }
}
