//! What every response carries, whichever route (or none) answered it: baseline security
//! headers, and the JSON error envelope even for the errors axum produces itself (405,
//! path and body-limit rejections, unknown routes inside the dashboard's proxy), which
//! come as empty or plain-text bodies.
//!
//! Headers are only added when absent, so a route with a stricter policy (the media link
//! sets its own `Content-Security-Policy`) keeps it.

use super::error::ApiError;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::set_header::SetResponseHeaderLayer;

/// `no-referrer` rather than `strict-origin-when-cross-origin`: wagate has no use for the
/// header (CSRF is checked by token, not by `Referer`), and signed media links carry their
/// signature in the query string, which must not travel anywhere.
const REFERRER_POLICY: &str = "no-referrer";
/// Nothing wagate serves is meant to be framed; on the dashboard this stops clickjacking.
/// `X-Frame-Options` is for browsers that predate `frame-ancestors`.
const FRAME_CSP: &str = "frame-ancestors 'none'";

/// The headers and their values, in the order they are added.
fn baseline() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static(REFERRER_POLICY),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(FRAME_CSP),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// Adds the baseline headers a response lacks; for replies made outside the router (the
/// serve loop's 408, 431 and 503).
pub fn add_baseline(headers: &mut HeaderMap) {
    for (name, value) in baseline() {
        headers.entry(name).or_insert(value);
    }
}

/// Wraps the whole application (routes and fallback).
pub fn apply(router: Router) -> Router {
    let mut router = router.layer(middleware::from_fn(json_errors));
    for (name, value) in baseline() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router
}

/// Rewrites an error reply without a JSON (or HTML) body into the envelope, keeping its
/// status and headers (`Allow` on a 405, `Retry-After`).
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/plain")
        }),
    };
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's rejection texts are a line or two; anything longer is cut, not buffered.
    let text = axum::body::to_bytes(body, 4 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let message = if status.is_server_error() || text.is_empty() {
        // A 5xx's text may describe internals; say only what the status says.
        format!("{}.", status.canonical_reason().unwrap_or("Error"))
    } else {
        text
    };
    let mut replaced = ApiError::new(status, code(status), message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().append(name, value.clone());
        }
    }
    replaced
}

fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    }
}
