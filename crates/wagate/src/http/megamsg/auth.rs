//! Instance authentication: `Authorization: Bearer <instance token>` plus `X-Instance-Id:
//! <deviceUid>`, checked by `AccountService::authenticate_instance` (only the token's
//! SHA-256 is stored, and it is compared in constant time).
//!
//! Every failure (a header missing, a malformed or unknown instance id, a wrong or
//! rotated-away token, a token of another instance) is the same 401, so the answer tells
//! a prober nothing about which part was wrong.

use crate::http::error::ApiError;
use crate::service::Services;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use wagate_core::DeviceUid;
use wagate_core::device::Device;

/// The device (instance) whose credentials signed the request.
#[derive(Debug, Clone)]
pub struct Instance(pub Device);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<Services> for Instance {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let uid = parts
            .headers
            .get("x-instance-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .and_then(|v| DeviceUid::parse(v).ok())
            .ok_or_else(ApiError::unauthorized)?;
        match services.accounts.authenticate_instance(&uid, token).await? {
            Some(device) => Ok(Self(device)),
            None => Err(ApiError::unauthorized()),
        }
    }
}
