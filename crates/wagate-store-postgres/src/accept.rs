//! Accepting an outbound message: the hot path (every send request), in five round trips
//! (begin, lock, load, write, commit) however busy the device.
//!
//! Accepts of one device take turns on the device's row lock, taken in a statement of its
//! own: the load after it then runs on a fresh snapshot (READ COMMITTED takes one per
//! statement), so it sees every accept that committed before, and two concurrent
//! requests with one clientMessageId, or the last room in the daily budget, cannot both
//! be accepted. The core decides ([`decide`]) on what was loaded, and one statement
//! writes the message, its history step, its send job and its budget count.

use crate::device::lock_live_device;
use crate::error::{corrupt, map_sqlx};
use crate::message::{DAY_MINUTES, minute_of, window_start};
use crate::row::{count, get, message_columns, message_from_row};
use sqlx::PgConnection;
use wagate_core::accept::{AcceptDecision, AcceptFacts, DeviceFacts, ExistingKey, decide};
use wagate_core::message::{Message, NewOutboundMessage};
use wagate_core::store::{AcceptOutcome, StoreError, StoreResult};
use wagate_core::time::millis;

/// The budget used in the day up to the message (`$2..=$3` minutes) and the message
/// already holding its clientMessageId (`$4`) on the device (`$1`): a probe of the
/// counters' primary key and one of the unique idempotency index.
const LOAD: &str = concat!(
    "SELECT (SELECT COALESCE(SUM(c.accepted), 0)::BIGINT FROM device_counters c \
       WHERE c.device_uid = $1 AND c.minute >= $2 AND c.minute <= $3) AS accepted_today, \
     m.request_hash AS existing_hash, ",
    message_columns!(),
    " FROM (SELECT 1) AS one LEFT JOIN messages m \
       ON m.device_uid = $1 AND m.client_message_id = $4"
);

/// Everything an accepted message writes, in one statement. The history row and the job
/// reference the message inserted alongside: foreign keys are checked at the end of the
/// statement, when it is there.
const WRITE: &str = "WITH m AS ( \
        INSERT INTO messages (id, account_id, device_uid, to_phone, kind, text, media_id, \
            client_message_id, request_hash, status, provider_message_id, dialect, send_at, \
            created_at, updated_at, details) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11, $12, $13, $13, $16) \
    ), h AS ( \
        INSERT INTO message_status_history (message_id, status, at) VALUES ($1, 'queued', $13) \
    ), j AS ( \
        INSERT INTO send_jobs (message_id, device_uid, run_at) VALUES ($1, $3, $14) \
    ) \
    INSERT INTO device_counters (device_uid, minute, accepted) VALUES ($3, $15, 1) \
    ON CONFLICT (device_uid, minute) DO UPDATE SET accepted = device_counters.accepted + 1";

/// One `accept_outbound_message` call, inside the caller's transaction.
pub(crate) async fn accept(
    conn: &mut PgConnection,
    m: &NewOutboundMessage,
    provider_message_id: &str,
    daily_limit: u32,
) -> StoreResult<AcceptOutcome> {
    let device = match lock_live_device(conn, &m.device_uid, None).await {
        Ok(d) => Some(DeviceFacts {
            account_id: d.account_id,
            deleted: false,
        }),
        // Missing or deleted: the core refuses both alike.
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e),
    };
    let (facts, existing) = match device {
        None => (
            AcceptFacts {
                device: None,
                accepted_today: 0,
                existing: None,
            },
            None,
        ),
        Some(device) => load(conn, m, device).await?,
    };
    match decide(m, provider_message_id, daily_limit, &facts) {
        AcceptDecision::Create(message) => {
            write(conn, m, &message, provider_message_id).await?;
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
    }
}

/// The facts of a live device's accept, and the message already holding its key.
async fn load(
    conn: &mut PgConnection,
    m: &NewOutboundMessage,
    device: DeviceFacts,
) -> StoreResult<(AcceptFacts, Option<Message>)> {
    let row = sqlx::query(LOAD)
        .bind(m.device_uid.as_str())
        .bind(window_start(m.created_at, DAY_MINUTES))
        .bind(minute_of(m.created_at))
        .bind(m.client_message_id.as_deref())
        .fetch_one(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    let existing = match get::<Option<String>>(&row, "id")? {
        Some(_) => Some(message_from_row(&row)?),
        None => None,
    };
    let key = match &existing {
        Some(e) => Some(ExistingKey {
            id: e.id.clone(),
            request_hash: get(&row, "existing_hash")?,
        }),
        None => None,
    };
    let facts = AcceptFacts {
        device: Some(device),
        accepted_today: count(&row, "accepted_today")?,
        existing: key,
    };
    Ok((facts, existing))
}

async fn write(
    conn: &mut PgConnection,
    m: &NewOutboundMessage,
    message: &Message,
    provider_message_id: &str,
) -> StoreResult<()> {
    let created = millis(m.created_at);
    sqlx::query(WRITE)
        .bind(message.id.as_str())
        .bind(message.account_id.as_str())
        .bind(message.device_uid.as_str())
        .bind(message.to.key())
        .bind(message.kind.as_str())
        .bind(message.text.as_deref())
        .bind(message.media_id.as_ref().map(|x| x.as_str()))
        .bind(message.client_message_id.as_deref())
        .bind(&m.request_hash)
        .bind(provider_message_id)
        .bind(message.dialect.as_str())
        .bind(message.send_at.map(millis))
        .bind(created)
        .bind(m.send_at.map_or(created, millis))
        .bind(minute_of(m.created_at))
        .bind(message.details.to_json())
        .execute(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    Ok(())
}
