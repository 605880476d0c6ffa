#!/usr/bin/env bash
# SIGTERM and kill -9 of one of two instances under load (issue 16 item 5). Two
# instances behind HAProxy, which plays the Service / Ingress: it health-checks /readyz
# like the chart's readiness probe (every 5 s, down after 2 failures) and, like
# ingress-nginx or Envoy, sends a request whose connection was refused to the other
# instance (never one that was already sent). The instances use the chart's shutdown
# settings (server.shutdown_delay_seconds 15, shutdown_timeout_seconds 20).
#
#   benches/fault/instances.sh
#
# Load: through the load balancer, and straight to the instance that survives.
# Goals: SIGTERM costs no request at all; kill -9 costs no request on the survivor
# (requests in flight on the killed instance fail: nothing can answer them).
source "$(dirname "$0")/lib.sh"
need haproxy "apt-get install -y haproxy"
CONNECTIONS="${CONNECTIONS:-8}"
INTERVAL_MS="${INTERVAL_MS:-20}"
DELAY="${DELAY:-15}"
PORT_A=$((BASE_PORT + 1)) PORT_B=$((BASE_PORT + 2))
SHUTDOWN=(GATEHOUSE_SERVER_SHUTDOWN_DELAY_SECONDS="$DELAY" GATEHOUSE_SERVER_SHUTDOWN_TIMEOUT_SECONDS=20)

header "SIGTERM and kill -9 of one of two instances under load"
build
setup_env
prepare_database
serve a "$PORT_A" "${SHUTDOWN[@]}"
serve b "$PORT_B" "${SHUTDOWN[@]}"
create_client
ACCESS_TOKEN="$(access_token "$PORT_A")"
export ACCESS_TOKEN

cat >"$WORK/haproxy.cfg" <<CFG
global
    maxconn 2048
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A refused connection is tried once more, on the other instance.
    retries 1
    option redispatch 1
frontend gatehouse
    bind 127.0.0.1:$BASE_PORT
    default_backend authserver
backend authserver
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 5s fall 2 rise 1
    server a 127.0.0.1:$PORT_A check
    server b 127.0.0.1:$PORT_B check
CFG
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_ready "$BASE_PORT"
sleep 6 # both instances checked up

load() { # survivor_name survivor_port → background loadgen, records in $WORK/$1.jsonl
  "$PY" "$FAULT_DIR/loadgen.py" --out "$WORK/records-$1.jsonl" --host "$ISSUER_HOST" \
    --target "lb,$CONNECTIONS,127.0.0.1:$BASE_PORT" --target "$1,$((CONNECTIONS / 2)),127.0.0.1:$2" \
    --mix token,introspect --interval-ms "$INTERVAL_MS" >"$WORK/loadgen-$1.out" &
  LOAD=$!
}

echo "load: $CONNECTIONS connections through HAProxy and $((CONNECTIONS / 2)) straight to the survivor, one request each per ${INTERVAL_MS} ms"
echo
echo "SIGTERM of instance a (survivor b):"
load b "$PORT_B"
sleep 8
t_term="$(now)"
kill -TERM "$PID_a"
set +e
wait "$PID_a"
code=$?
set -e
t_exit="$(now)"
sleep 5
kill -INT "$LOAD"
wait "$LOAD"
"$PY" "$FAULT_DIR/report.py" failures "$WORK/records-b.jsonl" SIGTERM "$t_term"
"$PY" -c 'import sys; print(f"  instance a exited {float(sys.argv[2]) - float(sys.argv[1]):.1f} s after SIGTERM with code {sys.argv[3]}")' \
  "$t_term" "$t_exit" "$code"
echo "  instance a logged $(problems a | wc -l) warnings/errors; its shutdown:"
grep -oE '"message":"(shutting down[^"]*|stopped)"' "$WORK/a.log" | sed 's/^/    /'
mv "$WORK/a.log" "$WORK/a-sigterm.log"

echo
echo "kill -9 of instance b (survivor a):"
serve a "$PORT_A" "${SHUTDOWN[@]}"
sleep 6 # HAProxy checks a up again
load a "$PORT_A"
sleep 8
t_kill="$(now)"
kill -9 "$PID_b"
wait "$PID_b" 2>/dev/null || true
sleep 15
kill -INT "$LOAD"
wait "$LOAD"
"$PY" "$FAULT_DIR/report.py" failures "$WORK/records-a.jsonl" "kill -9" "$t_kill"
echo "  survivor a logged $(problems a | wc -l) warnings/errors"
