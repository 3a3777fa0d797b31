//! The event log: appended by the write paths in the same transaction as the state each
//! event reports, read in `seq` order by webhook delivery and the live stream.

use crate::SqliteStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::{event_columns, event_from_row};
use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteArguments;
use wagate_core::AccountId;
use wagate_core::event::{Event, EventType, NewEvent};
use wagate_core::store::{EventStore, StoreResult};
use wagate_core::time::millis;

/// Appends `event` inside the caller's write transaction. Only the single writer appends,
/// so `seq` order is commit order: a reader that saw seq `n` has seen every seq below it
/// (the contract in [`wagate_core::store`]).
pub(crate) async fn append(conn: &mut SqliteConnection, event: &NewEvent) -> StoreResult<()> {
    let data = serde_json::to_string(&event.data).map_err(|e| corrupt("event", e))?;
    sqlx::query(
        "INSERT INTO events (id, account_id, device_uid, type, data, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(event.id.as_str())
    .bind(event.account_id.as_str())
    .bind(event.device_uid.as_str())
    .bind(event.data.event_type().as_str())
    .bind(data)
    .bind(millis(event.created_at))
    .execute(conn)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn list_events(
        &self,
        after: i64,
        limit: u32,
        account: Option<&AccountId>,
        types: &[EventType],
    ) -> StoreResult<Vec<Event>> {
        let mut sql = String::from(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events e WHERE e.seq > ?"
        ));
        if account.is_some() {
            sql.push_str(" AND e.account_id = ?");
        }
        // An empty list means every type; there are few types, so the list is inlined as
        // placeholders rather than passed as JSON.
        if !types.is_empty() {
            sql.push_str(" AND e.type IN (");
            for i in 0..types.len() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
            }
            sql.push(')');
        }
        sql.push_str(" ORDER BY e.seq LIMIT ?");
        let mut query = sqlx::query::<_>(sqlx::AssertSqlSafe(sql)).bind(after);
        if let Some(account) = account {
            query = query.bind(account.as_str().to_owned());
        }
        for t in types {
            query = query.bind(t.as_str());
        }
        let query: sqlx::query::Query<'_, sqlx::Sqlite, SqliteArguments> =
            query.bind(i64::from(limit));
        let rows = query.fetch_all(&self.read).await.map_err(map_sqlx)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        // AUTOINCREMENT's high-water mark, which stays put when old events are pruned.
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                .fetch_optional(&self.read)
                .await
                .map_err(map_sqlx)?
                .flatten();
        Ok(seq.unwrap_or(0))
    }

    fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<i64> {
        self.writer.subscribe_commits()
    }

    async fn check_writable(&self) -> StoreResult<()> {
        // The writer opens every transaction with `BEGIN IMMEDIATE`, so even a unit that
        // writes nothing must get the write lock and commit.
        self.writer
            .write(|conn| {
                Box::pin(async move {
                    sqlx::query("SELECT 1")
                        .execute(conn)
                        .await
                        .map(|_| ())
                        .map_err(map_sqlx)
                })
            })
            .await
    }
}
