#!/usr/bin/env bash
# Load benchmark of a release `authserver serve`, on PostgreSQL by default, with wrk
# (1 thread, $CONNECTIONS keep-alive connections, $DURATION per workload, rate limits
# off unless a workload turns them on, RUST_LOG=$LOG with the access log on).
#
# Prints one fixed-format line per workload:
#
#   bench: workload=<name> conns=<n> req_s=<r> p50_ms=<ms> p99_ms=<ms> \
#          cpu_us_per_req=<µs> db_cpu_us_per_req=<µs> rss_mib=<MiB> errors=<n>
#
#   cpu_us_per_req     the server process's utime+stime (/proc/<pid>/stat) over the
#                      workload divided by the requests wrk completed: the figure least
#                      hurt by a shared machine (wrk and the database run beside it);
#   db_cpu_us_per_req  the same for every `postgres` process (0 on SQLite);
#   rss_mib            the server's VmRSS after the workload;
#   errors             non-2xx/3xx answers plus socket errors, plus what the scripts
#                      count themselves (broken refresh chains, failed sign-ins).
#
# then `bench: idle_rss_mib=…`, `bench: peak_rss_mib=…`, and the single-core signing
# rates and the Argon2id rates (one thread, then every core at once) of the same run
# (`cargo bench`), the floors to compare the token endpoint and sign-ins with.
#
#   benches/load.sh                          # PostgreSQL (DATABASE_URL's server)
#   BACKEND=sqlite benches/load.sh           # serve --dev on a SQLite file
#   DURATION=15s CONNECTIONS=64 benches/load.sh
#   AUTHSERVER_BIN=/path/to/authserver benches/load.sh   # measure another build
#   WORKLOADS="jwks introspection" benches/load.sh       # a subset
#   benches/run-all.sh                       # this, then the operator at scale
#   INSTRUCTIONS=1 benches/load.sh           # instructions per request (callgrind)
#
# INSTRUCTIONS=1 runs the server under valgrind's callgrind and adds, after each
# workload's line, `bench: instructions workload=<name> requests=<n> instr_per_req=<n>`:
# the user-space instructions the server executed during the workload (every thread,
# the kernel's work not included) over the requests completed. Unlike CPU time, this
# count repeats to within a percent or two on a busy or stolen-from machine, so it is
# the figure to compare two builds with; everything else in such a run is ~50x slower
# and not a measurement. It defaults to 4 connections and needs valgrind
# (`apt-get install -y valgrind`). INSTRUCTIONS_DIR=<dir> keeps each workload's dump
# there as <workload>.callgrind, for `callgrind_annotate --inclusive=yes <file>`, and
# what each server ran until it was ready as startup-<n>.callgrind; CALLGRIND_ARGS adds
# valgrind options (benches/symbol-order.sh passes --demangle=no).
#
# PostgreSQL: DATABASE_URL names a server and a role that may CREATE DATABASE
# (default postgres://postgres@127.0.0.1:5432/postgres); a fresh database is created
# and dropped. Needs wrk (`apt-get install -y wrk`), psql, curl and python3. These are
# measurements, never compared with a goal here.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
BACKEND="${BACKEND:-postgres}"
DURATION="${DURATION:-8s}"
INSTRUCTIONS="${INSTRUCTIONS:-0}"
if [ "$INSTRUCTIONS" = 1 ]; then
  command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install -y valgrind)" >&2; exit 1; }
  CONNECTIONS="${CONNECTIONS:-4}"
  LOGIN_CONNECTIONS="${LOGIN_CONNECTIONS:-4}"
fi
CONNECTIONS="${CONNECTIONS:-64}"
# What the server needs to pick up a change (SQLite's change feed polls every 250 ms); a
# server under callgrind needs longer.
SETTLE=1
if [ "$INSTRUCTIONS" = 1 ]; then SETTLE=10; fi
LOG="${LOG:-info}"
# Each sign-in holds 19 MiB and a core for tens of milliseconds; more connections only
# queue, but must not fail.
LOGIN_CONNECTIONS="${LOGIN_CONNECTIONS:-8 64}"
WORKLOADS="${WORKLOADS:-discovery discovery_304 jwks jwks_304 http_floor client_credentials introspection introspection_uncached refresh login rate_limits log_warn}"
PORT="${PORT:-18090}"
URL="http://127.0.0.1:$PORT"
# `serve --dev` on a loopback address names its tenant http://localhost:PORT (browsers
# refuse passkeys on IP-address origins), and tenants are told apart by host.
if [ "$BACKEND" = sqlite ]; then URL="http://localhost:$PORT"; fi
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install -y $tool)" >&2; exit 1; }
done
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }

if [ -z "${AUTHSERVER_BIN:-}" ]; then
  cargo build --release -q -p authserver
  # Where cargo really put it (a wrapper may choose another target dir than the above).
  TARGET_DIR="$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  AUTHSERVER_BIN="$TARGET_DIR/release/authserver"
fi
BIN="$AUTHSERVER_BIN"
DATA="$(mktemp -d)"
SERVER=""
BENCH_DB=""
ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
FLOOR=""
cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  [ -z "$FLOOR" ] || kill "$FLOOR" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "$BENCH_DB" ]; then
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT

export RUST_LOG="$LOG" GATEHOUSE_RATE_LIMITS_ENABLED=false
# Every simulated browser comes from 127.0.0.1, and sign-ins in flight count towards an
# address's lockout budget (login.max_failures_per_ip, 50): 64 at once from one address
# would be refused by design.
export GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP=100000
# Users are created offline: the breach check points at a closed port and only warns.
export GATEHOUSE_PASSWORDS_BREACHED=warn GATEHOUSE_PASSWORDS_HIBP_BASE_URL=http://127.0.0.1:1
if [ "$BACKEND" = postgres ]; then
  command -v psql >/dev/null || { echo "psql is required" >&2; exit 1; }
  BENCH_DB="gatehouse_bench_$$"
  psql -q "$ADMIN_URL" -c "CREATE DATABASE $BENCH_DB" >/dev/null
  DB_URL="$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
    "$ADMIN_URL" "$BENCH_DB")"
  cat >"$DATA/config.yaml" <<YAML
tenants:
  - id: main
    issuer: $URL
    display_name: Bench
YAML
  export DATABASE_URL="$DB_URL" GATEHOUSE_CONFIG="$DATA/config.yaml"
  export ENCRYPTION_KEY
  ENCRYPTION_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
  "$BIN" migrate >/dev/null
  CLI=()
else
  unset DATABASE_URL
  CLI=(--dev --data-dir "$DATA")
fi

start_server() { # extra environment for this server, as NAME=value words
  stop_server
  # Redis only where a workload names it: an exported REDIS_URL (CI has one) would
  # otherwise put every server's rate limiter there, the in-memory row included.
  local under=() tries=200
  if [ "$INSTRUCTIONS" = 1 ]; then
    # Counting from the start; each workload zeroes the counters and dumps them.
    # shellcheck disable=SC2206 # CALLGRIND_ARGS is words by design
    under=(valgrind -q --tool=callgrind "--callgrind-out-file=$DATA/callgrind.%p" ${CALLGRIND_ARGS:-})
    tries=1200
  fi
  env -u REDIS_URL -u GATEHOUSE_REDIS_URL "$@" "${under[@]}" "$BIN" serve "${CLI[@]}" \
    --listen "127.0.0.1:$PORT" >"$DATA/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 "$tries"); do
    if curl -fsS "$URL/readyz" >/dev/null 2>&1; then
      keep_startup_dump
      return
    fi
    sleep 0.1
  done
  echo "the server did not become ready:" >&2
  tail -n 20 "$DATA/serve.log" >&2
  exit 1
}
keep_startup_dump() { # what the server ran until ready, as startup-<n>.callgrind
  [ "$INSTRUCTIONS" = 1 ] && [ -n "${INSTRUCTIONS_DIR:-}" ] || return 0
  STARTS=$((STARTS + 1))
  rm -f "$DATA/callgrind.$SERVER".*
  callgrind_control -d "$SERVER" >/dev/null
  mkdir -p "$INSTRUCTIONS_DIR"
  cat "$DATA/callgrind.$SERVER".* >"$INSTRUCTIONS_DIR/startup-$STARTS.callgrind"
}
STARTS=0
stop_server() {
  if [ -n "$SERVER" ]; then
    cat "$DATA/serve.log" >>"$DATA/serve-all.log"
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
  fi
}

# CPU ticks (utime+stime) of the server, of all postgres processes.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The database's share: the backends serving the benchmark database (the pool keeps
# them for the whole workload), per pid, so that other databases' work on the same
# server and processes that come and go do not count. `pid ticks` lines.
db_ticks() {
  [ -n "$BENCH_DB" ] || return 0
  local pid
  for pid in $(psql -Atq "$ADMIN_URL" -c \
    "SELECT pid FROM pg_stat_activity WHERE datname = '$BENCH_DB' AND pid <> pg_backend_pid()"); do
    awk -v pid="$pid" '{print pid, $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true
  done
}
rss_mib() { awk '/^'"$2"':/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
HZ="$(getconf CLK_TCK)"

LUA="$DATA/request.lua"
cat >"$LUA" <<'LUA'
local method = os.getenv("BENCH_METHOD") or "POST"
wrk.method = method
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
if os.getenv("BENCH_IF_NONE_MATCH") then
  wrk.headers["If-None-Match"] = os.getenv("BENCH_IF_NONE_MATCH")
end
if method == "POST" then
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.body = os.getenv("BENCH_BODY")
end
LUA

measure() { # name path script connections(threads = 1 unless $BENCH_THREADS)
  local name="$1" path="$2" script="$3" conns="$4"
  local threads="${BENCH_THREADS_WRK:-1}"
  local cpu0 db0 cpu1 db1 out
  local pid="${MEASURE_PID:-$SERVER}" url="${MEASURE_URL:-$URL}"
  local counting=0 timeout=10s
  # Under callgrind a request waits ~50x longer for its turn.
  if [ "$INSTRUCTIONS" = 1 ] && [ "$pid" = "$SERVER" ]; then counting=1 timeout=30s; fi
  [ "$counting" = 0 ] || callgrind_control -z "$pid" >/dev/null
  cpu0="$(ticks "$pid")"
  db0="$(db_ticks)"
  out="$(wrk -t"$threads" -c"$conns" -d"$DURATION" --timeout "$timeout" --latency -s "$script" "$url$path")"
  cpu1="$(ticks "$pid")"
  db1="$(db_ticks)"
  local instructions=""
  if [ "$counting" = 1 ]; then
    rm -f "$DATA/callgrind.$pid".*
    callgrind_control -d "$pid" >/dev/null
    if [ -n "${INSTRUCTIONS_DIR:-}" ]; then
      mkdir -p "$INSTRUCTIONS_DIR"
      cat "$DATA/callgrind.$pid".* >"$INSTRUCTIONS_DIR/$name.callgrind"
    fi
    instructions="$(WRK_OUT="$out" python3 - "$name" "$DATA/callgrind.$pid" <<'PY'
import glob, os, re, sys
name, prefix = sys.argv[1:3]
total = 0
for dump in glob.glob(prefix + ".*"):  # one file per thread with --separate-threads
    for line in open(dump):
        if line.startswith(("summary:", "totals:")):
            total += int(line.split()[1])
            break
reqs = int(re.search(r"(\d+) requests in", os.environ["WRK_OUT"]).group(1))
print("bench: instructions workload=%s requests=%d instr_per_req=%d"
      % (name, reqs, total // max(reqs, 1)))
PY
)"
  fi
  WRK_OUT="$out" DB0="$db0" DB1="$db1" python3 - "$name" "$conns" "$((cpu1 - cpu0))" "$HZ" \
    "$(rss_mib "$pid" VmRSS)" <<'PY'
import os, re, sys
name, conns, cpu, hz, rss = sys.argv[1:6]
out = os.environ["WRK_OUT"]
def snapshot(text):
    return {p: int(t) for p, t in (l.split() for l in text.splitlines() if l.strip())}
before, after = snapshot(os.environ["DB0"]), snapshot(os.environ["DB1"])
db = sum(t - before.get(p, 0) for p, t in after.items())
def ms(label):
    m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), out, re.M)
    if not m:
        return "nan"
    v = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return "%.2f" % v
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errors = 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
if m:
    errors += int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
if m:
    errors += sum(int(x) for x in m.groups())
for pattern in (r"chains broken: (\d+)", r"sign-ins: \d+ succeeded, (\d+) failed"):
    m = re.search(pattern, out)
    if m:
        errors += int(m.group(1))
per = lambda ticks: "%.1f" % (int(ticks) / int(hz) * 1e6 / max(reqs, 1))
print("bench: workload=%s conns=%s req_s=%.0f p50_ms=%s p99_ms=%s cpu_us_per_req=%s "
      "db_cpu_us_per_req=%s rss_mib=%s errors=%d"
      % (name, conns, rps, ms("50%"), ms("99%"), per(cpu), per(db), rss, errors))
PY
  [ -z "$instructions" ] || echo "$instructions"
}

run() { # name path [method auth body]: one thread leaves the second core to the server
  BENCH_METHOD="${3:-GET}" BENCH_AUTH="${4:-}" BENCH_BODY="${5:-}" \
    measure "$1" "$2" "$LUA" "$CONNECTIONS"
}

basic() { # id secret
  echo "Basic $(printf '%s:%s' "$1" "$2" | base64 -w0)"
}
create_client() { # id, extra args…: prints the secret
  local id="$1"
  shift
  "$BIN" clients create "${CLI[@]}" --id "$id" "$@" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])'
}

echo "bench: machine date=$(date -u +%Y-%m-%dT%H:%MZ) backend=$BACKEND cpus=$(nproc)" \
  "model=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\"" \
  "loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\" duration=$DURATION log=$LOG" \
  "commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)"

start_server
sleep "$SETTLE"
echo "bench: idle_rss_mib=$(rss_mib "$SERVER" VmRSS)"

# Machine clients, one per access-token algorithm.
declare -A AUTH
for alg in ES256 EdDSA RS256; do
  id="bench-$(tr '[:upper:]' '[:lower:]' <<<"$alg")"
  AUTH[$alg]="$(basic "$id" "$(create_client "$id" --scopes read --audiences urn:bench \
    --access-token-alg "$alg")")"
done
sleep "$SETTLE" # the change feed picks the new clients up
TOKEN_BODY="grant_type=client_credentials&scope=read"
INTROSPECT_AUTH="${AUTH[ES256]}"
INTROSPECT_TOKEN="$(curl -fsS -H "Authorization: $INTROSPECT_AUTH" -d "$TOKEN_BODY" "$URL/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

etag() { curl -fsS -o /dev/null -D - "$URL$1" | awk 'tolower($1)=="etag:" {print $2}' | tr -d '\r'; }
if wants discovery; then run discovery /.well-known/openid-configuration; fi
if wants discovery_304; then
  BENCH_IF_NONE_MATCH="$(etag /.well-known/openid-configuration)" \
    run discovery_304 /.well-known/openid-configuration
fi
if wants jwks; then run jwks /jwks; fi
if wants jwks_304; then BENCH_IF_NONE_MATCH="$(etag /jwks)" run jwks_304 /jwks; fi
if wants http_floor; then
  # The same JWK Set from axum with one route and nothing else (authserver/benches/
  # http_floor.rs): what hyper and loopback TCP cost here, the floor of the rows above.
  curl -fsS "$URL/jwks" >"$DATA/jwks.json"
  FLOOR_BIN="$(cargo bench -q -p authserver --bench http_floor --no-run --message-format=json |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "http_floor" and m.get("executable"):
        print(m["executable"])')"
  FLOOR_PORT=$((PORT + 1))
  "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "$DATA/jwks.json" &
  FLOOR=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$FLOOR_PORT/jwks" >/dev/null 2>&1 && break
    sleep 0.1
  done
  MEASURE_PID="$FLOOR" MEASURE_URL="http://127.0.0.1:$FLOOR_PORT" run http_floor_jwks /jwks
  kill "$FLOOR"
  wait "$FLOOR" 2>/dev/null || true
  FLOOR=""
fi
if wants client_credentials; then
  for alg in ES256 EdDSA RS256; do
    run "client_credentials_$alg" /token POST "${AUTH[$alg]}" "$TOKEN_BODY"
  done
fi
if wants introspection; then
  run introspection /introspect POST "$INTROSPECT_AUTH" "token=$INTROSPECT_TOKEN"
fi

# End user and a confidential web client (client_secret_basic) for the user flows.
BENCH_USERNAME=bench-user BENCH_PASSWORD=bench-correct-horse-battery-42
export BENCH_USERNAME BENCH_PASSWORD
printf '%s\n' "$BENCH_PASSWORD" |
  "$BIN" users create "${CLI[@]}" --username "$BENCH_USERNAME" --password-stdin >/dev/null 2>&1
if wants login; then
  # One user per browser (benches/login.lua says why).
  most=0
  for conns in $LOGIN_CONNECTIONS; do [ "$conns" -le "$most" ] || most="$conns"; done
  for i in $(seq 0 $((most - 1))); do
    printf '%s\n' "$BENCH_PASSWORD" | "$BIN" users create "${CLI[@]}" \
      --username "$BENCH_USERNAME-$i" --password-stdin >/dev/null 2>&1
  done
fi
read -r TENANT USER_ID < <("$BIN" users list "${CLI[@]}" 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    u = json.loads(line)
    if u["username"] == sys.argv[1]:
        print(u["tenant"], u["user_id"])' "$BENCH_USERNAME") ||
  { echo "creating the bench user failed" >&2; exit 1; }
REDIRECT=https://app.example.com/cb
SCOPE="openid offline_access"
# ES256 access and ID tokens, as issue 13's refresh goal states it (the ID token's default,
# RS256, alone costs about 250 µs of CPU: the RS256 row of client_credentials).
WEB_AUTH="$(basic bench-web "$(create_client bench-web --redirect-uri "$REDIRECT" \
  --grant-types authorization_code,refresh_token --scopes "$SCOPE" \
  --auth-method client_secret_basic --first-party --id-token-alg ES256)")"
sleep "$SETTLE"

if wants refresh; then
  # Refresh tokens rotate on every use, so each connection needs its own chain: plant
  # one code per connection (plus one that wrk's script check pops, see refresh.lua),
  # redeem each once for a refresh token, hand them to refresh.lua.
  CHAINS=$((CONNECTIONS + 1))
  if [ "$BACKEND" = postgres ]; then TARGET_DB="$DATABASE_URL"; else TARGET_DB="$DATA/authserver.db"; fi
  python3 benches/seed_codes.py "$TARGET_DB" "$TENANT" bench-web "$USER_ID" \
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
    measure refresh_token "/token" benches/refresh.lua "$CONNECTIONS"
fi

if wants login; then
  # Password sign-ins: one browser per connection, one connection per wrk thread.
  for conns in $LOGIN_CONNECTIONS; do
    BENCH_THREADS_WRK="$conns" measure "password_sign_in" /login benches/login.lua "$conns"
  done
fi

if wants introspection_uncached; then
  # Every introspection verifies the signature and reads the denylist: what a token
  # costs the first time a pod sees it.
  start_server GATEHOUSE_CACHE_VERIFIED_TOKENS=0
  run introspection_uncached /introspect POST "$INTROSPECT_AUTH" "token=$INTROSPECT_TOKEN"
fi

if wants rate_limits; then
  # Limits far above the offered load: what is measured is the bookkeeping.
  LIMITS=(GATEHOUSE_RATE_LIMITS_ENABLED=true GATEHOUSE_RATE_LIMITS_TOKEN_PER_CLIENT=100000000
    GATEHOUSE_RATE_LIMITS_TOKEN_PER_IP=100000000)
  start_server "${LIMITS[@]}"
  run client_credentials_ES256_limits_memory /token POST "${AUTH[ES256]}" "$TOKEN_BODY"
  REDIS="${REDIS_URL:-redis://127.0.0.1:6379}"
  if redis-cli -u "$REDIS" ping >/dev/null 2>&1; then
    start_server "${LIMITS[@]}" "GATEHOUSE_REDIS_URL=$REDIS"
    run client_credentials_ES256_limits_redis /token POST "${AUTH[ES256]}" "$TOKEN_BODY"
  else
    echo "bench: workload=client_credentials_ES256_limits_redis not measured: no Redis at $REDIS"
  fi
fi

if wants log_warn; then
  # What the access log (one line per request at info) costs.
  start_server RUST_LOG=warn
  run client_credentials_ES256_log_warn /token POST "${AUTH[ES256]}" "$TOKEN_BODY"
  run jwks_log_warn /jwks
fi

echo "bench: peak_rss_mib=$(rss_mib "$SERVER" VmHWM) (this server process)"
stop_server
# Warnings and errors of the servers during the run, other than the --dev key notice.
sed 's/\x1b\[[0-9;]*m//g' "$DATA/serve-all.log" | grep -E 'WARN|ERROR' |
  grep -v 'DEVELOPMENT MODE' >"$DATA/problems" || true
echo "bench: server_log_problems=$(wc -l <"$DATA/problems")"
head -n 5 "$DATA/problems" | sed 's/^/    /'
echo "bench: machine loadavg_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""

if [ "${FLOORS:-1}" = 1 ]; then
  cargo bench -q -p authserver --bench signing 2>/dev/null | sed 's/^/bench: floor /'
  cargo bench -q -p authserver --bench password 2>/dev/null | sed 's/^/bench: floor /'
fi
