//! Linking by phone number: a pair code for the user to type on the phone, asked of the
//! round that is linking (waiting a little for a round that is still starting).

use super::errors::pair_error;
use super::{Phase, WebSession};
use std::time::Duration;
use wagate_core::Phone;
use wagate_core::engine::{EngineError, PairCode};
use whatsapp_rust::pair_code::PairCodeOptions;

/// How long a pair code stays valid (WhatsApp's own window).
const PAIR_CODE_VALIDITY: Duration = Duration::from_secs(180);
/// How long a pair-code request waits for a starting round to get its client.
const PAIR_CODE_START_WAIT: Duration = Duration::from_secs(30);

impl WebSession {
    pub(super) async fn pair_code(&self, phone: &Phone) -> Result<PairCode, EngineError> {
        // Right after start the round may still wait for its start slot; give it a while
        // rather than failing a request the user just made.
        let deadline = tokio::time::Instant::now() + PAIR_CODE_START_WAIT;
        let client = loop {
            let client = {
                let st = self.inner.state();
                if st.phase == Phase::Online {
                    return Err(EngineError::Rejected {
                        code: Some("already_linked".into()),
                        reason: "the device is already linked".into(),
                    });
                }
                if st.phase == Phase::Ended || st.stopped {
                    return Err(EngineError::NotConnected(
                        "the linking round ended; call connect to start a new one".into(),
                    ));
                }
                st.client.clone()
            };
            match client {
                Some(c) => break c,
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(EngineError::NotConnected(
                        "the device is still starting; try again in a moment".into(),
                    ));
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        if client.is_logged_in() {
            return Err(EngineError::Rejected {
                code: Some("already_linked".into()),
                reason: "the device is already linked".into(),
            });
        }
        client
            .wait_for_socket(Duration::from_secs(20))
            .await
            .map_err(|e| {
                EngineError::NotConnected(format!("not connected to WhatsApp yet: {e}"))
            })?;
        let code = client
            .pair_with_code(PairCodeOptions {
                phone_number: phone.digits().to_owned(),
                ..Default::default()
            })
            .await
            .map_err(pair_error)?;
        Ok(PairCode {
            code,
            expires_in: PAIR_CODE_VALIDITY,
        })
    }
}
