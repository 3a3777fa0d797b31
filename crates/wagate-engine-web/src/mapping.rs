//! Protocol events → wagate's [`EngineEvent`]s: the connection state machine, pairing,
//! acks and receipts, each with a reason a person can act on.
//!
//! Kept free of sockets so every mapping is unit-tested with the protocol crate's own event
//! builders; what the mapping needs from a live client (our identity, the reconnect backoff,
//! LID→phone lookups) comes through [`Context`].

use async_trait::async_trait;
use std::time::Duration;
use wagate_core::Phone;
use wagate_core::engine::{EngineEvent, ReceiptKind};
use wagate_core::time::{Timestamp, from_millis, millis, now};
use whatsapp_rust::Jid;
use whatsapp_rust::prelude::Event;
use whatsapp_rust::types::events::{ConnectFailureReason, LoggedOut};
use whatsapp_rust::types::presence::ReceiptType;

/// What the mapping needs to know about the live session.
#[async_trait]
pub(crate) trait Context: Send + Sync {
    /// Our own number, LID and push name once logged in.
    fn identity(&self) -> (Option<Phone>, Option<String>, Option<String>);
    /// How long until the protocol client's next connection attempt.
    fn retry_in(&self) -> Option<Duration>;
    /// The phone number behind a JID (PN JIDs directly, LIDs through the LID↔PN map).
    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone>;
}

/// Truncated to milliseconds like every wagate timestamp.
pub(crate) fn ts(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    from_millis(t.timestamp_millis())
}

/// The E.164 number of a phone-number JID (`<digits>@s.whatsapp.net`, any device).
pub(crate) fn phone_of_pn(jid: &Jid) -> Option<Phone> {
    if jid.is_pn() {
        Phone::parse(&jid.user).ok()
    } else {
        None
    }
}

/// `<user>@lid` without the device part, when the JID is a LID.
pub(crate) fn lid_string(jid: &Jid) -> Option<String> {
    jid.is_lid().then(|| jid.to_non_ad().to_string())
}

/// WhatsApp's reconnect backoff (Fibonacci from 1 s, capped at 900 s, ±10 % jitter applied
/// by the client): the nominal delay before attempt `errors + 1`. The protocol crate keeps
/// its copy private; this mirrors it so `Reconnecting` can say when the next try comes.
pub(crate) fn nominal_backoff(errors: u32) -> Duration {
    const MAX_MS: u64 = 900_000;
    let (mut a, mut b) = (1000u64, 1000u64);
    for _ in 0..errors {
        let next = a.saturating_add(b).min(MAX_MS);
        a = b;
        b = next;
    }
    Duration::from_millis(a.min(MAX_MS))
}

fn logged_out_reason(ev: &LoggedOut) -> String {
    let base = match ev.reason {
        ConnectFailureReason::LoggedOut if !ev.on_connect => {
            "the device was unlinked (from the phone, or by logout)".to_owned()
        }
        ConnectFailureReason::LoggedOut => {
            "WhatsApp no longer accepts this device's keys (unlinked while offline)".to_owned()
        }
        ConnectFailureReason::UnknownLogout => "WhatsApp logged the device out".to_owned(),
        other => format!("WhatsApp logged the device out (code {})", other.code()),
    };
    let detail = ev
        .logout_message
        .as_ref()
        .and_then(|m| m.header.clone().or_else(|| m.subtext.clone()));
    match detail {
        Some(d) if !d.is_empty() => format!("{base}: {d}"),
        _ => base,
    }
}

fn connect_failure_reason(reason: ConnectFailureReason, message: Option<&str>) -> String {
    let what = match reason {
        ConnectFailureReason::Generic => "WhatsApp refused the connection",
        ConnectFailureReason::BadUserAgent => "WhatsApp rejected the client identification",
        ConnectFailureReason::CatExpired | ConnectFailureReason::CatInvalid => {
            "WhatsApp rejected the client's access token"
        }
        ConnectFailureReason::NotFound => "WhatsApp does not know this device",
        ConnectFailureReason::ClientUnknown => "WhatsApp does not know this client",
        ConnectFailureReason::InternalServerError => "WhatsApp had an internal error",
        ConnectFailureReason::ServiceUnavailable => "WhatsApp is temporarily unavailable",
        ConnectFailureReason::Experimental => "WhatsApp refused an experimental client",
        _ => "WhatsApp refused the connection",
    };
    match message {
        Some(m) if !m.is_empty() => format!("{what} (code {}): {m}", reason.code()),
        _ => format!("{what} (code {})", reason.code()),
    }
}

/// Maps one protocol event to what wagate reports, if anything. Inbound messages are not
/// handled here (see `inbound`).
pub(crate) async fn map_event(event: &Event, ctx: &dyn Context) -> Option<EngineEvent> {
    match event {
        Event::PairingQrCode(qr) => Some(EngineEvent::Qr {
            code: qr.code.clone(),
            expires_in: qr.timeout,
        }),
        Event::PairingCode(pc) => Some(EngineEvent::PairCode {
            code: pc.code.clone(),
            expires_in: pc.timeout,
        }),
        Event::PairingQrCodesExhausted(_) => Some(EngineEvent::QrExpired),
        Event::PairError(e) => Some(EngineEvent::Failed {
            reason: format!(
                "linking failed: the phone's confirmation did not verify ({})",
                e.error
            ),
        }),
        Event::Connected(_) => {
            let (phone, lid, push_name) = ctx.identity();
            Some(EngineEvent::Connected {
                phone,
                lid,
                push_name,
            })
        }
        Event::Disconnected(d) => Some(EngineEvent::Reconnecting {
            reason: if d.reason.is_clean_shutdown() {
                format!("WhatsApp recycled the connection ({})", d.reason)
            } else {
                format!("connection lost: {}", d.reason)
            },
            retry_in: ctx.retry_in(),
        }),
        Event::LoggedOut(lo) => {
            if lo.reason == ConnectFailureReason::AccountLocked {
                Some(EngineEvent::Banned {
                    reason: "WhatsApp locked the account (code 403)".to_owned(),
                    expires_at: None,
                })
            } else {
                Some(EngineEvent::LoggedOut {
                    reason: logged_out_reason(lo),
                })
            }
        }
        Event::TemporaryBan(ban) => {
            let expires_at =
                from_millis(millis(now()).saturating_add(ban.expire.num_milliseconds().max(0)));
            let reason = match &ban.message {
                Some(m) if !m.is_empty() => format!("temporarily banned: {} ({m})", ban.code),
                _ => format!("temporarily banned: {}", ban.code),
            };
            Some(EngineEvent::Banned {
                reason,
                expires_at: Some(expires_at),
            })
        }
        Event::StreamReplaced(_) => Some(EngineEvent::Replaced),
        Event::ClientOutdated(_) => Some(EngineEvent::Failed {
            reason: "WhatsApp rejected this client version as outdated (update wagate or the \
                     pinned WhatsApp Web version)"
                .to_owned(),
        }),
        Event::ConnectFailure(cf) => {
            let reason = connect_failure_reason(cf.reason, cf.message.as_deref());
            if cf.reason.should_reconnect() {
                Some(EngineEvent::Reconnecting {
                    reason,
                    retry_in: ctx.retry_in(),
                })
            } else {
                Some(EngineEvent::Failed { reason })
            }
        }
        Event::ServerAck(ack) => {
            // Acks also arrive for receipts, notifications and calls; only message acks
            // say whether one of our sends was taken.
            if ack.class.as_deref().is_some_and(|c| c != "message") {
                return None;
            }
            Some(EngineEvent::ServerAck {
                provider_message_id: ack.id.clone(),
                error: ack
                    .error
                    .as_ref()
                    .map(|code| format!("WhatsApp refused the message (nack {code})")),
            })
        }
        Event::Receipt(r) => {
            // Our other devices reading *incoming* messages (ReadSelf/PlayedSelf), retry
            // and server receipts say nothing about our outbound messages.
            let kind = match r.r#type {
                // `inactive` is the delivery receipt of a recipient device that is not in
                // the foreground (a linked device, WhatsApp Web in a background tab): the
                // message reached it all the same.
                ReceiptType::Delivered | ReceiptType::Inactive => ReceiptKind::Delivered,
                ReceiptType::Read => ReceiptKind::Read,
                ReceiptType::Played => ReceiptKind::Played,
                _ => return None,
            };
            if r.message_ids.is_empty() {
                return None;
            }
            Some(EngineEvent::Receipt {
                provider_message_ids: r.message_ids.clone(),
                kind,
                at: ts(r.timestamp),
            })
        }
        Event::UndecryptableMessage(u) => {
            let src = &u.info.source;
            let from = ctx.phone_of(&src.sender, src.sender_alt.as_ref()).await;
            let reason = if u.is_unavailable {
                format!(
                    "message unavailable on this device ({:?}); WhatsApp asks the phone for it",
                    u.unavailable_type
                )
            } else {
                "could not decrypt (Signal session out of sync); a retry was requested".to_owned()
            };
            Some(EngineEvent::Undecryptable {
                provider_message_id: u.info.id.clone(),
                from,
                reason,
            })
        }
        _ => None,
    }
}

/// The receipt's sender normalised to its user JID (receipts name a device, `…:3@…`).
#[cfg(test)]
pub(crate) fn normalise_device(jid: &Jid) -> Jid {
    jid.to_non_ad()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use whatsapp_rust::types::events::*;
    use whatsapp_rust::types::message::{MessageInfo, MessageSource};

    struct Fake {
        map: HashMap<String, String>,
    }

    #[async_trait]
    impl Context for Fake {
        fn identity(&self) -> (Option<Phone>, Option<String>, Option<String>) {
            (
                Phone::parse("15550001111").ok(),
                Some("100000000000001@lid".into()),
                Some("Shop".into()),
            )
        }
        fn retry_in(&self) -> Option<Duration> {
            Some(Duration::from_secs(2))
        }
        async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
            if let Some(p) = phone_of_pn(jid) {
                return Some(p);
            }
            if let Some(p) = alt.and_then(phone_of_pn) {
                return Some(p);
            }
            self.map
                .get(jid.user.as_str())
                .and_then(|d| Phone::parse(d).ok())
        }
    }

    fn ctx() -> Fake {
        Fake {
            map: HashMap::from([("200000000000002".to_owned(), "15550002222".to_owned())]),
        }
    }

    async fn map(e: Event) -> Option<EngineEvent> {
        map_event(&e, &ctx()).await
    }

    #[tokio::test]
    async fn pairing_events() {
        let qr = PairingQrCode::builder()
            .code("ref,a,b,c,9".into())
            .timeout(Duration::from_secs(60))
            .build();
        assert!(matches!(
            map(Event::PairingQrCode(qr)).await,
            Some(EngineEvent::Qr { code, expires_in }) if code == "ref,a,b,c,9" && expires_in.as_secs() == 60
        ));
        let pc = PairingCode::builder()
            .code("ABCD1234".into())
            .timeout(Duration::from_secs(180))
            .build();
        assert!(matches!(
            map(Event::PairingCode(pc)).await,
            Some(EngineEvent::PairCode { code, .. }) if code == "ABCD1234"
        ));
        let ex = PairingQrCodesExhausted::builder()
            .disconnected(true)
            .build();
        assert!(matches!(
            map(Event::PairingQrCodesExhausted(ex)).await,
            Some(EngineEvent::QrExpired)
        ));
        let err = PairError::builder()
            .id(Jid::pn("15550001111"))
            .lid(Jid::lid("1"))
            .business_name(String::new())
            .platform("android".into())
            .error("bad hmac".into())
            .build();
        assert!(matches!(
            map(Event::PairError(err)).await,
            Some(EngineEvent::Failed { reason }) if reason.contains("bad hmac")
        ));
    }

    #[tokio::test]
    async fn connection_states() {
        assert!(matches!(
            map(Event::Connected(Connected::builder().build())).await,
            Some(EngineEvent::Connected { phone: Some(p), lid: Some(_), push_name: Some(n) })
                if p.digits() == "15550001111" && n == "Shop"
        ));
        let d = Disconnected::builder()
            .reason(whatsapp_rust::transport::DisconnectReason::ReadError(
                "reset".into(),
            ))
            .build();
        assert!(matches!(
            map(Event::Disconnected(d)).await,
            Some(EngineEvent::Reconnecting { reason, retry_in: Some(r) })
                if reason.contains("reset") && r.as_secs() == 2
        ));
        assert!(matches!(
            map(Event::StreamReplaced(StreamReplaced::builder().build())).await,
            Some(EngineEvent::Replaced)
        ));
        assert!(matches!(
            map(Event::ClientOutdated(ClientOutdated::builder().build())).await,
            Some(EngineEvent::Failed { reason }) if reason.contains("outdated")
        ));
        let cf = ConnectFailure::builder()
            .reason(ConnectFailureReason::ServiceUnavailable)
            .build();
        assert!(matches!(
            map(Event::ConnectFailure(cf)).await,
            Some(EngineEvent::Reconnecting { reason, .. }) if reason.contains("503")
        ));
        let cf = ConnectFailure::builder()
            .reason(ConnectFailureReason::BadUserAgent)
            .message("nope".into())
            .build();
        assert!(matches!(
            map(Event::ConnectFailure(cf)).await,
            Some(EngineEvent::Failed { reason }) if reason.contains("409") && reason.contains("nope")
        ));
    }

    #[tokio::test]
    async fn logout_and_bans() {
        let lo = LoggedOut::builder()
            .on_connect(false)
            .reason(ConnectFailureReason::LoggedOut)
            .build();
        assert!(matches!(
            map(Event::LoggedOut(lo)).await,
            Some(EngineEvent::LoggedOut { reason }) if reason.contains("unlinked")
        ));
        let locked = LoggedOut::builder()
            .on_connect(true)
            .reason(ConnectFailureReason::AccountLocked)
            .build();
        assert!(matches!(
            map(Event::LoggedOut(locked)).await,
            Some(EngineEvent::Banned {
                expires_at: None,
                ..
            })
        ));
        let ban = TemporaryBan::builder()
            .code(TempBanReason::SentTooManySameMessage)
            .expire(chrono::Duration::hours(2))
            .build();
        let before = now();
        match map(Event::TemporaryBan(ban)).await {
            Some(EngineEvent::Banned {
                reason,
                expires_at: Some(at),
            }) => {
                assert!(reason.contains("104"), "{reason}");
                let secs = (at - before).num_seconds();
                assert!((7190..=7210).contains(&secs), "{secs}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn acks_and_receipts() {
        let ok = ServerAck::builder()
            .id("3EB0AA".into())
            .class("message".into())
            .build();
        assert!(matches!(
            map(Event::ServerAck(ok)).await,
            Some(EngineEvent::ServerAck { provider_message_id, error: None }) if provider_message_id == "3EB0AA"
        ));
        let nack = ServerAck::builder()
            .id("3EB0BB".into())
            .class("message".into())
            .error("463".into())
            .build();
        assert!(matches!(
            map(Event::ServerAck(nack)).await,
            Some(EngineEvent::ServerAck { error: Some(e), .. }) if e.contains("463")
        ));
        let receipt_ack = ServerAck::builder()
            .id("x".into())
            .class("receipt".into())
            .build();
        assert!(map(Event::ServerAck(receipt_ack)).await.is_none());

        let device: Jid = "15550002222:3@s.whatsapp.net".parse().unwrap();
        let when = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        for (rt, kind) in [
            (ReceiptType::Delivered, Some(ReceiptKind::Delivered)),
            (ReceiptType::Inactive, Some(ReceiptKind::Delivered)),
            (ReceiptType::Read, Some(ReceiptKind::Read)),
            (ReceiptType::Played, Some(ReceiptKind::Played)),
            (ReceiptType::ReadSelf, None),
            (ReceiptType::Sent, None),
        ] {
            let r = Receipt::builder()
                .source(MessageSource {
                    chat: device.clone(),
                    sender: device.clone(),
                    ..Default::default()
                })
                .message_ids(vec!["3EB0AA".into(), "3EB0BB".into()])
                .timestamp(when)
                .r#type(rt)
                .offline(false)
                .build();
            match (map(Event::Receipt(r)).await, kind) {
                (
                    Some(EngineEvent::Receipt {
                        provider_message_ids,
                        kind: k,
                        at,
                    }),
                    Some(want),
                ) => {
                    assert_eq!(k, want);
                    assert_eq!(provider_message_ids, vec!["3EB0AA", "3EB0BB"]);
                    assert_eq!(millis(at), 1_700_000_000_123);
                }
                (None, None) => {}
                (got, want) => panic!("{got:?} vs {want:?}"),
            }
        }
        assert_eq!(
            normalise_device(&device).to_string(),
            "15550002222@s.whatsapp.net"
        );
    }

    #[tokio::test]
    async fn undecryptable_resolves_lid_senders() {
        let info = MessageInfo {
            id: "ABC".into(),
            source: MessageSource {
                chat: Jid::lid("200000000000002"),
                sender: "200000000000002:5@lid".parse().unwrap(),
                ..Default::default()
            },
            ..Default::default()
        };
        let u = UndecryptableMessage::builder()
            .info(Arc::new(info))
            .is_unavailable(false)
            .unavailable_type(UnavailableType::Unknown)
            .decrypt_fail_mode(DecryptFailMode::Show)
            .build();
        match map(Event::UndecryptableMessage(u)).await {
            Some(EngineEvent::Undecryptable {
                provider_message_id,
                from: Some(p),
                reason,
            }) => {
                assert_eq!(provider_message_id, "ABC");
                assert_eq!(p.digits(), "15550002222");
                assert!(reason.contains("decrypt"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_is_fibonacci_and_capped() {
        let secs: Vec<u64> = (0..8).map(|i| nominal_backoff(i).as_secs()).collect();
        assert_eq!(secs, vec![1, 1, 2, 3, 5, 8, 13, 21]);
        assert_eq!(nominal_backoff(100), Duration::from_secs(900));
    }

    #[test]
    fn jid_helpers() {
        let pn: Jid = "15550002222:7@s.whatsapp.net".parse().unwrap();
        assert_eq!(phone_of_pn(&pn).unwrap().digits(), "15550002222");
        assert_eq!(lid_string(&pn), None);
        let lid: Jid = "200000000000002:5@lid".parse().unwrap();
        assert_eq!(lid_string(&lid).as_deref(), Some("200000000000002@lid"));
        assert!(phone_of_pn(&lid).is_none());
    }
}
