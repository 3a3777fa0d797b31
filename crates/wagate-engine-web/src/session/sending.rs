//! Sending: a message handed to WhatsApp (media prepared off the async threads and
//! uploaded first), numbers checked (cached and paced), the typing indicator, chat states
//! and read receipts — to a person or a group alike (a group is one JID to whatsapp-rust,
//! which distributes its sender keys itself).

use super::WebSession;
use super::errors::{iq_error, send_error};
use super::groups::{group_jid, member_jid};
use crate::mapping::phone_of_pn;
use crate::numbers::{self, Answer};
use crate::outgoing::{self, Plan};
use crate::structured;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use wagate_core::content::Quote;
use wagate_core::engine::{
    ChatState, EngineError, EngineEvent, NumberCheck, OutgoingContent, OutgoingMessage, ReadMark,
};
use wagate_core::{Phone, Recipient};
use whatsapp_rust::ContactError;
use whatsapp_rust::prelude::*;
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::wacore_binary::JidExt;
use whatsapp_rust::{EditOptions, RevokeType};

/// Longest typing indicator honoured.
const MAX_TYPING: Duration = Duration::from_secs(60);

/// The chat's JID: a person by number, a group by its `@g.us` JID.
pub(super) fn chat_jid(to: &Recipient) -> Jid {
    match to {
        Recipient::Phone(p) => Jid::pn(p.digits()),
        Recipient::Group(g) => group_jid(g),
    }
}

/// Who wrote `target`, as a group message key names them (`participant`): the device
/// itself, or the quoted author (by number, else by LID). `None` outside groups, where the
/// chat says it.
async fn target_author(client: &Client, chat: &Jid, target: &Quote) -> Option<Jid> {
    if !chat.is_group() {
        return None;
    }
    if target.from_me {
        return client.pn().map(|j| j.to_non_ad());
    }
    match (&target.from, &target.from_lid) {
        (Some(p), _) => Some(member_jid(client, chat, p).await),
        (None, Some(lid)) => lid.parse::<Jid>().ok(),
        (None, None) => None,
    }
}

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
                chat_jid(&message.to),
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
        let chat = chat_jid(&message.to);
        let pid = message.provider_message_id.clone();
        let result = match &message.content {
            OutgoingContent::Reaction { target, emoji } => {
                let key = wa::MessageKey {
                    remote_jid: Some(chat.to_string()),
                    from_me: Some(target.from_me),
                    id: Some(target.provider_message_id.clone()),
                    participant: target_author(client, &chat, target)
                        .await
                        .map(|j| j.to_string()),
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
            OutgoingContent::PollVote {
                target,
                poll,
                options,
            } => self.vote(client, chat, target, poll, options, pid).await,
            _ => return None,
        };
        Some(result)
    }

    /// A vote in a poll: the picked options' hashes encrypted under the poll's secret
    /// (wacore `poll.rs`, keyed by the poll's id, its creator and the voter, as WhatsApp
    /// Web does), sent under the message's own id like a reaction.
    async fn vote(
        &self,
        client: &Arc<Client>,
        chat: Jid,
        target: &Quote,
        poll: &wagate_core::content::Poll,
        options: &[String],
        pid: String,
    ) -> Result<(), EngineError> {
        let refuse = |reason: String| EngineError::Rejected {
            code: Some("poll_vote".into()),
            reason,
        };
        let secret = poll.secret_bytes().ok_or_else(|| {
            refuse("the poll's secret is not known, so a vote for it cannot be encrypted".into())
        })?;
        let own = client.pn().map(|j| j.to_non_ad()).ok_or_else(|| {
            EngineError::NotConnected("the device's number is not known yet".into())
        })?;
        let creator = if target.from_me {
            own.clone()
        } else {
            match (&target.from, &target.from_lid) {
                (Some(p), _) => Jid::pn(p.digits()),
                (None, Some(lid)) => lid
                    .parse::<Jid>()
                    .map_err(|_| refuse(format!("the poll's author {lid} is not a WhatsApp id")))?,
                (None, None) => return Err(refuse("the poll's author is not known".into())),
            }
        };
        // The voter is named in the creator's namespace: our LID for a LID-addressed poll.
        let voter = match (creator.is_lid(), client.lid()) {
            (true, Some(lid)) => lid.to_non_ad(),
            _ => own,
        };
        let msg = structured::poll_vote_message(structured::Vote {
            chat: &chat,
            poll_id: &target.provider_message_id,
            creator: &creator,
            voter: &voter,
            from_me: target.from_me,
            secret: &secret,
            options,
        })?;
        client
            .send_message_with_options(chat, msg, SendOptions::default().with_message_id(pid))
            .await
            .map(|_| ())
            .map_err(send_error)
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
        to: &Recipient,
        state: ChatState,
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = chat_jid(to);
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

    /// Read receipts for messages received in `chat`. In a group WhatsApp addresses each
    /// receipt to the message's sender (`participant`), so the ids go out grouped by
    /// sender; one without a known sender goes without (WhatsApp may not pass it on).
    pub(super) async fn send_read_receipts(
        &self,
        chat: &Recipient,
        messages: &[ReadMark],
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = chat_jid(chat);
        let mut by_sender: Vec<(Option<&Phone>, Vec<&str>)> = Vec::new();
        for m in messages {
            let sender = m.sender.as_ref().filter(|_| chat.is_group());
            let id = m.provider_message_id.as_str();
            match by_sender.iter_mut().find(|(s, _)| *s == sender) {
                Some((_, ids)) => ids.push(id),
                None => by_sender.push((sender, vec![id])),
            }
        }
        for (sender, ids) in by_sender {
            let participant = match sender {
                Some(p) => Some(member_jid(&client, &jid, p).await),
                None => None,
            };
            client
                .mark_as_read(&jid, participant.as_ref(), &ids)
                .await
                .map_err(|e| {
                    EngineError::Transient(format!("WhatsApp did not take the read receipts: {e}"))
                })?;
        }
        Ok(())
    }

    pub(super) async fn show_typing(
        &self,
        to: &Recipient,
        duration: Duration,
    ) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        let jid = chat_jid(to);
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
