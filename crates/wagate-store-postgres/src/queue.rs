//! The send queue: jobs claimed with a lease held by an owner (a node), then handed over
//! (counting against the handed budget), failed, retried or released by that owner. Every
//! change but a release carries the device lease's fence ([`crate::fence`]), checked in
//! the same transaction.
//!
//! Several nodes claim from one table: a claim locks the rows it takes with
//! `FOR UPDATE SKIP LOCKED`, so two claimers never take one job (the second skips what
//! the first holds, or finds it leased once the first committed), and neither waits.

use crate::PgStore;
use crate::advance::{AdvanceRequest, advance};
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

/// Picks, leases and returns the due jobs in one statement. The outer `WHERE` of the
/// picking repeats the due test so that it is checked again on the row as it is once
/// locked: a job another claimer leased and committed meanwhile is left alone.
const CLAIM: &str = concat!(
    "WITH picked AS ( \
        SELECT j.id FROM send_jobs j \
        WHERE j.device_uid = $1 AND j.run_at <= $2 \
          AND (j.lease_until IS NULL OR j.lease_until <= $2) \
        ORDER BY j.run_at, j.id LIMIT $3 FOR UPDATE SKIP LOCKED \
    ), leased AS ( \
        UPDATE send_jobs j SET lease_until = $4, lease_owner = $5, attempts = j.attempts + 1 \
        FROM picked WHERE j.id = picked.id \
        RETURNING j.id, j.attempts, j.message_id, j.run_at \
    ) \
    SELECT l.id AS job_id, l.attempts, ",
    message_columns!(),
    " FROM leased l JOIN messages m ON m.id = l.message_id ORDER BY l.run_at, l.id"
);

#[async_trait]
impl SendQueue for PgStore {
    async fn claim_send_jobs(
        &self,
        fence: &Fence,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<SendJob>> {
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        let rows = sqlx::query(CLAIM)
            .bind(fence.device_uid.as_str())
            .bind(millis(now))
            .bind(i64::from(limit))
            .bind(millis(lease_until))
            .bind(&fence.owner)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        rows.iter()
            .map(|row| {
                // Counted by the claim itself: this claim's number.
                let attempts: i64 = get(row, "attempts")?;
                Ok(SendJob {
                    job_id: get(row, "job_id")?,
                    message: message_from_row(row)?,
                    attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    async fn next_send_job_at(&self, device: &DeviceUid) -> StoreResult<Option<Timestamp>> {
        // The earliest free job, and the leased job whose lease ends first (it becomes
        // claimable then): each is the first row of an index range.
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT LEAST( \
               (SELECT run_at FROM send_jobs \
                WHERE device_uid = $1 AND lease_until IS NULL ORDER BY run_at LIMIT 1), \
               (SELECT GREATEST(run_at, lease_until) FROM send_jobs \
                WHERE device_uid = $1 AND lease_until IS NOT NULL \
                ORDER BY lease_until LIMIT 1))",
        )
        .bind(device.as_str())
        .fetch_one(&self.pool)
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
        let handed = i64::try_from(job_ids.len()).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        // One statement. Counted by device, not through the jobs: an ack may already have
        // ended a job, and the hand-off still happened. Jobs of another device are left.
        sqlx::query(
            "WITH counted AS ( \
                INSERT INTO device_counters (device_uid, minute, handed) VALUES ($1, $2, $3) \
                ON CONFLICT (device_uid, minute) \
                DO UPDATE SET handed = device_counters.handed + excluded.handed \
             ) \
             UPDATE send_jobs SET run_at = $4, lease_until = NULL, lease_owner = NULL, \
             last_error = 'awaiting the server acknowledgement' \
             WHERE id = ANY($5) AND device_uid = $1",
        )
        .bind(fence.device_uid.as_str())
        .bind(minute_of(at))
        .bind(handed)
        .bind(millis(recheck_at))
        .bind(job_ids)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)
    }

    async fn fail_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        reason: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        // The message is locked before its job, the order every status step takes them in
        // (a step ends the job of the message it moves), so the two cannot deadlock.
        let id: String = sqlx::query_scalar(
            "SELECT m.id FROM messages m JOIN send_jobs j ON j.message_id = m.id \
             WHERE j.id = $1 AND j.device_uid = $2 FOR NO KEY UPDATE OF m",
        )
        .bind(job_id)
        .bind(fence.device_uid.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        // Gone by now when an ack ended it while this waited for the message.
        sqlx::query_scalar::<_, String>("DELETE FROM send_jobs WHERE id = $1 RETURNING message_id")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_sqlx)?
            .ok_or(StoreError::NotFound)?;
        let id = MessageId::parse(&id).map_err(|_| corrupt("message id", &id))?;
        // A message WhatsApp already took cannot fail any more; the job is done either way.
        let step = AdvanceRequest {
            fence: None,
            target: MessageRef::Id(id),
            status: MessageStatus::Failed,
            at,
            reason: Some(reason.to_owned()),
        };
        let advanced = advance(&mut tx, &[step]).await?;
        for result in advanced.results {
            result?;
        }
        self.commit(tx, advanced.last_seq).await
    }

    async fn retry_send_job(
        &self,
        fence: &Fence,
        job_id: i64,
        run_at: Timestamp,
        error: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        let done = sqlx::query(
            "UPDATE send_jobs SET run_at = $1, lease_until = NULL, lease_owner = NULL, \
             last_error = $2 WHERE id = $3 AND device_uid = $4",
        )
        .bind(millis(run_at))
        .bind(error)
        .bind(job_id)
        .bind(fence.device_uid.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(map_sqlx)
    }

    fn subscribe_queued(&self) -> tokio::sync::broadcast::Receiver<DeviceUid> {
        self.commits.subscribe_queued()
    }

    async fn due_devices(&self, owner: &str, now: Timestamp) -> StoreResult<Vec<DeviceUid>> {
        // From the owner's leases to their first claimable job: an index probe per device.
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT l.device_uid FROM device_leases l WHERE l.owner = $1 AND EXISTS ( \
               SELECT 1 FROM send_jobs j WHERE j.device_uid = l.device_uid AND j.run_at <= $2 \
               AND (j.lease_until IS NULL OR j.lease_until <= $2))",
        )
        .bind(owner)
        .bind(millis(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|u| DeviceUid::parse(u).map_err(|_| corrupt("device uid", u)))
            .collect()
    }

    async fn release_send_jobs(&self, device: &DeviceUid, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE send_jobs SET lease_until = NULL, lease_owner = NULL \
             WHERE device_uid = $1 AND lease_until IS NOT NULL AND lease_owner = $2",
        )
        .bind(device.as_str())
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }
}
