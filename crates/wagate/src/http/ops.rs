//! Operating endpoints: health, readiness, the OpenAPI document generated from the
//! handlers, and a readable reference page rendered from it (no external assets).

use super::megamsg::{self, InstanceSecurity};
use super::msgera;
use crate::service::Services;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "wagate", description = "Self-hosted WhatsApp gateway. The `/v1/developer/*` endpoints speak the Msgera dialect (X-API-Key)."),
    paths(
        msgera::devices::create_device, msgera::devices::list_devices, msgera::devices::get_device,
        msgera::devices::update_device, msgera::devices::delete_device, msgera::devices::rotate_token,
        msgera::linking::get_qr,
        msgera::linking::pair_code,
        msgera::linking::connect,
        msgera::linking::logout,
        msgera::messages::send_text, msgera::messages::send_media, msgera::messages::send_voice,
        msgera::messages::check_whatsapp, msgera::messages::get_message, msgera::messages::list_messages,
        msgera::media::upload_media,
        msgera::inbound::list_inbound,
        msgera::keys::list_keys, msgera::keys::create_key, msgera::keys::revoke_key,
        msgera::sandbox::inbound,
        megamsg::messages::send_message,
        msgera::webhooks::put_webhooks, msgera::webhooks::get_webhooks, msgera::webhooks::rotate_secret,
        msgera::webhooks::put_instance_webhook, msgera::webhooks::history, msgera::webhooks::redeliver,
        msgera::events::stream_events, megamsg::webhook::set_webhook, megamsg::webhook::get_webhook,
        healthz, readyz,
    ),
    components(schemas(
        crate::webhook::payload::MsgeraMessageReceived, crate::webhook::payload::MsgeraMessageStatus,
        crate::webhook::payload::MsgeraDeviceStatus, crate::webhook::payload::MegaMessageReceived,
        crate::webhook::payload::MegaMessageStatus, crate::webhook::payload::MegaDeviceStatus,
    )),
    modifiers(&SecuritySchemes, &InstanceSecurity),
    tags(
        (name = "devices", description = "Linked WhatsApp devices"),
        (name = "messages", description = "Sending and message status"),
        (name = "media", description = "Files to send"),
        (name = "keys", description = "API keys"),
        (name = "sandbox", description = "The simulated network"),
        (name = "webhooks", description = "Webhook destinations, delivery history, redelivery and the live event stream. Payload schemas: MsgeraMessageReceived, MsgeraMessageStatus, MsgeraDeviceStatus, MegaMessageReceived, MegaMessageStatus, MegaDeviceStatus"),
        (name = "megamsg", description = "The MegaMsg-compatible instance API (`/api/whatsapp/*`, Bearer instance token + X-Instance-Id)"),
        (name = "ops", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

pub fn router() -> Router<Services> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/metrics", get(super::metrics::metrics))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "ok": true, "status": "alive" })),
    )
        .into_response()
}

/// The database answers, so requests can be served.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn readyz(State(s): State<Services>) -> Response {
    match s.store.last_event_seq().await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "ok": true, "status": "ready" })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "ok": false, "message": "database unavailable", "code": "unavailable" }))).into_response()
        }
    }
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Response {
    match openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => crate::http::error::ApiError::internal(e).into_response(),
    }
}

async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
