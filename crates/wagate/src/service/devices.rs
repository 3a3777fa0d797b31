//! Devices: create (and start), read with live budgets, change, delete; instance tokens
//! for the MegaMsg dialect; a Cloud API number's credentials, sealed before they are
//! stored and never shown again.

use super::port::DeviceCounters;
use super::port::{DeviceControl, Outbox};
use super::{LinkingService, ServiceError, ServiceResult};
use crate::secrets::SecretsKey;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::device::{Device, DevicePatch, EngineKind, NewDevice, Pacing, SafetyLimits};
use wagate_core::store::Store;
use wagate_core::store::{BudgetUsage, Page, PageRequest, StoreError};
use wagate_core::{AccountId, DeviceUid, time};

/// A device with what is computed about it when read.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub usage: BudgetUsage,
    pub counters: DeviceCounters,
    /// The node holding the device's lease now, if any.
    pub node: Option<String>,
    /// What may be shown of a Cloud API device's credentials (none of its secrets).
    pub cloud_api: Option<CloudApiView>,
}

/// A Cloud API device as the API shows it: the ids, and what to give Meta for its
/// webhooks. The verify token is shown (it only answers Meta's handshake, and the user
/// chose it to paste into Meta's app); the access token and app secret never are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudApiView {
    pub phone_number_id: String,
    pub business_account_id: Option<String>,
    pub verify_token: Option<String>,
    /// The callback URL to give Meta: `{public_url}/webhooks/cloud-api/{deviceUid}`.
    pub webhook_url: String,
}

/// A change of a Cloud API device's credentials: the fields given replace the stored ones.
#[derive(Debug, Clone, Default)]
pub struct CloudApiPatch {
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub business_account_id: Option<String>,
}

impl CloudApiPatch {
    fn is_empty(&self) -> bool {
        self.phone_number_id.is_none()
            && self.access_token.is_none()
            && self.app_secret.is_none()
            && self.verify_token.is_none()
            && self.business_account_id.is_none()
    }

    fn apply(self, old: CloudApiCredentials) -> CloudApiCredentials {
        CloudApiCredentials {
            phone_number_id: self.phone_number_id.unwrap_or(old.phone_number_id),
            access_token: self.access_token.unwrap_or(old.access_token),
            app_secret: self.app_secret.unwrap_or(old.app_secret),
            verify_token: self.verify_token.unwrap_or(old.verify_token),
            business_account_id: self.business_account_id.or(old.business_account_id),
        }
    }
}

/// A device change as the API asks for it.
#[derive(Debug, Clone, Default)]
pub struct DeviceChange {
    pub name: Option<String>,
    pub limits: Option<SafetyLimits>,
    pub pacing: Option<Pacing>,
    pub cloud_api: Option<CloudApiPatch>,
}

impl DeviceView {
    pub fn daily_remaining(&self) -> u64 {
        u64::from(self.device.limits.per_day).saturating_sub(self.usage.accepted_last_day)
    }
    pub fn hourly_remaining(&self) -> u64 {
        u64::from(self.device.limits.per_hour).saturating_sub(self.usage.handed_last_hour)
    }
    pub fn minute_remaining(&self) -> u64 {
        u64::from(self.device.limits.per_minute).saturating_sub(self.usage.handed_last_minute)
    }
}

pub struct NewDeviceRequest {
    pub name: String,
    pub engine: EngineKind,
    pub limits: Option<SafetyLimits>,
    pub pacing: Option<Pacing>,
    /// Required for, and only for, the `cloud-api` engine.
    pub cloud_api: Option<CloudApiCredentials>,
}

/// Credentials checked field by field, errors named as the API names them.
fn checked(creds: &CloudApiCredentials) -> ServiceResult<()> {
    creds
        .check()
        .map_err(|e| ServiceError::Invalid(format!("cloudApi.{}", e.field), e.message))
}

/// A whole set of credentials from a patch (when there are none to change).
fn complete(p: CloudApiPatch) -> ServiceResult<CloudApiCredentials> {
    let need = |v: Option<String>, field: &str| {
        v.ok_or_else(|| {
            ServiceError::Invalid(
                format!("cloudApi.{field}"),
                "is required: the device has no readable credentials to change".into(),
            )
        })
    };
    Ok(CloudApiCredentials {
        phone_number_id: need(p.phone_number_id, "phoneNumberId")?,
        access_token: need(p.access_token, "accessToken")?,
        app_secret: need(p.app_secret, "appSecret")?,
        verify_token: need(p.verify_token, "verifyToken")?,
        business_account_id: p.business_account_id,
    })
}

/// A 64-character instance token (32 random bytes, hex), shown once.
fn generate_instance_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = instance_token_hash(&token);
    (token, hash)
}

pub fn instance_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn validate_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::Invalid(
            "name".into(),
            "must be 1 to 100 characters".into(),
        ));
    }
    wagate_core::text::check_name(name).map_err(|m| ServiceError::Invalid("name".into(), m))?;
    Ok(name.to_owned())
}

pub fn validate_limits(l: &SafetyLimits, field: &str) -> ServiceResult<()> {
    for (name, v) in [
        ("dailyLimit", l.per_day),
        ("hourlyLimit", l.per_hour),
        ("minuteLimit", l.per_minute),
    ] {
        if v == 0 {
            return Err(ServiceError::Invalid(
                format!("{field}.{name}"),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

pub fn validate_pacing(p: &Pacing, field: &str) -> ServiceResult<()> {
    if p.min_delay_ms > p.max_delay_ms {
        return Err(ServiceError::Invalid(
            format!("{field}.minDelayMs"),
            "must not exceed maxDelayMs".into(),
        ));
    }
    if p.max_delay_ms > 600_000 {
        return Err(ServiceError::Invalid(
            format!("{field}.maxDelayMs"),
            "must be at most 600000 (10 minutes)".into(),
        ));
    }
    Ok(())
}

/// Devices: create, read with live budgets, change, delete (linking is `LinkingService`).
#[derive(Clone)]
pub struct DeviceService {
    store: Arc<dyn Store>,
    control: Arc<dyn DeviceControl>,
    outbox: Arc<dyn Outbox>,
    secrets: SecretsKey,
    /// Reconnects a device whose credentials changed, on whichever node drives it.
    linking: LinkingService,
    /// This server's public URL, for the webhook URL Meta is given.
    public_url: String,
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
        outbox: Arc<dyn Outbox>,
        secrets: SecretsKey,
        linking: LinkingService,
        public_url: &str,
    ) -> Self {
        Self {
            store,
            control,
            outbox,
            secrets,
            linking,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Creates the device and starts its engine; returns the instance token (shown once).
    pub async fn create_device(
        &self,
        account: &AccountId,
        req: NewDeviceRequest,
    ) -> ServiceResult<(DeviceView, String)> {
        let name = validate_name(&req.name)?;
        let available = self.control.engine_kinds();
        if !available.contains(&req.engine) {
            let kinds: Vec<_> = available.iter().map(|k| k.as_str()).collect();
            return Err(ServiceError::Invalid(
                "engine".into(),
                format!(
                    "the {} engine is not available in this build (available: {})",
                    req.engine.as_str(),
                    kinds.join(", ")
                ),
            ));
        }
        let limits = req.limits.unwrap_or_default();
        validate_limits(&limits, "safety")?;
        let pacing = req
            .pacing
            .unwrap_or_else(|| Pacing::default_for(req.engine));
        validate_pacing(&pacing, "pacing")?;
        let uid = DeviceUid::new();
        let sealed_secret = match (req.engine, &req.cloud_api) {
            (EngineKind::CloudApi, Some(creds)) => {
                checked(creds)?;
                Some(self.secrets.seal_cloud_api(&uid, creds))
            }
            (EngineKind::CloudApi, None) => {
                return Err(ServiceError::Invalid(
                    "cloudApi".into(),
                    "is required for the cloud-api engine: phoneNumberId, accessToken, appSecret and verifyToken from Meta's app".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(ServiceError::Invalid(
                    "cloudApi".into(),
                    "is only for devices of the cloud-api engine".into(),
                ));
            }
            (_, None) => None,
        };
        let (token, hash) = generate_instance_token();
        let new = NewDevice {
            uid,
            account_id: account.clone(),
            name,
            engine: req.engine,
            limits,
            pacing,
            instance_token_hash: hash,
            created_at: time::now(),
            sealed_secret,
        };
        let device = self.store.create_device(&new).await?;
        self.control.start(&device).await;
        // Starting may already have changed the state (sandbox: connecting).
        let view = self.device_view(account, &device.uid).await?;
        Ok((view, token))
    }

    pub async fn device_view(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
    ) -> ServiceResult<DeviceView> {
        let device = self.get_device(account, uid).await?;
        self.view_of(device).await
    }

    async fn view_of(&self, device: Device) -> ServiceResult<DeviceView> {
        let now = time::now();
        let usage = self.store.budget_usage(&device.uid, now).await?;
        let counters = self.control.counters(&device.uid);
        let node = self
            .store
            .get_device_lease(&device.uid)
            .await?
            .filter(|l| l.is_held(now))
            .and_then(|l| l.owner);
        let cloud_api = match device.engine {
            EngineKind::CloudApi => self.cloud_api_view(&device.uid).await?,
            _ => None,
        };
        Ok(DeviceView {
            device,
            usage,
            counters,
            node,
            cloud_api,
        })
    }

    /// The device's stored credentials, opened.
    async fn cloud_api_credentials(
        &self,
        uid: &DeviceUid,
    ) -> ServiceResult<Option<CloudApiCredentials>> {
        let Some(sealed) = self.store.get_device_secret(uid).await? else {
            return Ok(None);
        };
        self.secrets
            .open_cloud_api(uid, &sealed)
            .map(Some)
            .map_err(|e| ServiceError::Conflict(format!(
                "the device's credentials cannot be read here ({e}): give every node the same secrets_key, or set them again"
            )))
    }

    async fn cloud_api_view(&self, uid: &DeviceUid) -> ServiceResult<Option<CloudApiView>> {
        // A node that cannot open them still lists the device; its status says why it
        // does not run.
        let creds = match self.cloud_api_credentials(uid).await {
            Ok(c) => c,
            Err(ServiceError::Conflict(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(CloudApiView {
            phone_number_id: creds
                .as_ref()
                .map(|c| c.phone_number_id.clone())
                .unwrap_or_default(),
            business_account_id: creds.as_ref().and_then(|c| c.business_account_id.clone()),
            verify_token: creds.map(|c| c.verify_token),
            webhook_url: format!("{}/webhooks/cloud-api/{uid}", self.public_url),
        }))
    }

    pub async fn get_device(&self, account: &AccountId, uid: &DeviceUid) -> ServiceResult<Device> {
        super::device_of(self.store.as_ref(), account, uid).await
    }

    /// One page of the account's devices, oldest first.
    pub async fn list_devices_page(
        &self,
        account: &AccountId,
        page: PageRequest,
    ) -> ServiceResult<Page<DeviceView>> {
        let found = self.store.list_devices_page(account, page).await?;
        let mut items = Vec::with_capacity(found.items.len());
        for d in found.items {
            items.push(self.view_of(d).await?);
        }
        Ok(Page {
            items,
            total: found.total,
            page: found.page,
            limit: found.limit,
        })
    }

    pub async fn list_devices(&self, account: &AccountId) -> ServiceResult<Vec<DeviceView>> {
        let mut out = Vec::new();
        for d in self.store.list_devices(account).await? {
            out.push(self.view_of(d).await?);
        }
        Ok(out)
    }

    /// Changes the device's settings; new Cloud API credentials are sealed, stored with
    /// the rest in one commit, then the device reconnects with them.
    pub async fn update_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        change: DeviceChange,
    ) -> ServiceResult<DeviceView> {
        let mut patch = DevicePatch {
            name: change.name.as_deref().map(validate_name).transpose()?,
            limits: change.limits,
            pacing: change.pacing,
            sealed_secret: None,
        };
        if let Some(l) = &patch.limits {
            validate_limits(l, "safety")?;
        }
        if let Some(p) = &patch.pacing {
            validate_pacing(p, "pacing")?;
        }
        let new_credentials = match change.cloud_api {
            Some(cloud) => {
                let device = self.get_device(account, uid).await?;
                if device.engine != EngineKind::CloudApi {
                    return Err(ServiceError::Invalid(
                        "cloudApi".into(),
                        "is only for devices of the cloud-api engine".into(),
                    ));
                }
                if cloud.is_empty() {
                    return Err(ServiceError::Invalid(
                        "cloudApi".into(),
                        "names no field to change".into(),
                    ));
                }
                let creds = match self.cloud_api_credentials(uid).await {
                    Ok(Some(old)) => cloud.apply(old),
                    // Unreadable or missing: only a complete set replaces them.
                    Ok(None) | Err(ServiceError::Conflict(_)) => complete(cloud)?,
                    Err(e) => return Err(e),
                };
                checked(&creds)?;
                patch.sealed_secret = Some(self.secrets.seal_cloud_api(uid, &creds));
                true
            }
            None => false,
        };
        let device = match self.store.update_device(account, uid, &patch).await {
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("device")),
            other => other?,
        };
        if new_credentials {
            // Proven again with the new ones where the session runs; a node that cannot
            // be reached now reads them at its next start.
            if let Err(e) = self.linking.connect_device(account, uid).await {
                tracing::warn!(device = %uid, error = %e, "the device did not reconnect with its new credentials");
            }
        }
        // New budgets may allow sending now.
        self.outbox.wake(uid);
        self.view_of(device).await
    }

    /// Stops the device, deletes its keys and hides it; queued messages fail.
    pub async fn delete_device(&self, account: &AccountId, uid: &DeviceUid) -> ServiceResult<()> {
        let device = self.get_device(account, uid).await?;
        // Deleted first, so no node (this one's next lease round included) starts it again;
        // then stopped here and its keys removed. A node of the cluster that drives it
        // stops it and removes its keys at its next round.
        match self.store.delete_device(account, uid, time::now()).await {
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("device")),
            other => other?,
        }
        self.control.remove(uid, device.engine).await;
        Ok(())
    }

    /// Replaces the device's instance token; the old one stops working at once.
    pub async fn rotate_instance_token(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
    ) -> ServiceResult<String> {
        self.get_device(account, uid).await?;
        let (token, hash) = generate_instance_token();
        self.store
            .set_instance_token_hash(account, uid, &hash)
            .await?;
        Ok(token)
    }
}
