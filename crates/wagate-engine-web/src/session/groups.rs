//! The group calls of [`EngineSession`](wagate_core::engine::EngineSession) over
//! whatsapp-rust's `client.groups()` (`w:g2` IQs): listing, reading, creating, member
//! changes, leaving and the invite link.
//!
//! WhatsApp may name members by LID; wagate shows numbers, so every member is reported with
//! the phone the group's metadata carries (`phone_number`, which whatsapp-rust backfills
//! from its LID↔PN map) and its LID beside it. A group WhatsApp does not know and one the
//! device is not in answer alike (`not_found`), as the engine contract asks.

use super::WebSession;
use super::errors::iq_error;
use crate::mapping::{lid_string, phone_of_pn};
use std::sync::Arc;
use wagate_core::chat::{GroupInfo, GroupMember, GroupRole, MemberOutcome, MembershipChange};
use wagate_core::engine::EngineError;
use wagate_core::time::from_millis;
use wagate_core::{GroupId, Phone};
use whatsapp_rust::prelude::*;
use whatsapp_rust::request::IqError;
use whatsapp_rust::types::message::AddressingMode;
use whatsapp_rust::{
    GroupCreateOptions, GroupError, GroupMetadata, GroupParticipantOptions,
    ParticipantChangeResponse, ParticipantType,
};

/// Whether a refused call only read the group (a member-only read refused means "not in
/// it") or changed it (refused: the device is not an admin).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    Change,
}

/// The group's JID as whatsapp-rust addresses it.
pub(crate) fn group_jid(group: &GroupId) -> Jid {
    Jid::group(group.user())
}

fn not_found(group: &GroupId) -> EngineError {
    EngineError::Rejected {
        code: Some("not_found".into()),
        reason: format!("group {group} does not exist or the device is not a member"),
    }
}

/// WhatsApp's refusals as the engine contract names them: 404 (and 403 on a read: the
/// device is not a member) → `not_found`; 403 on a change → `forbidden` (not an admin).
fn group_error(e: GroupError, group: &GroupId, call: Call, what: &str) -> EngineError {
    match e {
        GroupError::Iq(IqError::ServerError { code: 404, .. }) => not_found(group),
        GroupError::Iq(IqError::ServerError { code: 403, .. }) if call == Call::Read => {
            not_found(group)
        }
        GroupError::Iq(IqError::ServerError { code: 403, .. }) => EngineError::Rejected {
            code: Some("forbidden".into()),
            reason: format!("only the admins of group {group} can {what}"),
        },
        GroupError::Iq(iq) => iq_error(&iq, what),
        GroupError::InvalidRequest(m) => EngineError::Rejected {
            code: Some("invalid_request".into()),
            reason: format!("WhatsApp cannot {what}: {m}"),
        },
        other => EngineError::Transient(format!("could not {what}: {other}")),
    }
}

fn role(t: ParticipantType) -> GroupRole {
    match t {
        ParticipantType::SuperAdmin => GroupRole::Owner,
        ParticipantType::Admin => GroupRole::Admin,
        ParticipantType::Member => GroupRole::Member,
    }
}

/// The device's own identity, to find itself among a group's members.
struct Me {
    pn: Option<String>,
    lid: Option<String>,
}

impl Me {
    fn of(client: &Client) -> Self {
        Self {
            pn: client.pn().map(|j| j.user.to_string()),
            lid: client.lid().map(|j| j.user.to_string()),
        }
    }

    fn is(&self, jid: &Jid) -> bool {
        let user = Some(jid.user.to_string());
        (jid.is_pn() && user == self.pn) || (jid.is_lid() && user == self.lid)
    }
}

/// What wagate shows of a group's metadata; `members` only when `with_members`.
fn info_of(meta: &GroupMetadata, me: &Me, with_members: bool) -> Option<GroupInfo> {
    let id = GroupId::parse(&meta.id.to_non_ad().to_string()).ok()?;
    let own_role = meta
        .participants
        .iter()
        .find(|p| me.is(&p.jid) || p.phone_number.as_ref().is_some_and(|j| me.is(j)))
        .map(|p| role(p.participant_type));
    let members = if with_members {
        meta.participants
            .iter()
            .map(|p| GroupMember {
                phone: phone_of_pn(&p.jid)
                    .or_else(|| p.phone_number.as_ref().and_then(phone_of_pn)),
                lid: lid_string(&p.jid).or_else(|| p.lid.as_ref().and_then(lid_string)),
                role: role(p.participant_type),
            })
            .collect()
    } else {
        Vec::new()
    };
    let size = meta
        .size
        .and_then(|s| usize::try_from(s).ok())
        .unwrap_or(meta.participants.len());
    Some(GroupInfo {
        id,
        subject: meta.subject.clone(),
        own_role,
        members,
        size,
        created_at: meta
            .creation_time
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| from_millis(s.saturating_mul(1000))),
    })
}

/// What a member change's refusal code means, in the words the sandbox uses too.
fn outcome_error(change: MembershipChange, code: &str) -> String {
    match (change, code) {
        (MembershipChange::Add, "409") => "already a member".into(),
        (MembershipChange::Add, "404") => "not on WhatsApp".into(),
        (MembershipChange::Add, "403") => {
            "cannot be added (their privacy settings ask for an invite)".into()
        }
        (MembershipChange::Add, "408") => "left recently and cannot be added yet".into(),
        (_, "404") => "not a member".into(),
        (_, "406" | "403") => "is the group's owner".into(),
        (_, other) => format!("refused by WhatsApp (code {other})"),
    }
}

/// The answer about `phone` among a member change's answers (matched by the JID asked
/// for, or the number WhatsApp sent back).
fn answer_for<'a>(
    answers: &'a [ParticipantChangeResponse],
    phone: &Phone,
    asked: &Jid,
) -> Option<&'a ParticipantChangeResponse> {
    answers.iter().find(|a| {
        a.jid.to_non_ad() == asked.to_non_ad()
            || phone_of_pn(&a.jid).as_ref() == Some(phone)
            || a.phone_number.as_ref().and_then(phone_of_pn).as_ref() == Some(phone)
    })
}

/// How a group addresses `phone`: by LID in a LID-addressed group when the LID is known
/// (WhatsApp keys those groups' members, receipts and message keys by LID), else by number.
pub(super) async fn member_jid(client: &Client, group: &Jid, phone: &Phone) -> Jid {
    let pn = Jid::pn(phone.digits());
    let lid_mode = match client.groups().query_info(group).await {
        Ok(info) => info.addressing_mode == AddressingMode::Lid,
        Err(_) => false,
    };
    if lid_mode && let Ok(Some(entry)) = client.get_lid_pn_entry(&pn).await {
        return Jid::lid(&*entry.lid);
    }
    pn
}

impl WebSession {
    pub(super) async fn list_groups(&self) -> Result<Vec<GroupInfo>, EngineError> {
        let client = self.inner.online_client()?;
        let all = client
            .groups()
            .get_participating()
            .await
            .map_err(|e| match e {
                GroupError::Iq(iq) => iq_error(&iq, "listing the groups"),
                other => EngineError::Transient(format!("could not list the groups: {other}")),
            })?;
        let me = Me::of(&client);
        let mut groups: Vec<GroupInfo> = all
            .values()
            .filter_map(|meta| info_of(meta, &me, false))
            .collect();
        groups.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(groups)
    }

    pub(super) async fn read_group(&self, group: &GroupId) -> Result<GroupInfo, EngineError> {
        let client = self.inner.online_client()?;
        let meta = client
            .groups()
            .get_metadata(&group_jid(group))
            .await
            .map_err(|e| group_error(e, group, Call::Read, "read the group"))?;
        let info = info_of(&meta, &Me::of(&client), true).ok_or_else(|| not_found(group))?;
        if info.own_role.is_none() {
            // WhatsApp showed a group the device is no longer in: the contract says
            // not found.
            return Err(not_found(group));
        }
        Ok(info)
    }

    pub(super) async fn new_group(
        &self,
        subject: &str,
        members: &[Phone],
    ) -> Result<GroupInfo, EngineError> {
        let client = self.inner.online_client()?;
        let participants = members
            .iter()
            .map(|p| GroupParticipantOptions::from_phone(Jid::pn(p.digits())))
            .collect();
        let options = GroupCreateOptions::new(subject).with_participants(participants);
        let created = client
            .groups()
            .create_group(options)
            .await
            .map_err(|e| match e {
                GroupError::Iq(iq) => iq_error(&iq, "creating the group"),
                GroupError::InvalidRequest(m) => EngineError::Rejected {
                    code: Some("invalid_request".into()),
                    reason: format!("WhatsApp cannot create this group: {m}"),
                },
                other => EngineError::Transient(format!("could not create the group: {other}")),
            })?;
        info_of(&created.metadata, &Me::of(&client), true).ok_or_else(|| {
            EngineError::Internal(format!(
                "WhatsApp answered the new group with an id wagate cannot read: {}",
                created.metadata.id
            ))
        })
    }

    pub(super) async fn change_group_members(
        &self,
        group: &GroupId,
        change: MembershipChange,
        members: &[Phone],
    ) -> Result<Vec<MemberOutcome>, EngineError> {
        let client = self.inner.online_client()?;
        let jid = group_jid(group);
        let mut asked = Vec::with_capacity(members.len());
        for p in members {
            asked.push(member_jid(&client, &jid, p).await);
        }
        let groups = client.groups();
        let what = match change {
            MembershipChange::Add => "add members",
            MembershipChange::Remove => "remove members",
            MembershipChange::Promote => "promote members",
            MembershipChange::Demote => "demote members",
            MembershipChange::Leave => {
                return Err(EngineError::Rejected {
                    code: Some("invalid_request".into()),
                    reason: "a device leaves a group with its own call, not as a member change"
                        .into(),
                });
            }
        };
        let answers = match change {
            MembershipChange::Add => groups.add_participants(jid, &asked).await,
            MembershipChange::Remove => groups.remove_participants(jid, &asked).await,
            MembershipChange::Promote => groups.promote_participants(jid, &asked).await,
            _ => groups.demote_participants(jid, &asked).await,
        }
        .map_err(|e| group_error(e, group, Call::Change, what))?;
        Ok(members
            .iter()
            .zip(&asked)
            .map(|(phone, asked)| MemberOutcome {
                phone: phone.clone(),
                change,
                error: match answer_for(&answers, phone, asked) {
                    Some(a) => a.error.as_deref().map(|c| outcome_error(change, c)),
                    None => Some("WhatsApp did not answer for this member".into()),
                },
            })
            .collect())
    }

    pub(super) async fn leave(&self, group: &GroupId) -> Result<(), EngineError> {
        let client = self.inner.online_client()?;
        client
            .groups()
            .leave(group_jid(group))
            .await
            .map_err(|e| group_error(e, group, Call::Read, "leave the group"))
    }

    pub(super) async fn group_invite_link(&self, group: &GroupId) -> Result<String, EngineError> {
        let client: Arc<Client> = self.inner.online_client()?;
        client
            .groups()
            .get_invite_link(group_jid(group), false)
            .await
            .map_err(|e| group_error(e, group, Call::Change, "see its invite link"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::GroupParticipant;

    fn participant(jid: &str, pn: Option<&str>, t: ParticipantType) -> GroupParticipant {
        GroupParticipant {
            jid: jid.parse().unwrap(),
            phone_number: pn.map(|p| p.parse().unwrap()),
            lid: None,
            username: None,
            participant_type: t,
            details: None,
        }
    }

    #[test]
    fn metadata_reads_as_members_by_phone_with_roles() {
        let meta = GroupMetadata {
            id: Jid::group("120363000000000001"),
            subject: "Team".into(),
            participants: vec![
                participant(
                    "15550001111@s.whatsapp.net",
                    None,
                    ParticipantType::SuperAdmin,
                ),
                participant(
                    "200000000000002@lid",
                    Some("15550002222@s.whatsapp.net"),
                    ParticipantType::Admin,
                ),
                participant("300000000000003@lid", None, ParticipantType::Member),
            ],
            creation_time: Some(1_700_000_000),
            ..Default::default()
        };
        let me = Me {
            pn: Some("15550002222".into()),
            lid: Some("200000000000002".into()),
        };
        let info = info_of(&meta, &me, true).unwrap();
        assert_eq!(info.id.as_str(), "120363000000000001@g.us");
        assert_eq!(info.own_role, Some(GroupRole::Admin));
        assert_eq!(info.size, 3);
        let shown: Vec<_> = info
            .members
            .iter()
            .map(|m| {
                (
                    m.phone.as_ref().map(Phone::digits),
                    m.lid.as_deref(),
                    m.role,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (Some("15550001111"), None, GroupRole::Owner),
                (
                    Some("15550002222"),
                    Some("200000000000002@lid"),
                    GroupRole::Admin
                ),
                (None, Some("300000000000003@lid"), GroupRole::Member),
            ]
        );
        assert_eq!(info.created_at.unwrap().timestamp(), 1_700_000_000);
        let listed = info_of(&meta, &me, false).unwrap();
        assert!(listed.members.is_empty());
        assert_eq!(listed.size, 3);
        let stranger = Me {
            pn: Some("15559999999".into()),
            lid: None,
        };
        assert_eq!(info_of(&meta, &stranger, true).unwrap().own_role, None);
    }

    #[test]
    fn refusals_follow_the_engine_contract() {
        let g = GroupId::parse("120363000000000001@g.us").unwrap();
        let server = |code| {
            GroupError::Iq(IqError::ServerError {
                code,
                text: "x".into(),
                error_type: None,
                backoff: None,
            })
        };
        let code = |e: EngineError| match e {
            EngineError::Rejected { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(group_error(server(404), &g, Call::Change, "x")).as_deref(),
            Some("not_found")
        );
        assert_eq!(
            code(group_error(server(403), &g, Call::Read, "x")).as_deref(),
            Some("not_found")
        );
        assert_eq!(
            code(group_error(server(403), &g, Call::Change, "x")).as_deref(),
            Some("forbidden")
        );
        assert_eq!(
            code(group_error(server(409), &g, Call::Change, "x")).as_deref(),
            Some("409")
        );
        assert_eq!(
            outcome_error(MembershipChange::Add, "409"),
            "already a member"
        );
        assert_eq!(
            outcome_error(MembershipChange::Remove, "404"),
            "not a member"
        );
    }
}
