//! Fencing device writes: every write a node makes for a device it drives first checks,
//! in the same transaction, that the device's lease still has the writer's owner and
//! epoch ([`wagate_core::lease`]). SQLite commits one transaction at a time, so the check
//! and the write cannot be split by another node's takeover.

use crate::error::map_sqlx;
use sqlx::SqliteConnection;
use wagate_core::lease::Fence;
use wagate_core::store::{StoreError, StoreResult};

/// `Err(Fenced)` unless the device's lease still has the fence's owner and epoch.
pub(crate) async fn check(conn: &mut SqliteConnection, fence: &Fence) -> StoreResult<()> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM device_leases WHERE device_uid = ? AND owner = ? AND epoch = ?",
    )
    .bind(fence.device_uid.as_str())
    .bind(&fence.owner)
    .bind(fence.epoch)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced),
    }
}
