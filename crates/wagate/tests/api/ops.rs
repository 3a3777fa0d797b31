//! Health, readiness, the OpenAPI document and its reference page.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn health_readiness_openapi_and_docs_are_served() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let spec: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/developer/messages/send",
        "/v1/developer/messages/send-media",
        "/v1/developer/messages/send-voice",
        "/v1/developer/messages/check-whatsapp",
        "/v1/developer/media/upload",
        "/v1/developer/devices",
        "/v1/developer/devices/{deviceUid}",
        "/v1/developer/messages/{messageId}",
    ] {
        assert!(
            spec["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let send = &spec["components"]["schemas"]["SendTextRequest"];
    let required: Vec<&str> = send["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // `to` or `groupId`, exactly one (checked by the handler, which names the field).
    assert_eq!(required, ["deviceUid", "text"]);
    for field in ["to", "groupId"] {
        let described = send["properties"][field]["description"]
            .as_str()
            .unwrap_or("");
        assert!(!described.is_empty(), "{field} is described: {send}");
    }
    let page = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/openapi.json"));
}

#[tokio::test]
async fn unknown_paths_get_the_json_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/v1/developer/nothing-here").await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
}

/// The shape the document declares for every Msgera operation, checked on the document
/// itself: a 2xx JSON reply is the `{"ok": true, "data": …}` envelope (and no 2xx is left
/// without a body), a JSON request body documents 415 and 413, a query documents 422.
#[tokio::test]
async fn the_openapi_document_declares_the_msgera_envelope_415_and_422() {
    let app = TestApp::spawn().await;
    let spec = openapi(&app).await;
    let mut problems = Vec::new();
    let mut enveloped = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/developer/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            for (status, reply) in op["responses"].as_object().unwrap() {
                if !status.starts_with('2') {
                    continue;
                }
                let content = reply["content"].as_object();
                if content.is_none_or(|c| c.is_empty()) {
                    problems.push(format!("{at} {status}: no body documented"));
                }
                if let Some(schema) = content.and_then(|c| c.get("application/json")) {
                    let schema = resolve(&spec, &schema["schema"]);
                    let required = schema["required"].as_array();
                    let is_envelope = schema["properties"]["ok"].is_object()
                        && schema["properties"]["data"].is_object()
                        && required.is_some_and(|r| r.contains(&json!("ok")))
                        && required.is_some_and(|r| r.contains(&json!("data")));
                    if is_envelope {
                        enveloped += 1;
                    } else {
                        problems.push(format!("{at} {status}: not the ok/data envelope"));
                    }
                }
            }
            if op["requestBody"]["content"]["application/json"].is_object() {
                for status in ["413", "415"] {
                    if op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                        != "#/components/schemas/ErrorBody"
                    {
                        problems.push(format!("{at}: a JSON body but no {status} ErrorBody"));
                    }
                }
            }
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if has_query && !op["responses"]["422"].is_object() {
                problems.push(format!("{at}: query parameters but no 422"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(enveloped >= 25, "only {enveloped} enveloped replies");
    // The MegaMsg dialect has no envelope.
    let mega = &spec["paths"]["/api/whatsapp/messages/send"]["post"]["responses"]["200"];
    assert_eq!(
        mega["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SendMessageReply"
    );
}

/// Real replies of the Msgera operations (creates, lists, reads, and the 415 and 422
/// refusals) validated against the schema the document declares for their status.
#[tokio::test]
async fn real_replies_match_their_documented_schemas() {
    let app = TestApp::spawn().await;
    let spec = openapi(&app).await;
    let mut problems = Vec::new();
    let mut check = |method: &str, template: &str, status: StatusCode, body: &Value| {
        let reply = &spec["paths"][template][method]["responses"][status.as_str()];
        let schema = &reply["content"]["application/json"]["schema"];
        if schema.is_null() {
            problems.push(format!(
                "{method} {template}: {status} not documented as JSON"
            ));
        } else {
            for p in conforms(&spec, schema, body, "$") {
                problems.push(format!("{method} {template} {status}: {p}"));
            }
        }
    };

    let (status, body) = app
        .post(
            "/v1/developer/devices",
            json!({ "name": "spec", "engine": "sandbox" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    check("post", "/v1/developer/devices", status, &body);
    let uid = body["data"]["deviceUid"].as_str().unwrap().to_owned();
    app.wait_device_status(&uid, "connected").await;
    let device = "/v1/developer/devices/{deviceUid}";
    for (template, path) in [
        ("/healthz", "/healthz".to_owned()),
        ("/readyz", "/readyz".to_owned()),
        ("/v1/developer/devices", "/v1/developer/devices".to_owned()),
        (
            "/v1/developer/devices",
            "/v1/developer/devices?page=1&limit=5".to_owned(),
        ),
        (device, format!("/v1/developer/devices/{uid}")),
        ("/v1/developer/keys", "/v1/developer/keys".to_owned()),
        (
            "/v1/developer/messages",
            "/v1/developer/messages".to_owned(),
        ),
        ("/v1/developer/inbound", "/v1/developer/inbound".to_owned()),
        (
            "/v1/developer/webhooks/history",
            "/v1/developer/webhooks/history".to_owned(),
        ),
        (
            "/v1/developer/webhooks",
            format!("/v1/developer/webhooks?deviceUid={uid}"),
        ),
        (device, "/v1/developer/devices/dev_nothing".to_owned()),
    ] {
        let (status, body) = app.get(&path).await;
        check("get", template, status, &body);
    }
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/developer/devices/{uid}"),
            Some(json!({ "name": "renamed" })),
        )
        .await;
    check("patch", device, status, &body);
    let (status, body) = app.post("/v1/developer/keys", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    check("post", "/v1/developer/keys", status, &body);
    let key_id = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/v1/developer/keys/{key_id}"),
            None,
        )
        .await;
    check("delete", "/v1/developer/keys/{keyId}", status, &body);
    let (status, body) = app
        .post(
            "/v1/developer/messages/send",
            json!({ "deviceUid": uid, "to": "+201001234567", "text": "hi" }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    check("post", "/v1/developer/messages/send", status, &body);
    let id = body["data"]["messageId"].as_str().unwrap().to_owned();
    let (status, body) = app.get(&format!("/v1/developer/messages/{id}")).await;
    check("get", "/v1/developer/messages/{messageId}", status, &body);
    let (status, body) = app
        .post(
            "/v1/developer/messages/check-whatsapp",
            json!({ "deviceUid": uid, "numbers": ["+201001234567"] }),
        )
        .await;
    check(
        "post",
        "/v1/developer/messages/check-whatsapp",
        status,
        &body,
    );
    let (status, body) = app
        .post(
            "/v1/developer/sandbox/inbound",
            json!({ "deviceUid": uid, "from": "+201001234567", "text": "hello" }),
        )
        .await;
    check("post", "/v1/developer/sandbox/inbound", status, &body);
    let (status, body) = app.upload(png(), "a.png", "image/png").await;
    check("post", "/v1/developer/media/upload", status, &body);
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{uid}/token"), json!({}))
        .await;
    check(
        "post",
        "/v1/developer/devices/{deviceUid}/token",
        status,
        &body,
    );

    // A JSON body sent as something else, and an unknown query parameter.
    let resp = app
        .client
        .post(format!("{}/v1/developer/messages/send", app.base))
        .header("X-API-Key", &app.key)
        .header("Content-Type", "text/plain")
        .body(r#"{"deviceUid":"x","to":"+201001234567","text":"hi"}"#)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    check(
        "post",
        "/v1/developer/messages/send",
        status,
        &resp.json().await.unwrap(),
    );
    let (status, body) = app
        .get(&format!("/v1/developer/devices/{uid}/qr?nonsense=1"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    check("get", "/v1/developer/devices/{deviceUid}/qr", status, &body);

    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/v1/developer/devices/{uid}"),
            None,
        )
        .await;
    check("delete", device, status, &body);
    assert!(problems.is_empty(), "{problems:#?}");
}

async fn openapi(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Follows a `#/components/schemas/…` reference.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(
            spec,
            &spec["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        ),
        None => schema,
    }
}

/// Where `value` breaks `schema`: the JSON Schema keywords utoipa emits for these
/// replies ($ref, type, enum, required, properties, items, oneOf/anyOf/allOf).
fn conforms(spec: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut problems = Vec::new();
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            t => t.as_str().into_iter().collect(),
        };
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "null" => value.is_null(),
            _ => true,
        });
        if !fits {
            problems.push(format!("{at}: {value} is not of type {types:?}"));
            return problems;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap();
        if value.get(name).is_none() {
            problems.push(format!("{at}: `{name}` is missing"));
        }
    }
    if let (Some(props), Some(object)) = (schema["properties"].as_object(), value.as_object()) {
        for (name, v) in object {
            if let Some(s) = props.get(name) {
                problems.extend(conforms(spec, s, v, &format!("{at}.{name}")));
            }
        }
    }
    if let Some(items) = value.as_array().filter(|_| schema["items"].is_object()) {
        for (i, v) in items.iter().enumerate() {
            problems.extend(conforms(spec, &schema["items"], v, &format!("{at}[{i}]")));
        }
    }
    for keyword in ["oneOf", "anyOf"] {
        if let Some(branches) = schema[keyword].as_array()
            && !branches
                .iter()
                .any(|b| conforms(spec, b, value, at).is_empty())
        {
            problems.push(format!("{at}: {value} matches no branch of {keyword}"));
        }
    }
    for branch in schema["allOf"].as_array().into_iter().flatten() {
        problems.extend(conforms(spec, branch, value, at));
    }
    problems
}

/// Every event emitted on this thread: its level and its fields as text.
#[derive(Clone, Default)]
struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        let mut text = Text(format!("{}: ", event.metadata().target()));
        event.record(&mut text);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), text.0));
    }
}

// The default, single-threaded runtime: the server's tasks run on this thread, so the
// thread's own subscriber sees their events.
#[tokio::test]
async fn engine_errors_are_logged_as_warnings_not_errors() {
    use tracing_subscriber::layer::SubscriberExt;
    let recorded = Recorded::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorded.clone()));
    let app = TestApp::spawn().await;
    let device = app.connected_device("phone").await;
    let uid = device["deviceUid"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(&format!("/v1/developer/devices/{uid}/logout"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.wait_device_status(&uid, "logged_out").await;
    let (status, body) = app
        .post(
            "/v1/developer/messages/check-whatsapp",
            json!({ "deviceUid": uid, "numbers": ["+201001234567"] }),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_GATEWAY);

    let events = recorded.0.lock().unwrap().clone();
    let failure = events
        .iter()
        .find(|(_, text)| text.starts_with("tower_http::trace::on_failure") && text.contains("502"))
        .unwrap_or_else(|| panic!("the 502 was not logged: {events:#?}"));
    assert_eq!(failure.0, tracing::Level::WARN, "{failure:?}");
    let errors: Vec<_> = events
        .iter()
        .filter(|(level, _)| *level == tracing::Level::ERROR)
        .collect();
    assert!(
        errors.is_empty(),
        "an ordinary 502 logged errors: {errors:#?}"
    );
}

/// `/readyz` says "not ready" while the database cannot commit: an outside process holds
/// SQLite's write lock (in WAL mode reads still work, so a read-only check would pass), and
/// says "ready" again once the lock is gone.
#[tokio::test]
async fn readyz_fails_while_the_database_cannot_commit() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let ready = || async {
        let resp = app
            .client
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, StatusCode::OK);

    let mut lock = crate::support::lock_database(&app.config.database_path()).await;
    let (status, body) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("database unavailable"),
        "{body}"
    );

    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    eventually("/readyz to be ready again", || async {
        (ready().await.0 == StatusCode::OK).then_some(())
    })
    .await;
}
