//! `PgBackend` on a real PostgreSQL (see `wagate_wa_storage::testing`): the conformance
//! suite, device isolation in shared tables, fencing, and concurrent migrations.

use std::sync::Arc;

use wagate_wa_storage::conformance::CASES;
use wagate_wa_storage::testing::pg_database;
use wagate_wa_storage::{Fence, PgBackend};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceStore, LidPnMappingEntry, ProtocolStore, SignalStore,
};

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what} failed: {e:?}"))
}

#[tokio::test]
async fn pg_backend_passes_the_conformance_suite() {
    let Some(db) = pg_database().await else {
        return;
    };
    ok(PgBackend::migrate(&db.pool).await, "migrate");
    // One database, one device key per case: the key scoping gives each case a fresh store.
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        case(Arc::new(PgBackend::new(
            db.pool.clone(),
            &format!("device-{name}"),
        )))
        .await;
    }
}

#[tokio::test]
async fn devices_sharing_the_tables_never_see_each_others_rows() {
    let Some(db) = pg_database().await else {
        return;
    };
    ok(PgBackend::migrate(&db.pool).await, "migrate");
    let a = PgBackend::new(db.pool.clone(), "device-a");
    let b = PgBackend::new(db.pool.clone(), "device-b");

    let addr = "15550000001:1@s.whatsapp.net";
    ok(a.put_identity(addr, [1; 32]).await, "put_identity");
    ok(a.put_session(addr, b"session").await, "put_session");
    ok(a.store_prekey(5, b"pk", true).await, "store_prekey");
    ok(
        a.store_signed_prekey(1, b"spk").await,
        "store_signed_prekey",
    );
    ok(a.put_sender_key(addr, b"sk").await, "put_sender_key");
    ok(
        a.set_sync_key(
            b"k",
            AppStateSyncKey {
                key_data: vec![1],
                fingerprint: vec![2],
                timestamp: 3,
            },
        )
        .await,
        "set_sync_key",
    );
    ok(
        a.set_sender_key_status("g@g.us", &[(addr, true)]).await,
        "set_sender_key_status",
    );
    ok(
        a.put_lid_mapping(&LidPnMappingEntry {
            lid: "100".into(),
            phone_number: "1555".into(),
            created_at: 1,
            updated_at: 1,
            learning_source: "usync".into(),
        })
        .await,
        "put_lid_mapping",
    );
    ok(
        a.store_sent_message("c@s.whatsapp.net", "M1", b"p").await,
        "store_sent_message",
    );
    ok(
        a.put_tc_token(
            "t@lid",
            &whatsapp_rust::wacore::store::traits::TcTokenEntry {
                token: b"t".to_vec(),
                token_timestamp: 1,
                sender_timestamp: None,
            },
        )
        .await,
        "put_tc_token",
    );
    ok(
        a.save(&whatsapp_rust::wacore::store::Device::new()).await,
        "save",
    );

    // B sees none of A's rows …
    assert_eq!(ok(b.load_identity(addr).await, "load_identity"), None);
    assert_eq!(ok(b.get_session(addr).await, "get_session"), None);
    assert!(!ok(
        b.has_signal_state_for_user("15550000001").await,
        "probe"
    ));
    assert_eq!(ok(b.get_max_prekey_id().await, "max"), 0);
    assert!(ok(b.load_all_signed_prekeys().await, "signed").is_empty());
    assert_eq!(ok(b.get_sender_key(addr).await, "sender key"), None);
    assert_eq!(ok(b.get_latest_sync_key_id().await, "latest"), None);
    assert!(ok(b.get_sender_key_devices("g@g.us").await, "skd").is_empty());
    assert!(ok(b.get_all_lid_mappings().await, "lids").is_empty());
    assert!(ok(b.get_all_tc_token_jids().await, "tc").is_empty());
    assert_eq!(
        ok(b.take_sent_message("c@s.whatsapp.net", "M1").await, "take"),
        None
    );
    assert!(!ok(b.exists().await, "exists"));

    // … and B's bulk deletes leave A's rows alone.
    ok(b.clear_all_sender_key_devices().await, "clear all");
    ok(
        b.delete_sender_key_device_rows(&[addr]).await,
        "delete rows",
    );
    ok(b.clear_mutation_macs("regular").await, "clear macs");
    assert_eq!(
        ok(b.delete_expired_sent_messages(i64::MAX).await, "expire"),
        0
    );
    assert_eq!(
        ok(
            b.delete_expired_tc_tokens(i64::MAX, i64::MAX).await,
            "expire"
        ),
        0
    );
    assert_eq!(ok(a.get_sender_key_devices("g@g.us").await, "skd").len(), 1);
    assert_eq!(
        ok(a.take_sent_message("c@s.whatsapp.net", "M1").await, "take"),
        Some(b"p".to_vec())
    );
    assert_eq!(
        ok(a.load_prekeys_batch(&[5]).await, "load"),
        vec![(5, Bytes::from_static(b"pk"))]
    );
    assert!(ok(a.exists().await, "exists"));
}

#[tokio::test]
async fn a_node_that_lost_the_device_cannot_write() {
    let Some(db) = pg_database().await else {
        return;
    };
    ok(PgBackend::migrate(&db.pool).await, "migrate");
    let first = ok(Fence::take_over(&db.pool, "device-f").await, "take over");
    let old = PgBackend::new(db.pool.clone(), "device-f").with_fence(first);
    ok(
        old.put_session("x@s.whatsapp.net", b"v1").await,
        "owner writes",
    );

    let second = ok(Fence::take_over(&db.pool, "device-f").await, "take over");
    assert_eq!(
        second.epoch,
        first.epoch + 1,
        "every takeover raises the epoch"
    );
    let new = PgBackend::new(db.pool.clone(), "device-f").with_fence(second);

    let refused = old.put_session("x@s.whatsapp.net", b"stale").await;
    assert!(refused.is_err(), "the old owner's write must be refused");
    assert!(
        old.take_sent_message("c", "m").await.is_err(),
        "every write path is fenced"
    );
    assert!(
        old.save(&whatsapp_rust::wacore::store::Device::new())
            .await
            .is_err()
    );
    assert_eq!(
        ok(new.get_session("x@s.whatsapp.net").await, "read"),
        Some(Bytes::from_static(b"v1")),
        "the refused write left nothing behind"
    );
    ok(
        new.put_session("x@s.whatsapp.net", b"v2").await,
        "new owner writes",
    );
    // A fence for a device nobody owns is refused too.
    let orphan = PgBackend::new(db.pool.clone(), "device-nobody").with_fence(Fence { epoch: 1 });
    assert!(orphan.put_session("x@s.whatsapp.net", b"v").await.is_err());
}

#[tokio::test]
async fn several_nodes_may_migrate_at_once() {
    let Some(db) = pg_database().await else {
        return;
    };
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let pool = db.pool.clone();
            tokio::spawn(async move { PgBackend::migrate(&pool).await })
        })
        .collect();
    for run in runs {
        ok(ok(run.await, "join"), "concurrent migrate");
    }
    let backend = PgBackend::new(db.pool.clone(), "device-m");
    ok(
        backend.put_session("x@s.whatsapp.net", b"v").await,
        "write after migrate",
    );
}
