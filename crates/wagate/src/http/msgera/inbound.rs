//! Messages received by the account's devices, newest first (webhooks push the same).

use super::details::DetailsBody;
use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiResult, ErrorBody};
use crate::http::msgera::messages::page_request;
use crate::http::ok;
use crate::http::query::ApiQuery;
use crate::service::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::message::InboundMessage;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundBody {
    pub message_id: String,
    pub device_uid: String,
    /// WhatsApp's id for the message.
    pub provider_message_id: String,
    /// The sender in E.164, when it could be resolved.
    pub from: Option<String>,
    /// The sender's LID, when WhatsApp identified them by one.
    pub from_lid: Option<String>,
    pub from_name: Option<String>,
    /// text, image, video, audio, voice, document, sticker, location, contact or poll.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text or caption; for locations, contacts and polls a summary of them.
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub is_group: bool,
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// When the device marked it read (`POST /v1/developer/chats/read`); null until then.
    pub read_at: Option<DateTime<Utc>>,
    /// Location, contacts, poll, quote and mentions, when it has them.
    #[serde(flatten)]
    pub details: DetailsBody,
}

impl InboundBody {
    pub fn from_inbound(m: &InboundMessage) -> Self {
        Self {
            message_id: m.id.to_string(),
            device_uid: m.device_uid.to_string(),
            provider_message_id: m.provider_message_id.clone(),
            from: m.from.as_ref().map(|p| p.e164()),
            from_lid: m.from_lid.clone(),
            from_name: m.from_name.clone(),
            kind: m.kind.as_str().to_owned(),
            text: m.text.clone(),
            media_id: m.media_id.as_ref().map(|i| i.to_string()),
            is_group: m.is_group,
            group_id: m.group_id.clone(),
            group_name: m.group_name.clone(),
            timestamp: m.timestamp,
            received_at: m.received_at,
            read_at: m.read_at,
            details: DetailsBody::from_details(&m.details),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboundQuery {
    pub device_uid: Option<String>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundPage {
    pub items: Vec<InboundBody>,
    pub page: u32,
    pub limit: u32,
    pub total: u64,
}

/// Lists received messages, newest first.
#[utoipa::path(get, path = "/v1/developer/inbound", tag = "messages", security(("apiKey" = [])), params(InboundQuery),
    responses((status = 200, body = InboundPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_inbound(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiQuery(q): ApiQuery<InboundQuery>,
) -> ApiResult<Response> {
    let device = q
        .device_uid
        .as_deref()
        .map(|d| parse_device_uid(d, "deviceUid"))
        .transpose()?;
    let page = page_request(q.page, q.limit)?;
    let result = s
        .messaging
        .list_inbound(&account, device.as_ref(), page)
        .await?;
    Ok(ok(
        StatusCode::OK,
        InboundPage {
            items: result.items.iter().map(InboundBody::from_inbound).collect(),
            page: result.page,
            limit: result.limit,
            total: result.total,
        },
    ))
}
