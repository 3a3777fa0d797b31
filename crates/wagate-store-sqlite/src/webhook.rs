//! Webhooks on SQLite: configurations, the fan-out of events into the delivery outbox,
//! claiming with leases, and the attempt history.
//!
//! Fan-out runs on the single writer, so it reads the events table in commit order and
//! moves its cursor in the same transaction as the deliveries it inserts: an event is
//! fanned out exactly once, whatever crashes. A delivery is claimed with a lease and no
//! transaction is held while the request is in flight; the outcome is a second unit.

use crate::SqliteStore;
use crate::device::live_device;
use crate::error::{corrupt, map_sqlx};
use crate::row::{event_columns, event_from_row, get, media_columns, media_from_row};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
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

const CONFIG_COLUMNS: &str = "device_uid, account_id, msgera_active, personal_url, group_url, \
     msgera_events, instance_url, instance_events, secret, previous_secret, \
     previous_secret_until, created_at, updated_at";

fn events_json(types: &[EventType]) -> String {
    let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

fn parse_events(s: &str) -> StoreResult<Vec<EventType>> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|_| corrupt("event types", s))?;
    names
        .iter()
        .map(|n| EventType::parse(n).ok_or_else(|| corrupt("event type", n)))
        .collect()
}

fn config_from_row(row: &SqliteRow) -> StoreResult<WebhookConfig> {
    let device: String = get(row, "device_uid")?;
    let account: String = get(row, "account_id")?;
    Ok(WebhookConfig {
        device_uid: DeviceUid::parse(&device).map_err(|_| corrupt("device_uid", &device))?,
        account_id: AccountId::parse(&account).map_err(|_| corrupt("account_id", &account))?,
        msgera_active: get(row, "msgera_active")?,
        personal_url: get(row, "personal_url")?,
        group_url: get(row, "group_url")?,
        msgera_events: parse_events(&get::<String>(row, "msgera_events")?)?,
        instance_url: get(row, "instance_url")?,
        instance_events: parse_events(&get::<String>(row, "instance_events")?)?,
        secret: get(row, "secret")?,
        previous_secret: get(row, "previous_secret")?,
        previous_secret_until: get::<Option<i64>>(row, "previous_secret_until")?.map(from_millis),
        created_at: from_millis(get(row, "created_at")?),
        updated_at: from_millis(get(row, "updated_at")?),
    })
}

async fn config_of(
    conn: &mut SqliteConnection,
    device: &str,
) -> StoreResult<Option<WebhookConfig>> {
    let sql = format!("SELECT {CONFIG_COLUMNS} FROM webhook_configs WHERE device_uid = ?");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(device.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_sqlx)?
        .map(|r| config_from_row(&r))
        .transpose()
}

fn u32_of(v: i64, what: &str) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(what, v))
}

/// Each destination's window: its `?` oldest pending deliveries (the parameter), as the
/// `windowed` table. The destinations with anything pending are found by skipping along
/// the `webhook_deliveries_pending` index from one (device, endpoint) to the next, and
/// each window is a short walk of the same index: the cost follows the number of
/// destinations and the window, not the backlog, which may be tens of thousands deep.
macro_rules! windowed_deliveries {
    () => {
        "WITH RECURSIVE head (id) AS ( \
            SELECT * FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' \
                ORDER BY device_uid, endpoint, id LIMIT 1) \
            UNION ALL \
            SELECT COALESCE( \
                (SELECT w.id FROM webhook_deliveries cur, webhook_deliveries w \
                    WHERE cur.id = head.id AND w.status = 'pending' \
                    AND w.device_uid = cur.device_uid AND w.endpoint > cur.endpoint \
                    ORDER BY w.endpoint, w.id LIMIT 1), \
                (SELECT w.id FROM webhook_deliveries cur, webhook_deliveries w \
                    WHERE cur.id = head.id AND w.status = 'pending' \
                    AND w.device_uid > cur.device_uid \
                    ORDER BY w.device_uid, w.endpoint, w.id LIMIT 1)) \
            FROM head WHERE head.id IS NOT NULL \
        ), \
        line AS ( \
            SELECT device_uid, endpoint FROM webhook_deliveries \
            WHERE id IN (SELECT id FROM head WHERE id IS NOT NULL) \
        ), \
        windowed AS ( \
            SELECT d.id, d.device_uid, d.endpoint, d.event_seq, d.attempts, \
                d.next_attempt_at, d.lease_until \
            FROM line JOIN webhook_deliveries d ON d.id IN ( \
                SELECT x.id FROM webhook_deliveries x WHERE x.status = 'pending' \
                    AND x.device_uid = line.device_uid AND x.endpoint = line.endpoint \
                    ORDER BY x.id LIMIT ?) \
        ) "
    };
}

/// Integers as a JSON array, for `json_each(?)`.
fn json_array(values: &[i64]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

fn endpoint_of(s: &str) -> StoreResult<EndpointKind> {
    EndpointKind::parse(s).ok_or_else(|| corrupt("endpoint", s))
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn get_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
    ) -> StoreResult<Option<WebhookConfig>> {
        let account = account.clone();
        let device = device.clone();
        // Through the writer so the device check and the read see one snapshot; this is
        // a rare call.
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    live_device(conn, &device, Some(&account)).await?;
                    config_of(conn, device.as_str()).await
                })
            })
            .await
    }

    async fn change_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        change: &WebhookChange,
        new_secret: &str,
        at: Timestamp,
    ) -> StoreResult<WebhookConfig> {
        let account = account.clone();
        let device = device.clone();
        let change = change.clone();
        let new_secret = new_secret.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    live_device(conn, &device, Some(&account)).await?;
                    let mut c = match config_of(conn, device.as_str()).await? {
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
                            secret: new_secret.clone(),
                            previous_secret: None,
                            previous_secret_until: None,
                            created_at: at,
                            updated_at: at,
                        },
                    };
                    match change {
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
                    let sql = format!(
                        "INSERT OR REPLACE INTO webhook_configs ({CONFIG_COLUMNS}) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(c.device_uid.as_str().to_owned())
                        .bind(c.account_id.as_str().to_owned())
                        .bind(c.msgera_active)
                        .bind(c.personal_url.clone())
                        .bind(c.group_url.clone())
                        .bind(events_json(&c.msgera_events))
                        .bind(c.instance_url.clone())
                        .bind(events_json(&c.instance_events))
                        .bind(c.secret.clone())
                        .bind(c.previous_secret.clone())
                        .bind(c.previous_secret_until.map(millis))
                        .bind(millis(c.created_at))
                        .bind(millis(c.updated_at))
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(c)
                })
            })
            .await
    }

    async fn fan_out_events(&self, limit: u32, at: Timestamp) -> StoreResult<u32> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let cursor: i64 =
                        sqlx::query_scalar("SELECT last_seq FROM webhook_cursor WHERE id = 1")
                            .fetch_optional(&mut *conn)
                            .await
                            .map_err(map_sqlx)?
                            .unwrap_or(0);
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        event_columns!(),
                        " FROM events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?"
                    ))
                    .bind(cursor)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    let Some(last) = rows.last() else {
                        return Ok(0);
                    };
                    let last_seq: i64 = get(last, "seq")?;
                    let mut configs: HashMap<String, Option<WebhookConfig>> = HashMap::new();
                    // [account, device, endpoint, event seq] per delivery, in event order
                    // (delivery ids follow it: a destination's line is its id order).
                    let mut deliveries: Vec<serde_json::Value> = Vec::new();
                    for row in &rows {
                        let event = event_from_row(row)?;
                        let uid = event.device_uid.as_str().to_owned();
                        if !configs.contains_key(&uid) {
                            let c = config_of(conn, &uid).await?;
                            configs.insert(uid.clone(), c);
                        }
                        let Some(Some(config)) = configs.get(&uid) else {
                            continue;
                        };
                        for target in config.targets(&event.data) {
                            deliveries.push(serde_json::json!([
                                event.account_id.as_str(),
                                uid,
                                target.as_str(),
                                event.seq
                            ]));
                        }
                    }
                    if !deliveries.is_empty() {
                        // One statement for the whole batch rather than a round trip each.
                        let now = millis(at);
                        sqlx::query(
                            "INSERT INTO webhook_deliveries (account_id, device_uid, \
                             endpoint, event_seq, status, next_attempt_at, created_at, \
                             updated_at) SELECT value ->> 0, value ->> 1, value ->> 2, \
                             value ->> 3, 'pending', ?, ?, ? FROM json_each(?) ORDER BY key",
                        )
                        .bind(now)
                        .bind(now)
                        .bind(now)
                        .bind(serde_json::Value::Array(deliveries).to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    }
                    sqlx::query("UPDATE webhook_cursor SET last_seq = ? WHERE id = 1")
                        .bind(last_seq)
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    u32::try_from(rows.len()).map_err(|_| corrupt("batch", rows.len()))
                })
            })
            .await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        window: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let (now, lease_until) = (millis(now), millis(lease_until));
        let owner = owner.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let candidates = sqlx::query(concat!(
                        windowed_deliveries!(),
                        "SELECT id, device_uid, endpoint, event_seq, attempts FROM windowed \
                         WHERE next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) \
                         ORDER BY next_attempt_at, id LIMIT ?"
                    ))
                    .bind(i64::from(window.max(1)))
                    .bind(now)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if candidates.is_empty() {
                        return Ok(Vec::new());
                    }
                    // The leases and the events each in one statement (ids as a JSON
                    // array): a round trip to the connection costs more than the rows.
                    let mut ids = Vec::with_capacity(candidates.len());
                    let mut seqs = Vec::with_capacity(candidates.len());
                    for c in &candidates {
                        ids.push(get::<i64>(c, "id")?);
                        seqs.push(get::<i64>(c, "event_seq")?);
                    }
                    sqlx::query(
                        "UPDATE webhook_deliveries SET lease_until = ?, lease_owner = ? \
                         WHERE id IN (SELECT value FROM json_each(?))",
                    )
                    .bind(lease_until)
                    .bind(owner)
                    .bind(json_array(&ids))
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    let mut events = HashMap::with_capacity(seqs.len());
                    for row in sqlx::query(concat!(
                        "SELECT ",
                        event_columns!(),
                        " FROM events e WHERE e.seq IN (SELECT value FROM json_each(?))"
                    ))
                    .bind(json_array(&seqs))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?
                    {
                        let event = event_from_row(&row)?;
                        events.insert(event.seq, event);
                    }
                    let mut configs: HashMap<String, Option<WebhookConfig>> = HashMap::new();
                    let mut claimed = Vec::with_capacity(candidates.len());
                    for c in candidates {
                        let device: String = get(&c, "device_uid")?;
                        let seq: i64 = get(&c, "event_seq")?;
                        if !configs.contains_key(&device) {
                            let config = config_of(conn, &device).await?;
                            configs.insert(device.clone(), config);
                        }
                        claimed.push(ClaimedDelivery {
                            delivery_id: get(&c, "id")?,
                            endpoint: endpoint_of(&get::<String>(&c, "endpoint")?)?,
                            attempt: u32_of(get::<i64>(&c, "attempts")?, "attempts")? + 1,
                            event: events
                                .get(&seq)
                                .cloned()
                                .ok_or_else(|| corrupt("delivery event", seq))?,
                            config: configs.get(&device).cloned().flatten(),
                        });
                    }
                    Ok(claimed)
                })
            })
            .await
    }

    async fn next_delivery_at(&self, window: u32) -> StoreResult<Option<Timestamp>> {
        // Within the windows only: a delivery queued behind a full window is not claimable.
        let at: Option<i64> = sqlx::query_scalar(concat!(
            windowed_deliveries!(),
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM windowed"
        ))
        .bind(i64::from(window.max(1)))
        .fetch_one(&self.read)
        .await
        .map_err(map_sqlx)?;
        Ok(at.map(from_millis))
    }

    async fn finish_attempt(&self, record: &AttemptRecord, next: DeliveryNext) -> StoreResult<()> {
        let r = record.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let at = millis(r.at);
                    let (status, next_at, attempts_inc) = match next {
                        DeliveryNext::Succeeded => ("succeeded", at, 1),
                        DeliveryNext::RetryAt(t) => ("pending", millis(t), 1),
                        DeliveryNext::Failed => ("failed", at, 1),
                        DeliveryNext::Cancelled => ("cancelled", at, 0),
                    };
                    // The move and its attempt row in one round trip: the row copies the
                    // delivery's account and device, and is not written for a cancelled
                    // delivery (nothing was attempted). A delivery leased by another node
                    // since (this node's lease expired) is that node's to move on, so the
                    // move checks the lease owner as it was before it; the attempt is
                    // still history. The first statement's row says whether the delivery
                    // exists: without it nothing after it matched, and nothing changed.
                    let found = sqlx::query(
                        "SELECT 1 FROM webhook_deliveries WHERE id = ?; \
                         INSERT INTO webhook_attempts (delivery_id, account_id, device_uid, \
                         attempt, url, success, status_code, latency_ms, error, \
                         response_snippet, created_at) \
                         SELECT id, account_id, device_uid, ?, ?, ?, ?, ?, ?, ?, ? \
                         FROM webhook_deliveries WHERE id = ? AND ?; \
                         UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, \
                         attempts = attempts + ?, lease_until = NULL, lease_owner = NULL, \
                         updated_at = ? \
                         WHERE id = ? AND lease_owner IS ?",
                    )
                    .bind(r.delivery_id)
                    .bind(i64::from(r.attempt))
                    .bind(r.url)
                    .bind(r.success)
                    .bind(r.status_code.map(i64::from))
                    .bind(i64::try_from(r.latency_ms).unwrap_or(i64::MAX))
                    .bind(r.error)
                    .bind(r.response_snippet)
                    .bind(at)
                    .bind(r.delivery_id)
                    .bind(next != DeliveryNext::Cancelled)
                    .bind(status)
                    .bind(next_at)
                    .bind(attempts_inc)
                    .bind(at)
                    .bind(r.delivery_id)
                    .bind(&r.owner)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if found.is_empty() {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn release_deliveries(&self, owner: &str) -> StoreResult<()> {
        let owner = owner.to_owned();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET lease_until = NULL, lease_owner = NULL \
                         WHERE lease_owner = ?",
                    )
                    .bind(owner)
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await
    }

    async fn list_webhook_attempts(
        &self,
        account: &AccountId,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookAttempt>> {
        let mut filter_sql = String::from(" WHERE a.account_id = ?");
        if filter.device_uid.is_some() {
            filter_sql.push_str(" AND a.device_uid = ?");
        }
        if filter.success.is_some() {
            filter_sql.push_str(" AND a.success = ?");
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
        let total: i64 = bind_all(format!(
            "SELECT COUNT(*) AS n FROM webhook_attempts a{filter_sql}"
        ))
        .fetch_one(&self.read)
        .await
        .map_err(map_sqlx)?
        .try_get("n")
        .map_err(map_sqlx)?;
        let rows = bind_all(format!(
            "SELECT a.id, a.delivery_id, a.account_id, a.device_uid, d.endpoint, e.id AS event_id, \
             e.type AS event_type, a.attempt, a.url, a.success, a.status_code, a.latency_ms, \
             a.error, a.response_snippet, a.created_at \
             FROM webhook_attempts a \
             JOIN webhook_deliveries d ON d.id = a.delivery_id \
             JOIN events e ON e.seq = d.event_seq{filter_sql} \
             ORDER BY a.id DESC LIMIT ? OFFSET ?"
        ))
        .bind(i64::from(page.limit))
        .bind(i64::try_from(page.offset()).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
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
            total: u64::try_from(total).unwrap_or(0),
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
        let account = account.clone();
        let id = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let now = millis(at);
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO webhook_deliveries (account_id, device_uid, endpoint, \
                         event_seq, status, next_attempt_at, created_at, updated_at) \
                         SELECT d.account_id, d.device_uid, d.endpoint, d.event_seq, 'pending', \
                                ?, ?, ? \
                         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
                         WHERE a.id = ? AND a.account_id = ? RETURNING id",
                    )
                    .bind(now)
                    .bind(now)
                    .bind(now)
                    .bind(attempt)
                    .bind(account.as_str().to_owned())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(map_sqlx)?
                    .ok_or(StoreError::NotFound)?;
                    Ok(id)
                })
            })
            .await?;
        // A delivery is due now without a new event: wake the dispatcher all the same.
        self.writer.announce_commit();
        Ok(id)
    }

    async fn get_media_by_id(&self, id: &MediaId) -> StoreResult<Media> {
        let row = sqlx::query(concat!(
            "SELECT ",
            media_columns!(),
            " FROM media md WHERE md.id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        media_from_row(&row)
    }
}
