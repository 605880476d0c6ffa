#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default 600) and
# prints the executions per target. Crashes land in fuzz/artifacts/<target>/; turn each
# into a regression test (see fuzz/README.md).
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 60 jws     # one target, one minute
#
# cargo-fuzz needs nightly-only compiler flags; this machine has only a stable toolchain,
# so RUSTC_BOOTSTRAP=1 unlocks them for this build (nothing else is built that way).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -O
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  log=$(mktemp)
  status=0
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=65536 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1)
  tail -n 5 "$log"
  summary+=("$t: ${execs:-?} executions in ${seconds} s, exit ${status}")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
