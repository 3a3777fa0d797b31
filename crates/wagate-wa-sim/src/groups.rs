//! Groups (`w:g2` IQs): creating one, reading its metadata, listing the groups an account
//! is in, adding, removing, promoting and demoting members (admins only), leaving, and the
//! invite link. The shapes are what whatsapp-rust 0.7 parses (wacore `iq/groups.rs`), and
//! the error codes (403 not an admin or not a member, 404 unknown, 409 already a member) are
//! plausible choices, not captured traffic. Every change is announced to the members'
//! devices as a `w:gp2` notification, and group messages, receipts and chat states are
//! relayed by [`crate::group_relay`].
//!
//! Two addressing modes, chosen when a group is created (`Simulator::set_lid_groups`):
//! phone numbers (`addressing_mode="pn"`, the default) or LIDs (`addressing_mode="lid"`,
//! what WhatsApp does today). In LID mode the metadata names every member, and the creator,
//! by LID with the phone-number JID beside it (`phone_number`, `creator_pn`): whatsapp-rust
//! builds its LID→PN map from those. Requests may name members in either namespace; the
//! world resolves both.

use tracing::{debug, warn};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::group_relay::{change_node, named, notify, participant_node};
use crate::stanza::{self, attr, child, children, iq_error, iq_result, jid_attr};
use crate::world::{Addressing, GroupRecord, GroupRole, World};

pub(crate) fn handle(conn: &mut Conn, iq: &Node, id: &str, action: &str) -> Replies {
    let Some((pn, device)) = conn.me.clone() else {
        return Replies::one(iq_error(id, 401, "not-authorized"));
    };
    let mut world = conn.shared.lock();
    let me = (pn.as_str(), device);
    let reply = match action {
        "create" => create(&mut world, iq, id, me),
        "query" => query(&world, iq, id, &pn),
        "participating" => participating(&world, id, &pn),
        "add" | "remove" | "promote" | "demote" => change(&mut world, iq, id, me, action),
        "leave" => leave(&mut world, iq, id, me),
        "invite" => invite(&mut world, iq, id, &pn),
        _ => {
            warn!(stanza = %stanza::show(iq), "group request not simulated");
            iq_error(id, 501, "feature-not-implemented")
        }
    };
    Replies::one(reply)
}

/// `<create subject><participant jid/>*</create>`: the creator is its super admin; the
/// numbers that are on (simulated) WhatsApp join, the others are left out. The group takes
/// the simulator's current addressing mode. The members' devices are told with
/// `<create><group/></create>`.
fn create(world: &mut World, iq: &Node, id: &str, actor: (&str, u16)) -> Node {
    let creator = actor.0;
    let Some(spec) = child(iq, "create") else {
        return iq_error(id, 400, "bad-request");
    };
    let subject = attr(spec, "subject").unwrap_or_default();
    if subject.trim().is_empty() {
        return iq_error(id, 400, "bad-request");
    }
    let mut participants = vec![(creator.to_owned(), GroupRole::SuperAdmin)];
    for p in children(spec).iter().filter(|n| n.tag == "participant") {
        let Some(pn) = jid_attr(p, "jid").and_then(|j| world.account_pn(&j)) else {
            debug!(participant = ?attr(p, "jid"), "not on the simulated WhatsApp; left out");
            continue;
        };
        if !participants.iter().any(|(have, _)| *have == pn) {
            participants.push((pn, GroupRole::Member));
        }
    }
    let now = stanza::now_secs();
    let group = GroupRecord {
        id: format!("120363{:012}", world.next_counter()),
        subject,
        addressing: world.new_group_addressing,
        creator: creator.to_owned(),
        creation: now,
        participants,
        invite_code: invite_code(world),
    };
    let node = group_node(world, &group);
    let told: Vec<String> = group.participants.iter().map(|(p, _)| p.clone()).collect();
    let group_id = group.id.clone();
    world.groups.insert(group.id.clone(), group);
    let created = NodeBuilder::new("create").children([node.clone()]).build();
    notify(world, &group_id, &told, actor, created);
    iq_result(id, vec![node])
}

/// `<query/>` to the group: its metadata, for members only.
fn query(world: &World, iq: &Node, id: &str, me: &str) -> Node {
    let group = jid_attr(iq, "to")
        .filter(|j| j.server == whatsapp_rust::Server::Group)
        .and_then(|j| world.groups.get(j.user.as_str()));
    match group {
        None => iq_error(id, 404, "item-not-found"),
        Some(g) if !g.is_member(me) => iq_error(id, 403, "forbidden"),
        Some(g) => iq_result(id, vec![group_node(world, g)]),
    }
}

/// The group an IQ is addressed to, if it exists and `me` is a member (else the error
/// code and text to answer).
fn member_of<'w>(
    world: &'w mut World,
    iq: &Node,
    me: &str,
) -> Result<&'w mut GroupRecord, (u16, &'static str)> {
    let group = jid_attr(iq, "to")
        .filter(|j| j.server == whatsapp_rust::Server::Group)
        .and_then(|j| world.groups.get_mut(j.user.as_str()));
    match group {
        None => Err((404, "item-not-found")),
        Some(g) if !g.is_member(me) => Err((403, "forbidden")),
        Some(g) => Ok(g),
    }
}

/// `<add|remove|promote|demote><participant jid/>*</…>`, by an admin: each participant
/// answered on its own (`error` when that one could not be changed; named as the group
/// names members when it is an account). The members (and those removed) are told of the
/// changes made.
fn change(world: &mut World, iq: &Node, id: &str, actor: (&str, u16), action: &str) -> Node {
    let me = actor.0;
    let Some(spec) = child(iq, action) else {
        return iq_error(id, 400, "bad-request");
    };
    let asked: Vec<(Jid, Option<String>)> = children(spec)
        .iter()
        .filter(|n| n.tag == "participant")
        .filter_map(|p| jid_attr(p, "jid"))
        .map(|j| {
            let pn = world.account_pn(&j);
            (j, pn)
        })
        .collect();
    let group = match member_of(world, iq, me) {
        Ok(g) => g,
        Err((code, text)) => return iq_error(id, code, text),
    };
    if !group.is_admin(me) {
        return iq_error(id, 403, "forbidden");
    }
    let mut results = Vec::with_capacity(asked.len());
    let mut done: Vec<String> = Vec::new();
    for (jid, pn) in asked {
        let error = match (action, pn.as_deref()) {
            (_, None) => Some("404"),
            ("add", Some(p)) if group.is_member(p) => Some("409"),
            ("add", Some(p)) => {
                group.participants.push((p.to_owned(), GroupRole::Member));
                done.push(p.to_owned());
                None
            }
            (_, Some(p)) if !group.is_member(p) => Some("404"),
            // The creator cannot be removed (our choice: WhatsApp's own answer is not
            // captured).
            ("remove", Some(p)) if group.creator == p => Some("406"),
            ("remove", Some(p)) => {
                group.participants.retain(|(have, _)| have != p);
                done.push(p.to_owned());
                None
            }
            (_, Some(p)) => {
                let role = if action == "promote" {
                    GroupRole::Admin
                } else {
                    GroupRole::Member
                };
                for (have, r) in &mut group.participants {
                    if have == p {
                        *r = role;
                    }
                }
                done.push(p.to_owned());
                None
            }
        };
        results.push((jid, pn, error));
    }
    let addressing = group.addressing;
    let tag = match action {
        "add" => "add",
        "remove" => "remove",
        "promote" => "promote",
        _ => "demote",
    };
    if !done.is_empty() {
        let mut told: Vec<String> = group.participants.iter().map(|(p, _)| p.clone()).collect();
        if tag == "remove" {
            told.extend(done.iter().cloned());
        }
        let group_id = group.id.clone();
        let change = change_node(world, addressing, tag, &done);
        notify(world, &group_id, &told, actor, change);
    }
    let answers = results
        .into_iter()
        .map(|(jid, pn, error)| answer_node(world, addressing, jid, pn.as_deref(), error));
    iq_result(id, vec![NodeBuilder::new(tag).children(answers).build()])
}

/// One participant's answer to a member change. In a LID group an account is named as the
/// group names it (the client patches its cached member list from the answers, so a number
/// there would mix namespaces); otherwise, and for numbers not on WhatsApp, as it was asked.
fn answer_node(
    world: &World,
    addressing: Addressing,
    asked: Jid,
    pn: Option<&str>,
    error: Option<&str>,
) -> Node {
    let mut answer = match (addressing, pn) {
        (Addressing::Lid, Some(pn)) => participant_node(world, addressing, pn),
        _ => NodeBuilder::new("participant").attr("jid", asked),
    };
    if let Some(code) = error {
        answer = answer.attr("error", code);
    }
    answer.build()
}

/// `<leave><group id/>*</leave>` (to `g.us`): the account leaves each group it names; the
/// other members (and its own other devices) are told it removed itself. A 404 when it
/// was in none of them (our choice).
fn leave(world: &mut World, iq: &Node, id: &str, actor: (&str, u16)) -> Node {
    let me = actor.0;
    let Some(spec) = child(iq, "leave") else {
        return iq_error(id, 400, "bad-request");
    };
    let mut left = Vec::new();
    for g in children(spec).iter().filter(|n| n.tag == "group") {
        let Some(group_id) = attr(g, "id") else {
            continue;
        };
        let user = group_id.split('@').next().unwrap_or_default().to_owned();
        if let Some(group) = world.groups.get_mut(&user)
            && group.is_member(me)
        {
            group.participants.retain(|(p, _)| p != me);
            let mut told: Vec<String> = group.participants.iter().map(|(p, _)| p.clone()).collect();
            told.push(me.to_owned());
            left.push((user, group.addressing, told));
        }
    }
    if left.is_empty() {
        return iq_error(id, 404, "item-not-found");
    }
    for (group_id, addressing, told) in left {
        let change = change_node(world, addressing, "remove", &[me.to_owned()]);
        notify(world, &group_id, &told, actor, change);
    }
    iq_result(id, vec![])
}

/// `<invite/>` to the group: its invite code (get), or a new one (set, by an admin).
fn invite(world: &mut World, iq: &Node, id: &str, me: &str) -> Node {
    let reset = attr(iq, "type").as_deref() == Some("set");
    let fresh = reset.then(|| invite_code(world));
    let group = match member_of(world, iq, me) {
        Ok(g) => g,
        Err((code, text)) => return iq_error(id, code, text),
    };
    // Only admins see or reset the link (non-admins get 403 on WhatsApp too).
    if !group.is_admin(me) {
        return iq_error(id, 403, "forbidden");
    }
    if let Some(code) = fresh {
        group.invite_code = code;
    }
    iq_result(
        id,
        vec![
            NodeBuilder::new("invite")
                .attr("code", group.invite_code.clone())
                .build(),
        ],
    )
}

fn invite_code(world: &mut World) -> String {
    format!("SimInvite{:012}", world.next_counter())
}

/// `<participating/>`: every group the account is in.
fn participating(world: &World, id: &str, me: &str) -> Node {
    let mut mine: Vec<&GroupRecord> = world.groups.values().filter(|g| g.is_member(me)).collect();
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    iq_result(
        id,
        vec![
            NodeBuilder::new("groups")
                .children(mine.into_iter().map(|g| group_node(world, g)))
                .build(),
        ],
    )
}

/// A group as the client parses it, its members and creator named as the group names them
/// (in LID mode with their numbers beside: `creator_pn`, `s_o_pn`, `phone_number`).
fn group_node(world: &World, g: &GroupRecord) -> Node {
    let (creator, creator_pn) = named(world, g.addressing, &g.creator);
    let mut node = NodeBuilder::new("group")
        .attr("id", g.id.clone())
        .attr("subject", g.subject.clone())
        .attr("addressing_mode", g.addressing.as_str())
        .attr("creator", creator.clone())
        .attr("creation", g.creation)
        .attr("s_t", g.creation)
        .attr("s_o", creator)
        .attr("size", g.participants.len());
    if let Some(pn) = creator_pn {
        node = node.attr("creator_pn", pn.clone()).attr("s_o_pn", pn);
    }
    node.children(g.participants.iter().map(|(pn, role)| {
        let p = participant_node(world, g.addressing, pn);
        match role {
            GroupRole::Member => p,
            GroupRole::Admin => p.attr("type", "admin"),
            GroupRole::SuperAdmin => p.attr("type", "superadmin"),
        }
        .build()
    }))
    .build()
}
