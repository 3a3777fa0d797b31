//! What the event mappings and the inbound conversion ask of the live protocol client:
//! our identity, the reconnect backoff, phone numbers behind LIDs, group names (cached),
//! media downloads, the polls votes are cast in (from the device's event sink) and opening
//! those votes. `None` for a replaced round whose client is gone.

use super::Inner;
use crate::inbound::InboundContext;
use crate::mapping::{Context, lid_string, nominal_backoff, phone_of_pn};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;
use wagate_core::Phone;
use wagate_core::content::{Poll, Quote};
use wagate_core::engine::EventNotCommitted;
use whatsapp_rust::download::Downloadable;
use whatsapp_rust::prelude::*;
use whatsapp_rust::wacore::poll::PollVoteCiphertext;

/// Group subjects are cached this long.
const GROUP_NAME_TTL: Duration = Duration::from_secs(60 * 60);

/// What the mappings need from the live client.
pub(super) struct ClientCtx {
    pub(super) inner: Arc<Inner>,
    /// `None` once the round's client is gone (late events of a replaced round).
    pub(super) client: Option<Arc<Client>>,
}

impl ClientCtx {
    async fn entry(&self, jid: &Jid) -> Option<whatsapp_rust::types::lid_pn::LidPnEntry> {
        let client = self.client.as_ref()?;
        match client.get_lid_pn_entry(&jid.to_non_ad()).await {
            Ok(e) => e,
            Err(e) => {
                debug!(error = %e, "LID/PN lookup failed");
                None
            }
        }
    }
}

#[async_trait]
impl Context for ClientCtx {
    fn identity(&self) -> (Option<Phone>, Option<String>, Option<String>) {
        let Some(client) = &self.client else {
            return (None, None, None);
        };
        let phone = client.pn().as_ref().and_then(phone_of_pn);
        let lid = client.lid().as_ref().and_then(lid_string);
        let name = Some(client.push_name()).filter(|n| !n.is_empty());
        (phone, lid, name)
    }

    fn retry_in(&self) -> Option<Duration> {
        let client = self.client.as_ref()?;
        Some(nominal_backoff(client.stats().reconnect_errors))
    }

    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
        if let Some(p) = phone_of_pn(jid).or_else(|| alt.and_then(phone_of_pn)) {
            return Some(p);
        }
        if !jid.is_lid() {
            return None;
        }
        self.entry(jid)
            .await
            .and_then(|e| Phone::parse(&e.phone_number).ok())
    }
}

#[async_trait]
impl InboundContext for ClientCtx {
    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
        Context::phone_of(self, jid, alt).await
    }

    async fn lid_of(&self, pn: &Jid) -> Option<String> {
        self.entry(pn).await.map(|e| format!("{}@lid", e.lid))
    }

    async fn group_name(&self, group: &Jid) -> Option<String> {
        let key = group.to_string();
        {
            let groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, name)) = groups.get(&key)
                && at.elapsed() < GROUP_NAME_TTL
            {
                return Some(name.clone());
            }
        }
        let client = self.client.as_ref()?;
        match client.groups().get_metadata(group).await {
            Ok(meta) => {
                let mut groups = self.inner.groups.lock().unwrap_or_else(|p| p.into_inner());
                if groups.len() > 10_000 {
                    groups.clear();
                }
                groups.insert(key, (Instant::now(), meta.subject.clone()));
                Some(meta.subject)
            }
            Err(e) => {
                debug!(group = %group, error = %e, "group metadata unavailable");
                None
            }
        }
    }

    fn own_phone(&self) -> Option<Phone> {
        self.client.as_ref()?.pn().as_ref().and_then(phone_of_pn)
    }

    async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>> {
        match &self.client {
            Some(c) => c.download(media).await,
            None => anyhow::bail!("the session's connection is gone"),
        }
    }

    async fn find_poll(&self, id: &str) -> Result<Option<(Poll, Quote)>, EventNotCommitted> {
        self.inner.events.find_poll(id).await
    }

    async fn decrypt_vote(
        &self,
        vote: PollVoteCiphertext<'_>,
        secret: &[u8],
        poll_id: &str,
        creator: &Jid,
        voter: &Jid,
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let Some(client) = &self.client else {
            anyhow::bail!("the session's connection is gone");
        };
        // The client retries under the LID/PN counterparts it knows (votes cast across
        // WhatsApp's move to LIDs).
        Ok(client
            .polls()
            .decrypt_vote(vote, secret, poll_id, creator, voter)
            .await?)
    }
}
