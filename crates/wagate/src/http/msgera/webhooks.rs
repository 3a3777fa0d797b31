//! Webhook configuration in the Msgera dialect: the personal and group URLs of a device,
//! the instance webhook through the developer API, secret rotation, the attempt history
//! and redelivery.

use super::{parse_device_uid, path_device_uid};
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::ApiJson;
use crate::http::msgera::messages::page_request;
use crate::http::ok;
use crate::http::query::ApiQuery;
use crate::http::query::NoBody;
use crate::service::Services;
use crate::service::webhooks::parse_event_types;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::DeviceUid;
use wagate_core::event::EventType;
use wagate_core::webhook::{AttemptFilter, DEFAULT_EVENT_TYPES, WebhookAttempt, WebhookConfig};

fn names(types: &[EventType]) -> Vec<String> {
    types.iter().map(|t| t.as_str().to_owned()).collect()
}

/// A device's webhook configuration.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhooksBody {
    pub device_uid: String,
    pub personal_webhook_url: Option<String>,
    pub group_webhook_url: Option<String>,
    pub is_active: bool,
    /// Event types the personal and group URLs receive: `message.received` (default),
    /// `message.status`, `device.status`, `message.reaction`, `message.edited`,
    /// `message.deleted`.
    pub events: Vec<String>,
    /// The MegaMsg-format instance webhook, if set.
    pub instance_webhook_url: Option<String>,
    pub instance_events: Vec<String>,
    /// Signs every request (Standard Webhooks, `whsec_…`); `null` until configured.
    pub secret: Option<String>,
    /// Until when the secret before the last rotation still signs too.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl WebhooksBody {
    pub fn new(device: &DeviceUid, c: Option<&WebhookConfig>) -> Self {
        let default = names(&DEFAULT_EVENT_TYPES);
        Self {
            device_uid: device.to_string(),
            personal_webhook_url: c.and_then(|c| c.personal_url.clone()),
            group_webhook_url: c.and_then(|c| c.group_url.clone()),
            is_active: c.is_some_and(|c| c.msgera_active),
            events: c
                .map(|c| names(&c.msgera_events))
                .unwrap_or(default.clone()),
            instance_webhook_url: c.and_then(|c| c.instance_url.clone()),
            instance_events: c.map(|c| names(&c.instance_events)).unwrap_or(default),
            secret: c.map(|c| c.secret.clone()),
            previous_secret_valid_until: c
                .and_then(|c| c.previous_secret_until)
                .filter(|t| *t > wagate_core::time::now()),
            updated_at: c.map(|c| c.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutWebhooksRequest {
    pub device_uid: String,
    /// Direct-chat messages (and opted-in status events) go here; `null` or `""` for none.
    pub personal_webhook_url: Option<String>,
    /// Group messages go here; `null` or `""` for none.
    pub group_webhook_url: Option<String>,
    /// Default `true`.
    pub is_active: Option<bool>,
    /// Default `["message.received"]`.
    pub events: Option<Vec<String>>,
}

/// Sets a device's personal and group webhook URLs.
#[utoipa::path(put, path = "/v1/developer/webhooks", tag = "webhooks", security(("apiKey" = [])),
    request_body = PutWebhooksRequest,
    responses((status = 200, body = WebhooksBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "Invalid, or an internal address (SSRF)", body = ErrorBody)))]
pub async fn put_webhooks(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<PutWebhooksRequest>,
) -> ApiResult<Response> {
    let uid = parse_device_uid(&req.device_uid, "deviceUid")?;
    let events = parse_event_types(req.events.as_deref(), "events")?;
    let c = s
        .webhooks
        .set_msgera_webhooks(
            &account,
            &uid,
            req.personal_webhook_url,
            req.group_webhook_url,
            req.is_active.unwrap_or(true),
            events,
        )
        .await?;
    Ok(ok(StatusCode::OK, WebhooksBody::new(&uid, Some(&c))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    pub device_uid: String,
}

/// A device's webhook configuration.
#[utoipa::path(get, path = "/v1/developer/webhooks", tag = "webhooks", security(("apiKey" = [])), params(DeviceQuery),
    responses((status = 200, body = WebhooksBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn get_webhooks(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> ApiResult<Response> {
    let uid = parse_device_uid(&q.device_uid, "deviceUid")?;
    let c = s.webhooks.webhook_config(&account, &uid).await?;
    Ok(ok(StatusCode::OK, WebhooksBody::new(&uid, c.as_ref())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateSecretRequest {
    pub device_uid: String,
}

/// Replaces the signing secret; the old one keeps signing (a second signature in
/// `webhook-signature`) for the grace period (default 24 h).
#[utoipa::path(post, path = "/v1/developer/webhooks/secret/rotate", tag = "webhooks", security(("apiKey" = [])),
    request_body = RotateSecretRequest,
    responses((status = 200, body = WebhooksBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rotate_secret(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<RotateSecretRequest>,
) -> ApiResult<Response> {
    let uid = parse_device_uid(&req.device_uid, "deviceUid")?;
    let c = s.webhooks.rotate_webhook_secret(&account, &uid).await?;
    Ok(ok(StatusCode::OK, WebhooksBody::new(&uid, Some(&c))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceWebhookRequest {
    /// Where MegaMsg-format webhooks go; `null` or `""` for none.
    pub url: Option<String>,
    /// Default `["message.received"]`.
    pub events: Option<Vec<String>>,
}

/// Sets a device's MegaMsg instance webhook (as `PUT /api/whatsapp/webhook` does).
#[utoipa::path(put, path = "/v1/developer/devices/{deviceUid}/instance-webhook", tag = "webhooks", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)), request_body = InstanceWebhookRequest,
    responses((status = 200, body = WebhooksBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_instance_webhook(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(device_uid): Path<String>,
    ApiJson(req): ApiJson<InstanceWebhookRequest>,
) -> ApiResult<Response> {
    let uid = path_device_uid(&device_uid)?;
    let events = parse_event_types(req.events.as_deref(), "events")?;
    let c = s
        .webhooks
        .set_instance_webhook(&account, &uid, req.url, "url", events)
        .await?;
    Ok(ok(StatusCode::OK, WebhooksBody::new(&uid, Some(&c))))
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptBody {
    /// The attempt's id (for redelivery).
    pub id: i64,
    pub delivery_id: i64,
    pub device_uid: String,
    /// personal, group or instance.
    pub endpoint: String,
    /// The `webhook-id` / `eventId`, the same on every attempt of an event.
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub url: String,
    /// SUCCESS or FAILED.
    pub status: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The start of the receiver's answer (at most 1 KB).
    pub response_snippet: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl AttemptBody {
    fn new(a: &WebhookAttempt) -> Self {
        Self {
            id: a.id,
            delivery_id: a.delivery_id,
            device_uid: a.device_uid.to_string(),
            endpoint: a.endpoint.as_str().to_owned(),
            event_id: a.event_id.to_string(),
            event_type: a.event_type.as_str().to_owned(),
            attempt: a.attempt,
            url: a.url.clone(),
            status: if a.success { "SUCCESS" } else { "FAILED" }.to_owned(),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error.clone(),
            response_snippet: a.response_snippet.clone(),
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptPage {
    pub items: Vec<AttemptBody>,
    pub page: u32,
    pub limit: u32,
    pub total: u64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub device_uid: Option<String>,
    /// SUCCESS or FAILED.
    pub status: Option<String>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

/// Every delivery attempt, newest first.
#[utoipa::path(get, path = "/v1/developer/webhooks/history", tag = "webhooks", security(("apiKey" = [])), params(HistoryQuery),
    responses((status = 200, body = AttemptPage), (status = 401, body = ErrorBody), (status = 404, description = "No such device", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn history(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let device_uid = q
        .device_uid
        .as_deref()
        .map(|d| parse_device_uid(d, "deviceUid"))
        .transpose()?;
    let success = match q.status.as_deref() {
        None => None,
        Some(s) if s.eq_ignore_ascii_case("SUCCESS") => Some(true),
        Some(s) if s.eq_ignore_ascii_case("FAILED") => Some(false),
        Some(_) => return Err(ApiError::invalid("status", "must be SUCCESS or FAILED")),
    };
    let page = page_request(q.page, q.limit)?;
    let result = s
        .webhooks
        .webhook_history(
            &account,
            &AttemptFilter {
                device_uid,
                success,
            },
            page,
        )
        .await?;
    Ok(ok(
        StatusCode::OK,
        AttemptPage {
            items: result.items.iter().map(AttemptBody::new).collect(),
            page: result.page,
            limit: result.limit,
            total: result.total,
        },
    ))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedeliverBody {
    /// The new delivery; its attempts appear in the history.
    pub delivery_id: i64,
}

/// Sends an attempt's event again to its destination, with the same event id.
#[utoipa::path(post, path = "/v1/developer/webhooks/history/{id}/redeliver", tag = "webhooks", security(("apiKey" = [])),
    params(("id" = i64, Path, description = "An attempt id from the history")),
    responses((status = 202, body = RedeliverBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn redeliver(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("webhook attempt"))?;
    let delivery_id = s.webhooks.redeliver_webhook(&account, id).await?;
    Ok(ok(StatusCode::ACCEPTED, RedeliverBody { delivery_id }))
}
