//! Sending what is not text or a file: a location, contact cards, a poll. Same pipeline,
//! same conventions as `/send` (strict bodies, `replyTo`, `clientMessageId`, `sendAt`,
//! 202 with the message); the content is checked by the core's constructors, which name
//! the field at fault.

use super::messages::{MessageBody, Target, accepted, common, phone};
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::service::Services;
use crate::service::messaging::SendKind;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use wagate_core::content::{ContactCard, Details, Location, MAX_CONTACTS, Poll};
use wagate_core::message::MessageKind;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendLocationRequest {
    pub device_uid: String,
    /// Recipient phone number (E.164); give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in, instead of `to`.
    pub group_id: Option<String>,
    /// −90 to 90.
    pub latitude: f64,
    /// −180 to 180.
    pub longitude: f64,
    /// The place's name, shown in bold.
    pub name: Option<String>,
    /// The place's address, shown below the name.
    pub address: Option<String>,
    /// Quote this message (as in `/send`).
    pub reply_to: Option<String>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    /// The name shown on the card.
    pub name: String,
    /// The contact's WhatsApp number (E.164).
    pub phone: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendContactRequest {
    pub device_uid: String,
    /// Recipient phone number (E.164); give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in, instead of `to`.
    pub group_id: Option<String>,
    /// 1–20 cards, sent as vCards.
    pub contacts: Vec<ContactInput>,
    pub reply_to: Option<String>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendPollRequest {
    pub device_uid: String,
    /// Recipient phone number (E.164); give `to` or `groupId`, not both.
    pub to: Option<String>,
    /// A group the device is in, instead of `to`.
    pub group_id: Option<String>,
    /// 1–255 characters.
    pub question: String,
    /// 2–12 distinct options of 1–100 characters.
    pub options: Vec<String>,
    /// Voters may pick several options (default one).
    pub multiple_answers: Option<bool>,
    pub reply_to: Option<String>,
    pub client_message_id: Option<String>,
    pub send_at: Option<String>,
}

/// Sends a location pin.
#[utoipa::path(post, path = "/v1/developer/messages/send-location", tag = "messages", security(("apiKey" = [])),
    request_body = SendLocationRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_location(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendLocationRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let location = p.check(Location::new(
        req.latitude,
        req.longitude,
        req.name.as_deref(),
        req.address.as_deref(),
    ));
    p.finish()?;
    let (Some(c), Some(location)) = (c, location) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        location: Some(location),
        ..Details::default()
    };
    let request = c.request(
        SendKind::Exactly(MessageKind::Location),
        None,
        None,
        details,
    );
    Ok(accepted(s.messaging.send_message(&account, request).await?))
}

/// Sends one or more contact cards.
#[utoipa::path(post, path = "/v1/developer/messages/send-contact", tag = "messages", security(("apiKey" = [])),
    request_body = SendContactRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_contact(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendContactRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let contacts = contact_cards(&mut p, "contacts", &req.contacts);
    p.finish()?;
    let Some(c) = c else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        contacts,
        ..Details::default()
    };
    let request = c.request(SendKind::Exactly(MessageKind::Contact), None, None, details);
    Ok(accepted(s.messaging.send_message(&account, request).await?))
}

/// Contact cards from a request (`field` is the list's name in it).
pub(crate) fn contact_cards(
    p: &mut FieldErrors,
    field: &str,
    input: &[ContactInput],
) -> Vec<ContactCard> {
    if input.is_empty() || input.len() > MAX_CONTACTS {
        p.add(field, format!("must hold 1 to {MAX_CONTACTS} contacts"));
        return Vec::new();
    }
    input
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let number = p.check(phone(&c.phone, &format!("{field}[{i}].phone")))?;
            p.check(ContactCard::new(
                &c.name,
                number,
                &format!("{field}[{i}].name"),
            ))
        })
        .collect()
}

/// Sends a poll (single answer unless `multipleAnswers`).
#[utoipa::path(post, path = "/v1/developer/messages/send-poll", tag = "messages", security(("apiKey" = [])),
    request_body = SendPollRequest,
    responses((status = 202, body = MessageBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn send_poll(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<SendPollRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let c = common(
        &mut p,
        &req.device_uid,
        Target {
            to: req.to.as_deref(),
            group_id: req.group_id.as_deref(),
        },
        req.reply_to,
        req.client_message_id,
        req.send_at.as_deref(),
    );
    let poll = p.check(Poll::new(
        &req.question,
        &req.options,
        req.multiple_answers.unwrap_or(false),
    ));
    p.finish()?;
    let (Some(c), Some(poll)) = (c, poll) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let details = Details {
        poll: Some(poll),
        ..Details::default()
    };
    let request = c.request(SendKind::Exactly(MessageKind::Poll), None, None, details);
    Ok(accepted(s.messaging.send_message(&account, request).await?))
}
