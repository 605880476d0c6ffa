# Shared by the fault scenarios (sourced, not run): a release build, a scratch
# PostgreSQL database, `authserver serve` instances, a client, and cleanup.
#
# Everything runs on this machine against the PostgreSQL at $PGURL (default: the local
# server, user postgres, no password). Each run creates its own database
# gatehouse_fault_<pid> and drops it at exit; the server itself is never stopped or
# restarted (scenarios that need PostgreSQL to go away cut a TCP proxy in front of it,
# benches/fault/tcpproxy.py).
set -euo pipefail
FAULT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$FAULT_DIR/../.." && pwd)"
cd "$REPO"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
PGURL="${PGURL:-postgres://postgres@127.0.0.1:5432}"
# The issuer every request names in its Host header, whichever port it connects to
# (tenants are routed by Host): the load balancer's address where there is one.
BASE_PORT="${BASE_PORT:-18200}"
ISSUER_HOST="127.0.0.1:$BASE_PORT"
PY="${PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1

need() { # command, how to get it
  command -v "$1" >/dev/null || { echo "$1 is required: $2" >&2; exit 1; }
}
need psql "apt-get install -y postgresql-client"
need "$PY" "apt-get install -y python3"
"$PY" -c 'import cryptography' 2>/dev/null ||
  { echo "python3 needs the cryptography package (apt-get install -y python3-cryptography)" >&2; exit 1; }

WORK="$(mktemp -d -t gatehouse-fault-XXXXXX)"
DB="gatehouse_fault_$$"
DATABASE_URL="$PGURL/$DB"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Builds the release binary (once; cargo is a no-op when it is current).
build() {
  cargo build --release -q -p authserver
  local target
  target="$(cargo metadata -q --format-version 1 --no-deps |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  BIN="$target/release/authserver"
}

# Environment of every authserver process of the run (serve and the CLI alike).
setup_env() {
  export DATABASE_URL ENCRYPTION_KEY GATEHOUSE_CONFIG="$WORK/config.yaml"
  ENCRYPTION_KEY="$(openssl rand -hex 32 2>/dev/null || "$PY" -c 'import secrets; print(secrets.token_hex(32))')"
  # Rate limits would be what is measured; JSON logs make WARN/ERROR easy to count.
  export GATEHOUSE_RATE_LIMITS_ENABLED=false GATEHOUSE_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-info}"
  cat >"$WORK/config.yaml" <<YAML
tenants:
  - id: main
    issuer: http://$ISSUER_HOST
    display_name: Fault suite
YAML
}

# A fresh database with the schema.
prepare_database() {
  psql "$PGURL/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  "$BIN" migrate >/dev/null 2>"$WORK/migrate.log"
}

# A client_credentials client (once an instance has created the tenant); sets
# CLIENT_AUTH, the Basic header value.
create_client() {
  local secret
  secret="$("$BIN" clients create --id fault-client --scopes read --audiences urn:fault \
    2>>"$WORK/migrate.log" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')"
  CLIENT_AUTH="Basic $(printf '%s:%s' fault-client "$secret" | base64 -w0)"
  export CLIENT_AUTH
}

# serve NAME PORT [ENV=VALUE…]: starts an instance logging to $WORK/NAME.log, waits
# until /readyz answers 200, and sets PID_<NAME>.
serve() {
  local name="$1" port="$2"
  shift 2
  env "$@" "$BIN" serve --listen "127.0.0.1:$port" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  printf -v "PID_$name" '%s' "$pid"
  wait_ready "$port" || { echo "instance $name did not become ready:" >&2; tail -n 20 "$WORK/$name.log" >&2; exit 1; }
}

wait_ready() { # port
  local _
  for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $ISSUER_HOST" "http://127.0.0.1:$1/readyz")" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# An access token of the fault client, from the instance on PORT.
access_token() { # port
  curl -fsS -H "Host: $ISSUER_HOST" -H "Authorization: $CLIENT_AUTH" \
    -d grant_type=client_credentials "http://127.0.0.1:$1/token" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# WARN and ERROR lines of an instance's log.
problems() { # name
  grep -E '"level":"(WARN|ERROR)"' "$WORK/$1.log" || true
}

now() { "$PY" -c 'import time; print(f"{time.time():.3f}")'; }

header() { # title
  echo
  echo "== $1"
  echo "   $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
}
