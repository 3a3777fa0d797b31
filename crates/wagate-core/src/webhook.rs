//! Webhooks: where a device's events are POSTed, which events each destination opted into,
//! and the durable delivery records (one per event and destination, one row per attempt).
//!
//! Routing is decided here, as a pure function of a device's configuration and an event,
//! so every store fans out the same way inside the transaction that advances its fan-out
//! cursor (which is what makes each event fan out exactly once, also across crashes).

use crate::MediaId;
use crate::event::{Event, EventData, EventType};
use crate::id::{AccountId, DeviceUid, EventId};
use crate::media::Media;
use crate::store::{Page, PageRequest, StoreResult};
use crate::time::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One destination of a device: Msgera's two URLs and MegaMsg's instance URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// Msgera `personalWebhookUrl`: direct chats, and status events.
    Personal,
    /// Msgera `groupWebhookUrl`: group messages.
    Group,
    /// The MegaMsg instance webhook: everything, in MegaMsg's format.
    Instance,
}

impl EndpointKind {
    pub const ALL: [EndpointKind; 3] = [Self::Personal, Self::Group, Self::Instance];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Personal => "personal",
            Self::Group => "group",
            Self::Instance => "instance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The event types a destination receives when it names none: inbound messages only, which
/// is all the hosted services send, so existing receivers see nothing unexpected.
pub const DEFAULT_EVENT_TYPES: [EventType; 1] = [EventType::MessageReceived];

/// A device's webhook configuration (both dialects share one row and one signing secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    /// Msgera's `isActive`: switches the personal and group URLs on or off.
    pub msgera_active: bool,
    pub personal_url: Option<String>,
    pub group_url: Option<String>,
    pub msgera_events: Vec<EventType>,
    pub instance_url: Option<String>,
    pub instance_events: Vec<EventType>,
    /// `whsec_` + base64 of the key bytes.
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookConfig {
    /// The URL of a destination, if it is set and switched on.
    pub fn url(&self, kind: EndpointKind) -> Option<&str> {
        match kind {
            EndpointKind::Personal if self.msgera_active => self.personal_url.as_deref(),
            EndpointKind::Group if self.msgera_active => self.group_url.as_deref(),
            EndpointKind::Instance => self.instance_url.as_deref(),
            _ => None,
        }
    }

    pub fn events(&self, kind: EndpointKind) -> &[EventType] {
        match kind {
            EndpointKind::Personal | EndpointKind::Group => &self.msgera_events,
            EndpointKind::Instance => &self.instance_events,
        }
    }

    /// Where `event` goes. Inbound messages (and reactions, edits and deletes) go to the
    /// personal or the group URL by chat
    /// type; status events (which have no chat type) to the personal URL, or to the group
    /// URL when only that is set; the instance URL gets everything it opted into.
    pub fn targets(&self, event: &EventData) -> Vec<EndpointKind> {
        let t = event.event_type();
        let wants = |k: EndpointKind| self.url(k).is_some() && self.events(k).contains(&t);
        let mut out = Vec::with_capacity(2);
        let msgera = match event.chat_message() {
            Some(m) if m.is_group => EndpointKind::Group,
            Some(_) => EndpointKind::Personal,
            None if self.url(EndpointKind::Personal).is_some() => EndpointKind::Personal,
            None => EndpointKind::Group,
        };
        if wants(msgera) {
            out.push(msgera);
        }
        if wants(EndpointKind::Instance) {
            out.push(EndpointKind::Instance);
        }
        out
    }

    /// The secrets that sign a request at `now`: the current one, then the previous one
    /// during its grace period.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<String> {
        let mut v = vec![self.secret.clone()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > now
        {
            v.push(prev.clone());
        }
        v
    }
}

/// Msgera's `PUT /v1/developer/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgeraWebhooks {
    pub personal_url: Option<String>,
    pub group_url: Option<String>,
    pub active: bool,
    pub events: Vec<EventType>,
}

/// The MegaMsg instance webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceWebhook {
    pub url: Option<String>,
    pub events: Vec<EventType>,
}

/// A change of a device's webhook configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookChange {
    Msgera(MsgeraWebhooks),
    Instance(InstanceWebhook),
    /// A new secret; the current one keeps signing until the given time.
    RotateSecret {
        secret: String,
        previous_until: Timestamp,
    },
}

/// A delivery claimed for one attempt, with everything needed to make it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub delivery_id: i64,
    pub endpoint: EndpointKind,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub event: Event,
    /// The device's configuration now (`None` when it was removed): retries follow a
    /// changed URL or secret.
    pub config: Option<WebhookConfig>,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    /// The node that claimed the delivery and made the attempt: only a delivery still
    /// leased by it moves on.
    pub owner: String,
    pub attempt: u32,
    pub url: String,
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The start of the response body, for debugging receivers.
    pub response_snippet: Option<String>,
    pub at: Timestamp,
}

/// What happens to the delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// No attempts left.
    Failed,
    /// The destination no longer exists or no longer wants the event: nothing was sent.
    Cancelled,
}

/// One recorded attempt, as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub id: i64,
    pub delivery_id: i64,
    pub account_id: AccountId,
    pub device_uid: DeviceUid,
    pub endpoint: EndpointKind,
    pub event_id: EventId,
    pub event_type: EventType,
    pub attempt: u32,
    pub url: String,
    pub success: bool,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_snippet: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFilter {
    pub device_uid: Option<DeviceUid>,
    pub success: Option<bool>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// The device's configuration, if it has one (`NotFound` for another account's device).
    async fn get_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
    ) -> StoreResult<Option<WebhookConfig>>;
    /// Applies `change`, creating the configuration with `new_secret` when the device has
    /// none yet.
    async fn change_webhook_config(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        change: &WebhookChange,
        new_secret: &str,
        at: Timestamp,
    ) -> StoreResult<WebhookConfig>;
    /// Fans out up to `limit` events after the fan-out cursor: a pending delivery per
    /// target ([`WebhookConfig::targets`]), committed with the cursor's move. Returns how
    /// many events it consumed (0 when caught up).
    async fn fan_out_events(&self, limit: u32, at: Timestamp) -> StoreResult<u32>;
    /// Claims up to `limit` due deliveries for `owner` (a node id) until `lease_until`;
    /// a delivery leased by any owner is skipped until its lease expires. Only each destination's
    /// `window` oldest unfinished deliveries are candidates, so a destination has at most
    /// `window` requests in flight, started in event order (`window` 1: one at a time, in
    /// order, the next waiting for the previous one's success or final failure). The
    /// longest-waiting candidates go first, so one backlog cannot starve the rest.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
        window: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// When the next unfinished delivery becomes claimable with the same `window`, if any.
    async fn next_delivery_at(&self, window: u32) -> StoreResult<Option<Timestamp>>;
    /// Records an attempt (unless `Cancelled`) and moves the delivery on, releasing its
    /// lease, if the record's owner still holds the lease. A delivery whose lease expired
    /// and was claimed by another node is left to that node (the attempt still enters the
    /// history: the request was made). `NotFound` if the delivery does not exist.
    async fn finish_attempt(&self, record: &AttemptRecord, next: DeliveryNext) -> StoreResult<()>;
    /// Releases the delivery leases `owner` holds (its shutdown, or its start after a
    /// crash); other nodes' leases are left to expire.
    async fn release_deliveries(&self, owner: &str) -> StoreResult<()>;
    /// The account's attempts, newest first.
    async fn list_webhook_attempts(
        &self,
        account: &AccountId,
        filter: &AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<WebhookAttempt>>;
    /// Queues the event of an attempt again for the same destination (same event id);
    /// returns the new delivery's id.
    async fn redeliver(&self, account: &AccountId, attempt: i64, at: Timestamp)
    -> StoreResult<i64>;
    /// A media file by id alone, for links the server signed itself.
    async fn get_media_by_id(&self, id: &MediaId) -> StoreResult<Media>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ReceivedMessage;
    use crate::time::now;

    fn config() -> WebhookConfig {
        WebhookConfig {
            account_id: AccountId::new(),
            device_uid: DeviceUid::new(),
            msgera_active: true,
            personal_url: Some("https://p.example/".into()),
            group_url: Some("https://g.example/".into()),
            msgera_events: DEFAULT_EVENT_TYPES.to_vec(),
            instance_url: None,
            instance_events: DEFAULT_EVENT_TYPES.to_vec(),
            secret: "whsec_a".into(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: now(),
            updated_at: now(),
        }
    }

    fn received(is_group: bool) -> EventData {
        EventData::MessageReceived(Box::new(ReceivedMessage {
            message_id: crate::MessageId::new(),
            provider_message_id: "X".into(),
            from: None,
            from_lid: None,
            from_name: None,
            kind: "text".into(),
            text: None,
            media_id: None,
            mime_type: None,
            details: Default::default(),
            is_group,
            group_id: None,
            group_name: None,
            timestamp: now(),
        }))
    }

    /// Status events (no chat type) go to the personal URL, or to the group URL when only
    /// that is set; a switched-off Msgera webhook and an event nobody opted into go nowhere.
    #[test]
    fn routes_status_events_and_respects_the_switch() {
        let status = EventData::MessageStatus(crate::event::MessageStatusChanged {
            message_id: crate::MessageId::new(),
            client_message_id: None,
            recipient: crate::Phone::parse("+201001234567").unwrap().into(),
            status: crate::message::MessageStatus::Sent,
            reason: None,
            timestamp: now(),
        });
        let mut c = config();
        assert_eq!(c.targets(&status), vec![], "not opted into");
        c.msgera_events = vec![EventType::MessageReceived, EventType::MessageStatus];
        assert_eq!(c.targets(&status), vec![EndpointKind::Personal]);
        c.personal_url = None;
        assert_eq!(c.targets(&status), vec![EndpointKind::Group]);
        assert_eq!(c.targets(&received(false)), vec![]);
        c.msgera_active = false;
        assert_eq!(c.url(EndpointKind::Group), None);
        assert_eq!(c.targets(&received(true)), vec![]);
        c.instance_url = Some("https://i.example/".into());
        assert_eq!(c.url(EndpointKind::Instance), Some("https://i.example/"));
        c.instance_events = vec![EventType::DeviceStatus];
        assert_eq!(c.targets(&status), vec![]);
        c.msgera_active = true;
        c.group_url = None;
        c.personal_url = Some("https://p.example/".into());
        assert_eq!(c.url(EndpointKind::Personal), Some("https://p.example/"));
        c.msgera_events = vec![EventType::MessageReceived];
        assert_eq!(c.targets(&status), vec![]);
        assert_eq!(c.targets(&received(true)), vec![]);
    }

    /// A rotated-away secret signs only until its grace period ends, and never at the
    /// instant it ends.
    #[test]
    fn a_rotated_away_secret_signs_only_during_its_grace() {
        let mut c = config();
        let t = now();
        assert_eq!(c.signing_secrets(t), ["whsec_a"]);
        c.previous_secret = Some("whsec_old".into());
        c.previous_secret_until = Some(t + chrono::Duration::seconds(60));
        assert_eq!(c.signing_secrets(t), ["whsec_a", "whsec_old"]);
        c.previous_secret_until = Some(t);
        assert_eq!(c.signing_secrets(t), ["whsec_a"]);
        c.previous_secret_until = Some(t - chrono::Duration::seconds(1));
        assert_eq!(c.signing_secrets(t), ["whsec_a"]);
    }

    #[test]
    fn routes_by_chat_type_and_opt_in() {
        let mut c = config();
        assert_eq!(c.targets(&received(false)), vec![EndpointKind::Personal]);
        assert_eq!(c.targets(&received(true)), vec![EndpointKind::Group]);
        c.instance_url = Some("https://i.example/".into());
        assert_eq!(
            c.targets(&received(true)),
            vec![EndpointKind::Group, EndpointKind::Instance]
        );
        c.msgera_active = false;
        assert_eq!(c.targets(&received(false)), vec![EndpointKind::Instance]);
    }
}
