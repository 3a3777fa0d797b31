//! Groups: listing the groups a device is in, reading one with its members, creating
//! one, changing its members, leaving it and reading its invite link.
//!
//! Each is a call on the device's live WhatsApp session, like a number check: WhatsApp,
//! not wagate, knows a group's members, and a copy kept here would go stale the moment
//! someone else changes the group. On a cluster the call reaches the node that drives the
//! device ([`super::peer`]): each takes the [`Reach`] (`Anywhere` from an API caller,
//! `HereOnly` for a call another node forwarded). Messages to a group go through the
//! outbox like any other (`to` is then a [`Recipient::Group`](wagate_core::Recipient)).

use super::messaging::Live;
use super::peer::{PeerReply, Reach, SessionCall, unexpected};
use super::{MessagingService, ServiceError, ServiceResult};
use wagate_core::chat::{GroupInfo, MAX_MEMBERS_PER_CALL, MemberOutcome, MembershipChange};
use wagate_core::engine::EngineError;
use wagate_core::{AccountId, DeviceUid, GroupId, Phone};

/// What an engine's refusal of a group call means to the caller: an unknown group (or one
/// the device is not in) is a 404, anything else WhatsApp refused is a 409 with its
/// reason, and a device that cannot reach WhatsApp now is the engine's failure.
fn group_error(e: EngineError) -> ServiceError {
    match e {
        EngineError::Rejected { code, .. } if code.as_deref() == Some("not_found") => {
            ServiceError::NotFound("group")
        }
        EngineError::Rejected { reason, .. } | EngineError::Unsupported(reason) => {
            ServiceError::Conflict(reason)
        }
        other => ServiceError::Engine(other.to_string()),
    }
}

fn members_wire(members: &[Phone]) -> Vec<String> {
    members.iter().map(ToString::to_string).collect()
}

fn check_members(members: &[Phone], field: &str, at_least: usize) -> ServiceResult<()> {
    if members.len() < at_least || members.len() > MAX_MEMBERS_PER_CALL {
        return Err(ServiceError::Invalid(
            field.into(),
            format!("must name {at_least} to {MAX_MEMBERS_PER_CALL} phone numbers"),
        ));
    }
    Ok(())
}

impl MessagingService {
    /// The groups the device is in.
    pub async fn list_groups(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        reach: Reach,
    ) -> ServiceResult<Vec<GroupInfo>> {
        match self
            .live(account, device, reach, SessionCall::Groups)
            .await?
        {
            Live::Here(session) => session.groups().await.map_err(group_error),
            Live::There(PeerReply::Groups { groups }) => Ok(groups),
            Live::There(other) => Err(unexpected(&other)),
        }
    }

    /// One group the device is in, with its members (`NotFound` otherwise).
    pub async fn group_info(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        group: &GroupId,
        reach: Reach,
    ) -> ServiceResult<GroupInfo> {
        let call = SessionCall::GroupInfo {
            group: group.to_string(),
        };
        match self.live(account, device, reach, call).await? {
            Live::Here(session) => session.group_info(group).await.map_err(group_error),
            Live::There(PeerReply::Group { group }) => Ok(group),
            Live::There(other) => Err(unexpected(&other)),
        }
    }

    /// Creates a group owned by the device with `members` (1 to 256 numbers).
    pub async fn create_group(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        subject: &str,
        members: &[Phone],
        reach: Reach,
    ) -> ServiceResult<GroupInfo> {
        let subject = wagate_core::chat::check_subject(subject)
            .map_err(|why| ServiceError::Invalid("subject".into(), why.into()))?;
        check_members(members, "participants", 1)?;
        let call = SessionCall::CreateGroup {
            subject: subject.clone(),
            members: members_wire(members),
        };
        match self.live(account, device, reach, call).await? {
            Live::Here(session) => session
                .create_group(&subject, members)
                .await
                .map_err(group_error),
            Live::There(PeerReply::Group { group }) => Ok(group),
            Live::There(other) => Err(unexpected(&other)),
        }
    }

    /// Adds, removes, promotes or demotes `members`; what became of each.
    pub async fn change_members(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        group: &GroupId,
        change: MembershipChange,
        members: &[Phone],
        reach: Reach,
    ) -> ServiceResult<Vec<MemberOutcome>> {
        if change == MembershipChange::Leave {
            return Err(ServiceError::Invalid(
                "change".into(),
                "a device leaves a group with POST /v1/developer/groups/{groupId}/leave".into(),
            ));
        }
        check_members(members, change.as_str(), 1)?;
        let call = SessionCall::ChangeMembers {
            group: group.to_string(),
            change,
            members: members_wire(members),
        };
        match self.live(account, device, reach, call).await? {
            Live::Here(session) => session
                .change_members(group, change, members)
                .await
                .map_err(group_error),
            Live::There(PeerReply::Members { outcomes }) => Ok(outcomes),
            Live::There(other) => Err(unexpected(&other)),
        }
    }

    /// The device leaves the group.
    pub async fn leave_group(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        group: &GroupId,
        reach: Reach,
    ) -> ServiceResult<()> {
        let call = SessionCall::LeaveGroup {
            group: group.to_string(),
        };
        let left = match self.live(account, device, reach, call).await? {
            Live::Here(session) => session.leave_group(group).await.map_err(group_error),
            Live::There(PeerReply::Done) => Ok(()),
            Live::There(other) => Err(unexpected(&other)),
        };
        self.forget_group(device, group);
        left
    }

    /// The group's invite link (the device must be an admin).
    pub async fn invite_link(
        &self,
        account: &AccountId,
        device: &DeviceUid,
        group: &GroupId,
        reach: Reach,
    ) -> ServiceResult<String> {
        let call = SessionCall::InviteLink {
            group: group.to_string(),
        };
        match self.live(account, device, reach, call).await? {
            Live::Here(session) => session.invite_link(group).await.map_err(group_error),
            Live::There(PeerReply::InviteLink { url }) => Ok(url),
            Live::There(other) => Err(unexpected(&other)),
        }
    }
}
