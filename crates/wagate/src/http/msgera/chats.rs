//! Chats: marking one read, so the sender sees blue ticks. A live-session call forwarded
//! to the node driving the device; what was marked is recorded (`readAt` on inbound
//! messages), so a second call sends nothing again.

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
use wagate_core::Recipient;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadChatRequest {
    pub device_uid: String,
    /// The chat: the other side's phone number in E.164, or a group's id
    /// (`120363012345678901@g.us`).
    pub chat: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadChatBody {
    pub device_uid: String,
    /// The chat: a phone number in E.164, or the group's id.
    pub chat: String,
    /// How many inbound messages were marked read now (0 when none was unread).
    pub marked: u64,
}

/// Marks a chat read: read receipts for its unread inbound messages.
#[utoipa::path(post, path = "/v1/developer/chats/read", tag = "messages", security(("apiKey" = [])),
    request_body = ReadChatRequest,
    responses((status = 200, body = ReadChatBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected, or WhatsApp did not take the receipts (nothing was marked)", body = ErrorBody)))]
pub async fn read_chat(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<ReadChatRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let device = p.check(parse_device_uid(&req.device_uid, "deviceUid"));
    let chat = p.check(Recipient::parse(&req.chat).map_err(|_| {
        ApiError::invalid(
            "chat",
            "must be a phone number in international format or a WhatsApp group id such as 120363012345678901@g.us",
        )
    }));
    p.finish()?;
    let (Some(device), Some(chat)) = (device, chat) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let marked = s.messaging.mark_chat_read(&account, &device, &chat).await?;
    Ok(ok(
        StatusCode::OK,
        ReadChatBody {
            device_uid: device.to_string(),
            chat: chat.to_string(),
            marked,
        },
    ))
}
