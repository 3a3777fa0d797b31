//! The MegaMsg dialect: `/api/whatsapp/*`, so code written for the hosted MegaMsg service
//! works against wagate with only the base URL and credentials changed.
//!
//! Every device is an instance: `X-Instance-Id` is its deviceUid and the bearer token is
//! its instance token. Sends go through the same pipeline as the Msgera dialect; what
//! differs is the spelling (snake_case, media inline by URL or base64) and that the reply
//! waits until the engine has taken the message, as MegaMsg's does.

pub mod auth;
pub mod messages;
pub mod webhook;

use crate::http::error::ApiError;
use crate::http::json::parse_json;
use crate::service::Services;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use wagate_core::media::MAX_MEDIA_BYTES;

/// A 16 MB file inline as base64 (4 characters per 3 bytes), in a `data:` URI, with room
/// for the other fields. The server-wide limit is sized for multipart uploads and would
/// refuse base64 media the seed allows.
pub const MAX_BODY_BYTES: usize = MAX_MEDIA_BYTES.div_ceil(3) * 4 + 64 * 1024;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/api/whatsapp/messages/send", post(messages::send_message))
        .route(
            "/api/whatsapp/webhook",
            axum::routing::get(webhook::get_webhook).put(webhook::set_webhook),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A JSON body read whatever its `Content-Type` (MegaMsg clients do not all send one), whose
/// every failure is a 422 naming the field: the seed's error table has no 413 or 415.
#[derive(Debug)]
pub struct MegaJson<T>(pub T);

impl<S, T> FromRequest<S> for MegaJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                // Only inline media makes a body this large.
                ApiError::invalid(
                    "media",
                    format!(
                        "makes the request larger than {MAX_BODY_BYTES} bytes; media may be at most 16 MB"
                    ),
                )
            } else {
                ApiError::invalid("body", e.body_text())
            }
        })?;
        parse_json(&bytes).map(MegaJson)
    }
}

/// The instance credentials in the OpenAPI document.
pub struct InstanceSecurity;

impl Modify for InstanceSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "instanceToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The device's 64-character instance token (from device creation or POST /v1/developer/devices/{deviceUid}/token).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "instanceId",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Instance-Id",
                "The device's uid (dev_…).",
            ))),
        );
    }
}
