//! Device leases and node heartbeats on PostgreSQL ([`wagate_core::lease`]).
//!
//! An acquisition is one upsert whose `WHERE` refuses a lease another node holds
//! unexpired; it updates the lease row, so it waits for fenced writes under way (they
//! hold the row `FOR SHARE`, [`crate::fence`]) and every later write of the previous
//! holder finds the new epoch. In the same transaction it frees the device's send-job
//! leases: their holder can record nothing any more. A release notifies the other nodes
//! at its commit, so one of them takes the device at once.

use crate::PgStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::get;
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use tokio::sync::watch;
use wagate_core::DeviceUid;
use wagate_core::lease::{DeviceLease, Fence, NodeInfo};
use wagate_core::store::{DeviceLeaseStore, ServerKeyStore, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};

/// The columns [`lease_from_row`] reads, spliced into statements at compile time.
macro_rules! lease_columns {
    () => {
        "device_uid, owner, epoch, expires_at"
    };
}

fn lease_from_row(row: &PgRow) -> StoreResult<DeviceLease> {
    let uid: String = get(row, "device_uid")?;
    Ok(DeviceLease {
        device_uid: DeviceUid::parse(&uid).map_err(|_| corrupt("device uid", &uid))?,
        owner: get(row, "owner")?,
        epoch: get(row, "epoch")?,
        expires_at: from_millis(get(row, "expires_at")?),
    })
}

#[async_trait]
impl DeviceLeaseStore for PgStore {
    async fn acquire_device_lease(
        &self,
        device: &DeviceUid,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<DeviceLease>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(concat!(
            "INSERT INTO device_leases AS l (device_uid, owner, epoch, expires_at) \
             VALUES ($1, $2, 1, $3) \
             ON CONFLICT (device_uid) DO UPDATE SET owner = excluded.owner, \
             epoch = l.epoch + 1, expires_at = excluded.expires_at \
             WHERE l.owner IS NULL OR l.expires_at <= $4 OR l.owner = excluded.owner \
             RETURNING ",
            lease_columns!()
        ))
        .bind(device.as_str())
        .bind(owner)
        .bind(millis(until))
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            return Ok(None);
        };
        // The previous holder is fenced now: its job leases mean nothing.
        sqlx::query(
            "UPDATE send_jobs SET lease_until = NULL, lease_owner = NULL \
             WHERE device_uid = $1 AND lease_until IS NOT NULL",
        )
        .bind(device.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        lease_from_row(&row).map(Some)
    }

    async fn renew_device_leases(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<DeviceLease>> {
        // Rows locked in device order, the order fenced writes take several in.
        let rows = sqlx::query(concat!(
            "WITH mine AS ( \
               SELECT device_uid FROM device_leases WHERE owner = $2 AND expires_at > $3 \
               ORDER BY device_uid FOR NO KEY UPDATE \
             ) \
             UPDATE device_leases l SET expires_at = $1 FROM mine \
             WHERE l.device_uid = mine.device_uid RETURNING ",
            "l.device_uid, l.owner, l.epoch, l.expires_at"
        ))
        .bind(millis(until))
        .bind(owner)
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(lease_from_row).collect()
    }

    async fn release_device_lease(&self, fence: &Fence) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE device_leases SET owner = NULL \
             WHERE device_uid = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(fence.device_uid.as_str())
        .bind(&fence.owner)
        .bind(fence.epoch)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let released = done.rows_affected() > 0;
        if released {
            crate::commits::notify_lease_released(&mut tx, &fence.device_uid).await?;
        }
        tx.commit().await.map_err(map_sqlx)?;
        if released {
            self.commits.lease_released();
        }
        Ok(released)
    }

    async fn list_device_leases(&self) -> StoreResult<Vec<DeviceLease>> {
        let rows = sqlx::query(concat!("SELECT ", lease_columns!(), " FROM device_leases"))
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(lease_from_row).collect()
    }

    async fn get_device_lease(&self, device: &DeviceUid) -> StoreResult<Option<DeviceLease>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            lease_columns!(),
            " FROM device_leases WHERE device_uid = $1"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO nodes (node_id, heartbeat_at, draining, address) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
             draining = excluded.draining, address = excluded.address",
        )
        .bind(&node.node_id)
        .bind(millis(node.heartbeat_at))
        .bind(node.draining)
        .bind(&node.address)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn list_nodes(&self, since: Timestamp) -> StoreResult<Vec<NodeInfo>> {
        let rows = sqlx::query(
            "SELECT node_id, heartbeat_at, draining, address FROM nodes \
             WHERE heartbeat_at >= $1 ORDER BY node_id",
        )
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|row| {
                Ok(NodeInfo {
                    node_id: get(row, "node_id")?,
                    heartbeat_at: from_millis(get(row, "heartbeat_at")?),
                    draining: get(row, "draining")?,
                    address: get(row, "address")?,
                })
            })
            .collect()
    }

    async fn remove_node(&self, node: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM nodes WHERE node_id = $1")
            .bind(node)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    fn subscribe_lease_releases(&self) -> watch::Receiver<u64> {
        self.commits.subscribe_leases()
    }
}

#[async_trait]
impl ServerKeyStore for PgStore {
    async fn server_key(&self, name: &str, candidate: &[u8; 32]) -> StoreResult<[u8; 32]> {
        // The insert's row when it won, else the row already there. A racing node's
        // insert, still uncommitted when this statement's snapshot was taken, makes the
        // insert wait and do nothing while the snapshot cannot see the row: then a second
        // statement, with a fresh snapshot, reads it.
        let won: Option<Vec<u8>> = sqlx::query_scalar(
            "WITH ins AS (INSERT INTO server_keys (name, key) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING RETURNING key) \
             SELECT key FROM ins UNION ALL SELECT key FROM server_keys WHERE name = $1 LIMIT 1",
        )
        .bind(name)
        .bind(candidate.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        let stored = match won {
            Some(key) => key,
            None => sqlx::query_scalar("SELECT key FROM server_keys WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(map_sqlx)?,
        };
        <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| corrupt("server key", stored.len()))
    }
}
