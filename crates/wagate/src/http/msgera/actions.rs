//! Acting on a message already in a chat: a reaction (to a message sent or received),
//! an edit or a delete for everyone (of a message the device sent). Each is a message of
//! its own through the same outbox (202 with it: its id, status and webhooks, its budget
//! count, an optional `clientMessageId`); what makes it impossible is a 409 saying why.

use super::messages::{MessageBody, accepted};
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::service::Services;
use crate::service::messaging::{MessageAction, parse_text, validate_client_message_id};
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use wagate_core::MessageId;
use wagate_core::content::check_emoji;
use wagate_core::message::Dialect;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReactionRequest {
    /// One emoji, such as `👍`; `""` removes the device's reaction.
    pub emoji: String,
    pub client_message_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditRequest {
    /// The new text (spintax allowed, as in `/send`).
    pub text: String,
    pub client_message_id: Option<String>,
}

fn target(id: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(id).map_err(|_| ApiError::not_found("message"))
}

fn cmid(p: &mut FieldErrors, c: Option<String>) -> Option<String> {
    let c = c?;
    p.check(validate_client_message_id(&c, "clientMessageId"))
        .map(|_| c)
}

async fn act(
    s: &Services,
    account: &wagate_core::AccountId,
    id: &MessageId,
    action: MessageAction,
    client_message_id: Option<String>,
) -> ApiResult<Response> {
    let request = s
        .messaging
        .action(account, id, action, client_message_id, Dialect::Msgera)
        .await?;
    Ok(accepted(s.messaging.send_message(account, request).await?))
}

/// Reacts to a message a device sent or received (`""` removes the reaction).
#[utoipa::path(post, path = "/v1/developer/messages/{messageId}/reaction", tag = "messages", security(("apiKey" = [])),
    params(("messageId" = String, Path, description = "A message sent or received by one of your devices")),
    request_body = ReactionRequest,
    responses((status = 202, description = "The reaction, accepted as a message of its own", body = MessageBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The message cannot take a reaction (why is said)", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn react(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReactionRequest>,
) -> ApiResult<Response> {
    let id = target(&id)?;
    let mut p = FieldErrors::default();
    p.check(check_emoji(&req.emoji));
    let c = cmid(&mut p, req.client_message_id);
    p.finish()?;
    act(&s, &account, &id, MessageAction::React(req.emoji), c).await
}

/// Edits the text of a text message a device sent (within WhatsApp's 15 minutes).
#[utoipa::path(patch, path = "/v1/developer/messages/{messageId}", tag = "messages", security(("apiKey" = [])),
    params(("messageId" = String, Path)),
    request_body = EditRequest,
    responses((status = 202, description = "The edit, accepted as a message of its own", body = MessageBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the device's own sent text, or past WhatsApp's edit window", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn edit(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EditRequest>,
) -> ApiResult<Response> {
    let id = target(&id)?;
    let mut p = FieldErrors::default();
    let text = p.check(parse_text(&req.text, "text"));
    let c = cmid(&mut p, req.client_message_id);
    p.finish()?;
    let Some(text) = text else {
        return Err(ApiError::internal("validation passed without values"));
    };
    act(&s, &account, &id, MessageAction::Edit(text), c).await
}

/// Deletes a message a device sent, for everyone (within two days).
#[utoipa::path(delete, path = "/v1/developer/messages/{messageId}", tag = "messages", security(("apiKey" = [])),
    params(("messageId" = String, Path)),
    responses((status = 202, description = "The delete, accepted as a message of its own", body = MessageBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not the device's own sent message, not sent yet, or too old", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn delete(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = target(&id)?;
    act(&s, &account, &id, MessageAction::Delete, None).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoteRequest {
    /// The options picked, each exactly as the poll spells it: one, or several when the
    /// poll allows it; `[]` takes the device's vote back.
    pub options: Vec<String>,
    pub client_message_id: Option<String>,
}

/// Votes in a poll a device sent or received (a later vote replaces an earlier one).
#[utoipa::path(post, path = "/v1/developer/messages/{messageId}/vote", tag = "messages", security(("apiKey" = [])),
    params(("messageId" = String, Path, description = "A poll sent or received by one of your devices")),
    request_body = VoteRequest,
    responses((status = 202, description = "The vote, accepted as a message of its own", body = MessageBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The message is not a poll", body = ErrorBody),
        (status = 422, description = "An option the poll does not have, or too many", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn vote(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<VoteRequest>,
) -> ApiResult<Response> {
    let id = target(&id)?;
    let mut p = FieldErrors::default();
    let c = cmid(&mut p, req.client_message_id);
    p.finish()?;
    act(&s, &account, &id, MessageAction::Vote(req.options), c).await
}
