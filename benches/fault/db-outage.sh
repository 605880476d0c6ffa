#!/usr/bin/env bash
# PostgreSQL restart and a 6-second outage under load: what clients see (goal: errors
# only as fast 503s), what is still served from memory, and how long after PostgreSQL
# is back the same process (no restart) answers everything again.
#
#   benches/fault/db-outage.sh
#   OUTAGE=10 benches/fault/db-outage.sh
#
# PostgreSQL is not really stopped: the instance reaches it through tcpproxy.py, which
# closes its port and resets every connection, as a stopped server does. The "restart"
# is such a cut for RESTART_GAP seconds (a fast restart's downtime); the outage lasts
# OUTAGE seconds. On a machine of your own, `pg_ctlcluster 15 main restart` (or stop,
# sleep 6, start) in place of the two cuts gives the same picture: see
# docs/reliability.md.
source "$(dirname "$0")/lib.sh"
OUTAGE="${OUTAGE:-6}"
RESTART_GAP="${RESTART_GAP:-0.5}"
CONNECTIONS="${CONNECTIONS:-8}"
INTERVAL_MS="${INTERVAL_MS:-20}"
PG_ADDR="$("$PY" -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(f"{p.hostname}:{p.port or 5432}")' "$PGURL")"
PROXY_PORT=$((BASE_PORT + 9))

header "PostgreSQL restart and a ${OUTAGE} s outage under load"
build
setup_env
prepare_database
"$PY" "$FAULT_DIR/tcpproxy.py" "$PROXY_PORT" "$PG_ADDR" >"$WORK/proxy.log" &
PROXY=$!
PIDS+=("$PROXY")
until grep -q listening "$WORK/proxy.log" 2>/dev/null; do sleep 0.1; done
VIA_PROXY="$("$PY" -c 'import sys, urllib.parse as u
p = u.urlparse(sys.argv[1])
user = p.netloc.rsplit("@", 1)[0] + "@" if "@" in p.netloc else ""
print(p._replace(netloc=f"{user}127.0.0.1:{sys.argv[2]}").geturl())' "$DATABASE_URL" "$PROXY_PORT")"
serve a "$BASE_PORT" DATABASE_URL="$VIA_PROXY"
create_client
ACCESS_TOKEN="$(access_token "$BASE_PORT")"
export ACCESS_TOKEN

"$PY" "$FAULT_DIR/loadgen.py" --out "$WORK/records.jsonl" --host "$ISSUER_HOST" \
  --target "a,$CONNECTIONS,127.0.0.1:$BASE_PORT" --mix token,introspect \
  --interval-ms "$INTERVAL_MS" >"$WORK/loadgen.out" &
LOAD=$!
sleep 10
kill -USR1 "$PROXY"; sleep "$RESTART_GAP"; kill -USR2 "$PROXY"
sleep 15
kill -USR1 "$PROXY"; sleep "$OUTAGE"; kill -USR2 "$PROXY"
sleep 20
kill -INT "$LOAD"
wait "$LOAD"
grep -E ' (cut|restored)$' "$WORK/proxy.log" >"$WORK/proxy-events.log"

echo "load: $CONNECTIONS connections, one request each per ${INTERVAL_MS} ms, client_credentials and introspection alternating"
sed 's/^/  whole run:/' "$WORK/loadgen.out"
"$PY" "$FAULT_DIR/report.py" outage "$WORK/records.jsonl" "$WORK/proxy-events.log" \
  "restart (cut for ${RESTART_GAP} s)" "outage"
if kill -0 "$PID_a" 2>/dev/null && wait_ready "$BASE_PORT"; then
  echo "the same process (pid $PID_a) is ready again: no restart needed"
else
  echo "the instance did not recover by itself"
fi
echo "server log:"
grep -E 'database unavailable|database available again' "$WORK/a.log" |
  "$PY" -c 'import json, sys
for line in sys.stdin:
    e = json.loads(line)
    f = e.get("fields", e)
    print("  ", e.get("level"), f.get("message"), *(f"{k}={v}" for k, v in f.items() if k in ("outage_ms", "error")))'
echo "  $(problems a | wc -l) warnings/errors in all"
