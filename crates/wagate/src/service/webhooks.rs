//! The webhook use cases shared by both dialects: configure destinations (vetted against
//! SSRF), rotate the signing secret, list attempts and redeliver.

use super::{ServiceError, ServiceResult};
use crate::config::Config;
use crate::webhook::client::{UrlError, vet_configured};
use crate::webhook::signature::new_secret;
use std::sync::Arc;
use wagate_core::event::EventType;
use wagate_core::store::{Page, PageRequest, Store, StoreError};
use wagate_core::time;
use wagate_core::webhook::{
    AttemptFilter, DEFAULT_EVENT_TYPES, InstanceWebhook, MsgeraWebhooks, WebhookAttempt,
    WebhookChange, WebhookConfig,
};
use wagate_core::{AccountId, DeviceUid};

fn not_found(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound => ServiceError::NotFound("device"),
        other => ServiceError::Store(other),
    }
}

/// Parses event type names (`field` names the request field); `None` means the default.
pub fn parse_event_types(names: Option<&[String]>, field: &str) -> ServiceResult<Vec<EventType>> {
    let Some(names) = names else {
        return Ok(DEFAULT_EVENT_TYPES.to_vec());
    };
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let t = EventType::parse(n).ok_or_else(|| {
            ServiceError::Invalid(
                format!("{field}[{i}]"),
                format!("must be {}", EventType::names()),
            )
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// Webhook destinations, their signing secret, and their delivery history.
#[derive(Clone)]
pub struct WebhookService {
    config: Arc<Config>,
    store: Arc<dyn Store>,
}

impl WebhookService {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Self {
        Self { config, store }
    }

    /// A URL as given, vetted; empty means "none".
    async fn vet_url(&self, url: Option<String>, field: &str) -> ServiceResult<Option<String>> {
        let Some(url) = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if url.len() > 2048 {
            return Err(ServiceError::Invalid(
                field.into(),
                "is longer than 2048 characters".into(),
            ));
        }
        match vet_configured(&url, self.config.allow_private_urls).await {
            Ok(u) => Ok(Some(u.to_string())),
            Err(e @ (UrlError::Invalid(_) | UrlError::Internal(_) | UrlError::Unresolved(_))) => {
                Err(ServiceError::Invalid(field.into(), e.to_string()))
            }
        }
    }

    pub async fn webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
    ) -> ServiceResult<Option<WebhookConfig>> {
        self.store
            .get_webhook_config(account, device)
            .await
            .map_err(not_found)
    }

    async fn change_webhooks(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        change: WebhookChange,
    ) -> ServiceResult<WebhookConfig> {
        self.store
            .change_webhook_config(account, device, &change, &new_secret(), time::now())
            .await
            .map_err(not_found)
    }

    pub async fn set_msgera_webhooks(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        personal_url: Option<String>,
        group_url: Option<String>,
        active: bool,
        events: Vec<EventType>,
    ) -> ServiceResult<WebhookConfig> {
        let personal_url = self.vet_url(personal_url, "personalWebhookUrl").await?;
        let group_url = self.vet_url(group_url, "groupWebhookUrl").await?;
        self.change_webhooks(
            account,
            device,
            WebhookChange::Msgera(MsgeraWebhooks {
                personal_url,
                group_url,
                active,
                events,
            }),
        )
        .await
    }

    pub async fn set_instance_webhook(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        url: Option<String>,
        field: &str,
        events: Vec<EventType>,
    ) -> ServiceResult<WebhookConfig> {
        let url = self.vet_url(url, field).await?;
        self.change_webhooks(
            account,
            device,
            WebhookChange::Instance(InstanceWebhook { url, events }),
        )
        .await
    }

    /// A new secret; the current one keeps signing for the configured grace period.
    pub async fn rotate_webhook_secret(
        &self,
        account: &AccountId,
        device: &DeviceUid,
    ) -> ServiceResult<WebhookConfig> {
        let grace = i64::try_from(self.config.webhooks.secret_grace_secs).unwrap_or(i64::MAX);
        let previous_until = time::now() + chrono::Duration::seconds(grace.min(10 * 365 * 86_400));
        // Rotating a device without a configuration creates one with the new secret.
        self.change_webhooks(
            account,
            device,
            WebhookChange::RotateSecret {
                secret: new_secret(),
                previous_until,
            },
        )
        .await
    }

    pub async fn webhook_history(
        &self,
        account: &AccountId,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> ServiceResult<Page<WebhookAttempt>> {
        // A device named in the filter must be the account's own: 404 like every other
        // device route, not an empty page that reads as "no attempts".
        if let Some(device) = &filter.device_uid {
            super::device_of(self.store.as_ref(), account, device).await?;
        }
        Ok(self
            .store
            .list_webhook_attempts(account, filter, page)
            .await?)
    }

    /// Queues an attempt's event again for its destination; wakes the dispatcher.
    pub async fn redeliver_webhook(&self, account: &AccountId, attempt: i64) -> ServiceResult<i64> {
        let id = match self.store.redeliver(account, attempt, time::now()).await {
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("webhook attempt")),
            other => other?,
        };
        // The store announces the redelivery, which wakes the dispatcher.
        Ok(id)
    }
}
