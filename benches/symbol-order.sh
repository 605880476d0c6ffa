#!/usr/bin/env bash
# Regenerates authserver/link/symbol-order.txt: the auth server's functions that ran
# while it started and served every workload of benches/load.sh (on PostgreSQL, then on
# SQLite), as their linker symbols, the most instructions first. A release build for
# x86_64 Linux links the binary's code in that order (authserver/build.rs), so what a
# server runs shares pages instead of being spread over the whole 20 MiB of code, each
# page fault mapping 64 KiB around it (docs/benchmarks.md, eighth round).
#
#   benches/symbol-order.sh                          # release build, then ~15 minutes
#   AUTHSERVER_BIN=/path/to/authserver benches/symbol-order.sh
#
# Needs what INSTRUCTIONS=1 benches/load.sh needs (valgrind, wrk, psql, curl). Run it
# after a dependency upgrade or a large change; a function missing from the list (new,
# or renamed) is linked after the listed ones, so a stale list costs memory, not
# correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without AUTHSERVER_BIN, load.sh builds the release binary (named authserver).
BINARY="$(basename "${AUTHSERVER_BIN:-authserver}")"
# Every workload of the server itself (http_floor is another program).
WORKLOADS="discovery discovery_304 jwks jwks_304 client_credentials introspection introspection_uncached refresh login rate_limits log_warn"
DUMPS="$(mktemp -d)"
trap 'rm -rf "$DUMPS"' EXIT
for backend in postgres sqlite; do
  if ! BACKEND="$backend" INSTRUCTIONS=1 INSTRUCTIONS_DIR="$DUMPS/$backend" \
    CALLGRIND_ARGS="--demangle=no" FLOORS=0 DURATION="${DURATION:-3s}" WORKLOADS="$WORKLOADS" \
    bash benches/load.sh >"$DUMPS/$backend.log" 2>&1; then
    tail -n 20 "$DUMPS/$backend.log" >&2
    exit 1
  fi
  grep -E '^bench: (workload|instructions)' "$DUMPS/$backend.log"
done
python3 benches/symbol_order.py "$BINARY" "$DUMPS"/*/*.callgrind \
  >authserver/link/symbol-order.txt
echo "symbol-order: $(wc -l <authserver/link/symbol-order.txt) functions in authserver/link/symbol-order.txt"
