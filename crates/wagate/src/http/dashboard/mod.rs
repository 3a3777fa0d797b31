//! The dashboard at `/`: sign in with an API key, then manage devices, link them, try
//! the API, watch messages, configure webhooks and keys — from a browser.
//!
//! It is a small single-page app (plain HTML/CSS/JS embedded in the binary: no build
//! step, no CDN) that talks to the very same Msgera handlers as every other client,
//! through `/ui/api/…`. That proxy swaps the session cookie for the account it signed
//! in as, so the dashboard can never do more, or differently, than the API does.
//!
//! Security: the session cookie carries the random token of a session kept in the store,
//! so signing out, "end all my sessions" (`POST /signout/all`) and revoking the key end
//! it at once. It is HttpOnly, SameSite=Strict and Secure when the request came over
//! TLS; every state-changing request (API calls through the proxy, sign-in, sign-out and
//! end-all forms) must carry a CSRF token — SameSite alone does not cover older browsers
//! or same-site subdomains. Pages are served with a strict CSP (no inline
//! script, same-origin only) and may not be framed.

pub mod session;

use super::MAX_BODY_BYTES;
use super::auth::ApiKeyAccount;
use super::error::ApiError;
use crate::service::{Services, sessions};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rand::RngCore;
use session::{SESSION_COOKIE, SIGNIN_COOKIE, tokens_match};
use sessions::SESSION_TTL_SECS;
use tower::ServiceExt;
use wagate_core::AccountId;

const INDEX_HTML: &str = include_str!("assets/index.html");
const SIGNIN_HTML: &str = include_str!("assets/signin.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Requests through the proxy must carry this header with the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn router() -> Router<Services> {
    Router::new()
        .route("/", get(index))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/signout/all", post(signout_all))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/ui/api/{*path}", any(proxy))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so),
/// so cookies must be marked Secure.
fn over_tls(s: &Services, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    forwarded || s.sessions.public_url_is_https()
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool, path: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    // Values are hex, ids and digits: always a valid header.
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
}

/// A verified session: its account and cookie value.
struct Session {
    account: AccountId,
    cookie: String,
}

async fn current_session(s: &Services, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(owner) = s.sessions.resolve(value).await? else {
        return Ok(None);
    };
    Ok(Some(Session {
        account: owner.account,
        cookie: value.to_owned(),
    }))
}

/// Headers every dashboard page and asset carries.
fn hardened(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String) -> Response {
    hardened(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

fn redirect(to: &'static str) -> Response {
    hardened((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

async fn index(State(s): State<Services>, headers: HeaderMap) -> Result<Response, ApiError> {
    match current_session(&s, &headers).await? {
        Some(session) => {
            let token = escape_html(&s.sessions.csrf_token(&session.cookie));
            Ok(html(StatusCode::OK, INDEX_HTML.replace("{{csrf}}", &token)))
        }
        None => Ok(redirect("/signin")),
    }
}

fn render_signin(s: &Services, headers: &HeaderMap, status: StatusCode, error: &str) -> Response {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let token = hex::encode(nonce);
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"signin-error\">{}</p>",
            escape_html(error)
        )
    };
    let body = SIGNIN_HTML
        .replace("{{csrf}}", &token)
        .replace("{{error}}", &error);
    let mut response = html(status, body);
    // Double-submit token: the form field must equal this cookie, which a forging site
    // can neither read nor set.
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, &token, 3600, over_tls(s, headers), "/signin"),
    );
    response
}

async fn signin_page(State(s): State<Services>, headers: HeaderMap) -> Response {
    render_signin(&s, &headers, StatusCode::OK, "")
}

fn form_fields(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

async fn signin(
    State(s): State<Services>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = form_fields(&body);
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    if !tokens_match(field(&fields, "csrf"), expected) {
        return Ok(render_signin(
            &s,
            &headers,
            StatusCode::FORBIDDEN,
            "The form expired or was not sent from this page. Please try again.",
        ));
    }
    let key = field(&fields, "api_key").trim();
    let Some(opened) = s.sessions.sign_in(key).await? else {
        return Ok(render_signin(
            &s,
            &headers,
            StatusCode::UNAUTHORIZED,
            "That API key is not valid (or was revoked).",
        ));
    };
    let value = opened.token;
    let secure = over_tls(&s, &headers);
    let mut response = redirect("/");
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &value, SESSION_TTL_SECS, secure, "/"),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, "", 0, secure, "/signin"),
    );
    Ok(response)
}

async fn signout(
    State(s): State<Services>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fields = form_fields(&body);
    if let Some(value) = cookie(&headers, SESSION_COOKIE)
        && !tokens_match(field(&fields, "csrf"), &s.sessions.csrf_token(value))
    {
        return Err(csrf_refused());
    }
    if let Some(value) = cookie(&headers, SESSION_COOKIE) {
        s.sessions.sign_out(value).await?;
    }
    Ok(signed_out(&s, &headers))
}

/// Back to the sign-in page, without the session cookie.
fn signed_out(s: &Services, headers: &HeaderMap) -> Response {
    let mut response = redirect("/signin");
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, over_tls(s, headers), "/"),
    );
    response
}

/// "End all my sessions": signs the account out of every browser, this one included.
async fn signout_all(
    State(s): State<Services>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(session) = current_session(&s, &headers).await? else {
        return Ok(signed_out(&s, &headers));
    };
    if !tokens_match(
        field(&form_fields(&body), "csrf"),
        &s.sessions.csrf_token(&session.cookie),
    ) {
        return Err(csrf_refused());
    }
    let ended = s.sessions.end_all(&session.account).await?;
    tracing::info!(account.id = %session.account, ended, "ended every dashboard session");
    Ok(signed_out(&s, &headers))
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_failed",
        "Missing or wrong CSRF token; reload the page.",
    )
}

async fn app_js() -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            APP_JS,
        )
            .into_response(),
    )
}

async fn app_css() -> Response {
    hardened(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response())
}

/// `/ui/api/v1/developer/…` → the Msgera handler of `/v1/developer/…`, as the session's
/// account. Headers other than the body's type, `Accept` and `Host` are not passed on.
async fn proxy(State(s): State<Services>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let Some(session) = current_session(&s, &parts.headers).await? else {
        return Err(ApiError::unauthorized());
    };
    let safe = matches!(parts.method, Method::GET | Method::HEAD);
    if !safe {
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !tokens_match(presented, &s.sessions.csrf_token(&session.cookie)) {
            return Err(csrf_refused());
        }
    }
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
    let Some(rest) = path_and_query.strip_prefix("/ui/api/") else {
        return Err(ApiError::not_found("endpoint"));
    };
    if !rest.starts_with("v1/developer/") {
        return Err(ApiError::not_found("endpoint"));
    }
    let uri: Uri = format!("/{rest}")
        .parse()
        .map_err(|_| ApiError::not_found("endpoint"))?;
    // A fresh request, not the outer one: the outer route's path parameters live in its
    // extensions and would confuse the inner route's.
    let mut inner = Request::builder().method(parts.method.clone()).uri(uri);
    // Host too, so links in replies (a message's media) point where the browser is.
    for name in [
        header::CONTENT_TYPE,
        header::ACCEPT,
        header::CONTENT_LENGTH,
        header::HOST,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            inner = inner.header(name, v);
        }
    }
    let mut inner = inner.body(Body::new(body)).map_err(ApiError::internal)?;
    inner
        .extensions_mut()
        .insert(ApiKeyAccount(session.account));
    let api = super::msgera::router()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(s);
    match api.oneshot(inner).await {
        Ok(response) => Ok(response),
        Err(never) => match never {},
    }
}
