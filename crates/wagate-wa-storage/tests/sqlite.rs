//! The conformance suite against whatsapp-rust's SQLite store, the one wagate runs today.

use std::sync::Arc;

use wagate_wa_storage::conformance::CASES;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::wacore::store::traits::DeviceStore;

#[tokio::test]
async fn sqlite_store_passes_the_conformance_suite() {
    for (name, case) in CASES {
        eprintln!("conformance: {name}");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("wa.sqlite");
        let store = SqliteStore::new(&path.to_string_lossy())
            .await
            .unwrap_or_else(|e| panic!("open SqliteStore: {e:?}"));
        // SQLite's protocol tables reference the device row (foreign keys), so as at
        // whatsapp-rust's own start-up the device exists before any protocol state; only
        // the device-data check starts from a store without one.
        if *name != "device_data" {
            store
                .create()
                .await
                .unwrap_or_else(|e| panic!("create device: {e:?}"));
        }
        case(Arc::new(store)).await;
    }
}
