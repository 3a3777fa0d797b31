//! Message templates, the Cloud API's way to write first: the business account's approved
//! templates (read from Meta each time) and `send-template`, an ordinary send through the
//! outbox (idempotency, budgets, statuses and webhooks as for any message).

use super::details::TemplateBody;
use super::messages::{MessageBody, Target, accepted, common};
use super::path_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::service::Services;
use crate::service::messaging::SendKind;
use crate::service::peer::Reach;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wagate_core::content::{Details, Template};
use wagate_core::message::MessageKind;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendTemplateRequest {
    /// A `cloud-api` device (or a sandbox one, to try a flow out).
    pub device_uid: String,
    /// Recipient phone number (E.164). The Cloud API has no groups.
    pub to: String,
    /// The template's name as Meta shows it (lowercase letters, digits, `_`).
    pub name: String,
    /// The language it was approved in, e.g. `en_US`.
    pub language: String,
    /// Parameters for its header, body and buttons, in Meta's shape, e.g.
    /// `[{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub components: Option<Vec<serde_json::Value>>,
    pub reply_to: Option<String>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

/// One template of the business account.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfoBody {
    #[serde(flatten)]
    pub template: TemplateBody,
    /// `APPROVED` (only approved ones are listed).
    pub status: Option<String>,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: Option<String>,
}

/// Sends an approved message template: what a Cloud API number must send to someone who
/// has not written in the last 24 hours.
#[utoipa::path(post, path = "/v1/developer/messages/send-template", tag = "messages", security(("apiKey" = [])),
    request_body = SendTemplateRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "Invalid, or the device's engine has no templates (whatsapp-web)", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn send_template(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendTemplateRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: Some(&req.to),
            group_id: None,
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let template = p.check(Template::new(
        &req.name,
        &req.language,
        req.components.unwrap_or_default(),
    ));
    p.finish()?;
    let (Some(c), Some(template)) = (c, template) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        template: Some(template),
        ..Details::default()
    };
    let request = c.request(
        SendKind::Exactly(MessageKind::Template),
        None,
        None,
        details,
    );
    Ok(accepted(s.messaging.send_message(&account, request).await?))
}

/// The approved templates of a `cloud-api` device's business account, as Meta lists them
/// now (needs the device's `businessAccountId`).
#[utoipa::path(get, path = "/v1/developer/devices/{deviceUid}/templates", tag = "devices", security(("apiKey" = [])),
    params(("deviceUid" = String, Path)),
    responses((status = 200, body = Vec<TemplateInfoBody>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "No businessAccountId, or Meta refused", body = ErrorBody),
        (status = 422, description = "Not a cloud-api device", body = ErrorBody),
        (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn list_templates(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(uid): Path<String>,
) -> ApiResult<Response> {
    let uid = path_device_uid(&uid)?;
    let list = s.cloud.templates(&account, &uid, Reach::Anywhere).await?;
    let body: Vec<TemplateInfoBody> = list
        .into_iter()
        .map(|t| TemplateInfoBody {
            template: TemplateBody {
                name: t.name,
                language: t.language,
                components: t.components,
            },
            status: t.status,
            category: t.category,
        })
        .collect();
    Ok(ok(StatusCode::OK, body))
}
