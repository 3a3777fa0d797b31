//! Sending: a message handed to WhatsApp (media prepared off the async threads and
//! uploaded first), numbers checked (cached and paced), the typing indicator.

use super::WebSession;
use super::errors::{iq_error, send_error};
use crate::mapping::phone_of_pn;
use crate::numbers::{self, Answer};
use crate::outgoing::{self, Plan};
use crate::structured;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use wagate_core::Phone;
use wagate_core::engine::{
    ChatState, EngineError, EngineEvent, NumberCheck, OutgoingContent, OutgoingMessage,
};
use whatsapp_rust::ContactError;
use whatsapp_rust::prelude::*;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::{EditOptions, RevokeType};

/// Longest typing indicator honoured.
const MAX_TYPING: Duration = Duration::from_secs(60);

impl WebSession {
    pub(super) async fn send_message(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let id = message.provider_message_id.clone();
        let result = match self.send_action(&client, &message).await {
            Some(acted) => acted,
            None => self.send_content(&client, message).await,
        };
        match result {
            Ok(()) => {
                self.inner.counters.sent();
                Ok(())
            }
            Err(e) => {
                self.inner.counters.send_failed();
                debug!(device.uid = %self.inner.uid, message.provider_id = %id, error = %e, "send failed");
                Err(e)
            }
        }
    }

    /// A message with content of its own: planned (media prepared off the async threads),
    /// uploaded when it carries a file, given its quote and mentions, sent under its id.
    async fn send_content(
        &self,
        client: &Arc<Client>,
        message: OutgoingMessage,
    ) -> Result<(), EngineError> {
        let own = client.pn().as_ref().and_then(phone_of_pn);
        let context = structured::context_info(&message.context, own.as_ref());
        let content = message.content;
        let plan = tokio::task::spawn_blocking(move || outgoing::plan(content))
            .await
            .map_err(|e| EngineError::Internal(format!("media preparation panicked: {e}")))??;
        let msg = match plan {
            Plan::Ready(m) => *m,
            Plan::Upload {
                media_type,
                data,
                shape,
            } => {
                let upload = client
                    .upload(data, media_type, UploadOptions::default())
                    .await
                    .map_err(|e| EngineError::Transient(format!("media upload failed: {e:#}")))?;
                outgoing::build(shape, upload.into())
            }
        };
        let msg = structured::with_context(msg, context);
        client
            .send_message_with_options(
                Jid::pn(message.to.digits()),
                msg,
                SendOptions::default().with_message_id(message.provider_message_id),
            )
            .await
            .map(|_| ())
            .map_err(send_error)
    }

    /// Reactions, edits and deletes, which act on another message (`None` for anything
    /// else). A reaction and an edit go under the message's own id, so a resend is shown
    /// once and the server's ack finds it; whatsapp-rust picks a delete's stanza id itself,
    /// so its ack cannot be matched and the delete counts as taken once the stanza is
    /// sent (reported as the server ack here; deleting twice changes nothing).
    async fn send_action(
        &self,
        client: &Arc<Client>,
        message: &OutgoingMessage,
    ) -> Option<Result<(), EngineError>> {
        let chat = Jid::pn(message.to.digits());
        let pid = message.provider_message_id.clone();
        let result = match &message.content {
            OutgoingContent::Reaction { target, emoji } => {
                let key = wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(target.from_me),
                    id: Some(target.provider_message_id.clone()),
                    participant: None,
                };
                let reaction = whatsapp_rust::wacore::proto_helpers::build_reaction_message(
                    key,
                    emoji.as_str(),
                    chrono::Utc::now().timestamp_millis(),
                );
                client
                    .send_message_with_options(
                        chat,
                        reaction,
                        SendOptions::default().with_message_id(pid),
                    )
                    .await
                    .map(|_| ())
                    .map_err(send_error)
            }
            OutgoingContent::Edit { target, text } => client
                .edit_message_with_options(
                    chat,
                    target.provider_message_id.clone(),
                    wa::Message::text(text.clone()),
                    EditOptions::default().with_stanza_id(pid),
                )
                .await
                .map(|_| ())
                .map_err(send_error),
            OutgoingContent::Delete { target } => {
                let revoked = client
                    .revoke_message(chat, target.provider_message_id.clone(), RevokeType::Sender)
                    .await
                    .map_err(send_error);
                match revoked {
                    Ok(()) => self
                        .inner
                        .events
                        .emit(EngineEvent::ServerAck {
                            provider_message_id: pid,
                            error: None,
                        })
                        .await
                        .map_err(|e| EngineError::Transient(e.to_string())),
                    Err(e) => Err(e),
                }
            }
            _ => return None,
        };
        Some(result)
    }

    pub(super) async fn check(&self, numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        if numbers.len() > numbers::MAX_PER_CALL {
            return Err(EngineError::Rejected {
                code: Some("too_many_numbers".into()),
                reason: format!("at most {} numbers per check", numbers::MAX_PER_CALL),
            });
        }
        let mut out: Vec<Option<NumberCheck>> =
            numbers.iter().map(|n| self.inner.numbers.get(n)).collect();
        let mut missing: Vec<Phone> = Vec::new();
        for (n, known) in numbers.iter().zip(&out) {
            if known.is_none() && !missing.contains(n) {
                missing.push(n.clone());
            }
        }
        if !missing.is_empty() {
            let client = self.inner.online_client()?;
            self.inner.pacer.wait().await;
            let jids: Vec<Jid> = missing.iter().map(|p| Jid::pn(p.digits())).collect();
            let results = client
                .contacts()
                .is_on_whatsapp(&jids)
                .await
                .map_err(|e| match e {
                    ContactError::Iq(iq) => iq_error(&iq, "the number check"),
                    other => EngineError::Rejected {
                        code: None,
                        reason: other.to_string(),
                    },
                })?;
            let answers: Vec<Answer> = results.iter().map(Answer::from).collect();
            let checks = numbers::match_answers(&missing, &answers);
            self.inner.numbers.put(&checks);
            for (n, slot) in numbers.iter().zip(out.iter_mut()) {
                if slot.is_none() {
                    *slot = checks.iter().find(|c| &c.phone == n).cloned();
                }
            }
        }
        // Every slot is filled: cached, or answered by match_answers (one per number asked).
        Ok(out.into_iter().flatten().collect())
    }

    /// The chat state the API asked for: unlike the pacing's typing indicator, an
    /// explicit request, so a failure is reported.
    pub(super) async fn set_chat_state(
        &self,
        to: &Phone,
        state: ChatState,
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = Jid::pn(to.digits());
        if state != ChatState::Paused
            && let Err(e) = client.presence().set_available().await
        {
            // As for typing: only shown while "available", which needs a push name.
            debug!(device.uid = %self.inner.uid, error = %e, "could not set presence available");
        }
        let chat = client.chatstate();
        match state {
            ChatState::Typing => chat.send_composing(&jid).await,
            ChatState::Recording => chat.send_recording(&jid).await,
            ChatState::Paused => chat.send_paused(&jid).await,
        }
        .map_err(|e| EngineError::Transient(format!("WhatsApp did not take the chat state: {e}")))
    }

    /// Read receipts for messages received in the one-to-one chat with `chat`.
    pub(super) async fn send_read_receipts(
        &self,
        chat: &Phone,
        messages: &[String],
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let ids: Vec<&str> = messages.iter().map(String::as_str).collect();
        client
            .mark_as_read(&Jid::pn(chat.digits()), None, &ids)
            .await
            .map_err(|e| {
                EngineError::Transient(format!("WhatsApp did not take the read receipts: {e}"))
            })
    }

    pub(super) async fn show_typing(
        &self,
        to: &Phone,
        duration: Duration,
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = Jid::pn(to.digits());
        // Typing only shows while we are "available"; without a push name yet this fails,
        // and the indicator is best effort anyway.
        if let Err(e) = client.presence().set_available().await {
            debug!(device.uid = %self.inner.uid, error = %e, "could not set presence available");
        }
        client
            .chatstate()
            .send_composing(&jid)
            .await
            .map_err(|e| EngineError::Transient(format!("typing indicator failed: {e}")))?;
        tokio::time::sleep(duration.min(MAX_TYPING)).await;
        if let Err(e) = client.chatstate().send_paused(&jid).await {
            debug!(device.uid = %self.inner.uid, error = %e, "could not clear the typing indicator");
        }
        Ok(())
    }
}
