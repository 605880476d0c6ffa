#!/usr/bin/env bash
# Fuzzes the Management API from its own generated OpenAPI document with schemathesis:
# a fresh standalone server (SQLite, rate limits off), a management client with every
# gatehouse:* scope, and a bounded run of every operation but key rotation (an emergency
# rotation would withdraw the key that signed the fuzzer's own token; the integration
# tests cover it). Checks: no 5xx, every status, content type and body as documented.
#
#   scripts/api-fuzz.sh            # CI's short run: 25 examples per operation
#   scripts/api-fuzz.sh 500        # the full run
#
# Needs a built authserver (AUTHSERVER_BIN, default $CARGO_TARGET_DIR/debug/authserver)
# and Python 3 with pip (schemathesis is installed into a cached virtualenv).
set -euo pipefail
examples="${1:-25}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GATEHOUSE_CACHE:-$HOME/.cache/gatehouse}"
bin="${AUTHSERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/authserver}"
venv="$cache/schemathesis-4.32.5"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ -n "${KEEP_FUZZ_DIR:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
issuer="http://127.0.0.1:$port"
cat > "$work/config.yaml" <<EOF
tenants:
  - id: main
    issuer: $issuer
    display_name: Fuzzing
rate_limits:
  enabled: false
EOF
export GATEHOUSE_CONFIG="$work/config.yaml"
export DATABASE_URL="sqlite://$work/authserver.db"
ENCRYPTION_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export ENCRYPTION_KEY
export GATEHOUSE_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}"

"$bin" migrate >/dev/null
scopes="gatehouse:clients:read gatehouse:clients:write gatehouse:users:read gatehouse:users:write gatehouse:sessions:read gatehouse:sessions:write gatehouse:keys:read gatehouse:keys:rotate gatehouse:audit:read gatehouse:stats:read"
secret="$("$bin" clients create --id fuzzer --audiences "$issuer/api/v1" --scopes "$scopes" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')"
# The fuzzer finds its own client in GET /clients and would delete it or rotate its
# secret (ending its own token); marked as managed elsewhere, the API refuses that (409).
python3 - "$work/authserver.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE clients SET managed_by = 'the fuzzing harness' WHERE client_id = 'fuzzer'")
db.commit()
PY
"$bin" serve --listen "127.0.0.1:$port" 2> "$work/server.log" &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "$issuer/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
token="$(curl -fsS -u "fuzzer:$secret" -d grant_type=client_credentials \
  -d "resource=$issuer/api/v1" --data-urlencode "scope=$scopes" "$issuer/token" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

status=0
# schemathesis keeps a cache in its working directory: the scratch one, not the checkout.
cd "$work"
"$venv/bin/schemathesis" run "$issuer/api/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --exclude-operation-id rotateKeys \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" --seed 42 --workers 2 --no-color \
  --generation-with-security-parameters false \
  --generation-database none --report-dir "$work/report" || status=$?
if grep -q '"level":"ERROR"' "$work/server.log"; then
  echo "the server logged errors during the run:" >&2
  grep '"level":"ERROR"' "$work/server.log" | head -20 >&2
  status=1
fi
exit "$status"
