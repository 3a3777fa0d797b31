//! End-to-end tests of the dashboard in a real browser (Debian's chromium driven through
//! chromedriver), plus plain-HTTP checks of what must be refused: wrong keys, expired
//! sessions and forged forms. Screenshots of each page land in `test-artifacts/dashboard/`.

// Tests fail loudly on purpose, helper functions included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cloud_api;
mod media;
mod sessions;
mod support;
mod webdriver;

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use support::{TestApp, http_sign_in, set_cookie};
use wagate::http::dashboard::session;
use wagate_core::account::DashboardSession;
use webdriver::Browser;

/// One browser at a time: the machine is small and chromium is not.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sign_in(b: &Browser, app: &TestApp) {
    b.goto(&format!("{}/", app.base)).await;
    b.find("#api_key").await;
    assert!(
        b.url().await.ends_with("/signin"),
        "signed out goes to /signin"
    );
    b.fill("#api_key", &app.key).await;
    b.click("#signin-submit").await;
    b.find("#devices-body").await;
}

async fn go(b: &Browser, hash: &str) {
    b.js("window.location.hash = arguments[0];", json!([hash]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_creates_a_sandbox_device_and_watches_a_send_reach_read() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let b = Browser::start().await;

    b.goto(&format!("{}/", app.base)).await;
    b.find("#api_key").await;
    b.screenshot("01-signin").await;
    sign_in(&b, &app).await;
    b.screenshot("02-devices").await;

    // Create a sandbox device; its instance token is shown once.
    b.fill("#new-device-name", "Front desk").await;
    b.click("#create-device-submit").await;
    let token = b
        .wait_text("#new-device-token", 10, |t| t.contains("instance token"))
        .await;
    assert!(
        token
            .split_whitespace()
            .any(|w| w.len() == 64 && w.bytes().all(|c| c.is_ascii_hexdigit())),
        "{token}"
    );
    b.wait_text("#devices-body", 10, |t| t.contains("Front desk"))
        .await;
    b.click("#new-device-link").await;

    // The page turns to "connected" with the phone and name, without a reload.
    b.js("window.__sameDocument = 'yes';", json!([])).await;
    let linked = b
        .wait_text("#linked", 10, |t| t.starts_with("Connected as"))
        .await;
    assert_eq!(b.text("#device-status").await, "connected");
    b.screenshot("03-device").await;
    let uid = b.url().await.rsplit('/').next().unwrap().to_owned();
    assert!(uid.starts_with("dev_"), "{uid}");
    // The real name and number, as the API reports them.
    let (_, device) = app
        .api(Method::GET, &format!("/v1/developer/devices/{uid}"), None)
        .await;
    let phone = device["data"]["phoneNumber"].as_str().unwrap();
    assert!(phone.starts_with('+') && phone.len() > 8, "{device}");
    assert_eq!(device["data"]["pushName"], "Front desk", "{device}");
    assert_eq!(linked, format!("Connected as Front desk · {phone}"));

    // Budgets and pacing are edited through the same PATCH as the API.
    b.fill("#edit-daily", "500").await;
    b.fill("#edit-min-delay", "0").await;
    b.fill("#edit-max-delay", "0").await;
    b.click("#save-settings").await;
    b.wait_text("#settings-result", 10, |t| t == "Saved.").await;
    let (_, d) = app
        .api(Method::GET, &format!("/v1/developer/devices/{uid}"), None)
        .await;
    assert_eq!(d["data"]["safety"]["dailyLimit"], 500, "{d}");

    // The sandbox form shows the curl command and the reply, then the status goes live.
    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    b.fill("#sb-text", "Hello from the browser").await;
    b.click("#sb-send").await;
    let curl = b.wait_text("#sb-curl", 10, |t| t.contains("curl")).await;
    assert!(curl.contains("/v1/developer/messages/send"), "{curl}");
    assert!(curl.contains("X-API-Key: $KEY"), "{curl}");
    assert!(
        curl.contains(&uid) && curl.contains("Hello from the browser"),
        "{curl}"
    );
    let response = b
        .wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    assert!(response.contains("msg_"), "{response}");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let s = b.text("#sb-status").await;
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "read" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never reached read: {seen:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 2,
        "the status should be seen moving, saw {seen:?}"
    );
    assert_eq!(
        b.js("return window.__sameDocument;", json!([])).await,
        "yes",
        "no page reload happened"
    );
    b.screenshot_at("#sb-live", "04-sandbox").await;

    // The message's full history.
    b.click("#sb-message-link").await;
    let history = b
        .wait_text("#history-body", 10, |t| t.contains("read"))
        .await;
    for s in ["queued", "sent", "delivered", "read"] {
        assert!(history.contains(s), "{s} missing from {history}");
    }
    b.screenshot("05-message").await;

    // Messages, filtered by status.
    let id = b.url().await.rsplit('/').next().unwrap().to_owned();
    go(&b, "#/messages?status=read").await;
    b.wait_text("#messages-body", 10, |t| t.contains(&id)).await;
    b.screenshot("06-messages").await;
    go(&b, "#/messages?status=failed").await;
    b.wait_text("#messages-body", 10, |t| t.contains("No messages"))
        .await;

    // Keys: a new API key is shown once; instance tokens rotate.
    go(&b, "#/keys").await;
    b.click("#create-key").await;
    let key = b.wait_text("#new-key", 10, |t| t.contains("wak_")).await;
    assert!(key.contains("shown once"), "{key}");
    b.screenshot("07-keys").await;

    // Webhooks page (configuration + history).
    go(&b, &format!("#/webhooks?device={uid}")).await;
    b.find("#wh-personal").await;
    b.screenshot("08-webhooks").await;

    // Phone-sized: nothing wider than the screen.
    b.set_window(390, 844).await;
    go(&b, "#/devices").await;
    b.wait_text("#devices-body", 10, |t| t.contains("Front desk"))
        .await;
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "horizontal scroll on a phone: {overflow}"
    );
    b.screenshot("09-devices-phone").await;
    b.set_window(1280, 1000).await;

    // Delete asks for confirmation first.
    go(&b, &format!("#/device/{uid}")).await;
    b.click("#delete-device").await;
    b.wait_text("#delete-q", 5, |t| t.contains("cannot be undone"))
        .await;
    b.screenshot("10-delete-confirm").await;
    b.click("#delete-yes").await;
    b.find("#devices-body").await;
    let (status, _) = app
        .api(Method::GET, &format!("/v1/developer/devices/{uid}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Sign out ends the session, on the server too: the old cookie, put back, is refused.
    let old_cookie = b.cookie(session::SESSION_COOKIE).await;
    b.click("#signout").await;
    b.find("#api_key").await;
    b.goto(&format!("{}/", app.base)).await;
    b.find("#api_key").await;
    assert!(b.url().await.ends_with("/signin"));
    b.add_cookie(session::SESSION_COOKIE, &old_cookie).await;
    b.goto(&format!("{}/", app.base)).await;
    b.find("#api_key").await;
    assert!(
        b.url().await.ends_with("/signin"),
        "signed-out cookie reused"
    );

    // "End all my sessions" signs out this browser and every other one.
    sign_in(&b, &app).await;
    let (elsewhere, _, _) = http_sign_in(&app, &[]).await;
    let this_one = b.cookie(session::SESSION_COOKIE).await;
    b.click("#signout-all").await;
    b.find("#api_key").await;
    for cookie in [&this_one, &elsewhere] {
        b.add_cookie(session::SESSION_COOKIE, cookie).await;
        b.goto(&format!("{}/", app.base)).await;
        b.find("#api_key").await;
        assert!(b.url().await.ends_with("/signin"), "ended session reused");
    }

    b.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_webhook_is_redelivered_from_the_dashboard() {
    let _one = BROWSER.lock().await;
    // A receiver that fails until told otherwise.
    let failing = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let failing = Arc::clone(&failing);
        let hits = Arc::clone(&hits);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let failing = Arc::clone(&failing);
                let hits = Arc::clone(&hits);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, "receiver down")
                    } else {
                        (StatusCode::OK, "thanks")
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let app = TestApp::spawn_with(|c| {
        c.allow_private_urls = true;
        // One attempt: a failure stays failed until someone redelivers it.
        c.webhooks.attempts = 1;
    })
    .await;
    let uid = app.connected_device("Webhooks").await;
    let b = Browser::start().await;
    sign_in(&b, &app).await;

    go(&b, &format!("#/webhooks?device={uid}")).await;
    b.fill("#wh-personal", &hook).await;
    // The opt-in chat events are offered too.
    b.click("#wh-ev-message-reaction").await;
    b.click("#wh-save").await;
    b.wait_text("#wh-result", 10, |t| t == "Saved.").await;
    let (_, saved) = app
        .api(
            Method::GET,
            &format!("/v1/developer/webhooks?deviceUid={uid}"),
            None,
        )
        .await;
    assert!(
        saved["data"]["events"]
            .as_array()
            .unwrap()
            .contains(&json!("message.reaction")),
        "{saved}"
    );

    let (status, body) = app
        .api(
            Method::POST,
            "/v1/developer/sandbox/inbound",
            Some(json!({"deviceUid": uid, "from": "+201001234567", "text": "hello there"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, h) = app
            .api(
                Method::GET,
                &format!("/v1/developer/webhooks/history?deviceUid={uid}"),
                None,
            )
            .await;
        if h["data"]["total"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        let (_, w) = app
            .api(
                Method::GET,
                &format!("/v1/developer/webhooks?deviceUid={uid}"),
                None,
            )
            .await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery attempt: {h} config {w} hits {}",
            hits.load(Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let history = b
        .wait_text("#wh-history", 15, |t| t.contains("failed"))
        .await;
    assert!(
        history.contains("500") && history.contains("message.received"),
        "{history}"
    );
    b.screenshot_at("#wh-history", "11-webhook-failed").await;

    failing.store(false, Ordering::SeqCst);
    b.click("button.redeliver").await;
    b.wait_text("#wh-history", 15, |t| t.contains("succeeded"))
        .await;
    b.screenshot_at("#wh-history", "12-webhook-redelivered")
        .await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    b.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_expired_session_are_refused_in_the_browser() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let b = Browser::start().await;

    b.goto(&format!("{}/signin", app.base)).await;
    b.fill("#api_key", &format!("wak_{}", "0".repeat(32))).await;
    b.click("#signin-submit").await;
    let error = b.wait_text("#signin-error", 10, |t| !t.is_empty()).await;
    assert!(error.contains("not valid"), "{error}");
    assert!(b.url().await.ends_with("/signin"));
    b.screenshot("13-signin-wrong-key").await;

    // A live session's cookie is accepted (so the one below is faithful)…
    let store = &app.running.services.store;
    let now = chrono::Utc::now();
    let live = "1".repeat(64);
    store
        .create_dashboard_session(&DashboardSession {
            token_hash: Sha256::digest(live.as_bytes()).into(),
            account_id: app.account.clone(),
            api_key_id: app.key_id.clone(),
            created_at: now,
            expires_at: now + chrono::Duration::minutes(10),
        })
        .await
        .unwrap();
    b.add_cookie(session::SESSION_COOKIE, &live).await;
    b.goto(&format!("{}/", app.base)).await;
    b.find("#devices-body").await;

    // …and one past its expiry is not.
    let expired = "2".repeat(64);
    store
        .create_dashboard_session(&DashboardSession {
            token_hash: Sha256::digest(expired.as_bytes()).into(),
            account_id: app.account.clone(),
            api_key_id: app.key_id.clone(),
            created_at: now - chrono::Duration::hours(13),
            expires_at: now - chrono::Duration::seconds(1),
        })
        .await
        .unwrap();
    b.add_cookie(session::SESSION_COOKIE, &expired).await;
    b.goto(&format!("{}/", app.base)).await;
    b.find("#api_key").await;
    assert!(
        b.url().await.ends_with("/signin"),
        "expired session must sign in again"
    );

    b.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn forged_forms_missing_csrf_and_revoked_keys_are_refused() {
    let app = TestApp::spawn().await;
    let base = &app.base;

    // Sign-in form without (or with a mismatched) CSRF token.
    let resp = app
        .http
        .post(format!("{base}/signin"))
        .form(&[("api_key", app.key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&resp, session::SESSION_COOKIE).is_none());
    let resp = app
        .http
        .post(format!("{base}/signin"))
        .header("cookie", format!("{}=aaaa", session::SIGNIN_COOKIE))
        .form(&[("api_key", app.key.as_str()), ("csrf", "bbbb")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&resp, session::SESSION_COOKIE).is_none());

    // A real session: cookie flags.
    let (cookie, token, line) = http_sign_in(&app, &[]).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(line.contains(flag), "{flag} missing: {line}");
    }
    assert!(
        !line.contains("Secure"),
        "plain HTTP: no Secure flag: {line}"
    );
    let (_, _, tls_line) = http_sign_in(&app, &[("x-forwarded-proto", "https")]).await;
    assert!(tls_line.contains("; Secure"), "{tls_line}");
    let jar = format!("{}={cookie}", session::SESSION_COOKIE);

    // State changes through the proxy need the session's CSRF token.
    let create = |csrf: Option<&str>| {
        let mut req = app
            .http
            .post(format!("{base}/ui/api/v1/developer/devices"))
            .header("cookie", &jar)
            .json(&json!({"name": "forged", "engine": "sandbox"}));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    let resp = create(None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "csrf_failed", "{body}");
    let other = "0".repeat(token.len());
    assert_eq!(
        create(Some(&other)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let (_, list) = app.api(Method::GET, "/v1/developer/devices", None).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing was created: {list}"
    );
    assert_eq!(
        create(Some(&token)).await.unwrap().status(),
        StatusCode::CREATED
    );

    // Reads need the cookie; the API's own X-API-Key is not a dashboard session.
    let resp = app
        .http
        .get(format!("{base}/ui/api/v1/developer/devices"))
        .header("x-api-key", &app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Only the developer API is reachable through the proxy.
    let resp = app
        .http
        .get(format!("{base}/ui/api/metrics"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Sign-out form without the token does nothing.
    let resp = app
        .http
        .post(format!("{base}/signout"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Revoking the key that signed in ends the session.
    let resp = app
        .http
        .delete(format!("{base}/ui/api/v1/developer/keys/{}", app.key_id))
        .header("cookie", &jar)
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .http
        .get(format!("{base}/"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/signin");

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_form_shows_typing_and_marks_a_chat_read() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let uid = app.connected_device("Chats").await;
    let (_, device) = app
        .api(Method::GET, &format!("/v1/developer/devices/{uid}"), None)
        .await;
    let me = device["data"]["phoneNumber"]
        .as_str()
        .unwrap()
        .trim_start_matches('+')
        .to_owned();
    let customer = "+201009876543";
    let (status, _) = app
        .api(
            Method::POST,
            "/v1/developer/sandbox/inbound",
            Some(json!({ "deviceUid": uid, "from": customer, "text": "are you open?" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let b = Browser::start().await;
    sign_in(&b, &app).await;
    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    // A chat action has no text or file to fill in; the indicator has its state.
    let hidden = b
        .js(
            "const k = document.getElementById('sb-kind'); k.value = 'presence'; \
             k.dispatchEvent(new Event('change')); \
             return [document.getElementById('sb-text').hidden, \
                     document.getElementById('sb-state').closest('div').hidden];",
            json!([]),
        )
        .await;
    assert_eq!(hidden, json!([true, false]));
    b.fill("#sb-to", customer).await;
    b.js(
        "document.getElementById('sb-state').value = 'recording';",
        json!([]),
    )
    .await;
    b.click("#sb-send").await;
    let curl = b
        .wait_text("#sb-curl", 10, |t| t.contains("/v1/developer/presence"))
        .await;
    assert!(curl.contains("recording"), "{curl}");
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 200"))
        .await;
    assert_eq!(
        app.sandbox.chat_state_seen("201009876543", &me),
        Some(wagate_core::engine::ChatState::Recording)
    );

    b.js(
        "const k = document.getElementById('sb-kind'); k.value = 'read'; \
         k.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("#sb-send").await;
    b.wait_text("#sb-curl", 10, |t| t.contains("/v1/developer/chats/read"))
        .await;
    let response = b
        .wait_text("#sb-response", 10, |t| t.starts_with("HTTP 200"))
        .await;
    assert!(response.contains("\"marked\": 1"), "{response}");
    assert_eq!(app.sandbox.marked_read(&me, "201009876543").len(), 1);
    b.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_form_sends_a_poll_and_a_location_in_reply() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let uid = app.connected_device("Polls").await;
    let b = Browser::start().await;
    sign_in(&b, &app).await;
    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    // A poll has no text or file; its question and options show instead.
    let shown = b
        .js(
            "const k = document.getElementById('sb-kind'); k.value = 'poll'; \
             k.dispatchEvent(new Event('change')); \
             return [document.getElementById('sb-text').hidden, \
                     document.getElementById('sb-file').closest('div').hidden, \
                     document.getElementById('sb-question').closest('div').hidden];",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!([true, true, false]));
    b.fill("#sb-question", "Pick a day").await;
    b.js(
        "document.getElementById('sb-options').value = 'Monday\\n\\nTuesday\\nFriday'; \
         document.getElementById('sb-multiple').checked = true;",
        json!([]),
    )
    .await;
    b.click("#sb-send").await;
    let curl = b
        .wait_text("#sb-curl", 10, |t| t.contains("send-poll"))
        .await;
    assert!(
        curl.contains(r#""options":["Monday","Tuesday","Friday"]"#),
        "{curl}"
    );
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    b.wait_text("#sb-status", 15, |t| t == "read").await;
    let poll = b.text("#sb-message-link").await;
    let (_, m) = app
        .api(Method::GET, &format!("/v1/developer/messages/{poll}"), None)
        .await;
    assert_eq!(m["data"]["type"], "poll", "{m}");
    assert_eq!(m["data"]["poll"]["multipleAnswers"], true, "{m}");

    // A location quoting the poll.
    b.js(
        "const k = document.getElementById('sb-kind'); k.value = 'location'; \
         k.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.fill("#sb-reply-to", &poll).await;
    b.click("#sb-send").await;
    b.wait_text("#sb-curl", 10, |t| t.contains("send-location"))
        .await;
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    let loc = b.wait_text("#sb-message-link", 10, |t| t != poll).await;
    let (_, m) = app
        .api(Method::GET, &format!("/v1/developer/messages/{loc}"), None)
        .await;
    assert_eq!(m["data"]["type"], "location", "{m}");
    assert_eq!(m["data"]["location"]["name"], "Tahrir Square", "{m}");
    assert_eq!(m["data"]["replyTo"]["fromMe"], true, "{m}");

    // A reaction to the poll, then the location deleted for everyone: no chat to fill in,
    // the message acted on decides it.
    let kind = |k: &'static str| {
        b.js(
            "const k = document.getElementById('sb-kind'); k.value = arguments[0]; \
             k.dispatchEvent(new Event('change')); \
             return [document.getElementById('sb-to').disabled, \
                     document.getElementById('sb-emoji').closest('div').hidden];",
            json!([k]),
        )
    };
    assert_eq!(kind("reaction").await, json!([true, false]));
    b.fill("#sb-target", &poll).await;
    b.click("#sb-send").await;
    b.wait_text("#sb-curl", 10, |t| t.contains("/reaction"))
        .await;
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    let reaction = b.wait_text("#sb-message-link", 10, |t| t != loc).await;
    let (_, m) = app
        .api(
            Method::GET,
            &format!("/v1/developer/messages/{reaction}"),
            None,
        )
        .await;
    assert_eq!(m["data"]["type"], "reaction", "{m}");
    assert_eq!(m["data"]["emoji"], "👍", "{m}");
    let (_, polled) = app
        .api(Method::GET, &format!("/v1/developer/messages/{poll}"), None)
        .await;
    assert_eq!(
        m["data"]["target"]["providerMessageId"], polled["data"]["providerMessageId"],
        "{m}"
    );
    assert_eq!(kind("delete").await, json!([true, true]));
    b.fill("#sb-target", &loc).await;
    b.click("#sb-send").await;
    let curl = b
        .wait_text("#sb-curl", 10, |t| t.contains("-X DELETE"))
        .await;
    assert!(
        curl.contains(&format!("/v1/developer/messages/{loc}")),
        "{curl}"
    );
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    b.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_form_uploads_and_sends_a_document() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let uid = app.connected_device("Docs").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("invoice.pdf");
    std::fs::write(&file, b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n").unwrap();
    let b = Browser::start().await;
    sign_in(&b, &app).await;
    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    let kind = |k: &'static str| {
        b.js(
            "const k = document.getElementById('sb-kind'); k.value = arguments[0]; \
             k.dispatchEvent(new Event('change')); \
             const t = document.getElementById('sb-text'); return [t.value, t.disabled];",
            json!([k]),
        )
    };
    let sample = json!(["{Hi|Hello} from the wagate dashboard", false]);
    assert_eq!(kind("text").await, sample);
    // The sample text is for text messages: files go without it, a voice note has no
    // caption at all (and nothing left in the disabled box).
    assert_eq!(kind("media").await, json!(["", false]));
    assert_eq!(kind("text").await, sample);
    b.fill("#sb-text", "typed by hand").await;
    assert_eq!(kind("voice").await, json!(["", true]));
    assert_eq!(kind("document").await, json!(["", false]));
    b.fill("#sb-file", &file.display().to_string()).await;
    b.click("#sb-send").await;
    let curl = b
        .wait_text("#sb-curl", 10, |t| t.contains("send-media"))
        .await;
    assert!(
        curl.contains("/v1/developer/media/upload") && curl.contains("file=@invoice.pdf"),
        "{curl}"
    );
    b.wait_text("#sb-response", 10, |t| t.starts_with("HTTP 202"))
        .await;
    b.wait_text("#sb-status", 15, |t| t == "read").await;
    let link = b.text("#sb-message-link").await;
    let (_, m) = app
        .api(Method::GET, &format!("/v1/developer/messages/{link}"), None)
        .await;
    assert_eq!(m["data"]["type"], "document", "{m}");
    assert_eq!(
        m["data"]["text"],
        serde_json::Value::Null,
        "no caption: {m}"
    );
    b.screenshot_at("#sb-live", "14-sandbox-document").await;

    // The message page: no "null" for what the message lacks, and its media described
    // with a link that downloads the file.
    b.click("#sb-message-link").await;
    let media = b
        .wait_text("#message-media", 10, |t| t.contains("invoice.pdf"))
        .await;
    assert!(media.contains("application/pdf"), "{media}");
    let head = b.text("#message-head").await;
    assert!(!head.contains("null"), "{head}");
    let href = b
        .js(
            "return document.getElementById('message-media-link').href;",
            json!([]),
        )
        .await;
    let href = href.as_str().unwrap();
    assert!(href.starts_with(&format!("{}/media/", app.base)), "{href}");
    let got = app.http.get(href).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap(), std::fs::read(&file).unwrap());
    b.screenshot("15-message-media").await;
    b.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_form_creates_a_group_and_sends_to_it() {
    let _one = BROWSER.lock().await;
    let app = TestApp::spawn().await;
    let uid = app.connected_device("Organiser").await;
    let other = app.connected_device("Member").await;
    let (_, member) = app
        .api(Method::GET, &format!("/v1/developer/devices/{other}"), None)
        .await;
    let member_phone = member["data"]["phoneNumber"].as_str().unwrap().to_owned();
    let b = Browser::start().await;
    sign_in(&b, &app).await;
    go(&b, &format!("#/sandbox?device={uid}")).await;
    b.find(&format!("#sb-device option[value='{uid}']")).await;
    // Creating a group: its subject and members show; there is no chat to fill in.
    let shown = b
        .js(
            "const k = document.getElementById('sb-kind'); k.value = 'group'; \
             k.dispatchEvent(new Event('change')); \
             return [document.getElementById('sb-to').disabled, \
                     document.getElementById('sb-subject').closest('div').hidden, \
                     document.getElementById('sb-text').hidden];",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!([true, false, true]));
    b.fill("#sb-subject", "Weekend team").await;
    b.js(
        "document.getElementById('sb-members').value = arguments[0];",
        json!([member_phone]),
    )
    .await;
    b.click("#sb-send").await;
    b.wait_text("#sb-curl", 10, |t| t.contains("/v1/developer/groups"))
        .await;
    let response = b
        .wait_text("#sb-response", 10, |t| t.starts_with("HTTP 201"))
        .await;
    assert!(response.contains("Weekend team"), "{response}");
    // The new group's id is filled in as the chat: a text goes to it as groupId.
    b.js(
        "const k = document.getElementById('sb-kind'); k.value = 'text'; \
         k.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    let gid = b
        .js("return document.getElementById('sb-to').value;", json!([]))
        .await;
    let gid = gid.as_str().unwrap().to_owned();
    assert!(gid.ends_with("@g.us"), "{gid}");
    b.click("#sb-send").await;
    let curl = b.wait_text("#sb-curl", 10, |t| t.contains("groupId")).await;
    assert!(curl.contains(&gid), "{curl}");
    b.wait_text("#sb-status", 15, |t| t == "read").await;
    let sent = b.text("#sb-message-link").await;
    let (_, m) = app
        .api(Method::GET, &format!("/v1/developer/messages/{sent}"), None)
        .await;
    assert_eq!(m["data"]["groupId"], gid.as_str(), "{m}");
    // The member's device has it, in the group.
    let (_, inbox) = app
        .api(
            Method::GET,
            &format!("/v1/developer/inbound?deviceUid={other}"),
            None,
        )
        .await;
    assert!(
        inbox["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["providerMessageId"] == m["data"]["providerMessageId"]
                && i["groupId"] == gid.as_str()),
        "{inbox}"
    );
    // Listing the device's groups.
    b.js(
        "const k = document.getElementById('sb-kind'); k.value = 'groups'; \
         k.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("#sb-send").await;
    let listed = b
        .wait_text("#sb-response", 10, |t| t.starts_with("HTTP 200"))
        .await;
    assert!(listed.contains(&gid), "{listed}");
    b.quit().await;
    app.stop().await;
}
