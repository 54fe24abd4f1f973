#!/usr/bin/env bash
# The long form of the conservation test (tests/conservation): more batches, more fault rounds
# (each round: broker latency and request errors, a broker down, Redis killed, two stages
# SIGKILLed, the file sink's storage read-only for $FS_CONSERVATION_SINK_DOWN_S seconds,
# default 180 here), several seeds. Every run must end with every sample in the file sink once.
#   scripts/conservation.sh [rounds] [batches] [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
batches=${2:-1200}
shift $(( $# > 2 ? 2 : $# ))
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3)
cmake --build --preset default --target conservation_test flamestream-symbolizer \
  flamestream-correlator flamestream-exporter flamestream-devbroker >/dev/null
passed=0
failed=0
log=$(mktemp)
for seed in "${seeds[@]}"; do
  echo "== seed $seed: $rounds rounds, $batches batches"
  if FS_BIN_DIR="$PWD/build/bin" FS_CONSERVATION_SEED="$seed" FS_CONSERVATION_ROUNDS="$rounds" \
     FS_CONSERVATION_SINK_DOWN_S="${FS_CONSERVATION_SINK_DOWN_S:-180}" \
     FS_CONSERVATION_BATCHES="$batches" build/tests/conservation_test >"$log" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "   full output: $log.$seed"
    cp "$log" "$log.$seed"
  fi
  grep -E '^(conservation|round)|OK \]|FAILED|Failure' "$log" || true
done
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
