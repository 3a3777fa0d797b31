//! What only Cloud API devices have: Meta's webhooks (the subscription handshake and the
//! deliveries) and the business account's message templates.
//!
//! Meta posts a device's messages and statuses to `/webhooks/cloud-api/{deviceUid}`, on
//! whichever node its load balancer picks. The handshake is answered from the stored
//! credentials, on any node, whether the device runs or not (it is how Meta's app is set
//! up, before the number works). A delivery goes to the device's session, here or on the
//! node that drives it ([`super::peer`]), which checks Meta's signature and answers once
//! everything in it is committed: a device that runs nowhere, or a failed commit, is an
//! error, and Meta delivers again.

use super::peer::{PeerReply, Reach, Route, SessionCall, SessionRouter, unexpected};
use super::port::DeviceControl;
use super::{ServiceError, ServiceResult};
use crate::secrets::SecretsKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wagate_core::content::TemplateInfo;
use wagate_core::device::{Device, EngineKind};
use wagate_core::engine::EngineError;
use wagate_core::store::{Store, StoreError};
use wagate_core::{AccountId, DeviceUid};

/// The request parts errors name, so the webhook endpoint can answer each as Meta expects.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const VERIFY_TOKEN: &str = "hub.verify_token";

/// Largest webhook delivery read. Meta's are a few kilobytes (at most a thousand updates
/// of a few hundred bytes each); anything bigger is not Meta's.
pub const MAX_WEBHOOK_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct CloudApiService {
    store: Arc<dyn Store>,
    control: Arc<dyn DeviceControl>,
    router: SessionRouter,
    secrets: SecretsKey,
}

impl CloudApiService {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
        router: SessionRouter,
        secrets: SecretsKey,
    ) -> Self {
        Self {
            store,
            control,
            router,
            secrets,
        }
    }

    /// A live Cloud API device by the uid in a webhook URL; any other is not found (the
    /// URL names no account, so nothing more is said about it).
    async fn cloud_device(&self, uid: &str) -> ServiceResult<Device> {
        let not_found = || ServiceError::NotFound("device");
        let uid = DeviceUid::parse(uid).map_err(|_| not_found())?;
        match self.store.get_device_by_uid(&uid).await {
            Ok(d) if d.engine == EngineKind::CloudApi => Ok(d),
            Ok(_) | Err(StoreError::NotFound) => Err(not_found()),
            Err(e) => Err(e.into()),
        }
    }

    /// Meta's subscription handshake: the challenge, when `mode` is `subscribe` and
    /// `token` is the device's verify token (compared in constant time).
    pub async fn handshake(
        &self,
        uid: &str,
        mode: Option<&str>,
        token: Option<&str>,
        challenge: Option<&str>,
    ) -> ServiceResult<String> {
        let device = self.cloud_device(uid).await?;
        if mode != Some("subscribe") {
            return Err(ServiceError::Invalid(
                "hub.mode".into(),
                "must be `subscribe`".into(),
            ));
        }
        let challenge = challenge
            .filter(|c| !c.is_empty() && c.len() <= 512)
            .ok_or_else(|| {
                ServiceError::Invalid("hub.challenge".into(), "must be 1 to 512 characters".into())
            })?;
        let sealed = self
            .store
            .get_device_secret(&device.uid)
            .await?
            .ok_or_else(|| ServiceError::Conflict("the device has no credentials".into()))?;
        let creds = self
            .secrets
            .open_cloud_api(&device.uid, &sealed)
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let given = token.unwrap_or_default().as_bytes();
        if !bool::from(given.ct_eq(creds.verify_token.as_bytes())) {
            return Err(ServiceError::Invalid(
                VERIFY_TOKEN.into(),
                "is not the device's verifyToken".into(),
            ));
        }
        Ok(challenge.to_owned())
    }

    /// A webhook delivery for the device at `uid`, handed to its session wherever it runs.
    pub async fn push(
        &self,
        uid: &str,
        body: Bytes,
        signature: Option<String>,
    ) -> ServiceResult<()> {
        let device = self.cloud_device(uid).await?;
        self.push_at(
            &device.account_id,
            &device.uid,
            body,
            signature,
            Reach::Anywhere,
        )
        .await
    }

    /// [`Self::push`] for a device known by uid, forwarded if `reach` allows.
    pub async fn push_at(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        body: Bytes,
        signature: Option<String>,
        reach: Reach,
    ) -> ServiceResult<()> {
        match self
            .router
            .route(
                uid,
                reach,
                "is not running on any node; Meta will deliver again",
            )
            .await?
        {
            Route::Here(session) => session
                .push(body, signature.as_deref())
                .await
                .map_err(push_error),
            Route::Forward { node, address } => {
                let call = SessionCall::Push {
                    body: STANDARD.encode(&body),
                    signature,
                };
                match self
                    .router
                    .forward((&node, &address), account, uid, call)
                    .await?
                {
                    PeerReply::Done => Ok(()),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// The business account's approved templates, asked of Meta through the device.
    pub async fn templates(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        reach: Reach,
    ) -> ServiceResult<Vec<TemplateInfo>> {
        let device = super::device_of(self.store.as_ref(), account, uid).await?;
        if device.engine != EngineKind::CloudApi {
            return Err(ServiceError::Invalid(
                "deviceUid".into(),
                format!(
                    "message templates belong to cloud-api devices; this device is {}",
                    device.engine.as_str()
                ),
            ));
        }
        match self.router.route(uid, reach, "is not running").await? {
            Route::Here(session) => {
                if self.control.connection(uid) != Some(true) {
                    return Err(ServiceError::Engine(format!(
                        "device {uid} is not connected to the Cloud API"
                    )));
                }
                session.templates().await.map_err(template_error)
            }
            Route::Forward { node, address } => match self
                .router
                .forward((&node, &address), account, uid, SessionCall::Templates)
                .await?
            {
                PeerReply::Templates { templates } => Ok(templates),
                other => Err(unexpected(&other)),
            },
        }
    }
}

/// A forwarded delivery's body, as [`CloudApiService::push_at`] sent it.
pub(crate) fn pushed_body(b64: &str) -> ServiceResult<Bytes> {
    STANDARD
        .decode(b64)
        .map(Bytes::from)
        .map_err(|_| ServiceError::Invalid("body".into(), "not base64".into()))
}

/// What the session's refusal of a delivery means to Meta: a bad signature or a body that
/// is no delivery are refused for good; anything else was not committed and is retried.
fn push_error(e: EngineError) -> ServiceError {
    match e {
        EngineError::Rejected { code, reason } if code.as_deref() == Some("signature") => {
            ServiceError::Invalid(SIGNATURE_HEADER.into(), reason)
        }
        EngineError::Rejected { code, reason } if code.as_deref() == Some("payload") => {
            ServiceError::Invalid("body".into(), reason)
        }
        other => ServiceError::Engine(other.to_string()),
    }
}

fn template_error(e: EngineError) -> ServiceError {
    match e {
        EngineError::RateLimited {
            retry_after,
            reason,
        } => ServiceError::RateLimited {
            message: format!("the Cloud API is throttling the device: {reason}"),
            retry_after_secs: retry_after.map(|d| d.as_secs().max(1)),
        },
        EngineError::Rejected { reason, .. } | EngineError::Unsupported(reason) => {
            ServiceError::Conflict(reason)
        }
        other => ServiceError::Engine(other.to_string()),
    }
}
