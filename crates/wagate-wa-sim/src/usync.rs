//! `usync`: the user-directory query. The client asks it for a contact's LID before sending,
//! for device lists (its own and a peer's) before encrypting, and for `contact` existence in
//! `is_on_whatsapp`. Registered and unregistered numbers must answer differently.

use tracing::warn;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeValue};
use whatsapp_rust::{Jid, Server};

use crate::conn::{Conn, Replies};
use crate::iq::key_index_list;
use crate::stanza::{self, attr, child, children, iq_error, iq_result, text};
use crate::world::World;

/// Protocols the simulator knows. Those without data here are answered with nothing for the
/// user, which the client reads as "no value".
const KNOWN: &[&str] = &[
    "devices",
    "lid",
    "contact",
    "business",
    "status",
    "picture",
    "disappearing_mode",
    "text_status",
    "username",
];

pub(crate) fn handle(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let Some(usync) = child(iq, "usync") else {
        return Replies::one(iq_error(id, 400, "bad-request"));
    };
    let protocols: Vec<String> = child(usync, "query")
        .map(children)
        .unwrap_or_default()
        .iter()
        .map(|p| p.tag.to_string())
        .collect();
    for unknown in protocols.iter().filter(|p| !KNOWN.contains(&p.as_str())) {
        warn!(protocol = %unknown, stanza = %stanza::show(iq), "unknown usync protocol; answering without it");
    }
    let world = conn.shared.lock();
    let users: Vec<Node> = child(usync, "list")
        .map(children)
        .unwrap_or_default()
        .iter()
        .filter(|u| u.tag == "user")
        .filter_map(|u| answer_user(&world, u, &protocols))
        .collect();
    drop(world);

    let mut reply = NodeBuilder::new("usync");
    for key in ["sid", "mode", "context", "index", "last"] {
        if let Some(value) = attr(usync, key) {
            reply = reply.attr(key, value);
        }
    }
    let result = NodeBuilder::new("result")
        .children(
            protocols
                .iter()
                .map(|p| NodeBuilder::new_dynamic(p.clone()).build()),
        )
        .build();
    let list = NodeBuilder::new("list").children(users).build();
    Replies::one(iq_result(id, vec![reply.children([result, list]).build()]))
}

fn answer_user(world: &World, user: &Node, protocols: &[String]) -> Option<Node> {
    // A user is named either by `jid` or, in a contact query, by its phone number as content.
    let contact = child(user, "contact").and_then(text);
    let (jid_value, jid) = match (user.attrs.get("jid"), &contact) {
        (Some(value), _) => (value.clone(), value.to_jid()?),
        (None, Some(phone)) => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let jid = Jid::pn(digits);
            (NodeValue::Jid(jid.clone()), jid)
        }
        (None, None) => return None,
    };
    let account = world.account_of(&jid);
    let mut answers = Vec::new();
    for protocol in protocols {
        match protocol.as_str() {
            "contact" => {
                let kind = if account.is_some() { "in" } else { "out" };
                let mut node = NodeBuilder::new("contact").attr("type", kind);
                if let Some(phone) = &contact {
                    node = node.string_content(phone.clone());
                }
                answers.push(node.build());
            }
            "lid" => {
                let mut node = NodeBuilder::new("lid");
                if let Some(account) = account
                    && jid.server == Server::Pn
                {
                    node = node.attr("val", Jid::lid(account.lid.clone()));
                }
                answers.push(node.build());
            }
            "devices" => {
                let mut list = NodeBuilder::new("device-list");
                let mut content = Vec::new();
                if let Some(account) = account {
                    list = list.children(account.linked_devices().into_iter().map(|d| {
                        let node = NodeBuilder::new("device").attr("id", d);
                        if d == 0 {
                            node.build()
                        } else {
                            node.attr("key-index", d).build()
                        }
                    }));
                    content.push(list.build());
                    if let Some(bytes) = key_index_list(world, &account.pn) {
                        content.push(
                            NodeBuilder::new("key-index-list")
                                .attr("ts", stanza::now_secs())
                                .bytes(bytes)
                                .build(),
                        );
                    }
                } else {
                    content.push(list.build());
                }
                answers.push(NodeBuilder::new("devices").children(content).build());
            }
            _ => {}
        }
    }
    Some(
        NodeBuilder::new("user")
            .attr("jid", jid_value)
            .children(answers)
            .build(),
    )
}
