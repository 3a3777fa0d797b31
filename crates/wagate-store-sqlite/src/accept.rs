//! Accepting outbound messages, many per round trip.
//!
//! Accepting is the hot path (every send request), and with sqlx every statement crosses
//! between the writer and sqlx's connection thread, which costs far more than the
//! statement itself. So the accepts queued together run as a chunk ([`crate::writer`]):
//! one query loads what each decision depends on (the device, the daily budget used,
//! the message already holding the clientMessageId), the core decides each accept in
//! turn ([`wagate_core::accept::decide`]), and one script writes every accepted message,
//! its history step, its send job and its budget count with set-based statements over
//! JSON arrays. Decisions run in order and see the accepts decided before them in the
//! chunk (a second identical clientMessageId replays the first, the budget counts both),
//! exactly as if each had its own transaction; the script runs in a savepoint, so a
//! failure (a reused message id) undoes the chunk and nothing else.

use crate::error::{corrupt, map_sqlx};
use crate::message::{DAY_MINUTES, minute_of, window_start};
use crate::row::{get, message_columns, message_from_row};
use serde_json::{Value, json};
use sqlx::SqliteConnection;
use wagate_core::AccountId;
use wagate_core::accept::{AcceptDecision, AcceptFacts, DeviceFacts, ExistingKey, decide};
use wagate_core::message::{Message, NewOutboundMessage};
use wagate_core::store::{AcceptOutcome, StoreError, StoreResult};
use wagate_core::time::millis;

/// One `accept_outbound_message` call.
#[derive(Debug, Clone)]
pub(crate) struct AcceptRequest {
    pub message: NewOutboundMessage,
    pub provider_message_id: String,
    pub daily_limit: u32,
}

/// Most accepts in one chunk: enough to share a round trip between a burst's requests,
/// small enough that a failing chunk retried one by one costs little.
pub(crate) const MAX_CHUNK: usize = 64;

/// How to split `n` consecutive accepts into chunks.
pub(crate) fn chunk_sizes(n: usize) -> Vec<usize> {
    let mut sizes = vec![MAX_CHUNK; n / MAX_CHUNK];
    let rest = n % MAX_CHUNK;
    if rest > 0 {
        sizes.push(rest);
    }
    sizes
}

/// The facts of every request of a chunk, one row each in request order. Each lookup is
/// a probe of a unique index (devices by uid, messages by device and clientMessageId),
/// and the budget a sum over at most a day of per-minute counter rows.
const LOAD: &str = concat!(
    "SELECT r.key AS slot, d.account_id AS device_account, d.deleted_at AS device_deleted, \
     (SELECT COALESCE(SUM(c.accepted), 0) FROM device_counters c \
      WHERE c.device_uid = r.value ->> 0 \
      AND c.minute >= r.value ->> 1 AND c.minute <= r.value ->> 2) AS accepted_today, \
     m.request_hash AS existing_hash, ",
    message_columns!(),
    " FROM json_each(?) r \
     LEFT JOIN devices d ON d.uid = r.value ->> 0 \
     LEFT JOIN messages m ON m.device_uid = r.value ->> 0 \
       AND m.client_message_id = r.value ->> 3 \
     ORDER BY r.key"
);

/// Writes the accepted messages (a JSON array of [`created_row`]s, bound three times) and
/// their budget counts (`[device, minute, count]`).
const WRITE: &str = "SAVEPOINT accept; \
    INSERT INTO messages (id, account_id, device_uid, to_phone, kind, text, media_id, \
        client_message_id, request_hash, status, provider_message_id, dialect, send_at, \
        created_at, updated_at, details) \
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
            value ->> 6, value ->> 7, value ->> 8, 'queued', value ->> 9, value ->> 10, \
            value ->> 11, value ->> 12, value ->> 12, value ->> 14 FROM json_each(?) ORDER BY key; \
    INSERT INTO message_status_history (message_id, status, at) \
        SELECT value ->> 0, 'queued', value ->> 12 FROM json_each(?) ORDER BY key; \
    INSERT INTO send_jobs (message_id, device_uid, run_at) \
        SELECT value ->> 0, value ->> 2, value ->> 13 FROM json_each(?) ORDER BY key; \
    INSERT INTO device_counters (device_uid, minute, accepted) \
        SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true \
        ON CONFLICT (device_uid, minute) DO UPDATE SET accepted = accepted + excluded.accepted; \
    RELEASE accept";

/// Runs a chunk of accepts: one round trip to load, one to write (none when nothing is
/// accepted). `Err` means the chunk failed (a reused message id, a full disk) and wrote
/// nothing; otherwise one outcome per request, in order.
pub(crate) async fn accept_chunk(
    conn: &mut SqliteConnection,
    requests: &[&AcceptRequest],
) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let loaded = load(conn, requests).await?;
    // What the chunk created so far, for the requests after it.
    let mut created: Vec<(&AcceptRequest, Message)> = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for (r, (facts, existing)) in requests.iter().zip(loaded) {
        let m = &r.message;
        let (facts, existing) = with_chunk(facts, existing, r, &created);
        let outcome = match decide(m, &r.provider_message_id, r.daily_limit, &facts) {
            AcceptDecision::Create(message) => {
                created.push((r, (*message).clone()));
                Ok(AcceptOutcome::Created(*message))
            }
            AcceptDecision::Replay(id) => match existing {
                Some(original) if original.id == id => Ok(AcceptOutcome::Duplicate(original)),
                _ => Err(corrupt("duplicate message", &id)),
            },
            AcceptDecision::KeyReused { original } => Ok(AcceptOutcome::KeyReused { original }),
            AcceptDecision::DailyBudgetExhausted { limit } => {
                Ok(AcceptOutcome::DailyBudgetExhausted { limit })
            }
            AcceptDecision::NoSuchDevice => Err(StoreError::NotFound),
        };
        outcomes.push(outcome);
    }
    if !created.is_empty() {
        write(conn, &created).await?;
    }
    Ok(outcomes)
}

/// Adds to the loaded facts what earlier accepts of the chunk did: their budget counts
/// and their clientMessageIds (whose message is then the answer to a replay).
fn with_chunk(
    mut facts: AcceptFacts,
    mut existing: Option<Message>,
    r: &AcceptRequest,
    created: &[(&AcceptRequest, Message)],
) -> (AcceptFacts, Option<Message>) {
    let m = &r.message;
    let (from, to) = (
        window_start(m.created_at, DAY_MINUTES),
        minute_of(m.created_at),
    );
    for (earlier, message) in created {
        let e = &earlier.message;
        if e.device_uid != m.device_uid {
            continue;
        }
        let minute = minute_of(e.created_at);
        if (from..=to).contains(&minute) {
            facts.accepted_today += 1;
        }
        if facts.existing.is_none()
            && m.client_message_id.is_some()
            && e.client_message_id == m.client_message_id
        {
            facts.existing = Some(ExistingKey {
                id: message.id.clone(),
                request_hash: Some(e.request_hash.clone()),
            });
            existing = Some(message.clone());
        }
    }
    (facts, existing)
}

/// Each request's facts and the message already holding its clientMessageId.
async fn load(
    conn: &mut SqliteConnection,
    requests: &[&AcceptRequest],
) -> StoreResult<Vec<(AcceptFacts, Option<Message>)>> {
    let keys: Vec<Value> = requests
        .iter()
        .map(|r| {
            let m = &r.message;
            json!([
                m.device_uid.as_str(),
                window_start(m.created_at, DAY_MINUTES),
                minute_of(m.created_at),
                m.client_message_id,
            ])
        })
        .collect();
    let rows = sqlx::query(LOAD)
        .bind(Value::Array(keys).to_string())
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    if rows.len() != requests.len() {
        return Err(corrupt("accept facts", rows.len()));
    }
    let mut loaded = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if get::<i64>(row, "slot")? != i64::try_from(i).unwrap_or(i64::MAX) {
            return Err(corrupt("accept facts", "out of order"));
        }
        let device = get::<Option<String>>(row, "device_account")?
            .map(|account| -> StoreResult<DeviceFacts> {
                Ok(DeviceFacts {
                    account_id: AccountId::parse(&account)
                        .map_err(|_| corrupt("account id", &account))?,
                    deleted: get::<Option<i64>>(row, "device_deleted")?.is_some(),
                })
            })
            .transpose()?;
        let accepted: i64 = get(row, "accepted_today")?;
        let existing = match get::<Option<String>>(row, "id")? {
            Some(_) => Some(message_from_row(row)?),
            None => None,
        };
        let key = match &existing {
            Some(m) => Some(ExistingKey {
                id: m.id.clone(),
                request_hash: get(row, "existing_hash")?,
            }),
            None => None,
        };
        let facts = AcceptFacts {
            device,
            accepted_today: u64::try_from(accepted).unwrap_or(0),
            existing: key,
        };
        loaded.push((facts, existing));
    }
    Ok(loaded)
}

/// One accepted message as the write script reads it.
fn created_row(r: &AcceptRequest, message: &Message) -> Value {
    let m = &r.message;
    let created = millis(m.created_at);
    json!([
        message.id.as_str(),
        message.account_id.as_str(),
        message.device_uid.as_str(),
        message.to.key(),
        message.kind.as_str(),
        message.text,
        message.media_id.as_ref().map(|x| x.as_str()),
        message.client_message_id,
        m.request_hash,
        r.provider_message_id,
        message.dialect.as_str(),
        message.send_at.map(millis),
        created,
        m.send_at.map_or(created, millis),
        message.details.to_json(),
    ])
}

async fn write(
    conn: &mut SqliteConnection,
    created: &[(&AcceptRequest, Message)],
) -> StoreResult<()> {
    let rows = Value::Array(created.iter().map(|(r, m)| created_row(r, m)).collect()).to_string();
    let mut counts: Vec<(&str, i64, i64)> = Vec::new();
    for (r, _) in created {
        let (device, minute) = (
            r.message.device_uid.as_str(),
            minute_of(r.message.created_at),
        );
        match counts.iter_mut().find(|c| c.0 == device && c.1 == minute) {
            Some(c) => c.2 += 1,
            None => counts.push((device, minute, 1)),
        }
    }
    let counts = Value::Array(counts.iter().map(|c| json!([c.0, c.1, c.2])).collect()).to_string();
    let written = sqlx::query(WRITE)
        .bind(&rows)
        .bind(&rows)
        .bind(&rows)
        .bind(counts)
        .execute(&mut *conn)
        .await;
    if let Err(e) = written {
        // Undo whatever part of the script ran; failing to means the transaction is gone.
        sqlx::query("ROLLBACK TO accept; RELEASE accept")
            .execute(&mut *conn)
            .await
            .map_err(map_sqlx)?;
        return Err(map_sqlx(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_run_within_the_bound() {
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1), vec![1]);
        assert_eq!(chunk_sizes(37), vec![37]);
        assert_eq!(chunk_sizes(200), vec![64, 64, 64, 8]);
        for n in 0..300 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| (1..=MAX_CHUNK).contains(s)));
        }
    }
}
