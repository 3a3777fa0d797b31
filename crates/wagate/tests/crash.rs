//! The crash test at CI size: under load, a real `wagate serve` (the binary this test
//! suite built) is killed with SIGKILL and restarted three times; then every send that got
//! a 2xx must exist, have been handed over and acknowledged, have reached its final status
//! (`read`: the sandbox's receipts survive the kills), never twice, with forward-only
//! histories and every webhook step delivered at least once. The checks live in
//! `wagate-bench crash` (crates/wagate-bench/src/crash.rs), which runs the same test at
//! full size from `scripts/crash-test.sh`.

use std::path::Path;
use wagate_bench::crash;
use wagate_engine_web::wagate_wa_storage::testing;

/// The crash test at CI size: three kills, two clients, two senders; on PostgreSQL when
/// `database_url` names a server.
fn ci_size(database_url: Option<String>) -> crash::Args {
    crash::Args {
        kills: 3,
        interval_ms: 1_500,
        clients: 2,
        senders: 2,
        pause_ms: 50,
        synchronous: "full".into(),
        settle_secs: 120,
        min_accepted_per_round: 5,
        database_url,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_kill_9_restarts() {
    let bin = Path::new(env!("CARGO_BIN_EXE_wagate"));
    if let Err(e) = crash::run(bin, ci_size(None)).await {
        panic!("crash test failed: {e:#}");
    }
}

/// The same on PostgreSQL (a fresh database on `WAGATE_TEST_DATABASE_URL`'s server, else
/// 127.0.0.1:5432; skipped without one unless `CI=true`): the kills land between the
/// server and a database in another process, whose connections die with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_kill_9_restarts_on_postgresql() {
    // Whether a server answers (skipping outside CI when none does); the test makes its
    // own database there.
    let Some(probe) = testing::pg_database().await else {
        return;
    };
    drop(probe);
    let admin = testing::server_url();
    let bin = Path::new(env!("CARGO_BIN_EXE_wagate"));
    if let Err(e) = crash::run(bin, ci_size(Some(admin))).await {
        panic!("crash test on PostgreSQL failed: {e:#}");
    }
}

/// A `kill -9` aimed at the moment messages are both queued (held back by a per-minute
/// budget) and in flight (taken by the simulated server, its ack not yet committed): after
/// the restart each is shown to the recipient exactly once, counted in the sandbox's wire
/// log that outlives the process (`wagate-bench`'s `inflight` module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_with_messages_queued_and_in_flight_shows_each_exactly_once() {
    let bin = Path::new(env!("CARGO_BIN_EXE_wagate"));
    match wagate_bench::inflight::run(bin, wagate_bench::inflight::Args::default()).await {
        Ok(at) => {
            assert!(!at.in_flight.is_empty() && !at.queued.is_empty());
        }
        Err(e) => panic!("in-flight kill test failed: {e:#}"),
    }
}
