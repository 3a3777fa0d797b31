//! API keys of the calling account: list (prefix only), create (secret shown once),
//! revoke. Two may be active at once, for rotation.

use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::ok;
use crate::http::query::NoBody;
use crate::service::Services;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use wagate_core::ApiKeyId;
use wagate_core::account::ApiKey;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyBody {
    pub id: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The whole key: only in the reply that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl ApiKeyBody {
    pub fn from_key(k: &ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            prefix: k.prefix.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            api_key: None,
        }
    }
}

/// Lists the account's API keys (never their secrets).
#[utoipa::path(get, path = "/v1/developer/keys", tag = "keys", security(("apiKey" = [])),
    responses((status = 200, body = Vec<ApiKeyBody>), (status = 401, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
) -> ApiResult<Response> {
    let keys = s.accounts.list_keys(&account).await?;
    Ok(ok(
        StatusCode::OK,
        keys.iter().map(ApiKeyBody::from_key).collect::<Vec<_>>(),
    ))
}

/// Creates a key (at most two active); the reply is the only time the secret is shown.
#[utoipa::path(post, path = "/v1/developer/keys", tag = "keys", security(("apiKey" = [])),
    responses((status = 201, body = ApiKeyBody), (status = 401, body = ErrorBody), (status = 409, description = "Two keys are already active", body = ErrorBody)))]
pub async fn create_key(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    _: NoBody,
) -> ApiResult<Response> {
    let issued = s.accounts.create_key(&account).await?;
    let mut body = ApiKeyBody::from_key(&issued.key);
    body.api_key = Some(issued.secret);
    Ok(ok(StatusCode::CREATED, body))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/v1/developer/keys/{keyId}", tag = "keys", security(("apiKey" = [])),
    params(("keyId" = String, Path)),
    responses((status = 200, description = "Revoked"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(id): Path<String>,
    _: NoBody,
) -> ApiResult<Response> {
    let id = ApiKeyId::parse(&id).map_err(|_| ApiError::not_found("API key"))?;
    s.accounts.revoke_key(&account, &id).await?;
    Ok(ok(
        StatusCode::OK,
        serde_json::json!({ "id": id.to_string(), "revoked": true }),
    ))
}
