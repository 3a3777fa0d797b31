//! Announcing commits: the watch channel behind
//! [`wagate_core::store::EventStore::subscribe_commits`], fed by this process's own
//! commits and, through PostgreSQL's `LISTEN`/`NOTIFY`, by every other node's; likewise
//! the devices that got a new send job ([`QUEUED`], behind `SendQueue::subscribe_queued`)
//! and the device leases released ([`LEASES`], behind
//! `DeviceLeaseStore::subscribe_lease_releases`).
//!
//! A transaction that writes events (or makes a webhook delivery due) calls `pg_notify`
//! on [`CHANNEL`] inside itself; PostgreSQL delivers the notification only once the
//! transaction commits, so a woken reader finds what it was woken for. One task per
//! store keeps a connection `LISTEN`ing and publishes what arrives; the store also
//! publishes its own commits at once, without waiting for the round trip. Notifications
//! sent while the listening connection is down are lost, so after every reconnect the
//! task reads the newest committed seq and wakes every subscriber with it.

use crate::error::map_sqlx;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;
use wagate_core::DeviceUid;
use wagate_core::store::StoreResult;

/// The notification channel every node listens on.
pub(crate) const CHANNEL: &str = "wagate_commits";

/// Devices with a newly accepted message (payload: the device uid).
pub(crate) const QUEUED: &str = "wagate_queued";

/// Device leases released (payload: the device uid), for nodes waiting to take them.
pub(crate) const LEASES: &str = "wagate_leases";

/// Accepts announced to a receiver that has not read them yet, before it lags.
const QUEUED_CAPACITY: usize = 4_096;

/// Sends, inside the caller's transaction, the notice that `device` got a new job.
pub(crate) async fn notify_queued(
    conn: &mut sqlx::PgConnection,
    device: &DeviceUid,
) -> StoreResult<()> {
    notify(conn, QUEUED, device.as_str()).await
}

/// Sends, inside the caller's transaction, the notice that `device`'s lease was released.
pub(crate) async fn notify_lease_released(
    conn: &mut sqlx::PgConnection,
    device: &DeviceUid,
) -> StoreResult<()> {
    notify(conn, LEASES, device.as_str()).await
}

async fn notify(conn: &mut sqlx::PgConnection, channel: &str, payload: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)::text")
        .bind(channel)
        .bind(payload)
        .execute(&mut *conn)
        .await
        .map_err(map_sqlx)?;
    Ok(())
}

/// The payload of a wake that carries no new seq (a redelivery made a delivery due).
pub(crate) const WAKE: &str = "wake";

/// How long the listener waits before trying again after a failure, at first and at most.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The newest committed event's seq.
pub(crate) async fn last_seq(pool: &PgPool) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT last_seq FROM event_counter WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(map_sqlx)
}

/// The channel and the task feeding it; the task ends when the last store clone is
/// dropped (or closed).
pub(crate) struct Commits {
    tx: Arc<watch::Sender<i64>>,
    queued: broadcast::Sender<DeviceUid>,
    leases: Arc<watch::Sender<u64>>,
    listener: AbortHandle,
}

impl Drop for Commits {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Commits {
    /// Starts listening, then reads the newest seq: in that order, so that no commit
    /// falls between the two unannounced.
    pub(crate) async fn start(pool: &PgPool) -> StoreResult<Self> {
        // A pool of its own, of one connection kept for good: the listener must not take
        // one of the store's connections, and sqlx reconnects through it.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_with((*pool.connect_options()).clone())
            .await
            .map_err(map_sqlx)?;
        let mut listener = PgListener::connect_with(&listen_pool)
            .await
            .map_err(map_sqlx)?;
        // Nothing closes that pool but the task's end.
        listener.ignore_pool_close_event(true);
        listener
            .listen_all([CHANNEL, QUEUED, LEASES])
            .await
            .map_err(map_sqlx)?;
        let tx = Arc::new(watch::Sender::new(last_seq(pool).await?));
        let queued = broadcast::Sender::new(QUEUED_CAPACITY);
        let leases = Arc::new(watch::Sender::new(0));
        let task = tokio::spawn(listen(
            listener,
            pool.clone(),
            Outlets {
                commits: Arc::clone(&tx),
                queued: queued.clone(),
                leases: Arc::clone(&leases),
            },
        ));
        Ok(Self {
            tx,
            queued,
            leases,
            listener: task.abort_handle(),
        })
    }

    pub(crate) fn subscribe_queued(&self) -> broadcast::Receiver<DeviceUid> {
        self.queued.subscribe()
    }

    /// Announces a new job of `device` to this process at once.
    pub(crate) fn queued(&self, device: &DeviceUid) {
        let _ = self.queued.send(device.clone());
    }

    pub(crate) fn subscribe_leases(&self) -> watch::Receiver<u64> {
        self.leases.subscribe()
    }

    /// Announces a lease release to this process at once.
    pub(crate) fn lease_released(&self) {
        self.leases.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.tx.subscribe()
    }

    /// Announces a committed seq (no-op when subscribers already have a newer one).
    pub(crate) fn publish(&self, seq: i64) {
        publish(&self.tx, seq);
    }

    /// Wakes every subscriber without a new seq.
    pub(crate) fn wake(&self) {
        self.tx.send_modify(|_| {});
    }

    pub(crate) fn stop(&self) {
        self.listener.abort();
    }
}

fn publish(tx: &watch::Sender<i64>, seq: i64) {
    tx.send_if_modified(|last| {
        let moved = seq > *last;
        if moved {
            *last = seq;
        }
        moved
    });
}

/// What a notification asks for.
#[derive(Debug, PartialEq, Eq)]
enum Notice {
    Seq(i64),
    Wake,
}

fn notice(payload: &str) -> Notice {
    payload.parse().map_or(Notice::Wake, Notice::Seq)
}

/// Where the listener publishes what it hears.
struct Outlets {
    commits: Arc<watch::Sender<i64>>,
    queued: broadcast::Sender<DeviceUid>,
    leases: Arc<watch::Sender<u64>>,
}

async fn listen(mut listener: PgListener, pool: PgPool, out: Outlets) {
    let mut retry = RETRY_FIRST;
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                retry = RETRY_FIRST;
                match n.channel() {
                    QUEUED => {
                        // A malformed payload is ignored: the lease rounds' poll covers it.
                        if let Ok(uid) = DeviceUid::parse(n.payload()) {
                            let _ = out.queued.send(uid);
                        }
                    }
                    LEASES => out.leases.send_modify(|c| *c = c.wrapping_add(1)),
                    _ => match notice(n.payload()) {
                        Notice::Seq(seq) => publish(&out.commits, seq),
                        Notice::Wake => out.commits.send_modify(|_| {}),
                    },
                }
            }
            // The connection was lost, and sqlx has already reconnected and listens again.
            Ok(None) => resync(&pool, &out).await,
            Err(e) => {
                tracing::warn!(error = %e, "listening for commits failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
                // `try_recv` reconnects silently on its next call, so reconnect here instead
                // and catch up with what was missed while the connection was down.
                if listener.listen_all([CHANNEL, QUEUED, LEASES]).await.is_ok() {
                    resync(&pool, &out).await;
                }
            }
        }
    }
}

/// Publishes the newest committed seq and wakes every subscriber even if it did not move:
/// a wake (a redelivery) may have been missed as well; so may a lease release (waiting
/// nodes look again). Missed new jobs are found by the runtime's slow poll.
async fn resync(pool: &PgPool, out: &Outlets) {
    out.leases.send_modify(|c| *c = c.wrapping_add(1));
    match last_seq(pool).await {
        Ok(seq) => out.commits.send_modify(|last| *last = (*last).max(seq)),
        Err(e) => tracing::warn!(error = %e, "reading the last event seq after a reconnect"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_seqs_or_wakes() {
        assert_eq!(notice("42"), Notice::Seq(42));
        assert_eq!(notice(WAKE), Notice::Wake);
        assert_eq!(notice(""), Notice::Wake);
    }

    #[test]
    fn publishing_never_moves_the_seq_back() {
        let tx = watch::Sender::new(5);
        let mut rx = tx.subscribe();
        publish(&tx, 3);
        assert!(!rx.has_changed().unwrap());
        publish(&tx, 9);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 9);
    }
}
