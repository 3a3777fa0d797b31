//! One task per client connection: handshake, login or registration, then a loop that decrypts
//! the client's stanzas, dispatches them, and writes whatever the rest of the simulator queued
//! for this connection.
//!
//! The transport (in-memory pipe or WebSocket) is abstracted as a raw byte receiver plus an
//! [`Outbound`] sink, so every transport shares exactly this code path.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::noise::{self, Inbound, Session};
use crate::stanza::{self, SERVER};
use crate::world::{ConnCmd, ConnEntry, ConnId};
use crate::{Shared, iq, pairing, relay};

/// Where a connection's server→client bytes go.
pub(crate) trait Outbound: Send + Sync {
    fn data(&self, bytes: Bytes);
    /// Closes the transport; the client sees the stream end.
    fn close(&self);
}

/// What a handler wants written back on this connection, in order.
#[derive(Default)]
pub(crate) struct Replies {
    pub(crate) nodes: Vec<Node>,
    /// Close the transport after writing `nodes`.
    pub(crate) close: bool,
}

impl Replies {
    pub(crate) fn one(node: Node) -> Self {
        Self {
            nodes: vec![node],
            close: false,
        }
    }
    pub(crate) fn none() -> Self {
        Self::default()
    }
    pub(crate) fn closing(nodes: Vec<Node>) -> Self {
        Self { nodes, close: true }
    }
}

/// Per-connection state shared with the handlers.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: ConnId,
    /// Set after a successful login: (phone number, device id).
    pub(crate) me: Option<(String, u16)>,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    raw: mpsc::UnboundedReceiver<Bytes>,
    out: Arc<dyn Outbound>,
) {
    let mut inbound = Inbound::new(raw);
    let send_raw = {
        let out = out.clone();
        move |b: Bytes| out.data(b)
    };
    let (mut session, payload) =
        match noise::accept(&shared.identity, &mut inbound, &send_raw).await {
            Ok(Some(done)) => done,
            Ok(None) => {
                out.close();
                return;
            }
            Err(e) => {
                warn!(error = %e, "handshake failed");
                out.close();
                return;
            }
        };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut world = shared.lock();
        let id = world.next_counter();
        world.conns.insert(id, ConnEntry { tx, device: None });
        id
    };
    let mut conn = Conn {
        shared: shared.clone(),
        id,
        me: None,
    };

    let first = conn.start(&payload);
    let mut open = write_all(&shared, &mut session, out.as_ref(), first).await;
    while open {
        tokio::select! {
            frame = inbound.next_frame() => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(conn = id, error = %e, "unreadable client stream");
                        break;
                    }
                };
                let node = match session.open(&frame) {
                    Ok(node) => node,
                    Err(e) => {
                        warn!(conn = id, error = %e, "undecryptable frame; closing");
                        break;
                    }
                };
                let replies = conn.dispatch(node);
                open = write_all(&shared, &mut session, out.as_ref(), replies).await;
            }
            cmd = rx.recv() => match cmd {
                Some(ConnCmd::Send(node)) => {
                    open = write_all(&shared, &mut session, out.as_ref(), Replies::one(node)).await;
                }
                Some(ConnCmd::Close { last }) => {
                    let nodes = last.into_iter().collect();
                    write_all(&shared, &mut session, out.as_ref(), Replies::closing(nodes)).await;
                    open = false;
                }
                None => break,
            }
        }
    }
    conn.finish();
    out.close();
}

/// Writes replies in order; returns whether the connection stays open.
async fn write_all(
    shared: &Shared,
    session: &mut Session,
    out: &dyn Outbound,
    replies: Replies,
) -> bool {
    for node in replies.nodes {
        let latency = shared.lock().faults.latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match session.seal(&node) {
            Ok(frame) => out.data(frame),
            Err(e) => warn!(error = %e, stanza = %stanza::show(&node), "cannot encode stanza"),
        }
    }
    !replies.close
}

impl Conn {
    /// The first answer after the handshake: pairing refs for a fresh client, `<success>` or
    /// `<failure>` for a login.
    fn start(&mut self, payload: &wa::ClientPayload) -> Replies {
        if payload.device_pairing_data.is_set() {
            return pairing::offer_refs(self);
        }
        let Some(username) = payload.username else {
            warn!(conn = self.id, "login payload without username");
            return Replies::closing(vec![failure(401)]);
        };
        let pn = username.to_string();
        let device = u16::try_from(payload.device.unwrap_or(0)).unwrap_or(u16::MAX);
        let mut world = self.shared.lock();
        let Some(account) = world.accounts.get(&pn) else {
            warn!(%pn, device, "login for an unknown account");
            return Replies::closing(vec![failure(401)]);
        };
        if let Some((code, expire)) = account.ban {
            return Replies::closing(vec![
                NodeBuilder::new("failure")
                    .attr("reason", "402")
                    .attr("code", code)
                    .attr("expire", expire)
                    .build(),
            ]);
        }
        let known = account
            .devices
            .get(&device)
            .is_some_and(|d| d.is_linked(device));
        if !known {
            debug!(%pn, device, "login for an unlinked or removed device");
            return Replies::closing(vec![failure(401)]);
        }
        let lid = account.lid_jid(device);
        let old = account.devices.get(&device).and_then(|d| d.conn);
        if let Some(old) = old.filter(|old| *old != self.id) {
            // A second login with the same credentials replaces the first, as on WhatsApp.
            world.send_to_conn(
                old,
                ConnCmd::Close {
                    last: Some(
                        NodeBuilder::new("stream:error")
                            .children([NodeBuilder::new("conflict")
                                .attr("type", "replaced")
                                .build()])
                            .build(),
                    ),
                },
            );
        }
        if let Some(account) = world.accounts.get_mut(&pn)
            && let Some(record) = account.devices.get_mut(&device)
        {
            // Whatever the previous connection never acked is redelivered on this one.
            record.requeue_unacked();
            record.conn = Some(self.id);
            record.online = false;
        }
        if let Some(entry) = world.conns.get_mut(&self.id) {
            entry.device = Some((pn.clone(), device));
        }
        drop(world);
        debug!(%pn, device, conn = self.id, "logged in");
        self.me = Some((pn, device));
        Replies::one(
            NodeBuilder::new("success")
                .attr("t", stanza::now_secs())
                .attr("lid", lid)
                .attr("location", "sim")
                .build(),
        )
    }

    fn dispatch(&mut self, node: Node) -> Replies {
        match node.tag.as_ref() {
            "iq" => iq::handle(self, &node),
            "message" => relay::message(self, &node),
            "receipt" => relay::receipt(self, &node),
            "ack" => {
                self.client_ack(&node);
                Replies::none()
            }
            "chatstate" => relay::chatstate(self, &node),
            // Presence, and `<ib>` hints (unified_session), need no answer.
            "presence" | "ib" => {
                debug!(conn = self.id, stanza = %stanza::show(&node), "ignored");
                Replies::none()
            }
            _ => {
                warn!(conn = self.id, stanza = %stanza::show(&node), "unhandled stanza");
                match stanza::attr(&node, "id") {
                    Some(id) => Replies::one(
                        NodeBuilder::new("ack")
                            .attr("id", id)
                            .attr("class", node.tag.to_string())
                            .attr("from", SERVER)
                            .build(),
                    ),
                    None => Replies::none(),
                }
            }
        }
    }

    /// The client confirms a message, a receipt or a notification: the server may forget it.
    fn client_ack(&mut self, ack: &Node) {
        let Some(class) = stanza::attr(ack, "class")
            .filter(|c| c == "message" || c == "receipt" || c == "notification")
        else {
            return;
        };
        let (Some((pn, device)), Some(id)) = (&self.me, stanza::attr(ack, "id")) else {
            return;
        };
        let mut world = self.shared.lock();
        if let Some(record) = world
            .accounts
            .get_mut(pn)
            .and_then(|a| a.devices.get_mut(device))
        {
            record.unacked.retain(|m| {
                m.tag != class.as_str() || stanza::attr(m, "id").as_deref() != Some(id.as_str())
            });
        }
    }

    /// Unregisters the connection; its device goes offline (messages queue from now on).
    fn finish(&mut self) {
        let mut world = self.shared.lock();
        world.conns.remove(&self.id);
        world.pairing_refs.retain(|_, c| *c != self.id);
        world.pending_pairs.retain(|_, (c, _, _)| *c != self.id);
        world.pair_codes.retain(|_, p| p.conn != self.id);
        if let Some((pn, device)) = &self.me
            && let Some(record) = world
                .accounts
                .get_mut(pn)
                .and_then(|a| a.devices.get_mut(device))
            && record.conn == Some(self.id)
        {
            record.requeue_unacked();
            record.conn = None;
            record.online = false;
        }
        debug!(conn = self.id, "connection closed");
    }
}

fn failure(reason: u16) -> Node {
    NodeBuilder::new("failure").attr("reason", reason).build()
}
