//! Request bodies: strict JSON whose every failure is a 422 naming the field.
//!
//! Bodies are deserialised with `deny_unknown_fields` types through
//! `serde_path_to_error`, so an unknown property, a missing one or a wrong type all come
//! back as `{"field": …, "message": …}` instead of serde's bare text.

use super::error::{ApiError, FieldError};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let essence = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with Content-Type: application/json.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("The request body is too large.")
            } else {
                ApiError::invalid("body", e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, turning serde's errors into field errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid_fields(vec![field_error(&path, e.inner())])
    })?;
    de.end()
        .map_err(|e| ApiError::invalid_fields(vec![field_error(".", &e)]))?;
    Ok(value)
}

fn field_error(path: &str, e: &serde_json::Error) -> FieldError {
    let text = e.to_string();
    // serde's messages end with " at line L column C"; the field path says more.
    let message = match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text.clone(),
    };
    if e.is_syntax() || e.is_eof() {
        return FieldError {
            field: "body".into(),
            message: format!("is not valid JSON ({message})"),
        };
    }
    let named = |marker: &str| {
        message
            .strip_prefix(marker)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let join = |parent: &str, name: &str| {
        if parent == "." || parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = named("unknown field `") {
        // serde_path_to_error's path already ends with the unknown key.
        let field = if path == "." || path.is_empty() {
            name
        } else {
            path.to_owned()
        };
        return FieldError {
            field,
            message: "is not a known field".into(),
        };
    }
    if let Some(name) = named("missing field `") {
        return FieldError {
            field: join(path, &name),
            message: "is required".into(),
        };
    }
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    FieldError { field, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        device_uid: String,
        numbers: Vec<String>,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        a: u32,
    }

    fn err(json: &str) -> FieldError {
        parse_json::<Body>(json.as_bytes())
            .unwrap_err()
            .details
            .remove(0)
    }

    #[test]
    fn names_unknown_missing_and_mistyped_fields() {
        assert_eq!(
            err(r#"{"deviceUid":"d","numbers":[],"bogus":1}"#).field,
            "bogus"
        );
        assert_eq!(err(r#"{"numbers":[]}"#).field, "deviceUid");
        assert_eq!(err(r#"{"deviceUid":5,"numbers":[]}"#).field, "deviceUid");
        assert_eq!(
            err(r#"{"deviceUid":"d","numbers":["a",3]}"#).field,
            "numbers[1]"
        );
        assert_eq!(
            err(r#"{"deviceUid":"d","numbers":[],"nested":{"b":1}}"#).field,
            "nested.b"
        );
        assert_eq!(
            err(r#"{"deviceUid":"d","numbers":[],"nested":{}}"#).field,
            "nested.a"
        );
        assert_eq!(err(r#"{"deviceUid":"d""#).field, "body");
        assert_eq!(err("[]").field, "body");
    }
}
