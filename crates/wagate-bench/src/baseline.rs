//! The baselines wagate's accept path is measured against, each an axum server in the
//! bench process on its own two-worker runtime (like the wagate server's own process),
//! taking the same JSON body from the same client:
//!
//! - **HTTP ceiling** ([`Kind::HttpCeiling`]): parse the body, reply 202; nothing stored.
//!   What the machine's HTTP stack allows at all.
//! - **durable ceiling** ([`Kind::GroupCommit`]): one writer task commits every row waiting
//!   (a message and its send job) in one transaction — two multi-row `INSERT`s — under WAL
//!   and the same `synchronous`, then replies to each. What the machine can durably accept.
//! - **one row per transaction** ([`Kind::RowPerTx`]): a single-row `INSERT` per request, one
//!   writer connection; the slowest way to use SQLite, kept for comparison with earlier
//!   figures.

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HttpCeiling,
    GroupCommit,
    RowPerTx,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::HttpCeiling, Kind::GroupCommit, Kind::RowPerTx];

    pub fn key(self) -> &'static str {
        match self {
            Kind::HttpCeiling => "http_ceiling",
            Kind::GroupCommit => "durable_ceiling",
            Kind::RowPerTx => "row_per_tx",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::HttpCeiling => "HTTP ceiling (axum parsing the body, nothing stored)",
            Kind::GroupCommit => {
                "durable ceiling (axum + one writer committing every waiting message and job in one transaction, same durability)"
            }
            Kind::RowPerTx => {
                "one row per transaction (axum + a single-row SQLite insert per request, same durability)"
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    device_uid: String,
    to: String,
    text: String,
}

/// The reply every baseline gives, shaped like wagate's.
fn accepted(id: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({"ok": true, "data": {"messageId": id, "status": "queued"}})),
    )
}

fn failed(e: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"ok": false, "message": e.to_string(), "code": "internal"})),
    )
}

fn new_id() -> String {
    format!("msg_{:032x}", rand::random::<u128>())
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn parse_only(Json(b): Json<SendBody>) -> (StatusCode, Json<Value>) {
    // The fields are read, as a handler that stored them would.
    let _ = (b.device_uid.len(), b.to.len(), b.text.len());
    accepted(new_id())
}

async fn row_per_tx(
    State(pool): State<SqlitePool>,
    Json(b): Json<SendBody>,
) -> (StatusCode, Json<Value>) {
    let id = new_id();
    let r = sqlx::query(
        "INSERT INTO messages (id, device_uid, recipient, text, status, created_at) \
         VALUES (?, ?, ?, ?, 'queued', unixepoch('subsec'))",
    )
    .bind(&id)
    .bind(&b.device_uid)
    .bind(&b.to)
    .bind(&b.text)
    .execute(&pool)
    .await;
    match r {
        Ok(_) => accepted(id),
        Err(e) => failed(e),
    }
}

/// A message waiting for the group commit, and who waits for it.
struct Waiting {
    id: String,
    body: SendBody,
    done: oneshot::Sender<Result<(), String>>,
}

/// Most rows in one commit (SQLite's bound-variable limit allows far more).
const MAX_BATCH: usize = 1_000;

async fn group_commit(
    State(queue): State<mpsc::Sender<Waiting>>,
    Json(body): Json<SendBody>,
) -> (StatusCode, Json<Value>) {
    let id = new_id();
    let (done, committed) = oneshot::channel();
    let waiting = Waiting {
        id: id.clone(),
        body,
        done,
    };
    if queue.send(waiting).await.is_err() {
        return failed("the writer stopped");
    }
    match committed.await {
        Ok(Ok(())) => accepted(id),
        Ok(Err(e)) => failed(e),
        Err(_) => failed("the writer stopped"),
    }
}

/// The writer: takes whatever is waiting, commits it in one transaction, answers all.
async fn writer(pool: SqlitePool, mut queue: mpsc::Receiver<Waiting>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = commit(&pool, &batch).await.map_err(|e| e.to_string());
        for w in batch.drain(..) {
            let _ = w.done.send(result.clone());
        }
    }
}

async fn commit(pool: &SqlitePool, batch: &[Waiting]) -> Result<(), sqlx::Error> {
    let at = now_secs();
    let mut tx = pool.begin().await?;
    let mut messages: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (id, device_uid, recipient, text, status, created_at) ",
    );
    messages.push_values(batch, |mut row, w| {
        row.push_bind(&w.id)
            .push_bind(&w.body.device_uid)
            .push_bind(&w.body.to)
            .push_bind(&w.body.text)
            .push_bind("queued")
            .push_bind(at);
    });
    messages.build().execute(&mut *tx).await?;
    let mut jobs: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT INTO send_jobs (message_id, device_uid, run_at) ");
    jobs.push_values(batch, |mut row, w| {
        row.push_bind(&w.id)
            .push_bind(&w.body.device_uid)
            .push_bind(at);
    });
    jobs.build().execute(&mut *tx).await?;
    tx.commit().await
}

/// A running baseline server; dropping it stops it.
pub struct Baseline {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Starts a baseline of `kind` on a fresh database file in `dir`.
pub fn start(dir: &Path, full: bool, kind: Kind) -> anyhow::Result<Baseline> {
    let path = dir.join(format!("{}.db", kind.key()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        rt.block_on(async move {
            let serve = async {
                let app = match kind {
                    Kind::HttpCeiling => Router::new().route("/send", post(parse_only)),
                    Kind::RowPerTx => Router::new()
                        .route("/send", post(row_per_tx))
                        .with_state(open(&path, full).await?),
                    Kind::GroupCommit => {
                        let pool = open(&path, full).await?;
                        let (queue, waiting) = mpsc::channel(4 * MAX_BATCH);
                        tokio::spawn(writer(pool, waiting));
                        Router::new()
                            .route("/send", post(group_commit))
                            .with_state(queue)
                    }
                };
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                anyhow::Ok((app, listener, addr))
            };
            match serve.await {
                Ok((app, listener, addr)) => {
                    let _ = ready_tx.send(Ok(addr));
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    });
    let addr = ready_rx.recv().context("baseline thread died")??;
    Ok(Baseline {
        addr,
        _stop: stop_tx,
    })
}

/// One writer connection to a fresh database with the two tables, WAL, the durability
/// asked for.
async fn open(path: &Path, full: bool) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        });
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?;
    for ddl in [
        "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, device_uid TEXT NOT NULL, \
         recipient TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL)",
        "CREATE TABLE IF NOT EXISTS send_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, \
         message_id TEXT NOT NULL, device_uid TEXT NOT NULL, run_at REAL NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    Ok(pool)
}
