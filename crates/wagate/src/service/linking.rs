//! Linking a device to a WhatsApp account: the current QR code, pair codes, starting a
//! new linking round, and unlinking.

use super::peer::{PeerReply, Reach, Route, SessionCall, SessionRouter, unexpected};
use super::port::DeviceControl;
use super::{ServiceError, ServiceResult};
use std::sync::Arc;
use wagate_core::device::Device;
use wagate_core::device::DeviceStatus;
use wagate_core::engine::{EngineError, PairCode};
use wagate_core::store::Store;
use wagate_core::{AccountId, DeviceUid, Phone};

/// The QR code to scan now.
#[derive(Debug, Clone)]
pub struct CurrentQr {
    pub code: String,
    /// When WhatsApp rotates it (ms since epoch).
    pub expires_at_ms: i64,
}

fn engine_error(e: EngineError, field: &str) -> ServiceError {
    match e {
        EngineError::RateLimited {
            retry_after,
            reason,
        } => ServiceError::RateLimited {
            message: match retry_after {
                Some(d) => format!(
                    "WhatsApp is throttling linking: {reason}; try again in {} s",
                    d.as_secs().max(1)
                ),
                None => format!("WhatsApp is throttling linking: {reason}"),
            },
            retry_after_secs: retry_after.map(|d| d.as_secs().max(1)),
        },
        EngineError::Rejected { reason, .. } => {
            ServiceError::Invalid(field.into(), format!("WhatsApp refused: {reason}"))
        }
        EngineError::Unsupported(m) => ServiceError::Conflict(m),
        EngineError::NotConnected(m) | EngineError::Transient(m) => ServiceError::Engine(m),
        EngineError::Internal(m) => ServiceError::Internal(m),
    }
}

/// Linking devices: QR codes, pair codes, (re)connecting and unlinking.
#[derive(Clone)]
pub struct LinkingService {
    store: Arc<dyn Store>,
    control: Arc<dyn DeviceControl>,
    router: SessionRouter,
}

impl LinkingService {
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<dyn DeviceControl>,
        router: SessionRouter,
    ) -> Self {
        Self {
            store,
            control,
            router,
        }
    }

    async fn get_device(&self, account: &AccountId, uid: &DeviceUid) -> ServiceResult<Device> {
        super::device_of(self.store.as_ref(), account, uid).await
    }

    /// The QR code a device shows right now; a 409 when the device is linked or is not
    /// waiting for a scan.
    pub async fn current_qr(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
    ) -> ServiceResult<CurrentQr> {
        self.current_qr_at(account, uid, Reach::Anywhere).await
    }

    /// [`Self::current_qr`], forwarded to the node driving the device if `reach` allows.
    pub async fn current_qr_at(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        reach: Reach,
    ) -> ServiceResult<CurrentQr> {
        let device = self.get_device(account, uid).await?;
        if device.status == DeviceStatus::Connected {
            return Err(ServiceError::Conflict(format!(
                "device {uid} is already linked"
            )));
        }
        let qr = self.control.current_qr(uid);
        // The QR code is shown by the session, on the node that drives the device.
        if qr.is_none()
            && let Some(reply) = self
                .router
                .answer_elsewhere(account, uid, reach, SessionCall::Qr)
                .await?
        {
            return match reply {
                PeerReply::Qr {
                    code,
                    expires_at_ms,
                } => Ok(CurrentQr {
                    code,
                    expires_at_ms,
                }),
                other => Err(unexpected(&other)),
            };
        }
        match qr {
            Some((code, expires_at_ms)) => Ok(CurrentQr {
                code,
                expires_at_ms,
            }),
            None => Err(ServiceError::Conflict(match device.status {
                DeviceStatus::QrExpired => format!(
                    "device {uid} has no QR code: the codes ran out; POST /v1/developer/devices/{uid}/connect to start again"
                ),
                status => format!(
                    "device {uid} has no QR code right now (status {status}); it appears once WhatsApp issues one"
                ),
            })),
        }
    }

    /// Requests a code to type on the phone (*Link with phone number instead*).
    pub async fn request_pair_code(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        phone: &Phone,
    ) -> ServiceResult<PairCode> {
        self.request_pair_code_at(account, uid, phone, Reach::Anywhere)
            .await
    }

    /// [`Self::request_pair_code`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn request_pair_code_at(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        phone: &Phone,
        reach: Reach,
    ) -> ServiceResult<PairCode> {
        let device = self.get_device(account, uid).await?;
        if device.status == DeviceStatus::Connected {
            return Err(ServiceError::Conflict(format!(
                "device {uid} is already linked"
            )));
        }
        let route = self
            .router
            .route(uid, reach, "is not running; POST …/connect first")
            .await?;
        match route {
            Route::Here(session) => session
                .request_pair_code(phone)
                .await
                .map_err(|e| engine_error(e, "phone")),
            Route::Forward { node, address } => {
                let call = SessionCall::PairCode {
                    phone: phone.to_string(),
                };
                match self
                    .router
                    .forward((&node, &address), account, uid, call)
                    .await?
                {
                    PeerReply::PairCode {
                        code,
                        expires_in_ms,
                    } => Ok(PairCode {
                        code,
                        expires_in: std::time::Duration::from_millis(expires_in_ms),
                    }),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// Starts the device again after it stopped trying (QR codes ran out, logged out,
    /// failed): a new linking round or a reconnection.
    pub async fn connect_device(&self, account: &AccountId, uid: &DeviceUid) -> ServiceResult<()> {
        self.connect_device_at(account, uid, Reach::Anywhere).await
    }

    /// [`Self::connect_device`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn connect_device_at(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        reach: Reach,
    ) -> ServiceResult<()> {
        let device = self.get_device(account, uid).await?;
        // Started here, it could not take the lease: the driving node restarts it.
        if let Some(reply) = self
            .router
            .answer_elsewhere(account, uid, reach, SessionCall::Connect)
            .await?
        {
            return match reply {
                PeerReply::Done => Ok(()),
                other => Err(unexpected(&other)),
            };
        }
        let session = self.control.session(uid);
        match session {
            Some(session) if !device.status.is_terminal() => session
                .connect()
                .await
                .map_err(|e| engine_error(e, "deviceUid")),
            _ => {
                // A terminal session is rebuilt from scratch on the same keys.
                self.control.stop(uid).await;
                self.control.start(&device).await;
                Ok(())
            }
        }
    }

    /// Unlinks the device from its WhatsApp account (it stays, ready to link again).
    pub async fn logout_device(&self, account: &AccountId, uid: &DeviceUid) -> ServiceResult<()> {
        self.logout_device_at(account, uid, Reach::Anywhere).await
    }

    /// [`Self::logout_device`], forwarded to the node driving the device if `reach`
    /// allows.
    pub async fn logout_device_at(
        &self,
        account: &AccountId,
        uid: &DeviceUid,
        reach: Reach,
    ) -> ServiceResult<()> {
        self.get_device(account, uid).await?;
        match self.router.route(uid, reach, "is not running").await? {
            Route::Here(session) => session
                .logout()
                .await
                .map_err(|e| engine_error(e, "deviceUid")),
            Route::Forward { node, address } => match self
                .router
                .forward((&node, &address), account, uid, SessionCall::Logout)
                .await?
            {
                PeerReply::Done => Ok(()),
                other => Err(unexpected(&other)),
            },
        }
    }
}
