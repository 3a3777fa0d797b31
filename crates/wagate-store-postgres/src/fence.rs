//! Fencing device writes ([`wagate_core::lease`]): a write for a device first locks the
//! device's lease row `FOR SHARE` and checks that it still has the writer's owner and
//! epoch, in the same transaction. A takeover updates that row, so it waits for writes
//! already under way, and every write that starts after it finds the new epoch and is
//! refused with `Fenced`. Locks on lease rows are always taken first in a transaction,
//! and several in device order, so fenced writes, renewals and takeovers never wait on
//! each other in a circle.

use crate::error::map_sqlx;
use sqlx::PgConnection;
use std::collections::HashSet;
use wagate_core::lease::Fence;
use wagate_core::store::{StoreError, StoreResult};

/// `Err(Fenced)` unless the device's lease still has the fence's owner and epoch.
pub(crate) async fn check(conn: &mut PgConnection, fence: &Fence) -> StoreResult<()> {
    let held: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM device_leases WHERE device_uid = $1 AND owner = $2 AND epoch = $3 \
         FOR SHARE",
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

/// Which of `fences` the leases still hold, their rows locked `FOR SHARE` in device order.
pub(crate) async fn held<'a>(
    conn: &mut PgConnection,
    fences: impl Iterator<Item = &'a Fence>,
) -> StoreResult<HashSet<Fence>> {
    let mut devices: Vec<&str> = fences.map(|f| f.device_uid.as_str()).collect();
    if devices.is_empty() {
        return Ok(HashSet::new());
    }
    devices.sort_unstable();
    devices.dedup();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT device_uid, owner, epoch FROM device_leases \
         WHERE device_uid = ANY($1) AND owner IS NOT NULL ORDER BY device_uid FOR SHARE",
    )
    .bind(&devices)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    rows.into_iter()
        .map(|(uid, owner, epoch)| {
            Ok(Fence {
                device_uid: wagate_core::DeviceUid::parse(&uid)
                    .map_err(|_| crate::error::corrupt("device uid", &uid))?,
                owner,
                epoch,
            })
        })
        .collect()
}
