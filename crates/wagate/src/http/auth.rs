//! Authentication of the developer API: `X-API-Key` names an account.

use super::error::ApiError;
use crate::service::Services;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use wagate_core::AccountId;

/// The account whose API key signed the request.
#[derive(Debug, Clone)]
pub struct ApiKeyAccount(pub AccountId);

impl FromRequestParts<Services> for ApiKeyAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        // Set only by the dashboard's proxy after it verified a session (never by a client).
        if let Some(account) = parts.extensions.get::<ApiKeyAccount>() {
            return Ok(account.clone());
        }
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        match services.accounts.authenticate(key).await? {
            Some(account) => Ok(Self(account)),
            None => Err(ApiError::unauthorized()),
        }
    }
}
