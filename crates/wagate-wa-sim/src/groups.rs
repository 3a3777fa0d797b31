//! Groups (`w:g2` IQs): creating one, reading its metadata, listing the groups an account
//! is in, adding, removing, promoting and demoting members (admins only), leaving, and the
//! invite link. Groups address their members by phone number (`addressing_mode="pn"`); the
//! shapes are what whatsapp-rust 0.7 parses (wacore `iq/groups.rs`), and the error codes
//! (403 not an admin or not a member, 404 unknown, 409 already a member) are plausible
//! choices, not captured traffic. Every change is announced to the members' devices as a
//! `w:gp2` notification, and group messages, receipts and chat states are relayed by
//! [`crate::group_relay`].

use tracing::{debug, warn};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::group_relay::{change_node, notify};
use crate::stanza::{self, attr, child, children, iq_error, iq_result, jid_attr};
use crate::world::{GroupRecord, GroupRole, World};

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
/// numbers that are on (simulated) WhatsApp join, the others are left out. The members'
/// devices are told with `<create><group/></create>`.
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
        creator: creator.to_owned(),
        creation: now,
        participants,
        invite_code: invite_code(world),
    };
    let node = group_node(&group);
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
        Some(g) => iq_result(id, vec![group_node(g)]),
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
/// answered on its own (`error` when that one could not be changed). The members (and those
/// removed) are told of the changes made.
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
    let mut answers = Vec::with_capacity(asked.len());
    let mut done: Vec<String> = Vec::new();
    for (jid, pn) in asked {
        let error = match (action, pn) {
            (_, None) => Some("404"),
            ("add", Some(pn)) if group.is_member(&pn) => Some("409"),
            ("add", Some(pn)) => {
                group.participants.push((pn.clone(), GroupRole::Member));
                done.push(pn);
                None
            }
            (_, Some(pn)) if !group.is_member(&pn) => Some("404"),
            // The creator cannot be removed (our choice: WhatsApp's own answer is not
            // captured).
            ("remove", Some(pn)) if group.creator == pn => Some("406"),
            ("remove", Some(pn)) => {
                group.participants.retain(|(p, _)| *p != pn);
                done.push(pn);
                None
            }
            (_, Some(pn)) => {
                let role = if action == "promote" {
                    GroupRole::Admin
                } else {
                    GroupRole::Member
                };
                for (p, r) in &mut group.participants {
                    if *p == pn {
                        *r = role;
                    }
                }
                done.push(pn);
                None
            }
        };
        let mut answer = NodeBuilder::new("participant").attr("jid", jid);
        if let Some(code) = error {
            answer = answer.attr("error", code);
        }
        answers.push(answer.build());
    }
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
        notify(world, &group_id, &told, actor, change_node(tag, &done));
    }
    iq_result(id, vec![NodeBuilder::new(tag).children(answers).build()])
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
            left.push((user, told));
        }
    }
    if left.is_empty() {
        return iq_error(id, 404, "item-not-found");
    }
    for (group_id, told) in left {
        notify(
            world,
            &group_id,
            &told,
            actor,
            change_node("remove", &[me.to_owned()]),
        );
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
                .children(mine.into_iter().map(group_node))
                .build(),
        ],
    )
}

/// A group as the client parses it.
fn group_node(g: &GroupRecord) -> Node {
    let creator = Jid::pn(g.creator.clone());
    NodeBuilder::new("group")
        .attr("id", g.id.clone())
        .attr("subject", g.subject.clone())
        .attr("addressing_mode", "pn")
        .attr("creator", creator.clone())
        .attr("creation", g.creation)
        .attr("s_t", g.creation)
        .attr("s_o", creator)
        .attr("size", g.participants.len())
        .children(g.participants.iter().map(|(pn, role)| {
            let p = NodeBuilder::new("participant").attr("jid", Jid::pn(pn.clone()));
            match role {
                GroupRole::Member => p,
                GroupRole::Admin => p.attr("type", "admin"),
                GroupRole::SuperAdmin => p.attr("type", "superadmin"),
            }
            .build()
        }))
        .build()
}
