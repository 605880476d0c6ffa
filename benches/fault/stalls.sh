#!/usr/bin/env bash
# Stalls under saturation (issue 16 item 3): two instances on one PostgreSQL, each
# saturated by wrk with introspection and client_credentials (the load under which the
# original runs saw introspection on both instances stop for 3–12 s with no fault),
# while a probe sends one introspection per 50 ms to each instance and records every
# answer, and a sampler reads each instance's runnable threads (/proc) and its
# `gatehouse_runtime` metrics twice a second.
#
#   benches/fault/stalls.sh                  # 6 rounds of 30 s
#   ROUNDS=3 DURATION=60 benches/fault/stalls.sh
#
# A stall is a probe request slower than 1 s. Goal: none in any round; runnable threads
# stay near the worker count (2 workers + the log writer + the blocking pool's busy
# threads), and the runtime's global queue stays short.
source "$(dirname "$0")/lib.sh"
need wrk "apt-get install -y wrk"
ROUNDS="${ROUNDS:-6}"
DURATION="${DURATION:-30}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT_A=$((BASE_PORT + 1)) PORT_B=$((BASE_PORT + 2))

header "Stalls: two saturated instances, $ROUNDS rounds of $DURATION s"
build
setup_env
prepare_database
serve a "$PORT_A"
serve b "$PORT_B"
create_client
ACCESS_TOKEN="$(access_token "$PORT_A")"
export ACCESS_TOKEN

cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("CLIENT_AUTH")
wrk.headers["Host"] = os.getenv("ISSUER_HOST")
wrk.body = os.getenv("BENCH_BODY")
LUA
export ISSUER_HOST

# sampler OUT: every 0.5 s, per instance, runnable threads and the runtime gauges.
sampler() {
  "$PY" - "$1" "a=$PID_a=$PORT_A" "b=$PID_b=$PORT_B" "$ISSUER_HOST" <<'PY' &
import glob, json, sys, time, urllib.request
out, host = sys.argv[1], sys.argv[-1]
instances = [arg.split("=") for arg in sys.argv[2:-1]]
with open(out, "w") as f:
    while True:
        for name, pid, port in instances:
            runnable = 0
            for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
                try:
                    state = open(stat).read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                runnable += state == "R"
            gauges = {}
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Host": host})
                for line in urllib.request.urlopen(req, timeout=2).read().decode().splitlines():
                    if line.startswith("gatehouse_runtime{"):
                        key = line.split('measure="', 1)[1].split('"', 1)[0]
                        gauges[key] = float(line.rsplit(" ", 1)[1])
            except Exception:
                pass
            f.write(json.dumps({"t": time.time(), "name": name, "runnable": runnable, **gauges}) + "\n")
        f.flush()
        time.sleep(0.5)
PY
  SAMPLER=$!
  PIDS+=("$SAMPLER")
}

printf '\n%-6s %10s %10s %9s %9s %9s %12s %10s %10s\n' round "wrk req/s" "probe n" "p99 ms" "max ms" "> 1 s" "runnable max" "queue max" "tasks max"
for round in $(seq 1 "$ROUNDS"); do
  for port in "$PORT_A" "$PORT_B"; do
    BENCH_BODY="token=$ACCESS_TOKEN" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
      -s "$WORK/post.lua" "http://127.0.0.1:$port/introspect" >"$WORK/wrk-$round-$port-i.out" 2>&1 &
    BENCH_BODY="grant_type=client_credentials" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
      -s "$WORK/post.lua" "http://127.0.0.1:$port/token" >"$WORK/wrk-$round-$port-t.out" 2>&1 &
  done
  "$PY" "$FAULT_DIR/loadgen.py" --out "$WORK/probe-$round.jsonl" --host "$ISSUER_HOST" \
    --target "a,1,127.0.0.1:$PORT_A" --target "b,1,127.0.0.1:$PORT_B" --mix introspect \
    --interval-ms 50 --duration "$DURATION" >/dev/null &
  PROBE=$!
  sampler "$WORK/samples-$round.jsonl"
  wait "$PROBE"
  kill "$SAMPLER" 2>/dev/null || true
  sleep 1
  "$PY" - "$round" "$WORK" <<'PY'
import glob, json, re, sys
round_, work = sys.argv[1], sys.argv[2]
rate = 0.0
for path in glob.glob(f"{work}/wrk-{round_}-*.out"):
    m = re.search(r"Requests/sec:\s+([\d.]+)", open(path).read())
    rate += float(m.group(1)) if m else 0.0
probe = [json.loads(l) for l in open(f"{work}/probe-{round_}.jsonl")]
ms = sorted(r["ms"] for r in probe)
bad = [r for r in probe if r["status"] != 200]
p99 = ms[int(0.99 * (len(ms) - 1))] if ms else 0.0
samples = [json.loads(l) for l in open(f"{work}/samples-{round_}.jsonl")]
top = lambda k: max((s.get(k, 0) for s in samples), default=0)
print(f"{round_:<6} {rate:>10.0f} {len(probe):>10} {p99:>9.1f} {max(ms, default=0):>9.1f} "
      f"{sum(m > 1000 for m in ms):>9} {top('runnable'):>12.0f} {top('global_queue_depth'):>10.0f} "
      f"{top('alive_tasks'):>10.0f}" + (f"  ({len(bad)} not 200)" if bad else ""))
PY
done
echo
echo "WARN/ERROR lines: a $(problems a | wc -l), b $(problems b | wc -l)"
