//! Signed, expiring links to media, so a webhook receiver can download a received file
//! without an API key: `GET /media/{mediaId}?expires=<unix seconds>&signature=<…>`.
//!
//! The signature is HMAC-SHA256 over `{mediaId}.{expires}` with the server key of
//! [`crate::keys`] (read once at start), so links survive restarts and cannot be forged
//! or extended; a tampered, expired or foreign link is a 401. Checking the link and
//! reading the file is `MediaService::open_link`; this module shapes the download.

use crate::http::error::{ApiError, ApiResult};
use crate::http::query::ApiQuery;
use crate::service::Services;
use axum::Router;
use axum::extract::Request;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

/// The key moved to [`crate::keys`] (the webhook dispatcher signs links too); named here
/// as well for the callers that know it by its old place.
pub use crate::keys::MediaLinkKey;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/media/{media_id}", get(download))
        .route_layer(axum::middleware::from_fn(harden))
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    expires: Option<i64>,
    signature: Option<String>,
}

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "This media link is invalid or has expired.",
    )
}

/// Downloads a received media file through a link the server signed.
pub async fn download(
    State(s): State<Services>,
    Path(media_id): Path<String>,
    ApiQuery(q): ApiQuery<LinkQuery>,
) -> ApiResult<Response> {
    let (Some(expires), Some(signature)) = (q.expires, q.signature) else {
        return Err(refused());
    };
    let Some((media, data)) = s.media.open_link(&media_id, expires, &signature).await? else {
        return Err(refused());
    };
    let mut response = (StatusCode::OK, data).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&media.mime_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let inline = wagate_core::content_type::is_inline_safe(&media.mime_type);
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(inline, media.file_name.as_deref()),
    );
    // Links are capabilities for one reader; shared caches must not keep the file.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(response)
}

/// Headers on every answer of the media route, errors included: whatever the bytes are,
/// the browser must neither guess a type nor run anything as a page of this origin.
pub async fn harden(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MEDIA_CSP),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-site"),
    );
    response
}

/// A sandboxed document with nothing allowed: even if a browser rendered a file as a
/// page, it would have a unique origin and load and run nothing.
pub const MEDIA_CSP: &str = "sandbox; default-src 'none'";

/// `inline` or `attachment`, with the file name as an ASCII fallback and an RFC 5987
/// `filename*` for the rest. A sender chooses the name: quotes, backslashes, control and
/// bidi characters and path separators never reach the header as they are.
fn content_disposition(inline: bool, name: Option<&str>) -> HeaderValue {
    let disposition = if inline { "inline" } else { "attachment" };
    let name = name
        .map(wagate_core::text::neutralise_file_name)
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return HeaderValue::from_static(if inline { "inline" } else { "attachment" });
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(&name, RFC5987).to_string();
    HeaderValue::from_str(&format!(
        "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Everything but RFC 5987's `attr-char` is percent-encoded.
const RFC5987: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_break_the_header() {
        let v = content_disposition(false, Some("a\"b\\c\r\nX-Evil: 1.html"));
        let v = v.to_str().unwrap();
        assert!(v.starts_with("attachment; filename=\""), "{v}");
        assert!(
            !v.contains('\r') && !v.contains('\n') && !v.contains("\\"),
            "{v}"
        );
        assert_eq!(v.matches('"').count(), 2, "{v}");
        let v = content_disposition(true, Some("\u{202e}gpj.exe"));
        assert!(
            v.to_str()
                .unwrap()
                .starts_with("inline; filename=\"gpj.exe\""),
            "{v:?}"
        );
        let v = content_disposition(false, Some("../../etc/passwd"));
        assert!(!v.to_str().unwrap().contains('/'), "{v:?}");
        assert_eq!(content_disposition(true, None), "inline");
        let v = content_disposition(false, Some("résumé.pdf"));
        assert!(
            v.to_str()
                .unwrap()
                .contains("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
            "{v:?}"
        );
    }
}
