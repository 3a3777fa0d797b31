//! Devices: create, list, read (with `safety` budgets), change, delete, rotate the
//! instance token.

use super::path_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::ApiJson;
use crate::http::msgera::messages::page_request;
use crate::http::ok;
use crate::http::query::NoBody;
use crate::service::Services;
use crate::service::devices::{CloudApiPatch, DeviceChange, DeviceView, NewDeviceRequest};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::device::{EngineKind, Pacing, SafetyLimits};

/// A device's send budgets and what is left of them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SafetyBody {
    pub daily_limit: u32,
    pub hourly_limit: u32,
    pub minute_limit: u32,
    /// Sends still accepted in the rolling 24 hours.
    pub daily_remaining: u64,
    /// Sends the worker may still make in the rolling hour.
    pub hourly_remaining: u64,
    /// Sends the worker may still make in the current minute.
    pub minute_remaining: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PacingBody {
    /// Shortest random pause between two sends, in ms.
    pub min_delay_ms: u32,
    /// Longest random pause between two sends, in ms.
    pub max_delay_ms: u32,
    /// Show "typing…" before sending a text.
    pub typing_indicator: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCountersBody {
    pub sent: u64,
    pub received: u64,
    pub reconnects: u64,
    pub last_event_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceBody {
    pub device_uid: String,
    pub name: String,
    /// `sandbox`, `whatsapp-web` or `cloud-api`.
    pub engine: String,
    /// created, connecting, qr, pair_code, qr_expired, connected, reconnecting,
    /// logged_out, banned, replaced or failed.
    pub status: String,
    pub status_reason: Option<String>,
    /// The linked number in E.164, once linked.
    pub phone_number: Option<String>,
    pub push_name: Option<String>,
    pub safety: SafetyBody,
    pub pacing: PacingBody,
    pub counters: DeviceCountersBody,
    /// The node that drives the device now (its id, `node_id`), or null while no node
    /// holds it (being handed over, or every node is down). Counters are that node's.
    pub node: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub connected_at: Option<DateTime<Utc>>,
    /// On `cloud-api` devices: the number's ids, and the callback URL and verify token to
    /// give Meta. The access token and app secret are never shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_api: Option<CloudApiBody>,
    /// The MegaMsg instance token: present only in the reply that created or rotated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_token: Option<String>,
}

/// A Cloud API device's public side.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudApiBody {
    /// The number's id in Meta's app.
    pub phone_number_id: String,
    /// The WhatsApp Business Account id (templates are listed from it), if given.
    pub business_account_id: Option<String>,
    /// Meta's "Callback URL" for this device: set it, with the verify token, under
    /// WhatsApp → Configuration in the app, and subscribe to the `messages` field.
    pub webhook_url: String,
    /// The "Verify token" to give Meta with the callback URL (null when this node cannot
    /// open the credentials).
    pub verify_token: Option<String>,
}

impl DeviceBody {
    pub fn from_view(v: &DeviceView) -> Self {
        let d = &v.device;
        Self {
            device_uid: d.uid.to_string(),
            name: d.name.clone(),
            engine: d.engine.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            status_reason: d.status_reason.clone(),
            phone_number: d.phone.as_ref().map(|p| p.e164()),
            push_name: d.push_name.clone(),
            safety: SafetyBody {
                daily_limit: d.limits.per_day,
                hourly_limit: d.limits.per_hour,
                minute_limit: d.limits.per_minute,
                daily_remaining: v.daily_remaining(),
                hourly_remaining: v.hourly_remaining(),
                minute_remaining: v.minute_remaining(),
            },
            pacing: PacingBody {
                min_delay_ms: d.pacing.min_delay_ms,
                max_delay_ms: d.pacing.max_delay_ms,
                typing_indicator: d.pacing.typing_indicator,
            },
            counters: DeviceCountersBody {
                sent: v.counters.sent,
                received: v.counters.received,
                reconnects: v.counters.reconnects,
                last_event_at: v.counters.last_event_at.map(wagate_core::time::from_millis),
            },
            node: v.node.clone(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            connected_at: d.connected_at,
            cloud_api: v.cloud_api.as_ref().map(|c| CloudApiBody {
                phone_number_id: c.phone_number_id.clone(),
                business_account_id: c.business_account_id.clone(),
                webhook_url: c.webhook_url.clone(),
                verify_token: c.verify_token.clone(),
            }),
            instance_token: None,
        }
    }
}

/// Budgets as a request sets them.
#[derive(Debug, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SafetyInput {
    pub daily_limit: u32,
    pub hourly_limit: u32,
    pub minute_limit: u32,
}

impl From<SafetyInput> for SafetyLimits {
    fn from(s: SafetyInput) -> Self {
        SafetyLimits {
            per_day: s.daily_limit,
            per_hour: s.hourly_limit,
            per_minute: s.minute_limit,
        }
    }
}

impl From<PacingBody> for Pacing {
    fn from(p: PacingBody) -> Self {
        Pacing {
            min_delay_ms: p.min_delay_ms,
            max_delay_ms: p.max_delay_ms,
            typing_indicator: p.typing_indicator,
        }
    }
}

/// A Cloud API number's credentials, from its Meta app (WhatsApp → API Setup, and the
/// app's settings for the secret). Stored encrypted; the token and the secret are never
/// shown again.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudApiInput {
    /// The "Phone number ID" (digits), not the number itself.
    pub phone_number_id: String,
    /// A permanent (system user) access token with `whatsapp_business_messaging`.
    pub access_token: String,
    /// The app secret, which Meta signs webhooks with.
    pub app_secret: String,
    /// Any string you choose; give Meta the same one with the callback URL.
    pub verify_token: String,
    /// The WhatsApp Business Account id, to list the account's templates.
    pub business_account_id: Option<String>,
}

/// A change of credentials: the fields given replace the stored ones.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudApiChangeInput {
    pub phone_number_id: Option<String>,
    pub access_token: Option<String>,
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub business_account_id: Option<String>,
}

// By hand: the derived `Debug` would print the secrets into any log of a request.
impl std::fmt::Debug for CloudApiInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudApiInput")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for CloudApiChangeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudApiChangeInput")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeviceRequest {
    /// A name to recognise the device by (1–100 characters).
    pub name: String,
    /// `sandbox` (simulated network), `whatsapp-web` (a real linked device) or
    /// `cloud-api` (a business number on Meta's Cloud API; needs `cloudApi`).
    pub engine: String,
    pub safety: Option<SafetyInput>,
    pub pacing: Option<PacingBody>,
    /// Required for, and only for, `cloud-api`.
    pub cloud_api: Option<CloudApiInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDeviceRequest {
    pub name: Option<String>,
    pub safety: Option<SafetyInput>,
    pub pacing: Option<PacingBody>,
    /// New credentials of a `cloud-api` device; it reconnects with them.
    pub cloud_api: Option<CloudApiChangeInput>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceTokenBody {
    pub device_uid: String,
    /// The new 64-character token (shown once).
    pub instance_token: String,
}

/// Creates a device and starts linking it.
#[utoipa::path(post, path = "/v1/developer/devices", tag = "devices",
    request_body = CreateDeviceRequest,
    security(("apiKey" = [])),
    responses(
        (status = 201, description = "Created; `instanceToken` is shown only here", body = DeviceBody),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_device(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<CreateDeviceRequest>,
) -> ApiResult<Response> {
    let engine = EngineKind::parse(&req.engine).ok_or_else(|| {
        ApiError::invalid("engine", "must be `sandbox`, `whatsapp-web` or `cloud-api`")
    })?;
    let (view, token) = s
        .devices
        .create_device(
            &account,
            NewDeviceRequest {
                name: req.name,
                engine,
                limits: req.safety.map(Into::into),
                pacing: req.pacing.map(Into::into),
                cloud_api: req.cloud_api.map(|c| CloudApiCredentials {
                    phone_number_id: c.phone_number_id,
                    access_token: c.access_token,
                    app_secret: c.app_secret,
                    verify_token: c.verify_token,
                    business_account_id: c.business_account_id,
                }),
            },
        )
        .await?;
    let mut body = DeviceBody::from_view(&view);
    body.instance_token = Some(token);
    Ok(ok(StatusCode::CREATED, body))
}

/// Paging of the device list: the same parameters as every other list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDevicesQuery {
    /// 1-based page (default 1).
    pub page: Option<u32>,
    /// Items per page, 1–100 (default 20).
    pub limit: Option<u32>,
}

/// One page of devices, shaped like the other lists (`items`, `page`, `limit`, `total`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    pub items: Vec<DeviceBody>,
    pub page: u32,
    pub limit: u32,
    pub total: u64,
}

/// The device list's reply: a page when paging was asked for, else every device (the
/// original shape).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum DeviceList {
    Page(DevicePage),
    All(Vec<DeviceBody>),
}

/// Lists the account's devices, oldest first. With `page` or `limit` the reply is a page
/// like every other list; without either it keeps the original shape (an array of every
/// device), so clients written against it keep working.
#[utoipa::path(get, path = "/v1/developer/devices", tag = "devices", security(("apiKey" = [])),
    params(ListDevicesQuery),
    responses((status = 200, body = DeviceList, description = "a page (with `page` or `limit`), else an array of every device"),
        (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_devices(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    query: Result<Query<ListDevicesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if q.page.is_none() && q.limit.is_none() {
        let views = s.devices.list_devices(&account).await?;
        return Ok(ok(
            StatusCode::OK,
            DeviceList::All(views.iter().map(DeviceBody::from_view).collect()),
        ));
    }
    let page = page_request(q.page, q.limit)?;
    let result = s.devices.list_devices_page(&account, page).await?;
    Ok(ok(
        StatusCode::OK,
        DeviceList::Page(DevicePage {
            items: result.items.iter().map(DeviceBody::from_view).collect(),
            page: result.page,
            limit: result.limit,
            total: result.total,
        }),
    ))
}

/// One device, with its status, phone number and remaining budgets.
#[utoipa::path(get, path = "/v1/developer/devices/{deviceUid}", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 200, body = DeviceBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_device(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    let view = s.devices.device_view(&account, &uid).await?;
    Ok(ok(StatusCode::OK, DeviceBody::from_view(&view)))
}

/// Renames a device, changes its budgets and pacing, or replaces a Cloud API device's
/// credentials (it then reconnects with them).
#[utoipa::path(patch, path = "/v1/developer/devices/{deviceUid}", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)), request_body = UpdateDeviceRequest,
    responses((status = 200, body = DeviceBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_device(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    ApiJson(req): ApiJson<UpdateDeviceRequest>,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    let change = DeviceChange {
        name: req.name,
        limits: req.safety.map(Into::into),
        pacing: req.pacing.map(Into::into),
        cloud_api: req.cloud_api.map(|c| CloudApiPatch {
            phone_number_id: c.phone_number_id,
            access_token: c.access_token,
            app_secret: c.app_secret,
            verify_token: c.verify_token,
            business_account_id: c.business_account_id,
        }),
    };
    let view = s.devices.update_device(&account, &uid, change).await?;
    Ok(ok(StatusCode::OK, DeviceBody::from_view(&view)))
}

/// Deletes a device: unlinks its session, deletes its keys, fails its queued messages.
#[utoipa::path(delete, path = "/v1/developer/devices/{deviceUid}", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 200, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_device(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    s.devices.delete_device(&account, &uid).await?;
    Ok(ok(
        StatusCode::OK,
        serde_json::json!({ "deviceUid": uid.to_string(), "deleted": true }),
    ))
}

/// Issues a new MegaMsg instance token; the old one stops working at once.
#[utoipa::path(post, path = "/v1/developer/devices/{deviceUid}/token", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 200, body = InstanceTokenBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_token(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    let token = s.devices.rotate_instance_token(&account, &uid).await?;
    Ok(ok(
        StatusCode::OK,
        InstanceTokenBody {
            device_uid: uid.to_string(),
            instance_token: token,
        },
    ))
}
