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
use bytes::{Bytes, BytesMut};
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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
        let mut builder = reqwest::Client::builder()
            // A proxy would make the connection somewhere other than the vetted address.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.options.connect_timeout)
            .user_agent(concat!(
                "wagate/",
                env!("CARGO_PKG_VERSION"),
                " media-fetch"
            ));
        if let Host::Domain(domain) = &host {
            // Connect only to the addresses vetted above, never to a fresh DNS answer.
            builder = builder.resolve_to_addrs(domain, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| FetchError::Unreachable(format!("no HTTP client: {e}")))?;
        client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(describe(e)))
    }

    /// The addresses to connect to for `host`, every one of them allowed.
    async fn resolve(&self, host: &Host<&str>, port: u16) -> Result<Vec<SocketAddr>, FetchError> {
        let ips: Vec<IpAddr> = match host {
            Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
            Host::Domain(domain) => self.lookup(domain, port).await?,
        };
        if ips.is_empty() {
            return Err(FetchError::Unreachable(format!("{host} has no address")));
        }
        // Every answer must be allowed: a name that answers with a public and an internal
        // address is refused outright rather than trusted half-way.
        if let Some(bad) = ips.iter().find(|ip| !self.allowed(**ip)) {
            tracing::info!(%host, address = %bad, "media URL refused: internal address");
            return Err(FetchError::Refused(match host {
                Host::Domain(d) => format!("{d} ({bad})"),
                _ => bad.to_string(),
            }));
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    async fn lookup(&self, domain: &str, port: u16) -> Result<Vec<IpAddr>, FetchError> {
        #[cfg(test)]
        if let Some(ips) = self.test_hosts.get(domain) {
            return Ok(ips.clone());
        }
        let answers = tokio::net::lookup_host((domain, port)).await.map_err(|e| {
            FetchError::Unreachable(format!("{domain} could not be resolved ({e})"))
        })?;
        let mut ips: Vec<IpAddr> = answers.map(|a| a.ip()).collect();
        ips.dedup();
        Ok(ips)
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        #[cfg(test)]
        if self.test_allowed.contains(&ip) {
            return true;
        }
        self.options.allow_private || is_public(ip)
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

/// reqwest's error with its causes, which say what actually went wrong (refused, reset…);
/// without the URL, which the caller knows (and which may carry credentials). Shared by
/// every outbound HTTP client of the server (media fetches, webhook deliveries).
pub(crate) fn describe(e: reqwest::Error) -> String {
    let connect = e.is_connect();
    let e = e.without_url();
    let mut text = if connect {
        "could not connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// IPv4 ranges that are not the public internet (RFC 6890 special-purpose registry).
/// Built in `const` so a malformed prefix fails the build instead of a request.
const NON_PUBLIC_V4: [Ipv4Net; 15] = [
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8), // "this network", unspecified
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8), // private
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10), // carrier-grade NAT
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8), // loopback
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, cloud metadata
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12), // private
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(192, 88, 99, 0), 24), // 6to4 relay anycast
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16), // private
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24), // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4), // multicast
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4), // reserved, broadcast
];

const NON_PUBLIC_V6: [Ipv6Net; 10] = [
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128),
    Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128),
    // IPv4-compatible (deprecated): never a real destination.
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 96),
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local NAT64
    Ipv6Net::new_assert(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),    // IETF, Teredo
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),     // unique local
    Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 9),     // link- and site-local
    Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),     // multicast
];

/// Whether `ip` is on the public internet: what may be fetched without
/// `allow_private_urls`. Addresses that embed an IPv4 address (mapped, NAT64, 6to4) are
/// judged by the embedded one, so `::ffff:127.0.0.1` is loopback.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !NON_PUBLIC_V4.iter().any(|n| n.contains(&v4)),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            !NON_PUBLIC_V6.iter().any(|n| n.contains(&v6))
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    // NAT64 well-known prefix 64:ff9b::/96: the last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    // 6to4 2002::/16: bits 16..48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
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

    #[test]
    fn internal_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:7f00:1::1",     // 6to4 of 127.0.0.1
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
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
