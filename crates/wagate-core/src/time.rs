//! One notion of "now" for the domain: UTC, millisecond precision.
//!
//! Everything is truncated to milliseconds because that is what the stores keep; a value
//! that round-trips through a store must compare equal to the one that went in.

use chrono::{DateTime, TimeZone, Utc};

/// A point in time as wagate stores it.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to milliseconds.
pub fn now() -> Timestamp {
    from_millis(Utc::now().timestamp_millis())
}

/// A timestamp from milliseconds since the Unix epoch (clamped to the representable range).
pub fn from_millis(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}
