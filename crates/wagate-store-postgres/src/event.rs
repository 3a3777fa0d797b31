//! The event log: appended by the write paths in the same transaction as the state each
//! event reports, read in `seq` order by webhook delivery and the live stream.
//!
//! Seqs come from the one-row `event_counter`, incremented in the appending transaction:
//! its row lock, held until commit, makes event-writing transactions take turns from
//! their first event to their commit, so a transaction holding seq 7 has committed
//! before another can take 8, and a reader that saw `n` can never see a seq below `n`
//! appear later (rules 1 and 2 of the contract in [`wagate_core::store`]). A bare
//! sequence would not do: its numbers are handed out in start order, not commit order.
//! Transactions serialise only from their first event on, and every transaction takes
//! the counter last (after its row locks), so the turn is short and cannot deadlock.

use crate::PgStore;
use crate::commits::{self, CHANNEL};
use crate::error::{corrupt, map_sqlx};
use crate::row::{event_columns, event_from_row};
use async_trait::async_trait;
use sqlx::PgConnection;
use wagate_core::AccountId;
use wagate_core::event::{Event, EventType, NewEvent};
use wagate_core::store::{EventStore, StoreError, StoreResult};
use wagate_core::time::millis;

/// Takes `n` seqs from the counter, inserts the events with them in order, and queues a
/// notification of the last one, delivered when (and if) the transaction commits. One
/// round trip however many events.
const APPEND: &str = "WITH c AS ( \
        UPDATE event_counter SET last_seq = last_seq + cardinality($1::text[]) \
        WHERE id = 1 RETURNING last_seq \
    ), e AS ( \
        INSERT INTO events (seq, id, account_id, device_uid, type, data, created_at) \
        SELECT c.last_seq - cardinality($1::text[]) + s.ord, s.id, s.account_id, \
            s.device_uid, s.type, s.data, s.created_at \
        FROM c, UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
            $6::bigint[]) WITH ORDINALITY AS s (id, account_id, device_uid, type, data, \
            created_at, ord) \
    ) \
    SELECT c.last_seq, pg_notify($7, c.last_seq::text)::text AS notified FROM c";

/// Appends `events`, in order, inside the caller's transaction; returns the last seq
/// (`None` when there were none), for the caller to announce after its commit.
pub(crate) async fn append(
    conn: &mut PgConnection,
    events: &[NewEvent],
) -> StoreResult<Option<i64>> {
    if events.is_empty() {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut accounts = Vec::with_capacity(events.len());
    let mut devices = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    let mut created = Vec::with_capacity(events.len());
    for e in events {
        ids.push(e.id.as_str());
        accounts.push(e.account_id.as_str());
        devices.push(e.device_uid.as_str());
        types.push(e.data.event_type().as_str());
        data.push(serde_json::to_string(&e.data).map_err(|e| corrupt("event", e))?);
        created.push(millis(e.created_at));
    }
    let seq: i64 = sqlx::query_scalar(APPEND)
        .bind(ids)
        .bind(accounts)
        .bind(devices)
        .bind(types)
        .bind(data)
        .bind(created)
        .bind(CHANNEL)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    Ok(Some(seq))
}

/// Queues a wake for every node's subscribers, delivered at commit, for a change that
/// makes work due without writing an event (a redelivery).
pub(crate) async fn notify_wake(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)::text")
        .bind(CHANNEL)
        .bind(commits::WAKE)
        .execute(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    Ok(())
}

#[async_trait]
impl EventStore for PgStore {
    async fn list_events(
        &self,
        after: i64,
        limit: u32,
        account: Option<&AccountId>,
        types: &[EventType],
    ) -> StoreResult<Vec<Event>> {
        // One fixed statement per combination of filters (four in all), so each gets a
        // plan that uses its index.
        let mut sql = String::from(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e WHERE e.seq > $1"
        ));
        let mut next = 2;
        if account.is_some() {
            sql.push_str(&format!(" AND e.account_id = ${next}"));
            next += 1;
        }
        // An empty list means every type.
        if !types.is_empty() {
            sql.push_str(&format!(" AND e.type = ANY(${next})"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY e.seq LIMIT ${next}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after);
        if let Some(account) = account {
            query = query.bind(account.as_str().to_owned());
        }
        if !types.is_empty() {
            query = query.bind(types.iter().map(|t| t.as_str()).collect::<Vec<_>>());
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        commits::last_seq(&self.pool).await
    }

    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<i64> {
        self.commits.subscribe()
    }

    async fn check_writable(&self) -> StoreResult<()> {
        // A committed write, not a read: a standby or a read-only server answers reads.
        let done = sqlx::query("UPDATE store_heartbeat SET beats = beats + 1 WHERE id = 1")
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Other("the heartbeat row is missing".into()));
        }
        Ok(())
    }
}
