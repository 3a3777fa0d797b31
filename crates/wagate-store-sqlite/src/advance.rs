//! Moving messages forward, many per round trip.
//!
//! Every message sent makes three or four status steps (sent, delivered, read, played),
//! each reported on its own by the engine, so steps outnumber accepts several times over.
//! Run one by one, each costs a savepoint move, a load and a script: three round trips to
//! sqlx's connection thread, which cost far more than the statements. Steps queued
//! together therefore run as a chunk ([`crate::writer`]): one query loads every message
//! they name (and the leases their fences are checked against), the core decides each
//! step in order ([`Message::steps`]; a message stepped twice in a chunk sees its first
//! step), and one script writes them all with set-based
//! statements over JSON arrays, inside a savepoint so that a failure undoes the chunk
//! alone. Failures the queue and device deletion record go through the same code, as
//! chunks of their own.

use crate::error::{corrupt, map_sqlx};
use crate::row::{get, message_columns, message_from_row};
use serde_json::{Value, json};
use sqlx::{Row, SqliteConnection};
use std::collections::{HashMap, HashSet};
use wagate_core::DeviceUid;
use wagate_core::lease::Fence;
use wagate_core::message::{Message, MessageStatus};
use wagate_core::store::{MessageRef, StoreError, StoreResult};
use wagate_core::time::{Timestamp, millis};

/// One `advance_message_status` call.
#[derive(Debug, Clone)]
pub(crate) struct AdvanceRequest {
    /// The lease a device's own write holds (a receipt from its engine); `None` for the
    /// gateway's own decisions (device deletion, a failure already fenced in its unit).
    pub fence: Option<Fence>,
    pub target: MessageRef,
    pub status: MessageStatus,
    pub at: Timestamp,
    pub reason: Option<String>,
}

/// The writes of a chunk: each moved message's final state, then every step in order
/// (its history row and its `message.status` event). A message leaving `queued` loses its
/// send job: a failed one is never sent, a sent one not again; every step leaves `queued`
/// or comes after it was left, so each moved message's job ends.
const WRITE: &str = "SAVEPOINT advance; \
    UPDATE messages SET status = f.value ->> 1, \
        updated_at = MAX(messages.updated_at, f.value ->> 2), \
        failure_reason = f.value ->> 3 \
        FROM json_each(?) f WHERE messages.id = f.value ->> 0; \
    DELETE FROM send_jobs WHERE message_id IN (SELECT value ->> 0 FROM json_each(?)); \
    INSERT INTO message_status_history (message_id, status, at, reason) \
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?) ORDER BY key; \
    INSERT INTO events (id, account_id, device_uid, type, data, created_at) \
        SELECT value ->> 4, value ->> 5, value ->> 6, 'message.status', value ->> 7, \
            value ->> 2 FROM json_each(?) ORDER BY key; \
    RELEASE advance";

/// Runs a chunk of steps. The outer `Err` means the chunk failed as a whole (and was
/// undone); inner results are per request.
pub(crate) async fn advance_chunk(
    conn: &mut SqliteConnection,
    requests: &[&AdvanceRequest],
) -> StoreResult<Vec<StoreResult<Option<Message>>>> {
    let Loaded {
        ids,
        mut states,
        held,
    } = load(conn, requests).await?;
    let mut results = Vec::with_capacity(requests.len());
    // Final state per moved message, in first-moved order, and where each message's is.
    let mut finals: Vec<Value> = Vec::new();
    let mut final_of: HashMap<String, usize> = HashMap::new();
    let mut steps: Vec<Value> = Vec::new();
    for r in requests {
        let Some(message) = ids
            .get(&key_of(&r.target))
            .and_then(|id| states.get_mut(id))
        else {
            results.push(Err(StoreError::NotFound));
            continue;
        };
        if let Some(fence) = &r.fence {
            if !held.contains(fence) {
                results.push(Err(StoreError::Fenced));
                continue;
            }
            if message.device_uid != fence.device_uid {
                results.push(Err(StoreError::NotFound));
                continue;
            }
        }
        // The core decides the steps (with any it implies) and builds their events; this
        // only writes them.
        let decided = message.steps(r.status, r.at, r.reason.as_deref());
        if decided.is_empty() {
            results.push(Ok(None));
            continue;
        }
        for step in decided {
            *message = step.message;
            let event = step.event;
            let data = serde_json::to_string(&event.data).map_err(|e| corrupt("event", e))?;
            steps.push(json!([
                message.id.as_str(),
                step.change.status.as_str(),
                millis(step.change.at),
                step.change.reason,
                event.id.as_str(),
                event.account_id.as_str(),
                event.device_uid.as_str(),
                data,
            ]));
        }
        let state = json!([
            message.id.as_str(),
            message.status.as_str(),
            millis(message.updated_at),
            message.failure_reason,
        ]);
        match final_of.get(message.id.as_str()) {
            Some(&i) => finals[i] = state,
            None => {
                final_of.insert(message.id.as_str().to_owned(), finals.len());
                finals.push(state);
            }
        }
        results.push(Ok(Some(message.clone())));
    }
    if steps.is_empty() {
        return Ok(results);
    }
    let finals = Value::Array(finals).to_string();
    let steps = Value::Array(steps).to_string();
    let written = sqlx::query(WRITE)
        .bind(&finals)
        .bind(&finals)
        .bind(&steps)
        .bind(&steps)
        .execute(&mut *conn)
        .await;
    if let Err(e) = written {
        // Undo whatever part of the script ran; failing to means the transaction is gone.
        sqlx::query("ROLLBACK TO advance; RELEASE advance")
            .execute(&mut *conn)
            .await
            .map_err(map_sqlx)?;
        return Err(map_sqlx(e));
    }
    Ok(results)
}

/// What identifies a request's message among the loaded ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(String),
    Provider(String, String),
}

fn key_of(target: &MessageRef) -> Key {
    match target {
        MessageRef::Id(id) => Key::Id(id.as_str().to_owned()),
        MessageRef::Provider {
            device,
            provider_message_id,
        } => Key::Provider(device.as_str().to_owned(), provider_message_id.clone()),
    }
}

/// What a chunk needs, read in one round trip: the messages it names, by id, and which
/// id each request's key names (a message may be named both by id and by provider id;
/// both keys lead to the one state, so later steps see earlier ones); and the fences the
/// leases of the requests' devices hold now ([`crate::fence`]: the check shares the
/// load's round trip instead of taking one of its own).
struct Loaded {
    ids: HashMap<Key, String>,
    states: HashMap<String, Message>,
    held: HashSet<Fence>,
}

async fn load(conn: &mut SqliteConnection, requests: &[&AdvanceRequest]) -> StoreResult<Loaded> {
    let mut ids = Vec::new();
    let mut providers = Vec::new();
    let devices: Vec<Value> = requests
        .iter()
        .filter_map(|r| r.fence.as_ref())
        .map(|f| json!(f.device_uid.as_str()))
        .collect();
    for r in requests {
        match &r.target {
            MessageRef::Id(id) => ids.push(json!(id.as_str())),
            MessageRef::Provider {
                device,
                provider_message_id,
            } => providers.push(json!([device.as_str(), provider_message_id])),
        }
    }
    // The leases first (their rows carry `lease_device`, which no message row has), then
    // the messages, joined from the JSON lists so each lookup is a probe of a unique index
    // (a row-value `IN` would scan the device's messages). A message named twice comes
    // back twice.
    let rows = sqlx::query(concat!(
        "SELECT l.device_uid AS lease_device, l.owner, l.epoch FROM device_leases l \
         WHERE l.owner IS NOT NULL AND l.device_uid IN (SELECT value FROM json_each(?)); \
         SELECT ",
        message_columns!(),
        " FROM json_each(?) j JOIN messages m ON m.id = j.value \
         UNION ALL SELECT ",
        message_columns!(),
        " FROM json_each(?) j JOIN messages m \
         ON m.device_uid = j.value ->> 0 AND m.provider_message_id = j.value ->> 1"
    ))
    .bind(Value::Array(devices).to_string())
    .bind(Value::Array(ids).to_string())
    .bind(Value::Array(providers).to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    let mut loaded = Loaded {
        ids: HashMap::with_capacity(rows.len() * 2),
        states: HashMap::with_capacity(rows.len()),
        held: HashSet::new(),
    };
    for row in &rows {
        if row.try_column("lease_device").is_ok() {
            let device: String = get(row, "lease_device")?;
            loaded.held.insert(Fence {
                device_uid: DeviceUid::parse(&device)
                    .map_err(|_| corrupt("device uid", &device))?,
                owner: get(row, "owner")?,
                epoch: get(row, "epoch")?,
            });
            continue;
        }
        let m = message_from_row(row)?;
        let id = m.id.as_str().to_owned();
        loaded.ids.insert(Key::Id(id.clone()), id.clone());
        loaded.ids.insert(
            Key::Provider(
                m.device_uid.as_str().to_owned(),
                m.provider_message_id.clone(),
            ),
            id.clone(),
        );
        loaded.states.insert(id, m);
    }
    Ok(loaded)
}
