//! The endpoint other nodes of a cluster call: `POST /internal/v1/session-call` runs a
//! call that needs a device's live session (QR code, pair code, number check, logout,
//! reconnect) on this node, which drives the device ([`crate::service::peer`]).
//!
//! It answers only calls signed with the cluster key (kept in the database, so only the
//! nodes sharing it have it) and sent within a minute; anyone else gets a 401 and learns
//! nothing. It is not part of either public API and not in the OpenAPI document; an
//! operator may keep `/internal/` off the public load balancer as well.

use super::error::ApiError;
use crate::service::Services;
use crate::service::peer::{
    HEADER_SENT_AT, HEADER_SIGNATURE, MAX_PEER_BODY, PeerRequest, SESSION_CALL_PATH,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

pub fn router() -> Router<Services> {
    Router::new()
        .route(SESSION_CALL_PATH, post(session_call))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn session_call(State(s): State<Services>, headers: HeaderMap, body: Bytes) -> Response {
    let sent_at = header(&headers, HEADER_SENT_AT).and_then(|v| v.parse::<i64>().ok());
    let signature = header(&headers, HEADER_SIGNATURE);
    let (Some(sent_at), Some(signature)) = (sent_at, signature) else {
        return ApiError::unauthorized().into_response();
    };
    if !s.peer.authentic(sent_at, &body, signature) {
        return ApiError::unauthorized().into_response();
    }
    let request: PeerRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::invalid("body", e.to_string()).into_response(),
    };
    let reply = s.peer.serve(request).await;
    (StatusCode::OK, axum::Json(reply)).into_response()
}
