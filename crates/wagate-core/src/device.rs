//! Devices: linked WhatsApp accounts, their connection state and their send budgets.

use crate::id::{AccountId, DeviceUid};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which engine drives a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// A simulated WhatsApp network inside the process: development, demos and tests.
    Sandbox,
    /// WhatsApp Web's multi-device protocol (a real linked device).
    WhatsappWeb,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::WhatsappWeb => "whatsapp-web",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "whatsapp-web" => Some(Self::WhatsappWeb),
            _ => None,
        }
    }
}

/// A device's connection state, as shown to users and emitted as `device.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Created,
    Connecting,
    /// Waiting for a QR code to be scanned.
    Qr,
    /// Waiting for a pair code to be typed on the phone.
    PairCode,
    /// The QR codes ran out; `connect` starts a new round.
    QrExpired,
    Connected,
    Reconnecting,
    LoggedOut,
    Banned,
    /// Another session with the same keys took over.
    Replaced,
    Failed,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 11] = [
        Self::Created,
        Self::Connecting,
        Self::Qr,
        Self::PairCode,
        Self::QrExpired,
        Self::Connected,
        Self::Reconnecting,
        Self::LoggedOut,
        Self::Banned,
        Self::Replaced,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Connecting => "connecting",
            Self::Qr => "qr",
            Self::PairCode => "pair_code",
            Self::QrExpired => "qr_expired",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::LoggedOut => "logged_out",
            Self::Banned => "banned",
            Self::Replaced => "replaced",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// States the device cannot leave without a user action (re-link, new connect).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::LoggedOut | Self::Banned | Self::Replaced | Self::Failed | Self::QrExpired
        )
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Send budgets protecting the WhatsApp account from bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SafetyLimits {
    pub per_day: u32,
    pub per_hour: u32,
    pub per_minute: u32,
}

impl Default for SafetyLimits {
    /// Conservative defaults in line with what hosted gateways advise for warm numbers.
    fn default() -> Self {
        Self {
            per_day: 1000,
            per_hour: 200,
            per_minute: 20,
        }
    }
}

/// Human-like pacing between sends (whatsapp-web's defaults make it on; sandbox off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pacing {
    /// Random delay between two sends, in milliseconds.
    pub min_delay_ms: u32,
    pub max_delay_ms: u32,
    /// Show "typing…" before a text, for a time proportional to its length.
    pub typing_indicator: bool,
}

impl Pacing {
    pub const NONE: Pacing = Pacing {
        min_delay_ms: 0,
        max_delay_ms: 0,
        typing_indicator: false,
    };

    pub fn default_for(engine: EngineKind) -> Self {
        match engine {
            EngineKind::Sandbox => Self::NONE,
            EngineKind::WhatsappWeb => Self {
                min_delay_ms: 2_000,
                max_delay_ms: 6_000,
                typing_indicator: true,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub uid: DeviceUid,
    pub account_id: AccountId,
    pub name: String,
    pub engine: EngineKind,
    pub status: DeviceStatus,
    /// Why the device is in its status (a disconnect reason, a ban message…).
    pub status_reason: Option<String>,
    /// The linked account's number, once linked.
    pub phone: Option<Phone>,
    /// The linked account's WhatsApp display name, once known.
    pub push_name: Option<String>,
    pub limits: SafetyLimits,
    pub pacing: Pacing,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the device last connected.
    pub connected_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub uid: DeviceUid,
    pub account_id: AccountId,
    pub name: String,
    pub engine: EngineKind,
    pub limits: SafetyLimits,
    pub pacing: Pacing,
    /// SHA-256 of the MegaMsg instance token.
    pub instance_token_hash: [u8; 32],
    pub created_at: Timestamp,
}

/// A change of a device's user-editable settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub limits: Option<SafetyLimits>,
    pub pacing: Option<Pacing>,
}

/// A change of connection state reported by the device's engine.
#[derive(Debug, Clone)]
pub struct DeviceStateChange {
    pub status: DeviceStatus,
    pub reason: Option<String>,
    /// Set when linking reveals the number; `None` keeps the known one.
    pub phone: Option<Phone>,
    pub push_name: Option<String>,
    pub at: Timestamp,
}
