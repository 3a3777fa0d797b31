//! What a chat shows of the device's user: "typing…", "recording…", or nothing. A
//! live-session call forwarded to the node driving the device, like a number check: it is
//! not a message, so nothing is stored, queued or retried.

use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::service::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wagate_core::engine::ChatState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceRequest {
    pub device_uid: String,
    /// The chat: a phone number in E.164; give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group chat, instead of `to`.
    pub group_id: Option<String>,
    /// `typing`, `recording` (a voice note) or `paused` (clears either; WhatsApp also
    /// clears them by itself after a while).
    pub state: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresenceBody {
    pub device_uid: String,
    /// The chat: a phone number in E.164, or the group's id.
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub state: String,
}

/// Shows "typing…" or "recording…" in a chat, or clears it.
#[utoipa::path(post, path = "/v1/developer/presence", tag = "messages", security(("apiKey" = [])),
    request_body = PresenceRequest,
    responses((status = 200, body = PresenceBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected, or WhatsApp did not take the state", body = ErrorBody)))]
pub async fn set_presence(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<PresenceRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let device = p.check(parse_device_uid(&req.device_uid, "deviceUid"));
    let to = super::messages::recipient(&mut p, req.to.as_deref(), req.group_id.as_deref());
    let state = p.check(
        ChatState::parse(&req.state)
            .ok_or_else(|| ApiError::invalid("state", "must be one of typing, recording, paused")),
    );
    p.finish()?;
    let (Some(device), Some(to), Some(state)) = (device, to, state) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    s.messaging
        .set_chat_state(&account, &device, &to, state)
        .await?;
    Ok(ok(
        StatusCode::OK,
        PresenceBody {
            device_uid: device.to_string(),
            to: to.to_string(),
            group_id: to.group().map(ToString::to_string),
            state: state.as_str().to_owned(),
        },
    ))
}
