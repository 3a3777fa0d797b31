//! Fencing device writes: every write a node makes for a device it drives first checks,
//! in the same transaction, that the device's lease still has the writer's owner and
//! epoch ([`wagate_core::lease`]). SQLite commits one transaction at a time, so the check
//! and the write cannot be split by another node's takeover.
//!
//! On the hot paths (claims, hand-offs, status steps) the check does not get a round
//! trip of its own: it is sent as the first statement of the script that carries the
//! unit's first statement ([`check_sql`]), and its row comes back first. Each round trip
//! to sqlx's connection thread costs far more than the indexed lookup itself, and a
//! separate check made those paths one round trip longer on the single writer. When the
//! fence no longer holds, the statements after the check have run, but the unit fails
//! with `Fenced` and the writer rolls its savepoint back ([`crate::writer`]), so nothing
//! of it is committed: the same outcome as checking first.

use crate::error::map_sqlx;
use crate::row::get;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use wagate_core::lease::Fence;
use wagate_core::store::{StoreError, StoreResult};

/// The check as a script's first statement: always exactly one row, `fence_held` 1 or 0.
/// Bind the fence with [`bind`] before the script's own arguments.
macro_rules! check_sql {
    () => {
        "SELECT EXISTS (SELECT 1 FROM device_leases \
         WHERE device_uid = ? AND owner = ? AND epoch = ?) AS fence_held; "
    };
}
pub(crate) use check_sql;

/// Binds the fence's values for [`check_sql`].
pub(crate) fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    fence: &Fence,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(fence.device_uid.as_str().to_owned())
        .bind(fence.owner.clone())
        .bind(fence.epoch)
}

/// Splits the rows of a script that began with [`check_sql`]: `Err(Fenced)` (the unit
/// must fail, so that what the rest of the script wrote is rolled back) unless the fence
/// held; else the rows of the statements after the check.
pub(crate) fn held(mut rows: Vec<SqliteRow>) -> StoreResult<Vec<SqliteRow>> {
    if rows.is_empty() {
        return Err(crate::error::corrupt("fence check", "no row"));
    }
    let first = rows.remove(0);
    if get::<bool>(&first, "fence_held")? {
        Ok(rows)
    } else {
        Err(StoreError::Fenced)
    }
}

/// `Err(Fenced)` unless the device's lease still has the fence's owner and epoch: a round
/// trip of its own, for the writes that are rare enough not to need [`check_sql`].
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
