//! The serve loop: accepts connections and serves the router over hyper with the limits
//! `axum::serve` lacks, so slow or idle clients cannot hold wagate's connections, file
//! descriptors or memory.
//!
//! - A new connection must deliver its first request's headers within
//!   `http.header_timeout_ms`; on a kept-alive connection the next request may wait
//!   `http.idle_timeout_ms`, and once its first byte arrives its headers must be complete
//!   within the header timeout (Go's `ReadHeaderTimeout`/`IdleTimeout`). Past either the
//!   connection is closed.
//! - A request body must arrive within `http.body_timeout_ms`, or it is answered 408.
//! - At most `http.max_connections` are open. When all are taken, a new connection closes
//!   the one idle longest (no request in flight): idle and half-sent connections make room
//!   for real ones, so `/healthz` keeps answering. If every connection is busy, the new
//!   one waits in the listen backlog until one finishes.
//! - Request bodies in flight hold a server-wide budget of `http.max_body_bytes_in_flight`
//!   bytes, by `Content-Length` up front or as chunks arrive; past it the request is
//!   answered 503 with `Retry-After`.
//!
//! Shutdown stops accepting, closes idle connections and lets requests in flight finish.

use super::error::ApiError;
use crate::config::HttpConfig;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Headers larger than this (names, values and separators) get a JSON 431. hyper itself
/// refuses heads past [`HYPER_MAX_HEAD_BYTES`] with an empty 431, as it must before it can
/// hand the request to us.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// More headers than this get a JSON 431 (hyper's own default count).
pub const MAX_HEADERS: usize = 100;
const HYPER_MAX_HEAD_BYTES: usize = 128 * 1024;
const HYPER_MAX_HEADERS: usize = 4 * MAX_HEADERS;
/// The body budget is counted in KiB so a semaphore of `u32`-sized grants covers any body.
const BUDGET_UNIT: u64 = 1024;
/// What a 503 for a full body budget asks clients to wait.
const BUSY_RETRY_AFTER_SECS: u64 = 2;
/// Longest time a refused body is read and discarded before the connection closes.
const LINGER: Duration = Duration::from_secs(10);
/// `head_started` when no byte of a next request has arrived.
const NONE: u64 = u64::MAX;

/// The server's limits, from `[http]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_body_bytes_in_flight: u64,
}

impl From<&HttpConfig> for Limits {
    fn from(c: &HttpConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(c.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(c.body_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms.max(1)),
            max_connections: c.max_connections.max(1),
            max_body_bytes_in_flight: c.max_body_bytes_in_flight.max(BUDGET_UNIT),
        }
    }
}

/// State shared by the accept loop and every connection.
struct Shared {
    limits: Limits,
    /// Origin of the millisecond stamps kept in atomics.
    epoch: Instant,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// KiB of request bodies in flight.
    budget: Arc<Semaphore>,
    budget_units: u64,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Asks the connection idle longest to close; false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let victim = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Acquire) == 0 && !c.evict.is_cancelled())
            .min_by_key(|c| c.idle_since.load(Ordering::Acquire));
        match victim {
            Some(c) => {
                tracing::debug!(peer = %c.peer, "connection limit reached: closing the idlest connection");
                c.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// One open connection, as its supervisor and the accept loop see it.
struct Conn {
    peer: std::net::SocketAddr,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the connection last had no request in flight (its opening, at first).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived, or [`NONE`].
    head_started: AtomicU64,
    changed: Notify,
    evict: CancellationToken,
}

impl Conn {
    /// When the connection must be closed unless something happens first.
    fn deadline(&self, shared: &Shared) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let limits = &shared.limits;
        let idle_since = self.idle_since.load(Ordering::Acquire);
        if self.requests.load(Ordering::Acquire) == 0 {
            // A new connection's only business is its first request.
            return Some(shared.at(idle_since) + limits.header_timeout);
        }
        match self.head_started.load(Ordering::Acquire) {
            NONE => Some(shared.at(idle_since) + limits.idle_timeout),
            started => Some(shared.at(started) + limits.header_timeout),
        }
    }
}

/// Marks a request in flight on its connection until dropped (with the reply's body).
struct InFlight {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl InFlight {
    fn begin(conn: &Arc<Conn>, shared: &Arc<Shared>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.requests.fetch_add(1, Ordering::AcqRel);
        conn.head_started.store(NONE, Ordering::Release);
        conn.changed.notify_one();
        Self {
            conn: Arc::clone(conn),
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .idle_since
                .store(self.shared.now_ms(), Ordering::Release);
            self.conn.head_started.store(NONE, Ordering::Release);
        }
        self.conn.changed.notify_one();
    }
}

/// The socket, noting when the first byte of a next request arrives so that request's
/// header deadline can start.
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.in_flight.load(Ordering::Acquire) == 0
            && self.conn.head_started.load(Ordering::Acquire) == NONE
        {
            let now = self.shared.now_ms();
            self.conn.head_started.store(now, Ordering::Release);
            self.conn.changed.notify_one();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled and every request in
/// flight has finished.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let budget_units = limits
        .max_body_bytes_in_flight
        .div_ceil(BUDGET_UNIT)
        .min(Semaphore::MAX_PERMITS as u64);
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        budget: Arc::new(Semaphore::new(usize::try_from(budget_units).unwrap_or(0))),
        budget_units,
        limits,
        epoch: Instant::now(),
        open: Mutex::new(HashMap::new()),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Our own supervisor times headers (hyper's timer would also close kept-alive
        // connections after the header timeout, with no separate idle timeout).
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_HEAD_BYTES);
    let builder = Arc::new(builder);
    let tracker = TaskTracker::new();
    let mut next_id = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Typically out of file descriptors: give connections time to close.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let slot = match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !shared.evict_idlest() {
                    tracing::warn!(
                        max = shared.limits.max_connections,
                        "every connection is busy; a new one waits for a free slot"
                    );
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = Arc::clone(&shared.slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        next_id += 1;
        let id = next_id;
        let now = shared.now_ms();
        let conn = Arc::new(Conn {
            peer,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(NONE),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        });
        lock(&shared.open).insert(id, Arc::clone(&conn));
        let io = TokioIo::new(TrackedIo {
            inner: stream,
            conn: Arc::clone(&conn),
            shared: Arc::clone(&shared),
        });
        let service = {
            let (router, conn, shared) = (router.clone(), Arc::clone(&conn), Arc::clone(&shared));
            hyper::service::service_fn(move |request: Request<Incoming>| {
                handle(
                    request,
                    router.clone(),
                    Arc::clone(&conn),
                    Arc::clone(&shared),
                )
            })
        };
        let (builder, shared, shutdown) =
            (Arc::clone(&builder), Arc::clone(&shared), shutdown.clone());
        tracker.spawn(async move {
            supervise(&builder, io, service, &conn, &shared, &shutdown).await;
            lock(&shared.open).remove(&id);
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Drives one connection until it ends, times out, is evicted or shutdown finishes it.
async fn supervise<S>(
    builder: &auto::Builder<TokioExecutor>,
    io: TokioIo<TrackedIo>,
    service: S,
    conn: &Arc<Conn>,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let deadline = conn.deadline(shared);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %conn.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = conn.changed.notified() => {}
            _ = sleep_until_some(deadline) => {
                if conn.deadline(shared).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(peer = %conn.peer, "closing a connection that sent no complete request in time");
                    return;
                }
            }
            _ = conn.evict.cancelled(), if !closing => {
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = shutdown.cancelled(), if !closing => {
                if conn.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What happened to a request's body, seen by the reply once the handler is done.
#[derive(Default)]
struct BodyState {
    timed_out: AtomicBool,
    over_budget: AtomicBool,
    /// Budget held by a body of unknown length, grown as it arrives.
    streamed: Mutex<Option<OwnedSemaphorePermit>>,
}

/// One request: check its head, reserve its body's budget, run the router, and turn a
/// body that timed out or overran the budget into the matching reply.
async fn handle(
    request: Request<Incoming>,
    router: Router,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let in_flight = InFlight::begin(&conn, &shared);
    if let Some(refused) = check_head(&request) {
        return Ok(finish(refused, in_flight));
    }
    let (parts, body) = request.into_parts();
    let state = Arc::new(BodyState::default());
    let mut reserved = None;
    let counted = if body.is_end_stream() {
        false
    } else if let Some(len) = body.size_hint().exact() {
        let units = len.div_ceil(BUDGET_UNIT);
        if units > shared.budget_units {
            linger(body);
            return Ok(finish(close(too_large(&shared)), in_flight));
        }
        let units = u32::try_from(units).unwrap_or(u32::MAX);
        match Arc::clone(&shared.budget).try_acquire_many_owned(units) {
            Ok(permit) => reserved = Some(permit),
            Err(_) => {
                linger(body);
                return Ok(finish(close(busy()), in_flight));
            }
        }
        false
    } else {
        true
    };
    let body = GuardedIncoming {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(shared.limits.body_timeout)),
        state: Arc::clone(&state),
        budget: counted.then(|| Arc::clone(&shared.budget)),
        received: 0,
    };
    let request = Request::from_parts(parts, Body::new(body));
    let response = match router.oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let response = if state.timed_out.load(Ordering::Acquire) {
        close(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "The request body did not arrive within {} ms; the connection is closed.",
                shared.limits.body_timeout.as_millis()
            ),
        ))
    } else if state.over_budget.load(Ordering::Acquire) {
        close(busy())
    } else {
        response
    };
    // The body's bytes are released with the handler: so is their budget.
    drop(reserved);
    lock(&state.streamed).take();
    Ok(finish(response, in_flight))
}

/// Reads and discards a refused body for a while, as nginx's lingering close does: most
/// clients send the whole body before they read the reply, and closing on them mid-body
/// would reset the connection before they see the 503 or 413. Nothing is kept, so this
/// costs no memory; the connection closes when the body ends or after [`LINGER`].
fn linger(body: Incoming) {
    tokio::spawn(async move {
        let drain = async {
            let mut body = body;
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                if frame.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    });
}

/// Keeps the request counted as in flight until its reply has been sent.
fn finish(response: Response<Body>, in_flight: InFlight) -> Response<Body> {
    response.map(|body| {
        Body::new(GuardedReply {
            inner: body,
            _in_flight: in_flight,
        })
    })
}

/// A reply that ends the connection: the unread rest of the body is never read.
fn close(error: ApiError) -> Response<Body> {
    use axum::response::IntoResponse;
    let mut response = error.into_response();
    super::hardening::add_baseline(response.headers_mut());
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn busy() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_busy",
        format!(
            "The server is receiving as many request bodies as it may hold; retry in {BUSY_RETRY_AFTER_SECS} seconds."
        ),
    );
    e.retry_after_secs = Some(BUSY_RETRY_AFTER_SECS);
    e
}

fn too_large(shared: &Shared) -> ApiError {
    ApiError::too_large(format!(
        "The request body is larger than the {} bytes this server accepts at once.",
        shared.limits.max_body_bytes_in_flight
    ))
}

/// A JSON 431 for heads hyper accepted but wagate will not serve.
fn check_head(request: &Request<Incoming>) -> Option<Response<Body>> {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let message = if headers.len() > MAX_HEADERS {
        format!(
            "The request has {} headers; at most {MAX_HEADERS} are accepted.",
            headers.len()
        )
    } else if bytes > MAX_HEADER_BYTES {
        format!(
            "The request's headers take {bytes} bytes; at most {MAX_HEADER_BYTES} are accepted."
        )
    } else {
        return None;
    };
    Some(close(ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
        message,
    )))
}

/// The request body as the router sees it: cut off at the body deadline, and counted
/// against the budget as it arrives when its length was not declared.
struct GuardedIncoming {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    state: Arc<BodyState>,
    budget: Option<Arc<Semaphore>>,
    received: u64,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("the server holds too many request bodies")]
    OverBudget,
}

impl HttpBody for GuardedIncoming {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(budget), Some(data)) = (&this.budget, frame.data_ref()) {
                    let held = this.received.div_ceil(BUDGET_UNIT);
                    this.received += data.len() as u64;
                    let more = this.received.div_ceil(BUDGET_UNIT) - held;
                    if more > 0 {
                        let granted = u32::try_from(more)
                            .ok()
                            .and_then(|n| Arc::clone(budget).try_acquire_many_owned(n).ok());
                        let Some(granted) = granted else {
                            this.state.over_budget.store(true, Ordering::Release);
                            return Poll::Ready(Some(Err(BodyError::OverBudget.into())));
                        };
                        let mut streamed = lock(&this.state.streamed);
                        match streamed.as_mut() {
                            Some(p) => p.merge(granted),
                            None => *streamed = Some(granted),
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.state.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(BodyError::TimedOut.into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A reply body that keeps its request in flight until hyper has sent it all.
struct GuardedReply {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for GuardedReply {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
