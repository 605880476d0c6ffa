#!/usr/bin/env bash
# Purge of a million expired rows under load (issue 16 item 4): the p99 latency of
# client_credentials and introspection while `authserver purge --tenant main` runs (as
# the operator's CronJob does), against a baseline measured just before, for each
# batch size / pause. The default compares deleting flat out (the old behaviour) with
# the paced default. Goal: p99 during the purge within 1.5x of the baseline.
#
#   benches/fault/purge.sh
#   ROWS=200000 CONFIGS="1000:50 1000:100 500:50" benches/fault/purge.sh
#
# Load: wrk, $CONNECTIONS connections per endpoint; by default flat out, as in
# benches/load.sh (the condition issue 16 measured: the two cores saturated, so whatever
# the purge takes shows in the latency). INTERVAL_MS=10 paces each connection to one
# request per 10 ms instead (a steady load below saturation). The rows: half revoked-token records
# (`jti`, the table introspection reads), a quarter private_key_jwt assertion ids, a
# quarter audit events past retention, all of tenant main.
source "$(dirname "$0")/lib.sh"
need wrk "apt-get install -y wrk"
ROWS="${ROWS:-1000000}"
CONFIGS="${CONFIGS:-1000:0 1000:100}" # batch_size:batch_pause_ms
BASELINE="${BASELINE:-20}"           # seconds
CONNECTIONS="${CONNECTIONS:-32}"
INTERVAL_MS="${INTERVAL_MS:-0}"

header "purge of $ROWS expired rows under load"
build
setup_env
prepare_database
serve a "$BASE_PORT"
create_client
ACCESS_TOKEN="$(access_token "$BASE_PORT")"

WRK_PIDS=()
wrk_start() { # name path body duration_s
  BENCH_AUTH="$CLIENT_AUTH" BENCH_HOST="$ISSUER_HOST" BENCH_BODY="$3" \
    BENCH_INTERVAL_MS="$INTERVAL_MS" wrk -t1 -c"$CONNECTIONS" -d"${4}s" --timeout 10s \
    --latency -s "$FAULT_DIR/paced.lua" "http://127.0.0.1:$BASE_PORT$2" >"$WORK/wrk-$1.out" 2>&1 &
  WRK_PIDS+=($!)
}
load_start() { # label duration_s
  WRK_PIDS=()
  wrk_start "$1-token" /token "grant_type=client_credentials" "$2"
  wrk_start "$1-introspect" /introspect "token=$ACCESS_TOKEN" "$2"
}
load_wait() { wait "${WRK_PIDS[@]}"; }
load_stop() { kill -INT "${WRK_PIDS[@]}" 2>/dev/null || true; load_wait; }
# p99 in ms, requests, and non-2xx + socket errors, of one wrk output.
figures() { # label
  "$PY" - "$WORK/wrk-$1.out" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
def ms(v):
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
reqs = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
errors = (int(non2xx.group(1)) if non2xx else 0)
print(f"{p50:.2f} {p99:.2f} {reqs} {errors} {'socket errors: ' + sock.group(1) if sock else ''}")
PY
}

seed() {
  local now half quarter
  now="$(date +%s)" half=$((ROWS / 2)) quarter=$((ROWS / 4))
  psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO revoked_tokens (tenant_id, jti, expires_at, revoked_at)
  SELECT 'main', 'fault-' || g, $now - 10, $now - 1000 FROM generate_series(1, $half) g;
INSERT INTO assertion_jti (tenant_id, client_id, jti, expires_at)
  SELECT 'main', 'fault-client', 'fault-' || g, $now - 10 FROM generate_series(1, $quarter) g;
INSERT INTO audit_events (tenant_id, at, event)
  SELECT 'main', $now - 100 * 86400, 'fault.seed' FROM generate_series(1, $((ROWS - half - quarter))) g;
VACUUM ANALYZE revoked_tokens, assertion_jti, audit_events;
SQL
}

printf '%-22s %9s %8s %9s  %-34s  %-34s\n' "batch:pause" rows "purge s" "rows/s" \
  "client_credentials p99 base→purge" "introspection p99 base→purge"
for config in $CONFIGS; do
  batch="${config%%:*}" pause="${config##*:}"
  seed
  load_start base "$BASELINE"
  load_wait
  load_start during 3600
  sleep 2
  started="$(now)"
  "$BIN" purge --tenant main --only jti,assertion-jti,audit --timeout 0 \
    --batch-size "$batch" --batch-pause-ms "$pause" >"$WORK/purge-$config.out" 2>"$WORK/purge-$config.log"
  ended="$(now)"
  sleep 1
  load_stop
  read -r _ b_tok _ _ _ <<<"$(figures base-token)"
  read -r _ b_int _ _ _ <<<"$(figures base-introspect)"
  read -r _ d_tok n_tok e_tok _ <<<"$(figures during-token)"
  read -r _ d_int n_int e_int _ <<<"$(figures during-introspect)"
  rows="$(awk -F'[ =]' '{s += $4} END {print s}' "$WORK/purge-$config.out")"
  "$PY" - "$config" "$rows" "$started" "$ended" "$b_tok" "$d_tok" "$b_int" "$d_int" "$e_tok" "$e_int" <<'PY'
import sys
config, rows, t0, t1, bt, dt, bi, di, et, ei = sys.argv[1:]
rows, secs = int(rows), float(t1) - float(t0)
bt, dt, bi, di = map(float, (bt, dt, bi, di))
cell = lambda b, d: f"{b:6.2f} → {d:6.2f} ms ({d / b:4.2f}×)"
errs = int(et) + int(ei)
print(f"{config:<22} {rows:>9} {secs:>8.1f} {rows / secs:>9.0f}  {cell(bt, dt):<34}  {cell(bi, di):<34}"
      + (f"  {errs} failed requests" if errs else ""))
PY
  sed 's/^/    /' "$WORK/purge-$config.out"
done
echo "server log: $(problems a | wc -l) warnings/errors"
