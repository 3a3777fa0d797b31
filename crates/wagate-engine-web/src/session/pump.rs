//! The per-session pump: protocol events, dial reports and the session's own events go
//! through one queue and are mapped and emitted in order, off the protocol's dispatch path
//! (its inline handler only queues). It also keeps the session's phase in step with what
//! the events say, and drops the connection states of replaced rounds.

use super::client_ctx::ClientCtx;
use super::{Inner, Phase, Work};
use crate::{group_update, inbound, mapping};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wagate_core::engine::EngineEvent;
use whatsapp_rust::prelude::*;

/// Emits an event, retrying briefly: the sink commits to a database that may be busy.
async fn emit(inner: &Inner, event: EngineEvent) -> bool {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=3 {
        match inner.events.emit(event.clone()).await {
            Ok(()) => {
                inner.counters.touch();
                return true;
            }
            Err(e) if attempt < 3 => {
                debug!(device.uid = %inner.uid, error = %e, "event not committed, retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                warn!(device.uid = %inner.uid, error = %e, ?event, "event dropped: the sink did not commit it");
            }
        }
    }
    false
}

/// The per-session pump: maps queued protocol events in order and emits them.
pub(super) async fn pump(
    inner: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<Work>,
    stop: CancellationToken,
) {
    loop {
        let work = tokio::select! {
            biased;
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
            _ = stop.cancelled() => {
                // Deliver what is already queued (the final state events), then end.
                while let Ok(w) = rx.try_recv() {
                    let Some(inner) = inner.upgrade() else { return };
                    handle_work(&inner, w).await;
                }
                return;
            }
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        handle_work(&inner, work).await;
    }
}

async fn handle_work(inner: &Arc<Inner>, work: Work) {
    match work {
        Work::Emit(ev) => {
            emit(inner, *ev).await;
        }
        Work::Dial {
            link,
            reason,
            retry_in,
            only_before_login,
        } => {
            {
                let mut st = inner.state();
                let before_login = matches!(st.phase, Phase::Starting | Phase::Reconnecting);
                if st.round != link.round
                    || st.stopped
                    || st.phase == Phase::Ended
                    || (only_before_login && !before_login)
                {
                    return;
                }
                st.phase = Phase::Reconnecting;
            }
            inner.settled.notify_one();
            emit(
                inner,
                EngineEvent::Reconnecting {
                    reason,
                    retry_in: Some(retry_in),
                },
            )
            .await;
        }
        Work::Protocol { link, event } => {
            let (current, logging_out) = {
                let st = inner.state();
                (st.round == link.round, st.logging_out)
            };
            if current {
                if logging_out && matches!(&*event, Event::LoggedOut(_)) {
                    // logout() reports its own, unambiguous LoggedOut.
                    return;
                }
                note_state(inner, &event);
            } else if !is_message_fact(&event) {
                // A replaced round's connection states no longer describe the device.
                return;
            }
            let ctx = ClientCtx {
                inner: inner.clone(),
                client: link.client(),
            };
            if let Event::Messages(batch) = &*event {
                if batch.hook_committed {
                    return;
                }
                // Messages the durability hook does not gate (recovered placeholders,
                // or a failed durable buffer): already acked, so deliver at most once.
                for im in batch.iter() {
                    let converted =
                        inbound::convert(im, &ctx, inner.shared.config.max_inbound_media_bytes)
                            .await;
                    match converted {
                        Ok(Some(m)) => {
                            if emit(inner, EngineEvent::Inbound(Box::new(m))).await {
                                inner.counters.received(1);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            warn!(message.provider_id = %im.info.id, error = %e, "an acknowledged message could not be converted; dropped");
                        }
                    }
                }
                return;
            }
            if let Event::GroupUpdate(update) = &*event {
                // Acked by the protocol client on arrival: delivered at most once, like
                // the messages above.
                if let Some(m) = group_update::convert(update, &ctx).await {
                    emit(inner, EngineEvent::Inbound(Box::new(m))).await;
                }
                return;
            }
            if let Some(ev) = mapping::map_event(&event, &ctx).await {
                emit(inner, ev).await;
            }
        }
    }
}

/// Events about messages stay true after their round was replaced (a stop right after a
/// send must still report its ack).
fn is_message_fact(event: &Event) -> bool {
    matches!(
        event,
        Event::ServerAck(_)
            | Event::Receipt(_)
            | Event::UndecryptableMessage(_)
            | Event::Messages(_)
            | Event::GroupUpdate(_)
    )
}

/// Session bookkeeping a protocol event implies, before it is reported.
fn note_state(inner: &Inner, event: &Event) {
    let mut settle = true;
    {
        let mut st = inner.state();
        match event {
            Event::Connected(_) => {
                st.phase = Phase::Online;
                inner.counters.connected();
            }
            Event::PairingQrCode(_) | Event::PairingCode(_) => {
                if st.phase != Phase::Online {
                    st.phase = Phase::Linking;
                }
            }
            Event::PairingQrCodesExhausted(e) => {
                if e.disconnected {
                    st.phase = Phase::Ended;
                }
            }
            Event::PairSuccess(p) => {
                info!(device.uid = %inner.uid, jid = %p.id, "device linked");
                settle = false;
            }
            Event::LoggedOut(_) => {
                st.phase = Phase::Ended;
                st.logged_out = true;
            }
            Event::StreamReplaced(_) | Event::ClientOutdated(_) | Event::TemporaryBan(_) => {
                st.phase = Phase::Ended;
            }
            Event::ConnectFailure(cf) => {
                st.phase = if cf.reason.should_reconnect() {
                    Phase::Reconnecting
                } else {
                    Phase::Ended
                };
            }
            Event::Disconnected(_) => st.phase = Phase::Reconnecting,
            Event::AppStateSyncFailed(f) => {
                warn!(
                    device.uid = %inner.uid,
                    fatal = ?f.fatal,
                    retryable = ?f.retryable,
                    connected = f.connected,
                    "WhatsApp app-state sync failed; the device may stay degraded until it reconnects"
                );
                settle = false;
            }
            _ => settle = false,
        }
    }
    if settle {
        inner.settled.notify_one();
    }
}
