//! What whatsapp-rust's storage `Backend` promises, as checks any backend must pass.
//!
//! Each check encodes a promise written in wacore's trait docs (`store/traits.rs`), or,
//! where the docs are silent, the behaviour its two built-in backends (in-memory and
//! SQLite) share and the protocol code relies on — never an invented rule. A check is an
//! async fn taking an `Arc<dyn Backend>` that is fresh (nothing stored yet); it panics on
//! the first broken promise. [`CASES`] lists them all, so a test file runs every one
//! against its backend with `for (name, case) in CASES`.

// Test code shipped as a library: a missing row where one must be is a failed check.
#![allow(clippy::expect_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, Backend, DeviceInfo, DeviceListRecord, LidPnMappingEntry, MsgSecretEntry,
    PendingInboundKey, PendingInboundRow, TcTokenEntry,
};

/// A boxed conformance check.
pub type Check = fn(Arc<dyn Backend>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name, each to be given a fresh backend.
        pub const CASES: &[(&str, Check)] = &[$((stringify!($name), |b| -> Pin<Box<dyn Future<Output = ()> + Send>> { Box::pin($name(b)) })),*];
    };
}

cases!(
    identities,
    sessions,
    prekeys,
    signed_prekeys,
    sender_keys,
    app_state_sync_keys,
    app_state_versions,
    mutation_macs,
    sender_key_devices,
    lid_pn_mappings,
    base_keys,
    device_lists,
    tc_tokens,
    sent_messages,
    pending_inbound,
    msg_secrets,
    device_data,
);

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e:?}"),
    }
}

/// Identity keys: stored per address, overwritten, deleted; batches behave as singles.
pub async fn identities(b: Arc<dyn Backend>) {
    let a = "15550000001:1@s.whatsapp.net";
    assert_eq!(
        ok(b.load_identity(a).await, "load"),
        None,
        "unknown address has no identity"
    );
    ok(b.put_identity(a, [1; 32]).await, "put_identity");
    assert_eq!(ok(b.load_identity(a).await, "load"), Some([1; 32]));
    ok(b.put_identity(a, [2; 32]).await, "put_identity");
    assert_eq!(
        ok(b.load_identity(a).await, "load"),
        Some([2; 32]),
        "put overwrites"
    );
    let c: Arc<str> = Arc::from("15550000002@s.whatsapp.net");
    ok(
        b.put_identities_batch(&[(Arc::from(a), [3; 32]), (c.clone(), [4; 32])])
            .await,
        "batch",
    );
    assert_eq!(ok(b.load_identity(a).await, "load"), Some([3; 32]));
    assert_eq!(ok(b.load_identity(&c).await, "load"), Some([4; 32]));
    ok(b.delete_identity(a).await, "delete_identity");
    assert_eq!(
        ok(b.load_identity(a).await, "load"),
        None,
        "deleted identity is gone"
    );
    assert_eq!(
        ok(b.load_identity(&c).await, "load"),
        Some([4; 32]),
        "delete is per address"
    );
}

/// Sessions: get/put/has/delete, batch upserts, and the per-user state probe.
pub async fn sessions(b: Arc<dyn Backend>) {
    let a = "15550000001:3@s.whatsapp.net";
    assert_eq!(ok(b.get_session(a).await, "get"), None);
    assert!(!ok(b.has_session(a).await, "has"));
    ok(b.put_session(a, b"one").await, "put_session");
    assert_eq!(
        ok(b.get_session(a).await, "get"),
        Some(Bytes::from_static(b"one"))
    );
    assert!(ok(b.has_session(a).await, "has"));
    let c: Arc<str> = Arc::from("15550000002@s.whatsapp.net");
    ok(
        b.put_sessions_batch(&[
            (Arc::from(a), Bytes::from_static(b"two")),
            (c.clone(), Bytes::from_static(b"three")),
        ])
        .await,
        "put_sessions_batch",
    );
    assert_eq!(
        ok(b.get_session(a).await, "get"),
        Some(Bytes::from_static(b"two")),
        "batch overwrites"
    );
    assert_eq!(
        ok(b.get_session(&c).await, "get"),
        Some(Bytes::from_static(b"three"))
    );
    // The doc allows a conservative `true`, never a `false` while state exists.
    assert!(
        ok(b.has_signal_state_for_user("15550000001").await, "probe"),
        "a device session counts for its user"
    );
    assert!(
        ok(b.has_signal_state_for_user("15550000002").await, "probe"),
        "a device-0 session counts"
    );
    ok(b.delete_session(a).await, "delete_session");
    assert_eq!(ok(b.get_session(a).await, "get"), None);
    assert!(
        !ok(b.has_session(a).await, "has"),
        "deleted session is gone"
    );
    assert!(ok(b.has_session(&c).await, "has"), "delete is per address");
}

/// One-time prekeys: store/load/remove, batches, the max id, and uploads that never
/// resurrect a consumed key.
pub async fn prekeys(b: Arc<dyn Backend>) {
    assert_eq!(
        ok(b.get_max_prekey_id().await, "max"),
        0,
        "0 when none exist"
    );
    assert_eq!(ok(b.load_prekey(7).await, "load"), None);
    ok(b.store_prekey(7, b"seven", false).await, "store_prekey");
    assert_eq!(
        ok(b.load_prekey(7).await, "load"),
        Some(Bytes::from_static(b"seven"))
    );
    ok(
        b.store_prekeys_batch(
            &[
                (8, Bytes::from_static(b"eight")),
                (9, Bytes::from_static(b"nine")),
            ],
            false,
        )
        .await,
        "store_prekeys_batch",
    );
    assert_eq!(ok(b.get_max_prekey_id().await, "max"), 9);
    let mut some = ok(
        b.load_prekeys_batch(&[7, 9, 1000]).await,
        "load_prekeys_batch",
    );
    some.sort_by_key(|(id, _)| *id);
    assert_eq!(
        some,
        vec![
            (7, Bytes::from_static(b"seven")),
            (9, Bytes::from_static(b"nine"))
        ],
        "a batch load returns only the keys that exist"
    );
    ok(b.remove_prekey(8).await, "remove_prekey");
    assert_eq!(
        ok(b.load_prekey(8).await, "load"),
        None,
        "a removed prekey is gone"
    );
    ok(
        b.mark_prekeys_uploaded(&[7, 8]).await,
        "mark_prekeys_uploaded",
    );
    assert_eq!(
        ok(b.load_prekey(8).await, "load"),
        None,
        "marking uploaded must not resurrect a consumed key"
    );
    assert_eq!(
        ok(b.load_prekey(7).await, "load"),
        Some(Bytes::from_static(b"seven"))
    );
    // A fresh device's upload: more keys than one statement of a backend may take, one id
    // twice (the later record wins, as one write per key in order would leave it).
    let mut many: Vec<(u32, Bytes)> = (2000..3200)
        .map(|id| (id, Bytes::from(format!("k{id}"))))
        .collect();
    many.push((2500, Bytes::from_static(b"again")));
    ok(
        b.store_prekeys_batch(&many, true).await,
        "store_prekeys_batch (many)",
    );
    let wanted: Vec<u32> = (2000..3200).collect();
    let loaded = ok(
        b.load_prekeys_batch(&wanted).await,
        "load_prekeys_batch (many)",
    );
    assert_eq!(loaded.len(), 1200);
    assert_eq!(
        ok(b.load_prekey(2500).await, "load"),
        Some(Bytes::from_static(b"again"))
    );
    assert_eq!(
        ok(b.load_prekey(3199).await, "load"),
        Some(Bytes::from_static(b"k3199"))
    );
    ok(
        b.mark_prekeys_uploaded(&wanted).await,
        "mark_prekeys_uploaded (many)",
    );
    assert_eq!(ok(b.get_max_prekey_id().await, "max"), 3199);
}

/// Signed prekeys: store/load/list/remove.
pub async fn signed_prekeys(b: Arc<dyn Backend>) {
    assert_eq!(ok(b.load_signed_prekey(1).await, "load"), None);
    assert!(ok(b.load_all_signed_prekeys().await, "all").is_empty());
    ok(b.store_signed_prekey(1, b"one").await, "store");
    ok(b.store_signed_prekey(2, b"two").await, "store");
    ok(b.store_signed_prekey(2, b"two'").await, "store");
    assert_eq!(
        ok(b.load_signed_prekey(2).await, "load"),
        Some(b"two'".to_vec()),
        "store overwrites"
    );
    let mut all = ok(b.load_all_signed_prekeys().await, "all");
    all.sort();
    assert_eq!(all, vec![(1, b"one".to_vec()), (2, b"two'".to_vec())]);
    ok(b.remove_signed_prekey(1).await, "remove");
    assert_eq!(ok(b.load_signed_prekey(1).await, "load"), None);
    assert_eq!(ok(b.load_all_signed_prekeys().await, "all").len(), 1);
}

/// Group sender keys: put/get/delete and batch upserts.
pub async fn sender_keys(b: Arc<dyn Backend>) {
    let a = "120363000000000001@g.us::15550000001:1@s.whatsapp.net";
    assert_eq!(ok(b.get_sender_key(a).await, "get"), None);
    ok(b.put_sender_key(a, b"k1").await, "put");
    assert_eq!(ok(b.get_sender_key(a).await, "get"), Some(b"k1".to_vec()));
    let c: Arc<str> = Arc::from("120363000000000001@g.us::15550000002@s.whatsapp.net");
    ok(
        b.put_sender_keys_batch(&[
            (Arc::from(a), Bytes::from_static(b"k2")),
            (c.clone(), Bytes::from_static(b"k3")),
        ])
        .await,
        "batch",
    );
    assert_eq!(
        ok(b.get_sender_key(a).await, "get"),
        Some(b"k2".to_vec()),
        "batch overwrites"
    );
    assert_eq!(ok(b.get_sender_key(&c).await, "get"), Some(b"k3".to_vec()));
    ok(b.delete_sender_key(a).await, "delete");
    assert_eq!(ok(b.get_sender_key(a).await, "get"), None);
    assert_eq!(ok(b.get_sender_key(&c).await, "get"), Some(b"k3".to_vec()));
}

fn sync_key(byte: u8, timestamp: i64) -> AppStateSyncKey {
    AppStateSyncKey {
        key_data: vec![byte; 32],
        fingerprint: vec![byte, 1, 2],
        timestamp,
    }
}

/// App-state sync keys round-trip, and the latest one stored is reported as latest.
pub async fn app_state_sync_keys(b: Arc<dyn Backend>) {
    assert!(ok(b.get_sync_key(b"k1").await, "get").is_none());
    assert_eq!(ok(b.get_latest_sync_key_id().await, "latest"), None);
    ok(b.set_sync_key(b"k1", sync_key(1, 100)).await, "set");
    ok(b.set_sync_key(b"k2", sync_key(2, 200)).await, "set");
    let k1 = ok(b.get_sync_key(b"k1").await, "get").expect("k1 stored");
    assert_eq!(
        (k1.key_data, k1.fingerprint, k1.timestamp),
        (vec![1; 32], vec![1, 1, 2], 100)
    );
    assert_eq!(
        ok(b.get_latest_sync_key_id().await, "latest"),
        Some(b"k2".to_vec()),
        "most recently stored key"
    );
}

/// App-state collection versions: unknown is the default state; set/get round trip.
pub async fn app_state_versions(b: Arc<dyn Backend>) {
    let fresh = ok(b.get_version("regular").await, "get_version");
    assert_eq!(
        fresh.version, 0,
        "an unknown collection starts at version 0"
    );
    let mut state = HashState {
        version: 42,
        hash: [7; 128],
        ..Default::default()
    };
    state.index_value_map.insert("idx".to_owned(), vec![9, 9]);
    ok(b.set_version("regular", state).await, "set_version");
    let back = ok(b.get_version("regular").await, "get_version");
    assert_eq!(back.version, 42);
    assert_eq!(back.hash, [7; 128]);
    assert_eq!(back.index_value_map.get("idx"), Some(&vec![9, 9]));
    assert_eq!(
        ok(b.get_version("critical_block").await, "get_version").version,
        0,
        "versions are per collection"
    );
}

fn mac(index: u8, value: u8) -> AppStateMutationMAC {
    AppStateMutationMAC {
        index_mac: vec![index; 32],
        value_mac: vec![value; 32],
    }
}

/// Mutation MACs: per collection, single and batch lookups, deletes, clear.
pub async fn mutation_macs(b: Arc<dyn Backend>) {
    ok(
        b.put_mutation_macs("regular", 1, &[mac(1, 11), mac(2, 12)])
            .await,
        "put",
    );
    ok(
        b.put_mutation_macs("regular_low", 1, &[mac(1, 21)]).await,
        "put",
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[1; 32]).await, "get"),
        Some(vec![11; 32])
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular_low", &[1; 32]).await, "get"),
        Some(vec![21; 32]),
        "per collection"
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[3; 32]).await, "get"),
        None
    );
    let found = ok(
        b.get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
            .await,
        "batch",
    );
    assert_eq!(found.len(), 2, "a batch lookup returns only stored MACs");
    assert_eq!(found.get(&[2; 32]), Some(&vec![12; 32]));
    ok(
        b.delete_mutation_macs("regular", &[vec![1; 32]]).await,
        "delete",
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[1; 32]).await, "get"),
        None
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular_low", &[1; 32]).await, "get"),
        Some(vec![21; 32])
    );
    ok(b.clear_mutation_macs("regular").await, "clear");
    assert_eq!(
        ok(b.get_mutation_mac("regular", &[2; 32]).await, "get"),
        None,
        "clear empties the collection"
    );
    assert_eq!(
        ok(b.get_mutation_mac("regular_low", &[1; 32]).await, "get"),
        Some(vec![21; 32]),
        "and only it"
    );
}

fn sorted(mut v: Vec<(String, bool)>) -> Vec<(String, bool)> {
    v.sort();
    v
}

/// Per-device sender-key (SKDM) tracking per group.
pub async fn sender_key_devices(b: Arc<dyn Backend>) {
    let (g1, g2) = ("120363000000000001@g.us", "120363000000000002@g.us");
    let (d1, d2) = (
        "15550000001:1@s.whatsapp.net",
        "15550000002:0@s.whatsapp.net",
    );
    assert!(ok(b.get_sender_key_devices(g1).await, "get").is_empty());
    ok(
        b.set_sender_key_status(g1, &[(d1, true), (d2, true)]).await,
        "set",
    );
    ok(b.set_sender_key_status(g1, &[(d2, false)]).await, "set");
    ok(b.set_sender_key_status(g2, &[(d1, true)]).await, "set");
    assert_eq!(
        sorted(ok(b.get_sender_key_devices(g1).await, "get")),
        vec![(d1.to_owned(), true), (d2.to_owned(), false)],
        "status is per device, last write wins"
    );
    ok(b.delete_sender_key_device_rows(&[d1]).await, "delete rows");
    assert_eq!(
        ok(b.get_sender_key_devices(g1).await, "get"),
        vec![(d2.to_owned(), false)]
    );
    assert!(
        ok(b.get_sender_key_devices(g2).await, "get").is_empty(),
        "row deletes span all groups"
    );
    ok(b.set_sender_key_status(g2, &[(d1, true)]).await, "set");
    ok(b.clear_sender_key_devices(g1).await, "clear");
    assert!(ok(b.get_sender_key_devices(g1).await, "get").is_empty());
    assert_eq!(
        ok(b.get_sender_key_devices(g2).await, "get").len(),
        1,
        "clear is per group"
    );
    ok(b.clear_all_sender_key_devices().await, "clear all");
    assert!(ok(b.get_sender_key_devices(g2).await, "get").is_empty());
}

fn lid(lid: &str, phone: &str, at: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.to_owned(),
        phone_number: phone.to_owned(),
        created_at: at,
        updated_at: at,
        learning_source: "usync".to_owned(),
    }
}

/// LID ↔ phone number mappings, by either side, and the newest LID for a phone.
pub async fn lid_pn_mappings(b: Arc<dyn Backend>) {
    assert!(ok(b.get_lid_mapping("100000000000001").await, "get").is_none());
    ok(
        b.put_lid_mapping(&lid("100000000000001", "15550000001", 10))
            .await,
        "put",
    );
    let by_lid = ok(b.get_lid_mapping("100000000000001").await, "get").expect("stored");
    assert_eq!(
        (
            by_lid.phone_number.as_str(),
            by_lid.created_at,
            by_lid.learning_source.as_str()
        ),
        ("15550000001", 10, "usync")
    );
    let by_pn = ok(b.get_pn_mapping("15550000001").await, "get_pn").expect("stored");
    assert_eq!(by_pn.lid, "100000000000001");
    // A newer LID for the same phone wins the phone lookup.
    ok(
        b.put_lid_mappings(&[
            lid("100000000000002", "15550000001", 20),
            lid("100000000000003", "15550000003", 20),
        ])
        .await,
        "put batch",
    );
    assert_eq!(
        ok(b.get_pn_mapping("15550000001").await, "get_pn")
            .expect("stored")
            .lid,
        "100000000000002"
    );
    assert_eq!(
        ok(b.get_pn_mapping("15550000003").await, "get_pn")
            .expect("stored")
            .lid,
        "100000000000003"
    );
    assert_eq!(ok(b.get_all_lid_mappings().await, "all").len(), 3);
    assert!(ok(b.get_pn_mapping("15559999999").await, "get_pn").is_none());
}

/// Base keys for retry collision detection.
pub async fn base_keys(b: Arc<dyn Backend>) {
    let a = "15550000001:1@s.whatsapp.net";
    assert!(
        !ok(b.has_same_base_key(a, "M1", b"base").await, "has_same"),
        "nothing saved"
    );
    ok(b.save_base_key(a, "M1", b"base").await, "save");
    assert!(ok(b.has_same_base_key(a, "M1", b"base").await, "has_same"));
    assert!(!ok(
        b.has_same_base_key(a, "M1", b"other").await,
        "has_same"
    ));
    assert!(
        !ok(b.has_same_base_key(a, "M2", b"base").await, "has_same"),
        "per message id"
    );
    ok(b.delete_base_key(a, "M1").await, "delete");
    assert!(!ok(b.has_same_base_key(a, "M1", b"base").await, "has_same"));
}

fn device_list(user: &str, devices: &[u32], raw_id: Option<u32>) -> DeviceListRecord {
    DeviceListRecord {
        user: user.to_owned(),
        devices: devices
            .iter()
            .map(|&d| DeviceInfo::new(d, Some(d)).with_hosting(d == 99))
            .collect(),
        timestamp: 1_700_000_000,
        phash: Some("2:abc".to_owned()),
        raw_id,
    }
}

/// The device registry: a user's known devices, replaced, batched, deleted.
pub async fn device_lists(b: Arc<dyn Backend>) {
    assert!(ok(b.get_devices("15550000001").await, "get").is_none());
    ok(
        b.update_device_list(device_list("15550000001", &[0, 1], Some(5)))
            .await,
        "update",
    );
    ok(
        b.update_device_list(device_list("15550000001", &[0, 99], Some(6)))
            .await,
        "update",
    );
    let got = ok(b.get_devices("15550000001").await, "get").expect("stored");
    let ids: Vec<(u32, Option<u32>, bool)> = got
        .devices
        .iter()
        .map(|d| (d.device_id, d.key_index, d.is_hosted))
        .collect();
    assert_eq!(
        ids,
        vec![(0, Some(0), false), (99, Some(99), true)],
        "update replaces the list"
    );
    assert_eq!(
        (got.timestamp, got.phash.as_deref(), got.raw_id),
        (1_700_000_000, Some("2:abc"), Some(6))
    );
    ok(
        b.update_device_lists(vec![
            device_list("15550000002", &[0], None),
            device_list("15550000003", &[0, 2], None),
        ])
        .await,
        "batch",
    );
    assert_eq!(
        ok(b.get_devices("15550000003").await, "get")
            .expect("stored")
            .devices
            .len(),
        2
    );
    ok(b.delete_devices("15550000001").await, "delete");
    assert!(ok(b.get_devices("15550000001").await, "get").is_none());
    assert!(ok(b.get_devices("15550000002").await, "get").is_some());
}

/// Trusted-contact tokens: CRUD, the expiry rule, the forward-only sender bucket and
/// newer-wins received tokens, each writer keeping the other's field.
pub async fn tc_tokens(b: Arc<dyn Backend>) {
    let j = "100000000000001@lid";
    assert!(ok(b.get_tc_token(j).await, "get").is_none());
    // Sender bucket on an absent row: a byte-less placeholder.
    ok(b.touch_tc_token_sender_timestamp(j, 50).await, "touch");
    let t = ok(b.get_tc_token(j).await, "get").expect("placeholder");
    assert_eq!((t.token.len(), t.sender_timestamp), (0, Some(50)));
    // A received token replaces a placeholder and keeps the sender bucket.
    ok(b.store_received_tc_token(j, b"tok1", 100).await, "received");
    let t = ok(b.get_tc_token(j).await, "get").expect("stored");
    assert_eq!(
        (t.token.as_slice(), t.token_timestamp, t.sender_timestamp),
        (&b"tok1"[..], 100, Some(50))
    );
    // Older received token loses; the sender bucket never moves back.
    ok(b.store_received_tc_token(j, b"old", 90).await, "received");
    ok(b.touch_tc_token_sender_timestamp(j, 40).await, "touch");
    let t = ok(b.get_tc_token(j).await, "get").expect("stored");
    assert_eq!(
        (t.token.as_slice(), t.token_timestamp, t.sender_timestamp),
        (&b"tok1"[..], 100, Some(50))
    );
    ok(b.touch_tc_token_sender_timestamp(j, 60).await, "touch");
    ok(b.store_received_tc_token(j, b"tok2", 100).await, "received");
    let t = ok(b.get_tc_token(j).await, "get").expect("stored");
    assert_eq!(
        (t.token.as_slice(), t.sender_timestamp),
        (&b"tok2"[..], Some(60)),
        "as-new token wins, bucket kept"
    );
    // put / all / delete.
    let k = "100000000000002@lid";
    ok(
        b.put_tc_token(
            k,
            &TcTokenEntry {
                token: b"x".to_vec(),
                token_timestamp: 10,
                sender_timestamp: None,
            },
        )
        .await,
        "put",
    );
    let mut all = ok(b.get_all_tc_token_jids().await, "all");
    all.sort();
    assert_eq!(all, vec![j.to_owned(), k.to_owned()]);
    // Expiry: k's token is old and it has no sender bucket; j's bucket (60) is live.
    assert_eq!(ok(b.delete_expired_tc_tokens(50, 55).await, "expire"), 1);
    assert!(ok(b.get_tc_token(k).await, "get").is_none());
    assert!(
        ok(b.get_tc_token(j).await, "get").is_some(),
        "recent sender state keeps the row"
    );
    ok(b.delete_tc_token(j).await, "delete");
    assert!(ok(b.get_tc_token(j).await, "get").is_none());
}

/// Sent messages for retries: a take returns the payload once (atomically, even under
/// concurrent takes), then nothing; expiry deletes by age.
pub async fn sent_messages(b: Arc<dyn Backend>) {
    let chat = "15550000001@s.whatsapp.net";
    ok(b.store_sent_message(chat, "M1", b"payload").await, "store");
    assert_eq!(
        ok(b.take_sent_message(chat, "M1").await, "take"),
        Some(b"payload".to_vec())
    );
    assert_eq!(
        ok(b.take_sent_message(chat, "M1").await, "take"),
        None,
        "a take consumes the message"
    );
    assert_eq!(ok(b.take_sent_message(chat, "M404").await, "take"), None);

    for round in 0..10 {
        let id = format!("R{round}");
        ok(b.store_sent_message(chat, &id, b"p").await, "store");
        let (b1, b2) = (b.clone(), b.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let t1 = tokio::spawn(async move { b1.take_sent_message(chat, &i1).await });
        let t2 = tokio::spawn(async move { b2.take_sent_message(chat, &i2).await });
        let r1 = ok(ok(t1.await, "join"), "take");
        let r2 = ok(ok(t2.await, "join"), "take");
        assert_eq!(
            usize::from(r1.is_some()) + usize::from(r2.is_some()),
            1,
            "of two concurrent takes exactly one gets the message"
        );
    }

    ok(b.store_sent_message(chat, "M2", b"p").await, "store");
    let now = whatsapp_rust::wacore::time::now_secs();
    assert_eq!(
        ok(b.delete_expired_sent_messages(now - 3600).await, "expire"),
        0,
        "a fresh message is kept"
    );
    assert_eq!(
        ok(b.delete_expired_sent_messages(now + 3600).await, "expire"),
        1
    );
    assert_eq!(ok(b.take_sent_message(chat, "M2").await, "take"), None);
}

/// The pending-inbound durability buffer, keyed by (chat, sender, id).
pub async fn pending_inbound(b: Arc<dyn Backend>) {
    let (chat, s1, s2) = (
        "120363000000000001@g.us",
        "15550000001@s.whatsapp.net",
        "15550000002@s.whatsapp.net",
    );
    ok(
        b.store_pending_inbound(chat, s1, "X", b"one").await,
        "store",
    );
    ok(
        b.store_pending_inbound(chat, s2, "X", b"two").await,
        "store",
    );
    assert_eq!(
        ok(b.get_pending_inbound(chat, s1, "X").await, "get"),
        Some(b"one".to_vec())
    );
    assert_eq!(
        ok(b.get_pending_inbound(chat, s2, "X").await, "get"),
        Some(b"two".to_vec()),
        "scoped by sender"
    );
    ok(b.delete_pending_inbound(chat, s1, "X").await, "delete");
    assert_eq!(ok(b.get_pending_inbound(chat, s1, "X").await, "get"), None);
    assert_eq!(
        ok(b.get_pending_inbound(chat, s1, "X").await, "get again"),
        None,
        "a get does not remove"
    );
    assert_eq!(
        ok(b.get_pending_inbound(chat, s2, "X").await, "get"),
        Some(b"two".to_vec())
    );
    let rows = [
        PendingInboundRow {
            chat,
            sender: s1,
            id: "A",
            message: b"a",
        },
        PendingInboundRow {
            chat,
            sender: s1,
            id: "B",
            message: b"b",
        },
    ];
    ok(b.store_pending_inbound_batch(&rows).await, "batch store");
    assert_eq!(
        ok(b.get_pending_inbound(chat, s1, "B").await, "get"),
        Some(b"b".to_vec())
    );
    ok(
        b.delete_pending_inbound_batch(&[PendingInboundKey {
            chat,
            sender: s1,
            id: "A",
        }])
        .await,
        "batch delete",
    );
    assert_eq!(ok(b.get_pending_inbound(chat, s1, "A").await, "get"), None);
    let now = whatsapp_rust::wacore::time::now_secs();
    assert_eq!(
        ok(b.delete_expired_pending_inbound(now - 3600).await, "expire"),
        0
    );
    assert_eq!(
        ok(b.delete_expired_pending_inbound(now + 3600).await, "expire"),
        2
    );
    assert_eq!(ok(b.get_pending_inbound(chat, s1, "B").await, "get"), None);
}

fn secret(
    chat: &str,
    sender: &str,
    id: &str,
    byte: u8,
    expires_at: i64,
    message_ts: i64,
) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: Arc::from(chat),
        sender: Arc::from(sender),
        msg_id: Arc::from(id),
        secret: [byte; 32],
        expires_at,
        message_ts,
    }
}

/// Message secrets: round trip with the parent time, the documented merge on conflict
/// (0 = never wins, later deadline wins, later parent time wins) and expiry.
pub async fn msg_secrets(b: Arc<dyn Backend>) {
    let (c, s) = ("15550000001@s.whatsapp.net", "15550000002@s.whatsapp.net");
    assert_eq!(ok(b.get_msg_secret(c, s, "M").await, "get"), None);
    ok(b.put_msg_secret(c, s, "M", &[1; 32]).await, "put");
    assert_eq!(
        ok(b.get_msg_secret(c, s, "M").await, "get"),
        Some(vec![1; 32])
    );
    assert_eq!(
        ok(
            b.put_msg_secrets(vec![
                secret(c, s, "A", 2, 100, 10),
                secret(c, s, "B", 3, 100, 10)
            ])
            .await,
            "put batch"
        ),
        2
    );
    // A: a shorter deadline and unknown parent time never shrink or clobber.
    ok(
        b.put_msg_secrets(vec![secret(c, s, "A", 4, 50, 0)]).await,
        "put",
    );
    // B: a later deadline and parent time win.
    ok(
        b.put_msg_secrets(vec![secret(c, s, "B", 3, 300, 20)]).await,
        "put",
    );
    assert_eq!(
        ok(b.get_msg_secret_with_ts(c, s, "A").await, "get"),
        Some((vec![4; 32], 10)),
        "secret replaced, ts kept"
    );
    assert_eq!(
        ok(b.get_msg_secret_with_ts(c, s, "B").await, "get"),
        Some((vec![3; 32], 20))
    );
    // A expires at 100, B at 300, M never.
    assert_eq!(ok(b.delete_expired_msg_secrets(99).await, "expire"), 0);
    assert_eq!(
        ok(b.delete_expired_msg_secrets(100).await, "expire"),
        1,
        "at or before the cutoff"
    );
    assert_eq!(ok(b.get_msg_secret(c, s, "A").await, "get"), None);
    // M (never) merged with a deadline stays never.
    ok(
        b.put_msg_secrets(vec![secret(c, s, "M", 1, 150, 0)]).await,
        "put",
    );
    assert_eq!(
        ok(b.delete_expired_msg_secrets(1_000).await, "expire"),
        1,
        "only B"
    );
    assert_eq!(
        ok(b.get_msg_secret(c, s, "M").await, "get"),
        Some(vec![1; 32]),
        "0 = never wins the merge"
    );
}

/// Device data: absent until saved, then round-trips the fields the protocol persists.
pub async fn device_data(b: Arc<dyn Backend>) {
    assert!(
        !ok(b.exists().await, "exists"),
        "a fresh store has no device"
    );
    assert!(ok(b.load().await, "load").is_none());
    let mut d = Device::new();
    d.pn = Some(ok("15550000001:7@s.whatsapp.net".parse(), "jid"));
    d.lid = Some(ok("100000000000001:7@lid".parse(), "jid"));
    d.push_name = "Conformance".to_owned();
    d.next_pre_key_id = 812;
    d.server_has_prekeys = true;
    ok(b.save(&d).await, "save");
    assert!(ok(b.exists().await, "exists"));
    let back = ok(b.load().await, "load").expect("saved device loads");
    assert_eq!(back.pn, d.pn);
    assert_eq!(back.lid, d.lid);
    assert_eq!(back.registration_id, d.registration_id);
    assert_eq!(back.push_name, "Conformance");
    assert_eq!(back.next_pre_key_id, 812);
    assert!(back.server_has_prekeys);
    assert_eq!(back.adv_secret_key, d.adv_secret_key);
    assert_eq!(back.signed_pre_key_id, d.signed_pre_key_id);
    assert_eq!(back.signed_pre_key_signature, d.signed_pre_key_signature);
    assert_eq!(
        back.noise_key.public_key.public_key_bytes(),
        d.noise_key.public_key.public_key_bytes()
    );
    assert_eq!(
        back.identity_key.private_key.serialize(),
        d.identity_key.private_key.serialize()
    );
    assert_eq!(
        back.signed_pre_key.private_key.serialize(),
        d.signed_pre_key.private_key.serialize()
    );
    d.push_name = "Renamed".to_owned();
    ok(b.save(&d).await, "save");
    assert_eq!(
        ok(b.load().await, "load").expect("saved").push_name,
        "Renamed",
        "save overwrites"
    );
}
