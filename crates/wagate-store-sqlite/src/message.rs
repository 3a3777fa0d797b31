//! Outbound messages: accepting (message, idempotency key, send job and budget count in one
//! transaction), the forward-only status lifecycle with its history and events, listings
//! and budget windows.

use crate::SqliteStore;
use crate::accept::AcceptRequest;
use crate::advance::AdvanceRequest;
use crate::error::{corrupt, map_sqlx};
use crate::row::{get, message_columns, message_from_row};
use async_trait::async_trait;
use sqlx::sqlite::SqliteArguments;
use wagate_core::lease::Fence;
use wagate_core::message::{Message, MessageStatus, NewOutboundMessage, StatusChange};
use wagate_core::store::{
    AcceptOutcome, BudgetUsage, MessageFilter, MessageRef, MessageStore, Page, PageRequest,
    StoreError, StoreResult,
};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::{AccountId, DeviceUid, MessageId};

/// Budget counters are kept per minute (see `device_counters`).
const MINUTE_MS: i64 = 60_000;
pub(crate) const DAY_MINUTES: i64 = 24 * 60;
const HOUR_MINUTES: i64 = 60;

/// The counter bucket `at` falls in.
pub(crate) fn minute_of(at: Timestamp) -> i64 {
    millis(at).div_euclid(MINUTE_MS)
}

/// The oldest bucket of a rolling window of `minutes` ending at `now`: the window holds
/// the current (partial) minute and the `minutes - 1` whole minutes before it.
pub(crate) fn window_start(now: Timestamp, minutes: i64) -> i64 {
    minute_of(now) - minutes + 1
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn accept_outbound_message(
        &self,
        message: &NewOutboundMessage,
        provider_message_id: &str,
        daily_limit: u32,
    ) -> StoreResult<AcceptOutcome> {
        let outcome = self
            .writer
            .accept(AcceptRequest {
                message: message.clone(),
                provider_message_id: provider_message_id.to_owned(),
                daily_limit,
            })
            .await?;
        if let AcceptOutcome::Created(m) = &outcome {
            // Nobody listening is fine: the worker's own polls and wakes cover it.
            let _ = self.queued.send(m.device_uid.clone());
        }
        Ok(outcome)
    }

    async fn get_message(&self, account: &AccountId, id: &MessageId) -> StoreResult<Message> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = ? AND m.account_id = ?"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        message_from_row(&row)
    }

    async fn find_sent(
        &self,
        device: &DeviceUid,
        provider_message_id: &str,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.device_uid = ? AND m.provider_message_id = ?"
        ))
        .bind(device.as_str())
        .bind(provider_message_id)
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn assign_provider_id(
        &self,
        fence: &Fence,
        provider_message_id: &str,
        assigned: &str,
    ) -> StoreResult<bool> {
        let (fence, old, new) = (
            fence.clone(),
            provider_message_id.to_owned(),
            assigned.to_owned(),
        );
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    crate::fence::check(conn, &fence).await?;
                    let renamed = sqlx::query(
                        "UPDATE messages SET provider_message_id = ? \
                         WHERE device_uid = ? AND provider_message_id = ?",
                    )
                    .bind(&new)
                    .bind(fence.device_uid.as_str())
                    .bind(&old)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(renamed.rows_affected() > 0)
                })
            })
            .await
    }

    async fn list_messages(
        &self,
        account: &AccountId,
        filter: &MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Message>> {
        // The WHERE clause is assembled from fixed fragments only; values are bound.
        let mut clause = String::from(" FROM messages m WHERE m.account_id = ?");
        if filter.device_uid.is_some() {
            clause.push_str(" AND m.device_uid = ?");
        }
        if filter.status.is_some() {
            clause.push_str(" AND m.status = ?");
        }
        if filter.to.is_some() {
            clause.push_str(" AND m.to_phone = ?");
        }
        if filter.since.is_some() {
            clause.push_str(" AND m.created_at >= ?");
        }
        if filter.until.is_some() {
            clause.push_str(" AND m.created_at < ?");
        }
        let bind_filter = |mut q: sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments>| {
            q = q.bind(account.as_str().to_owned());
            if let Some(d) = &filter.device_uid {
                q = q.bind(d.as_str().to_owned());
            }
            if let Some(s) = filter.status {
                q = q.bind(s.as_str());
            }
            if let Some(to) = &filter.to {
                q = q.bind(to.key().to_owned());
            }
            if let Some(t) = filter.since {
                q = q.bind(millis(t));
            }
            if let Some(t) = filter.until {
                q = q.bind(millis(t));
            }
            q
        };
        let count_sql = format!("SELECT COUNT(*) AS n{clause}");
        let total: i64 = get(
            &bind_filter(sqlx::query(sqlx::AssertSqlSafe(count_sql)))
                .fetch_one(&self.read)
                .await
                .map_err(map_sqlx)?,
            "n",
        )?;
        let list_sql = format!(
            concat!(
                "SELECT ",
                message_columns!(),
                "{} ORDER BY m.created_at DESC, m.id DESC LIMIT ? OFFSET ?"
            ),
            clause
        );
        let rows = bind_filter(sqlx::query(sqlx::AssertSqlSafe(list_sql)))
            .bind(i64::from(page.limit))
            .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX))
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?;
        Ok(Page {
            items: rows
                .iter()
                .map(message_from_row)
                .collect::<StoreResult<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page: page.page,
            limit: page.limit,
        })
    }

    async fn get_message_with_history(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> StoreResult<(Message, Vec<StatusChange>)> {
        // One statement, so the message and its steps come from one snapshot.
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            ", h.status AS step_status, h.at AS step_at, h.reason AS step_reason \
             FROM messages m LEFT JOIN message_status_history h ON h.message_id = m.id \
             WHERE m.id = ? AND m.account_id = ? ORDER BY h.id"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        let message = message_from_row(rows.first().ok_or(StoreError::NotFound)?)?;
        let mut steps = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(status) = get::<Option<String>>(row, "step_status")? else {
                continue;
            };
            steps.push(StatusChange {
                status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                at: from_millis(get(row, "step_at")?),
                reason: get(row, "step_reason")?,
            });
        }
        Ok((message, steps))
    }

    async fn advance_message_status(
        &self,
        fence: &Fence,
        message: &MessageRef,
        status: MessageStatus,
        at: Timestamp,
        reason: Option<&str>,
    ) -> StoreResult<Option<Message>> {
        self.writer
            .advance(AdvanceRequest {
                fence: Some(fence.clone()),
                target: message.clone(),
                status,
                at,
                reason: reason.map(str::to_owned),
            })
            .await
    }

    async fn record_receipt(
        &self,
        message: &MessageRef,
        status: MessageStatus,
        at: Timestamp,
    ) -> StoreResult<Option<Message>> {
        self.writer
            .advance(AdvanceRequest {
                fence: None,
                target: message.clone(),
                status,
                at,
                reason: None,
            })
            .await
    }

    async fn budget_usage(&self, device: &DeviceUid, now: Timestamp) -> StoreResult<BudgetUsage> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(accepted), 0) AS day_accepted, \
             COALESCE(SUM(CASE WHEN minute >= ? THEN handed END), 0) AS hour_handed, \
             COALESCE(SUM(CASE WHEN minute >= ? THEN handed END), 0) AS minute_handed \
             FROM device_counters WHERE device_uid = ? AND minute >= ? AND minute <= ?",
        )
        .bind(window_start(now, HOUR_MINUTES))
        .bind(window_start(now, 1))
        .bind(device.as_str())
        .bind(window_start(now, DAY_MINUTES))
        .bind(minute_of(now))
        .fetch_one(&self.read)
        .await
        .map_err(map_sqlx)?;
        let count = |col: &str| -> StoreResult<u64> {
            let n: i64 = get(&row, col)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(BudgetUsage {
            accepted_last_day: count("day_accepted")?,
            handed_last_hour: count("hour_handed")?,
            handed_last_minute: count("minute_handed")?,
        })
    }
}
