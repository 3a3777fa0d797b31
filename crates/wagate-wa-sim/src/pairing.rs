//! QR pairing of a fresh client by an account's simulated phone.
//!
//! Flow (what whatsapp-rust 0.7 expects): the server offers refs in `<pair-device>`; the client
//! shows them as QR codes; the test asks the simulator's phone to "scan" one, which sends
//! `<pair-success>` with an ADV identity signed by the account key and HMAC'd with the QR's ADV
//! secret; the client answers with its own device signature, the server stores that as the
//! device's `<device-identity>`, ends the stream with 515, and the client logs in as the new
//! companion.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tracing::{debug, warn};
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::Node;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;

use crate::conn::{Conn, Replies};
use crate::stanza::{self, SERVER, bytes, child};
use crate::world::{ConnCmd, DeviceRecord};
use crate::{Shared, adv};

const REFS_PER_CONNECTION: usize = 6;

/// First answer to a registration (unpaired) login: the refs the client turns into QR codes.
pub(crate) fn offer_refs(conn: &mut Conn) -> Replies {
    let mut world = conn.shared.lock();
    let mut refs = Vec::with_capacity(REFS_PER_CONNECTION);
    for _ in 0..REFS_PER_CONNECTION {
        let r = format!("2@sim-ref-{}", world.next_counter());
        world.pairing_refs.insert(r.clone(), conn.id);
        refs.push(NodeBuilder::new("ref").bytes(r.into_bytes()).build());
    }
    let id = format!("pair-{}", world.next_counter());
    drop(world);
    Replies::one(
        NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "set")
            .attr("id", id)
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-device").children(refs).build()])
            .build(),
    )
}

/// The fields of a QR code the phone needs.
struct Qr {
    reference: String,
    identity_pub: Vec<u8>,
    adv_secret: Vec<u8>,
}

fn parse_qr(code: &str) -> Result<Qr> {
    let parts: Vec<&str> = code.split(',').collect();
    let [reference, _noise, identity, secret, ..] = parts.as_slice() else {
        bail!("QR code has {} fields, expected at least 4", parts.len());
    };
    Ok(Qr {
        reference: (*reference).to_string(),
        identity_pub: STANDARD.decode(identity).context("QR identity key")?,
        adv_secret: STANDARD.decode(secret).context("QR ADV secret")?,
    })
}

/// The phone of account `pn` scans `code`. Returns the new companion's PN device JID.
pub(crate) fn scan(shared: &Shared, pn: &str, code: &str) -> Result<Jid> {
    let qr = parse_qr(code)?;
    let mut world = shared.lock();
    let conn = *world
        .pairing_refs
        .get(&qr.reference)
        .ok_or_else(|| anyhow!("no waiting client shows QR ref {}", qr.reference))?;
    let iq_id = format!("pair-success-{}", world.next_counter());
    let account = world
        .accounts
        .get_mut(pn)
        .ok_or_else(|| anyhow!("no account {pn}"))?;
    let device = account.next_device;
    account.next_device += 1;
    // Reserved but not linked until the client returns its signature.
    account.devices.insert(device, DeviceRecord::default());
    let signed = adv::account_signed_identity(
        &account.phone.identity_key,
        adv::device_details(device, account.raw_id),
        &qr.identity_pub,
    )?;
    let container = adv::hmac_container(&signed, &qr.adv_secret);
    let (pn_jid, lid_jid) = (account.pn_jid(device), account.lid_jid(device));
    let success = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", iq_id.clone())
        .attr("xmlns", "md")
        .attr("t", stanza::now_secs())
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device")
                    .attr("jid", pn_jid.clone())
                    .attr("lid", lid_jid)
                    .build(),
                NodeBuilder::new("device-identity").bytes(container).build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
            ])
            .build()])
        .build();
    world
        .pending_pairs
        .insert(iq_id, (conn, pn.to_string(), device));
    world.pairing_refs.retain(|_, c| *c != conn);
    if !world.send_to_conn(conn, ConnCmd::Send(success)) {
        bail!("the client showing this QR code disconnected");
    }
    debug!(%pn_jid, "phone scanned QR code");
    Ok(pn_jid)
}

/// A client's `result`/`error` to an iq the server sent. Only the answer to `<pair-success>`
/// matters; the others (acks of `<pair-device>`) need nothing.
pub(crate) fn client_response(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let mut world = conn.shared.lock();
    let Some((_, pn, device)) = world.pending_pairs.remove(id) else {
        return Replies::none();
    };
    let signed = child(iq, "pair-device-sign")
        .and_then(|s| child(s, "device-identity"))
        .and_then(bytes)
        .map(<[u8]>::to_vec);
    let Some(signed) = signed else {
        warn!(%pn, device, stanza = %stanza::show(iq), "pairing rejected by the client");
        if let Some(account) = world.accounts.get_mut(&pn) {
            account.devices.remove(&device);
        }
        return Replies::none();
    };
    if let Some(record) = world
        .accounts
        .get_mut(&pn)
        .and_then(|a| a.devices.get_mut(&device))
    {
        record.device_identity = Some(signed);
    }
    debug!(%pn, device, "companion linked; restarting its stream (515)");
    // The client reconnects at once and logs in as the new companion.
    Replies::closing(vec![
        NodeBuilder::new("stream:error").attr("code", "515").build(),
    ])
}
