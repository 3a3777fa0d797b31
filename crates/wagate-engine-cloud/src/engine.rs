//! The `cloud-api` engine: one [`GraphClient`] shared by every Cloud API device, and
//! where each device's credentials come from. A device's session has no connection to
//! keep: it proves its token once at start (the device turns `connected` or `failed` with
//! Meta's words), then sends with plain HTTPS calls and takes Meta's webhooks as pushes.

use crate::client::GraphClient;
use crate::session::Session;
use async_trait::async_trait;
use std::sync::Arc;
use wagate_core::DeviceUid;
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::device::EngineKind;
use wagate_core::engine::{DeviceContext, Engine, EngineError, EngineEvents, EngineSession};

/// Where the engine reads a device's credentials: the gateway keeps them encrypted in its
/// store and decrypts them on demand, so a replaced token (PATCH) is read by the next
/// session without the engine knowing the store.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// The device's credentials; `Ok(None)` for a device that has none.
    async fn cloud_api(
        &self,
        device: &DeviceUid,
    ) -> Result<Option<CloudApiCredentials>, EngineError>;
}

pub struct CloudApiEngine {
    client: GraphClient,
    credentials: Arc<dyn CredentialSource>,
}

impl CloudApiEngine {
    pub fn new(client: GraphClient, credentials: Arc<dyn CredentialSource>) -> Self {
        Self {
            client,
            credentials,
        }
    }
}

#[async_trait]
impl Engine for CloudApiEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::CloudApi
    }

    async fn start(
        &self,
        device: DeviceContext,
        events: Arc<dyn EngineEvents>,
    ) -> Result<Arc<dyn EngineSession>, EngineError> {
        let creds = self
            .credentials
            .cloud_api(&device.uid)
            .await?
            .ok_or_else(|| EngineError::Rejected {
                code: Some("no_credentials".into()),
                reason: "the device has no Cloud API credentials; set them with PATCH".into(),
            })?;
        Ok(Session::start(
            device,
            creds,
            Arc::clone(&self.credentials),
            self.client.clone(),
            events,
        ))
    }

    /// Nothing is kept outside the gateway's store: the credentials go with the device.
    async fn forget(&self, _device: &DeviceUid) -> Result<(), EngineError> {
        Ok(())
    }
}
