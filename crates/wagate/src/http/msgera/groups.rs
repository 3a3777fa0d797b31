//! Groups: `GET/POST /v1/developer/groups`, `GET /v1/developer/groups/{groupId}`,
//! `POST …/participants`, `POST …/leave`, `GET …/invite-link`. Live-session calls like a
//! number check (WhatsApp knows the members, not wagate); messages to a group go through
//! the send endpoints with `groupId`.

use super::details::MemberBody;
#[cfg(test)]
use super::messages::group_id_of;
use super::messages::phone;
use super::parse_device_uid;
use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldErrors};
use crate::http::json::ApiJson;
use crate::http::ok;
use crate::http::query::ApiQuery;
use crate::service::Services;
use crate::service::peer::Reach;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use wagate_core::chat::{GroupInfo, MemberOutcome, MembershipChange};
use wagate_core::{DeviceUid, GroupId};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// The device whose groups these are.
    pub device_uid: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupBody {
    /// The group's id (`…@g.us`): use it as `groupId` to send to the group.
    pub group_id: String,
    pub subject: String,
    pub participant_count: usize,
    /// The device's own role: member, admin or owner (null once it left).
    pub role: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// Every member, with numbers resolved from LIDs (on single-group reads and creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participants: Option<Vec<MemberBody>>,
    /// On creation: the numbers asked for that WhatsApp did not add (not on WhatsApp, or
    /// refused); absent when every one was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_added: Option<Vec<String>>,
}

impl GroupBody {
    fn from_info(g: &GroupInfo, with_members: bool) -> Self {
        Self {
            group_id: g.id.to_string(),
            subject: g.subject.clone(),
            participant_count: g.size,
            role: g.own_role.map(|r| r.as_str().to_owned()),
            created_at: g.created_at,
            participants: with_members
                .then(|| g.members.iter().map(MemberBody::from_member).collect()),
            not_added: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub items: Vec<GroupBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroupRequest {
    pub device_uid: String,
    /// 1–100 characters.
    pub subject: String,
    /// 1–256 phone numbers (E.164) to add besides the device.
    pub participants: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParticipantsRequest {
    pub device_uid: String,
    /// Numbers to add.
    pub add: Option<Vec<String>>,
    /// Numbers to remove.
    pub remove: Option<Vec<String>>,
    /// Members to make admins.
    pub promote: Option<Vec<String>>,
    /// Admins to make plain members.
    pub demote: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantResult {
    /// E.164.
    pub phone: String,
    /// add, remove, promote or demote.
    pub action: String,
    pub ok: bool,
    /// Why not, when not (not on WhatsApp, not a member, already one…).
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantResults {
    pub results: Vec<ParticipantResult>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaveGroupRequest {
    pub device_uid: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeftBody {
    pub group_id: String,
    pub left: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InviteLinkBody {
    pub group_id: String,
    /// `https://chat.whatsapp.com/…`
    pub invite_link: String,
}

/// A group id from the path: malformed cannot name a group, so it is a 404.
fn path_group(s: &str) -> Result<GroupId, ApiError> {
    GroupId::parse(s).map_err(|_| ApiError::not_found("group"))
}

fn query_device(q: &DeviceQuery) -> Result<DeviceUid, ApiError> {
    parse_device_uid(&q.device_uid, "deviceUid")
}

/// Lists the groups the device is in.
#[utoipa::path(get, path = "/v1/developer/groups", tag = "groups", security(("apiKey" = [])),
    params(DeviceQuery),
    responses((status = 200, body = GroupList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn list_groups(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> ApiResult<Response> {
    let device = query_device(&q)?;
    let groups = s
        .messaging
        .list_groups(&account, &device, Reach::Anywhere)
        .await?;
    Ok(ok(
        StatusCode::OK,
        GroupList {
            items: groups
                .iter()
                .map(|g| GroupBody::from_info(g, false))
                .collect(),
        },
    ))
}

/// One group with its participants (phone numbers, admin flags).
#[utoipa::path(get, path = "/v1/developer/groups/{groupId}", tag = "groups", security(("apiKey" = [])),
    params(("groupId" = String, Path, description = "The group's id (`…@g.us`)"), DeviceQuery),
    responses((status = 200, body = GroupBody), (status = 401, body = ErrorBody),
        (status = 404, description = "No such device, or the device is not in that group", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn get_group(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(group): Path<String>,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> ApiResult<Response> {
    let group = path_group(&group)?;
    let device = query_device(&q)?;
    let info = s
        .messaging
        .group_info(&account, &device, &group, Reach::Anywhere)
        .await?;
    Ok(ok(StatusCode::OK, GroupBody::from_info(&info, true)))
}

/// Creates a group with the device as its owner.
#[utoipa::path(post, path = "/v1/developer/groups", tag = "groups", security(("apiKey" = [])),
    request_body = CreateGroupRequest,
    responses((status = 201, body = GroupBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "WhatsApp refused", body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn create_group(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    ApiJson(req): ApiJson<CreateGroupRequest>,
) -> ApiResult<Response> {
    let mut p = FieldErrors::default();
    let device = p.check(parse_device_uid(&req.device_uid, "deviceUid"));
    let subject = p.check(
        wagate_core::chat::check_subject(&req.subject)
            .map_err(|why| ApiError::invalid("subject", why)),
    );
    let members = members(&mut p, "participants", Some(&req.participants));
    p.finish()?;
    let (Some(device), Some(subject)) = (device, subject) else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let info = s
        .messaging
        .create_group(&account, &device, &subject, &members, Reach::Anywhere)
        .await?;
    // WhatsApp creates the group with whom it can; the caller learns who is missing.
    let not_added: Vec<String> = members
        .iter()
        .filter(|m| !info.members.iter().any(|g| g.phone.as_ref() == Some(*m)))
        .map(wagate_core::Phone::e164)
        .collect();
    let mut body = GroupBody::from_info(&info, true);
    body.not_added = (!not_added.is_empty()).then_some(not_added);
    Ok(ok(StatusCode::CREATED, body))
}

/// 1–256 distinct phone numbers from a list field; `None` is no list.
fn members(
    p: &mut FieldErrors,
    field: &str,
    list: Option<&Vec<String>>,
) -> Vec<wagate_core::Phone> {
    let Some(list) = list else {
        return Vec::new();
    };
    if list.is_empty() || list.len() > wagate_core::chat::MAX_MEMBERS_PER_CALL {
        p.add(
            field,
            format!(
                "must list 1 to {} phone numbers",
                wagate_core::chat::MAX_MEMBERS_PER_CALL
            ),
        );
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let at = format!("{field}[{i}]");
            let phone = p.check(phone(n, &at))?;
            if !seen.insert(phone.clone()) {
                p.add(&at, "repeats an earlier number");
                return None;
            }
            Some(phone)
        })
        .collect()
}

/// Adds, removes, promotes or demotes participants (the device must be an admin).
#[utoipa::path(post, path = "/v1/developer/groups/{groupId}/participants", tag = "groups", security(("apiKey" = [])),
    params(("groupId" = String, Path, description = "The group's id (`…@g.us`)")),
    request_body = ParticipantsRequest,
    responses((status = 200, description = "What became of each number", body = ParticipantResults), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "WhatsApp refused (the device is not an admin)", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn change_participants(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(group): Path<String>,
    ApiJson(req): ApiJson<ParticipantsRequest>,
) -> ApiResult<Response> {
    let group = path_group(&group)?;
    let mut p = FieldErrors::default();
    let device = p.check(parse_device_uid(&req.device_uid, "deviceUid"));
    let changes: Vec<(MembershipChange, Vec<wagate_core::Phone>)> = [
        (MembershipChange::Add, "add", &req.add),
        (MembershipChange::Remove, "remove", &req.remove),
        (MembershipChange::Promote, "promote", &req.promote),
        (MembershipChange::Demote, "demote", &req.demote),
    ]
    .into_iter()
    .filter_map(|(change, field, list)| {
        let list = list.as_ref()?;
        Some((change, members(&mut p, field, Some(list))))
    })
    .collect();
    if changes.is_empty() {
        p.add("add", "name at least one of add, remove, promote or demote");
    }
    p.finish()?;
    let Some(device) = device else {
        return Err(ApiError::internal("validation passed without values"));
    };
    let mut results = Vec::new();
    // In the order of the body's fields: adding someone and promoting them in one call
    // works, because the add is done first.
    for (change, phones) in changes {
        let outcomes = s
            .messaging
            .change_members(&account, &device, &group, change, &phones, Reach::Anywhere)
            .await?;
        results.extend(outcomes.iter().map(participant_result));
    }
    Ok(ok(StatusCode::OK, ParticipantResults { results }))
}

fn participant_result(o: &MemberOutcome) -> ParticipantResult {
    ParticipantResult {
        phone: o.phone.e164(),
        action: o.change.as_str().to_owned(),
        ok: o.error.is_none(),
        error: o.error.clone(),
    }
}

/// The device leaves the group.
#[utoipa::path(post, path = "/v1/developer/groups/{groupId}/leave", tag = "groups", security(("apiKey" = [])),
    params(("groupId" = String, Path, description = "The group's id (`…@g.us`)")),
    request_body = LeaveGroupRequest,
    responses((status = 200, body = LeftBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn leave_group(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(group): Path<String>,
    ApiJson(req): ApiJson<LeaveGroupRequest>,
) -> ApiResult<Response> {
    let group = path_group(&group)?;
    let device = parse_device_uid(&req.device_uid, "deviceUid")?;
    s.messaging
        .leave_group(&account, &device, &group, Reach::Anywhere)
        .await?;
    Ok(ok(
        StatusCode::OK,
        LeftBody {
            group_id: group.to_string(),
            left: true,
        },
    ))
}

/// The group's invite link (the device must be an admin).
#[utoipa::path(get, path = "/v1/developer/groups/{groupId}/invite-link", tag = "groups", security(("apiKey" = [])),
    params(("groupId" = String, Path, description = "The group's id (`…@g.us`)"), DeviceQuery),
    responses((status = 200, body = InviteLinkBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The device is not an admin of the group", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, description = "The device is not connected", body = ErrorBody)))]
pub async fn invite_link(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    Path(group): Path<String>,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> ApiResult<Response> {
    let group = path_group(&group)?;
    let device = query_device(&q)?;
    let url = s
        .messaging
        .invite_link(&account, &device, &group, Reach::Anywhere)
        .await?;
    Ok(ok(
        StatusCode::OK,
        InviteLinkBody {
            group_id: group.to_string(),
            invite_link: url,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_id_in_the_path_must_be_one() {
        assert!(path_group("120363012345678901@g.us").is_ok());
        assert!(path_group("+201001234567").is_err());
        assert!(group_id_of("x", "groupId").is_err());
    }
}
