//! Device leases and node heartbeats on SQLite ([`wagate_core::lease`]), and the server
//! keys every node shares.
//!
//! Each change is one statement through the writer, so acquisitions by several
//! processes on one file are serialised by SQLite's single writer; a release also bumps
//! a local counter that wakes nodes of this process waiting to take a device over.

use crate::SqliteStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::get;
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
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

fn lease_from_row(row: &SqliteRow) -> StoreResult<DeviceLease> {
    let uid: String = get(row, "device_uid")?;
    Ok(DeviceLease {
        device_uid: DeviceUid::parse(&uid).map_err(|_| corrupt("device uid", &uid))?,
        owner: get(row, "owner")?,
        epoch: get(row, "epoch")?,
        expires_at: from_millis(get(row, "expires_at")?),
    })
}

#[async_trait]
impl DeviceLeaseStore for SqliteStore {
    async fn acquire_device_lease(
        &self,
        device: &DeviceUid,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Option<DeviceLease>> {
        let (device, owner) = (device.clone(), owner.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // The upsert's WHERE refuses a lease another owner holds unexpired;
                    // then nothing is returned.
                    let row = sqlx::query(concat!(
                        "INSERT INTO device_leases (device_uid, owner, epoch, expires_at) \
                         VALUES (?, ?, 1, ?) \
                         ON CONFLICT (device_uid) DO UPDATE SET owner = excluded.owner, \
                         epoch = device_leases.epoch + 1, expires_at = excluded.expires_at \
                         WHERE device_leases.owner IS NULL OR device_leases.expires_at <= ? \
                         OR device_leases.owner = excluded.owner \
                         RETURNING ",
                        lease_columns!()
                    ))
                    .bind(device.as_str())
                    .bind(&owner)
                    .bind(millis(until))
                    .bind(millis(now))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    let Some(row) = row else { return Ok(None) };
                    // The previous holder is fenced now: its job leases mean nothing.
                    sqlx::query(
                        "UPDATE send_jobs SET lease_until = NULL, lease_owner = NULL \
                         WHERE device_uid = ? AND lease_until IS NOT NULL",
                    )
                    .bind(device.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    lease_from_row(&row).map(Some)
                })
            })
            .await
    }

    async fn renew_device_leases(
        &self,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<DeviceLease>> {
        let owner = owner.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let rows = sqlx::query(concat!(
                        "UPDATE device_leases SET expires_at = ? \
                         WHERE owner = ? AND expires_at > ? RETURNING ",
                        lease_columns!()
                    ))
                    .bind(millis(until))
                    .bind(&owner)
                    .bind(millis(now))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    rows.iter().map(lease_from_row).collect()
                })
            })
            .await
    }

    async fn release_device_lease(&self, fence: &Fence) -> StoreResult<bool> {
        let fence = fence.clone();
        let released = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE device_leases SET owner = NULL \
                         WHERE device_uid = ? AND owner = ? AND epoch = ?",
                    )
                    .bind(fence.device_uid.as_str())
                    .bind(&fence.owner)
                    .bind(fence.epoch)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(done.rows_affected() > 0)
                })
            })
            .await?;
        if released {
            self.lease_releases.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(released)
    }

    async fn list_device_leases(&self) -> StoreResult<Vec<DeviceLease>> {
        let rows = sqlx::query(concat!("SELECT ", lease_columns!(), " FROM device_leases"))
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(lease_from_row).collect()
    }

    async fn get_device_lease(&self, device: &DeviceUid) -> StoreResult<Option<DeviceLease>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            lease_columns!(),
            " FROM device_leases WHERE device_uid = ?"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn heartbeat_node(&self, node: &NodeInfo) -> StoreResult<()> {
        let node = node.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO nodes (node_id, heartbeat_at, draining, address) \
                         VALUES (?, ?, ?, ?) \
                         ON CONFLICT (node_id) DO UPDATE SET \
                         heartbeat_at = excluded.heartbeat_at, draining = excluded.draining, \
                         address = excluded.address",
                    )
                    .bind(&node.node_id)
                    .bind(millis(node.heartbeat_at))
                    .bind(node.draining)
                    .bind(&node.address)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await
    }

    async fn list_nodes(&self, since: Timestamp) -> StoreResult<Vec<NodeInfo>> {
        let rows = sqlx::query(
            "SELECT node_id, heartbeat_at, draining, address FROM nodes \
             WHERE heartbeat_at >= ? ORDER BY node_id",
        )
        .bind(millis(since))
        .fetch_all(&self.read)
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
        let node = node.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM nodes WHERE node_id = ?")
                        .bind(&node)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await
    }

    fn subscribe_lease_releases(&self) -> watch::Receiver<u64> {
        self.lease_releases.subscribe()
    }
}

#[async_trait]
impl ServerKeyStore for SqliteStore {
    async fn server_key(&self, name: &str, candidate: &[u8; 32]) -> StoreResult<[u8; 32]> {
        let (name, candidate) = (name.to_owned(), *candidate);
        let stored: Vec<u8> = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO server_keys (name, key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    )
                    .bind(&name)
                    .bind(candidate.as_slice())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    sqlx::query_scalar("SELECT key FROM server_keys WHERE name = ?")
                        .bind(&name)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(map_sqlx)
                })
            })
            .await?;
        <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| corrupt("server key", stored.len()))
    }
}
