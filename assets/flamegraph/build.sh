#!/usr/bin/env bash
# Builds the offline flame-graph page template in a work directory (never in the source tree):
#   build.sh <work dir> <out.html> [<out.cc>]
# Copies package.json + package-lock.json + sources to <work dir>, runs `npm ci` there when the
# lock file changed, and bundles with esbuild (build.mjs). Used by libs/sinks/CMakeLists.txt.
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
work="$1"; shift
mkdir -p "$work/src"
cp "$src/package.json" "$src/package-lock.json" "$src/build.mjs" "$work/"
cp "$src/src/page.js" "$src/src/page.html" "$work/src/"
if ! cmp -s "$src/package-lock.json" "$work/node_modules/.flamestream-lock" 2>/dev/null; then
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$src/package-lock.json" "$work/node_modules/.flamestream-lock"
fi
cd "$work" && node build.mjs "$@"
