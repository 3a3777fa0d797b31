//! The sandbox's one use case of its own: a message "from someone on WhatsApp" arriving at
//! a sandbox device, as the simulated network would deliver it. It goes through the device's
//! engine and event sink exactly like a real inbound message (stored, typed from its bytes,
//! names neutralised, then sent to webhooks).

use super::port::SandboxInject;
use super::{MediaService, ServiceError, ServiceResult};
use std::sync::Arc;
use wagate_core::device::EngineKind;
use wagate_core::engine::{IncomingMedia, IncomingMessage};
use wagate_core::message::MessageKind;
use wagate_core::store::Store;
use wagate_core::{AccountId, DeviceUid, MediaId, MessageId, Phone, time};

/// What the simulated sender writes.
#[derive(Debug, Clone)]
pub struct SandboxInbound {
    pub from: Phone,
    pub from_name: Option<String>,
    pub text: Option<String>,
    /// An uploaded media file of the account, with the type and name the sender declares
    /// (defaults: the upload's).
    pub media: Option<(MediaId, Option<String>, Option<String>)>,
    /// A group chat: its id and subject.
    pub group: Option<(String, Option<String>)>,
}

/// Messages "from WhatsApp" to sandbox devices.
#[derive(Clone)]
pub struct SandboxService {
    store: Arc<dyn Store>,
    media: MediaService,
    network: Arc<dyn SandboxInject>,
}

impl SandboxService {
    pub fn new(
        store: Arc<dyn Store>,
        media: MediaService,
        network: Arc<dyn SandboxInject>,
    ) -> Self {
        Self {
            store,
            media,
            network,
        }
    }

    /// Delivers `message` to the sandbox device `uid` and returns its WhatsApp id once it
    /// is committed.
    pub async fn inject_sandbox_inbound(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        message: SandboxInbound,
    ) -> ServiceResult<String> {
        let device = super::device_of(self.store.as_ref(), account, uid).await?;
        if device.engine != EngineKind::Sandbox {
            return Err(ServiceError::Conflict(format!(
                "device {uid} is not a sandbox device"
            )));
        }
        let (kind, media) = match message.media {
            Some((id, declared_type, declared_name)) => {
                let m = self.media.get_media(account, &id).await.map_err(|_| {
                    ServiceError::Invalid(
                        "mediaId".into(),
                        format!("no media {id} was uploaded by this account"),
                    )
                })?;
                let data = self.media.content(&id).await?;
                (
                    // What WhatsApp would show it as: the content decides.
                    super::media::media_kind(super::messaging::SendKind::MediaAuto, &m.mime_type)
                        .unwrap_or(MessageKind::Document),
                    Some(IncomingMedia {
                        data,
                        mime_type: declared_type.unwrap_or(m.mime_type),
                        file_name: declared_name.or(m.file_name),
                    }),
                )
            }
            None => (MessageKind::Text, None),
        };
        let provider_message_id =
            format!("SANDBOX{}", MessageId::new().as_str()[4..].to_uppercase());
        let (group_id, group_name) = match message.group {
            Some((id, name)) => (Some(id), name),
            None => (None, None),
        };
        let incoming = IncomingMessage {
            provider_message_id: provider_message_id.clone(),
            from: Some(message.from),
            from_lid: None,
            from_name: message.from_name,
            kind,
            text: message.text,
            media,
            details: Default::default(),
            is_group: group_id.is_some(),
            group_id,
            group_name,
            timestamp: time::now(),
        };
        self.network
            .inject_inbound(uid, incoming)
            .await
            .map_err(|e| ServiceError::Engine(e.to_string()))?;
        Ok(provider_message_id)
    }
}
