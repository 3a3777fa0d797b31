//! One Cloud API device's session: it proves the token (`connected`, or `failed` with
//! Meta's words), sends each message with one HTTPS call (media uploaded first), and turns
//! Meta's webhooks into committed events.
//!
//! Meta names a message (`wamid…`) only in its answer to the send, so the session reports
//! that id ([`EngineEvent::ProviderId`]) before the message's ack. A status webhook can
//! overtake that answer; the session therefore lets statuses wait until the sends it has in
//! flight were answered (a bounded wait), so they find their message.

use crate::client::GraphClient;
use crate::engine::CredentialSource;
use crate::errors::GraphError;
use crate::graph::{self, Plan};
use crate::webhook::{self, Step};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use wagate_core::content::TemplateInfo;
use wagate_core::credentials::CloudApiCredentials;
use wagate_core::engine::{
    ChatState, DeviceContext, EngineError, EngineEvent, EngineEvents, EngineSession, IncomingMedia,
    IncomingMessage, NumberCheck, OutgoingContent, OutgoingMessage, PairCode, ReadMark,
    ReceiptKind,
};
use wagate_core::message::MessageKind;
use wagate_core::{DeviceUid, Phone, Recipient, time};

/// Uploaded audio as a voice note Meta shows as one: mono Ogg/Opus (transcoded on a
/// blocking thread: it is CPU work).
async fn voice_note(data: Bytes, mime_type: String) -> Result<OutgoingContent, EngineError> {
    let note =
        tokio::task::spawn_blocking(move || wagate_audio::prepare_voice_note(&data, &mime_type))
            .await
            .map_err(|e| EngineError::Internal(format!("voice note encoding stopped: {e}")))?
            .map_err(|e| match e {
                wagate_audio::AudioError::Encode(m) => {
                    EngineError::Internal(format!("voice note encoding failed: {m}"))
                }
                other => EngineError::Rejected {
                    code: Some("unsupported_audio".into()),
                    reason: format!("cannot send as a voice note: {other}"),
                },
            })?;
    Ok(OutgoingContent::Media {
        kind: MessageKind::Voice,
        data: Bytes::from(note.data),
        mime_type: note.mime_type.to_owned(),
        file_name: None,
        caption: None,
    })
}

/// How long a status waits for the sends in flight to be answered.
const STATUS_WAIT: Duration = Duration::from_secs(15);
/// Chats whose last received message is remembered (for "typing…", which Meta ties to
/// one); forgotten all at once past this, as a bound against a flood of senders.
const MAX_CHATS: usize = 10_000;

pub(crate) struct Session {
    /// Itself, for the background proving task `connect` starts.
    me: Weak<Session>,
    uid: DeviceUid,
    /// The credentials in use: read again from `source` by `connect`, so replaced ones
    /// (PATCH) take effect without a restart.
    creds: RwLock<Arc<CloudApiCredentials>>,
    source: Arc<dyn CredentialSource>,
    client: GraphClient,
    events: Arc<dyn EngineEvents>,
    state: Mutex<State>,
    stopped: AtomicBool,
    /// Woken by `stop` and `connect`, so the proving loop's waits end.
    wake: Notify,
    /// Sends awaiting Meta's answer.
    in_flight: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    /// The token was proven and has not been refused since.
    connected: bool,
    /// Why the device cannot send, when it cannot.
    failure: Option<String>,
    /// The number, as Meta shows it.
    own: Option<Phone>,
    /// A proving loop runs.
    proving: bool,
    /// Each chat's last received message (by the sender's digits).
    last_received: HashMap<String, String>,
}

impl Session {
    pub(crate) fn start(
        device: DeviceContext,
        creds: CloudApiCredentials,
        source: Arc<dyn CredentialSource>,
        client: GraphClient,
        events: Arc<dyn EngineEvents>,
    ) -> Arc<Self> {
        let session = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            uid: device.uid,
            creds: RwLock::new(Arc::new(creds)),
            source,
            client,
            events,
            state: Mutex::new(State {
                own: device.phone,
                ..State::default()
            }),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
            in_flight: watch::channel(0).0,
        });
        session.prove();
        session
    }

    fn creds(&self) -> Arc<CloudApiCredentials> {
        let creds = self.creds.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&*creds)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    async fn emit(&self, event: EngineEvent) -> Result<(), EngineError> {
        if self.stopped() {
            return Err(EngineError::NotConnected("the session stopped".into()));
        }
        self.events
            .emit(event)
            .await
            .map_err(|e| EngineError::Transient(e.to_string()))
    }

    /// Proves the token in the background: `Connecting`, then `Connected` with the number,
    /// or `Failed` when Meta refuses the credentials; Meta's trouble is retried with
    /// backoff (`Reconnecting`) until it answers or the session stops.
    fn prove(self: &Arc<Self>) {
        {
            let mut st = self.state();
            if st.proving {
                return;
            }
            st.proving = true;
        }
        let session = Arc::clone(self);
        tokio::spawn(async move {
            session.prove_loop().await;
            session.state().proving = false;
        });
    }

    async fn prove_loop(&self) {
        let _ = self.emit(EngineEvent::Connecting).await;
        let mut wait = Duration::from_secs(1);
        while !self.stopped() {
            match self.client.number(&self.creds()).await {
                Ok(info) => {
                    let phone = info
                        .display_phone_number
                        .as_deref()
                        .map(|n| n.chars().filter(char::is_ascii_digit).collect::<String>())
                        .and_then(|d| Phone::parse(&d).ok());
                    {
                        let mut st = self.state();
                        st.connected = true;
                        st.failure = None;
                        if phone.is_some() {
                            st.own = phone.clone();
                        }
                    }
                    let _ = self
                        .emit(EngineEvent::Connected {
                            phone,
                            lid: None,
                            push_name: info.verified_name,
                        })
                        .await;
                    return;
                }
                // Refused for good (a bad token, a wrong number id): failed. Throttling and
                // Meta's own trouble are waited out below.
                Err(e)
                    if !matches!(
                        e.for_message(),
                        EngineError::RateLimited { .. } | EngineError::Transient(_)
                    ) =>
                {
                    self.refuse_credentials(&e).await;
                    return;
                }
                Err(e) => {
                    let _ = self
                        .emit(EngineEvent::Reconnecting {
                            reason: e.to_string(),
                            retry_in: Some(wait),
                        })
                        .await;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.wake.notified() => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Meta refused the device's credentials: it can send no more until they change.
    async fn refuse_credentials(&self, e: &GraphError) {
        let reason = format!("the Cloud API refused the device's credentials: {e}");
        {
            let mut st = self.state();
            st.connected = false;
            st.failure = Some(reason.clone());
        }
        tracing::warn!(device.uid = %self.uid, %reason, "Cloud API device failed");
        let _ = self.emit(EngineEvent::Failed { reason }).await;
    }

    /// What a refused call means for the message, turning the device `failed` when the
    /// credentials were the reason.
    async fn refused(&self, e: GraphError) -> EngineError {
        if e.is_credentials() {
            self.refuse_credentials(&e).await;
        }
        e.for_message()
    }

    fn ready(&self) -> Result<(), EngineError> {
        if self.stopped() {
            return Err(EngineError::NotConnected("the session stopped".into()));
        }
        let st = self.state();
        if st.connected {
            return Ok(());
        }
        Err(EngineError::NotConnected(
            st.failure
                .clone()
                .unwrap_or_else(|| "the Cloud API number's token is being checked".into()),
        ))
    }

    /// Waits (bounded) until no send awaits Meta's answer.
    async fn sends_answered(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = tokio::time::timeout(STATUS_WAIT, rx.wait_for(|n| *n == 0)).await;
    }

    async fn download(&self, media: &webhook::MediaRef, id: &str) -> Option<IncomingMedia> {
        match self.client.download(&self.creds(), &media.id).await {
            Ok(d) => Some(IncomingMedia {
                data: d.data,
                mime_type: media
                    .mime_type
                    .clone()
                    .or(d.mime_type)
                    .unwrap_or_else(|| "application/octet-stream".into()),
                file_name: media.file_name.clone(),
            }),
            Err(e) => {
                // Kept without its file rather than held back: Meta's links expire, and a
                // retry of the whole delivery would not bring it back.
                tracing::warn!(device.uid = %self.uid, message.provider_id = id, error = %e, "inbound media could not be downloaded; delivered without its file");
                None
            }
        }
    }

    async fn receive(&self, m: webhook::Inbound) -> Result<(), EngineError> {
        let media = match &m.media {
            Some(r) => self.download(r, &m.id).await,
            None => None,
        };
        if let Some(from) = &m.from {
            let mut st = self.state();
            if st.last_received.len() >= MAX_CHATS {
                st.last_received.clear();
            }
            st.last_received
                .insert(from.digits().to_owned(), m.id.clone());
        }
        self.emit(EngineEvent::Inbound(Box::new(IncomingMessage {
            provider_message_id: m.id,
            from: m.from,
            from_lid: None,
            from_name: m.from_name,
            kind: m.kind,
            text: m.text,
            media,
            details: m.details,
            is_group: false,
            group_id: None,
            group_name: None,
            timestamp: m.timestamp,
        })))
        .await
    }

    async fn step(&self, s: webhook::Status) -> Result<(), EngineError> {
        let receipt = |kind| EngineEvent::Receipt {
            provider_message_ids: vec![s.id.clone()],
            kind,
            at: s.timestamp,
        };
        let event = match s.step {
            Step::Sent => EngineEvent::ServerAck {
                provider_message_id: s.id.clone(),
                error: None,
            },
            Step::Delivered => receipt(ReceiptKind::Delivered),
            Step::Read => receipt(ReceiptKind::Read),
            Step::Failed { reason, .. } => EngineEvent::Undelivered {
                provider_message_id: s.id.clone(),
                reason,
            },
        };
        self.emit(event).await
    }
}

/// Counts a send as in flight while it lives.
struct InFlight<'a>(&'a watch::Sender<usize>);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[async_trait]
impl EngineSession for Session {
    async fn send(&self, message: OutgoingMessage) -> Result<(), EngineError> {
        self.ready()?;
        let to = graph::recipient(&message.to)?;
        let _in_flight = InFlight::enter(&self.in_flight);
        // A voice note goes to Meta as Ogg/Opus, whatever audio was uploaded.
        let voice;
        let content = match &message.content {
            OutgoingContent::Media {
                kind: MessageKind::Voice,
                data,
                mime_type,
                ..
            } => {
                voice = voice_note(data.clone(), mime_type.clone()).await?;
                &voice
            }
            other => other,
        };
        let body = match graph::plan(to, content, &message.context)? {
            Plan::Ready(b) => b,
            Plan::Upload(u) => {
                let id = match self
                    .client
                    .upload(&self.creds(), u.data, u.mime_type, u.file_name)
                    .await
                {
                    Ok(id) => id,
                    Err(e) => return Err(self.refused(e).await),
                };
                graph::media_body(to, &u, &id, &message.context)
            }
        };
        let wamid = match self.client.send(&self.creds(), &body).await {
            Ok(id) => id,
            Err(e) => return Err(self.refused(e).await),
        };
        // Meta has the message now: what is left is recording that, and a failure to record
        // must not make the runtime send it again (it would show twice).
        if let Err(e) = self
            .emit(EngineEvent::ProviderId {
                provider_message_id: message.provider_message_id.clone(),
                assigned: wamid.clone(),
            })
            .await
        {
            tracing::warn!(device.uid = %self.uid, message.id = %message.id, %wamid, error = %e, "Meta's id for a sent message was not recorded; its statuses will not be matched");
            let _ = self
                .emit(EngineEvent::ServerAck {
                    provider_message_id: message.provider_message_id,
                    error: None,
                })
                .await;
            return Ok(());
        }
        let _ = self
            .emit(EngineEvent::ServerAck {
                provider_message_id: wamid,
                error: None,
            })
            .await;
        Ok(())
    }

    async fn check_numbers(&self, _numbers: &[Phone]) -> Result<Vec<NumberCheck>, EngineError> {
        Err(EngineError::Unsupported(
            "the Cloud API has no contact check: a message to a number not on WhatsApp fails \
             with Meta's error 131026 instead"
                .into(),
        ))
    }

    async fn chat_state(&self, to: &Recipient, state: ChatState) -> Result<(), EngineError> {
        self.ready()?;
        let digits = graph::recipient(to)?;
        match state {
            // Meta clears "typing…" by itself (after 25 s, or when the answer is sent).
            ChatState::Paused => Ok(()),
            ChatState::Recording => Err(EngineError::Unsupported(
                "the Cloud API shows no \"recording…\" indicator".into(),
            )),
            ChatState::Typing => {
                let last = self.state().last_received.get(digits).cloned();
                let Some(last) = last else {
                    return Err(EngineError::Rejected {
                        code: Some("no_message".into()),
                        reason: format!(
                            "the Cloud API shows \"typing…\" only in answer to a message the \
                             customer sent, and none came from +{digits} since the device \
                             started"
                        ),
                    });
                };
                let body = graph::read_body(&last, true);
                match self.client.post_status(&self.creds(), &body).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.refused(e).await),
                }
            }
        }
    }

    /// Meta marks every earlier message of the chat read with the last one.
    async fn mark_read(&self, chat: &Recipient, messages: &[ReadMark]) -> Result<(), EngineError> {
        self.ready()?;
        graph::recipient(chat)?;
        let Some(last) = messages.last() else {
            return Ok(());
        };
        let body = graph::read_body(&last.provider_message_id, false);
        match self.client.post_status(&self.creds(), &body).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.refused(e).await),
        }
    }

    /// The business account's approved templates, read from Meta each time (Meta's own
    /// list is the truth: templates are approved, paused and deleted there).
    async fn templates(&self) -> Result<Vec<TemplateInfo>, EngineError> {
        let creds = self.creds();
        let Some(waba) = creds.business_account_id.as_deref() else {
            return Err(EngineError::Rejected {
                code: Some("business_account".into()),
                reason: "the device has no businessAccountId (the WhatsApp Business Account id in Meta's app): set it with PATCH to list its templates".into(),
            });
        };
        match self.client.templates(&creds, waba).await {
            Ok(list) => Ok(list),
            Err(e) => Err(self.refused(e).await),
        }
    }

    async fn request_pair_code(&self, _phone: &Phone) -> Result<PairCode, EngineError> {
        Err(EngineError::Unsupported(
            "a Cloud API number is not linked: it is set up in Meta's app".into(),
        ))
    }

    async fn push(&self, body: Bytes, signature: Option<&str>) -> Result<(), EngineError> {
        if self.stopped() {
            return Err(EngineError::NotConnected("the session stopped".into()));
        }
        if !crate::signature::verify(&self.creds().app_secret, &body, signature) {
            return Err(EngineError::Rejected {
                code: Some("signature".into()),
                reason: "X-Hub-Signature-256 is not the app secret's signature of this body".into(),
            });
        }
        let own = self.state().own.clone();
        let batch = webhook::parse(
            &body,
            &self.creds().phone_number_id,
            own.as_ref(),
            time::now(),
        )
        .map_err(|e| EngineError::Rejected {
            code: Some("payload".into()),
            reason: e.to_string(),
        })?;
        if batch.foreign > 0 {
            tracing::warn!(device.uid = %self.uid, skipped = batch.foreign, "a webhook delivery named another number; those parts were skipped");
        }
        for m in batch.messages {
            self.receive(m).await?;
        }
        if !batch.statuses.is_empty() {
            self.sends_answered().await;
        }
        for s in batch.statuses {
            self.step(s).await?;
        }
        Ok(())
    }

    /// Reads the credentials again (they may have been replaced) and proves them (after
    /// Meta refused the old ones, or after a logout).
    async fn connect(&self) -> Result<(), EngineError> {
        if self.stopped() {
            return Err(EngineError::NotConnected("the session stopped".into()));
        }
        if let Some(fresh) = self.source.cloud_api(&self.uid).await? {
            *self.creds.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        }
        if let Some(me) = self.me.upgrade() {
            me.prove();
        }
        Ok(())
    }

    /// A Cloud API number is not linked, so there is nothing to unlink; the session stops
    /// sending and reports it once.
    async fn logout(&self) -> Result<(), EngineError> {
        {
            let mut st = self.state();
            st.connected = false;
            st.failure = Some("logged out".into());
        }
        self.emit(EngineEvent::LoggedOut {
            reason: "logged out; the number stays in Meta's app".into(),
        })
        .await
    }

    async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}
