#!/usr/bin/env bash
# Operator at scale (issue 13): the real gatehouse-operator against the e2e fake API
# server, with one `authserver serve` on a fresh PostgreSQL database. Applies
# $TENANTS IdentityTenants over $NAMESPACES namespaces, then $CLIENTS OidcClients in
# parallel batches (server-side apply, as `kubectl apply --server-side` of one big
# manifest), waits until every client is Ready with its credentials Secret, then counts
# an idle window of two resync intervals. Prints one `operator-scale: …` line per figure
# (e2e/src/bin/operator-scale.rs says what each means):
#
#   all_ready seconds=…                       first client applied → all Ready with Secret
#   requests phase=ramp|resync resource=… verb=… total=… per_client=…
#                                             the operator's API requests (per client, and
#                                             per resync interval in the resync phase)
#   operator_cpu / authserver_cpu phase=ramp|per_resync seconds=…   (utime+stime, /proc)
#   operator_peak_rss / authserver_peak_rss mib=…                  (VmHWM, /proc)
#
#   benches/operator-scale.sh                         # 1000 clients, 20 namespaces, 5 tenants
#   CLIENTS=200 RESYNC_SECONDS=10 benches/operator-scale.sh
#   benches/operator-scale.sh --max-concurrent-reconciles 16   # extra flags are passed on
#
# PostgreSQL: DATABASE_URL (a role that may CREATE DATABASE; a database is created and
# dropped), else an ephemeral cluster started with initdb/pg_ctl. Exits non-zero when a
# client never becomes Ready (a correctness failure, not a timing one): the figures are
# measurements, never compared with a goal here.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${CLIENTS:-1000}"
NAMESPACES="${NAMESPACES:-20}"
TENANTS="${TENANTS:-5}"
RESYNC_SECONDS="${RESYNC_SECONDS:-20}"

cargo build --release -q -p operator -p authserver -p e2e
# Where cargo really put them (a wrapper may choose another target dir).
TARGET_DIR="$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release"

echo "operator-scale: machine date=$(date -u +%Y-%m-%dT%H:%MZ) cpus=$(nproc)" \
  "model=\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)\"" \
  "loadavg=\"$(cut -d' ' -f1-3 /proc/loadavg)\" commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)"
"$BIN/operator-scale" \
  --clients "$CLIENTS" --namespaces "$NAMESPACES" --tenants "$TENANTS" \
  --resync-seconds "$RESYNC_SECONDS" \
  --authserver "$BIN/authserver" --operator "$BIN/gatehouse-operator" "$@"
echo "operator-scale: machine loadavg_after=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
