//! Runs the store conformance suite against SQLite, one temporary database file per case.

use wagate_store_sqlite::SqliteStore;
use wagate_store_tests::Fixture;

wagate_store_tests::store_conformance_tests!(|| async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("wagate.db"))
        .await
        .unwrap();
    Fixture::with_guard(store, dir)
});
