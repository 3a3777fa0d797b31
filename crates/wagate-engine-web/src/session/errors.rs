//! Protocol errors as [`EngineError`]s: which are worth retrying (throttling, timeouts,
//! lost connections) and which are WhatsApp's final word.

use std::time::Duration;
use wagate_core::engine::EngineError;
use whatsapp_rust::pair_code::{PairCodeError, PairError};
use whatsapp_rust::prelude::*;
use whatsapp_rust::request::IqError;

pub(super) fn iq_error(e: &IqError, what: &str) -> EngineError {
    match e {
        IqError::ServerError {
            code: 429, backoff, ..
        } => EngineError::RateLimited {
            retry_after: backoff.map(|s| Duration::from_secs(u64::from(s))),
            reason: format!("WhatsApp is throttling {what}"),
        },
        IqError::ServerError { code, text, .. } if (400..500).contains(code) => {
            EngineError::Rejected {
                code: Some(code.to_string()),
                reason: format!("WhatsApp refused {what}: {code} {text}"),
            }
        }
        IqError::NotConnected => EngineError::NotConnected("the device is not connected".into()),
        other => EngineError::Transient(format!("{what} failed: {other}")),
    }
}

pub(super) fn send_error(e: SendError) -> EngineError {
    match e {
        SendError::NotLoggedIn => EngineError::NotConnected("the device is not logged in".into()),
        SendError::Client(ClientError::NotConnected | ClientError::NotLoggedIn) => {
            EngineError::NotConnected("the device is not connected".into())
        }
        SendError::Iq(iq) => iq_error(&iq, "sending"),
        SendError::InvalidRequest(m) => EngineError::Rejected {
            code: Some("invalid_request".into()),
            reason: format!("WhatsApp cannot send this: {m}"),
        },
        other => EngineError::Transient(format!("send failed: {other}")),
    }
}

pub(super) fn pair_error(e: PairError) -> EngineError {
    if let PairError::PairCode(PairCodeError::CodeAlreadyOutstanding { remaining }) = &e {
        return EngineError::RateLimited {
            retry_after: Some(*remaining),
            reason: "a pair code is already outstanding; enter it on the phone or wait until it \
                     expires"
                .into(),
        };
    }
    if let Some(rejection) = e.rejection() {
        let reason = format!(
            "WhatsApp refused the pair code request ({}: {})",
            rejection.code(),
            rejection.text().unwrap_or("unknown")
        );
        return if rejection.is_throttled() {
            EngineError::RateLimited {
                retry_after: e.backoff(),
                reason: format!(
                    "{reason}; WhatsApp throttles pair codes per number, try again later"
                ),
            }
        } else {
            EngineError::Rejected {
                code: Some(rejection.code().to_string()),
                reason,
            }
        };
    }
    match e {
        PairError::PairCode(
            p @ (PairCodeError::PhoneNumberRequired
            | PairCodeError::PhoneNumberTooShort
            | PairCodeError::PhoneNumberNotInternational),
        ) => EngineError::Rejected {
            code: Some("invalid_phone".into()),
            reason: p.to_string(),
        },
        PairError::RequestFailed(iq) => iq_error(&iq, "the pair code request"),
        other => EngineError::Transient(format!("pair code request failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iq_errors_are_classified() {
        let throttled = IqError::ServerError {
            code: 429,
            text: "rate-overlimit".into(),
            error_type: None,
            backoff: Some(30),
        };
        assert_eq!(
            iq_error(&throttled, "x"),
            EngineError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                reason: "WhatsApp is throttling x".into()
            }
        );
        let bad = IqError::ServerError {
            code: 400,
            text: "bad-request".into(),
            error_type: None,
            backoff: None,
        };
        assert!(
            matches!(iq_error(&bad, "x"), EngineError::Rejected { code: Some(c), .. } if c == "400")
        );
        assert!(matches!(
            iq_error(&IqError::Timeout, "x"),
            EngineError::Transient(_)
        ));
        assert!(matches!(
            send_error(SendError::NotLoggedIn),
            EngineError::NotConnected(_)
        ));
        assert!(matches!(
            send_error(SendError::InvalidRequest("newsletter".into())),
            EngineError::Rejected { .. }
        ));
    }

    #[test]
    fn pair_code_errors_are_classified() {
        let outstanding = PairError::PairCode(PairCodeError::CodeAlreadyOutstanding {
            remaining: Duration::from_secs(90),
        });
        assert!(matches!(
            pair_error(outstanding),
            EngineError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 90
        ));
        assert!(matches!(
            pair_error(PairError::PairCode(PairCodeError::PhoneNumberNotInternational)),
            EngineError::Rejected { code: Some(c), .. } if c == "invalid_phone"
        ));
        assert!(matches!(
            pair_error(PairError::RequestFailed(IqError::Timeout)),
            EngineError::Transient(_)
        ));
    }
}
