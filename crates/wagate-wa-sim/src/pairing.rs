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

use whatsapp_rust::wacore::crypto::hkdf_sha256_into;
use whatsapp_rust::wacore::libsignal::crypto::aes_256_gcm_decrypt;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PublicKey};
use whatsapp_rust::wacore::pair_code::PairCodeUtils;

use crate::conn::{Conn, Replies};
use crate::stanza::{self, SERVER, bytes, child, iq_error, iq_result};
use crate::world::{ConnCmd, ConnId, DeviceRecord, World};
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
    let (jid, success) = pair_success(&mut world, conn, pn, &qr.identity_pub, &qr.adv_secret)?;
    if !world.send_to_conn(conn, ConnCmd::Send(success)) {
        bail!("the client showing this QR code disconnected");
    }
    debug!(%jid, "phone scanned QR code");
    Ok(jid)
}

/// Links a new companion of `pn` for the client on `conn`: reserves a device id and builds the
/// `<pair-success>` iq (ADV identity signed by the account key, HMAC'd with `adv_secret`).
fn pair_success(
    world: &mut World,
    conn: ConnId,
    pn: &str,
    identity_pub: &[u8],
    adv_secret: &[u8],
) -> Result<(Jid, Node)> {
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
        identity_pub,
    )?;
    let container = adv::hmac_container(&signed, adv_secret);
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
    // One pairing per connection: its other QR refs and any pair code are void now.
    world.pairing_refs.retain(|_, c| *c != conn);
    world.pair_codes.retain(|_, p| p.conn != conn);
    Ok((pn_jid, success))
}

// ---- pair code ("link with phone number instead") -------------------------------------

/// Stage 1 seen: a client asked to link to `pn` and is waiting for someone to type its code.
pub(crate) struct PendingCode {
    pub(crate) conn: ConnId,
    reference: Vec<u8>,
    wrapped_companion_ephemeral: Vec<u8>,
    /// Set once the phone entered the code (stage 2 sent).
    primary: Option<(KeyPair, [u8; 32])>,
}

fn content(node: &Node, tag: &str) -> Option<Vec<u8>> {
    child(node, tag).and_then(bytes).map(<[u8]>::to_vec)
}

/// `<iq xmlns="md"><link_code_companion_reg stage=…>`: stage 1 (`companion_hello`) and the
/// client's last step (`companion_finish`), which the simulated phone answers with
/// `<pair-success>`.
pub(crate) fn companion_reg(conn: &mut Conn, iq: &Node, id: &str) -> Replies {
    let Some(reg) = child(iq, "link_code_companion_reg") else {
        return Replies::one(iq_error(id, 400, "bad-request"));
    };
    match stanza::attr(reg, "stage").as_deref() {
        Some("companion_hello") => {
            let pn = stanza::jid_attr(reg, "jid").map(|j| j.user.to_string());
            let wrapped = content(reg, "link_code_pairing_wrapped_companion_ephemeral_pub");
            let mut world = conn.shared.lock();
            let (Some(pn), Some(wrapped)) =
                (pn.filter(|p| world.accounts.contains_key(p)), wrapped)
            else {
                return Replies::one(iq_error(id, 400, "bad-request"));
            };
            let reference = format!("sim-code-ref-{}", world.next_counter()).into_bytes();
            world.pair_codes.insert(
                pn,
                PendingCode {
                    conn: conn.id,
                    reference: reference.clone(),
                    wrapped_companion_ephemeral: wrapped,
                    primary: None,
                },
            );
            Replies::one(iq_result(
                id,
                vec![
                    NodeBuilder::new("link_code_companion_reg")
                        .children([NodeBuilder::new("link_code_pairing_ref")
                            .bytes(reference)
                            .build()])
                        .build(),
                ],
            ))
        }
        Some("companion_finish") => match companion_finish(conn, reg) {
            Ok(success) => Replies {
                nodes: vec![iq_result(id, vec![]), success],
                close: false,
            },
            Err(e) => {
                warn!(error = %e, "pair code stage 3 failed");
                Replies::one(iq_error(id, 400, "bad-request"))
            }
        },
        other => {
            warn!(stage = ?other, stanza = %stanza::show(iq), "unhandled link_code_companion_reg stage");
            Replies::one(iq_result(id, vec![]))
        }
    }
}

/// The phone of `pn` has its user type `code`: stage 2 (`primary_hello`) goes to the client.
pub(crate) fn enter_code(shared: &Shared, pn: &str, code: &str) -> Result<()> {
    let (conn, reference, wrapped) = {
        let world = shared.lock();
        let pending = world
            .pair_codes
            .get(pn)
            .ok_or_else(|| anyhow!("no client waits for a pair code for {pn}"))?;
        (
            pending.conn,
            pending.reference.clone(),
            pending.wrapped_companion_ephemeral.clone(),
        )
    };
    // Two PBKDF2 runs (131k rounds each): done outside the lock.
    let companion_ephemeral = PairCodeUtils::decrypt_primary_ephemeral_pub(&wrapped, code)
        .map_err(|e| anyhow!("cannot unwrap the companion key: {e}"))?;
    let primary = whatsapp_rust::wacore::crypto::generate_curve_key_pair();
    let primary_pub: [u8; 32] = primary
        .public_key
        .public_key_bytes()
        .try_into()
        .map_err(|_| anyhow!("curve25519 public key is not 32 bytes"))?;
    let wrapped_primary = PairCodeUtils::encrypt_ephemeral_pub(&primary_pub, code);
    let mut world = shared.lock();
    let identity = world
        .accounts
        .get(pn)
        .map(|a| a.phone.identity_key.public_key.public_key_bytes().to_vec())
        .ok_or_else(|| anyhow!("no account {pn}"))?;
    match world.pair_codes.get_mut(pn) {
        Some(pending) if pending.reference == reference => {
            pending.primary = Some((primary, companion_ephemeral));
        }
        _ => bail!("the pair-code request for {pn} was replaced meanwhile"),
    }
    let n = world.next_counter();
    let hello = NodeBuilder::new("notification")
        .attr("from", SERVER)
        .attr("id", format!("sim-notif-{n}"))
        .attr("type", "link_code_companion_reg")
        .attr("t", stanza::now_secs())
        .children([NodeBuilder::new("link_code_companion_reg")
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(wrapped_primary.to_vec())
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(identity)
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(reference)
                    .build(),
            ])
            .build()])
        .build();
    if !world.send_to_conn(conn, ConnCmd::Send(hello)) {
        bail!("the client waiting for the pair code disconnected");
    }
    Ok(())
}

/// Unwraps the client's key bundle the way the primary phone does, derives the ADV secret
/// from it, and links the device.
fn companion_finish(conn: &mut Conn, reg: &Node) -> Result<Node> {
    let wrapped = content(reg, "link_code_pairing_wrapped_key_bundle")
        .ok_or_else(|| anyhow!("no key bundle"))?;
    let reference =
        content(reg, "link_code_pairing_ref").ok_or_else(|| anyhow!("no pairing ref"))?;
    let mut world = conn.shared.lock();
    let pn = world
        .pair_codes
        .iter()
        .find(|(_, p)| p.reference == reference && p.conn == conn.id)
        .map(|(pn, _)| pn.clone())
        .ok_or_else(|| anyhow!("unknown pairing ref"))?;
    let (primary, companion_ephemeral) = world
        .pair_codes
        .get(&pn)
        .and_then(|p| p.primary.clone())
        .ok_or_else(|| anyhow!("companion_finish before the phone entered the code"))?;
    let phone_identity = world
        .accounts
        .get(&pn)
        .map(|a| a.phone.identity_key.clone())
        .ok_or_else(|| anyhow!("no account {pn}"))?;
    if wrapped.len() < 32 + 12 + 16 {
        bail!("key bundle too short");
    }
    let (salt, rest) = wrapped.split_at(32);
    let (iv, sealed) = rest.split_at(12);
    let iv: [u8; 12] = iv.try_into().map_err(|_| anyhow!("bad iv"))?;
    let ephemeral_shared = primary
        .private_key
        .calculate_agreement(&PublicKey::from_djb_public_key_bytes(&companion_ephemeral)?)?;
    let mut key = [0u8; 32];
    hkdf_sha256_into(
        &ephemeral_shared,
        Some(salt),
        b"link_code_pairing_key_bundle_encryption_key",
        &mut key,
    )
    .map_err(|e| anyhow!("hkdf: {e:?}"))?;
    let mut bundle = Vec::new();
    aes_256_gcm_decrypt(&key, &iv, b"", sealed, &mut bundle)
        .map_err(|e| anyhow!("key bundle does not decrypt (wrong code?): {e:?}"))?;
    if bundle.len() != 96 {
        bail!("key bundle has {} bytes, expected 96", bundle.len());
    }
    let (companion_identity, random) = (&bundle[..32], &bundle[64..96]);
    let identity_shared = phone_identity
        .private_key
        .calculate_agreement(&PublicKey::from_djb_public_key_bytes(companion_identity)?)?;
    let mut adv_secret = [0u8; 32];
    hkdf_sha256_into(
        &[&ephemeral_shared[..], &identity_shared[..], random].concat(),
        None,
        b"adv_secret",
        &mut adv_secret,
    )
    .map_err(|e| anyhow!("hkdf: {e:?}"))?;
    let (jid, success) = pair_success(&mut world, conn.id, &pn, companion_identity, &adv_secret)?;
    debug!(%jid, "phone linked a device by pair code");
    Ok(success)
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

#[cfg(test)]
mod tests {
    use super::parse_qr;

    #[test]
    fn qr_code_fields() {
        let qr = parse_qr("2@ref,AAAA,AQID,BAUG,9").unwrap();
        assert_eq!(qr.reference, "2@ref");
        assert_eq!(qr.identity_pub, vec![1, 2, 3]);
        assert_eq!(qr.adv_secret, vec![4, 5, 6]);
        assert!(parse_qr("only,three,fields").is_err());
        assert!(parse_qr("ref,AAAA,not base64!,BAUG").is_err());
    }
}
