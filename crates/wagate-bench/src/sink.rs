//! A local webhook receiver: answers 200 at once and records what arrived (by
//! `webhook-id`, the event id, so redeliveries are counted but not double-counted).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Default)]
pub struct Seen {
    /// Every POST, redeliveries included.
    pub deliveries: u64,
    /// Distinct event ids.
    pub events: HashSet<String>,
    /// message.status: (messageId, status) → first arrival.
    pub statuses: HashMap<(String, String), Instant>,
    /// message.received: provider message ids.
    pub received: HashSet<String>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Seen>>);

impl Sink {
    pub fn lock(&self) -> MutexGuard<'_, Seen> {
        // Updates are single inserts; a poisoned lock still holds consistent data.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn hook(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = headers
        .get("webhook-id")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| v["eventId"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut s = sink.lock();
    s.deliveries += 1;
    s.first.get_or_insert(now);
    s.last = Some(now);
    s.events.insert(id);
    if let (Some(m), Some(st)) = (v["messageId"].as_str(), v["status"].as_str()) {
        s.statuses
            .entry((m.to_owned(), st.to_owned()))
            .or_insert(now);
    } else if let Some(p) = v["providerMessageId"].as_str() {
        s.received.insert(p.to_owned());
    }
    StatusCode::OK
}

/// Starts the receiver on the current runtime; returns its address.
pub async fn start(sink: Sink) -> anyhow::Result<SocketAddr> {
    let app = Router::new().route("/hook", post(hook)).with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
