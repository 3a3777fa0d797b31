//! At-least-once receiving: inbound messages are emitted from the protocol's durability
//! hook, so WhatsApp gets its ack only after the application committed them; an error
//! leaves them unacknowledged, and the protocol client offers them again on its next
//! connection.

use super::Inner;
use super::client_ctx::ClientCtx;
use crate::inbound;
use async_trait::async_trait;
use std::sync::{Arc, Weak};
use wagate_core::engine::EngineEvent;
use whatsapp_rust::InboundDurabilityHook;
use whatsapp_rust::prelude::*;

/// At-least-once inbound: WhatsApp's ack waits until the application committed.
pub(super) struct Hook {
    pub(super) inner: Weak<Inner>,
    pub(super) round: u64,
}

#[async_trait]
impl InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        let Some(inner) = self.inner.upgrade() else {
            // The session is gone; unacked messages are redelivered to its next run.
            anyhow::bail!("session stopped");
        };
        if inner.state().round != self.round {
            anyhow::bail!("round replaced");
        }
        let ctx = ClientCtx {
            inner: inner.clone(),
            client: Some(client),
        };
        for im in batch {
            let Some(m) = inbound::convert(im, &ctx, inner.shared.config.max_inbound_media_bytes)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            else {
                continue;
            };
            inner
                .events
                .emit(EngineEvent::Inbound(Box::new(m)))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            inner.counters.received(1);
            inner.counters.touch();
        }
        Ok(())
    }
}
