//! Where Meta calls: `GET|POST /webhooks/cloud-api/{deviceUid}`, the callback URL of a
//! Cloud API device's app. No API key (Meta cannot send one): the handshake is proven by
//! the device's verify token, each delivery by Meta's signature of its body.
//!
//! The answers are Meta's protocol: the handshake echoes `hub.challenge` as plain text; a
//! delivery gets 200 only once all of it is committed. A 401 (bad signature) or 400 (not
//! a delivery) is final; a 503 (the device runs nowhere now, or the commit failed) makes
//! Meta deliver it again later, as it does for up to seven days.

use super::error::ApiError;
use crate::service::cloud::{MAX_WEBHOOK_BODY, SIGNATURE_HEADER, VERIFY_TOKEN};
use crate::service::{ServiceError, Services};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub const PATH: &str = "/webhooks/cloud-api/{device_uid}";

pub fn router() -> Router<Services> {
    Router::new()
        .route(PATH, get(handshake).post(delivery))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
}

/// Meta's statuses for what the service said.
fn reply(e: ServiceError) -> Response {
    let api = match e {
        // The engine's reason names the header itself.
        ServiceError::Invalid(field, message) if field == SIGNATURE_HEADER => {
            ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
        }
        ServiceError::Invalid(field, message) if field == VERIFY_TOKEN => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{field}: {message}"),
        ),
        ServiceError::Invalid(field, message) => {
            let mut api = ApiError::invalid(field, message);
            api.status = StatusCode::BAD_REQUEST;
            api
        }
        ServiceError::NotFound(what) => ApiError::not_found(what),
        ServiceError::Conflict(m) => ApiError::conflict(m),
        // Not committed: Meta is to deliver again.
        other => {
            let mut api = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                other.to_string(),
            );
            api.retry_after_secs = Some(30);
            api
        }
    };
    if api.status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(message = %api.message, "a Cloud API webhook was refused for now");
    }
    api.into_response()
}

/// `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: the challenge echoed.
async fn handshake(
    State(s): State<Services>,
    Path(uid): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "hub.mode" => mode = Some(v.into_owned()),
            "hub.verify_token" => token = Some(v.into_owned()),
            "hub.challenge" => challenge = Some(v.into_owned()),
            _ => {}
        }
    }
    match s
        .cloud
        .handshake(
            &uid,
            mode.as_deref(),
            token.as_deref(),
            challenge.as_deref(),
        )
        .await
    {
        Ok(challenge) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response(),
        Err(e) => reply(e),
    }
}

/// `POST` with Meta's signed JSON: handed to the device's session, 200 once committed.
async fn delivery(
    State(s): State<Services>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match s.cloud.push(&uid, body, signature).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => reply(e),
    }
}
