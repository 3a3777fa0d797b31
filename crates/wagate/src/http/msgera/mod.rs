//! The Msgera dialect: `/v1/developer/*` with `X-API-Key`, `{"ok": true, "data": …}`
//! replies, camelCase fields and strict bodies (unknown fields are rejected).

pub mod actions;
pub mod chats;
pub mod details;
pub mod devices;
pub mod events;
pub mod groups;
pub mod inbound;
pub mod keys;
pub mod linking;
pub mod media;
pub mod messages;
pub mod presence;
pub mod sandbox;
pub mod structured;
pub mod templates;
pub mod webhooks;

use crate::service::Services;
use axum::Router;
use axum::routing::{delete, get, post};

pub fn router() -> Router<Services> {
    Router::new()
        .route(
            "/v1/developer/devices",
            get(devices::list_devices).post(devices::create_device),
        )
        .route(
            "/v1/developer/devices/{device_uid}",
            get(devices::get_device)
                .patch(devices::update_device)
                .delete(devices::delete_device),
        )
        .route(
            "/v1/developer/devices/{device_uid}/token",
            post(devices::rotate_token),
        )
        .route(
            "/v1/developer/devices/{device_uid}/qr",
            get(linking::get_qr),
        )
        .route(
            "/v1/developer/devices/{device_uid}/pair-code",
            post(linking::pair_code),
        )
        .route(
            "/v1/developer/devices/{device_uid}/connect",
            post(linking::connect),
        )
        .route(
            "/v1/developer/devices/{device_uid}/logout",
            post(linking::logout),
        )
        .route(
            "/v1/developer/messages",
            get(messages::list_messages).post(messages::send_text),
        )
        .route("/v1/developer/messages/send", post(messages::send_text))
        .route(
            "/v1/developer/messages/send-media",
            post(messages::send_media),
        )
        .route(
            "/v1/developer/messages/send-voice",
            post(messages::send_voice),
        )
        .route(
            "/v1/developer/messages/send-location",
            post(structured::send_location),
        )
        .route(
            "/v1/developer/messages/send-contact",
            post(structured::send_contact),
        )
        .route(
            "/v1/developer/messages/send-poll",
            post(structured::send_poll),
        )
        .route(
            "/v1/developer/messages/send-template",
            post(templates::send_template),
        )
        .route(
            "/v1/developer/devices/{device_uid}/templates",
            get(templates::list_templates),
        )
        .route(
            "/v1/developer/messages/check-whatsapp",
            post(messages::check_whatsapp),
        )
        .route(
            "/v1/developer/messages/{message_id}",
            get(messages::get_message)
                .patch(actions::edit)
                .delete(actions::delete),
        )
        .route(
            "/v1/developer/messages/{message_id}/reaction",
            post(actions::react),
        )
        .route(
            "/v1/developer/messages/{message_id}/vote",
            post(actions::vote),
        )
        .route("/v1/developer/presence", post(presence::set_presence))
        .route("/v1/developer/chats/read", post(chats::read_chat))
        .route(
            "/v1/developer/groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route("/v1/developer/groups/{group_id}", get(groups::get_group))
        .route(
            "/v1/developer/groups/{group_id}/participants",
            post(groups::change_participants),
        )
        .route(
            "/v1/developer/groups/{group_id}/leave",
            post(groups::leave_group),
        )
        .route(
            "/v1/developer/groups/{group_id}/invite-link",
            get(groups::invite_link),
        )
        .route("/v1/developer/inbound", get(inbound::list_inbound))
        .route("/v1/developer/media/upload", post(media::upload_media))
        .route(
            "/v1/developer/keys",
            get(keys::list_keys).post(keys::create_key),
        )
        .route("/v1/developer/keys/{key_id}", delete(keys::revoke_key))
        .route("/v1/developer/sandbox/inbound", post(sandbox::inbound))
        .route(
            "/v1/developer/webhooks",
            get(webhooks::get_webhooks).put(webhooks::put_webhooks),
        )
        .route(
            "/v1/developer/webhooks/secret/rotate",
            post(webhooks::rotate_secret),
        )
        .route("/v1/developer/webhooks/history", get(webhooks::history))
        .route(
            "/v1/developer/webhooks/history/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route(
            "/v1/developer/devices/{device_uid}/instance-webhook",
            axum::routing::put(webhooks::put_instance_webhook),
        )
        .route("/v1/developer/events", get(events::stream_events))
}

use super::error::ApiError;
use wagate_core::DeviceUid;

/// A device uid from a body field: malformed is a 422 naming the field.
pub fn parse_device_uid(s: &str, field: &str) -> Result<DeviceUid, ApiError> {
    DeviceUid::parse(s).map_err(|_| {
        ApiError::invalid(
            field,
            "must be a device uid (dev_…) from GET /v1/developer/devices",
        )
    })
}

/// A device uid from the path: malformed cannot exist, so it is a 404.
pub fn path_device_uid(s: &str) -> Result<DeviceUid, ApiError> {
    DeviceUid::parse(s).map_err(|_| ApiError::not_found("device"))
}
