//! Fetching media that a send names by URL, without becoming a way into the network the
//! server runs in (SSRF).
//!
//! A caller may name any URL, so every hop is resolved here, each address is vetted (no
//! loopback, private, link-local, unspecified, multicast or otherwise non-public range
//! unless private URLs are allowed), and the HTTP client is pinned to exactly the vetted
//! addresses: a second DNS answer (rebinding) cannot point the connection anywhere else.
//! Redirects are followed by hand so each hop is vetted the same way, and the body is
//! capped while it streams, so a lying `Content-Length` cannot fill memory.

use crate::config::Config;
use crate::net::outbound::{self, Refusal, describe};
use bytes::{Bytes, BytesMut};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use url::{Host, Url};
use wagate_core::media::MAX_MEDIA_BYTES;

/// Most redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub max_bytes: usize,
    pub connect_timeout: Duration,
    /// For the whole fetch, every redirect included.
    pub timeout: Duration,
    /// Fetch from internal addresses too (`allow_private_urls`).
    pub allow_private: bool,
}

impl FetchOptions {
    pub fn from_config(c: &Config) -> Self {
        let max = usize::try_from(c.media_fetch.max_bytes).unwrap_or(usize::MAX);
        Self {
            // Nothing larger could be sent anyway.
            max_bytes: max.min(MAX_MEDIA_BYTES),
            connect_timeout: Duration::from_millis(c.media_fetch.connect_timeout_ms),
            timeout: Duration::from_millis(c.media_fetch.timeout_ms),
            allow_private: c.allow_private_urls,
        }
    }
}

/// A fetched file.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub data: Bytes,
    /// What the server said it is (may be wrong: the content decides).
    pub content_type: Option<String>,
    /// Where it was finally fetched from, after redirects.
    pub url: Url,
}

/// Why a URL could not be fetched. Messages read after the field name (`media: …`): they
/// go back to the caller who chose the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("is not a valid http(s) URL ({0})")]
    InvalidUrl(String),
    /// The address (kept for the server's log) is internal. The caller is told only that
    /// it is not allowed: what a name resolves to inside the server's network is not
    /// theirs to learn.
    #[error(
        "points at an address this server does not fetch from (loopback, private, link-local or otherwise internal)"
    )]
    Refused(String),
    #[error("could not be fetched: {0}")]
    Unreachable(String),
    #[error("could not be fetched: the server answered HTTP {0}")]
    Status(u16),
    #[error("is larger than the {0}-byte limit for media")]
    TooLarge(usize),
    #[error("could not be fetched within {0} ms")]
    Timeout(u128),
    #[error("redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects,
    #[error("is empty")]
    Empty,
}

/// Fetches media by URL under [`FetchOptions`].
#[derive(Debug, Clone)]
pub struct RemoteMedia {
    options: FetchOptions,
    /// Tests stand in for DNS with fixed answers.
    #[cfg(test)]
    test_hosts: std::collections::HashMap<String, Vec<IpAddr>>,
    /// Tests allow their own loopback server while every other internal address stays refused.
    #[cfg(test)]
    test_allowed: Vec<IpAddr>,
}

impl RemoteMedia {
    pub fn new(options: FetchOptions) -> Self {
        Self {
            options,
            #[cfg(test)]
            test_hosts: Default::default(),
            #[cfg(test)]
            test_allowed: Vec::new(),
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(FetchOptions::from_config(config))
    }

    /// Fetches `url`, following up to [`MAX_REDIRECTS`] redirects, within the timeout.
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        let url = Url::parse(url.trim()).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
        match tokio::time::timeout(self.options.timeout, self.fetch_following(url)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.options.timeout.as_millis())),
        }
    }

    async fn fetch_following(&self, mut url: Url) -> Result<Fetched, FetchError> {
        for _ in 0..=MAX_REDIRECTS {
            let response = self.request(&url).await?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        FetchError::Unreachable(format!(
                            "the server answered HTTP {} without a Location",
                            status.as_u16()
                        ))
                    })?;
                url = url.join(location).map_err(|e| {
                    FetchError::Unreachable(format!("it redirected to an invalid URL ({e})"))
                })?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            return self.read_body(url, response).await;
        }
        Err(FetchError::TooManyRedirects)
    }

    /// One hop: vet the URL and its addresses, then GET it with the client pinned to them.
    async fn request(&self, url: &Url) -> Result<reqwest::Response, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl(format!(
                "only http and https are fetched, not {}:",
                url.scheme()
            )));
        }
        let host = url
            .host()
            .ok_or_else(|| FetchError::InvalidUrl("it has no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::InvalidUrl("it has no port".into()))?;
        let addrs = self.resolve(&host, port).await?;
        let client = outbound::pinned_client(
            &host,
            &addrs,
            "media-fetch",
            Some(self.options.connect_timeout),
        )
        .map_err(|e| FetchError::Unreachable(format!("no HTTP client: {e}")))?;
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(describe(e)))
    }

    /// The addresses to connect to for `host`, every one of them allowed.
    async fn resolve(&self, host: &Host<&str>, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
        let ips = self.lookup(host, port).await?;
        outbound::vet(host, ips, port, |ip| self.allowed(ip)).map_err(|r| match r {
            Refusal::Internal(what) => {
                tracing::info!(%host, refused = %what, "media URL refused: internal address");
                FetchError::Refused(what)
            }
            Refusal::NoAddress(m) | Refusal::Unresolved(m) => FetchError::Unreachable(m),
        })
    }

    async fn lookup(&self, host: &Host<&str>, port: u16) -> Result<Vec<IpAddr>, FetchError> {
        #[cfg(test)]
        if let Host::Domain(domain) = host
            && let Some(ips) = self.test_hosts.get(*domain)
        {
            return Ok(ips.clone());
        }
        outbound::lookup(host, port).await.map_err(|r| match r {
            Refusal::Unresolved(e) => {
                FetchError::Unreachable(format!("{host} could not be resolved ({e})"))
            }
            Refusal::NoAddress(m) | Refusal::Internal(m) => FetchError::Unreachable(m),
        })
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        #[cfg(test)]
        if self.test_allowed.contains(&ip) {
            return true;
        }
        self.options.allow_private || outbound::is_public(ip)
    }

    async fn read_body(
        &self,
        url: Url,
        mut response: reqwest::Response,
    ) -> Result<Fetched, FetchError> {
        let limit = self.options.max_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(FetchError::TooLarge(limit));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut data = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Unreachable(describe(e)))?
        {
            if data.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge(limit));
            }
            data.extend_from_slice(&chunk);
        }
        if data.is_empty() {
            return Err(FetchError::Empty);
        }
        Ok(Fetched {
            data: data.freeze(),
            content_type,
            url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn options() -> FetchOptions {
        FetchOptions {
            max_bytes: 1024,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            allow_private: false,
        }
    }

    /// A local server: `/file` serves bytes, `/to?u=…` redirects there, `/loop` forever.
    async fn server() -> SocketAddr {
        async fn to(
            axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
        ) -> impl IntoResponse {
            let mut h = HeaderMap::new();
            h.insert(header::LOCATION, q[0].1.parse().unwrap());
            (StatusCode::FOUND, h)
        }
        let app = Router::new()
            .route(
                "/file",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "hello") }),
            )
            .route("/big", get(|| async { vec![b'x'; 4096] }))
            .route("/to", get(to))
            .route(
                "/loop",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// Refuses everything internal except the test server's own address, and answers
    /// `public.test` (as DNS would) with that address.
    fn fetcher() -> RemoteMedia {
        let mut f = RemoteMedia::new(options());
        f.test_allowed = vec![ip("127.0.0.1")];
        f.test_hosts
            .insert("public.test".into(), vec![ip("127.0.0.1")]);
        f.test_hosts
            .insert("rebound.test".into(), vec![ip("10.0.0.7")]);
        f.test_hosts.insert(
            "mixed.test".into(),
            vec![ip("127.0.0.1"), ip("192.168.0.1")],
        );
        f
    }

    #[tokio::test]
    async fn connects_only_to_the_vetted_addresses() {
        let addr = server().await;
        // `public.test` exists only in our resolver: the connection reaching the server
        // proves the client used the vetted answer rather than asking DNS again.
        let got = fetcher()
            .fetch(&format!("http://public.test:{}/file", addr.port()))
            .await
            .unwrap();
        assert_eq!(&got.data[..], b"hello");
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
        let err = fetcher()
            .fetch(&format!("http://mixed.test:{}/file", addr.port()))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Refused(_)), "{err}");
    }

    #[tokio::test]
    async fn each_redirect_is_vetted_again() {
        let addr = server().await;
        let port = addr.port();
        let allowed = format!("http://public.test:{port}/file");
        let got = fetcher()
            .fetch(&format!("http://public.test:{port}/to?u={allowed}"))
            .await
            .unwrap();
        assert_eq!(got.url.as_str(), allowed);
        for target in [
            format!("http://127.0.0.2:{port}/file"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            format!("http://rebound.test:{port}/file"),
            format!("http://[::1]:{port}/file"),
        ] {
            let err = fetcher()
                .fetch(&format!("http://public.test:{port}/to?u={target}"))
                .await
                .unwrap_err();
            assert!(matches!(err, FetchError::Refused(_)), "{target}: {err}");
        }
        let err = fetcher()
            .fetch(&format!(
                "http://public.test:{port}/to?u=file:///etc/passwd"
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::InvalidUrl(_)), "{err}");
        let err = fetcher()
            .fetch(&format!("http://public.test:{port}/loop"))
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::TooManyRedirects);
    }

    #[tokio::test]
    async fn bodies_are_capped() {
        let addr = server().await;
        let err = fetcher()
            .fetch(&format!("http://public.test:{}/big", addr.port()))
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::TooLarge(1024));
    }
}
