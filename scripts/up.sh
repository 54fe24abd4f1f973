#!/usr/bin/env bash
# README quick start, command one: install dependencies, build, run the local pipeline.
# Arguments go to `flamestream up` (e.g. --duration 30s). Until `flamestream up` is built, this
# starts the local Kafka (flamestream-devbroker on 127.0.0.1:9092) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)"
if [ -x build/bin/flamestream ]; then
  exec build/bin/flamestream up "$@"
fi
echo "flamestream up is not built yet: starting only the local Kafka (Ctrl-C stops it)." >&2
exec build/bin/flamestream-devbroker --port 9092
