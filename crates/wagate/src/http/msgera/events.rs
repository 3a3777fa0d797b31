//! The live event stream: `GET /v1/developer/events` as Server-Sent Events, so a dashboard
//! sees messages arrive and statuses move (delivered, read) as they are committed.
//!
//! Every event is read from the events table (the same source as webhooks), so the stream
//! and webhooks agree. Each SSE `id` is the event's `seq`; reconnecting with
//! `Last-Event-ID` replays what was missed, in order and without gaps, from the last
//! [`RESUME_WINDOW_HOURS`] hours; older events are skipped and a `gap` event says so.

use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::media_link::MediaLinkKey;
use crate::http::query::ApiQuery;
use crate::service::Services;
use crate::webhook::payload::{self, MediaLinker};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use utoipa::IntoParams;
use wagate_core::event::{Event, EventType};
use wagate_core::store::Store;
use wagate_core::{AccountId, DeviceUid, time};

/// How far back `Last-Event-ID` can resume.
pub const RESUME_WINDOW_HOURS: i64 = 24;
/// Events read per query.
const PAGE: u32 = 200;
/// Longest wait without looking (events committed without a wake-up).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this device's events.
    pub device_uid: Option<String>,
    /// Comma-separated: message.received, message.status, device.status (default all).
    pub types: Option<String>,
}

struct StreamState {
    store: Arc<dyn Store>,
    account: AccountId,
    device: Option<DeviceUid>,
    types: Vec<EventType>,
    after: i64,
    /// Events older than this are not replayed (the resume window).
    oldest: Option<wagate_core::time::Timestamp>,
    gap_from: Option<i64>,
    queue: VecDeque<Event>,
    wake: watch::Receiver<u64>,
    links: MediaLinker,
}

fn to_sse(e: &Event, links: &MediaLinker) -> SseEvent {
    let data = payload::msgera(e, links)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| "{}".into());
    SseEvent::default()
        .id(e.seq.to_string())
        .event(e.data.event_type().as_str())
        .data(data)
}

async fn next(mut st: StreamState) -> Option<(Result<SseEvent, Infallible>, StreamState)> {
    loop {
        if let Some(e) = st.queue.pop_front() {
            return Some((Ok(to_sse(&e, &st.links)), st));
        }
        match st
            .store
            .list_events(st.after, PAGE, Some(&st.account), &st.types)
            .await
        {
            Ok(events) if !events.is_empty() => {
                for e in events {
                    st.after = e.seq;
                    if st.oldest.is_some_and(|o| e.created_at < o) {
                        st.gap_from.get_or_insert(e.seq);
                        continue;
                    }
                    if st.device.as_ref().is_some_and(|d| *d != e.device_uid) {
                        continue;
                    }
                    st.queue.push_back(e);
                }
                if let Some(from) = st.gap_from.take() {
                    let gap = SseEvent::default().event("gap").data(format!(
                        "{{\"skippedFromSeq\":{from},\"reason\":\"older than the {RESUME_WINDOW_HOURS}-hour resume window\"}}"
                    ));
                    return Some((Ok(gap), st));
                }
                continue;
            }
            Ok(_) => {
                // Caught up: the window only applies to the replay.
                st.oldest = None;
            }
            Err(e) => tracing::warn!(error = %e, "event stream could not read events"),
        }
        let _ = tokio::time::timeout(POLL, st.wake.changed()).await;
    }
}

/// Streams the account's events live (Server-Sent Events). `id` is the event's sequence
/// number: reconnect with `Last-Event-ID` to resume without gaps (within 24 hours). Each
/// `data` is the event's Msgera webhook payload; `event` is its type.
#[utoipa::path(get, path = "/v1/developer/events", tag = "webhooks", security(("apiKey" = [])), params(EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of message.received, message.status and device.status", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn stream_events(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let device = q
        .device_uid
        .as_deref()
        .map(|d| parse_device_uid(d, "deviceUid"))
        .transpose()?;
    if let Some(d) = &device {
        s.get_device(&account, d).await?;
    }
    let mut types = Vec::new();
    for name in q.types.iter().flat_map(|t| t.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        types.push(EventType::parse(name).ok_or_else(|| {
            ApiError::invalid(
                "types",
                "must list message.received, message.status or device.status",
            )
        })?);
    }
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be an event id (seq)"))?,
        ),
    };
    let (after, oldest) = match resume {
        Some(seq) => (
            seq,
            Some(time::now() - chrono::Duration::hours(RESUME_WINDOW_HOURS)),
        ),
        None => (s.store.last_event_seq().await?, None),
    };
    let key = MediaLinkKey::load_or_create(&s.config.data_dir).map_err(ApiError::internal)?;
    let base = s.config.media_base_url(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| format!("http://{h}"))
            .unwrap_or_else(|| s.config.public_url())
    });
    let state = StreamState {
        store: s.store.clone(),
        account,
        device,
        types,
        after,
        oldest,
        gap_from: None,
        queue: VecDeque::new(),
        wake: s.runtime.subscribe_events(),
        links: MediaLinker {
            base_url: base,
            key,
            ttl_secs: i64::try_from(s.config.webhooks.media_link_ttl_secs).unwrap_or(i64::MAX),
        },
    };
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(stream::unfold(state, next));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
