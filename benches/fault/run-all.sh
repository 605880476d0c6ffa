#!/usr/bin/env bash
# Runs every fault scenario in turn and prints their figures (about 16 minutes).
#
#   benches/fault/run-all.sh 2>&1 | tee fault-run.txt
set -euo pipefail
cd "$(dirname "$0")"
for scenario in rotation db-outage instances purge stalls; do
  ./"$scenario".sh
done
