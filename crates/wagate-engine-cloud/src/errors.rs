//! What a Graph API refusal means for the message and the device. Meta answers errors as
//! `{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}}}`;
//! the code decides: the message fails (with Meta's code and words), waits and is retried
//! (throttling, Meta's own trouble), or the device itself can no longer send (its token
//! expired or was revoked).

use serde::Deserialize;
use std::time::Duration;
use wagate_core::engine::EngineError;

/// A failed Graph API call, as Meta (or the network) reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct GraphError {
    /// The HTTP status; 0 when no answer came (connection refused, timeout).
    pub status: u16,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// Meta's words (`error_data.details` when given: more specific than `message`).
    pub message: String,
    /// The `Retry-After` Meta sent, if any.
    pub retry_after: Option<Duration>,
}

/// The JSON of an error answer.
#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    error_user_msg: Option<String>,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// Meta's message length is its own; a hostile or broken server could send megabytes.
const MAX_MESSAGE_CHARS: usize = 300;

impl GraphError {
    /// An error answer (`status`, body, `Retry-After` seconds if sent).
    pub fn from_answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let parsed = serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error);
        let (code, subcode, message) = match parsed {
            Some(b) => {
                let words = b
                    .error_data
                    .and_then(|d| d.details)
                    .or(b.error_user_msg)
                    .or(b.message)
                    .unwrap_or_default();
                (b.code, b.error_subcode, words)
            }
            None => (None, None, String::new()),
        };
        let message = if message.trim().is_empty() {
            format!("HTTP {status} from the Graph API")
        } else {
            message.chars().take(MAX_MESSAGE_CHARS).collect()
        };
        Self {
            status,
            code,
            subcode,
            message,
            retry_after,
        }
    }

    /// No answer came (the Graph API could not be reached, or timed out).
    pub fn unreachable(why: impl std::fmt::Display) -> Self {
        Self {
            status: 0,
            code: None,
            subcode: None,
            message: format!("the Graph API could not be reached: {why}"),
            retry_after: None,
        }
    }

    fn describe(&self) -> String {
        match self.code {
            Some(c) => format!("{} (Meta error {c})", self.message),
            None => self.message.clone(),
        }
    }

    /// The device's credentials no longer work: an expired or revoked token (190), an
    /// app without permission on the number (10, 200), or any 401.
    pub fn is_credentials(&self) -> bool {
        matches!(self.code, Some(190 | 10 | 200)) || self.status == 401
    }

    /// What this means for a message being sent.
    pub fn for_message(&self) -> EngineError {
        let meta = |what: &str| format!("{what}: {}", self.describe());
        match self.code {
            _ if self.is_credentials() => EngineError::NotConnected(meta(
                "the Cloud API refused the device's access token; replace it with PATCH",
            )),
            // Throughput (130429), pair rate (131056), the business account's rate (80007),
            // the app's call rate (4, 613).
            Some(130429 | 131056 | 80007 | 4 | 613) => EngineError::RateLimited {
                retry_after: self.retry_after,
                reason: meta("Meta is throttling this number"),
            },
            Some(131047) => EngineError::Rejected {
                code: Some("131047".into()),
                reason: meta(
                    "more than 24 hours since the customer last wrote: only a template \
                     (send-template) can open the conversation",
                ),
            },
            Some(131026) => EngineError::Rejected {
                code: Some("131026".into()),
                reason: meta(
                    "undeliverable: the number is not on WhatsApp, or its app cannot \
                     receive this message",
                ),
            },
            // Meta's own trouble (1, 2, 131000 "something went wrong") or no answer.
            Some(1 | 2 | 131000) => EngineError::Transient(meta("the Graph API failed")),
            _ if self.status == 0 || self.status >= 500 || self.status == 429 => {
                EngineError::Transient(meta("the Graph API failed"))
            }
            code => EngineError::Rejected {
                code: code.map(|c| c.to_string()),
                reason: meta("the Cloud API refused the message"),
            },
        }
    }
}

/// The `Retry-After` header, in seconds (Meta does not send dates), capped so a hostile
/// value cannot park a queue for days.
pub fn retry_after(header: Option<&str>) -> Option<Duration> {
    let secs: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: i64) -> GraphError {
        let body = format!(
            r#"{{"error":{{"message":"(#{code}) words","type":"OAuthException","code":{code},"error_data":{{"details":"Meta's details"}},"fbtrace_id":"A"}}}}"#
        );
        GraphError::from_answer(status, body.as_bytes(), Some(Duration::from_secs(7)))
    }

    #[test]
    fn each_code_decides_what_happens_to_the_message() {
        match answer(400, 131047).for_message() {
            EngineError::Rejected { code, reason } => {
                assert_eq!(code.as_deref(), Some("131047"));
                assert!(reason.contains("24 hours") && reason.contains("Meta's details"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer(400, 130429).for_message(),
            EngineError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            answer(400, 131056).for_message(),
            EngineError::RateLimited { .. }
        ));
        assert!(matches!(
            answer(400, 80007).for_message(),
            EngineError::RateLimited { .. }
        ));
        let expired = answer(401, 190);
        assert!(expired.is_credentials());
        assert!(matches!(
            expired.for_message(),
            EngineError::NotConnected(_)
        ));
        assert!(matches!(
            answer(500, 131000).for_message(),
            EngineError::Transient(_)
        ));
        assert!(matches!(
            GraphError::unreachable("refused").for_message(),
            EngineError::Transient(_)
        ));
        assert!(matches!(
            answer(400, 100).for_message(),
            EngineError::Rejected { code: Some(c), .. } if c == "100"
        ));
    }

    #[test]
    fn answers_that_are_not_metas_json_still_say_something() {
        let e = GraphError::from_answer(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.message, "HTTP 502 from the Graph API");
        assert!(matches!(e.for_message(), EngineError::Transient(_)));
        let long = format!(
            r#"{{"error":{{"message":"{}","code":100}}}}"#,
            "x".repeat(10_000)
        );
        let e = GraphError::from_answer(400, long.as_bytes(), None);
        assert_eq!(e.message.len(), MAX_MESSAGE_CHARS);
        assert_eq!(retry_after(Some("30")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(Some("999999")), Some(Duration::from_secs(3600)));
        assert_eq!(retry_after(Some("soon")), None);
    }
}
