#!/usr/bin/env bash
# Load benchmark of the token service against a running release `serve --dev`:
# client_credentials with ES256, EdDSA and RS256 access tokens, and introspection,
# each at 64 connections with wrk. Prints tokens/s and p50/p99 latency, then the
# single-core signing rate of each algorithm for comparison.
#
#   benches/load.sh            # 15 s per scenario
#   DURATION=30s benches/load.sh
#
# Needs wrk (`apt-get install -y wrk`). Rate limits are disabled for the run: they
# would otherwise be what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-64}"
PORT="${PORT:-18090}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p authserver
BIN="$CARGO_TARGET_DIR/release/authserver"
DATA="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT

export GATEHOUSE_RATE_LIMITS_ENABLED=false RUST_LOG=warn
"$BIN" serve --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" 2>"$DATA/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

LUA="$DATA/post.lua"
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.body = os.getenv("BENCH_BODY")
LUA

run() { # name path auth body
  local name="$1" path="$2"
  export BENCH_AUTH="$3" BENCH_BODY="$4"
  # One wrk thread leaves the second core to the server.
  local out
  out="$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "http://127.0.0.1:$PORT$path")"
  local rps p50 p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  errors="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  printf '%-28s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "token service load, $CONNECTIONS connections, $DURATION each, $(nproc) cores shared by wrk and server"
for alg in ES256 EdDSA RS256; do
  id="bench-$(tr '[:upper:]' '[:lower:]' <<<"$alg")"
  secret="$("$BIN" clients create --dev --data-dir "$DATA" --id "$id" --scopes read \
    --audiences urn:bench --access-token-alg "$alg" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')"
  auth="Basic $(printf '%s:%s' "$id" "$secret" | base64 -w0)"
  sleep 1 # the change feed picks the new client up (SQLite poll: 250 ms)
  run "client_credentials $alg" /token "$auth" "grant_type=client_credentials&scope=read"
  if [ "$alg" = ES256 ]; then
    token="$(curl -fsS -H "Authorization: $auth" -d grant_type=client_credentials "http://127.0.0.1:$PORT/token" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    INTROSPECT_AUTH="$auth" INTROSPECT_TOKEN="$token"
  fi
done
run "introspection (ES256 token)" /introspect "$INTROSPECT_AUTH" "token=$INTROSPECT_TOKEN"

echo
cargo bench -q -p authserver --bench signing 2>/dev/null
