//! The crash test at CI size: under load, a real `wagate serve` (the binary this test
//! suite built) is killed with SIGKILL and restarted three times; then every send that got
//! a 2xx must exist, have been handed over and acknowledged, have reached its final status
//! (`read`: the sandbox's receipts survive the kills), never twice, with forward-only
//! histories and every webhook step delivered at least once. The checks live in
//! `wagate-bench crash` (crates/wagate-bench/src/crash.rs), which runs the same test at
//! full size from `scripts/crash-test.sh`.

use std::path::Path;
use wagate_bench::crash;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_across_kill_9_restarts() {
    let args = crash::Args {
        kills: 3,
        interval_ms: 1_500,
        clients: 2,
        senders: 2,
        pause_ms: 50,
        synchronous: "full".into(),
        settle_secs: 120,
        min_accepted_per_round: 5,
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_wagate"));
    if let Err(e) = crash::run(bin, args).await {
        panic!("crash test failed: {e:#}");
    }
}
