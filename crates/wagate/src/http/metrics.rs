//! Prometheus metrics, sampled at scrape time through `OpsService::metric_samples` (no
//! background aggregation to keep in sync).
//!
//! They are not public: they say how many devices run and how busy they are. On the main
//! listener `/metrics` needs `Authorization: Bearer <metrics.token>` and does not exist
//! while no token is configured; `metrics.listen` serves them on a separate (by default
//! loopback) address instead (see [`crate::config::MetricsConfig`]).
//!
//! Label cardinality is bounded by default: series are totals by engine and connection
//! state, so 10,000 devices cost the scraper the same dozen series as one. Per-device
//! series (labelled by device uid, never by account) are an opt-in for small instances
//! (`metrics.per_device`).

use super::error::ApiError;
use crate::service::Services;
use crate::service::ops::{DeviceCounters, DeviceSample};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::BTreeMap;
use std::fmt::Write;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// A counter family: name, help text, and how to read it from a device's counters.
type Family = (&'static str, &'static str, fn(&DeviceCounters) -> u64);

const COUNTERS: [Family; 4] = [
    (
        "messages_sent_total",
        "Messages WhatsApp's server acknowledged, since each running device started.",
        |c| c.sent,
    ),
    (
        "messages_received_total",
        "Inbound messages committed, since each running device started.",
        |c| c.received,
    ),
    (
        "reconnects_total",
        "Times a device's connection dropped and was retried.",
        |c| c.reconnects,
    ),
    (
        "undecryptable_total",
        "Inbound messages that could not be decrypted.",
        |c| c.undecryptable,
    ),
];

/// `/metrics` on the main listener: only with the configured bearer token.
pub async fn metrics(State(s): State<Services>, headers: HeaderMap) -> Response {
    let Some(token) = s.ops.metrics_config().token.as_deref() else {
        // Not configured: the endpoint does not exist here, as for any unknown path.
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
            .into_response();
    };
    if !bearer_matches(&headers, token) {
        return unauthorized();
    }
    exposition(&s)
}

/// `/metrics` on `metrics.listen`: the token is required when one is configured; without
/// one the listener is loopback-only (checked at startup).
async fn metrics_listener(State(s): State<Services>, headers: HeaderMap) -> Response {
    if let Some(token) = s.ops.metrics_config().token.as_deref()
        && !bearer_matches(&headers, token)
    {
        return unauthorized();
    }
    exposition(&s)
}

/// Serves `/metrics` alone on `listener` until `stop` is cancelled.
pub async fn serve_listener(
    services: Services,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics_listener))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
        })
        .with_state(services);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time: how long the comparison takes says nothing about the token.
    !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(token.trim().as_bytes()))
}

fn unauthorized() -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Metrics need `Authorization: Bearer <metrics token>`.",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"wagate metrics\""),
    );
    response
}

fn exposition(s: &Services) -> Response {
    let samples = s.ops.metric_samples();
    let mut out = render_node(&s.ops.node_id());
    out.push_str(&render_totals(&samples));
    if s.ops.metrics_config().per_device {
        out.push_str(&render_per_device(&samples));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

fn state(connected: bool) -> &'static str {
    if connected {
        "connected"
    } else {
        "disconnected"
    }
}

/// Which node these metrics are from: in a cluster each node serves the numbers of the
/// devices it drives, and this series lets a dashboard label or join them by node. Node
/// ids are checked at start (letters, digits, `.` `_` `-` `:`), so nothing needs escaping.
pub fn render_node(node_id: &str) -> String {
    format!(
        "# HELP wagate_node_info The node serving these metrics (its node_id).\n# TYPE wagate_node_info gauge\nwagate_node_info{{node=\"{node_id}\"}} 1\n"
    )
}

/// Totals by engine (and connection state for the device count). Every engine and state
/// that has a device appears; label values are fixed words, so nothing needs escaping.
pub fn render_totals(samples: &[DeviceSample]) -> String {
    let mut out = String::new();
    let mut devices: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut totals: BTreeMap<&str, [u64; COUNTERS.len()]> = BTreeMap::new();
    for d in samples {
        *devices
            .entry((d.engine.as_str(), state(d.connected)))
            .or_default() += 1;
        let sums = totals.entry(d.engine.as_str()).or_default();
        for (sum, (_, _, read)) in sums.iter_mut().zip(COUNTERS.iter()) {
            *sum += read(&d.counters);
        }
    }
    let _ = writeln!(
        out,
        "# HELP wagate_devices Devices with a running engine session, by engine and connection state.\n# TYPE wagate_devices gauge"
    );
    for ((engine, state), n) in &devices {
        let _ = writeln!(
            out,
            "wagate_devices{{engine=\"{engine}\",state=\"{state}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP wagate_devices_running Devices with a running engine session.\n# TYPE wagate_devices_running gauge\nwagate_devices_running {}",
        samples.len()
    );
    for (i, (name, help, _)) in COUNTERS.iter().enumerate() {
        // Sums over running devices: a device that stops takes its share with it, which
        // Prometheus's rate() reads as a counter reset.
        let _ = writeln!(
            out,
            "# HELP wagate_{name} {help}\n# TYPE wagate_{name} counter"
        );
        for (engine, sums) in &totals {
            let _ = writeln!(out, "wagate_{name}{{engine=\"{engine}\"}} {}", sums[i]);
        }
    }
    out
}

/// The opt-in per-device series. Labels are device uids (`dev_` + `[0-9a-z]`), which
/// need no escaping.
fn render_per_device(samples: &[DeviceSample]) -> String {
    let mut out = String::new();
    for (name, help, read) in COUNTERS {
        let _ = writeln!(
            out,
            "# HELP wagate_device_{name} {help}\n# TYPE wagate_device_{name} counter"
        );
        for d in samples {
            let _ = writeln!(
                out,
                "wagate_device_{name}{{device=\"{}\"}} {}",
                d.uid,
                read(&d.counters)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wagate_device_last_event_timestamp_seconds When the device's engine last reported anything.\n# TYPE wagate_device_last_event_timestamp_seconds gauge"
    );
    for d in samples {
        let at = d
            .counters
            .last_event_at
            .map(|ms| ms as f64 / 1000.0)
            .unwrap_or(0.0);
        let _ = writeln!(
            out,
            "wagate_device_last_event_timestamp_seconds{{device=\"{}\"}} {at}",
            d.uid
        );
    }
    let _ = writeln!(
        out,
        "# HELP wagate_device_connected Whether the device is connected to WhatsApp (1) or not (0).\n# TYPE wagate_device_connected gauge"
    );
    for d in samples {
        let _ = writeln!(
            out,
            "wagate_device_connected{{device=\"{}\"}} {}",
            d.uid,
            u8::from(d.connected)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_core::DeviceUid;
    use wagate_core::device::EngineKind;

    #[test]
    fn totals_stay_a_fixed_set_of_series_for_ten_thousand_devices() {
        let samples: Vec<DeviceSample> = (0..10_000)
            .map(|i| DeviceSample {
                uid: DeviceUid::new(),
                engine: if i % 2 == 0 {
                    EngineKind::Sandbox
                } else {
                    EngineKind::WhatsappWeb
                },
                connected: i % 3 != 0,
                counters: DeviceCounters {
                    sent: 2,
                    ..DeviceCounters::default()
                },
            })
            .collect();
        let text = render_totals(&samples);
        let series = text.lines().filter(|l| !l.starts_with('#')).count();
        // 2 engines × 2 states + the running total + 4 counters × 2 engines.
        assert_eq!(series, 4 + 1 + 8, "{text}");
        assert!(text.contains("wagate_messages_sent_total{engine=\"sandbox\"} 10000"));
        assert!(text.contains("wagate_devices_running 10000"));
        assert!(!text.contains("dev_"), "no device labels by default");
    }
}
