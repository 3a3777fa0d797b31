//! What a group's members get: its messages (one sender-key ciphertext fanned out to every
//! member device, with the sender-key distribution each device was sent), the receipts
//! members send back to a message's author, chat states, and `w:gp2` notifications of
//! membership changes.
//!
//! As for one-to-one messages the server never decrypts. A client's group stanza carries
//! `<participants><to jid><enc type=pkmsg|msg/></to>*</participants>` (the sender key,
//! Signal-encrypted per device, only when it must be distributed) and one
//! `<enc type=skmsg/>`; each member device but the sender's gets its own `<enc>` first (so
//! it learns the sender key before it needs it), then the `skmsg`, then the sender's
//! `<device-identity>` when its `<enc>` is a prekey message (wacore `messages.rs`,
//! `send/group.rs`).
//!
//! Members are named as their group addresses them ([`Addressing`]): by phone number in a
//! PN group; by LID in a LID group, with the phone number beside the name where WhatsApp
//! sends it — a message's author as `participant=<LID device>` with `participant_pn`, a
//! notification's actor with `participant_pn`, the members it names with `phone_number`.
//! Receipts and chat states in a LID group name the reader or the typist by LID device.
//! In a LID group clients address the sender-key shares to LID devices
//! (`<to jid=lid:device@lid>`); like everything else they are resolved through the world's
//! PN↔LID map.

use std::collections::HashMap;

use tracing::debug;
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeContent};

use crate::stanza::{self, attr, child, children, copy_attr, jid_attr};
use crate::world::{Addressing, World};

/// Relays a `<message to=G@g.us>` from device `device` of `pn` to every other member
/// device. `Err(code)`: refused (the server's nack code).
pub(crate) fn message(
    world: &mut World,
    msg: &Node,
    group: &Jid,
    pn: &str,
    device: u16,
) -> Result<(), &'static str> {
    let Some(g) = world.groups.get(group.user.as_str()) else {
        return Err("404");
    };
    if !g.is_member(pn) {
        return Err("403");
    }
    let members: Vec<String> = g.participants.iter().map(|(p, _)| p.clone()).collect();
    let addressing = g.addressing;
    let id = attr(msg, "id").unwrap_or_default();
    // Each device's share of the sender-key distribution, by (number, device).
    let mut own: HashMap<(String, u16), Vec<Node>> = HashMap::new();
    if let Some(participants) = child(msg, "participants") {
        for to in children(participants).iter().filter(|n| n.tag == "to") {
            let Some(jid) = jid_attr(to, "jid") else {
                continue;
            };
            let Some(to_pn) = world.account_pn(&jid) else {
                continue;
            };
            let encs = children(to)
                .iter()
                .filter(|n| n.tag == "enc")
                .cloned()
                .collect();
            own.insert((to_pn, jid.device), encs);
        }
    }
    let group_enc: Vec<Node> = children(msg)
        .iter()
        .filter(|n| n.tag == "enc")
        .cloned()
        .collect();
    let identity = child(msg, "device-identity").cloned();
    let Some(sender) = world.accounts.get(pn) else {
        return Err("401");
    };
    let (participant, participant_pn) = sender.device_in_group(device, addressing);
    let push_name = sender.push_name.clone();
    let t = stanza::now_secs();
    let mut deliveries = Vec::new();
    for member in &members {
        let Some(account) = world.accounts.get(member) else {
            continue;
        };
        for target in account.linked_devices() {
            if member == pn && target == device {
                continue;
            }
            let mine = own.remove(&(member.clone(), target)).unwrap_or_default();
            let prekey = mine
                .iter()
                .any(|e| attr(e, "type").as_deref() == Some("pkmsg"));
            let mut content = mine;
            content.extend(group_enc.iter().cloned());
            if prekey && let Some(identity) = &identity {
                content.push(identity.clone());
            }
            if content.is_empty() {
                continue;
            }
            let mut out = NodeBuilder::new("message")
                .attr("from", group.clone())
                .attr("participant", participant.clone());
            if let Some(pn_jid) = &participant_pn {
                out = out.attr("participant_pn", pn_jid.clone());
            }
            let mut out = out
                .attr("id", id.clone())
                .attr("t", t)
                .attr("notify", push_name.clone())
                .attr("addressing_mode", addressing.as_str())
                .build();
            for key in ["type", "edit", "category", "mediatype"] {
                copy_attr(msg, &mut out, key);
            }
            out.content = Some(NodeContent::Nodes(content));
            deliveries.push((member.clone(), target, out));
        }
    }
    for (member, target, node) in deliveries {
        world.deliver(&member, target, node);
    }
    Ok(())
}

/// A receipt from a member for a group message (`to=G participant=<author>`): passed to the
/// author as `from=G participant=<reader>` (to the device named, or every device of the
/// account when the author is named without one). The reader is named by LID in a LID
/// group, else in the namespace the author was named in.
pub(crate) fn receipt(world: &mut World, receipt: &Node, group: &Jid, pn: &str, device: u16) {
    let Some(author) = jid_attr(receipt, "participant") else {
        debug!(stanza = %stanza::show(receipt), "group receipt without its author; not relayed");
        return;
    };
    let Some(author_pn) = world.account_pn(&author) else {
        return;
    };
    let lid_group = world
        .groups
        .get(group.user.as_str())
        .is_some_and(|g| g.addressing == Addressing::Lid);
    let Some(reader) = world.accounts.get(pn).map(|a| {
        if lid_group {
            a.lid_jid(device)
        } else {
            a.jid_like(&author, device)
        }
    }) else {
        return;
    };
    let mut out = NodeBuilder::new("receipt")
        .attr("from", group.clone())
        .attr("participant", reader)
        .attr("id", attr(receipt, "id").unwrap_or_default())
        .attr("t", stanza::now_secs())
        .build();
    copy_attr(receipt, &mut out, "type");
    out.content = receipt.content.clone();
    let targets: Vec<u16> = match (author.device, world.accounts.get(&author_pn)) {
        (0, Some(account)) => account
            .linked_devices()
            .into_iter()
            .filter(|d| !(author_pn == pn && *d == device))
            .collect(),
        (d, _) => vec![d],
    };
    for target in targets {
        world.deliver(&author_pn, target, out.clone());
    }
}

/// A chat state in a group: shown to the members' online devices (the typist named as the
/// group names members), remembered as what the group's chat shows of the sender (keyed by
/// the group's JID, `…@g.us`, and the sender's number).
pub(crate) fn chatstate(
    world: &mut World,
    group: &Jid,
    shown: &Node,
    state: &str,
    pn: &str,
    device: u16,
) {
    let Some(g) = world.groups.get(group.user.as_str()) else {
        return;
    };
    if !g.is_member(pn) {
        return;
    }
    let members: Vec<String> = g.participants.iter().map(|(p, _)| p.clone()).collect();
    let addressing = g.addressing;
    let Some((from, _)) = world
        .accounts
        .get(pn)
        .map(|a| a.device_in_group(device, addressing))
    else {
        return;
    };
    world
        .chat_states
        .insert((group.to_string(), pn.to_owned()), state.to_owned());
    let out = NodeBuilder::new("chatstate")
        .attr("from", group.clone())
        .attr("participant", from)
        .children([shown.clone()])
        .build();
    for member in members {
        let devices = world
            .accounts
            .get(&member)
            .map(|a| a.linked_devices())
            .unwrap_or_default();
        for d in devices {
            if member == pn && d == device {
                continue;
            }
            world.deliver_live(&member, d, out.clone());
        }
    }
}

/// Tells the devices of `told` (the group's members, and members who just left or were
/// removed) what changed in group `group_id`: `<notification type="w:gp2" from=G
/// participant=<actor> [participant_pn]>` with `change` inside. The acting device itself
/// is told nothing (it knows).
pub(crate) fn notify(
    world: &mut World,
    group_id: &str,
    told: &[String],
    actor: (&str, u16),
    change: Node,
) {
    let addressing = world
        .groups
        .get(group_id)
        .map(|g| g.addressing)
        .unwrap_or_default();
    let Some((notify, (participant, participant_pn))) = world
        .accounts
        .get(actor.0)
        .map(|a| (a.push_name.clone(), a.in_group(addressing)))
    else {
        return;
    };
    let mut node = NodeBuilder::new("notification")
        .attr("type", "w:gp2")
        .attr("from", Jid::group(group_id.to_owned()))
        .attr("id", format!("gp2-{}", world.next_counter()))
        .attr("participant", participant);
    if let Some(pn_jid) = participant_pn {
        node = node.attr("participant_pn", pn_jid);
    }
    let node = node
        .attr("notify", notify)
        .attr("t", stanza::now_secs())
        .attr("addressing_mode", addressing.as_str())
        .children([change])
        .build();
    for member in told {
        let devices = world
            .accounts
            .get(member)
            .map(|a| a.linked_devices())
            .unwrap_or_default();
        for d in devices {
            if *member == actor.0 && d == actor.1 {
                continue;
            }
            world.deliver(member, d, node.clone());
        }
    }
}

/// `<add|remove|promote|demote><participant jid [phone_number]/>*</…>` naming `who`
/// (numbers) as a group with `addressing` names them.
pub(crate) fn change_node(
    world: &World,
    addressing: Addressing,
    action: &'static str,
    who: &[String],
) -> Node {
    NodeBuilder::new(action)
        .children(
            who.iter()
                .map(|pn| participant_node(world, addressing, pn).build()),
        )
        .build()
}

/// How a group with `addressing` names the account with number `pn`: its JID and, in LID
/// mode, the phone-number JID beside it. A number that is no account (it cannot be a
/// member) is named by itself.
pub(crate) fn named(world: &World, addressing: Addressing, pn: &str) -> (Jid, Option<Jid>) {
    world
        .accounts
        .get(pn)
        .map(|a| a.in_group(addressing))
        .unwrap_or_else(|| (Jid::pn(pn.to_owned()), None))
}

/// `<participant jid [phone_number]>` naming the account `pn` as a group with `addressing`
/// does (still open for `type` or `error`).
pub(crate) fn participant_node(world: &World, addressing: Addressing, pn: &str) -> NodeBuilder {
    let (jid, phone_number) = named(world, addressing, pn);
    let node = NodeBuilder::new("participant").attr("jid", jid);
    match phone_number {
        Some(pn_jid) => node.attr("phone_number", pn_jid),
        None => node,
    }
}
