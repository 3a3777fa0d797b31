//! The send queue: jobs claimed with a lease held by an owner (a process), then handed
//! over (counting against the handed budget), failed, retried or released by that owner.

use crate::SqliteStore;
use crate::advance::{AdvanceRequest, advance_chunk};
use crate::error::{corrupt, map_sqlx};
use crate::message::minute_of;
use crate::row::{get, message_columns, message_from_row};
use async_trait::async_trait;
use wagate_core::DeviceUid;
use wagate_core::MessageId;
use wagate_core::lease::Fence;
use wagate_core::message::MessageStatus;
use wagate_core::store::{MessageRef, SendJob, SendQueue, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};

#[async_trait]
impl SendQueue for SqliteStore {
    async fn claim_send_jobs(
        &self,
        fence: &Fence,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        let fence = fence.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let (device, owner) = (&fence.device_uid, &fence.owner);
                    let now = millis(now);
                    // Read and lease in one write transaction: no other claimer of this
                    // process can slip in between (every write goes through this
                    // connection), nor of another (SQLite has one writer at a time). A
                    // lease still running is skipped whoever holds it. The fence check
                    // shares the read's round trip.
                    let rows = crate::fence::bind(
                        sqlx::query(concat!(
                            crate::fence::check_sql!(),
                            "SELECT j.id AS job_id, j.attempts, ",
                            message_columns!(),
                            " FROM send_jobs j JOIN messages m ON m.id = j.message_id \
                             WHERE j.device_uid = ? AND j.run_at <= ? \
                             AND (j.lease_until IS NULL OR j.lease_until <= ?) \
                             ORDER BY j.run_at, j.id LIMIT ?"
                        )),
                        &fence,
                    )
                    .bind(device.as_str())
                    .bind(now)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    let rows = crate::fence::held(rows)?;
                    let mut jobs = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let attempts: i64 = get(row, "attempts")?;
                        jobs.push(SendJob {
                            job_id: get(row, "job_id")?,
                            message: message_from_row(row)?,
                            attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
                        });
                    }
                    if jobs.is_empty() {
                        return Ok(jobs);
                    }
                    let ids = jobs
                        .iter()
                        .map(|j| j.job_id.to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    sqlx::query(
                        "UPDATE send_jobs SET lease_until = ?, lease_owner = ?, \
                         attempts = attempts + 1 WHERE id IN (SELECT value FROM json_each(?))",
                    )
                    .bind(millis(lease_until))
                    .bind(owner)
                    .bind(format!("[{ids}]"))
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(jobs)
                })
            })
            .await
    }

    async fn next_send_job_at(&self, device: &DeviceUid) -> StoreResult<Option<Timestamp>> {
        // The earliest free job, and the leased job whose lease ends first (it becomes
        // claimable then): each is the first row of an index range.
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM ( \
               SELECT (SELECT run_at FROM send_jobs \
                       WHERE device_uid = ? AND lease_until IS NULL \
                       ORDER BY run_at LIMIT 1) AS t \
               UNION ALL \
               SELECT (SELECT MAX(run_at, lease_until) FROM send_jobs \
                       WHERE device_uid = ? AND lease_until IS NOT NULL \
                       ORDER BY lease_until LIMIT 1) \
             )",
        )
        .bind(device.as_str())
        .bind(device.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(map_sqlx)?;
        Ok(at.map(from_millis))
    }

    async fn record_handoff(
        &self,
        fence: &Fence,
        job_ids: &[i64],
        at: Timestamp,
        recheck_at: Timestamp,
    ) -> StoreResult<()> {
        if job_ids.is_empty() {
            return Ok(());
        }
        let fence = fence.clone();
        let handed = i64::try_from(job_ids.len()).unwrap_or(i64::MAX);
        let ids = serde_json::to_string(job_ids).map_err(|e| corrupt("job ids", e))?;
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let device = &fence.device_uid;
                    // Counted by device, not through the jobs: an ack may already have
                    // ended a job, and the hand-off still happened. Jobs of another
                    // device are left alone. The fence check shares the round trip.
                    let rows = crate::fence::bind(
                        sqlx::query(concat!(
                            crate::fence::check_sql!(),
                            "INSERT INTO device_counters (device_uid, minute, handed) VALUES (?, ?, ?) \
                             ON CONFLICT (device_uid, minute) DO UPDATE SET handed = handed + excluded.handed; \
                             UPDATE send_jobs SET run_at = ?, lease_until = NULL, lease_owner = NULL, \
                             last_error = 'awaiting the server acknowledgement' \
                             WHERE id IN (SELECT value FROM json_each(?)) AND device_uid = ?"
                        )),
                        &fence,
                    )
                    .bind(device.as_str())
                    .bind(minute_of(at))
                    .bind(handed)
                    .bind(millis(recheck_at))
                    .bind(ids)
                    .bind(device.as_str())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    crate::fence::held(rows)?;
                    Ok(())
                })
            })
            .await
    }

    async fn fail_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        let (fence, reason) = (fence.clone(), reason.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    crate::fence::check(conn, &fence).await?;
                    let id: String = sqlx::query_scalar(
                        "DELETE FROM send_jobs WHERE id = ? AND device_uid = ? \
                         RETURNING message_id",
                    )
                    .bind(job_id)
                    .bind(fence.device_uid.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_sqlx)?
                    .ok_or(StoreError::NotFound)?;
                    let id = MessageId::parse(&id)
                        .map_err(|_| crate::error::corrupt("message id", &id))?;
                    // A message WhatsApp already took cannot fail any more; the job is
                    // done either way.
                    let step = AdvanceRequest {
                        fence: None,
                        target: MessageRef::Id(id),
                        status: MessageStatus::Failed,
                        at,
                        reason: Some(reason),
                    };
                    for result in advance_chunk(conn, &[&step]).await? {
                        result?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn retry_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        run_at: Timestamp,
        error: &str,
    ) -> StoreResult<()> {
        let (fence, error) = (fence.clone(), error.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    crate::fence::check(conn, &fence).await?;
                    let done = sqlx::query(
                        "UPDATE send_jobs SET run_at = ?, lease_until = NULL, \
                         lease_owner = NULL, last_error = ? WHERE id = ? AND device_uid = ?",
                    )
                    .bind(millis(run_at))
                    .bind(error)
                    .bind(job_id)
                    .bind(fence.device_uid.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                })
            })
            .await
    }

    fn subscribe_queued(&self) -> tokio::sync::broadcast::Receiver<DeviceUid> {
        self.queued.subscribe()
    }

    async fn due_devices(&self, owner: &str, now: Timestamp) -> StoreResult<Vec<DeviceUid>> {
        // From the owner's leases to their first claimable job: an index probe per device.
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT l.device_uid FROM device_leases l WHERE l.owner = ? AND EXISTS ( \
               SELECT 1 FROM send_jobs j WHERE j.device_uid = l.device_uid AND j.run_at <= ? \
               AND (j.lease_until IS NULL OR j.lease_until <= ?))",
        )
        .bind(owner)
        .bind(millis(now))
        .bind(millis(now))
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|u| DeviceUid::parse(u).map_err(|_| corrupt("device uid", u)))
            .collect()
    }

    async fn release_send_jobs(&self, device: &DeviceUid, owner: &str) -> StoreResult<()> {
        let device = device.clone();
        let owner = owner.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE send_jobs SET lease_until = NULL, lease_owner = NULL \
                         WHERE device_uid = ? AND lease_until IS NOT NULL AND lease_owner = ?",
                    )
                    .bind(device.as_str())
                    .bind(owner)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await
    }
}
