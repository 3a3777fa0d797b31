//! Inbound messages: stored once per provider message id and device, each with its
//! `message.received` event.

use crate::SqliteStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::{get, inbound_columns, inbound_from_row};
use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};
use wagate_core::event::{EventData, NewEvent};
use wagate_core::lease::Fence;
use wagate_core::message::InboundMessage;
use wagate_core::store::{
    InboundOutcome, InboundStore, Page, PageRequest, StoreError, StoreResult,
};
use wagate_core::time::{Timestamp, millis};
use wagate_core::{AccountId, DeviceUid, MessageId, Recipient};

#[async_trait]
impl InboundStore for SqliteStore {
    async fn record_inbound(
        &self,
        fence: &Fence,
        message: &InboundMessage,
        mime_type: Option<&str>,
    ) -> StoreResult<InboundOutcome> {
        if fence.device_uid != message.device_uid {
            return Err(StoreError::Fenced);
        }
        let (m, mime_type) = (message.clone(), mime_type.map(str::to_owned));
        let fence = fence.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    crate::fence::check(conn, &fence).await?;
                    let event = NewEvent::new(
                        m.account_id.clone(),
                        m.device_uid.clone(),
                        EventData::received(&m, mime_type),
                        m.received_at,
                    );
                    let data =
                        serde_json::to_string(&event.data).map_err(|e| corrupt("event", e))?;
                    // Stored and announced in one round trip; a redelivery changes nothing.
                    let done = sqlx::query(
                        "INSERT INTO inbound_messages (id, account_id, device_uid, \
                         provider_message_id, from_phone, from_lid, from_name, kind, text, \
                         media_id, is_group, group_id, group_name, timestamp, received_at, \
                         details, target_id) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (device_uid, provider_message_id) DO NOTHING; \
                         INSERT INTO events (id, account_id, device_uid, type, data, created_at) \
                         SELECT ?, ?, ?, ?, ?, ? WHERE changes() > 0",
                    )
                    .bind(m.id.as_str())
                    .bind(m.account_id.as_str())
                    .bind(m.device_uid.as_str())
                    .bind(&m.provider_message_id)
                    .bind(m.from.as_ref().map(|p| p.digits().to_owned()))
                    .bind(&m.from_lid)
                    .bind(&m.from_name)
                    .bind(m.kind.as_str())
                    .bind(&m.text)
                    .bind(m.media_id.as_ref().map(|id| id.as_str().to_owned()))
                    .bind(m.is_group)
                    .bind(&m.group_id)
                    .bind(&m.group_name)
                    .bind(millis(m.timestamp))
                    .bind(millis(m.received_at))
                    .bind(m.details.to_json())
                    .bind(
                        m.details
                            .target
                            .as_ref()
                            .map(|t| t.provider_message_id.clone()),
                    )
                    .bind(event.id.as_str())
                    .bind(m.account_id.as_str())
                    .bind(m.device_uid.as_str())
                    .bind(event.data.event_type().as_str())
                    .bind(data)
                    .bind(millis(m.received_at))
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if done.rows_affected() == 0 {
                        let row = sqlx::query(concat!(
                            "SELECT ",
                            inbound_columns!(),
                            " FROM inbound_messages i \
                             WHERE i.device_uid = ? AND i.provider_message_id = ?"
                        ))
                        .bind(m.device_uid.as_str())
                        .bind(&m.provider_message_id)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                        return Ok(InboundOutcome::Duplicate(inbound_from_row(&row)?));
                    }
                    Ok(InboundOutcome::Created(m))
                })
            })
            .await
    }

    async fn list_inbound(
        &self,
        account: &AccountId,
        device: Option<&DeviceUid>,
        page: PageRequest,
    ) -> StoreResult<Page<InboundMessage>> {
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        let device = device.map(|d| d.as_str().to_owned());
        let (total, rows) = if let Some(device) = device {
            let total: i64 = get(
                &sqlx::query(
                    "SELECT COUNT(*) AS n FROM inbound_messages \
                     WHERE account_id = ? AND device_uid = ?",
                )
                .bind(account.as_str())
                .bind(&device)
                .fetch_one(&self.read)
                .await
                .map_err(map_sqlx)?,
                "n",
            )?;
            let rows = sqlx::query(concat!(
                "SELECT ",
                inbound_columns!(),
                " FROM inbound_messages i WHERE i.account_id = ? AND i.device_uid = ? \
                 ORDER BY i.received_at DESC, i.id DESC LIMIT ? OFFSET ?"
            ))
            .bind(account.as_str())
            .bind(&device)
            .bind(i64::from(page.limit))
            .bind(offset)
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?;
            (total, rows)
        } else {
            let total: i64 = get(
                &sqlx::query("SELECT COUNT(*) AS n FROM inbound_messages WHERE account_id = ?")
                    .bind(account.as_str())
                    .fetch_one(&self.read)
                    .await
                    .map_err(map_sqlx)?,
                "n",
            )?;
            let rows = sqlx::query(concat!(
                "SELECT ",
                inbound_columns!(),
                " FROM inbound_messages i WHERE i.account_id = ? \
                 ORDER BY i.received_at DESC, i.id DESC LIMIT ? OFFSET ?"
            ))
            .bind(account.as_str())
            .bind(i64::from(page.limit))
            .bind(offset)
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?;
            (total, rows)
        };
        Ok(Page {
            items: rows
                .iter()
                .map(inbound_from_row)
                .collect::<StoreResult<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
            page: page.page,
            limit: page.limit,
        })
    }

    async fn get_inbound(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> StoreResult<InboundMessage> {
        let row = sqlx::query(concat!(
            "SELECT ",
            inbound_columns!(),
            " FROM inbound_messages i WHERE i.account_id = ? AND i.id = ?"
        ))
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?;
        row.as_ref()
            .map(inbound_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn find_inbound(
        &self,
        device: &DeviceUid,
        provider_message_id: &str,
    ) -> StoreResult<Option<InboundMessage>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            inbound_columns!(),
            " FROM inbound_messages i WHERE i.device_uid = ? AND i.provider_message_id = ?"
        ))
        .bind(device.as_str())
        .bind(provider_message_id)
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?;
        row.as_ref().map(inbound_from_row).transpose()
    }

    async fn unread_inbound(
        &self,
        device: &DeviceUid,
        chat: &Recipient,
        limit: u32,
    ) -> StoreResult<Vec<InboundMessage>> {
        // A one-to-one chat is its sender's number; a group chat, the group's id.
        let chat_clause = match chat {
            Recipient::Phone(_) => "i.from_phone = ? AND i.is_group = 0",
            Recipient::Group(_) => "i.group_id = ? AND i.is_group = 1",
        };
        let sql = format!(
            "SELECT {} FROM inbound_messages i \
             WHERE i.device_uid = ? AND {chat_clause} \
             AND i.read_at IS NULL \
             AND i.kind NOT IN ('reaction', 'edit', 'delete', 'participants', 'poll_vote') \
             ORDER BY i.received_at, i.id LIMIT ?",
            inbound_columns!()
        );
        // Only the constants above are spliced in; the values are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.as_str())
            .bind(chat.key())
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(inbound_from_row).collect()
    }

    async fn poll_votes(
        &self,
        device: &DeviceUid,
        poll_provider_message_id: &str,
    ) -> StoreResult<Vec<InboundMessage>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            inbound_columns!(),
            " FROM inbound_messages i \
             WHERE i.device_uid = ? AND i.target_id = ? AND i.kind = 'poll_vote' \
             ORDER BY i.timestamp, i.received_at, i.id"
        ))
        .bind(device.as_str())
        .bind(poll_provider_message_id)
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(inbound_from_row).collect()
    }

    async fn mark_inbound_read(
        &self,
        device: &DeviceUid,
        ids: &[MessageId],
        at: Timestamp,
    ) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let device = device.as_str().to_owned();
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut qb =
                        QueryBuilder::<Sqlite>::new("UPDATE inbound_messages SET read_at = ");
                    qb.push_bind(millis(at));
                    qb.push(" WHERE read_at IS NULL AND device_uid = ");
                    qb.push_bind(device);
                    qb.push(" AND id IN (");
                    let mut list = qb.separated(", ");
                    for id in ids {
                        list.push_bind(id);
                    }
                    qb.push(")");
                    Ok(qb
                        .build()
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?
                        .rows_affected())
                })
            })
            .await
    }
}
