//! The baseline: a minimal axum handler that parses the same JSON body and does only a
//! single-row SQLite insert (WAL, the same `synchronous` setting, one writer connection,
//! one transaction per request) before replying 202. It runs on its own two-worker
//! runtime, like the wagate server runs on its own process.

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::oneshot;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    device_uid: String,
    to: String,
    text: String,
}

async fn send(
    State(pool): State<SqlitePool>,
    Json(b): Json<SendBody>,
) -> (StatusCode, Json<Value>) {
    let id = format!("msg_{:032x}", rand::random::<u128>());
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
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(json!({"ok": true, "data": {"messageId": id, "status": "queued"}})),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"ok": false, "message": e.to_string(), "code": "internal"})),
        ),
    }
}

/// A running baseline server; dropping it stops it.
pub struct Baseline {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// Starts the baseline on a fresh database file in `dir`.
pub fn start(dir: &Path, full: bool) -> anyhow::Result<Baseline> {
    let path = dir.join("baseline.db");
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
                let opts = SqliteConnectOptions::new()
                    .filename(&path)
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
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS messages (id TEXT PRIMARY KEY, device_uid TEXT NOT NULL, \
                     recipient TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL)",
                )
                .execute(&pool)
                .await?;
                let app = Router::new()
                    .route("/send", post(send))
                    .with_state(pool);
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
