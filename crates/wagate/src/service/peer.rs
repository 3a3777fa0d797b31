//! Calls that need a device's live session, reaching the node that drives it.
//!
//! In a cluster any node accepts any API call, but a QR code, a pair code, a number check,
//! a logout or a reconnect needs the device's WhatsApp session, which runs on exactly one
//! node (its lease holder). The linking and messaging services ask [`SessionRouter`] where
//! the session is: here, they use it; on another node that said where it can be reached
//! (`nodes.address`, from `cluster.advertise_url`), they forward the call there through the
//! [`Peers`] port, signed with the cluster key, and answer with that node's reply as if it
//! were their own; otherwise the error names the node.
//!
//! The receiving node runs the call with [`Reach::HereOnly`]: a call is forwarded at most
//! once, so two nodes that disagree for a moment about a lease cannot bounce it between
//! them. The wire types here are the internal endpoint's body
//! (`POST /internal/v1/session-call`), not part of either public API.

use super::{ServiceError, ServiceResult};
use crate::keys::ClusterKey;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use wagate_core::chat::{GroupInfo, MemberOutcome, MembershipChange};
use wagate_core::content::TemplateInfo;
use wagate_core::engine::{ChatState, EngineSession, NumberCheck, PairCode};
use wagate_core::store::Store;
use wagate_core::{AccountId, DeviceUid, Phone, Recipient, time};

/// Whether a call may be forwarded to the node driving the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// From an API caller: forwarded when the device runs on another node.
    Anywhere,
    /// Already forwarded by another node: answered here or not at all.
    HereOnly,
}

/// A call that needs the device's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionCall {
    Qr,
    PairCode {
        phone: String,
    },
    CheckNumbers {
        numbers: Vec<String>,
    },
    ChatState {
        to: String,
        state: String,
    },
    MarkRead {
        chat: String,
    },
    Groups,
    GroupInfo {
        group: String,
    },
    CreateGroup {
        subject: String,
        members: Vec<String>,
    },
    ChangeMembers {
        group: String,
        change: MembershipChange,
        members: Vec<String>,
    },
    LeaveGroup {
        group: String,
    },
    InviteLink {
        group: String,
    },
    Logout,
    Connect,
    /// A Cloud API webhook delivery (its body in base64) for the device's session.
    Push {
        body: String,
        signature: Option<String>,
    },
    Templates,
}

/// A forwarded call: whose device, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRequest {
    pub account: String,
    pub device: String,
    pub call: SessionCall,
}

/// A number check on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCheck {
    pub phone: String,
    pub on_whatsapp: bool,
    pub jid: Option<String>,
    pub lid: Option<String>,
}

/// A failure on the wire: enough to answer the caller exactly as the driving node would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `not_found`, `invalid`, `conflict`, `rate_limited`, `engine` or `internal`.
    pub kind: String,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_secs: Option<u64>,
}

/// What the driving node answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PeerReply {
    Qr { code: String, expires_at_ms: i64 },
    PairCode { code: String, expires_in_ms: u64 },
    Numbers { results: Vec<WireCheck> },
    Marked { count: u64 },
    Groups { groups: Vec<GroupInfo> },
    Group { group: GroupInfo },
    Members { outcomes: Vec<MemberOutcome> },
    InviteLink { url: String },
    Templates { templates: Vec<TemplateInfo> },
    Done,
    Failed(WireError),
}

impl From<ServiceError> for WireError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        let (kind, field, retry_after_secs) = match e {
            ServiceError::NotFound(_) => ("not_found", None, None),
            ServiceError::Invalid(field, _) => ("invalid", Some(field), None),
            ServiceError::IdempotencyKeyReused { .. } => {
                ("invalid", Some("clientMessageId".into()), None)
            }
            ServiceError::Conflict(_) => ("conflict", None, None),
            ServiceError::RateLimited {
                retry_after_secs, ..
            } => ("rate_limited", None, retry_after_secs),
            ServiceError::Engine(_) | ServiceError::Store(_) => ("engine", None, None),
            ServiceError::Internal(_) => ("internal", None, None),
        };
        let message = match (&field, message.split_once(": ")) {
            // Invalid's Display is "field: message"; keep the message alone.
            (Some(f), Some((head, rest))) if head == f => rest.to_owned(),
            _ => message,
        };
        Self {
            kind: kind.to_owned(),
            message,
            field,
            retry_after_secs,
        }
    }
}

impl From<WireError> for ServiceError {
    fn from(e: WireError) -> Self {
        match e.kind.as_str() {
            // The driving node re-checks only the device's ownership.
            "not_found" if e.message.starts_with("group") => ServiceError::NotFound("group"),
            "not_found" => ServiceError::NotFound("device"),
            "invalid" => ServiceError::Invalid(e.field.unwrap_or_default(), e.message),
            "conflict" => ServiceError::Conflict(e.message),
            "rate_limited" => ServiceError::RateLimited {
                message: e.message,
                retry_after_secs: e.retry_after_secs,
            },
            "internal" => ServiceError::Internal(e.message),
            _ => ServiceError::Engine(e.message),
        }
    }
}

impl From<&NumberCheck> for WireCheck {
    fn from(c: &NumberCheck) -> Self {
        Self {
            phone: c.phone.to_string(),
            on_whatsapp: c.on_whatsapp,
            jid: c.jid.clone(),
            lid: c.lid.clone(),
        }
    }
}

impl TryFrom<WireCheck> for NumberCheck {
    type Error = ServiceError;
    fn try_from(c: WireCheck) -> Result<Self, Self::Error> {
        Ok(Self {
            phone: Phone::parse(&c.phone).map_err(|_| {
                ServiceError::Internal(format!(
                    "the driving node answered a bad number {:?}",
                    c.phone
                ))
            })?,
            on_whatsapp: c.on_whatsapp,
            jid: c.jid,
            lid: c.lid,
        })
    }
}

impl From<&PairCode> for PeerReply {
    fn from(p: &PairCode) -> Self {
        PeerReply::PairCode {
            code: p.code.clone(),
            expires_in_ms: u64::try_from(p.expires_in.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Sending a forwarded call to another node.
#[async_trait]
pub trait Peers: Send + Sync {
    /// The reply of the node at `address` (its advertised base URL) to `request`, or why
    /// none could be had (unreachable, timed out, refused the signature).
    async fn forward(&self, address: &str, request: &PeerRequest) -> Result<PeerReply, String>;
}

/// Where a device's session is, for a call that needs it.
pub(crate) enum Route {
    Here(Arc<dyn EngineSession>),
    /// Another node drives it and can be reached at this address.
    Forward {
        node: String,
        address: String,
    },
}

/// Finds a device's session: on this node, or on the node holding its lease.
#[derive(Clone)]
pub struct SessionRouter {
    store: Arc<dyn Store>,
    control: Arc<dyn super::port::DeviceControl>,
    peers: Option<Arc<dyn Peers>>,
}

impl SessionRouter {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn super::port::DeviceControl>,
        peers: Option<Arc<dyn Peers>>,
    ) -> Self {
        Self {
            store,
            control,
            peers,
        }
    }

    /// The node other than this one holding the device's lease now, if any.
    pub(crate) async fn other_owner(&self, uid: &DeviceUid) -> ServiceResult<Option<String>> {
        let now = time::now();
        Ok(match self.store.get_device_lease(uid).await? {
            Some(lease) if lease.is_held(now) => {
                lease.owner.filter(|owner| *owner != self.control.node_id())
            }
            _ => None,
        })
    }

    /// Where the device's session is. `Err` when it runs nowhere reachable: on another
    /// node that cannot be forwarded to (the error names it), or nowhere (`not_running`
    /// says what to do).
    pub(crate) async fn route(
        &self,
        uid: &DeviceUid,
        reach: Reach,
        not_running: &str,
    ) -> ServiceResult<Route> {
        if let Some(session) = self.control.session(uid) {
            return Ok(Route::Here(session));
        }
        match self.other_owner(uid).await? {
            Some(node) => {
                let address = self.address_of(uid, &node, reach).await?;
                Ok(Route::Forward { node, address })
            }
            None => Err(ServiceError::Engine(format!("device {uid} {not_running}"))),
        }
    }

    /// Where to forward a call to `node`, which drives the device: `Err` naming the node
    /// when the call may not go there or the node did not say where it is.
    async fn address_of(&self, uid: &DeviceUid, node: &str, reach: Reach) -> ServiceResult<String> {
        let elsewhere = || {
            ServiceError::Engine(format!(
                "device {uid} runs on node {node}; send this request to that node"
            ))
        };
        if reach == Reach::HereOnly || self.peers.is_none() {
            return Err(elsewhere());
        }
        // Nodes alive within the last hour: a node holding a lease renews it, and its
        // heartbeat, every few seconds.
        let since = time::now() - chrono::Duration::hours(1);
        let address = self
            .store
            .list_nodes(since)
            .await?
            .into_iter()
            .find(|n| n.node_id == node)
            .and_then(|n| n.address);
        address.ok_or_else(elsewhere)
    }

    /// The reply of the node driving the device, when that is another node and no session
    /// runs here: `None` when the call is this node's to answer.
    pub(crate) async fn answer_elsewhere(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        reach: Reach,
        call: SessionCall,
    ) -> ServiceResult<Option<PeerReply>> {
        if self.control.session(uid).is_some() {
            return Ok(None);
        }
        let Some(node) = self.other_owner(uid).await? else {
            return Ok(None);
        };
        let address = self.address_of(uid, &node, reach).await?;
        self.forward((&node, &address), account, uid, call)
            .await
            .map(Some)
    }

    /// Sends the call to the node driving the device and returns its reply; its
    /// failures come back as errors, as if this node had answered them.
    pub(crate) async fn forward(
        &self,
        (node, address): (&str, &str),
        account: &AccountId,
        uid: &DeviceUid,
        call: SessionCall,
    ) -> ServiceResult<PeerReply> {
        let Some(peers) = &self.peers else {
            return Err(ServiceError::Engine(format!(
                "device {uid} runs on node {node}"
            )));
        };
        let request = PeerRequest {
            account: account.as_str().to_owned(),
            device: uid.as_str().to_owned(),
            call,
        };
        match peers.forward(address, &request).await {
            Ok(PeerReply::Failed(e)) => Err(e.into()),
            Ok(reply) => Ok(reply),
            Err(why) => Err(ServiceError::Engine(format!(
                "device {uid} runs on node {node}, which could not be reached: {why}"
            ))),
        }
    }
}

/// An answer that does not fit the call it answers: the nodes run different versions.
pub(crate) fn unexpected(reply: &PeerReply) -> ServiceError {
    ServiceError::Internal(format!(
        "the node driving the device answered an unexpected reply: {reply:?}"
    ))
}

/// Answering calls other nodes forward here (the internal endpoint).
#[derive(Clone)]
pub struct PeerService {
    key: ClusterKey,
    linking: super::LinkingService,
    messaging: super::MessagingService,
    cloud: super::CloudApiService,
}

/// Largest forwarded call body accepted: a Cloud API webhook delivery of the largest size
/// read, in base64, with room to spare.
pub const MAX_PEER_BODY: usize = super::cloud::MAX_WEBHOOK_BODY * 3 / 2;

impl PeerService {
    pub fn new(
        key: ClusterKey,
        linking: super::LinkingService,
        messaging: super::MessagingService,
        cloud: super::CloudApiService,
    ) -> Self {
        Self {
            key,
            linking,
            messaging,
            cloud,
        }
    }

    /// Whether the call comes from a node of this cluster (signed with its key, recently).
    pub fn authentic(&self, sent_at_ms: i64, body: &[u8], signature: &str) -> bool {
        self.key
            .verify(sent_at_ms, body, signature, time::millis(time::now()))
    }

    /// Runs a forwarded call on this node, never forwarding it again.
    pub async fn serve(&self, request: PeerRequest) -> PeerReply {
        match self.run(request).await {
            Ok(reply) => reply,
            Err(e) => PeerReply::Failed(e.into()),
        }
    }

    async fn run(&self, request: PeerRequest) -> ServiceResult<PeerReply> {
        let account = AccountId::parse(&request.account)
            .map_err(|_| ServiceError::Invalid("account".into(), "not an account id".into()))?;
        let uid =
            DeviceUid::parse(&request.device).map_err(|_| ServiceError::NotFound("device"))?;
        let here = Reach::HereOnly;
        Ok(match request.call {
            SessionCall::Qr => {
                let qr = self.linking.current_qr_at(&account, &uid, here).await?;
                PeerReply::Qr {
                    code: qr.code,
                    expires_at_ms: qr.expires_at_ms,
                }
            }
            SessionCall::PairCode { phone } => {
                let phone = Phone::parse(&phone)
                    .map_err(|e| ServiceError::Invalid("phone".into(), e.to_string()))?;
                let code = self
                    .linking
                    .request_pair_code_at(&account, &uid, &phone, here)
                    .await?;
                PeerReply::from(&code)
            }
            SessionCall::CheckNumbers { numbers } => {
                let phones = numbers
                    .iter()
                    .map(|n| Phone::parse(n))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ServiceError::Invalid("numbers".into(), e.to_string()))?;
                let checks = self
                    .messaging
                    .check_numbers_at(&account, &uid, &phones, here)
                    .await?;
                PeerReply::Numbers {
                    results: checks.iter().map(WireCheck::from).collect(),
                }
            }
            SessionCall::ChatState { to, state } => {
                let to = Recipient::parse(&to)
                    .map_err(|e| ServiceError::Invalid("to".into(), e.to_string()))?;
                let state = ChatState::parse(&state).ok_or_else(|| {
                    ServiceError::Invalid("state".into(), format!("unknown chat state {state:?}"))
                })?;
                self.messaging
                    .set_chat_state_at(&account, &uid, &to, state, here)
                    .await?;
                PeerReply::Done
            }
            SessionCall::MarkRead { chat } => {
                let chat = Recipient::parse(&chat)
                    .map_err(|e| ServiceError::Invalid("chat".into(), e.to_string()))?;
                let count = self
                    .messaging
                    .mark_chat_read_at(&account, &uid, &chat, here)
                    .await?;
                PeerReply::Marked { count }
            }
            SessionCall::Groups => PeerReply::Groups {
                groups: self.messaging.list_groups(&account, &uid, here).await?,
            },
            SessionCall::GroupInfo { group } => PeerReply::Group {
                group: self
                    .messaging
                    .group_info(&account, &uid, &group_id(&group)?, here)
                    .await?,
            },
            SessionCall::CreateGroup { subject, members } => PeerReply::Group {
                group: self
                    .messaging
                    .create_group(&account, &uid, &subject, &phones(&members)?, here)
                    .await?,
            },
            SessionCall::ChangeMembers {
                group,
                change,
                members,
            } => PeerReply::Members {
                outcomes: self
                    .messaging
                    .change_members(
                        &account,
                        &uid,
                        &group_id(&group)?,
                        change,
                        &phones(&members)?,
                        here,
                    )
                    .await?,
            },
            SessionCall::LeaveGroup { group } => {
                self.messaging
                    .leave_group(&account, &uid, &group_id(&group)?, here)
                    .await?;
                PeerReply::Done
            }
            SessionCall::InviteLink { group } => PeerReply::InviteLink {
                url: self
                    .messaging
                    .invite_link(&account, &uid, &group_id(&group)?, here)
                    .await?,
            },
            SessionCall::Logout => {
                self.linking.logout_device_at(&account, &uid, here).await?;
                PeerReply::Done
            }
            SessionCall::Connect => {
                self.linking.connect_device_at(&account, &uid, here).await?;
                PeerReply::Done
            }
            SessionCall::Push { body, signature } => {
                let body = super::cloud::pushed_body(&body)?;
                self.cloud
                    .push_at(&account, &uid, body, signature, here)
                    .await?;
                PeerReply::Done
            }
            SessionCall::Templates => PeerReply::Templates {
                templates: self.cloud.templates(&account, &uid, here).await?,
            },
        })
    }
}

fn group_id(s: &str) -> ServiceResult<wagate_core::GroupId> {
    wagate_core::GroupId::parse(s)
        .map_err(|e| ServiceError::Invalid("groupId".into(), e.to_string()))
}

fn phones(list: &[String]) -> ServiceResult<Vec<Phone>> {
    list.iter()
        .map(|n| Phone::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServiceError::Invalid("participants".into(), e.to_string()))
}

/// Forwarding over HTTP: a POST to the driving node's internal endpoint, signed with the
/// cluster key. The addresses come from the database (nodes advertise their own), never
/// from a caller, so this client goes to private addresses by design.
pub struct HttpPeers {
    client: reqwest::Client,
    key: ClusterKey,
    node: String,
}

/// How long a forwarded call may take: pair codes and number checks wait on WhatsApp.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpPeers {
    pub fn new(key: ClusterKey, node: String) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, key, node })
    }
}

/// The internal endpoint's path, under a node's advertised URL.
pub const SESSION_CALL_PATH: &str = "/internal/v1/session-call";
/// Headers of a forwarded call.
pub const HEADER_NODE: &str = "x-wagate-node";
pub const HEADER_SENT_AT: &str = "x-wagate-sent-at";
pub const HEADER_SIGNATURE: &str = "x-wagate-signature";

#[async_trait]
impl Peers for HttpPeers {
    async fn forward(&self, address: &str, request: &PeerRequest) -> Result<PeerReply, String> {
        let body = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        let sent_at = time::millis(time::now());
        let response = self
            .client
            .post(format!("{address}{SESSION_CALL_PATH}"))
            .header(HEADER_NODE, &self.node)
            .header(HEADER_SENT_AT, sent_at.to_string())
            .header(HEADER_SIGNATURE, self.key.sign(sent_at, &body))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{address} answered {status}"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{address} answered garbage: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_wire_unchanged() {
        for e in [
            ServiceError::NotFound("device"),
            ServiceError::Invalid("phone".into(), "not a number: x".into()),
            ServiceError::Conflict("device d is already linked".into()),
            ServiceError::RateLimited {
                message: "slow down".into(),
                retry_after_secs: Some(7),
            },
            ServiceError::Engine("device d is not connected to WhatsApp".into()),
            ServiceError::Internal("boom".into()),
        ] {
            let shown = e.to_string();
            let wire: WireError = e.into();
            let json = serde_json::to_string(&PeerReply::Failed(wire)).unwrap();
            let PeerReply::Failed(back) = serde_json::from_str(&json).unwrap() else {
                panic!("{json}");
            };
            let back: ServiceError = back.into();
            assert_eq!(back.to_string(), shown, "{json}");
        }
    }

    #[test]
    fn calls_parse_strictly() {
        let r: PeerRequest = serde_json::from_str(
            r#"{"account":"acc","device":"dev","call":{"op":"pair_code","phone":"+15550001"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.call,
            SessionCall::PairCode {
                phone: "+15550001".into()
            }
        );
        assert!(
            serde_json::from_str::<PeerRequest>(
                r#"{"account":"a","device":"d","call":{"op":"format_disk"}}"#
            )
            .is_err()
        );
    }
}
