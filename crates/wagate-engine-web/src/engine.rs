//! The whatsapp-web [`Engine`]: starts one [`WebSession`] per device, each on its own
//! SQLite store file under the data directory, and deletes those files when a device is
//! forgotten.

use crate::config::WebEngineConfig;
use crate::session::{Inner, Shared, WebSession};
use crate::stats::SessionStats;
use async_trait::async_trait;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
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
        Self {
            shared: Arc::new(Shared {
                config,
                transport,
                http,
                start_slots: Semaphore::new(slots),
            }),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &WebEngineConfig {
        &self.shared.config
    }

    /// The device's store file (`<data_dir>/<uid>.db`).
    pub fn store_path(&self, device: &DeviceUid) -> PathBuf {
        self.shared
            .config
            .data_dir
            .join(format!("{}.db", device.as_str()))
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
        let path = self.store_path(&device.uid);
        let session = WebSession::start(device.uid.clone(), path, self.shared.clone(), events);
        sessions.insert(device.uid, session.weak());
        Ok(session)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceUid, Weak<Inner>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        remove_store_files(&self.store_path(device))
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
}
