//! Sandbox controls: inject an inbound message into a sandbox device, as if someone on
//! WhatsApp had written to it.

use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::service::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use wagate_core::device::EngineKind;
use wagate_core::engine::{IncomingMedia, IncomingMessage};
use wagate_core::media::MediaClass;
use wagate_core::message::MessageKind;
use wagate_core::{MediaId, Phone, time};

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
    let device = s.get_device(&account, &uid).await?;
    if device.engine != EngineKind::Sandbox {
        return Err(ApiError::conflict(format!(
            "device {uid} is not a sandbox device"
        )));
    }
    let (kind, media) = match &req.media_id {
        Some(id) => {
            let id = MediaId::parse(id)
                .map_err(|_| ApiError::invalid("mediaId", "must be a media id (med_…)"))?;
            let m = s.get_media(&account, &id).await.map_err(|_| {
                ApiError::invalid(
                    "mediaId",
                    format!("no media {id} was uploaded by this account"),
                )
            })?;
            let data = s.blobs.get(&id).await.map_err(ApiError::internal)?;
            let kind = MessageKind::from(MediaClass::of_mime(&m.mime_type));
            (
                kind,
                Some(IncomingMedia {
                    data,
                    mime_type: req.mime_type.clone().unwrap_or(m.mime_type),
                    file_name: req.file_name.clone().or(m.file_name),
                }),
            )
        }
        None => (MessageKind::Text, None),
    };
    let provider_message_id = format!(
        "SANDBOX{}",
        wagate_core::MessageId::new().as_str()[4..].to_uppercase()
    );
    let message = IncomingMessage {
        provider_message_id: provider_message_id.clone(),
        from: Some(from),
        from_lid: None,
        from_name: req.from_name,
        kind,
        text: req.text,
        media,
        is_group,
        group_id: if is_group { req.group_id } else { None },
        group_name: if is_group { req.group_name } else { None },
        timestamp: time::now(),
    };
    s.sandbox
        .inject_inbound(&uid, message)
        .await
        .map_err(|e| ApiError::bad_gateway(e.to_string()))?;
    Ok(ok(
        StatusCode::CREATED,
        serde_json::json!({ "deviceUid": uid.to_string(), "providerMessageId": provider_message_id }),
    ))
}
