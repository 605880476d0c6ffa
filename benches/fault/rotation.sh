#!/usr/bin/env bash
# Signing key rotation under load, verified by a relying party that caches the JWKS
# exactly as long as its Cache-Control says and never refetches on an unknown kid
# (rp.py). Two instances issue the tokens; `authserver keys rotate` runs as a separate
# process, as the operator's rotation does. Goal: 0 verification failures.
#
# Then, for contrast, an emergency rotation (`keys rotate --now`), which signs with the
# new key at once: such a relying party rejects tokens until its cached JWKS expires.
#
#   benches/fault/rotation.sh
#
# keys.overlap_window_seconds is 80 here so that the JWKS max-age is 10 s (overlap / 8)
# and the default promotion delay 70 s (max-age + 60): the production defaults (900 s,
# 960 s) scaled down, same rule.
source "$(dirname "$0")/lib.sh"
WORKERS="${WORKERS:-8}"
INTERVAL_MS="${INTERVAL_MS:-20}"
PORT_A=$((BASE_PORT + 1)) PORT_B=$((BASE_PORT + 2))
export GATEHOUSE_KEYS_OVERLAP_WINDOW_SECONDS=80
MAX_AGE=10
DELAY=70

header "key rotation under load, relying party caching the JWKS per Cache-Control"
build
setup_env
prepare_database
serve a "$PORT_A"
serve b "$PORT_B"
create_client

"$PY" "$FAULT_DIR/rp.py" --host "$ISSUER_HOST" --target "127.0.0.1:$PORT_A" \
  --target "127.0.0.1:$PORT_B" --workers "$WORKERS" --interval-ms "$INTERVAL_MS" \
  --out "$WORK/rp.jsonl" >"$WORK/rp.out" &
RP=$!
sleep 10
t_rotate="$(now)"
"$BIN" keys rotate >"$WORK/rotate.out" 2>>"$WORK/cli.log"
t_active="$("$PY" -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2]))' "$t_rotate" "$DELAY")"
sleep $((DELAY + 2 * MAX_AGE))
t_now="$(now)"
"$BIN" keys rotate --now >"$WORK/rotate-now.out" 2>>"$WORK/cli.log"
sleep $((2 * MAX_AGE))
kill -INT "$RP"
wait "$RP"

echo "relying party: $WORKERS workers, one token each per ${INTERVAL_MS} ms, from both instances in turn; JWKS max-age ${MAX_AGE} s"
cat "$WORK/rp.out"
"$PY" "$FAULT_DIR/report.py" rotation "$WORK/rp.jsonl" "$t_rotate" "$t_active" "$t_now" "$MAX_AGE"
echo "server logs: $(($(problems a | wc -l) + $(problems b | wc -l))) warnings/errors"
