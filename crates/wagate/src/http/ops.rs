//! Operating endpoints: health, readiness, the OpenAPI document generated from the
//! handlers, and a readable reference page rendered from it (no external assets).

use super::megamsg::{self, InstanceSecurity};
use super::msgera;
use crate::service::Services;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "wagate", description = "Self-hosted WhatsApp gateway. The `/v1/developer/*` endpoints speak the Msgera dialect (X-API-Key): every successful JSON reply is `{\"ok\": true, \"data\": …}`, every error `{\"ok\": false, \"message\": …, \"code\": …}`, and JSON bodies must be sent with `Content-Type: application/json` (else 415)."),
    paths(
        msgera::devices::create_device, msgera::devices::list_devices, msgera::devices::get_device,
        msgera::devices::update_device, msgera::devices::delete_device, msgera::devices::rotate_token,
        msgera::linking::get_qr,
        msgera::linking::pair_code,
        msgera::linking::connect,
        msgera::linking::logout,
        msgera::messages::send_text, msgera::messages::send_media, msgera::messages::send_voice,
        msgera::structured::send_location, msgera::structured::send_contact, msgera::structured::send_poll,
        msgera::templates::send_template, msgera::templates::list_templates,
        msgera::actions::react, msgera::actions::edit, msgera::actions::delete, msgera::actions::vote,
        msgera::messages::check_whatsapp, msgera::messages::get_message, msgera::messages::list_messages,
        msgera::presence::set_presence, msgera::chats::read_chat,
        msgera::groups::list_groups, msgera::groups::get_group, msgera::groups::create_group,
        msgera::groups::change_participants, msgera::groups::leave_group, msgera::groups::invite_link,
        msgera::media::upload_media,
        msgera::inbound::list_inbound,
        msgera::keys::list_keys, msgera::keys::create_key, msgera::keys::revoke_key,
        msgera::sandbox::inbound,
        megamsg::messages::send_message,
        msgera::webhooks::put_webhooks, msgera::webhooks::get_webhooks, msgera::webhooks::rotate_secret,
        msgera::webhooks::put_instance_webhook, msgera::webhooks::history, msgera::webhooks::redeliver,
        msgera::events::stream_events, megamsg::webhook::set_webhook, megamsg::webhook::get_webhook,
        healthz, readyz,
    ),
    components(schemas(
        crate::webhook::payload::MsgeraMessageReceived, crate::webhook::payload::MsgeraMessageStatus,
        crate::webhook::payload::MsgeraDeviceStatus, crate::webhook::payload::MegaMessageReceived,
        crate::webhook::payload::MegaMessageStatus, crate::webhook::payload::MegaDeviceStatus,
    )),
    modifiers(&SecuritySchemes, &InstanceSecurity, &MsgeraReplies),
    tags(
        (name = "devices", description = "Linked WhatsApp devices"),
        (name = "messages", description = "Sending and message status"),
        (name = "media", description = "Files to send"),
        (name = "groups", description = "WhatsApp groups of a device: list, read, create, change members, leave, invite link. Send to a group with `groupId` on any send endpoint"),
        (name = "keys", description = "API keys"),
        (name = "sandbox", description = "The simulated network"),
        (name = "webhooks", description = "Webhook destinations, delivery history, redelivery and the live event stream. Payload schemas: MsgeraMessageReceived, MsgeraMessageStatus, MsgeraDeviceStatus, MegaMessageReceived, MegaMessageStatus, MegaDeviceStatus"),
        (name = "megamsg", description = "The MegaMsg-compatible instance API (`/api/whatsapp/*`, Bearer instance token + X-Instance-Id)"),
        (name = "ops", description = "Health and readiness"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Where the Msgera dialect lives: its replies go through `http::ok` and its JSON bodies
/// through `ApiJson`.
const MSGERA_PREFIX: &str = "/v1/developer/";

/// What the Msgera handlers' annotations leave out, added to every `/v1/developer/*`
/// operation so the document says what the server sends (the replies are the contract):
///
/// - every 2xx JSON reply is the envelope `{"ok": true, "data": …}` of what the handler
///   declares (`http::ok`), including the replies whose `data` is not a named type;
/// - a JSON request body sent without `Content-Type: application/json` is a 415, one over
///   the body limit a 413 (`ApiJson`);
/// - an unknown or malformed query parameter is a 422 (the query types deny unknown
///   fields);
/// - the QR code also comes as text/plain, SVG or PNG.
///
/// The MegaMsg dialect (`/api/whatsapp/*`) has no envelope and reads bodies whatever
/// their `Content-Type`, so it is left alone.
struct MsgeraReplies;

impl Modify for MsgeraReplies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with(MSGERA_PREFIX) {
                continue;
            }
            for (method, op) in operations_mut(item) {
                envelope_replies(method, path, op);
                if op
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"))
                {
                    add_error(
                        op,
                        "415",
                        "The body was not sent as JSON (`Content-Type: application/json`)",
                    );
                    add_error(op, "413", "The body is larger than the server accepts");
                }
                if op
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Query)
                {
                    add_error(op, "422", "An unknown or invalid query parameter");
                }
                if method == "get" && path == "/v1/developer/devices/{deviceUid}/qr" {
                    qr_formats(op);
                }
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// `{"ok": true, "data": data}`.
fn envelope(data: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(
            "ok",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([true]))
                .description(Some("Always `true`.")),
        )
        .required("ok")
        .property("data", data)
        .required("data")
        .into()
}

/// The `data` of the replies built with `serde_json::json!` rather than a named type.
fn untyped_data(method: &str, path: &str) -> Option<RefOr<Schema>> {
    let fields: &[(&str, Type)] = match (method, path) {
        ("delete", "/v1/developer/devices/{deviceUid}") => {
            &[("deviceUid", Type::String), ("deleted", Type::Boolean)]
        }
        ("post", "/v1/developer/devices/{deviceUid}/connect") => {
            &[("deviceUid", Type::String), ("connecting", Type::Boolean)]
        }
        ("post", "/v1/developer/devices/{deviceUid}/logout") => {
            &[("deviceUid", Type::String), ("loggedOut", Type::Boolean)]
        }
        ("delete", "/v1/developer/keys/{keyId}") => {
            &[("id", Type::String), ("revoked", Type::Boolean)]
        }
        ("post", "/v1/developer/sandbox/inbound") => &[
            ("deviceUid", Type::String),
            ("providerMessageId", Type::String),
        ],
        _ => return None,
    };
    let mut object = ObjectBuilder::new();
    for (name, ty) in fields {
        object = object
            .property(*name, ObjectBuilder::new().schema_type(ty.clone()))
            .required(*name);
    }
    Some(object.into())
}

fn envelope_replies(method: &str, path: &str, op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        if response.content.is_empty() {
            if let Some(data) = untyped_data(method, path) {
                response.content.insert(
                    "application/json".into(),
                    Content::new(Some(envelope(data))),
                );
            }
            continue;
        }
        if let Some(content) = response.content.get_mut("application/json")
            && let Some(data) = content.schema.take()
        {
            content.schema = Some(envelope(data));
        }
    }
}

/// Adds an error reply (the `ErrorBody` shape) unless `status` is documented already.
fn add_error(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error_reply(description).into());
}

fn error_reply(description: &str) -> DocResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

/// `?format=` or `Accept` chooses among JSON, text/plain, SVG and PNG.
fn qr_formats(op: &mut Operation) {
    if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
        let text = || {
            Content::new(Some(RefOr::from(
                ObjectBuilder::new().schema_type(Type::String),
            )))
        };
        ok.content.insert("text/plain".into(), text());
        ok.content.insert("image/svg+xml".into(), text());
        ok.content
            .insert("image/png".into(), Content::new(None::<RefOr<Schema>>));
    }
    if let Some(RefOr::T(invalid)) = op.responses.responses.get_mut("422") {
        invalid.description =
            "`format` is not json, raw, svg or png, or an unknown query parameter".into();
    }
}

pub fn router() -> Router<Services> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/metrics", get(super::metrics::metrics))
}

/// The reply of `/healthz` and `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// Always `true`.
    pub ok: bool,
    /// `alive` or `ready`.
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = HealthBody)))]
pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(HealthBody {
            ok: true,
            status: "alive",
        }),
    )
        .into_response()
}

/// The database can be read and can commit a write, so requests can be served. A read alone
/// is not enough: with SQLite in WAL mode reads go on while nothing can be committed.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Ready", body = HealthBody), (status = 503, description = "Not ready", body = crate::http::error::ErrorBody)))]
pub async fn readyz(State(s): State<Services>) -> Response {
    let failure = match s.ops.readiness().await {
        Ok(()) => {
            return (
                StatusCode::OK,
                axum::Json(HealthBody {
                    ok: true,
                    status: "ready",
                }),
            )
                .into_response();
        }
        Err(failure) => failure,
    };
    tracing::warn!(error = %failure, "readiness check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "ok": false, "message": format!("database unavailable: {failure}"), "code": "unavailable" })),
    )
        .into_response()
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Response {
    match openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => crate::http::error::ApiError::internal(e).into_response(),
    }
}

async fn docs_page() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
