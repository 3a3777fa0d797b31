//! Group membership changes a device sees (`<notification type="w:gp2">`, raised by
//! whatsapp-rust as `Event::GroupUpdate`, one per action) → wagate's inbound messages of
//! kind `participants`: the actor as sender, the group as chat, who was added, removed,
//! promoted or demoted (or left) by number.
//!
//! Reported as inbound messages rather than an event of their own so the runtime stores and
//! dedupes them like any message (by the notification's id). Members that WhatsApp names
//! by LID are resolved to numbers through [`InboundContext`], as senders are. Settings,
//! subject and other changes are not reported.

use crate::inbound::InboundContext;
use crate::mapping::{lid_string, phone_of_pn, ts};
use wagate_core::chat::{GroupChange, GroupMember, GroupRole, MembershipChange};
use wagate_core::content::Details;
use wagate_core::engine::IncomingMessage;
use wagate_core::message::MessageKind;
use whatsapp_rust::Jid;
use whatsapp_rust::types::events::GroupUpdate;
use whatsapp_rust::wacore::stanza::groups::{
    GroupNotificationAction, GroupParticipantInfo, GroupParticipantType,
};
use whatsapp_rust::wacore_binary::{Node, NodeValue};

/// One member named by a notification, before resolving: its JID, the number WhatsApp sent
/// along, its LID, and its tier when given.
struct Named {
    jid: Jid,
    phone_number: Option<Jid>,
    lid: Option<Jid>,
    tier: Option<GroupRole>,
}

impl From<&GroupParticipantInfo> for Named {
    fn from(p: &GroupParticipantInfo) -> Self {
        Self {
            jid: p.jid.to_non_ad(),
            phone_number: p.phone_number.clone(),
            lid: p.lid.clone(),
            tier: p.r#type.map(|t| match t {
                GroupParticipantType::SuperAdmin => GroupRole::Owner,
                GroupParticipantType::Admin => GroupRole::Admin,
                GroupParticipantType::Participant => GroupRole::Member,
            }),
        }
    }
}

/// The members of a `<create>` action's `<group>` (the notification of being added to a
/// new group) but its creator: they were added.
fn created_members(raw: &Node, actor: Option<&Jid>) -> Vec<Named> {
    let group = if raw.tag == "group" {
        Some(raw)
    } else {
        raw.get_optional_child("group")
    };
    let jid = |n: &Node, key: &str| n.attrs.get(key).and_then(NodeValue::to_jid);
    group
        .and_then(Node::children)
        .unwrap_or_default()
        .iter()
        .filter(|n| n.tag == "participant")
        .filter_map(|n| {
            let tier = match n
                .attrs
                .get("type")
                .map(|v| v.as_str().into_owned())
                .as_deref()
            {
                Some("superadmin") => GroupRole::Owner,
                Some("admin") => GroupRole::Admin,
                _ => GroupRole::Member,
            };
            Some(Named {
                jid: jid(n, "jid")?.to_non_ad(),
                phone_number: jid(n, "phone_number"),
                lid: jid(n, "lid"),
                tier: Some(tier),
            })
        })
        .filter(|m| actor.is_none_or(|a| a.user != m.jid.user) && m.tier != Some(GroupRole::Owner))
        .collect()
}

/// What the update did, to whom; `None` for changes wagate does not report.
fn change_of(u: &GroupUpdate) -> Option<(MembershipChange, Vec<Named>)> {
    let named = |ps: &[GroupParticipantInfo]| ps.iter().map(Named::from).collect::<Vec<_>>();
    let actor = u.participant.as_ref().map(Jid::to_non_ad);
    Some(match &u.action {
        GroupNotificationAction::Add { participants, .. } => {
            (MembershipChange::Add, named(participants))
        }
        GroupNotificationAction::Remove { participants, .. } => {
            // WhatsApp reports a member leaving as their own removal.
            let by_themself = matches!(participants.as_slice(), [only] if actor
            .as_ref()
            .is_some_and(|a| a.user == only.jid.user
                || u.participant_pn.as_ref().is_some_and(|pn| {
                    only.phone_number.as_ref().is_some_and(|p| p.user == pn.user)
                })));
            let change = if by_themself {
                MembershipChange::Leave
            } else {
                MembershipChange::Remove
            };
            (change, named(participants))
        }
        GroupNotificationAction::Promote { participants } => {
            (MembershipChange::Promote, named(participants))
        }
        GroupNotificationAction::Demote { participants } => {
            (MembershipChange::Demote, named(participants))
        }
        GroupNotificationAction::Create { raw } => {
            (MembershipChange::Add, created_members(raw, actor.as_ref()))
        }
        _ => return None,
    })
}

/// The inbound message reporting `u`, if it is a membership change.
pub(crate) async fn convert(u: &GroupUpdate, ctx: &dyn InboundContext) -> Option<IncomingMessage> {
    let (action, named) = change_of(u)?;
    if named.is_empty() {
        return None;
    }
    let mut participants = Vec::with_capacity(named.len());
    for m in named {
        let phone = ctx.phone_of(&m.jid, m.phone_number.as_ref()).await;
        let lid = lid_string(&m.jid).or_else(|| m.lid.as_ref().and_then(lid_string));
        participants.push(GroupMember {
            phone,
            lid,
            // whatsapp-rust fills in a member's type even when the notification has none
            // ("participant"), so the change itself says what a promoted or demoted
            // member is now; an owner stays owner.
            role: match (action, m.tier) {
                (_, Some(GroupRole::Owner)) => GroupRole::Owner,
                (MembershipChange::Promote, _) => GroupRole::Admin,
                (MembershipChange::Demote, _) => GroupRole::Member,
                (_, tier) => tier.unwrap_or(GroupRole::Member),
            },
        });
    }
    let actor = u.participant.as_ref().map(Jid::to_non_ad);
    let from = match &actor {
        Some(a) => ctx.phone_of(a, u.participant_pn.as_ref()).await,
        None => None,
    };
    let from_lid = actor.as_ref().and_then(lid_string);
    let group = u.group_jid.to_non_ad();
    // One notification may carry several actions: each is a message of its own.
    let base = u
        .notification_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", group.user, u.timestamp.timestamp_millis()));
    let provider_message_id = match u.action_index {
        0 => base,
        i => format!("{base}-{i}"),
    };
    let details = Details {
        group_change: Some(GroupChange {
            action,
            participants,
        }),
        ..Details::default()
    };
    let text = details.summary_of(MessageKind::Participants);
    Some(IncomingMessage {
        provider_message_id,
        from: from.or_else(|| actor.as_ref().and_then(phone_of_pn)),
        from_lid,
        from_name: u.notify.clone().filter(|n| !n.is_empty()),
        kind: MessageKind::Participants,
        text,
        media: None,
        details,
        is_group: true,
        group_id: Some(group.to_string()),
        group_name: ctx.group_name(&group).await,
        timestamp: ts(u.timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use wagate_core::Phone;
    use whatsapp_rust::download::Downloadable;
    use whatsapp_rust::wacore_binary::builder::NodeBuilder;

    struct Fake;

    #[async_trait]
    impl InboundContext for Fake {
        async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
            phone_of_pn(jid)
                .or_else(|| alt.and_then(phone_of_pn))
                .or_else(|| {
                    (jid.user.as_str() == "200000000000002")
                        .then(|| Phone::parse("15550002222").unwrap())
                })
        }
        async fn lid_of(&self, _pn: &Jid) -> Option<String> {
            None
        }
        async fn group_name(&self, _group: &Jid) -> Option<String> {
            Some("Team".into())
        }
        fn own_phone(&self) -> Option<Phone> {
            None
        }
        async fn download(&self, _media: &dyn Downloadable) -> anyhow::Result<Vec<u8>> {
            anyhow::bail!("no media here")
        }
        async fn find_poll(
            &self,
            _id: &str,
        ) -> Result<
            Option<(wagate_core::content::Poll, wagate_core::content::Quote)>,
            wagate_core::engine::EventNotCommitted,
        > {
            Ok(None)
        }
        async fn decrypt_vote(
            &self,
            _vote: whatsapp_rust::wacore::poll::PollVoteCiphertext<'_>,
            _secret: &[u8],
            _poll_id: &str,
            _creator: &Jid,
            _voter: &Jid,
        ) -> anyhow::Result<Vec<Vec<u8>>> {
            anyhow::bail!("no votes here")
        }
    }

    fn info(jid: &str, pn: Option<&str>) -> GroupParticipantInfo {
        GroupParticipantInfo {
            jid: jid.parse().unwrap(),
            phone_number: pn.map(|p| p.parse().unwrap()),
            display_name: None,
            r#type: Some(GroupParticipantType::Participant),
            lid: None,
            username: None,
            group_history_sent_state: None,
            join_time: None,
        }
    }

    fn update(actor: &str, action: GroupNotificationAction, index: u32) -> GroupUpdate {
        GroupUpdate::builder()
            .group_jid(Jid::group("120363000000000001"))
            .notification_id("N1".into())
            .action_index(index)
            .participant(actor.parse().unwrap())
            .timestamp(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap())
            .is_lid_addressing_mode(false)
            .action(action)
            .build()
    }

    fn phones(m: &IncomingMessage) -> Vec<Option<String>> {
        m.details
            .group_change
            .as_ref()
            .unwrap()
            .participants
            .iter()
            .map(|p| p.phone.as_ref().map(|p| p.digits().to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn membership_changes_become_participants_messages() {
        let promote = update(
            "15550001111@s.whatsapp.net",
            GroupNotificationAction::Promote {
                participants: vec![info("200000000000002@lid", None)],
            },
            0,
        );
        let m = convert(&promote, &Fake).await.unwrap();
        assert_eq!(m.kind, MessageKind::Participants);
        assert_eq!(m.provider_message_id, "N1");
        assert!(m.is_group);
        assert_eq!(m.group_id.as_deref(), Some("120363000000000001@g.us"));
        assert_eq!(m.group_name.as_deref(), Some("Team"));
        assert_eq!(m.from.as_ref().unwrap().digits(), "15550001111");
        let change = m.details.group_change.as_ref().unwrap();
        assert_eq!(change.action, MembershipChange::Promote);
        assert_eq!(change.participants[0].role, GroupRole::Admin);
        assert_eq!(
            change.participants[0].lid.as_deref(),
            Some("200000000000002@lid")
        );
        assert_eq!(phones(&m), [Some("15550002222".to_owned())]);
        assert!(m.text.is_some());

        let removed = update(
            "15550001111@s.whatsapp.net",
            GroupNotificationAction::Remove {
                participants: vec![info("15550003333@s.whatsapp.net", None)],
                reason: None,
            },
            1,
        );
        let m = convert(&removed, &Fake).await.unwrap();
        assert_eq!(m.provider_message_id, "N1-1", "one message per action");
        assert_eq!(
            m.details.group_change.as_ref().unwrap().action,
            MembershipChange::Remove
        );

        let left = update(
            "15550003333@s.whatsapp.net",
            GroupNotificationAction::Remove {
                participants: vec![info("15550003333@s.whatsapp.net", None)],
                reason: None,
            },
            0,
        );
        let m = convert(&left, &Fake).await.unwrap();
        assert_eq!(
            m.details.group_change.as_ref().unwrap().action,
            MembershipChange::Leave
        );

        let subject = update(
            "15550001111@s.whatsapp.net",
            GroupNotificationAction::Subject {
                subject: "New".into(),
                subject_owner: None,
                subject_time: None,
            },
            0,
        );
        assert!(convert(&subject, &Fake).await.is_none());
    }

    #[tokio::test]
    async fn being_added_to_a_new_group_names_its_members_but_the_creator() {
        let raw = NodeBuilder::new("create")
            .children([NodeBuilder::new("group")
                .attr("id", "120363000000000001")
                .attr("subject", "Team")
                .children([
                    NodeBuilder::new("participant")
                        .attr("jid", "15550001111@s.whatsapp.net")
                        .attr("type", "superadmin")
                        .build(),
                    NodeBuilder::new("participant")
                        .attr("jid", "15550003333@s.whatsapp.net")
                        .build(),
                ])
                .build()])
            .build();
        let m = convert(
            &update(
                "15550001111@s.whatsapp.net",
                GroupNotificationAction::Create { raw },
                0,
            ),
            &Fake,
        )
        .await
        .unwrap();
        let change = m.details.group_change.as_ref().unwrap();
        assert_eq!(change.action, MembershipChange::Add);
        assert_eq!(phones(&m), [Some("15550003333".to_owned())]);
    }
}
