//! Accepting outbound messages, many per round trip.
//!
//! Accepting is the hot path (every send request), and with sqlx every statement, and
//! every result it reports, crosses between the writer and sqlx's connection thread,
//! which costs far more than the statement itself. So accepts are written as rows of a
//! temporary `accept_request` table, one multi-row INSERT per chunk of consecutive
//! accepts, and a trigger on that table does the work for each row in turn: it notes
//! what the decision depends on (the device, the clientMessageId, the daily budget) and,
//! when the accept is allowed, writes the message, its history step, its send job and
//! its budget count. Rows are processed one after the other, so the second of two
//! identical clientMessageIds sees the first exactly as if each had its own transaction,
//! and the INSERT is one statement, so a failure (a reused message id) undoes the whole
//! chunk and nothing else. The notes come back as one JSON row.

use crate::error::{corrupt, map_sqlx};
use crate::message::{DAY_MINUTES, minute_of, window_start};
use crate::row::{get, message_columns, message_from_row};
use sqlx::SqliteConnection;
use std::collections::HashMap;
use std::sync::OnceLock;
use wagate_core::message::{Message, MessageStatus, NewOutboundMessage};
use wagate_core::store::{AcceptOutcome, StoreError, StoreResult};
use wagate_core::time::millis;

/// One `accept_outbound_message` call.
#[derive(Debug, Clone)]
pub(crate) struct AcceptRequest {
    pub message: NewOutboundMessage,
    pub provider_message_id: String,
    pub daily_limit: u32,
}

/// Largest number of accepts in one script. Chunks are powers of two up to this, so the
/// connection caches a handful of scripts rather than one per batch size.
pub(crate) const MAX_CHUNK: usize = 64;

/// The per-connection scratch table and the trigger that accepts each row inserted into
/// it. Temporary (in memory, invisible to other connections) and transactional: a
/// rolled-back chunk leaves nothing behind.
pub(crate) const SETUP: &[&str] = &[
    "CREATE TEMP TABLE IF NOT EXISTS accept_request (
        slot INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        device_uid TEXT NOT NULL,
        to_phone TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT,
        media_id TEXT,
        client_message_id TEXT,
        request_hash TEXT NOT NULL,
        provider_message_id TEXT NOT NULL,
        dialect TEXT NOT NULL,
        send_at INTEGER,
        created_at INTEGER NOT NULL,
        run_at INTEGER NOT NULL,
        window_start INTEGER NOT NULL,
        minute INTEGER NOT NULL,
        daily_limit INTEGER NOT NULL,
        -- What the trigger found at this request's turn.
        device_account TEXT,
        device_deleted INTEGER,
        accepted_today INTEGER,
        duplicate_id TEXT,
        duplicate_hash TEXT,
        ok INTEGER
    )",
    "CREATE TEMP TRIGGER IF NOT EXISTS accept_request_run AFTER INSERT ON accept_request
    BEGIN
        UPDATE accept_request SET
            device_account = (SELECT account_id FROM devices WHERE uid = NEW.device_uid),
            device_deleted = (SELECT deleted_at FROM devices WHERE uid = NEW.device_uid),
            accepted_today = (SELECT COALESCE(SUM(accepted), 0) FROM device_counters
                WHERE device_uid = NEW.device_uid
                AND minute >= NEW.window_start AND minute <= NEW.minute),
            duplicate_id = (SELECT id FROM messages
                WHERE device_uid = NEW.device_uid AND client_message_id = NEW.client_message_id),
            duplicate_hash = (SELECT request_hash FROM messages
                WHERE device_uid = NEW.device_uid AND client_message_id = NEW.client_message_id)
        WHERE slot = NEW.slot;
        UPDATE accept_request SET ok = (device_account IS NEW.account_id
            AND device_deleted IS NULL AND duplicate_id IS NULL
            AND accepted_today < NEW.daily_limit)
        WHERE slot = NEW.slot;
        INSERT INTO messages (id, account_id, device_uid, to_phone, kind, text, media_id,
            client_message_id, request_hash, status, provider_message_id, dialect, send_at,
            created_at, updated_at)
        SELECT NEW.id, NEW.account_id, NEW.device_uid, NEW.to_phone, NEW.kind, NEW.text,
            NEW.media_id, NEW.client_message_id, NEW.request_hash, 'queued',
            NEW.provider_message_id,
            NEW.dialect, NEW.send_at, NEW.created_at, NEW.created_at
        FROM accept_request WHERE slot = NEW.slot AND ok;
        INSERT INTO message_status_history (message_id, status, at)
        SELECT NEW.id, 'queued', NEW.created_at FROM accept_request WHERE slot = NEW.slot AND ok;
        INSERT INTO send_jobs (message_id, device_uid, run_at)
        SELECT NEW.id, NEW.device_uid, NEW.run_at FROM accept_request WHERE slot = NEW.slot AND ok;
        INSERT INTO device_counters (device_uid, minute, accepted)
        SELECT NEW.device_uid, NEW.minute, 1 FROM accept_request WHERE slot = NEW.slot AND ok
        ON CONFLICT (device_uid, minute) DO UPDATE SET accepted = accepted + 1;
    END",
];

const START: &str = "DELETE FROM temp.accept_request; \
    INSERT INTO temp.accept_request (slot, id, account_id, device_uid, to_phone, kind, text, \
        media_id, client_message_id, request_hash, provider_message_id, dialect, send_at, \
        created_at, run_at, window_start, minute, daily_limit) VALUES ";

const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Every note of the chunk as one row.
const REPORT: &str = "; SELECT json_group_array(json_array(slot, device_account, \
    device_deleted, accepted_today, duplicate_id, duplicate_hash, ok)) AS report FROM temp.accept_request";

/// The script for `n` accepts (`n` a power of two up to [`MAX_CHUNK`]).
fn script(n: usize) -> &'static str {
    static SCRIPTS: OnceLock<Vec<String>> = OnceLock::new();
    let scripts = SCRIPTS.get_or_init(|| {
        let mut all = Vec::new();
        let mut size = 1;
        while size <= MAX_CHUNK {
            let mut s = String::with_capacity(START.len() + size * (ROW.len() + 2) + REPORT.len());
            s.push_str(START);
            for i in 0..size {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(ROW);
            }
            s.push_str(REPORT);
            all.push(s);
            size *= 2;
        }
        all
    });
    let index = n.max(1).trailing_zeros() as usize;
    scripts.get(index).map_or("", String::as_str)
}

/// How to split `n` consecutive accepts into cached script sizes: largest first.
pub(crate) fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = if n >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        sizes.push(size);
        n -= size;
    }
    sizes
}

/// Runs `requests` (a count [`chunk_sizes`] produces) in one round trip (two when some
/// are duplicates). `Err` means the chunk failed (a reused message id, a full disk) and
/// wrote nothing; otherwise one outcome per request, in order.
pub(crate) async fn accept_chunk(
    conn: &mut SqliteConnection,
    requests: &[&AcceptRequest],
) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
    let n = requests.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if !n.is_power_of_two() || n > MAX_CHUNK {
        return Err(StoreError::Other(format!(
            "no accept script for {n} messages"
        )));
    }
    let mut query = sqlx::query(script(n));
    for (slot, r) in requests.iter().enumerate() {
        let m = &r.message;
        let created = millis(m.created_at);
        query = query
            .bind(i64::try_from(slot).unwrap_or(i64::MAX))
            .bind(m.id.as_str())
            .bind(m.account_id.as_str())
            .bind(m.device_uid.as_str())
            .bind(m.to.digits())
            .bind(m.kind.as_str())
            .bind(m.text.as_deref())
            .bind(m.media_id.as_ref().map(|x| x.as_str()))
            .bind(m.client_message_id.as_deref())
            .bind(m.request_hash.as_str())
            .bind(r.provider_message_id.as_str())
            .bind(m.dialect.as_str())
            .bind(m.send_at.map(millis))
            .bind(created)
            .bind(m.send_at.map_or(created, millis))
            .bind(window_start(m.created_at, DAY_MINUTES))
            .bind(minute_of(m.created_at))
            .bind(i64::from(r.daily_limit));
    }
    let report: String = query
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx)?
        .last()
        .map(|row| get(row, "report"))
        .transpose()?
        .ok_or_else(|| corrupt("accept report", "missing"))?;
    let mut notes: Vec<Note> =
        serde_json::from_str(&report).map_err(|e| corrupt("accept report", e))?;
    notes.sort_by_key(|n| n.0);
    if notes.len() != n || notes.iter().enumerate().any(|(i, note)| note.0 != i as i64) {
        return Err(corrupt("accept report", &report));
    }
    let duplicates = load_duplicates(conn, &notes).await?;
    requests
        .iter()
        .zip(&notes)
        .map(|(r, note)| decide(r, note, &duplicates))
        .collect()
}

/// What the trigger noted for one accept: slot, the device's account, when it was
/// deleted, accepts in the window, the clientMessageId's existing message and its request
/// hash, and whether the message was written (0 or 1).
type Note = (
    i64,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    Option<String>,
    i64,
);

/// The messages duplicates point at, as they are now (one round trip, only when needed).
async fn load_duplicates(
    conn: &mut SqliteConnection,
    notes: &[Note],
) -> StoreResult<HashMap<String, Message>> {
    let ids: Vec<&str> = notes.iter().filter_map(|n| n.4.as_deref()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = serde_json::to_string(&ids).map_err(|e| corrupt("message ids", e))?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m WHERE m.id IN (SELECT value FROM json_each(?))"
    ))
    .bind(ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    rows.iter()
        .map(|row| message_from_row(row).map(|m| (m.id.as_str().to_owned(), m)))
        .collect()
}

fn decide(
    r: &AcceptRequest,
    note: &Note,
    duplicates: &HashMap<String, Message>,
) -> StoreResult<StoreResult<AcceptOutcome>> {
    let m = &r.message;
    let (_, owner, deleted, accepted, duplicate, duplicate_hash, written) = note;
    if owner.as_deref() != Some(m.account_id.as_str()) || deleted.is_some() {
        return Ok(Err(StoreError::NotFound));
    }
    if let Some(id) = duplicate {
        if !wagate_core::message::is_replay(duplicate_hash.as_deref(), &m.request_hash) {
            let original = wagate_core::MessageId::parse(id)
                .map_err(|_| corrupt("duplicate message id", id))?;
            return Ok(Ok(AcceptOutcome::KeyReused { original }));
        }
        let original = duplicates
            .get(id)
            .ok_or_else(|| corrupt("duplicate message", id))?;
        return Ok(Ok(AcceptOutcome::Duplicate(original.clone())));
    }
    if *accepted >= i64::from(r.daily_limit) {
        return Ok(Ok(AcceptOutcome::DailyBudgetExhausted {
            limit: r.daily_limit,
        }));
    }
    if *written != 1 {
        return Err(StoreError::Other(format!(
            "message {} passed its checks but was not written",
            m.id
        )));
    }
    Ok(Ok(AcceptOutcome::Created(Message {
        id: m.id.clone(),
        account_id: m.account_id.clone(),
        device_uid: m.device_uid.clone(),
        to: m.to.clone(),
        kind: m.kind,
        text: m.text.clone(),
        media_id: m.media_id.clone(),
        client_message_id: m.client_message_id.clone(),
        status: MessageStatus::Queued,
        failure_reason: None,
        provider_message_id: Some(r.provider_message_id.clone()),
        dialect: m.dialect,
        send_at: m.send_at,
        created_at: m.created_at,
        updated_at: m.created_at,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cached_sizes_covering_the_run() {
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1), vec![1]);
        assert_eq!(chunk_sizes(37), vec![32, 4, 1]);
        assert_eq!(chunk_sizes(200), vec![64, 64, 64, 8]);
        for n in 0..300 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_CHUNK));
        }
    }

    #[test]
    fn scripts_repeat_the_accept() {
        assert_eq!(script(4).matches(ROW).count(), 4);
        assert_eq!(script(MAX_CHUNK).matches(ROW).count(), MAX_CHUNK);
    }
}
