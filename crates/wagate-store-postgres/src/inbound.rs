//! Inbound messages: stored once per provider message id and device, each with its
//! `message.received` event.

use crate::PgStore;
use crate::error::map_sqlx;
use crate::event::append;
use crate::row::{count, inbound_columns, inbound_from_row};
use async_trait::async_trait;
use wagate_core::event::{EventData, NewEvent};
use wagate_core::lease::Fence;
use wagate_core::message::InboundMessage;
use wagate_core::store::{
    InboundOutcome, InboundStore, Page, PageRequest, StoreError, StoreResult,
};
use wagate_core::time::{Timestamp, millis};
use wagate_core::{AccountId, DeviceUid, MessageId, Recipient};

#[async_trait]
impl InboundStore for PgStore {
    async fn record_inbound(
        &self,
        fence: &Fence,
        m: &InboundMessage,
        mime_type: Option<&str>,
    ) -> StoreResult<InboundOutcome> {
        if fence.device_uid != m.device_uid {
            return Err(StoreError::Fenced);
        }
        let mut tx = self.begin().await?;
        crate::fence::check(&mut tx, fence).await?;
        // A redelivery inserts nothing (and waits for a racing first delivery to commit
        // or roll back, so the two cannot both store it).
        let inserted = sqlx::query(
            "INSERT INTO inbound_messages (id, account_id, device_uid, provider_message_id, \
             from_phone, from_lid, from_name, kind, text, media_id, is_group, group_id, \
             group_name, timestamp, received_at, details, target_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (device_uid, provider_message_id) DO NOTHING",
        )
        .bind(m.id.as_str())
        .bind(m.account_id.as_str())
        .bind(m.device_uid.as_str())
        .bind(&m.provider_message_id)
        .bind(m.from.as_ref().map(|p| p.digits()))
        .bind(m.from_lid.as_deref())
        .bind(m.from_name.as_deref())
        .bind(m.kind.as_str())
        .bind(m.text.as_deref())
        .bind(m.media_id.as_ref().map(|id| id.as_str()))
        .bind(m.is_group)
        .bind(m.group_id.as_deref())
        .bind(m.group_name.as_deref())
        .bind(millis(m.timestamp))
        .bind(millis(m.received_at))
        .bind(m.details.to_json())
        .bind(
            m.details
                .target
                .as_ref()
                .map(|t| t.provider_message_id.as_str()),
        )
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if inserted.rows_affected() == 0 {
            let row = sqlx::query(concat!(
                "SELECT ",
                inbound_columns!(),
                " FROM inbound_messages i \
                 WHERE i.device_uid = $1 AND i.provider_message_id = $2"
            ))
            .bind(m.device_uid.as_str())
            .bind(&m.provider_message_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx)?;
            return Ok(InboundOutcome::Duplicate(inbound_from_row(&row)?));
        }
        let event = NewEvent::new(
            m.account_id.clone(),
            m.device_uid.clone(),
            EventData::received(m, mime_type.map(str::to_owned)),
            m.received_at,
        );
        let seq = append(&mut tx, &[event]).await?;
        self.commit(tx, seq).await?;
        Ok(InboundOutcome::Created(m.clone()))
    }

    async fn list_inbound(
        &self,
        account: &AccountId,
        device: Option<&DeviceUid>,
        page: PageRequest,
    ) -> StoreResult<Page<InboundMessage>> {
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        // Two fixed statements per form, so each is planned on its own index.
        let (count_sql, list_sql) = match device {
            Some(_) => (
                "SELECT COUNT(*) AS n FROM inbound_messages \
                 WHERE account_id = $1 AND device_uid = $2",
                concat!(
                    "SELECT ",
                    inbound_columns!(),
                    " FROM inbound_messages i WHERE i.account_id = $1 AND i.device_uid = $2 \
                     ORDER BY i.received_at DESC, i.id DESC LIMIT $3 OFFSET $4"
                ),
            ),
            None => (
                "SELECT COUNT(*) AS n FROM inbound_messages WHERE account_id = $1",
                concat!(
                    "SELECT ",
                    inbound_columns!(),
                    " FROM inbound_messages i WHERE i.account_id = $1 \
                     ORDER BY i.received_at DESC, i.id DESC LIMIT $2 OFFSET $3"
                ),
            ),
        };
        let device = device.map(|d| d.as_str());
        let mut count_query = sqlx::query(count_sql).bind(account.as_str());
        let mut list_query = sqlx::query(list_sql).bind(account.as_str());
        if let Some(device) = device {
            count_query = count_query.bind(device);
            list_query = list_query.bind(device);
        }
        let total = count(
            &count_query.fetch_one(&self.pool).await.map_err(map_sqlx)?,
            "n",
        )?;
        let rows = list_query
            .bind(i64::from(page.limit))
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(Page {
            items: rows
                .iter()
                .map(inbound_from_row)
                .collect::<StoreResult<_>>()?,
            total,
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
            " FROM inbound_messages i WHERE i.account_id = $1 AND i.id = $2"
        ))
        .bind(account.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
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
            " FROM inbound_messages i WHERE i.device_uid = $1 AND i.provider_message_id = $2"
        ))
        .bind(device.as_str())
        .bind(provider_message_id)
        .fetch_optional(&self.pool)
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
            Recipient::Phone(_) => "i.from_phone = $2 AND NOT i.is_group",
            Recipient::Group(_) => "i.group_id = $2 AND i.is_group",
        };
        let sql = format!(
            "SELECT {} FROM inbound_messages i \
             WHERE i.device_uid = $1 AND {chat_clause} \
             AND i.read_at IS NULL \
             AND i.kind NOT IN ('reaction', 'edit', 'delete', 'participants', 'poll_vote') \
             ORDER BY i.received_at, i.id LIMIT $3",
            inbound_columns!()
        );
        // Only the constants above are spliced in; the values are bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.as_str())
            .bind(chat.key())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
             WHERE i.device_uid = $1 AND i.target_id = $2 AND i.kind = 'poll_vote' \
             ORDER BY i.timestamp, i.received_at, i.id"
        ))
        .bind(device.as_str())
        .bind(poll_provider_message_id)
        .fetch_all(&self.pool)
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
        let ids: Vec<&str> = ids.iter().map(MessageId::as_str).collect();
        let done = sqlx::query(
            "UPDATE inbound_messages SET read_at = $1 \
             WHERE read_at IS NULL AND device_uid = $2 AND id = ANY($3)",
        )
        .bind(millis(at))
        .bind(device.as_str())
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected())
    }
}
