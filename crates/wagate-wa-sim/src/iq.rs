//! The IQ router: every `<iq>` a client sends gets an answer.
//!
//! Known requests get plausible answers (shapes are what whatsapp-rust 0.7 parses, not captured
//! WhatsApp traffic). Unknown ones get an empty `result` and a `warn!`, so the client fails fast
//! instead of waiting out its 75 s IQ timeout, and a protocol-crate upgrade shows in the logs
//! what it started asking for.

use tracing::{debug, warn};
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::stanza::{self, SERVER, attr, bytes, child, children, iq_error, iq_result, jid_attr};
use crate::world::DeviceKeys;
use crate::{adv, groups, media, pairing, usync};

pub(crate) fn handle(conn: &mut Conn, iq: &Node) -> Replies {
    let id = attr(iq, "id").unwrap_or_default();
    let kind = attr(iq, "type").unwrap_or_default();
    if kind == "result" || kind == "error" {
        return pairing::client_response(conn, iq, &id);
    }
    let xmlns = attr(iq, "xmlns").unwrap_or_default();
    let first = children(iq)
        .first()
        .map(|n| n.tag.to_string())
        .unwrap_or_default();
    if xmlns == "md" && first == "link_code_companion_reg" {
        return pairing::companion_reg(conn, iq, &id);
    }
    if conn.me.is_none() && xmlns != "w:p" {
        // Before login only pairing traffic (handled above) and pings are expected.
        warn!(conn = conn.id, stanza = %stanza::show(iq), "iq before login");
        return Replies::one(iq_error(&id, 401, "not-authorized"));
    }
    match (xmlns.as_str(), first.as_str()) {
        ("passive", "active") => active(conn, &id),
        ("passive", _) | ("w:p", _) => Replies::one(iq_result(&id, vec![])),
        ("encrypt", "registration") => upload_prekeys(conn, iq, &id),
        ("encrypt", "count") => prekey_count(conn, &id),
        ("encrypt", "key") => fetch_bundles(conn, iq, &id),
        ("encrypt", "rotate") => rotate_signed_prekey(conn, iq, &id),
        // The digest check only validates our copy of the keys; an empty result is accepted.
        ("encrypt", "digest") => Replies::one(iq_result(&id, vec![])),
        ("usync", "usync") => usync::handle(conn, iq, &id),
        ("w:g2", action) => groups::handle(conn, iq, &id, action),
        ("abt" | "w", "props") => Replies::one(iq_result(
            &id,
            vec![
                NodeBuilder::new("props")
                    .attr("protocol", "1")
                    .attr("hash", "sim")
                    .build(),
            ],
        )),
        ("privacy", "privacy") => Replies::one(iq_result(&id, vec![privacy()])),
        ("privacy", "tokens") | ("blocklist", _) => Replies::one(iq_result(&id, vec![])),
        ("w:sync:app:state", "sync") => app_state(iq, &id),
        ("w:m", "media_conn") => Replies::one(iq_result(&id, vec![media::media_conn_node()])),
        ("md", "remove-companion-device") => remove_companion(conn, iq, &id),
        _ => {
            warn!(conn = conn.id, stanza = %stanza::show(iq), "unhandled iq; answering with an empty result");
            Replies::one(iq_result(&id, vec![]))
        }
    }
}

/// `<active/>` marks the device online: queued stanzas go out first, then the offline marker
/// `<ib><offline count/></ib>` without which the client holds `Connected` back for 60 s.
fn active(conn: &mut Conn, id: &str) -> Replies {
    let Some((pn, device)) = conn.me.clone() else {
        return Replies::one(iq_result(id, vec![]));
    };
    let mut nodes = vec![iq_result(id, vec![])];
    let mut world = conn.shared.lock();
    if let Some(record) = world
        .accounts
        .get_mut(&pn)
        .and_then(|a| a.devices.get_mut(&device))
    {
        let queued = std::mem::take(&mut record.queue);
        record.online = true;
        for node in &queued {
            record.sent(node);
        }
        nodes.extend(queued);
    }
    drop(world);
    let count = nodes.len() - 1;
    debug!(%pn, device, count, "device active; offline queue drained");
    nodes.push(
        NodeBuilder::new("ib")
            .attr("from", SERVER)
            .children([NodeBuilder::new("offline").attr("count", count).build()])
            .build(),
    );
    Replies {
        nodes,
        close: false,
    }
}

fn be_u32(b: &[u8]) -> Option<u32> {
    match b.len() {
        3 => Some(u32::from_be_bytes([0, b[0], b[1], b[2]])),
        4 => Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        _ => None,
    }
}

fn child_bytes(node: &Node, tag: &str) -> Option<Vec<u8>> {
    child(node, tag).and_then(bytes).map(<[u8]>::to_vec)
}

fn upload_prekeys(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let parsed = (|| {
        let registration_id = be_u32(&child_bytes(iq, "registration")?)?;
        let identity = child_bytes(iq, "identity")?;
        let skey = child(iq, "skey")?;
        let one_time = child(iq, "list")
            .map(|list| {
                children(list)
                    .iter()
                    .filter_map(|k| {
                        Some((be_u32(&child_bytes(k, "id")?)?, child_bytes(k, "value")?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(DeviceKeys {
            registration_id,
            identity,
            signed_id: be_u32(&child_bytes(skey, "id")?)?,
            signed_pub: child_bytes(skey, "value")?,
            signed_sig: child_bytes(skey, "signature")?,
            one_time,
        })
    })();
    let Some(mut keys) = parsed else {
        warn!(stanza = %stanza::show(iq), "malformed prekey upload");
        return Replies::one(iq_error(id, 400, "bad-request"));
    };
    let Some((pn, device)) = conn.me.clone() else {
        return Replies::one(iq_error(id, 401, "not-authorized"));
    };
    let mut world = conn.shared.lock();
    if let Some(record) = world
        .accounts
        .get_mut(&pn)
        .and_then(|a| a.devices.get_mut(&device))
    {
        // An upload adds one-time keys to those the server still holds for the same identity.
        if let Some(old) = record.keys.take()
            && old.identity == keys.identity
        {
            let mut merged = old.one_time;
            merged.extend(keys.one_time);
            keys.one_time = merged;
        }
        debug!(%pn, device, count = keys.one_time.len(), "prekeys stored");
        record.keys = Some(keys);
    }
    Replies::one(iq_result(id, vec![]))
}

fn prekey_count(conn: &mut Conn, id: &str) -> Replies {
    let count = conn
        .me
        .as_ref()
        .and_then(|(pn, device)| {
            let world = conn.shared.lock();
            world
                .accounts
                .get(pn)
                .and_then(|a| a.devices.get(device))
                .and_then(|d| d.keys.as_ref())
                .map(|k| k.one_time.len())
        })
        .unwrap_or(0);
    Replies::one(iq_result(
        id,
        vec![NodeBuilder::new("count").attr("value", count).build()],
    ))
}

fn rotate_signed_prekey(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let skey = child(iq, "rotate").and_then(|r| child(r, "skey"));
    let parsed = skey.and_then(|s| {
        Some((
            be_u32(&child_bytes(s, "id")?)?,
            child_bytes(s, "value")?,
            child_bytes(s, "signature")?,
        ))
    });
    if let (Some((signed_id, public, sig)), Some((pn, device))) = (parsed, conn.me.clone()) {
        let mut world = conn.shared.lock();
        if let Some(keys) = world
            .accounts
            .get_mut(&pn)
            .and_then(|a| a.devices.get_mut(&device))
            .and_then(|d| d.keys.as_mut())
        {
            keys.signed_id = signed_id;
            keys.signed_pub = public;
            keys.signed_sig = sig;
        }
    }
    Replies::one(iq_result(id, vec![]))
}

fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

/// Prekey bundles for the requested devices. Lookups mix namespaces (a peer's LID, our own PN),
/// so every JID is resolved through the PN↔LID map. One one-time key is consumed per bundle.
fn fetch_bundles(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let Some(key) = child(iq, "key") else {
        return Replies::one(iq_error(id, 400, "bad-request"));
    };
    let mut users = Vec::new();
    let mut world = conn.shared.lock();
    for user in children(key).iter().filter(|u| u.tag == "user") {
        let Some(jid) = jid_attr(user, "jid") else {
            continue;
        };
        let jid_value = user.attrs.get("jid").cloned().unwrap_or_default();
        let record = world
            .account_pn(&jid)
            .and_then(|pn| world.accounts.get_mut(&pn))
            .and_then(|a| a.devices.get_mut(&jid.device))
            .filter(|d| !d.removed);
        let Some((keys, device_identity)) = record.and_then(|d| {
            let identity = d.device_identity.clone();
            let keys = d.keys.as_mut()?;
            let one_time = keys.one_time.pop_front();
            Some(((keys.clone(), one_time), identity))
        }) else {
            debug!(%jid, "no bundle for device");
            users.push(
                NodeBuilder::new("user")
                    .attr("jid", jid_value)
                    .children([NodeBuilder::new("error")
                        .attr("code", "404")
                        .attr("text", "item-not-found")
                        .build()])
                    .build(),
            );
            continue;
        };
        let (keys, one_time) = keys;
        let mut content = vec![
            NodeBuilder::new("registration")
                .bytes(keys.registration_id.to_be_bytes().to_vec())
                .build(),
            NodeBuilder::new("type").bytes(vec![5u8]).build(),
            NodeBuilder::new("identity").bytes(keys.identity).build(),
            NodeBuilder::new("skey")
                .children([
                    NodeBuilder::new("id").bytes(id3(keys.signed_id)).build(),
                    NodeBuilder::new("value").bytes(keys.signed_pub).build(),
                    NodeBuilder::new("signature").bytes(keys.signed_sig).build(),
                ])
                .build(),
        ];
        if let Some((key_id, value)) = one_time {
            content.push(
                NodeBuilder::new("key")
                    .children([
                        NodeBuilder::new("id").bytes(id3(key_id)).build(),
                        NodeBuilder::new("value").bytes(value).build(),
                    ])
                    .build(),
            );
        }
        if jid.device != 0
            && let Some(identity) = device_identity
        {
            content.push(NodeBuilder::new("device-identity").bytes(identity).build());
        }
        users.push(
            NodeBuilder::new("user")
                .attr("jid", jid_value)
                .children(content)
                .build(),
        );
    }
    drop(world);
    Replies::one(iq_result(
        id,
        vec![NodeBuilder::new("list").children(users).build()],
    ))
}

fn privacy() -> Node {
    let categories = [
        "last",
        "online",
        "profile",
        "status",
        "readreceipts",
        "groupadd",
        "calladd",
    ];
    NodeBuilder::new("privacy")
        .children(categories.iter().map(|name| {
            NodeBuilder::new("category")
                .attr("name", *name)
                .attr("value", "all")
                .build()
        }))
        .build()
}

/// Every requested app-state collection answered as "version 0, nothing to sync". The client
/// counts that as synced; an empty `result` would be a parse error and, after a fresh pairing,
/// leave it without `Connected` until its 180 s watchdog.
fn app_state(iq: &Node, id: &str) -> Replies {
    let collections: Vec<Node> = child(iq, "sync")
        .map(children)
        .unwrap_or_default()
        .iter()
        .filter(|c| c.tag == "collection")
        .filter_map(|c| attr(c, "name"))
        .map(|name| {
            NodeBuilder::new("collection")
                .attr("name", name)
                .attr("version", "0")
                .build()
        })
        .collect();
    Replies::one(iq_result(
        id,
        vec![NodeBuilder::new("sync").children(collections).build()],
    ))
}

/// The client's own logout (`Client::logout`): the device is unlinked for good.
fn remove_companion(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let target = child(iq, "remove-companion-device").and_then(|n| jid_attr(n, "jid"));
    let mut world = conn.shared.lock();
    if let Some(target) = target
        && let Some(pn) = world.account_pn(&target)
        && let Some(record) = world
            .accounts
            .get_mut(&pn)
            .and_then(|a| a.devices.get_mut(&target.device))
    {
        record.removed = true;
        debug!(%target, "companion removed by its own logout");
    }
    Replies::one(iq_result(id, vec![]))
}

/// Used by usync and the key-index list.
pub(crate) fn key_index_list(world: &crate::world::World, pn: &str) -> Option<Vec<u8>> {
    let account = world.accounts.get(pn)?;
    let indexes: Vec<u32> = account
        .linked_devices()
        .into_iter()
        .filter(|d| *d != 0)
        .map(u32::from)
        .collect();
    Some(adv::signed_key_index_list(
        &account.phone.identity_key,
        account.raw_id,
        &indexes,
    ))
}
