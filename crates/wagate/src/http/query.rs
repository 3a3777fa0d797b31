//! Query strings and bodiless requests, held to the same standard as JSON bodies: every
//! failure is a 422 naming the parameter or field at fault.
//!
//! axum's `Query` reports `Failed to deserialize query string: invalid digit found in
//! string` without saying which parameter; the caller then has to guess. Deserialising
//! through `serde_path_to_error` names it (`limit: invalid digit found in string`).

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// The query string parsed as `T`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or("")).map(ApiQuery)
    }
}

/// Parses a query string as `T`, naming the parameter of any failure.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "query".to_owned()
        } else {
            path
        };
        ApiError::invalid(field, e.inner().to_string())
    })
}

/// A request that takes no body. An empty body, `null` or `{}` is fine; anything else is refused
/// like an unknown field of a JSON body, so a caller who thinks an option exists learns
/// that it does not instead of having it silently ignored.
#[derive(Debug)]
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid("body", e.body_text()))?;
        check_no_body(&bytes).map(|()| NoBody)
    }
}

fn check_no_body(bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Null) => Ok(()),
        Ok(serde_json::Value::Object(fields)) => match fields.keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::invalid(
                name.clone(),
                format!("unknown field `{name}`: this endpoint takes no body"),
            )),
        },
        _ => Err(ApiError::invalid(
            "body",
            "must be empty: this endpoint takes no body",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // Fields are read through Debug in failures only.
    struct Q {
        limit: Option<u32>,
        page: Option<u32>,
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let e = parse_query::<Q>("page=2&limit=ten").unwrap_err();
        assert_eq!(e.details[0].field, "limit", "{e:?}");
        assert!(parse_query::<Q>("page=2&limit=10").is_ok());
    }

    #[test]
    fn bodiless_endpoints_refuse_fields() {
        assert!(check_no_body(b"").is_ok());
        assert!(check_no_body(b" \n").is_ok());
        assert!(check_no_body(b"{}").is_ok());
        assert!(check_no_body(b"null").is_ok());
        let e = check_no_body(br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(e.details[0].field, "name");
        let e = check_no_body(b"hello").unwrap_err();
        assert_eq!(e.details[0].field, "body");
    }
}
