#!/usr/bin/env bash
# Every benchmark, one after the other: the load benchmark on PostgreSQL (with the
# single-core signing and Argon2id floors of the same run), then the operator at scale.
# Each prints fixed-format lines (`bench: …`, `operator-scale: …`); see README,
# Benchmarks. Extra environment (DURATION, CONNECTIONS, CLIENTS, …) goes to the scripts.
#
#   benches/run-all.sh 2>&1 | tee bench-$(date +%F).log
set -euo pipefail
cd "$(dirname "$0")/.."
bash benches/load.sh
bash benches/operator-scale.sh
