//! The instance webhook in the MegaMsg dialect: one URL per instance, set and read under
//! instance auth; inbound messages are POSTed there in MegaMsg's "Message Received" format.

use super::MegaJson;
use super::auth::Instance;
use crate::http::error::{ApiResult, ErrorBody};
use crate::service::Services;
use crate::service::webhooks::parse_event_types;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wagate_core::webhook::{DEFAULT_EVENT_TYPES, WebhookConfig};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWebhookRequest {
    /// Where webhooks go; `null` or `""` removes it.
    pub url: Option<String>,
    /// Opt-in event types; default `["message.received"]` (MegaMsg's only event).
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReply {
    /// Always `true`.
    pub ok: bool,
    pub url: Option<String>,
    pub events: Vec<String>,
    /// Signs every request (Standard Webhooks `webhook-signature`); `null` until set.
    pub secret: Option<String>,
}

fn reply(c: Option<&WebhookConfig>) -> Response {
    let events = c
        .map(|c| c.instance_events.as_slice())
        .unwrap_or(&DEFAULT_EVENT_TYPES);
    Json(WebhookReply {
        ok: true,
        url: c.and_then(|c| c.instance_url.clone()),
        events: events.iter().map(|t| t.as_str().to_owned()).collect(),
        secret: c.map(|c| c.secret.clone()),
    })
    .into_response()
}

/// Sets the instance's webhook URL.
#[utoipa::path(put, path = "/api/whatsapp/webhook", tag = "megamsg",
    security(("instanceToken" = [], "instanceId" = [])), request_body = SetWebhookRequest,
    responses((status = 200, body = WebhookReply), (status = 401, body = ErrorBody),
        (status = 422, description = "Invalid, or an internal address (SSRF)", body = ErrorBody)))]
pub async fn set_webhook(
    State(s): State<Services>,
    Instance(device): Instance,
    MegaJson(req): MegaJson<SetWebhookRequest>,
) -> ApiResult<Response> {
    let events = parse_event_types(req.events.as_deref(), "events")?;
    let c = s
        .webhooks
        .set_instance_webhook(&device.account_id, &device.uid, req.url, "url", events)
        .await?;
    Ok(reply(Some(&c)))
}

/// The instance's webhook URL.
#[utoipa::path(get, path = "/api/whatsapp/webhook", tag = "megamsg",
    security(("instanceToken" = [], "instanceId" = [])),
    responses((status = 200, body = WebhookReply), (status = 401, body = ErrorBody)))]
pub async fn get_webhook(
    State(s): State<Services>,
    Instance(device): Instance,
) -> ApiResult<Response> {
    let c = s
        .webhooks
        .webhook_config(&device.account_id, &device.uid)
        .await?;
    Ok(reply(c.as_ref()))
}
