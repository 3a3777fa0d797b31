//! The HTTP edge: one router, several dialects. Dialects only parse, authenticate and
//! shape replies; every decision is in the service layer.

pub mod auth;
pub mod cloud_webhook;
pub mod dashboard;
pub mod error;
pub mod hardening;
pub mod internal;
pub mod json;
pub mod media_link;
pub mod megamsg;
pub mod metrics;
pub mod msgera;
pub mod ops;
pub mod query;
pub mod server;

use crate::service::{ServiceError, Services};
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use error::ApiError;
use serde::Serialize;
use tower_http::trace::TraceLayer;
use wagate_core::media::MAX_MEDIA_BYTES;

/// Room for multipart framing around a 16 MB file; larger bodies get a 413.
pub const MAX_BODY_BYTES: usize = MAX_MEDIA_BYTES + 64 * 1024;

pub fn router(services: Services) -> Router {
    let app = Router::new()
        .merge(ops::router())
        .merge(dashboard::router())
        .merge(msgera::router())
        .merge(megamsg::router())
        .merge(media_link::router())
        .merge(internal::router())
        .merge(cloud_webhook::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http().on_failure(error::log_failure()))
        .with_state(services);
    // Security headers and the JSON envelope on every reply, whoever made it.
    hardening::apply(app)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
}

/// `{"ok": true, "data": …}` with a status.
pub fn ok<T: Serialize>(status: StatusCode, data: T) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        ok: bool,
        data: T,
    }
    (status, Json(Envelope { ok: true, data })).into_response()
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Invalid(field, message) => ApiError::invalid(field, message),
            ServiceError::Conflict(m) => ApiError::conflict(m),
            e @ ServiceError::IdempotencyKeyReused { .. } => {
                let mut api = ApiError::invalid(
                    "clientMessageId",
                    e.to_string()
                        .trim_start_matches("clientMessageId: ")
                        .to_owned(),
                );
                api.code = "idempotency_key_reused";
                api
            }
            ServiceError::RateLimited {
                message,
                retry_after_secs,
            } => ApiError::rate_limited(message, retry_after_secs),
            ServiceError::Engine(m) => ApiError::bad_gateway(m),
            ServiceError::Store(e) => e.into(),
            ServiceError::Internal(m) => ApiError::internal(m),
        }
    }
}
