//! The [`EngineSession`] commands: sending, groups and pairing delegate to their modules;
//! the session's life is here — `connect` starts a new round, `logout` unlinks and deletes the
//! keys, `stop` ends the round and drains the pump so nothing is emitted after it returns.

use super::{Phase, SHUTDOWN_GRACE, WebSession};
use async_trait::async_trait;
use std::time::Duration;
use tracing::warn;
use wagate_core::chat::{GroupInfo, MemberOutcome, MembershipChange};
use wagate_core::engine::{
    ChatState, EngineError, EngineEvent, EngineSession, NumberCheck, OutgoingMessage, PairCode,
    ReadMark,
};
use wagate_core::{GroupId, Phone, Recipient};

#[async_trait]
impl EngineSession for WebSession {
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        self.send_message(message).await
    }

    async fn check_numbers(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        self.check(numbers).await
    }

    async fn typing(&self, to: &Recipient, duration: Duration) -> Result<(), EngineError> {
        self.show_typing(to, duration).await
    }

    async fn chat_state(&self, to: &Recipient, state: ChatState) -> Result<(), EngineError> {
        self.set_chat_state(to, state).await
    }

    async fn mark_read(&self, chat: &Recipient, messages: &[ReadMark]) -> Result<(), EngineError> {
        self.send_read_receipts(chat, messages).await
    }

    async fn groups(&self) -> Result<Vec<GroupInfo>, EngineError> {
        self.list_groups().await
    }

    async fn group_info(&self, group: &GroupId) -> Result<GroupInfo, EngineError> {
        self.read_group(group).await
    }

    async fn create_group(
        &self,
        subject: &str,
        members: &[Phone],
    ) -> Result<GroupInfo, EngineError> {
        self.new_group(subject, members).await
    }

    async fn change_members(
        &self,
        group: &GroupId,
        change: MembershipChange,
        members: &[Phone],
    ) -> Result<Vec<MemberOutcome>, EngineError> {
        self.change_group_members(group, change, members).await
    }

    async fn leave_group(&self, group: &GroupId) -> Result<(), EngineError> {
        self.leave(group).await
    }

    async fn invite_link(&self, group: &GroupId) -> Result<String, EngineError> {
        self.group_invite_link(group).await
    }

    async fn request_pair_code(&self, phone: &Phone) -> Result<PairCode, EngineError> {
        self.pair_code(phone).await
    }

    async fn connect(&self) -> Result<(), EngineError> {
        let _cmd = self.inner.commands.lock().await;
        let (phase, logged_out) = {
            let st = self.inner.state();
            if st.stopped {
                return Err(EngineError::NotConnected("the session was stopped".into()));
            }
            (st.phase, st.logged_out)
        };
        match phase {
            // Already connected, or already showing codes: nothing to restart.
            Phase::Online | Phase::Linking | Phase::Starting => return Ok(()),
            // Reconnecting: start over now instead of waiting out the backoff.
            Phase::Reconnecting | Phase::Ended => {}
        }
        self.end_round().await;
        if logged_out {
            // WhatsApp no longer accepts these keys; a new round must link afresh.
            self.inner.store.remove().await.map_err(|e| {
                EngineError::Internal(format!("cannot reset the device store: {e}"))
            })?;
            self.inner.state().logged_out = false;
        }
        self.begin_round(false);
        Ok(())
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let _cmd = self.inner.commands.lock().await;
        let client = {
            let mut st = self.inner.state();
            st.logging_out = true;
            st.client.clone()
        };
        let online = client
            .as_ref()
            .is_some_and(|c| c.is_connected() && c.is_logged_in());
        if let Some(c) = client {
            // Deregisters (when online), disables reconnecting, disconnects.
            c.logout().await;
        }
        self.end_round().await;
        {
            let mut st = self.inner.state();
            st.logging_out = false;
            st.logged_out = false;
        }
        self.inner.queue(EngineEvent::LoggedOut {
            reason: if online {
                "logged out on request; the device was unlinked".into()
            } else {
                "logged out on request while offline; the phone may list the device until it \
                 is removed there"
                    .into()
            },
        });
        self.inner
            .store
            .remove()
            .await
            .map_err(|e| EngineError::Internal(format!("cannot delete the device store: {e}")))?;
        Ok(())
    }

    async fn stop(&self) {
        let _cmd = self.inner.commands.lock().await;
        {
            let mut st = self.inner.state();
            if st.stopped {
                return;
            }
            st.stopped = true;
        }
        self.end_round().await;
        self.inner.pump_stop.cancel();
        let pump = self
            .inner
            .pump
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = pump
            && tokio::time::timeout(SHUTDOWN_GRACE, p).await.is_err()
        {
            warn!(device.uid = %self.inner.uid, "event pump did not finish in time");
        }
    }
}
