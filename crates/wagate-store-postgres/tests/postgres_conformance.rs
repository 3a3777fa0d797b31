//! Runs the store conformance suite against PostgreSQL, one throwaway database per case
//! (see `wagate_wa_storage::testing`): `WAGATE_TEST_DATABASE_URL`, else a local server.

// Helpers report failures by panicking, like the tests calling them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wagate_store_postgres::{PgOptions, PgStore};
use wagate_store_tests::Fixture;
use wagate_wa_storage::testing::pg_database;

wagate_store_tests::store_conformance_tests!(|| async {
    // The suite's factory cannot skip a case, so without a server every case fails here
    // with the reason `pg_database` printed.
    let db = pg_database()
        .await
        .expect("the PostgreSQL store's conformance suite needs a PostgreSQL server");
    let store = PgStore::connect(&db.url, PgOptions::default())
        .await
        .unwrap();
    // The store is dropped before the database, which is then dropped with it.
    Fixture::with_guard(store, db)
});
