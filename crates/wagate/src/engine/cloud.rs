//! The `cloud-api` engine as this server builds it: one Graph API client for every Cloud
//! API device, and their credentials read from the store and opened with the secrets key
//! each time a session starts or reconnects (so a `PATCH` that replaces them is read by
//! the next connection, on whichever node drives the device).

use crate::config::CloudApiConfig;
use crate::secrets::SecretsKey;
use async_trait::async_trait;
use std::sync::Arc;
use wagate_core::DeviceUid;
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::engine::EngineError;
use wagate_core::store::{Store, StoreError};
use wagate_engine_cloud::{CloudApiEngine, CredentialSource, GraphClient, GraphConfig};

/// Builds the engine from `cloud_api.*`.
pub fn engine(
    config: &CloudApiConfig,
    store: Arc<dyn Store>,
    key: SecretsKey,
) -> Result<CloudApiEngine, String> {
    let url = config.parsed_graph_url()?;
    let version = config.checked_version()?;
    let client = GraphClient::new(GraphConfig::new(url, version))
        .map_err(|e| format!("building the Graph API client: {e}"))?;
    Ok(CloudApiEngine::new(
        client,
        Arc::new(StoredCredentials { store, key }),
    ))
}

/// Credentials sealed in the store's `device_secrets`.
struct StoredCredentials {
    store: Arc<dyn Store>,
    key: SecretsKey,
}

#[async_trait]
impl CredentialSource for StoredCredentials {
    async fn cloud_api(
        &self,
        device: &DeviceUid,
    ) -> Result<Option<CloudApiCredentials>, EngineError> {
        let sealed = match self.store.get_device_secret(device).await {
            Ok(Some(sealed)) => sealed,
            Ok(None) | Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(EngineError::Transient(format!("reading credentials: {e}"))),
        };
        self.key
            .open_cloud_api(device, &sealed)
            .map(Some)
            // Not Meta's refusal but this node's: set them again, or give this node the
            // cluster's `secrets_key`.
            .map_err(|e| EngineError::Rejected {
                code: Some("secrets_key".into()),
                reason: format!(
                    "{e}: give this node the same secrets_key as the node that stored them, or set the credentials again with PATCH"
                ),
            })
    }
}
