//! Linking endpoints: the QR code (raw, SVG or PNG), pair codes, connect and logout.

use super::path_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::http::query::ApiQuery;
use crate::http::query::NoBody;
use crate::service::Services;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::{Phone, time};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `json` (default), `raw` (text/plain), `svg` or `png`; an `Accept` header of
    /// `image/svg+xml`, `image/png` or `text/plain` chooses the same way.
    pub format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrBody {
    /// The exact string to render as a QR code.
    pub qr: String,
    /// When WhatsApp replaces it with a new one.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QrFormat {
    Json,
    Raw,
    Svg,
    Png,
}

fn qr_format(query: &QrQuery, headers: &HeaderMap) -> Result<QrFormat, ApiError> {
    if let Some(f) = &query.format {
        return match f.as_str() {
            "json" => Ok(QrFormat::Json),
            "raw" | "text" => Ok(QrFormat::Raw),
            "svg" => Ok(QrFormat::Svg),
            "png" => Ok(QrFormat::Png),
            _ => Err(ApiError::invalid("format", "must be json, raw, svg or png")),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("image/svg+xml") {
        QrFormat::Svg
    } else if accept.contains("image/png") {
        QrFormat::Png
    } else if accept.contains("text/plain") {
        QrFormat::Raw
    } else {
        QrFormat::Json
    })
}

fn render_svg(code: &str) -> Result<String, ApiError> {
    let qr = qrcode::QrCode::new(code.as_bytes()).map_err(ApiError::internal)?;
    Ok(qr
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

fn render_png(code: &str) -> Result<Vec<u8>, ApiError> {
    let qr = qrcode::QrCode::new(code.as_bytes()).map_err(ApiError::internal)?;
    let img = qr
        .render::<image::Luma<u8>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(ApiError::internal)?;
    Ok(out.into_inner())
}

/// The QR code to scan with the phone (*Linked devices → Link a device*), replaced as
/// WhatsApp rotates it.
#[utoipa::path(get, path = "/v1/developer/devices/{deviceUid}/qr", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path), QrQuery),
    responses(
        (status = 200, description = "The QR code as JSON, text/plain, image/svg+xml or image/png", body = QrBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Linked already, or no QR code right now", body = ErrorBody)))]
pub async fn get_qr(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    ApiQuery(q): ApiQuery<QrQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let query = q;
    let uid = path_device_uid(&uid)?;
    let format = qr_format(&query, &headers)?;
    let qr = s.linking.current_qr(&account, &uid).await?;
    let no_store = (header::CACHE_CONTROL, "no-store");
    Ok(match format {
        QrFormat::Json => ok(
            StatusCode::OK,
            QrBody {
                qr: qr.code,
                expires_at: time::from_millis(qr.expires_at_ms),
            },
        ),
        QrFormat::Raw => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                no_store,
            ],
            qr.code,
        )
            .into_response(),
        QrFormat::Svg => (
            [(header::CONTENT_TYPE, "image/svg+xml"), no_store],
            render_svg(&qr.code)?,
        )
            .into_response(),
        QrFormat::Png => (
            [(header::CONTENT_TYPE, "image/png"), no_store],
            render_png(&qr.code)?,
        )
            .into_response(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairCodeRequest {
    /// The phone number of the WhatsApp account to link, in international format.
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairCodeBody {
    /// The 8-character code to type on the phone.
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// Requests a pair code: on the phone, *Linked devices → Link a device → Link with phone
/// number instead*, then type the code.
#[utoipa::path(post, path = "/v1/developer/devices/{deviceUid}/pair-code", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)), request_body = PairCodeRequest,
    responses((status = 200, body = PairCodeBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "WhatsApp is throttling; Retry-After says how long", body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn pair_code(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    ApiJson(req): ApiJson<PairCodeRequest>,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    let phone = Phone::parse(&req.phone).map_err(|e| ApiError::invalid("phone", e.to_string()))?;
    let code = s.linking.request_pair_code(&account, &uid, &phone).await?;
    let expires = time::now() + chrono::Duration::milliseconds(code.expires_in.as_millis() as i64);
    Ok(ok(
        StatusCode::OK,
        PairCodeBody {
            code: code.code,
            expires_at: expires,
        },
    ))
}

/// Starts the device again: a new round of QR codes after they ran out, or a
/// reconnection after a logout or failure.
#[utoipa::path(post, path = "/v1/developer/devices/{deviceUid}/connect", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 202, description = "Connecting"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn connect(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    s.linking.connect_device(&account, &uid).await?;
    Ok(ok(
        StatusCode::ACCEPTED,
        serde_json::json!({ "deviceUid": uid.to_string(), "connecting": true }),
    ))
}

/// Unlinks the device from its WhatsApp account; it can be linked again with `connect`.
#[utoipa::path(post, path = "/v1/developer/devices/{deviceUid}/logout", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 200, description = "Logged out"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn logout(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    s.linking.logout_device(&account, &uid).await?;
    Ok(ok(
        StatusCode::OK,
        serde_json::json!({ "deviceUid": uid.to_string(), "loggedOut": true }),
    ))
}
