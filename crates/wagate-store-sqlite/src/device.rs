//! Devices: settings, connection state (with its `device.status` events) and soft deletion.

use crate::SqliteStore;
use crate::advance::{AdvanceRequest, advance_chunk};
use crate::cache::Lookup;
use crate::error::map_sqlx;
use crate::event::append;
use crate::row::{device_columns, device_from_row, get, hash32};
use async_trait::async_trait;
use sqlx::SqliteConnection;
use wagate_core::device::{Device, DevicePatch, DeviceStateChange, DeviceStatus, NewDevice};
use wagate_core::event::NewEvent;
use wagate_core::lease::Fence;
use wagate_core::message::MessageStatus;
use wagate_core::store::{DeviceStore, MessageRef, Page, PageRequest, StoreError, StoreResult};
use wagate_core::time::{Timestamp, millis};
use wagate_core::{AccountId, DeviceUid, MessageId};

/// Why a device's pending sends failed when it was deleted.
pub(crate) const DELETED_REASON: &str = "device deleted";

/// A live device, optionally only of `account`, read inside a write transaction.
pub(crate) async fn live_device(
    conn: &mut SqliteConnection,
    uid: &DeviceUid,
    account: Option<&AccountId>,
) -> StoreResult<Device> {
    let row = sqlx::query(concat!(
        "SELECT ",
        device_columns!(),
        " FROM devices d WHERE d.uid = ? AND d.deleted_at IS NULL"
    ))
    .bind(uid.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_sqlx)?
    .ok_or(StoreError::NotFound)?;
    let device = device_from_row(&row)?;
    match account {
        Some(account) if *account != device.account_id => Err(StoreError::NotFound),
        _ => Ok(device),
    }
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_device(&self, device: &NewDevice) -> StoreResult<Device> {
        let new = device.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let at = millis(new.created_at);
                    sqlx::query(
                        "INSERT INTO devices (uid, account_id, name, engine, status, per_day, \
                         per_hour, per_minute, min_delay_ms, max_delay_ms, typing_indicator, \
                         instance_token_hash, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(new.uid.as_str())
                    .bind(new.account_id.as_str())
                    .bind(&new.name)
                    .bind(new.engine.as_str())
                    .bind(DeviceStatus::Created.as_str())
                    .bind(i64::from(new.limits.per_day))
                    .bind(i64::from(new.limits.per_hour))
                    .bind(i64::from(new.limits.per_minute))
                    .bind(i64::from(new.pacing.min_delay_ms))
                    .bind(i64::from(new.pacing.max_delay_ms))
                    .bind(new.pacing.typing_indicator)
                    .bind(new.instance_token_hash.as_slice())
                    .bind(at)
                    .bind(at)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    // In the same transaction: a device never starts without what it
                    // signs in with.
                    if let Some(sealed) = &new.sealed_secret {
                        put_secret(conn, &new.uid, sealed, at).await?;
                    }
                    live_device(conn, &new.uid, None).await
                })
            })
            .await
    }

    async fn get_device(&self, account: &AccountId, uid: &DeviceUid) -> StoreResult<Device> {
        let device = self.get_device_by_uid(uid).await?;
        if device.account_id != *account {
            return Err(StoreError::NotFound);
        }
        Ok(device)
    }

    async fn get_device_by_uid(&self, uid: &DeviceUid) -> StoreResult<Device> {
        let generation = match self.devices.lookup(uid) {
            Lookup::Hit(device) => return Ok(device),
            Lookup::Miss(generation) => generation,
        };
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.uid = ? AND d.deleted_at IS NULL"
        ))
        .bind(uid.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        let device = device_from_row(&row)?;
        self.devices.store(uid.clone(), device.clone(), generation);
        Ok(device)
    }

    async fn list_devices(&self, account: &AccountId) -> StoreResult<Vec<Device>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.account_id = ? AND d.deleted_at IS NULL \
             ORDER BY d.created_at, d.rowid"
        ))
        .bind(account.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn list_devices_page(
        &self,
        account: &AccountId,
        page: PageRequest,
    ) -> StoreResult<Page<Device>> {
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let total: i64 = get(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM devices WHERE account_id = ? AND deleted_at IS NULL",
            )
            .bind(account.as_str())
            .fetch_one(&self.read)
            .await
            .map_err(map_sqlx)?,
            "n",
        )?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.account_id = ? AND d.deleted_at IS NULL \
             ORDER BY d.created_at, d.rowid LIMIT ? OFFSET ?"
        ))
        .bind(account.as_str())
        .bind(i64::from(page.limit))
        .bind(offset)
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        Ok(Page {
            items: rows
                .iter()
                .map(device_from_row)
                .collect::<StoreResult<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page: page.page,
            limit: page.limit,
        })
    }

    async fn list_all_devices(&self) -> StoreResult<Vec<Device>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.deleted_at IS NULL ORDER BY d.created_at, d.rowid"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn update_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        patch: &DevicePatch,
    ) -> StoreResult<Device> {
        let (account, uid, patch) = (account.clone(), uid.clone(), patch.clone());
        let written = uid.clone();
        // The patch carries no time of its own, so the store stamps it; `max` keeps
        // `updated_at` from going backwards when the clock does.
        let now = millis(wagate_core::time::now());
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    live_device(conn, &uid, Some(&account)).await?;
                    let limits = patch.limits;
                    let pacing = patch.pacing;
                    sqlx::query(
                        "UPDATE devices SET name = COALESCE(?, name), \
                         per_day = COALESCE(?, per_day), per_hour = COALESCE(?, per_hour), \
                         per_minute = COALESCE(?, per_minute), \
                         min_delay_ms = COALESCE(?, min_delay_ms), \
                         max_delay_ms = COALESCE(?, max_delay_ms), \
                         typing_indicator = COALESCE(?, typing_indicator), \
                         updated_at = MAX(updated_at, ?) WHERE uid = ?",
                    )
                    .bind(patch.name)
                    .bind(limits.map(|l| i64::from(l.per_day)))
                    .bind(limits.map(|l| i64::from(l.per_hour)))
                    .bind(limits.map(|l| i64::from(l.per_minute)))
                    .bind(pacing.map(|p| i64::from(p.min_delay_ms)))
                    .bind(pacing.map(|p| i64::from(p.max_delay_ms)))
                    .bind(pacing.map(|p| p.typing_indicator))
                    .bind(now)
                    .bind(uid.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if let Some(sealed) = &patch.sealed_secret {
                        put_secret(conn, &uid, sealed, now).await?;
                    }
                    live_device(conn, &uid, None).await
                })
            })
            .await;
        // After the commit: a read racing it cannot store the old row (see `cache`).
        self.devices.forget(&written);
        result
    }

    async fn delete_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        at: Timestamp,
    ) -> StoreResult<()> {
        let (account, uid) = (account.clone(), uid.clone());
        let written = uid.clone();
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    live_device(conn, &uid, Some(&account)).await?;
                    sqlx::query("UPDATE devices SET deleted_at = ?, updated_at = ? WHERE uid = ?")
                        .bind(millis(at))
                        .bind(millis(at))
                        .bind(uid.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    // Nothing the device signed in with outlives it.
                    sqlx::query("DELETE FROM device_secrets WHERE device_uid = ?")
                        .bind(uid.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    // Every message still waiting in the queue fails, through the same path
                    // as any failure, so each gets its history step and its event.
                    let pending: Vec<String> = sqlx::query_scalar(
                        "SELECT message_id FROM send_jobs WHERE device_uid = ? ORDER BY id",
                    )
                    .bind(uid.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    let steps: Vec<AdvanceRequest> = pending
                        .iter()
                        .filter_map(|id| MessageId::parse(id).ok())
                        .map(|id| AdvanceRequest {
                            fence: None,
                            target: MessageRef::Id(id),
                            status: MessageStatus::Failed,
                            at,
                            reason: Some(DELETED_REASON.into()),
                        })
                        .collect();
                    let steps: Vec<&AdvanceRequest> = steps.iter().collect();
                    for result in advance_chunk(conn, &steps).await? {
                        result?;
                    }
                    sqlx::query("DELETE FROM send_jobs WHERE device_uid = ?")
                        .bind(uid.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await;
        // After the commit: a read racing it cannot store the old row (see `cache`).
        self.devices.forget(&written);
        result
    }

    async fn record_device_state(
        &self,
        fence: &Fence,
        change: &DeviceStateChange,
        qr: Option<&str>,
    ) -> StoreResult<Device> {
        let (fence, change, qr) = (fence.clone(), change.clone(), qr.map(str::to_owned));
        let uid = fence.device_uid.clone();
        let written = uid.clone();
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    crate::fence::check(conn, &fence).await?;
                    let before = live_device(conn, &uid, None).await?;
                    // The core says what the change makes of the device and how it is
                    // reported; this writes both.
                    let device = change.apply_to(&before);
                    sqlx::query(
                        "UPDATE devices SET status = ?, status_reason = ?, phone = ?, \
                         push_name = ?, connected_at = ?, updated_at = ? WHERE uid = ?",
                    )
                    .bind(device.status.as_str())
                    .bind(&device.status_reason)
                    .bind(device.phone.as_ref().map(|p| p.digits().to_owned()))
                    .bind(&device.push_name)
                    .bind(device.connected_at.map(millis))
                    .bind(millis(device.updated_at))
                    .bind(uid.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    append(
                        conn,
                        &NewEvent::device_status(&device, qr.as_deref(), change.at),
                    )
                    .await?;
                    Ok(device)
                })
            })
            .await;
        // After the commit: a read racing it cannot store the old row (see `cache`).
        self.devices.forget(&written);
        result
    }

    async fn set_instance_token_hash(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        hash: &[u8; 32],
    ) -> StoreResult<()> {
        let (account, uid, hash) = (account.clone(), uid.clone(), *hash);
        let written = uid.clone();
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    live_device(conn, &uid, Some(&account)).await?;
                    sqlx::query("UPDATE devices SET instance_token_hash = ? WHERE uid = ?")
                        .bind(hash.as_slice())
                        .bind(uid.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await;
        // After the commit: a read racing it cannot store the old row (see `cache`).
        self.devices.forget(&written);
        result
    }

    async fn get_instance_credential(&self, uid: &DeviceUid) -> StoreResult<(Device, [u8; 32])> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            ", d.instance_token_hash FROM devices d WHERE d.uid = ? AND d.deleted_at IS NULL"
        ))
        .bind(uid.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        Ok((device_from_row(&row)?, hash32(&row, "instance_token_hash")?))
    }

    async fn get_device_secret(&self, uid: &DeviceUid) -> StoreResult<Option<Vec<u8>>> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(
            "SELECT s.sealed FROM devices d LEFT JOIN device_secrets s ON s.device_uid = d.uid \
             WHERE d.uid = ? AND d.deleted_at IS NULL",
        )
        .bind(uid.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?;
        row.map(|(sealed,)| sealed).ok_or(StoreError::NotFound)
    }
}

/// Writes the device's sealed secret, replacing the one it had.
async fn put_secret(
    conn: &mut SqliteConnection,
    uid: &DeviceUid,
    sealed: &[u8],
    at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO device_secrets (device_uid, sealed, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (device_uid) DO UPDATE SET sealed = excluded.sealed, \
         updated_at = excluded.updated_at",
    )
    .bind(uid.as_str())
    .bind(sealed)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}
