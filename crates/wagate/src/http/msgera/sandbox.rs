//! Sandbox controls: inject an inbound message into a sandbox device, as if someone on
//! WhatsApp had written to it. Parsing here; the use case is `SandboxService::inject_sandbox_inbound`.

use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::service::Services;
use crate::service::sandbox::SandboxInbound;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use wagate_core::{MediaId, Phone};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundRequest {
    pub device_uid: String,
    /// The sender's phone number.
    pub from: String,
    /// The message text (or caption with `mediaId`).
    pub text: Option<String>,
    /// The sender's WhatsApp display name.
    pub from_name: Option<String>,
    pub is_group: Option<bool>,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    /// An uploaded media file to attach.
    pub media_id: Option<String>,
    /// The MIME type the sender declares for the media (default: the upload's). A sender
    /// on WhatsApp chooses it freely; wagate types stored media from its bytes anyway.
    pub mime_type: Option<String>,
    /// The file name the sender gives the media (default: the upload's).
    pub file_name: Option<String>,
}

/// Injects an inbound message into a sandbox device (stored, then sent to webhooks).
#[utoipa::path(post, path = "/v1/developer/sandbox/inbound", tag = "sandbox", security(("apiKey" = [])),
    request_body = InboundRequest,
    responses((status = 201, description = "Committed"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not a sandbox device", body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn inbound(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<InboundRequest>,
) -> ApiResult<Response> {
    let uid = parse_device_uid(&req.device_uid, "deviceUid")?;
    let from = Phone::parse(&req.from).map_err(|e| ApiError::invalid("from", e.to_string()))?;
    let is_group = req.is_group.unwrap_or(false);
    if is_group && req.group_id.as_deref().is_none_or(|g| g.trim().is_empty()) {
        return Err(ApiError::invalid(
            "groupId",
            "is required when isGroup is true",
        ));
    }
    if req.media_id.is_none() && (req.mime_type.is_some() || req.file_name.is_some()) {
        let field = if req.mime_type.is_some() {
            "mimeType"
        } else {
            "fileName"
        };
        return Err(ApiError::invalid(field, "is only allowed with mediaId"));
    }
    if req.text.as_deref().is_none_or(str::is_empty) && req.media_id.is_none() {
        return Err(ApiError::invalid(
            "text",
            "is required unless mediaId is given",
        ));
    }
    let media_id = req
        .media_id
        .as_deref()
        .map(|id| {
            MediaId::parse(id)
                .map_err(|_| ApiError::invalid("mediaId", "must be a media id (med_…)"))
        })
        .transpose()?;
    let provider_message_id = s
        .sandbox
        .inject_sandbox_inbound(
            &account,
            &uid,
            SandboxInbound {
                from,
                from_name: req.from_name,
                text: req.text,
                media: media_id.map(|id| (id, req.mime_type, req.file_name)),
                group: is_group.then(|| (req.group_id.unwrap_or_default(), req.group_name)),
            },
        )
        .await?;
    Ok(ok(
        StatusCode::CREATED,
        serde_json::json!({ "deviceUid": uid.to_string(), "providerMessageId": provider_message_id }),
    ))
}
