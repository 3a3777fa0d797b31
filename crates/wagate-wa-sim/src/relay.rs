//! Message and receipt relay between devices, with server acks (group messages, receipts
//! and chat states are handed to [`crate::group_relay`]).
//!
//! The server never decrypts: each `<to jid><enc/></to>` of a client's fan-out is copied
//! untouched into a `<message>` for that device. The sender's `from` is written in the namespace
//! the sender used for the recipient (PN or LID), because that is the address the recipient's
//! Signal session is keyed by.

use tracing::{debug, warn};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::group_relay;
use crate::stanza::{self, SERVER, attr, child, children, copy_attr, jid_attr};

fn ack(class: &str, id: &str, from: Option<&Node>, error: Option<&str>) -> Node {
    let mut node = NodeBuilder::new("ack")
        .attr("class", class.to_string())
        .attr("id", id)
        .attr("t", stanza::now_secs())
        .build();
    match from.and_then(|n| n.attrs.get("to")) {
        Some(to) => node.attrs.insert("from", to.clone()),
        None => node.attrs.insert("from", SERVER),
    }
    if let Some(error) = error {
        node.attrs.insert("error", error.to_string());
    }
    node
}

pub(crate) fn message(conn: &mut Conn, msg: &Node) -> Replies {
    let id = attr(msg, "id").unwrap_or_default();
    let Some((pn, device)) = conn.me.clone() else {
        warn!(stanza = %stanza::show(msg), "message before login");
        return Replies::one(ack("message", &id, Some(msg), Some("401")));
    };
    let Some(to) = jid_attr(msg, "to") else {
        return Replies::one(ack("message", &id, Some(msg), Some("400")));
    };
    let mut world = conn.shared.lock();
    if let Some(code) = world.faults.nack_next.remove(&(pn.clone(), device)) {
        debug!(%pn, device, %code, id, "injected nack");
        return Replies::one(ack("message", &id, Some(msg), Some(&code)));
    }
    if to.server == whatsapp_rust::Server::Group {
        let relayed = group_relay::message(&mut world, msg, &to, &pn, device);
        if relayed.is_ok() {
            *world.messages_taken.entry(id.clone()).or_insert(0) += 1;
        }
        drop(world);
        return Replies::one(ack("message", &id, Some(msg), relayed.err()));
    }

    // Either a fan-out (`<participants><to jid><enc/></to>…`) or a single-device stanza (retries,
    // peer messages to the own phone) with `<enc>` directly inside.
    let mut targets: Vec<(Jid, Vec<Node>)> = Vec::new();
    if let Some(participants) = child(msg, "participants") {
        for to_node in children(participants).iter().filter(|n| n.tag == "to") {
            if let Some(jid) = jid_attr(to_node, "jid") {
                let encs = children(to_node)
                    .iter()
                    .filter(|n| n.tag == "enc")
                    .cloned()
                    .collect();
                targets.push((jid, encs));
            }
        }
    } else {
        let encs: Vec<Node> = children(msg)
            .iter()
            .filter(|n| n.tag == "enc")
            .cloned()
            .collect();
        if !encs.is_empty() {
            targets.push((to.clone(), encs));
        }
    }
    if targets.is_empty() {
        warn!(stanza = %stanza::show(msg), "message with no per-device payload; acked, not delivered");
    }

    let Some(sender) = world.accounts.get(&pn) else {
        return Replies::one(ack("message", &id, Some(msg), Some("401")));
    };
    let push_name = sender.push_name.clone();
    let device_identity = child(msg, "device-identity").cloned();
    let t = stanza::now_secs();
    let mut deliveries = Vec::new();
    for (target, encs) in targets {
        let Some(target_pn) = world.account_pn(&target) else {
            warn!(%target, "message for an unknown account; dropped");
            continue;
        };
        if target_pn == pn && target.device == device {
            continue;
        }
        let linked = world
            .accounts
            .get(&target_pn)
            .and_then(|a| a.devices.get(&target.device))
            .is_some_and(|d| d.is_linked(target.device));
        if !linked {
            debug!(%target, "message for an unlinked device; dropped");
            continue;
        }
        let mut out = NodeBuilder::new("message")
            .attr("from", sender.jid_like(&target, device))
            .attr("id", id.clone())
            .attr("t", t)
            .attr("notify", push_name.clone())
            .build();
        for key in ["type", "edit", "category", "mediatype"] {
            copy_attr(msg, &mut out, key);
        }
        if target_pn == pn
            && let Some(chat) = msg.attrs.get("to")
        {
            // The sender's own other devices need to know which chat the message went to.
            out.attrs.insert("recipient", chat.clone());
        }
        let prekey_message = encs
            .iter()
            .any(|e| attr(e, "type").as_deref() == Some("pkmsg"));
        let mut content = encs;
        if prekey_message && let Some(identity) = &device_identity {
            content.push(identity.clone());
        }
        out.content = Some(whatsapp_rust::wacore_binary::NodeContent::Nodes(content));
        deliveries.push((target_pn, target.device, out));
    }
    for (target_pn, target_device, node) in deliveries {
        world.deliver(&target_pn, target_device, node);
    }
    *world.messages_taken.entry(id.clone()).or_insert(0) += 1;
    drop(world);
    Replies::one(ack("message", &id, Some(msg), None))
}

/// Relays a receipt (delivered, read, played, inactive, retry…) to the device it names, or to
/// every device of the account when it names the account. Always acked.
pub(crate) fn receipt(conn: &mut Conn, receipt: &Node) -> Replies {
    let id = attr(receipt, "id").unwrap_or_default();
    let mut server_ack = ack("receipt", &id, Some(receipt), None);
    copy_attr(receipt, &mut server_ack, "type");
    let Some((pn, device)) = conn.me.clone() else {
        return Replies::one(server_ack);
    };
    let Some(to) = jid_attr(receipt, "to") else {
        return Replies::one(server_ack);
    };
    let mut world = conn.shared.lock();
    if to.server == whatsapp_rust::Server::Group {
        group_relay::receipt(&mut world, receipt, &to, &pn, device);
        return Replies::one(server_ack);
    }
    let Some(target_pn) = world.account_pn(&to) else {
        debug!(%to, "receipt for an unknown account; acked, not relayed");
        return Replies::one(server_ack);
    };
    let Some(sender) = world.accounts.get(&pn) else {
        return Replies::one(server_ack);
    };
    let mut out = NodeBuilder::new("receipt")
        .attr("from", sender.jid_like(&to, device))
        .attr("id", id.clone())
        .attr("t", stanza::now_secs())
        .build();
    for key in ["type", "participant", "recipient"] {
        copy_attr(receipt, &mut out, key);
    }
    out.content = receipt.content.clone();
    let targets: Vec<u16> = match (to.device, world.accounts.get(&target_pn)) {
        (0, Some(account)) => account
            .linked_devices()
            .into_iter()
            .filter(|d| !(target_pn == pn && *d == device))
            .collect(),
        (d, _) => vec![d],
    };
    for target in targets {
        world.deliver(&target_pn, target, out.clone());
    }
    drop(world);
    Replies::one(server_ack)
}

/// A chat state from a device (`<composing/>`, `<composing media="audio"/>` for a voice
/// note, `<paused/>`): passed on to the other side's online devices and never queued (it
/// means nothing later), as WhatsApp does; the simulator remembers what each chat shows.
pub(crate) fn chatstate(conn: &mut Conn, node: &Node) -> Replies {
    let Some((pn, device)) = conn.me.clone() else {
        return Replies::none();
    };
    let (Some(to), Some(shown)) = (jid_attr(node, "to"), children(node).first()) else {
        return Replies::none();
    };
    let state = match (shown.tag.as_ref(), attr(shown, "media").as_deref()) {
        ("composing", Some("audio")) => "recording",
        ("composing", _) => "composing",
        ("paused", _) => "paused",
        _ => {
            debug!(stanza = %stanza::show(node), "unknown chat state; ignored");
            return Replies::none();
        }
    };
    let mut world = conn.shared.lock();
    if to.server == whatsapp_rust::Server::Group {
        group_relay::chatstate(&mut world, &to, shown, state, &pn, device);
        return Replies::none();
    }
    let Some(target_pn) = world.account_pn(&to) else {
        return Replies::none();
    };
    let Some(from) = world.accounts.get(&pn).map(|a| a.jid_like(&to, device)) else {
        return Replies::none();
    };
    world
        .chat_states
        .insert((target_pn.clone(), pn.clone()), state.to_owned());
    let out = NodeBuilder::new("chatstate")
        .attr("from", from)
        .children([shown.clone()])
        .build();
    let targets = world
        .accounts
        .get(&target_pn)
        .map(|a| a.linked_devices())
        .unwrap_or_default();
    for target in targets {
        world.deliver_live(&target_pn, target, out.clone());
    }
    Replies::none()
}
