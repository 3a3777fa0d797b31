//! Dashboard sessions end on the server: after sign-out, after the key that opened them
//! is revoked (over the API or with the CLI) and after "end all my sessions", the old
//! cookie is refused even though the browser (or a thief) still has it.

use crate::support::{TestApp, http_sign_in, http_sign_in_as};
use reqwest::{Method, StatusCode};
use wagate::http::dashboard::session;
use wagate::service::accounts;

/// Whether the dashboard accepts a session cookie: the page answers 200 and the API proxy
/// 200, or the page redirects to `/signin` and the proxy answers 401 (never a mix).
async fn session_works(app: &TestApp, cookie: &str) -> bool {
    let jar = format!("{}={cookie}", session::SESSION_COOKIE);
    let page = app
        .http
        .get(format!("{}/", app.base))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    let proxy = app
        .http
        .get(format!("{}/ui/api/v1/developer/devices", app.base))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    match (page.status(), proxy.status()) {
        (StatusCode::OK, StatusCode::OK) => true,
        (StatusCode::SEE_OTHER, StatusCode::UNAUTHORIZED) => {
            assert_eq!(page.headers()["location"], "/signin");
            false
        }
        other => panic!("page and proxy disagree: {other:?}"),
    }
}

async fn post_form(app: &TestApp, path: &str, cookie: &str, csrf: &str) -> reqwest::Response {
    app.http
        .post(format!("{}{path}", app.base))
        .header("cookie", format!("{}={cookie}", session::SESSION_COOKIE))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

/// The `Set-Cookie` that clears the session cookie in the browser.
fn clears_cookie(resp: &reqwest::Response) -> bool {
    crate::support::set_cookie(resp, session::SESSION_COOKIE)
        .is_some_and(|(value, line)| value.is_empty() && line.contains("Max-Age=0"))
}

#[tokio::test]
async fn sign_out_ends_the_session_on_the_server() {
    let app = TestApp::spawn().await;
    let (mine, csrf, _) = http_sign_in(&app, &[]).await;
    let (other_tab, _, _) = http_sign_in(&app, &[]).await;
    assert!(session_works(&app, &mine).await);

    let resp = post_form(&app, "/signout", &mine, &csrf).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/signin");
    assert!(clears_cookie(&resp));
    // A copy of the cookie kept after sign-out is worthless…
    assert!(!session_works(&app, &mine).await);
    // …while another sign-in of the same key goes on.
    assert!(session_works(&app, &other_tab).await);
    // Signing out again with the dead cookie is harmless.
    let resp = post_form(&app, "/signout", &mine, &csrf).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // Garbage cookies are simply not sessions.
    assert!(!session_works(&app, "not-a-session").await);
    assert!(!session_works(&app, &"f".repeat(64)).await);
    app.stop().await;
}

#[tokio::test]
async fn revoking_the_key_over_the_api_ends_its_sessions_only() {
    let app = TestApp::spawn().await;
    let store = app.running.services.store.clone();
    let second = accounts::create_key(store.as_ref(), &app.account)
        .await
        .unwrap();
    let (first_session, _, _) = http_sign_in(&app, &[]).await;
    let (second_session, _, _) = http_sign_in_as(&app, &second.secret, &[]).await;

    // Revoked with the public API and the other key, not through the dashboard.
    let resp = app
        .http
        .request(
            Method::DELETE,
            format!("{}/v1/developer/keys/{}", app.base, app.key_id),
        )
        .header("X-API-Key", &second.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!session_works(&app, &first_session).await);
    assert!(session_works(&app, &second_session).await);
    app.stop().await;
}

#[tokio::test]
async fn revoking_the_key_with_the_cli_ends_its_sessions_at_once() {
    let app = TestApp::spawn().await;
    let (cookie, _, _) = http_sign_in(&app, &[]).await;
    assert!(session_works(&app, &cookie).await);
    // Another process, the same data directory: no cache may keep the session alive.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wagate"))
        .args(["account", "key", "revoke", "--account"])
        .arg(app.account.as_str())
        .arg("--key")
        .arg(app.key_id.as_str())
        .arg("--data-dir")
        .arg(&app.config.data_dir)
        .env_remove("WAGATE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!session_works(&app, &cookie).await);
    app.stop().await;
}

#[tokio::test]
async fn end_all_my_sessions_ends_every_session_of_the_account_only() {
    let app = TestApp::spawn().await;
    let store = app.running.services.store.clone();
    let (here, csrf, _) = http_sign_in(&app, &[]).await;
    let (elsewhere, _, _) = http_sign_in(&app, &[]).await;
    let second = accounts::create_key(store.as_ref(), &app.account)
        .await
        .unwrap();
    let (other_key, _, _) = http_sign_in_as(&app, &second.secret, &[]).await;
    let (_, stranger_key) = accounts::create_account(store.as_ref(), "stranger")
        .await
        .unwrap();
    let (stranger, _, _) = http_sign_in_as(&app, &stranger_key.secret, &[]).await;

    // Without the page's CSRF token nothing ends (a forged cross-site form).
    let resp = post_form(&app, "/signout/all", &here, "").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post_form(&app, "/signout/all", &here, &"0".repeat(csrf.len())).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(session_works(&app, &elsewhere).await);

    let resp = post_form(&app, "/signout/all", &here, &csrf).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/signin");
    assert!(clears_cookie(&resp));
    for cookie in [&here, &elsewhere, &other_key] {
        assert!(!session_works(&app, cookie).await);
    }
    assert!(
        session_works(&app, &stranger).await,
        "another account's session"
    );
    // The account's keys still work for the API; only browser sessions ended.
    let (status, _) = app.api(Method::GET, "/v1/developer/devices", None).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}
