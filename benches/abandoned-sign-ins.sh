#!/usr/bin/env bash
# The abandoned sign-in attack, measured: browsers post correct sign-ins and hang up
# 30 ms later, while the password is being hashed, for $DURATION seconds. Argon2id takes
# 19 MiB per hash; a pod that lets abandoned hashes run beside the bounded ones grows
# without limit (before the fix of 2026-12-07: 509-625 MiB after 10 s from 8 browsers;
# after: 66 MiB). Standalone server on SQLite, release build. Prints one line:
#
#   bench: abandoned_sign_ins=<n> peak_rss_mib=<MiB> threads=<n>
#
#   benches/abandoned-sign-ins.sh
#   AUTHSERVER_BIN=/path/to/authserver DURATION=20 BROWSERS=16 benches/abandoned-sign-ins.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse/target}"
DURATION="${DURATION:-10}"
BROWSERS="${BROWSERS:-8}"
PORT="${PORT:-18191}"
if [ -z "${AUTHSERVER_BIN:-}" ]; then
  cargo build --release -q -p authserver
  AUTHSERVER_BIN="$CARGO_TARGET_DIR/release/authserver"
fi
BIN="$AUTHSERVER_BIN"
DATA="$(mktemp -d)"
SERVER=""
SAMPLER=""
cleanup() {
  [ -z "$SAMPLER" ] || kill "$SAMPLER" 2>/dev/null || true
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
printf 'tenants:\n  - id: main\n    issuer: http://127.0.0.1:%s\n    display_name: Bench\n' "$PORT" >"$DATA/config.yaml"
# Users are created offline: the breach check points at a closed port and only warns.
# Abandoned attempts count towards the lockout budgets: raised, so that every attempt
# reaches the hash.
export GATEHOUSE_CONFIG="$DATA/config.yaml" GATEHOUSE_PASSWORDS_BREACHED=warn \
  GATEHOUSE_PASSWORDS_HIBP_BASE_URL=http://127.0.0.1:1 GATEHOUSE_RATE_LIMITS_ENABLED=false \
  GATEHOUSE_LOGIN_MAX_FAILURES=1000 GATEHOUSE_LOGIN_MAX_FAILURES_PER_IP=100000 RUST_LOG=warn
export BENCH_PASSWORD=bench-correct-horse-battery-42
for i in $(seq 0 $((BROWSERS - 1))); do
  printf '%s\n' "$BENCH_PASSWORD" |
    "$BIN" users create --dev --data-dir "$DATA" --username "u$i" --password-stdin >/dev/null 2>&1
done
"$BIN" serve --dev --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$DATA/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
( while kill -0 "$SERVER" 2>/dev/null; do
    awk '/^VmRSS:/ {print int($2 / 1024)}' "/proc/$SERVER/status" >>"$DATA/rss" 2>/dev/null || true
    sleep 0.2
  done ) &
SAMPLER=$!
sent="$(python3 benches/abandoned_sign_ins.py "$PORT" "$DURATION" "$BROWSERS" 30)"
sleep 3 # the hashes still running end
echo "bench: abandoned_sign_ins=$sent peak_rss_mib=$(sort -n "$DATA/rss" | tail -1) threads=$(ls "/proc/$SERVER/task" | wc -l)"
