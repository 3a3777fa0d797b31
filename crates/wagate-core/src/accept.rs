//! Accepting a send: the decision every store makes inside its accept transaction.
//!
//! Whether a message may be accepted (the device is the caller's and live, its
//! `clientMessageId` is new or a replay, the daily budget has room) is domain policy, not
//! SQL. A store loads the facts below inside its transaction, asks [`decide`], and writes
//! what it is told; SQLite and PostgreSQL therefore refuse and dedupe alike.

use crate::id::{AccountId, MessageId};
use crate::message::{Message, MessageStatus, NewOutboundMessage, is_replay};

/// What the store found for one accept, at its turn in the transaction (earlier accepts
/// of the same transaction included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptFacts {
    /// The device the message names, or `None` when there is no such device.
    pub device: Option<DeviceFacts>,
    /// Messages the device accepted in the 24 hours up to the message's `created_at`.
    pub accepted_today: u64,
    /// The device's message that already holds the `clientMessageId`, if any.
    pub existing: Option<ExistingKey>,
}

/// The device as far as accepting cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    pub account_id: AccountId,
    pub deleted: bool,
}

/// A message already holding a `clientMessageId` on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingKey {
    pub id: MessageId,
    /// Its [`crate::message::RequestIdentity::hash`]; `None` for messages accepted
    /// before requests were fingerprinted.
    pub request_hash: Option<String>,
}

/// What to do with an accept.
#[derive(Debug, Clone, PartialEq)]
pub enum AcceptDecision {
    /// Write this message (queued), its history step, its send job and its budget count.
    Create(Box<Message>),
    /// The same request again: write nothing, answer with the original as it is now.
    Replay(MessageId),
    /// The key stands for another request: write nothing, refuse naming the original.
    KeyReused { original: MessageId },
    /// The daily budget is used up: write nothing.
    DailyBudgetExhausted { limit: u32 },
    /// No such device for this account (or it was deleted): write nothing.
    NoSuchDevice,
}

/// Decides one accept. Checks run in the order callers see them: a device that is not
/// the caller's is not found before anything else is revealed, a replay answers even
/// when the budget has since run out, and only a new request counts against the budget.
pub fn decide(
    message: &NewOutboundMessage,
    provider_message_id: &str,
    daily_limit: u32,
    facts: &AcceptFacts,
) -> AcceptDecision {
    match &facts.device {
        Some(d) if d.account_id == message.account_id && !d.deleted => {}
        _ => return AcceptDecision::NoSuchDevice,
    }
    if let Some(existing) = &facts.existing {
        return if is_replay(existing.request_hash.as_deref(), &message.request_hash) {
            AcceptDecision::Replay(existing.id.clone())
        } else {
            AcceptDecision::KeyReused {
                original: existing.id.clone(),
            }
        };
    }
    if facts.accepted_today >= u64::from(daily_limit) {
        return AcceptDecision::DailyBudgetExhausted { limit: daily_limit };
    }
    AcceptDecision::Create(Box::new(queued(message, provider_message_id)))
}

/// The message as accepting creates it: queued since `created_at`, under the provider id
/// it will be sent with on every attempt.
pub fn queued(message: &NewOutboundMessage, provider_message_id: &str) -> Message {
    Message {
        id: message.id.clone(),
        account_id: message.account_id.clone(),
        device_uid: message.device_uid.clone(),
        to: message.to.clone(),
        kind: message.kind,
        text: message.text.clone(),
        media_id: message.media_id.clone(),
        details: message.details.clone(),
        client_message_id: message.client_message_id.clone(),
        status: MessageStatus::Queued,
        failure_reason: None,
        provider_message_id: provider_message_id.to_owned(),
        dialect: message.dialect,
        send_at: message.send_at,
        created_at: message.created_at,
        updated_at: message.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::DeviceUid;
    use crate::message::{Dialect, MessageKind};
    use crate::phone::Phone;

    fn message(account: &AccountId) -> NewOutboundMessage {
        NewOutboundMessage {
            id: MessageId::new(),
            account_id: account.clone(),
            device_uid: DeviceUid::new(),
            to: Phone::parse("+201001234567").unwrap().into(),
            kind: MessageKind::Text,
            text: Some("hi".into()),
            media_id: None,
            details: Default::default(),
            client_message_id: Some("k1".into()),
            request_hash: "h1".into(),
            dialect: Dialect::Msgera,
            send_at: None,
            created_at: crate::time::from_millis(1_000),
        }
    }

    fn facts(account: &AccountId) -> AcceptFacts {
        AcceptFacts {
            device: Some(DeviceFacts {
                account_id: account.clone(),
                deleted: false,
            }),
            accepted_today: 0,
            existing: None,
        }
    }

    #[test]
    fn a_new_request_within_budget_is_created_queued() {
        let a = AccountId::new();
        let m = message(&a);
        let AcceptDecision::Create(created) = decide(&m, "3EB0X", 10, &facts(&a)) else {
            panic!("expected Create");
        };
        assert_eq!(created.id, m.id);
        assert_eq!(created.status, MessageStatus::Queued);
        assert_eq!(created.provider_message_id, "3EB0X");
        assert_eq!(created.updated_at, m.created_at);
        assert_eq!(created.failure_reason, None);
    }

    #[test]
    fn another_accounts_missing_or_deleted_device_is_not_found() {
        let a = AccountId::new();
        let m = message(&a);
        let mut f = facts(&AccountId::new());
        assert_eq!(decide(&m, "p", 10, &f), AcceptDecision::NoSuchDevice);
        f.device = None;
        assert_eq!(decide(&m, "p", 10, &f), AcceptDecision::NoSuchDevice);
        let mut f = facts(&a);
        f.device = Some(DeviceFacts {
            account_id: a.clone(),
            deleted: true,
        });
        // Not found wins over a key the deleted device holds.
        f.existing = Some(ExistingKey {
            id: MessageId::new(),
            request_hash: Some("h1".into()),
        });
        assert_eq!(decide(&m, "p", 10, &f), AcceptDecision::NoSuchDevice);
    }

    #[test]
    fn a_held_key_replays_the_same_request_and_refuses_another() {
        let a = AccountId::new();
        let m = message(&a);
        let original = MessageId::new();
        let mut f = facts(&a);
        // A replay answers even with the budget used up: it costs nothing.
        f.accepted_today = 10;
        f.existing = Some(ExistingKey {
            id: original.clone(),
            request_hash: Some("h1".into()),
        });
        assert_eq!(
            decide(&m, "p", 10, &f),
            AcceptDecision::Replay(original.clone())
        );
        f.existing = Some(ExistingKey {
            id: original.clone(),
            request_hash: None,
        });
        assert_eq!(
            decide(&m, "p", 10, &f),
            AcceptDecision::Replay(original.clone())
        );
        f.existing = Some(ExistingKey {
            id: original.clone(),
            request_hash: Some("h2".into()),
        });
        assert_eq!(
            decide(&m, "p", 10, &f),
            AcceptDecision::KeyReused { original }
        );
    }

    #[test]
    fn the_daily_budget_refuses_the_accept_that_would_exceed_it() {
        let a = AccountId::new();
        let m = message(&a);
        let mut f = facts(&a);
        f.accepted_today = 9;
        assert!(matches!(decide(&m, "p", 10, &f), AcceptDecision::Create(_)));
        f.accepted_today = 10;
        assert_eq!(
            decide(&m, "p", 10, &f),
            AcceptDecision::DailyBudgetExhausted { limit: 10 }
        );
        assert_eq!(
            decide(&m, "p", 0, &facts(&a)),
            AcceptDecision::DailyBudgetExhausted { limit: 0 }
        );
    }
}
