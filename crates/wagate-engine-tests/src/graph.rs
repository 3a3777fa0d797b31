//! A fake of Meta's Graph API, for every test of the Cloud API: a real HTTP server on a
//! local port that answers like Meta (its paths, JSON and error codes), records every
//! request, and posts webhooks signed with the app secret — to wagate's callback URL over
//! HTTP ([`FakeGraph::deliver`]), or straight to a [`WebhookTarget`] (an engine test's
//! sessions) for what Meta reports by itself: each message sent, then delivered.

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Recipients Meta answers with an error, as it would for real numbers in these states.
pub const OUTSIDE_24H: &str = "+15550000047";
pub const NOT_ON_WHATSAPP: &str = "+15550000026";
pub const THROTTLED_ONCE: &str = "+15550000429";

/// The Graph API version the fake serves.
pub const VERSION: &str = "v21.0";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub auth: Option<String>,
    pub body: Bytes,
    /// The message id Meta gave a send (`wamid.…`).
    pub wamid: Option<String>,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Where Meta's own webhooks (statuses of sends) go when no test posts them by hand.
#[async_trait]
pub trait WebhookTarget: Send + Sync {
    /// Delivers `body` (signed: `signature`) for the number `phone_number_id`; `true` when
    /// it was taken (a 200), else Meta delivers it again a little later.
    async fn deliver(&self, phone_number_id: &str, body: Bytes, signature: String) -> bool;
}

struct Number {
    token: String,
    display: String,
    app_secret: String,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Seen>,
    numbers: HashMap<String, Number>,
    /// Tokens Meta no longer takes.
    expired: Vec<String>,
    /// Business account id → its templates.
    templates: HashMap<String, Vec<Value>>,
    /// Media id → (bytes, type).
    media: HashMap<String, (Vec<u8>, String)>,
    throttled: bool,
    /// The next number check is answered "request limit reached" (code 4).
    throttle_check: bool,
    next_id: u64,
    target: Option<Arc<dyn WebhookTarget>>,
}

pub struct FakeGraph {
    inner: Mutex<Inner>,
    pub base: String,
    client: reqwest::Client,
}

type Shared = Arc<FakeGraph>;

fn meta_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({ "error": { "message": message, "type": "OAuthException", "code": code,
                                  "fbtrace_id": "Afake" } });
    (status, axum::Json(body)).into_response()
}

fn expired() -> Response {
    meta_error(
        StatusCode::UNAUTHORIZED,
        190,
        "Error validating access token: Session has expired",
    )
}

/// `sha256=<hex>` of `body` under `secret`, as Meta signs.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl FakeGraph {
    pub async fn start() -> Shared {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(FakeGraph {
            inner: Mutex::default(),
            base,
            client: reqwest::Client::new(),
        });
        let app = Router::new()
            .route(&format!("/{VERSION}/{{id}}"), get(object))
            .route(&format!("/{VERSION}/{{id}}/messages"), post(messages))
            .route(&format!("/{VERSION}/{{id}}/media"), post(upload))
            .route(
                &format!("/{VERSION}/{{id}}/message_templates"),
                get(templates),
            )
            .route("/cdn/{id}", get(cdn))
            .with_state(Arc::clone(&fake));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A business number of Meta's app, reached with `token`, its webhooks signed with
    /// `app_secret`. Adding it again replaces its token (a new one was issued).
    pub fn add_number(&self, phone_number_id: &str, token: &str, display: &str) {
        self.add_number_signed(phone_number_id, token, display, "");
    }

    pub fn add_number_signed(
        &self,
        phone_number_id: &str,
        token: &str,
        display: &str,
        app_secret: &str,
    ) {
        self.lock().numbers.insert(
            phone_number_id.into(),
            Number {
                token: token.into(),
                display: display.into(),
                app_secret: app_secret.into(),
            },
        );
    }

    /// Meta answers the next check of a number with its app request limit (code 4), as it
    /// does when an app calls too often.
    pub fn throttle_next_check(&self) {
        self.lock().throttle_check = true;
    }

    /// Meta stops taking `token` (it expired or was revoked).
    pub fn expire(&self, token: &str) {
        self.lock().expired.push(token.into());
    }

    pub fn set_templates(&self, waba: &str, templates: Vec<Value>) {
        self.lock().templates.insert(waba.into(), templates);
    }

    /// A file someone sent a number, as Meta keeps it for download.
    pub fn add_media(&self, id: &str, data: &[u8], mime: &str) {
        self.lock()
            .media
            .insert(id.into(), (data.to_vec(), mime.into()));
    }

    /// From now on Meta reports each message it takes (`sent`, then `delivered`) to
    /// `target`, as its webhooks do.
    pub fn set_target(&self, target: Arc<dyn WebhookTarget>) {
        self.lock().target = Some(target);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The message sends Meta took, in order (read marks and typing left out).
    pub fn sends(&self) -> Vec<Value> {
        self.seen()
            .iter()
            .filter(|s| s.wamid.is_some())
            .map(Seen::json)
            .collect()
    }

    /// The send Meta named `wamid`, as posted.
    pub fn send_named(&self, wamid: &str) -> Option<Value> {
        self.seen()
            .iter()
            .find(|s| s.wamid.as_deref() == Some(wamid))
            .map(Seen::json)
    }

    /// Whether the number marked the message `wamid` read (and with it those before).
    pub fn marked_read(&self, phone_number_id: &str, wamid: &str) -> bool {
        let path = format!("/{phone_number_id}/messages");
        self.seen().iter().any(|s| {
            s.path == path && {
                let b = s.json();
                b["status"] == "read" && b["message_id"] == wamid
            }
        })
    }

    /// Whether `auth` is a live token of some number (Meta's tokens are per app; the fake
    /// is as lenient), recording the request either way (at the index returned).
    fn authorized(
        &self,
        method: &str,
        path: String,
        headers: &HeaderMap,
        body: Bytes,
    ) -> (bool, usize) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut inner = self.lock();
        let token = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let ok =
            !inner.expired.contains(&token) && inner.numbers.values().any(|n| n.token == token);
        inner.seen.push(Seen {
            method: method.into(),
            path,
            auth,
            body,
            wamid: None,
        });
        (ok, inner.seen.len() - 1)
    }

    /// Posts a webhook to `url` as Meta does: the JSON body signed with `app_secret`.
    pub async fn deliver(&self, url: &str, app_secret: &str, body: &Value) -> (StatusCode, String) {
        let raw = body.to_string();
        let sig = sign(app_secret, raw.as_bytes());
        self.post_raw(url, raw, Some(&sig)).await
    }

    /// Posts `raw` with the given signature header (or none).
    pub async fn post_raw(
        &self,
        url: &str,
        raw: String,
        sig: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(raw);
        if let Some(sig) = sig {
            req = req.header("X-Hub-Signature-256", sig);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// Posts `body` for the number to the target, as Meta does: again a second later each
    /// time it is refused, until it is taken (Meta keeps trying for days; the fake for a
    /// minute). Whether it was taken.
    pub async fn push(&self, phone_number_id: &str, body: &Value) -> bool {
        let (target, secret) = {
            let inner = self.lock();
            let secret = inner
                .numbers
                .get(phone_number_id)
                .map(|n| n.app_secret.clone())
                .unwrap_or_default();
            (inner.target.clone(), secret)
        };
        let Some(target) = target else {
            panic!("no webhook target: set_target first");
        };
        let raw = Bytes::from(body.to_string());
        let sig = sign(&secret, &raw);
        for _ in 0..60 {
            if target
                .deliver(phone_number_id, raw.clone(), sig.clone())
                .await
            {
                return true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        false
    }

    /// [`Self::push`] in the background, as Meta's webhooks come: the caller goes on.
    pub fn push_in_background(self: &Arc<Self>, phone_number_id: &str, body: Value) {
        let (fake, pnid) = (Arc::clone(self), phone_number_id.to_owned());
        tokio::spawn(async move { fake.push(&pnid, &body).await });
    }

    /// Meta's account of a message it took: `sent`, then `delivered`, in the background.
    fn report(self: &Arc<Self>, phone_number_id: &str, wamid: &str, to: &str) {
        if self.lock().target.is_none() {
            return;
        }
        let (fake, pnid, wamid, to) = (
            Arc::clone(self),
            phone_number_id.to_owned(),
            wamid.to_owned(),
            to.to_owned(),
        );
        tokio::spawn(async move {
            for step in ["sent", "delivered"] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !fake.push(&pnid, &status(&pnid, &wamid, step, &to)).await {
                    return;
                }
            }
        });
    }
}

/// `GET /{id}`: a number's record, or a media record pointing at the fake's CDN.
async fn object(State(f): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !f
        .authorized("GET", format!("/{id}"), &headers, Bytes::new())
        .0
    {
        return expired();
    }
    let mut inner = f.lock();
    if inner.numbers.contains_key(&id) && std::mem::take(&mut inner.throttle_check) {
        return meta_error(
            StatusCode::TOO_MANY_REQUESTS,
            4,
            "Application request limit reached",
        );
    }
    if let Some(n) = inner.numbers.get(&id) {
        return axum::Json(json!({ "display_phone_number": n.display,
                                  "verified_name": "Corner Shop", "id": id }))
        .into_response();
    }
    if let Some((data, mime)) = inner.media.get(&id) {
        return axum::Json(
            json!({ "url": format!("{}/cdn/{id}", f.base), "mime_type": mime,
                                  "file_size": data.len(), "sha256": "x", "id": id }),
        )
        .into_response();
    }
    meta_error(
        StatusCode::BAD_REQUEST,
        100,
        "Unsupported get request. Object does not exist",
    )
}

async fn cdn(State(f): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !f
        .authorized("GET", format!("/cdn/{id}"), &headers, Bytes::new())
        .0
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match f.lock().media.get(&id) {
        Some((data, mime)) => ([("content-type", mime.clone())], data.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn messages(
    State(f): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ok, at) = f.authorized("POST", format!("/{id}/messages"), &headers, body.clone());
    if !ok {
        return expired();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["messaging_product"] != "whatsapp" {
        return meta_error(
            StatusCode::BAD_REQUEST,
            100,
            "messaging_product is required",
        );
    }
    if v.get("status").is_some() {
        return axum::Json(json!({ "success": true })).into_response();
    }
    let to = v["to"].as_str().unwrap_or_default().to_owned();
    let wamid = {
        let mut inner = f.lock();
        match format!("+{to}").as_str() {
            OUTSIDE_24H => {
                return meta_error(
                    StatusCode::BAD_REQUEST,
                    131047,
                    "Re-engagement message: more than 24 hours have passed since the recipient last replied",
                );
            }
            NOT_ON_WHATSAPP => {
                return meta_error(StatusCode::BAD_REQUEST, 131026, "Message undeliverable");
            }
            THROTTLED_ONCE if !inner.throttled => {
                inner.throttled = true;
                let mut r = meta_error(StatusCode::BAD_REQUEST, 130429, "Rate limit hit");
                r.headers_mut().insert("retry-after", "1".parse().unwrap());
                return r;
            }
            _ => {}
        }
        inner.next_id += 1;
        let wamid = format!("wamid.FAKE{}", inner.next_id);
        inner.seen[at].wamid = Some(wamid.clone());
        wamid
    };
    f.report(&id, &wamid, &to);
    axum::Json(json!({ "messaging_product": "whatsapp",
                       "contacts": [{ "input": to, "wa_id": to }],
                       "messages": [{ "id": wamid }] }))
    .into_response()
}

async fn upload(
    State(f): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !f
        .authorized("POST", format!("/{id}/media"), &headers, body)
        .0
    {
        return expired();
    }
    let mut inner = f.lock();
    inner.next_id += 1;
    axum::Json(json!({ "id": format!("MEDIA{}", inner.next_id) })).into_response()
}

/// Approved templates, two per page, so paging is exercised.
async fn templates(
    State(f): State<Shared>,
    Path(waba): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !f
        .authorized(
            "GET",
            format!("/{waba}/message_templates"),
            &headers,
            Bytes::new(),
        )
        .0
    {
        return expired();
    }
    let Some(all) = f.lock().templates.get(&waba).cloned() else {
        return meta_error(StatusCode::BAD_REQUEST, 100, "Unsupported get request");
    };
    let start: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
    let next = start + page.len();
    let mut body = json!({ "data": page });
    if next < all.len() {
        body["paging"] = json!({ "cursors": { "after": next.to_string() },
                                 "next": format!("{}/{VERSION}/{waba}/message_templates?after={next}", f.base) });
    }
    axum::Json(body).into_response()
}

/// A webhook delivery of `value` for the number, as Meta wraps it.
pub fn delivery(phone_number_id: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({ "display_phone_number": "15550001111",
                                "phone_number_id": phone_number_id });
    json!({ "object": "whatsapp_business_account",
            "entry": [{ "id": "WABA", "changes": [{ "field": "messages", "value": value }] }] })
}

/// A status update of a sent message.
pub fn status(phone_number_id: &str, wamid: &str, status: &str, recipient: &str) -> Value {
    delivery(
        phone_number_id,
        json!({ "statuses": [{ "id": wamid, "status": status, "timestamp": "1700000100",
                               "recipient_id": recipient }] }),
    )
}

/// A message someone (`from`, digits) wrote to the number: `message` is its type and
/// content (`{"type": "text", "text": {"body": …}}`), `name` their profile name.
pub fn inbound(
    phone_number_id: &str,
    from: &str,
    name: &str,
    wamid: &str,
    message: Value,
) -> Value {
    let mut m = message;
    m["from"] = json!(from);
    m["id"] = json!(wamid);
    m["timestamp"] = json!("1700000000");
    delivery(
        phone_number_id,
        json!({ "contacts": [{ "profile": { "name": name }, "wa_id": from }], "messages": [m] }),
    )
}
