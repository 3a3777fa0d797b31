//! Devices: settings, connection state (with its `device.status` events) and soft deletion.
//!
//! Writes that depend on a device's current row lock it first (`FOR NO KEY UPDATE`: it
//! does not block rows that merely reference the device), so that a state change, a
//! deletion and the accepts of the device take turns ([`crate::accept`] takes the same
//! lock).

use crate::PgStore;
use crate::advance::{AdvanceRequest, advance};
use crate::error::map_sqlx;
use crate::event::append;
use crate::row::{count, device_columns, device_from_row, hash32};
use async_trait::async_trait;
use sqlx::PgConnection;
use wagate_core::device::{Device, DevicePatch, DeviceStateChange, DeviceStatus, NewDevice};
use wagate_core::event::NewEvent;
use wagate_core::lease::Fence;
use wagate_core::message::MessageStatus;
use wagate_core::store::{DeviceStore, MessageRef, Page, PageRequest, StoreError, StoreResult};
use wagate_core::time::{Timestamp, millis};
use wagate_core::{AccountId, DeviceUid, MessageId};

/// Why a device's pending sends failed when it was deleted.
pub(crate) const DELETED_REASON: &str = "device deleted";

/// A live device, optionally only of `account`, locked for the rest of the caller's
/// transaction.
pub(crate) async fn lock_live_device(
    conn: &mut PgConnection,
    uid: &DeviceUid,
    account: Option<&AccountId>,
) -> StoreResult<Device> {
    let row = sqlx::query(concat!(
        "SELECT ",
        device_columns!(),
        " FROM devices d WHERE d.uid = $1 AND d.deleted_at IS NULL FOR NO KEY UPDATE"
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
impl DeviceStore for PgStore {
    async fn create_device(&self, new: &NewDevice) -> StoreResult<Device> {
        let at = millis(new.created_at);
        // With its secret, or not at all: a device never starts without what it signs in
        // with.
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO devices AS d (uid, account_id, name, engine, status, per_day, \
             per_hour, per_minute, min_delay_ms, max_delay_ms, typing_indicator, \
             instance_token_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING ",
            device_columns!()
        ))
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
        .fetch_one(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if let Some(sealed) = &new.sealed_secret {
            put_secret(&mut tx, &new.uid, sealed, at).await?;
        }
        self.commit(tx, None).await?;
        device_from_row(&row)
    }

    async fn get_device(&self, account: &AccountId, uid: &DeviceUid) -> StoreResult<Device> {
        let device = self.get_device_by_uid(uid).await?;
        if device.account_id != *account {
            return Err(StoreError::NotFound);
        }
        Ok(device)
    }

    async fn get_device_by_uid(&self, uid: &DeviceUid) -> StoreResult<Device> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.uid = $1 AND d.deleted_at IS NULL"
        ))
        .bind(uid.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        device_from_row(&row)
    }

    async fn list_devices(&self, account: &AccountId) -> StoreResult<Vec<Device>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.account_id = $1 AND d.deleted_at IS NULL \
             ORDER BY d.created_at, d.ord"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
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
        let total = count(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM devices WHERE account_id = $1 AND deleted_at IS NULL",
            )
            .bind(account.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?,
            "n",
        )?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.account_id = $1 AND d.deleted_at IS NULL \
             ORDER BY d.created_at, d.ord LIMIT $2 OFFSET $3"
        ))
        .bind(account.as_str())
        .bind(i64::from(page.limit))
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(Page {
            items: rows
                .iter()
                .map(device_from_row)
                .collect::<StoreResult<_>>()?,
            total,
            page: page.page,
            limit: page.limit,
        })
    }

    async fn list_all_devices(&self) -> StoreResult<Vec<Device>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.deleted_at IS NULL ORDER BY d.created_at, d.ord"
        ))
        .fetch_all(&self.pool)
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
        // The patch carries no time of its own, so the store stamps it; `GREATEST` keeps
        // `updated_at` from going backwards when a clock does.
        let now = millis(wagate_core::time::now());
        let limits = patch.limits;
        let pacing = patch.pacing;
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "UPDATE devices d SET name = COALESCE($1, name), \
             per_day = COALESCE($2, per_day), per_hour = COALESCE($3, per_hour), \
             per_minute = COALESCE($4, per_minute), \
             min_delay_ms = COALESCE($5, min_delay_ms), \
             max_delay_ms = COALESCE($6, max_delay_ms), \
             typing_indicator = COALESCE($7, typing_indicator), \
             updated_at = GREATEST(updated_at, $8) \
             WHERE uid = $9 AND account_id = $10 AND deleted_at IS NULL RETURNING ",
            device_columns!()
        ))
        .bind(patch.name.as_deref())
        .bind(limits.map(|l| i64::from(l.per_day)))
        .bind(limits.map(|l| i64::from(l.per_hour)))
        .bind(limits.map(|l| i64::from(l.per_minute)))
        .bind(pacing.map(|p| i64::from(p.min_delay_ms)))
        .bind(pacing.map(|p| i64::from(p.max_delay_ms)))
        .bind(pacing.map(|p| p.typing_indicator))
        .bind(now)
        .bind(uid.as_str())
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        if let Some(sealed) = &patch.sealed_secret {
            put_secret(&mut tx, uid, sealed, now).await?;
        }
        self.commit(tx, None).await?;
        device_from_row(&row)
    }

    async fn delete_device(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Locked first: an accept waiting on the row then finds the device deleted, and
        // one that committed before is among the pending jobs read below.
        lock_live_device(&mut tx, uid, Some(account)).await?;
        // Marks the device deleted and reads the messages still waiting in its queue, in
        // one statement.
        let pending: Vec<String> = sqlx::query_scalar(
            "WITH gone AS (UPDATE devices SET deleted_at = $1, updated_at = $1 WHERE uid = $2) \
             SELECT message_id FROM send_jobs WHERE device_uid = $2 ORDER BY id",
        )
        .bind(millis(at))
        .bind(uid.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        // Every one fails, through the same path as any failure, so each gets its history
        // step and its event; failing a message also ends its job.
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
        let advanced = advance(&mut tx, &steps).await?;
        for result in advanced.results {
            result?;
        }
        // Jobs whose message had already left `queued` (an ack racing the deletion), and
        // what the device signed in with: nothing of it outlives the device.
        sqlx::query(
            "WITH secret AS (DELETE FROM device_secrets WHERE device_uid = $1) \
             DELETE FROM send_jobs WHERE device_uid = $1",
        )
        .bind(uid.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        self.commit(tx, advanced.last_seq).await
    }

    async fn record_device_state(
        &self,
        fence: &Fence,
        change: &DeviceStateChange,
        qr: Option<&str>,
    ) -> StoreResult<Device> {
        let uid = &fence.device_uid;
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        let before = lock_live_device(&mut tx, uid, None).await?;
        // The core says what the change makes of the device and how it is reported; this
        // writes both.
        let device = change.apply_to(&before);
        sqlx::query(
            "UPDATE devices SET status = $1, status_reason = $2, phone = $3, \
             push_name = $4, connected_at = $5, updated_at = $6 WHERE uid = $7",
        )
        .bind(device.status.as_str())
        .bind(device.status_reason.as_deref())
        .bind(device.phone.as_ref().map(|p| p.digits()))
        .bind(device.push_name.as_deref())
        .bind(device.connected_at.map(millis))
        .bind(millis(device.updated_at))
        .bind(uid.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let seq = append(&mut tx, &[NewEvent::device_status(&device, qr, change.at)]).await?;
        self.commit(tx, seq).await?;
        Ok(device)
    }

    async fn set_instance_token_hash(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        hash: &[u8; 32],
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE devices SET instance_token_hash = $1 \
             WHERE uid = $2 AND account_id = $3 AND deleted_at IS NULL",
        )
        .bind(hash.as_slice())
        .bind(uid.as_str())
        .bind(account.as_str())
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_instance_credential(&self, uid: &DeviceUid) -> StoreResult<(Device, [u8; 32])> {
        let row = sqlx::query(concat!(
            "SELECT ",
            device_columns!(),
            ", d.instance_token_hash FROM devices d WHERE d.uid = $1 AND d.deleted_at IS NULL"
        ))
        .bind(uid.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        Ok((device_from_row(&row)?, hash32(&row, "instance_token_hash")?))
    }

    async fn get_device_secret(&self, uid: &DeviceUid) -> StoreResult<Option<Vec<u8>>> {
        let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(
            "SELECT s.sealed FROM devices d LEFT JOIN device_secrets s ON s.device_uid = d.uid \
             WHERE d.uid = $1 AND d.deleted_at IS NULL",
        )
        .bind(uid.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        row.map(|(sealed,)| sealed).ok_or(StoreError::NotFound)
    }
}

/// Writes the device's sealed secret, replacing the one it had.
async fn put_secret(
    conn: &mut PgConnection,
    uid: &DeviceUid,
    sealed: &[u8],
    at: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO device_secrets (device_uid, sealed, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (device_uid) DO UPDATE SET sealed = EXCLUDED.sealed, \
         updated_at = EXCLUDED.updated_at",
    )
    .bind(uid.as_str())
    .bind(sealed)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}
