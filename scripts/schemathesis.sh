#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against /openapi.json of a wagate it starts itself on a
# temporary data directory (sandbox engine): no 5xx answer, and every status code,
# content type and body inside the documented schema.
#
#   scripts/schemathesis.sh [MAX_SECONDS] [extra schemathesis args…]
#
# Needs python3 (with venv). Installs schemathesis into target/schemathesis-venv once.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_LIB_BACKTRACE=0
MAX_TIME="${1:-120}"
shift || true

BIN=target/release/wagate
# Always: a binary left from before an edit would test an old /openapi.json (cargo does
# nothing when it is up to date). Only `-p wagate`: see the README.
cargo build --release -p wagate
VENV=target/schemathesis-venv
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet schemathesis
fi

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
KEY=$("$BIN" --data-dir "$DATA" account create --init --name schemathesis | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
RUST_LOG=warn WAGATE_SANDBOX__LINK_DELAY_MS=20 "$BIN" --data-dir "$DATA" serve --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; echo "server log: $DATA/server.log"' EXIT
for _ in $(seq 100); do curl -fs "$BASE/readyz" >/dev/null && break; sleep 0.1; done

# A connected sandbox device so that sends and checks can succeed, too.
curl -fs -X POST "$BASE/v1/developer/devices" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
  -d '{"name": "schemathesis", "engine": "sandbox"}' >"$DATA/device.json"
# Its instance credentials, so that the MegaMsg operations get past their 401 (the
# Msgera ones read only X-API-Key).
DEV=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["deviceUid"])' <"$DATA/device.json")
TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["instanceToken"])' <"$DATA/device.json")

set +e
"$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --url "$BASE" \
  -H "X-API-Key: $KEY" \
  -H "Authorization: Bearer $TOKEN" \
  -H "X-Instance-Id: $DEV" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --exclude-path /v1/developer/events \
  --max-time "$MAX_TIME" \
  --workers 2 \
  --request-timeout 20 \
  --suppress-health-check all \
  --report junit --report-dir target/schemathesis \
  "$@"
RC=$?
set -e
if grep -q "panicked" "$DATA/server.log"; then
  echo "the server panicked:"; grep -A3 "panicked" "$DATA/server.log" | head -20
  RC=1
fi
exit $RC
