//! Groups (`w:g2` IQs): creating one, reading its metadata, listing the groups an account
//! is in, adding, removing, promoting and demoting members (admins only), leaving, and the
//! invite link. Groups address their members by phone number (`addressing_mode="pn"`); the
//! shapes are what whatsapp-rust 0.7 parses (wacore `iq/groups.rs`), and the error codes
//! (403 not an admin or not a member, 404 unknown, 409 already a member) are plausible
//! choices, not captured traffic. Group messages (sender keys) and `w:gp2` notifications
//! are the next steps (docs/plans/groups.md).

use tracing::{debug, warn};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::stanza::{self, attr, child, children, iq_error, iq_result, jid_attr};
use crate::world::{GroupRecord, GroupRole, World};

pub(crate) fn handle(conn: &mut Conn, iq: &Node, id: &str, action: &str) -> Replies {
    let Some((pn, _)) = conn.me.clone() else {
        return Replies::one(iq_error(id, 401, "not-authorized"));
    };
    let mut world = conn.shared.lock();
    let reply = match action {
        "create" => create(&mut world, iq, id, &pn),
        "query" => query(&world, iq, id, &pn),
        "participating" => participating(&world, id, &pn),
        "add" | "remove" | "promote" | "demote" => change(&mut world, iq, id, &pn, action),
        "leave" => leave(&mut world, iq, id, &pn),
        "invite" => invite(&mut world, iq, id, &pn),
        _ => {
            warn!(stanza = %stanza::show(iq), "group request not simulated");
            iq_error(id, 501, "feature-not-implemented")
        }
    };
    Replies::one(reply)
}

/// `<create subject><participant jid/>*</create>`: the creator is its super admin; the
/// numbers that are on (simulated) WhatsApp join, the others are left out.
fn create(world: &mut World, iq: &Node, id: &str, creator: &str) -> Node {
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
    world.groups.insert(group.id.clone(), group);
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
/// answered on its own (`error` when that one could not be changed).
fn change(world: &mut World, iq: &Node, id: &str, me: &str, action: &str) -> Node {
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
    for (jid, pn) in asked {
        let error = match (action, pn) {
            (_, None) => Some("404"),
            ("add", Some(pn)) if group.is_member(&pn) => Some("409"),
            ("add", Some(pn)) => {
                group.participants.push((pn, GroupRole::Member));
                None
            }
            (_, Some(pn)) if !group.is_member(&pn) => Some("404"),
            ("remove", Some(pn)) => {
                group.participants.retain(|(p, _)| *p != pn);
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
                None
            }
        };
        let mut answer = NodeBuilder::new("participant").attr("jid", jid);
        if let Some(code) = error {
            answer = answer.attr("error", code);
        }
        answers.push(answer.build());
    }
    iq_result(
        id,
        vec![
            NodeBuilder::new(match action {
                "add" => "add",
                "remove" => "remove",
                "promote" => "promote",
                _ => "demote",
            })
            .children(answers)
            .build(),
        ],
    )
}

/// `<leave><group id/>*</leave>` (to `g.us`): the account leaves each group it names.
fn leave(world: &mut World, iq: &Node, id: &str, me: &str) -> Node {
    let Some(spec) = child(iq, "leave") else {
        return iq_error(id, 400, "bad-request");
    };
    for g in children(spec).iter().filter(|n| n.tag == "group") {
        let Some(group_id) = attr(g, "id") else {
            continue;
        };
        let user = group_id.split('@').next().unwrap_or_default().to_owned();
        if let Some(group) = world.groups.get_mut(&user) {
            group.participants.retain(|(p, _)| p != me);
        }
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
    if let Some(code) = fresh {
        if !group.is_admin(me) {
            return iq_error(id, 403, "forbidden");
        }
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
