//! Turns what an engine reports into committed state: device status, message status,
//! inbound messages with their media. Each `emit` returns only after the commit, so an
//! engine that acknowledges upstream after `emit` never loses a message.

use super::{DeviceLive, DeviceRuntime, lock};
use crate::blob::BlobStore;
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use wagate_core::content::{Details, Poll, Quote};
use wagate_core::device::{DeviceStateChange, DeviceStatus};
use wagate_core::engine::{
    EngineEvent, EngineEvents, EventNotCommitted, IncomingMessage, ReceiptKind,
};
use wagate_core::lease::Fence;
use wagate_core::media::Media;
use wagate_core::message::{InboundMessage, MessageKind, MessageStatus};
use wagate_core::store::{InboundOutcome, MessageRef, Store, StoreError};
use wagate_core::{AccountId, DeviceUid, MediaId, MessageId, time};

pub(super) struct DeviceEventSink {
    uid: DeviceUid,
    /// The device lease this node holds; every write carries it.
    fence: Fence,
    account: AccountId,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    live: Arc<DeviceLive>,
    runtime: Weak<DeviceRuntime>,
}

impl DeviceEventSink {
    pub(super) fn new(
        fence: Fence,
        account: AccountId,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        live: Arc<DeviceLive>,
        runtime: Weak<DeviceRuntime>,
    ) -> Self {
        Self {
            uid: fence.device_uid.clone(),
            fence,
            account,
            store,
            blobs,
            live,
            runtime,
        }
    }

    async fn state(
        &self,
        status: DeviceStatus,
        reason: Option<String>,
        qr: Option<&str>,
        phone: Option<wagate_core::Phone>,
        push_name: Option<String>,
    ) -> Result<(), StoreError> {
        let connected = status == DeviceStatus::Connected;
        let was = self.live.connected.swap(connected, Ordering::SeqCst);
        if was != connected {
            self.live.connection_changed.notify_waiters();
        }
        let change = DeviceStateChange {
            status,
            reason,
            phone,
            push_name,
            at: time::now(),
        };
        self.store
            .record_device_state(&self.fence, &change, qr)
            .await
            .map(|_| ())
    }

    async fn advance(
        &self,
        provider_message_id: String,
        status: MessageStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let r = MessageRef::Provider {
            device: self.uid.clone(),
            provider_message_id,
        };
        // Receipts are committed whether or not this node still holds the device's lease
        // (see `record_receipt`); what this node's session did (the server's ack) is fenced.
        let moved = if status.is_receipt() {
            self.store.record_receipt(&r, status, time::now()).await
        } else {
            self.store
                .advance_message_status(&self.fence, &r, status, time::now(), reason)
                .await
        };
        match moved {
            Ok(Some(message)) => {
                // WhatsApp's server has the message, and that is committed: a caller
                // waiting for it (MegaMsg's synchronous send) may answer now, and will
                // read it as sent.
                if status == MessageStatus::Sent
                    && let Some(rt) = self.runtime.upgrade()
                {
                    rt.report_handoff(&message.id, super::Handoff::Taken);
                }
                Ok(())
            }
            Ok(None) => {
                tracing::debug!(device.uid = %self.uid, ?r, %status, "status did not move (late or duplicate)");
                Ok(())
            }
            // Receipts for messages sent from the phone itself, or for messages of a
            // deleted device, have no row here: nothing to report.
            Err(StoreError::NotFound) => {
                tracing::debug!(device.uid = %self.uid, ?r, %status, "status for a message not sent through wagate");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn inbound(&self, m: IncomingMessage) -> Result<(), StoreError> {
        let mut media_id = None;
        let mut mime = None;
        if let Some(media) = &m.media {
            let id = MediaId::new();
            // The sender declared a type; the bytes decide (a page declared as an image
            // must never be served as one, nor an image declared as a page).
            let mime_type = wagate_core::content_type::detect(&media.data, Some(&media.mime_type));
            self.blobs
                .put(&id, media.data.clone())
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let record = Media {
                id: id.clone(),
                account_id: self.account.clone(),
                mime_type: mime_type.clone(),
                size: media.data.len() as u64,
                file_name: media
                    .file_name
                    .as_deref()
                    .map(wagate_core::text::neutralise_file_name)
                    .filter(|n| !n.is_empty()),
                sha256: hex::encode(Sha256::digest(&media.data)),
                created_at: time::now(),
            };
            self.store.create_media(&record).await?;
            media_id = Some(id);
            mime = Some(mime_type);
        }
        let message = InboundMessage {
            id: MessageId::new(),
            account_id: self.account.clone(),
            device_uid: self.uid.clone(),
            provider_message_id: m.provider_message_id,
            from: m.from,
            from_lid: m.from_lid,
            from_name: m
                .from_name
                .as_deref()
                .map(wagate_core::text::neutralise_name),
            kind: m.kind,
            // A location, contact or poll says what it is in text too, for readers of
            // `text` only.
            text: m.text.or_else(|| m.details.summary_of(m.kind)),
            media_id,
            details: m.details,
            is_group: m.is_group,
            group_id: m.group_id,
            group_name: m
                .group_name
                .as_deref()
                .map(wagate_core::text::neutralise_name),
            timestamp: m.timestamp,
            received_at: time::now(),
            read_at: None,
        };
        if let InboundOutcome::Created(_) = self
            .store
            .record_inbound(&self.fence, &message, mime.as_deref())
            .await?
        {
            self.live.received.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_trait]
impl EngineEvents for DeviceEventSink {
    async fn emit(&self, event: EngineEvent) -> Result<(), EventNotCommitted> {
        self.live
            .last_event_at
            .store(time::millis(time::now()), Ordering::Relaxed);
        let result = match event {
            EngineEvent::Connecting => {
                self.state(DeviceStatus::Connecting, None, None, None, None)
                    .await
            }
            EngineEvent::Qr { code, expires_in } => {
                let expires = time::millis(time::now()) + expires_in.as_millis() as i64;
                *lock(&self.live.qr) = Some((code.clone(), expires));
                self.state(DeviceStatus::Qr, None, Some(&code), None, None)
                    .await
            }
            EngineEvent::PairCode { .. } => {
                // The code itself goes to whoever asked for it (the pair-code endpoint).
                self.state(DeviceStatus::PairCode, None, None, None, None)
                    .await
            }
            EngineEvent::QrExpired => {
                *lock(&self.live.qr) = None;
                let reason =
                    "the QR codes ran out before one was scanned; POST …/connect to start again";
                self.state(
                    DeviceStatus::QrExpired,
                    Some(reason.into()),
                    None,
                    None,
                    None,
                )
                .await
            }
            EngineEvent::Connected {
                phone,
                lid: _,
                push_name,
            } => {
                *lock(&self.live.qr) = None;
                self.state(DeviceStatus::Connected, None, None, phone, push_name)
                    .await
            }
            EngineEvent::Reconnecting { reason, retry_in } => {
                self.live.reconnects.fetch_add(1, Ordering::Relaxed);
                let reason = match retry_in {
                    Some(d) => format!("{reason}; retrying in {} ms", d.as_millis()),
                    None => reason,
                };
                self.state(DeviceStatus::Reconnecting, Some(reason), None, None, None)
                    .await
            }
            EngineEvent::LoggedOut { reason } => {
                self.state(DeviceStatus::LoggedOut, Some(reason), None, None, None)
                    .await
            }
            EngineEvent::Banned { reason, expires_at } => {
                let reason = match expires_at {
                    Some(t) => format!("{reason} (until {})", t.to_rfc3339()),
                    None => reason,
                };
                self.state(DeviceStatus::Banned, Some(reason), None, None, None)
                    .await
            }
            EngineEvent::Replaced => {
                let reason = "another session with the same keys connected";
                self.state(
                    DeviceStatus::Replaced,
                    Some(reason.into()),
                    None,
                    None,
                    None,
                )
                .await
            }
            EngineEvent::Failed { reason } => {
                self.state(DeviceStatus::Failed, Some(reason), None, None, None)
                    .await
            }
            EngineEvent::ServerAck {
                provider_message_id,
                error: None,
            } => {
                self.live.sent.fetch_add(1, Ordering::Relaxed);
                self.advance(provider_message_id, MessageStatus::Sent, None)
                    .await
            }
            EngineEvent::ServerAck {
                provider_message_id,
                error: Some(code),
            } => {
                let reason = format!("WhatsApp refused the message (error {code})");
                self.advance(provider_message_id, MessageStatus::Failed, Some(&reason))
                    .await
            }
            EngineEvent::ProviderId {
                provider_message_id,
                assigned,
            } => self
                .store
                .assign_provider_id(&self.fence, &provider_message_id, &assigned)
                .await
                .map(|renamed| {
                    if !renamed {
                        tracing::debug!(device.uid = %self.uid, %provider_message_id, %assigned, "no message to rename (renamed already)");
                    }
                }),
            EngineEvent::Undelivered {
                provider_message_id,
                reason,
            } => {
                self.advance(provider_message_id, MessageStatus::Failed, Some(&reason))
                    .await
            }
            EngineEvent::Receipt {
                provider_message_ids,
                kind,
                at: _,
            } => {
                let status = match kind {
                    ReceiptKind::Delivered => MessageStatus::Delivered,
                    ReceiptKind::Read => MessageStatus::Read,
                    ReceiptKind::Played => MessageStatus::Played,
                };
                let mut result = Ok(());
                for id in provider_message_ids {
                    if let Err(e) = self.advance(id, status, None).await {
                        result = Err(e);
                    }
                }
                result
            }
            EngineEvent::Inbound(m) => self.inbound(*m).await,
            EngineEvent::Undecryptable {
                provider_message_id,
                from,
                reason,
            } => {
                // Counted and logged with the sender: WhatsApp asks the sender's phone to
                // retry, so the message usually arrives again, decryptable, moments later.
                self.live.undecryptable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    device.uid = %self.uid,
                    message.provider_id = %provider_message_id,
                    from = ?from.map(|p| p.e164()),
                    %reason,
                    "received a message that could not be decrypted"
                );
                Ok(())
            }
        };
        match result {
            // The store announces the commit to webhook delivery and the live stream.
            Ok(()) => Ok(()),
            Err(StoreError::Fenced) => {
                // Not committed, so not acknowledged upstream: WhatsApp delivers it again
                // to the node that drives the device now.
                tracing::warn!(device.uid = %self.uid, "another node took the device over; stopping it here");
                if let Some(rt) = self.runtime.upgrade() {
                    rt.lost_device(&self.fence);
                }
                Err(EventNotCommitted(StoreError::Fenced.to_string()))
            }
            Err(e) => {
                tracing::warn!(device.uid = %self.uid, error = %e, "engine event not committed");
                Err(EventNotCommitted(e.to_string()))
            }
        }
    }

    async fn find_poll(
        &self,
        provider_message_id: &str,
    ) -> Result<Option<(Poll, Quote)>, EventNotCommitted> {
        let unavailable = |e: StoreError| EventNotCommitted(e.to_string());
        // A poll this device sent (the usual case: a business asks its customers), else
        // one it received.
        if let Some(m) = self
            .store
            .find_sent(&self.uid, provider_message_id)
            .await
            .map_err(unavailable)?
        {
            return Ok(poll_of(m.kind, &m.details).map(|p| (p, Quote::of_sent(&m))));
        }
        let received = self
            .store
            .find_inbound(&self.uid, provider_message_id)
            .await
            .map_err(unavailable)?;
        Ok(received.and_then(|m| poll_of(m.kind, &m.details).map(|p| (p, Quote::of_received(&m)))))
    }
}

/// The poll a message carries, if it is one.
fn poll_of(kind: MessageKind, details: &Details) -> Option<Poll> {
    details.poll.clone().filter(|_| kind == MessageKind::Poll)
}
