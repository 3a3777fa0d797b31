//! Bad input at scale: random JSON values, random objects over each endpoint's own field
//! names (with plausible, hostile and wrongly typed values), and random non-JSON bodies,
//! against every endpoint that takes a body. The server must never answer 500, and every
//! error must have the documented shape `{"ok": false, "message", "code"}` (502 is allowed:
//! it is the documented "WhatsApp/device unavailable").

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use wagate::app::{self, AppParts};
use wagate::config::{Config, SandboxConfig};
use wagate::engine::sandbox::SandboxNetwork;
use wagate::service::AccountService;

struct Endpoint {
    method: reqwest::Method,
    path: String,
    fields: &'static [&'static str],
    megamsg: bool,
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values a field might plausibly (or hostilely) get.
fn arb_field_value(device: String) -> impl Strategy<Value = Value> {
    let strings = prop_oneof![
        Just(device),
        Just("dev_00000000000000000000000000".to_owned()),
        Just("sandbox".to_owned()),
        Just("+201001234567".to_owned()),
        Just("+201001230000".to_owned()),
        Just("201001230500".to_owned()),
        Just("{Hi|Hello} {a|{b|c}}".to_owned()),
        Just("{unclosed".to_owned()),
        Just("2026-01-01T00:00:00Z".to_owned()),
        Just("2999-12-31T23:59:59+14:00".to_owned()),
        Just("not a date".to_owned()),
        Just("http://127.0.0.1:1/hook".to_owned()),
        Just("https://example.invalid/x.png".to_owned()),
        Just("data:image/png;base64,iVBORw0KGgo=".to_owned()),
        Just("message.status".to_owned()),
        Just("message.received".to_owned()),
        Just("med_00000000000000000000000000".to_owned()),
        Just("text".to_owned()),
        Just("image".to_owned()),
        Just("\u{0000}\u{202e}☃".to_owned()),
        Just("x".repeat(5000)),
        ".{0,30}",
    ]
    .prop_map(Value::String);
    prop_oneof![
        4 => strings,
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => (0u32..100_000).prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => arb_json(),
        1 => prop::collection::vec(".{0,20}".prop_map(Value::String), 0..60).prop_map(Value::Array),
        1 => (0u32..2000, 0u32..2000, 0u32..2000).prop_map(|(a, b, c)| json!({"dailyLimit": a, "hourlyLimit": b, "minuteLimit": c})),
        1 => (0u32..700_000, 0u32..700_000, any::<bool>()).prop_map(|(a, b, t)| json!({"minDelayMs": a, "maxDelayMs": b, "typingIndicator": t})),
    ]
}

fn arb_object(fields: &'static [&'static str], device: String) -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        8 => prop::sample::select(fields.to_vec()).prop_map(str::to_owned),
        1 => ".{0,10}",
    ];
    prop::collection::vec((field, arb_field_value(device)), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn check(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        status != 500 && (status < 500 || status == 502),
        "status {status}: {}",
        String::from_utf8_lossy(body)
    );
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!(
            "status {status}, body not JSON ({e}): {}",
            String::from_utf8_lossy(body)
        ))
    })?;
    if status >= 400 {
        prop_assert_eq!(&v["ok"], &json!(false), "error without ok=false: {}", v);
        prop_assert!(v["message"].is_string(), "error without message: {}", v);
        prop_assert!(v["code"].is_string(), "error without code: {}", v);
    } else {
        prop_assert_eq!(&v["ok"], &json!(true), "success without ok=true: {}", v);
    }
    Ok(())
}

#[test]
fn every_request_body_gets_no_500_and_the_error_shape() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        sandbox: SandboxConfig {
            link_delay_ms: 10,
            delivered_delay_ms: 10,
            read_delay_ms: 10,
            ..SandboxConfig::default()
        },
        ..Config::default()
    };
    let (running, key) = rt.block_on(async {
        let accounts = AccountService::new(app::open_store(&config).await.unwrap());
        let (_account, key) = accounts.create_account("props").await.unwrap();
        drop(accounts);
        let sandbox = SandboxNetwork::new(config.sandbox.clone());
        let running = app::start(
            config.clone(),
            AppParts {
                sandbox: Some(Arc::clone(&sandbox)),
                ..AppParts::default()
            },
        )
        .await
        .unwrap();
        (running, key.secret)
    });
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::new();
    // A connected sandbox device, so valid-looking bodies reach deep paths too.
    let (device, token) = rt.block_on(async {
        let v: Value = client
            .post(format!("{base}/v1/developer/devices"))
            .header("X-API-Key", &key)
            .json(&json!({"name": "props", "engine": "sandbox"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let uid = v["data"]["deviceUid"].as_str().unwrap().to_owned();
        let token = v["data"]["instanceToken"].as_str().unwrap().to_owned();
        for _ in 0..200 {
            let d: Value = client
                .get(format!("{base}/v1/developer/devices/{uid}"))
                .header("X-API-Key", &key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if d["data"]["status"] == "connected" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (uid, token)
    });
    use reqwest::Method as M;
    let send = &["deviceUid", "to", "text", "clientMessageId", "sendAt"];
    let endpoints = vec![
        Endpoint {
            method: M::POST,
            path: "/v1/developer/messages/send".into(),
            fields: send,
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/messages".into(),
            fields: send,
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/messages/send-media".into(),
            fields: &[
                "deviceUid",
                "to",
                "mediaId",
                "caption",
                "clientMessageId",
                "sendAt",
            ],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/messages/send-voice".into(),
            fields: &["deviceUid", "to", "mediaId", "clientMessageId", "sendAt"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/messages/check-whatsapp".into(),
            fields: &["deviceUid", "numbers"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/devices".into(),
            fields: &["name", "engine", "safety", "pacing"],
            megamsg: false,
        },
        Endpoint {
            method: M::PATCH,
            path: format!("/v1/developer/devices/{device}"),
            fields: &["name", "safety", "pacing"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: format!("/v1/developer/devices/{device}/pair-code"),
            fields: &["phone"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/keys".into(),
            fields: &["name"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/sandbox/inbound".into(),
            fields: &[
                "deviceUid",
                "from",
                "text",
                "fromName",
                "isGroup",
                "groupId",
                "groupName",
                "mediaId",
            ],
            megamsg: false,
        },
        Endpoint {
            method: M::PUT,
            path: "/v1/developer/webhooks".into(),
            fields: &[
                "deviceUid",
                "personalWebhookUrl",
                "groupWebhookUrl",
                "isActive",
                "events",
            ],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/v1/developer/webhooks/secret/rotate".into(),
            fields: &["deviceUid"],
            megamsg: false,
        },
        Endpoint {
            method: M::PUT,
            path: format!("/v1/developer/devices/{device}/instance-webhook"),
            fields: &["url", "events"],
            megamsg: false,
        },
        Endpoint {
            method: M::POST,
            path: "/api/whatsapp/messages/send".into(),
            fields: &[
                "phoneNumber",
                "type",
                "text",
                "media",
                "caption",
                "mimeType",
                "fileName",
                "ptt",
            ],
            megamsg: true,
        },
        Endpoint {
            method: M::PUT,
            path: "/api/whatsapp/webhook".into(),
            fields: &["url", "events"],
            megamsg: true,
        },
    ];
    let cases: u32 = std::env::var("WAGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let seen: std::sync::Mutex<std::collections::BTreeMap<u16, u32>> = Default::default();
    for ep in &endpoints {
        let strategy = prop_oneof![
            3 => arb_object(ep.fields, device.clone()).prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ];
        let mut runner = TestRunner::new(PtConfig {
            cases,
            failure_persistence: None,
            ..PtConfig::default()
        });
        let result = runner.run(&strategy, |body| {
            rt.block_on(async {
                let mut req = client
                    .request(ep.method.clone(), format!("{base}{}", ep.path))
                    .header("Content-Type", "application/json")
                    .body(body);
                req = if ep.megamsg {
                    req.header("Authorization", format!("Bearer {token}"))
                        .header("X-Instance-Id", &device)
                } else {
                    req.header("X-API-Key", &key)
                };
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                *seen.lock().unwrap().entry(status).or_default() += 1;
                let bytes = resp.bytes().await.unwrap();
                check(status, &bytes)
            })
        });
        if let Err(e) = result {
            panic!("{} {}: {e}", ep.method, ep.path);
        }
    }
    // The bodies must reach the handlers, not only bounce off authentication: some are
    // accepted, many are refused field by field.
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses: {seen:?}");
    assert!(
        seen.keys().any(|s| (200..300).contains(s)),
        "no body was ever accepted: {seen:?}"
    );
    assert!(
        seen.get(&422).copied().unwrap_or(0) > 0,
        "no 422 at all: {seen:?}"
    );
    rt.block_on(running.shutdown());
}
