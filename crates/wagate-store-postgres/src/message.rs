//! Outbound messages: accepting ([`crate::accept`]), the forward-only status lifecycle
//! ([`crate::advance`]), listings and budget windows.

use crate::PgStore;
use crate::advance::AdvanceRequest;
use crate::error::{corrupt, map_sqlx};
use crate::row::{count, get, message_columns, message_from_row};
use async_trait::async_trait;
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
impl MessageStore for PgStore {
    async fn accept_outbound_message(
        &self,
        message: &NewOutboundMessage,
        provider_message_id: &str,
        daily_limit: u32,
    ) -> StoreResult<AcceptOutcome> {
        let mut tx = self.begin().await?;
        let outcome =
            crate::accept::accept(&mut tx, message, provider_message_id, daily_limit).await?;
        // Only a created message wrote anything; the others end with the transaction.
        if let AcceptOutcome::Created(m) = &outcome {
            // The node driving the device hears of its new job at the commit.
            crate::commits::notify_queued(&mut tx, &m.device_uid).await?;
            self.commit(tx, None).await?;
            self.commits.queued(&m.device_uid);
        }
        Ok(outcome)
    }

    async fn get_message(&self, account: &AccountId, id: &MessageId) -> StoreResult<Message> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.id = $1 AND m.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
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
            " FROM messages m WHERE m.device_uid = $1 AND m.provider_message_id = $2"
        ))
        .bind(device.as_str())
        .bind(provider_message_id)
        .fetch_optional(&self.pool)
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
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        let renamed = sqlx::query(
            "UPDATE messages SET provider_message_id = $1 \
             WHERE device_uid = $2 AND provider_message_id = $3",
        )
        .bind(assigned)
        .bind(fence.device_uid.as_str())
        .bind(provider_message_id)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok(renamed.rows_affected() > 0)
    }

    async fn list_messages(
        &self,
        account: &AccountId,
        filter: &MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Message>> {
        // The WHERE clause is assembled from fixed fragments only; values are bound.
        let mut clause = String::from(" FROM messages m WHERE m.account_id = $1");
        let mut n = 1;
        let mut param = |clause: &mut String, fragment: &str| {
            n += 1;
            clause.push_str(&fragment.replace('?', &format!("${n}")));
        };
        if filter.device_uid.is_some() {
            param(&mut clause, " AND m.device_uid = ?");
        }
        if filter.status.is_some() {
            param(&mut clause, " AND m.status = ?");
        }
        if filter.to.is_some() {
            param(&mut clause, " AND m.to_phone = ?");
        }
        if filter.since.is_some() {
            param(&mut clause, " AND m.created_at >= ?");
        }
        if filter.until.is_some() {
            param(&mut clause, " AND m.created_at < ?");
        }
        let bind_filter = |mut q: sqlx::query::Query<'static, sqlx::Postgres, _>| {
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
        let total = count(
            &bind_filter(sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n{clause}"
            ))))
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?,
            "n",
        )?;
        let list_sql = format!(
            concat!(
                "SELECT ",
                message_columns!(),
                "{} ORDER BY m.created_at DESC, m.id DESC LIMIT ${} OFFSET ${}"
            ),
            clause,
            n + 1,
            n + 2
        );
        let rows = bind_filter(sqlx::query(sqlx::AssertSqlSafe(list_sql)))
            .bind(i64::from(page.limit))
            .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(Page {
            items: rows
                .iter()
                .map(message_from_row)
                .collect::<StoreResult<_>>()?,
            total,
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
             WHERE m.id = $1 AND m.account_id = $2 ORDER BY h.id"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_all(&self.pool)
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
        self.steps
            .step(AdvanceRequest {
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
        self.steps
            .step(AdvanceRequest {
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
            "SELECT COALESCE(SUM(accepted), 0)::BIGINT AS day_accepted, \
             COALESCE(SUM(handed) FILTER (WHERE minute >= $1), 0)::BIGINT AS hour_handed, \
             COALESCE(SUM(handed) FILTER (WHERE minute >= $2), 0)::BIGINT AS minute_handed \
             FROM device_counters WHERE device_uid = $3 AND minute >= $4 AND minute <= $5",
        )
        .bind(window_start(now, HOUR_MINUTES))
        .bind(window_start(now, 1))
        .bind(device.as_str())
        .bind(window_start(now, DAY_MINUTES))
        .bind(minute_of(now))
        .fetch_one(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(BudgetUsage {
            accepted_last_day: count(&row, "day_accepted")?,
            handed_last_hour: count(&row, "hour_handed")?,
            handed_last_minute: count(&row, "minute_handed")?,
        })
    }
}
