//! Moving messages forward: one step, or many in one go (a deleted device's pending
//! sends), with set-based statements whatever the count.
//!
//! The messages named are loaded and locked in one statement (`FOR NO KEY UPDATE`, in id
//! order so that two transactions locking several never wait on each other in a
//! circle): steps of one message take turns, and each sees the one before it. The core
//! decides each step in order ([`Message::steps`]; a message stepped twice in one call
//! sees its first step), then one statement writes every moved message's final state,
//! ends their send jobs and records the history, and the events are appended last
//! ([`crate::event`]).

use crate::error::map_sqlx;
use crate::event::append;
use crate::row::{message_columns, message_from_row};
use sqlx::PgConnection;
use std::collections::HashMap;
use wagate_core::event::NewEvent;
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

/// What a call did: one result per request, and the last event seq written, if any.
pub(crate) struct Advanced {
    pub results: Vec<StoreResult<Option<Message>>>,
    pub last_seq: Option<i64>,
}

/// Writes the moved messages' final states (`$1..$4`: id, status, updated_at, failure
/// reason), ends their send jobs (a message leaving `queued` is sent, or failed, and every
/// step leaves `queued` or comes after it was left), and records each step in order
/// (`$5..$8`).
const WRITE: &str = "WITH moved AS ( \
        UPDATE messages SET status = f.status, \
            updated_at = GREATEST(messages.updated_at, f.at), failure_reason = f.reason \
        FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[]) AS f (id, status, at, reason) \
        WHERE messages.id = f.id \
    ), ended AS ( \
        DELETE FROM send_jobs WHERE message_id = ANY($1::text[]) \
    ) \
    INSERT INTO message_status_history (message_id, status, at, reason) \
    SELECT s.id, s.status, s.at, s.reason \
    FROM UNNEST($5::text[], $6::text[], $7::bigint[], $8::text[]) WITH ORDINALITY \
        AS s (id, status, at, reason, ord) \
    ORDER BY s.ord";

/// Steps the messages inside the caller's transaction.
pub(crate) async fn advance(
    conn: &mut PgConnection,
    requests: &[AdvanceRequest],
) -> StoreResult<Advanced> {
    // Lease rows first, then messages: the order every fenced write takes its locks in.
    let held = crate::fence::held(conn, requests.iter().filter_map(|r| r.fence.as_ref())).await?;
    let Loaded { ids, mut states } = load(conn, requests).await?;
    let mut results = Vec::with_capacity(requests.len());
    // Final state per moved message, in first-moved order.
    let mut finals: Vec<Message> = Vec::new();
    let mut final_of: HashMap<String, usize> = HashMap::new();
    let mut history = History::default();
    let mut events: Vec<NewEvent> = Vec::new();
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
        let steps = message.steps(r.status, r.at, r.reason.as_deref());
        if steps.is_empty() {
            results.push(Ok(None));
            continue;
        }
        for step in steps {
            *message = step.message;
            history.push(message.id.as_str(), &step.change);
            events.push(step.event);
        }
        match final_of.get(message.id.as_str()) {
            Some(&i) => finals[i] = message.clone(),
            None => {
                final_of.insert(message.id.as_str().to_owned(), finals.len());
                finals.push(message.clone());
            }
        }
        results.push(Ok(Some(message.clone())));
    }
    if events.is_empty() {
        return Ok(Advanced {
            results,
            last_seq: None,
        });
    }
    sqlx::query(WRITE)
        .bind(finals.iter().map(|m| m.id.as_str()).collect::<Vec<_>>())
        .bind(finals.iter().map(|m| m.status.as_str()).collect::<Vec<_>>())
        .bind(
            finals
                .iter()
                .map(|m| millis(m.updated_at))
                .collect::<Vec<_>>(),
        )
        .bind(
            finals
                .iter()
                .map(|m| m.failure_reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(history.ids)
        .bind(history.statuses)
        .bind(history.ats)
        .bind(history.reasons)
        .execute(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    let last_seq = append(conn, &events).await?;
    Ok(Advanced { results, last_seq })
}

/// The history rows of a call, as columns for `UNNEST`.
#[derive(Default)]
struct History {
    ids: Vec<String>,
    statuses: Vec<&'static str>,
    ats: Vec<i64>,
    reasons: Vec<Option<String>>,
}

impl History {
    fn push(&mut self, id: &str, change: &wagate_core::message::StatusChange) {
        self.ids.push(id.to_owned());
        self.statuses.push(change.status.as_str());
        self.ats.push(millis(change.at));
        self.reasons.push(change.reason.clone());
    }
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

/// The messages a call names: their states by id, and which id each request's key names
/// (a message may be named both by id and by provider id; both keys lead to the one
/// state, so later steps see earlier ones).
struct Loaded {
    ids: HashMap<Key, String>,
    states: HashMap<String, Message>,
}

/// The lookups, so each is planned on its own unique index: by our id (`$1`), or by
/// device and WhatsApp's id (`$n`, `$n+1`).
const BY_ID: &str = "m.id = ANY($1::text[])";
fn by_provider(n: usize) -> String {
    format!(
        "(m.provider_message_id IS NOT NULL AND (m.device_uid, m.provider_message_id) IN \
         (SELECT u.d, u.p FROM UNNEST(${n}::text[], ${}::text[]) AS u (d, p)))",
        n + 1
    )
}

async fn load(conn: &mut PgConnection, requests: &[AdvanceRequest]) -> StoreResult<Loaded> {
    let mut ids = Vec::new();
    let (mut devices, mut providers) = (Vec::new(), Vec::new());
    for r in requests {
        match &r.target {
            MessageRef::Id(id) => ids.push(id.as_str()),
            MessageRef::Provider {
                device,
                provider_message_id,
            } => {
                devices.push(device.as_str());
                providers.push(provider_message_id.as_str());
            }
        }
    }
    let filter = match (ids.is_empty(), providers.is_empty()) {
        (_, true) => BY_ID.to_owned(),
        (true, false) => by_provider(1),
        (false, false) => format!("{BY_ID} OR {}", by_provider(2)),
    };
    let sql = format!(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE {} ORDER BY m.id FOR NO KEY UPDATE"
        ),
        filter
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    if !ids.is_empty() || providers.is_empty() {
        query = query.bind(ids);
    }
    if !providers.is_empty() {
        query = query.bind(devices).bind(providers);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(map_sqlx)?;
    let mut loaded = Loaded {
        ids: HashMap::with_capacity(rows.len() * 2),
        states: HashMap::with_capacity(rows.len()),
    };
    for row in &rows {
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
