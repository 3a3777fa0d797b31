//! The HTTP server's own limits, tried with real slow clients over raw sockets: header,
//! body and idle timeouts, the bound on connections, the budget of request bodies in
//! flight, the JSON envelope on errors axum or hyper-side checks produce, and the
//! baseline security headers.

use crate::support::{TestApp, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; the time it took, or a panic past
/// `within`.
async fn wait_closed(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {within:?}"),
        }
    }
}

/// A reply read whole off a raw socket (the server closes after it).
struct RawReply {
    status: u16,
    head: String,
    body: Value,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Reads one reply: its head, then as many body bytes as it declares (the server may go
/// on reading a refused body before it closes, so EOF is not awaited).
async fn read_reply(stream: &mut TcpStream, within: Duration) -> RawReply {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if let Some(length) = length
                && body.len() >= length
            {
                break;
            }
        }
        match timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "no complete reply in time: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP reply: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    RawReply {
        status,
        head: head.to_owned(),
        body,
    }
}

fn assert_envelope(reply: &RawReply, status: u16) {
    assert_eq!(reply.status, status, "{}\n{}", reply.head, reply.body);
    assert_eq!(reply.body["ok"], false, "{}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{}",
        reply.head
    );
}

#[tokio::test]
async fn half_sent_headers_are_cut_off_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_timeout_ms = 300;
        c.http.idle_timeout_ms = 60_000;
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wagate\r\n")
        .await
        .unwrap();
    let took = wait_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");

    // Trickling bytes does not extend the deadline: it counts from the opening.
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "a trickling client kept its connection for 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.http.header_timeout_ms = 60_000;
        c.http.idle_timeout_ms = 300;
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: wagate\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"ok\"") {
        let n = timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("no reply")
            .unwrap();
        assert!(n > 0, "closed before replying");
        got.extend_from_slice(&buf[..n]);
    }
    let took = wait_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[tokio::test]
async fn idle_sockets_past_the_bound_make_room_and_healthz_still_answers() {
    let app = TestApp::spawn_with(|c| {
        // Timeouts far beyond the test: only the bound can free slots.
        c.http.header_timeout_ms = 60_000;
        c.http.idle_timeout_ms = 60_000;
        c.http.max_connections = 8;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let response = fresh
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz did not answer behind 40 idle sockets");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The server holds at most 8 connections: the idle sockets beyond were closed.
    let closed = eventually("idle sockets closed down to the bound", || {
        let closed = idle
            .iter()
            .filter(|s| {
                let mut buf = [0u8; 1];
                !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        async move { (closed >= 40 - 8).then_some(closed) }
    })
    .await;
    assert!(closed >= 32, "{closed}");
}

const BOUNDARY: &str = "wagateboundary";

fn upload_head(key: &str, content_length: usize) -> String {
    format!(
        "POST /v1/developer/media/upload HTTP/1.1\r\nHost: wagate\r\nX-API-Key: {key}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

fn multipart(file: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn a_slow_body_is_answered_408_in_the_json_envelope() {
    let app = TestApp::spawn_with(|c| c.http.body_timeout_ms = 400).await;
    let body = multipart(&[1u8; 50_000]);
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(upload_head(&app.key, body.len()).as_bytes())
        .await
        .unwrap();
    stream.write_all(&body[..1_000]).await.unwrap();
    let started = Instant::now();
    let reply = read_reply(&mut stream, Duration::from_secs(10)).await;
    assert_envelope(&reply, 408);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.body["code"], "request_timeout");
    assert_eq!(reply.header("connection").as_deref(), Some("close"));
}

#[tokio::test]
async fn bodies_past_the_in_flight_budget_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.http.max_body_bytes_in_flight = 64 * 1024).await;
    let url = format!("{}/v1/developer/media/upload", app.base);
    let small = multipart(&[2u8; 10_000]);
    let upload = |body: reqwest::Body| {
        app.client
            .post(&url)
            .header("X-API-Key", &app.key)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
    };
    // A body that could never fit: 413.
    let reply = raw(&app, upload_head(&app.key, 100_000).as_bytes()).await;
    assert_envelope(&reply, 413);

    // With the budget free, a small upload goes through.
    let response = upload(small.clone().into()).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // A slow client declares 60 KB and sends a little of it: its 60 KB stay reserved.
    let held = multipart(&[1u8; 60_000]);
    let mut slow = TcpStream::connect(addr(&app)).await.unwrap();
    slow.write_all(upload_head(&app.key, held.len()).as_bytes())
        .await
        .unwrap();
    slow.write_all(&held[..100]).await.unwrap();

    // A declared length past what is left: 503 before the body is read.
    let response = eventually("a 503 for a declared length", || async {
        let r = upload(small.clone().into()).await.unwrap();
        (r.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(r)
    })
    .await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "2"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["code"], "server_busy", "{body}");

    // A chunked body (no length declared) is counted as it arrives: 503 too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        small.chunks(1_000).map(|c| Ok(c.to_vec())).collect();
    let response = upload(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ok"], false, "{body}");

    // The slow client goes away: its reservation is released.
    drop(slow);
    eventually("the budget released", || async {
        let r = upload(small.clone().into()).await.unwrap();
        (r.status() == StatusCode::CREATED).then_some(())
    })
    .await;
}

async fn raw(app: &TestApp, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr(app)).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_reply(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test]
async fn every_error_is_the_json_envelope() {
    let app = TestApp::spawn().await;
    let key = app.key.clone();

    // 405, keeping the Allow header.
    let reply = raw(
        &app,
        b"DELETE /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_envelope(&reply, 405);
    assert_eq!(reply.body["code"], "method_not_allowed");
    assert!(
        reply.header("allow").is_some_and(|a| a.contains("GET")),
        "{}",
        reply.head
    );

    // 404 for an unknown path.
    let reply = raw(
        &app,
        b"GET /nope HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_envelope(&reply, 404);

    // 400 for a path parameter that is not text.
    let request = format!(
        "GET /v1/developer/devices/%FF%FE HTTP/1.1\r\nHost: w\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    let reply = raw(&app, request.as_bytes()).await;
    assert_envelope(&reply, 400);

    // 413 from a route's body limit (axum's plain-text rejection): the body is sent while
    // the reply is read, as a real client would.
    let stream = TcpStream::connect(addr(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let len = 17 * 1024 * 1024;
    let writer = tokio::spawn(async move {
        let head = format!("POST /signin HTTP/1.1\r\nHost: w\r\nContent-Length: {len}\r\n\r\n");
        write.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        write
    });
    let mut raw_reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw_reply.windows(4).any(|w| w == b"\r\n\r\n") || !raw_reply.ends_with(b"}") {
        let n = timeout(Duration::from_secs(10), read.read(&mut buf))
            .await
            .expect("no 413 in time")
            .unwrap();
        assert!(n > 0, "closed without a reply");
        raw_reply.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    let text = String::from_utf8_lossy(&raw_reply);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"ok\":false"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{text}"
    );

    // 431 for headers past 32 KiB.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: w\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let reply = raw(&app, request.as_bytes()).await;
    assert_envelope(&reply, 431);
    assert_eq!(reply.body["code"], "headers_too_large");
}

#[tokio::test]
async fn every_reply_carries_the_baseline_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/nope", "/v1/developer/devices", "/signin", "/"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let h = response.headers();
        let get = |name: &str| {
            h.get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
        };
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(get("x-frame-options"), "DENY", "{path}");
        assert!(
            get("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
    }
    // A route's own, stricter policy is kept (the dashboard's pages).
    let response = app
        .client
        .get(format!("{}/signin", app.base))
        .send()
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}
