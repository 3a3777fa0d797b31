//! The single writer: one task owns the only read-write connection and runs every unit of
//! work on it, committing several at once when they queue up (group commit).
//!
//! SQLite allows one writer at a time. Funnelling writes through one connection means a
//! write never waits on a lock held by another connection of this process, and `BEGIN
//! IMMEDIATE` takes the write lock up front so a transaction never fails half-way on a
//! read-to-write upgrade. Because the task owns the connection, a caller that gives up
//! (an HTTP client disconnecting) cannot leave a transaction half-run on a pooled
//! connection. Batching matters with `synchronous=FULL`: each commit costs an fsync, and
//! sharing one between every unit of work waiting at that moment is what lets a single
//! disk sustain thousands of durable accepts per second. Each unit runs inside its own
//! savepoint, so one failing unit rolls back alone, and every caller hears back only
//! once the commit that holds its work is durable.

use crate::error::map_sqlx;
use sqlx::{Connection, SqliteConnection};
use std::future::Future;
use std::pin::Pin;
use tokio::sync::{mpsc, oneshot};
use wagate_core::store::{StoreError, StoreResult};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a unit of work left for after the commit: whether it failed (and must be rolled
/// back to its savepoint), and how to deliver its result once the batch's fate is known.
struct Ran {
    failed: bool,
    /// Called with `Ok` once the batch committed, or with the error that lost it.
    deliver: Box<dyn FnOnce(StoreResult<()>) + Send>,
}

/// A queued unit of work with its caller's reply channel.
trait Job: Send {
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Ran>;
    /// Tells the caller why its work was not even attempted.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Work<F, R> {
    f: F,
    reply: oneshot::Sender<StoreResult<R>>,
}

impl<F, R> Job for Work<F, R>
where
    R: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<R>> + Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Ran> {
        let Work { f, reply } = *self;
        Box::pin(async move {
            let result = f(conn).await;
            Ran {
                failed: result.is_err(),
                deliver: Box::new(move |committed| {
                    // The caller may have given up waiting; its work stands anyway.
                    let _ = reply.send(committed.and(result));
                }),
            }
        })
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

type Unit = Box<dyn Job>;

enum Command {
    Write(Unit),
    Close(oneshot::Sender<()>),
}

/// The handle every store method writes through; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Command>,
}

impl Writer {
    /// Starts the writer task on `conn`, batching at most `max_batch` units per commit.
    ///
    /// The task runs on a thread of its own, on a single-threaded runtime: every statement
    /// is a round trip to sqlx's connection thread, and on a shared runtime each of those
    /// would wait behind whatever HTTP work is queued, stretching every transaction.
    pub(crate) fn spawn(conn: SqliteConnection, max_batch: usize) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(4096);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("starting the writer runtime: {e}")))?;
        std::thread::Builder::new()
            .name("wagate-sqlite-writer".into())
            .spawn(move || runtime.block_on(run(conn, rx, max_batch.max(1))))
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` in a write transaction and returns its result once that transaction is
    /// durably committed. An `Err` from `f` rolls back everything `f` did and nothing else.
    pub(crate) async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<R>>
            + Send
            + 'static,
    {
        let (reply, rx) = oneshot::channel::<StoreResult<R>>();
        let unit: Unit = Box::new(Work { f, reply });
        self.tx
            .send(Command::Write(unit))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Finishes the queued work and closes the connection; later writes are `Unavailable`.
    pub(crate) async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Command>, max_batch: usize) {
    let mut batch: Vec<Unit> = Vec::with_capacity(max_batch);
    let mut close: Option<oneshot::Sender<()>> = None;
    while close.is_none() {
        let Some(first) = rx.recv().await else { break };
        match first {
            Command::Write(unit) => batch.push(unit),
            Command::Close(done) => close = Some(done),
        }
        // Take whatever else is already waiting: those share this commit's fsync.
        while close.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Command::Write(unit)) => batch.push(unit),
                Ok(Command::Close(done)) => close = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&mut conn, &mut batch).await;
        }
    }
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Command::Write(unit) => unit.refuse(closed()),
            Command::Close(done) => {
                let _ = done.send(());
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the SQLite writer connection failed");
    }
    if let Some(done) = close {
        let _ = done.send(());
    }
}

/// Runs fixed statements (several, separated by `;`, are sent as one round trip).
async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(map_sqlx)
}

/// Runs one batch in one transaction. Statements that move between units are sent to
/// SQLite together (`RELEASE unit; SAVEPOINT unit`), because each round trip to sqlx's
/// connection thread costs more than the statements themselves: a unit of work costs its
/// own round trips plus one.
async fn run_batch(conn: &mut SqliteConnection, batch: &mut Vec<Unit>) {
    // A single unit needs no savepoint: its failure rolls back the whole transaction.
    let single = batch.len() == 1;
    let begin = if single {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN IMMEDIATE; SAVEPOINT unit"
    };
    if let Err(e) = exec(conn, begin).await {
        tracing::warn!(error = %e, "could not begin a write transaction");
        let _ = exec(conn, "ROLLBACK").await;
        for unit in batch.drain(..) {
            unit.refuse(e.clone());
        }
        return;
    }
    let mut delivered: Vec<Box<dyn FnOnce(StoreResult<()>) + Send>> =
        Vec::with_capacity(batch.len());
    let mut abort: Option<StoreError> = None;
    let mut last_failed = false;
    for (i, unit) in batch.drain(..).enumerate() {
        if let Some(e) = &abort {
            unit.refuse(e.clone());
            continue;
        }
        if i > 0 {
            let next = if last_failed {
                "ROLLBACK TO unit; RELEASE unit; SAVEPOINT unit"
            } else {
                "RELEASE unit; SAVEPOINT unit"
            };
            // Failing here means SQLite already rolled back the whole transaction (I/O
            // error, disk full): nothing of this batch survives.
            if let Err(e) = exec(conn, next).await {
                abort = Some(e.clone());
                unit.refuse(e);
                continue;
            }
        }
        let ran = unit.run(conn).await;
        last_failed = ran.failed;
        delivered.push(ran.deliver);
    }
    let end = match (single, last_failed) {
        (true, true) => "ROLLBACK",
        (true, false) => "COMMIT",
        (false, true) => "ROLLBACK TO unit; RELEASE unit; COMMIT",
        (false, false) => "RELEASE unit; COMMIT",
    };
    let outcome = match abort {
        Some(e) => Err(e),
        None => exec(conn, end).await,
    };
    if outcome.is_err() {
        // Harmless when SQLite already ended the transaction; needed when it did not.
        let _ = exec(conn, "ROLLBACK").await;
    }
    for deliver in delivered {
        deliver(outcome.clone());
    }
}
