//! The live event stream: `GET /v1/developer/events` as Server-Sent Events, so a dashboard
//! sees messages arrive and statuses move (delivered, read) as they are committed.
//!
//! The feed itself is `EventService::event_feed`; this edge parses the query and
//! `Last-Event-ID` and writes each event as its Msgera payload. Each SSE `id` is the
//! event's `seq`; reconnecting with `Last-Event-ID` replays what was missed, in order and
//! without gaps, from the last [`RESUME_WINDOW_HOURS`] hours; older events are skipped and
//! a `gap` event says so.

use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::query::ApiQuery;
use crate::service::Services;
use crate::service::events::{FeedItem, FeedRequest, RESUME_WINDOW_HOURS};
use crate::webhook::payload::{self, MediaLinker};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;
use wagate_core::event::EventType;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this device's events.
    pub device_uid: Option<String>,
    /// Comma-separated: message.received, message.status, device.status, message.reaction,
    /// message.edited, message.deleted (default all).
    pub types: Option<String>,
}

fn to_sse(item: FeedItem, links: &MediaLinker) -> SseEvent {
    match item {
        FeedItem::Event(e) => {
            let data = payload::msgera(&e, links)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_else(|| "{}".into());
            SseEvent::default()
                .id(e.seq.to_string())
                .event(e.data.event_type().as_str())
                .data(data)
        }
        FeedItem::Gap { from_seq } => SseEvent::default().event("gap").data(format!(
            "{{\"skippedFromSeq\":{from_seq},\"reason\":\"older than the {RESUME_WINDOW_HOURS}-hour resume window\"}}"
        )),
    }
}

/// Streams the account's events live (Server-Sent Events). `id` is the event's sequence
/// number: reconnect with `Last-Event-ID` to resume without gaps (within 24 hours). Each
/// `data` is the event's Msgera webhook payload; `event` is its type.
#[utoipa::path(get, path = "/v1/developer/events", tag = "webhooks", security(("apiKey" = [])), params(EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, description = "text/event-stream of every event type (message.received, message.status, device.status, message.reaction, message.edited, message.deleted)", content_type = "text/event-stream"),
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
    let mut types = Vec::new();
    for name in q.types.iter().flat_map(|t| t.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        types.push(EventType::parse(name).ok_or_else(|| {
            ApiError::invalid("types", format!("must list {}", EventType::names()))
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
    let feed = s
        .events
        .event_feed(
            &account,
            FeedRequest {
                device,
                types,
                resume_after: resume,
            },
        )
        .await?;
    let links = s
        .media
        .linker(s.media.link_base(super::messages::host(&headers)));
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(feed.map(move |item| Ok(to_sse(item, &links))));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
