#!/usr/bin/env bash
# Load benchmark against a running release `serve --dev`, with wrk:
#   - client_credentials with ES256, EdDSA and RS256 access tokens, and introspection,
#     at $CONNECTIONS connections;
#   - refresh-token grants at $CONNECTIONS connections, one rotating token chain per
#     connection (benches/refresh.lua), seeded from authorization codes planted in the
#     dev database (benches/seed_codes.py) and redeemed once each;
#   - password sign-ins (GET /login, POST /login with the right password: one Argon2id
#     verify and the session writes each) at $LOGIN_CONNECTIONS connections
#     (benches/login.lua), when the build serves /login.
# Prints req/s and p50/p99 latency, then for comparison the single-core signing rate
# of each algorithm and the single-thread Argon2id hash/verify rate.
#
#   benches/load.sh            # 15 s per scenario
#   DURATION=30s benches/load.sh
#
# Needs wrk (`apt-get install -y wrk`) and python3. Rate limits are disabled for the
# run: they would otherwise be what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-64}"
# Each sign-in holds 19 MiB and a core for tens of milliseconds, and the server runs at
# most 2 per core at once: more connections only queue.
LOGIN_CONNECTIONS="${LOGIN_CONNECTIONS:-8}"
PORT="${PORT:-18090}"
URL="http://127.0.0.1:$PORT"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 1; }

cargo build --release -q -p authserver
# Where cargo really put it (a wrapper may choose another target dir than the above).
TARGET_DIR="$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/authserver"
DATA="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT

export GATEHOUSE_RATE_LIMITS_ENABLED=false RUST_LOG=warn
# Users are created offline: the breach check points at a closed port and only warns.
export GATEHOUSE_PASSWORDS_BREACHED=warn GATEHOUSE_PASSWORDS_HIBP_BASE_URL=http://127.0.0.1:1
"$BIN" serve --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" 2>"$DATA/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

LUA="$DATA/post.lua"
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
wrk.body = os.getenv("BENCH_BODY")
LUA

wrk_run() { # name path script threads connections
  local name="$1" path="$2" script="$3" threads="$4" conns="$5"
  local out
  out="$(wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout 10s --latency -s "$script" "$URL$path")"
  local rps p50 p99 errors socket
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  errors="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  socket="$(grep 'Socket errors' <<<"$out" || true)"
  printf '%-28s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${errors:-0}"
  # What the scripts count themselves (chains broken, sign-ins failed), and wrk's
  # socket errors/timeouts if any.
  grep -E '^(refresh tokens|sign-ins)' <<<"$out" | sed 's/^/    /' || true
  [ -z "$socket" ] || echo "    $socket"
}

run() { # name path auth body: one thread leaves the second core to the server
  export BENCH_AUTH="$3" BENCH_BODY="$4"
  wrk_run "$1" "$2" "$LUA" 1 "$CONNECTIONS"
}

basic() { # id secret
  echo "Basic $(printf '%s:%s' "$1" "$2" | base64 -w0)"
}

echo "load against release serve --dev (SQLite), $DURATION per scenario, wrk and server sharing"
echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for alg in ES256 EdDSA RS256; do
  id="bench-$(tr '[:upper:]' '[:lower:]' <<<"$alg")"
  secret="$("$BIN" clients create --dev --data-dir "$DATA" --id "$id" --scopes read \
    --audiences urn:bench --access-token-alg "$alg" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')"
  auth="$(basic "$id" "$secret")"
  sleep 1 # the change feed picks the new client up (SQLite poll: 250 ms)
  run "client_credentials $alg" /token "$auth" "grant_type=client_credentials&scope=read"
  if [ "$alg" = ES256 ]; then
    token="$(curl -fsS -H "Authorization: $auth" -d grant_type=client_credentials "$URL/token" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
    INTROSPECT_AUTH="$auth" INTROSPECT_TOKEN="$token"
  fi
done
run "introspection (ES256 token)" /introspect "$INTROSPECT_AUTH" "token=$INTROSPECT_TOKEN"

# End user and a confidential web client (client_secret_basic) for the user flows.
BENCH_USERNAME=bench-user BENCH_PASSWORD=bench-correct-horse-battery-42
export BENCH_USERNAME BENCH_PASSWORD
printf '%s\n' "$BENCH_PASSWORD" |
  "$BIN" users create --dev --data-dir "$DATA" --username "$BENCH_USERNAME" --password-stdin \
    >/dev/null 2>&1
read -r TENANT USER_ID < <("$BIN" users list --dev --data-dir "$DATA" 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    u = json.loads(line)
    if u["username"] == sys.argv[1]:
        print(u["tenant"], u["user_id"])' "$BENCH_USERNAME") ||
  { echo "creating the bench user failed" >&2; exit 1; }
REDIRECT=https://app.example.com/cb
SCOPE="openid offline_access"
secret="$("$BIN" clients create --dev --data-dir "$DATA" --id bench-web --redirect-uri "$REDIRECT" \
  --grant-types authorization_code,refresh_token --scopes "$SCOPE" \
  --auth-method client_secret_basic --first-party 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')"
WEB_AUTH="$(basic bench-web "$secret")"
sleep 1

# Refresh tokens rotate on every use, so each connection needs its own chain: plant one
# code per connection (plus one that wrk's script check pops, see refresh.lua), redeem
# each once for a refresh token, hand them to refresh.lua.
CHAINS=$((CONNECTIONS + 1))
python3 benches/seed_codes.py "$DATA/authserver.db" "$TENANT" bench-web "$USER_ID" \
  "$REDIRECT" "$SCOPE" "$CHAINS" >"$DATA/codes"
VERIFIER="$(head -n1 "$DATA/codes")"
tail -n +2 "$DATA/codes" | while read -r code; do
  curl -fsS -w '\n' -H "Authorization: $WEB_AUTH" -d grant_type=authorization_code \
    -d "code=$code" --data-urlencode "redirect_uri=$REDIRECT" -d "code_verifier=$VERIFIER" \
    "$URL/token"
done | python3 -c 'import json,sys
for line in sys.stdin:
    print(json.loads(line)["refresh_token"])' >"$DATA/refresh_tokens"
[ "$(wc -l <"$DATA/refresh_tokens")" -eq "$CHAINS" ] ||
  { echo "seeding refresh tokens failed" >&2; exit 1; }
BENCH_AUTH="$WEB_AUTH" BENCH_TOKENS="$DATA/refresh_tokens" BENCH_THREADS=1 \
  wrk_run "refresh_token grant" /token benches/refresh.lua 1 "$CONNECTIONS"

# Password sign-ins: one browser per connection, one connection per wrk thread.
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/login")" = 200 ]; then
  wrk_run "password sign-in (GET+POST)" /login benches/login.lua \
    "$LOGIN_CONNECTIONS" "$LOGIN_CONNECTIONS"
else
  echo "password sign-in: skipped (this build serves no /login)"
fi

# Warnings and errors of the server during the run, other than the --dev key notice.
sed 's/\x1b\[[0-9;]*m//g' "$DATA/serve.log" | grep -E 'WARN|ERROR' |
  grep -v 'DEVELOPMENT MODE' >"$DATA/problems" || true
echo "server log: $(wc -l <"$DATA/problems") warnings/errors"
head -n 5 "$DATA/problems" | sed 's/^/    /'
kill "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true

echo
cargo bench -q -p authserver --bench signing 2>/dev/null
cargo bench -q -p authserver --bench password 2>/dev/null
