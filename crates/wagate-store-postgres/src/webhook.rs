//! Webhooks on PostgreSQL: configurations, the fan-out of events into the delivery
//! outbox, claiming with leases, and the attempt history.
//!
//! Fan-out locks its cursor row, so the dispatchers of several nodes take turns: each
//! reads the events after the cursor (in seq order, which is commit order) and moves the
//! cursor in the transaction that inserts their deliveries, so an event is fanned out
//! exactly once. Claims lock the deliveries they take with `FOR UPDATE SKIP LOCKED`: two
//! nodes never claim one delivery, and a destination's window counts the deliveries
//! leased by any node. No transaction is held while a request is in flight; the outcome
//! is a statement of its own.

use crate::PgStore;
use crate::device::lock_live_device;
use crate::error::{corrupt, map_sqlx};
use crate::event::notify_wake;
use crate::row::{count, event_columns, event_from_row, get, media_columns, media_from_row};
use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use std::collections::HashMap;
use wagate_core::event::EventType;
use wagate_core::media::Media;
use wagate_core::store::{Page, PageRequest, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::webhook::{
    AttemptFilter, AttemptRecord, ClaimedDelivery, DEFAULT_EVENT_TYPES, DeliveryNext, EndpointKind,
    WebhookAttempt, WebhookChange, WebhookConfig, WebhookStore,
};
use wagate_core::{AccountId, DeviceUid, EventId, MediaId};

/// A configuration's columns, prefixed `cfg_` so they can sit beside an event's or a
/// device's in one row.
macro_rules! config_columns {
    () => {
        "c.device_uid AS cfg_device_uid, c.account_id AS cfg_account_id, \
         c.msgera_active AS cfg_msgera_active, c.personal_url AS cfg_personal_url, \
         c.group_url AS cfg_group_url, c.msgera_events AS cfg_msgera_events, \
         c.instance_url AS cfg_instance_url, c.instance_events AS cfg_instance_events, \
         c.secret AS cfg_secret, c.previous_secret AS cfg_previous_secret, \
         c.previous_secret_until AS cfg_previous_secret_until, \
         c.created_at AS cfg_created_at, c.updated_at AS cfg_updated_at"
    };
}

fn parse_events(names: &[String]) -> StoreResult<Vec<EventType>> {
    names
        .iter()
        .map(|n| EventType::parse(n).ok_or_else(|| corrupt("event type", n)))
        .collect()
}

fn event_names(types: &[EventType]) -> Vec<&'static str> {
    types.iter().map(|t| t.as_str()).collect()
}

/// The configuration in a row of [`config_columns`], `None` when a LEFT JOIN found none.
fn config_from_row(row: &PgRow) -> StoreResult<Option<WebhookConfig>> {
    let Some(device) = get::<Option<String>>(row, "cfg_device_uid")? else {
        return Ok(None);
    };
    let account: String = get(row, "cfg_account_id")?;
    Ok(Some(WebhookConfig {
        device_uid: DeviceUid::parse(&device).map_err(|_| corrupt("device_uid", &device))?,
        account_id: AccountId::parse(&account).map_err(|_| corrupt("account_id", &account))?,
        msgera_active: get(row, "cfg_msgera_active")?,
        personal_url: get(row, "cfg_personal_url")?,
        group_url: get(row, "cfg_group_url")?,
        msgera_events: parse_events(&get::<Vec<String>>(row, "cfg_msgera_events")?)?,
        instance_url: get(row, "cfg_instance_url")?,
        instance_events: parse_events(&get::<Vec<String>>(row, "cfg_instance_events")?)?,
        secret: get(row, "cfg_secret")?,
        previous_secret: get(row, "cfg_previous_secret")?,
        previous_secret_until: get::<Option<i64>>(row, "cfg_previous_secret_until")?
            .map(from_millis),
        created_at: from_millis(get(row, "cfg_created_at")?),
        updated_at: from_millis(get(row, "cfg_updated_at")?),
    }))
}

async fn config_of(
    conn: &mut PgConnection,
    device: &DeviceUid,
) -> StoreResult<Option<WebhookConfig>> {
    match sqlx::query(concat!(
        "SELECT ",
        config_columns!(),
        " FROM webhook_configs c WHERE c.device_uid = $1"
    ))
    .bind(device.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_sqlx)?
    {
        Some(row) => config_from_row(&row),
        None => Ok(None),
    }
}

fn u32_of(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(what, v))
}

fn endpoint_of(s: &str) -> StoreResult<EndpointKind> {
    EndpointKind::parse(s).ok_or_else(|| corrupt("endpoint", s))
}

/// Each destination's window: its `$1` oldest pending deliveries, as the `windowed`
/// table. The destinations with anything pending are found by skipping along the
/// `webhook_deliveries_pending` index from one (device, endpoint) to the next, and each
/// window is a short walk of the same index: the cost follows the number of destinations
/// and the window, not the backlog, which may be tens of thousands deep.
macro_rules! windowed_deliveries {
    () => {
        "WITH RECURSIVE line AS ( \
            (SELECT device_uid, endpoint FROM webhook_deliveries WHERE status = 'pending' \
                ORDER BY device_uid, endpoint LIMIT 1) \
            UNION ALL \
            SELECT n.device_uid, n.endpoint FROM line CROSS JOIN LATERAL ( \
                SELECT w.device_uid, w.endpoint FROM webhook_deliveries w \
                WHERE w.status = 'pending' \
                  AND (w.device_uid, w.endpoint) > (line.device_uid, line.endpoint) \
                ORDER BY w.device_uid, w.endpoint LIMIT 1) n \
        ), \
        windowed AS ( \
            SELECT x.id, x.next_attempt_at, x.lease_until FROM line CROSS JOIN LATERAL ( \
                SELECT w.id, w.next_attempt_at, w.lease_until FROM webhook_deliveries w \
                WHERE w.status = 'pending' AND w.device_uid = line.device_uid \
                  AND w.endpoint = line.endpoint \
                ORDER BY w.id LIMIT $1) x \
        ) "
    };
}

/// Picks the due candidates of the windows, longest-waiting first, leases them and
/// returns each with its event and its device's configuration, in one statement. The
/// due test is repeated on each row as it is once locked, so a delivery another node
/// leased (or finished) meanwhile is left alone; one it holds locked is skipped.
const CLAIM: &str = concat!(
    windowed_deliveries!(),
    ", picked AS ( \
        SELECT d.id FROM webhook_deliveries d \
        WHERE d.id IN (SELECT id FROM windowed WHERE next_attempt_at <= $2 \
                         AND (lease_until IS NULL OR lease_until <= $2)) \
          AND d.status = 'pending' AND d.next_attempt_at <= $2 \
          AND (d.lease_until IS NULL OR d.lease_until <= $2) \
        ORDER BY d.next_attempt_at, d.id LIMIT $3 \
        FOR UPDATE SKIP LOCKED \
    ), leased AS ( \
        UPDATE webhook_deliveries d SET lease_until = $4, lease_owner = $5 \
        FROM picked WHERE d.id = picked.id \
        RETURNING d.id, d.device_uid, d.endpoint, d.event_seq, d.attempts, d.next_attempt_at \
    ) \
    SELECT l.id AS delivery_id, l.endpoint, l.attempts, ",
    event_columns!(),
    ", ",
    config_columns!(),
    " FROM leased l JOIN events e ON e.seq = l.event_seq \
      LEFT JOIN webhook_configs c ON c.device_uid = l.device_uid \
      ORDER BY l.next_attempt_at, l.id"
);

#[async_trait]
impl WebhookStore for PgStore {
    async fn get_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
    ) -> StoreResult<Option<WebhookConfig>> {
        // The device check and the read in one statement, so one snapshot.
        let row = sqlx::query(concat!(
            "SELECT d.account_id AS owner, ",
            config_columns!(),
            " FROM devices d LEFT JOIN webhook_configs c ON c.device_uid = d.uid \
              WHERE d.uid = $1 AND d.deleted_at IS NULL"
        ))
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        if get::<String>(&row, "owner")? != account.as_str() {
            return Err(StoreError::NotFound);
        }
        config_from_row(&row)
    }

    async fn change_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        change: &WebhookChange,
        new_secret: &str,
        at: Timestamp,
    ) -> StoreResult<WebhookConfig> {
        let mut tx = self.begin().await?;
        // The device's row lock makes changes of one configuration take turns, so none
        // is lost to another made at the same time.
        lock_live_device(&mut tx, device, Some(account)).await?;
        let mut c = match config_of(&mut tx, device).await? {
            Some(c) => c,
            None => WebhookConfig {
                account_id: account.clone(),
                device_uid: device.clone(),
                msgera_active: false,
                personal_url: None,
                group_url: None,
                msgera_events: DEFAULT_EVENT_TYPES.to_vec(),
                instance_url: None,
                instance_events: DEFAULT_EVENT_TYPES.to_vec(),
                secret: new_secret.to_owned(),
                previous_secret: None,
                previous_secret_until: None,
                created_at: at,
                updated_at: at,
            },
        };
        match change.clone() {
            WebhookChange::Msgera(m) => {
                c.personal_url = m.personal_url;
                c.group_url = m.group_url;
                c.msgera_active = m.active;
                c.msgera_events = m.events;
            }
            WebhookChange::Instance(i) => {
                c.instance_url = i.url;
                c.instance_events = i.events;
            }
            WebhookChange::RotateSecret {
                secret,
                previous_until,
            } => {
                c.previous_secret = Some(std::mem::replace(&mut c.secret, secret));
                c.previous_secret_until = Some(previous_until);
            }
        }
        c.updated_at = at;
        sqlx::query(
            "INSERT INTO webhook_configs (device_uid, account_id, msgera_active, personal_url, \
             group_url, msgera_events, instance_url, instance_events, secret, previous_secret, \
             previous_secret_until, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (device_uid) DO UPDATE SET account_id = excluded.account_id, \
             msgera_active = excluded.msgera_active, personal_url = excluded.personal_url, \
             group_url = excluded.group_url, msgera_events = excluded.msgera_events, \
             instance_url = excluded.instance_url, instance_events = excluded.instance_events, \
             secret = excluded.secret, previous_secret = excluded.previous_secret, \
             previous_secret_until = excluded.previous_secret_until, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
        )
        .bind(c.device_uid.as_str())
        .bind(c.account_id.as_str())
        .bind(c.msgera_active)
        .bind(c.personal_url.as_deref())
        .bind(c.group_url.as_deref())
        .bind(event_names(&c.msgera_events))
        .bind(c.instance_url.as_deref())
        .bind(event_names(&c.instance_events))
        .bind(&c.secret)
        .bind(c.previous_secret.as_deref())
        .bind(c.previous_secret_until.map(millis))
        .bind(millis(c.created_at))
        .bind(millis(c.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        self.commit(tx, None).await?;
        Ok(c)
    }

    async fn fan_out_events(&self, limit: u32, at: Timestamp) -> StoreResult<u32> {
        let mut tx = self.begin().await?;
        // Locked, then read in statements of their own: the events read below are those
        // committed by then, on a fresh snapshot (seq order is commit order, so they are
        // every event up to the newest one read).
        let cursor: i64 =
            sqlx::query_scalar("SELECT last_seq FROM webhook_cursor WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_sqlx)?;
        // Each event with its device's configuration, in one round trip.
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            ", ",
            config_columns!(),
            " FROM events e LEFT JOIN webhook_configs c ON c.device_uid = e.device_uid \
              WHERE e.seq > $1 ORDER BY e.seq LIMIT $2"
        ))
        .bind(cursor)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(last) = rows.last() else {
            return Ok(0);
        };
        let last_seq: i64 = get(last, "seq")?;
        let mut configs: HashMap<String, Option<WebhookConfig>> = HashMap::new();
        // One delivery per target, in event order (delivery ids follow it: a
        // destination's line is its id order).
        let (mut accounts, mut devices, mut endpoints, mut seqs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let event = event_from_row(row)?;
            let uid = event.device_uid.as_str().to_owned();
            if !configs.contains_key(&uid) {
                configs.insert(uid.clone(), config_from_row(row)?);
            }
            let Some(Some(config)) = configs.get(&uid) else {
                continue;
            };
            for target in config.targets(&event.data) {
                accounts.push(event.account_id.as_str().to_owned());
                devices.push(uid.clone());
                endpoints.push(target.as_str());
                seqs.push(event.seq);
            }
        }
        sqlx::query(
            "WITH ins AS ( \
                INSERT INTO webhook_deliveries (account_id, device_uid, endpoint, event_seq, \
                    status, next_attempt_at, created_at, updated_at) \
                SELECT s.a, s.d, s.e, s.seq, 'pending', $5, $5, $5 \
                FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY \
                    AS s (a, d, e, seq, ord) \
                ORDER BY s.ord \
             ) UPDATE webhook_cursor SET last_seq = $6 WHERE id = 1",
        )
        .bind(accounts)
        .bind(devices)
        .bind(endpoints)
        .bind(seqs)
        .bind(millis(at))
        .bind(last_seq)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        self.commit(tx, None).await?;
        u32::try_from(rows.len()).map_err(|_| corrupt("batch", rows.len()))
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        window: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let rows = sqlx::query(CLAIM)
            .bind(i64::from(window.max(1)))
            .bind(millis(now))
            .bind(i64::from(limit))
            .bind(millis(lease_until))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        let mut configs: HashMap<String, Option<WebhookConfig>> = HashMap::new();
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let event = event_from_row(row)?;
            let uid = event.device_uid.as_str().to_owned();
            if !configs.contains_key(&uid) {
                configs.insert(uid.clone(), config_from_row(row)?);
            }
            claimed.push(ClaimedDelivery {
                delivery_id: get(row, "delivery_id")?,
                endpoint: endpoint_of(&get::<String>(row, "endpoint")?)?,
                attempt: u32_of(get::<i64>(row, "attempts")?, "attempts")? + 1,
                event,
                config: configs.get(&uid).cloned().flatten(),
            });
        }
        Ok(claimed)
    }

    async fn next_delivery_at(&self, window: u32) -> StoreResult<Option<Timestamp>> {
        // Within the windows only: a delivery queued behind a full window is not claimable.
        let at: Option<i64> = sqlx::query_scalar(concat!(
            windowed_deliveries!(),
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM windowed"
        ))
        .bind(i64::from(window.max(1)))
        .fetch_one(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(at.map(from_millis))
    }

    async fn finish_attempt(&self, r: &AttemptRecord, next: DeliveryNext) -> StoreResult<()> {
        let at = millis(r.at);
        let (status, next_at, attempts_inc) = match next {
            DeliveryNext::Succeeded => ("succeeded", at, 1_i64),
            DeliveryNext::RetryAt(t) => ("pending", millis(t), 1),
            DeliveryNext::Failed => ("failed", at, 1),
            DeliveryNext::Cancelled => ("cancelled", at, 0),
        };
        // The move and its attempt row in one statement: the row copies the delivery's
        // account and device, and is not written for a cancelled delivery (nothing was
        // attempted) or a delivery that does not exist. A delivery another node leased
        // since (this node's lease expired) is that node's to move on; the attempt is
        // still history.
        let found: i64 = sqlx::query_scalar(
            "WITH target AS ( \
                SELECT id, account_id, device_uid, \
                lease_owner IS NOT DISTINCT FROM $14 AS holds \
                FROM webhook_deliveries WHERE id = $5 FOR UPDATE \
             ), moved AS ( \
                UPDATE webhook_deliveries d SET status = $1, next_attempt_at = $2, \
                attempts = d.attempts + $3, lease_until = NULL, lease_owner = NULL, \
                updated_at = $4 FROM target WHERE d.id = target.id AND target.holds \
             ), recorded AS ( \
                INSERT INTO webhook_attempts (delivery_id, account_id, device_uid, attempt, \
                url, success, status_code, latency_ms, error, response_snippet, created_at) \
                SELECT id, account_id, device_uid, $6, $7, $8, $9, $10, $11, $12, $4 \
                FROM target WHERE $13::boolean \
             ) SELECT COUNT(*) FROM target",
        )
        .bind(status)
        .bind(next_at)
        .bind(attempts_inc)
        .bind(at)
        .bind(r.delivery_id)
        .bind(i64::from(r.attempt))
        .bind(&r.url)
        .bind(r.success)
        .bind(r.status_code.map(i64::from))
        .bind(i64::try_from(r.latency_ms).unwrap_or(i64::MAX))
        .bind(r.error.as_deref())
        .bind(r.response_snippet.as_deref())
        .bind(next != DeliveryNext::Cancelled)
        .bind(&r.owner)
        .fetch_one(&self.pool)
        .await
        .map_err(map_sqlx)?;
        if found == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn release_deliveries(&self, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = NULL, lease_owner = NULL \
             WHERE lease_owner = $1",
        )
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn list_webhook_attempts(
        &self,
        account: &AccountId,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookAttempt>> {
        let mut filter_sql = String::from(" WHERE a.account_id = $1");
        let mut n = 1;
        if filter.device_uid.is_some() {
            n += 1;
            filter_sql.push_str(&format!(" AND a.device_uid = ${n}"));
        }
        if filter.success.is_some() {
            n += 1;
            filter_sql.push_str(&format!(" AND a.success = ${n}"));
        }
        let bind_all = |sql: String| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account.as_str().to_owned());
            if let Some(d) = &filter.device_uid {
                q = q.bind(d.as_str().to_owned());
            }
            if let Some(s) = filter.success {
                q = q.bind(s);
            }
            q
        };
        let total = count(
            &bind_all(format!(
                "SELECT COUNT(*) AS n FROM webhook_attempts a{filter_sql}"
            ))
            .fetch_one(&self.pool)
            .await
            .map_err(map_sqlx)?,
            "n",
        )?;
        let rows = bind_all(format!(
            "SELECT a.id, a.delivery_id, a.account_id, a.device_uid, d.endpoint, \
             e.id AS event_id, e.type AS event_type, a.attempt, a.url, a.success, \
             a.status_code, a.latency_ms, a.error, a.response_snippet, a.created_at \
             FROM webhook_attempts a \
             JOIN webhook_deliveries d ON d.id = a.delivery_id \
             JOIN events e ON e.seq = d.event_seq{filter_sql} \
             ORDER BY a.id DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ))
        .bind(i64::from(page.limit))
        .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        let items = rows
            .iter()
            .map(|r| {
                let account: String = get(r, "account_id")?;
                let device: String = get(r, "device_uid")?;
                let event: String = get(r, "event_id")?;
                let event_type: String = get(r, "event_type")?;
                Ok(WebhookAttempt {
                    id: get(r, "id")?,
                    delivery_id: get(r, "delivery_id")?,
                    account_id: AccountId::parse(&account)
                        .map_err(|_| corrupt("account_id", &account))?,
                    device_uid: DeviceUid::parse(&device)
                        .map_err(|_| corrupt("device_uid", &device))?,
                    endpoint: endpoint_of(&get::<String>(r, "endpoint")?)?,
                    event_id: EventId::parse(&event).map_err(|_| corrupt("event id", &event))?,
                    event_type: EventType::parse(&event_type)
                        .ok_or_else(|| corrupt("event type", &event_type))?,
                    attempt: u32_of(get(r, "attempt")?, "attempt")?,
                    url: get(r, "url")?,
                    success: get(r, "success")?,
                    status_code: get::<Option<i64>>(r, "status_code")?
                        .map(|c| u16::try_from(c).map_err(|_| corrupt("status_code", c)))
                        .transpose()?,
                    latency_ms: u64::try_from(get::<i64>(r, "latency_ms")?).unwrap_or(0),
                    error: get(r, "error")?,
                    response_snippet: get(r, "response_snippet")?,
                    created_at: from_millis(get(r, "created_at")?),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page {
            items,
            total,
            page: page.page,
            limit: page.limit,
        })
    }

    async fn redeliver(
        &self,
        account: &AccountId,
        attempt: i64,
        at: Timestamp,
    ) -> StoreResult<i64> {
        let now = millis(at);
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (account_id, device_uid, endpoint, event_seq, \
             status, next_attempt_at, created_at, updated_at) \
             SELECT d.account_id, d.device_uid, d.endpoint, d.event_seq, 'pending', $1, $1, $1 \
             FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
             WHERE a.id = $2 AND a.account_id = $3 RETURNING id",
        )
        .bind(now)
        .bind(attempt)
        .bind(account.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        // A delivery is due now without a new event: wake every node's dispatcher all the
        // same (this one's at once, the others' at commit).
        notify_wake(&mut tx).await?;
        self.commit(tx, None).await?;
        self.commits.wake();
        Ok(id)
    }

    async fn get_media_by_id(&self, id: &MediaId) -> StoreResult<Media> {
        let row = sqlx::query(concat!(
            "SELECT ",
            media_columns!(),
            " FROM media md WHERE md.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        media_from_row(&row)
    }
}
