//! Accounts, API keys, authentication and isolation between accounts.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;

/// Runs the CLI on a data directory: (success, stdout, stderr).
fn run_cli(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wagate"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WAGATE_CONFIG")
        .env_remove("WAGATE_DATA_DIR")
        .env_remove("WAGATE_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI, which must succeed and print exactly one line of JSON.
fn cli(data_dir: &std::path::Path, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = run_cli(data_dir, args);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// Runs the CLI, which must fail; its error message.
fn cli_fails(data_dir: &std::path::Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_cli(data_dir, args);
    assert!(!ok, "should have failed: {stdout}");
    assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
    stderr
}

#[tokio::test]
async fn the_cli_refuses_a_data_directory_that_does_not_exist() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("wagate-data");
    let shown = missing.display().to_string();
    for args in [
        &["account", "list"][..],
        &["account", "create", "--name", "Shop"][..],
        &["account", "key", "list", "--account", "acc_nope"][..],
    ] {
        let err = cli_fails(&missing, args);
        assert!(
            err.contains(&shown) && err.contains("wagate serve"),
            "names the path and the way out: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {shown}");
    }
    // A database URL of another kind is refused by name, not taken for a missing directory.
    let err = cli_fails(
        &missing,
        &[
            "--database-url",
            "mysql://root@localhost/wagate",
            "account",
            "list",
        ],
    );
    assert!(
        err.contains("database_url") && err.contains("mysql") && !err.contains(&shown),
        "{err}"
    );
    // An existing directory without a database is just as wrong.
    std::fs::create_dir(&missing).unwrap();
    cli_fails(&missing, &["account", "list"]);
    assert!(!missing.join("wagate.db").exists());

    // `account create --init` is the explicit way to start one from the CLI.
    let created = cli(&missing, &["account", "create", "--init", "--name", "Shop"]);
    assert!(created["apiKey"].as_str().unwrap().starts_with("wak_"));
    let listed = cli(&missing, &["account", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], created["accountId"]);
    assert_eq!(listed[0]["name"], "Shop");
}

#[tokio::test]
async fn account_commands_name_accounts_that_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    cli(
        dir.path(),
        &["account", "create", "--init", "--name", "Shop"],
    );
    let ghost = wagate_core::AccountId::new().to_string();
    for args in [
        &["account", "key", "list", "--account", &ghost][..],
        &["account", "key", "create", "--account", &ghost][..],
        &[
            "account",
            "key",
            "revoke",
            "--account",
            &ghost,
            "--key",
            &wagate_core::ApiKeyId::new().to_string(),
        ][..],
    ] {
        let err = cli_fails(dir.path(), args);
        assert!(
            err.contains("no such account") && err.contains(&ghost),
            "{args:?}: {err}"
        );
    }
    // The case of the report: an id that reads as one but names nothing.
    let err = cli_fails(
        dir.path(),
        &["account", "key", "list", "--account", "acc_nope"],
    );
    assert!(err.contains("no such account: acc_nope"), "{err}");
    let err = cli_fails(dir.path(), &["account", "key", "list", "--account", "nope"]);
    assert!(err.contains("--account must be an account id"), "{err}");
}

#[tokio::test]
async fn cli_creates_accounts_and_manages_keys_that_the_api_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let created = cli(
        dir.path(),
        &["account", "create", "--init", "--name", "Shop"],
    );
    let key = created["apiKey"].as_str().unwrap().to_owned();
    let account = created["accountId"].as_str().unwrap().to_owned();
    assert!(account.starts_with("acc_"));
    assert_eq!(key.len(), 36);
    assert!(
        key.starts_with("wak_")
            && key[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{key}"
    );

    let second = cli(
        dir.path(),
        &["account", "key", "create", "--account", &account],
    );
    let second_key = second["apiKey"].as_str().unwrap().to_owned();
    let listed = cli(
        dir.path(),
        &["account", "key", "list", "--account", &account],
    );
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        !listed.iter().any(|k| k.to_string().contains(&key)),
        "secrets must never be listed"
    );

    // The stored file holds no key in clear.
    let db = std::fs::read(dir.path().join("wagate.db")).unwrap();
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()));

    // The server on the same data directory accepts both keys; revoking one from the
    // CLI makes it fail.
    let mut config = test_config(&dir);
    config.data_dir = dir.path().to_path_buf();
    let running = wagate::app::start(config, Default::default())
        .await
        .unwrap();
    let url = format!("http://{}/v1/developer/devices", running.addr);
    let client = reqwest::Client::new();
    for k in [&key, &second_key] {
        let resp = client
            .get(&url)
            .header("X-API-Key", k)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let second_id = second["id"].as_str().unwrap();
    cli(
        dir.path(),
        &[
            "account",
            "key",
            "revoke",
            "--account",
            &account,
            "--key",
            second_id,
        ],
    );
    // The server keeps keys in memory for up to `API_KEY_CACHE_TTL` (1 s): a revocation
    // by another process (the CLI) takes effect within that.
    let revoked_at = std::time::Instant::now();
    loop {
        let resp = client
            .get(&url)
            .header("X-API-Key", &second_key)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            revoked_at.elapsed() < wagate_store_sqlite::API_KEY_CACHE_TTL * 3,
            "the revoked key still works after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The other key is unaffected.
    let resp = client
        .get(&url)
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    running.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_with_the_error_shape() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(format!("{}/v1/developer/devices", app.base))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    for bad in [
        "wak_00000000000000000000000000000000",
        "nonsense",
        "",
        &app.key.to_uppercase(),
        &app.key[..20],
    ] {
        let (status, body) = app
            .call_as(bad, Method::GET, "/v1/developer/devices", None)
            .await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app
        .call_as(
            &app.key,
            Method::POST,
            "/v1/developer/messages/send",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "authenticated requests reach validation: {body}"
    );
}

#[tokio::test]
async fn keys_rotate_two_at_a_time_through_the_api() {
    let app = TestApp::spawn().await;
    let (status, created) = app.post("/v1/developer/keys", json!(null)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let new_key = created["data"]["apiKey"].as_str().unwrap().to_owned();
    // A third active key is refused.
    let (status, body) = app.post("/v1/developer/keys", json!(null)).await;
    assert_error(status, &body, StatusCode::CONFLICT);

    let (_, listed) = app.get("/v1/developer/keys").await;
    let keys = listed["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.get("apiKey").is_none() && k["prefix"].as_str().unwrap().len() == 12)
    );

    // Revoke the original key with the new one; the original stops working.
    let old_id = keys
        .iter()
        .find(|k| k["id"] != created["data"]["id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = app
        .call_as(
            &new_key,
            Method::DELETE,
            &format!("/v1/developer/keys/{old_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get("/v1/developer/devices").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .call_as(&new_key, Method::GET, "/v1/developer/devices", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call_as(
            &new_key,
            Method::DELETE,
            &format!("/v1/developer/keys/{old_id}"),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_account_never_sees_or_changes_another_accounts_things() {
    let app = TestApp::spawn().await;
    let device = app.connected_device("mine").await;
    let uid = device["deviceUid"].as_str().unwrap();
    let sent = app.send_text(uid, "+201001234567", "hello").await;
    let msg = sent["messageId"].as_str().unwrap();
    let (_, media) = app.upload(png(), "a.png", "image/png").await;
    let media_id = media["data"]["mediaId"].as_str().unwrap();

    let (other, _) = app.other_account().await;
    let as_other = |m: Method, p: String, b: Option<Value>| {
        let app = &app;
        let other = other.clone();
        async move { app.call_as(&other, m, &p, b).await }
    };
    let (s, b) = as_other(Method::GET, format!("/v1/developer/devices/{uid}"), None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(
        Method::PATCH,
        format!("/v1/developer/devices/{uid}"),
        Some(json!({"name": "stolen"})),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(Method::DELETE, format!("/v1/developer/devices/{uid}"), None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(
        Method::POST,
        format!("/v1/developer/devices/{uid}/token"),
        None,
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(Method::GET, format!("/v1/developer/messages/{msg}"), None).await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(
        Method::POST,
        "/v1/developer/messages/send".into(),
        Some(json!({"deviceUid": uid, "to": "+201001234567", "text": "x"})),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(
        Method::POST,
        "/v1/developer/messages/check-whatsapp".into(),
        Some(json!({"deviceUid": uid, "numbers": ["+201001234567"]})),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    let (s, b) = as_other(
        Method::POST,
        "/v1/developer/sandbox/inbound".into(),
        Some(json!({"deviceUid": uid, "from": "+201001234567", "text": "x"})),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    // Linking, webhooks, history and the event stream of the device: 404 for the other
    // account, and nothing happens to the device (a logout that lost its ownership check
    // would unlink it).
    let foreign: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/developer/devices/{uid}/qr"), None),
        (
            Method::POST,
            format!("/v1/developer/devices/{uid}/pair-code"),
            Some(json!({"phone": "+201001234567"})),
        ),
        (
            Method::POST,
            format!("/v1/developer/devices/{uid}/connect"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/developer/devices/{uid}/logout"),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/developer/devices/{uid}/instance-webhook"),
            Some(json!({"url": "https://example.com/hook"})),
        ),
        (
            Method::PUT,
            "/v1/developer/webhooks".into(),
            Some(json!({"deviceUid": uid, "personalWebhookUrl": "https://example.com/"})),
        ),
        (
            Method::GET,
            format!("/v1/developer/webhooks?deviceUid={uid}"),
            None,
        ),
        (
            Method::POST,
            "/v1/developer/webhooks/secret/rotate".into(),
            Some(json!({"deviceUid": uid})),
        ),
        (
            Method::GET,
            format!("/v1/developer/webhooks/history?deviceUid={uid}"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/developer/events?deviceUid={uid}"),
            None,
        ),
    ];
    for (method, path, body) in foreign {
        let (s, b) = as_other(method.clone(), path.clone(), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {b}");
        assert_error(s, &b, StatusCode::NOT_FOUND);
    }
    let (_, mine) = app.get(&format!("/v1/developer/devices/{uid}")).await;
    assert_eq!(mine["data"]["status"], "connected", "{mine}");
    let (_, hooks) = app
        .get(&format!("/v1/developer/webhooks?deviceUid={uid}"))
        .await;
    assert!(
        hooks["data"]["personalWebhookUrl"].is_null(),
        "not configured by the other account: {hooks}"
    );
    // The other account's own device cannot send this account's media.
    let (s, created) = as_other(
        Method::POST,
        "/v1/developer/devices".into(),
        Some(json!({"name": "theirs", "engine": "sandbox"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let theirs = created["data"]["deviceUid"].as_str().unwrap().to_owned();
    let (s, b) = as_other(
        Method::POST,
        "/v1/developer/messages/send-media".into(),
        Some(json!({"deviceUid": theirs, "to": "+201001234567", "mediaId": media_id})),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND);
    // Listings show only their own.
    let (_, list) = as_other(Method::GET, "/v1/developer/devices".into(), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, list) = as_other(Method::GET, "/v1/developer/messages".into(), None).await;
    assert_eq!(list["data"]["total"], 0);
    let (_, list) = as_other(
        Method::GET,
        format!("/v1/developer/messages?deviceUid={uid}"),
        None,
    )
    .await;
    assert_eq!(list["data"]["total"], 0);
    // And nothing changed for the owner.
    let (_, mine) = app.get(&format!("/v1/developer/devices/{uid}")).await;
    assert_eq!(mine["data"]["name"], "mine");
}
