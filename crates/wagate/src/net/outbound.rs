//! The one way the server opens HTTP connections to addresses someone else chose (webhook
//! destinations, media URLs of a send), so that neither becomes a way into the network the
//! server runs in (SSRF).
//!
//! The rule, the same for every caller: resolve the host, refuse it unless every address
//! is on the public internet (or private URLs are allowed), then connect through a client
//! pinned to exactly those addresses, so a second DNS answer (rebinding) cannot point the
//! connection elsewhere; no proxy and no automatic redirects (a caller that follows them
//! vets each hop again). Callers phrase refusals in their own words: a webhook
//! destination and a media URL are reported to different people.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::Host;

/// Why a host's addresses may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The name could not be resolved (the resolver's reason).
    Unresolved(String),
    /// It resolved to nothing.
    NoAddress(String),
    /// It resolves to an address that is not allowed: `name (address)` or the address,
    /// for the server's log; callers tell outsiders only that it is internal.
    Internal(String),
}

/// The addresses of `host` (a literal, or what DNS answers now).
pub async fn lookup(host: &Host<&str>, port: u16) -> Result<Vec<IpAddr>, Refusal> {
    Ok(match host {
        Host::Ipv4(ip) => vec![IpAddr::V4(*ip)],
        Host::Ipv6(ip) => vec![IpAddr::V6(*ip)],
        Host::Domain(domain) => {
            let mut ips: Vec<IpAddr> = tokio::net::lookup_host((*domain, port))
                .await
                .map_err(|e| Refusal::Unresolved(e.to_string()))?
                .map(|a| a.ip())
                .collect();
            ips.dedup();
            ips
        }
    })
}

/// The socket addresses to connect to, when every one of `ips` passes `allowed`: a name
/// that answers with a public and an internal address is refused outright rather than
/// trusted half-way.
pub fn vet(
    host: &Host<&str>,
    ips: Vec<IpAddr>,
    port: u16,
    allowed: impl Fn(IpAddr) -> bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    if ips.is_empty() {
        return Err(Refusal::NoAddress(format!("{host} has no address")));
    }
    if let Some(bad) = ips.iter().find(|ip| !allowed(**ip)) {
        return Err(Refusal::Internal(match host {
            Host::Domain(d) => format!("{d} ({bad})"),
            _ => bad.to_string(),
        }));
    }
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// [`lookup`] then [`vet`] against [`is_public`] (or anything, with `allow_private`).
pub async fn resolve(
    host: &Host<&str>,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refusal> {
    let ips = lookup(host, port).await?;
    vet(host, ips, port, |ip| allow_private || is_public(ip))
}

/// A client that connects to `host` only at the vetted `addrs`, through no proxy, and
/// follows no redirect; `purpose` ends its `User-Agent`.
pub fn pinned_client(
    host: &Host<&str>,
    addrs: &[SocketAddr],
    purpose: &str,
    connect_timeout: Option<Duration>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        // A proxy would connect somewhere other than the vetted address.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("wagate/{} {purpose}", env!("CARGO_PKG_VERSION")));
    if let Some(t) = connect_timeout {
        builder = builder.connect_timeout(t);
    }
    if let Host::Domain(domain) = host {
        // Connect only to the addresses vetted, never to a fresh DNS answer.
        builder = builder.resolve_to_addrs(domain, addrs);
    }
    builder.build()
}

/// reqwest's error with its causes, which say what actually went wrong (refused, reset…);
/// without the URL, which the caller knows (and which may carry credentials). Shared by
/// every outbound HTTP client of the server (media fetches, webhook deliveries).
pub fn describe(e: reqwest::Error) -> String {
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

    #[tokio::test]
    async fn every_answer_must_be_allowed() {
        let host = Host::Domain("example.test");
        let mixed = vec![ip("8.8.8.8"), ip("10.0.0.1")];
        assert_eq!(
            vet(&host, mixed, 80, is_public),
            Err(Refusal::Internal("example.test (10.0.0.1)".into()))
        );
        assert!(matches!(
            vet(&host, Vec::new(), 80, is_public),
            Err(Refusal::NoAddress(_))
        ));
        let literal = Host::<&str>::Ipv4("127.0.0.1".parse().unwrap());
        assert!(matches!(
            resolve(&literal, 80, false).await,
            Err(Refusal::Internal(_))
        ));
        assert_eq!(
            resolve(&literal, 80, true).await,
            Ok(vec!["127.0.0.1:80".parse().unwrap()])
        );
    }
}
