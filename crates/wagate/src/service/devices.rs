//! Devices: create (and start), read with live budgets, change, delete; instance tokens
//! for the MegaMsg dialect.

use super::port::DeviceCounters;
use super::port::{DeviceControl, Outbox};
use super::{ServiceError, ServiceResult};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
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
}

impl DeviceService {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
        outbox: Arc<dyn Outbox>,
    ) -> Self {
        Self {
            store,
            control,
            outbox,
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
        let (token, hash) = generate_instance_token();
        let new = NewDevice {
            uid: DeviceUid::new(),
            account_id: account.clone(),
            name,
            engine: req.engine,
            limits,
            pacing,
            instance_token_hash: hash,
            created_at: time::now(),
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
        Ok(DeviceView {
            device,
            usage,
            counters,
            node,
        })
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

    pub async fn update_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        patch: DevicePatch,
    ) -> ServiceResult<DeviceView> {
        let mut patch = patch;
        if let Some(name) = &patch.name {
            patch.name = Some(validate_name(name)?);
        }
        if let Some(l) = &patch.limits {
            validate_limits(l, "safety")?;
        }
        if let Some(p) = &patch.pacing {
            validate_pacing(p, "pacing")?;
        }
        let device = match self.store.update_device(account, uid, &patch).await {
            Err(StoreError::NotFound) => return Err(ServiceError::NotFound("device")),
            other => other?,
        };
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
