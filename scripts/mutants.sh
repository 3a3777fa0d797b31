#!/usr/bin/env bash
# Mutation testing as a gauge of the suite (docs/testing.md): not part of CI, because one
# mutant of the `wagate` crate costs an incremental build plus a run of its lib and `api`
# tests (about a minute each on two cores), and the three modules hold ~660 mutants.
#
#   scripts/mutants.sh core            # all of wagate-core (~250 mutants, ~30 min)
#   scripts/mutants.sh wagate 0/50     # one deterministic round-robin shard of the
#                                      # webhook, runtime and service modules
#   scripts/mutants.sh wagate 0/1      # all of them (hours)
#
# Extra arguments after the shard go to cargo-mutants (e.g. `-F signing_secrets` to
# re-run chosen mutants). Needs `cargo install cargo-mutants --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_LIB_BACKTRACE=0
# cargo-mutants builds a copy of the tree; pointing it at a warm target directory keeps
# whatsapp-rust and the other dependencies from being rebuilt from cold (only the
# workspace's own crates are rebuilt in the copy). Give it a directory of its own so it
# does not hold the build lock of the one you work in.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wagate/target-mutants}"
out="${MUTANTS_OUT:-target/mutants}"
what="${1:-core}"
shift || true

case "$what" in
  core)
    exec cargo mutants -p wagate-core --jobs 1 --timeout 120 --output "$out/core" "$@"
    ;;
  wagate)
    shard="${1:-0/50}"
    shift || true
    exec cargo mutants -p wagate \
      -f 'crates/wagate/src/webhook/**' -f 'crates/wagate/src/runtime/**' \
      -f 'crates/wagate/src/service/**' \
      --test-package wagate --cargo-test-arg=--lib --cargo-test-arg=--test=api \
      --jobs 1 --timeout 400 --baseline skip \
      --sharding round-robin --shard "$shard" --output "$out/wagate" "$@"
    ;;
  *)
    echo "usage: $0 core|wagate [k/n] [cargo-mutants args…]" >&2
    exit 2
    ;;
esac
