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
//! disk sustain thousands of durable accepts per second. A failing unit rolls back alone
//! (units and chunks run in savepoints of their own), and every caller
//! hears back only once the commit that holds its work is durable.
//!
//! After each commit the writer announces the last committed event seq on a watch channel
//! ([`wagate_core::store::EventStore::subscribe_commits`]): it is read in the commit's own
//! round trip, and sent only once the commit succeeded, so a woken reader finds the
//! events. Every write path goes through here, so none can forget to wake the readers.
//!
//! The loop runs on a thread of its own so that its many short waits on sqlx's connection
//! thread never queue behind HTTP work on the application's runtime.

use crate::accept::{AcceptRequest, accept_chunk, chunk_sizes};
use crate::advance::{AdvanceRequest, advance_chunk};
use crate::error::map_sqlx;
use sqlx::{Connection, SqliteConnection};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use wagate_core::message::Message;
use wagate_core::store::{AcceptOutcome, StoreError, StoreResult};

/// The last event seq committed or about to be (AUTOINCREMENT's high-water mark, which
/// stays put when old events are pruned).
macro_rules! last_seq_sql {
    () => {
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events')"
    };
}
pub(crate) use last_seq_sql;

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

/// A request kept as data rather than a closure, so that consecutive ones of a kind run
/// together as one chunk ([`crate::accept`], [`crate::advance`]).
struct Queued<K: ChunkKind> {
    request: K::Request,
    reply: oneshot::Sender<StoreResult<K::Outcome>>,
}

/// A kind of request the writer runs in chunks.
trait ChunkKind {
    type Request: Send + Sync;
    type Outcome: Send;
    /// Runs a chunk. An `Err` means it failed as a whole and left nothing behind (or the
    /// transaction is gone, which the caller probes); inner results are per request.
    async fn run(
        conn: &mut SqliteConnection,
        requests: &[&Self::Request],
    ) -> StoreResult<Vec<StoreResult<Self::Outcome>>>;
}

/// Accepting outbound messages ([`crate::accept`]).
struct Accepting;

impl ChunkKind for Accepting {
    type Request = AcceptRequest;
    type Outcome = AcceptOutcome;
    async fn run(
        conn: &mut SqliteConnection,
        requests: &[&AcceptRequest],
    ) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
        accept_chunk(conn, requests).await
    }
}

/// Status steps ([`crate::advance`]).
struct Advancing;

impl ChunkKind for Advancing {
    type Request = AdvanceRequest;
    type Outcome = Option<Message>;
    async fn run(
        conn: &mut SqliteConnection,
        requests: &[&AdvanceRequest],
    ) -> StoreResult<Vec<StoreResult<Option<Message>>>> {
        advance_chunk(conn, requests).await
    }
}

type Accept = Queued<Accepting>;
type Advance = Queued<Advancing>;

enum Item {
    Unit(Unit),
    Accept(Box<Accept>),
    Advance(Box<Advance>),
}

impl Item {
    fn refuse(self, error: StoreError) {
        match self {
            Item::Unit(unit) => unit.refuse(error),
            Item::Accept(a) => {
                let _ = a.reply.send(Err(error));
            }
            Item::Advance(a) => {
                let _ = a.reply.send(Err(error));
            }
        }
    }
}

/// Most status steps in one chunk.
const MAX_ADVANCE_CHUNK: usize = 256;

/// What runs between two savepoint moves: a unit, a chunk of accepts or one of steps.
enum Step {
    Unit(Unit),
    Accepts(Vec<Accept>),
    Advances(Vec<Advance>),
}

type Deliver = Box<dyn FnOnce(StoreResult<()>) + Send>;

enum Command {
    Write(Item),
    Close(oneshot::Sender<()>),
}

/// The handle every store method writes through; cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Command>,
    /// The last committed event seq, announced after each commit.
    commits: Arc<watch::Sender<i64>>,
}

impl Writer {
    /// Starts the writer task on `conn`, batching at most `max_batch` units per commit.
    ///
    /// The task runs on a thread of its own, on a single-threaded runtime: every statement
    /// is a round trip to sqlx's connection thread, and on a shared runtime each of those
    /// would wait behind whatever HTTP work is queued, stretching every transaction.
    ///
    /// `last_seq` is the last event seq already committed when the writer starts.
    pub(crate) fn spawn(
        conn: SqliteConnection,
        max_batch: usize,
        last_seq: i64,
    ) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(4096);
        let commits = Arc::new(watch::Sender::new(last_seq));
        let announce = Arc::clone(&commits);
        // No I/O or timer driver: the task only waits on channels, and parking on a
        // condition variable is cheaper than on epoll.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("starting the writer runtime: {e}")))?;
        std::thread::Builder::new()
            .name("wagate-sqlite-writer".into())
            .spawn(move || runtime.block_on(run(conn, rx, max_batch.max(1), announce)))
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Self { tx, commits })
    }

    /// A receiver of the last committed event seq; it has seen the current value.
    pub(crate) fn subscribe_commits(&self) -> watch::Receiver<i64> {
        self.commits.subscribe()
    }

    /// Wakes every subscriber without a new event: for commits that make work due for
    /// them without writing an event (a webhook redelivery).
    pub(crate) fn announce_commit(&self) {
        self.commits.send_modify(|_| {});
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
            .send(Command::Write(Item::Unit(unit)))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Accepts an outbound message, sharing a round trip with the accepts queued with it.
    pub(crate) async fn accept(&self, request: AcceptRequest) -> StoreResult<AcceptOutcome> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Write(Item::Accept(Box::new(Accept {
                request,
                reply,
            }))))
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Moves a message's status, sharing round trips with the steps queued with it.
    pub(crate) async fn advance(&self, request: AdvanceRequest) -> StoreResult<Option<Message>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Write(Item::Advance(Box::new(Advance {
                request,
                reply,
            }))))
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

async fn run(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Command>,
    max_batch: usize,
    commits: Arc<watch::Sender<i64>>,
) {
    let mut batch: Vec<Item> = Vec::with_capacity(max_batch);
    let mut close: Option<oneshot::Sender<()>> = None;
    while close.is_none() {
        let Some(first) = rx.recv().await else { break };
        match first {
            Command::Write(item) => batch.push(item),
            Command::Close(done) => close = Some(done),
        }
        // Take whatever else is already waiting: those share this commit's fsync.
        while close.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Command::Write(item)) => batch.push(item),
                Ok(Command::Close(done)) => close = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&mut conn, &mut batch, &commits).await;
        }
    }
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            Command::Write(item) => item.refuse(closed()),
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

/// Groups consecutive accepts, and consecutive steps, into chunks.
fn steps(batch: &mut Vec<Item>) -> VecDeque<Step> {
    let mut steps = VecDeque::with_capacity(batch.len());
    let mut accepts: Vec<Accept> = Vec::new();
    let flush = |accepts: &mut Vec<Accept>, steps: &mut VecDeque<Step>| {
        let mut rest = std::mem::take(accepts).into_iter();
        for size in chunk_sizes(rest.len()) {
            steps.push_back(Step::Accepts(rest.by_ref().take(size).collect()));
        }
    };
    let mut advances: Vec<Advance> = Vec::new();
    let flush_advances = |advances: &mut Vec<Advance>, steps: &mut VecDeque<Step>| {
        if !advances.is_empty() {
            steps.push_back(Step::Advances(std::mem::take(advances)));
        }
    };
    for item in batch.drain(..) {
        match item {
            Item::Accept(a) => {
                flush_advances(&mut advances, &mut steps);
                accepts.push(*a);
            }
            Item::Advance(a) => {
                flush(&mut accepts, &mut steps);
                advances.push(*a);
                if advances.len() == MAX_ADVANCE_CHUNK {
                    flush_advances(&mut advances, &mut steps);
                }
            }
            Item::Unit(unit) => {
                flush(&mut accepts, &mut steps);
                flush_advances(&mut advances, &mut steps);
                steps.push_back(Step::Unit(unit));
            }
        }
    }
    flush(&mut accepts, &mut steps);
    flush_advances(&mut advances, &mut steps);
    steps
}

/// Runs one batch in one transaction.
///
/// Each unit runs in a savepoint so that its failure undoes it alone; chunks of accepts
/// and of steps take their own savepoint around their writes. Savepoint moves are sent together with the statements around them
/// (`RELEASE unit; SAVEPOINT unit`), because each round trip to sqlx's connection thread
/// costs more than the statements themselves. The outer `batch` savepoint is a probe:
/// after a failure, releasing and retaking it fails when SQLite has already rolled back
/// the whole transaction (I/O error, disk full), and then nothing of the batch survives.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &mut Vec<Item>,
    commits: &watch::Sender<i64>,
) {
    let mut steps = steps(batch);
    let begin = match steps.front() {
        Some(Step::Unit(_)) => "BEGIN IMMEDIATE; SAVEPOINT batch; SAVEPOINT unit",
        _ => "BEGIN IMMEDIATE; SAVEPOINT batch",
    };
    if let Err(e) = exec(conn, begin).await {
        tracing::warn!(error = %e, "could not begin a write transaction");
        let _ = exec(conn, "ROLLBACK").await;
        refuse_all(steps, &e);
        return;
    }
    let mut delivered: Vec<Deliver> = Vec::with_capacity(batch.capacity());
    // `None`: no unit savepoint open; `Some(failed)`: one is, around a unit that failed
    // or not.
    let mut unit_savepoint: Option<bool> = None;
    let mut first = true;
    while let Some(step) = steps.pop_front() {
        let next = match (&step, first, unit_savepoint) {
            (Step::Unit(_), true, _) => None,
            (Step::Unit(_), false, None) => Some("SAVEPOINT unit"),
            (Step::Unit(_), false, Some(false)) => Some("RELEASE unit; SAVEPOINT unit"),
            (Step::Unit(_), false, Some(true)) => {
                Some("ROLLBACK TO unit; RELEASE unit; SAVEPOINT unit")
            }
            (Step::Accepts(_) | Step::Advances(_), _, Some(true)) => {
                Some("ROLLBACK TO unit; RELEASE unit")
            }
            (Step::Accepts(_) | Step::Advances(_), _, _) => None,
        };
        first = false;
        if let Some(next) = next
            && let Err(e) = exec(conn, next).await
        {
            // Failing here means SQLite already rolled back the whole transaction.
            steps.push_front(step);
            refuse_all(steps, &e);
            finish(conn, delivered, Err(e)).await;
            return;
        }
        match step {
            Step::Unit(unit) => {
                let ran = unit.run(conn).await;
                unit_savepoint = Some(ran.failed);
                delivered.push(ran.deliver);
            }
            Step::Advances(chunk) => {
                if unit_savepoint == Some(true) {
                    unit_savepoint = None;
                }
                match run_chunk(conn, chunk, &mut delivered).await {
                    Ok(singles) => {
                        for a in singles.into_iter().rev() {
                            steps.push_front(Step::Advances(vec![a]));
                        }
                    }
                    Err(gone) => {
                        refuse_all(steps, &gone);
                        finish(conn, delivered, Err(gone)).await;
                        return;
                    }
                }
            }
            Step::Accepts(chunk) => {
                if unit_savepoint == Some(true) {
                    unit_savepoint = None;
                }
                match run_chunk(conn, chunk, &mut delivered).await {
                    Ok(singles) => {
                        for a in singles.into_iter().rev() {
                            steps.push_front(Step::Accepts(vec![a]));
                        }
                    }
                    Err(gone) => {
                        refuse_all(steps, &gone);
                        finish(conn, delivered, Err(gone)).await;
                        return;
                    }
                }
            }
        }
    }
    // The events' high-water mark is read after the last rollback and before the commit,
    // in the commit's round trip: nothing else writes on this connection in between.
    let end = match unit_savepoint {
        Some(true) => concat!("ROLLBACK TO unit; ", last_seq_sql!(), "; COMMIT"),
        _ => concat!(last_seq_sql!(), "; COMMIT"),
    };
    let committed = sqlx::query_scalar::<_, Option<i64>>(end)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_sqlx);
    let outcome = committed.map(|seqs| {
        // Only events move it; a commit without events wakes nobody.
        if let Some(seq) = seqs.into_iter().flatten().last() {
            commits.send_if_modified(|last| {
                let moved = seq > *last;
                if moved {
                    *last = seq;
                }
                moved
            });
        }
    });
    finish(conn, delivered, outcome).await;
}

/// Runs a chunk, queueing each request's reply for the commit. When the chunk fails and
/// had more than one request, returns them to be run one by one, so that only the
/// failing one fails; `Err` when the transaction itself is gone (every request of the
/// chunk has been told).
async fn run_chunk<K: ChunkKind>(
    conn: &mut SqliteConnection,
    chunk: Vec<Queued<K>>,
    delivered: &mut Vec<Deliver>,
) -> Result<Vec<Queued<K>>, StoreError>
where
    K::Outcome: 'static,
    K::Request: 'static,
{
    let requests: Vec<&K::Request> = chunk.iter().map(|q| &q.request).collect();
    let error = match K::run(conn, &requests).await {
        Ok(outcomes) => {
            for (q, outcome) in chunk.into_iter().zip(outcomes) {
                delivered.push(Box::new(move |committed: StoreResult<()>| {
                    let _ = q.reply.send(committed.and(outcome));
                }));
            }
            return Ok(Vec::new());
        }
        Err(e) => e,
    };
    // The chunk undid itself; probe whether the transaction survived.
    if let Err(gone) = exec(conn, "RELEASE batch; SAVEPOINT batch").await {
        for q in chunk {
            let _ = q.reply.send(Err(gone.clone()));
        }
        return Err(gone);
    }
    if chunk.len() == 1 {
        for q in chunk {
            let _ = q.reply.send(Err(error.clone()));
        }
        return Ok(Vec::new());
    }
    Ok(chunk)
}

/// Tells every caller of the batch how it ended.
async fn finish(conn: &mut SqliteConnection, delivered: Vec<Deliver>, outcome: StoreResult<()>) {
    if outcome.is_err() {
        // Harmless when SQLite already ended the transaction; needed when it did not.
        let _ = exec(conn, "ROLLBACK").await;
    }
    for deliver in delivered {
        deliver(outcome.clone());
    }
}

fn refuse_all(steps: VecDeque<Step>, error: &StoreError) {
    for step in steps {
        match step {
            Step::Unit(unit) => unit.refuse(error.clone()),
            Step::Accepts(chunk) => {
                for a in chunk {
                    let _ = a.reply.send(Err(error.clone()));
                }
            }
            Step::Advances(chunk) => {
                for a in chunk {
                    let _ = a.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
