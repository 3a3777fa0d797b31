#!/usr/bin/env bash
# Crash test: under load, kill -9 a real `wagate serve` and restart it several times, then
# prove every 2xx survived, nothing was sent twice, statuses are consistent and every
# webhook arrived (see crates/wagate-bench/src/crash.rs for what is checked and how).
#
#   scripts/crash-test.sh                      # release build, 5 kills
#   BENCH_PROFILE=debug scripts/crash-test.sh --kills 3 --clients 2 --pause-ms 50   # CI size
#
# The CI-size run is also part of the test suite: crates/wagate/tests/crash.rs, run by
# `cargo test --workspace` (and so by .ci/run) against the wagate binary it built.
#
# Arguments go to `wagate-bench crash` (--kills, --interval-ms, --clients, --synchronous,
# --database-url postgres://… to run on a fresh database on that PostgreSQL server).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_LIB_BACKTRACE=0
if [ "${BENCH_PROFILE:-release}" = "debug" ]; then
  cargo build --quiet -p wagate -p wagate-bench
  DIR=target/debug
else
  cargo build --quiet --release -p wagate -p wagate-bench
  DIR=target/release
fi
exec "$DIR/wagate-bench" --wagate-bin "$DIR/wagate" crash "$@"
