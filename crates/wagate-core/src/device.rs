//! Devices: linked WhatsApp accounts, their connection state and their send budgets.

use crate::id::{AccountId, DeviceUid};
use crate::message::MessageKind;
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
    /// Meta's official WhatsApp Cloud API (a business number of a Meta app).
    CloudApi,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::WhatsappWeb => "whatsapp-web",
            Self::CloudApi => "cloud-api",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "whatsapp-web" => Some(Self::WhatsappWeb),
            "cloud-api" => Some(Self::CloudApi),
            _ => None,
        }
    }

    /// Why a device of this engine cannot send a message of `kind` (to a group when
    /// `group`): the request field at fault and the reason. `None` when it can. Decided
    /// before anything is stored, so such a send is refused at once rather than failing
    /// later in the queue.
    pub fn refusal(self, kind: MessageKind, group: bool) -> Option<(&'static str, String)> {
        match self {
            // Templates exist on Meta's Cloud API only; the sandbox delivers them as they
            // are, for trying a template flow out.
            Self::WhatsappWeb if kind == MessageKind::Template => Some((
                "deviceUid",
                "message templates are sent by cloud-api devices (and the sandbox); this device is whatsapp-web".into(),
            )),
            Self::CloudApi if group => Some((
                "groupId",
                "the Cloud API has no groups: a cloud-api device sends to phone numbers only".into(),
            )),
            Self::CloudApi => match kind {
                MessageKind::Poll | MessageKind::PollVote => Some((
                    "deviceUid",
                    "the Cloud API has no polls: a cloud-api device cannot send or vote in one".into(),
                )),
                MessageKind::Edit | MessageKind::Delete => Some((
                    "deviceUid",
                    format!(
                        "the Cloud API cannot {} a sent message",
                        if kind == MessageKind::Edit { "edit" } else { "delete" }
                    ),
                )),
                _ => None,
            },
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

/// A send budget that would keep a new message from being handed to WhatsApp now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetHold {
    /// `"per-minute"` or `"per-hour"`.
    pub budget: &'static str,
    pub limit: u32,
    /// The earliest a slot can free up: the budgets count hand-offs per clock minute.
    pub retry_after_secs: u64,
}

impl SafetyLimits {
    /// Whether a message accepted now would wait longer than `within` for the per-minute
    /// or per-hour budget: `handed_*` is what those windows already used, `queued_ahead`
    /// the device's messages still waiting to be handed over, which go first. Callers
    /// that answer only once WhatsApp has the message use this to refuse up front
    /// instead of waiting out their deadline.
    ///
    /// A full minute frees up at the next minute boundary; a full hour only as its oldest
    /// minutes age out, which is not known here and is taken to be past any wait (the
    /// next minute boundary is still the earliest worth retrying at).
    pub fn hold(
        &self,
        handed_last_minute: u64,
        handed_last_hour: u64,
        queued_ahead: u64,
        now: Timestamp,
        within: std::time::Duration,
    ) -> Option<BudgetHold> {
        let into_minute = crate::time::millis(now).rem_euclid(60_000);
        let to_next_minute_ms = 60_000 - u64::try_from(into_minute).unwrap_or(0);
        let retry_after_secs = to_next_minute_ms.div_ceil(1000);
        let over = |used: u64, limit: u32| used.saturating_add(queued_ahead) >= u64::from(limit);
        if over(handed_last_hour, self.per_hour) {
            Some(BudgetHold {
                budget: "per-hour",
                limit: self.per_hour,
                retry_after_secs,
            })
        } else if over(handed_last_minute, self.per_minute)
            && std::time::Duration::from_millis(to_next_minute_ms) >= within
        {
            Some(BudgetHold {
                budget: "per-minute",
                limit: self.per_minute,
                retry_after_secs,
            })
        } else {
            None
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
            // Meta paces official numbers itself (throughput limits, answered with 130429),
            // and no ban follows a fast business: no pauses, no typing by default.
            EngineKind::CloudApi => Self::NONE,
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
    /// What the device signs in with (a Cloud API number's credentials), already sealed
    /// by the gateway: the store keeps the bytes and never reads them.
    pub sealed_secret: Option<Vec<u8>>,
}

/// A change of a device's user-editable settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub limits: Option<SafetyLimits>,
    pub pacing: Option<Pacing>,
    /// Replaces the device's sealed secret (see [`NewDevice::sealed_secret`]).
    pub sealed_secret: Option<Vec<u8>>,
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

impl DeviceStateChange {
    /// The device as this change leaves it: the new status and reason, the number and
    /// name when the change reveals them (otherwise the known ones stay), `connected_at`
    /// when it connects. A store persists the result and reports it with
    /// [`crate::event::NewEvent::device_status`].
    pub fn apply_to(&self, device: &Device) -> Device {
        let mut next = device.clone();
        next.status = self.status;
        next.status_reason = self.reason.clone();
        if let Some(phone) = &self.phone {
            next.phone = Some(phone.clone());
        }
        if let Some(name) = &self.push_name {
            next.push_name = Some(name.clone());
        }
        if self.status == DeviceStatus::Connected {
            next.connected_at = Some(self.at);
        }
        next.updated_at = self.at;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_refuses_only_what_it_cannot_send() {
        for kind in MessageKind::ALL {
            assert_eq!(EngineKind::Sandbox.refusal(kind, false), None, "{kind:?}");
            assert_eq!(EngineKind::Sandbox.refusal(kind, true), None, "{kind:?}");
            let web = EngineKind::WhatsappWeb.refusal(kind, true);
            assert_eq!(web.is_some(), kind == MessageKind::Template, "{kind:?}");
            assert!(
                EngineKind::CloudApi
                    .refusal(kind, true)
                    .is_some_and(|(f, _)| f == "groupId")
            );
        }
        for (kind, refused) in [
            (MessageKind::Text, false),
            (MessageKind::Voice, false),
            (MessageKind::Reaction, false),
            (MessageKind::Template, false),
            (MessageKind::Contact, false),
            (MessageKind::Poll, true),
            (MessageKind::PollVote, true),
            (MessageKind::Edit, true),
            (MessageKind::Delete, true),
        ] {
            let r = EngineKind::CloudApi.refusal(kind, false);
            assert_eq!(r.is_some(), refused, "{kind:?}");
            if let Some((field, why)) = r {
                assert_eq!(field, "deviceUid");
                assert!(why.contains("Cloud API"), "{why}");
            }
        }
    }

    #[test]
    fn a_state_change_keeps_what_it_does_not_reveal_and_is_reported_as_recorded() {
        use crate::event::{EventData, NewEvent};
        let t = crate::time::from_millis;
        let before = Device {
            uid: DeviceUid::new(),
            account_id: AccountId::new(),
            name: "d".into(),
            engine: EngineKind::Sandbox,
            status: DeviceStatus::Reconnecting,
            status_reason: Some("stream error".into()),
            phone: Phone::parse("+201001234567").ok(),
            push_name: Some("Shop".into()),
            limits: SafetyLimits::default(),
            pacing: Pacing {
                min_delay_ms: 0,
                max_delay_ms: 0,
                typing_indicator: false,
            },
            created_at: t(1),
            updated_at: t(2),
            connected_at: Some(t(2)),
        };
        let change = DeviceStateChange {
            status: DeviceStatus::Connected,
            reason: None,
            phone: None,
            push_name: None,
            at: t(5),
        };
        let after = change.apply_to(&before);
        assert_eq!(after.status, DeviceStatus::Connected);
        assert_eq!(after.status_reason, None);
        assert_eq!(after.phone, before.phone);
        assert_eq!(after.push_name, before.push_name);
        assert_eq!(after.connected_at, Some(t(5)));
        assert_eq!(after.updated_at, t(5));
        let lost = DeviceStateChange {
            status: DeviceStatus::LoggedOut,
            reason: Some("logged out on the phone".into()),
            phone: Phone::parse("+201001234568").ok(),
            push_name: Some("Other".into()),
            at: t(9),
        }
        .apply_to(&after);
        assert_eq!(lost.connected_at, Some(t(5)), "only connecting stamps it");
        assert_eq!(lost.phone, Phone::parse("+201001234568").ok());
        assert_eq!(lost.push_name.as_deref(), Some("Other"));
        let event = NewEvent::device_status(&lost, Some("qr-data"), t(9));
        assert_eq!(event.account_id, before.account_id);
        assert_eq!(event.device_uid, before.uid);
        assert_eq!(event.created_at, t(9));
        let EventData::DeviceStatus(data) = event.data else {
            panic!("a device.status event");
        };
        assert_eq!(data.status, DeviceStatus::LoggedOut);
        assert_eq!(data.reason.as_deref(), Some("logged out on the phone"));
        assert_eq!(data.phone, lost.phone);
        assert_eq!(data.qr.as_deref(), Some("qr-data"));
        assert_eq!(data.timestamp, t(9));
    }

    #[test]
    fn budgets_hold_a_message_when_their_window_is_full() {
        use std::time::Duration;
        let l = SafetyLimits {
            per_day: 1000,
            per_hour: 10,
            per_minute: 3,
        };
        // 45.5 s into a minute: the minute frees up in 14.5 s.
        let now = crate::time::from_millis(1_800_000_000_000 + 45_500);
        let wait = Duration::from_secs(5);
        assert_eq!(l.hold(0, 0, 0, now, wait), None);
        assert_eq!(l.hold(2, 2, 0, now, wait), None);
        let minute = l.hold(2, 2, 1, now, wait).unwrap();
        assert_eq!((minute.budget, minute.limit), ("per-minute", 3));
        assert_eq!(minute.retry_after_secs, 15);
        // A wait that outlasts the minute sees the message go out within it.
        assert_eq!(l.hold(2, 2, 1, now, Duration::from_secs(20)), None);
        // A full hour holds it whatever the wait.
        let hour = l.hold(0, 10, 0, now, Duration::from_secs(600)).unwrap();
        assert_eq!((hour.budget, hour.limit), ("per-hour", 10));
        assert_eq!(l.hold(0, 7, 2, now, wait), None);
        assert_eq!(l.hold(0, 7, 3, now, wait).unwrap().budget, "per-hour");
    }
}
