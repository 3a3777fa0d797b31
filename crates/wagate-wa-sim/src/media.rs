//! The fake media CDN: `media_conn` hands out one made-up host, and [`SimHttpClient`] (the
//! client's `HttpClient`) serves that host in-process.
//!
//! Blobs are stored exactly as uploaded (already encrypted by the client), so a download by
//! another client exercises the real decrypt and MAC/SHA checks.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use bytes::Bytes;
use tracing::{debug, warn};
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::Shared;

/// The CDN host name clients are told to use. `.invalid` so nothing can ever resolve it.
pub const MEDIA_HOST: &str = "mmg.sim.invalid";

pub(crate) fn media_conn_node() -> Node {
    NodeBuilder::new("media_conn")
        .attr("auth", "sim-media-auth")
        .attr("ttl", "3600")
        .attr("auth_ttl", "3600")
        .attr("max_buckets", "12")
        .children([NodeBuilder::new("host")
            .attr("hostname", MEDIA_HOST)
            .build()])
        .build()
}

/// An `HttpClient` that answers the simulator's CDN host in-process. Anything else gets a 404
/// (it must not be an `Err`: the client treats non-2xx as answers and errors as dead hosts).
/// Pass it to `BotBuilder::with_http_client`; use `with_version(..)` on the builder too, so the
/// client does not try to fetch the WhatsApp Web version.
#[derive(Clone)]
pub struct SimHttpClient {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SimHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimHttpClient")
    }
}

fn path_of(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let path = path.split('?').next().unwrap_or(path);
    Some((host, path))
}

fn status(code: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
    HttpResponse {
        status_code: code,
        body: body.into(),
    }
}

#[async_trait]
impl HttpClient for SimHttpClient {
    async fn execute(&self, request: HttpRequest) -> Result<HttpResponse> {
        let Some((host, path)) = path_of(&request.url) else {
            warn!(url = %request.url, "unparseable URL");
            return Ok(status(400, "bad url"));
        };
        if host != MEDIA_HOST {
            warn!(url = %request.url, "HTTP request to a host the simulator does not serve");
            return Ok(status(404, "not simulated"));
        }
        match request.method.as_str() {
            // Upload: POST /mms/<type>/<token>. The blob gets a fresh direct path.
            "POST" if path.starts_with("/mms/") => {
                let body = request.body.unwrap_or_default();
                let mut world = self.shared.lock();
                let n = world.next_counter();
                let kind = path
                    .trim_start_matches("/mms/")
                    .split('/')
                    .next()
                    .unwrap_or("file");
                let direct_path = format!("/v/t62.sim-{kind}/{n}.enc");
                debug!(%direct_path, bytes = body.len(), "media uploaded");
                world.media.insert(direct_path.clone(), body);
                drop(world);
                let url = format!("https://{MEDIA_HOST}{direct_path}");
                Ok(status(
                    200,
                    format!(r#"{{"url":"{url}","direct_path":"{direct_path}"}}"#),
                ))
            }
            "GET" => {
                let blob: Option<Bytes> = self.shared.lock().media.get(path).cloned();
                Ok(match blob {
                    Some(b) => status(200, b.to_vec()),
                    None => status(404, "no such media"),
                })
            }
            other => {
                warn!(method = other, url = %request.url, "unsimulated CDN request");
                Ok(status(405, "not simulated"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_of;

    #[test]
    fn urls_split_into_host_and_path_without_query() {
        assert_eq!(
            path_of("https://mmg.sim.invalid/mms/image/abc?auth=x&token=y"),
            Some(("mmg.sim.invalid", "/mms/image/abc"))
        );
        assert_eq!(path_of("https://host"), None);
        assert_eq!(path_of("ftp://host/x"), None);
    }
}
