//! Account-side key material: the simulated primary phone's keys and the ADV (Advanced Device
//! Verification) signatures that bind a linked device to its account.
//!
//! A real primary phone signs every companion it links with its account identity key; peers then
//! check that signature before they trust a companion's Signal identity. The simulator plays that
//! phone, so it signs with a key it holds (the phone's Signal identity, which *is* the account key).

use anyhow::{Result, anyhow};
use whatsapp_rust::buffa::Message as _;
use whatsapp_rust::wacore::libsignal::crypto::hmac_sha256;
use whatsapp_rust::wacore::libsignal::protocol::{KeyPair, PrivateKey};
use whatsapp_rust::waproto::whatsapp as wa;

const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];
const KEY_INDEX_SIGNATURE_PREFIX: [u8; 2] = [6, 2];

fn sign(key: &PrivateKey, message: &[u8]) -> Result<Vec<u8>> {
    whatsapp_rust::wacore::crypto::calculate_curve_signature(key, message)
        .map(|s| s.to_vec())
        .map_err(|e| anyhow!("XEdDSA signature failed: {e}"))
}

/// `ADVDeviceIdentity` details for companion `device_id`. The key index equals the device id,
/// which keeps the account's key-index list trivially consistent with its device list.
pub(crate) fn device_details(device_id: u16, raw_id: u32) -> Vec<u8> {
    wa::ADVDeviceIdentity {
        raw_id: Some(raw_id),
        timestamp: Some(u64::try_from(crate::stanza::now_secs()).unwrap_or_default()),
        key_index: Some(u32::from(device_id)),
        ..Default::default()
    }
    .encode_to_vec()
}

/// What the phone sends a companion while pairing: details signed by the account key only.
pub(crate) fn account_signed_identity(
    account: &KeyPair,
    details: Vec<u8>,
    device_identity_pub: &[u8],
) -> Result<wa::ADVSignedDeviceIdentity> {
    let message = [&ACCOUNT_SIGNATURE_PREFIX[..], &details, device_identity_pub].concat();
    Ok(wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(sign(&account.private_key, &message)?),
        device_signature: None,
    })
}

/// The fully signed identity a paired companion stores as its `account` (and which the server
/// hands to peers as `<device-identity>`): the companion adds its own device signature.
/// Used for pre-seeded devices, where the simulator holds the companion's private key too.
pub(crate) fn fully_signed_identity(
    account: &KeyPair,
    device_identity: &KeyPair,
    device_id: u16,
    raw_id: u32,
) -> Result<wa::ADVSignedDeviceIdentity> {
    let identity_pub = device_identity.public_key.public_key_bytes();
    let mut signed =
        account_signed_identity(account, device_details(device_id, raw_id), identity_pub)?;
    let details = signed.details.clone().unwrap_or_default();
    let message = [
        &DEVICE_SIGNATURE_PREFIX[..],
        &details,
        identity_pub,
        account.public_key.public_key_bytes(),
    ]
    .concat();
    signed.device_signature = Some(sign(&device_identity.private_key, &message)?);
    Ok(signed)
}

/// The HMAC container the phone sends in `<pair-success>`, keyed by the QR code's ADV secret so
/// the companion knows the container came from whoever scanned its QR code.
pub(crate) fn hmac_container(signed: &wa::ADVSignedDeviceIdentity, adv_secret: &[u8]) -> Vec<u8> {
    let details = signed.encode_to_vec();
    let hmac = hmac_sha256(adv_secret, &details);
    wa::ADVSignedDeviceIdentityHMAC {
        details: Some(details),
        hmac: Some(hmac.to_vec()),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The `<key-index-list>` of an account's device list. Without it the client ignores every
/// companion in a usync answer and encrypts for the phone only.
pub(crate) fn signed_key_index_list(account: &KeyPair, raw_id: u32, indexes: &[u32]) -> Vec<u8> {
    let details = wa::ADVKeyIndexList {
        raw_id: Some(raw_id),
        timestamp: Some(u64::try_from(crate::stanza::now_secs()).unwrap_or_default()),
        current_index: indexes.iter().copied().max(),
        valid_indexes: indexes.to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    // 0.7 does not verify this signature; sign anyway so a stricter client still accepts it.
    let message = [&KEY_INDEX_SIGNATURE_PREFIX[..], &details].concat();
    let signature = sign(&account.private_key, &message).unwrap_or_default();
    wa::ADVSignedKeyIndexList {
        details: Some(details),
        account_signature: Some(signature),
        ..Default::default()
    }
    .encode_to_vec()
}
