//! Signed, expiring links to media, so a webhook receiver can download a received file
//! without an API key: `GET /media/{mediaId}?expires=<unix seconds>&signature=<…>`.
//!
//! The signature is HMAC-SHA256 over `{mediaId}.{expires}` with a server key kept under
//! the data directory (made on first start), so links survive restarts and cannot be
//! forged or extended; a tampered, expired or foreign link is a 401.

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
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use std::path::{Path as FsPath, PathBuf};
use subtle::ConstantTimeEq;
use wagate_core::MediaId;
use wagate_core::store::StoreError;

const KEY_FILE: &str = "media-link.key";

/// The server key that signs media links.
#[derive(Clone)]
pub struct MediaLinkKey([u8; 32]);

impl std::fmt::Debug for MediaLinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaLinkKey(…)")
    }
}

impl MediaLinkKey {
    /// Reads the key under `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &FsPath) -> std::io::Result<Self> {
        let path: PathBuf = data_dir.join(KEY_FILE);
        if let Some(key) = Self::read(&path)? {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        // `create_new`: when two starters race, one writes and both read the winner's key.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(hex::encode(key).as_bytes())?;
                f.sync_all()?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(&path)?
                .ok_or_else(|| std::io::Error::other("media link key file is empty")),
            Err(e) => Err(e),
        }
    }

    fn read(path: &FsPath) -> std::io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                let bytes = hex::decode(s.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{} is not a 32-byte hex key",
                            path.display()
                        ))
                    })?;
                Ok(Some(Self(bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mac(&self, media: &str, expires: i64) -> Vec<u8> {
        // HMAC accepts any key length: a 32-byte key cannot be refused.
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(media.as_bytes());
        mac.update(b".");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// `{base}/media/{id}?expires=…&signature=…`.
    pub fn link(&self, base: &str, media: &str, expires: i64) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(media, expires));
        format!(
            "{}/media/{media}?expires={expires}&signature={sig}",
            base.trim_end_matches('/')
        )
    }

    pub fn verify(&self, media: &str, expires: i64, signature: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        bool::from(self.mac(media, expires).ct_eq(&given))
    }
}

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
    let key = MediaLinkKey::load_or_create(&s.config.data_dir).map_err(ApiError::internal)?;
    if !key.verify(&media_id, expires, &signature) {
        return Err(refused());
    }
    if expires < wagate_core::time::now().timestamp() {
        return Err(refused());
    }
    let id = MediaId::parse(&media_id).map_err(|_| ApiError::not_found("media"))?;
    let media = match s.store.get_media_by_id(&id).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(ApiError::not_found("media")),
        Err(e) => return Err(e.into()),
    };
    let data = match s.blobs.get(&id).await {
        Ok(d) => d,
        Err(crate::blob::BlobError::NotFound) => return Err(ApiError::not_found("media")),
        Err(e) => return Err(ApiError::internal(e)),
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
    fn links_verify_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let key = MediaLinkKey::load_or_create(dir.path()).unwrap();
        let again = MediaLinkKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.0, again.0, "the key persists");
        let link = key.link("http://x", "med_a", 100);
        let sig = link.split("signature=").nth(1).unwrap();
        assert!(key.verify("med_a", 100, sig));
        assert!(!key.verify("med_b", 100, sig));
        assert!(!key.verify("med_a", 101, sig));
        assert!(!key.verify("med_a", 100, "AAAA"));
    }

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
