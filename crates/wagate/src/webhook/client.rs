//! The outbound HTTP client of webhook delivery, which must not become a way into the
//! network the server runs in (SSRF).
//!
//! A destination is vetted when it is configured (a literal or resolved internal address
//! is a 422) and again at every attempt: the host is resolved, every address must be
//! public unless `allow_private_urls`, and the connection is pinned to exactly those
//! addresses so a second DNS answer (rebinding) cannot redirect it. Redirects are never
//! followed: a 3xx is a failed attempt. The rule itself is [`crate::net::outbound`], the
//! same for media fetches.

use crate::net::outbound::{self, Refusal};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use url::{Host, Url};

/// Most bytes of a response kept in the attempt history.
const SNIPPET_BYTES: usize = 1024;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be an http(s) URL ({0})")]
    Invalid(String),
    /// The address (kept for the server's log) is internal; the caller is told only that
    /// it is not allowed, never what a name resolved to inside the server's network.
    #[error(
        "points at an address webhooks are not sent to (loopback, private, link-local or otherwise internal) unless allow_private_urls is set"
    )]
    Internal(String),
    #[error("could not be resolved ({0})")]
    Unresolved(String),
}

/// Parses and vets a destination as configured. A name that does not resolve yet is
/// accepted (it is checked again at every attempt); one that resolves inside is not.
pub async fn vet_configured(url: &str, allow_private: bool) -> Result<Url, UrlError> {
    let parsed = parse(url)?;
    match resolve(&parsed, allow_private).await {
        Ok(_) | Err(UrlError::Unresolved(_)) => Ok(parsed),
        Err(e) => Err(e),
    }
}

fn parse(url: &str) -> Result<Url, UrlError> {
    let u = Url::parse(url.trim()).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError::Invalid(format!(
            "{}: is not http or https",
            u.scheme()
        )));
    }
    if u.host().is_none() {
        return Err(UrlError::Invalid("it has no host".into()));
    }
    Ok(u)
}

async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
    let host = url
        .host()
        .ok_or_else(|| UrlError::Invalid("it has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| UrlError::Invalid("it has no port".into()))?;
    outbound::resolve(&host, port, allow_private)
        .await
        .map_err(|r| match r {
            Refusal::Unresolved(m) | Refusal::NoAddress(m) => UrlError::Unresolved(m),
            Refusal::Internal(m) => UrlError::Internal(m),
        })
}

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostOutcome {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub snippet: Option<String>,
    /// The receiver's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl PostOutcome {
    pub fn success(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Most destinations whose client (and its idle connections) is kept.
const MAX_CLIENTS: usize = 1024;

/// HTTP clients per vetted destination, so that deliveries to a receiver reuse its
/// keep-alive connections (and TLS sessions) instead of opening one per event. A client
/// is keyed by the host and the exact addresses it is pinned to: when DNS answers
/// differently, the new answer is vetted and gets a client of its own.
#[derive(Default)]
pub struct Clients {
    by_destination: std::sync::Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>,
}

impl Clients {
    fn for_destination(
        &self,
        url: &Url,
        addrs: &[SocketAddr],
    ) -> Result<reqwest::Client, reqwest::Error> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let key = (host, addrs.to_vec());
        let mut clients = self
            .by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let host = url.host().unwrap_or(Host::Domain(""));
        let client = outbound::pinned_client(&host, addrs, "webhooks", None)?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// POSTs `body` to `url` with `headers`, within `timeout` for the whole exchange.
pub async fn post(
    clients: &Clients,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
    allow_private: bool,
) -> PostOutcome {
    let started = Instant::now();
    let failed = |error: String, started: Instant| PostOutcome {
        status: None,
        latency_ms: elapsed_ms(started),
        error: Some(error),
        snippet: None,
        retry_after: None,
    };
    let parsed = match parse(url) {
        Ok(u) => u,
        Err(e) => return failed(format!("url {e}"), started),
    };
    let addrs = match resolve(&parsed, allow_private).await {
        Ok(a) => a,
        Err(e) => return failed(format!("url {e}"), started),
    };
    let client = match clients.for_destination(&parsed, &addrs) {
        Ok(c) => c,
        Err(e) => return failed(format!("no HTTP client: {e}"), started),
    };
    let mut request = client
        .post(parsed)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return failed(describe(e, timeout), started),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // The body counts against the same timeout; a receiver that answers and then
    // trickles its body forever still fails in time.
    let remaining = timeout.saturating_sub(started.elapsed());
    let snippet: Option<String> = tokio::time::timeout(remaining, read_snippet(response))
        .await
        .unwrap_or_default();
    PostOutcome {
        status: Some(status),
        latency_ms: elapsed_ms(started),
        error: None,
        snippet,
        retry_after,
    }
}

async fn read_snippet(mut response: reqwest::Response) -> Option<String> {
    let mut buf = Vec::new();
    while buf.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(SNIPPET_BYTES);
    (!buf.is_empty()).then(|| String::from_utf8_lossy(&buf).into_owned())
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// reqwest's error with its causes (see [`outbound::describe`]), with
/// the configured limit when it timed out.
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    outbound::describe(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_destinations_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://10.1.2.3/",
            "http://localhost:8080/",
        ] {
            assert!(
                matches!(vet_configured(url, false).await, Err(UrlError::Internal(_))),
                "{url}"
            );
            assert!(vet_configured(url, true).await.is_ok(), "{url}");
        }
        assert!(matches!(
            vet_configured("ftp://example.com/", false).await,
            Err(UrlError::Invalid(_))
        ));
        assert!(
            vet_configured("https://93.184.215.14/hook", false)
                .await
                .is_ok()
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        // A date ahead: the time until it (a second may tick between the two clocks).
        let ahead = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let d = parse_retry_after(&ahead).expect("a date ahead parses");
        assert!(
            (88..=90).contains(&d.as_secs()),
            "{ahead} is {d:?} away, not about 90 s"
        );
    }
}
