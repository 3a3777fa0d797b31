//! Groups (`w:g2` IQs): creating one, reading its metadata, and listing the groups an
//! account is in. Groups address their members by phone number (`addressing_mode="pn"`);
//! the shapes are what whatsapp-rust 0.7 parses (wacore `iq/groups.rs`). Changing members,
//! group messages (sender keys) and `w:gp2` notifications are the next steps
//! (docs/plans/groups.md).

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
                GroupRole::SuperAdmin => p.attr("type", "superadmin"),
            }
            .build()
        }))
        .build()
}
