//! Prometheus metrics at `/metrics`: per-device counters and connection state, read at
//! scrape time from the runtime (no background aggregation to keep in sync).

use crate::runtime::DeviceCounters;
use crate::service::Services;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// A per-device metric: name, type, help text, and how to read it from the counters.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DeviceCounters) -> f64,
);

/// Renders the text exposition format. Labels are device uids (`dev_` + `[0-9a-z]`), which
/// need no escaping.
pub async fn metrics(State(s): State<Services>) -> Response {
    let counters = s.runtime.all_counters();
    let mut out = String::new();
    let families: [Family; 5] = [
        (
            "wagate_device_messages_sent_total",
            "counter",
            "Messages WhatsApp's server acknowledged, since the device started.",
            |c| c.sent as f64,
        ),
        (
            "wagate_device_messages_received_total",
            "counter",
            "Inbound messages committed, since the device started.",
            |c| c.received as f64,
        ),
        (
            "wagate_device_reconnects_total",
            "counter",
            "Times the device's connection dropped and was retried.",
            |c| c.reconnects as f64,
        ),
        (
            "wagate_device_undecryptable_total",
            "counter",
            "Inbound messages that could not be decrypted.",
            |c| c.undecryptable as f64,
        ),
        (
            "wagate_device_last_event_timestamp_seconds",
            "gauge",
            "When the device's engine last reported anything.",
            |c| c.last_event_at.map(|ms| ms as f64 / 1000.0).unwrap_or(0.0),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (uid, c) in &counters {
            let _ = writeln!(out, "{name}{{device=\"{uid}\"}} {}", value(c));
        }
    }
    let _ = writeln!(
        out,
        "# HELP wagate_device_connected Whether the device is connected to WhatsApp (1) or not (0).\n# TYPE wagate_device_connected gauge"
    );
    for (uid, _) in &counters {
        let _ = writeln!(
            out,
            "wagate_device_connected{{device=\"{uid}\"}} {}",
            u8::from(s.runtime.is_connected(uid))
        );
    }
    let _ = writeln!(
        out,
        "# HELP wagate_devices_running Devices with a running engine session.\n# TYPE wagate_devices_running gauge\nwagate_devices_running {}",
        counters.len()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
